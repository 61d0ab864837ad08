//! Taking a run's changes out of an overlay's upper: applied onto a tree
//! ([`apply_changes`]) or written as an OCI layer tar
//! ([`export_changes`]). Both read the upper through `openat2-root` and
//! check all of it before writing anything.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use openat2_root::{ErrorKind, FileType, OpenOptions, RemoveOptions, Root};

/// The most entries an upper may hold to be applied or exported: the plan
/// of every entry is held in memory before anything is written.
pub const MAX_APPLY_ENTRIES: usize = 1_000_000;

/// Why an upper cannot be applied or exported. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyRefusal {
    /// A device node other than a whiteout, a FIFO or a socket: no tree
    /// of the caller's should receive one from a sandbox.
    SpecialFile,
    /// An overlayfs redirect or metacopy attribute: the entry's data is
    /// elsewhere (a renamed lower directory, a lower file's content), so
    /// copying the upper's entry would lose it.
    Redirected,
    /// More than [`MAX_APPLY_ENTRIES`] entries.
    TooManyEntries,
}

impl std::fmt::Display for ApplyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SpecialFile => f.write_str("a device node, FIFO or socket"),
            Self::Redirected => {
                f.write_str("an overlayfs redirect or metacopy entry (its data is elsewhere)")
            }
            Self::TooManyEntries => write!(f, "more than {MAX_APPLY_ENTRIES} entries"),
        }
    }
}

/// What went wrong applying or exporting an upper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// An entry of the upper that is not applied; nothing was written.
    #[error("{}: {refusal}; nothing was written", path.display())]
    Refused {
        /// The entry, relative to the upper.
        path: PathBuf,
        /// Why.
        refusal: ApplyRefusal,
    },
    /// The upper (or the tree) could not be read; nothing was written.
    #[error("reading {}: {source}; nothing was written", path.display())]
    Read {
        /// What was being read.
        path: PathBuf,
        /// The error.
        source: openat2_root::Error,
    },
    /// Writing failed partway. Each entry is replaced whole (a file is
    /// written beside its path and renamed over it), so every entry is
    /// either as it was or as the upper has it.
    #[error(
        "{}: {source}; {applied} of {total} entries were written before it, the rest were not",
        path.display()
    )]
    Partial {
        /// The entry that failed, relative to the tree.
        path: PathBuf,
        /// How many entries were written before it.
        applied: usize,
        /// How many there are.
        total: usize,
        /// The error (an escape from the tree is
        /// [`io::ErrorKind::PermissionDenied`]).
        source: io::Error,
    },
}

/// What [`apply_changes`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AppliedChanges {
    /// Entries the tree did not have.
    pub added: u64,
    /// Entries replaced or whose mode changed.
    pub modified: u64,
    /// Entries removed (whiteouts of what the tree had).
    pub deleted: u64,
    /// Directories emptied before the upper's content went in (opaque).
    pub replaced: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Set-user-ID or set-group-ID bits not carried over.
    pub setid_dropped: u64,
}

/// What [`export_changes`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ExportedChanges {
    /// Directories, files and symlinks.
    pub entries: u64,
    /// Whiteouts (`.wh.NAME`) and opaque markers (`.wh..wh..opq`).
    pub whiteouts: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Set-user-ID or set-group-ID bits not carried over.
    pub setid_dropped: u64,
}

enum Item {
    Whiteout,
    Dir { mode: u32, opaque: bool },
    File { mode: u32, mtime: SystemTime },
    Symlink { target: PathBuf },
}

struct Entry {
    path: PathBuf,
    item: Item,
}

