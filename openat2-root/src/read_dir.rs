//! [`ReadDir`] and [`DirEntry`]: listing a directory without following
//! anything.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir};
use rustix::io::Errno;

use crate::error::{Error, Operation};
use crate::metadata::{FileType, Metadata};

/// An iterator over the entries of a directory, from
/// [`Root::read_dir`](crate::Root::read_dir).
pub struct ReadDir {
    dir: Dir,
    path: PathBuf,
}

/// One entry of a directory: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    name: OsString,
    file_type: FileType,
    ino: u64,
}

impl ReadDir {
    pub(crate) fn new(fd: OwnedFd, path: &Path) -> Result<Self, Errno> {
        Ok(Self {
            dir: Dir::new(fd)?,
            path: path.to_path_buf(),
        })
    }

    fn error(&self, errno: Errno) -> Error {
        Error::Os {
            op: Operation::ReadDir,
            path: self.path.clone(),
            to: None,
            source: errno.into(),
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
            }));
        }
    }
}

impl std::fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadDir")
            .field("path", &self.path)
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
}
