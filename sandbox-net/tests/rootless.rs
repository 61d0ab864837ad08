#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `EgressNamespace::create_rootless`: a child in new user and network
//! namespaces sets everything up from prebuilt bytes and hands back the
//! tap and the namespace. As root, and as `nobody`.

use std::net::IpAddr;

use sandbox_net::{EgressAddressing, EgressNamespace, Rtnetlink, enter_network_namespace};
use sandbox_policy::Policy;

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

fn networked() -> sandbox_policy::Network {
    Policy::profile("networked").unwrap().network
}

#[test]
#[ignore = "needs root"]
fn made_without_privilege_and_inspected_from_inside() {
    if std::env::var_os("ROOTLESS_AS_NOBODY").is_some() {
        as_nobody();
        return;
    }
    require_root();
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let egress =
        EgressNamespace::create_rootless(&networked(), &EgressAddressing::default()).unwrap();
    // The calling thread did not move.
    assert_eq!(
        before,
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    );
    // Inside: the ruleset as meant, tap0 up with its addresses and routes.
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_network_namespace(&egress.netns).unwrap();
            egress.ruleset.read_back().unwrap();
            let rtnl = Rtnetlink::open().unwrap();
            let tap = rtnl.link("tap0").unwrap().unwrap();
            assert!(tap.up);
            assert_eq!(
                (tap.index, tap.mtu, tap.txqueuelen),
                (2, Some(65520), Some(10_000))
            );
            let addrs: Vec<IpAddr> = rtnl
                .addresses()
                .unwrap()
                .into_iter()
                .filter(|a| a.index == 2)
                .map(|a| a.addr)
                .collect();
            assert!(addrs.contains(&"10.0.2.100".parse().unwrap()), "{addrs:?}");
            assert!(
                addrs.contains(&"fd00:0:2::100".parse().unwrap()),
                "{addrs:?}"
            );
            let gateways: Vec<Option<IpAddr>> = rtnl
                .routes()
                .unwrap()
                .into_iter()
                .filter(|r| r.destination.is_none())
                .map(|r| r.gateway)
                .collect();
            assert!(
                gateways.contains(&Some("10.0.2.2".parse().unwrap())),
                "{gateways:?}"
            );
        });
    });
    // The tap fd is the namespace's tap0.
    let info = std::fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        std::os::fd::AsRawFd::as_raw_fd(&egress.tap)
    ))
    .unwrap();
    assert!(info.contains("iff:\ttap0"), "{info}");

    // The same as an unprivileged user, in a child process.
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "made_without_privilege_and_inspected_from_inside",
            "--include-ignored",
            "--nocapture",
        ])
        .env("ROOTLESS_AS_NOBODY", "1")
        .uid(65534)
        .gid(65534)
        .current_dir("/")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("NOBODY OK"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_nobody() {
    let tun_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .is_ok();
    match EgressNamespace::create_rootless(&networked(), &EgressAddressing::default()) {
        Ok(egress) => {
            assert!(tun_usable, "made a tap without access to /dev/net/tun?");
            let info = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                std::os::fd::AsRawFd::as_raw_fd(&egress.tap)
            ))
            .unwrap();
            assert!(info.contains("iff:\ttap0"));
            println!("NOBODY OK: made rootless");
        }
        Err(e) => {
            // Hosts where /dev/net/tun is root's only (this machine kind):
            // the namespace and the ruleset were made, the tap is refused,
            // and the error says so.
            assert!(!tun_usable, "{e}");
            let text = e.to_string();
            assert!(
                text.contains("/dev/net/tun") && text.contains("ermission denied"),
                "{text}"
            );
            println!("NOBODY OK: refused clearly: {text}");
        }
    }
}