/// Applies the changes an overlay's upper holds (its `diff`: what
/// [`overlay_changes`](crate::overlay_changes) lists) onto `tree`, usually
/// the overlay's lower: files, symlinks and directories are written as the
/// upper has them, whiteouts remove what they hide, opaque directories are
/// emptied first.
///
/// Everything is checked before anything is written: a device node, FIFO
/// or socket in the upper, or an overlayfs redirect, is refused with
/// nothing written. Every write into `tree` is resolved beneath it with
/// `openat2-root`, no symlink followed: a change that would leave the tree
/// (through a symlink the tree has, or one swapped in meanwhile) fails.
/// A file is written beside its path and renamed over it, so each entry is
/// either as it was or as the upper has it; set-id bits are dropped; new
/// entries belong to the caller. Apply after the run, not while an overlay
/// of `tree` is mounted (overlayfs does not expect its lower to change).
///
/// # Errors
///
/// [`ApplyError::Refused`] and [`ApplyError::Read`] with nothing
/// written; [`ApplyError::Partial`] saying how far it got.
///
/// # Examples
///
/// ```no_run
/// // After a run with `upper = "/var/lib/jobs/42"` over `/srv/repo`:
/// let applied = sandbox_core::apply_changes(
///     "/var/lib/jobs/42/diff".as_ref(),
///     "/srv/repo".as_ref(),
/// )?;
/// println!("{} added, {} modified, {} deleted", applied.added, applied.modified, applied.deleted);
/// # Ok::<(), sandbox_core::ApplyError>(())
/// ```
pub fn apply_changes(upper: &Path, tree: &Path) -> Result<AppliedChanges, ApplyError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ApplyError::Read { path, source }
    };
    let upper_root = Root::open(upper).map_err(read(upper))?;
    let tree_root = Root::open(tree).map_err(read(tree))?;
    let mut applied = AppliedChanges::default();
    each_entry(&plan(&upper_root)?, |entry| {
        apply_one(&upper_root, &tree_root, entry, &mut applied)
    })?;
    Ok(applied)
}

/// Writes the changes an overlay's upper holds as an OCI image layer (an
/// uncompressed tar) to `out`: directories, files and symlinks as they
/// are, a deletion as an empty `.wh.NAME`, an opaque directory followed by
/// `.wh..wh..opq`. Entries are owned by 0:0 (the layer's root, as image
/// layers are), set-id bits dropped. `sandbox_image` (and any OCI tool)
/// applies it onto the lower.
///
/// The upper is checked as by [`apply_changes`] before the first byte is
/// written.
///
/// # Errors
///
/// [`ApplyError::Refused`] and [`ApplyError::Read`] with nothing
/// written; [`ApplyError::Partial`] when reading or writing fails midway
/// (the archive is then incomplete).
///
/// # Examples
///
/// ```no_run
/// let tar = std::fs::File::create("changes.tar")?;
/// let exported = sandbox_core::export_changes("/var/lib/jobs/42/diff".as_ref(), tar)?;
/// println!("{} entries, {} whiteouts", exported.entries, exported.whiteouts);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn export_changes(upper: &Path, out: impl Write) -> Result<ExportedChanges, ApplyError> {
    let upper_root = Root::open(upper).map_err(|source| ApplyError::Read {
        path: upper.to_path_buf(),
        source,
    })?;
    let plan = plan(&upper_root)?;
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut exported = ExportedChanges::default();
    each_entry(&plan, |entry| {
        export_one(&upper_root, &mut builder, entry, &mut exported)
    })?;
    builder.finish().map_err(|source| ApplyError::Partial {
        path: PathBuf::new(),
        applied: plan.len(),
        total: plan.len(),
        source,
    })?;
    Ok(exported)
}

/// Runs `write` on each entry of `plan` in order; the first failure says
/// how far it got.
fn each_entry(
    plan: &[Entry],
    mut write: impl FnMut(&Entry) -> io::Result<()>,
) -> Result<(), ApplyError> {
    for (done, entry) in plan.iter().enumerate() {
        write(entry).map_err(|source| ApplyError::Partial {
            path: entry.path.clone(),
            applied: done,
            total: plan.len(),
            source,
        })?;
    }
    Ok(())
}

/// Every entry of the upper, parents before children, each checked.
fn plan(upper: &Root) -> Result<Vec<Entry>, ApplyError> {
    let mut plan = Vec::new();
    walk(upper, Path::new(""), &mut plan)?;
    Ok(plan)
}

