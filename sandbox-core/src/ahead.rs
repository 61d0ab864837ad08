//! Work done ahead of the runs that will need it, on one thread of the
//! process (`sandbox-ahead`) that runs only on a CPU nothing else wants
//! (`SCHED_IDLE`): what it makes is for a later run, never worth delaying
//! a run that is starting. The network namespaces of `netns_pool` and the
//! run cgroups of `cgroups::Ahead` are made here. A pool that finds
//! nothing made takes the usual path (its run makes its own), so a busy
//! machine, on which this thread seldom runs, loses nothing.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};

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

/// Queues `job` for the thread (started by the first call, in the calling
/// thread's namespaces); false if the thread could not be started.
pub(crate) fn submit(job: impl FnOnce() + Send + 'static) -> bool {
    let mut queue = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
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
        return false;
    }
    queue.jobs.push_back(Box::new(job));
    QUEUED.notify_one();
    true
}

fn work() {
    if let Err(e) = crate::sys::idle_priority() {
        tracing::debug!(error = %e, "the thread that works ahead runs at its usual priority");
    }
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
