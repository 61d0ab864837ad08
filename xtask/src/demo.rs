//! `cargo xtask demo`: the main job on the embedded default profile — real
//! commands in a native sandbox, each layer visible from inside, then the
//! report (the `demo` example of `sandbox-cli`, built once the system
//! packages are there). `cargo xtask demo root` shows `openat2-root` on its
//! own.

use std::process::Command;

use crate::run;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        None => {
            crate::packages::ensure(crate::packages::FOR_TESTS)?;
            let mut cmd = Command::new(run::cargo_bin());
            cmd.args([
                "run",
                "-q",
                "--release",
                "-p",
                "sandbox-cli",
                "--example",
                "demo",
            ])
            .current_dir(run::workspace_root());
            run::status(&mut cmd)
        }
        Some("root") => crate::demo_root::run(),
        Some(other) => Err(format!(
            "unknown demo {other:?}: `cargo xtask demo` or `cargo xtask demo root`"
        )),
    }
}
