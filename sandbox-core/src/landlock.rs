//! Landlock: which ABI this host gives ([`decide`]), what it cannot say
//! ([`missing`]), and the ruleset step: reads everywhere, writes only
//! beneath the writable mounts ([`step`]).

use std::path::{Path, PathBuf};

use sandbox_policy::{FsMode, LandlockMode, NetMode, Policy};

use crate::error::Result;
use crate::findings::{Findings, reason};
use crate::host::HostCapabilities;
use crate::plan::builder::path_cstring;
use crate::report::Layer;
use sandbox_child::Step;

/// What the sandbox's Landlock ruleset cannot say at `abi` (the newest
/// ABI this code uses is 6), with what stands in for it.
pub(crate) fn missing(abi: u32, host_network: bool) -> Vec<String> {
    let mut missing = Vec::new();
    if abi < 2 {
        missing.push(
            "linking or renaming a file into another directory (ABI 2): refused outright".into(),
        );
    }
    if abi < 3 {
        missing.push(
            "truncating files (ABI 3): only read-only mounts stop it outside the writable paths"
                .into(),
        );
    }
    if abi < 5 {
        missing.push("ioctl on device files (ABI 5): only seccomp's ioctl rules apply".into());
    }
    if abi < 6 {
        missing.push(format!(
            "scoping signals and abstract unix sockets (ABI 6): {}",
            if host_network {
                "the pid namespace confines signals, but the host's abstract unix sockets are reachable (network.mode = \"host\")"
            } else {
                "the pid and network namespaces confine them instead"
            }
        ));
    }
    missing
}

/// The Landlock ABI a run uses (`None`: not applied), with its report
/// lines.
pub(crate) fn decide(
    policy: &Policy,
    host: &HostCapabilities,
    found: &mut Findings,
) -> Option<u32> {
    let asked = policy.privilege.landlock.unwrap_or(LandlockMode::Auto);
    match (asked, host.landlock_abi) {
        (LandlockMode::Off, _) => None,
        (_, Some(abi)) => {
            found.mechanism(
                Layer::Privilege,
                format!(
                    "Landlock ABI {abi}: writes only beneath the writable mounts{}",
                    if abi >= 6 {
                        "; signals and abstract unix sockets scoped to the sandbox"
                    } else {
                        ""
                    }
                ),
            );
            let host_network = policy.network.mode == Some(NetMode::Host);
            let missing = missing(abi, host_network);
            if !missing.is_empty() {
                found.note(
                    Layer::Privilege,
                    format!(
                        "Landlock ABI {abi} on this kernel does not cover: {}",
                        missing.join("; ")
                    ),
                );
            }
            Some(abi)
        }
        (LandlockMode::Require, None) => {
            found.down(
                Layer::Privilege,
                format!(
                    "privilege.landlock = \"require\": {}",
                    reason(&host.landlock)
                ),
            );
            None
        }
        (LandlockMode::Auto, None) => {
            found.note(
                Layer::Privilege,
                format!(
                    "Landlock not applied (landlock = \"auto\"): {}",
                    reason(&host.landlock)
                ),
            );
            None
        }
    }
}

/// Paths the sandbox may write beneath (for Landlock), with whether each
/// is a directory.
pub(crate) fn writable_paths(policy: &Policy, mode: FsMode) -> Vec<(PathBuf, bool)> {
    let fs = &policy.filesystem;
    if mode == FsMode::Off {
        return vec![(PathBuf::from("/"), true)];
    }
    let mut out: Vec<(PathBuf, bool)> = ["/dev/shm", "/dev/pts"]
        .into_iter()
        .map(|p| (PathBuf::from(p), true))
        .collect();
    out.extend(fs.tmpfs.iter().flatten().map(|t| (t.target.clone(), true)));
    out.extend(
        crate::mount::overlays(policy, mode)
            .into_iter()
            .map(|o| (o.target, true)),
    );
    out.extend(
        fs.binds
            .iter()
            .flatten()
            .filter(|b| b.writable)
            .map(|b| (b.target.clone(), b.source.is_dir())),
    );
    out
}

pub(crate) mod access {
    pub(crate) const EXECUTE: u64 = 1 << 0;
    pub(crate) const WRITE_FILE: u64 = 1 << 1;
    pub(crate) const READ_FILE: u64 = 1 << 2;
    pub(crate) const READ_DIR: u64 = 1 << 3;
    pub(crate) const MAKE_CHAR: u64 = 1 << 6;
    pub(crate) const MAKE_BLOCK: u64 = 1 << 11;
    pub(crate) const TRUNCATE: u64 = 1 << 14;
    pub(crate) const IOCTL_DEV: u64 = 1 << 15;
}

pub(crate) fn step(abi: u32, writable: &[(PathBuf, bool)]) -> Result<Step> {
    use access::*;
    let handled = match abi {
        1 => (1 << 13) - 1,
        2 => (1 << 14) - 1,
        3 | 4 => (1 << 15) - 1,
        _ => (1 << 16) - 1,
    };
    let file_rights = (EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV) & handled;
    let all = handled & !(MAKE_CHAR | MAKE_BLOCK);
    let read = EXECUTE | READ_FILE | READ_DIR;
    let mut rules = vec![
        (path_cstring(Path::new("/"))?, read),
        (
            path_cstring(Path::new("/dev"))?,
            (read | WRITE_FILE | IOCTL_DEV) & handled,
        ),
    ];
    for (path, is_dir) in writable {
        rules.push((path_cstring(path)?, if *is_dir { all } else { file_rights }));
    }
    let scoped = if abi >= 6 { 0b11 } else { 0 };
    let attr_size = match abi {
        1..=3 => 8,
        4 | 5 => 16,
        _ => 24,
    };
    Ok(Step::Landlock {
        handled: [handled, 0, scoped],
        attr_size,
        rules,
    })
}
