//! Operations on names: create and remove directories, remove files,
//! rename, link. Each resolves the parent with `openat2` and then makes one
//! `*at` syscall with the last component, which the kernel never follows.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::Root;
use crate::error::{Operation, Result};
use crate::metadata::Metadata;
use crate::path::trim_trailing_slashes;
use crate::resolve::{Ctx, DirFd};

impl Root {
    /// Creates the directory `path` with permission bits `mode` (less the
    /// umask).
    ///
    /// This corresponds to [`std::fs::DirBuilder::create`] with a mode, but
    /// only accesses paths beneath `self`.
    ///
    /// # Errors
    ///
    /// `EEXIST` ([`ErrorKind::AlreadyExists`](crate::ErrorKind)) if the
    /// entry exists (even as a symlink, which is not followed); `ENOENT` if
    /// the parent does not exist; [`Error::Escape`](crate::Error::Escape) if
    /// the parent path crosses a symlink.
    #[doc(alias = "mkdir")]
    pub fn create_dir(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let ctx = Ctx::new(Operation::CreateDir, path.as_ref());
        let split = ctx.parse_entry()?;
        let parent = self.parent(&split, &ctx)?;
        rustix::fs::mkdirat(&parent, split.leaf_with_slash, Mode::from_raw_mode(mode))
            .map_err(|e| ctx.os(e))
    }

    /// Creates `path` and every missing directory above it, with permission
    /// bits `mode` (less the umask). An existing directory is fine.
    ///
    /// This corresponds to [`std::fs::create_dir_all`] (`mkdir -p`), but only
    /// accesses paths beneath `self`.
    ///
    /// # Errors
    ///
    /// [`Error::Escape`](crate::Error::Escape) if a component is a symlink,
    /// or if a directory it made one in was moved out of the root meanwhile
    /// (each is checked before a directory is made in it); `EEXIST` if a
    /// component exists and is not a directory. On error, the directories
    /// created before it remain.
    #[doc(alias = "mkdir_p")]
    pub fn create_dir_all(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let ctx = Ctx::new(Operation::CreateDirAll, path.as_ref());
        let rel = ctx.parse()?;
        if rel.is_root() {
            return Ok(());
        }
        let mode = Mode::from_raw_mode(mode);
        let split = rel.split();
        let whole = trim_trailing_slashes(rel.as_bytes());
        // Fast path: the parent exists, so one resolution and one mkdirat.
        match self.parent(&split, &ctx) {
            Ok(parent) => {
                return self.mkdir_or_existing_dir(&parent, split.leaf, whole, mode, &ctx);
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
            Err(err) => return Err(err),
        }
        // Slow path: walk down from the root one component at a time,
        // holding the fd of each directory reached; before each directory
        // is made, check that the one it goes in is still beneath the root
        // (another process may have moved it out since it was reached).
        let mut dir = DirFd::Borrowed(self.fd.as_fd());
        for (name, prefix) in rel.components_with_prefixes() {
            dir = match self.step_into(&dir, name, prefix, &ctx) {
                Ok(fd) => DirFd::Owned(fd),
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    self.check_beneath(dir.as_fd(), &ctx)?;
                    self.mkdir_or_existing_dir(&dir, name, prefix, mode, &ctx)?;
                    DirFd::Owned(self.step_into(&dir, name, prefix, &ctx)?)
                }
                Err(err) => return Err(err),
            };
        }
        Ok(())
    }

