#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The network layer: no network, the host's, allowlisted egress through
//! the forwarder, and refusal or degradation where the host cannot.
//! Needs root, as in CI.
use std::os::unix::fs::MetadataExt;

use sandbox_core::{Error, Layer, Sandbox};

mod common;
use common::*;

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
                    // The whole request first (bash writes it in two
                    // pieces): closing with unread bytes would send a
                    // reset, as any server's kernel does.
                    let mut request = Vec::new();
                    let mut buf = [0u8; 512];
                    while !request.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
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
        // The allowed host gets 10 s (a loaded CI machine), the blocked
        // one 3 s (it never answers).
        let script = "for h in 198.18.1.1 198.18.2.2; do t=10; [ $h = 198.18.2.2 ] && t=3; \
            if out=$(timeout $t bash -c \"exec 3<>/dev/tcp/$h/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3\" 2>&1); \
            then echo \"$h: $(echo \"$out\" | tail -n 1)\"; else echo \"$h: blocked ($out)\"; fi; done; \
            ip=$(cat /proc/net/fib_trie | grep -c 10.0.2.100); echo addr=$ip";
        let out = sb.command("bash").args(["-c", script]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("198.18.1.1: hello from the world"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("198.18.2.2: blocked ("), "{text}");
        assert!(!text.contains("addr=0"), "tap0 has 10.0.2.100: {text}");
    })
    .join()
    .unwrap();
}
