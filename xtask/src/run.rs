//! Running commands and reading flags.

use std::path::PathBuf;
use std::process::Command;

/// The workspace root (xtask lives one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the
/// workspace root) if set, else `target` in the workspace root.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The cargo that runs us.
pub(crate) fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo ARGS` in the workspace root, failing on a non-zero exit.
pub(crate) fn cargo(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(cargo_bin());
    cmd.args(args).current_dir(workspace_root());
    status(&mut cmd)
}

/// Runs `cmd`, echoing it, failing on a non-zero exit.
pub(crate) fn status(cmd: &mut Command) -> Result<(), String> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("+ {shown}");
    let st = cmd
        .status()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({st})"))
    }
}

/// The number after `name` in `args`, if present.
pub(crate) fn flag_value(args: &[String], name: &str) -> Result<Option<u64>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            let v = args
                .get(i + 1)
                .ok_or_else(|| format!("{name} needs a number"))?;
            v.replace('_', "")
                .parse()
                .map(Some)
                .map_err(|_| format!("{name}: {v:?} is not a whole number"))
        }
    }
}
