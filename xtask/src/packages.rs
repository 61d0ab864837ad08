//! System packages the tasks need, installed with apt-get when missing.

use std::process::Command;

use crate::run;

/// A Debian package, and what shows it installed: a command on the PATH,
/// or (for a library) an absolute path to one of its files.
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
    Package {
        name: "libnftnl-dev",
        provides: "/usr/include/libnftnl/table.h",
        why: "sandbox-net builds nftables rulesets with libnftnl",
    },
    Package {
        name: "libmnl-dev",
        provides: "/usr/include/libmnl/libmnl.h",
        why: "libnftnl's netlink library",
    },
    Package {
        name: "curl",
        provides: "curl",
        why: "the CLI test runs curl through the egress forwarder",
    },
    Package {
        name: "openssl",
        provides: "openssl",
        why: "the egress-by-name tests make a test CA and serve TLS with it",
    },
    Package {
        name: "busybox-static",
        provides: "/bin/busybox",
        why: "the image tests put a static busybox in an image and run it as its root",
    },
];

/// The peers of `cargo xtask bench egress` and its load (benchmark-only).
pub(crate) const FOR_EGRESS_BENCH: &[Package] = &[
    Package {
        name: "iperf3",
        provides: "iperf3",
        why: "the throughput load",
    },
    Package {
        name: "passt",
        provides: "pasta",
        why: "pasta, a peer",
    },
    Package {
        name: "slirp4netns",
        provides: "slirp4netns",
        why: "a peer",
    },
];

/// The peer of `cargo xtask bench nft` (benchmark-only).
pub(crate) const FOR_NFT_BENCH: &[Package] = &[Package {
    name: "nftables",
    provides: "nft",
    why: "the peer of the nftables benchmark (nft -f)",
}];

/// The peers `cargo xtask bench spawn` measures against (benchmark-only:
/// nothing else uses them).
pub(crate) const FOR_SPAWN_BENCH: &[Package] = &[Package {
    name: "bubblewrap",
    provides: "bwrap",
    why: "the peer of the spawn benchmark",
}];

/// Whether `provides` (a command, or an absolute path) is there.
fn present(provides: &str) -> bool {
    if provides.starts_with('/') {
        std::path::Path::new(provides).exists()
    } else {
        have(provides)
    }
}

/// Whether `command` is on the PATH.
fn have(command: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
        .unwrap_or(false)
}

/// Installs the packages of `wanted` whose command is missing: with apt-get
/// as root, otherwise by telling the exact command and failing.
pub(crate) fn ensure(wanted: &[Package]) -> Result<(), String> {
    let missing: Vec<&Package> = wanted.iter().filter(|p| !present(p.provides)).collect();
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
    fn finds_commands_on_the_path_and_files_by_path() {
        assert!(have("sh"));
        assert!(!have("no-such-command-for-xtask"));
        assert!(present("/bin/sh"));
        assert!(!present("/no/such/header.h"));
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
