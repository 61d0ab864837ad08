//! Arbitrary bytes as frames from the sandbox: the classifier never panics,
//! every reply it leads to is well formed (a UDP reply classifies back to
//! the same datagram), and every flow gets a verdict from the second
//! enforcement point.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sandbox_net::Gateway;
use sandbox_net::forward::{
    EgressPolicy, GuestPacket, arp_reply, classify, neighbor_advert, udp_frame,
};
use sandbox_policy::{Policy, Protocol};

const GATEWAY_MAC: [u8; 6] = [0x02, 0x53, 0x42, 0x58, 0x00, 0x02];

fn policy() -> &'static EgressPolicy {
    static POLICY: OnceLock<EgressPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let network = Policy::profile("networked")
            .map(|p| p.network)
            .unwrap_or_default();
        EgressPolicy::from_network(&network, Gateway::default())
    })
}

fuzz_target!(|frame: &[u8]| {
    match classify(frame) {
        GuestPacket::ArpRequest {
            sender_mac,
            sender_ip,
            target,
        } => {
            let reply = arp_reply(GATEWAY_MAC, target, sender_mac, sender_ip);
            assert_eq!(reply.len(), 42);
        }
        GuestPacket::NeighborSolicit {
            src_mac,
            src_ip,
            target,
        } => {
            let _ = neighbor_advert(GATEWAY_MAC, target, src_mac, src_ip);
        }
        GuestPacket::Udp {
            src_mac,
            src,
            dst,
            payload,
        } => {
            let _ = policy().decide(dst.ip(), dst.port(), Protocol::Udp);
            if let Some(reply) = udp_frame(GATEWAY_MAC, src_mac, dst, src, payload) {
                match classify(&reply) {
                    GuestPacket::Udp {
                        src: s,
                        dst: d,
                        payload: p,
                        ..
                    } => assert!(s == dst && d == src && p == payload),
                    other => panic!("a built UDP frame classified as {other:?}"),
                }
            }
        }
        GuestPacket::Tcp { dst, .. } => {
            let _ = policy().decide(dst.ip(), dst.port(), Protocol::Tcp);
        }
        GuestPacket::EchoRequest { dst, .. } => {
            let _ = policy().decide(dst, 0, Protocol::Udp);
        }
        GuestPacket::Ignored(_) => {}
    }
});
