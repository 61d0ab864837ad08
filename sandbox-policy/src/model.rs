//! The policy vocabulary: plain types, one per layer.
//!
//! Every field is optional: a policy document says only what it sets, and
//! [`Policy::merge`](crate::Policy::merge) fills the rest from a base. A
//! policy used on its own is first completed with
//! [`Policy::resolved`](crate::Policy::resolved), which merges it onto
//! [`Policy::default`] (the `default` profile).

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) use crate::network::{DnsMode, NetLimits, NetMode, Network};
pub use crate::overlay::{Lowers, Overlay, OverlayFallback, RootOverlay, TmpfsUpper, Upper};
use crate::units::{ByteSize, Duration};

/// A complete description of what a sandboxed run may do.
///
/// [`Policy::default()`] is the `default` profile; [`Policy::empty`] sets
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// What the process sees on disk.
    #[serde(default, skip_serializing_if = "is_default")]
    pub filesystem: Filesystem,
    /// Where it may connect.
    #[serde(default, skip_serializing_if = "is_default")]
    pub network: Network,
    /// Who it runs as and what the kernel lets it do.
    #[serde(default, skip_serializing_if = "is_default")]
    pub privilege: Privilege,
    /// Time, memory, processes, output.
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: Resources,
    /// The environment it gets.
    #[serde(default, skip_serializing_if = "is_default")]
    pub env: Env,
    /// What to do when the host cannot enforce a layer as asked
    /// (default: `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unavailable: Option<OnUnavailable>,
}

/// `filesystem`: what the process sees on disk.
///
/// Targets must be distinct, absolute and other than `/`. They may nest
/// (a bind inside a tmpfs, a mask inside a bind): mounts are made parents
/// first, so a later mount never hides an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// The base view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FsMode>,
    /// With `mode = "rootfs"`: the host directory that is the sandbox's
    /// `/`, bound read-only (an unpacked image's `rootfs`, say). The
    /// mounts' targets must exist in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// With `mode = "rootfs"`: the root writable, copy-on-write (an
    /// overlay of `root` at `/`); read-only without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_overlay: Option<RootOverlay>,
    /// Host paths bound into the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binds: Option<Vec<Bind>>,
    /// Fresh in-memory filesystems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Vec<Tmpfs>>,
    /// The working directory inside the sandbox (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// Paths hidden behind an empty mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<Vec<PathBuf>>,
    /// Copy-on-write views of host trees: the sandbox sees the lower
    /// trees at the target and may write there; its writes go to the
    /// upper, never to a lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<Vec<Overlay>>,
}

/// `filesystem.mode`, declared strictest first (the derived order is the
/// strictness order).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum FsMode {
    /// An empty root with read-only binds of the system directories a
    /// dynamically linked binary needs.
    Minimal,
    /// A root of the caller's own (`filesystem.root`), read-only: another
    /// userland than the host's.
    Rootfs,
    /// The whole host filesystem, read-only.
    HostReadonly,
    /// No filesystem isolation: the host's view.
    Off,
}

/// A host path bound into the sandbox.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    /// The host path (absolute).
    pub source: PathBuf,
    /// Where it appears in the sandbox (absolute).
    pub target: PathBuf,
    /// Whether the sandbox may write to it (default: read-only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub writable: bool,
    /// Whether unix sockets beneath the source may be reached (default:
    /// no: a bind whose tree holds a socket is refused, since connecting
    /// to one needs no write access to the bind and opens a channel to
    /// whatever serves it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sockets: bool,
}

/// A fresh in-memory filesystem.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    /// Where it is mounted (absolute).
    pub target: PathBuf,
    /// Its size limit (default: the kernel's, half of memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
}

