//! Validation and splitting of the relative paths a [`Root`](crate::Root) accepts.
//!
//! Everything here works on byte slices borrowed from the caller's path: no
//! allocation, no syscall. The kernel does the actual resolution (see
//! `resolve.rs`); this module only refuses what must never reach it.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why a path was refused before any syscall was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidPathReason {
    /// The path is empty. Use `"."` to name the root itself.
    Empty,
    /// The path starts with `/`. Paths are always relative to the root.
    Absolute,
    /// The path has a `..` component.
    ParentComponent,
    /// The path contains a NUL byte.
    Nul,
    /// The operation needs a named entry (`a/b`), but the path names the
    /// root itself or ends in `.`.
    NoEntryName,
}

impl std::fmt::Display for InvalidPathReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "the path is empty (use \".\" for the root itself)",
            Self::Absolute => "absolute paths are refused; paths are relative to the root",
            Self::ParentComponent => "`..` components are refused",
            Self::Nul => "the path contains a NUL byte",
            Self::NoEntryName => {
                "the operation needs a named entry, but the path names the root or ends in `.`"
            }
        })
    }
}

/// A path that passed validation: relative, no `..`, no NUL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelPath<'a> {
    bytes: &'a [u8],
}

/// A [`RelPath`] cut into the directory that holds its last component and
/// that component.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split<'a> {
    /// The parent directory, relative to the root. Empty when the parent is
    /// the root itself (so no resolution is needed).
    pub(crate) parent: &'a [u8],
    /// The last component, without trailing slashes. May be `.`.
    pub(crate) leaf: &'a [u8],
    /// The last component with its trailing slashes, for the syscalls that
    /// look up the parent and treat the last component themselves (`mkdirat`,
    /// `unlinkat`, `renameat2`, the new name of `symlinkat` and `linkat`):
    /// they never follow it, and the kernel applies the "must be a
    /// directory" rule exactly as it does for absolute paths.
    pub(crate) leaf_with_slash: &'a [u8],
    /// Whether the path ended in `/`: the entry must be a directory.
    pub(crate) must_be_dir: bool,
}

impl<'a> RelPath<'a> {
    /// Validates `path`.
    pub(crate) fn new(path: &'a Path) -> Result<Self, InvalidPathReason> {
        Self::from_bytes(path.as_os_str().as_bytes())
    }

    /// Validates `bytes` as a relative path.
    pub(crate) fn from_bytes(bytes: &'a [u8]) -> Result<Self, InvalidPathReason> {
        if bytes.is_empty() {
            return Err(InvalidPathReason::Empty);
        }
        if bytes[0] == b'/' {
            return Err(InvalidPathReason::Absolute);
        }
        if bytes.contains(&0) {
            return Err(InvalidPathReason::Nul);
        }
        if bytes.split(|&b| b == b'/').any(|c| c == b"..") {
            return Err(InvalidPathReason::ParentComponent);
        }
        Ok(Self { bytes })
    }

    /// The validated bytes, as given.
    pub(crate) fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether the path names the root itself (`.`, `./`, `././`).
    pub(crate) fn is_root(&self) -> bool {
        self.components().next().is_none()
    }

    /// The components, with empty and `.` components skipped.
    pub(crate) fn components(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.bytes
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
    }

    /// The components (as [`RelPath::components`]), each with the path up
    /// to and including it: `a/./b` gives `(a, a)`, `(b, a/./b)`.
    pub(crate) fn components_with_prefixes(
        &self,
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let bytes = self.bytes;
        let mut start = 0;
        std::iter::from_fn(move || {
            while start < bytes.len() {
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b == b'/')
                    .map_or(bytes.len(), |i| start + i);
                let name = &bytes[start..end];
                start = end + 1;
                if !name.is_empty() && name != b"." {
                    return Some((name, &bytes[..end]));
                }
            }
            None
        })
    }

    /// Cuts the path into parent and last component.
    pub(crate) fn split(&self) -> Split<'a> {
        let with_slash_end = self.bytes.len();
        let trimmed = trim_trailing_slashes(self.bytes);
        let must_be_dir = trimmed.len() != with_slash_end;
        let (parent, leaf_start) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (trim_trailing_slashes(&trimmed[..i]), i + 1),
            None => (&trimmed[..0], 0),
        };
        // A parent whose every component is `.` (or empty: `./`, `.//.`)
        // is the root itself. `...` and `....` are ordinary names.
        let parent = if parent
            .split(|&b| b == b'/')
            .all(|c| c.is_empty() || c == b".")
        {
            &parent[..0]
        } else {
            parent
        };
        Split {
            parent,
            leaf: &trimmed[leaf_start..],
            leaf_with_slash: &self.bytes[leaf_start..],
            must_be_dir,
        }
    }
}

