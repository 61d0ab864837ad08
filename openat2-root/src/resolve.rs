//! The resolution engine: every path reaches the kernel through here.
//!
//! A path is validated (`path.rs`), then resolved beneath a directory fd by
//! `openat2(2)` with the root's `RESOLVE_*` flags. Operations that act on an
//! entry's name (create, remove, rename, link) resolve only the parent this
//! way and hand the last component, a single name, to an `*at` syscall on the
//! parent fd. The public methods in the other modules are built from the
//! pieces here.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::Root;
use crate::error::{Error, Operation};
use crate::path::{RelPath, Split};

/// How many times resolution is retried when `openat2` returns `EAGAIN`
/// (a concurrent rename or mount changed the tree during a lookup that the
/// kernel could not prove safe) before [`Error::RetryExhausted`].
pub const MAX_RESOLVE_ATTEMPTS: u32 = 64;

/// The operation and path an error will be reported against.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'p> {
    pub(crate) op: Operation,
    pub(crate) path: &'p Path,
    pub(crate) to: Option<&'p Path>,
}

impl<'p> Ctx<'p> {
    pub(crate) fn new(op: Operation, path: &'p Path) -> Self {
        Self { op, path, to: None }
    }

    pub(crate) fn two(op: Operation, path: &'p Path, to: &'p Path) -> Self {
        Self {
            op,
            path,
            to: Some(to),
        }
    }

    /// The same operation, reported against `to` (for errors that concern
    /// the second path of a two-path operation).
    pub(crate) fn second(self) -> Self {
        match self.to {
            Some(to) => Self {
                op: self.op,
                path: to,
                to: None,
            },
            None => self,
        }
    }

    pub(crate) fn os(&self, errno: Errno) -> Error {
        Error::Os {
            op: self.op,
            path: self.path.to_path_buf(),
            to: self.to.map(Path::to_path_buf),
            errno: errno.into(),
        }
    }

    pub(crate) fn step(&self, step: crate::Step, errno: Errno) -> Error {
        Error::Step {
            op: self.op,
            path: self.path.to_path_buf(),
            step,
            errno: errno.into(),
        }
    }

    pub(crate) fn escape(&self, errno: Errno) -> Error {
        Error::Escape {
            op: self.op,
            path: self.path.to_path_buf(),
            errno: errno.into(),
        }
    }

    pub(crate) fn invalid(&self, reason: crate::InvalidPathReason) -> Error {
        Error::InvalidPath {
            op: self.op,
            path: self.path.to_path_buf(),
            reason,
        }
    }

    pub(crate) fn invalid_input(&self, reason: &'static str) -> Error {
        Error::InvalidInput {
            op: self.op,
            path: self.path.to_path_buf(),
            reason,
        }
    }

    pub(crate) fn not_supported(&self, requirement: &'static str, errno: Errno) -> Error {
        Error::NotSupported {
            op: self.op,
            path: self.path.to_path_buf(),
            requirement,
            errno: errno.into(),
        }
    }

    pub(crate) fn special(&self, file_type: crate::FileType) -> Error {
        Error::SpecialFile {
            op: self.op,
            path: self.path.to_path_buf(),
            file_type,
        }
    }

    /// Validates `self.path`.
    pub(crate) fn parse(&self) -> Result<RelPath<'p>, Error> {
        RelPath::new(self.path).map_err(|r| self.invalid(r))
    }

    /// Validates `self.path` and splits it, refusing the root itself.
    pub(crate) fn parse_entry(&self) -> Result<Split<'p>, Error> {
        let split = self.parse()?.split();
        if split.has_entry_name() {
            Ok(split)
        } else {
            Err(self.invalid(crate::InvalidPathReason::NoEntryName))
        }
    }
}

/// A directory fd that is either the root's own or one just resolved.
pub(crate) enum DirFd<'a> {
    Borrowed(BorrowedFd<'a>),
    Owned(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Borrowed(fd) => *fd,
            Self::Owned(fd) => fd.as_fd(),
        }
    }
}

impl Root {
    /// Whether this root follows symlinks that stay inside it.
    pub(crate) fn follows_symlinks(&self) -> bool {
        self.resolve.contains(ResolveFlags::IN_ROOT)
    }

