//! What a run changed through an overlay: read from its upper through
//! `openat2-root` (no symlink in it is followed), each entry compared with
//! the lowers.

use std::path::{Path, PathBuf};

use openat2_root::{ErrorKind, FileType, Root};
use serde::Serialize;

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// Not in any lower.
    Added,
    /// In a lower, and changed (content, mode or type).
    Modified,
    /// In a lower, and deleted (a whiteout).
    Deleted,
    /// A directory of a lower deleted and made again: what the lower had
    /// in it is gone (an opaque directory).
    Replaced,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Change {
    /// The path, relative to the overlay's target.
    pub path: PathBuf,
    /// How it changed.
    pub kind: ChangeKind,
    /// Its size in the upper (added, modified), or in the lower it hid
    /// (deleted); 0 for directories.
    pub size: u64,
}

/// The changes of one overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OverlayChanges {
    /// The overlay's target in the sandbox.
    pub target: PathBuf,
    /// The upper the changes were read from: a kept upper's `…/diff`, or
    /// `tmpfs`.
    pub upper: PathBuf,
    /// The changes, sorted by path (at most [`MAX_CHANGES`]).
    pub changes: Vec<Change>,
    /// Whether there were more than [`MAX_CHANGES`].
    pub truncated: bool,
    /// Why they could not be read, if they could not.
    pub error: Option<String>,
    /// Whether the overlay's lowers were mounted idmapped (a root
    /// caller's run, where their filesystem allows): a file owned by uid
    /// N on disk was uid N's in the sandbox.
    pub idmapped: bool,
}

/// The most changes listed per overlay.
pub const MAX_CHANGES: usize = 100_000;

/// The changes an overlay's upper holds over its lowers (the first on
/// top): every entry of `upper` (an overlay's `diff`; what a sandbox wrote
/// there is never followed: no symlink, no path longer than the kernel
/// takes, at most [`MAX_CHANGES`] read), as added, modified,
/// deleted (a whiteout: a 0:0 character device) or replaced (an opaque
/// directory: `user.overlay.opaque` or `trusted.overlay.opaque`).
///
/// # Errors
///
/// The first error opening or reading the upper or a lower.
///
/// # Examples
///
/// ```no_run
/// let changes = sandbox_core::overlay_changes(
///     "/var/lib/jobs/42/diff".as_ref(),
///     &["/srv/repo".into()],
/// )?;
/// for c in changes.changes {
///     println!("{:?} {}", c.kind, c.path.display());
/// }
/// # Ok::<(), openat2_root::Error>(())
/// ```
pub fn overlay_changes(
    upper: &Path,
    lowers: &[PathBuf],
) -> Result<OverlayChanges, openat2_root::Error> {
    changes_in(&Root::open(upper)?, upper, lowers)
}

/// As [`overlay_changes`], for an upper already open; `label` names it.
fn changes_in(
    upper: &Root,
    label: &Path,
    lowers: &[PathBuf],
) -> Result<OverlayChanges, openat2_root::Error> {
    let (lower_roots, mut out) = start(label, lowers)?;
    walk(upper, &lower_roots, Path::new(""), &mut out)?;
    out.changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The lowers opened, and an empty list of changes from `label`.
pub(crate) fn start(
    label: &Path,
    lowers: &[PathBuf],
) -> Result<(Vec<Root>, OverlayChanges), openat2_root::Error> {
    let roots = lowers
        .iter()
        .map(Root::open)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        roots,
        OverlayChanges {
            target: PathBuf::new(),
            upper: label.to_path_buf(),
            changes: Vec::new(),
            truncated: false,
            error: None,
            idmapped: false,
        },
    ))
}

/// The lower entry at `path` (the topmost that has it), lstat'ed.
pub(crate) fn in_lower<'a>(
    lowers: &'a [Root],
    path: &Path,
) -> Option<(&'a Root, openat2_root::Metadata)> {
    lowers
        .iter()
        .find_map(|l| l.symlink_metadata(path).ok().map(|m| (l, m)))
}

fn is_opaque(upper: &Root, dir: &Path) -> bool {
    let Ok(fd) = upper.open_dir(dir) else {
        return false;
    };
    // The root's fd is O_PATH, which fgetxattr refuses: its /proc path
    // reaches the same inode.
    use std::os::fd::{AsFd, AsRawFd};
    let path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let mut value = [0u8; 4];
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|name| {
            rustix::fs::getxattr(path.as_str(), *name, &mut value)
                .is_ok_and(|n| value.get(..n) == Some(b"y"))
        })
}

