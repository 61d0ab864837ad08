//! Idmapped lowers: a root caller's run has a host uid of its own, which
//! owns nothing on disk, so through a plain overlay the sandbox's user
//! could only write what a lower lets others write. The parent (root)
//! clones each lower's mount idmapped to the run's user namespace, so
//! that inside the sandbox a file keeps its numeric owner: one owned by
//! uid 1000 on disk is the sandbox's uid 1000's, one owned by 0 is the
//! sandbox's root's. The child attaches the clone over the lower's path
//! in its private mount namespace before it opens the lower. Where a
//! lower's filesystem cannot be idmapped (overlayfs; tmpfs before 6.3),
//! the parent sends a byte alone and the lower is used as it is.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use sandbox_policy::Policy;

use crate::decide::Decisions;
use crate::error::{Error, Result};

/// The lowers a run idmaps: every overlay's (the root overlay's too),
/// once each, where the run has a host uid of its own (a root caller);
/// none of an overlay that is a copy.
pub(crate) fn lowers(policy: &Policy, decisions: &Decisions) -> Vec<PathBuf> {
    if !decisions.credentials.run_ids {
        return Vec::new();
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for o in crate::mount::overlays(policy, decisions.fs_mode) {
        if decisions.overlay_copy && o.copies() && o.upper_dir().is_none() {
            continue;
        }
        for lower in o.lower.paths() {
            if !out.contains(lower) {
                out.push(lower.clone());
            }
        }
    }
    out
}

/// Sends each of `lowers` to the child `pid` over `socket`, idmapped to
/// its user namespace (whose maps are written), or a byte alone where
/// that fails. Returns the lowers sent idmapped.
pub(crate) fn send_lowers(
    pid: i32,
    lowers: &[PathBuf],
    socket: BorrowedFd<'_>,
) -> Result<Vec<PathBuf>> {
    if lowers.is_empty() {
        return Ok(Vec::new());
    }
    let ns = format!("/proc/{pid}/ns/user");
    let userns = std::fs::File::open(&ns).map_err(Error::prepare(format!("open {ns}")))?;
    let mut sent = Vec::new();
    for lower in lowers {
        let path = crate::plan::path_cstring(lower)?;
        let what = format!("send the lower {} to the sandbox", lower.display());
        match sandbox_child::idmapped_tree(&path, userns.as_fd()) {
            Ok(tree) => {
                sandbox_child::net::send_fd(socket, tree.as_fd())
                    .map_err(Error::prepare_errno(what))?;
                sent.push(lower.clone());
            }
            Err(errno) => {
                tracing::debug!(lower = %lower.display(), %errno, "lower not idmapped");
                rustix::net::send(socket, &[0], rustix::net::SendFlags::empty())
                    .map_err(Error::prepare_errno(what))?;
            }
        }
    }
    Ok(sent)
}