fn walk(upper: &Root, dir: &Path, plan: &mut Vec<Entry>) -> Result<(), ApplyError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ApplyError::Read { path, source }
    };
    let shown = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut names = Vec::new();
    for entry in upper.read_dir(shown).map_err(read(shown))? {
        let entry = entry.map_err(read(shown))?;
        names.push(dir.join(entry.file_name()));
    }
    // The same order every time, whatever the directory's.
    names.sort();
    for path in names {
        if plan.len() >= MAX_APPLY_ENTRIES {
            return Err(ApplyError::Refused {
                path,
                refusal: ApplyRefusal::TooManyEntries,
            });
        }
        let meta = upper.symlink_metadata(&path).map_err(read(&path))?;
        let refuse = |refusal| ApplyError::Refused {
            path: path.clone(),
            refusal,
        };
        let xattrs = overlay_xattrs(upper, &path, meta.file_type());
        if xattrs.redirected {
            return Err(refuse(ApplyRefusal::Redirected));
        }
        let item = match meta.file_type() {
            FileType::CharDevice if meta.rdev() == 0 => Item::Whiteout,
            FileType::Dir => Item::Dir {
                mode: meta.mode() & 0o7777,
                opaque: xattrs.opaque,
            },
            FileType::File => Item::File {
                mode: meta.mode() & 0o7777,
                mtime: meta.modified(),
            },
            FileType::Symlink => Item::Symlink {
                target: upper.read_link(&path).map_err(read(&path))?,
            },
            _ => return Err(refuse(ApplyRefusal::SpecialFile)),
        };
        let is_dir = matches!(item, Item::Dir { .. });
        plan.push(Entry {
            path: path.clone(),
            item,
        });
        if is_dir {
            walk(upper, &path, plan)?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct OverlayXattrs {
    opaque: bool,
    redirected: bool,
}

/// The overlayfs attributes of an upper entry (`user.overlay.*`, or
/// `trusted.overlay.*` of an upper a privileged mount made).
fn overlay_xattrs(upper: &Root, path: &Path, file_type: FileType) -> OverlayXattrs {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = match file_type {
        FileType::Dir => upper.open_dir(path).map(Root::into_fd),
        FileType::File => upper
            .open_file(path, OpenOptions::new().read(true))
            .map(std::os::fd::OwnedFd::from),
        _ => return OverlayXattrs::default(),
    };
    let Ok(fd) = fd else {
        return OverlayXattrs::default();
    };
    // A directory's fd is O_PATH, which the xattr calls refuse: its /proc
    // path reaches the same inode.
    let proc_path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let mut names = vec![0u8; 4096];
    let Ok(len) = rustix::fs::listxattr(proc_path.as_str(), &mut names) else {
        return OverlayXattrs::default();
    };
    let mut found = OverlayXattrs::default();
    for name in names.get(..len).unwrap_or_default().split(|&b| b == 0) {
        let short = name
            .strip_prefix(b"user.overlay.")
            .or_else(|| name.strip_prefix(b"trusted.overlay."));
        match short {
            Some(b"opaque") => {
                let mut value = [0u8; 4];
                use std::os::unix::ffi::OsStrExt;
                found.opaque |= rustix::fs::getxattr(
                    proc_path.as_str(),
                    std::ffi::OsStr::from_bytes(name),
                    &mut value,
                )
                .is_ok_and(|n| value.get(..n) == Some(b"y"));
            }
            Some(b"redirect" | b"metacopy") => found.redirected = true,
            _ => {}
        }
    }
    found
}

/// The name an entry is written under, beside its path, before it is
/// renamed over it (short: the entry's own name may be 255 bytes).
fn staging_name(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".sbx-apply-{}-{n}", std::process::id()))
}

