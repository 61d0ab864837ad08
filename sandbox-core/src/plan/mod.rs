//! Building the child's plan in the parent (DESIGN principle 2): every
//! path, string, map and filter is made here, before the clone.
//!
//! `mod.rs` assembles the steps; `filesystem.rs` builds the new root,
//! `command.rs` the command's side (environment, program lookup, rlimits,
//! Landlock), `egress.rs` the allowlisted network.

use std::ffi::{OsString, c_int};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use sandbox_policy::{Policy, SeccompMode};

use crate::decide::Decisions;
use crate::error::{Error, Result};
use crate::seccomp::SeccompProgram;
use sandbox_child::{CStringArray, ChildPlan, NO_FD, Reg, Step};

pub(crate) mod builder;
mod command;
mod handoff;
mod ids;

pub(crate) use builder::{Builder, cstring, path_cstring};
pub(crate) use handoff::handoff_sockets;
pub(crate) use ids::RunIdentity;
use ids::id_maps;

use crate::landlock::writable_paths;
use crate::mount::plan::filesystem_steps;
use crate::network::plan::{egress_steps, resolv_conf_text};
use crate::rlimit::rlimits;
pub(crate) use command::environment;
use command::{argument_area, exec_candidates};

/// The fds the parent made for the child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanFds<'a> {
    pub(crate) sync_read: c_int,
    pub(crate) setup_write: c_int,
    pub(crate) status_write: c_int,
    /// The command's stdin, stdout, stderr (`NO_FD`: inherit the caller's).
    pub(crate) stdio: [c_int; 3],
    /// The child's end of the socket the tap fd goes out on (none without
    /// allowlisted egress).
    pub(crate) egress_socket: Option<BorrowedFd<'a>>,
    /// A terminal of the command's own (then `stdio` is unused).
    pub(crate) pty: Option<PtyPlan<'a>>,
    /// cgroup v1 `tasks` files PID 1 joins first (see `Step::JoinCgroup`).
    pub(crate) cgroup_tasks: &'a [c_int],
    /// The child's end of the socket each tmpfs overlay upper goes out on
    /// (for the run's change list), if there is one.
    pub(crate) overlay_socket: Option<BorrowedFd<'a>>,
    /// A network namespace made ahead with loopback up (`netns_pool`),
    /// which the cloning thread joins: the clone makes none, and PID 1
    /// brings no loopback up.
    pub(crate) netns: Option<BorrowedFd<'a>>,
}

/// The command's pseudo-terminal: made in the sandbox's devpts, its master
/// sent to the parent over `socket`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PtyPlan<'a> {
    pub(crate) socket: BorrowedFd<'a>,
    pub(crate) rows: u16,
    pub(crate) cols: u16,
}

/// What to run, as the command builder collected it.
#[derive(Debug, Clone)]
pub(crate) struct CommandSpec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    /// The command's own changes, in order: a value set, or (`None`) a
    /// variable removed.
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    /// Nothing of the caller's environment is passed (`env_clear`).
    pub(crate) env_clear: bool,
    pub(crate) current_dir: Option<PathBuf>,
}

/// The plan, with what the parent needs to run it.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) child: ChildPlan,
    /// The parent's half (which a thread of its own may run).
    pub(crate) parent: ParentPlan,
}

