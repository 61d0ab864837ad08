//! The one error type of the crate.

use std::io;

/// What went wrong, with the operation and the object it concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A syscall failed.
    #[error("{operation}: {source}")]
    Os {
        /// What was being done (`open /dev/net/tun`, `TUNSETIFF tap0`, …).
        operation: String,
        /// The errno.
        source: io::Error,
    },
    /// The kernel refused a netlink request.
    #[error("netlink: {request} refused: {source}")]
    Netlink {
        /// The request, as `what (index N of the batch)`.
        request: String,
        /// The errno the kernel answered with.
        source: io::Error,
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
            source: errno.into(),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
