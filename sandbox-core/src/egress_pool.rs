//! The egress forwarders of every run of the process on a small pool of
//! threads (two by default; [`set_forwarder_threads`]), each polling many
//! forwarders at once, instead of a thread per run.
//!
//! A forwarder opens its host sockets in its thread's network namespace,
//! which must be the caller's: so there is one pool per network namespace
//! that runs are started from, its threads started from a thread of that
//! namespace (they inherit it).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustix::event::{PollFd, PollFlags};
use sandbox_net::forward::EgressForwarder;

use crate::error::{Error, Result};
use crate::outcome::EgressStats;

/// Threads per pool, until the first pool starts.
static THREADS: AtomicUsize = AtomicUsize::new(2);
static POOLS: OnceLock<Mutex<HashMap<u64, Arc<Pool>>>> = OnceLock::new();

/// Sets how many threads run the egress forwarders of this process's
/// sandboxes (in each network namespace runs are started from); 2 unless
/// set. Each thread polls all the forwarders given to it, so this bounds
/// the threads egress costs, whatever the number of sandboxes.
///
/// # Errors
///
/// [`Error::InvalidCommand`] for 0, or once a pool has started (the size
/// is fixed from then on).
///
/// # Examples
///
/// ```
/// // Before the first run with allowlisted egress.
/// sandbox_core::set_forwarder_threads(4)?;
/// # Ok::<(), sandbox_core::Error>(())
/// ```
pub fn set_forwarder_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(Error::InvalidCommand {
            reason: "the forwarder pool needs at least one thread".into(),
        });
    }
    let pools = POOLS.get_or_init(Default::default);
    let pools = pools.lock().unwrap_or_else(PoisonError::into_inner);
    if !pools.is_empty() {
        return Err(Error::InvalidCommand {
            reason: "the forwarder pool has started: set its size before the first egress run"
                .into(),
        });
    }
    THREADS.store(threads, Ordering::Relaxed);
    Ok(())
}

/// A forwarder given to a pool thread, and where its figures go when it
/// ends.
struct Job {
    forwarder: EgressForwarder,
    stop: Arc<AtomicBool>,
    done: SyncSender<EgressStats>,
}

/// One pool thread's mailbox.
struct Worker {
    incoming: Mutex<Vec<Job>>,
    wake: OwnedFd,
}

impl Worker {
    fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &[1]);
    }
}

/// The threads of one network namespace.
struct Pool {
    workers: Vec<Arc<Worker>>,
    next: AtomicUsize,
}

/// A run's forwarder, in a pool.
#[derive(Debug)]
pub(crate) struct EgressRun {
    stop: Arc<AtomicBool>,
    worker: Arc<WorkerRef>,
    done: Option<Receiver<EgressStats>>,
}

/// A worker, for `EgressRun` (Debug without its jobs).
struct WorkerRef(Arc<Worker>);

impl std::fmt::Debug for WorkerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Worker")
    }
}

impl EgressRun {
    /// Stops the forwarder (if the sandbox's end has not already closed);
    /// what it did.
    pub(crate) fn stop(&mut self) -> Option<EgressStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.worker.0.wake();
        let done = self.done.take()?;
        Some(done.recv().unwrap_or_else(|_| EgressStats {
            error: Some("the forwarder pool thread panicked".into()),
            ..EgressStats::default()
        }))
    }
}

/// The inode of the calling thread's network namespace (0 if unknown).
pub(crate) fn thread_netns() -> u64 {
    rustix::fs::stat("/proc/thread-self/ns/net").map_or(0, |st| st.st_ino)
}

/// Gives `forwarder` to a thread of this network namespace's pool.
pub(crate) fn run(forwarder: EgressForwarder) -> Result<EgressRun> {
    let pool = {
        let pools = POOLS.get_or_init(Default::default);
        let mut pools = pools.lock().unwrap_or_else(PoisonError::into_inner);
        match pools.entry(thread_netns()) {
            std::collections::hash_map::Entry::Occupied(pool) => Arc::clone(pool.get()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                Arc::clone(slot.insert(Arc::new(start_pool()?)))
            }
        }
    };
    let index = pool.next.fetch_add(1, Ordering::Relaxed) % pool.workers.len();
    let worker = Arc::clone(&pool.workers[index]);
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    worker
        .incoming
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Job {
            forwarder,
            stop: Arc::clone(&stop),
            done: done_tx,
        });
    worker.wake();
    Ok(EgressRun {
        stop,
        worker: Arc::new(WorkerRef(worker)),
        done: Some(done_rx),
    })
}

fn start_pool() -> Result<Pool> {
    let threads = THREADS.load(Ordering::Relaxed).max(1);
    let mut workers = Vec::with_capacity(threads);
    for n in 0..threads {
        let (wake_read, wake) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .map_err(Error::prepare_errno("the forwarder pool's wake pipe"))?;
        let worker = Arc::new(Worker {
            incoming: Mutex::new(Vec::new()),
            wake,
        });
        let mine = Arc::clone(&worker);
        std::thread::Builder::new()
            .name(format!("sandbox-egress-{n}"))
            .spawn(move || forward_all(&mine, &wake_read))
            .map_err(Error::prepare("start a forwarder pool thread"))?;
        workers.push(worker);
    }
    Ok(Pool {
        workers,
        next: AtomicUsize::new(0),
    })
}

/// Ends a job: its figures to whoever stops it.
fn finish(job: Job, error: Option<String>) {
    let mut forwarder = job.forwarder;
    // What the kernel refused in the last moments.
    forwarder.drain_kernel_refusals();
    let _ = job
        .done
        .send(EgressStats::from_forwarder(&forwarder, error));
}

/// A pool thread: every forwarder given to it in one poll loop, for ever.
fn forward_all(worker: &Worker, wake_read: &OwnedFd) {
    let mut jobs: Vec<Job> = Vec::new();
    let mut frame = Vec::new();
    loop {
        jobs.append(
            &mut worker
                .incoming
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut i = 0;
        while i < jobs.len() {
            if jobs[i].stop.load(Ordering::Relaxed) {
                finish(jobs.swap_remove(i), None);
            } else {
                i += 1;
            }
        }
        let timeout = jobs.iter_mut().map(|job| job.forwarder.timer()).min();
        let (rounds, ready) = {
            let mut fds = vec![PollFd::new(wake_read, PollFlags::IN)];
            let rounds: Vec<_> = jobs
                .iter()
                .map(|job| {
                    let first = fds.len();
                    let round = job.forwarder.poll_fds(&mut fds);
                    (round, first, fds.len())
                })
                .collect();
            let timespec = crate::relay::timespec(timeout);
            if rustix::event::poll(&mut fds, timespec.as_ref()).is_err() {
                // EINTR, or too many fds: try again shortly rather than spin.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let ready: Vec<bool> = fds.iter().map(|p| !p.revents().is_empty()).collect();
            (rounds, ready)
        };
        if ready[0] {
            let mut buf = [0u8; 256];
            while matches!(rustix::io::read(wake_read, &mut buf), Ok(n) if n > 0) {}
        }
        // Handled from the last so that a finished job's removal leaves the
        // indices of those before it as they were.
        for (index, (round, first, end)) in rounds.into_iter().enumerate().rev() {
            match jobs[index]
                .forwarder
                .on_poll(round, &ready[first..end], &mut frame)
            {
                Ok(true) => {}
                // The tap closed: the sandbox is gone.
                Ok(false) => finish(jobs.swap_remove(index), None),
                Err(e) => finish(jobs.swap_remove(index), Some(e.to_string())),
            }
        }
    }
}