/// What the parent does for a run, and how it names the child's steps.
#[derive(Debug)]
pub(crate) struct ParentPlan {
    /// One description per step, PID 1's then the command's, then the
    /// fork itself.
    pub(crate) descriptions: Vec<String>,
    /// `CLONE_NEW*` flags for the clone.
    pub(crate) namespaces: c_int,
    /// Written by the parent to `/proc/<pid>/…` (if namespaces).
    pub(crate) uid_map: String,
    pub(crate) gid_map: String,
    pub(crate) deny_setgroups: bool,
    /// The host uid that creates (and so owns) the run's user namespace,
    /// if not the caller's: a root caller's run id (see `quotas`).
    pub(crate) owner: Option<u32>,
    /// The setup's phases: the index of each one's first step, and its
    /// name, in order.
    pub(crate) phases: Vec<(usize, &'static str)>,
    /// The lowers the parent sends idmapped (see `idmap`), in the order
    /// the child receives them.
    pub(crate) idmap_lowers: Vec<std::path::PathBuf>,
}

/// PID 1's first steps: join its cgroup v1 cgroups, close the caller's
/// fds, the parent-death signal, hide the caller's command line, wait for
/// the id maps.
fn start_steps(b: &mut Builder, fds: &PlanFds<'_>, shared: bool) -> Result<()> {
    for &tasks in fds.cgroup_tasks {
        b.push(
            Step::JoinCgroup(tasks),
            "join a cgroup v1 cgroup of the run",
        );
    }
    let mut keep: Vec<c_int> = [
        fds.sync_read,
        fds.setup_write,
        fds.status_write,
        fds.egress_socket.map_or(NO_FD, |s| s.as_raw_fd()),
        fds.overlay_socket.map_or(NO_FD, |s| s.as_raw_fd()),
        fds.pty.map_or(NO_FD, |p| p.socket.as_raw_fd()),
        sandbox_child::reaper_fd().map_or(NO_FD, |fd| fd.as_raw_fd()),
    ]
    .into_iter()
    .chain(fds.stdio)
    .filter(|&fd| fd >= 3)
    .collect();
    keep.sort_unstable();
    keep.dedup();
    b.push(Step::CloseFdsExcept(keep), "close the caller's fds");
    b.push(Step::ParentDeathSignal, "prctl(PR_SET_PDEATHSIG)");
    // A PID 1 sharing the caller's memory must not zero the caller's own
    // argv: it shows the reaper's once it execs it, before the command
    // can look.
    let (arg_start, arg_len) = if shared { (0, 0) } else { argument_area() };
    b.push(
        Step::HideCallerIdentity {
            arg_start,
            arg_len,
            name: cstring("process name", b"sandbox-init")?,
        },
        "hide the caller's command line",
    );
    b.push(Step::NewSession, "setsid (a session of the sandbox's own)");
    b.push(Step::WaitForParent(fds.sync_read), "wait for the id maps");
    Ok(())
}

/// PID 1's steps in its new namespaces: become the namespace's root, the
/// network, the new root, the hostname and kernel quotas; wait to be
/// placed in the run's cgroups; then give up the namespace's root.
fn namespace_steps(
    b: &mut Builder,
    policy: &Policy,
    decisions: &Decisions,
    fds: &PlanFds<'_>,
    root_caller: bool,
) -> Result<()> {
    let (uid, gid) = (decisions.credentials.uid, decisions.credentials.gid);
    if root_caller {
        // Become the namespace's root by its map: the clone kept the
        // caller's host uid 0, which a map of the sandbox's root to an
        // unprivileged host uid (privilege.user = "root") leaves
        // unmapped, and an unmapped uid cannot create a file.
        b.push(Step::ClearGroups, "setgroups(0)");
        b.push(Step::SetGid(0), "setresgid(0) (the namespace's root)");
        b.push(Step::SetUid(0), "setresuid(0) (the namespace's root)");
    }
    b.push(Step::UnshareCgroup, "unshare(CLONE_NEWCGROUP)");
    b.push(
        Step::MakeMountsPrivate,
        "make / private (MS_REC|MS_PRIVATE)",
    );
    // The network first: /dev/net/tun is reachable only before the
    // new root replaces the host's /dev.
    b.phase("network");
    if decisions.network.new_namespace() && fds.netns.is_none() {
        b.push(Step::LoopbackUp, "bring loopback up");
    }
    let egress_mtu = decisions.network.egress_mtu();
    if let Some(mtu) = egress_mtu {
        egress_steps(b, policy, mtu, gid, fds.egress_socket)?;
    }
    // With DNS through the gateway, the sandbox's /etc/resolv.conf
    // says so.
    let resolv_conf = (egress_mtu.is_some()
        && policy.network.dns_mode() != sandbox_policy::DnsMode::Off)
        .then(resolv_conf_text);
    b.phase("filesystem");
    filesystem_steps(
        b,
        policy,
        decisions,
        resolv_conf,
        fds.overlay_socket.map(|s| s.as_raw_fd()),
    )?;
    b.phase("identity");
    b.push(
        Step::SetHostname(cstring("hostname", b"sandbox")?),
        "sethostname",
    );
    // The kernel quotas of the run's user namespace (it holds
    // CAP_SYS_RESOURCE there until the capabilities go).
    for (name, value) in &decisions.quotas.sysctls {
        let path = format!("/proc/sys/user/{name}");
        b.push(
            Step::WriteSetting {
                path: cstring("sysctl path", path.as_bytes())?,
                contents: value.to_string().into_bytes(),
            },
            format!("write {value} to {path}"),
        );
    }
    // The parent moved us into our cgroups meanwhile (a cgroup v1
    // migration can take milliseconds: it overlaps the mounts).
    b.phase("cgroups");
    b.push(
        Step::WaitForParent(fds.sync_read),
        "wait to be placed in the run's cgroups",
    );
    b.phase("credentials");
    b.push(Step::UnshareCgroup, "unshare(CLONE_NEWCGROUP)");
    b.push(
        Step::DropBoundingAndAmbient,
        "drop the bounding and ambient capability sets",
    );
    if root_caller {
        b.push(Step::ClearGroups, "setgroups(0)");
    }
    b.push(Step::SetGid(gid), format!("setresgid({gid})"));
    b.push(Step::SetUid(uid), format!("setresuid({uid})"));
    Ok(())
}

/// PID 1's last steps with a pty: open it in the sandbox's devpts, send
/// the master to the parent, and make the slave the session's controlling
/// terminal; the slave's register, for the command.
fn terminal_steps(b: &mut Builder, pty: PtyPlan<'_>) -> Reg {
    b.phase("terminal");
    let (master, slave) = (b.register(), b.register());
    b.push(
        Step::OpenPty {
            master,
            slave,
            rows: pty.rows,
            cols: pty.cols,
        },
        "open a pseudo-terminal in the sandbox's devpts",
    );
    b.push(
        Step::SendFd {
            socket: pty.socket.as_raw_fd(),
            reg: master,
        },
        "send the terminal's master to the parent",
    );
    b.push(Step::Close(master), "close the terminal's master");
    b.push(
        Step::ControllingTerminal(slave),
        "the terminal as the session's controlling terminal",
    );
    slave
}

/// The privilege drop every run ends PID 1's setup with.
fn drop_steps(b: &mut Builder, fds: &PlanFds<'_>) {
    b.push(Step::ClearCapabilities, "capset(0)");
    b.push(Step::NoNewPrivs, "prctl(PR_SET_NO_NEW_PRIVS)");
    // Changing credentials cleared the parent-death signal: set it again,
    // then make sure the parent did not die in between.
    b.push(Step::ParentDeathSignal, "prctl(PR_SET_PDEATHSIG) again");
    b.push(
        Step::CheckParentAlive(fds.sync_read),
        "check that the parent is alive",
    );
}

/// The command process's steps, ending in `execve`.
fn command_steps(
    b: &mut Builder,
    policy: &Policy,
    decisions: &Decisions,
    seccomp: Option<&Arc<SeccompProgram>>,
    spec: &CommandSpec,
    fds: &PlanFds<'_>,
    terminal: Option<Reg>,
) -> Result<()> {
    let writable_paths = writable_paths(policy, decisions.fs_mode);
    b.phase("command");
    b.push(
        Step::NewProcessGroup,
        "setpgid (a process group of its own in the sandbox's session)",
    );
    match terminal {
        Some(slave) => b.push(
            Step::TerminalStdio(slave),
            "the terminal as stdin, stdout and stderr, in the foreground",
        ),
        None => b.push(Step::Stdio(fds.stdio), "dup2 stdin, stdout, stderr"),
    }
    b.push(Step::ResetSignals, "reset signal mask and dispositions");
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
    for (resource, soft, hard, name) in
        rlimits(policy, decisions.nproc, decisions.quotas.pending_signals)
    {
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
        b.phase("landlock");
        b.push(
            crate::landlock::step(abi, &writable_paths)?,
            format!("Landlock (ABI {abi})"),
        );
    }
    if let (Some(program), true) = (seccomp, decisions.seccomp != SeccompMode::Off) {
        b.phase("seccomp");
        b.push(
            Step::Seccomp {
                filters: program.raw_filters(),
                _owner: Arc::clone(program) as Arc<dyn std::any::Any + Send + Sync>,
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
    b.phase("exec");
    b.push(
        Step::Exec {
            candidates,
            argv: CStringArray::new(argv),
            envp: CStringArray::new(envp),
        },
        format!("execve {program_display}"),
    );
    Ok(())
}

/// Builds the plan for one run.
pub(crate) fn build(
    policy: &Policy,
    decisions: &Decisions,
    seccomp: Option<&Arc<SeccompProgram>>,
    spec: &CommandSpec,
    fds: PlanFds<'_>,
    identity: RunIdentity,
) -> Result<Plan> {
    let root_caller = identity.euid == 0;
    // PID 1 shares the caller's memory (no page table copied) for root
    // callers, whose PID 1 has host ids the sandbox's user does not (so
    // no process of the sandbox may read it meanwhile), where the reaper
    // runs.
    let shared = root_caller && decisions.namespaces.made() && sandbox_child::shared_clone_usable();
    let mut b = Builder::default();
    b.phase("start");
    start_steps(&mut b, &fds, shared)?;
    if decisions.namespaces.made() {
        namespace_steps(&mut b, policy, decisions, &fds, root_caller)?;
    }
    drop_steps(&mut b, &fds);
    let terminal = fds.pty.map(|pty| terminal_steps(&mut b, pty));
    let init_steps = std::mem::take(&mut b.steps);
    command_steps(&mut b, policy, decisions, seccomp, spec, &fds, terminal)?;
    let command_steps = std::mem::take(&mut b.steps);
    b.descriptions.push("fork the command process".into());
    let namespaces = decisions
        .namespaces
        .clone_flags(decisions.network.new_namespace() && fds.netns.is_none());
    let (uid_map, gid_map) = id_maps(decisions, identity);
    let close_after_fork = fds
        .stdio
        .into_iter()
        .chain(fds.pty.map(|p| p.socket.as_raw_fd()))
        .filter(|&fd| fd >= 3)
        .collect();
    Ok(Plan {
        child: ChildPlan {
            init_steps,
            command_steps,
            registers: b.registers,
            setup_fd: fds.setup_write,
            status_fd: fds.status_write,
            close_after_fork,
            reaper_fd: sandbox_child::reaper_fd().map_or(NO_FD, |fd| fd.as_raw_fd()),
            shared,
        },
        parent: ParentPlan {
            descriptions: b.descriptions,
            namespaces,
            uid_map,
            gid_map,
            owner: identity.run_id,
            deny_setgroups: !root_caller,
            phases: b.phases,
            idmap_lowers: crate::idmap::lowers(policy, decisions),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::builder::components;
    use super::*;
    use crate::landlock::access as landlock_access;
    use std::ffi::OsStr;
    use std::path::Path;

    fn spec(program: &str) -> CommandSpec {
        CommandSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
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
        s.env.push(("B".into(), Some("command".into())));
        let env = environment(&policy, &s).unwrap();
        assert_eq!(
            env,
            [
                (OsString::from("A"), OsString::from("policy")),
                (OsString::from("B"), OsString::from("command"))
            ]
        );
        s.env.push(("C=D".into(), Some("x".into())));
        assert!(environment(&policy, &s).is_err());
    }

    #[test]
    fn env_remove_and_env_clear_take_away_what_the_policy_and_caller_give() {
        // The test process has PATH; this policy passes it and sets A.
        let policy =
            Policy::from_toml_str("[env]\nallow = [\"PATH\"]\nset = { A = \"policy\" }\n").unwrap();
        let names = |s: &CommandSpec| -> Vec<OsString> {
            environment(&policy, s)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        let mut s = spec("true");
        // Control: both are there.
        assert_eq!(names(&s), [OsString::from("PATH"), OsString::from("A")]);
        s.env.push(("A".into(), None));
        assert_eq!(names(&s), [OsString::from("PATH")]);
        s.env.push(("A".into(), Some("again".into())));
        assert_eq!(names(&s), [OsString::from("PATH"), OsString::from("A")]);
        let mut cleared = spec("true");
        cleared.env_clear = true;
        assert_eq!(names(&cleared), [OsString::from("A")]);
    }

    #[test]
    fn paths_with_dotdot_are_refused() {
        assert!(components(Path::new("/a/../b")).is_err());
        assert_eq!(components(Path::new("/a/./b/")).unwrap().len(), 2);
    }

    #[test]
    fn rlimits_follow_the_policy_and_core_dumps_are_off() {
        use rustix::process::Resource;
        let policy = Policy::from_toml_str(
            "[resources]\ncpu_time = \"1500ms\"\nmax_file_size = \"unlimited\"\nopen_files = 9\n",
        )
        .unwrap();
        let limits = rlimits(&policy, None, None);
        assert_eq!(limits[0], (Resource::Core, 0, 0, "RLIMIT_CORE"));
        assert!(limits.contains(&(Resource::Cpu, 2, 3, "RLIMIT_CPU")));
        assert!(limits.contains(&(Resource::Nofile, 9, 9, "RLIMIT_NOFILE")));
        assert!(!limits.iter().any(|l| l.0 == Resource::Fsize));
        assert!(!limits.iter().any(|l| l.0 == Resource::Nproc));
        let with_nproc = rlimits(&policy, Some(16), Some(8));
        assert!(with_nproc.contains(&(Resource::Sigpending, 8, 8, "RLIMIT_SIGPENDING")));
        assert!(with_nproc.contains(&(Resource::Nproc, 16, 16, "RLIMIT_NPROC")));
    }

    #[test]
    fn landlock_rights_match_the_abi() {
        let Step::Landlock {
            handled,
            attr_size,
            rules,
        } = crate::landlock::step(1, &[(PathBuf::from("/tmp"), true)]).unwrap()
        else {
            panic!()
        };
        assert_eq!(handled, [(1 << 13) - 1, 0, 0]);
        assert_eq!(attr_size, 8);
        assert!(rules.iter().all(|(_, access)| access & !handled[0] == 0));
        let Step::Landlock { handled, rules, .. } =
            crate::landlock::step(7, &[(PathBuf::from("/out/file"), false)]).unwrap()
        else {
            panic!()
        };
        assert_eq!(handled[2], 0b11, "signals and abstract sockets scoped");
        // A rule on a file carries file rights only.
        assert_eq!(rules[2].1 & landlock_access::READ_DIR, 0);
    }
}
