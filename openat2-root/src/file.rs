//! Opening files: [`OpenOptions`], `open_file` and `copy`.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::Root;
use crate::error::{Operation, Result};
use crate::metadata::FileType;
use crate::resolve::Ctx;

/// Options for [`Root::open_file`], in the shape of [`std::fs::OpenOptions`].
///
/// By default a FIFO, socket or device node is refused with
/// [`Error::SpecialFile`](crate::Error::SpecialFile) — checked without
/// blocking — unless [`allow_special_files`](OpenOptions::allow_special_files)
/// is set.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::io::Write;
/// use openat2_root::{OpenOptions, Root};
/// # let dir = tempfile::tempdir()?;
/// let root = Root::open(dir.path())?;
/// let mut log = root.open_file("log", OpenOptions::new().append(true).create(true).mode(0o600))?;
/// log.write_all(b"one line\n")?;
/// assert_eq!(root.metadata("log")?.permissions().mode(), 0o600);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    allow_special_files: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// All options off; mode `0o666` for created files (less the umask).
    pub fn new() -> Self {
        Self {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            allow_special_files: false,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, yes: bool) -> &mut Self {
        self.read = yes;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, yes: bool) -> &mut Self {
        self.write = yes;
        self
    }

    /// Open for appending (implies writing).
    pub fn append(&mut self, yes: bool) -> &mut Self {
        self.append = yes;
        self
    }

    /// Truncate an existing file to 0 bytes (needs `write`).
    pub fn truncate(&mut self, yes: bool) -> &mut Self {
        self.truncate = yes;
        self
    }

    /// Create the file if it does not exist (needs `write` or `append`).
    pub fn create(&mut self, yes: bool) -> &mut Self {
        self.create = yes;
        self
    }

    /// Create the file, failing with `EEXIST` if it exists (even as a
    /// symlink, which is never followed).
    pub fn create_new(&mut self, yes: bool) -> &mut Self {
        self.create_new = yes;
        self
    }

    /// Permission bits for a created file (less the umask).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Allow opening FIFOs, sockets and device nodes. Opening a FIFO may
    /// then block until the other end is opened, as with `open(2)`.
    pub fn allow_special_files(&mut self, yes: bool) -> &mut Self {
        self.allow_special_files = yes;
        self
    }

    /// The `O_*` flags, or why the combination is refused (as std refuses
    /// it).
    fn flags(&self) -> Result<OFlags, &'static str> {
        let access = match (self.read, self.write, self.append) {
            (true, false, false) => OFlags::RDONLY,
            (false, true, false) => OFlags::WRONLY,
            (true, true, false) => OFlags::RDWR,
            (false, _, true) => OFlags::WRONLY | OFlags::APPEND,
            (true, _, true) => OFlags::RDWR | OFlags::APPEND,
            (false, false, false) => {
                return Err("open options must ask for read, write or append");
            }
        };
        if !self.write && !self.append && (self.truncate || self.create || self.create_new) {
            return Err("truncate, create and create_new need write or append");
        }
        if self.append && self.truncate && !self.create_new {
            return Err("truncate and append together make no sense");
        }
        let creation = if self.create_new {
            OFlags::CREATE | OFlags::EXCL
        } else {
            let mut f = OFlags::empty();
            if self.create {
                f |= OFlags::CREATE;
            }
            if self.truncate {
                f |= OFlags::TRUNC;
            }
            f
        };
        Ok(access | creation | OFlags::NOCTTY)
    }
}

impl Root {
    /// Opens the file at `path` with `options`.
    ///
    /// This corresponds to [`std::fs::OpenOptions::open`], but only accesses
    /// paths beneath `self`. The file is opened with `O_CLOEXEC` and
    /// `O_NOCTTY`; a symlink anywhere in the path, the last component
    /// included, is refused (or followed within the root with
    /// `follow_symlinks_in_root`), also when creating.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for a combination
    /// std also refuses (e.g. `create` without `write`);
    /// [`Error::SpecialFile`](crate::Error::SpecialFile) for a FIFO, socket
    /// or device unless allowed; [`Error::Escape`](crate::Error::Escape);
    /// `ENOENT`, `EEXIST` (`create_new`), `EACCES`, `EISDIR`, ….
    ///
    /// (It is not called `open` because [`Root::open`] opens a root.)
    #[doc(alias = "open", alias = "openRead", alias = "openWrite")]
    pub fn open_file(&self, path: impl AsRef<Path>, options: &OpenOptions) -> Result<File> {
        let ctx = Ctx::new(Operation::Open, path.as_ref());
        self.open_fd(&ctx, options).map(File::from)
    }

