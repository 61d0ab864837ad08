//! The userspace egress forwarder: [`EgressForwarder`] reads the sandbox's
//! frames from its tap and relays each allowed flow through a host socket
//! of its own (TCP through a userspace stack, UDP and DNS datagram by
//! datagram, ICMP echo through ping sockets), answering ARP and neighbour
//! discovery for the gateway, within
//! [`ForwarderLimits`]. Its building blocks are public too: a
//! bounds-checked classifier of guest frames and builders of the frames
//! the gateway answers with ([`classify`], [`arp_reply`],
//! [`neighbor_advert`], [`udp_frame`]), and the second enforcement point
//! ([`EgressPolicy`]), which decides every new flow before a host socket
//! is opened for it.

mod counters;
mod dns;
mod dns_wire;
mod echo;
mod first_bytes;
mod forwarder;
mod fragments;
mod frame;
mod icmp;
mod kernel_log;
mod limits;
mod names;
mod net_index;
mod offload;
mod policy;
mod poll;
mod quic;
mod refusals;
mod tcp;
mod tcp_device;
mod tcp_dns;
mod udp;

pub use counters::Counters;
pub use first_bytes::FirstBytesRefusal;
pub use forwarder::{EgressForwarder, GATEWAY_MAC, resolver_from};
pub use fragments::FragmentCounters;
pub use frame::{
    BROADCAST, GuestPacket, Mac, TcpFlags, arp_reply, classify, echo_reply_frame,
    internet_checksum, neighbor_advert, udp_frame,
};
pub use icmp::prohibited_frame;
pub use kernel_log::{LOG_GROUP, LOG_SNAPLEN, LoggedPacket, bind_log_group, drain_log};
pub use limits::ForwarderLimits;
pub use names::{MAX_PIN_TTL, MAX_PINS, MIN_PIN_TTL, Names, PinRefusal, is_internal};
pub use policy::{EgressPolicy, Refusal, Verdict, canonical};
pub use poll::PollRound;
pub use refusals::{EgressRefusal, MAX_REFUSALS, RefusalHook, RefusalReason};
pub use tcp::{TCP_BUFFER_BYTES, TcpCounters};
