#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs real sandboxes (real namespaces, mounts, seccomp, Landlock) and
//! observes each layer from inside. Needs root, as in CI; the unprivileged
//! path runs in a child process as `nobody`.
use std::path::Path;

use sandbox_core::{Error, Layer, Sandbox};

mod common;
use common::*;

/// Once the command runs, PID 1 holds a few pages of its own (the reaper
/// it execs) instead of its copy of the caller's address space: its
/// resident size is far below the caller's (which this test makes at
/// least 64 MiB).
#[test]
#[ignore = "needs root"]
#[cfg(target_arch = "x86_64")]
fn pid_1_holds_nothing_of_the_callers_memory() {
    common::require_root();
    let ballast = vec![1u8; 64 << 20];
    let out = sh(
        &Sandbox::from_profile("default").unwrap(),
        "grep VmRSS /proc/1/status",
    );
    assert!(out.success(), "{out:?}");
    let text = stdout(&out);
    let kib: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(kib < 1024, "PID 1 resident: {kib} kB");
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_kib: u64 = own
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(own_kib > 64 << 10, "the caller: {own_kib} kB");
    assert_eq!(ballast.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);
}

#[test]
#[ignore = "needs root"]
fn privilege_layer_seen_from_inside() {
    common::require_root();
    let out = sh(
        &Sandbox::from_profile("default").unwrap(),
        "cat /proc/self/status; echo ---; cat /proc/self/uid_map; echo ---; id -u; id -g; hostname; \
         tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/comm; \
         cat /proc/1/environ > /dev/null 2>&1 && echo readable || echo denied",
    );
    assert!(out.success(), "{out:?}");
    let text = stdout(&out);
    let mut parts = text.split("---\n");
    let status = parts.next().unwrap();
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(status, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(status_field(status, "NoNewPrivs"), "1");
    assert_eq!(status_field(status, "Seccomp"), "2");
    let uid_map = parts.next().unwrap();
    let lines: Vec<Vec<&str>> = uid_map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // A root caller's run: the sandbox's nobody is a host uid of the
    // run's own (2^30 and up), never a real account or the host's nobody.
    let host_uid: u32 = lines
        .iter()
        .find(|l| l[0] == "65534")
        .map(|l| l[1].parse().unwrap())
        .unwrap_or_else(|| panic!("the sandbox user is mapped: {uid_map}"));
    assert!(host_uid >= 1 << 30, "a run id: {uid_map}");
    assert!(
        lines.iter().all(|l| l[2] == "1"),
        "single ids only: {uid_map}"
    );
    let rest: Vec<&str> = parts.next().unwrap().lines().collect();
    assert_eq!(rest[..3], ["65534", "65534", "sandbox"]);
    // PID 1 is the reaper it execs once the command runs (x86_64), a
    // program of a few pages: its command line says so and holds nothing
    // of the caller's; elsewhere it is a copy of the caller whose command
    // line is zeroed. Its name is its own, its environment unreadable.
    if cfg!(target_arch = "x86_64") {
        let words: Vec<&str> = rest[3].split_whitespace().collect();
        assert_eq!(words.len(), 3, "{}", rest[3]);
        assert_eq!(words[0], "sbx-init");
        assert!(
            words[1..].iter().all(|w| w.parse::<u32>().is_ok()),
            "{}",
            rest[3]
        );
    } else {
        assert_eq!(
            rest[3].trim(),
            "",
            "no byte of the caller's argv in /proc/1/cmdline"
        );
    }
    assert_eq!(rest[4], "sandbox-init");
    assert_eq!(rest[5], "denied");
    assert!(out.report.fully_enforced(), "{}", out.report);
}

#[test]
#[ignore = "needs root"]
fn filesystem_layer_seen_from_inside() {
    common::require_root();
    let out = sh(
        &Sandbox::from_profile("default").unwrap(),
        "ls /; echo ---; ls /dev; echo ---; cat /proc/self/mounts; echo ---; \
         { echo x > /etc/y; } 2>&1; { echo x > /y; } 2>&1; echo x > /tmp/ok && cat /tmp/ok; \
         ls /root /home 2>&1; pwd",
    );
    let text = stdout(&out);
    let mut parts = text.split("---\n");
    let root: Vec<&str> = parts.next().unwrap().lines().collect();
    for dir in ["dev", "etc", "proc", "tmp", "usr"] {
        assert!(root.contains(&dir), "{dir} in {root:?}");
    }
    for hidden in ["root", "home", "var", "srv", "work"] {
        assert!(!root.contains(&hidden), "{hidden} is not in a minimal root");
    }
    let dev: Vec<&str> = parts.next().unwrap().lines().collect();
    for node in [
        "full", "null", "ptmx", "pts", "random", "shm", "tty", "urandom", "zero",
    ] {
        assert!(dev.contains(&node), "/dev/{node} in {dev:?}");
    }
    assert!(
        !dev.iter()
            .any(|d| d.starts_with("sd") || *d == "mem" || *d == "kmsg")
    );
    let mounts = parts.next().unwrap();
    let root_mount = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/"))
        .unwrap();
    assert!(
        root_mount.contains(" ro,") || root_mount.contains(" ro "),
        "{root_mount}"
    );
    let usr = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/usr"))
        .unwrap();
    for flag in ["ro", "nosuid", "nodev"] {
        assert!(
            usr.split(' ').nth(3).unwrap().split(',').any(|f| f == flag),
            "{usr}"
        );
    }
    assert!(
        mounts.lines().any(|l| l.starts_with("proc /proc proc")),
        "{mounts}"
    );
    let rest = parts.next().unwrap();
    assert_eq!(rest.matches("Read-only file system").count(), 2, "{rest}");
    assert!(rest.contains("x\n"), "/tmp is writable: {rest}");
    assert!(rest.contains("No such file"), "{rest}");
    assert!(rest.ends_with("/tmp\n"), "the default workdir: {rest}");
}

#[test]
#[ignore = "needs root"]
#[allow(unsafe_code)]
fn only_stdio_fds_reach_the_command_and_env_follows_the_policy() {
    common::require_root();
    // SAFETY: set_var races only with other threads reading the
    // environment; these names are read by this test only.
    unsafe {
        std::env::set_var("SBX_TEST_PASSED", "yes");
        std::env::set_var("SBX_TEST_TOKEN", "secret");
        std::env::set_var("SBX_TEST_OTHER", "no");
    }
    let _held_open = std::fs::File::open("/etc/hostname").unwrap();
    let sb = sandbox("[env]\nallow = [\"PATH\", \"SBX_TEST_*\"]\nset = { FROM_POLICY = \"1\" }\n");
    let out = sb
        .command("sh")
        .args(["-c", "ls /proc/self/fd; echo ---; env | sort"])
        .env("FROM_COMMAND", "2")
        .output()
        .unwrap();
    let text = stdout(&out);
    let (fds, env) = text.split_once("---\n").unwrap();
    // 0, 1, 2, and the directory `ls` itself opened.
    assert_eq!(fds.lines().count(), 4, "{fds}");
    let names: Vec<&str> = env.lines().map(|l| l.split('=').next().unwrap()).collect();
    assert!(names.contains(&"SBX_TEST_PASSED") && names.contains(&"SBX_TEST_OTHER"));
    assert!(
        !names.contains(&"SBX_TEST_TOKEN"),
        "secret-looking names need `set`"
    );
    assert!(names.contains(&"FROM_POLICY") && names.contains(&"FROM_COMMAND"));
    assert!(!names.contains(&"HOME"), "{names:?}");
}

#[test]
#[ignore = "needs root"]
fn setup_failures_are_typed_and_name_the_step() {
    common::require_root();
    let sb = Sandbox::from_profile("default").unwrap();
    let err = sb.command("no-such-program").output().unwrap_err();
    assert!(
        matches!(&err, Error::Setup { step, error } if step.contains("no-such-program") && error.raw_os_error() == Some(libc::ENOENT)),
        "{err}"
    );
    let err = sb
        .command("true")
        .current_dir("relative")
        .output()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCommand { .. }), "{err}");
    let err = sb
        .command("true")
        .current_dir("/nonexistent")
        .output()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Setup { step, .. } if step.contains("chdir")),
        "{err}"
    );
    let err = sb.command("tr\0ue").output().unwrap_err();
    assert!(matches!(err, Error::InvalidCommand { .. }), "{err}");
}

