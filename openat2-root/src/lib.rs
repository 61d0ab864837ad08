//! A directory handle whose every operation is resolved beneath it by the
//! kernel, so that no symlink and no concurrent rename can redirect it.
//!
//! # The model
//!
//! Code that changes a directory tree on someone else's behalf (a project
//! root, a container's rootfs, an upload area) must never be tricked into
//! acting outside it. Checking a path string and then using it is a race:
//! between the check and the syscall, a component can be swapped for a
//! symlink. [`Root`] removes the race by letting the kernel check at the
//! moment of each operation:
//!
//! - a `Root` holds a directory fd, opened once;
//! - every path given to it is relative; absolute paths, `..` components and
//!   NUL bytes are refused with [`Error::InvalidPath`] before any syscall;
//! - the path is resolved beneath the fd by `openat2(2)` with
//!   `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: a
//!   symlink anywhere in it — also one swapped in concurrently — fails the
//!   operation with [`Error::Escape`];
//! - mutations (`mkdirat`, `unlinkat`, `renameat2`, `linkat`, `symlinkat`)
//!   run on the resolved parent's fd with a single last component, which the
//!   kernel never follows; attribute changes run on an `O_PATH` fd of the
//!   entry itself.
//!
//! There is no fallback to string paths: on a kernel without `openat2`
//! (before 5.6), or where a seccomp filter refuses it, operations fail with
//! [`Error::NotSupported`].
//!
//! [`RootOptions`] can relax symlink handling to "follow, but only within
//! the root" (`RESOLVE_IN_ROOT`) and forbid crossing mounts
//! (`RESOLVE_NO_XDEV`).
//!
//! # The one thing resolution cannot stop: a directory moved out meanwhile
//!
//! An operation resolves its parent directory, then acts on it by fd. If
//! another process renames that directory (or one above it) out of the
//! root in between, the fd follows the directory, and the action lands
//! outside. No `openat2` flag closes this (resolution is over), and no peer
//! closes it either. What this crate does about it:
//!
//! - [`RootOptions::require_own_mount`]: where the root is a mount of its
//!   own (`mount --bind DIR DIR`), a rename out of it through its path is
//!   `EXDEV`, so no process working through that path can move anything
//!   out; the option checks the root is one when it is opened.
//! - Multi-step operations ([`Root::write_atomic`],
//!   [`Root::create_dir_all`], [`Root::remove_dir_all`]) check that the
//!   directory they hold is still beneath the root (its `..` chain, by
//!   inode) before each step that changes it, and stop with
//!   [`Error::Escape`]: the window shrinks from the whole operation (a
//!   write and its flush, a tree's removal) to microseconds.
//! - Single-step operations (`create_dir`, `remove_file`, `rename`, …) keep
//!   a window of a few microseconds between resolution and action.
//!
//! `cargo xtask race` measures it with a mover renaming a directory out
//! while operations run under it.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::io::Read;
//! use openat2_root::{ErrorKind, OpenOptions, Root};
//!
//! let dir = tempfile::tempdir()?;
//! let root = Root::open(dir.path())?;
//!
//! root.create_dir_all("a/b", 0o755)?;
//! root.write_atomic("a/b/file.txt", b"hello")?;
//! root.rename("a/b/file.txt", "a/b/file2.txt")?;
//! let mut text = String::new();
//! root.open_file("a/b/file2.txt", OpenOptions::new().read(true))?.read_to_string(&mut text)?;
//! assert_eq!(text, "hello");
//!
//! // Planted symlinks and `..` never lead out.
//! root.symlink("/", "a/escape")?;
//! assert_eq!(root.remove_file("a/escape/etc/passwd").unwrap_err().kind(), ErrorKind::Escape);
//! assert_eq!(root.metadata("../etc").unwrap_err().kind(), ErrorKind::InvalidPath);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg(target_os = "linux")]

mod atomic;
mod attrs;
mod beneath;
mod entries;
mod error;
mod file;
mod lookup;
mod metadata;
mod path;
mod read_dir;
mod remove_all;
mod resolve;
mod root;
mod shortcuts;
mod sys;

pub use atomic::DurableWrite;
pub use error::{Error, ErrorKind, Operation, Result, Step};
pub use file::OpenOptions;
pub use metadata::{FileType, Metadata, Permissions};
pub use path::{InvalidPathReason, check_path};
pub use read_dir::{DirEntry, ReadDir};
pub use remove_all::RemoveOptions;
pub use resolve::MAX_RESOLVE_ATTEMPTS;
pub use root::{Root, RootOptions};
pub use shortcuts::DirBuilder;
