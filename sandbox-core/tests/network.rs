#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The network layer: no network, the host's, allowlisted egress through
//! the forwarder, and refusal or degradation where the host cannot.
//! Needs root, as in CI.
use std::os::unix::fs::MetadataExt;

use sandbox_core::{Error, Layer, Sandbox};

mod common;
use common::world::*;
use common::*;

#[test]
#[ignore = "needs root"]
fn network_none_has_only_loopback_up() {
    common::require_root();
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
#[ignore = "needs root"]
fn fail_closed_refuses_before_anything_runs() {
    common::require_root();
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
    // The file was created by the run's own host uid, not by root.
    assert!(std::fs::metadata(&marker).unwrap().uid() >= 1 << 30);
}

#[test]
#[ignore = "needs root"]
fn degrade_runs_and_lists_the_downgrade() {
    common::require_root();
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
#[ignore = "needs root"]
fn allowlisted_egress_reaches_only_what_is_allowed() {
    common::require_root();
    // Everything happens in a network namespace this test makes (the
    // forwarder's host sockets live where the caller is): servers on
    // 198.18.1.1 and 198.18.2.2 and a resolver on 198.18.9.9, on its
    // loopback.
    std::thread::spawn(|| {
        enter_world(&["198.18.1.1", "198.18.2.2", "198.18.9.9"]);
        serve_http("198.18.1.1:80", "hello from the world\n");
        serve_http("198.18.2.2:80", "hello from the world\n");
        serve_dns(
            "198.18.9.9:53",
            &[("svc.test", [198, 18, 1, 1]), ("other.test", [198, 18, 2, 2])],
        );
        // Controls: both answer here, and the resolver knows both names.
        for addr in ["198.18.1.1:80", "198.18.2.2:80"] {
            assert_eq!(http_get(addr), "hello from the world\n", "control {addr}");
        }
        assert_eq!(
            dns_lookup("198.18.9.9:53", "other.test"),
            Some("198.18.2.2".parse().unwrap())
        );
        let sb = sandbox(
            "[network]\nmode = \"allowlist\"\ndns = true\nallow = [\"198.18.1.1/32\"]\n",
        )
        .with_dns_upstream("198.18.9.9:53".parse().unwrap());
        assert!(sb.report().network.enforced, "{}", sb.report());
        // The allowed host gets 10 s (a loaded CI machine), the blocked
        // one 3 s (it never answers). Names are resolved through the
        // gateway that /etc/resolv.conf names.
        let script = "cat /etc/resolv.conf; getent ahostsv4 svc.test | head -n 1; \
            for h in svc.test other.test; do t=10; [ $h = other.test ] && t=3; \
            if out=$(timeout $t bash -c \"exec 3<>/dev/tcp/$h/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3\" 2>&1); \
            then echo \"$h: $(echo \"$out\" | tail -n 1)\"; else echo \"$h: blocked ($out)\"; fi; done; \
            ip=$(cat /proc/net/fib_trie | grep -c 10.0.2.100); echo addr=$ip";
        let out = sb.command("bash").args(["-c", script]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(text.contains("nameserver 10.0.2.2\n"), "{text}\n{stderr}");
        assert!(text.contains("198.18.1.1      STREAM svc.test"), "{text}\n{stderr}");
        assert!(text.contains("svc.test: hello from the world"), "{text}\n{stderr}");
        assert!(text.contains("other.test: blocked ("), "{text}");
        // ICMP echo: the allowed host answers, the other does not.
        let ping = |host: &str| {
            let out = sb
                .command("perl")
                .args(["-e", PERL_PING, host])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
                + &String::from_utf8_lossy(&out.stderr)
        };
        assert_eq!(ping("198.18.1.1"), "reply hello");
        let blocked = ping("198.18.2.2");
        assert!(blocked.starts_with("no reply"), "{blocked}");
        assert!(!text.contains("addr=0"), "tap0 has 10.0.2.100: {text}");
        let egress = out.egress.expect("the forwarder's figures");
        assert!(egress.error.is_none(), "{egress}");
        assert!(egress.dns_queries >= 2, "{egress}");
        // Only the allowed connection reached the forwarder: the ruleset
        // dropped the other in the sandbox's kernel.
        assert!(egress.tcp_connections == 1 && egress.tcp_bytes_in > 0, "{egress}");
    })
    .join()
    .unwrap();
}

/// This process's threads named `sandbox-egress-*` in the calling
/// thread's network namespace.
fn egress_threads_here() -> usize {
    use std::os::unix::fs::MetadataExt;
    let here = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("sandbox-egress-"))
                && std::fs::metadata(task.path().join("ns/net")).is_ok_and(|m| m.ino() == here)
        })
        .count()
}

