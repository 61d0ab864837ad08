//! `cargo xtask bench fs [--disk] [--criterion]`: the filesystem hot paths,
//! `Root` against `std::fs` and `cap-std` measured in the same run.
//! `cargo xtask bench spawn [--rounds N]`: `/bin/true` in a full sandbox
//! (`sbx` and the library) against bubblewrap and a plain spawn.
//! `cargo xtask bench nft [--rounds N]`: the egress ruleset installed with
//! libnftnl against `nft -f`.
//! `cargo xtask bench egress [--rounds N] [--seconds N]`: iperf3 and
//! request/response latency through our forwarder against pasta and
//! slirp4netns.
//! `cargo xtask bench names [--rounds N]`: egress by name: a DNS lookup
//! judged and pinned against one relayed, a pinned download against one by
//! address.
//! `cargo xtask bench image [--rounds N]`: unpacking an image against
//! `tar -x`, and an overlay's cost on a spawn.
//! `cargo xtask bench concurrent [--sandboxes N] [--networked N]`: N
//! sandboxes alive at once from one tokio runtime against bubblewrap
//! launched from the same runtime; threads, memory per sandbox, leaks.
//!
//! By default it runs `benches/fs_pairwise.rs`, which interleaves the three
//! implementations in rounds and prints the ratio table; `--criterion` runs
//! the criterion benches as well (reports under `target/criterion`).

use std::process::Command;

use crate::run;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("fs") => fs(&args[1..]),
        Some("spawn") => spawn(&args[1..]),
        Some("nft") => nft(&args[1..]),
        Some("egress") => egress(&args[1..]),
        Some("names") => names(&args[1..]),
        Some("concurrent") => concurrent(&args[1..]),
        Some("image") => image(&args[1..]),
        _ => Err(
            "usage: cargo xtask bench fs [--disk] [--criterion] | bench spawn [--rounds N] | bench nft [--rounds N] | bench egress [--rounds N] [--seconds N] | bench names [--rounds N] | bench image [--rounds N] | bench concurrent [--sandboxes N] [--networked N]".into(),
        ),
    }
}

fn fs(args: &[String]) -> Result<(), String> {
    let on_disk = args.iter().any(|a| a == "--disk");
    let mut benches = vec!["fs_pairwise"];
    if args.iter().any(|a| a == "--criterion") {
        benches.push("fs");
    }
    for bench in benches {
        let mut cmd = Command::new(run::cargo_bin());
        cmd.args(["bench", "-q", "-p", "benches", "--bench", bench])
            .current_dir(run::workspace_root());
        if on_disk {
            cmd.env("BENCH_DIR", std::env::temp_dir());
        }
        run::status(&mut cmd)?;
    }
    println!(
        "(measured on {})",
        if on_disk {
            "a temporary directory on disk"
        } else {
            "tmpfs, /dev/shm; --disk for a disk-backed directory"
        }
    );
    Ok(())
}

fn spawn(args: &[String]) -> Result<(), String> {
    crate::packages::ensure(crate::packages::FOR_SPAWN_BENCH)?;
    run::cargo(&["build", "-q", "--release", "-p", "sandbox-cli"])?;
    let mut cmd = Command::new(run::cargo_bin());
    cmd.args(["bench", "-q", "-p", "benches", "--bench", "spawn"])
        .env("SBX_BIN", run::target_dir().join("release/sbx"))
        .current_dir(run::workspace_root());
    if let Some(rounds) = run::flag_value(args, "--rounds")? {
        cmd.env("SPAWN_ROUNDS", rounds.to_string());
    }
    run::status(&mut cmd)
}

fn nft(args: &[String]) -> Result<(), String> {
    crate::packages::ensure(crate::packages::FOR_NFT_BENCH)?;
    let mut cmd = Command::new(run::cargo_bin());
    cmd.args(["bench", "-q", "-p", "benches", "--bench", "nft"])
        .current_dir(run::workspace_root());
    if let Some(rounds) = run::flag_value(args, "--rounds")? {
        cmd.env("NFT_ROUNDS", rounds.to_string());
    }
    run::status(&mut cmd)
}

fn egress(args: &[String]) -> Result<(), String> {
    crate::packages::ensure(crate::packages::FOR_EGRESS_BENCH)?;
    let mut cmd = Command::new(run::cargo_bin());
    cmd.args(["bench", "-q", "-p", "benches", "--bench", "egress"])
        .current_dir(run::workspace_root());
    if let Some(rounds) = run::flag_value(args, "--rounds")? {
        cmd.env("EGRESS_ROUNDS", rounds.to_string());
    }
    if let Some(seconds) = run::flag_value(args, "--seconds")? {
        cmd.env("EGRESS_SECONDS", seconds.to_string());
    }
    run::status(&mut cmd)
}

fn image(args: &[String]) -> Result<(), String> {
    let mut cmd = Command::new(run::cargo_bin());
    cmd.args(["bench", "-q", "-p", "benches", "--bench", "image"])
        .current_dir(run::workspace_root());
    if let Some(rounds) = run::flag_value(args, "--rounds")? {
        cmd.env("IMAGE_ROUNDS", rounds.to_string());
    }
    run::status(&mut cmd)
}

fn names(args: &[String]) -> Result<(), String> {
    let mut cmd = Command::new(run::cargo_bin());
    cmd.args(["bench", "-q", "-p", "benches", "--bench", "names"])
        .current_dir(run::workspace_root());
    if let Some(rounds) = run::flag_value(args, "--rounds")? {
        cmd.env("NAMES_ROUNDS", rounds.to_string());
    }
    run::status(&mut cmd)
}

fn concurrent(args: &[String]) -> Result<(), String> {
    crate::packages::ensure(crate::packages::FOR_SPAWN_BENCH)?;
    let mut cmd = Command::new(run::cargo_bin());
    cmd.args(["bench", "-q", "-p", "benches", "--bench", "concurrent"])
        .current_dir(run::workspace_root());
    if let Some(n) = run::flag_value(args, "--sandboxes")? {
        cmd.env("CONCURRENT_SANDBOXES", n.to_string());
    }
    if let Some(n) = run::flag_value(args, "--networked")? {
        cmd.env("CONCURRENT_NETWORKED", n.to_string());
    }
    run::status(&mut cmd)
}
