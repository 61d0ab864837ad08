//! What can go wrong reading an image layout or unpacking a layer.

use std::path::PathBuf;

/// Why a layer entry was refused: each is a way a hostile layer tries to
/// write outside the destination, or to plant what a root filesystem
/// must not hold. Nothing of a refused entry is written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryRefusal {
    /// An absolute name (`/etc/passwd`), or an absolute hard link target.
    AbsoluteName,
    /// A `..` component.
    ParentComponent,
    /// A NUL byte in the name or link target.
    NulInName,
    /// A name or link target longer than `PATH_MAX` (4095 bytes).
    NameTooLong,
    /// The name leads through a symlink (one an earlier entry made, or a
    /// lower layer's): it would be written wherever the link points.
    ThroughSymlink,
    /// A character or block device: an image's root never needs one
    /// (the sandbox gets its own `/dev`), and one on the host's disk is a
    /// door to the host's hardware.
    DeviceNode,
    /// A FIFO, or an entry type this unpacker does not know (the tar
    /// type flag).
    UnsupportedType(u8),
    /// A whiteout that names the directory holding it, or the root
    /// (`.wh..`, `.wh.`): it would delete the tree above it.
    WhiteoutOfDirectory,
    /// A hard link to an entry that does not exist (yet) in the tree.
    LinkTargetMissing,
}

impl std::fmt::Display for EntryRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AbsoluteName => f.write_str("an absolute name"),
            Self::ParentComponent => f.write_str("a `..` component"),
            Self::NulInName => f.write_str("a NUL byte in the name"),
            Self::NameTooLong => f.write_str("a name longer than 4095 bytes"),
            Self::ThroughSymlink => f.write_str("a path through a symlink"),
            Self::DeviceNode => f.write_str("a device node"),
            Self::UnsupportedType(t) => write!(f, "an unsupported entry type ({:?})", *t as char),
            Self::WhiteoutOfDirectory => {
                f.write_str("a whiteout of the directory that holds it (or of the root)")
            }
            Self::LinkTargetMissing => f.write_str("a hard link to an entry that does not exist"),
        }
    }
}

/// An image could not be read or unpacked. Where it happened mid-way, the
/// partial tree was removed (see [`unpack`](crate::unpack)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The layout's JSON (index, manifest, config) is missing, malformed
    /// or not what an OCI image layout holds.
    #[error("{path}: {what}")]
    Layout {
        /// The file, relative to the layout.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// No manifest for the reference.
    #[error("no image {reference:?} in the layout (it has: {available})")]
    NotFound {
        /// The tag asked for.
        reference: String,
        /// The tags the index names.
        available: String,
    },
    /// A blob's content does not hash to its digest.
    #[error("blob {digest}: its content hashes to {actual}")]
    Digest {
        /// The digest the descriptor names.
        digest: String,
        /// What the content hashes to.
        actual: String,
    },
    /// A layer entry was refused; nothing of it was written.
    #[error("layer {layer}, entry {entry:?}: {refusal}")]
    Entry {
        /// The layer's digest.
        layer: String,
        /// The entry's name as the archive has it (lossy UTF-8).
        entry: String,
        /// Why.
        refusal: EntryRefusal,
    },
    /// A filesystem operation beneath the destination failed (an escape is
    /// [`openat2_root::Error::Escape`]).
    #[error("{what}: {source}")]
    Root {
        /// The operation and path.
        what: String,
        /// The error.
        #[source]
        source: openat2_root::Error,
    },
    /// Reading a blob or the archive failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
