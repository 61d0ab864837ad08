//! `cargo xtask fuzz TARGET [--seconds N]`: runs a cargo-fuzz target,
//! installing cargo-fuzz first if missing. cargo-fuzz needs nightly
//! compiler flags; on the stable toolchain `RUSTC_BOOTSTRAP=1` enables them.

use std::process::Command;

use crate::run;

/// The fuzz targets in `fuzz/fuzz_targets/`.
pub(crate) const TARGETS: [&str; 6] = [
    "path_parse",
    "root_ops",
    "policy_toml",
    "policy_json",
    "net_rule",
    "guest_frames",
];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let target = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .ok_or("usage: cargo xtask fuzz TARGET [--seconds N]")?;
    let seconds = run::flag_value(args, "--seconds")?.unwrap_or(60);
    let has_cargo_fuzz = Command::new(run::cargo_bin())
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_cargo_fuzz {
        run::cargo(&["install", "cargo-fuzz", "--locked"])?;
    }
    let fuzz_dir = run::workspace_root().join("fuzz");
    std::fs::create_dir_all(fuzz_dir.join("corpus").join(target))
        .map_err(|e| format!("corpus directory: {e}"))?;
    // The growing corpus (ignored by git), then the committed seeds.
    let mut corpora = vec![format!("corpus/{target}")];
    if fuzz_dir.join("seeds").join(target).is_dir() {
        corpora.push(format!("seeds/{target}"));
    }
    run::status(
        Command::new(run::cargo_bin())
            .args(["fuzz", "run", target])
            .args(&corpora)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&fuzz_dir),
    )
}
