//! The sandbox policy language: what a sandboxed run may see, reach and
//! use, and what to do when the host cannot enforce it.
//!
//! # The model
//!
//! A [`Policy`] has one section per layer — [`filesystem`](Policy::filesystem),
//! [`network`](Policy::network), [`privilege`](Policy::privilege),
//! [`resources`](Policy::resources), [`env`](Policy::env) — and
//! [`on_unavailable`](Policy::on_unavailable) (`fail` or `degrade`). Every
//! field is optional: a document says what it sets, [`Policy::merge`] fills
//! the rest from a base, and [`Policy::resolved`] completes a policy with the
//! `default` profile ([`Policy::default`]).
//!
//! Policies are read from TOML (written by people) and JSON (sent by
//! programs) strictly: unknown fields are refused, and every error names the
//! field path, line and column. [`Policy::validate`] then lists every
//! semantic problem at once. Durations, sizes and network rules have small
//! exact parsers ([`Duration`], [`ByteSize`], [`NetRule`]) and canonical
//! forms, so [`Policy::to_toml_string`] and [`Policy::to_json_string`] round
//! trip.
//!
//! This crate makes no syscall; enforcing a policy is `sandbox-core`'s work.
//!
//! # Example
//!
//! ```
//! use sandbox_policy::{Limit, NetMode, Policy};
//!
//! let job = Policy::from_toml_str(r#"
//!     [network]
//!     mode = "allowlist"
//!     allow = ["198.51.100.0/24:443/tcp"]
//!     dns = true
//!
//!     [resources]
//!     wall_time = "2m"
//! "#)?;
//! let run = job.resolved();
//! assert_eq!(run.network.mode, Some(NetMode::Allowlist));
//! assert_eq!(run.resources.wall_time.map(|l| l.to_string()), Some("2m".into()));
//! assert_eq!(run.resources.pids, Some(Limit::Max(128))); // from the default profile
//! assert_eq!(Policy::from_toml_str(&run.to_toml_string()?)?, run);
//! # Ok::<(), sandbox_policy::Error>(())
//! ```
#![deny(missing_docs)]

mod env;
mod error;
mod host_rule;
mod model;
mod net_rule;
mod network;
mod overlay;
mod policy;
mod profiles;
mod schema;
mod strictness;
mod summary;
mod units;
mod validate;

pub use env::{glob_matches, looks_secret};
pub use error::{Error, Format, Problem};
pub use host_rule::HostPattern;
pub use model::{
    Bind, Env, Filesystem, FsMode, KernelQuotas, LandlockMode, Limit, Lowers, OnUnavailable,
    Overlay, OverlayFallback, Policy, Privilege, Resources, RootOverlay, SeccompMode, SocketFamily,
    Tmpfs, TmpfsUpper, Upper, User,
};
pub use net_rule::{Destination, IpNet, NetRule, NetRuleError, PortRange, Protocol};
pub use network::{DnsMode, NetLimits, NetMode, Network};
pub use profiles::PROFILE_NAMES;
pub use units::{ByteSize, Duration, UnitError};
