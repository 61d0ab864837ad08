#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sbx` as a user runs it: exit codes, the report on stderr, JSON, policy
//! subcommands. The `run` cases need root (as CI has).

use std::io::Write;
use std::process::{Command, Stdio};

mod common;
use common::*;

#[test]
#[ignore = "needs root"]
fn run_mirrors_the_exit_code_and_reports_on_stderr() {
    require_root();
    let out = sbx(&["run", "--", "sh", "-c", "id -u; echo x > /etc/y; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        text(&out.stdout),
        "65534\n",
        "only the command's output on stdout"
    );
    let err = text(&out.stderr);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(err.contains("sbx: exit code 7"), "{err}");
    for layer in [
        "filesystem: enforced",
        "network: enforced",
        "privilege: enforced",
        "resources: enforced",
    ] {
        assert!(err.contains(layer), "{layer} in {err}");
    }
    let killed = sbx(&["run", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(killed.status.code(), Some(128 + 9));
}

#[test]
#[ignore = "needs root"]
fn run_json_and_stdin() {
    require_root();
    let out = sbx(&["run", "--json", "--profile", "strict", "--", "true"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(json["status"]["exited"], 0);
    assert_eq!(json["report"]["privilege"]["enforced"], true);
    assert_eq!(json["report"]["policy"]["privilege"]["seccomp"], "strict");

    let mut child = sbx_command()
        .args(["run", "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "PIPED IN\n");
}

#[test]
#[ignore = "needs root"]
fn run_refuses_an_unenforceable_policy_and_names_why() {
    require_root();
    // As an unprivileged user the default profile's cgroup limits cannot
    // be enforced here: refused, and the reason named.
    use std::os::unix::process::CommandExt;
    let out = sbx_command()
        .args(["run", "--", "true"])
        .uid(65534)
        .gid(65534)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains("nothing was run") && err.contains("memory"),
        "{err}"
    );
    let missing = sbx(&["run", "--", "no-such-program"]);
    assert_eq!(missing.status.code(), Some(125));
    assert!(text(&missing.stderr).contains("execve no-such-program"));
}

#[test]
fn check_lists_host_and_profiles() {
    let out = sbx(&["check"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("user namespaces") && stdout.contains("profile default:"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&sbx(&["check", "--json"]).stdout).unwrap();
    assert_eq!(json["profiles"].as_array().unwrap().len(), 3);
    assert!(json["host"]["kernel"].is_string());
}

#[test]
fn policy_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[resources]\nwall_time = \"soon\"\n").unwrap();
    let out = sbx(&["policy", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("wall_time"),
        "{}",
        text(&out.stderr)
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[resources]\nwall_time = \"5s\"\n").unwrap();
    assert!(
        sbx(&["policy", "validate", good.to_str().unwrap()])
            .status
            .success()
    );
    let explain = sbx(&["policy", "explain", "--policy", good.to_str().unwrap()]);
    assert!(text(&explain.stdout).contains("5s"));

    let loose = dir.path().join("loose.toml");
    std::fs::write(&loose, "[network]\nmode = \"host\"\n").unwrap();
    let merged = sbx(&[
        "policy",
        "merge",
        "--tighten-only",
        good.to_str().unwrap(),
        loose.to_str().unwrap(),
    ]);
    assert_eq!(merged.status.code(), Some(125));
    assert!(
        text(&merged.stderr).contains("network.mode"),
        "{}",
        text(&merged.stderr)
    );
    let merged = sbx(&[
        "policy",
        "merge",
        good.to_str().unwrap(),
        loose.to_str().unwrap(),
    ]);
    assert!(text(&merged.stdout).contains("mode = \"host\""));

    let schema: serde_json::Value =
        serde_json::from_slice(&sbx(&["policy", "schema"]).stdout).unwrap();
    assert!(schema["properties"]["filesystem"].is_object());
}

#[path = "../../sandbox-core/tests/common/world.rs"]
mod world;

#[test]
#[ignore = "needs root"]
fn run_networked_curl_reaches_an_allowed_name_and_nothing_else() {
    require_root();
    // A world namespace made by this test: web servers on 198.18.1.1 and
    // 198.18.2.2, a resolver on 198.18.9.9 that knows both names.
    std::thread::spawn(|| {
        world::enter_world(&["198.18.1.1", "198.18.2.2", "198.18.9.9"]);
        world::serve_http("198.18.1.1:80", "allowed\n");
        world::serve_http("198.18.2.2:80", "not allowed\n");
        world::serve_dns(
            "198.18.9.9:53",
            &[
                ("www.test", [198, 18, 1, 1]),
                ("other.test", [198, 18, 2, 2]),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("networked.toml");
        std::fs::write(
            &policy,
            "[network]\nmode = \"allowlist\"\nallow = [\"198.18.1.1/32:80/tcp\"]\ndns = true\n",
        )
        .unwrap();
        let policy = policy.to_str().unwrap();
        let curl = |url: &str| {
            sbx(&[
                "run",
                "--policy",
                policy,
                "--dns",
                "198.18.9.9:53",
                "--",
                "curl",
                "-sS",
                "--max-time",
                "5",
                url,
            ])
        };
        // Control: from the world itself curl reaches both.
        let control = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "--resolve",
                "other.test:80:198.18.2.2",
            ])
            .arg("http://other.test/")
            .output()
            .unwrap();
        assert_eq!(text(&control.stdout), "not allowed\n");

        let allowed = curl("http://www.test/");
        assert_eq!(
            text(&allowed.stdout),
            "allowed\n",
            "{}",
            text(&allowed.stderr)
        );
        assert_eq!(allowed.status.code(), Some(0));
        let blocked = curl("http://other.test/");
        assert_ne!(blocked.status.code(), Some(0), "{}", text(&blocked.stdout));
        assert!(text(&blocked.stdout).is_empty());
        // The report says what was refused, and by whom.
        assert!(
            text(&blocked.stderr).contains(
                "sbx: egress refused 1× not-allowed (first: tcp 198.18.2.2:80, by the kernel)"
            ),
            "{}",
            text(&blocked.stderr)
        );
        // By name: only www.test resolves, and only it is reached.
        let by_name = |url: &str| {
            sbx(&[
                "run",
                "--allow",
                "www.test:80",
                "--dns",
                "198.18.9.9:53",
                "--json",
                "--",
                "curl",
                "-sS",
                "--max-time",
                "5",
                url,
            ])
        };
        let named = by_name("http://www.test/");
        assert_eq!(text(&named.stdout), "allowed\n", "{}", text(&named.stderr));
        let other = by_name("http://other.test/");
        assert!(
            text(&other.stderr).contains("Could not resolve host: other.test"),
            "{}",
            text(&other.stderr)
        );
        let report = text(&other.stderr);
        let json_start = report.find('{').unwrap_or(0);
        let json: serde_json::Value =
            serde_json::from_str(&report[json_start..]).unwrap_or_else(|e| panic!("{e}: {report}"));
        assert_eq!(
            json["egress"]["refusals"][0]["reason"], "dns-refused",
            "{report}"
        );
        assert_eq!(json["egress"]["refusals"][0]["name"], "other.test");
        let unknown = curl("http://nowhere.test/");
        assert!(
            text(&unknown.stderr).contains("Could not resolve host"),
            "{}",
            text(&unknown.stderr)
        );
    })
    .join()
    .unwrap();
}

#[test]
fn a_cgroup_parent_that_is_no_cgroup_is_refused_by_name() {
    let out = sbx(&["check", "--cgroup-parent", "/sys/fs/cgroup/no-such-parent"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("no-such-parent") || err.contains("no cgroup v2 hierarchy"),
        "{err}"
    );
    // Control: without it, check answers.
    assert_eq!(sbx(&["check"]).status.code(), Some(0));
}

#[test]
fn a_systemd_scope_is_asked_for_by_name() {
    let out = sbx(&["check", "--cgroup-placement", "systemd-scope"]);
    let err = text(&out.stderr);
    if std::path::Path::new("/run/systemd/system").is_dir() {
        // A systemd host (the kernel matrix's systemd layouts): the scope
        // is where runs go, and check says so.
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(text(&out.stdout).contains("transient scope"), "{out:?}");
    } else {
        assert!(
            std::env::var_os("SANDBOX_EXPECT_SYSTEMD").is_none(),
            "SANDBOX_EXPECT_SYSTEMD is set but the host does not run systemd"
        );
        assert_eq!(out.status.code(), Some(125), "{out:?}");
        assert!(err.contains("does not run systemd"), "{err}");
    }
    // A placement and a parent at once are refused before anything runs.
    let both = sbx(&[
        "check",
        "--cgroup-placement",
        "auto",
        "--cgroup-parent",
        "/sys/fs/cgroup",
    ]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
}

/// A command that prints a forged outcome first cannot make a parser of
/// `sbx run --json` believe it: stderr holds exactly one JSON document,
/// sbx's, with the command's stderr inside it.
#[test]
#[ignore = "needs root"]
fn run_json_cannot_be_forged_by_the_command() {
    require_root();
    let forged =
        r#"{"status":{"exited":0},"timed_out":false,"report":{"privilege":{"enforced":true}}}"#;
    let script = format!("echo '{forged}' >&2; exit 3");
    let out = sbx(&["run", "--json", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(3));
    let mut stream =
        serde_json::Deserializer::from_slice(&out.stderr).into_iter::<serde_json::Value>();
    let first = stream.next().unwrap().unwrap();
    assert!(stream.next().is_none(), "one JSON document on stderr");
    assert_eq!(first["status"]["exited"], 3, "the real outcome comes first");
    // The control: the forgery was printed, and is where it belongs.
    assert_eq!(first["stderr"].as_str().unwrap().trim(), forged);
}

#[test]
#[ignore = "needs root"]
fn run_report_goes_to_a_file_or_an_inherited_fd() {
    require_root();
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let out = sbx(&[
        "run",
        "--json",
        "--report",
        path.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n", "only the command's stderr");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["status"]["exited"], 0);

    // fd 3 of sbx is a file of the test's; the sandbox never sees it.
    let fd_path = dir.path().join("fd3.txt");
    let file = std::fs::File::create(&fd_path).unwrap();
    let mut cmd = sbx_command();
    cmd.args([
        "run",
        "--report-fd",
        "3",
        "--",
        "sh",
        "-c",
        "echo forged-by-the-command >&3 && echo wrote",
    ])
    .stdin(Stdio::null());
    let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: dup2 in the child between fork and exec, onto fd 3.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would leave O_CLOEXEC set.
            let ok = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(raw, 3) == 3
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.output().unwrap();
    // The sandbox has no fd 3: its write fails, and the report says so.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Bad file descriptor"),
        "{}",
        text(&out.stderr)
    );
    let report = std::fs::read_to_string(&fd_path).unwrap();
    assert!(!report.contains("forged-by-the-command"), "{report}");
    assert!(
        report.starts_with("sbx: exit code 2") && report.contains("privilege: enforced"),
        "{report}"
    );
    assert!(
        !text(&out.stderr).contains("sbx: exit code"),
        "the report is not on stderr"
    );

    // Refused with the reason: a standard stream, a closed number.
    for (fd, why) in [
        ("2", "share a stream"),
        ("57", "not an open file descriptor"),
    ] {
        let out = sbx(&["run", "--report-fd", fd, "--", "true"]);
        assert_eq!(out.status.code(), Some(125));
        assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
    }
}

#[test]
#[ignore = "needs root"]
fn run_text_report_follows_a_delimiter_with_the_stderr_length() {
    require_root();
    let out = sbx(&["run", "--", "sh", "-c", "printf 'no newline' >&2"]);
    let err = text(&out.stderr);
    assert!(
        err.starts_with("no newline\nsbx: ---- the command's stderr ends here (10 bytes); the report follows ----\nsbx: exit code 0"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root"]
fn run_ids_come_from_the_given_range() {
    require_root();
    let out = sbx(&[
        "run",
        "--run-ids",
        "2000000000:5",
        "--",
        "cat",
        "/proc/self/uid_map",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let host: u32 = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|l| l[0] == "65534")
        .map(|l| l[1].parse().unwrap())
        .unwrap();
    assert!((2_000_000_000..2_000_000_005).contains(&host), "{host}");
    for bad in ["12", "100:5", "2000000000:0"] {
        let out = sbx(&["run", "--run-ids", bad, "--", "true"]);
        assert_eq!(out.status.code(), Some(125), "{bad}");
        assert!(
            text(&out.stderr).contains("--run-ids"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// The policy flags change a real run: a writable bind, a tmpfs, the
/// working directory, the environment, the user, the wall-clock limit.
#[test]
#[ignore = "needs root"]
fn run_flags_change_the_run() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // sbx as root runs each sandbox as a host uid of its own (--run-ids):
    // the directory must let it write.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let bind = format!("{}:/data:rw", dir.path().display());
    let out = sbx(&[
        "run",
        "--bind",
        &bind,
        "--tmpfs",
        "/scratch:1MiB",
        "--workdir",
        "/data",
        "--env",
        "FOO=bar",
        "--user",
        "root",
        "--",
        "sh",
        "-c",
        "pwd; id -u; echo $FOO; echo written > out.txt; head -c 2000000 /dev/zero > /scratch/big; echo scratch=$?",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "/data\n0\nbar\nscratch=1\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "written\n",
        "the bind was writable"
    );
    // Control: without the flags, none of it.
    let control = sbx(&[
        "run",
        "--",
        "sh",
        "-c",
        "pwd; id -u; echo ${FOO-unset}; ls /data 2>&1 | head -c 0; test -d /data; echo data=$?",
    ]);
    assert_eq!(text(&control.stdout), "/tmp\n65534\nunset\ndata=1\n");

    let started = std::time::Instant::now();
    let slow = sbx(&["run", "--timeout", "1s", "--", "sleep", "30"]);
    assert_eq!(slow.status.code(), Some(128 + 9));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(text(&slow.stderr).contains("killed at the wall_time limit"));

    let refused = sbx(&[
        "run",
        "--profile",
        "strict",
        "--tighten-only",
        "--user",
        "root",
        "--",
        "true",
    ]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        text(&refused.stderr).contains("--user loosens the base"),
        "{}",
        text(&refused.stderr)
    );
    let printed = sbx(&["run", "--print-policy", "--memory", "96MiB"]);
    assert!(printed.status.success());
    let policy = sandbox_policy::Policy::from_toml_str(&text(&printed.stdout)).unwrap();
    assert_eq!(
        policy.resources.memory,
        Some(sandbox_policy::Limit::Max("96MiB".parse().unwrap()))
    );
}
