//! The [`Root`] handle and its options.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::{Error, Operation, Result};
use crate::metadata::{FileType, Metadata};
use crate::resolve::Ctx;

/// A directory, and every operation on paths beneath it resolved by the
/// kernel so that it cannot leave the directory.
///
/// A `Root` holds a directory fd. Each method takes a relative path, which is
/// validated (no absolute paths, no `..`, no NUL) and resolved beneath that
/// fd by `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS`; mutations are `*at` syscalls on the resolved
/// parent. A symlink anywhere in the path — planted beforehand or swapped in
/// concurrently — makes the operation fail with [`Error::Escape`]; it is
/// never followed.
///
/// The method names mirror [`std::fs`] (with `seed` names as doc aliases:
/// `mkdir`, `unlink`, `rm`, `chmod`, …); operations std lacks have names of
/// their own ([`rename_noreplace`](Root::rename_noreplace),
/// [`rename_exchange`](Root::rename_exchange),
/// [`write_atomic`](Root::write_atomic)).
///
/// `Root` is `Send + Sync`: the fd is shared, every call resolves afresh.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use openat2_root::{ErrorKind, Root};
///
/// let dir = tempfile::tempdir()?;
/// let root = Root::open(dir.path())?;
/// root.create_dir_all("a/b", 0o755)?;
/// root.write_atomic("a/b/hello.txt", b"hi")?;
/// assert_eq!(root.metadata("a/b/hello.txt")?.len(), 2);
///
/// // A symlink pointing out of the root is never followed.
/// std::os::unix::fs::symlink("/etc", dir.path().join("a/etc"))?;
/// let err = root.metadata("a/etc/passwd").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Escape);
/// # Ok(()) }
/// ```
pub struct Root {
    pub(crate) fd: OwnedFd,
    pub(crate) resolve: ResolveFlags,
    /// Opened with `require_own_mount` (and found to be a mount's root).
    pub(crate) own_mount: bool,
}

/// How a [`Root`] resolves paths. The default is the strictest: no symlink
/// is ever followed, mounts may be crossed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RootOptions {
    follow_symlinks_in_root: bool,
    no_xdev: bool,
    require_own_mount: bool,
}

impl RootOptions {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follow symlinks, resolving them as if the root were `/`
    /// (`RESOLVE_IN_ROOT`): an absolute symlink or a `..` in a symlink's
    /// target is scoped to the root, never above it. Magic links
    /// (`/proc/self/fd/…`) are still refused.
    ///
    /// Off by default: then any symlink in a path is an [`Error::Escape`].
    pub fn follow_symlinks_in_root(mut self, yes: bool) -> Self {
        self.follow_symlinks_in_root = yes;
        self
    }

    /// Refuse to cross mount points during resolution (`RESOLVE_NO_XDEV`),
    /// with [`Error::Escape`].
    pub fn no_xdev(mut self, yes: bool) -> Self {
        self.no_xdev = yes;
        self
    }

    /// Require the root to be the root of a mount (`STATX_ATTR_MOUNT_ROOT`),
    /// checked when it is opened: refused with
    /// [`Error::InvalidInput`] otherwise.
    ///
    /// Why: an operation resolves its parent directory, then acts on it
    /// (`mkdirat`, `linkat`, …). If another process renames that directory
    /// out of the root in between, the action lands outside — the pinned
    /// parent residual, which no `openat2` flag closes. A rename out of a
    /// mount fails with `EXDEV`, so where the root is its own mount no one
    /// working through it (through its path, as everyone sharing this
    /// mount namespace does) can move a directory out of it. Make one with
    /// `mount --bind DIR DIR` (as root, or in a mount namespace of a user
    /// namespace one owns).
    ///
    /// What it does not cover: a process with *another* mount of the same
    /// filesystem that holds both the root's directory and places outside
    /// it (a second bind mount of a parent, a container's view) can still
    /// move a directory out; the re-checks multi-step operations make
    /// catch most of those (see [`Root::write_atomic`]). A root opened with
    /// [`Root::open_dir`] from this one is not a mount and does not keep
    /// the option.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openat2_root::{ErrorKind, Root, RootOptions};
    /// let dir = tempfile::tempdir()?;
    /// // A plain directory is not a mount of its own.
    /// let err = Root::open_with(dir.path(), RootOptions::new().require_own_mount(true)).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok(()) }
    /// ```
    pub fn require_own_mount(mut self, yes: bool) -> Self {
        self.require_own_mount = yes;
        self
    }

