//! Work done ahead of the runs that will need it, on one thread of the
//! process (`sandbox-ahead`): the network namespaces of `netns_pool` and
//! the run cgroups of `cgroups::Ahead`. A pool that finds nothing made
//! takes the usual path (its run makes its own).
//!
//! The thread runs at the usual priority. At `SCHED_IDLE` it starved under
//! load while holding the kernel's locks (`rtnl_lock` in a namespace's
//! setup, `cgroup_mutex` in a cgroup's): 200 runs at once in the kernel
//! matrix waited 60 s on them and were killed. Nor does a run ever wait
//! for a lock of this module's that the thread may hold: the run's side
//! only tries them, and makes its own where one is held.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    /// The thread exists, or could not be started.
    started: bool,
    failed: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    jobs: VecDeque::new(),
    started: false,
    failed: false,
});
static QUEUED: Condvar = Condvar::new();

/// What became of a job handed to [`submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Submitted {
    Queued,
    /// The queue was held (by the thread, which may be waiting for a
    /// CPU): not queued this time.
    Busy,
    /// The thread could not be started: never.
    Never,
}

/// Queues `job` for the thread (started by the first call, in the calling
/// thread's namespaces). Never waits for the queue: a run must not wait
/// for a thread that runs only when nothing else wants the CPU.
pub(crate) fn submit(job: impl FnOnce() + Send + 'static) -> Submitted {
    let Some(mut queue) = try_lock_briefly(&QUEUE) else {
        return Submitted::Busy;
    };
    if !queue.started {
        queue.started = true;
        let spawned = std::thread::Builder::new()
            .name("sandbox-ahead".into())
            .spawn(work);
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "nothing is made ahead: its thread");
            queue.failed = true;
        }
    }
    if queue.failed {
        return Submitted::Never;
    }
    queue.jobs.push_back(Box::new(job));
    QUEUED.notify_one();
    Submitted::Queued
}

/// `mutex`, if it can be had within a few tries (it is held only for a
/// moment, by the thread of this module or a run): never a wait for a
/// thread that may be waiting for a CPU.
pub(crate) fn try_lock_briefly<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    for _ in 0..64 {
        match mutex.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

fn work() {
    loop {
        let job = {
            let mut queue = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                match queue.jobs.pop_front() {
                    Some(job) => break job,
                    None => queue = QUEUED.wait(queue).unwrap_or_else(PoisonError::into_inner),
                }
            }
        };
        // A job that panics loses what it was making, not the thread.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}