fn apply_one(
    upper: &Root,
    tree: &Root,
    entry: &Entry,
    applied: &mut AppliedChanges,
) -> io::Result<()> {
    let path = &entry.path;
    let existing = match tree.symlink_metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let remove_all = RemoveOptions::new().recursive(true).force(true);
    match &entry.item {
        Item::Whiteout => {
            if existing.is_some() {
                tree.remove(path, remove_all)?;
                applied.deleted += 1;
            }
        }
        Item::Dir { mode, opaque } => {
            let kept = existing.as_ref().filter(|m| m.is_dir());
            match kept {
                Some(meta) => {
                    if *opaque {
                        for child in tree.read_dir(path)? {
                            tree.remove(path.join(child?.file_name()), remove_all)?;
                        }
                        applied.replaced += 1;
                    } else if meta.mode() & 0o7777 != mode & 0o1777 {
                        applied.modified += 1;
                    }
                }
                None => {
                    if existing.is_some() {
                        tree.remove(path, remove_all)?;
                        applied.modified += 1;
                    } else {
                        applied.added += 1;
                    }
                    tree.create_dir(path, 0o700)?;
                }
            }
            applied.setid_dropped += u64::from(mode & 0o6000 != 0);
            tree.set_permissions(path, mode & 0o1777)?;
        }
        Item::File { mode, mtime } => {
            let staged = staging_name(path);
            let written = (|| {
                let mut from = upper.open_file(path, OpenOptions::new().read(true))?;
                let mut to = tree.open_file(
                    &staged,
                    OpenOptions::new().write(true).create_new(true).mode(0o600),
                )?;
                let bytes = io::copy(&mut from, &mut to)?;
                to.set_modified(*mtime)?;
                use std::os::unix::fs::PermissionsExt;
                to.set_permissions(std::fs::Permissions::from_mode(mode & 0o1777))?;
                Ok::<_, io::Error>(bytes)
            })();
            applied.bytes += replace(tree, &staged, path, existing.as_ref(), written)?;
            applied.setid_dropped += u64::from(mode & 0o6000 != 0);
            count(applied, existing.is_some());
        }
        Item::Symlink { target } => {
            let staged = staging_name(path);
            let written = tree.symlink(target, &staged).map_err(io::Error::from);
            replace(tree, &staged, path, existing.as_ref(), written)?;
            count(applied, existing.is_some());
        }
    }
    Ok(())
}

fn count(applied: &mut AppliedChanges, existed: bool) {
    if existed {
        applied.modified += 1;
    } else {
        applied.added += 1;
    }
}

/// Renames what was staged at `staged` (if `written` succeeded) over
/// `path`, a directory there removed first; removes the staged entry if
/// anything failed.
fn replace<T>(
    tree: &Root,
    staged: &Path,
    path: &Path,
    existing: Option<&openat2_root::Metadata>,
    written: io::Result<T>,
) -> io::Result<T> {
    let result = written.and_then(|value| {
        if existing.is_some_and(openat2_root::Metadata::is_dir) {
            tree.remove(path, RemoveOptions::new().recursive(true).force(true))?;
        }
        tree.rename(staged, path)?;
        Ok(value)
    });
    if result.is_err() {
        let _ = tree.remove_file(staged);
    }
    result
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn export_one<W: Write>(
    upper: &Root,
    builder: &mut tar::Builder<W>,
    entry: &Entry,
    exported: &mut ExportedChanges,
) -> io::Result<()> {
    let path = &entry.path;
    match &entry.item {
        Item::Whiteout => {
            let mut name = std::ffi::OsString::from(".wh.");
            name.push(path.file_name().unwrap_or_default());
            let mut h = header(tar::EntryType::Regular, 0o644, 0);
            builder.append_data(&mut h, path.with_file_name(name), io::empty())?;
            exported.whiteouts += 1;
        }
        Item::Dir { mode, opaque } => {
            let mut h = header(tar::EntryType::Directory, mode & 0o1777, 0);
            builder.append_data(&mut h, path, io::empty())?;
            exported.entries += 1;
            exported.setid_dropped += u64::from(mode & 0o6000 != 0);
            if *opaque {
                let mut h = header(tar::EntryType::Regular, 0o644, 0);
                builder.append_data(&mut h, path.join(".wh..wh..opq"), io::empty())?;
                exported.whiteouts += 1;
            }
        }
        Item::File { mode, mtime } => {
            let file = upper.open_file(path, OpenOptions::new().read(true))?;
            let len = file.metadata()?.len();
            let mut h = header(tar::EntryType::Regular, mode & 0o1777, len);
            let secs = mtime
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            h.set_mtime(secs);
            // Exactly `len` bytes, whatever the file does meanwhile: a
            // shorter read would misalign every entry after it.
            let mut body = file.take(len).chain(io::repeat(0)).take(len);
            builder.append_data(&mut h, path, &mut body)?;
            exported.entries += 1;
            exported.bytes += len;
            exported.setid_dropped += u64::from(mode & 0o6000 != 0);
        }
        Item::Symlink { target } => {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            builder.append_link(&mut h, path, target)?;
            exported.entries += 1;
        }
    }
    Ok(())
}
