#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Unpacking OCI layouts the tests build: a well-formed three-layer image
//! (plain, gzip, zstd; whiteouts, an opaque directory, a hard link, a
//! symlink chain), and hostile layers, each refused with its typed error
//! and nothing written outside the destination, each where it applies
//! with a control: a naive extractor (Python's `tarfile` trusting the
//! archive) writing outside with the same layer.

mod common;
use common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sandbox_image::{EntryRefusal, ImageError, UnpackOptions, unpack};

#[test]
fn a_layered_image_unpacks_with_its_whiteouts_and_links() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    let bottom = tar(&[
        dir("usr/"),
        dir("usr/bin/"),
        file("usr/bin/tool", 0o4755, b"#!/bin/sh\necho tool\n"),
        hardlink("usr/bin/tool-again", "usr/bin/tool"),
        symlink("usr/bin/a", "b"),
        symlink("usr/bin/b", "tool"),
        dir("etc/"),
        file("etc/gone", 0o644, b"deleted above"),
        dir("cache/"),
        file("cache/old-1", 0o644, b"1"),
        file("cache/old-2", 0o644, b"2"),
        symlink("etc/replaced", "/nowhere"),
    ]);
    let middle = tar(&[
        file("etc/.wh.gone", 0o644, b""),
        file("cache/new", 0o644, b"kept"),
        file("cache/.wh..wh..opq", 0o644, b""),
        file("etc/replaced", 0o600, b"a file now"),
    ]);
    let top = tar(&[dir("work/"), file("work/readme", 0o644, b"top layer\n")]);
    layout(
        &oci,
        "v1",
        &[
            (bottom, Stored::Plain),
            (middle, Stored::Gzip),
            (top, Stored::Zstd),
        ],
        &["/usr/bin/tool"],
    );
    let dest = tmp.path().join("image");
    let image = unpack(&oci, Some("v1"), &dest, &UnpackOptions::default()).unwrap();
    let root = dest.join("rootfs");
    assert_eq!(image.layers.len(), 3);
    assert_eq!(image.config.cmd, ["/usr/bin/tool"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/work"));
    assert_eq!(image.config.user.as_deref(), Some("1000"));
    assert!(image.config.env.contains(&"LANG=C.UTF-8".to_string()));
    assert_eq!(sandbox_image::read_unpacked(&dest).unwrap(), image);

    let tool = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o755, "setuid dropped");
    assert_eq!(
        std::fs::metadata(root.join("usr/bin/tool-again"))
            .unwrap()
            .ino(),
        tool.ino(),
        "a hard link"
    );
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/a")).unwrap(),
        Path::new("b")
    );
    assert!(!root.join("etc/gone").exists(), "whited out");
    let mut cache: Vec<_> = std::fs::read_dir(root.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    cache.sort();
    assert_eq!(
        cache,
        ["new"],
        "the opaque directory keeps only its layer's"
    );
    let replaced = std::fs::symlink_metadata(root.join("etc/replaced")).unwrap();
    assert!(replaced.is_file(), "a file replaced the symlink");
    assert_eq!(
        std::fs::read(root.join("work/readme")).unwrap(),
        b"top layer\n"
    );
    // The destination must not exist.
    assert!(unpack(&oci, Some("v1"), &dest, &UnpackOptions::default()).is_err());
    // A tag the index does not name: the error lists those it does.
    let missing = unpack(
        &oci,
        Some("v2"),
        &tmp.path().join("x"),
        &UnpackOptions::default(),
    );
    assert!(
        matches!(&missing, Err(ImageError::NotFound { available, .. }) if available == "v1"),
        "{missing:?}"
    );
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    layout(
        &oci,
        "v1",
        &[(tar(&[file("a", 0o644, b"original")]), Stored::Plain)],
        &[],
    );
    // Change the layer's content in place: its digest no longer matches.
    for entry in std::fs::read_dir(oci.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(8).position(|w| w == b"original") {
            bytes[at] = b'O';
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let dest = tmp.path().join("image");
    let err = unpack(&oci, None, &dest, &UnpackOptions::default()).unwrap_err();
    assert!(matches!(err, ImageError::Digest { .. }), "{err}");
    assert!(!dest.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["oci"], "no partial tree left");
}

/// Everything beneath `dir` (paths relative to it), but the layout.
fn listing(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            if rel.starts_with("oci") || rel.starts_with("naive") {
                continue;
            }
            out.push(rel);
            if e.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The naive extractor: Python's tarfile, trusting the archive.
fn naive_extract(layer: &[u8], into: &Path) -> bool {
    std::fs::create_dir_all(into).unwrap();
    let file = into.with_extension("tar");
    std::fs::write(&file, layer).unwrap();
    std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='fully_trusted')",
        ])
        .arg(&file)
        .arg(into)
        .output()
        .unwrap()
        .status
        .success()
}

