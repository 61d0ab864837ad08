#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs real sandboxes (real namespaces, mounts, seccomp, Landlock,
//! cgroups) and observes each layer from inside. Needs root, as in CI;
//! the unprivileged path runs in a child process as `nobody`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use sandbox_core::{Error, ExitStatus, Layer, RunOutcome, Sandbox, Stdio};
use sandbox_policy::Policy;

fn sandbox(toml: &str) -> Sandbox {
    Sandbox::new(Policy::from_toml_str(toml).unwrap()).unwrap()
}

/// A sandbox decided against this host with `/dev/net/tun` unusable (as on
/// hosts where it is root's only and the caller is not).
fn sandbox_without_tun(toml: &str) -> Sandbox {
    let mut host = sandbox_core::probe().clone();
    host.tun = sandbox_core::Capability::Unavailable {
        reason: "open /dev/net/tun: Permission denied (as on a host without tun)".into(),
    };
    Sandbox::with_host(Policy::from_toml_str(toml).unwrap(), &host).unwrap()
}

fn sh(sandbox: &Sandbox, script: &str) -> RunOutcome {
    sandbox.command("sh").args(["-c", script]).output().unwrap()
}

fn stdout(outcome: &RunOutcome) -> String {
    String::from_utf8_lossy(&outcome.stdout).into_owned()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips (with a message) a test that needs root where it is not root.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (CI runs as root)");
            return;
        }
    };
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_string()
}

