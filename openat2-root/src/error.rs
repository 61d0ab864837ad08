//! The crate's error type: every failure names the operation and the path.
//!
//! Every message is complete on its own: it ends with the errno's text
//! where the kernel gave one, and no error returns what its message
//! already says as [`source`](std::error::Error::source), so an error
//! reporter that walks the chain never prints a cause twice. The errno is
//! the variant's public `errno` field, and [`Error::raw_os_error`].

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::metadata::FileType;
use crate::path::InvalidPathReason;

/// The [`Root`](crate::Root) operation that failed, as named in error
/// messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // The variants are the method names.
pub enum Operation {
    OpenRoot,
    CreateDir,
    CreateDirAll,
    RemoveFile,
    RemoveDir,
    RemoveDirAll,
    Remove,
    Rename,
    RenameNoReplace,
    RenameExchange,
    HardLink,
    Symlink,
    ReadLink,
    SetPermissions,
    SetLen,
    Copy,
    SetTimes,
    Metadata,
    SymlinkMetadata,
    ReadDir,
    OpenDir,
    Chown,
    Open,
    WriteAtomic,
    Read,
    Write,
    TryExists,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OpenRoot => "open root",
            Self::CreateDir => "create_dir",
            Self::CreateDirAll => "create_dir_all",
            Self::RemoveFile => "remove_file",
            Self::RemoveDir => "remove_dir",
            Self::RemoveDirAll => "remove_dir_all",
            Self::Remove => "remove",
            Self::Rename => "rename",
            Self::RenameNoReplace => "rename_noreplace",
            Self::RenameExchange => "rename_exchange",
            Self::HardLink => "hard_link",
            Self::Symlink => "symlink",
            Self::ReadLink => "read_link",
            Self::SetPermissions => "set_permissions",
            Self::SetLen => "set_len",
            Self::Copy => "copy",
            Self::SetTimes => "set_times",
            Self::Metadata => "metadata",
            Self::SymlinkMetadata => "symlink_metadata",
            Self::ReadDir => "read_dir",
            Self::OpenDir => "open_dir",
            Self::Chown => "chown",
            Self::Open => "open",
            Self::WriteAtomic => "write_atomic",
            Self::Read => "read",
            Self::Write => "write",
            Self::TryExists => "try_exists",
        })
    }
}

/// The step of a multi-step operation ([`Root::write_atomic`](crate::Root::write_atomic))
/// that failed, carried by [`Error::Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Creating the temporary file (`O_TMPFILE`, or a named `O_EXCL` file).
    CreateTemp,
    /// Giving the temporary file the replaced file's mode and owner.
    SetAttributes,
    /// Writing the contents.
    Write,
    /// Flushing the file's data (`fdatasync(2)`).
    SyncFile,
    /// Giving the anonymous file a name (`linkat(2)`).
    Link,
    /// Renaming the temporary file over the path (`renameat(2)`).
    Rename,
    /// Flushing the directory (`fsync(2)`), so the new entry survives a
    /// power failure. The file is in place when only this step failed.
    SyncDir,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CreateTemp => "creating the temporary file",
            Self::SetAttributes => "setting the temporary file's mode and owner",
            Self::Write => "writing the contents",
            Self::SyncFile => "flushing the file (fdatasync)",
            Self::Link => "linking the temporary file",
            Self::Rename => "renaming the temporary file into place",
            Self::SyncDir => "flushing the directory (fsync)",
        })
    }
}

/// What went wrong, without the operation and path: see [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The path was refused before any syscall ([`Error::InvalidPath`]).
    InvalidPath,
    /// An argument other than the path was refused ([`Error::InvalidInput`]).
    InvalidInput,
    /// The contents were not what the operation needs ([`Error::InvalidData`]).
    InvalidData,
    /// Resolution would have left the root, crossed a symlink, a magic link
    /// or (with `no_xdev`) a mount ([`Error::Escape`]).
    Escape,
    /// The entry does not exist (`ENOENT`).
    NotFound,
    /// The entry already exists (`EEXIST`).
    AlreadyExists,
    /// The kernel lacks a facility the operation needs
    /// ([`Error::NotSupported`]).
    NotSupported,
    /// Resolution kept racing with concurrent renames (`EAGAIN`) and was
    /// given up ([`Error::RetryExhausted`]). Trying again may succeed.
    RetryExhausted,
    /// The entry is a FIFO, socket or device node and the operation refuses
    /// those ([`Error::SpecialFile`]).
    SpecialFile,
    /// Any other error the kernel returned, with its errno.
    Os(i32),
}

