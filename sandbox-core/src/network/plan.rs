//! The allowlisted network's steps.

use std::os::fd::BorrowedFd;

use sandbox_policy::Policy;

use crate::error::{Error, Result};
use sandbox_child::Step;

use crate::plan::builder::{Builder, cstring};

/// The egress network: the ruleset first, then the tap (link 2 of the new
/// namespace) configured and up, and its fd handed to the parent.
pub(crate) fn egress_steps(
    b: &mut Builder,
    policy: &Policy,
    mtu: u32,
    gid: u32,
    socket: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let addressing = sandbox_net::EgressAddressing {
        mtu,
        ..sandbox_net::EgressAddressing::default()
    };
    let tap = b.register();
    let socket = socket.ok_or_else(|| Error::Prepare {
        what: "the egress socket pair".into(),
        error: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    // After the tap: a netfilter socket for the ruleset's log group (what
    // the kernel refuses), and with host-name rules one for the pin sets.
    let mut netfilter = vec![b.register()];
    if policy.network.has_host_rules() {
        netfilter.push(b.register());
    }
    let steps = sandbox_net::egress_steps(&policy.network, &addressing, socket, tap, &netfilter)
        .map_err(|e| Error::Prepare {
            what: "build the egress namespace's steps".into(),
            error: std::io::Error::other(e),
        })?;
    for (step, description) in steps {
        b.push(step, description);
    }
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