/// `privilege`: who the process runs as and what the kernel lets it do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Privilege {
    /// The user inside the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// The seccomp filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompMode>,
    /// Landlock filesystem rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<LandlockMode>,
    /// Whether the process may create user namespaces of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_nested_userns: Option<bool>,
    /// Socket families the process may use besides `unix`, `inet`,
    /// `inet6` and routing netlink, which it always may (default: none;
    /// a socket of any other family fails with `EAFNOSUPPORT` under the
    /// `default` and `strict` filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_families: Option<Vec<SocketFamily>>,
}

/// An extra socket family for `privilege.socket_families`.
///
/// The `default` and `strict` seccomp filters let a sandbox make sockets of
/// `AF_UNIX`, `AF_INET`, `AF_INET6` and `AF_NETLINK` (only the
/// `NETLINK_ROUTE` and `NETLINK_SOCK_DIAG` protocols) and nothing else;
/// each family listed here is allowed too.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SocketFamily {
    /// Every netlink protocol (`AF_NETLINK`), not only routing and socket
    /// diagnostics: netfilter, audit, generic netlink, uevents, ….
    Netlink,
    /// Link-layer packets (`AF_PACKET`; still needs `CAP_NET_RAW` in the
    /// sandbox's network namespace).
    Packet,
    /// Host–guest sockets (`AF_VSOCK`), which no network namespace
    /// isolates: the hypervisor's and the host's vsock services.
    Vsock,
    /// The kernel crypto API (`AF_ALG`).
    Alg,
    /// Bluetooth (`AF_BLUETOOTH`).
    Bluetooth,
    /// Controller area network (`AF_CAN`).
    Can,
    /// Key management (`AF_KEY`, PF_KEY v2).
    Key,
    /// Express data path (`AF_XDP`).
    Xdp,
    /// Transparent inter-process communication (`AF_TIPC`).
    Tipc,
    /// Reliable datagram sockets (`AF_RDS`).
    Rds,
    /// Shared memory communications (`AF_SMC`).
    Smc,
    /// Qualcomm IPC router (`AF_QIPCRTR`).
    Qipcrtr,
    /// Management component transport protocol (`AF_MCTP`).
    Mctp,
}

impl SocketFamily {
    /// Every variant, in declaration order.
    pub const ALL: &'static [SocketFamily] = &[
        SocketFamily::Netlink,
        SocketFamily::Packet,
        SocketFamily::Vsock,
        SocketFamily::Alg,
        SocketFamily::Bluetooth,
        SocketFamily::Can,
        SocketFamily::Key,
        SocketFamily::Xdp,
        SocketFamily::Tipc,
        SocketFamily::Rds,
        SocketFamily::Smc,
        SocketFamily::Qipcrtr,
        SocketFamily::Mctp,
    ];

    /// The name used in policy files (`"vsock"`).
    pub fn name(self) -> &'static str {
        match self {
            SocketFamily::Netlink => "netlink",
            SocketFamily::Packet => "packet",
            SocketFamily::Vsock => "vsock",
            SocketFamily::Alg => "alg",
            SocketFamily::Bluetooth => "bluetooth",
            SocketFamily::Can => "can",
            SocketFamily::Key => "key",
            SocketFamily::Xdp => "xdp",
            SocketFamily::Tipc => "tipc",
            SocketFamily::Rds => "rds",
            SocketFamily::Smc => "smc",
            SocketFamily::Qipcrtr => "qipcrtr",
            SocketFamily::Mctp => "mctp",
        }
    }

    /// The address family number (`AF_*`) the kernel uses.
    pub fn number(self) -> u32 {
        match self {
            SocketFamily::Netlink => 16,
            SocketFamily::Packet => 17,
            SocketFamily::Vsock => 40,
            SocketFamily::Alg => 38,
            SocketFamily::Bluetooth => 31,
            SocketFamily::Can => 29,
            SocketFamily::Key => 15,
            SocketFamily::Xdp => 44,
            SocketFamily::Tipc => 30,
            SocketFamily::Rds => 21,
            SocketFamily::Smc => 43,
            SocketFamily::Qipcrtr => 42,
            SocketFamily::Mctp => 45,
        }
    }
}

