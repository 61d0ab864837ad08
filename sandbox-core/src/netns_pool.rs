//! Network namespaces made ahead for a root caller's isolated runs.
//!
//! A new network namespace is the dearest part of a clone (`copy_net_ns`,
//! ~0.3–0.4 ms here, most of it registering the per-namespace state of
//! every protocol). A root caller may make one before it is asked for: the
//! `ahead` thread unshares one, brings its loopback up and keeps an fd of
//! it; a run takes it and its cloning thread joins it
//! (`setns`) just before the clone, which then leaves `CLONE_NEWNET` out,
//! and goes back to its own just after (two `setns`, a few µs). The pool
//! fills from a process's second isolated run: a process that makes one
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
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How many namespaces the pool keeps ready.
const READY: usize = 2;

struct Pool {
    ready: Vec<OwnedFd>,
    /// Namespaces being made (queued on the `ahead` thread).
    making: usize,
    /// Runs that asked: the pool fills from the second on, so that a
    /// process that makes one run (the CLI) makes no namespace it does not
    /// use.
    asked: u32,
    /// Making one failed (or the thread could not start): no more.
    failed: bool,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    ready: Vec::new(),
    making: 0,
    asked: 0,
    failed: false,
});

fn lock() -> MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A network namespace made ahead (loopback up), if the pool has one; from
/// the second call on, the pool is topped up (on the `ahead` thread).
/// Never waits for the pool's lock (the `ahead` thread may hold it while
/// it waits for a CPU): a run that finds it held clones its own.
pub(crate) fn take() -> Option<OwnedFd> {
    let mut pool = crate::ahead::try_lock_briefly(&POOL)?;
    if pool.failed {
        return None;
    }
    pool.asked = pool.asked.saturating_add(1);
    let taken = pool.ready.pop();
    if pool.asked >= 2 {
        while pool.ready.len() + pool.making < READY {
            match crate::ahead::submit(make_one) {
                crate::ahead::Submitted::Queued => pool.making += 1,
                crate::ahead::Submitted::Busy => break,
                crate::ahead::Submitted::Never => {
                    pool.failed = true;
                    break;
                }
            }
        }
    }
    taken
}

/// Makes one namespace for the pool, on the `ahead` thread.
fn make_one() {
    let made = sandbox_net::current_network_namespace()
        .map_err(|e| e.to_string())
        .and_then(|home| make(&home));
    let mut pool = lock();
    pool.making = pool.making.saturating_sub(1);
    match made {
        Ok(netns) if !pool.failed => pool.ready.push(netns),
        Ok(_) => {}
        Err(why) => {
            if !pool.failed {
                tracing::warn!(
                    why,
                    "network namespaces are not made ahead: each isolated run clones its own"
                );
            }
            pool.failed = true;
            pool.ready.clear();
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
    // Not left pinning the namespace it made (nor in it for the next
    // job); a thread that cannot go back makes no more.
    sandbox_net::enter_network_namespace(home).map_err(|e| e.to_string())?;
    made
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
