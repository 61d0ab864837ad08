//! The allowlisted network's steps.

use std::ffi::c_int;

use sandbox_policy::Policy;

use crate::error::{Error, Result};
use crate::sys::child::Step;

use super::{Builder, cstring};

/// The egress network: the ruleset first, then the tap (link 2 of the new
/// namespace) configured and up, and its fd handed to the parent.
pub(super) fn egress_steps(
    b: &mut Builder,
    policy: &Policy,
    mtu: u32,
    gid: u32,
    socket: c_int,
) -> Result<()> {
    use sandbox_net::{EgressAddressing, FdPassBuffer, Gateway, Ruleset, tap_setup};
    let prepare = |what: &str| {
        let what = what.to_string();
        move |e: sandbox_net::Error| Error::Prepare {
            what,
            source: std::io::Error::other(e.to_string()),
        }
    };
    const TAP_INDEX: u32 = 2;
    let addressing = EgressAddressing {
        mtu,
        ..EgressAddressing::default()
    };
    let batch = Ruleset::from_network(&policy.network, &Gateway::default())
        .batch()
        .map_err(prepare("build the nftables batch"))?;
    b.push(
        Step::NftBatch {
            bytes: batch.as_bytes().to_vec(),
            acks: batch.acks(),
        },
        "install the egress ruleset (nftables)",
    );
    let tap = b.register();
    b.push(
        Step::CreateTap {
            name: cstring("interface name", addressing.name.as_bytes())?,
            index: TAP_INDEX as c_int,
            out: tap,
        },
        format!("create {} (/dev/net/tun, TUNSETIFF)", addressing.name),
    );
    let setup = tap_setup(&addressing, TAP_INDEX).map_err(prepare("build the tap's requests"))?;
    b.push(
        Step::Netlink {
            bytes: setup.as_bytes().to_vec(),
            count: setup.len() as u32,
        },
        format!(
            "configure {} (MTU {}, queue, addresses, up, routes)",
            addressing.name, addressing.mtu
        ),
    );
    b.push(
        Step::SendFd {
            socket,
            reg: tap,
            buffer: std::cell::RefCell::new(FdPassBuffer::new()),
        },
        "pass the tap fd to the parent",
    );
    b.push(Step::Close(tap), "close the tap");
    // ICMP echo through ping sockets, for the sandbox's group only (the
    // namespace's default lets no group open one).
    b.push(
        Step::WriteSetting {
            path: cstring("path", b"/proc/sys/net/ipv4/ping_group_range")?,
            contents: format!("{gid} {gid}").into_bytes(),
        },
        format!("net.ipv4.ping_group_range = {gid} {gid}"),
    );
    Ok(())
}

/// What the sandbox's `/etc/resolv.conf` says with `dns = true`: the
/// gateway, where the forwarder answers.
pub(crate) fn resolv_conf_text() -> String {
    format!(
        "# Written by sandbox-core: DNS goes to the egress gateway.\nnameserver {}\noptions edns0\n",
        sandbox_net::Gateway::default().v4
    )
}
