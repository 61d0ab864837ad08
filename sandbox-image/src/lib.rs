//! OCI image layouts unpacked safely: the manifest a tag names, each
//! layer's blob checked against its digest and applied in order, through
//! [`openat2_root`] only — no entry name is ever joined to a path and
//! opened, no symlink is followed, so a hostile layer (`../` names,
//! absolute names, a symlink then a file through it, hard links out of
//! the tree, device nodes, a whiteout of the root) is refused with a typed
//! [`EntryRefusal`] and nothing is written outside the destination.
//!
//! The layout is what `skopeo copy docker://… oci:DIR` writes (there is no
//! registry pull): `index.json`, `blobs/sha256/…`; layers plain, gzip or
//! zstd; whiteouts `.wh.NAME` and `.wh..wh..opq`.
//!
//! ```no_run
//! # fn main() -> Result<(), sandbox_image::ImageError> {
//! let image = sandbox_image::unpack(
//!     "/srv/images/python".as_ref(),
//!     Some("3.12"),
//!     "/var/lib/sbx/python-3.12".as_ref(),
//!     &sandbox_image::UnpackOptions::default(),
//! )?;
//! println!("{} layers, cmd {:?}", image.layers.len(), image.config.cmd);
//! # Ok(()) }
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use openat2_root::{RemoveOptions, Root};
use serde::{Deserialize, Serialize};

mod error;
mod layer;
mod layout;

pub use error::{EntryRefusal, ImageError};
pub use layer::LayerStats;

/// How to unpack.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UnpackOptions {
    /// Give files the owners the layers name (needs `CAP_CHOWN`). By
    /// default they belong to the caller: a sandbox maps only its own
    /// users, and reads the tree as it is.
    pub owners: bool,
}

impl UnpackOptions {
    /// Options with the layers' owners kept or not.
    pub fn with_owners(mut self, yes: bool) -> Self {
        self.owners = yes;
        self
    }
}

/// What a run of the image needs from its config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageConfig {
    /// `Env`: `NAME=value` strings.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
}

/// An unpacked image: `DEST/rootfs` is its tree, `DEST/image.json` this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UnpackedImage {
    /// The manifest's digest.
    pub manifest: String,
    /// The layers' digests, in the order applied.
    pub layers: Vec<String>,
    /// What the config says a run needs.
    pub config: ImageConfig,
}

/// The file beside `rootfs` that records the image.
pub const IMAGE_JSON: &str = "image.json";

fn root_error(what: String) -> impl FnOnce(openat2_root::Error) -> ImageError {
    move |source| ImageError::Root { what, source }
}

/// Unpacks the image `tag` names in the OCI layout `layout` (the only
/// one, without a tag) into `dest`, which must not exist: its `rootfs`
/// holds the tree and `image.json` the [`UnpackedImage`]. The work is done
/// in a sibling directory renamed to `dest` at the end: an error leaves
/// nothing behind (the partial tree is removed), and `dest` appears whole
/// or not at all.
///
/// # Errors
///
/// [`ImageError`]: the layout's JSON, a blob's digest, a refused layer
/// entry ([`ImageError::Entry`]), or the filesystem.
pub fn unpack(
    layout: &Path,
    tag: Option<&str>,
    dest: &Path,
    options: &UnpackOptions,
) -> Result<UnpackedImage, ImageError> {
    let layout_root =
        Root::open(layout).map_err(root_error(format!("open {}", layout.display())))?;
    let found = layout::find(&layout_root, tag)?;
    let (parent, name) = match (dest.parent(), dest.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => {
            return Err(ImageError::Layout {
                path: dest.to_path_buf(),
                what: "the destination needs a parent directory and a name".into(),
            });
        }
    };
    let parent = Root::open(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    })
    .map_err(root_error(format!("open {}", parent.display())))?;
    // Unique to this call: two unpacks into one place (two threads, two
    // processes) each build their own, and the first rename wins.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let partial = format!(
        ".{}.partial-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    parent
        .create_dir(&partial, 0o755)
        .map_err(root_error(format!("create {partial}")))?;
    let result = fill(&layout_root, &parent, &partial, &found, options).and_then(|image| {
        parent
            .rename_noreplace(&partial, name)
            .map_err(root_error(format!(
                "rename {partial} to {}",
                dest.display()
            )))?;
        Ok(image)
    });
    if result.is_err() {
        let _ = parent.remove(&partial, RemoveOptions::new().recursive(true).force(true));
    }
    result
}

