#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sbx run`'s probe cache: used when it is the caller's, ignored when it
//! is not, rewritten by `sbx check`. Needs root (as CI has).

use std::process::Stdio;

mod common;
use common::*;

/// `sbx run` probes once and keeps the result for the next invocation,
/// in a file only its user can write: a planted entry (Landlock
/// "unavailable") is what the next run reports; the same entry writable by
/// others, or from another boot, is ignored and probed over.
#[test]
#[ignore = "needs root"]
fn run_reuses_the_probe_cache_only_when_it_is_the_callers() {
    use std::os::unix::fs::PermissionsExt;
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.path().join("host-probe.json");
    let run = || {
        let out = sbx_command()
            .env("SBX_PROBE_CACHE", dir.path())
            .args(["run", "--json", "--", "true"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let first = run();
    assert!(!first.contains("planted"), "{first}");
    let meta = std::fs::metadata(&file).expect("the first run wrote the cache");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    entry["host"]["landlock"] =
        serde_json::json!({"status": "unavailable", "reason": "planted by the test"});
    entry["host"]["landlock_abi"] = serde_json::Value::Null;
    let plant = |entry: &serde_json::Value, mode: u32| {
        std::fs::write(&file, serde_json::to_vec(entry).unwrap()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    plant(&entry, 0o600);
    let cached = run();
    assert!(
        cached.contains("planted by the test"),
        "the second run took the host from the cache: {cached}"
    );
    // Writable by others: not trusted, probed again (and rewritten).
    plant(&entry, 0o622);
    let reprobed = run();
    assert!(!reprobed.contains("planted"), "{reprobed}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "rewritten by the probe"
    );
    // Another boot: ignored.
    entry["key"]["boot_id"] = serde_json::json!("00000000-0000-0000-0000-000000000000");
    plant(&entry, 0o600);
    let other_boot = run();
    assert!(!other_boot.contains("planted"), "{other_boot}");
    // `sbx check` probes afresh, and leaves the next run a fresh entry.
    let mut current: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    current["host"]["landlock"] = entry["host"]["landlock"].clone();
    current["host"]["landlock_abi"] = serde_json::Value::Null;
    plant(&current, 0o600);
    assert!(run().contains("planted by the test"), "the entry is valid");
    plant(&current, 0o600);
    let check = sbx_command()
        .env("SBX_PROBE_CACHE", dir.path())
        .args(["check", "--json"])
        .output()
        .unwrap();
    assert!(!text(&check.stdout).contains("planted"));
    assert!(!run().contains("planted"), "check rewrote the cache");
}
