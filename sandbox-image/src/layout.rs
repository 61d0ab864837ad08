//! Reading an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/<algorithm>/<hex>`): the manifest a tag names, its config and
//! its layers, every blob checked against its digest.

use std::io::Read;
use std::path::PathBuf;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use openat2_root::{OpenOptions, Root};
use sha2::{Digest as _, Sha256};

use crate::error::ImageError;

/// The annotation an index names a manifest's tag with.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The largest JSON blob read (an index, manifest or config).
const MAX_JSON: u64 = 4 << 20;

/// A layer's compression, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A layer to apply.
#[derive(Debug, Clone)]
pub(crate) struct LayerBlob {
    pub(crate) digest: String,
    pub(crate) compression: Compression,
}

/// An image in a layout, as its manifest and config describe it.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) manifest_digest: String,
    pub(crate) layers: Vec<LayerBlob>,
    pub(crate) config: ImageConfiguration,
}

fn layout_error(path: &str, what: impl std::fmt::Display) -> ImageError {
    ImageError::Layout {
        path: PathBuf::from(path),
        what: what.to_string(),
    }
}

/// The blob's path in the layout, from a digest checked to be
/// `sha256:` and 64 lowercase hex digits (so no digest can name a path
/// outside `blobs/sha256`).
pub(crate) fn blob_path(digest: &str) -> Result<String, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| {
            layout_error(
                "index.json",
                format!("unsupported digest {digest:?} (sha256 only)"),
            )
        })?;
    Ok(format!("blobs/sha256/{hex}"))
}

/// A reader that hashes what passes through it.
pub(crate) struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: Read> Hashing<R> {
    /// Reads what is left, and checks the whole against `digest`.
    pub(crate) fn finish(mut self, digest: &str) -> Result<(), ImageError> {
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| ImageError::Io {
            what: format!("blob {digest}"),
            source: e,
        })?;
        let actual = format!("sha256:{:x}", self.hash.finalize());
        if actual == digest {
            Ok(())
        } else {
            Err(ImageError::Digest {
                digest: digest.to_string(),
                actual,
            })
        }
    }
}

/// Opens the blob `digest`, hashing as it is read.
pub(crate) fn open_blob(layout: &Root, digest: &str) -> Result<Hashing<std::fs::File>, ImageError> {
    let path = blob_path(digest)?;
    let file = layout
        .open_file(&path, OpenOptions::new().read(true))
        .map_err(|e| ImageError::Root {
            what: format!("open {path}"),
            source: e,
        })?;
    Ok(Hashing {
        inner: file,
        hash: Sha256::new(),
    })
}

/// A JSON blob, checked against its digest.
fn json_blob<T: serde::de::DeserializeOwned>(layout: &Root, digest: &str) -> Result<T, ImageError> {
    let mut blob = open_blob(layout, digest)?;
    let mut bytes = Vec::new();
    (&mut blob)
        .take(MAX_JSON)
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::Io {
            what: format!("blob {digest}"),
            source: e,
        })?;
    blob.finish(digest)?;
    let path = blob_path(digest)?;
    serde_json::from_slice(&bytes).map_err(|e| layout_error(&path, e))
}

fn digest_of(d: &Descriptor) -> String {
    d.digest().to_string()
}

/// This machine's architecture as OCI names it.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The manifest `tag` names in the layout's index (the only one, without a
/// tag), following a nested index to this machine's platform.
pub(crate) fn find(layout: &Root, tag: Option<&str>) -> Result<Found, ImageError> {
    let mut text = Vec::new();
    layout
        .open_file("index.json", OpenOptions::new().read(true))
        .map_err(|e| ImageError::Root {
            what: "open index.json".into(),
            source: e,
        })?
        .take(MAX_JSON)
        .read_to_end(&mut text)
        .map_err(|e| ImageError::Io {
            what: "read index.json".into(),
            source: e,
        })?;
    let index: ImageIndex =
        serde_json::from_slice(&text).map_err(|e| layout_error("index.json", e))?;
    let tags = |index: &ImageIndex| {
        index
            .manifests()
            .iter()
            .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME).cloned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match tag {
        Some(tag) => index
            .manifests()
            .iter()
            .find(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|name| name == tag)
            })
            .ok_or_else(|| ImageError::NotFound {
                reference: tag.to_string(),
                available: tags(&index),
            })?,
        None => match index.manifests().as_slice() {
            [only] => only,
            _ => {
                return Err(ImageError::NotFound {
                    reference: String::new(),
                    available: tags(&index),
                });
            }
        },
    };
    let mut descriptor = chosen.clone();
    // A multi-platform image: an index of manifests, one per platform.
    for _ in 0..4 {
        if *descriptor.media_type() != MediaType::ImageIndex {
            break;
        }
        let nested: ImageIndex = json_blob(layout, &digest_of(&descriptor))?;
        descriptor = nested
            .manifests()
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    p.os().to_string() == "linux" && p.architecture().to_string() == architecture()
                })
            })
            .cloned()
            .ok_or_else(|| {
                layout_error(
                    &blob_path(&digest_of(&descriptor)).unwrap_or_default(),
                    format!("no manifest for linux/{}", architecture()),
                )
            })?;
    }
    let manifest_digest = digest_of(&descriptor);
    let manifest: ImageManifest = json_blob(layout, &manifest_digest)?;
    let config: ImageConfiguration = json_blob(layout, &digest_of(manifest.config()))?;
    let layers = manifest
        .layers()
        .iter()
        .map(|d| {
            let compression = match d.media_type() {
                MediaType::ImageLayer => Compression::None,
                MediaType::ImageLayerGzip => Compression::Gzip,
                MediaType::ImageLayerZstd => Compression::Zstd,
                MediaType::Other(t) if t == "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                    Compression::Gzip
                }
                other => {
                    return Err(layout_error(
                        &blob_path(&manifest_digest)?,
                        format!("layer media type {other} is not supported"),
                    ));
                }
            };
            Ok(LayerBlob {
                digest: digest_of(d),
                compression,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Found {
        manifest_digest,
        layers,
        config,
    })
}