#[test]
fn privilege_layer_seen_from_inside() {
    require_root!();
    let out = sh(
        &Sandbox::from_profile("default").unwrap(),
        "cat /proc/self/status; echo ---; cat /proc/self/uid_map; echo ---; id -u; id -g; hostname; \
         tr -d '\\0' < /proc/1/cmdline | wc -c; cat /proc/1/comm; \
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
    assert!(
        lines.contains(&vec!["65534", "65534", "1"]),
        "the sandbox user is the host's nobody: {uid_map}"
    );
    assert!(
        lines.iter().all(|l| l[2] == "1"),
        "single ids only: {uid_map}"
    );
    let rest: Vec<&str> = parts.next().unwrap().lines().collect();
    assert_eq!(rest[..3], ["65534", "65534", "sandbox"]);
    // PID 1 is a copy of the caller: its command line is zeroed, its name
    // is its own, its environment unreadable.
    assert_eq!(
        rest[3], "0",
        "no byte of the caller's argv in /proc/1/cmdline"
    );
    assert_eq!(rest[4], "sandbox-init");
    assert_eq!(rest[5], "denied");
    assert!(out.report.fully_enforced(), "{}", out.report);
}

#[test]
fn filesystem_layer_seen_from_inside() {
    require_root!();
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
fn network_none_has_only_loopback_up() {
    require_root!();
    let out = sh(
        &Sandbox::from_profile("default").unwrap(),
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/operstate 2>/dev/null; \
         grep -c . /proc/net/route",
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "lo", "{text}");
    assert_eq!(
        lines.last(),
        Some(&"1"),
        "only the header of an empty route table: {text}"
    );
    // Control: with network = host, the host's interfaces are there.
    let host = sh(
        &sandbox("[network]\nmode = \"host\"\n"),
        "tail -n +3 /proc/net/dev | wc -l",
    );
    let host_ifaces: usize = stdout(&host).trim().parse().unwrap();
    let host_count = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count()
        - 2;
    assert_eq!(host_ifaces, host_count);
}

#[test]
#[allow(unsafe_code)]
fn only_stdio_fds_reach_the_command_and_env_follows_the_policy() {
    require_root!();
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
fn rlimits_and_exit_statuses() {
    require_root!();
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
fn output_is_capped_and_the_command_is_never_blocked() {
    require_root!();
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

/// The pids of processes whose command line contains `marker`.
fn pids_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn processes_with(marker: &str) -> usize {
    pids_with(marker).len()
}

#[test]
fn wall_time_kills_a_forking_tree_that_ignores_sigterm() {
    require_root!();
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
fn the_run_ends_when_the_command_ends_and_takes_its_background_processes() {
    require_root!();
    let sb = Sandbox::from_profile("default").unwrap();
    let started = Instant::now();
    let out = sh(&sb, "sleep 4343.5 & sleep 4343.5 & echo started");
    assert!(out.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(processes_with("4343.5"), 0);
}

#[test]
fn fifty_sandboxes_at_once_from_many_threads() {
    require_root!();
    let sb = Sandbox::from_profile("default").unwrap();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let sb = sb.clone();
            std::thread::spawn(move || {
                sb.command("sh")
                    .args([
                        "-c",
                        &format!("echo {i} $$; cat /proc/self/uid_map | wc -l"),
                    ])
                    .output()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.join().unwrap().unwrap();
        assert!(out.success(), "run {i}: {out:?}");
        // The shell is PID 2 of its own pid namespace (PID 1 is the reaper).
        assert_eq!(stdout(&out), format!("{i} 2\n2\n"));
    }
}

#[test]
fn fail_closed_refuses_before_anything_runs() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let binds = format!(
        "[filesystem]\nbinds = [{{ source = \"{}\", target = \"/out\", writable = true }}]\n",
        dir.path().display()
    );
    let marker = dir.path().join("ran");
    let script = "touch /out/ran";
    // Refused: allowlisted egress on a host without /dev/net/tun (this
    // host's probe, with tun marked unavailable).
    let refused = sandbox_without_tun(&format!("{binds}[network]\nmode = \"allowlist\"\n"));
    assert!(!refused.report().fully_enforced());
    let err = refused
        .command("sh")
        .args(["-c", script])
        .output()
        .unwrap_err();
    let Error::Unavailable { downgrades } = &err else {
        panic!("{err}")
    };
    assert_eq!(downgrades[0].layer, Layer::Network);
    assert!(
        err.to_string().contains("allowlist") && err.to_string().contains("tun"),
        "{err}"
    );
    assert!(!marker.exists(), "nothing ran");
    // Control: the same policy without the unavailable layer runs it.
    let control = sandbox(&binds);
    assert!(sh(&control, script).success());
    assert!(marker.exists());
    // The file was created by the host's nobody, not by root.
    assert_eq!(std::fs::metadata(&marker).unwrap().uid(), 65534);
}

#[test]
fn degrade_runs_and_lists_the_downgrade() {
    require_root!();
    let sb = sandbox_without_tun("on_unavailable = \"degrade\"\n[network]\nmode = \"allowlist\"\n");
    let out = sh(&sb, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    assert!(out.success());
    assert_eq!(
        stdout(&out),
        "lo\n",
        "downgraded to no network, never to an open one"
    );
    assert!(!out.report.network.enforced);
    assert!(out.report.filesystem.enforced);
    assert_eq!(out.report.downgrades.len(), 1);
    let json: serde_json::Value = serde_json::from_str(&out.report.to_json_string()).unwrap();
    assert_eq!(json["downgrades"][0]["layer"], "network");
    assert_eq!(json["policy"]["network"]["mode"], "allowlist");
}

#[test]
fn setup_failures_are_typed_and_name_the_step() {
    require_root!();
    let sb = Sandbox::from_profile("default").unwrap();
    let err = sb.command("no-such-program").output().unwrap_err();
    assert!(
        matches!(&err, Error::Setup { step, source } if step.contains("no-such-program") && source.raw_os_error() == Some(libc::ENOENT)),
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
fn a_symlink_planted_in_a_bind_source_cannot_redirect_a_mount() {
    require_root!();
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
        matches!(&err, Error::Setup { step, source } if step.contains("/work/link/sub") && source.raw_os_error() == Some(libc::ELOOP)),
        "{err}"
    );
    // A mask on the symlink itself.
    let mask = sandbox(&format!("{bind}mask = [\"/work/link\"]\n"));
    let err = mask.command("true").output().unwrap_err();
    assert!(
        matches!(&err, Error::Setup { source, .. } if source.raw_os_error() == Some(libc::ELOOP)),
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
fn spawn_kill_and_stdin() {
    require_root!();
    let sb = Sandbox::from_profile("default").unwrap();
    let child = sb.command("sleep").arg("4444.5").spawn().unwrap();
    assert!(child.id() > 1);
    assert_eq!(processes_with("4444.5"), 1);
    child.kill().unwrap();
    let out = child.wait().unwrap();
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGKILL));
    assert!(!out.timed_out);
    assert_eq!(processes_with("4444.5"), 0);

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

#[test]
fn strict_seccomp_runs_interpreters_and_refuses_the_rest() {
    require_root!();
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
fn memory_and_pids_limits_come_from_cgroups() {
    require_root!();
    let sb = sandbox("[resources]\npids = 16\nmemory = \"64MiB\"\n");
    if !sb.report().fully_enforced() {
        eprintln!("skipped: {}", sb.report());
        return;
    }
    let out = sh(
        &sb,
        "for i in $(seq 40); do sleep 5 & done 2>/dev/null; jobs -p | wc -l",
    );
    let started: usize = stdout(&out).trim().parse().unwrap_or(0);
    assert!(started < 16, "at most 16 tasks: {}", stdout(&out));
    let hog = sh(&sb, "head -c 200000000 /dev/zero | tail > /dev/null");
    assert!(hog.oom_killed, "{hog:?}");
    assert!(hog.peak_memory.unwrap() <= 64 << 20);
    // Control: a small job is not killed.
    let fine = sh(&sb, "head -c 1000000 /dev/zero | tail > /dev/null");
    assert!(fine.success() && !fine.oom_killed);
}

#[test]
fn unprivileged_caller_runs_a_degraded_default() {
    if std::env::var_os("SBX_CHILD_UNPRIVILEGED").is_some() {
        unprivileged_child();
        return;
    }
    require_root!();
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "unprivileged_caller_runs_a_degraded_default",
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
fn host_readonly_shows_the_host_tree_read_only() {
    require_root!();
    let sb = sandbox("[filesystem]\nmode = \"host-readonly\"\n");
    let out = sh(
        &sb,
        "ls /; echo ---; { echo x > /var/tmp/sbx-test; } 2>&1; ls -d /proc/[0-9]* | wc -l; ls /dev | wc -l",
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
    assert!(!Path::new("/var/tmp/sbx-test").exists());
    let procs: usize = lines[1].trim().parse().unwrap();
    assert!(procs <= 4, "only the sandbox's processes: {procs}");
    let devs: usize = lines[2].trim().parse().unwrap();
    assert!(devs < 20, "a minimal /dev: {devs} entries");
}

#[test]
fn filesystem_off_shares_the_host_view_with_a_fresh_proc() {
    require_root!();
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
fn landlock_scopes_abstract_unix_sockets_to_the_sandbox() {
    require_root!();
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
fn parent_death_kills_the_sandbox() {
    if std::env::var_os("SBX_CHILD_PARENT_DEATH").is_some() {
        let sb = Sandbox::from_profile("default").unwrap();
        let _child = sb.command("sleep").arg("4646.5").spawn().unwrap();
        println!("READY");
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    require_root!();
    use std::io::{BufRead, BufReader};
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args(["--exact", "parent_death_kills_the_sandbox", "--nocapture"])
        .env("SBX_CHILD_PARENT_DEATH", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("READY")));
    assert_eq!(processes_with("4646.5"), 1, "the sandbox runs");
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
}

#[test]
fn status_inherits_the_output_and_still_reports() {
    require_root!();
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
fn allowlisted_egress_reaches_only_what_is_allowed() {
    require_root!();
    use std::io::{Read, Write};
    // Everything happens in a network namespace this test makes (the
    // forwarder's host sockets live where the caller is): servers on
    // 198.18.1.1 and 198.18.2.2 on its loopback.
    std::thread::spawn(|| {
        sandbox_net::unshare_network_namespace().unwrap();
        let rtnl = sandbox_net::Rtnetlink::open().unwrap();
        let mut setup = sandbox_net::Requests::new();
        setup
            .set_link(
                sandbox_net::Link::Name("lo"),
                sandbox_net::LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )
            .unwrap();
        for addr in ["198.18.1.1", "198.18.2.2"] {
            setup
                .add_address(sandbox_net::Link::Index(1), addr.parse().unwrap(), 32)
                .unwrap();
        }
        rtnl.execute(&setup).unwrap();
        for addr in ["198.18.1.1:80", "198.18.2.2:80"] {
            let listener = std::net::TcpListener::bind(addr).unwrap();
            std::thread::spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    let mut buf = [0u8; 512];
                    let _ = stream.read(&mut buf);
                    let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello from the world\n");
                }
            });
        }
        // Control: both answer here.
        for addr in ["198.18.1.1:80", "198.18.2.2:80"] {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            assert!(reply.contains("hello from the world"), "control {addr}");
        }
        let sb = sandbox(
            "[network]\nmode = \"allowlist\"\nallow = [\"198.18.1.1/32:80/tcp\"]\n",
        );
        assert!(sb.report().network.enforced, "{}", sb.report());
        let script = "for h in 198.18.1.1 198.18.2.2; do \
            if out=$(timeout 3 bash -c \"exec 3<>/dev/tcp/$h/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3\" 2>&1); \
            then echo \"$h: $(echo \"$out\" | tail -n 1)\"; else echo \"$h: blocked\"; fi; done; \
            ip=$(cat /proc/net/fib_trie | grep -c 10.0.2.100); echo addr=$ip";
        let out = sb.command("bash").args(["-c", script]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("198.18.1.1: hello from the world"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("198.18.2.2: blocked"), "{text}");
        assert!(!text.contains("addr=0"), "tap0 has 10.0.2.100: {text}");
    })
    .join()
    .unwrap();
}
