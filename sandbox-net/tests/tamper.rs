#![allow(clippy::unwrap_used, clippy::expect_used)]
// The child drops its privileges and makes a user namespace itself, as a
// sandboxed process would; `unshare(CLONE_NEWUSER)` is `unsafe` in rustix.
#![allow(unsafe_code)]
//! Tamper resistance: a process in the egress namespace that has dropped
//! every capability (bounding set empty, no_new_privs, uid 65534) cannot
//! flush or replace the ruleset, change routes, addresses or links, or
//! create a tap — not even from a nested user namespace of its own. Each
//! attempt is shown to work as root first (the control).
//!
//! A test binary of its own (`harness = false`): the checks need a
//! single-threaded process (`unshare(CLONE_NEWUSER)` refuses threads).

use std::process::Command;

use rustix::thread::{CapabilitySet, CapabilitySets};
use sandbox_net::{
    EgressAddressing, EgressNamespace, Link, LinkChange, Requests, Rtnetlink, Ruleset, TapOptions,
    create_tap,
};
use sandbox_policy::Policy;

/// The attempts, by name; each returns the errno it failed with, or 0.
fn attempts() -> Vec<(&'static str, i32)> {
    let errno = |e: sandbox_net::Error| match e {
        sandbox_net::Error::Netlink { error, .. } | sandbox_net::Error::Os { error, .. } => {
            error.raw_os_error().unwrap_or(-1)
        }
        _ => -1,
    };
    let result = |r: sandbox_net::Result<()>| r.map_or_else(errno, |()| 0);
    let open_everything = Ruleset {
        output: Vec::new(),
        input: Vec::new(),
        sets: Vec::new(),
        cidr_sets: Vec::new(),
    };
    let rtnl = Rtnetlink::open();
    let tap_index = rtnl
        .as_ref()
        .ok()
        .and_then(|r| r.link("tap0").ok().flatten())
        .map_or(2, |l| l.index);
    let netlink = |requests: Requests| match &rtnl {
        Ok(r) => result(r.execute(&requests)),
        Err(_) => -1,
    };
    let mut route = Requests::new();
    route.add_link_route("10.9.0.0".parse().unwrap(), 16, tap_index);
    let mut address = Requests::new();
    address
        .add_address(Link::Index(tap_index), "10.0.2.200".parse().unwrap(), 24)
        .unwrap();
    let mut down = Requests::new();
    down.set_link(
        Link::Name("tap0"),
        LinkChange {
            up: Some(false),
            ..LinkChange::default()
        },
    )
    .unwrap();
    vec![
        ("replace the ruleset", result(open_everything.install())),
        ("add a route", netlink(route)),
        ("add an address", netlink(address)),
        ("take tap0 down", netlink(down)),
        (
            "create a tap",
            result(create_tap("tap9", TapOptions::default()).map(drop)),
        ),
    ]
}

fn drop_privileges() {
    for cap in 0..64 {
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << cap,
        )) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => panic!("PR_CAPBSET_DROP {cap}: {e}"),
        }
    }
    rustix::thread::clear_ambient_capability_set().unwrap();
    rustix::thread::set_thread_groups(&[]).unwrap();
    let nobody_gid = rustix::process::Gid::from_raw(65534);
    let nobody_uid = rustix::process::Uid::from_raw(65534);
    rustix::thread::set_thread_res_gid(nobody_gid, nobody_gid, nobody_gid).unwrap();
    rustix::thread::set_thread_res_uid(nobody_uid, nobody_uid, nobody_uid).unwrap();
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .unwrap();
    rustix::thread::set_no_new_privs(true).unwrap();
    // The uid change made the process non-dumpable, which makes its /proc
    // files root's; a sandboxed process is dumpable again after execve.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable).unwrap();
}

fn child() {
    drop_privileges();
    for (name, errno) in attempts() {
        println!("dropped\t{name}\t{errno}");
    }
    // A user namespace of its own: full capabilities there, none over the
    // egress namespace, which belongs to the parent user namespace.
    // SAFETY: this process is single-threaded (harness = false, no thread
    // started), as unshare(CLONE_NEWUSER) requires; it shares no fd table.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }.unwrap();
    std::fs::write("/proc/self/setgroups", "deny").unwrap();
    std::fs::write("/proc/self/uid_map", "0 65534 1\n").unwrap();
    std::fs::write("/proc/self/gid_map", "0 65534 1\n").unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    println!("nested\tCapEff\t{cap_eff}");
    for (name, errno) in attempts() {
        println!("nested\t{name}\t{errno}");
    }
}

fn main() {
    if std::env::var_os("TAMPER_CHILD").is_some() {
        child();
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("tamper: needs root (as CI has): nothing was tested");
        std::process::exit(1);
    }
    let policy = Policy::profile("networked").unwrap();
    let egress = EgressNamespace::create(&policy.network, &EgressAddressing::default()).unwrap();
    egress.ruleset.read_back().unwrap();

    let child = Command::new(std::env::current_exe().unwrap())
        .env("TAMPER_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
    let mut checked = 0;
    for line in &lines {
        match line.as_slice() {
            ["nested", "CapEff", caps] => {
                assert_ne!(
                    *caps, "0000000000000000",
                    "the nested namespace has capabilities"
                );
            }
            [stage, name, errno] => {
                let errno: i32 = errno.parse().unwrap();
                // A tap: /dev/net/tun may already refuse the open (EACCES,
                // on hosts where it is not world-writable), else TUNSETIFF
                // refuses (EPERM).
                let refused =
                    errno == libc::EPERM || (*name == "create a tap" && errno == libc::EACCES);
                assert!(
                    refused,
                    "{stage}: {name} must be refused, got errno {errno}"
                );
                println!(
                    "tamper: {stage:<8} {name:<22} {}",
                    std::io::Error::from_raw_os_error(errno)
                );
                checked += 1;
            }
            other => panic!("unexpected child line {other:?}"),
        }
    }
    assert_eq!(checked, 10, "{stdout}");
    // The ruleset is untouched.
    egress.ruleset.read_back().unwrap();

    // Controls: as root, in the same namespace, each attempt works.
    for (name, errno) in attempts() {
        assert_eq!(errno, 0, "control as root: {name}");
        println!("tamper: root     {name:<22} allowed (control)");
    }
    // And the replaced ruleset really is gone: reading back the original
    // now fails, so the check above was not vacuous.
    assert!(egress.ruleset.read_back().is_err());
    println!("tamper: ok ({checked} attempts refused, each allowed to root)");
}
