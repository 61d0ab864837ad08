//! The hot paths make no heap allocation for short paths: a counting global
//! allocator watches this thread while each operation runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure
#![allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only counts and forwards

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use openat2_root::{OpenOptions, Root};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator with the same
// arguments; counting touches a const-initialised thread-local Cell, which
// neither allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations `f` made on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// One operation under watch.
type Check<'a> = Box<dyn Fn() + 'a>;

#[test]
fn hot_paths_do_not_allocate() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Root::open(tmp.path()).unwrap();
    let deep = "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o";
    root.create_dir_all(deep, 0o755).unwrap();
    root.write_atomic(format!("{deep}/file"), b"x").unwrap();
    root.write_atomic("top", b"x").unwrap();
    let file = format!("{deep}/file");
    let other = format!("{deep}/other");
    let read = *OpenOptions::new().read(true);
    let create = *OpenOptions::new().write(true).create_new(true);
    let checks: Vec<(&str, Check<'_>)> = vec![
        (
            "metadata (depth 1)",
            Box::new(|| assert!(root.metadata("top").unwrap().is_file())),
        ),
        (
            "metadata (depth 16)",
            Box::new(|| assert!(root.metadata(&file).unwrap().is_file())),
        ),
        (
            "symlink_metadata (depth 16)",
            Box::new(|| assert!(root.symlink_metadata(&file).unwrap().is_file())),
        ),
        (
            "open_file + close",
            Box::new(|| drop(root.open_file(&file, &read).unwrap())),
        ),
        (
            "create + remove_file",
            Box::new(|| {
                drop(root.open_file(&other, &create).unwrap());
                root.remove_file(&other).unwrap();
            }),
        ),
        (
            "rename there and back",
            Box::new(|| {
                root.rename(&file, &other).unwrap();
                root.rename(&other, &file).unwrap();
            }),
        ),
        (
            "create_dir_all + remove_dir",
            Box::new(|| {
                root.create_dir_all(&other, 0o755).unwrap();
                root.remove_dir(&other).unwrap();
            }),
        ),
        (
            "set_permissions",
            Box::new(|| root.set_permissions(&file, 0o644).unwrap()),
        ),
        (
            "set_times",
            Box::new(|| root.set_times(&file, None, None).unwrap()),
        ),
    ];
    for (name, op) in &checks {
        op(); // warm up: lazily initialised statics may allocate once
        assert_eq!(allocations(op), 0, "{name} allocated");
    }
    // Control: the counter does see allocations.
    assert!(allocations(|| assert!(root.metadata("missing").is_err())) > 0);
}