/// Twenty runs with egress at once cost the pool's two threads, not one
/// each; and a run spawned from a thread in a network namespace of its
/// own gets that namespace (its spawner and forwarder threads live there).
#[test]
#[ignore = "needs root"]
fn egress_runs_share_a_forwarder_pool_in_the_callers_namespace() {
    common::require_root();
    let host_view = sandbox("[network]\nmode = \"host\"\n");
    let fib = |sb: &Sandbox| {
        let mut child = sb.command("cat").arg("/proc/net/fib_trie").spawn().unwrap();
        String::from_utf8_lossy(&child.wait().unwrap().stdout).into_owned()
    };
    // Control: from the test's own namespace, no such address.
    assert!(!fib(&host_view).contains("198.18.4.4"));
    std::thread::spawn(move || {
        enter_world(&["198.18.4.4"]);
        serve_http("198.18.4.4:80", "pooled\n");
        assert!(
            fib(&host_view).contains("198.18.4.4"),
            "spawned in the caller's namespace"
        );
        let sb = sandbox("[network]\nmode = \"allowlist\"\nallow = [\"198.18.4.4/32\"]\n");
        let script = "exec 3<>/dev/tcp/198.18.4.4/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; \
                      sleep 1; tail -n 1 <&3";
        let mut children: Vec<_> = (0..20)
            .map(|_| sb.command("bash").args(["-c", script]).spawn().unwrap())
            .collect();
        assert_eq!(
            egress_threads_here(),
            2,
            "20 forwarders on the pool's 2 threads"
        );
        for child in &mut children {
            let out = child.wait().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "pooled\n", "{out:?}");
            let egress = out.egress.expect("the forwarder's figures");
            assert!(
                egress.tcp_connections == 1 && egress.error.is_none(),
                "{egress}"
            );
        }
    })
    .join()
    .unwrap();
}

/// perl: `$ARGV[0]` DNS lookups of svc.test through the gateway, each from
/// a socket (so a source port) of its own, as a resolver makes them;
/// prints how many were answered within 1 s.
const PERL_LOOKUPS: &str = r#"use Socket;
my $answered = 0;
my $query = pack("n n n n n n", 0, 0x0100, 1, 0, 0, 0) . "\x03svc\x04test\x00" . pack("n n", 1, 1);
for my $i (1..$ARGV[0]) {
  socket(my $s, PF_INET, SOCK_DGRAM, 0) or die "socket: $!\n";
  connect($s, sockaddr_in(53, inet_aton("10.0.2.2"))) or die "connect: $!\n";
  substr($query, 0, 2) = pack("n", $i);
  send($s, $query, 0);
  my $rin = ''; vec($rin, fileno($s), 1) = 1;
  if (select(my $rout = $rin, undef, undef, 1)) { recv($s, my $buf, 1500, 0); $answered++ if length($buf) > 12 }
  close($s);
}
print "$answered\n";"#;

