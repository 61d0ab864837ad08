//! The `default` filter's denylist: the known syscalls a sandboxed process
//! has no business making. Each fails with `EPERM`.

/// Syscalls the `default` filter refuses outright (`EPERM`), grouped by
/// why. Besides these it refuses, by argument: `ioctl` `TIOCSTI` and
/// `TIOCLINUX`, `clone`/`unshare` with `CLONE_NEWUSER` (unless nested user
/// namespaces are allowed) and `personality` other than the flags Docker
/// also allows; and sockets of a family not allowed (`EAFNOSUPPORT`).
pub const DEFAULT_DENIED: &[&str] = &[
    // Kernel keyrings (not namespaced).
    "keyctl",
    "add_key",
    "request_key",
    // The kernel's own programmability and introspection.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "lookup_dcookie",
    "fanotify_init",
    // Loading code into the kernel, rebooting, swapping, accounting.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "iopl",
    "ioperm",
    "vhangup",
    // Mounts, old and new API, and reading the mount table by id.
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "statmount",
    "listmount",
    "quotactl",
    "quotactl_fd",
    // Other processes' memory, files and identity.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    "migrate_pages",
    "move_pages",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "mbind",
    "get_mempolicy",
    // Files by handle (bypasses path-based checks).
    "open_by_handle_at",
    "name_to_handle_at",
    // Namespaces and names.
    "setns",
    "sethostname",
    "setdomainname",
    // The clocks.
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    // Memory the kernel cannot see, 16-bit segments, LSM attributes.
    "memfd_secret",
    "modify_ldt",
    "lsm_set_self_attr",
    // Removed or never implemented; refused rather than left to chance.
    "uselib",
    "_sysctl",
    "ustat",
    "sysfs",
    "nfsservctl",
    "afs_syscall",
    "tuxcall",
    "security",
    "getpmsg",
    "putpmsg",
    "vserver",
];
