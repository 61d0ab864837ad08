//! A canary: a directory outside the root under attack, planted with files,
//! directories and symlinks whose names the attacks aim at, and a snapshot
//! of its listing, contents, modes and mtimes to prove it untouched.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a snapshot records of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryState {
    /// `d`, `f`, `l` or `?`.
    pub kind: char,
    /// Permission bits.
    pub mode: u32,
    /// Owner and group.
    pub owner: (u32, u32),
    /// Size in bytes.
    pub len: u64,
    /// Modification time, seconds and nanoseconds (`None` when not compared).
    pub mtime: Option<(i64, i64)>,
    /// Contents of a regular file.
    pub contents: Option<Vec<u8>>,
    /// Target of a symlink.
    pub link: Option<PathBuf>,
}

/// Every entry below a directory, by relative path. Nothing is followed.
pub type Snapshot = BTreeMap<PathBuf, EntryState>;

/// Takes a snapshot of `dir` (the directory itself included, as `.`).
pub fn snapshot(dir: &Path, with_mtimes: bool) -> Snapshot {
    let mut out = BTreeMap::new();
    walk(dir, Path::new("."), with_mtimes, &mut out);
    out
}

fn walk(base: &Path, rel: &Path, with_mtimes: bool, out: &mut Snapshot) {
    let abs = base.join(rel);
    let Ok(meta) = fs::symlink_metadata(&abs) else {
        return;
    };
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else if ft.is_symlink() {
        'l'
    } else {
        '?'
    };
    out.insert(
        rel.to_path_buf(),
        EntryState {
            kind,
            mode: meta.permissions().mode() & 0o7777,
            owner: (meta.uid(), meta.gid()),
            len: if kind == 'd' { 0 } else { meta.len() },
            mtime: with_mtimes.then(|| (meta.mtime(), meta.mtime_nsec())),
            contents: (kind == 'f').then(|| fs::read(&abs).unwrap_or_default()),
            link: (kind == 'l').then(|| fs::read_link(&abs).unwrap_or_default()),
        },
    );
    if kind == 'd' {
        let mut names: Vec<_> = fs::read_dir(&abs)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default();
        names.sort();
        for name in names {
            walk(base, &rel.join(name), with_mtimes, out);
        }
    }
}

/// The differences between two snapshots, one line each.
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (path, state) in before {
        match after.get(path) {
            None => out.push(format!("removed: {}", path.display())),
            Some(now) if now != state => {
                out.push(format!("changed: {}: {state:?} -> {now:?}", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("added: {}", path.display()));
    }
    out
}

/// A planted canary directory and its snapshot.
pub struct Canary {
    dir: PathBuf,
    before: Snapshot,
}

/// The names the canary holds; attacks aim at the same names inside roots,
/// so an operation that escaped would change one of these.
pub const CANARY_NAMES: &[&str] = &["file", "dir", "dir/file", "link", "victim", "tree/a/b"];

impl Canary {
    /// Plants the canary in `dir` (created if missing) and takes its
    /// snapshot.
    pub fn plant(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("dir")).unwrap();
        fs::create_dir_all(dir.join("tree/a/b")).unwrap();
        fs::write(dir.join("file"), b"canary file\n").unwrap();
        fs::write(dir.join("dir/file"), b"canary dir/file\n").unwrap();
        fs::write(dir.join("victim"), b"canary victim\n").unwrap();
        fs::write(dir.join("tree/a/b/leaf"), b"leaf\n").unwrap();
        std::os::unix::fs::symlink("file", dir.join("link")).unwrap();
        fs::set_permissions(dir.join("file"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(dir.join("dir"), fs::Permissions::from_mode(0o751)).unwrap();
        let before = snapshot(dir, true);
        Self {
            dir: dir.to_path_buf(),
            before,
        }
    }

    /// The canary's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// What changed since it was planted (empty when untouched).
    pub fn changes(&self) -> Vec<String> {
        diff(&self.before, &snapshot(&self.dir, true))
    }

    /// Panics with the list of changes if anything changed.
    pub fn assert_untouched(&self, context: &str) {
        let changes = self.changes();
        assert!(
            changes.is_empty(),
            "{context}: the canary outside the root changed:\n{}",
            changes.join("\n")
        );
    }
}
