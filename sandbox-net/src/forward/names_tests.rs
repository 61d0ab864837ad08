//! The name rules' and pins' unit tests.
#![allow(clippy::unwrap_used)]

use super::*;
use sandbox_policy::Policy;

fn names(toml: &str) -> Names {
    Names::from_network(&Policy::from_toml_str(toml).unwrap().network)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const POLICY: &str = "[network]\nmode = \"allowlist\"\nallow = [\"pypi.org:443/tcp\", \"*.example.com:80\", \"10.9.0.0/16\"]\ndeny = [\"secret.example.com\"]\n";

#[test]
fn names_are_matched_and_deny_wins() {
    let n = names(POLICY);
    assert!(n.any());
    assert_eq!(n.rules_for("pypi.org"), vec![0]);
    assert_eq!(n.rules_for("a.example.com"), vec![1]);
    assert!(n.rules_for("secret.example.com").is_empty());
    assert!(n.rules_for("example.com").is_empty());
    assert!(n.rules_for("pypi.org.evil.test").is_empty());
}

#[test]
fn pins_allow_their_rules_ports_until_they_expire() {
    let mut n = names(POLICY);
    let now = Instant::now();
    let updates = n.pin(&[(ip("192.0.2.7"), 5)], &[0], now).unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].timeout, Some(MIN_PIN_TTL), "5 s clamped up");
    assert!(!updates[0].replace);
    assert!(n.allows(ip("192.0.2.7"), Some((443, Protocol::Tcp)), now));
    assert!(!n.allows(ip("192.0.2.7"), Some((443, Protocol::Udp)), now));
    assert!(!n.allows(ip("192.0.2.7"), Some((80, Protocol::Tcp)), now));
    assert!(!n.allows(ip("192.0.2.8"), Some((443, Protocol::Tcp)), now));
    assert!(
        !n.allows(ip("192.0.2.7"), None, now),
        "no echo on a port rule"
    );
    assert!(!n.allows(
        ip("192.0.2.7"),
        Some((443, Protocol::Tcp)),
        now + MIN_PIN_TTL
    ));
    // Pinned again: a replacement, and a day's TTL is clamped down.
    let again = n.pin(&[(ip("192.0.2.7"), 86400)], &[0], now).unwrap();
    assert!(again[0].replace);
    assert_eq!(again[0].timeout, Some(MAX_PIN_TTL));
    assert_eq!(n.live(now), 1);
}

#[test]
fn internal_answers_are_refused_unless_an_address_rule_allows_them() {
    let mut n = names(POLICY);
    let now = Instant::now();
    for internal in [
        "169.254.169.254",
        "10.0.0.1",
        "127.0.0.1",
        "100.64.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "fd00::1",
        "fe80::1",
        "::1",
        "0.0.0.0",
    ] {
        assert_eq!(
            n.pin(&[(ip("192.0.2.1"), 60), (ip(internal), 60)], &[0], now),
            Err(PinRefusal::Rebinding),
            "{internal}"
        );
    }
    assert_eq!(n.live(now), 0, "nothing of a refused answer is pinned");
    // 10.9.0.0/16 is allowed by address: a name may point there.
    assert!(n.pin(&[(ip("10.9.1.1"), 60)], &[0], now).is_ok());
}

#[test]
fn the_pin_cap_holds() {
    let mut n = names(POLICY);
    let now = Instant::now();
    let many: Vec<(IpAddr, u32)> = (0..MAX_PINS as u32)
        .map(|i| (IpAddr::from(std::net::Ipv4Addr::from(0xc633_0000 + i)), 60))
        .collect();
    assert!(n.pin(&many, &[0], now).is_ok());
    assert_eq!(
        n.pin(&[(ip("192.0.2.1"), 60)], &[1], now),
        Err(PinRefusal::Cap)
    );
    // Once they expire there is room again.
    assert!(
        n.pin(&[(ip("192.0.2.1"), 60)], &[1], now + MAX_PIN_TTL)
            .is_ok()
    );
}
