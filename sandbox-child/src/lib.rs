//! The child runtime of `sandbox-core` and `sandbox-net` (internal: no
//! stable API). One step language ([`Step`]), one executor, one record
//! format, used by the sandbox's PID 1 and command process
//! ([`spawn_init`]), by the host probe's trial child and by the rootless
//! egress namespace ([`Trial`]).
//!
//! The parent prepares everything: strings, buffers, the number of fd
//! registers. The child is cloned from a possibly multithreaded process
//! (a raw `clone(2)`, no glibc fork handlers), where any lock another
//! thread held stays held for ever, so it only reads the plan and makes
//! raw syscalls: no allocation, no locks. The first failing step is
//! reported to the parent as a 12-byte record `(kind, index, errno)` on a
//! close-on-exec pipe.
#![allow(unsafe_code)] // this crate is the raw syscalls; each block says why it is sound

// The kernel structures the steps lay out by hand (`struct sigaction`,
// `cmsghdr` sizes, the Landlock attributes) are x86_64's; another
// architecture must be checked against its headers first.
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "sandbox-child lays out kernel structures for x86_64 only; check each `#[repr(C)]` \
     struct and syscall number in src/exec.rs and src/mounts.rs for this architecture first"
);

mod copy;
mod exec;
pub use exec::install_filters;
mod mounts;
pub mod net;
mod progress;
mod reaper;
mod record;
mod registers;
mod shared;
mod spawn;
mod step;
mod trial;

pub use mounts::idmapped_tree;
pub use progress::{Progress, Setup, TIMED_STEPS, monotonic_ns, read_record_within};
pub use reaper::reaper_fd;
pub use record::{
    RECORD_COMMAND_CONTINUED, RECORD_COMMAND_STATUS, RECORD_COMMAND_STOPPED, RECORD_LEN,
    RECORD_STEP_FAILED, RECORD_STEP_PANICKED, decode_record,
};
pub use shared::shared_clone_usable;
pub use spawn::{FORWARDED_SIGNALS, Init, Starting, spawn_init};
pub use step::{
    CStringArray, ChildPlan, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY, NO_FD, RawFilter, Reg, Step, TargetKind,
};
pub use trial::{StepFailure, Trial};

use rustix::io::Errno;

/// The calling thread's errno (after a libc call that failed): the one
/// errno reader of the workspace.
pub fn errno() -> std::ffi::c_int {
    // SAFETY: reading the calling thread's errno is async-signal-safe.
    unsafe { *libc::__errno_location() }
}

/// The calling thread's errno, as rustix's type.
pub fn last_errno() -> Errno {
    Errno::from_raw_os_error(errno())
}