impl<'a> Split<'a> {
    /// Whether the last component names an entry (is not `.`).
    pub(crate) fn has_entry_name(&self) -> bool {
        self.leaf != b"."
    }
}

/// `bytes` without its trailing slashes (but a lone `/` stays).
pub(crate) fn trim_trailing_slashes(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b'/'] = bytes {
        if rest.is_empty() {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// Validates a path the way every [`Root`](crate::Root) method does, without
/// touching the filesystem.
///
/// Useful to reject bad input early, and the entry point of the `path_parse`
/// fuzz target.
///
/// # Errors
///
/// The reason the path would be refused.
///
/// # Examples
///
/// ```
/// use openat2_root::{check_path, InvalidPathReason};
///
/// assert!(check_path("a/b/c.txt").is_ok());
/// assert_eq!(check_path("/etc/passwd"), Err(InvalidPathReason::Absolute));
/// assert_eq!(check_path("a/../../b"), Err(InvalidPathReason::ParentComponent));
/// ```
pub fn check_path(path: impl AsRef<Path>) -> Result<(), InvalidPathReason> {
    RelPath::new(path.as_ref()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(p: &str) -> (String, String, String, bool) {
        let s = RelPath::from_bytes(p.as_bytes()).unwrap().split();
        let st = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        (
            st(s.parent),
            st(s.leaf),
            st(s.leaf_with_slash),
            s.must_be_dir,
        )
    }

    #[test]
    fn refuses_before_any_syscall() {
        use InvalidPathReason::*;
        assert_eq!(RelPath::from_bytes(b"").unwrap_err(), Empty);
        assert_eq!(RelPath::from_bytes(b"/a").unwrap_err(), Absolute);
        assert_eq!(RelPath::from_bytes(b"//a").unwrap_err(), Absolute);
        assert_eq!(RelPath::from_bytes(b"..").unwrap_err(), ParentComponent);
        assert_eq!(RelPath::from_bytes(b"a/..").unwrap_err(), ParentComponent);
        assert_eq!(RelPath::from_bytes(b"a/../b").unwrap_err(), ParentComponent);
        assert_eq!(RelPath::from_bytes(b"a/../").unwrap_err(), ParentComponent);
        assert_eq!(RelPath::from_bytes(b"a\0b").unwrap_err(), Nul);
        // Names that merely contain dots are fine.
        for ok in ["...", "..a", "a..", ".hidden", "a/.b/..c", "./a", "."] {
            assert!(RelPath::from_bytes(ok.as_bytes()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn splits_parent_and_leaf() {
        let s = |p, a: &str, b: &str, c: &str, d| {
            assert_eq!(split(p), (a.into(), b.into(), c.into(), d), "{p}")
        };
        s("a", "", "a", "a", false);
        s("a/", "", "a", "a/", true);
        s("a//", "", "a", "a//", true);
        s("a/b", "a", "b", "b", false);
        s("a//b", "a", "b", "b", false);
        s("a/b/c/", "a/b", "c", "c/", true);
        s("./a", "", "a", "a", false);
        s("././a", "", "a", "a", false);
        s("./x/a", "./x", "a", "a", false);
        s(".", "", ".", ".", false);
        s("a/.", "a", ".", ".", false);
        s("./", "", ".", "./", true);
        s(".//./a", "", "a", "a", false);
        // Names made only of dots are names, not the root.
        s(".../x", "...", "x", "x", false);
        s("..../x", "....", "x", "x", false);
        s("./.../x", "./...", "x", "x", false);
        s(".../.../x/", ".../...", "x", "x/", true);
    }

    #[test]
    fn components_carry_their_prefixes() {
        let rel = RelPath::from_bytes(b"./a//b/./c/").unwrap();
        let got: Vec<(&[u8], &[u8])> = rel.components_with_prefixes().collect();
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"a", b"./a"), (b"b", b"./a//b"), (b"c", b"./a//b/./c")];
        assert_eq!(got, want);
        assert_eq!(rel.components().collect::<Vec<_>>(), [b"a", b"b", b"c"]);
    }

    #[test]
    fn root_detection() {
        for p in [".", "./", "./.", ".//./"] {
            assert!(RelPath::from_bytes(p.as_bytes()).unwrap().is_root(), "{p}");
        }
        assert!(!RelPath::from_bytes(b"./a").unwrap().is_root());
    }
}
