//! The step language: what the parent prepares and the child executes.
//!
//! A [`Step`] is one syscall (or a short fixed sequence) with every
//! argument built before the clone: strings are `CString`s, buffers are
//! `Vec`s the plan owns, fds the steps open go in numbered registers
//! ([`Reg`]). The child only reads them.

use std::ffi::{CString, c_char, c_int, c_void};

/// `MOUNT_ATTR_RDONLY`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NOSUID`.
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// `MOUNT_ATTR_NODEV`.
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
/// `MOUNT_ATTR_NOEXEC`.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// An index into the child's fd registers (fds the steps open and use).
pub type Reg = usize;

/// A register or stdio slot with no fd.
pub const NO_FD: c_int = -1;

/// What a mount target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A directory (created if missing and `create` is set).
    Dir,
    /// A non-directory (an empty regular file is created if missing).
    File,
    /// Whatever is there (masks).
    Existing,
}

/// A null-terminated array of C strings (argv, envp), with the strings it
/// points into.
#[derive(Debug)]
pub struct CStringArray {
    _strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

// SAFETY: the pointers point into `strings`, which the array owns and never
// changes after construction; moving the array moves the heap buffers'
// owners, not the buffers.
unsafe impl Send for CStringArray {}

impl CStringArray {
    /// The null-terminated pointer array, for `execve`.
    pub(crate) fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }

    /// The array of `strings`' pointers, NULL-terminated, owning them.
    pub fn new(strings: Vec<CString>) -> Self {
        let mut pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        Self {
            _strings: strings,
            pointers,
        }
    }
}

/// A BPF program to install: its instructions, as the kernel's
/// `struct sock_filter` array.
#[derive(Debug)]
pub struct RawFilter {
    /// The first `sock_filter`.
    pub instructions: *const c_void,
    /// How many instructions.
    pub len: u16,
}

// SAFETY: the pointer refers to a program owned by an `Arc<SeccompProgram>`
// that the plan holding this also holds (see `Step::Seccomp`).
unsafe impl Send for RawFilter {}

