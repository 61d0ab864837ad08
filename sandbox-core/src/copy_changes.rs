//! What a run changed in an overlay's copy (`fallback = "copy"`): the copy
//! compared with the lowers it was made from, both read through
//! `openat2-root` (no symlink in either followed).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use openat2_root::{ErrorKind, FileType, Metadata, OpenOptions, Root};

use crate::changes::{ChangeKind, OverlayChanges, in_lower, push};

/// The changes the copy in `copy` holds over `lowers` (the first on top):
/// entries it has that no lower has (added), that differ from the lower's
/// (modified: type, mode less set-id bits, content, symlink target), and
/// the lowers' entries it lacks (deleted; a directory once).
pub(crate) fn changes_in_copy(
    copy: &Root,
    label: &Path,
    lowers: &[PathBuf],
) -> io::Result<OverlayChanges> {
    let (lower_roots, mut out) = crate::changes::start(label, lowers)?;
    walk_copy(copy, &lower_roots, Path::new(""), &mut out)?;
    walk_lowers(copy, &lower_roots, Path::new(""), &mut out)?;
    out.changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn shown(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

fn walk_copy(copy: &Root, lowers: &[Root], dir: &Path, out: &mut OverlayChanges) -> io::Result<()> {
    for entry in copy.read_dir(shown(dir))? {
        if out.truncated {
            return Ok(());
        }
        let entry = entry?;
        let path = dir.join(entry.file_name());
        let meta = entry.metadata()?;
        let size = if meta.is_dir() { 0 } else { meta.len() };
        match in_lower(lowers, &path) {
            None => push(out, path.clone(), ChangeKind::Added, size),
            Some((lower, lower_meta)) => {
                if differs(copy, lower, &path, &meta, &lower_meta)? {
                    push(out, path.clone(), ChangeKind::Modified, size);
                }
            }
        }
        if meta.is_dir() {
            walk_copy(copy, lowers, &path, out)?;
        }
    }
    Ok(())
}

/// Whether the copy's entry differs from the lower's.
fn differs(
    copy: &Root,
    lower: &Root,
    path: &Path,
    mine: &Metadata,
    theirs: &Metadata,
) -> io::Result<bool> {
    if mine.file_type() != theirs.file_type() {
        return Ok(true);
    }
    match mine.file_type() {
        FileType::Symlink => Ok(copy.read_link(path)? != lower.read_link(path)?),
        FileType::Dir => Ok(mine.mode() & 0o7777 != theirs.mode() & 0o1777),
        _ => {
            if mine.mode() & 0o7777 != theirs.mode() & 0o1777 || mine.len() != theirs.len() {
                return Ok(true);
            }
            let read = *OpenOptions::new().read(true);
            let (mut a, mut b) = (copy.open_file(path, &read)?, lower.open_file(path, &read)?);
            let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
            loop {
                let n = read_full(&mut a, &mut x)?;
                let m = read_full(&mut b, &mut y)?;
                if n != m || x.get(..n) != y.get(..m) {
                    return Ok(true);
                }
                if n == 0 {
                    return Ok(false);
                }
            }
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn walk_lowers(
    copy: &Root,
    lowers: &[Root],
    dir: &Path,
    out: &mut OverlayChanges,
) -> io::Result<()> {
    // The names of the merged directory: every lower's that has it as one.
    let mut names = std::collections::BTreeSet::new();
    for lower in lowers {
        match lower.read_dir(shown(dir)) {
            Ok(listing) => {
                for entry in listing {
                    names.insert(entry?.file_name().to_os_string());
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Os(libc::ENOTDIR)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for name in names {
        if out.truncated {
            return Ok(());
        }
        let path = dir.join(name);
        let Some((_, lower_meta)) = in_lower(lowers, &path) else {
            continue;
        };
        match copy.symlink_metadata(&path) {
            Ok(meta) => {
                if meta.is_dir() && lower_meta.is_dir() {
                    walk_lowers(copy, lowers, &path, out)?;
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let size = if lower_meta.is_dir() {
                    0
                } else {
                    lower_meta.len()
                };
                push(out, path, ChangeKind::Deleted, size);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
