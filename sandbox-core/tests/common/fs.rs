//! Temporary directories the overlay tests can make whiteouts in (shared
//! with sbx's tests through `#[path]`).
#![allow(dead_code, clippy::unwrap_used)]

/// A temporary directory on a filesystem that is no overlayfs (a VM's or
/// container's /tmp often is, and overlayfs refuses to make a whiteout,
/// a 0:0 character device): the temporary directory, else /dev/shm.
pub(crate) fn tempdir_off_overlayfs() -> tempfile::TempDir {
    let on_overlayfs =
        |dir: &std::path::Path| rustix::fs::statfs(dir).is_ok_and(|st| st.f_type == 0x794c_7630);
    let base = std::env::temp_dir();
    if on_overlayfs(&base) {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir_in(base).unwrap()
    }
}