/// One step of the plan.
///
/// The fields are the syscall's arguments, named as the variant's doc
/// names them; fds the child opens are [`Reg`]isters, fds the parent
/// made and the child inherited are raw numbers of the child's table.
#[derive(Debug)]
#[allow(missing_docs)] // the variant's doc says what each field is
pub enum Step {
    /// `close_range` over every fd from 3 up except these (sorted, all ≥ 3).
    CloseFdsExcept(Vec<c_int>),
    /// `prctl(PR_SET_PDEATHSIG, SIGKILL)`.
    ParentDeathSignal,
    /// Block until the parent says go (one byte on `fd`): after the id
    /// maps, and again after placing us in our cgroups. The parent keeps
    /// its end open for the whole run (see `CheckParentAlive`).
    WaitForParent(c_int),
    /// Fails with `ECANCELED` if the parent has closed its end of `fd`
    /// (it died): after the credentials change, which clears the
    /// parent-death signal, the signal is set again and this closes the
    /// window in which the parent could have died unnoticed.
    CheckParentAlive(c_int),
    /// `write(fd, "0")`: `fd` is a cgroup v1 `tasks` file the parent
    /// opened; this moves the calling thread (the whole child, which has
    /// one) into that cgroup. A thread moving itself needs none of the
    /// global lock a write of another pid takes, whose first writer waits
    /// for an RCU grace period (milliseconds).
    JoinCgroup(c_int),
    /// `unshare(CLONE_NEWCGROUP)`, after the parent placed us in our cgroups.
    UnshareCgroup,
    /// `unshare(flags)` (the probe's trial: new user, mount and network
    /// namespaces at once).
    Unshare(c_int),
    /// `mount(source, target, fstype, flags, NULL)`: the old mount API, for
    /// the probe's trial (a run uses the new one).
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: u64,
    },
    /// `open(path, flags | O_CLOEXEC)` into a register.
    OpenFile {
        path: CString,
        flags: c_int,
        out: Reg,
    },
    /// `mount(NULL, "/", NULL, MS_REC | MS_PRIVATE)`.
    MakeMountsPrivate,
    /// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE [| AT_RECURSIVE])`.
    OpenTree {
        path: CString,
        recursive: bool,
        out: Reg,
    },
    /// `open(path, O_PATH | O_DIRECTORY)`.
    OpenDir { path: CString, out: Reg },
    /// `mount_setattr(mount, "", AT_EMPTY_PATH [| AT_RECURSIVE], set)`.
    SetMountAttrs {
        mount: Reg,
        set: u64,
        recursive: bool,
    },
    /// `fsopen`, `fsconfig` per option, `fsmount`.
    NewFilesystem {
        fstype: CString,
        options: Vec<(CString, Option<CString>)>,
        attrs: u64,
        out: Reg,
    },
    /// `move_mount(mount, "", AT_FDCWD, path)`: attach the new root at a
    /// staging point of the caller's (private) mount namespace.
    AttachAt { mount: Reg, path: CString },
    /// Walk `components` beneath `base` one at a time with `openat2`
    /// (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`),
    /// creating what is missing if `create`.
    Resolve {
        base: Reg,
        components: Vec<CString>,
        kind: TargetKind,
        create: bool,
        optional: bool,
        out: Reg,
    },
    /// `move_mount(from, "", to, "", F_EMPTY_PATH | T_EMPTY_PATH)`, then
    /// close both. A missing optional target closes `from` and succeeds.
    MoveMount { from: Reg, to: Reg },
    /// Cover `target` with `dir_source` or `file_source` by its type.
    Mask {
        target: Reg,
        dir_source: Reg,
        file_source: Reg,
    },
    /// `symlinkat(target, dir, name)`.
    Symlink {
        dir: Reg,
        name: CString,
        target: CString,
    },
    /// `openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0644)`,
    /// write `contents`, `fchmod(0644)`, close.
    WriteFile {
        dir: Reg,
        name: CString,
        contents: Vec<u8>,
    },
    /// `open_tree(dir, name, OPEN_TREE_CLONE)`: a bind of one file or
    /// directory beneath `dir` (which must be attached in our namespace).
    OpenTreeAt { dir: Reg, name: CString, out: Reg },
    /// `open(path, O_WRONLY)`, write `contents` (a `/proc/sys` setting).
    WriteSetting { path: CString, contents: Vec<u8> },
    /// `unlinkat(dir, name, 0)`.
    Unlink { dir: Reg, name: CString },
    /// An overlayfs (`fsopen("overlay")`, `lowerdir`, `upperdir`, `workdir`
    /// as `/proc/self/fd/N` of these registers' directories, `userxattr`,
    /// create, `fsmount` with `attrs`) into `out`: its layers were opened
    /// while the host's paths were all in view.
    NewOverlay {
        lowers: Vec<Reg>,
        upper: Reg,
        work: Reg,
        attrs: u64,
        out: Reg,
    },
    /// `lsetxattr(path, name, value)` (the probe's trial).
    SetXattr {
        path: CString,
        name: CString,
        value: Vec<u8>,
    },
    /// `fchmod(reg, mode)`.
    Chmod { reg: Reg, mode: u32 },
    /// `fchown(reg, uid, gid)` (`None`: unchanged).
    Chown {
        reg: Reg,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// One byte from `socket`, with a mount fd or without: a lower tree
    /// the parent idmapped to this user namespace, attached over `path`
    /// (in this private mount namespace) so that opening `path` opens it;
    /// without an fd, nothing (the lower's filesystem cannot be idmapped).
    RecvMount { socket: c_int, path: CString },
    /// The tree beneath the directory `from` copied into the directory
    /// `to` (an overlay's copy fallback): regular files, directories and
    /// symlinks (never followed), owned by `uid`:`gid`, times and modes
    /// kept less set-id bits; merged into what `to` has. A device, FIFO or
    /// socket fails it (`EOPNOTSUPP`), a tree deeper than 64 levels too
    /// (`ENAMETOOLONG`). Allocates nothing.
    CopyTree {
        from: Reg,
        to: Reg,
        uid: u32,
        gid: u32,
    },
    /// `unlinkat(dir, name, AT_REMOVEDIR)`.
    RemoveDir { dir: Reg, name: CString },
    /// `umount2(path, MNT_DETACH)`: a scratch mount that served its
    /// purpose (an overlay's tmpfs upper, which the overlay holds a
    /// private clone of).
    Unmount { path: CString },
    /// `close(reg)`.
    Close(Reg),
    /// Zero the memory holding this process's argv (`/proc/self/stat`
    /// fields `arg_start`, `arg_end`), so that `/proc/1/cmdline` in the
    /// sandbox does not show the caller's command line; and name the
    /// process (`PR_SET_NAME`).
    HideCallerIdentity {
        arg_start: usize,
        arg_len: usize,
        name: CString,
    },
    /// `fchdir(root)`, `pivot_root(".", ".")`, `umount2(".", MNT_DETACH)`,
    /// `chdir("/")`.
    PivotRoot { root: Reg },
    /// `mount_setattr(AT_FDCWD, "/", 0, MOUNT_ATTR_RDONLY)`.
    RootReadOnly,
    /// `sethostname`.
    SetHostname(CString),
    /// `ioctl(SIOCSIFFLAGS)` on `lo` with `IFF_UP`.
    LoopbackUp,
    /// Send a prebuilt nf_tables batch on a `NETLINK_NETFILTER` socket and
    /// check its ACKs.
    NftBatch { bytes: Vec<u8>, acks: u32 },
    /// `open("/dev/net/tun")` + `TUNSETIFF` (tap, no packet info); the tap
    /// must come out as link `index` (the requests that follow assume it).
    CreateTap {
        name: CString,
        index: c_int,
        out: Reg,
    },
    /// Send prebuilt rtnetlink requests, checking every ACK.
    Netlink { bytes: Vec<u8>, count: u32 },
    /// Open a `NETLINK_NETFILTER` socket into `out`: bound to this network
    /// namespace and carrying this process's capabilities in it, so the
    /// parent can update the ruleset's sets through it later.
    OpenNetfilter { out: Reg },
    /// Pass the fd in `reg` to the parent over `socket` (`SCM_RIGHTS`).
    SendFd { socket: c_int, reg: Reg },
    /// Empty the bounding and ambient sets, lock the securebits.
    DropBoundingAndAmbient,
    /// `setgroups(0, NULL)`.
    ClearGroups,
    /// `setresgid(gid, gid, gid)`.
    SetGid(u32),
    /// `setresuid(uid, uid, uid)`.
    SetUid(u32),
    /// `capset` with every set empty.
    ClearCapabilities,
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    NoNewPrivs,
    /// Unblock every signal and reset every disposition to the default
    /// (Rust ignores `SIGPIPE`; an ignored signal stays ignored over exec).
    ResetSignals,
    /// `setsid()` (PID 1): a session of the sandbox's own, with no
    /// controlling terminal but, with a pty, its own.
    NewSession,
    /// `setpgid(0, 0)` (the command): a process group of its own in PID
    /// 1's session, so job control works (a group whose parent is in
    /// another session would be orphaned, and `SIGTSTP` dropped).
    NewProcessGroup,
    /// `ioctl(reg, TIOCSCTTY)` (PID 1, a session leader): the terminal in
    /// `reg` becomes the session's controlling terminal.
    ControllingTerminal(Reg),
    /// `dup2` each given fd onto 0, 1, 2 (`NO_FD`: leave as is).
    Stdio([c_int; 3]),
    /// A new pseudo-terminal from the sandbox's own devpts:
    /// `open("/dev/ptmx")`, unlock it, set its window size, and open its
    /// peer (`TIOCGPTPEER`), into `master` and `slave`.
    OpenPty {
        master: Reg,
        slave: Reg,
        rows: u16,
        cols: u16,
    },
    /// `dup2` the fd in `reg` (the session's terminal) onto 0, 1 and 2,
    /// make the process's group the terminal's foreground group
    /// (`tcsetpgrp`, with `SIGTTOU` ignored; signals are reset after), and
    /// close `reg`.
    TerminalStdio(Reg),
    /// `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`: nothing but 0–2 survives
    /// the exec.
    CloseOnExecAbove2,
    /// `chdir(path)`.
    Chdir(CString),
    /// `setrlimit(resource, soft, hard)`.
    Rlimit {
        resource: rustix::process::Resource,
        soft: u64,
        hard: u64,
    },
    /// `landlock_create_ruleset`, one path-beneath rule per path, then
    /// `landlock_restrict_self`.
    Landlock {
        handled: [u64; 3],
        attr_size: usize,
        rules: Vec<(CString, u64)>,
    },
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` per program. The `Arc` keeps the
    /// instructions the raw filters point at alive.
    Seccomp {
        filters: Vec<RawFilter>,
        _owner: std::sync::Arc<dyn std::any::Any + Send + Sync>,
    },
    /// `execve` of each candidate path in turn (a `PATH` search prepared
    /// by the parent).
    Exec {
        candidates: Vec<CString>,
        argv: CStringArray,
        envp: CStringArray,
    },
    /// Panics (the test of the executor's panic guard).
    #[cfg(test)]
    Panic,
}

impl Step {
    /// The step's name (its variant's), for reports of a step that
    /// panicked or hung.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CloseFdsExcept { .. } => "CloseFdsExcept",
            Self::ParentDeathSignal { .. } => "ParentDeathSignal",
            Self::WaitForParent { .. } => "WaitForParent",
            Self::CheckParentAlive { .. } => "CheckParentAlive",
            Self::JoinCgroup { .. } => "JoinCgroup",
            Self::UnshareCgroup { .. } => "UnshareCgroup",
            Self::RemoveDir { .. } => "RemoveDir",
            Self::Chmod { .. } => "Chmod",
            Self::Chown { .. } => "Chown",
            Self::RecvMount { .. } => "RecvMount",
            Self::CopyTree { .. } => "CopyTree",
            Self::SetXattr { .. } => "SetXattr",
            Self::NewOverlay { .. } => "NewOverlay",
            Self::Unmount { .. } => "Unmount",
            Self::Unshare { .. } => "Unshare",
            Self::Mount { .. } => "Mount",
            Self::OpenFile { .. } => "OpenFile",
            Self::MakeMountsPrivate { .. } => "MakeMountsPrivate",
            Self::OpenTree { .. } => "OpenTree",
            Self::OpenDir { .. } => "OpenDir",
            Self::SetMountAttrs { .. } => "SetMountAttrs",
            Self::NewFilesystem { .. } => "NewFilesystem",
            Self::AttachAt { .. } => "AttachAt",
            Self::Resolve { .. } => "Resolve",
            Self::MoveMount { .. } => "MoveMount",
            Self::Mask { .. } => "Mask",
            Self::Symlink { .. } => "Symlink",
            Self::WriteFile { .. } => "WriteFile",
            Self::OpenTreeAt { .. } => "OpenTreeAt",
            Self::WriteSetting { .. } => "WriteSetting",
            Self::Unlink { .. } => "Unlink",
            Self::Close { .. } => "Close",
            Self::HideCallerIdentity { .. } => "HideCallerIdentity",
            Self::PivotRoot { .. } => "PivotRoot",
            Self::RootReadOnly { .. } => "RootReadOnly",
            Self::SetHostname { .. } => "SetHostname",
            Self::LoopbackUp { .. } => "LoopbackUp",
            Self::NftBatch { .. } => "NftBatch",
            Self::CreateTap { .. } => "CreateTap",
            Self::Netlink { .. } => "Netlink",
            Self::OpenNetfilter { .. } => "OpenNetfilter",
            Self::SendFd { .. } => "SendFd",
            Self::DropBoundingAndAmbient { .. } => "DropBoundingAndAmbient",
            Self::ClearGroups { .. } => "ClearGroups",
            Self::SetGid { .. } => "SetGid",
            Self::SetUid { .. } => "SetUid",
            Self::ClearCapabilities { .. } => "ClearCapabilities",
            Self::NoNewPrivs { .. } => "NoNewPrivs",
            Self::ResetSignals { .. } => "ResetSignals",
            Self::NewSession { .. } => "NewSession",
            Self::NewProcessGroup { .. } => "NewProcessGroup",
            Self::ControllingTerminal { .. } => "ControllingTerminal",
            Self::Stdio { .. } => "Stdio",
            Self::OpenPty { .. } => "OpenPty",
            Self::TerminalStdio { .. } => "TerminalStdio",
            Self::CloseOnExecAbove2 { .. } => "CloseOnExecAbove2",
            Self::Chdir { .. } => "Chdir",
            Self::Rlimit { .. } => "Rlimit",
            Self::Landlock { .. } => "Landlock",
            Self::Seccomp { .. } => "Seccomp",
            Self::Exec { .. } => "Exec",
            #[cfg(test)]
            Self::Panic => "Panic",
        }
    }
}

/// What the child runs: PID 1's steps, then (in the forked command
/// process) the command's steps ending in `execve`.
#[derive(Debug)]
pub struct ChildPlan {
    /// PID 1's steps.
    pub init_steps: Vec<Step>,
    /// The command process's steps, ending in `execve`.
    pub command_steps: Vec<Step>,
    /// How many fd registers the steps use.
    pub registers: usize,
    /// Write end of the setup pipe: failures, and EOF once the command
    /// has exec'd (PID 1 closes its copy after the fork).
    pub setup_fd: c_int,
    /// Write end of the status pipe: PID 1's report of the command's wait
    /// status.
    pub status_fd: c_int,
    /// Fds PID 1 closes once the command process has its copies.
    pub close_after_fork: Vec<c_int>,
    /// The reaper's memfd ([`reaper_fd`](crate::reaper_fd)), which PID 1
    /// execs once the command runs; `NO_FD` to reap in-process.
    pub reaper_fd: c_int,
    /// PID 1 shares the caller's memory until it execs the reaper (see
    /// [`shared_clone_usable`](crate::shared_clone_usable)): only where the
    /// plan has no step that writes the caller's memory (no
    /// `HideCallerIdentity`) and the reaper is `reaper_fd`.
    pub shared: bool,
}
