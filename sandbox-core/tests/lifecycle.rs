#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A sandbox's life: exit statuses and rlimits, capped output, the
//! wall-clock kill, background processes, spawn/kill, cgroup limits
//! (memory, pids, CPU), SysV IPC, parent death. Needs root, as in CI.
use std::time::{Duration, Instant};

use sandbox_core::{ExitStatus, Sandbox, Stdio};

mod common;
use common::*;

#[test]
#[ignore = "needs root"]
fn rlimits_and_exit_statuses() {
    common::require_root();
    let sb = sandbox("[resources]\nopen_files = 77\nmax_file_size = \"1MiB\"\n");
    let out = sh(&sb, "ulimit -n; ulimit -f; ulimit -c; exit 3");
    assert_eq!(out.status, ExitStatus::Exited(3));
    assert_eq!(stdout(&out), "77\n2048\n0\n");
    let killed = sh(&sb, "kill -9 $$");
    assert_eq!(killed.status, ExitStatus::Signaled(9));
    // Writing past max_file_size fails (SIGXFSZ ignored: EFBIG).
    let big = sh(
        &sb,
        "trap '' XFSZ; head -c 2097152 /dev/zero > /tmp/big; echo $?; wc -c < /tmp/big",
    );
    assert_eq!(stdout(&big), "1\n1048576\n");
}

#[test]
#[ignore = "needs root"]
fn output_is_capped_and_the_command_is_never_blocked() {
    common::require_root();
    let sb = sandbox("[resources]\nmax_output_bytes = \"1MiB\"\n");
    let started = Instant::now();
    let out = sh(
        &sb,
        "head -c 104857600 /dev/zero; head -c 3000000 /dev/zero >&2; echo done >&2; exit 0",
    );
    assert!(out.success(), "the writer finished: {:?}", out.status);
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(out.stdout_truncated && out.stderr_truncated);
    assert_eq!(out.stderr.len(), 1 << 20);
    assert!(!out.timed_out);
    eprintln!("100 MiB drained in {:?}", started.elapsed());
    // Control: under the cap nothing is flagged.
    let small = sh(&sb, "echo hello");
    assert_eq!(small.stdout, b"hello\n");
    assert!(!small.stdout_truncated);
}

#[test]
#[ignore = "needs root"]
fn wall_time_kills_a_forking_tree_that_ignores_sigterm() {
    common::require_root();
    let sb = sandbox("[resources]\nwall_time = \"1s\"\n");
    let started = Instant::now();
    let out = sh(
        &sb,
        "trap '' TERM; for i in 1 2 3; do (trap '' TERM; sleep 4242.5) & done; \
         (trap '' TERM; while :; do sleep 4242.5; done) & sleep 4242.5",
    );
    let elapsed = started.elapsed();
    assert!(out.timed_out);
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGKILL));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(out.wall_time >= Duration::from_secs(1));
    assert_eq!(
        processes_with("4242.5"),
        0,
        "every process of the tree is gone"
    );
}

#[test]
#[ignore = "needs root"]
fn the_run_ends_when_the_command_ends_and_takes_its_background_processes() {
    common::require_root();
    let sb = Sandbox::from_profile("default").unwrap();
    let started = Instant::now();
    let out = sh(&sb, "sleep 4343.5 & sleep 4343.5 & echo started");
    assert!(out.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(processes_with("4343.5"), 0);
}

#[test]
#[ignore = "needs root"]
fn spawn_kill_and_stdin() {
    common::require_root();
    let sb = Sandbox::from_profile("default").unwrap();
    let mut child = sb.command("sleep").arg("4444.5").spawn().unwrap();
    assert!(child.id() > 1);
    assert_eq!(processes_with_soon("4444.5", 1), 1);
    // Running: try_wait says so without blocking.
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    let out = child.wait().unwrap();
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGKILL));
    assert!(!out.timed_out);
    assert_eq!(processes_with("4444.5"), 0);
    // Waiting again, or trying, gives the same outcome.
    assert_eq!(child.wait().unwrap().status, out.status);
    assert_eq!(
        child.try_wait().unwrap().map(|o| o.status),
        Some(out.status)
    );

    let mut cat = sb.command("cat").stdin(Stdio::Piped).spawn().unwrap();
    {
        use std::io::Write;
        cat.stdin
            .take()
            .unwrap()
            .write_all(b"through stdin")
            .unwrap();
    }
    let out = cat.wait().unwrap();
    assert_eq!(out.stdout, b"through stdin");
}

