//! The one raw syscall rustix does not wrap: `fchmodat2(2)`.
//!
//! This is the only module of the crate allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd};

use rustix::io::Errno;

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)`—Changes the mode of the inode
/// `fd` refers to, which may be an `O_PATH` fd (so no read or write access
/// to the file is needed, and nothing is opened).
///
/// Linux 6.6 and later; older kernels give `ENOSYS`.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/fchmodat.2.html)
#[doc(alias = "fchmodat2")]
pub(crate) fn fchmod_empty_path(fd: impl AsFd, mode: u32) -> Result<(), Errno> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: fchmodat2(2) takes (int dirfd, const char *pathname, mode_t
    // mode, unsigned int flags). `fd` is a live fd borrowed for the call,
    // the path is a static NUL-terminated empty C string, which the kernel
    // only reads, and the call has no effect on memory we own.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            libc::c_long::from(fd),
            c"".as_ptr(),
            libc::c_long::from(mode),
            libc::c_long::from(libc::AT_EMPTY_PATH),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    }
}
