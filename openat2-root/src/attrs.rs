//! Operations on an entry's attributes: `set_permissions`, `set_len`,
//! `set_times`, `chown`. Each resolves the whole path to an `O_PATH` fd
//! (refusing a symlink at the end, so nothing is followed) and changes the
//! inode through that fd.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, CWD, Gid, OFlags, Timespec, Timestamps, UTIME_OMIT, Uid};
use rustix::io::Errno;

use crate::error::{Operation, Result};
use crate::file::OpenOptions;
use crate::metadata::Permissions;
use crate::resolve::Ctx;
use crate::{Root, sys};

impl Root {
    /// Sets the permission bits of the entry at `path` to `perms` (a
    /// [`Permissions`] or a `u32` mode, of which `mode & 0o7777` is used).
    ///
    /// This corresponds to [`std::fs::set_permissions`], but only accesses
    /// paths beneath `self`. It works on a file with mode `000` (no read or
    /// write access is needed: the inode is reached through an `O_PATH` fd)
    /// and never follows a symlink.
    ///
    /// # Errors
    ///
    /// [`Error::Escape`](crate::Error::Escape) if the path crosses or ends in
    /// a symlink; `EPERM` if the caller does not own the file;
    /// [`Error::NotSupported`](crate::Error::NotSupported) on a kernel older
    /// than 6.6 without `/proc` mounted.
    #[doc(alias = "chmod")]
    pub fn set_permissions(
        &self,
        path: impl AsRef<Path>,
        perms: impl Into<Permissions>,
    ) -> Result<()> {
        let ctx = Ctx::new(Operation::SetPermissions, path.as_ref());
        let rel = ctx.parse()?;
        let mode = perms.into().mode();
        let fd = self.open_path(rel.as_bytes(), OFlags::empty(), &ctx)?;
        match sys::fchmod_empty_path(&fd, mode) {
            Ok(()) => Ok(()),
            Err(Errno::NOSYS) => {
                // Before Linux 6.6: change the mode through the fd's magic
                // link, which names exactly the inode we resolved.
                let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
                rustix::fs::chmodat(
                    CWD,
                    proc_path.as_str(),
                    rustix::fs::Mode::from_raw_mode(mode),
                    AtFlags::empty(),
                )
                .map_err(|e| match e {
                    Errno::NOENT => {
                        ctx.not_supported("fchmodat2(2) (Linux 6.6) or /proc mounted", e)
                    }
                    e => ctx.os(e),
                })
            }
            Err(errno) => Err(ctx.os(errno)),
        }
    }

    /// Truncates or extends the regular file at `path` to `len` bytes.
    ///
    /// This corresponds to [`std::fs::File::set_len`] on a file opened for
    /// writing, but only accesses paths beneath `self`.
    ///
    /// # Errors
    ///
    /// [`Error::SpecialFile`](crate::Error::SpecialFile) for a FIFO, socket
    /// or device; `EISDIR`; `EACCES` without write permission;
    /// [`Error::Escape`](crate::Error::Escape) for a symlink.
    #[doc(alias = "truncate")]
    pub fn set_len(&self, path: impl AsRef<Path>, len: u64) -> Result<()> {
        let ctx = Ctx::new(Operation::SetLen, path.as_ref());
        let file = self.open_fd(&ctx, OpenOptions::new().write(true))?;
        rustix::fs::ftruncate(&file, len).map_err(|e| ctx.os(e))
    }

    /// Sets the access and/or modification times of the entry at `path`,
    /// with nanosecond precision; `None` leaves that time unchanged.
    ///
    /// This corresponds to [`std::fs::File::set_times`], but only accesses
    /// paths beneath `self` and never follows a symlink.
    ///
    /// # Errors
    ///
    /// [`Error::Escape`](crate::Error::Escape) for a symlink; `EPERM` if the
    /// caller does not own the file.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::{Duration, UNIX_EPOCH};
    /// # let dir = tempfile::tempdir()?;
    /// let root = openat2_root::Root::open(dir.path())?;
    /// root.write_atomic("f", b"")?;
    /// let t = UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
    /// root.set_times("f", None, Some(t))?;
    /// assert_eq!(root.metadata("f")?.modified(), t);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "utimes")]
    pub fn set_times(
        &self,
        path: impl AsRef<Path>,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> Result<()> {
        let ctx = Ctx::new(Operation::SetTimes, path.as_ref());
        let rel = ctx.parse()?;
        let times = Timestamps {
            last_access: to_timespec(accessed),
            last_modification: to_timespec(modified),
        };
        let fd = self.open_path(rel.as_bytes(), OFlags::empty(), &ctx)?;
        rustix::fs::utimensat(&fd, "", &times, AtFlags::EMPTY_PATH).map_err(|e| ctx.os(e))
    }

    /// Changes the owner and/or group of the entry at `path`; `None` leaves
    /// that id unchanged. A symlink is never followed.
    ///
    /// This corresponds to [`std::os::unix::fs::chown`], but only accesses
    /// paths beneath `self`.
    ///
    /// # Errors
    ///
    /// [`Error::Escape`](crate::Error::Escape) for a symlink; `EPERM` without
    /// the privilege to change ownership.
    pub fn chown(&self, path: impl AsRef<Path>, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        let ctx = Ctx::new(Operation::Chown, path.as_ref());
        let rel = ctx.parse()?;
        let fd = self.open_path(rel.as_bytes(), OFlags::empty(), &ctx)?;
        rustix::fs::chownat(
            fd.as_fd(),
            "",
            uid.map(Uid::from_raw),
            gid.map(Gid::from_raw),
            AtFlags::EMPTY_PATH,
        )
        .map_err(|e| ctx.os(e))
    }
}

/// A `SystemTime` as a `timespec`, or `UTIME_OMIT` for `None`.
fn to_timespec(time: Option<SystemTime>) -> Timespec {
    let Some(time) = time else {
        return Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        };
    };
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        },
        Err(before) => {
            // Before the epoch: seconds round down, nanoseconds stay positive.
            let d = before.duration();
            let (secs, nanos) = (d.as_secs() as i64, i64::from(d.subsec_nanos()));
            if nanos == 0 {
                Timespec {
                    tv_sec: -secs,
                    tv_nsec: 0,
                }
            } else {
                Timespec {
                    tv_sec: -secs - 1,
                    tv_nsec: 1_000_000_000 - nanos,
                }
            }
        }
    }
}
