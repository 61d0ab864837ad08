//! Run a command in a native Linux namespace sandbox, with an honest report
//! of which layers were enforced.
//!
//! This crate is being built (issue 4): so far it has the host capability
//! [`probe`], which finds what this host can enforce by trying it —
//! user namespaces (in a throwaway child), openat2, Landlock, seccomp
//! filters, cgroups (v2, or v1 on hybrid hosts, beneath the caller's own
//! cgroup), `/dev/net/tun`.
//!
//! ```
//! let host = sandbox_core::probe();
//! assert!(!host.kernel.is_empty());
//! ```
#![deny(missing_docs)]

mod cgroups;
mod decide;
mod error;
mod outcome;
mod plan;
mod probe;
mod report;
mod run;
mod sandbox;
mod seccomp;
mod sys;

pub use cgroups::{CgroupSupport, UnifiedHierarchy, V1Hierarchy};
pub use error::{Error, Result};
pub use outcome::{ExitStatus, RunOutcome};
pub use probe::{Capability, HostCapabilities, probe, probe_now};
pub use report::{Downgrade, EffectiveSandbox, Layer, LayerReport, Note};
pub use sandbox::{Sandbox, SandboxChild, SandboxCommand, Stdio};
pub use seccomp::{DEFAULT_DENIED, STRICT_ALLOWED, SeccompError, SeccompProgram};
