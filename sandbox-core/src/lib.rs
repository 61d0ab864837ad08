//! Run a command in a native Linux namespace sandbox, with an honest report
//! of which layers were enforced. No helper binary: the library clones the
//! sandbox itself.
//!
//! A [`Sandbox`] is a [`Policy`](sandbox_policy::Policy) checked against
//! this host ([`probe`]); [`Sandbox::command`] builds a command in the shape
//! of [`std::process::Command`], and [`output`](SandboxCommand::output),
//! [`status`](SandboxCommand::status) or [`spawn`](SandboxCommand::spawn)
//! run it. Every run returns a [`RunOutcome`]: exit status, `timed_out`,
//! stdout and stderr capped at `max_output_bytes` (the rest drained, never
//! blocking the command), wall and CPU time, peak memory, and the
//! [`EffectiveSandbox`] report.
//!
//! The pipeline, per run:
//!
//! 1. **Decide** (once per `Sandbox`): each facility — namespaces, mounts,
//!    network, credentials, seccomp, Landlock, rlimits, cgroups, kernel
//!    quotas — reads the probe's findings and chooses: enforce, downgrade
//!    with a reason, or — with `on_unavailable = "fail"` — refuse the run
//!    with [`Error::Unavailable`] before anything is spawned.
//! 2. **Plan in the parent**: each facility adds its steps (`sandbox-child`'s
//!    step language) — mount list, id maps, rlimits, Landlock rules, the
//!    seccomp BPF, argv and env — all as prebuilt buffers.
//! 3. **Clone** PID 1 of the sandbox into new user, mount, pid, ipc, uts
//!    and (unless `network.mode = "host"`) network namespaces; the parent writes
//!    its uid/gid maps and places it in per-run cgroups (memory, pids)
//!    beneath the caller's own. The child runs the plan with raw syscalls
//!    and no allocation — safe from a multithreaded program: a minimal root
//!    on tmpfs with read-only binds, a fresh `/proc`, a minimal `/dev`,
//!    every mount target resolved beneath the new root with `openat2` and
//!    mounted by fd (`open_tree`, `fsmount`, `move_mount`), `pivot_root`;
//!    then hostname, loopback, the privilege drop (groups, uid/gid, every
//!    capability set including bounding and ambient, `no_new_privs`). For
//!    `network.mode = "allowlist"` the child first loads the egress
//!    ruleset and makes `tap0` (from bytes built here), hands the tap fd
//!    over, and the caller runs `sandbox-net`'s forwarder for the run.
//! 4. PID 1 forks the command, which starts a new session, keeps only fds
//!    0–2, sets its rlimits, applies Landlock, installs the seccomp filter
//!    last, and execs. PID 1 stays as a reaper; when the command ends it
//!    exits, and the kernel kills whatever is left in the pid namespace.
//!    The wall-clock limit is a `SIGKILL` to PID 1; the parent's death
//!    kills it too (`PR_SET_PDEATHSIG`).
//!
//! A setup step that fails comes back as [`Error::Setup`] naming the step
//! and its errno; nothing of the command has run.
//!
//! ```no_run
//! use sandbox_core::Sandbox;
//!
//! let sandbox = Sandbox::from_profile("default")?;
//! let outcome = sandbox
//!     .command("sh")
//!     .args(["-c", "id -u; echo x > /etc/y"])
//!     .output()?;
//! assert_eq!(outcome.stdout, b"65534\n");
//! assert!(String::from_utf8_lossy(&outcome.stderr).contains("Read-only file system"));
//! assert!(outcome.report.fully_enforced());
//! println!("{}", outcome.report); // what confined it, layer by layer
//! # Ok::<(), sandbox_core::Error>(())
//! ```
//!
//! The host probe on its own:
//!
//! ```
//! let host = sandbox_core::probe();
//! assert!(!host.kernel.is_empty());
//! ```
#![deny(missing_docs)]

mod ahead;
mod apply;
#[cfg(feature = "tokio")]
mod async_child;
mod cgroups;
mod changes;
mod child;
mod command;
mod copy_changes;
mod credentials;
mod decide;
mod egress_pool;
mod error;
mod findings;
mod forwarder;
mod host;
mod idmap;
mod landlock;
mod mount;
mod namespaces;
mod netns_pool;
mod network;
mod outcome;
mod plan;
mod probe;
mod probe_cache;
mod quotas;
mod relay;
mod report;
mod rlimit;
mod run;
mod sandbox;
mod seccomp;
mod sockets;
mod stdio;
mod supervisor;
mod sys;
mod timings;

pub use apply::{
    AppliedChanges, ApplyError, ApplyRefusal, ExportedChanges, MAX_APPLY_ENTRIES, apply_changes,
    export_changes,
};
#[cfg(feature = "tokio")]
pub use async_child::{AsyncChild, AsyncOutputReader};
pub use cgroups::{
    CgroupPlacement, CgroupStrategy, CgroupSupport, SUPERVISOR_LEAF, UnifiedHierarchy, V1Hierarchy,
    V2Placement,
};
pub use changes::{Change, ChangeKind, MAX_CHANGES, OverlayChanges, overlay_changes};
pub use child::{ChildControl, OutputReader, SandboxChild};
pub use command::SandboxCommand;
pub use egress_pool::set_forwarder_threads;
pub use error::{Error, Result};
pub use host::{Capability, HostCapabilities, MINIMUM_KERNEL};
pub use outcome::{EgressRefusalRecord, EgressStats, ExitStatus, RunOutcome};
pub use probe::{probe, probe_now};
pub use probe_cache::{ProbeSource, default_probe_cache_dir, probe_cached, reprobe_into_cache};
pub use quotas::RunIds;
pub use relay::JobControl;
pub use report::{Downgrade, EffectiveSandbox, Layer, LayerReport, Note};
pub use sandbox::Sandbox;
pub use seccomp::{
    DEFAULT_DENIED, KNOWN_SYSCALLS, STRICT_ALLOWED, SeccompError, SeccompOptions, SeccompProgram,
    syscall_number,
};
pub use stdio::Stdio;
pub use timings::RunTimings;