/// A hostile case: its name, its layer, the refusal, and what a naive
/// extractor makes outside the destination (relative to the test's
/// directory), or why there is no such control.
type Case<'a> = (&'a str, Vec<u8>, EntryRefusal, Result<&'a str, &'a str>);

#[test]
#[ignore = "needs root: the device-node control makes a device node"]
fn hostile_layers_are_refused_and_nothing_is_written_outside() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().to_str().unwrap().to_string();
    std::fs::write(tmp.path().join("canary"), b"canary").unwrap();
    std::fs::write(tmp.path().join("secret"), b"host secret").unwrap();
    std::fs::create_dir(tmp.path().join("outside-dir")).unwrap();
    let long = "a".repeat(4096);
    let cases: Vec<Case<'_>> = vec![
        (
            "`../` name",
            tar(&[file("../escaped", 0o644, b"x")]),
            EntryRefusal::ParentComponent,
            Ok("naive/escaped"),
        ),
        (
            "absolute name",
            tar(&[file(&format!("{t}/abs-escaped"), 0o644, b"x")]),
            EntryRefusal::AbsoluteName,
            Ok("abs-escaped"),
        ),
        (
            "symlink, then a file through it",
            tar(&[
                symlink("link", &format!("{t}/outside-dir")),
                file("link/planted", 0o644, b"x"),
            ]),
            EntryRefusal::ThroughSymlink,
            Ok("outside-dir/planted"),
        ),
        (
            "relative symlink chain out, then a file through it",
            tar(&[
                dir("a/"),
                symlink("a/up", "../.."),
                file("a/up/chain-escaped", 0o644, b"x"),
            ]),
            EntryRefusal::ThroughSymlink,
            Ok("naive/chain-escaped"),
        ),
        (
            "hard link to a file outside (absolute)",
            tar(&[hardlink("stolen", &format!("{t}/secret"))]),
            EntryRefusal::AbsoluteName,
            Err("the naive extractor links the secret into the tree: checked below by inode"),
        ),
        (
            "hard link to /etc/passwd",
            tar(&[hardlink("passwd", "/etc/passwd")]),
            EntryRefusal::AbsoluteName,
            Err("not tried naively: it would link the host's /etc/passwd"),
        ),
        (
            "hard link out with `..`",
            tar(&[hardlink("stolen", "../secret")]),
            EntryRefusal::ParentComponent,
            Err("the naive extractor fails to find ../secret in its own tree"),
        ),
        (
            "device node",
            tar(&[entry(b"dev-null", b'3', b"", 0o666, b"")]),
            EntryRefusal::DeviceNode,
            Err("the naive extractor makes it inside the tree: checked below"),
        ),
        (
            "NUL in a name",
            tar(&[entry(b"evil\0name", b'0', b"", 0o644, b"x")]),
            EntryRefusal::NulInName,
            Err("no path outside: the name is refused as such"),
        ),
        (
            "4096-byte name",
            tar(&[entry(long.as_bytes(), b'0', b"", 0o644, b"x")]),
            EntryRefusal::NameTooLong,
            Err("no path outside: the kernel would refuse it too"),
        ),
        (
            "whiteout of the root",
            tar(&[file(".wh..", 0o644, b"")]),
            EntryRefusal::WhiteoutOfDirectory,
            Err("tar -x has no whiteouts"),
        ),
        (
            "whiteout through a symlink",
            tar(&[
                symlink("link", &format!("{t}/outside-dir")),
                file("link/.wh.victim", 0o644, b""),
            ]),
            EntryRefusal::ThroughSymlink,
            Err("tar -x has no whiteouts"),
        ),
    ];
    for (name, layer, refusal, control) in cases {
        let before = listing(tmp.path());
        let oci = tmp.path().join("oci");
        let _ = std::fs::remove_dir_all(&oci);
        layout(&oci, "hostile", &[(layer.clone(), Stored::Gzip)], &[]);
        let dest = tmp.path().join("dest");
        let result = unpack(&oci, None, &dest, &UnpackOptions::default());
        match &result {
            Err(ImageError::Entry { refusal: got, .. }) => {
                assert_eq!(*got, refusal, "{name}: {result:?}")
            }
            other => panic!("{name}: not refused as {refusal}: {other:?}"),
        }
        assert_eq!(listing(tmp.path()), before, "{name}: something was written");
        assert_eq!(std::fs::read(tmp.path().join("canary")).unwrap(), b"canary");
        // The control: the same layer, extracted naively.
        let naive = tmp.path().join("naive").join("tree");
        let _ = std::fs::remove_dir_all(tmp.path().join("naive"));
        match control {
            Ok(escaped) => {
                naive_extract(&layer, &naive);
                let escaped = tmp.path().join(escaped);
                assert!(
                    escaped.exists(),
                    "{name}: the control wrote nothing outside ({})",
                    escaped.display()
                );
                let _ = std::fs::remove_file(&escaped);
                println!(
                    "| {name} | refused: {refusal} | naive: wrote {} |",
                    escaped.display()
                );
            }
            Err(why) => {
                if name.starts_with("hard link to a file outside") {
                    naive_extract(&layer, &naive);
                    assert_eq!(
                        std::fs::metadata(naive.join("stolen")).unwrap().ino(),
                        std::fs::metadata(tmp.path().join("secret")).unwrap().ino(),
                        "{name}: the control linked the secret"
                    );
                } else if name == "device node" {
                    naive_extract(&layer, &naive);
                    assert!(
                        std::os::unix::fs::FileTypeExt::is_char_device(
                            &std::fs::symlink_metadata(naive.join("dev-null"))
                                .unwrap()
                                .file_type()
                        ),
                        "{name}: the control made the device"
                    );
                }
                println!("| {name} | refused: {refusal} | {why} |");
            }
        }
        let _ = std::fs::remove_dir_all(tmp.path().join("naive"));
    }
}

#[test]
fn the_cache_unpacks_an_image_once_and_shares_it() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    layout(
        &oci,
        "v1",
        &[(tar(&[file("a", 0o644, b"from the image")]), Stored::Zstd)],
        &["/a"],
    );
    let cache = tmp.path().join("cache");
    // Four unpackers at once: all succeed, one tree.
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    sandbox_image::unpack_cached(
                        &oci,
                        Some("v1"),
                        &cache,
                        &UnpackOptions::default(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (dir, image) = results[0].as_ref().unwrap().clone();
    for r in &results {
        assert_eq!(r.as_ref().unwrap().0, dir);
    }
    assert_eq!(
        dir,
        cache.join(image.manifest.trim_start_matches("sha256:"))
    );
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(entries.len(), 1, "one tree, no partial left");
    // The second time, nothing is unpacked: a change to the tree stays.
    std::fs::write(dir.join("rootfs/a"), b"changed in the cache").unwrap();
    let (again, _) =
        sandbox_image::unpack_cached(&oci, Some("v1"), &cache, &UnpackOptions::default()).unwrap();
    assert_eq!(again, dir);
    assert_eq!(
        std::fs::read(dir.join("rootfs/a")).unwrap(),
        b"changed in the cache"
    );
}
