//! The process's shared supervisor for spawned runs: a few spawner threads
//! that clone sandboxes and wait for their setup, and one thread that
//! supervises every running sandbox at once (relays, pidfds, deadlines) in
//! one poll loop. A spawned run costs no thread of its own.
//!
//! The spawner threads never exit: a sandbox's parent-death signal fires
//! when the *thread* that cloned it ends, so a sandbox cloned from a
//! caller's short-lived thread (a tokio blocking thread, a worker that
//! returns) would be killed with it. And a thread has a network namespace
//! of its own (a caller may have entered one): a sandbox with the host's
//! network, and a run's egress forwarder, must be in the caller's. So
//! there is a set of spawners per network namespace runs are started
//! from, started from a thread of it (threads inherit it).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use crate::child::ChildEnds;
use crate::error::{Error, Result};
use crate::outcome::RunOutcome;
use crate::plan::CommandSpec;
use crate::relay::{self, Slot};
use crate::run::{self, Inner, Started};
use crate::stdio::StdioChoice;

/// How many sandboxes may be in setup at once (each spawner thread clones
/// one and waits for its setup).
const SPAWNERS: usize = 4;

/// Called once with a run's outcome.
pub(crate) type Done = Box<dyn FnOnce(Result<RunOutcome>) + Send>;

/// A run to start, and where its ends (or its setup error) go.
struct SpawnRequest {
    inner: Arc<Inner>,
    spec: CommandSpec,
    choice: StdioChoice,
    started: Box<dyn FnOnce(Result<ChildEnds>) + Send>,
    done: Done,
}

/// A run being supervised.
struct Entry {
    started: Started,
    inner: Arc<Inner>,
    done: Done,
}

struct Supervisor {
    /// The spawners of each network namespace (by inode).
    spawners: Mutex<std::collections::HashMap<u64, Spawners>>,
    /// Runs handed over by the spawners, taken by the supervising thread.
    incoming: Mutex<Vec<Entry>>,
    /// Written to wake the supervising thread.
    wake: OwnedFd,
}

static SUPERVISOR: OnceLock<std::result::Result<Supervisor, String>> = OnceLock::new();

fn supervisor() -> Result<&'static Supervisor> {
    SUPERVISOR
        .get_or_init(start_threads)
        .as_ref()
        .map_err(|why| Error::Prepare {
            what: "start the supervisor thread".into(),
            error: std::io::Error::other(why.clone()),
        })
}

fn start_threads() -> std::result::Result<Supervisor, String> {
    let (wake_read, wake) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )
    .map_err(|e| format!("the wake pipe: {e}"))?;
    std::thread::Builder::new()
        .name("sandbox-supervisor".into())
        .spawn(move || {
            // A bug that panics here must not strand later runs: the runs
            // it held are killed (dropping a `Started` does) and reported
            // lost, and the loop starts again.
            loop {
                let result = std::panic::catch_unwind(|| supervise_all(&wake_read));
                if result.is_ok() {
                    break;
                }
            }
        })
        .map_err(|e| format!("the supervising thread: {e}"))?;
    Ok(Supervisor {
        spawners: Mutex::new(std::collections::HashMap::new()),
        incoming: Mutex::new(Vec::new()),
        wake,
    })
}

/// The spawner threads of one network namespace: started one at a time,
/// when a run comes and none is idle (a process that spawns one run at a
/// time, as the CLI, starts one), up to `SPAWNERS`.
struct Spawners {
    sender: Sender<SpawnRequest>,
    requests: Arc<Mutex<Receiver<SpawnRequest>>>,
    started: usize,
    /// How many wait for a request.
    idle: Arc<AtomicUsize>,
}

