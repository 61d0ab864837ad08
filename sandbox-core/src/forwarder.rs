//! A run's egress forwarder, made from what the child hands over.

use std::os::fd::OwnedFd;

use crate::error::{Error, Result};
use crate::run::Inner;

/// Receives what the child hands over for egress (the tap, the log socket,
/// with host-name rules the pin socket) and makes the run's forwarder,
/// its log group bound: before the command starts, so that nothing it
/// sends goes unseen.
pub(crate) fn prepare_forwarder(
    inner: &Inner,
    socket: &OwnedFd,
) -> Result<sandbox_net::forward::EgressForwarder> {
    use sandbox_net::forward::{EgressForwarder, EgressPolicy};
    use sandbox_net::{EgressAddressing, Gateway};
    let fail = |what: &'static str| {
        move |e: sandbox_net::Error| Error::Supervise {
            what,
            error: std::io::Error::other(e),
        }
    };
    let tap = sandbox_net::recv_fd(socket).map_err(fail("receive the tap fd"))?;
    let log_socket = sandbox_net::recv_fd(socket).map_err(fail("receive the log socket"))?;
    let pin_socket = if inner.policy.network.has_host_rules() {
        Some(sandbox_net::recv_fd(socket).map_err(fail("receive the netfilter socket"))?)
    } else {
        None
    };
    let policy = EgressPolicy::from_network(&inner.policy.network, Gateway::default());
    let forwarder = EgressForwarder::new(
        tap,
        policy,
        &EgressAddressing {
            mtu: inner
                .decisions
                .network
                .egress_mtu()
                .unwrap_or(EgressAddressing::default().mtu),
            ..EgressAddressing::default()
        },
        inner.dns_upstream,
        forwarder_limits(&inner.policy.network.limits, inner.pin_ttl),
    )
    .map_err(fail("start the egress forwarder"))?;
    let mut forwarder = forwarder;
    forwarder
        .set_log_socket(log_socket)
        .map_err(fail("bind the ruleset's log group"))?;
    if let Some(pin_socket) = pin_socket {
        forwarder.set_pin_socket(pin_socket);
    }
    if let Some(hook) = &inner.egress_hook {
        let hook = std::sync::Arc::clone(&hook.0);
        forwarder.on_refusal(Box::new(move |refusal| hook(refusal)));
    }
    Ok(forwarder)
}

/// The forwarder's limits as `network.limits` says (the forwarder's
/// defaults where unset; buffers in proportion to the TCP cap).
fn forwarder_limits(
    limits: &sandbox_policy::NetLimits,
    pin_ttl: Option<(std::time::Duration, std::time::Duration)>,
) -> sandbox_net::forward::ForwarderLimits {
    use sandbox_net::forward::{ForwarderLimits, TCP_BUFFER_BYTES};
    let defaults = ForwarderLimits::default();
    let tcp = limits
        .tcp_connections
        .map_or(defaults.max_tcp_flows, |n| n as usize);
    ForwarderLimits {
        max_tcp_flows: tcp,
        max_buffered_bytes: tcp * 2 * TCP_BUFFER_BYTES,
        max_udp_flows: limits
            .udp_flows
            .map_or(defaults.max_udp_flows, |n| n as usize),
        new_flows_per_second: limits
            .new_flows_per_second
            .unwrap_or(defaults.new_flows_per_second),
        min_pin_ttl: pin_ttl.map_or(defaults.min_pin_ttl, |(min, _)| min),
        max_pin_ttl: pin_ttl.map_or(defaults.max_pin_ttl, |(_, max)| max),
        ..defaults
    }
}
