//! The one error type of the crate.
//!
//! Every message is complete on its own: it ends with the underlying
//! error's text (an errno's, mostly), and no error returns what its
//! message already says as [`source`](std::error::Error::source), so an
//! error reporter that walks the chain never prints a cause twice. The
//! underlying `io::Error` is the variant's public `error` field.

use std::io;

use crate::report::Downgrade;

/// Why a sandboxed run could not be prepared, started or supervised.
///
/// A run that fails *inside* the sandbox (the command exits non-zero, is
/// killed, times out) is not an error: it is a [`RunOutcome`](crate::RunOutcome).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy is invalid.
    #[error("invalid policy: {0}")]
    Policy(sandbox_policy::Error),
    /// The host cannot enforce the policy as asked and the policy says
    /// `on_unavailable = "fail"`: nothing was spawned.
    #[error(
        "this host cannot enforce the policy as asked, and on_unavailable = \"fail\", so nothing was run: {}",
        Downgrade::list(downgrades)
    )]
    Unavailable {
        /// What could not be enforced, and why.
        downgrades: Vec<Downgrade>,
    },
    /// The kernel is older than the oldest this library supports
    /// ([`MINIMUM_KERNEL`](crate::MINIMUM_KERNEL)): nothing was spawned.
    #[error(
        "Linux {release} is older than {}.{}, the oldest kernel this library supports (its mount, cgroup and Landlock interfaces are missing or incomplete there)",
        crate::MINIMUM_KERNEL.0,
        crate::MINIMUM_KERNEL.1
    )]
    UnsupportedKernel {
        /// The running kernel's release (`uname -r`).
        release: String,
    },
    /// The command is unusable (an empty program, a NUL byte in an argument,
    /// a relative working directory, …).
    #[error("invalid command: {reason}")]
    InvalidCommand {
        /// What is wrong with it.
        reason: String,
    },
    /// A bind would let the sandbox reach the host's unix sockets (its
    /// source tree holds some, or is too large to check) and does not say
    /// `sockets = true`. Nothing was spawned.
    #[error("bind {} -> {}: {reason}", bind_source.display(), bind_target.display())]
    BindExposesSockets {
        /// The bind's host path.
        bind_source: std::path::PathBuf,
        /// Where it would appear in the sandbox.
        bind_target: std::path::PathBuf,
        /// The sockets found, or why the tree could not be checked.
        reason: String,
    },
    /// [`Sandbox::with_run_ids`](crate::Sandbox::with_run_ids) was given a
    /// range its runs cannot take: the caller is not root, or its user
    /// namespace does not map every id of the range.
    #[error(
        "run ids {first}..+{count}: runs of this process cannot take them (the caller is not root, or its user namespace does not map them all as uids and gids; see /proc/self/uid_map)"
    )]
    RunIdsUnmapped {
        /// The first id of the range.
        first: u32,
        /// How many ids.
        count: u32,
    },
    /// Preparing the run in the parent failed (a bind source missing, a
    /// pipe or a cgroup that could not be made, …). Nothing was left
    /// running.
    #[error("cannot prepare the sandbox: {what}: {error}")]
    Prepare {
        /// What was being prepared.
        what: String,
        /// The underlying error.
        error: io::Error,
    },
    /// A setup step in the sandbox failed before the command started (a
    /// mount, the privilege drop, `execve` of the program). The sandbox was
    /// torn down; nothing of the command ran.
    #[error("sandbox setup failed at `{step}`: {error}")]
    Setup {
        /// The step, as `what (details)`.
        step: String,
        /// The errno it failed with.
        error: io::Error,
    },
    /// Supervising a running sandbox failed.
    #[error("supervising the sandbox: {what}: {error}")]
    Supervise {
        /// What failed.
        what: &'static str,
        /// The underlying error.
        error: io::Error,
    },
    /// The thread supervising a running sandbox failed without an error
    /// of the kernel's (it panicked, or ended early).
    #[error("supervising the sandbox: {what}")]
    Supervisor {
        /// What happened.
        what: &'static str,
    },
}

impl From<sandbox_policy::Error> for Error {
    fn from(error: sandbox_policy::Error) -> Self {
        Error::Policy(error)
    }
}

impl Error {
    pub(crate) fn prepare(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let what = what.into();
        move |error| Error::Prepare { what, error }
    }

    pub(crate) fn prepare_errno(
        what: impl Into<String>,
    ) -> impl FnOnce(rustix::io::Errno) -> Error {
        let what = what.into();
        move |errno| Error::Prepare {
            what,
            error: errno.into(),
        }
    }

    pub(crate) fn supervise(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> Error {
        move |errno| Error::Supervise {
            what,
            error: errno.into(),
        }
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn supervise_io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |error| Error::Supervise { what, error }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The message says the cause; `source()` does not repeat it (an
    /// error reporter walking the chain prints each cause once).
    #[test]
    fn messages_are_complete_and_no_cause_is_printed_twice() {
        let setup = Error::Setup {
            step: "execve /bin/x".into(),
            error: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            setup.to_string(),
            "sandbox setup failed at `execve /bin/x`: No such file or directory (os error 2)"
        );
        assert!(std::error::Error::source(&setup).is_none());
        let Err(policy) = sandbox_policy::Policy::from_toml_str("[resources]\nmemory = \"lots\"\n")
        else {
            panic!("an invalid memory size parsed");
        };
        let detail = policy.to_string();
        let policy = Error::from(policy);
        assert_eq!(policy.to_string(), format!("invalid policy: {detail}"));
        assert!(std::error::Error::source(&policy).is_none());
    }
}
