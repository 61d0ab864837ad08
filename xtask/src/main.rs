//! `cargo xtask`: the project's tasks, in Rust so that a fresh machine with
//! only the Rust toolchain can run them.
//!
//! - `cargo xtask test` — install missing system packages, then fmt, clippy,
//!   the whole test suite, and its cgroup and nftables paths on the kernel
//!   matrix (what CI runs);
//! - `cargo xtask demo` — the main job on the embedded default profile: real
//!   commands in a sandbox, each layer seen from inside, and the report
//!   (`cargo xtask demo root`: `openat2-root` on its own);
//! - `cargo xtask race [--ops N]` — a longer race campaign, writes and reads,
//!   and the mover (the pinned-parent residual, measured);
//! - `cargo xtask fuzz TARGET [--seconds N]` — run a cargo-fuzz target;
//! - `cargo xtask bench fs` — the filesystem benchmarks and their ratio table;
//! - `cargo xtask escape` — the escape suite's table (root);
//! - `cargo xtask soak [--minutes N]` — concurrent sandboxes, then a leak
//!   check (root);
//! - `cargo xtask bench spawn` — a sandboxed `/bin/true` against bubblewrap;
//! - `cargo xtask bench nft` — the ruleset through libnftnl against `nft -f`;
//! - `cargo xtask bench egress` — throughput and latency through the
//!   forwarder against pasta and slirp4netns;
//! - `cargo xtask vm` — the kernel matrix: the test binaries in QEMU guests
//!   of Debian's 6.1 and 6.12 kernels, pure cgroup v2, in each cgroup layout.

mod bench;
mod demo;
mod demo_root;
mod fuzz;
mod packages;
mod run;
mod vm;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("demo") => demo::run(&args[1..]),
        Some("race") => race(&args[1..]),
        Some("escape") => escape(),
        Some("soak") => soak(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("vm") => vm::run(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <test | demo [root] | race [--ops N] | escape | soak [--minutes N] [--concurrency N] | fuzz TARGET [--seconds N] | bench fs [--disk] [--criterion] | bench spawn [--rounds N] | bench nft [--rounds N] | bench egress [--rounds N] [--seconds N] | vm [--kernel 6.1|6.12|all] [--layout LAYOUT|all] [--binaries LIST] [-- FILTER]>";

/// What CI runs: system packages, formatting, lints, every test.
fn test() -> Result<(), String> {
    packages::ensure(packages::FOR_TESTS)?;
    run::cargo(&["fmt", "--all", "--", "--check"])?;
    run::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // Root-only tests are `#[ignore = "needs root"]`: CI runs as root and
    // runs them (and fails any that is not root); the helpers a test runs
    // in a child process of its own are left to that test.
    run::cargo(&[
        "test",
        "--workspace",
        "--",
        "--include-ignored",
        "--skip",
        "child_process::",
    ])?;
    // The same binaries on the kernel matrix's kernels, pure cgroup v2, in
    // each cgroup layout (the cgroup and nftables paths).
    vm::ci()?;
    docs()?;
    // The fuzz crate lives outside the workspace (as cargo-fuzz expects):
    // lint it, and run each target briefly so that it stays runnable.
    run::cargo(&["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"])?;
    run::cargo(&[
        "clippy",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--bins",
        "--",
        "-D",
        "warnings",
    ])?;
    for target in fuzz::TARGETS {
        fuzz::run(&[target.to_string(), "--seconds".into(), "10".into()])?;
    }
    println!("xtask test: all checks passed");
    Ok(())
}

/// The API docs build without a warning (broken links, missing docs).
fn docs() -> Result<(), String> {
    let mut cmd = std::process::Command::new(run::cargo_bin());
    cmd.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(run::workspace_root());
    run::status(&mut cmd)
}

/// `cargo xtask race --ops N`: a race campaign of N operations.
/// The escape suite (`tests/tests/escape.rs`): attacks from inside a
/// sandbox, printed as a table. Needs root.
fn escape() -> Result<(), String> {
    packages::ensure(packages::FOR_TESTS)?;
    // The forged-report case runs sbx from the same target directory.
    run::cargo(&["build", "-q", "-p", "sandbox-cli"])?;
    run::status(
        Command::new(run::cargo_bin())
            .args(["test", "-q", "-p", "integration-tests", "--test", "escape"])
            .current_dir(run::workspace_root()),
    )
}

/// Waves of concurrent sandboxes (successes, failures, timeouts, kills,
/// refusals) for N minutes, then a leak check. Needs root.
fn soak(args: &[String]) -> Result<(), String> {
    packages::ensure(packages::FOR_TESTS)?;
    let minutes = run::flag_value(args, "--minutes")?.unwrap_or(1);
    let concurrency = run::flag_value(args, "--concurrency")?.unwrap_or(50);
    run::status(
        Command::new(run::cargo_bin())
            .args([
                "run",
                "-q",
                "--release",
                "-p",
                "sandbox-core",
                "--example",
                "soak",
                "--",
            ])
            .args(["--minutes", &minutes.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .current_dir(run::workspace_root()),
    )
}

/// The mover campaign in each set-up this host allows (the mount ones need
/// root), printed.
fn mover(ops: u64) {
    use integration_tests::race_mover::{
        MoverConfig, MoverMode, in_private_mount_ns, may_mount, run_mover,
    };
    let config = MoverConfig {
        ops,
        ..MoverConfig::default()
    };
    println!("{}", run_mover(&config));
    if may_mount() {
        for mode in [MoverMode::OwnMount, MoverMode::OtherView] {
            let config = MoverConfig {
                mode,
                ..config.clone()
            };
            println!("{}", in_private_mount_ns(move || run_mover(&config)));
        }
    } else {
        println!("(the own-mount and second-view set-ups need root: not run)");
    }
}

fn race(args: &[String]) -> Result<(), String> {
    let mut config = integration_tests::race::RaceConfig::default();
    if let Some(ops) = run::flag_value(args, "--ops")? {
        config.ops = ops;
        config.check_every = (ops / 20).max(1000);
    }
    println!(
        "racing {} operations: {} workers, attackers at depths {:?}",
        config.ops, config.workers, config.depths
    );
    let report = integration_tests::race::run(&config);
    println!("{report}");
    // The read side: as many reads through the same swap points.
    let reads = integration_tests::race_reads::ReadRaceConfig {
        ops: config.ops,
        ..Default::default()
    };
    let read_report = integration_tests::race_reads::run_reads(&reads);
    println!("{read_report}");
    // The mover: the pinned-parent residual, measured (it is not an
    // escape through resolution, so it does not fail the run).
    mover(config.ops);
    let mut details = report.escape_details.clone();
    details.extend(read_report.escape_details.iter().cloned());
    if report.escapes == 0 && read_report.escapes == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} escapes (writes {}, reads {}):\n{}",
            report.escapes + read_report.escapes,
            report.escapes,
            read_report.escapes,
            details.join("\n")
        ))
    }
}
