//! Building the child's plan in the parent (DESIGN principle 2): every
//! path, string, map and filter is made here, before the clone.

use std::ffi::{CString, OsStr, OsString, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use sandbox_policy::{FsMode, Limit, Policy, SeccompMode};

use crate::decide::Decisions;
use crate::error::{Error, Result};
use crate::seccomp::SeccompProgram;
use crate::sys::child::{
    CStringArray, ChildPlan, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY, Reg, Step, TargetKind,
};

/// The host directories a minimal root binds read-only (or recreates as
/// symlinks, on merged-/usr systems).
const SYSTEM_PATHS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The device nodes of the minimal `/dev`, bound from the host's.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where the new root is attached before `pivot_root`, in the sandbox's
/// private mount namespace (it hides nothing outside it).
const STAGING: &str = "/tmp";

/// The fds the parent made for the child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanFds {
    pub(crate) sync_read: c_int,
    pub(crate) setup_write: c_int,
    pub(crate) status_write: c_int,
    /// The command's stdin, stdout, stderr (`NO_FD`: inherit the caller's).
    pub(crate) stdio: [c_int; 3],
    /// The child's end of the socket the tap fd goes out on (`NO_FD`
    /// without allowlisted egress).
    pub(crate) egress_socket: c_int,
}

/// What to run, as the command builder collected it.
#[derive(Debug, Clone)]
pub(crate) struct CommandSpec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) current_dir: Option<PathBuf>,
}

/// The plan, with what the parent needs to run it.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) child: ChildPlan,
    /// One description per step, PID 1's then the command's, then the
    /// fork itself.
    pub(crate) descriptions: Vec<String>,
    /// `CLONE_NEW*` flags for the clone.
    pub(crate) namespaces: c_int,
    /// Written by the parent to `/proc/<pid>/…` (if namespaces).
    pub(crate) uid_map: String,
    pub(crate) gid_map: String,
    pub(crate) deny_setgroups: bool,
}

fn cstring(what: &str, bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::InvalidCommand {
        reason: format!("{what} contains a NUL byte"),
    })
}

fn path_cstring(path: &Path) -> Result<CString> {
    cstring(
        &format!("path {}", path.display()),
        path.as_os_str().as_bytes(),
    )
}

/// The normal components of an absolute sandbox path.
fn components(path: &Path) -> Result<Vec<CString>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(path_cstring(Path::new(name))?),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::InvalidCommand {
                    reason: format!("{} must not contain `..`", path.display()),
                });
            }
        }
    }
    Ok(out)
}

/// Where a mount's source comes from.
#[derive(Debug)]
enum Source {
    /// `open_tree` of a host path, then these attributes.
    Host {
        path: PathBuf,
        recursive: bool,
        attrs: u64,
    },
    /// A new filesystem.
    New {
        fstype: &'static str,
        options: Vec<(String, Option<String>)>,
        attrs: u64,
    },
    /// An empty read-only tmpfs for a directory, `/dev/null` for a file.
    Mask,
}

#[derive(Debug)]
struct Mount {
    target: PathBuf,
    kind: TargetKind,
    source: Source,
}

/// Collects steps and their descriptions.
#[derive(Debug, Default)]
struct Builder {
    steps: Vec<Step>,
    descriptions: Vec<String>,
    registers: usize,
}

impl Builder {
    fn push(&mut self, step: Step, description: impl Into<String>) {
        self.steps.push(step);
        self.descriptions.push(description.into());
    }

    fn register(&mut self) -> Reg {
        self.registers += 1;
        self.registers - 1
    }

    fn host_tree(&mut self, path: &Path, recursive: bool, attrs: u64) -> Result<Reg> {
        let out = self.register();
        self.push(
            Step::OpenTree {
                path: path_cstring(path)?,
                recursive,
                out,
            },
            format!("open_tree {}", path.display()),
        );
        self.push(
            Step::SetMountAttrs {
                mount: out,
                set: attrs,
                recursive,
            },
            format!("mount_setattr {}", path.display()),
        );
        Ok(out)
    }

