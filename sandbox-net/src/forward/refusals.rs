//! Every refusal, reported: what the forwarder refused and what the
//! kernel's ruleset refused (read from its log group), each with when,
//! the name or address, port, protocol and why; kept in a bounded list
//! with counts per reason, and passed to a live hook as it happens.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use sandbox_policy::Protocol;

use crate::forward::first_bytes::FirstBytesRefusal;
use crate::forward::forwarder::EgressForwarder;
use crate::forward::kernel_log::{bind_log_group, drain_log};
use crate::forward::policy::{Refusal, Verdict};

/// Why a flow, a lookup or a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RefusalReason {
    /// A DNS query for a name no allow rule matches (or a deny rule does).
    DnsRefused,
    /// No allow rule matches the destination (or a name's pin expired).
    NotAllowed,
    /// A deny rule matches.
    Denied,
    /// A link-local or cloud-metadata address.
    Metadata,
    /// A DNS answer putting an allowed name on an internal address.
    Rebinding,
    /// A ClientHello's SNI names no host the pinned rules allow.
    SniMismatch,
    /// A ClientHello without SNI to an address only a name pin allows.
    NoSni,
    /// An HTTP request's `Host` names no host the pinned rules allow.
    HostMismatch,
    /// Over `network.limits.new_flows_per_second`.
    Rate,
    /// Over a cap of `network.limits` (or the pin cap).
    Cap,
}

impl RefusalReason {
    /// Every reason, in report order.
    pub const ALL: [RefusalReason; 10] = [
        Self::DnsRefused,
        Self::NotAllowed,
        Self::Denied,
        Self::Metadata,
        Self::Rebinding,
        Self::SniMismatch,
        Self::NoSni,
        Self::HostMismatch,
        Self::Rate,
        Self::Cap,
    ];

    /// The name used in reports: `dns-refused`, `not-allowed`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DnsRefused => "dns-refused",
            Self::NotAllowed => "not-allowed",
            Self::Denied => "denied",
            Self::Metadata => "metadata",
            Self::Rebinding => "rebinding",
            Self::SniMismatch => "sni-mismatch",
            Self::NoSni => "no-sni",
            Self::HostMismatch => "host-mismatch",
            Self::Rate => "rate",
            Self::Cap => "cap",
        }
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EgressRefusal {
    /// When, from the forwarder's start.
    pub after: Duration,
    /// The name asked for or presented (DNS, SNI, `Host`), if any.
    pub name: Option<String>,
    /// The destination address, if any.
    pub addr: Option<IpAddr>,
    /// The destination port, if any.
    pub port: Option<u16>,
    /// `tcp`, `udp`, `icmp` or `dns`.
    pub protocol: &'static str,
    /// Why.
    pub reason: RefusalReason,
    /// Refused by the kernel's ruleset (else by the forwarder).
    pub kernel: bool,
}

impl std::fmt::Display for EgressRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} s {} {}",
            self.after.as_secs_f64(),
            self.reason,
            self.protocol
        )?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        match (self.addr, self.port) {
            (Some(IpAddr::V6(a)), Some(p)) => write!(f, " [{a}]:{p}")?,
            (Some(a), Some(p)) => write!(f, " {a}:{p}")?,
            (Some(a), None) => write!(f, " {a}")?,
            _ => {}
        }
        if self.kernel {
            f.write_str(" (kernel)")?;
        }
        Ok(())
    }
}

/// The most refusals kept in the list (all are counted).
pub const MAX_REFUSALS: usize = 256;

/// A hook called with each refusal as it happens (on the forwarder's
/// thread: it must not block).
pub type RefusalHook = Box<dyn Fn(&EgressRefusal) + Send>;

/// The refusals of one forwarder.
pub(crate) struct RefusalLog {
    started: Instant,
    pub(crate) list: Vec<EgressRefusal>,
    pub(crate) counts: [u64; RefusalReason::ALL.len()],
    pub(crate) hook: Option<RefusalHook>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            list: Vec::new(),
            counts: [0; RefusalReason::ALL.len()],
            hook: None,
        }
    }
}

impl RefusalLog {
    /// Records a refusal.
    pub(crate) fn record(
        &mut self,
        reason: RefusalReason,
        name: Option<String>,
        dest: Option<(IpAddr, Option<u16>)>,
        protocol: &'static str,
        kernel: bool,
    ) {
        let event = EgressRefusal {
            after: self.started.elapsed(),
            name,
            addr: dest.map(|(a, _)| a),
            port: dest.and_then(|(_, p)| p),
            protocol,
            reason,
            kernel,
        };
        if let Some(i) = RefusalReason::ALL.iter().position(|r| *r == reason) {
            self.counts[i] += 1;
        }
        if let Some(hook) = &self.hook {
            hook(&event);
        }
        if self.list.len() < MAX_REFUSALS {
            self.list.push(event);
        }
    }

    /// How many of each reason, for those there were.
    pub(crate) fn by_reason(&self) -> Vec<(RefusalReason, u64)> {
        RefusalReason::ALL
            .iter()
            .zip(self.counts)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (*r, n))
            .collect()
    }
}

