//! The first-bytes checks' unit tests, on ClientHellos and requests built
//! by hand.
#![allow(clippy::unwrap_used)]

use super::*;

fn allowed() -> Vec<HostPattern> {
    vec![
        "pypi.org".parse().unwrap(),
        "*.example.com".parse().unwrap(),
    ]
}

/// A ClientHello (TLS 1.3 shape) with `sni` if given, and `padding` bytes
/// of another extension.
fn client_hello(sni: Option<&str>, padding: usize) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0u8];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name.as_bytes());
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(&data);
    }
    // padding (21)
    ext.extend_from_slice(&[0, 21]);
    ext.extend_from_slice(&(padding as u16).to_be_bytes());
    ext.extend(std::iter::repeat_n(0u8, padding));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut message = vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    message
}

/// `message` in TLS records of at most `max` bytes each.
fn records(message: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in message.chunks(max) {
        out.extend_from_slice(&[0x16, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[test]
fn client_hellos_are_judged_by_their_sni() {
    let ok = records(&client_hello(Some("PyPI.org"), 100), 16384);
    assert_eq!(judge(&ok, &allowed(), false), FirstBytes::Pass);
    let wild = records(&client_hello(Some("files.example.com"), 0), 16384);
    assert_eq!(judge(&wild, &allowed(), false), FirstBytes::Pass);
    let fronted = records(&client_hello(Some("evil.test"), 0), 16384);
    assert_eq!(
        judge(&fronted, &allowed(), false),
        FirstBytes::Refuse(FirstBytesRefusal::SniMismatch)
    );
    let none = records(&client_hello(None, 0), 16384);
    assert_eq!(
        judge(&none, &allowed(), false),
        FirstBytes::Refuse(FirstBytesRefusal::NoSni)
    );
    // Split over records, and cut anywhere: more is needed until the end.
    let big = records(&client_hello(Some("pypi.org"), 3000), 1000);
    for cut in 0..big.len() {
        assert_eq!(
            judge(&big[..cut], &allowed(), false),
            FirstBytes::NeedMore,
            "{cut}"
        );
    }
    assert_eq!(judge(&big, &allowed(), false), FirstBytes::Pass);
    // The client gave up half way: refused.
    assert_eq!(
        judge(&big[..500], &allowed(), true),
        FirstBytes::Refuse(FirstBytesRefusal::NoSni)
    );
}

#[test]
fn http_requests_are_judged_by_their_host() {
    let get = |host: &str| format!("GET / HTTP/1.1\r\nUser-Agent: t\r\nHost: {host}\r\n\r\n");
    for (host, verdict) in [
        ("pypi.org", FirstBytes::Pass),
        ("PYPI.ORG:80", FirstBytes::Pass),
        ("a.example.com:8080", FirstBytes::Pass),
        (
            "evil.test",
            FirstBytes::Refuse(FirstBytesRefusal::HostMismatch),
        ),
        (
            "[::1]:80",
            FirstBytes::Refuse(FirstBytesRefusal::HostMismatch),
        ),
    ] {
        assert_eq!(
            judge(get(host).as_bytes(), &allowed(), false),
            verdict,
            "{host}"
        );
    }
    let no_host = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(
        judge(no_host, &allowed(), false),
        FirstBytes::Refuse(FirstBytesRefusal::HostMismatch)
    );
    let partial = b"POST /upload HTTP/1.1\r\nHost: pypi.org\r\n";
    assert_eq!(judge(partial, &allowed(), false), FirstBytes::NeedMore);
    assert_eq!(judge(b"GE", &allowed(), false), FirstBytes::NeedMore);
}

#[test]
fn other_protocols_pass_on_the_pin() {
    assert_eq!(
        judge(b"SSH-2.0-OpenSSH_9.6\r\n", &allowed(), false),
        FirstBytes::Pass
    );
    assert_eq!(
        judge(b"\x00\x01binary", &allowed(), false),
        FirstBytes::Pass
    );
    assert_eq!(judge(b"", &allowed(), false), FirstBytes::NeedMore);
    assert_eq!(judge(b"", &allowed(), true), FirstBytes::Pass);
    assert_eq!(
        judge(b"GE", &allowed(), true),
        FirstBytes::Pass,
        "not HTTP after all"
    );
}