/// `privilege.user`: `"nobody"`, `"root"` (root of the sandbox's user
/// namespace, not of the host) or a numeric uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum User {
    /// The overflow user, 65534.
    Nobody,
    /// Uid 0 inside the sandbox's user namespace.
    Root,
    /// A numeric uid inside the sandbox.
    Uid(u32),
}

/// `privilege.seccomp`, declared strictest first (the derived order is the
/// strictness order).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompMode {
    /// An allowlist suited to shell scripts and common interpreters.
    Strict,
    /// Every syscall known up to the newest kernel the filter was built for,
    /// less a denylist of dangerous ones (keyctl, bpf, mount, ptrace, …).
    Default,
    /// No filter.
    Off,
}

/// `privilege.landlock`, declared strictest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockMode {
    /// Landlock must be enforced, or the layer is unavailable.
    Require,
    /// Use Landlock where the kernel has it.
    Auto,
    /// No Landlock rules.
    Off,
}

/// `resources`: limits. Each is a value or `"unlimited"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Wall-clock time before the whole sandbox is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<Limit<Duration>>,
    /// CPU time (`RLIMIT_CPU`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<Limit<Duration>>,
    /// Memory (cgroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Limit<ByteSize>>,
    /// Bytes of stdout and of stderr kept, each; the rest is drained and
    /// dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<Limit<ByteSize>>,
    /// Largest file the process may write (`RLIMIT_FSIZE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<Limit<ByteSize>>,
    /// Processes and threads (cgroup `pids.max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Limit<u32>>,
    /// CPU bandwidth, in percent of one CPU (cgroup `cpu.max`, or
    /// `cpu.cfs_quota_us` on v1): 50 is half a CPU, 200 two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Limit<u32>>,
    /// Open files (`RLIMIT_NOFILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<Limit<u32>>,
    /// The kernel's per-user counters, capped for the run.
    #[serde(default, skip_serializing_if = "KernelQuotas::is_unset")]
    pub kernel: KernelQuotas,
}

/// `resources.kernel`: caps on the kernel objects the kernel counts per
/// user rather than per cgroup. Without them a run draws on its caller's
/// share (for a root caller, host root's): 128 inotify instances held by
/// one sandbox leave none for the host's services.
///
/// Each is set in the sandbox's own user namespace (`/proc/sys/user/max_*`,
/// which bounds the run whatever the caller's share is), except
/// `pending_signals` (`RLIMIT_SIGPENDING`). A value, or `"unlimited"` for
/// the caller's share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelQuotas {
    /// inotify instances (`max_inotify_instances`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inotify_instances: Option<Limit<u32>>,
    /// inotify watches across them (`max_inotify_watches`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inotify_watches: Option<Limit<u32>>,
    /// fanotify groups (`max_fanotify_groups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanotify_groups: Option<Limit<u32>>,
    /// fanotify marks (`max_fanotify_marks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanotify_marks: Option<Limit<u32>>,
    /// Namespaces of each kind other than user (`max_{pid,mnt,net,uts,ipc,cgroup,time}_namespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Limit<u32>>,
    /// User namespaces (`max_user_namespaces`): 0 unless
    /// `privilege.allow_nested_userns`, whatever is set here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespaces: Option<Limit<u32>>,
    /// Signals queued and not yet delivered (`RLIMIT_SIGPENDING`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_signals: Option<Limit<u32>>,
}

impl KernelQuotas {
    /// The largest value a quota may take: the kernel's sysctls are `int`s.
    pub const MAX: u32 = i32::MAX as u32;

    /// Whether nothing is set.
    pub fn is_unset(&self) -> bool {
        *self == Self::default()
    }