/// An error from a [`Root`](crate::Root) operation.
///
/// Every variant carries the [`Operation`] and the path (relative to the
/// root) it concerns. An escape attempt is [`Error::Escape`], never an
/// ordinary OS error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path was refused before any syscall was made.
    #[error("{op} {path:?}: invalid path: {reason}")]
    InvalidPath {
        /// The operation.
        op: Operation,
        /// The path as given.
        path: PathBuf,
        /// Why it was refused.
        reason: InvalidPathReason,
    },
    /// An argument other than the path was refused before any syscall.
    #[error("{op} {path:?}: invalid argument: {reason}")]
    InvalidInput {
        /// The operation.
        op: Operation,
        /// The path.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// The contents were not what the operation needs (not UTF-8, for
    /// [`Root::read_to_string`](crate::Root::read_to_string)).
    #[error("{op} {path:?}: invalid data: {reason}")]
    InvalidData {
        /// The operation.
        op: Operation,
        /// The path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Resolution was refused by the kernel because it would have left the
    /// root (`EXDEV`), followed a symlink or magic link (`ELOOP`), or crossed
    /// a mount point with `no_xdev` set (`EXDEV`). With
    /// `follow_symlinks_in_root`, a symlink loop (`ELOOP`) is reported here
    /// too.
    #[error("{op} {path:?}: refused: {}", escape_reason(errno))]
    Escape {
        /// The operation.
        op: Operation,
        /// The path whose resolution was refused.
        path: PathBuf,
        /// The errno the kernel gave (`ELOOP` or `EXDEV`).
        errno: io::Error,
    },
    /// The kernel lacks something the operation needs; nothing was done.
    #[error("{op} {path:?}: not supported here: needs {requirement} ({errno})")]
    NotSupported {
        /// The operation.
        op: Operation,
        /// The path.
        path: PathBuf,
        /// What is needed, e.g. "openat2(2), Linux 5.6 or later".
        requirement: &'static str,
        /// The error that showed it was missing.
        errno: io::Error,
    },
    /// `openat2` kept returning `EAGAIN` (a concurrent rename or mount
    /// raced with resolution) and the bounded retries ran out.
    #[error(
        "{op} {path:?}: gave up after {attempts} attempts: resolution kept racing with concurrent renames (EAGAIN); retrying may succeed"
    )]
    RetryExhausted {
        /// The operation.
        op: Operation,
        /// The path.
        path: PathBuf,
        /// How many times resolution was tried.
        attempts: u32,
    },
    /// The entry is not a regular file or directory and the operation does
    /// not act on such files (see `OpenOptions::allow_special_files`).
    #[error("{op} {path:?}: refused: it is a {file_type}, not a regular file")]
    SpecialFile {
        /// The operation.
        op: Operation,
        /// The path.
        path: PathBuf,
        /// What it is.
        file_type: FileType,
    },
    /// A step of a multi-step operation failed with an error from the
    /// kernel; [`Step`] says which. [`Error::kind`] is as for
    /// [`Error::Os`].
    #[error("{op} {path:?}: {step} failed: {errno}")]
    Step {
        /// The operation.
        op: Operation,
        /// The path.
        path: PathBuf,
        /// The step that failed.
        step: Step,
        /// The error, with its errno.
        errno: io::Error,
    },
    /// Any other error from the kernel.
    #[error("{op} {path:?}{}: {errno}", to.as_ref().map(|t| format!(" -> {t:?}")).unwrap_or_default())]
    Os {
        /// The operation.
        op: Operation,
        /// The path (for two-path operations, the source).
        path: PathBuf,
        /// For two-path operations (rename, link, copy, symlink), the other path.
        to: Option<PathBuf>,
        /// The error, with its errno.
        errno: io::Error,
    },
}

