//! Spawning `/bin/true` in a full sandbox (all namespaces, minimal root, no
//! network), against bubblewrap and a plain spawn, in interleaved rounds so
//! that the machine's drift hits every variant alike. `cargo xtask bench
//! spawn` builds `sbx` in release mode, installs bubblewrap if missing, and
//! runs this; `SPAWN_ROUNDS` sets the number of rounds. Then: launches per
//! second with 1, 8 and 64 concurrent launchers (`SPAWN_CONCURRENT_SECONDS`
//! each, 3), and the spawn with a 4 GiB caller (`SPAWN_CALLER_GIB`), each
//! against bwrap in the same run.

use std::os::unix::fs::DirBuilderExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandbox_core::Sandbox;
use sandbox_policy::Policy;

#[path = "spawn/load.rs"]
mod load;

type Run = Box<dyn Fn() -> bool>;

fn quiet(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let cmd = std::cell::RefCell::new(cmd);
    Box::new(move || cmd.borrow_mut().status().is_ok_and(|s| s.success()))
}

/// Each library run's timings, for the breakdown printed at the end.
type Timings = std::rc::Rc<std::cell::RefCell<Vec<sandbox_core::RunTimings>>>;

fn library(sandbox: Sandbox, timings: &Timings) -> Run {
    let timings = timings.clone();
    Box::new(move || {
        sandbox.command("/bin/true").output().is_ok_and(|o| {
            timings.borrow_mut().push(o.timings.clone());
            o.success()
        })
    })
}

/// The median of each part of the library's default-profile runs, µs.
fn breakdown(runs: &[sandbox_core::RunTimings]) -> Vec<(String, f64)> {
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    let mut parts: Vec<(String, f64)> = vec![
        ("plan".into(), median(runs.iter().map(|t| t.plan).collect())),
        (
            "clone".into(),
            median(runs.iter().map(|t| t.clone).collect()),
        ),
    ];
    if let Some(first) = runs.first() {
        for (i, (name, _)) in first.phases.iter().enumerate() {
            let v = runs
                .iter()
                .filter_map(|t| t.phases.get(i).filter(|p| p.0 == *name).map(|p| p.1))
                .collect();
            parts.push((format!("  setup: {name}"), median(v)));
        }
    }
    parts.push((
        "command (execve to exit)".into(),
        median(runs.iter().map(|t| t.supervise).collect()),
    ));
    parts.push((
        "teardown".into(),
        median(runs.iter().map(|t| t.teardown).collect()),
    ));
    parts
}

fn main() {
    let rounds: usize = std::env::var("SPAWN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let sbx = std::env::var("SBX_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/sbx").into());
    let default = Sandbox::from_profile("default").unwrap_or_else(|e| panic!("{e}"));
    if !default.report().fully_enforced() {
        panic!(
            "the default profile is not enforceable here:\n{}",
            default.report()
        );
    }
    let no_cgroups =
        Policy::from_toml_str("[resources]\nmemory = \"unlimited\"\npids = \"unlimited\"\n")
            .map_err(|e| e.to_string())
            .and_then(|p| Sandbox::new(p).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("{e}"));
    let mut bwrap = Command::new("bwrap");
    bwrap.args(benches::BWRAP_SANDBOX).arg("/bin/true");
    let default_timings = Timings::default();
    let mut sbx_cmd = Command::new(&sbx);
    sbx_cmd.args(["run", "--profile", "default", "--", "/bin/true"]);
    // Its probe cache in the target directory, not the host's /run/sbx.
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sbx-probe-cache");
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&cache);
    sbx_cmd.env("SBX_PROBE_CACHE", &cache);
    let mut sbx_version = Command::new(&sbx);
    sbx_version.arg("--version");
    let variants: Vec<(&str, Run)> = vec![
        (
            "plain /bin/true (std::process)",
            quiet(Command::new("/bin/true")),
        ),
        (
            "bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc",
            quiet(bwrap),
        ),
        ("sbx run --profile default (CLI)", quiet(sbx_cmd)),
        (
            "sbx --version (the CLI's process start and exit alone)",
            quiet(sbx_version),
        ),
        (
            "Sandbox default profile (library)",
            library(default, &default_timings),
        ),
        (
            "Sandbox default, no cgroup limits (library)",
            library(no_cgroups, &Timings::default()),
        ),
    ];
    for (name, run) in &variants {
        if !run() {
            panic!("{name} does not run /bin/true successfully here");
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            let start = Instant::now();
            let ok = (variants[i].1)();
            samples[i].push(start.elapsed());
            assert!(ok, "{} failed in round {round}", variants[i].0);
        }
    }
    let stats: Vec<(f64, f64, f64)> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let mean = s.iter().map(|d| ms(*d)).sum::<f64>() / s.len() as f64;
            (ms(s[s.len() / 2]), mean, ms(s[s.len() * 9 / 10]))
        })
        .collect();
    let bwrap_median = stats[1].0;
    println!("\nspawn /bin/true, {rounds} interleaved rounds (ms)\n");
    println!(
        "{:<58} {:>8} {:>8} {:>8} {:>9}",
        "variant", "median", "mean", "p90", "vs bwrap"
    );
    for ((name, _), (median, mean, p90)) in variants.iter().zip(&stats) {
        println!(
            "{name:<58} {median:>8.2} {mean:>8.2} {p90:>8.2} {:>8.2}x",
            median / bwrap_median
        );
    }
    println!(
        "\n(targets: the library's default profile at most 0.4x bwrap's median, the CLI 0.6x)"
    );
    println!(
        "\nthe library's default profile, part by part (median µs; setup phases as the child timed them)"
    );
    for (part, us) in breakdown(&default_timings.borrow()) {
        println!("{part:<40} {us:>8.0}");
    }
    let env = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    load::concurrency(env("SPAWN_CONCURRENT_SECONDS", 3.0));
    load::big_caller(
        env("SPAWN_CALLER_GIB", 4.0) as u64,
        rounds.min(100),
        (stats[4].0, stats[1].0),
    );
}
