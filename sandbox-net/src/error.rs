//! The one error type of the crate.
//!
//! Every message is complete on its own: it ends with the underlying
//! error's text (an errno's, mostly), and no error returns what its
//! message already says as [`source`](std::error::Error::source), so an
//! error reporter that walks the chain never prints a cause twice. The
//! underlying `io::Error` is the variant's public `error` field.

use std::io;

/// What went wrong, with the operation and the object it concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A syscall failed.
    #[error("{operation}: {error}")]
    Os {
        /// What was being done (`open /dev/net/tun`, `TUNSETIFF tap0`, …).
        operation: String,
        /// The errno.
        error: io::Error,
    },
    /// The kernel refused a netlink request.
    #[error("netlink: {request} refused: {error}")]
    Netlink {
        /// The request, as `what (index N of the batch)`.
        request: String,
        /// The errno the kernel answered with.
        error: io::Error,
    },
    /// A netlink reply could not be understood.
    #[error("netlink: malformed reply to {request}: {detail}")]
    Malformed {
        /// The request.
        request: String,
        /// What was wrong.
        detail: String,
    },
    /// Input the crate cannot use (an interface name too long, …).
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The ruleset in the kernel is not the one meant.
    #[error("the ruleset read back from the kernel differs from the model: {detail}")]
    Mismatch {
        /// The first difference.
        detail: String,
    },
}

impl Error {
    pub(crate) fn os(operation: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> Error {
        let operation = operation.into();
        move |errno| Error::Os {
            operation,
            error: errno.into(),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The message says the errno; `source()` does not repeat it.
    #[test]
    fn messages_are_complete_and_no_cause_is_printed_twice() {
        let e = Error::os("TUNSETIFF tap0")(rustix::io::Errno::PERM);
        assert_eq!(
            e.to_string(),
            "TUNSETIFF tap0: Operation not permitted (os error 1)"
        );
        assert!(std::error::Error::source(&e).is_none());
    }
}