pub(crate) fn push(out: &mut OverlayChanges, path: PathBuf, kind: ChangeKind, size: u64) {
    if out.changes.len() >= MAX_CHANGES {
        out.truncated = true;
    } else {
        out.changes.push(Change { path, kind, size });
    }
}

fn walk(
    upper: &Root,
    lowers: &[Root],
    dir: &Path,
    out: &mut OverlayChanges,
) -> Result<(), openat2_root::Error> {
    let listing = match upper.read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) {
        Ok(listing) => listing,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in listing {
        // Past the cap, reading on would only cost time: a sandbox can
        // make millions of files.
        if out.truncated {
            return Ok(());
        }
        let entry = entry?;
        let path = dir.join(entry.file_name());
        let meta = entry.metadata()?;
        let lower = in_lower(lowers, &path).map(|(_, meta)| meta);
        let file_type = meta.file_type();
        if file_type == FileType::CharDevice && meta.rdev() == 0 {
            push(
                out,
                path,
                ChangeKind::Deleted,
                lower.map_or(0, |l| if l.is_dir() { 0 } else { l.len() }),
            );
            continue;
        }
        if file_type == FileType::Dir {
            match &lower {
                Some(l) if l.is_dir() => {
                    if is_opaque(upper, &path) {
                        push(out, path.clone(), ChangeKind::Replaced, 0);
                    }
                }
                Some(_) => push(out, path.clone(), ChangeKind::Modified, 0),
                None => push(out, path.clone(), ChangeKind::Added, 0),
            }
            walk(upper, lowers, &path, out)?;
            continue;
        }
        let size = meta.len();
        let kind = if lower.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        push(out, path, kind, size);
    }
    Ok(())
}

/// What a run keeps of its overlays for its outcome.
#[derive(Debug, Default)]
pub(crate) struct OverlayRun {
    /// Each tmpfs upper (or copy), in the overlays' order.
    pub(crate) tmpfs_uppers: Vec<std::os::fd::OwnedFd>,
    /// The lowers mounted idmapped.
    pub(crate) idmapped: Vec<PathBuf>,
}

/// Whether a run hands fds over the overlay socket: tmpfs uppers to the
/// parent, idmapped lowers to the child.
pub(crate) fn handoff_wanted(
    policy: &sandbox_policy::Policy,
    decisions: &crate::decide::Decisions,
) -> bool {
    tmpfs_overlays(policy, decisions.fs_mode) > 0
        || !crate::idmap::lowers(policy, decisions).is_empty()
}

/// How many overlays of `policy` have a tmpfs upper and are mounted (the
/// filesystem mode has a root of the sandbox's own).
pub(crate) fn tmpfs_overlays(
    policy: &sandbox_policy::Policy,
    mode: sandbox_policy::FsMode,
) -> usize {
    crate::mount::overlays(policy, mode)
        .iter()
        .filter(|o| o.upper_dir().is_none())
        .count()
}

/// The changes of every overlay of `policy`, read after a run: a kept
/// upper from its directory, a tmpfs upper from `tmpfs_uppers` (the fds
/// the child sent, in the overlays' order). An error reading one is
/// recorded in it.
pub(crate) fn run_changes(
    policy: &sandbox_policy::Policy,
    decisions: &crate::decide::Decisions,
    run: OverlayRun,
) -> Vec<OverlayChanges> {
    let mode = decisions.fs_mode;
    let mut tmpfs = run.tmpfs_uppers.into_iter();
    crate::mount::overlays(policy, mode)
        .iter()
        .filter_map(|o| {
            let (label, upper) = match o.upper_dir() {
                Some(dir) => {
                    let diff = dir.join("diff");
                    (diff.clone(), Root::open(&diff))
                }
                None => (PathBuf::from("tmpfs"), Root::from_fd(tmpfs.next()?)),
            };
            let copied = decisions.overlay_copy && o.copies() && o.upper_dir().is_none();
            let label = if copied {
                PathBuf::from("tmpfs (a copy)")
            } else {
                label
            };
            let read = match upper {
                Err(e) => Err(e.to_string()),
                Ok(upper) if copied => {
                    crate::copy_changes::changes_in_copy(&upper, &label, o.lower.paths())
                        .map_err(|e| e.to_string())
                }
                Ok(upper) => changes_in(&upper, &label, o.lower.paths()).map_err(|e| e.to_string()),
            };
            let mut changes = read.unwrap_or_else(|e| OverlayChanges {
                target: PathBuf::new(),
                upper: label,
                changes: Vec::new(),
                truncated: false,
                error: Some(e),
                idmapped: false,
            });
            changes.target = o.target.clone();
            changes.idmapped = o.lower.paths().iter().all(|l| run.idmapped.contains(l));
            Some(changes)
        })
        .collect()
}
