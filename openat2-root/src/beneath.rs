//! The re-check multi-step operations make: is a directory they hold still
//! beneath the root, or was it moved out while they worked?
//!
//! An operation resolves a directory beneath the root, then acts on it by
//! fd. If another process renames that directory (or one above it) out of
//! the root meanwhile, the fd follows it: every later step would act
//! outside. `openat2` cannot see this (resolution is over); walking the
//! directory's `..` chain up to the root, by inode, can.

use std::os::fd::BorrowedFd;

use rustix::fs::{Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::Root;
use crate::error::{Error, Result};
use crate::resolve::{Ctx, DirFd};

impl Root {
    /// Checks that `dir` is the root or a directory beneath it: its `..`
    /// chain reaches the root's inode. A directory moved out of the root
    /// is [`Error::Escape`] (`EXDEV`), as is one whose `..` the kernel no
    /// longer resolves (moved out of the mount it was reached through:
    /// `ENOENT`).
    ///
    /// Costs an `openat("..")` and an `fstat` per level between `dir` and
    /// the root. It narrows the window of the pinned-parent residual to
    /// the time between this check and the next step; it cannot close it.
    pub(crate) fn check_beneath(&self, dir: BorrowedFd<'_>, ctx: &Ctx<'_>) -> Result<()> {
        let root = rustix::fs::fstat(&self.fd).map_err(|e| ctx.os(e))?;
        let mut here = DirFd::Borrowed(dir);
        let mut stat = rustix::fs::fstat(&here).map_err(|e| ctx.os(e))?;
        loop {
            if same(&stat, &root) {
                return Ok(());
            }
            let parent = match rustix::fs::openat(
                &here,
                "..",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Err(moved_out(ctx)),
                Err(errno) => return Err(ctx.os(errno)),
            };
            let parent_stat = rustix::fs::fstat(&parent).map_err(|e| ctx.os(e))?;
            if same(&parent_stat, &stat) {
                // `/` (or the process's root): the root was not above it.
                return Err(moved_out(ctx));
            }
            here = DirFd::Owned(parent);
            stat = parent_stat;
        }
    }
}

fn same(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// A directory of the operation's was moved out of the root.
fn moved_out(ctx: &Ctx<'_>) -> Error {
    ctx.escape(Errno::XDEV)
}