    /// Removes the file (or symlink, or other non-directory) at `path`.
    ///
    /// This corresponds to [`std::fs::remove_file`], but only accesses paths
    /// beneath `self`. A symlink at `path` is removed itself.
    ///
    /// # Errors
    ///
    /// `ENOENT`; `EISDIR` for a directory; [`Error::Escape`](crate::Error::Escape)
    /// if the parent path crosses a symlink.
    #[doc(alias = "unlink")]
    pub fn remove_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let ctx = Ctx::new(Operation::RemoveFile, path.as_ref());
        let split = ctx.parse_entry()?;
        let parent = self.parent(&split, &ctx)?;
        rustix::fs::unlinkat(&parent, split.leaf_with_slash, AtFlags::empty())
            .map_err(|e| ctx.os(e))
    }

    /// Removes the empty directory at `path`.
    ///
    /// This corresponds to [`std::fs::remove_dir`], but only accesses paths
    /// beneath `self`.
    ///
    /// # Errors
    ///
    /// `ENOTEMPTY`, `ENOTDIR` (also for a symlink to a directory), `ENOENT`;
    /// [`Error::Escape`](crate::Error::Escape) if the parent path crosses a
    /// symlink.
    #[doc(alias = "rmdir")]
    pub fn remove_dir(&self, path: impl AsRef<Path>) -> Result<()> {
        let ctx = Ctx::new(Operation::RemoveDir, path.as_ref());
        let split = ctx.parse_entry()?;
        let parent = self.parent(&split, &ctx)?;
        rustix::fs::unlinkat(&parent, split.leaf_with_slash, AtFlags::REMOVEDIR)
            .map_err(|e| ctx.os(e))
    }

    /// Renames `from` to `to`, replacing `to` if it exists (a file by a file,
    /// an empty directory by a directory).
    ///
    /// This corresponds to [`std::fs::rename`], but only accesses paths
    /// beneath `self`. Symlinks at either end are renamed or replaced
    /// themselves, never followed.
    ///
    /// # Errors
    ///
    /// As `renameat2(2)`: `ENOENT`, `EISDIR`, `ENOTDIR`, `ENOTEMPTY`,
    /// `EINVAL` (a directory into itself), `EXDEV` (across mounts, as an
    /// ordinary [`Error::Os`](crate::Error::Os)); and
    /// [`Error::Escape`](crate::Error::Escape) if either parent path crosses a
    /// symlink. Nothing is changed on error.
    #[doc(alias = "renameat")]
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
        self.rename_with(
            Operation::Rename,
            from.as_ref(),
            to.as_ref(),
            RenameFlags::empty(),
        )
    }

    /// Renames `from` to `to`, failing if `to` exists (`RENAME_NOREPLACE`):
    /// no check-then-act race.
    ///
    /// # Errors
    ///
    /// `EEXIST` if `to` exists; otherwise as [`Root::rename`].
    #[doc(alias = "renameNoReplace")]
    pub fn rename_noreplace(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        self.rename_with(Operation::RenameNoReplace, from, to, RenameFlags::NOREPLACE)
    }

    /// Atomically swaps the entries `a` and `b` (`RENAME_EXCHANGE`); both must
    /// exist, and may be of different types.
    ///
    /// # Errors
    ///
    /// `ENOENT` if either is missing; otherwise as [`Root::rename`].
    pub fn rename_exchange(&self, a: impl AsRef<Path>, b: impl AsRef<Path>) -> Result<()> {
        let (a, b) = (a.as_ref(), b.as_ref());
        self.rename_with(Operation::RenameExchange, a, b, RenameFlags::EXCHANGE)
    }

    fn rename_with(&self, op: Operation, from: &Path, to: &Path, flags: RenameFlags) -> Result<()> {
        let ctx = Ctx::two(op, from, to);
        let from_split = ctx.parse_entry()?;
        let to_split = ctx.second().parse_entry()?;
        let from_parent = self.parent(&from_split, &ctx)?;
        let to_parent = self.second_parent(&from_parent, &from_split, &to_split, &ctx.second())?;
        rustix::fs::renameat_with(
            &from_parent,
            from_split.leaf_with_slash,
            &to_parent,
            to_split.leaf_with_slash,
            flags,
        )
        .map_err(|e| ctx.os(e))
    }

    /// Creates a hard link `link` to the entry `original`. If `original` is
    /// a symlink, the link is to the symlink itself.
    ///
    /// This corresponds to [`std::fs::hard_link`], but only accesses paths
    /// beneath `self`.
    ///
    /// # Errors
    ///
    /// `EEXIST` if `link` exists; `EPERM` for a directory; `EXDEV` across
    /// mounts; [`Error::Escape`](crate::Error::Escape) if either parent path
    /// crosses a symlink.
    #[doc(alias = "link")]
    pub fn hard_link(&self, original: impl AsRef<Path>, link: impl AsRef<Path>) -> Result<()> {
        let ctx = Ctx::two(Operation::HardLink, original.as_ref(), link.as_ref());
        let from = ctx.parse_entry()?;
        let to = ctx.second().parse_entry()?;
        if from.must_be_dir {
            // `original/` names the directory a symlink would lead to: refuse
            // a symlink, and a non-directory with ENOTDIR. A directory goes
            // on to linkat, which refuses it (EPERM) after checking `link`.
            self.metadata_following(&ctx)?;
        }
        let from_parent = self.parent(&from, &ctx)?;
        let to_parent = match self.second_parent(&from_parent, &from, &to, &ctx.second()) {
            Ok(dir) => dir,
            Err(err) => {
                // linkat(2) looks `original` up before `link`'s parent:
                // report a missing original first, as it would.
                let original =
                    Metadata::statx_at(&from_parent, from.leaf, AtFlags::SYMLINK_NOFOLLOW);
                return Err(original.map_or_else(|errno| ctx.os(errno), |_| err));
            }
        };
        rustix::fs::linkat(
            &from_parent,
            from.leaf,
            &to_parent,
            to.leaf_with_slash,
            AtFlags::empty(),
        )
        .map_err(|e| ctx.os(e))
    }

    /// Creates the symlink `link` whose content is `target`.
    ///
    /// This corresponds to [`std::os::unix::fs::symlink`], but creates the
    /// link beneath `self`. The target is stored as given and never resolved
    /// by this crate; note that other programs may follow it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty
    /// target or one with a NUL byte; `EEXIST` if `link` exists;
    /// [`Error::Escape`](crate::Error::Escape) if its parent path crosses a
    /// symlink.
    pub fn symlink(&self, target: impl AsRef<Path>, link: impl AsRef<Path>) -> Result<()> {
        let target = target.as_ref();
        let ctx = Ctx::two(Operation::Symlink, link.as_ref(), target);
        let target_bytes = target.as_os_str().as_bytes();
        if target_bytes.is_empty() || target_bytes.contains(&0) {
            return Err(ctx.invalid_input("a symlink target must be non-empty with no NUL byte"));
        }
        let split = ctx.parse_entry()?;
        let parent = self.parent(&split, &ctx)?;
        rustix::fs::symlinkat(target_bytes, &parent, split.leaf_with_slash).map_err(|e| ctx.os(e))
    }
}

