//! Egress through our forwarder against pasta and slirp4netns, in one run:
//! iperf3 throughput each way at MTU 65520 and 1500, request/response
//! latency and connections per second. The client runs in the sandbox
//! (ours: `sandbox-core` with an allowlist; the peers: their own network
//! namespace), the servers in a network namespace this benchmark makes
//! (198.18.1.1 on its loopback, and a veth pair so that pasta finds a
//! routable interface): nothing is sent outside it. Ours runs twice: with
//! address rules, and "by name" (rules naming `bench.test`, resolved by
//! the gateway through a resolver in that namespace and pinned; each
//! client resolves once).
//!
//! `cargo xtask bench egress` installs the peers and runs this as root;
//! `EGRESS_ROUNDS` (3) and `EGRESS_SECONDS` (3, per iperf3 run) tune it.
//! The binary is also the latency client (`--client rr|crr ADDR N`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sandbox_core::Sandbox;
use sandbox_net::{Link, LinkChange, Requests, Rtnetlink};
use sandbox_policy::Policy;

const SERVER: &str = "198.18.1.1";
/// The name the by-name sandbox's rules allow; the world's resolver
/// answers it (any name) with `SERVER`.
const NAME: &str = "bench.test";
const IPERF_PORT: u16 = 5201;
const ECHO_PORT: u16 = 7000;
const MTUS: [u32; 2] = [65520, 1500];
const RR_COUNT: u32 = 5000;
const CRR_COUNT: u32 = 300;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Ours,
    OursByName,
    Pasta,
    Slirp,
}

const TOOLS: [Tool; 4] = [Tool::Ours, Tool::OursByName, Tool::Pasta, Tool::Slirp];

impl Tool {
    /// The server as this tool's client names it.
    fn host(self) -> &'static str {
        if self == Tool::OursByName {
            NAME
        } else {
            SERVER
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tool::Ours => "ours",
            Tool::OursByName => "ours, by name",
            Tool::Pasta => "pasta",
            Tool::Slirp => "slirp4netns",
        }
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("egress bench: {what}: {e}");
    std::process::exit(1)
}

