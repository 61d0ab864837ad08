//! Where a child is in its steps, seen by the parent without a syscall on
//! the child's side: one shared anonymous page holding the index of the
//! step running. A child stuck in a step (a netlink reply that never
//! comes, a hung FUSE lookup) is then reported by the step's name when the
//! parent gives up on it.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::record::{RECORD_LEN, decode_record};

/// A page shared with the children cloned after it was made (`MAP_SHARED`
/// survives `clone` without `CLONE_VM`): the child stores the index of
/// each step before it runs it, and when it started it (`CLOCK_MONOTONIC`,
/// for the first `TIMED_STEPS` steps); the parent reads them.
#[derive(Debug)]
pub struct Progress {
    page: *mut AtomicU32,
}

// SAFETY: the page is only ever accessed through the `AtomicU32` at its
// start and the `AtomicU64`s after it, which are Sync; the mapping lives
// until `Progress` is dropped.
unsafe impl Send for Progress {}
// SAFETY: as above.
unsafe impl Sync for Progress {}

const PAGE: usize = 4096;

/// Steps whose start times fit in the page after the index cell.
pub const TIMED_STEPS: usize = PAGE / 8 - 1;

/// Now on `CLOCK_MONOTONIC`, in nanoseconds (the vDSO: no syscall, no
/// allocation).
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

impl Progress {
    /// Maps the page.
    ///
    /// # Errors
    ///
    /// `mmap`'s errno.
    pub fn new() -> Result<Self, Errno> {
        use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
        // SAFETY: a new anonymous mapping at an address the kernel picks;
        // nothing else refers to it. Zero-filled, so the atomic starts at
        // 0 ("no step yet").
        let page = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                PAGE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
            )
        }?;
        Ok(Self { page: page.cast() })
    }

    fn cell(&self) -> &AtomicU32 {
        // SAFETY: the page is mapped, page-aligned (so aligned for a u32)
        // and zero-initialised (a valid AtomicU32) for as long as `self`.
        unsafe { &*self.page }
    }

    /// The start time of step `index` (< `TIMED_STEPS`).
    fn time_cell(&self, index: usize) -> &AtomicU64 {
        debug_assert!(index < TIMED_STEPS);
        // SAFETY: slot `index + 1` of the page's u64s is within the page
        // (index < TIMED_STEPS = PAGE / 8 - 1), 8-aligned (the page is
        // page-aligned), zero-initialised (a valid AtomicU64), and only
        // ever accessed as an AtomicU64, for as long as `self`.
        unsafe { &*self.page.cast::<AtomicU64>().add(index + 1) }
    }

    /// Records that step `index` is starting, and when (in the child: two
    /// stores and a vDSO clock read, no syscall, no allocation).
    pub(crate) fn mark(&self, index: usize) {
        if index < TIMED_STEPS {
            self.time_cell(index)
                .store(monotonic_ns(), Ordering::Relaxed);
        }
        self.cell().store(
            u32::try_from(index).unwrap_or(u32::MAX - 1) + 1,
            Ordering::Relaxed,
        );
    }

    /// When step `index` started (`monotonic_ns`), if it has and was
    /// timed.
    pub fn started_at(&self, index: usize) -> Option<u64> {
        if index >= TIMED_STEPS {
            return None;
        }
        match self.time_cell(index).load(Ordering::Relaxed) {
            0 => None,
            ns => Some(ns),
        }
    }

    /// The step a child last started, if any.
    pub fn current(&self) -> Option<usize> {
        match self.cell().load(Ordering::Relaxed) {
            0 => None,
            n => Some(n as usize - 1),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of that length; no reference
        // into it outlives `self`.
        unsafe {
            let _ = rustix::mm::munmap(self.page.cast(), PAGE);
        }
    }
}

/// What a setup pipe said within a time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// A record `(kind, index, value)`.
    Record(u32, u32, i32),
    /// End of file: every writer closed it (the command exec'd, or the
    /// child ended without a report).
    Closed,
    /// Nothing by the deadline.
    TimedOut,
}

/// Reads one record from `pipe`, waiting until `timeout` has passed at
/// most.
///
/// # Errors
///
/// `poll`'s or `read`'s errno.
pub fn read_record_within(pipe: &OwnedFd, timeout: Duration) -> Result<Setup, Errno> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = Instant::now() + timeout;
    let mut record = [0u8; RECORD_LEN];
    let mut filled = 0;
    while filled < RECORD_LEN {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Setup::TimedOut);
        }
        let mut fds = [PollFd::new(pipe, PollFlags::IN)];
        let wait = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        match poll(&mut fds, Some(&wait)) {
            Ok(0) => return Ok(Setup::TimedOut),
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(errno),
        }
        match rustix::io::read(pipe, &mut record[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(errno) => return Err(errno),
        }
    }
    if filled == RECORD_LEN {
        let (kind, index, value) = decode_record(&record);
        Ok(Setup::Record(kind, index, value))
    } else {
        Ok(Setup::Closed)
    }
}