fn fill(
    layout: &Root,
    parent: &Root,
    partial: &str,
    found: &layout::Found,
    options: &UnpackOptions,
) -> Result<UnpackedImage, ImageError> {
    let dir = parent
        .open_dir(partial)
        .map_err(root_error(format!("open {partial}")))?;
    dir.create_dir("rootfs", 0o755)
        .map_err(root_error("create rootfs".into()))?;
    let rootfs = dir
        .open_dir("rootfs")
        .map_err(root_error("open rootfs".into()))?;
    let how = layer::Apply {
        owners: options.owners,
    };
    for blob in &found.layers {
        let mut hashing = layout::open_blob(layout, &blob.digest)?;
        let io = |e: std::io::Error| ImageError::Io {
            what: format!("layer {}", blob.digest),
            source: e,
        };
        match blob.compression {
            layout::Compression::None => {
                layer::apply(&rootfs, &mut hashing, &blob.digest, how)?;
            }
            layout::Compression::Gzip => {
                let mut gz = flate2::read::GzDecoder::new(&mut hashing);
                layer::apply(&rootfs, &mut gz, &blob.digest, how)?;
                std::io::copy(&mut gz, &mut std::io::sink()).map_err(io)?;
            }
            layout::Compression::Zstd => {
                let mut zst = zstd::stream::read::Decoder::new(&mut hashing).map_err(io)?;
                layer::apply(&rootfs, &mut zst, &blob.digest, how)?;
                std::io::copy(&mut zst, &mut std::io::sink()).map_err(io)?;
            }
        }
        hashing.finish(&blob.digest)?;
    }
    let config = found
        .config
        .config()
        .as_ref()
        .map(|c| ImageConfig {
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone(),
            user: c.user().clone(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
        })
        .unwrap_or_default();
    let image = UnpackedImage {
        manifest: found.manifest_digest.clone(),
        layers: found.layers.iter().map(|l| l.digest.clone()).collect(),
        config,
    };
    let json = serde_json::to_vec_pretty(&image).map_err(|e| ImageError::Io {
        what: "image.json".into(),
        source: e.into(),
    })?;
    dir.write_atomic_with(IMAGE_JSON, json, openat2_root::DurableWrite::NoSync)
        .map_err(root_error("write image.json".into()))?;
    Ok(image)
}

/// Where [`unpack_cached`] keeps images by default:
/// `$XDG_CACHE_HOME/sbx/images`, else `$HOME/.cache/sbx/images`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })
        .map(|base| base.join("sbx").join("images"))
}

/// As [`unpack`], into a content-addressed cache: the image goes to
/// `cache/<manifest digest's hex>`, and an image already there (its
/// `image.json` naming the same manifest) is used as it is, so an image is
/// unpacked once and shared by every run. Two processes unpacking the same
/// image at once both succeed: the second one's tree is dropped. Returns
/// the image's directory.
///
/// # Errors
///
/// As [`unpack`]; and creating `cache`.
pub fn unpack_cached(
    layout: &Path,
    tag: Option<&str>,
    cache: &Path,
    options: &UnpackOptions,
) -> Result<(PathBuf, UnpackedImage), ImageError> {
    let layout_root =
        Root::open(layout).map_err(root_error(format!("open {}", layout.display())))?;
    let found = layout::find(&layout_root, tag)?;
    let hex = found
        .manifest_digest
        .strip_prefix("sha256:")
        .unwrap_or(&found.manifest_digest)
        .to_string();
    std::fs::create_dir_all(cache).map_err(|e| ImageError::Io {
        what: format!("create {}", cache.display()),
        source: e,
    })?;
    let dest = cache.join(&hex);
    if let Ok(image) = read_unpacked(&dest)
        && image.manifest == found.manifest_digest
    {
        return Ok((dest, image));
    }
    match unpack(layout, tag, &dest, options) {
        Ok(image) => Ok((dest, image)),
        Err(e) => match read_unpacked(&dest) {
            // Another process put it there first.
            Ok(image) if image.manifest == found.manifest_digest => Ok((dest, image)),
            _ => Err(e),
        },
    }
}

/// Reads `DEST/image.json` of an unpacked image.
///
/// # Errors
///
/// [`ImageError`] if it cannot be read or parsed.
pub fn read_unpacked(dest: &Path) -> Result<UnpackedImage, ImageError> {
    let root = Root::open(dest).map_err(root_error(format!("open {}", dest.display())))?;
    let mut text = Vec::new();
    root.open_file(IMAGE_JSON, openat2_root::OpenOptions::new().read(true))
        .map_err(root_error(format!("open {IMAGE_JSON}")))?
        .take(4 << 20)
        .read_to_end(&mut text)
        .map_err(|e| ImageError::Io {
            what: IMAGE_JSON.into(),
            source: e,
        })?;
    serde_json::from_slice(&text).map_err(|e| ImageError::Layout {
        path: dest.join(IMAGE_JSON),
        what: e.to_string(),
    })
}