/// The field `$field`, which every variant of [`Error`] has, of `$err`
/// (borrowed as `$err` is).
macro_rules! every_variant {
    ($err:expr, $field:ident) => {
        match $err {
            Error::InvalidPath { $field, .. }
            | Error::InvalidInput { $field, .. }
            | Error::InvalidData { $field, .. }
            | Error::Escape { $field, .. }
            | Error::NotSupported { $field, .. }
            | Error::RetryExhausted { $field, .. }
            | Error::SpecialFile { $field, .. }
            | Error::Step { $field, .. }
            | Error::Os { $field, .. } => $field,
        }
    };
}

impl Error {
    /// What kind of error this is.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openat2_root::{ErrorKind, Root};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let root = Root::open(dir.path())?;
    /// let err = root.remove_file("missing").unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// assert_eq!(root.metadata("/etc").unwrap_err().kind(), ErrorKind::InvalidPath);
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidPath { .. } => ErrorKind::InvalidPath,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::InvalidData { .. } => ErrorKind::InvalidData,
            Self::Escape { .. } => ErrorKind::Escape,
            Self::NotSupported { .. } => ErrorKind::NotSupported,
            Self::RetryExhausted { .. } => ErrorKind::RetryExhausted,
            Self::SpecialFile { .. } => ErrorKind::SpecialFile,
            Self::Os { errno, .. } | Self::Step { errno, .. } => match errno.raw_os_error() {
                Some(libc::ENOENT) => ErrorKind::NotFound,
                Some(libc::EEXIST) => ErrorKind::AlreadyExists,
                Some(errno) => ErrorKind::Os(errno),
                None => ErrorKind::Os(0),
            },
        }
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        *every_variant!(self, op)
    }

    /// The path the error concerns, relative to the root.
    pub fn path(&self) -> &std::path::Path {
        every_variant!(self, path)
    }

    /// The same error about `dir/<path>`: for an operation on a name in a
    /// listed directory.
    pub(crate) fn in_dir(mut self, dir: &std::path::Path) -> Self {
        let path = every_variant!(&mut self, path);
        if dir != std::path::Path::new(".") && !dir.as_os_str().is_empty() {
            *path = dir.join(&*path);
        }
        self
    }

    /// The step that failed, for [`Error::Step`].
    pub fn step(&self) -> Option<Step> {
        match self {
            Self::Step { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// The errno behind this error, if the kernel gave one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Escape { errno: e, .. }
            | Self::NotSupported { errno: e, .. }
            | Self::Step { errno: e, .. }
            | Self::Os { errno: e, .. } => e.raw_os_error(),
            Self::RetryExhausted { .. } => Some(libc::EAGAIN),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    /// Converts to an [`io::Error`] whose kind matches (`NotFound`,
    /// `AlreadyExists`, `PermissionDenied` for escapes, `Unsupported`, …)
    /// and whose message keeps the operation and path.
    fn from(err: Error) -> Self {
        let kind = match err.kind() {
            ErrorKind::InvalidPath | ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::InvalidData => io::ErrorKind::InvalidData,
            ErrorKind::Escape | ErrorKind::SpecialFile => io::ErrorKind::PermissionDenied,
            ErrorKind::NotSupported => io::ErrorKind::Unsupported,
            ErrorKind::RetryExhausted => io::ErrorKind::WouldBlock,
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            ErrorKind::Os(errno) => io::Error::from_raw_os_error(errno).kind(),
        };
        io::Error::new(kind, err)
    }
}

/// Why the kernel refused a resolution, from its errno.
fn escape_reason(errno: &io::Error) -> &'static str {
    match errno.raw_os_error() {
        Some(libc::ELOOP) => {
            "a symlink (or magic link) is in the path, and it is not followed (ELOOP)"
        }
        Some(libc::EXDEV) => {
            "the path leaves the root or crosses a mount point, or a directory on it was moved out of the root while the operation ran (EXDEV)"
        }
        _ => "resolution would leave the root",
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
