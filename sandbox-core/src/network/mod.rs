//! The sandbox's network: which of `network.mode` this host can give
//! ([`NetworkPlan::decide`]), and the egress namespace's steps ([`plan`]).
//! The forwarder that serves an egress run is `sandbox-net`'s.

use sandbox_policy::{FsMode, NetMode, Policy};

use crate::findings::{Findings, reason};
use crate::host::HostCapabilities;
use crate::namespaces::Namespaces;
use crate::report::Layer;

pub(crate) mod plan;

/// The network a run gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetworkPlan {
    /// The caller's network namespace, shared (`network.mode = "host"`,
    /// or no user namespace to make another).
    Host,
    /// A new network namespace with only loopback.
    Isolated,
    /// A new network namespace with `tap0` behind the default-drop
    /// ruleset, served by the forwarder.
    Egress {
        /// The tap's MTU.
        mtu: u32,
    },
}

impl NetworkPlan {
    /// Whether the run gets a network namespace of its own.
    pub(crate) fn new_namespace(self) -> bool {
        !matches!(self, Self::Host)
    }

    /// The egress tap's MTU, if the run has egress.
    pub(crate) fn egress_mtu(self) -> Option<u32> {
        match self {
            Self::Egress { mtu } => Some(mtu),
            _ => None,
        }
    }

    /// The same plan with the egress tap's MTU set to `mtu` (no change
    /// without egress).
    pub(crate) fn with_egress_mtu(self, mtu: u32) -> Self {
        match self {
            Self::Egress { .. } => Self::Egress { mtu },
            other => other,
        }
    }

    /// The network `policy` gets on this host, with its report lines.
    pub(crate) fn decide(
        policy: &Policy,
        host: &HostCapabilities,
        namespaces: &Namespaces,
        fs_mode: FsMode,
        found: &mut Findings,
    ) -> Self {
        let asked = policy.network.mode.unwrap_or(NetMode::None);
        match asked {
            NetMode::Allowlist
                if namespaces.made()
                    && host.tun.is_available()
                    && host.nftables_in_userns.is_available() =>
            {
                egress_mechanisms(policy, fs_mode, found);
                Self::Egress {
                    mtu: sandbox_net::EgressAddressing::default().mtu,
                }
            }
            NetMode::None | NetMode::Allowlist => {
                if asked == NetMode::Allowlist {
                    let why = if !namespaces.made() {
                        format!("no user namespace ({})", namespaces.why_not())
                    } else if !host.tun.is_available() {
                        reason(&host.tun).to_string()
                    } else {
                        reason(&host.nftables_in_userns).to_string()
                    };
                    found.down(
                        Layer::Network,
                        format!(
                            "network.mode = \"allowlist\": {why} (degraded, a run gets no network at all: loopback only)"
                        ),
                    );
                }
                if namespaces.made() {
                    found.mechanism(
                        Layer::Network,
                        "a new network namespace with only loopback: no route out",
                    );
                    Self::Isolated
                } else {
                    found.down(
                        Layer::Network,
                        format!(
                            "no network namespace without a user namespace ({}): the host network would be reachable",
                            namespaces.why_not()
                        ),
                    );
                    found.mechanism(Layer::Network, "the host's network");
                    Self::Host
                }
            }
            NetMode::Host => {
                found.mechanism(
                    Layer::Network,
                    "the host's network, shared, unfiltered (as asked)",
                );
                Self::Host
            }
        }
    }
}

fn egress_mechanisms(policy: &Policy, fs_mode: FsMode, found: &mut Findings) {
    let rules =
        sandbox_net::Ruleset::from_network(&policy.network, &sandbox_net::Gateway::default());
    found.mechanism(
        Layer::Network,
        format!(
            "a new network namespace: tap0 10.0.2.100/24 and fd00:0:2::100/64 via the gateway 10.0.2.2 / fd00:0:2::2; a default-drop nftables ruleset (table inet sandbox, {} output rules) loaded before the link came up",
            rules.output.len()
        ),
    );
    found.mechanism(
        Layer::Network,
        "a userspace forwarder in the caller relays each allowed flow (TCP, UDP, ICMP echo through a ping socket) through a host socket of its own, enforcing the policy a second time (metadata blocked, deny over allow, IPv4-mapped forms), within caps on flows, buffered bytes and new flows per second; a refused connect gets a reset (ICMP prohibited for datagrams) at both points, and every refusal, the kernel's too (read from the ruleset's log group), is reported with its reason",
    );
    let resolv = if fs_mode == FsMode::Off {
        "the sandbox's /etc/resolv.conf is the host's (filesystem.mode = \"off\")"
    } else {
        "the sandbox's /etc/resolv.conf names the gateway 10.0.2.2"
    };
    match policy.network.dns_mode() {
        sandbox_policy::DnsMode::Any => found.mechanism(
            Layer::Network,
            format!("DNS: every query to the gateway 10.0.2.2 is relayed to the host's resolver, whatever the name (a channel out for anything that fits in a name); {resolv}"),
        ),
        sandbox_policy::DnsMode::AllowedNames => found.mechanism(
            Layer::Network,
            format!("DNS: the gateway 10.0.2.2 resolves only names an allow rule matches (through the host's resolver) and answers REFUSED to the rest; each answer's addresses are pinned to the name's rules for its TTL (within the pin bounds: {}-{} s unless Sandbox::with_pin_ttl says otherwise) in the forwarder and in the ruleset's sets before the sandbox sees it, and answers that put a name on an internal address are refused; a connection a pin admitted must name a pinned host in its TLS SNI or HTTP Host (a UDP flow, in its QUIC Initials' SNI); DNS over TCP is screened the same way; {resolv}",
                sandbox_net::forward::MIN_PIN_TTL.as_secs(),
                sandbox_net::forward::MAX_PIN_TTL.as_secs()),
        ),
        _ => {}
    }
}