#[test]
#[ignore = "needs root"]
fn a_symlink_planted_in_a_bind_source_cannot_redirect_a_mount() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
    std::fs::create_dir_all(dir.path().join("real/sub")).unwrap();
    std::fs::create_dir_all(dir.path().join("real/hidden")).unwrap();
    std::fs::write(dir.path().join("real/hidden/secret"), "s").unwrap();
    let bind = format!(
        "[filesystem]\nbinds = [{{ source = \"{}\", target = \"/work\" }}]\n",
        dir.path().display()
    );
    // A tmpfs whose target walks through the planted symlink.
    let through = sandbox(&format!(
        "{bind}tmpfs = [{{ target = \"/tmp\" }}, {{ target = \"/work/link/sub\" }}]\n"
    ));
    let err = through.command("true").output().unwrap_err();
    assert!(
        matches!(&err, Error::Setup { step, error } if step.contains("/work/link/sub") && error.raw_os_error() == Some(libc::ELOOP)),
        "{err}"
    );
    // A mask on the symlink itself.
    let mask = sandbox(&format!("{bind}mask = [\"/work/link\"]\n"));
    let err = mask.command("true").output().unwrap_err();
    assert!(
        matches!(&err, Error::Setup { error, .. } if error.raw_os_error() == Some(libc::ELOOP)),
        "{err}"
    );
    // Control: the same through a real directory works, and masks it.
    let ok = sandbox(&format!(
        "{bind}tmpfs = [{{ target = \"/tmp\" }}, {{ target = \"/work/real/sub\" }}]\nmask = [\"/work/real/hidden\"]\n"
    ));
    let out = sh(&ok, "ls -A /work/real/hidden | wc -l; ls /etc | wc -l");
    assert!(out.success(), "{out:?}");
    assert!(stdout(&out).starts_with("0\n"), "{}", stdout(&out));
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
#[ignore = "needs root"]
fn strict_seccomp_runs_interpreters_and_refuses_the_rest() {
    common::require_root();
    let sb = Sandbox::from_profile("strict").unwrap();
    let out = sh(
        &sb,
        "echo $((6 * 7)); ls / > /dev/null && echo ls; cat /proc/self/status | grep -c Seccomp_filters",
    );
    assert!(out.success(), "{out:?}");
    assert_eq!(stdout(&out), "42\nls\n1\n");
    // A syscall outside the allowlist (personality(0xffffffff), a query)
    // fails with EPERM under `strict`, and works under `default`.
    #[cfg(target_arch = "x86_64")]
    if Path::new("/usr/bin/python3").exists() {
        let script = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n\
                      r = libc.syscall(135, 0xffffffff)\nprint(r, ctypes.get_errno())";
        let strict = sb.command("python3").args(["-c", script]).output().unwrap();
        assert_eq!(stdout(&strict), "-1 1\n", "{strict:?}");
        let default = Sandbox::from_profile("default").unwrap();
        let control = default
            .command("python3")
            .args(["-c", script])
            .output()
            .unwrap();
        assert_eq!(stdout(&control), "0 0\n", "{control:?}");
    }
}

