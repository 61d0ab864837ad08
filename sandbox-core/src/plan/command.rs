//! The command's side of the plan: environment and program lookup; and
//! where the caller's argv lives (PID 1 hides it).

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use sandbox_policy::Policy;

use crate::error::{Error, Result};

use super::{CommandSpec, cstring};

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

/// The command's environment: the caller's variables the policy lets
/// through (none after `env_clear`), then the policy's `set`, then the
/// command's own changes in order (`env`, `env_remove`).
pub(crate) fn environment(
    policy: &Policy,
    spec: &CommandSpec,
) -> Result<Vec<(OsString, OsString)>> {
    let mut env: Vec<(OsString, OsString)> = if spec.env_clear {
        Vec::new()
    } else {
        std::env::vars_os()
            .filter(|(k, _)| k.to_str().is_some_and(|k| policy.env.passes(k)))
            .collect()
    };
    let mut set = |k: OsString, v: Option<OsString>| {
        env.retain(|(existing, _)| *existing != k);
        if let Some(v) = v {
            env.push((k, v));
        }
    };
    for (k, v) in policy.env.set.iter().flatten() {
        set(k.into(), Some(v.into()));
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