    fn new_fs(
        &mut self,
        fstype: &'static str,
        options: &[(String, Option<String>)],
        attrs: u64,
        target: &Path,
    ) -> Result<Reg> {
        let out = self.register();
        let source = [("source".to_string(), Some(fstype.to_string()))];
        let options = source
            .iter()
            .chain(options)
            .map(|(k, v)| {
                Ok((
                    cstring("mount option", k.as_bytes())?,
                    v.as_deref()
                        .map(|v| cstring("mount option", v.as_bytes()))
                        .transpose()?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.push(
            Step::NewFilesystem {
                fstype: cstring("fstype", fstype.as_bytes())?,
                options,
                attrs,
                out,
            },
            format!("{fstype} for {}", target.display()),
        );
        Ok(out)
    }

    fn resolve(
        &mut self,
        base: Reg,
        target: &Path,
        kind: TargetKind,
        create: bool,
        optional: bool,
    ) -> Result<Reg> {
        let out = self.register();
        self.push(
            Step::Resolve {
                base,
                components: components(target)?,
                kind,
                create,
                optional,
                out,
            },
            format!(
                "mount target {} (resolved beneath the new root, no symlinks)",
                target.display()
            ),
        );
        Ok(out)
    }
}

/// Builds the plan for one run.
pub(crate) fn build(
    policy: &Policy,
    decisions: &Decisions,
    seccomp: Option<&Arc<SeccompProgram>>,
    spec: &CommandSpec,
    fds: PlanFds,
    euid: u32,
    egid: u32,
) -> Result<Plan> {
    let mut b = Builder::default();
    let mut keep: Vec<c_int> = [
        fds.sync_read,
        fds.setup_write,
        fds.status_write,
        fds.egress_socket,
    ]
    .into_iter()
    .chain(fds.stdio)
    .filter(|&fd| fd >= 3)
    .collect();
    keep.sort_unstable();
    keep.dedup();
    b.push(Step::CloseFdsExcept(keep), "close the caller's fds");
    b.push(Step::ParentDeathSignal, "prctl(PR_SET_PDEATHSIG)");
    let (arg_start, arg_len) = argument_area();
    b.push(
        Step::HideCallerIdentity {
            arg_start,
            arg_len,
            name: cstring("process name", b"sandbox-init")?,
        },
        "hide the caller's command line",
    );
    b.push(Step::WaitForParent(fds.sync_read), "wait for the id maps");
    let root_caller = euid == 0;
    let writable_paths = writable_paths(policy, decisions.fs_mode);
    if decisions.namespaces {
        b.push(Step::UnshareCgroup, "unshare(CLONE_NEWCGROUP)");
        b.push(
            Step::MakeMountsPrivate,
            "make / private (MS_REC|MS_PRIVATE)",
        );
        // The network first: /dev/net/tun is reachable only before the
        // new root replaces the host's /dev.
        if decisions.new_netns {
            b.push(Step::LoopbackUp, "bring loopback up");
        }
        if decisions.egress {
            egress_steps(&mut b, policy, fds.egress_socket)?;
        }
        filesystem_steps(&mut b, policy, decisions.fs_mode)?;
        b.push(
            Step::SetHostname(cstring("hostname", b"sandbox")?),
            "sethostname",
        );
        // The parent moved us into our cgroups meanwhile (a cgroup v1
        // migration can take milliseconds: it overlaps the mounts).
        b.push(
            Step::WaitForParent(fds.sync_read),
            "wait to be placed in the run's cgroups",
        );
        b.push(Step::UnshareCgroup, "unshare(CLONE_NEWCGROUP)");
        b.push(
            Step::DropBoundingAndAmbient,
            "drop the bounding and ambient capability sets",
        );
        if root_caller {
            b.push(Step::ClearGroups, "setgroups(0)");
        }
        b.push(
            Step::SetGid(decisions.gid),
            format!("setresgid({})", decisions.gid),
        );
        b.push(
            Step::SetUid(decisions.uid),
            format!("setresuid({})", decisions.uid),
        );
    }
    b.push(Step::ClearCapabilities, "capset(0)");
    b.push(Step::NoNewPrivs, "prctl(PR_SET_NO_NEW_PRIVS)");
    // Changing credentials cleared the parent-death signal: set it again,
    // then make sure the parent did not die in between.
    b.push(Step::ParentDeathSignal, "prctl(PR_SET_PDEATHSIG) again");
    b.push(
        Step::CheckParentAlive(fds.sync_read),
        "check that the parent is alive",
    );
    let init_steps = std::mem::take(&mut b.steps);

    // The command's side.
    b.push(Step::ResetSignals, "reset signal mask and dispositions");
    b.push(Step::NewSession, "setsid");
    b.push(Step::Stdio(fds.stdio), "dup2 stdin, stdout, stderr");
    b.push(Step::CloseOnExecAbove2, "close_range(3.., CLOEXEC)");
    let workdir = match &spec.current_dir {
        Some(dir) => dir.clone(),
        None => policy
            .filesystem
            .workdir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/")),
    };
    if !workdir.is_absolute() {
        return Err(Error::InvalidCommand {
            reason: format!(
                "the working directory {} must be an absolute path inside the sandbox",
                workdir.display()
            ),
        });
    }
    b.push(
        Step::Chdir(path_cstring(&workdir)?),
        format!("chdir {}", workdir.display()),
    );
    for (resource, soft, hard, name) in rlimits(policy) {
        b.push(
            Step::Rlimit {
                resource,
                soft,
                hard,
            },
            format!("setrlimit({name})"),
        );
    }
    if let Some(abi) = decisions.landlock_abi {
        b.push(
            landlock_step(abi, &writable_paths)?,
            format!("Landlock (ABI {abi})"),
        );
    }
    if let (Some(program), true) = (seccomp, decisions.seccomp != SeccompMode::Off) {
        b.push(
            Step::Seccomp {
                filters: program.raw_filters(),
                _owner: Arc::clone(program),
            },
            "install the seccomp filter",
        );
    }
    let envp = environment(policy, spec)?;
    let candidates = exec_candidates(&spec.program, &envp)?;
    let program_display = spec.program.to_string_lossy().into_owned();
    let argv = std::iter::once(&spec.program)
        .chain(&spec.args)
        .map(|a| cstring("an argument", a.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let envp = envp
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring("an environment variable", &kv)
        })
        .collect::<Result<Vec<_>>>()?;
    b.push(
        Step::Exec {
            candidates,
            argv: CStringArray::new(argv),
            envp: CStringArray::new(envp),
        },
        format!("execve {program_display}"),
    );
    let command_steps = std::mem::take(&mut b.steps);
    b.descriptions.push("fork the command process".into());

    let mut namespaces = 0;
    if decisions.namespaces {
        namespaces = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        if decisions.new_netns {
            namespaces |= libc::CLONE_NEWNET;
        }
    }
    let (uid, gid) = (decisions.uid, decisions.gid);
    let id_map = |inside: u32, host: u32| {
        if !root_caller {
            format!("{inside} {host} 1\n")
        } else if inside == 0 {
            // The sandbox's root is the host's nobody, setup included.
            "0 65534 1\n".to_string()
        } else {
            // Setup runs as root of the namespace (host root, no
            // capabilities outside it); the command as the host's nobody.
            format!("0 0 1\n{inside} 65534 1\n")
        }
    };
    let close_after_fork = fds.stdio.into_iter().filter(|&fd| fd >= 3).collect();
    Ok(Plan {
        child: ChildPlan {
            init_steps,
            command_steps,
            registers: b.registers,
            setup_fd: fds.setup_write,
            status_fd: fds.status_write,
            close_after_fork,
        },
        descriptions: b.descriptions,
        namespaces,
        uid_map: id_map(uid, euid),
        gid_map: id_map(gid, egid),
        deny_setgroups: !root_caller,
    })
}

/// The egress network: the ruleset first, then the tap (link 2 of the new
/// namespace) configured and up, and its fd handed to the parent.
fn egress_steps(b: &mut Builder, policy: &Policy, socket: c_int) -> Result<()> {
    use sandbox_net::{EgressAddressing, FdPassBuffer, Gateway, Ruleset, tap_setup};
    let prepare = |what: &str| {
        let what = what.to_string();
        move |e: sandbox_net::Error| Error::Prepare {
            what,
            source: std::io::Error::other(e.to_string()),
        }
    };
    const TAP_INDEX: u32 = 2;
    let addressing = EgressAddressing::default();
    let batch = Ruleset::from_network(&policy.network, &Gateway::default())
        .batch()
        .map_err(prepare("build the nftables batch"))?;
    b.push(
        Step::NftBatch {
            bytes: batch.as_bytes().to_vec(),
            acks: batch.acks(),
        },
        "install the egress ruleset (nftables)",
    );
    let tap = b.register();
    b.push(
        Step::CreateTap {
            name: cstring("interface name", addressing.name.as_bytes())?,
            index: TAP_INDEX as c_int,
            out: tap,
        },
        format!("create {} (/dev/net/tun, TUNSETIFF)", addressing.name),
    );
    let setup = tap_setup(&addressing, TAP_INDEX).map_err(prepare("build the tap's requests"))?;
    b.push(
        Step::Netlink {
            bytes: setup.as_bytes().to_vec(),
            count: setup.len() as u32,
        },
        format!(
            "configure {} (MTU, queue, addresses, up, routes)",
            addressing.name
        ),
    );
    b.push(
        Step::SendFd {
            socket,
            reg: tap,
            buffer: std::cell::RefCell::new(FdPassBuffer::new()),
        },
        "pass the tap fd to the parent",
    );
    b.push(Step::Close(tap), "close the tap");
    Ok(())
}

/// Where this process's argv lives (`/proc/self/stat` fields 48 and 49),
/// read once: PID 1 of a sandbox zeroes its copy. `(0, 0)` if unknown.
fn argument_area() -> (usize, usize) {
    static AREA: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
    *AREA.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may hold spaces and
        // parentheses) start at field 3.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok());
        match (field(48), field(49)) {
            (Some(start), Some(end)) if end > start => (start, end - start),
            _ => (0, 0),
        }
    })
}

/// Paths the sandbox may write beneath (for Landlock), with whether each
/// is a directory.
fn writable_paths(policy: &Policy, mode: FsMode) -> Vec<(PathBuf, bool)> {
    let fs = &policy.filesystem;
    if mode == FsMode::Off {
        return vec![(PathBuf::from("/"), true)];
    }
    let mut out: Vec<(PathBuf, bool)> = ["/dev/shm", "/dev/pts"]
        .into_iter()
        .map(|p| (PathBuf::from(p), true))
        .collect();
    out.extend(fs.tmpfs.iter().flatten().map(|t| (t.target.clone(), true)));
    out.extend(
        fs.binds
            .iter()
            .flatten()
            .filter(|b| b.writable)
            .map(|b| (b.target.clone(), b.source.is_dir())),
    );
    out
}

mod landlock_access {
    pub(super) const EXECUTE: u64 = 1 << 0;
    pub(super) const WRITE_FILE: u64 = 1 << 1;
    pub(super) const READ_FILE: u64 = 1 << 2;
    pub(super) const READ_DIR: u64 = 1 << 3;
    pub(super) const MAKE_CHAR: u64 = 1 << 6;
    pub(super) const MAKE_BLOCK: u64 = 1 << 11;
    pub(super) const TRUNCATE: u64 = 1 << 14;
    pub(super) const IOCTL_DEV: u64 = 1 << 15;
}

fn landlock_step(abi: u32, writable: &[(PathBuf, bool)]) -> Result<Step> {
    use landlock_access::*;
    let handled = match abi {
        1 => (1 << 13) - 1,
        2 => (1 << 14) - 1,
        3 | 4 => (1 << 15) - 1,
        _ => (1 << 16) - 1,
    };
    let file_rights = (EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV) & handled;
    let all = handled & !(MAKE_CHAR | MAKE_BLOCK);
    let read = EXECUTE | READ_FILE | READ_DIR;
    let mut rules = vec![
        (path_cstring(Path::new("/"))?, read),
        (
            path_cstring(Path::new("/dev"))?,
            (read | WRITE_FILE | IOCTL_DEV) & handled,
        ),
    ];
    for (path, is_dir) in writable {
        rules.push((path_cstring(path)?, if *is_dir { all } else { file_rights }));
    }
    let scoped = if abi >= 6 { 0b11 } else { 0 };
    let attr_size = match abi {
        1..=3 => 8,
        4 | 5 => 16,
        _ => 24,
    };
    Ok(Step::Landlock {
        handled: [handled, 0, scoped],
        attr_size,
        rules,
    })
}

fn rlimits(policy: &Policy) -> Vec<(u32, u64, u64, &'static str)> {
    let r = &policy.resources;
    let mut out = vec![(libc::RLIMIT_CORE, 0, 0, "RLIMIT_CORE")];
    if let Some(Limit::Max(t)) = r.cpu_time {
        let secs = t.as_millis().div_ceil(1000).max(1);
        out.push((libc::RLIMIT_CPU, secs, secs + 1, "RLIMIT_CPU"));
    }
    if let Some(Limit::Max(n)) = r.max_file_size {
        out.push((libc::RLIMIT_FSIZE, n.bytes(), n.bytes(), "RLIMIT_FSIZE"));
    }
    if let Some(Limit::Max(n)) = r.open_files {
        out.push((
            libc::RLIMIT_NOFILE,
            u64::from(n),
            u64::from(n),
            "RLIMIT_NOFILE",
        ));
    }
    out
}

/// The command's environment: the caller's variables the policy lets
/// through, then the policy's `set`, then the command's own `env`.
pub(crate) fn environment(
    policy: &Policy,
    spec: &CommandSpec,
) -> Result<Vec<(OsString, OsString)>> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k.to_str().is_some_and(|k| policy.env.passes(k)))
        .collect();
    let mut set = |k: OsString, v: OsString| {
        env.retain(|(existing, _)| *existing != k);
        env.push((k, v));
    };
    for (k, v) in policy.env.set.iter().flatten() {
        set(k.into(), v.into());
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.as_bytes().contains(&b'=') {
            return Err(Error::InvalidCommand {
                reason: format!("invalid environment variable name {k:?}"),
            });
        }
        set(k.clone(), v.clone());
    }
    Ok(env)
}

