//! Recursive removal: `remove_dir_all` and `remove` (`rm -r`, `rm -f`).
//!
//! The walk holds directories by fd and removes entries with `unlinkat` on
//! the fd of the directory that holds them. It never follows a symlink (a
//! symlink is removed itself), never crosses a mount (`RESOLVE_NO_XDEV`), and
//! keeps at most [`MAX_OPEN_DIRS`] directories open, so trees deeper than the
//! fd limit are removed too: a directory whose fd was closed is reopened
//! through its child's `..`, and checked to be the same inode.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::Root;
use crate::error::{ErrorKind, Operation, Result};
use crate::metadata::{FileType, Metadata};
use crate::resolve::Ctx;

/// How many entries a recursive removal removes from one directory between
/// two checks that the directory is still beneath the root.
const CHECK_EVERY: usize = 16;

/// How many directory fds a recursive removal keeps open at most.
const MAX_OPEN_DIRS: usize = 32;

/// How single names are opened during the walk, whatever the root's
/// options: beneath the directory, no symlink, no magic link, no mount.
const WALK_RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Options for [`Root::remove`], as `rm`'s `-r` and `-f`. Both are off by
/// default: then `remove` removes a file or symlink and fails on a
/// directory or a missing entry.
///
/// # Examples
///
/// ```
/// use openat2_root::RemoveOptions;
/// let rm_rf = RemoveOptions::new().recursive(true).force(true);
/// assert!(rm_rf.is_recursive() && rm_rf.is_force());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoveOptions {
    recursive: bool,
    force: bool,
}

impl RemoveOptions {
    /// Neither recursive nor forced.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remove directories and their contents (`rm -r`).
    pub fn recursive(mut self, yes: bool) -> Self {
        self.recursive = yes;
        self
    }

    /// A missing entry is not an error (`rm -f`).
    pub fn force(mut self, yes: bool) -> Self {
        self.force = yes;
        self
    }

    /// Whether directories are removed with their contents.
    pub fn is_recursive(&self) -> bool {
        self.recursive
    }

    /// Whether a missing entry is fine.
    pub fn is_force(&self) -> bool {
        self.force
    }
}

/// A directory on the walk's stack.
struct Frame {
    /// Open while near the top of the stack; `None` once closed to save fds.
    dir: Option<Dir>,
    dev: u64,
    ino: u64,
    /// Its name in the directory below it on the stack.
    name: Vec<u8>,
}

impl Root {
    /// Removes the directory at `path` and everything in it.
    ///
    /// This corresponds to [`std::fs::remove_dir_all`], but only accesses
    /// paths beneath `self`. If `path` is a symlink, the symlink itself is
    /// removed. Symlinks inside are removed, never followed; a mount point
    /// inside stops the removal with [`Error::Escape`](crate::Error::Escape).
    ///
    /// # Errors
    ///
    /// `ENOTDIR` if `path` is a file; [`Error::Escape`](crate::Error::Escape)
    /// for a symlink in the parent path, a mount inside the tree, or a
    /// directory moved away during the walk (or out of the root: each
    /// directory is checked to be still beneath the root when it is entered,
    /// every 16 removals in it, and before it is removed). On error, part
    /// of the tree may
    /// already be removed; what remains is intact.
    #[doc(alias = "rm_rf")]
    pub fn remove_dir_all(&self, path: impl AsRef<Path>) -> Result<()> {
        let ctx = Ctx::new(Operation::RemoveDirAll, path.as_ref());
        self.remove_entry(&ctx, RemoveOptions::new().recursive(true), true)
    }

