//! The command's rlimits: the policy's time, file size and open-file
//! limits, no core dumps, `RLIMIT_NPROC` where it stands in for a pids
//! cgroup and `RLIMIT_SIGPENDING` (a kernel quota); and the report lines
//! of the per-run limits that need no cgroup.

use rustix::process::Resource;
use sandbox_policy::{Limit, Policy};

use crate::findings::Findings;
use crate::namespaces::Namespaces;
use crate::report::Layer;

/// The report lines of the wall-clock limit, the rlimits and the output
/// caps (all always enforced).
pub(crate) fn decide(policy: &Policy, namespaces: &Namespaces, found: &mut Findings) {
    let r = &policy.resources;
    let mut mechanism = |text: String| found.mechanism(Layer::Resources, text);
    if let Some(Limit::Max(t)) = r.wall_time {
        mechanism(format!(
            "wall_time {t}: {}",
            if namespaces.made() {
                "SIGKILL to the sandbox's pid namespace"
            } else {
                "SIGKILL to the sandbox's first process"
            }
        ));
    }
    if let Some(Limit::Max(t)) = r.cpu_time {
        mechanism(format!("cpu_time {t} per process: RLIMIT_CPU"));
    }
    if let Some(Limit::Max(n)) = r.max_file_size {
        mechanism(format!("max_file_size {n}: RLIMIT_FSIZE"));
    }
    if let Some(Limit::Max(n)) = r.open_files {
        mechanism(format!("open_files {n}: RLIMIT_NOFILE"));
    }
    mechanism("no core dumps: RLIMIT_CORE 0".into());
    match r.max_output_bytes {
        Some(Limit::Max(n)) => mechanism(format!(
            "stdout and stderr kept up to {n} each, the rest drained and dropped"
        )),
        _ => mechanism("stdout and stderr kept whole (max_output_bytes unlimited)".into()),
    }
}

/// The rlimits of the command: the policy's, `RLIMIT_NPROC` when it
/// stands in for a pids cgroup, and `RLIMIT_SIGPENDING` (a kernel quota).
pub(crate) fn rlimits(
    policy: &Policy,
    nproc: Option<u32>,
    pending_signals: Option<u32>,
) -> Vec<(Resource, u64, u64, &'static str)> {
    let r = &policy.resources;
    let mut out = vec![(Resource::Core, 0, 0, "RLIMIT_CORE")];
    if let Some(n) = pending_signals {
        out.push((
            Resource::Sigpending,
            u64::from(n),
            u64::from(n),
            "RLIMIT_SIGPENDING",
        ));
    }
    if let Some(n) = nproc {
        out.push((Resource::Nproc, u64::from(n), u64::from(n), "RLIMIT_NPROC"));
    }
    if let Some(Limit::Max(t)) = r.cpu_time {
        let secs = t.as_millis().div_ceil(1000).max(1);
        out.push((Resource::Cpu, secs, secs + 1, "RLIMIT_CPU"));
    }
    if let Some(Limit::Max(n)) = r.max_file_size {
        out.push((Resource::Fsize, n.bytes(), n.bytes(), "RLIMIT_FSIZE"));
    }
    if let Some(Limit::Max(n)) = r.open_files {
        out.push((
            Resource::Nofile,
            u64::from(n),
            u64::from(n),
            "RLIMIT_NOFILE",
        ));
    }
    out
}