fn exec_candidates(program: &OsStr, env: &[(OsString, OsString)]) -> Result<Vec<CString>> {
    if program.is_empty() {
        return Err(Error::InvalidCommand {
            reason: "the program is empty".into(),
        });
    }
    if program.as_bytes().contains(&b'/') {
        return Ok(vec![cstring("the program", program.as_bytes())?]);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"), |(_, v)| {
            v.as_os_str()
        });
    path.as_bytes()
        .split(|&b| b == b':')
        .filter(|dir| dir.first() == Some(&b'/'))
        .map(|dir| {
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(program.as_bytes());
            cstring("the program", &full)
        })
        .collect()
}

fn filesystem_steps(b: &mut Builder, policy: &Policy, mode: FsMode) -> Result<()> {
    let fs = &policy.filesystem;
    let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    let mut mounts: Vec<Mount> = Vec::new();
    let mut symlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    if mode == FsMode::Minimal {
        for path in SYSTEM_PATHS {
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(path)
                        .map_err(Error::prepare(format!("read the symlink {path}")))?;
                    symlinks.push((PathBuf::from(path), target));
                }
                Ok(m) if m.is_dir() => mounts.push(Mount {
                    target: PathBuf::from(path),
                    kind: TargetKind::Dir,
                    source: Source::Host {
                        path: PathBuf::from(path),
                        recursive: true,
                        attrs: ro,
                    },
                }),
                _ => {}
            }
        }
    }
    mounts.push(Mount {
        target: PathBuf::from("/proc"),
        kind: TargetKind::Dir,
        source: Source::New {
            fstype: "proc",
            options: Vec::new(),
            attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        },
    });
    if mode != FsMode::Off {
        mounts.push(Mount {
            target: PathBuf::from("/dev"),
            kind: TargetKind::Dir,
            source: Source::New {
                fstype: "tmpfs",
                options: vec![
                    ("mode".into(), Some("0755".into())),
                    ("size".into(), Some("65536".into())),
                ],
                attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
            },
        });
        for dev in DEVICES {
            let host = Path::new("/dev").join(dev);
            if host.exists() {
                mounts.push(Mount {
                    target: host.clone(),
                    kind: TargetKind::File,
                    source: Source::Host {
                        path: host,
                        recursive: false,
                        attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
                    },
                });
            }
        }
        mounts.push(Mount {
            target: PathBuf::from("/dev/pts"),
            kind: TargetKind::Dir,
            source: Source::New {
                fstype: "devpts",
                options: vec![
                    ("newinstance".into(), None),
                    ("ptmxmode".into(), Some("0666".into())),
                    ("mode".into(), Some("0620".into())),
                ],
                attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
            },
        });
        mounts.push(Mount {
            target: PathBuf::from("/dev/shm"),
            kind: TargetKind::Dir,
            source: Source::New {
                fstype: "tmpfs",
                options: vec![("mode".into(), Some("1777".into()))],
                attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            },
        });
        for (link, target) in [
            ("/dev/ptmx", "pts/ptmx"),
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
        ] {
            symlinks.push((PathBuf::from(link), PathBuf::from(target)));
        }
    }
    for t in fs.tmpfs.iter().flatten() {
        let mut options = vec![("mode".to_string(), Some("1777".to_string()))];
        if let Some(size) = t.size {
            options.push(("size".into(), Some(size.bytes().to_string())));
        }
        mounts.push(Mount {
            target: t.target.clone(),
            kind: TargetKind::Dir,
            source: Source::New {
                fstype: "tmpfs",
                options,
                attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            },
        });
    }
    for bind in fs.binds.iter().flatten() {
        let meta = std::fs::metadata(&bind.source).map_err(Error::prepare(format!(
            "bind source {} (for {})",
            bind.source.display(),
            bind.target.display()
        )))?;
        mounts.push(Mount {
            target: bind.target.clone(),
            kind: if meta.is_dir() {
                TargetKind::Dir
            } else {
                TargetKind::File
            },
            source: Source::Host {
                path: bind.source.clone(),
                recursive: true,
                attrs: if bind.writable {
                    MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                } else {
                    ro
                },
            },
        });
    }
    for mask in fs.mask.iter().flatten() {
        mounts.push(Mount {
            target: mask.clone(),
            kind: TargetKind::Existing,
            source: Source::Mask,
        });
    }
    // Parents before children, so no later mount hides an earlier one.
    mounts.sort_by_key(|m| m.target.components().count());

    // Sources first: host trees must be opened before the staging mount
    // hides anything.
    let mut sources: Vec<(Reg, Option<Reg>)> = Vec::new();
    for m in &mounts {
        sources.push(match &m.source {
            Source::Host {
                path,
                recursive,
                attrs,
            } => (b.host_tree(path, *recursive, *attrs)?, None),
            Source::New {
                fstype,
                options,
                attrs,
            } => (b.new_fs(fstype, options, *attrs, &m.target)?, None),
            Source::Mask => (
                b.new_fs(
                    "tmpfs",
                    &[
                        ("mode".into(), Some("0".into())),
                        ("size".into(), Some("4096".into())),
                    ],
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                    &m.target,
                )?,
                Some(b.host_tree(
                    Path::new("/dev/null"),
                    false,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
                )?),
            ),
        });
    }
    let root = match mode {
        FsMode::Minimal => b.new_fs(
            "tmpfs",
            &[("mode".into(), Some("0755".into()))],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            Path::new("/"),
        )?,
        FsMode::HostReadonly => b.host_tree(Path::new("/"), true, ro)?,
        FsMode::Off => {
            let out = b.register();
            b.push(
                Step::OpenDir {
                    path: path_cstring(Path::new("/"))?,
                    out,
                },
                "open /",
            );
            out
        }
    };
    let pivot = mode != FsMode::Off;
    if pivot {
        b.push(
            Step::AttachAt {
                mount: root,
                path: path_cstring(Path::new(STAGING))?,
            },
            format!("attach the new root at {STAGING} (private mount namespace)"),
        );
    }
    for (m, (source, file_source)) in mounts.iter().zip(sources) {
        let optional = matches!(m.source, Source::Mask);
        let target = b.resolve(root, &m.target, m.kind, pivot && !optional, optional)?;
        match file_source {
            Some(file_source) => b.push(
                Step::Mask {
                    target,
                    dir_source: source,
                    file_source,
                },
                format!("mask {}", m.target.display()),
            ),
            None => b.push(
                Step::MoveMount {
                    from: source,
                    to: target,
                },
                format!("mount on {}", m.target.display()),
            ),
        }
    }
    for (link, target) in symlinks {
        let name = link.file_name().map(Path::new).unwrap_or(Path::new(""));
        let parent = link.parent().unwrap_or(Path::new("/"));
        let dir = if parent == Path::new("/") {
            root
        } else {
            b.resolve(root, parent, TargetKind::Dir, false, false)?
        };
        b.push(
            Step::Symlink {
                dir,
                name: path_cstring(name)?,
                target: path_cstring(&target)?,
            },
            format!("symlink {} -> {}", link.display(), target.display()),
        );
        if dir != root {
            b.push(Step::Close(dir), "close");
        }
    }
    if pivot {
        // The minimal /dev is complete: make it read-only (its devices stay
        // writable, being devices).
        let dev = b.resolve(root, Path::new("/dev"), TargetKind::Dir, false, false)?;
        b.push(
            Step::SetMountAttrs {
                mount: dev,
                set: MOUNT_ATTR_RDONLY,
                recursive: false,
            },
            "make /dev read-only",
        );
        b.push(Step::Close(dev), "close");
        b.push(Step::PivotRoot { root }, "pivot_root into the new root");
        if mode == FsMode::Minimal {
            b.push(Step::RootReadOnly, "make / read-only");
        }
    } else {
        b.push(Step::Close(root), "close /");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str) -> CommandSpec {
        CommandSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
        }
    }

    #[test]
    fn program_lookup_follows_the_sandbox_path() {
        let env = vec![(OsString::from("PATH"), OsString::from("/a:relative:/b"))];
        let found = exec_candidates(OsStr::new("sh"), &env).unwrap();
        assert_eq!(found, [c"/a/sh".to_owned(), c"/b/sh".to_owned()]);
        let direct = exec_candidates(OsStr::new("./x"), &env).unwrap();
        assert_eq!(direct, [c"./x".to_owned()]);
        let default = exec_candidates(OsStr::new("true"), &[]).unwrap();
        assert_eq!(default.len(), 3);
        assert!(exec_candidates(OsStr::new(""), &env).is_err());
    }

    #[test]
    fn environment_layers_caller_policy_and_command() {
        let policy =
            Policy::from_toml_str("[env]\nallow = []\nset = { A = \"policy\", B = \"policy\" }\n")
                .unwrap();
        let mut s = spec("true");
        s.env.push(("B".into(), "command".into()));
        let env = environment(&policy, &s).unwrap();
        assert_eq!(
            env,
            [
                (OsString::from("A"), OsString::from("policy")),
                (OsString::from("B"), OsString::from("command"))
            ]
        );
        s.env.push(("C=D".into(), "x".into()));
        assert!(environment(&policy, &s).is_err());
    }

    #[test]
    fn paths_with_dotdot_are_refused() {
        assert!(components(Path::new("/a/../b")).is_err());
        assert_eq!(components(Path::new("/a/./b/")).unwrap().len(), 2);
    }

    #[test]
    fn rlimits_follow_the_policy_and_core_dumps_are_off() {
        let policy = Policy::from_toml_str(
            "[resources]\ncpu_time = \"1500ms\"\nmax_file_size = \"unlimited\"\nopen_files = 9\n",
        )
        .unwrap();
        let limits = rlimits(&policy);
        assert_eq!(limits[0], (libc::RLIMIT_CORE, 0, 0, "RLIMIT_CORE"));
        assert!(limits.contains(&(libc::RLIMIT_CPU, 2, 3, "RLIMIT_CPU")));
        assert!(limits.contains(&(libc::RLIMIT_NOFILE, 9, 9, "RLIMIT_NOFILE")));
        assert!(!limits.iter().any(|l| l.0 == libc::RLIMIT_FSIZE));
    }

    #[test]
    fn landlock_rights_match_the_abi() {
        let Step::Landlock {
            handled,
            attr_size,
            rules,
        } = landlock_step(1, &[(PathBuf::from("/tmp"), true)]).unwrap()
        else {
            panic!()
        };
        assert_eq!(handled, [(1 << 13) - 1, 0, 0]);
        assert_eq!(attr_size, 8);
        assert!(rules.iter().all(|(_, access)| access & !handled[0] == 0));
        let Step::Landlock { handled, rules, .. } =
            landlock_step(7, &[(PathBuf::from("/out/file"), false)]).unwrap()
        else {
            panic!()
        };
        assert_eq!(handled[2], 0b11, "signals and abstract sockets scoped");
        // A rule on a file carries file rights only.
        assert_eq!(rules[2].1 & landlock_access::READ_DIR, 0);
    }
}
