//! The child path allocates nothing: this binary's allocator aborts the
//! process when an allocation is made by any process but the test's own
//! (a child cloned from it runs the same allocator until its `execve`).
//! Runs with every layer a run can have — mounts, binds, tmpfs, Landlock,
//! seccomp, cgroup limits, a network namespace and allowlisted egress —
//! must succeed; the control shows a child that allocates is caught.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure
#![allow(unsafe_code)] // a GlobalAlloc impl and a fork for the control; each block says why

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI32, Ordering};

mod common;
use common::*;

/// The test process's pid, set before anything else runs; 0 until then.
static PARENT: AtomicI32 = AtomicI32::new(0);

struct AbortInChild;

impl AbortInChild {
    fn check() {
        let parent = PARENT.load(Ordering::Relaxed);
        if parent != 0 && rustix::process::getpid().as_raw_nonzero().get() != parent {
            let message = b"allocation in a child process before its execve: aborting\n";
            // SAFETY: write(2) of a static buffer to stderr.
            unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
            std::process::abort();
        }
    }
}

// SAFETY: every method forwards to the system allocator with the same
// arguments after a check that neither allocates nor unwinds (getpid, and
// write + abort in a child).
unsafe impl GlobalAlloc for AbortInChild {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::check();
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: AbortInChild = AbortInChild;

fn arm() {
    PARENT.store(
        rustix::process::getpid().as_raw_nonzero().get(),
        Ordering::Relaxed,
    );
}

/// Every layer at once, and the command must run: nothing on the child's
/// path (PID 1's steps, the command process's, up to `execve`) allocated.
#[test]
#[ignore = "needs root"]
fn a_run_with_every_layer_allocates_nothing_in_the_child() {
    require_root();
    arm();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input"), "bound\n").unwrap();
    let policy = format!(
        "[filesystem]\nmode = \"minimal\"\n\
         binds = [{{ source = \"{}\", target = \"/work\", writable = true }}]\n\
         tmpfs = [{{ target = \"/scratch\", size = \"8MiB\" }}]\nworkdir = \"/work\"\n\
         [network]\nmode = \"allowlist\"\ndns = true\nallow = [\"198.18.1.1/32:443/tcp\"]\n\
         [resources]\nmemory = \"256MiB\"\npids = 64\nwall_time = \"20s\"\n",
        dir.path().display()
    );
    let sb = sandbox(&policy);
    // Every layer is really there: the run is the full path.
    assert!(sb.report().fully_enforced(), "{}", sb.report());
    let out = sh(
        &sb,
        "cat /work/input && echo made > /scratch/x && cat /scratch/x",
    );
    assert!(out.success(), "{out:?}");
    assert_eq!(stdout(&out), "bound\nmade\n");
    // And the default profile as shipped.
    let out = sh(
        &sandbox_core::Sandbox::from_profile("default").unwrap(),
        "echo default",
    );
    assert!(out.success(), "{out:?}");
    // Overlays: the copy fallback (a walk of the tree in the child), and
    // overlayfs with a tmpfs upper where this host has it.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("a/b/f"), "deep\n").unwrap();
    std::os::unix::fs::symlink("b/f", tree.join("a/link")).unwrap();
    let overlay = format!(
        "[filesystem]\noverlay = [{{ lower = \"{}\", target = \"/o\", fallback = \"copy\" }}]\n",
        tree.display()
    );
    let mut overlays = vec![sandbox_without_tmpfs_upper(&overlay)];
    if sandbox_core::probe().overlay_tmpfs_upper.is_available() {
        overlays.push(sandbox(&overlay));
    }
    for sb in &overlays {
        let out = sh(sb, "cat /o/a/link");
        assert!(out.success(), "{out:?}");
        assert_eq!(stdout(&out), "deep\n");
    }
}

/// Control: a child that allocates is caught (killed by `SIGABRT`).
#[test]
fn control_an_allocating_child_is_aborted() {
    arm();
    // SAFETY: fork(2); the child allocates on purpose (the allocator must
    // abort it before the allocation is made), then would _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let v = std::hint::black_box(vec![1u8; 64]);
        // SAFETY: _exit(2) ends the child at once.
        unsafe { libc::_exit(i32::from(v[0])) };
    }
    let mut status = 0;
    // SAFETY: waitpid(2) on our own child, with a live local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
        "the allocating child was not aborted: status {status:#x}"
    );
}
