#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Egress by name: `allow = ["pypi.test:80/tcp", "*.cdn.test:80/tcp"]`
//! with the gateway resolving only those names, pinning their answers'
//! addresses in the forwarder and the kernel's sets. Real clients (curl,
//! getent) in the sandbox; the names served by the test's own resolver in
//! a world namespace the test made. Each refusal has a control that shows
//! the same thing working with the rule loosened. Needs root, as in CI.

use sandbox_core::Sandbox;

mod common;
use common::world::*;
use common::*;

/// The world: web servers on 198.18.1.1, 198.18.2.2 and 10.0.0.1 (port
/// 80 and 81), and a resolver on 198.18.9.9 that knows the test's names.
fn world() {
    enter_world(&["198.18.1.1", "198.18.2.2", "198.18.9.9", "10.0.0.1"]);
    serve_http("198.18.1.1:80", "pypi\n");
    serve_http("198.18.1.1:81", "pypi on 81\n");
    serve_http("198.18.2.2:80", "other\n");
    serve_http("10.0.0.1:80", "internal\n");
    serve_dns(
        "198.18.9.9:53",
        &[
            ("pypi.test", [198, 18, 1, 1]),
            ("files.cdn.test", [198, 18, 1, 1]),
            ("other.test", [198, 18, 2, 2]),
            ("evil.cdn.test", [10, 0, 0, 1]),
            ("meta.cdn.test", [169, 254, 169, 254]),
        ],
    );
}

fn run(sb: &Sandbox, script: &str) -> (String, sandbox_core::EgressStats) {
    let out = sb.command("bash").args(["-c", script]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text, out.egress.expect("the forwarder's figures"))
}

/// Each line: `NAME: ` and the body, or `refused`.
const SCRIPT: &str = r#"
get() { out=$(curl -sS --max-time 5 "$2" 2>&1) && echo "$1: $out" || echo "$1: refused ($out)"; }
resolve() { getent ahostsv4 "$2" >/dev/null && echo "$1: resolved" || echo "$1: unresolved"; }
get allowed http://pypi.test/
get wildcard http://files.cdn.test/
resolve unlisted other.test
get unlisted-ip http://198.18.2.2/
get other-port http://pypi.test:81/
resolve rebinding evil.cdn.test
resolve metadata meta.cdn.test
get pinned-ip http://198.18.1.1/
"#;

#[test]
#[ignore = "needs root"]
fn names_are_resolved_pinned_and_only_theirs_reached() {
    common::require_root();
    std::thread::spawn(|| {
        world();
        let names = sandbox(
            "[network]\nmode = \"allowlist\"\nallow = [\"pypi.test:80/tcp\", \"*.cdn.test:80/tcp\"]\n",
        )
        .with_dns_upstream("198.18.9.9:53".parse().unwrap());
        assert!(names.report().network.enforced, "{}", names.report());
        let (text, egress) = run(&names, SCRIPT);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .to_string()
        };
        assert_eq!(line("allowed"), "allowed: pypi", "{text}\n{egress}");
        assert_eq!(line("wildcard"), "wildcard: pypi", "{text}\n{egress}");
        assert_eq!(line("unlisted"), "unlisted: unresolved", "{text}");
        assert!(line("unlisted-ip").starts_with("unlisted-ip: refused"), "{text}");
        assert!(line("other-port").starts_with("other-port: refused"), "{text}");
        assert_eq!(line("rebinding"), "rebinding: unresolved", "{text}");
        assert_eq!(line("metadata"), "metadata: unresolved", "{text}");
        // The pin is of the address: with no SNI or Host check yet, the
        // pinned address is reachable by its literal too.
        assert_eq!(line("pinned-ip"), "pinned-ip: pypi", "{text}");
        assert!(egress.pins_added >= 1, "{egress}");
        assert!(egress.dns_refused >= 1, "{egress}");
        assert!(egress.dns_rebinding >= 2, "{egress}");
        assert_eq!(egress.pin_errors, 0, "{egress}");

        // Control: the same script with every name relayed and the whole
        // world allowed by address; what was refused is reached.
        let open = sandbox(
            "[network]\nmode = \"allowlist\"\ndns = \"any\"\nallow = [\"198.18.0.0/15\", \"10.0.0.0/8\"]\n",
        )
        .with_dns_upstream("198.18.9.9:53".parse().unwrap());
        let (text, _) = run(&open, SCRIPT);
        for (name, expected) in [
            ("unlisted", "unlisted: resolved"),
            ("unlisted-ip", "unlisted-ip: other"),
            ("other-port", "other-port: pypi on 81"),
            ("rebinding", "rebinding: resolved"),
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "control {name}: {text}"
            );
        }
    })
    .join()
    .unwrap();
}
