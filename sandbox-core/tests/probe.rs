//! The host probe against the real kernel: as root (as CI runs), and as an
//! unprivileged user in a child process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use sandbox_core::{Capability, probe, probe_now};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn probe_finds_what_this_machine_kind_has() {
    let host = probe();
    println!("{}", serde_json::to_string_pretty(host).unwrap());
    assert!(!host.kernel.is_empty());
    // This machine kind (and CI) has these; a failure here names the reason.
    assert_eq!(host.openat2, Capability::Available);
    assert_eq!(host.seccomp_filter, Capability::Available);
    assert_eq!(host.landlock, Capability::Available);
    assert!(host.landlock_abi.is_some_and(|abi| abi >= 1));
    if is_root() {
        assert_eq!(host.user_namespaces, Capability::Available);
        assert_eq!(host.nftables_in_userns, Capability::Available);
        assert_eq!(host.tun, Capability::Available);
        // Root can limit memory and pids here, whatever the layout: v1
        // controllers on a hybrid host, or a cgroup v2 placement (the root
        // cgroup, or a leaf the caller moved into).
        if let Some(u) = &host.cgroups.unified
            && host.cgroups.v1.is_empty()
        {
            let p = u
                .placement
                .as_ref()
                .expect("a cgroup v2 placement for root");
            assert!(p.controllers.iter().any(|c| c == "memory"), "{p:?}");
        }
        assert!(
            host.cgroups.can_limit("pids") && host.cgroups.can_limit("memory"),
            "{:?}",
            host.cgroups
        );
    }
    // Cached: the same object every time.
    assert!(std::ptr::eq(probe(), host));
    // Nothing left behind by the cgroup trials.
    let unified = host.cgroups.unified.iter().flat_map(|u| {
        [Some(&u.own), u.placement.as_ref().map(|p| &p.parent)]
            .into_iter()
            .flatten()
            .map(move |dir| (u.mount.clone(), dir.clone()))
    });
    let v1 = host
        .cgroups
        .v1
        .iter()
        .map(|h| (h.mount.clone(), h.own.clone()));
    for (mount, dir) in unified.chain(v1) {
        let leftover = std::fs::read_dir(mount.join(&dir))
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("sandbox-probe-")
            });
        assert!(
            !leftover,
            "probe cgroup left in {}",
            mount.join(&dir).display()
        );
    }
}

/// Helpers run in a child process by the test that names them; each
/// returns at once when run any other way (CI skips `child_process::`).
mod child_process {
    use super::*;

    /// Run by `probe_as_an_unprivileged_user` as `nobody`.
    #[test]
    #[ignore = "run by probe_as_an_unprivileged_user in a child process"]
    fn probe_unprivileged() {
        if std::env::var_os("SANDBOX_CORE_UNPRIVILEGED_CHILD").is_none() {
            return;
        }
        let host = probe_now();
        assert_eq!(host.euid, 65534);
        // nobody owns no cgroup: nothing can be created beneath the caller's.
        assert!(
            !host.cgroups.can_limit("memory") && !host.cgroups.can_limit("pids"),
            "{:?}",
            host.cgroups
        );
        // Whatever the answer on user namespaces, it is a tried one with a reason.
        if let Capability::Unavailable { reason } = &host.user_namespaces {
            assert!(!reason.is_empty());
        }
        assert_eq!(host.openat2, Capability::Available);
        println!(
            "UNPRIVILEGED-PROBE-OK {}",
            serde_json::to_string(&host.user_namespaces).unwrap()
        );
    }
}

#[test]
#[ignore = "needs root"]
fn probe_as_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    assert!(
        is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
    let dir = std::env::temp_dir().join(format!("sandbox-core-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("probe-test");
    // Copied by cp, not here: a process another test of this binary forked
    // while we held the copy open for writing would hold it too, and the
    // exec below would fail with "Text file busy" for as long as it lives.
    let copied = std::process::Command::new("cp")
        .arg(std::env::current_exe().unwrap())
        .arg(&exe)
        .status()
        .unwrap();
    assert!(copied.success(), "cp the test binary: {copied}");
    let mut attempts = 0;
    let out = loop {
        let result = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_process::probe_unprivileged",
                "--include-ignored",
                "--nocapture",
            ])
            .env("SANDBOX_CORE_UNPRIVILEGED_CHILD", "1")
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .output();
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("UNPRIVILEGED-PROBE-OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