    /// Removes the entry at `path` as `rm` would: a file or symlink always,
    /// a directory with `recursive`; with `force`, a missing entry is fine.
    ///
    /// # Errors
    ///
    /// `EISDIR` for a directory without `recursive`; `ENOENT` without
    /// `force`; otherwise as [`Root::remove_dir_all`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openat2_root::{RemoveOptions, Root};
    /// # let dir = tempfile::tempdir()?;
    /// let root = Root::open(dir.path())?;
    /// root.create_dir_all("build/out", 0o755)?;
    /// root.remove("build", RemoveOptions::new().recursive(true))?;
    /// // Already gone: fine with `force`.
    /// root.remove("build", RemoveOptions::new().recursive(true).force(true))?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "rm")]
    pub fn remove(&self, path: impl AsRef<Path>, options: RemoveOptions) -> Result<()> {
        let ctx = Ctx::new(Operation::Remove, path.as_ref());
        self.remove_entry(&ctx, options, false)
    }

    fn remove_entry(&self, ctx: &Ctx<'_>, options: RemoveOptions, dir_only: bool) -> Result<()> {
        let split = ctx.parse_entry()?;
        let parent = match self.parent(&split, ctx) {
            Err(err) if options.force && err.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            other => other?,
        };
        let meta = match Metadata::statx_at(&parent, split.leaf, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(meta) => meta,
            Err(Errno::NOENT) if options.force => return Ok(()),
            Err(errno) => return Err(ctx.os(errno)),
        };
        match meta.file_type() {
            FileType::Dir if options.recursive => {
                let top = match self.open_walk_dir(parent.as_fd(), split.leaf, ctx) {
                    // Removed by someone else in the meantime.
                    Err(err) if options.force && err.kind() == ErrorKind::NotFound => return Ok(()),
                    other => other?,
                };
                remove_tree(self, parent.as_fd(), split.leaf, top, ctx)
            }
            FileType::Dir => Err(ctx.os(Errno::ISDIR)),
            FileType::Symlink if split.must_be_dir => Err(ctx.escape(Errno::LOOP)),
            _ if split.must_be_dir => Err(ctx.os(Errno::NOTDIR)),
            FileType::Symlink => unlink(parent.as_fd(), split.leaf, ctx, options.force),
            _ if dir_only => Err(ctx.os(Errno::NOTDIR)),
            _ => unlink(parent.as_fd(), split.leaf, ctx, options.force),
        }
    }

    /// Opens the directory `name` in `dir` for reading, refusing symlinks
    /// and mount points.
    fn open_walk_dir(&self, dir: BorrowedFd<'_>, name: &[u8], ctx: &Ctx<'_>) -> Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
        self.openat2_with(dir, name, flags, Mode::empty(), WALK_RESOLVE, ctx)
    }
}

fn unlink(dir: BorrowedFd<'_>, name: &[u8], ctx: &Ctx<'_>, force: bool) -> Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::NOENT) if force => Ok(()),
        other => other.map_err(|e| ctx.os(e)),
    }
}