    /// Each quota with its policy name (`inotify_instances`), in order.
    pub fn fields(&self) -> [(&'static str, Option<Limit<u32>>); 7] {
        [
            ("inotify_instances", self.inotify_instances),
            ("inotify_watches", self.inotify_watches),
            ("fanotify_groups", self.fanotify_groups),
            ("fanotify_marks", self.fanotify_marks),
            ("namespaces", self.namespaces),
            ("user_namespaces", self.user_namespaces),
            ("pending_signals", self.pending_signals),
        ]
    }

    /// Field by field: `over`'s where set, else `self`'s.
    pub fn merged(&self, over: &KernelQuotas) -> KernelQuotas {
        KernelQuotas {
            inotify_instances: over.inotify_instances.or(self.inotify_instances),
            inotify_watches: over.inotify_watches.or(self.inotify_watches),
            fanotify_groups: over.fanotify_groups.or(self.fanotify_groups),
            fanotify_marks: over.fanotify_marks.or(self.fanotify_marks),
            namespaces: over.namespaces.or(self.namespaces),
            user_namespaces: over.user_namespaces.or(self.user_namespaces),
            pending_signals: over.pending_signals.or(self.pending_signals),
        }
    }
}

/// A limit: a value, or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit<T> {
    /// No limit.
    Unlimited,
    /// At most this much.
    Max(T),
}

/// `env`: the environment the process gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Env {
    /// Names (globs with `*`) passed through from the caller's
    /// environment. Names that look like secrets are never passed by a
    /// glob, only by `set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Variables set explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<BTreeMap<String, String>>,
}

/// `on_unavailable`: what happens when the host cannot enforce a layer;
/// declared strictest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnavailable {
    /// Refuse the run before anything is spawned.
    Fail,
    /// Run with what can be enforced, and report the downgrade.
    Degrade,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether a section sets nothing (and so is left out of the output).
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl<T> Limit<T> {
    /// The value, or `None` for unlimited.
    pub fn max(&self) -> Option<&T> {
        match self {
            Limit::Unlimited => None,
            Limit::Max(v) => Some(v),
        }
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Limit<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::Max(v) => v.fmt(f),
        }
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            User::Nobody => f.write_str("nobody"),
            User::Root => f.write_str("root"),
            User::Uid(uid) => write!(f, "{uid}"),
        }
    }
}

/// Serde forms of [`User`] and [`Limit`]: a keyword string or a value.
mod serde_impls {
    use super::{Limit, User};
    use serde::de::{self, Deserializer, Visitor};
    use serde::{Deserialize, Serialize, Serializer};
    use std::fmt;

    impl Serialize for User {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                User::Uid(uid) => s.serialize_u32(*uid),
                other => s.collect_str(other),
            }
        }
    }

    impl<'de> Deserialize<'de> for User {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = User;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("\"nobody\", \"root\" or a numeric uid")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<User, E> {
                    match v {
                        "nobody" => Ok(User::Nobody),
                        "root" => Ok(User::Root),
                        _ => Err(E::custom(format!(
                            "invalid user {v:?}: expected \"nobody\", \"root\" or a numeric uid"
                        ))),
                    }
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<User, E> {
                    u32::try_from(v)
                        .ok()
                        .filter(|&uid| uid != u32::MAX)
                        .map(User::Uid)
                        .ok_or_else(|| {
                            E::custom(format!("invalid uid {v}: must be below 4294967295"))
                        })
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<User, E> {
                    u64::try_from(v)
                        .map_err(|_| E::custom(format!("invalid uid {v}: must not be negative")))
                        .and_then(|v| self.visit_u64(v))
                }
            }
            d.deserialize_any(V)
        }
    }

    impl<T: Serialize> Serialize for Limit<T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Limit::Unlimited => s.serialize_str("unlimited"),
                Limit::Max(v) => v.serialize(s),
            }
        }
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Limit<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            // Buffer the value once: "unlimited", or whatever T accepts.
            let value = serde_json::Value::deserialize(d)?;
            if value.as_str() == Some("unlimited") {
                return Ok(Limit::Unlimited);
            }
            T::deserialize(value)
                .map(Limit::Max)
                .map_err(de::Error::custom)
        }
    }
}