    /// Copies the regular file `from` to `to`, creating or replacing `to`'s
    /// contents, and gives `to` the permission bits of `from`. Returns the
    /// number of bytes copied.
    ///
    /// This corresponds to [`std::fs::copy`], but only accesses paths beneath
    /// `self`. It uses `copy_file_range(2)` (in-kernel, reflinks where the
    /// filesystem can) and falls back to read/write.
    ///
    /// # Errors
    ///
    /// [`Error::SpecialFile`](crate::Error::SpecialFile) if `from` is not a
    /// regular file (a directory, FIFO, device…);
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) if both name the
    /// same file (nothing is truncated); [`Error::Escape`](crate::Error::Escape)
    /// for a symlink in either path. If an error happens while copying,
    /// `to` exists and holds a prefix of the data.
    #[doc(alias = "copyFile")]
    pub fn copy(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<u64> {
        let ctx = Ctx::two(Operation::Copy, from.as_ref(), to.as_ref());
        let (src, src_stat) = self.open_checked(&ctx, OpenOptions::new().read(true))?;
        let src_stat = src_stat.ok_or_else(|| ctx.os(Errno::INVAL))?;
        if FileType::from_mode(src_stat.st_mode) != FileType::File {
            return Err(ctx.special(FileType::from_mode(src_stat.st_mode)));
        }
        let to_ctx = ctx.second();
        let mut dst_opts = OpenOptions::new();
        dst_opts
            .write(true)
            .create(true)
            .mode(src_stat.st_mode & 0o777);
        let (dst, dst_stat) = self.open_checked(&to_ctx, &dst_opts)?;
        if let Some(dst_stat) = dst_stat {
            if dst_stat.st_dev == src_stat.st_dev && dst_stat.st_ino == src_stat.st_ino {
                return Err(ctx.invalid_input("source and destination are the same file"));
            }
        }
        // Only an existing file with contents is emptied first: a
        // truncate to 0 makes ext4 flush the new data on close
        // (auto_da_alloc), which std's O_TRUNC on a file it just created
        // does not pay either.
        if dst_stat.is_some_and(|s| s.st_size > 0) {
            rustix::fs::ftruncate(&dst, 0).map_err(|e| to_ctx.os(e))?;
        }
        let len = u64::try_from(src_stat.st_size).unwrap_or(0);
        let copied = copy_contents(&src, &dst, len).map_err(|e| ctx.os(e))?;
        rustix::fs::fchmod(&dst, Mode::from_raw_mode(src_stat.st_mode & 0o7777))
            .map_err(|e| to_ctx.os(e))?;
        Ok(copied)
    }

    /// Opens `ctx.path` with `options`; special files refused unless allowed.
    pub(crate) fn open_fd(&self, ctx: &Ctx<'_>, options: &OpenOptions) -> Result<OwnedFd> {
        self.open_checked(ctx, options).map(|(fd, _)| fd)
    }

    /// As [`Root::open_fd`], also returning the `fstat` made to check the
    /// file type (none when special files are allowed).
    fn open_checked(
        &self,
        ctx: &Ctx<'_>,
        options: &OpenOptions,
    ) -> Result<(OwnedFd, Option<Stat>)> {
        let rel = ctx.parse()?;
        let mut flags = options
            .flags()
            .map_err(|reason| ctx.invalid_input(reason))?;
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from_raw_mode(options.mode)
        } else {
            Mode::empty()
        };
        // O_CREAT|O_EXCL never opens an existing entry: the result is a new
        // regular file, so there is nothing to check.
        if options.allow_special_files || options.create_new {
            return Ok((self.openat2_root(rel.as_bytes(), flags, mode, ctx)?, None));
        }
        // A FIFO or a device must not be opened at all (an open releases a
        // FIFO's blocked writer, runs a driver's open, shows in inotify):
        // resolve to an O_PATH fd, which opens nothing, look at what it is,
        // and only then open that very inode through /proc/self/fd. A name
        // that is missing is created with O_EXCL, which only ever makes a
        // new regular file (and fails if something appeared meanwhile: then
        // look again).
        for _ in 0..8 {
            let found = match self.open_path(rel.as_bytes(), OFlags::empty(), ctx) {
                Ok(fd) => fd,
                // Nothing to open there (missing, or the lookup failed):
                // with O_CREAT, an exclusive create says what open(2)
                // would (it creates, or gives the kernel's own error).
                Err(lookup) if flags.contains(OFlags::CREATE) => {
                    let created =
                        self.openat2_root(rel.as_bytes(), flags | OFlags::EXCL, mode, ctx);
                    match created {
                        Ok(fd) => {
                            let stat = rustix::fs::fstat(&fd).map_err(|e| ctx.os(e))?;
                            return Ok((fd, Some(stat)));
                        }
                        // Something appeared since the lookup: look again.
                        Err(err)
                            if err.raw_os_error() == Some(libc::EEXIST)
                                && lookup.raw_os_error() == Some(libc::ENOENT) =>
                        {
                            continue;
                        }
                        // There all along, and not to be opened (a symlink
                        // the root does not follow): the lookup's answer.
                        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                            return Err(lookup);
                        }
                        Err(err) => return Err(err),
                    }
                }
                Err(err) => return Err(err),
            };
            let stat = rustix::fs::fstat(&found).map_err(|e| ctx.os(e))?;
            match FileType::from_mode(stat.st_mode) {
                FileType::File | FileType::Dir => {}
                special => return Err(ctx.special(special)),
            }
            flags.remove(OFlags::CREATE | OFlags::EXCL);
            return reopen(&found, flags)
                .map(|fd| (fd, Some(stat)))
                .map_err(|e| ctx.os(e));
        }
        Err(ctx.os(Errno::AGAIN))
    }
}

