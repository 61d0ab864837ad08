//! Operations that look at entries without changing them: `metadata`,
//! `symlink_metadata`, `read_link`, `read_dir`.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, OFlags};
use rustix::io::Errno;

use crate::Root;
use crate::error::{Operation, Result};
use crate::metadata::Metadata;
use crate::read_dir::ReadDir;
use crate::resolve::Ctx;

impl Root {
    /// Returns the metadata of the entry at `path`.
    ///
    /// This corresponds to [`std::fs::metadata`], but only accesses paths
    /// beneath `self`. std follows a final symlink; here a symlink anywhere
    /// in the path is refused (unless the root was opened with
    /// `follow_symlinks_in_root`, which follows it within the root).
    ///
    /// # Errors
    ///
    /// [`Error::Escape`](crate::Error::Escape) for a symlink in the path or
    /// at its end; [`Error::InvalidPath`](crate::Error::InvalidPath);
    /// [`Error::Os`](crate::Error::Os) (`ENOENT`, `ENOTDIR`, `EACCES`, …).
    #[doc(alias = "stat")]
    pub fn metadata(&self, path: impl AsRef<Path>) -> Result<Metadata> {
        let ctx = Ctx::new(Operation::Metadata, path.as_ref());
        self.metadata_following(&ctx)
    }

    /// Returns the metadata of the entry at `path` itself: a symlink at the
    /// end of the path is described, not followed.
    ///
    /// This corresponds to [`std::fs::symlink_metadata`], but only accesses
    /// paths beneath `self`. A trailing `/` asks for the directory a final
    /// symlink would lead to, as with `lstat(2)`; that is refused like
    /// [`Root::metadata`] refuses it.
    ///
    /// # Errors
    ///
    /// As [`Root::metadata`], for symlinks before the last component.
    #[doc(alias = "lstat")]
    pub fn symlink_metadata(&self, path: impl AsRef<Path>) -> Result<Metadata> {
        let ctx = Ctx::new(Operation::SymlinkMetadata, path.as_ref());
        let split = ctx.parse()?.split();
        if split.must_be_dir {
            return self.metadata_following(&ctx);
        }
        if split.parent.is_empty() {
            // One syscall: the leaf is a single name in the root.
            let meta = Metadata::statx_at(self.fd.as_fd(), split.leaf, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| ctx.os(e))?;
            self.refuse_crossed_mount(&meta, &ctx)?;
            return Ok(meta);
        }
        // O_PATH|O_NOFOLLOW opens a final symlink itself, even under
        // RESOLVE_NO_SYMLINKS (openat2(2)); the fd is then described.
        let fd = self.open_path(ctx.parse()?.as_bytes(), OFlags::NOFOLLOW, &ctx)?;
        Metadata::of_fd(fd).map_err(|e| ctx.os(e))
    }

    /// Reads the target of the symlink at `path`.
    ///
    /// This corresponds to [`std::fs::read_link`], but only accesses paths
    /// beneath `self`. The target is returned as stored; it is not resolved
    /// or checked.
    ///
    /// # Errors
    ///
    /// [`Error::Os`](crate::Error::Os) with `EINVAL` if the entry is not a
    /// symlink; as [`Root::metadata`] for the components before it.
    #[doc(alias = "readlink")]
    pub fn read_link(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let ctx = Ctx::new(Operation::ReadLink, path.as_ref());
        let split = ctx.parse_entry()?;
        if split.must_be_dir {
            // `readlink("x/")` reads what `x` leads to: a directory, never a
            // link.
            self.metadata_following(&ctx)?;
            return Err(ctx.os(Errno::INVAL));
        }
        let parent = self.parent(&split, &ctx)?;
        let target =
            rustix::fs::readlinkat(&parent, split.leaf, Vec::new()).map_err(|e| ctx.os(e))?;
        Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
    }

    /// Lists the directory at `path`. Entries carry their name and type;
    /// nothing is followed, `.` and `..` are skipped.
    ///
    /// This corresponds to [`std::fs::read_dir`], but only accesses paths
    /// beneath `self`.
    ///
    /// # Errors
    ///
    /// As [`Root::metadata`]; `ENOTDIR` if the entry is not a directory.
    /// Errors while reading are returned by the iterator.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let root = openat2_root::Root::open(dir.path())?;
    /// root.create_dir("sub", 0o755)?;
    /// root.write_atomic("file", b"")?;
    /// let mut names: Vec<_> = root
    ///     .read_dir(".")?
    ///     .map(|e| e.map(|e| (e.file_name().to_owned(), e.file_type().is_dir())))
    ///     .collect::<Result<_, _>>()?;
    /// names.sort();
    /// assert_eq!(names, [("file".into(), false), ("sub".into(), true)]);
    /// # Ok(()) }
    /// ```
    pub fn read_dir(&self, path: impl AsRef<Path>) -> Result<ReadDir> {
        let ctx = Ctx::new(Operation::ReadDir, path.as_ref());
        let rel = ctx.parse()?;
        let fd = self.openat2_root(
            rel.as_bytes(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
            &ctx,
        )?;
        ReadDir::new(fd, ctx.path, self.resolve).map_err(|e| ctx.os(e))
    }

    /// `metadata` of `ctx.path`, following nothing (or following within the
    /// root, with `follow_symlinks_in_root`).
    /// With `no_xdev`, the one-name fast paths (a `statx` of a name in the
    /// root, which crosses a mount on it) refuse what openat2 would:
    /// `EXDEV`, as an escape.
    fn refuse_crossed_mount(&self, meta: &Metadata, ctx: &Ctx<'_>) -> Result<()> {
        if self.resolve.contains(rustix::fs::ResolveFlags::NO_XDEV) && meta.is_mount_root() {
            Err(ctx.escape(Errno::XDEV))
        } else {
            Ok(())
        }
    }

    pub(crate) fn metadata_following(&self, ctx: &Ctx<'_>) -> Result<Metadata> {
        let rel = ctx.parse()?;
        let split = rel.split();
        if split.parent.is_empty() && !self.follows_symlinks() {
            // One syscall: the leaf is a single name in the root, looked at
            // without following; a symlink there is refused after the fact.
            let meta = Metadata::statx_at(self.fd.as_fd(), split.leaf, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| ctx.os(e))?;
            self.refuse_crossed_mount(&meta, ctx)?;
            return if meta.is_symlink() {
                Err(ctx.escape(Errno::LOOP))
            } else if split.must_be_dir && !meta.is_dir() {
                Err(ctx.os(Errno::NOTDIR))
            } else {
                Ok(meta)
            };
        }
        // Deeper: resolve the whole path to an O_PATH fd (which refuses a
        // symlink anywhere, the last component included, and applies a
        // trailing slash) and describe the fd. Cheaper than resolving the
        // parent and then looking the name up again with statx.
        let fd = self.open_path(rel.as_bytes(), OFlags::empty(), ctx)?;
        Metadata::of_fd(fd).map_err(|e| ctx.os(e))
    }
}
