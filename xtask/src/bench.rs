//! `cargo xtask bench fs`: runs the criterion benches and prints the ratios
//! of `Root` against `std::fs` and `cap-std`, measured in the same run.

use std::path::Path;
use std::process::Command;

use crate::run;

const OPS: [&str; 5] = [
    "metadata",
    "open_close",
    "create_remove",
    "rename",
    "create_dir_all",
];
const DEPTHS: [u32; 3] = [1, 4, 16];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("fs") => fs(&args[1..]),
        _ => Err("usage: cargo xtask bench fs [--disk]".into()),
    }
}

fn fs(args: &[String]) -> Result<(), String> {
    let mut cmd = Command::new(run::cargo_bin());
    cmd.args(["bench", "-p", "benches", "--bench", "fs"])
        .current_dir(run::workspace_root());
    let place = if args.iter().any(|a| a == "--disk") {
        cmd.env("BENCH_DIR", std::env::temp_dir());
        format!(
            "a temporary directory on disk ({})",
            std::env::temp_dir().display()
        )
    } else {
        "tmpfs (/dev/shm); --disk for the temporary directory on disk".to_string()
    };
    run::status(&mut cmd)?;
    let dir = run::workspace_root().join("target/criterion");
    println!("\nmean time per operation (ns) on {place}; ratio < 1 means Root is faster");
    println!("| operation | depth | std::fs | cap-std | Root | Root/std | Root/cap-std |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut misses = Vec::new();
    for op in OPS {
        for depth in DEPTHS {
            let std = mean_ns(&dir, op, "std", depth)?;
            let cap = mean_ns(&dir, op, "cap-std", depth)?;
            let root = mean_ns(&dir, op, "root", depth)?;
            let (vs_std, vs_cap) = (root / std, root / cap);
            println!(
                "| {op} | {depth} | {std:.0} | {cap:.0} | {root:.0} | {vs_std:.2} | {vs_cap:.2} |"
            );
            if vs_std > 1.3 || vs_cap > 1.0 {
                misses.push(format!("{op} at depth {depth}"));
            }
        }
    }
    let checked: Vec<String> = DEPTHS
        .iter()
        .map(|d| mean_ns(&dir, "open_close", "root", *d))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .map(|ns| format!("{ns:.0}"))
        .collect();
    let unchecked: Vec<String> = DEPTHS
        .iter()
        .map(|d| mean_ns(&dir, "open_close", "root-allow-special", *d))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .map(|ns| format!("{ns:.0}"))
        .collect();
    println!(
        "\nopen_close with allow_special_files(true) (no fstat + fcntl check), depths {DEPTHS:?}: {} ns (checked: {} ns)",
        unchecked.join(" / "),
        checked.join(" / ")
    );
    if misses.is_empty() {
        println!("\ntarget (<= 1.3x std, <= 1.0x cap-std) met everywhere");
    } else {
        println!(
            "\ntarget (<= 1.3x std, <= 1.0x cap-std) missed for: {}",
            misses.join(", ")
        );
    }
    Ok(())
}

/// Criterion's mean estimate for one benchmark, in nanoseconds.
fn mean_ns(dir: &Path, op: &str, function: &str, depth: u32) -> Result<f64, String> {
    let path = dir
        .join(op)
        .join(function)
        .join(depth.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    json["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no mean.point_estimate", path.display()))
}
