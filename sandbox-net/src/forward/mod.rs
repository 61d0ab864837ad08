//! The userspace egress forwarder's building blocks (issue 6, in
//! progress): a bounds-checked classifier of guest frames and builders of
//! the frames the gateway answers with ([`classify`], [`arp_reply`],
//! [`neighbor_advert`], [`udp_frame`]), and the second enforcement point
//! ([`EgressPolicy`]), which decides every new flow before a host socket is
//! opened for it; and [`EgressForwarder`], which so far answers ARP and
//! neighbour discovery and relays UDP and DNS (TCP and ICMP echo are next).

mod forwarder;
mod frame;
mod policy;
mod tcp;

pub use forwarder::{Counters, EgressForwarder, ForwarderLimits, GATEWAY_MAC, resolver_from};
pub use frame::{
    BROADCAST, GuestPacket, Mac, TcpFlags, arp_reply, classify, internet_checksum, neighbor_advert,
    udp_frame,
};
pub use policy::{EgressPolicy, Refusal, Verdict, canonical};
pub use tcp::TcpCounters;
