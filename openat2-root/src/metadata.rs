//! [`Metadata`] and [`FileType`]: what `statx(2)` says about an entry.

use std::fmt;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, Statx, StatxFlags, StatxTimestamp};
use rustix::io::Errno;

/// The permission bits of an entry (`mode & 0o7777`: the set-id and sticky
/// bits and `rwx` for owner, group and others), from
/// [`Metadata::permissions`], for [`Root::set_permissions`](crate::Root::set_permissions).
///
/// This corresponds to [`std::fs::Permissions`] with
/// `std::os::unix::fs::PermissionsExt`. A plain `u32` mode converts into it,
/// so `root.set_permissions(path, 0o600)` works too.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let root = openat2_root::Root::open(dir.path())?;
/// root.write("notes", "draft")?;
/// let mut perms = root.metadata("notes")?.permissions();
/// perms.set_readonly(true);
/// root.set_permissions("notes", perms)?;
/// assert!(root.metadata("notes")?.permissions().readonly());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions {
    mode: u32,
}

impl Permissions {
    /// Permissions of `mode`'s permission bits (`mode & 0o7777`; the file
    /// type bits are dropped).
    pub fn from_mode(mode: u32) -> Self {
        Self {
            mode: mode & 0o7777,
        }
    }

    /// The permission bits.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Sets the permission bits to `mode & 0o7777`.
    pub fn set_mode(&mut self, mode: u32) {
        self.mode = mode & 0o7777;
    }

    /// Whether no one may write (no `w` bit is set). As with std, this says
    /// nothing about whether *this* process may write (root may).
    pub fn readonly(&self) -> bool {
        self.mode & 0o222 == 0
    }

    /// Clears every `w` bit, or (`false`) sets the owner's. Unlike std's,
    /// which sets all three, this never makes an entry writable by the
    /// group or others.
    pub fn set_readonly(&mut self, readonly: bool) {
        if readonly {
            self.mode &= !0o222;
        } else {
            self.mode |= 0o200;
        }
    }
}

impl From<u32> for Permissions {
    fn from(mode: u32) -> Self {
        Self::from_mode(mode)
    }
}

impl From<Permissions> for u32 {
    fn from(perms: Permissions) -> Self {
        perms.mode
    }
}

impl From<std::fs::Permissions> for Permissions {
    fn from(perms: std::fs::Permissions) -> Self {
        use std::os::unix::fs::PermissionsExt;
        Self::from_mode(perms.mode())
    }
}

impl From<Permissions> for std::fs::Permissions {
    fn from(perms: Permissions) -> Self {
        use std::os::unix::fs::PermissionsExt;
        Self::from_mode(perms.mode)
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({:#o})", self.mode)
    }
}

impl fmt::Octal for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Octal::fmt(&self.mode, f)
    }
}

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device node.
    CharDevice,
    /// A block device node.
    BlockDevice,
    /// The kernel did not say (`DT_UNKNOWN` and no way to ask).
    Unknown,
}

impl FileType {
    /// From the `S_IFMT` bits of a mode.
    pub(crate) fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Self::File,
            libc::S_IFDIR => Self::Dir,
            libc::S_IFLNK => Self::Symlink,
            libc::S_IFIFO => Self::Fifo,
            libc::S_IFSOCK => Self::Socket,
            libc::S_IFCHR => Self::CharDevice,
            libc::S_IFBLK => Self::BlockDevice,
            _ => Self::Unknown,
        }
    }

    pub(crate) fn from_rustix(t: rustix::fs::FileType) -> Self {
        use rustix::fs::FileType as T;
        match t {
            T::RegularFile => Self::File,
            T::Directory => Self::Dir,
            T::Symlink => Self::Symlink,
            T::Fifo => Self::Fifo,
            T::Socket => Self::Socket,
            T::CharacterDevice => Self::CharDevice,
            T::BlockDevice => Self::BlockDevice,
            _ => Self::Unknown,
        }
    }

    /// Whether this is a regular file.
    pub fn is_file(self) -> bool {
        self == Self::File
    }

    /// Whether this is a directory.
    pub fn is_dir(self) -> bool {
        self == Self::Dir
    }

    /// Whether this is a symbolic link.
    pub fn is_symlink(self) -> bool {
        self == Self::Symlink
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::File => "regular file",
            Self::Dir => "directory",
            Self::Symlink => "symbolic link",
            Self::Fifo => "FIFO",
            Self::Socket => "socket",
            Self::CharDevice => "character device",
            Self::BlockDevice => "block device",
            Self::Unknown => "file of unknown type",
        })
    }
}

