//! [`ReadDir`] and [`DirEntry`]: listing a directory without following
//! anything.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Dir, ResolveFlags};
use rustix::io::Errno;

use crate::Root;
use crate::error::{Error, Operation, Result};
use crate::file::OpenOptions;
use crate::metadata::{FileType, Metadata};

/// An iterator over the entries of a directory, from
/// [`Root::read_dir`](crate::Root::read_dir).
pub struct ReadDir {
    dir: Dir,
    listed: Arc<Listed>,
}

/// The directory being listed, shared by its entries: a [`Root`] of it
/// (with the listing root's options) and its path.
struct Listed {
    root: Root,
    path: PathBuf,
}

/// One entry of a directory: its name and type, and a handle to the
/// directory it is in, so that it can be looked at
/// ([`metadata`](DirEntry::metadata)), opened ([`open`](DirEntry::open),
/// [`open_dir`](DirEntry::open_dir)) or removed without resolving the
/// directory's path again.
///
/// This corresponds to [`std::fs::DirEntry`], but only accesses the entry
/// beneath the directory that was listed: if the entry is replaced by a
/// symlink after it was listed, that symlink is refused, never followed.
#[derive(Clone)]
pub struct DirEntry {
    name: OsString,
    file_type: FileType,
    ino: u64,
    listed: Arc<Listed>,
}

impl ReadDir {
    pub(crate) fn new(fd: OwnedFd, path: &Path, resolve: ResolveFlags) -> Result<Self, Errno> {
        // The listing reads through one fd; the entries act through a
        // duplicate (`*at` calls only, so the shared offset is no matter).
        let root_fd = rustix::io::fcntl_dupfd_cloexec(&fd, 0)?;
        Ok(Self {
            dir: Dir::new(fd)?,
            listed: Arc::new(Listed {
                root: Root {
                    fd: root_fd,
                    resolve,
                    own_mount: false,
                },
                path: path.to_path_buf(),
            }),
        })
    }

    fn error(&self, errno: Errno) -> Error {
        Error::Os {
            op: Operation::ReadDir,
            path: self.listed.path.clone(),
            to: None,
            errno: errno.into(),
        }
    }
}

impl Iterator for ReadDir {
    type Item = Result<DirEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = match self.dir.read()? {
                Ok(entry) => entry,
                Err(errno) => return Some(Err(self.error(errno))),
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let mut file_type = FileType::from_rustix(entry.file_type());
            if file_type == FileType::Unknown {
                // Some filesystems leave d_type unset: ask, without following.
                let dirfd = match self.dir.fd() {
                    Ok(fd) => fd,
                    Err(errno) => return Some(Err(self.error(errno))),
                };
                match Metadata::statx_at(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(meta) => file_type = meta.file_type(),
                    // Removed since it was listed: skip it, as readdir would
                    // have had it been a moment later.
                    Err(Errno::NOENT) => continue,
                    Err(errno) => return Some(Err(self.error(errno))),
                }
            }
            return Some(Ok(DirEntry {
                name: OsString::from_vec(name.to_vec()),
                file_type,
                ino: entry.ino(),
                listed: Arc::clone(&self.listed),
            }));
        }
    }
}

impl std::fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadDir")
            .field("path", &self.listed.path)
            .finish_non_exhaustive()
    }
}

impl DirEntry {
    /// The entry's name (one component, never `.` or `..`).
    pub fn file_name(&self) -> &OsStr {
        &self.name
    }

    /// The entry's type, as the directory records it (a symlink is
    /// [`FileType::Symlink`], never what it points to).
    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// The entry's inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The name as bytes.
    pub fn name_bytes(&self) -> &[u8] {
        self.name.as_bytes()
    }

    /// The entry's path relative to the root `read_dir` was called on (the
    /// listed directory's path joined with the name).
    ///
    /// This corresponds to [`std::fs::DirEntry::path`].
    pub fn path(&self) -> PathBuf {
        self.listed.path.join(&self.name)
    }

    /// The entry's metadata, not following a symlink (as std's does not).
    ///
    /// This corresponds to [`std::fs::DirEntry::metadata`], but only
    /// accesses the entry beneath the listed directory; with `no_xdev`, an
    /// entry that is a mount point is an [`Error::Escape`].
    ///
    /// # Errors
    ///
    /// `ENOENT` if it was removed since it was listed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let root = openat2_root::Root::open(dir.path())?;
    /// root.write("a.txt", "abc")?;
    /// for entry in root.read_dir(".")? {
    ///     let entry = entry?;
    ///     assert_eq!(entry.metadata()?.len(), 3);
    ///     assert_eq!(std::io::read_to_string(entry.open()?)?, "abc");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn metadata(&self) -> Result<Metadata> {
        self.in_listed(self.listed.root.symlink_metadata(&self.name))
    }

    /// Opens the entry for reading, as [`Root::open_read`] would: a FIFO,
    /// socket or device is refused without being opened, a symlink is
    /// refused (or followed within the root with `follow_symlinks_in_root`).
    ///
    /// This corresponds to cap-std's `DirEntry::open`.
    ///
    /// # Errors
    ///
    /// As [`Root::open_read`].
    pub fn open(&self) -> Result<File> {
        self.open_with(OpenOptions::new().read(true))
    }

    /// Opens the entry with `options`, as [`Root::open_file`] would.
    ///
    /// # Errors
    ///
    /// As [`Root::open_file`].
    pub fn open_with(&self, options: &OpenOptions) -> Result<File> {
        self.in_listed(self.listed.root.open_file(&self.name, options))
    }

    /// Opens the entry, a directory, as a [`Root`] with the listing root's
    /// options, confined to it.
    ///
    /// # Errors
    ///
    /// `ENOTDIR`; [`Error::Escape`] for a symlink.
    pub fn open_dir(&self) -> Result<Root> {
        self.in_listed(self.listed.root.open_dir(&self.name))
    }

    /// Removes the entry, a file or symlink, as [`Root::remove_file`].
    ///
    /// # Errors
    ///
    /// As [`Root::remove_file`].
    pub fn remove_file(&self) -> Result<()> {
        self.in_listed(self.listed.root.remove_file(&self.name))
    }

    /// Removes the entry, an empty directory, as [`Root::remove_dir`].
    ///
    /// # Errors
    ///
    /// As [`Root::remove_dir`].
    pub fn remove_dir(&self) -> Result<()> {
        self.in_listed(self.listed.root.remove_dir(&self.name))
    }

    /// An error about the name, made to name the whole path.
    fn in_listed<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| e.in_dir(&self.listed.path))
    }
}

impl PartialEq for DirEntry {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.file_type == other.file_type
            && self.ino == other.ino
            && self.listed.path == other.listed.path
    }
}

impl Eq for DirEntry {}

impl std::fmt::Debug for DirEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirEntry")
            .field("path", &self.path())
            .field("file_type", &self.file_type)
            .field("ino", &self.ino)
            .finish()
    }
}