impl Root {
    /// `mkdirat(dir, name)`, where an existing directory counts as success
    /// (a symlink to one only when this root follows symlinks in the root).
    /// Opens the directory `name` in `dir`, whose path from the root is
    /// `prefix`. In follow-in-root mode the whole prefix is resolved from the
    /// root, so that a symlink is scoped to the root and not to `dir`;
    /// otherwise one step from `dir` is enough (no symlink is ever followed).
    fn step_into(
        &self,
        dir: &impl AsFd,
        name: &[u8],
        prefix: &[u8],
        ctx: &Ctx<'_>,
    ) -> Result<std::os::fd::OwnedFd> {
        if self.follows_symlinks() {
            self.open_path(prefix, OFlags::DIRECTORY, ctx)
        } else {
            let flags = OFlags::PATH | OFlags::DIRECTORY;
            self.openat2_in(dir.as_fd(), name, flags, Mode::empty(), ctx)
        }
    }

    /// `mkdirat(dir, name)`, where an existing directory counts as success
    /// (a symlink to one only when this root follows symlinks in the root).
    /// `prefix` is the path of `name` from the root.
    fn mkdir_or_existing_dir(
        &self,
        dir: &impl AsFd,
        name: &[u8],
        prefix: &[u8],
        mode: Mode,
        ctx: &Ctx<'_>,
    ) -> Result<()> {
        match rustix::fs::mkdirat(dir, name, mode) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let meta = Metadata::statx_at(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| ctx.os(e))?;
                if meta.is_dir() {
                    Ok(())
                } else if meta.is_symlink() {
                    // Refused as an escape, or followed within the root.
                    self.open_path(prefix, OFlags::DIRECTORY, ctx).map(drop)
                } else {
                    Err(ctx.os(Errno::EXIST))
                }
            }
            Err(errno) => Err(ctx.os(errno)),
        }
    }
}