/// A lookup's flow ends with its answer: far more lookups than the
/// forwarder has UDP flows (256) all get answers within a minute, where a
/// flow held for its 60 s idle time would leave lookups 257 on unanswered.
#[test]
#[ignore = "needs root"]
fn answered_dns_lookups_free_their_flows_at_once() {
    common::require_root();
    std::thread::spawn(|| {
        enter_world(&["198.18.1.1", "198.18.9.9"]);
        serve_dns("198.18.9.9:53", &[("svc.test", [198, 18, 1, 1])]);
        let sb =
            sandbox("[network]\nmode = \"allowlist\"\ndns = true\nallow = [\"198.18.1.1/32\"]\n")
                .with_dns_upstream("198.18.9.9:53".parse().unwrap());
        let out = sb
            .command("perl")
            .args(["-e", PERL_LOOKUPS, "600"])
            .output()
            .unwrap();
        let answered = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            answered,
            "600",
            "timed out: {}; {:?}; {}",
            out.timed_out,
            out.egress,
            String::from_utf8_lossy(&out.stderr)
        );
        let egress = out.egress.expect("the forwarder's figures");
        assert_eq!(egress.dns_queries, 600, "{egress}");
        assert_eq!(egress.over_limit, 0, "{egress}");
    })
    .join()
    .unwrap();
}

/// The inode of the user namespace that owns the network namespace of
/// process `pid` (`NS_GET_USERNS`).
#[allow(unsafe_code)] // one ioctl(2) that returns a new fd
fn netns_owner(pid: u32) -> u64 {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: ioctl(2) on an fd we own; it returns a new fd or -1.
    let owner = unsafe { libc::ioctl(netns.as_raw_fd(), NS_GET_USERNS) };
    assert!(
        owner >= 0,
        "NS_GET_USERNS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the new fd the ioctl returned, owned by nobody else.
    let owner = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(owner) });
    owner.metadata().unwrap().ino()
}

/// A root caller's isolated runs join network namespaces made ahead
/// (owned by the caller's user namespace, loopback up), each its own, and
/// the spawning thread is back in its own namespace after each spawn.
/// Control: an egress run's namespace is made by its clone (owned by the
/// sandbox's user namespace), so the test tells the two apart.
#[test]
#[ignore = "needs root"]
fn isolated_runs_join_network_namespaces_made_ahead() {
    common::require_root();
    let ino = |path: &str| std::fs::metadata(path).unwrap().ino();
    let (ours, our_userns) = (ino("/proc/thread-self/ns/net"), ino("/proc/self/ns/user"));
    let sb = Sandbox::from_profile("default").unwrap();
    // Loopback is up: a refused connection, not an unreachable network.
    let script = "exec 3<>/dev/tcp/127.0.0.1/9 2>&1; sleep 5";
    let mut children = Vec::new();
    let mut seen = Vec::new();
    let mut pooled = 0;
    for _ in 0..6 {
        let child = sb.command("bash").args(["-c", script]).spawn().unwrap();
        assert_eq!(
            ino("/proc/thread-self/ns/net"),
            ours,
            "the thread went back"
        );
        let pid = child.id();
        // (An inode number is reused once its namespace is gone: all six
        // live until the end.)
        let netns = ino(&format!("/proc/{pid}/ns/net"));
        assert_ne!(netns, ours);
        assert!(!seen.contains(&netns), "a namespace of its own");
        seen.push(netns);
        if netns_owner(pid) == our_userns {
            pooled += 1;
        }
        children.push(child);
        // (The pool makes the next one meanwhile.)
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for mut child in children {
        child.kill().unwrap();
        let _ = child.wait().unwrap();
    }
    // (The pool starts at a process's second isolated run: the first two
    // may clone their own.)
    assert!(
        pooled >= 4,
        "{pooled} of 6 runs joined a namespace made ahead"
    );
    let out = Sandbox::from_profile("default")
        .unwrap()
        .command("bash")
        .args(["-c", "exec 3<>/dev/tcp/127.0.0.1/9"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Connection refused"),
        "loopback up: {out:?}"
    );
    // Control: an egress run's namespace is its sandbox's.
    let egress = sandbox("[network]\nmode = \"allowlist\"\nallow = [\"198.18.9.9/32\"]\n");
    let mut child = egress.command("sleep").arg("5").spawn().unwrap();
    assert_ne!(netns_owner(child.id()), our_userns);
    child.kill().unwrap();
    let _ = child.wait().unwrap();
}
