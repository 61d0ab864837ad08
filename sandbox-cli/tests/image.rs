#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sbx image unpack`: into a directory, into the cache, and refusing a
//! hostile layer or a tag the layout does not have, with the reason.

#[path = "../../sandbox-image/tests/common/mod.rs"]
mod image;
use image::*;

mod common;
use common::{require_root, sbx_command};

fn sbx(args: &[&std::ffi::OsStr]) -> std::process::Output {
    sbx_command().args(args).output().unwrap()
}

#[test]
fn image_unpack_into_a_directory_and_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    layout(
        &oci,
        "v1",
        &[(
            tar(&[
                dir("bin/"),
                file("bin/hello", 0o755, b"#!/bin/sh\necho hi\n"),
            ]),
            Stored::Gzip,
        )],
        &["/bin/hello"],
    );
    let with_tag = format!("{}:v1", oci.display());
    let dest = tmp.path().join("dest");
    let out = sbx(&[
        "image".as_ref(),
        "unpack".as_ref(),
        with_tag.as_ref(),
        dest.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 layers"));
    assert!(dest.join("rootfs/bin/hello").is_file());

    let cache = tmp.path().join("cache");
    let out = sbx(&[
        "image".as_ref(),
        "unpack".as_ref(),
        with_tag.as_ref(),
        "--cache".as_ref(),
        cache.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["config"]["cmd"][0], "/bin/hello");
    let hex = json["manifest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert!(cache.join(hex).join("rootfs/bin/hello").is_file());

    let missing = format!("{}:v2", oci.display());
    let out = sbx(&[
        "image".as_ref(),
        "unpack".as_ref(),
        missing.as_ref(),
        tmp.path().join("d2").as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"v2\"") && err.contains("v1"), "{err}");
}

#[test]
fn image_unpack_refuses_a_hostile_layer_naming_why() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    layout(
        &oci,
        "evil",
        &[(tar(&[file("../escaped", 0o644, b"x")]), Stored::Plain)],
        &[],
    );
    let dest = tmp.path().join("dest");
    let out = sbx(&[
        "image".as_ref(),
        "unpack".as_ref(),
        oci.as_os_str(),
        dest.as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("../escaped") && err.contains("`..` component"),
        "{err}"
    );
    assert!(!dest.exists() && !tmp.path().join("escaped").exists());
}

/// An image of a static busybox (`/work`, its working directory, writable
/// by all), unpacked with `sbx image unpack` into `TMP/img`.
fn busybox_image(tmp: &std::path::Path) -> std::path::PathBuf {
    let busybox = std::fs::read("/bin/busybox").expect("a static busybox (busybox-static)");
    let oci = tmp.join("oci");
    let mut entries = vec![
        dir("bin/"),
        file("bin/busybox", 0o755, &busybox),
        dir("proc/"),
        dir("dev/"),
        dir("tmp/"),
        dir("etc/"),
        file("etc/os-release", 0o644, b"ID=test-image\n"),
    ];
    for tool in ["sh", "ls", "cat", "echo"] {
        entries.push(symlink(&format!("bin/{tool}"), "busybox"));
    }
    entries.push(entry(b"work/", b'5', b"", 0o777, b""));
    layout(
        &oci,
        "v1",
        &[(tar(&entries), Stored::Zstd)],
        &["/bin/sh", "-c", "echo lang=$LANG; cat /etc/os-release"],
    );
    let dest = tmp.join("img");
    let out = sbx(&[
        "image".as_ref(),
        "unpack".as_ref(),
        oci.as_os_str(),
        dest.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dest
}

/// The busybox image unpacked in a new temporary directory, with its
/// rootfs's digest (needs root: its runs do).
fn unpacked_busybox() -> (tempfile::TempDir, std::path::PathBuf, Digest) {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dest = busybox_image(tmp.path());
    let before = tree_digest(&dest.join("rootfs"));
    (tmp, dest, before)
}

/// An image of a static busybox, unpacked and run as the sandbox's root:
/// its tool runs, the host's tree is not there, the image's config gives
/// the command and the environment, and the unpacked tree is unchanged.
#[test]
#[ignore = "needs root"]
fn run_image_runs_the_images_tool_as_its_root() {
    let (_tmp, dest, before) = unpacked_busybox();

    // The image's Cmd, with its Env (the layout builder's: LANG=C.UTF-8).
    let out = sbx_command()
        .args(["run", "--image"])
        .arg(&dest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("lang=C.UTF-8") && stdout.contains("ID=test-image"),
        "{stdout}"
    );
    // A command of ours: the host's tree is not there, / is read-only,
    // /tmp is a tmpfs, the working directory is the image's.
    let out = sbx_command()
        .args(["run", "--image"])
        .arg(&dest)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "pwd; ls /; test -e /usr/bin/python3 && echo HOST-VISIBLE; echo x > /etc/x || echo read-only; echo y > /tmp/y && cat /tmp/y",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("/work\n"), "{stdout}");
    assert!(
        !stdout.contains("HOST-VISIBLE") && !stdout.contains("usr"),
        "{stdout}"
    );
    assert!(
        stdout.contains("read-only") && stdout.contains("y\n"),
        "{stdout}"
    );
    assert!(
        stderr.contains("as the root, bound recursively read-only"),
        "{stderr}"
    );
    assert_eq!(
        tree_digest(&dest.join("rootfs")),
        before,
        "the image is unchanged"
    );
}

/// `--root-overlay tmpfs`: the image's root is writable, the writes are
/// listed (`--changes`) and discarded, the image is unchanged; without it
/// (the control) the same write is refused. Where tmpfs cannot hold an
/// upper's attributes (before 6.6) the run is refused, naming why.
#[test]
#[ignore = "needs root"]
fn run_image_with_a_writable_root() {
    let (_tmp, dest, before) = unpacked_busybox();
    let run = |extra: &[&str]| {
        sbx_command()
            .args(["run", "--net", "none", "--image"])
            .arg(&dest)
            .args(extra)
            .args([
                "--",
                "/bin/sh",
                "-c",
                "echo new > /work/new && cat /work/new",
            ])
            .output()
            .unwrap()
    };
    let control = run(&[]);
    assert!(!control.status.success());
    assert!(
        String::from_utf8_lossy(&control.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&control.stderr)
    );
    let out = run(&["--root-overlay", "tmpfs", "--changes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !sandbox_core::probe().overlay_tmpfs_upper.is_available() {
        assert!(!out.status.success());
        assert!(
            stderr.contains("filesystem.root_overlay at / (a tmpfs upper)"),
            "{stderr}"
        );
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "new\n");
    assert!(
        stderr.contains(
            "sbx: /: 1 added, 0 modified, 0 deleted, 0 replaced (a tmpfs upper, discarded)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("added    /work/new (4 B)"), "{stderr}");
    assert!(stderr.contains("writable through an overlay"), "{stderr}");
    assert_eq!(
        tree_digest(&dest.join("rootfs")),
        before,
        "the image is unchanged"
    );
}

/// What [`tree_digest`] gives.
type Digest = Vec<(std::path::PathBuf, u64, Vec<u8>)>;

/// Every path, type, size and content hash beneath `dir`.
fn tree_digest(dir: &std::path::Path) -> Digest {
    use sha2::Digest;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let content = if meta.is_file() {
                sha2::Sha256::digest(std::fs::read(e.path()).unwrap()).to_vec()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                stack.push(e.path());
                Vec::new()
            };
            out.push((e.path(), meta.len(), content));
        }
    }
    out.sort();
    out
}