/// Removes the tree whose top, `top`, is the directory `top_name` in `base`.
fn remove_tree(
    root: &Root,
    base: BorrowedFd<'_>,
    top_name: &[u8],
    top: OwnedFd,
    ctx: &Ctx<'_>,
) -> Result<()> {
    // Every directory is checked to be still beneath the root when it is
    // entered, before an emptied one is removed from the one below it, and
    // every CHECK_EVERY removals: another process may move a directory of
    // the walk out of the root while it runs.
    root.check_beneath(top.as_fd(), ctx)?;
    let mut stack = vec![open_frame(top, top_name.to_vec(), ctx)?];
    let mut unchecked = 0usize;
    loop {
        let Some(frame) = stack.last_mut() else {
            return Ok(());
        };
        let Some(dir) = frame.dir.as_mut() else {
            return Err(ctx.os(Errno::BADF)); // unreachable: the top frame is always open
        };
        match dir.read() {
            Some(Ok(entry)) => {
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let name = name.to_vec();
                let dir_fd = dir.fd().map_err(|e| ctx.os(e))?;
                let mut file_type = FileType::from_rustix(entry.file_type());
                if file_type == FileType::Unknown {
                    match Metadata::statx_at(dir_fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(meta) => file_type = meta.file_type(),
                        Err(Errno::NOENT) => continue,
                        Err(errno) => return Err(ctx.os(errno)),
                    }
                }
                if file_type != FileType::Dir {
                    unchecked += 1;
                    if unchecked >= CHECK_EVERY {
                        root.check_beneath(dir_fd, ctx)?;
                        unchecked = 0;
                    }
                    match rustix::fs::unlinkat(dir_fd, name.as_slice(), AtFlags::empty()) {
                        Ok(()) | Err(Errno::NOENT) => continue,
                        // Swapped for a directory since it was listed: read
                        // the directory again to see it as one.
                        Err(Errno::ISDIR) => {
                            dir.rewind();
                            continue;
                        }
                        Err(errno) => return Err(ctx.os(errno)),
                    }
                }
                let child = match root.open_walk_dir(dir_fd, &name, ctx) {
                    Ok(fd) => fd,
                    Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
                    // Swapped for a symlink or file since it was listed:
                    // remove that instead, never following it.
                    Err(err) if matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                        match rustix::fs::unlinkat(dir_fd, name.as_slice(), AtFlags::empty()) {
                            Ok(()) | Err(Errno::NOENT) => continue,
                            Err(_) => return Err(err),
                        }
                    }
                    Err(err) => return Err(err),
                };
                // Close the oldest open directory if too many are open; it
                // is reopened through `..` on the way back up.
                if stack.len() >= MAX_OPEN_DIRS {
                    if let Some(old) = stack.iter_mut().find(|f| f.dir.is_some()) {
                        old.dir = None;
                    }
                }
                root.check_beneath(child.as_fd(), ctx)?;
                unchecked = 0;
                stack.push(open_frame(child, name, ctx)?);
            }
            Some(Err(errno)) => return Err(ctx.os(errno)),
            None => {
                // Empty now: remove it from the directory below it.
                let done = stack.pop().ok_or_else(|| ctx.os(Errno::BADF))?;
                let Some(below) = stack.last_mut() else {
                    root.check_beneath(base, ctx)?;
                    return rustix::fs::unlinkat(base, top_name, AtFlags::REMOVEDIR)
                        .map_err(|e| ctx.os(e));
                };
                if below.dir.is_none() {
                    let done_dir = done.dir.as_ref().ok_or_else(|| ctx.os(Errno::BADF))?;
                    below.dir = Some(reopen_parent(done_dir, below, ctx)?);
                }
                let below_fd = below
                    .dir
                    .as_ref()
                    .map(Dir::fd)
                    .ok_or_else(|| ctx.os(Errno::BADF))?;
                let below_fd = below_fd.map_err(|e| ctx.os(e))?;
                drop(done.dir);
                root.check_beneath(below_fd, ctx)?;
                unchecked = 0;
                rustix::fs::unlinkat(below_fd, done.name.as_slice(), AtFlags::REMOVEDIR)
                    .map_err(|e| ctx.os(e))?;
            }
        }
    }
}

fn open_frame(fd: OwnedFd, name: Vec<u8>, ctx: &Ctx<'_>) -> Result<Frame> {
    let meta = Metadata::of_fd(&fd).map_err(|e| ctx.os(e))?;
    let dir = Dir::new(fd).map_err(|e| ctx.os(e))?;
    Ok(Frame {
        dir: Some(dir),
        dev: meta.dev(),
        ino: meta.ino(),
        name,
    })
}

/// Reopens `expected` (whose fd was closed) as the `..` of `child`, refusing
/// it unless it is the same directory: if it was moved, `..` leads elsewhere.
fn reopen_parent(child: &Dir, expected: &Frame, ctx: &Ctx<'_>) -> Result<Dir> {
    let child_fd = child.fd().map_err(|e| ctx.os(e))?;
    let fd = rustix::fs::openat(
        child_fd,
        "..",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ctx.os(e))?;
    let meta = Metadata::of_fd(&fd).map_err(|e| ctx.os(e))?;
    if meta.dev() != expected.dev || meta.ino() != expected.ino {
        return Err(ctx.escape(Errno::XDEV));
    }
    Dir::new(fd).map_err(|e| ctx.os(e))
}