/// A perl loop forking children that sleep, until a fork fails or 40
/// run: prints how many started (a failed fork is not fatal to perl, as
/// it is to a shell).
const PERL_FORKS: &str = "perl -e 'for (1..40) { my $p = fork; last unless defined $p; if (!$p) { sleep 3; exit } $n++ } print \"$n\\n\"'";

#[test]
fn memory_and_pids_limits_come_from_cgroups() {
    // Any caller: root, or an unprivileged one in a delegated subtree (the
    // kernel matrix's delegated-user layout sets SANDBOX_EXPECT_CGROUP_LIMITS,
    // where a downgrade is a failure).
    let sb = sandbox("[resources]\npids = 16\nmemory = \"64MiB\"\n");
    if !sb.report().fully_enforced() {
        assert!(
            std::env::var_os("SANDBOX_EXPECT_CGROUP_LIMITS").is_none(),
            "limits expected here: {}",
            sb.report()
        );
        eprintln!("skipped: {}", sb.report());
        return;
    }
    let out = sh(&sb, PERL_FORKS);
    let started: usize = stdout(&out).trim().parse().unwrap();
    assert!(
        (10..16).contains(&started),
        "16 tasks at most, perl and init among them: {started}"
    );
    assert!(out.pids_limit_hit, "the outcome says the limit was hit");
    let hog = sh(&sb, "head -c 200000000 /dev/zero | tail > /dev/null");
    assert!(hog.oom_killed, "{hog:?}");
    assert!(hog.peak_memory.unwrap() <= 64 << 20);
    // Control: a small job is not killed.
    let fine = sh(&sb, "head -c 1000000 /dev/zero | tail > /dev/null");
    assert!(fine.success() && !fine.oom_killed && !fine.pids_limit_hit);
}

