//! One layer (a tar stream) applied onto a tree, through `openat2-root`
//! only: every name is checked before anything is written, and every
//! path is resolved beneath the tree with no symlink followed, so no entry
//! can write outside it, whatever the entries before it made.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use openat2_root::{ErrorKind, OpenOptions, RemoveOptions, Root};

use crate::error::{EntryRefusal, ImageError};

/// The longest name a path may have (`PATH_MAX` less its NUL).
const MAX_NAME: usize = 4095;

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";

/// How entries are written.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Apply {
    /// Give files the owner the archive names (needs `CAP_CHOWN`); else
    /// they belong to the caller.
    pub(crate) owners: bool,
}

/// What applying a layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries written (files, directories, links).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Whiteouts applied (entries of lower layers removed).
    pub whiteouts: u64,
    /// Set-user-ID and set-group-ID bits dropped.
    pub setid_dropped: u64,
}

/// A checked entry name: relative, normal components only.
fn checked(raw: &[u8]) -> Result<PathBuf, EntryRefusal> {
    use std::os::unix::ffi::OsStrExt;
    if raw.contains(&0) {
        return Err(EntryRefusal::NulInName);
    }
    if raw.len() > MAX_NAME {
        return Err(EntryRefusal::NameTooLong);
    }
    if raw.first() == Some(&b'/') {
        return Err(EntryRefusal::AbsoluteName);
    }
    let mut path = PathBuf::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(EntryRefusal::ParentComponent),
            name => path.push(std::ffi::OsStr::from_bytes(name)),
        }
    }
    Ok(path)
}

/// Applies the layer read from `archive` onto `root`; `layer` names it in
/// errors.
pub(crate) fn apply(
    root: &Root,
    archive: &mut dyn Read,
    layer: &str,
    how: Apply,
) -> Result<LayerStats, ImageError> {
    let mut stats = LayerStats::default();
    // What this layer made: an opaque whiteout keeps those.
    let mut made: HashSet<PathBuf> = HashSet::new();
    let mut archive = tar::Archive::new(archive);
    let entries = archive.entries().map_err(|e| ImageError::Io {
        what: format!("layer {layer}"),
        source: e,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::Io {
            what: format!("layer {layer}"),
            source: e,
        })?;
        let raw = entry.path_bytes().into_owned();
        let refuse = |refusal: EntryRefusal| ImageError::Entry {
            layer: layer.to_string(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
            refusal,
        };
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        }
        let path = checked(&raw).map_err(refuse)?;
        let on_root = |what: &str, path: &Path| {
            let what = format!("{what} {}", path.display());
            move |source: openat2_root::Error| match source.kind() {
                ErrorKind::Escape => refuse(EntryRefusal::ThroughSymlink),
                _ => ImageError::Root { what, source },
            }
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        // Whiteouts: remove what a lower layer had.
        if let Some(name) = name.as_deref().filter(|n| n.starts_with(WHITEOUT)) {
            if name == OPAQUE {
                stats.whiteouts +=
                    clear_dir(root, &parent, &made).map_err(on_root("clear", &parent))?;
            } else {
                let target = &name[WHITEOUT.len()..];
                if target.is_empty() || target == "." || target == ".." {
                    return Err(refuse(EntryRefusal::WhiteoutOfDirectory));
                }
                let target = parent.join(target);
                root.remove(&target, RemoveOptions::new().recursive(true).force(true))
                    .map_err(on_root("remove", &target))?;
                stats.whiteouts += 1;
            }
            continue;
        }
        if path.as_os_str().is_empty() {
            // The layer's root itself ("./"): nothing to make.
            continue;
        }
        if !parent.as_os_str().is_empty() {
            root.create_dir_all(&parent, 0o755)
                .map_err(on_root("create", &parent))?;
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let owner = (
            header.uid().ok().and_then(|u| u32::try_from(u).ok()),
            header.gid().ok().and_then(|g| u32::try_from(g).ok()),
        );
        let existing = root.symlink_metadata(&path).ok();
        let is_dir = kind == tar::EntryType::Directory;
        // A later entry replaces an earlier one (but a directory stays a
        // directory, keeping what is in it).
        if let Some(meta) = &existing
            && !(is_dir && meta.is_dir())
        {
            root.remove(&path, RemoveOptions::new().recursive(true).force(true))
                .map_err(on_root("replace", &path))?;
        }
        match kind {
            tar::EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    root.create_dir(&path, 0o755)
                        .map_err(on_root("create", &path))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file = root
                    .open_file(
                        &path,
                        OpenOptions::new().write(true).create_new(true).mode(0o600),
                    )
                    .map_err(on_root("create", &path))?;
                stats.bytes +=
                    std::io::copy(&mut entry, &mut file).map_err(|e| ImageError::Io {
                        what: format!("write {}", path.display()),
                        source: e,
                    })?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.contains(&0) {
                    return Err(refuse(EntryRefusal::NulInName));
                }
                if target.len() > MAX_NAME {
                    return Err(refuse(EntryRefusal::NameTooLong));
                }
                // A symlink may point anywhere: it is never followed here,
                // and in the sandbox it resolves inside its root.
                use std::os::unix::ffi::OsStrExt;
                root.symlink(std::ffi::OsStr::from_bytes(&target), &path)
                    .map_err(on_root("symlink", &path))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target = checked(&target).map_err(refuse)?;
                match root.hard_link(&target, &path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        return Err(refuse(EntryRefusal::LinkTargetMissing));
                    }
                    Err(e) => return Err(on_root("link", &path)(e)),
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(refuse(EntryRefusal::DeviceNode));
            }
            other => return Err(refuse(EntryRefusal::UnsupportedType(other.as_byte()))),
        }
        stats.entries += 1;
        made.insert(path.clone());
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            continue;
        }
        // No set-user-ID or set-group-ID file on the host's disk.
        if mode & 0o6000 != 0 {
            stats.setid_dropped += 1;
        }
        root.set_permissions(&path, mode & 0o1777)
            .map_err(on_root("chmod", &path))?;
        if how.owners {
            root.chown(&path, owner.0, owner.1)
                .map_err(on_root("chown", &path))?;
        }
    }
    Ok(stats)
}

/// An opaque whiteout: removes everything in `dir` this layer did not
/// make. Returns how many entries went.
fn clear_dir(root: &Root, dir: &Path, made: &HashSet<PathBuf>) -> Result<u64, openat2_root::Error> {
    let entries = match root.read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    let mut doomed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = dir.join(entry.file_name());
        if !made.contains(&path) {
            doomed.push(path);
        }
    }
    for path in doomed {
        root.remove(&path, RemoveOptions::new().recursive(true).force(true))?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(checked(b"./usr/bin/sh"), Ok(PathBuf::from("usr/bin/sh")));
        assert_eq!(checked(b"usr//lib/"), Ok(PathBuf::from("usr/lib")));
        assert_eq!(checked(b"./"), Ok(PathBuf::new()));
        assert_eq!(checked(b"/etc/passwd"), Err(EntryRefusal::AbsoluteName));
        assert_eq!(checked(b"a/../../x"), Err(EntryRefusal::ParentComponent));
        assert_eq!(checked(b"a\0b"), Err(EntryRefusal::NulInName));
        assert_eq!(checked(&[b'a'; 4096]), Err(EntryRefusal::NameTooLong));
    }
}
