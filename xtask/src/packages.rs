//! System packages the tasks need, installed with apt-get when missing.

use std::process::Command;

use crate::run;

/// A Debian package, and the command whose presence shows it installed.
pub(crate) struct Package {
    pub(crate) name: &'static str,
    pub(crate) provides: &'static str,
    pub(crate) why: &'static str,
}

/// What `cargo xtask test` needs beyond the Rust toolchain: a C compiler
/// for the crates that build C, and `pkg-config` to find system libraries.
pub(crate) const FOR_TESTS: &[Package] = &[
    Package {
        name: "gcc",
        provides: "cc",
        why: "C compiler for build scripts",
    },
    Package {
        name: "pkg-config",
        provides: "pkg-config",
        why: "locating system libraries",
    },
];

/// The peers `cargo xtask bench spawn` measures against (benchmark-only:
/// nothing else uses them).
pub(crate) const FOR_SPAWN_BENCH: &[Package] = &[Package {
    name: "bubblewrap",
    provides: "bwrap",
    why: "the peer of the spawn benchmark",
}];

/// Whether `command` is on the PATH.
pub(crate) fn have(command: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
        .unwrap_or(false)
}

/// Installs the packages of `wanted` whose command is missing: with apt-get
/// as root, otherwise by telling the exact command and failing.
pub(crate) fn ensure(wanted: &[Package]) -> Result<(), String> {
    let missing: Vec<&Package> = wanted.iter().filter(|p| !have(p.provides)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
    for p in &missing {
        println!("missing system package {} ({})", p.name, p.why);
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let install = install_command(&names);
    if !is_root {
        return Err(format!(
            "run as root, or install them first:\n    sudo sh -c '{install}'"
        ));
    }
    run::status(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run::status(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&names)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The shell command that installs `names`.
fn install_command(names: &[&str]) -> String {
    format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        names.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_commands_on_the_path() {
        assert!(have("sh"));
        assert!(!have("no-such-command-for-xtask"));
    }

    #[test]
    fn nothing_to_do_when_everything_is_there() {
        let present = [Package {
            name: "dash",
            provides: "sh",
            why: "test",
        }];
        assert_eq!(ensure(&present), Ok(()));
    }

    #[test]
    fn tells_the_exact_install_command() {
        assert_eq!(
            install_command(&["gcc", "g++"]),
            "apt-get update && apt-get install -y --no-install-recommends gcc g++"
        );
    }
}
