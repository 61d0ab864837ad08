//! Network namespaces made ahead for a root caller's isolated runs.
//!
//! A new network namespace is the dearest part of a clone (`copy_net_ns`,
//! ~0.3–0.4 ms here, most of it registering the per-namespace state of
//! every protocol). A root caller may make one before it is asked for: a
//! thread of the pool (`sandbox-netns`) unshares one, brings its loopback up
//! and keeps an fd of it; a run takes it and its cloning thread joins it
//! (`setns`) just before the clone, which then leaves `CLONE_NEWNET` out,
//! and goes back to its own just after (two `setns`, a few µs). The pool
//! starts at a process's second isolated run: a process that makes one
//! (the CLI) makes no namespace it does not use.
//!
//! What the sandbox gets is the same: a namespace of its own with only
//! loopback, up. It is owned by the caller's user namespace rather than the
//! sandbox's, so the sandbox's root has no `CAP_NET_ADMIN` or
//! `CAP_NET_RAW` over it: it can configure nothing there, which is
//! tighter, not weaker. Callers that are not root cannot make a namespace
//! their sandbox's user namespace does not own, and egress runs configure
//! a tap in theirs: both clone a new one as before.
//!
//! Where the pool cannot make a namespace (a seccomp filter of the
//! caller's, say), it stops, says why once (a `tracing` warning), and runs
//! clone their own: the path the host probe tried.

use std::os::fd::OwnedFd;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// How many namespaces the pool keeps ready.
const READY: usize = 2;

#[derive(Default)]
struct Pool {
    ready: Vec<OwnedFd>,
    /// Runs that asked before the filler started: it starts at the second,
    /// so that a process that makes one run (the CLI) makes no namespace
    /// it does not use.
    asked: u32,
    /// The filler thread exists (or could not be started, or stopped).
    started: bool,
    /// The filler stopped: making a namespace failed.
    failed: bool,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    ready: Vec::new(),
    asked: 0,
    started: false,
    failed: false,
});
static WANTED: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A network namespace made ahead (loopback up), if the pool has one; the
/// second call starts the pool (those runs clone their own).
pub(crate) fn take() -> Option<OwnedFd> {
    let mut pool = lock();
    if pool.failed {
        return None;
    }
    if !pool.started {
        pool.asked += 1;
        if pool.asked < 2 {
            return None;
        }
        pool.started = true;
        let spawned = std::thread::Builder::new()
            .name("sandbox-netns".into())
            .spawn(fill);
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "no network namespace pool: its thread");
            pool.failed = true;
        }
        return None;
    }
    let taken = pool.ready.pop();
    WANTED.notify_one();
    taken
}

/// The pool's thread: keeps `READY` namespaces made.
fn fill() {
    let home = match sandbox_net::current_network_namespace() {
        Ok(home) => home,
        Err(e) => return stop(&e.to_string()),
    };
    loop {
        let made = make(&home);
        let mut pool = lock();
        match made {
            Ok(netns) => pool.ready.push(netns),
            Err(why) => {
                drop(pool);
                return stop(&why);
            }
        }
        while pool.ready.len() >= READY {
            pool = WANTED.wait(pool).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// One new namespace with loopback up; this thread back in `home`.
fn make(home: &OwnedFd) -> Result<OwnedFd, String> {
    sandbox_net::unshare_network_namespace().map_err(|e| e.to_string())?;
    let made = sandbox_net::current_network_namespace()
        .map_err(|e| e.to_string())
        .and_then(|netns| {
            sandbox_child::net::loopback_up()
                .map(|()| netns)
                .map_err(|e| format!("bring loopback up: {e}"))
        });
    // Not left pinning the namespace it made; a thread that cannot go
    // back makes no more.
    sandbox_net::enter_network_namespace(home).map_err(|e| e.to_string())?;
    made
}

fn stop(why: &str) {
    tracing::warn!(
        why,
        "network namespaces are not made ahead: each isolated run clones its own"
    );
    let mut pool = lock();
    pool.failed = true;
    pool.ready.clear();
}

/// The cloning thread in a namespace of the pool until dropped, when it
/// goes back to the one it was in.
pub(crate) struct Joined {
    home: OwnedFd,
}

impl Joined {
    /// Joins `netns` (the thread's own namespace kept to go back to).
    pub(crate) fn enter(netns: &OwnedFd) -> Result<Self, sandbox_net::Error> {
        let home = sandbox_net::current_network_namespace()?;
        sandbox_net::enter_network_namespace(netns)?;
        Ok(Self { home })
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        if let Err(e) = sandbox_net::enter_network_namespace(&self.home) {
            // The caller's thread would go on in a sandbox's network: no
            // socket it opens may end up there.
            tracing::error!(error = %e, "could not go back to the caller's network namespace");
            std::process::abort();
        }
    }
}
