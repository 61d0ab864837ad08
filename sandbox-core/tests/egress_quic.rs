#![allow(clippy::unwrap_used, clippy::expect_used)]
//! QUIC to a name rule with `/udp`: the forwarder reads the SNI of the
//! client's Initial packets (RFC 9001 keys) before anything goes upstream.
//! The Initials are built here, protected as a client protects them, and
//! sent by perl from the sandbox to a UDP echo server in a world namespace
//! the test made. Needs root, as in CI.

use std::net::UdpSocket;

mod common;
use common::world::*;
use common::*;

#[path = "../../sandbox-net/tests/common/quic_client.rs"]
mod quic_client;

/// A QUIC v1 client Initial for `dcid` carrying a ClientHello that names
/// `sni`, padded to 1200 bytes and protected.
fn client_initial(dcid: &[u8], sni: &str) -> Vec<u8> {
    let hello = quic_client::client_hello(sni, 0);
    quic_client::initial(dcid, 0, &quic_client::crypto(0, &hello))
}

/// perl: resolves pypi.test (pinning it), then sends each file given
/// (`NAME=PATH`) as one datagram to 198.18.1.1:4433 from a socket of its
/// own; prints `NAME: echoed` or `NAME: refused (…)`.
const PERL_SEND: &str = r#"use Socket;
gethostbyname("pypi.test") or print "unresolved\n";
for my $arg (@ARGV) {
  my ($name, $path) = split /=/, $arg;
  open(my $f, "<:raw", $path) or die "$path: $!"; local $/; my $d = <$f>; close $f;
  socket(my $s, PF_INET, SOCK_DGRAM, 0) or die; connect($s, sockaddr_in(4433, inet_aton("198.18.1.1"))) or die;
  if (!send($s, $d, 0)) { print "$name: refused ($!)\n"; next }
  my $rin = ''; vec($rin, fileno($s), 1) = 1;
  if (select(my $r = $rin, undef, undef, 2)) {
    my $echo;
    if (defined recv($s, $echo, 2000, 0) && $echo eq $d) { print "$name: echoed\n" } else { print "$name: refused ($!)\n" }
  } else { print "$name: refused (no answer)\n" }
}"#;

#[test]
#[ignore = "needs root"]
fn quic_to_a_udp_name_rule_is_judged_by_its_sni() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    std::fs::write(dir.path().join("plain.bin"), b"\x12\x34not quic").unwrap();
    std::fs::write(
        dir.path().join("good.bin"),
        client_initial(&[1, 2, 3, 4, 5, 6, 7, 8], "pypi.test"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fronted.bin"),
        client_initial(&[8, 7, 6, 5, 4, 3, 2, 1], "evil.test"),
    )
    .unwrap();
    std::thread::spawn(move || {
        enter_world(&["198.18.1.1", "198.18.9.9"]);
        serve_dns("198.18.9.9:53", &[("pypi.test", [198, 18, 1, 1])]);
        let echo = UdpSocket::bind("198.18.1.1:4433").unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, peer)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..n], peer);
            }
        });
        let with = |network: &str| {
            sandbox(&format!(
                "[filesystem]\nbinds = [{{ source = \"{path}\", target = \"{path}\" }}]\n{network}"
            ))
            .with_dns_upstream("198.18.9.9:53".parse().unwrap())
        };
        let send = |sb: &sandbox_core::Sandbox| {
            let out = sb
                .command("perl")
                .args(["-e", PERL_SEND])
                .args(["plain", "good", "fronted"].map(|n| format!("{n}={path}/{n}.bin")))
                .output()
                .unwrap();
            (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                out.egress.expect("the forwarder's figures"),
            )
        };
        let (text, egress) = send(&with(
            "[network]\nmode = \"allowlist\"\nallow = [\"pypi.test:4433/udp\"]\n",
        ));
        assert!(
            text.contains("plain: echoed\n"),
            "not QUIC: on the pin; {text}\n{egress}"
        );
        assert!(text.contains("good: echoed\n"), "{text}\n{egress}");
        assert!(text.contains("fronted: refused"), "{text}\n{egress}");
        assert_eq!(egress.sni_mismatch, 1, "{egress}");
        assert!(
            egress.refusals.iter().any(|r| r.reason == "sni-mismatch"
                && r.protocol == "udp"
                && r.name.as_deref() == Some("evil.test")),
            "{:#?}",
            egress.refusals
        );
        // A name rule without /udp is TCP only.
        let (text, _) = send(&with(
            "[network]\nmode = \"allowlist\"\nallow = [\"pypi.test:4433\"]\n",
        ));
        assert!(text.contains("plain: refused"), "{text}");
        // Control: by address, all three are echoed.
        let (text, _) = send(&with(
            "[network]\nmode = \"allowlist\"\ndns = \"any\"\nallow = [\"198.18.0.0/15\"]\n",
        ));
        for name in ["plain", "good", "fronted"] {
            assert!(
                text.contains(&format!("{name}: echoed\n")),
                "control: {text}"
            );
        }
    })
    .join()
    .unwrap();
}