/// The name of a transport protocol in refusals.
pub(crate) fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

impl EgressForwarder {
    /// Calls `hook` with every refusal as it happens (on the forwarder's
    /// thread; it must not block).
    pub fn on_refusal(&mut self, hook: RefusalHook) {
        self.refusals.hook = Some(hook);
    }

    /// The refusals so far, the first [`MAX_REFUSALS`] of them.
    pub fn refusals(&self) -> &[EgressRefusal] {
        &self.refusals.list
    }

    /// How many refusals of each reason (all of them, listed or not).
    pub fn refusals_by_reason(&self) -> Vec<(RefusalReason, u64)> {
        self.refusals.by_reason()
    }

    /// Gives the forwarder a `NETLINK_NETFILTER` socket a sandbox's child
    /// opened in its network namespace, bound here to the log group of
    /// the ruleset's chain `refuse`: what the kernel refuses is reported
    /// too.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Netlink`] if the kernel refused the binding (no
    /// nfnetlink_log); the socket is then not kept.
    pub fn set_log_socket(&mut self, socket: OwnedFd) -> crate::Result<()> {
        use std::os::fd::AsFd;
        bind_log_group(socket.as_fd())?;
        self.log_socket = Some(socket);
        Ok(())
    }

    /// Records what the kernel refused since the last call (each logged
    /// packet, its reason found as the forwarder's policy would).
    pub fn drain_kernel_refusals(&mut self) {
        let Some(socket) = &self.log_socket else {
            return;
        };
        let mut packets = Vec::new();
        drain_log(socket, |p| packets.push(p));
        for packet in packets {
            let verdict = match (packet.protocol, packet.port) {
                ("tcp", Some(port)) => self.policy.decide(packet.addr, port, Protocol::Tcp),
                ("udp", Some(port)) => self.policy.decide(packet.addr, port, Protocol::Udp),
                _ => self.policy.decide_echo(packet.addr),
            };
            let reason = match verdict {
                Verdict::Refuse(Refusal::Metadata) => RefusalReason::Metadata,
                Verdict::Refuse(Refusal::Denied) => RefusalReason::Denied,
                _ => RefusalReason::NotAllowed,
            };
            self.counters.refused_by_kernel += 1;
            self.refusals.record(
                reason,
                None,
                Some((packet.addr, packet.port)),
                packet.protocol,
                true,
            );
        }
    }

    /// Records the connections the TCP relay reset for their first bytes.
    pub(crate) fn take_first_bytes_refusals(&mut self) {
        for (dst, refusal, name) in std::mem::take(&mut self.tcp.refused_first_bytes) {
            self.record_first_bytes(refusal, name, dst, "tcp");
        }
    }

    /// Counts and records a UDP flow refused for its first datagrams.
    pub(crate) fn refuse_first_bytes(
        &mut self,
        refusal: FirstBytesRefusal,
        name: Option<String>,
        dst: std::net::SocketAddr,
        protocol: &'static str,
    ) {
        match refusal {
            FirstBytesRefusal::SniMismatch => self.tcp.counters.sni_mismatch += 1,
            FirstBytesRefusal::NoSni => self.tcp.counters.no_sni += 1,
            FirstBytesRefusal::HostMismatch => self.tcp.counters.host_mismatch += 1,
        }
        self.record_first_bytes(refusal, name, dst, protocol);
    }

    fn record_first_bytes(
        &mut self,
        refusal: FirstBytesRefusal,
        name: Option<String>,
        dst: std::net::SocketAddr,
        protocol: &'static str,
    ) {
        let reason = match refusal {
            FirstBytesRefusal::SniMismatch => RefusalReason::SniMismatch,
            FirstBytesRefusal::NoSni => RefusalReason::NoSni,
            FirstBytesRefusal::HostMismatch => RefusalReason::HostMismatch,
        };
        self.refusals.record(
            reason,
            name,
            Some((dst.ip(), Some(dst.port()))),
            protocol,
            false,
        );
    }

    /// Counts and records a new flow the policy refused.
    pub(crate) fn refuse(
        &mut self,
        refusal: Refusal,
        dest: (IpAddr, Option<u16>),
        protocol: &'static str,
    ) {
        self.counters.refused += 1;
        let reason = match refusal {
            Refusal::Metadata => {
                self.counters.refused_metadata += 1;
                RefusalReason::Metadata
            }
            Refusal::Denied => RefusalReason::Denied,
            Refusal::NotAllowed | Refusal::NotForwardable | Refusal::Gateway => {
                RefusalReason::NotAllowed
            }
        };
        self.refusals
            .record(reason, None, Some(dest), protocol, false);
    }

    /// Records a refusal of another kind (caps, rate, DNS).
    pub(crate) fn record_refusal(
        &mut self,
        reason: RefusalReason,
        name: Option<String>,
        dest: Option<(IpAddr, Option<u16>)>,
        protocol: &'static str,
    ) {
        self.refusals.record(reason, name, dest, protocol, false);
    }
}