#[test]
#[ignore = "needs root"]
fn parent_death_kills_the_sandbox() {
    if std::env::var_os("SBX_CHILD_PARENT_DEATH").is_some() {
        let sb = Sandbox::from_profile("default").unwrap();
        let _child = sb.command("sleep").arg("4646.5").spawn().unwrap();
        println!("READY");
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    common::require_root();
    use std::io::{BufRead, BufReader};
    // Placed first (on a cgroup v2 leaf: moved into <leaf>/supervisor), as
    // a supervisor would be, so the child's runs find the same parent.
    sandbox_core::probe();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "parent_death_kills_the_sandbox",
            "--include-ignored",
            "--nocapture",
        ])
        .env("SBX_CHILD_PARENT_DEATH", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("READY")));
    assert_eq!(processes_with_soon("4646.5", 1), 1, "the sandbox runs");
    let child_scope = scope_slice().and_then(|slice| scopes_of(&slice, child.id()).next());
    // The control, taken while the caller lives: its run has cgroups. (Once
    // it is dead, any Sandbox made by a test running beside this one may
    // sweep them, so "they are left" cannot be checked after the kill.)
    let while_alive = common::leaks::run_cgroups_of(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes_with("4646.5") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_with("4646.5"),
        0,
        "the sandbox died with its parent"
    );
    // Beneath a systemd scope the killed caller's runs had a scope of
    // their own, which systemd removes, run cgroups and all, once it is
    // empty (the control: it was there while the caller ran).
    if let Some(slice) = scope_slice() {
        assert!(
            child_scope.is_some(),
            "the child's runs had a scope of their own in {}",
            slice.display()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while scopes_of(&slice, child.id()).next().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            scopes_of(&slice, child.id()).collect::<Vec<_>>(),
            Vec::<std::path::PathBuf>::new(),
            "systemd removed the killed caller's scope"
        );
        return;
    }
    // The killed caller could not remove its run's cgroups; the next
    // Sandbox made here does (or one made by a test beside this one did).
    assert!(
        !while_alive.is_empty(),
        "the caller's run had cgroups while it ran"
    );
    let left = common::leaks::run_cgroups_of(child.id());
    // Its processes may still be on their way out (zombies are reaped by
    // whoever adopted them): the sweep removes empty cgroups only.
    let deadline = Instant::now() + Duration::from_secs(10);
    let populated = |dir: &std::path::PathBuf| {
        std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
    };
    while left.iter().any(populated) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _next = Sandbox::from_profile("default").unwrap();
    assert_eq!(
        common::leaks::run_cgroups_of(child.id()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
#[ignore = "needs root"]
fn status_inherits_the_output_and_still_reports() {
    common::require_root();
    let sb = Sandbox::from_profile("default").unwrap();
    let out = sb.command("sh").args(["-c", "exit 4"]).status().unwrap();
    assert_eq!(out.status, ExitStatus::Exited(4));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    assert!(out.report.fully_enforced());
    let captured = sb
        .command("echo")
        .arg("hi")
        .stdout(Stdio::Piped)
        .status()
        .unwrap();
    assert_eq!(captured.stdout, b"hi\n", "an explicit Piped is captured");
}

#[test]
#[ignore = "needs root"]
fn sysv_ipc_objects_die_with_the_run() {
    common::require_root();
    let host_objects = || {
        ["shm", "msg", "sem"]
            .iter()
            .map(|k| {
                std::fs::read_to_string(format!("/proc/sysvipc/{k}"))
                    .unwrap()
                    .lines()
                    .count()
            })
            .sum::<usize>()
    };
    let before = host_objects();
    let sb = Sandbox::from_profile("default").unwrap();
    // A shared memory segment, a message queue and a semaphore set, seen
    // from inside: /proc/sysvipc has a header line and one line each.
    let made = sh(
        &sb,
        "ipcmk -M 4096 >/dev/null && ipcmk -Q >/dev/null && ipcmk -S 1 >/dev/null && cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem | wc -l",
    );
    assert!(made.success(), "{made:?}");
    assert_eq!(stdout(&made).trim(), "6", "three objects made inside");
    assert_eq!(host_objects(), before, "none of them on the host");
    // The next run's ipc namespace is empty: they died with the first.
    let next = sh(
        &sb,
        "cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem | wc -l",
    );
    assert_eq!(stdout(&next).trim(), "3", "only the three headers");
}

#[test]
#[ignore = "needs root"]
fn the_cpu_limit_comes_from_a_cgroup() {
    common::require_root();
    let limited = sandbox("[resources]\ncpu = 20\n");
    if !limited.report().fully_enforced() {
        eprintln!("skipped: {}", limited.report());
        return;
    }
    assert!(
        limited
            .report()
            .resources
            .mechanisms
            .iter()
            .any(|m| m.starts_with("cpu 20% of one CPU: cgroup")),
        "{}",
        limited.report()
    );
    // Three seconds of spinning: at 20 % of a CPU it gets about 0.6 s of
    // it (long enough that starting sh and timeout, which costs up to half
    // a second of CPU under emulation, does not decide the comparison).
    let spin = "timeout 3 sh -c 'while :; do :; done'; true";
    let capped = sh(&limited, spin);
    // Control: the same spin without the limit (as far as this machine's
    // load lets it run).
    let free = sh(&sandbox("[resources]\ncpu = \"unlimited\"\n"), spin);
    let (capped_s, free_s) = (capped.cpu_time.as_secs_f64(), free.cpu_time.as_secs_f64());
    println!("3 s of spinning: {capped_s:.2} s of CPU at 20 %, {free_s:.2} s unlimited");
    // Against the control, not an absolute figure: under emulation (the
    // kernel matrix) starting sh and timeout costs CPU time of its own.
    assert!(
        capped_s < free_s * 0.5,
        "capped {capped_s:.2} s against {free_s:.2} s unlimited"
    );
}

/// The run's cgroups in the unified hierarchy (`sandbox-<pid>-*`).
fn unified_run_cgroups() -> Vec<std::path::PathBuf> {
    let Some(u) = &sandbox_core::probe().cgroups.unified else {
        return Vec::new();
    };
    common::leaks::run_cgroups_of(std::process::id())
        .into_iter()
        .filter(|d| d.starts_with(&u.mount))
        .collect()
}

#[test]
#[ignore = "needs root"]
fn the_unified_hierarchy_tracks_the_run_and_cgroup_kill_ends_it() {
    common::require_root();
    let sb = sandbox("[resources]\npids = 32\n");
    if !sb
        .report()
        .resources
        .mechanisms
        .iter()
        .any(|m| m.contains("cgroup.kill"))
    {
        eprintln!(
            "skipped: no writable unified hierarchy here: {}",
            sb.report()
        );
        return;
    }
    let mut child = sb
        .command("sh")
        .args(["-c", "sleep 60 & sleep 60 & wait"])
        .spawn()
        .unwrap();
    // The run's v2 cgroup (the one holding its PID 1: other tests' runs
    // have theirs) is populated: init, the shell, two sleeps.
    let init = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let dir = loop {
        let found: Vec<_> = unified_run_cgroups()
            .into_iter()
            .filter(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .is_ok_and(|p| p.lines().any(|l| l == init) && p.lines().count() >= 4)
            })
            .collect();
        if let Some(dir) = found.into_iter().next() {
            break dir;
        }
        assert!(Instant::now() < deadline, "no populated run cgroup");
        std::thread::sleep(Duration::from_millis(20));
    };
    let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
    assert!(events.contains("populated 1"), "{events}");
    // cgroup.kill, from outside, ends every process of the run at once.
    std::fs::write(dir.join("cgroup.kill"), "1").unwrap();
    let started = Instant::now();
    let out = child.wait().unwrap();
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGKILL), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Torn down: the directory is gone.
    assert!(!dir.exists(), "{} removed after the run", dir.display());
}

