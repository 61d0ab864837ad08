//! The `default` seccomp filter against the real kernel: installed on a
//! thread of its own (a filter without TSYNC binds only that thread), each
//! refused syscall is shown to give something else without the filter.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure
#![allow(unsafe_code)] // raw syscalls with harmless arguments, to observe the filter

use sandbox_core::SeccompProgram;

/// The errno (0 for success) of each probe syscall, on a fresh thread, with
/// or without the filter.
fn observe(filter: Option<SeccompProgram>) -> Vec<(&'static str, i32)> {
    std::thread::spawn(move || {
        if let Some(f) = filter {
            rustix::thread::set_no_new_privs(true).unwrap();
            f.install_on_current_thread().unwrap();
        }
        let errno = |ret: libc::c_long| {
            if ret < 0 {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
            } else {
                0
            }
        };
        let byte = 0u8;
        // SAFETY: each call passes harmless arguments: an id query, a
        // CLONE_NEWUSER unshare (refused in a multithreaded process anyway),
        // TIOCSTI on a closed fd number, a mount of a missing path, a
        // zero-length process_vm_readv, a NULL clone3 struct, getpid.
        unsafe {
            vec![
                (
                    "keyctl",
                    errno(libc::syscall(
                        libc::SYS_keyctl,
                        0,  /* KEYCTL_GET_KEYRING_ID */
                        -3, /* session */
                        0,
                    )),
                ),
                (
                    "unshare(NEWUSER)",
                    errno(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)),
                ),
                (
                    "ioctl(TIOCSTI)",
                    errno(libc::syscall(
                        libc::SYS_ioctl,
                        999,
                        libc::TIOCSTI,
                        &byte as *const u8,
                    )),
                ),
                // CVE-2019-10063: high bits set in the request, which the
                // kernel truncates to 32 bits.
                (
                    "ioctl(TIOCSTI|hi)",
                    errno(libc::syscall(
                        libc::SYS_ioctl,
                        999,
                        0xdead_beef_0000_5412u64, // TIOCSTI is 0x5412
                        &byte as *const u8,
                    )),
                ),
                (
                    "mount",
                    errno(libc::syscall(
                        libc::SYS_mount,
                        c"none".as_ptr(),
                        c"/nonexistent-sandbox-test".as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        0,
                    )),
                ),
                (
                    "process_vm_readv",
                    errno(libc::syscall(libc::SYS_process_vm_readv, 1, 0, 0, 0, 0, 0)),
                ),
                ("bpf", errno(libc::syscall(libc::SYS_bpf, -1, 0, 0))),
                ("clone3", errno(libc::syscall(libc::SYS_clone3, 0, 0))),
                ("getpid", errno(libc::syscall(libc::SYS_getpid))),
            ]
        }
    })
    .join()
    .unwrap()
}

#[test]
fn default_filter_refuses_dangerous_syscalls_and_allows_the_rest() {
    let program = SeccompProgram::default_filter(false).unwrap();
    assert!(!program.is_empty());
    let without = observe(None);
    let with = observe(Some(program));
    println!("{:<18} {:>8} {:>8}", "syscall", "without", "with");
    for ((name, a), (_, b)) in without.iter().zip(&with) {
        println!("{name:<18} {a:>8} {b:>8}");
    }
    for (name, errno) in &with {
        let expected = match *name {
            "clone3" => libc::ENOSYS,
            "getpid" => 0,
            _ => libc::EPERM,
        };
        assert_eq!(*errno, expected, "{name} with the filter");
    }
    // Controls: without the filter each call gives something else (so the
    // EPERM above is the filter's doing).
    for ((name, a), (_, b)) in without.iter().zip(&with) {
        if *name != "getpid" {
            assert_ne!(a, b, "{name}: the same result without the filter");
        }
    }
}

#[test]
fn nested_user_namespaces_can_be_allowed() {
    let with = observe(Some(SeccompProgram::default_filter(true).unwrap()));
    let unshare = with
        .iter()
        .find(|(n, _)| *n == "unshare(NEWUSER)")
        .unwrap()
        .1;
    // Not refused by the filter: the kernel's own answer for a
    // multithreaded caller is EINVAL.
    assert_eq!(unshare, libc::EINVAL);
    assert_eq!(
        with.iter().find(|(n, _)| *n == "keyctl").unwrap().1,
        libc::EPERM
    );
}