/// The latency client, run inside each sandbox: `rr` sends one byte and
/// reads one back `n` times on one connection; `crr` connects, does one
/// such exchange and closes, `n` times. Prints microseconds per operation.
/// `addr` is resolved once, before the clock starts.
fn client(mode: &str, addr: &str, n: u32) -> ! {
    use std::net::ToSocketAddrs;
    let mut byte = [0u8; 1];
    let addr = match addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => fail(addr, "no address"),
        Err(e) => fail(addr, e),
    };
    let start = Instant::now();
    let result = (|| -> std::io::Result<()> {
        match mode {
            "rr" => {
                let mut s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                for _ in 0..n {
                    s.write_all(b"x")?;
                    s.read_exact(&mut byte)?;
                }
            }
            _ => {
                for _ in 0..n {
                    let mut s = TcpStream::connect(addr)?;
                    s.set_nodelay(true)?;
                    s.write_all(b"x")?;
                    s.read_exact(&mut byte)?;
                }
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            println!("{:.1}", start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
            std::process::exit(0)
        }
        Err(e) => fail(mode, e),
    }
}

/// The benchmark's own network namespace (for this thread and every
/// process it starts): 198.18.1.1 on loopback; a veth pair with a default
/// route, which pasta needs to see a routable interface.
fn make_world() {
    sandbox_net::unshare_network_namespace().unwrap_or_else(|e| fail("unshare", e));
    let rtnl = Rtnetlink::open().unwrap_or_else(|e| fail("rtnetlink", e));
    let up = || LinkChange {
        up: Some(true),
        ..Default::default()
    };
    let execute = |build: &dyn Fn(&mut Requests) -> sandbox_net::Result<()>| {
        let mut requests = Requests::new();
        build(&mut requests).unwrap_or_else(|e| fail("build the world's requests", e));
        rtnl.execute(&requests)
            .unwrap_or_else(|e| fail("set up the world", e));
    };
    execute(&|r| {
        r.set_link(Link::Name("lo"), up())?;
        r.add_address(Link::Index(1), [198, 18, 1, 1].into(), 32)?;
        r.add_veth("world0", "world1", None)?;
        Ok(())
    });
    let index = |name: &str| {
        rtnl.link(name)
            .ok()
            .flatten()
            .unwrap_or_else(|| fail(name, "missing"))
            .index
    };
    let (w0, w1) = (index("world0"), index("world1"));
    execute(&|r| {
        r.add_address(Link::Index(w0), [10, 9, 0, 1].into(), 24)?;
        r.add_address(Link::Index(w1), [10, 9, 0, 2].into(), 24)?;
        r.set_link(Link::Index(w0), up())?;
        r.set_link(Link::Index(w1), up())?;
        Ok(())
    });
    execute(&|r| {
        r.add_default_route([10, 9, 0, 2].into(), Some(w0));
        Ok(())
    });
    benches::dns::serve_a(([198, 18, 1, 1], 53).into(), [198, 18, 1, 1].into())
        .unwrap_or_else(|e| fail("resolver", e));
}

fn echo_server() {
    let listener = TcpListener::bind((SERVER, ECHO_PORT)).unwrap_or_else(|e| fail("bind", e));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect((SERVER, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    fail("server", format!("nothing listens on {SERVER}:{port}"));
}

/// A peer's network namespace for slirp4netns: a process sitting in it,
/// and slirp4netns attached to it.
struct SlirpNs {
    holder: Child,
    slirp: Child,
}

impl SlirpNs {
    fn start(mtu: u32) -> Self {
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "3600"])
            .spawn()
            .unwrap_or_else(|e| fail("unshare", e));
        std::thread::sleep(Duration::from_millis(50));
        let slirp = Command::new("slirp4netns")
            .args([
                "--configure",
                &format!("--mtu={mtu}"),
                "--disable-host-loopback",
                &holder.id().to_string(),
                "tap0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail("slirp4netns (cargo xtask bench egress installs it)", e));
        let ns = Self { holder, slirp };
        for _ in 0..200 {
            let route = ns
                .command(&["cat", "/proc/net/route"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("0202000A"))
                .unwrap_or(false);
            if route {
                return ns;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        fail("slirp4netns", "its namespace never got a default route")
    }

    fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.holder.id().to_string(), "-n", "--"])
            .args(argv);
        cmd
    }
}

impl Drop for SlirpNs {
    fn drop(&mut self) {
        let _ = self.slirp.kill();
        let _ = self.slirp.wait();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

struct Runner {
    /// Per MTU: address rules, and name rules.
    sandboxes: Vec<(u32, Sandbox, Sandbox)>,
    slirps: Vec<(u32, SlirpNs)>,
    exe: String,
}

impl Runner {
    fn run(&self, tool: Tool, mtu: u32, argv: &[&str]) -> Output {
        let out =
            match tool {
                Tool::Ours | Tool::OursByName => {
                    let (_, by_address, by_name) = self
                        .sandboxes
                        .iter()
                        .find(|(m, _, _)| *m == mtu)
                        .unwrap_or_else(|| fail("sandbox", mtu));
                    let sandbox = if tool == Tool::Ours {
                        by_address
                    } else {
                        by_name
                    };
                    let outcome = sandbox
                        .command(argv[0])
                        .args(&argv[1..])
                        .output()
                        .unwrap_or_else(|e| fail("sandbox run", e));
                    Output {
                        status: std::os::unix::process::ExitStatusExt::from_raw(
                            if outcome.success() { 0 } else { 1 << 8 },
                        ),
                        stdout: outcome.stdout,
                        stderr: outcome.stderr,
                    }
                }
                Tool::Pasta => Command::new("pasta")
                    .args([
                        "--runas",
                        "0",
                        "--config-net",
                        "-q",
                        "-f",
                        "--mtu",
                        &mtu.to_string(),
                        "--",
                    ])
                    .args(argv)
                    .output()
                    .unwrap_or_else(|e| fail("pasta (cargo xtask bench egress installs passt)", e)),
                Tool::Slirp => self
                    .slirps
                    .iter()
                    .find(|(m, _)| *m == mtu)
                    .unwrap_or_else(|| fail("slirp4netns", mtu))
                    .1
                    .command(argv)
                    .output()
                    .unwrap_or_else(|e| fail("nsenter", e)),
            };
        if !out.status.success() {
            eprintln!(
                "{} (MTU {mtu}) {}: {}",
                tool.name(),
                argv.join(" "),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .filter(|l| !l.contains("syslog"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        out
    }

    /// iperf3's received rate, Gbit/s (`None` if the run failed).
    fn iperf(&self, tool: Tool, mtu: u32, seconds: u32, reverse: bool) -> Option<f64> {
        let seconds = seconds.to_string();
        let mut argv = vec!["iperf3", "-c", tool.host(), "-t", &seconds, "-J"];
        if reverse {
            argv.push("-R");
        }
        let out = self.run(tool, mtu, &argv);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .map(|b| b / 1e9)
    }

    /// The latency client's microseconds per operation.
    fn latency(&self, tool: Tool, mode: &str, n: u32) -> Option<f64> {
        let addr = format!("{}:{ECHO_PORT}", tool.host());
        let n = n.to_string();
        let out = self.run(tool, MTUS[0], &[&self.exe, "--client", mode, &addr, &n]);
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }
}

fn median(samples: &mut [f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    Some(samples[samples.len() / 2])
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or("failed".into(), |v| format!("{v:.decimals$}"))
}

fn ratio(ours: Option<f64>, peer: Option<f64>, higher_is_better: bool) -> String {
    match (ours, peer) {
        (Some(o), Some(p)) if o > 0.0 && p > 0.0 => {
            format!("{:.2}×", if higher_is_better { o / p } else { p / o })
        }
        _ => "-".into(),
    }
}

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--client") {
        let n = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(1);
        client(
            args.get(2).map_or("rr", String::as_str),
            args.get(3).map_or("", String::as_str),
            n,
        );
    }
    if !rustix::process::geteuid().is_root() {
        println!("egress bench: skipped (needs root: it makes network namespaces)");
        return;
    }
    let rounds = env_number("EGRESS_ROUNDS", 3).max(1);
    let seconds = env_number("EGRESS_SECONDS", 3).max(1);
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| fail("current_exe", e))
        .to_string_lossy()
        .into_owned();
    let exe_dir = std::path::Path::new(&exe)
        .parent()
        .unwrap_or_else(|| fail("exe", "no parent"))
        .to_string_lossy()
        .into_owned();

    make_world();
    let mut iperf_server = Command::new("iperf3")
        .args(["-s", "-B", SERVER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail("iperf3 (cargo xtask bench egress installs it)", e));
    wait_for_port(IPERF_PORT);
    echo_server();

    let policy = |host: &str, prefix: &str| {
        Policy::from_toml_str(&format!(
            "[network]\nmode = \"allowlist\"\nallow = [\"{host}{prefix}:{IPERF_PORT}/tcp\", \"{host}{prefix}:{ECHO_PORT}/tcp\"]\n\
             [filesystem]\nbinds = [{{ source = \"{exe_dir}\", target = \"{exe_dir}\" }}]\n"
        ))
        .unwrap_or_else(|e| fail("policy", e))
    };
    let sandbox = |policy: Policy, mtu: u32| {
        let sandbox = Sandbox::new(policy)
            .and_then(|s| s.with_egress_mtu(mtu))
            .unwrap_or_else(|e| fail("sandbox", e))
            .with_dns_upstream(SocketAddr::from(([198, 18, 1, 1], 53)));
        if !sandbox.report().network.enforced {
            fail(
                "sandbox",
                format!("egress not enforced here:\n{}", sandbox.report()),
            );
        }
        sandbox
    };
    let runner = Runner {
        sandboxes: MTUS
            .iter()
            .map(|&mtu| {
                (
                    mtu,
                    sandbox(policy(SERVER, "/32"), mtu),
                    sandbox(policy(NAME, ""), mtu),
                )
            })
            .collect(),
        slirps: MTUS.iter().map(|&mtu| (mtu, SlirpNs::start(mtu))).collect(),
        exe,
    };

    // Throughput, interleaved: round by round, every configuration, every
    // tool in turn.
    let configs: Vec<(u32, bool)> = MTUS
        .iter()
        .flat_map(|&mtu| [(mtu, false), (mtu, true)])
        .collect();
    let mut gbits: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); TOOLS.len()]; configs.len()];
    let mut rr: Vec<Vec<f64>> = vec![Vec::new(); TOOLS.len()];
    let mut crr: Vec<Vec<f64>> = vec![Vec::new(); TOOLS.len()];
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for (c, &(mtu, reverse)) in configs.iter().enumerate() {
            for (t, &tool) in TOOLS.iter().enumerate() {
                if let Some(v) = runner.iperf(tool, mtu, seconds, reverse) {
                    gbits[c][t].push(v);
                }
            }
        }
        for (t, &tool) in TOOLS.iter().enumerate() {
            if let Some(v) = runner.latency(tool, "rr", RR_COUNT) {
                rr[t].push(v);
            }
            if let Some(v) = runner.latency(tool, "crr", CRR_COUNT) {
                crr[t].push(v);
            }
        }
    }

    println!(
        "\negress throughput: iperf3 -t {seconds}, client in the sandbox, server in the benchmark's namespace; median of {rounds} rounds, Gbit/s"
    );
    let header = || {
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>12} {:>11} {:>17} {:>10}",
            "",
            "ours",
            "by name",
            "pasta",
            "slirp4netns",
            "ours/pasta",
            "ours/slirp4netns",
            "name/ours"
        );
    };
    let row = |name: String, m: &[Option<f64>], decimals: usize, higher_is_better: bool| {
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>12} {:>11} {:>17} {:>10}",
            name,
            cell(m[0], decimals),
            cell(m[1], decimals),
            cell(m[2], decimals),
            cell(m[3], decimals),
            ratio(m[0], m[2], higher_is_better),
            ratio(m[0], m[3], higher_is_better),
            ratio(m[1], m[0], higher_is_better),
        );
    };
    header();
    for (c, &(mtu, reverse)) in configs.iter().enumerate() {
        let m: Vec<Option<f64>> = gbits[c].iter_mut().map(|s| median(s)).collect();
        row(
            format!("MTU {mtu}, {}", if reverse { "download" } else { "upload" }),
            &m,
            2,
            true,
        );
    }
    println!("every sample, Gbit/s (ours | by name | pasta | slirp4netns):");
    for (c, &(mtu, reverse)) in configs.iter().enumerate() {
        let list = |t: usize| {
            gbits[c][t]
                .iter()
                .map(|v| format!("{v:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "  MTU {mtu} {}: {} | {} | {} | {}",
            if reverse { "down" } else { "up" },
            list(0),
            list(1),
            list(2),
            list(3)
        );
    }
    println!(
        "\nlatency (MTU 65520): µs per operation, median of {rounds} rounds (lower is better; ratios are peer/ours, and ours/by name)"
    );
    header();
    for (name, samples) in [
        (format!("TCP_RR ({RR_COUNT} × 1 byte)"), &mut rr),
        (format!("TCP_CRR ({CRR_COUNT} conns)"), &mut crr),
    ] {
        let m: Vec<Option<f64>> = samples.iter_mut().map(|s| median(s)).collect();
        row(name, &m, 1, false);
    }
    if let Some(us) = median(&mut crr[0]) {
        println!("(ours: {:.0} connections/s)", 1e6 / us);
    }
    println!("(target for by name: within 5 % of ours by address)");
    drop(runner);
    let _ = iperf_server.kill();
    let _ = iperf_server.wait();
}