/// Metadata of an entry, from `statx(2)`.
///
/// This corresponds to [`std::fs::Metadata`] with the Unix extension methods
/// (`mode`, `uid`, `ino`, …) as inherent methods.
#[derive(Clone)]
pub struct Metadata {
    stx: Statx,
}

/// The fields every [`Metadata`] asks for.
const STATX_MASK: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::BTIME);

impl Metadata {
    /// `statx(dir, name, flags)`.
    pub(crate) fn statx_at(dir: impl AsFd, name: &[u8], flags: AtFlags) -> Result<Self, Errno> {
        rustix::fs::statx(dir, name, flags | AtFlags::STATX_DONT_SYNC, STATX_MASK)
            .map(|stx| Self { stx })
    }

    /// Whether the entry is the root of a mount (`STATX_ATTR_MOUNT_ROOT`,
    /// Linux 5.8): a lookup of its name crossed into another mount.
    pub(crate) fn is_mount_root(&self) -> bool {
        use rustix::fs::StatxAttributes;
        let root = StatxAttributes::MOUNT_ROOT;
        self.stx.stx_attributes_mask.contains(root) && self.stx.stx_attributes.contains(root)
    }

    /// Whether the kernel said whether the entry is a mount's root (the
    /// attribute is in `stx_attributes_mask`: Linux 5.8 and later).
    pub(crate) fn knows_mount_root(&self) -> bool {
        self.stx
            .stx_attributes_mask
            .contains(rustix::fs::StatxAttributes::MOUNT_ROOT)
    }

    /// `statx(fd, "", AT_EMPTY_PATH)`: metadata of an open fd (`O_PATH` too).
    pub(crate) fn of_fd(fd: impl AsFd) -> Result<Self, Errno> {
        Self::statx_at(fd, b"", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
    }

    /// The type of the entry.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(u32::from(self.stx.stx_mode))
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type().is_dir()
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type().is_file()
    }

    /// Whether this is a symbolic link (only from
    /// [`Root::symlink_metadata`](crate::Root::symlink_metadata)).
    pub fn is_symlink(&self) -> bool {
        self.file_type().is_symlink()
    }

    /// Size in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.stx.stx_size
    }

    /// The full `st_mode`: type and permission bits.
    pub fn mode(&self) -> u32 {
        u32::from(self.stx.stx_mode)
    }

    /// The permission bits (`mode() & 0o7777`).
    ///
    /// This corresponds to [`std::fs::Metadata::permissions`].
    pub fn permissions(&self) -> Permissions {
        Permissions::from_mode(self.mode())
    }

    /// Owner user id.
    pub fn uid(&self) -> u32 {
        self.stx.stx_uid
    }

    /// Owner group id.
    pub fn gid(&self) -> u32 {
        self.stx.stx_gid
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.stx.stx_ino
    }

    /// Device id of the filesystem holding the entry.
    pub fn dev(&self) -> u64 {
        rustix::fs::makedev(self.stx.stx_dev_major, self.stx.stx_dev_minor)
    }

    /// Device id the entry represents, for device nodes.
    pub fn rdev(&self) -> u64 {
        rustix::fs::makedev(self.stx.stx_rdev_major, self.stx.stx_rdev_minor)
    }

    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        u64::from(self.stx.stx_nlink)
    }

    /// Number of 512-byte blocks allocated.
    pub fn blocks(&self) -> u64 {
        self.stx.stx_blocks
    }

    /// Last access time.
    pub fn accessed(&self) -> SystemTime {
        to_system_time(&self.stx.stx_atime)
    }

    /// Last modification time.
    pub fn modified(&self) -> SystemTime {
        to_system_time(&self.stx.stx_mtime)
    }

    /// Last status change time.
    pub fn changed(&self) -> SystemTime {
        to_system_time(&self.stx.stx_ctime)
    }

    /// Creation time, where the filesystem records it.
    pub fn created(&self) -> Option<SystemTime> {
        (self.stx.stx_mask & StatxFlags::BTIME.bits() != 0)
            .then(|| to_system_time(&self.stx.stx_btime))
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("file_type", &self.file_type())
            .field("mode", &format_args!("{:#o}", self.permissions()))
            .field("len", &self.len())
            .field("uid", &self.uid())
            .field("gid", &self.gid())
            .field("ino", &self.ino())
            .field("modified", &self.modified())
            .finish_non_exhaustive()
    }
}

fn to_system_time(ts: &StatxTimestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(ts.tv_nsec));
    if ts.tv_sec >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts.tv_sec.unsigned_abs()) + nanos
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(ts.tv_sec.unsigned_abs()) + nanos
    }
}
