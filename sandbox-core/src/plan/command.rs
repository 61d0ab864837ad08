//! The command's side of the plan: environment, program lookup, rlimits,
//! Landlock rules; and where the caller's argv lives (PID 1 hides it).

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::process::Resource;
use sandbox_policy::{FsMode, Limit, Policy};

use crate::error::{Error, Result};
use sandbox_child::Step;

use super::{CommandSpec, cstring, path_cstring};

/// Where this process's argv lives (`/proc/self/stat` fields 48 and 49),
/// read once: PID 1 of a sandbox zeroes its copy. `(0, 0)` if unknown.
pub(super) fn argument_area() -> (usize, usize) {
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
pub(super) fn writable_paths(policy: &Policy, mode: FsMode) -> Vec<(PathBuf, bool)> {
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

pub(super) mod landlock_access {
    pub(in crate::plan) const EXECUTE: u64 = 1 << 0;
    pub(in crate::plan) const WRITE_FILE: u64 = 1 << 1;
    pub(in crate::plan) const READ_FILE: u64 = 1 << 2;
    pub(in crate::plan) const READ_DIR: u64 = 1 << 3;
    pub(in crate::plan) const MAKE_CHAR: u64 = 1 << 6;
    pub(in crate::plan) const MAKE_BLOCK: u64 = 1 << 11;
    pub(in crate::plan) const TRUNCATE: u64 = 1 << 14;
    pub(in crate::plan) const IOCTL_DEV: u64 = 1 << 15;
}

pub(super) fn landlock_step(abi: u32, writable: &[(PathBuf, bool)]) -> Result<Step> {
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

/// The rlimits of the command: the policy's, `RLIMIT_NPROC` when it
/// stands in for a pids cgroup, and `RLIMIT_SIGPENDING` (a kernel quota).
pub(super) fn rlimits(
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

pub(super) fn exec_candidates(
    program: &OsStr,
    env: &[(OsString, OsString)],
) -> Result<Vec<CString>> {
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
