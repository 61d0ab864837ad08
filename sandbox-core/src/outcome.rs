//! What a run produced.

use std::time::Duration;

use serde::Serialize;

use crate::report::EffectiveSandbox;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (`SIGKILL` when the sandbox was killed: a
    /// timeout, [`SandboxChild::kill`](crate::SandboxChild::kill), or the
    /// OOM killer).
    Signaled(i32),
}

impl ExitStatus {
    pub(crate) fn from_wait_status(status: i32) -> Self {
        if libc::WIFEXITED(status) {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        } else {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(code) => Some(*code),
            ExitStatus::Signaled(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(_) => None,
            ExitStatus::Signaled(sig) => Some(*sig),
        }
    }

    /// The shell's convention: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match self {
            ExitStatus::Exited(code) => *code,
            ExitStatus::Signaled(sig) => 128 + sig,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// The result of a sandboxed run: how it ended, what it printed (capped),
/// what it used, and the report of what confined it.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// How the command ended.
    pub status: ExitStatus,
    /// Whether the wall-clock limit killed the sandbox.
    pub timed_out: bool,
    /// Whether the kernel's OOM killer killed a process of the run (known
    /// when memory is limited by a cgroup).
    pub oom_killed: bool,
    /// Standard output, at most `max_output_bytes` of it.
    #[serde(with = "lossy")]
    pub stdout: Vec<u8>,
    /// Whether standard output was longer than what was kept.
    pub stdout_truncated: bool,
    /// Standard error, at most `max_output_bytes` of it.
    #[serde(with = "lossy")]
    pub stderr: Vec<u8>,
    /// Whether standard error was longer than what was kept.
    pub stderr_truncated: bool,
    /// From the clone to the end of the last process of the sandbox.
    #[serde(serialize_with = "millis")]
    pub wall_time: Duration,
    /// User plus system CPU time of every process of the sandbox that was
    /// reaped.
    #[serde(serialize_with = "millis")]
    pub cpu_time: Duration,
    /// Peak memory in bytes: the cgroup's high-water mark when memory is
    /// limited by a cgroup, else the largest resident set of one process.
    pub peak_memory: Option<u64>,
    /// What the run was confined by.
    pub report: EffectiveSandbox,
}

impl RunOutcome {
    /// Whether the command exited with code 0 (and was not killed).
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

mod lossy {
    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(bytes))
    }
}