/// `mq_open(name, flags, 0600, NULL)` in perl (x86_64 syscall 240; the
/// kernel takes the name without libc's leading `/`): prints `fd N` or the
/// error.
fn perl_mq_open(name: &str, create: bool) -> String {
    let flags = if create { "0102" } else { "02" }; // O_CREAT|O_RDWR, O_RDWR
    format!(
        "perl -e '$n = \"{name}\"; $r = syscall(240, $n, {flags}, 0600, 0); print $r < 0 ? \"error $!\\n\" : \"fd $r\\n\"'"
    )
}

#[test]
#[ignore = "needs root"]
#[cfg(target_arch = "x86_64")]
fn posix_message_queues_die_with_the_run() {
    common::require_root();
    let name = "sandbox-core-test-queue";
    // With Landlock (the default), a queue is a file outside every allowed
    // path: refused outright.
    let refused = sh(
        &Sandbox::from_profile("default").unwrap(),
        &perl_mq_open(name, true),
    );
    assert!(
        stdout(&refused).contains("Permission denied"),
        "{}",
        stdout(&refused)
    );
    // Without it, queues work inside and die with the ipc namespace.
    let sb = sandbox("[privilege]\nlandlock = \"off\"\n");
    // Made inside (and opened again in the same run) …
    let made = sh(
        &sb,
        &format!(
            "{} && {}",
            perl_mq_open(name, true),
            perl_mq_open(name, false)
        ),
    );
    let text = stdout(&made);
    assert!(
        text.lines().count() == 2 && text.lines().all(|l| l.starts_with("fd ")),
        "{text}{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // … gone in the next run's ipc namespace, and never on the host.
    let next = sh(&sb, &perl_mq_open(name, false));
    assert!(stdout(&next).contains("No such file"), "{}", stdout(&next));
    let host = std::process::Command::new("sh")
        .args(["-c", &perl_mq_open(name, false)])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&host.stdout).contains("No such file"),
        "{host:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn without_a_pids_cgroup_a_run_uid_of_its_own_makes_rlimit_nproc_per_sandbox() {
    common::require_root();
    // This host, with no pids cgroup anywhere (as on hosts without one).
    let mut host = sandbox_core::probe().clone();
    for h in &mut host.cgroups.v1 {
        h.controllers.retain(|c| c != "pids");
    }
    if let Some(u) = host.cgroups.unified.as_mut() {
        u.controllers.retain(|c| c != "pids");
        if let Some(p) = u.placement.as_mut() {
            p.controllers.retain(|c| c != "pids");
        }
    }
    let sb = Sandbox::with_host(
        sandbox_policy::Policy::from_toml_str("[resources]\npids = 16\n").unwrap(),
        &host,
    )
    .unwrap();
    assert!(sb.report().fully_enforced(), "{}", sb.report());
    assert!(
        sb.report()
            .resources
            .mechanisms
            .iter()
            .any(|m| m.starts_with("pids 16: RLIMIT_NPROC")),
        "{}",
        sb.report()
    );
    // The limit holds …
    let out = sh(
        &sb,
        &format!("awk '{{print $2}}' /proc/self/uid_map | tail -n 1; {PERL_FORKS}"),
    );
    let text = stdout(&out);
    assert!(
        out.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    let host_uid: u32 = lines.next().unwrap().parse().unwrap();
    let started: usize = lines.next().unwrap().trim().parse().unwrap();
    assert!(host_uid >= 1 << 30, "a run uid of its own: {host_uid}");
    assert!(
        (10..16).contains(&started),
        "16 at most, perl and init among them: {started}"
    );
    // … per sandbox: two at once each start 10, which a shared count (20
    // against 16) would refuse.
    let both: Vec<_> = (0..2)
        .map(|_| {
            let sb = sb.clone();
            std::thread::spawn(move || {
                sh(
                    &sb,
                    "perl -e 'for (1..10) { my $p = fork; last unless defined $p; if (!$p) { sleep 1; exit } $n++ } print \"$n\\n\"; wait'",
                )
            })
        })
        .collect();
    for h in both {
        let out = h.join().unwrap();
        assert_eq!(stdout(&out).trim(), "10", "{out:?}");
    }
}

/// Where this process's runs go beneath a transient systemd scope: the
/// slice holding that scope (and the scopes of other processes).
fn scope_slice() -> Option<std::path::PathBuf> {
    let u = sandbox_core::probe().cgroups.unified.as_ref()?;
    let p = u.placement.as_ref()?;
    matches!(
        p.strategy,
        sandbox_core::CgroupStrategy::SystemdSystemScope
            | sandbox_core::CgroupStrategy::SystemdUserScope
    )
    .then(|| {
        u.mount
            .join(&p.parent)
            .parent()
            .map(std::path::Path::to_path_buf)
    })
    .flatten()
}

/// The scopes `pid` made in `slice` (`sandbox-<pid>-<n>.scope`).
fn scopes_of(slice: &std::path::Path, pid: u32) -> impl Iterator<Item = std::path::PathBuf> {
    let prefix = format!("sandbox-{pid}-");
    std::fs::read_dir(slice)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(move |e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name.ends_with(".scope")
        })
        .map(|e| e.path())
}
