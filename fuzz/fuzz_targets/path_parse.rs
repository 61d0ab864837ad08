//! Path validation must never panic, and must accept exactly the relative
//! paths without `..` components or NUL bytes.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use libfuzzer_sys::fuzz_target;
use openat2_root::{InvalidPathReason, check_path};

fuzz_target!(|data: &[u8]| {
    let result = check_path(OsStr::from_bytes(data));
    let expected = if data.is_empty() {
        Err(InvalidPathReason::Empty)
    } else if data[0] == b'/' {
        Err(InvalidPathReason::Absolute)
    } else if data.contains(&0) {
        Err(InvalidPathReason::Nul)
    } else if data.split(|&b| b == b'/').any(|c| c == b"..") {
        Err(InvalidPathReason::ParentComponent)
    } else {
        Ok(())
    };
    assert_eq!(result, expected, "{:?}", String::from_utf8_lossy(data));
});
