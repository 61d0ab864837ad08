//! Counting sandbox-core's threads, shared by sandbox-core's and the
//! integration tests (`#[path]`-included there).
#![allow(dead_code, clippy::unwrap_used)]

/// This process's threads that sandbox-core started (named `sandbox-*`;
/// a test harness's own come and go).
pub(crate) fn sandbox_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|name| name.starts_with("sandbox-"))
        })
        .count()
}

/// Asserts that `count` threads of sandbox-core's are those a process that
/// spawned runs keeps: one supervising thread, one to four spawners
/// (started as runs find none idle), perhaps the network namespace pool's.
pub(crate) fn assert_shared_threads(count: usize) {
    assert!(
        (2..=6).contains(&count),
        "one supervising thread, one to four spawners, perhaps the \
         network namespace pool's: {count}"
    );
}