impl Spawners {
    fn new() -> Self {
        let (sender, requests) = std::sync::mpsc::channel::<SpawnRequest>();
        Self {
            sender,
            requests: Arc::new(Mutex::new(requests)),
            started: 0,
            idle: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sends `request` to a spawner, first starting one from this thread
    /// (in its network namespace) if none is idle and there are fewer than
    /// `SPAWNERS`.
    fn send(&mut self, request: SpawnRequest) -> Result<()> {
        if self.idle.load(Ordering::Acquire) == 0 && self.started < SPAWNERS {
            let (requests, idle) = (Arc::clone(&self.requests), Arc::clone(&self.idle));
            std::thread::Builder::new()
                .name(format!("sandbox-spawner-{}", self.started))
                .spawn(move || spawner(&requests, &idle))
                .map_err(Error::prepare("start a spawner thread"))?;
            self.started += 1;
        }
        self.sender.send(request).map_err(|_| Error::Supervisor {
            what: "the spawner threads are gone",
        })
    }
}

/// A spawner thread: starts runs one after another, for ever.
/// It counts itself idle from before it answers a request's caller (who
/// may send the next at once) until it receives the next.
fn spawner(requests: &Mutex<Receiver<SpawnRequest>>, idle: &AtomicUsize) {
    idle.fetch_add(1, Ordering::AcqRel);
    loop {
        let received = requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        idle.fetch_sub(1, Ordering::AcqRel);
        let Ok(request) = received else {
            return;
        };
        match run::start(&request.inner, &request.spec, &request.choice, true) {
            Ok(mut started) => {
                let ends = ChildEnds {
                    pid: started.pid,
                    pidfd: Arc::clone(&started.pidfd),
                    stdin: started.stdin.take(),
                    readers: std::mem::take(&mut started.readers),
                    terminal: started.terminal.clone(),
                };
                idle.fetch_add(1, Ordering::AcqRel);
                (request.started)(Ok(ends));
                hand_over(Entry {
                    started,
                    inner: request.inner,
                    done: request.done,
                });
            }
            Err(e) => {
                idle.fetch_add(1, Ordering::AcqRel);
                (request.started)(Err(e));
            }
        }
    }
}

/// Gives a started run to the supervising thread.
fn hand_over(entry: Entry) {
    let Some(Ok(sup)) = SUPERVISOR.get() else {
        // Unreachable: spawners exist only once the supervisor does.
        return;
    };
    sup.incoming
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry);
    let _ = rustix::io::write(&sup.wake, &[1]);
}

/// Starts `spec` on a spawner thread: `started` gets the child's ends (or
/// the setup's error) once the command has exec'd, `done` its outcome when
/// it ends.
pub(crate) fn spawn(
    inner: Arc<Inner>,
    spec: CommandSpec,
    choice: StdioChoice,
    started: Box<dyn FnOnce(Result<ChildEnds>) + Send>,
    done: Done,
) -> Result<()> {
    let sup = supervisor()?;
    let request = SpawnRequest {
        inner,
        spec,
        choice,
        started,
        done,
    };
    let mut spawners = sup.spawners.lock().unwrap_or_else(PoisonError::into_inner);
    spawners
        .entry(crate::egress_pool::thread_netns())
        .or_insert_with(Spawners::new)
        .send(request)
}

/// Starts `spec` and waits until it has exec'd (or failed).
pub(crate) fn spawn_blocking(
    inner: Arc<Inner>,
    spec: CommandSpec,
    choice: StdioChoice,
    done: Done,
) -> Result<ChildEnds> {
    let (tx, rx): (SyncSender<Result<ChildEnds>>, _) = std::sync::mpsc::sync_channel(1);
    spawn(
        inner,
        spec,
        choice,
        Box::new(move |ends| {
            let _ = tx.send(ends);
        }),
        done,
    )?;
    rx.recv().unwrap_or(Err(Error::Supervisor {
        what: "the spawner thread ended before it said whether the sandbox started",
    }))
}

/// The supervising thread's loop: every run's relays, exits and deadlines
/// in one poll.
fn supervise_all(wake_read: &OwnedFd) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        if let Some(Ok(sup)) = SUPERVISOR.get() {
            entries.append(&mut sup.incoming.lock().unwrap_or_else(PoisonError::into_inner));
        }
        let now = Instant::now();
        let mut timeout = None;
        let mut i = 0;
        while i < entries.len() {
            let wait = entries[i].started.supervision.tick(now);
            if entries[i].started.supervision.done() {
                let entry = entries.swap_remove(i);
                (entry.done)(entry.started.finish(&entry.inner));
                continue;
            }
            timeout = match (timeout, wait) {
                (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                (a, b) => a.or(b),
            };
            i += 1;
        }
        let ready: Vec<(usize, Slot)> = {
            let mut pollfds = vec![PollFd::new(wake_read, PollFlags::IN)];
            let mut owners: Vec<(usize, Slot)> = Vec::new();
            for (index, entry) in entries.iter().enumerate() {
                for (fd, events, slot) in entry.started.supervision.interests() {
                    pollfds.push(PollFd::new(fd, events));
                    owners.push((index, slot));
                }
            }
            match rustix::event::poll(&mut pollfds, relay::timespec(timeout).as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                // poll fails only for a bad argument (too many fds): wait
                // a little and try again rather than spin.
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
            if !pollfds[0].revents().is_empty() {
                let mut buf = [0u8; 256];
                while matches!(rustix::io::read(wake_read, &mut buf), Ok(n) if n > 0) {}
            }
            owners
                .into_iter()
                .zip(&pollfds[1..])
                .filter(|(_, p)| !p.revents().is_empty())
                .map(|(owner, _)| owner)
                .collect()
        };
        for (index, slot) in ready {
            entries[index]
                .started
                .supervision
                .on_ready(slot, &mut scratch);
        }
    }
}