#[test]
#[ignore = "needs root"]
fn unprivileged_caller_runs_a_degraded_default() {
    if std::env::var_os("SBX_CHILD_UNPRIVILEGED").is_some() {
        unprivileged_child();
        return;
    }
    common::require_root();
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "unprivileged_caller_runs_a_degraded_default",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SBX_CHILD_UNPRIVILEGED", "1")
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("UNPRIVILEGED OK"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unprivileged_child() {
    // As an unprivileged user the cgroup limits are unavailable: the
    // default profile is refused, and a degrading one runs without them.
    let refused = Sandbox::from_profile("default").unwrap();
    assert!(matches!(
        refused.command("true").output(),
        Err(Error::Unavailable { .. })
    ));
    let sb = sandbox("on_unavailable = \"degrade\"\n");
    let resources: Vec<_> = sb.report().downgrades.iter().map(|d| d.layer).collect();
    assert_eq!(resources, [Layer::Resources, Layer::Resources]);
    let out = sh(
        &sb,
        "id -u; cat /proc/self/uid_map; grep CapEff /proc/self/status",
    );
    assert!(out.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "65534");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["65534", "65534", "1"],
        "only the caller's own uid is mapped"
    );
    assert!(lines[2].ends_with("0000000000000000"));
    println!("UNPRIVILEGED OK");
}

#[test]
#[ignore = "needs root"]
fn host_readonly_shows_the_host_tree_read_only() {
    common::require_root();
    let sb = sandbox("[filesystem]\nmode = \"host-readonly\"\n");
    let out = sh(
        &sb,
        "ls /; echo ---; { echo x > /etc/sbx-test; } 2>&1; ls -d /proc/[0-9]* | wc -l; ls /dev | wc -l; ls -A /run /var/tmp | wc -l",
    );
    assert!(out.success(), "{out:?}");
    let text = stdout(&out);
    let (root, rest) = text.split_once("---\n").unwrap();
    let host_root: Vec<String> = std::fs::read_dir("/")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in root.lines() {
        assert!(host_root.iter().any(|h| h == name), "{name} is the host's");
    }
    assert!(root.lines().count() >= host_root.len() - 1, "{root}");
    let lines: Vec<&str> = rest.lines().collect();
    assert!(lines[0].contains("Read-only file system"), "{rest}");
    assert!(!Path::new("/etc/sbx-test").exists());
    let procs: usize = lines[1].trim().parse().unwrap();
    assert!(procs <= 4, "only the sandbox's processes: {procs}");
    let devs: usize = lines[2].trim().parse().unwrap();
    assert!(devs < 20, "a minimal /dev: {devs} entries");
    // Where the host's services keep their sockets: a fresh tmpfs each
    // (`ls -A` of two empty directories prints their two headers and a
    // blank line).
    let run: usize = lines[3].trim().parse().unwrap();
    assert!(run <= 3, "/run and /var/tmp are empty: {rest}");
    assert!(
        std::fs::read_dir("/run").unwrap().count() > 0,
        "the control: the host's /run is not"
    );
}

#[test]
#[ignore = "needs root"]
fn filesystem_off_shares_the_host_view_with_a_fresh_proc() {
    common::require_root();
    let sb = sandbox("[filesystem]\nmode = \"off\"\ntmpfs = []\nworkdir = \"/\"\n");
    let out = sh(
        &sb,
        "test -d /root && echo host-root; ls -d /proc/[0-9]* | wc -l",
    );
    assert!(out.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("host-root\n"), "{text}");
    let procs: usize = text.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(procs <= 4, "the sandbox's own pid namespace: {procs}");
}

#[test]
#[ignore = "needs root"]
fn landlock_scopes_abstract_unix_sockets_to_the_sandbox() {
    common::require_root();
    use std::os::linux::net::SocketAddrExt;
    let host = sandbox_core::probe();
    if host.landlock_abi.unwrap_or(0) < 6 || !Path::new("/usr/bin/python3").exists() {
        eprintln!("skipped: needs Landlock ABI 6 and /usr/bin/python3");
        return;
    }
    let name = format!("sbx-landlock-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('\\0{name}')\n    print('connected')\nexcept OSError as e:\n    print('refused', e.errno)"
    );
    // The host network, so that the abstract namespace is the host's.
    let base = "[network]\nmode = \"host\"\n";
    let scoped = sandbox(base);
    let out = scoped
        .command("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "refused 1\n", "{out:?}");
    // Control: without Landlock the same connect reaches the host's socket.
    let control = sandbox(&format!("{base}[privilege]\nlandlock = \"off\"\n"));
    let out = control
        .command("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "connected\n", "{out:?}");
}

#[test]
fn the_sandboxs_root_is_an_unprivileged_host_uid() {
    // privilege.user = "root": uid 0 inside, never uid 0 outside (for a
    // root caller: the host's nobody; for another caller: itself).
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sb = sandbox(&format!(
        "[privilege]\nuser = \"root\"\n[filesystem]\nbinds = [{{ source = \"{}\", target = \"/work\", writable = true }}]\n",
        dir.path().display()
    ));
    if !sb.report().fully_enforced() {
        eprintln!("skipped: {}", sb.report());
        return;
    }
    let out = sh(&sb, "id -u; touch /work/made-inside");
    assert!(out.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "0", "root inside");
    let owner = std::fs::metadata(dir.path().join("made-inside"))
        .unwrap()
        .uid();
    let euid = rustix::process::geteuid().as_raw();
    if euid == 0 {
        assert_ne!(owner, 0, "the sandbox's root wrote as host root");
    } else {
        assert_eq!(owner, euid);
    }
    // Control: the caller's own file is the caller's.
    std::fs::write(dir.path().join("made-outside"), "x").unwrap();
    let mine = std::fs::metadata(dir.path().join("made-outside"))
        .unwrap()
        .uid();
    assert_eq!(mine, euid);
}

#[test]
fn the_report_names_what_an_older_landlock_abi_lacks() {
    // As on Debian 12's 6.1 (ABI 2): decided against this host with an
    // older ABI, and against its real ABI as the control.
    let mut host = sandbox_core::probe().clone();
    let Some(real) = host.landlock_abi else {
        eprintln!("skipped: no Landlock here");
        return;
    };
    let notes = |host: &sandbox_core::HostCapabilities| {
        let sb = Sandbox::with_host(sandbox_policy::Policy::default(), host).unwrap();
        sb.report()
            .notes
            .iter()
            .map(|n| n.message.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    host.landlock_abi = Some(2);
    let old = notes(&host);
    assert!(
        old.contains("Landlock ABI 2 on this kernel does not cover"),
        "{old}"
    );
    assert!(
        old.contains("scoping signals and abstract unix sockets (ABI 6)"),
        "{old}"
    );
    assert!(old.contains("truncating files (ABI 3)"), "{old}");
    assert!(!old.contains("(ABI 2)"), "{old}");
    host.landlock_abi = Some(real);
    let now = notes(&host);
    assert_eq!(
        now.contains("scoping signals"),
        real < 6,
        "ABI {real}: {now}"
    );
}

#[test]
fn kernels_older_than_the_minimum_are_refused_by_name() {
    let mut host = sandbox_core::probe().clone();
    host.kernel = "5.10.0-28-amd64".into();
    let err = Sandbox::with_host(sandbox_policy::Policy::default(), &host).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedKernel { release } if release == "5.10.0-28-amd64"),
        "{err}"
    );
    assert!(err.to_string().contains("older than 5.15"), "{err}");
    // Control: this host's own kernel is accepted.
    Sandbox::with_host(sandbox_policy::Policy::default(), sandbox_core::probe()).unwrap();
}