    fn resolve_flags(self) -> ResolveFlags {
        let mut flags = ResolveFlags::NO_MAGICLINKS;
        if self.follow_symlinks_in_root {
            flags |= ResolveFlags::IN_ROOT;
        } else {
            flags |= ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        }
        if self.no_xdev {
            flags |= ResolveFlags::NO_XDEV;
        }
        flags
    }
}

impl Root {
    /// Opens the directory at `path` as a root, with default options.
    ///
    /// `path` is the caller's own (trusted) path and is opened like
    /// [`std::fs::File::open`] would: symlinks in it are followed. Only paths
    /// given to the root's methods afterwards are confined.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if `path` cannot be opened or is not a directory
    /// (`ENOTDIR`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, RootOptions::default())
    }

    /// Opens the directory at `path` as a root with `options`.
    ///
    /// # Errors
    ///
    /// As [`Root::open`].
    pub fn open_with(path: impl AsRef<Path>, options: RootOptions) -> Result<Self> {
        let path = path.as_ref();
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Ctx::new(Operation::OpenRoot, path).os(e))?;
        Self::with_options(fd, options, &Ctx::new(Operation::OpenRoot, path))
    }

    /// Makes a root of an open directory fd (an `O_PATH` fd is enough), with
    /// default options.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] with `ENOTDIR` if `fd` is not a directory, or the error
    /// from `fstat`.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        Self::from_fd_with(fd, RootOptions::default())
    }

    /// Makes a root of an open directory fd with `options`.
    ///
    /// # Errors
    ///
    /// As [`Root::from_fd`].
    pub fn from_fd_with(fd: OwnedFd, options: RootOptions) -> Result<Self> {
        let ctx = Ctx::new(Operation::OpenRoot, Path::new("."));
        let meta = Metadata::of_fd(&fd).map_err(|e| ctx.os(e))?;
        if meta.file_type() != FileType::Dir {
            return Err(ctx.os(rustix::io::Errno::NOTDIR));
        }
        Self::with_options(fd, options, &ctx)
    }

    /// A root of the directory `fd`, after the checks `options` ask for.
    fn with_options(fd: OwnedFd, options: RootOptions, ctx: &Ctx<'_>) -> Result<Self> {
        if options.require_own_mount {
            let meta = Metadata::of_fd(&fd).map_err(|e| ctx.os(e))?;
            if !meta.knows_mount_root() {
                return Err(ctx.not_supported(
                    "statx(2) reporting STATX_ATTR_MOUNT_ROOT (Linux 5.8)",
                    rustix::io::Errno::NOSYS,
                ));
            }
            if !meta.is_mount_root() {
                return Err(ctx.invalid_input(
                    "require_own_mount: the directory is not the root of a mount \
                     (make it one with `mount --bind DIR DIR`)",
                ));
            }
        }
        Ok(Self {
            fd,
            resolve: options.resolve_flags(),
            own_mount: options.require_own_mount,
        })
    }

    /// Opens the directory at `path` beneath this root as a new root with
    /// the same options. The new root is confined to that subdirectory.
    ///
    /// # Errors
    ///
    /// [`Error::Escape`] if resolution crosses a symlink or leaves the root;
    /// [`Error::Os`] with `ENOTDIR` if it is not a directory.
    pub fn open_dir(&self, path: impl AsRef<Path>) -> Result<Root> {
        let ctx = Ctx::new(Operation::OpenDir, path.as_ref());
        let rel = ctx.parse()?;
        let fd = self.open_path(rel.as_bytes(), OFlags::DIRECTORY, &ctx)?;
        Ok(Self {
            fd,
            resolve: self.resolve,
            own_mount: false,
        })
    }

    /// The options this root resolves with.
    pub fn options(&self) -> RootOptions {
        RootOptions {
            follow_symlinks_in_root: self.resolve.contains(ResolveFlags::IN_ROOT),
            no_xdev: self.resolve.contains(ResolveFlags::NO_XDEV),
            require_own_mount: self.own_mount,
        }
    }

    /// Duplicates the handle (`fcntl(F_DUPFD_CLOEXEC)`).
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the process is out of fds.
    pub fn try_clone(&self) -> Result<Root> {
        let fd = self.fd.try_clone().map_err(|e| Error::Os {
            op: Operation::OpenRoot,
            path: ".".into(),
            to: None,
            errno: e,
        })?;
        Ok(Self {
            fd,
            resolve: self.resolve,
            own_mount: self.own_mount,
        })
    }

    /// Gives up the handle, returning its fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root")
            .field("fd", &self.fd.as_raw_fd())
            .field("options", &self.options())
            .finish()
    }
}
