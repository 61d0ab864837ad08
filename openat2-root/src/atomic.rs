//! `write_atomic`: replace a file's contents so that readers see the old
//! file or the new one, never a mix.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use crate::Root;
use crate::error::{Operation, Result, Step};
use crate::metadata::Metadata;
use crate::resolve::Ctx;

/// Whether [`Root::write_atomic_with`] waits for the data and the new
/// directory entry to reach the disk.
///
/// Either way readers see the old file or the new one, never a mix, and a
/// process killed while writing leaves nothing behind. The difference is a
/// crash of the *machine* (power failure, kernel panic) just after the call
/// returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DurableWrite {
    /// Flush the file's data (`fdatasync(2)`) before it takes `path`'s
    /// name, and the directory (`fsync(2)`) after: once the call returns,
    /// the new contents are on disk. The default.
    #[default]
    Sync,
    /// Skip both flushes, for speed (on a disk, a flush costs milliseconds;
    /// on tmpfs nothing). After a machine crash, `path` may hold the old
    /// contents, the new ones or (on some filesystems) an empty file.
    NoSync,
}

impl Root {
    /// Replaces (or creates) the file at `path` with `contents`, atomically
    /// and durably: readers see the old file or the new one, never a mix,
    /// and once it returns the new contents survive a power failure.
    ///
    /// The data goes to an anonymous file in `path`'s directory
    /// (`O_TMPFILE`: a crash or a kill while writing leaves nothing
    /// behind), is flushed with `fdatasync(2)`, is given a temporary name
    /// (`linkat`) and is renamed over `path` with `renameat(2)`; then the
    /// directory is flushed with `fsync(2)`. A new `path` is linked in
    /// place directly. Where the filesystem has no `O_TMPFILE`, a named
    /// temporary file (created with `O_EXCL`) stands in, removed on every
    /// error. A symlink at `path` is replaced, not followed.
    /// [`write_atomic_with`](Root::write_atomic_with) can skip the flushes.
    ///
    /// Before the file is given its name, the directory is checked to be
    /// still beneath the root (its `..` chain, by inode): if another
    /// process moved it out of the root while the data was written, the
    /// call fails with [`Error::Escape`](crate::Error::Escape) and nothing
    /// is placed there. (A move in the microseconds between that check and
    /// the link is not seen; a root opened with
    /// [`RootOptions::require_own_mount`](crate::RootOptions::require_own_mount)
    /// rules out moves through its path altogether.)
    ///
    /// The new file keeps the permission bits of the regular file it
    /// replaces (the temporary file is created with them, so it is never
    /// more readable than the old one), and its owner and group where the
    /// caller may set them (as root, or when they are the caller's own);
    /// otherwise it belongs to the caller. A new file gets mode `0o666` less
    /// the umask.
    ///
    /// # Errors
    ///
    /// [`Error::Escape`](crate::Error::Escape) if the parent path crosses a
    /// symlink or the directory was moved out of the root; `EISDIR` if
    /// `path` is a directory;
    /// [`Error::Step`](crate::Error::Step) naming the [`Step`] that failed
    /// (writing, flushing, linking, renaming…). On error the temporary file
    /// is removed and `path` is unchanged, except after
    /// [`Step::SyncDir`]: then the new file is in place but may not survive
    /// a power failure.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let root = openat2_root::Root::open(dir.path())?;
    /// root.write_atomic("secret.toml", b"token = 1")?;
    /// root.set_permissions("secret.toml", 0o600)?;
    /// root.write_atomic("secret.toml", b"token = 2")?;
    /// assert_eq!(root.metadata("secret.toml")?.permissions().mode(), 0o600);
    /// # Ok(()) }
    /// ```
    pub fn write_atomic(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<()> {
        self.write_atomic_with(path, contents, DurableWrite::Sync)
    }

    /// As [`write_atomic`](Root::write_atomic), flushing to disk or not as
    /// `durable` says.
    ///
    /// # Errors
    ///
    /// As [`write_atomic`](Root::write_atomic).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openat2_root::{DurableWrite, Root};
    /// # let dir = tempfile::tempdir()?;
    /// let root = Root::open(dir.path())?;
    /// // A cache entry: atomic for readers, but not worth a disk flush.
    /// root.write_atomic_with("cache.json", b"{}", DurableWrite::NoSync)?;
    /// assert_eq!(root.read("cache.json")?, b"{}");
    /// # Ok(()) }
    /// ```
    pub fn write_atomic_with(
        &self,
        path: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
        durable: DurableWrite,
    ) -> Result<()> {
        let ctx = Ctx::new(Operation::WriteAtomic, path.as_ref());
        let split = ctx.parse_entry()?;
        if split.must_be_dir {
            return Err(ctx.os(Errno::ISDIR));
        }
        let parent = self.parent(&split, &ctx)?;
        let replaced = Metadata::statx_at(&parent, split.leaf, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .filter(Metadata::is_file);
        let mode = replaced
            .as_ref()
            .map_or(0o666, |m| m.permissions().mode() & 0o777);
        let sync = durable == DurableWrite::Sync;
        let prepare = |file: &File| {
            match &replaced {
                Some(old) => keep_attributes(file, old, mode).map_err(|e| (Step::SetAttributes, e)),
                None => Ok(()),
            }
            .and_then(|()| write_and_sync(file, contents.as_ref(), sync))
        };
        // The data first (the long part), then a re-check that `parent`
        // was not moved out of the root meanwhile, then the name.
        match anonymous_file(&parent, mode) {
            Ok(file) => {
                prepare(&file).map_err(|(step, e)| ctx.step(step, e))?;
                self.check_beneath(parent.as_fd(), &ctx)?;
                place_anonymous(&parent, &file, split.leaf, replaced.is_none())
            }
            // No O_TMPFILE on this filesystem: a named temporary file.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => {
                let (tmp_name, file) =
                    create_temp_file(&parent, mode).map_err(|e| ctx.step(Step::CreateTemp, e))?;
                let result = prepare(&file)
                    .map_err(|(step, e)| ctx.step(step, e))
                    .and_then(|()| self.check_beneath(parent.as_fd(), &ctx))
                    .and_then(|()| {
                        rustix::fs::renameat(&parent, tmp_name.as_str(), &parent, split.leaf)
                            .map_err(|e| step_error(&ctx, Step::Rename, e))
                    });
                if result.is_err() {
                    // Best effort: the temporary name is ours alone (O_EXCL).
                    let _ = rustix::fs::unlinkat(&parent, tmp_name.as_str(), AtFlags::empty());
                }
                return result.and_then(|()| self.finish(&parent, sync, &ctx));
            }
            Err(errno) => Err((Step::CreateTemp, errno)),
        }
        .map_err(|(step, errno)| step_error(&ctx, step, errno))?;
        self.finish(&parent, sync, &ctx)
    }

    /// The last step: the directory flushed, if asked.
    fn finish(&self, parent: &impl AsFd, sync: bool, ctx: &Ctx<'_>) -> Result<()> {
        if sync {
            sync_dir(parent).map_err(|e| ctx.step(Step::SyncDir, e))
        } else {
            Ok(())
        }
    }
}

/// The error of `step`; renaming or linking a file over a directory is
/// the caller's mistake (`EISDIR`), not a step's.
fn step_error(ctx: &Ctx<'_>, step: Step, errno: Errno) -> crate::Error {
    match (step, errno) {
        (Step::Rename | Step::Link, Errno::ISDIR) => ctx.os(errno),
        _ => ctx.step(step, errno),
    }
}

/// `fsync(2)` of the directory `dir` names (which may be an `O_PATH` fd):
/// the new entry survives a power failure.
fn sync_dir(dir: &impl AsFd) -> Result<(), Errno> {
    let opened = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fsync(opened)
}

/// An anonymous regular file in `dir` (`O_TMPFILE`), with `mode` less the
/// umask: nothing is left of it if the process dies before it is linked.
fn anonymous_file(dir: &impl AsFd, mode: u32) -> Result<File, Errno> {
    rustix::fs::openat(
        dir,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map(File::from)
}

/// Gives the anonymous `file` the name `leaf` in `dir`: linked there
/// directly when nothing is (`linkat` fails rather than replace), else
/// linked to a temporary name and renamed over `leaf`. The link goes
/// through `/proc/self/fd` (an `AT_EMPTY_PATH` link needs
/// `CAP_DAC_READ_SEARCH`).
fn place_anonymous(
    dir: &impl AsFd,
    file: &File,
    leaf: &[u8],
    new: bool,
) -> Result<(), (Step, Errno)> {
    use std::os::fd::AsRawFd;
    let proc_fd = rustix_linux_procfs::proc_self_fd().map_err(|e| (Step::Link, e))?;
    let fd_name = file.as_raw_fd().to_string();
    let link = |name: &[u8]| {
        rustix::fs::linkat(
            proc_fd,
            fd_name.as_str(),
            dir,
            name,
            AtFlags::SYMLINK_FOLLOW,
        )
    };
    if new {
        match link(leaf) {
            Ok(()) => return Ok(()),
            // Made meanwhile: replace it as below.
            Err(Errno::EXIST) => {}
            Err(errno) => return Err((Step::Link, errno)),
        }
    }
    loop {
        let tmp_name = temp_name();
        match link(tmp_name.as_bytes()) {
            Ok(()) => {
                let renamed = rustix::fs::renameat(dir, tmp_name.as_str(), dir, leaf);
                if renamed.is_err() {
                    let _ = rustix::fs::unlinkat(dir, tmp_name.as_str(), AtFlags::empty());
                }
                return renamed.map_err(|e| (Step::Rename, e));
            }
            Err(Errno::EXIST) => continue,
            Err(errno) => return Err((Step::Link, errno)),
        }
    }
}

/// Gives `file` the exact mode (undoing the umask) and, where permitted,
/// the owner and group of `old`.
fn keep_attributes(file: &File, old: &Metadata, mode: u32) -> Result<(), Errno> {
    rustix::fs::fchmod(file, Mode::from_raw_mode(mode))?;
    match rustix::fs::fchown(
        file,
        Some(Uid::from_raw(old.uid())),
        Some(Gid::from_raw(old.gid())),
    ) {
        Ok(()) | Err(Errno::PERM) => Ok(()),
        Err(errno) => Err(errno),
    }
}

/// Creates a fresh temporary file with `mode` (less the umask) in `dir`,
/// returning its name.
fn create_temp_file(dir: &impl AsFd, mode: u32) -> Result<(String, File), Errno> {
    loop {
        let name = temp_name();
        // A single component beneath `dir`; O_CREAT|O_EXCL never follows a
        // symlink, so this creates a new file or fails.
        match rustix::fs::openat(
            dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => return Ok((name, File::from(fd))),
            Err(Errno::EXIST) => continue,
            Err(errno) => return Err(errno),
        }
    }
}

/// A temporary name, unlikely to be taken: pid, a counter, the clock.
fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".openat2-root.{}.{n}.{nanos:08x}.tmp", std::process::id())
}

fn write_and_sync(mut file: &File, contents: &[u8], sync: bool) -> Result<(), (Step, Errno)> {
    let io_errno = |e: std::io::Error| Errno::from_io_error(&e).unwrap_or(Errno::IO);
    file.write_all(contents)
        .map_err(|e| (Step::Write, io_errno(e)))?;
    if sync {
        file.sync_data()
            .map_err(|e| (Step::SyncFile, io_errno(e)))?;
    }
    Ok(())
}
