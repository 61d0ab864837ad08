//! Building test images: tar entries byte by byte (any name, as a hostile
//! layer would have it), and OCI layouts around them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// One tar entry: a ustar header (the name in a PAX record when it does
/// not fit, or holds a NUL), then the data padded to 512.
pub(crate) fn entry(name: &[u8], kind: u8, link: &[u8], mode: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let fits = name.len() < 100 && !name.contains(&0);
    if !fits {
        let mut record = Vec::new();
        let body_len = b" path=".len() + name.len() + 1;
        let mut len = body_len + 1;
        while len.to_string().len() + body_len != len {
            len = len.to_string().len() + body_len;
        }
        record.extend_from_slice(len.to_string().as_bytes());
        record.extend_from_slice(b" path=");
        record.extend_from_slice(name);
        record.push(b'\n');
        out.extend(header(b"PaxHeader", b'x', b"", 0o644, record.len()));
        out.extend(pad(&record));
    }
    let short: &[u8] = if fits { name } else { b"pax-named" };
    out.extend(header(short, kind, link, mode, data.len()));
    out.extend(pad(data));
    out
}

fn pad(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

fn header(name: &[u8], kind: u8, link: &[u8], mode: u32, size: usize) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    let octal = |h: &mut [u8], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}", w = width - 1);
        h[at..at + width - 1].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, u64::from(mode));
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    if kind == b'3' || kind == b'4' {
        octal(&mut h, 329, 8, 1);
        octal(&mut h, 337, 8, 3);
    }
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

pub(crate) fn file(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    entry(name.as_bytes(), b'0', b"", mode, data)
}
pub(crate) fn dir(name: &str) -> Vec<u8> {
    entry(name.as_bytes(), b'5', b"", 0o755, b"")
}
pub(crate) fn symlink(name: &str, target: &str) -> Vec<u8> {
    entry(name.as_bytes(), b'2', target.as_bytes(), 0o777, b"")
}
pub(crate) fn hardlink(name: &str, target: &str) -> Vec<u8> {
    entry(name.as_bytes(), b'1', target.as_bytes(), 0o644, b"")
}

/// A whole archive from entries.
pub(crate) fn tar(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend([0u8; 1024]);
    out
}

/// How a test layer is stored.
#[derive(Clone, Copy)]
pub(crate) enum Stored {
    Plain,
    Gzip,
    Zstd,
}

fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let hex = format!("{:x}", Sha256::digest(bytes));
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

/// Writes an OCI layout at `layout` holding one image, tagged `tag`, of
/// `layers` (bottom first), with a config naming `cmd`.
pub(crate) fn layout(layout: &Path, tag: &str, layers: &[(Vec<u8>, Stored)], cmd: &[&str]) {
    std::fs::create_dir_all(layout).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, stored) in layers {
        diff_ids.push(format!("sha256:{:x}", Sha256::digest(tar)));
        let (bytes, media) = match stored {
            Stored::Plain => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Stored::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(tar).unwrap();
                (
                    gz.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            Stored::Zstd => (
                zstd::encode_all(&tar[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        let digest = put_blob(layout, &bytes);
        descriptors.push(serde_json::json!({
            "mediaType": media, "digest": digest, "size": bytes.len()
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"], "Cmd": cmd, "WorkingDir": "/work", "User": "1000"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let config_digest = put_blob(layout, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descriptors
    }))
    .unwrap();
    let manifest_digest = put_blob(layout, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}