    /// `openat2(dir, path, oflags | O_CLOEXEC, mode, self.resolve)`, retried
    /// on `EAGAIN`, with the errno mapped to the crate's error kinds.
    pub(crate) fn openat2_in(
        &self,
        dir: BorrowedFd<'_>,
        path: &[u8],
        oflags: OFlags,
        mode: Mode,
        ctx: &Ctx<'_>,
    ) -> Result<OwnedFd, Error> {
        self.openat2_with(dir, path, oflags, mode, self.resolve, ctx)
    }

    /// As [`Root::openat2_in`], with explicit `RESOLVE_*` flags.
    pub(crate) fn openat2_with(
        &self,
        dir: BorrowedFd<'_>,
        path: &[u8],
        oflags: OFlags,
        mode: Mode,
        resolve: ResolveFlags,
        ctx: &Ctx<'_>,
    ) -> Result<OwnedFd, Error> {
        let oflags = oflags | OFlags::CLOEXEC;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match rustix::fs::openat2(dir, path, oflags, mode, resolve) {
                Ok(fd) => return Ok(fd),
                Err(Errno::AGAIN) if attempts < MAX_RESOLVE_ATTEMPTS => continue,
                Err(Errno::AGAIN) => {
                    return Err(Error::RetryExhausted {
                        op: ctx.op,
                        path: ctx.path.to_path_buf(),
                        attempts,
                    });
                }
                Err(errno) => return Err(self.resolution_error(errno, ctx)),
            }
        }
    }

    /// Opens `path` beneath the root.
    pub(crate) fn openat2_root(
        &self,
        path: &[u8],
        oflags: OFlags,
        mode: Mode,
        ctx: &Ctx<'_>,
    ) -> Result<OwnedFd, Error> {
        self.openat2_in(self.fd.as_fd(), path, oflags, mode, ctx)
    }

    /// Opens `path` beneath the root as an `O_PATH` handle: no access check
    /// on the entry itself, no side effect of opening, and (without
    /// `follow_symlinks_in_root`) a symlink anywhere, the leaf included, is
    /// refused as an escape.
    pub(crate) fn open_path(
        &self,
        path: &[u8],
        extra: OFlags,
        ctx: &Ctx<'_>,
    ) -> Result<OwnedFd, Error> {
        self.openat2_root(path, OFlags::PATH | extra, Mode::empty(), ctx)
    }

    /// Resolves the directory that holds `split.leaf`; the root's own fd
    /// when the parent is the root (no syscall).
    pub(crate) fn parent(&self, split: &Split<'_>, ctx: &Ctx<'_>) -> Result<DirFd<'_>, Error> {
        if split.parent.is_empty() {
            Ok(DirFd::Borrowed(self.fd.as_fd()))
        } else {
            self.open_path(split.parent, OFlags::DIRECTORY, ctx)
                .map(DirFd::Owned)
        }
    }

    /// Resolves the parent of the second path of a two-path operation,
    /// reusing `first` (the first path's parent) when both name the same
    /// directory: one resolution instead of two.
    pub(crate) fn second_parent<'a>(
        &'a self,
        first: &'a DirFd<'a>,
        first_split: &Split<'_>,
        split: &Split<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<DirFd<'a>, Error> {
        if split.parent == first_split.parent {
            Ok(DirFd::Borrowed(first.as_fd()))
        } else {
            self.parent(split, ctx)
        }
    }

    /// Maps an errno from `openat2` to the crate's error kinds.
    fn resolution_error(&self, errno: Errno, ctx: &Ctx<'_>) -> Error {
        match errno {
            // RESOLVE_NO_SYMLINKS or RESOLVE_NO_MAGICLINKS refused a link.
            // (With RESOLVE_IN_ROOT, a symlink loop also gives ELOOP; it is
            // reported as an escape too, since the errno cannot tell them
            // apart and refusing is the safe reading.)
            Errno::LOOP => ctx.escape(errno),
            // RESOLVE_BENEATH refused an escape, or RESOLVE_NO_XDEV a mount.
            Errno::XDEV => ctx.escape(errno),
            Errno::NOSYS => ctx.not_supported("openat2(2), Linux 5.6 or later", errno),
            Errno::PERM if self.openat2_blocked() => {
                ctx.not_supported("openat2(2), which a seccomp filter here refuses", errno)
            }
            _ => ctx.os(errno),
        }
    }

    /// Whether `openat2` itself is refused (a seccomp filter returning
    /// `EPERM`), as opposed to this one open being refused.
    fn openat2_blocked(&self) -> bool {
        rustix::fs::openat2(
            self.fd.as_fd(),
            c".",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::empty(),
        )
        .err()
            == Some(Errno::PERM)
    }
}
