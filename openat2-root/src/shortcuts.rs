//! The everyday shortcuts std and cap-std have: `read`, `read_to_string`,
//! `write`, `open_read`, `create`, `try_exists`, and [`DirBuilder`].

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use rustix::io::Errno;

use crate::Root;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::file::OpenOptions;
use crate::resolve::Ctx;

/// How [`Root::create_dir_with`] makes a directory: alone or with its
/// missing parents, and with which permission bits.
///
/// This corresponds to [`std::fs::DirBuilder`] with
/// `std::os::unix::fs::DirBuilderExt`.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use openat2_root::{DirBuilder, Root};
/// # let dir = tempfile::tempdir()?;
/// let root = Root::open(dir.path())?;
/// root.create_dir_with("cache/v1/objects", DirBuilder::new().recursive(true).mode(0o700))?;
/// assert!(root.metadata("cache/v1/objects")?.is_dir());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirBuilder {
    recursive: bool,
    mode: u32,
}

impl Default for DirBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DirBuilder {
    /// Not recursive, mode `0o777` (less the umask), as std's.
    pub fn new() -> Self {
        Self {
            recursive: false,
            mode: 0o777,
        }
    }

    /// Create missing parents too, and accept an existing directory
    /// (`mkdir -p`).
    pub fn recursive(&mut self, yes: bool) -> &mut Self {
        self.recursive = yes;
        self
    }

    /// The permission bits of created directories (less the umask).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }
}

impl Root {
    /// Reads the whole file at `path`.
    ///
    /// This corresponds to [`std::fs::read`], but only accesses paths
    /// beneath `self`. The file is opened as [`open_read`](Root::open_read)
    /// opens it.
    ///
    /// # Errors
    ///
    /// As [`open_read`](Root::open_read), and read errors.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let root = openat2_root::Root::open(dir.path())?;
    /// root.write("data.bin", [1u8, 2, 3])?;
    /// assert_eq!(root.read("data.bin")?, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let ctx = Ctx::new(Operation::Read, path.as_ref());
        let mut file = File::from(self.open_fd(&ctx, OpenOptions::new().read(true))?);
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| io_error(&ctx, &e))?;
        Ok(data)
    }

    /// Reads the whole file at `path` as UTF-8 text.
    ///
    /// This corresponds to [`std::fs::read_to_string`], but only accesses
    /// paths beneath `self`.
    ///
    /// # Errors
    ///
    /// As [`read`](Root::read); [`Error::InvalidData`] if the contents are
    /// not UTF-8.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let root = openat2_root::Root::open(dir.path())?;
    /// root.write("Cargo.toml", "[package]\n")?;
    /// assert!(root.read_to_string("Cargo.toml")?.starts_with("[package]"));
    /// # Ok(()) }
    /// ```
    pub fn read_to_string(&self, path: impl AsRef<Path>) -> Result<String> {
        let bytes = self.read(path.as_ref())?;
        String::from_utf8(bytes).map_err(|e| Error::InvalidData {
            op: Operation::Read,
            path: path.as_ref().to_path_buf(),
            reason: format!(
                "not UTF-8 (the first bad byte is at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })
    }

    /// Writes `contents` to the file at `path`, creating it (mode `0o666`
    /// less the umask) or truncating it first.
    ///
    /// This corresponds to [`std::fs::write`], but only accesses paths
    /// beneath `self`. It is not atomic: a reader may see a partly written
    /// file. [`write_atomic`](Root::write_atomic) is.
    ///
    /// # Errors
    ///
    /// As [`create`](Root::create), and write errors.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let root = openat2_root::Root::open(dir.path())?;
    /// root.write("out.txt", "one")?;
    /// root.write("out.txt", "two")?;
    /// assert_eq!(root.read_to_string("out.txt")?, "two");
    /// # Ok(()) }
    /// ```
    pub fn write(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<()> {
        let ctx = Ctx::new(Operation::Write, path.as_ref());
        let options = *OpenOptions::new().write(true).create(true).truncate(true);
        let mut file = File::from(self.open_fd(&ctx, &options)?);
        file.write_all(contents.as_ref())
            .map_err(|e| io_error(&ctx, &e))
    }

    /// Opens the file at `path` for reading.
    ///
    /// This corresponds to [`std::fs::File::open`] (cap-std's `Dir::open`),
    /// but only accesses paths beneath `self`. A FIFO, socket or device is
    /// refused without being opened. ([`Root::open`] opens a root.)
    ///
    /// # Errors
    ///
    /// As [`open_file`](Root::open_file).
    #[doc(alias = "open")]
    pub fn open_read(&self, path: impl AsRef<Path>) -> Result<File> {
        self.open_file(path, OpenOptions::new().read(true))
    }

    /// Opens the file at `path` for writing, creating it (mode `0o666` less
    /// the umask) or truncating it.
    ///
    /// This corresponds to [`std::fs::File::create`] (cap-std's
    /// `Dir::create`), but only accesses paths beneath `self`.
    ///
    /// # Errors
    ///
    /// As [`open_file`](Root::open_file).
    pub fn create(&self, path: impl AsRef<Path>) -> Result<File> {
        self.open_file(
            path,
            OpenOptions::new().write(true).create(true).truncate(true),
        )
    }

    /// Whether an entry exists at `path`: `Ok(false)` only when it is
    /// missing (`ENOENT`).
    ///
    /// This corresponds to [`std::fs::exists`] (`Path::try_exists`), but
    /// only accesses paths beneath `self`. Like std it looks at what a
    /// symlink points to, which by default is refused: a symlink in the
    /// path is an [`Error::Escape`], not `false`.
    ///
    /// # Errors
    ///
    /// [`Error::Escape`]; `EACCES`; `ENOTDIR` when a parent is a file; any
    /// error but `ENOENT`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let root = openat2_root::Root::open(dir.path())?;
    /// assert!(!root.try_exists("lock")?);
    /// root.write("lock", "")?;
    /// assert!(root.try_exists("lock")?);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "exists")]
    pub fn try_exists(&self, path: impl AsRef<Path>) -> Result<bool> {
        let ctx = Ctx::new(Operation::TryExists, path.as_ref());
        match self.metadata_following(&ctx) {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Creates the directory `path` as `builder` says: alone (its parent
    /// must exist, and it must not) or with its missing parents.
    ///
    /// This corresponds to [`std::fs::DirBuilder::create`], but only
    /// accesses paths beneath `self`.
    ///
    /// # Errors
    ///
    /// As [`create_dir`](Root::create_dir) or
    /// [`create_dir_all`](Root::create_dir_all).
    pub fn create_dir_with(&self, path: impl AsRef<Path>, builder: &DirBuilder) -> Result<()> {
        if builder.recursive {
            self.create_dir_all(path, builder.mode)
        } else {
            self.create_dir(path, builder.mode)
        }
    }
}

/// An I/O error while reading or writing an open file.
fn io_error(ctx: &Ctx<'_>, err: &std::io::Error) -> Error {
    ctx.os(Errno::from_io_error(err).unwrap_or(Errno::IO))
}
