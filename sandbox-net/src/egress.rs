//! `EgressNamespace`: a network namespace with `tap0` configured and the
//! egress ruleset loaded before the link comes up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;

use sandbox_policy::Network;

use crate::error::{Error, Result};
use crate::namespace::{current_network_namespace, unshare_network_namespace};
use crate::nft::{Gateway, Ruleset};
use crate::rtnl::{Link, LinkChange, Requests, Rtnetlink};
use crate::tap::{TapOptions, create_tap};

/// The addressing of a sandbox's egress link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressAddressing {
    /// The tap device's name.
    pub name: &'static str,
    /// The sandbox's IPv4 address and prefix.
    pub v4: (Ipv4Addr, u8),
    /// The sandbox's IPv6 address and prefix, if IPv6 is set up.
    pub v6: Option<(Ipv6Addr, u8)>,
    /// The gateways (the forwarder's side).
    pub gateway: Gateway,
    /// The link MTU.
    pub mtu: u32,
    /// The transmit queue length (large, so bursts are not dropped).
    pub txqueuelen: u32,
}

impl Default for EgressAddressing {
    /// `tap0`: `10.0.2.100/24` via `10.0.2.2`, `fd00:0:2::100/64` via
    /// `fd00:0:2::2`, MTU 65520, txqueuelen 10000.
    fn default() -> Self {
        Self {
            name: "tap0",
            v4: (Ipv4Addr::new(10, 0, 2, 100), 24),
            v6: Some((Ipv6Addr::new(0xfd00, 0, 2, 0, 0, 0, 0, 0x100), 64)),
            gateway: Gateway::default(),
            mtu: 65520,
            txqueuelen: 10_000,
        }
    }
}

/// A network namespace set up for allowlisted egress: loopback up, the
/// tap device addressed with its default routes, the egress ruleset
/// installed *before* the tap came up (there is no moment of unfiltered
/// egress), and the tap fd for the forwarder.
#[derive(Debug)]
pub struct EgressNamespace {
    /// The tap device's queue fd: frames the sandbox sends come out here.
    pub tap: OwnedFd,
    /// The namespace (`/proc/thread-self/ns/net`), to enter or inspect.
    pub netns: OwnedFd,
    /// The ruleset installed.
    pub ruleset: Ruleset,
}

impl EgressNamespace {
    /// Moves the calling **thread** into a new network namespace and sets
    /// it up for `network`, as root (`CAP_SYS_ADMIN` and `CAP_NET_ADMIN`).
    /// A rootless sandbox does the same steps in its own user namespace,
    /// from prebuilt bytes ([`Requests::as_bytes`], [`Ruleset::batch`]).
    ///
    /// Order: new netns; loopback up; the ruleset; the tap; its MTU, queue
    /// length and addresses; the tap up; the default routes.
    ///
    /// # Errors
    ///
    /// The first step that failed; the thread is then in a half-made
    /// namespace, which dies with its last user.
    pub fn create(network: &Network, addressing: &EgressAddressing) -> Result<Self> {
        unshare_network_namespace()?;
        let rtnl = Rtnetlink::open()?;
        let mut lo = Requests::new();
        lo.set_link(
            Link::Name("lo"),
            LinkChange {
                up: Some(true),
                ..LinkChange::default()
            },
        )?;
        rtnl.execute(&lo)?;
        let ruleset = Ruleset::from_network(network, &addressing.gateway);
        ruleset.install()?;
        let tap = create_tap(addressing.name, TapOptions::default())?;
        let index = rtnl
            .link(addressing.name)?
            .ok_or_else(|| Error::Invalid {
                what: "tap device",
                detail: format!("{} vanished after TUNSETIFF", addressing.name),
            })?
            .index;
        let mut setup = Requests::new();
        setup.set_link(
            Link::Index(index),
            LinkChange {
                up: None,
                mtu: Some(addressing.mtu),
                txqueuelen: Some(addressing.txqueuelen),
            },
        )?;
        setup.add_address(
            Link::Index(index),
            IpAddr::V4(addressing.v4.0),
            addressing.v4.1,
        )?;
        if let Some((v6, prefix)) = addressing.v6 {
            setup.add_address(Link::Index(index), IpAddr::V6(v6), prefix)?;
        }
        setup.set_link(
            Link::Index(index),
            LinkChange {
                up: Some(true),
                ..LinkChange::default()
            },
        )?;
        setup.add_default_route(IpAddr::V4(addressing.gateway.v4), Some(index));
        if let (Some(_), Some(gw6)) = (addressing.v6, addressing.gateway.v6) {
            setup.add_default_route(IpAddr::V6(gw6), Some(index));
        }
        rtnl.execute(&setup)?;
        Ok(Self {
            tap,
            netns: current_network_namespace()?,
            ruleset,
        })
    }
}
