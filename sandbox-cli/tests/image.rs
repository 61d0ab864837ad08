#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sbx image unpack`: into a directory, into the cache, and refusing a
//! hostile layer or a tag the layout does not have, with the reason.

use std::process::Command;

#[path = "../../sandbox-image/tests/common/mod.rs"]
mod image;
use image::*;

fn sbx(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sbx"))
        .args(args)
        .output()
        .unwrap()
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
