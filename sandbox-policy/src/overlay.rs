//! `filesystem.overlay`: copy-on-write views of host trees.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::ByteSize;

/// A copy-on-write view (overlayfs in the sandbox's user namespace).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The host tree the sandbox sees (absolute), or several, the first
    /// on top. Never written.
    pub lower: Lowers,
    /// Where the sandbox sees it (absolute).
    pub target: PathBuf,
    /// Where writes go: `"tmpfs"` (the default: discarded after the run),
    /// or a host directory (absolute) that keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<Upper>,
    /// The tmpfs upper's size limit (default: the kernel's, half of
    /// memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
    /// What to do where overlayfs cannot serve a tmpfs upper (a kernel
    /// whose tmpfs does not store `user.*` attributes, before 6.6): by
    /// default the overlay is a downgrade; `"copy"` copies the lowers into
    /// the tmpfs instead (for small trees: the copy takes time and memory
    /// in proportion, bounded by `size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<OverlayFallback>,
}

/// `filesystem.overlay[].fallback`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OverlayFallback {
    /// A copy of the lowers in the tmpfs: the same view and change list,
    /// the copy's files belonging to the sandbox's user.
    Copy,
}

/// One lower tree, or several.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(untagged)]
pub enum Lowers {
    /// One tree.
    One(PathBuf),
    /// Several, the first on top.
    Many(Vec<PathBuf>),
}

impl Lowers {
    /// The trees, the first on top.
    pub fn paths(&self) -> &[PathBuf] {
        match self {
            Self::One(p) => std::slice::from_ref(p),
            Self::Many(v) => v,
        }
    }

    /// The trees as text, joined by `separator`.
    pub fn joined(&self, separator: &str) -> String {
        self.paths()
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(separator)
    }
}

/// An overlay's upper.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(untagged)]
pub enum Upper {
    /// `"tmpfs"`: writes are discarded after the run.
    Tmpfs(TmpfsUpper),
    /// A host directory (absolute) that keeps the writes.
    Dir(PathBuf),
}

/// The word `"tmpfs"`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TmpfsUpper {
    /// `"tmpfs"`.
    Tmpfs,
}

impl Overlay {
    /// Whether the lowers are copied where overlayfs cannot serve.
    pub fn copies(&self) -> bool {
        self.fallback == Some(OverlayFallback::Copy)
    }

    /// The host directory that keeps the writes, if any (else a tmpfs).
    pub fn upper_dir(&self) -> Option<&std::path::Path> {
        match &self.upper {
            Some(Upper::Dir(p)) => Some(p),
            _ => None,
        }
    }
}

/// `filesystem.root_overlay`: with `mode = "rootfs"`, the root made
/// writable copy-on-write: the sandbox sees `filesystem.root` as `/` and
/// may write anywhere in it; its writes go to the upper, never to the
/// root's tree.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RootOverlay {
    /// Where writes go: `"tmpfs"` (the default: discarded after the run),
    /// or a host directory (absolute) that keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<Upper>,
    /// The tmpfs upper's size limit (default: the kernel's, half of
    /// memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
}

impl RootOverlay {
    /// The overlay it is: `root` (the policy's `filesystem.root`) at `/`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_policy::RootOverlay;
    ///
    /// let o = RootOverlay::default().over("/srv/images/python/rootfs".as_ref());
    /// assert_eq!(o.target, std::path::Path::new("/"));
    /// assert!(o.upper_dir().is_none()); // a tmpfs upper
    /// ```
    pub fn over(&self, root: &std::path::Path) -> Overlay {
        Overlay {
            lower: Lowers::One(root.to_path_buf()),
            target: PathBuf::from("/"),
            upper: self.upper.clone(),
            size: self.size,
            fallback: None,
        }
    }
}