/// Opens the inode `path_fd` (an `O_PATH` fd) names with `flags`, through
/// its `/proc/self/fd` entry: the same inode whatever happened to its name
/// since, with the permission checks of an ordinary open.
fn reopen(path_fd: &OwnedFd, flags: OFlags) -> Result<OwnedFd, Errno> {
    use std::os::fd::AsRawFd;
    let proc_fd = rustix_linux_procfs::proc_self_fd()?;
    // The fd number in decimal, NUL-terminated, without allocating.
    let mut digits = [0u8; 12];
    let mut n = path_fd.as_raw_fd().unsigned_abs();
    let mut start = digits.len() - 1;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let name = std::ffi::CStr::from_bytes_with_nul(&digits[start..]).map_err(|_| Errno::INVAL)?;
    rustix::fs::openat(proc_fd, name, flags | OFlags::CLOEXEC, Mode::empty())
}

/// Copies all of `src` (`len` bytes when it was looked at) into the empty
/// `dst`: a reflink where the filesystem shares extents (`FICLONE`), else
/// the data extents only (`SEEK_DATA`/`SEEK_HOLE`), each with
/// `copy_file_range`, so holes stay holes; `dst` is then given `src`'s
/// length. Returns the bytes of `src`.
fn copy_contents(src: &OwnedFd, dst: &OwnedFd, len: u64) -> Result<u64, Errno> {
    use rustix::fs::SeekFrom;
    if len > 0 && rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(len);
    }
    let mut pos = 0u64;
    loop {
        let data = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
            Ok(data) => data,
            // No data past `pos`: the rest is a hole (or the end).
            Err(Errno::NXIO) => break,
            // No SEEK_DATA here: one extent, all of it.
            Err(Errno::INVAL | Errno::OPNOTSUPP) if pos == 0 => 0,
            Err(errno) => return Err(errno),
        };
        let hole = match rustix::fs::seek(src, SeekFrom::Hole(data)) {
            Ok(hole) => hole,
            Err(Errno::INVAL | Errno::OPNOTSUPP) => u64::MAX,
            Err(errno) => return Err(errno),
        };
        let n = copy_range(src, dst, data, hole)?;
        if n < hole.saturating_sub(data) {
            break; // the end of the file (it may have shrunk meanwhile)
        }
        pos = hole;
    }
    // The length as it is now, a trailing hole included, without writing
    // it (a size the data already has changes nothing).
    let now = u64::try_from(rustix::fs::fstat(src)?.st_size).unwrap_or(len);
    rustix::fs::ftruncate(dst, now)?;
    Ok(now)
}

/// Copies `src`'s bytes `start..end` (or to its end) to the same offsets of
/// `dst`; the bytes copied.
fn copy_range(src: &OwnedFd, dst: &OwnedFd, start: u64, end: u64) -> Result<u64, Errno> {
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let want = usize::try_from((end - off_in).min(1 << 30)).unwrap_or(1 << 30);
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => break,
            Ok(_) => {}
            // Not possible between these two files: through userspace.
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP | Errno::PERM) => {
                return read_write_range(src, dst, off_in, end).map(|n| off_in - start + n);
            }
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(errno),
        }
    }
    Ok(off_in - start)
}

fn read_write_range(src: &OwnedFd, dst: &OwnedFd, start: u64, end: u64) -> Result<u64, Errno> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut off = start;
    while off < end {
        let want = usize::try_from((end - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = match rustix::io::pread(src, &mut buf[..want], off) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(errno),
        };
        let mut written = 0;
        while written < n {
            match rustix::io::pwrite(dst, &buf[written..n], off + written as u64) {
                Ok(0) => return Err(Errno::IO),
                Ok(w) => written += w,
                Err(Errno::INTR) => continue,
                Err(errno) => return Err(errno),
            }
        }
        off += n as u64;
    }
    Ok(off - start)
}
