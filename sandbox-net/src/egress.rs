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
        let lo = link_up(Link::Name("lo"))?;
        rtnl.execute(&lo)?;
        let ruleset = Ruleset::from_network(network, &addressing.gateway);
        // A namespace made just now: create, nothing to replace.
        ruleset.batch()?.send()?;
        let tap = create_tap(
            addressing.name,
            TapOptions {
                vnet_hdr: true,
                ..TapOptions::default()
            },
        )?;
        let index = rtnl
            .link(addressing.name)?
            .ok_or_else(|| Error::Invalid {
                what: "tap device",
                detail: format!("{} vanished after TUNSETIFF", addressing.name),
            })?
            .index;
        let setup = tap_setup(addressing, index)?;
        rtnl.execute(&setup)?;
        Ok(Self {
            tap,
            netns: current_network_namespace()?,
            ruleset,
        })
    }

    /// The same namespace made without privilege: a child process is
    /// cloned into a new user namespace (mapping the caller's uid and gid
    /// to 0 there) and a new network namespace, and sets it up from bytes
    /// built here — rtnetlink requests, the nftables batch, a prebuilt
    /// `SCM_RIGHTS` buffer — with raw syscalls and no allocation, then
    /// passes the tap fd and the namespace fd back and exits. The calling
    /// thread does not move. Works as root too.
    ///
    /// Needs unprivileged user namespaces and a `/dev/net/tun` the caller
    /// may open (mode 0666 on most distributions).
    ///
    /// # Errors
    ///
    /// [`Error::Os`] naming the child's step that failed and its errno;
    /// nothing is left behind (the child and its namespaces are gone).
    pub fn create_rootless(network: &Network, addressing: &EgressAddressing) -> Result<Self> {
        // In a fresh namespace loopback is link 1 and the first device made
        // is link 2; the child checks.
        const TAP_INDEX: u32 = 2;
        let lo = link_up(Link::Name("lo"))?;
        let ruleset = Ruleset::from_network(network, &addressing.gateway);
        let batch = ruleset.batch()?;
        let setup = tap_setup(addressing, TAP_INDEX)?;
        let (sync_read, sync_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(Error::os("pipe"))?;
        let (status_read, status_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(Error::os("pipe"))?;
        let (ours, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(Error::os("socketpair"))?;
        use std::os::fd::AsRawFd;
        let mut plan = crate::sys::RootlessPlan {
            sync_read: sync_read.as_raw_fd(),
            status_write: status_write.as_raw_fd(),
            fd_socket: theirs.as_raw_fd(),
            lo_up: lo.as_bytes().to_vec(),
            lo_up_count: lo.len() as u32,
            nft_batch: batch.as_bytes().to_vec(),
            nft_acks: batch.acks(),
            tap_name: std::ffi::CString::new(addressing.name).map_err(|_| Error::Invalid {
                what: "interface name",
                detail: addressing.name.into(),
            })?,
            tap_index: TAP_INDEX as i32,
            tap_setup: setup.as_bytes().to_vec(),
            tap_setup_count: setup.len() as u32,
            fd_buffer: crate::tap::FdPassBuffer::new().into_bytes(),
        };
        crate::tap::check_name(addressing.name)?;
        let pid = crate::sys::spawn_rootless(&mut plan)
            .map_err(Error::os("clone(CLONE_NEWUSER|CLONE_NEWNET)"))?;
        drop((sync_read, status_write, theirs));
        let maps = || -> std::io::Result<()> {
            let uid = rustix::process::geteuid().as_raw();
            let gid = rustix::process::getegid().as_raw();
            std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
            std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 1\n"))?;
            std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 1\n"))?;
            rustix::io::write(&sync_write, &[1])?;
            Ok(())
        };
        let mapped = maps();
        drop(sync_write);
        crate::sys::reap(pid);
        let mut record = [0u8; 8];
        if rustix::io::read(&status_read, &mut record).ok() == Some(8) {
            let step = i32::from_ne_bytes([record[0], record[1], record[2], record[3]]) as usize;
            let errno = i32::from_ne_bytes([record[4], record[5], record[6], record[7]]);
            return Err(Error::Os {
                operation: format!(
                    "rootless egress namespace: {}",
                    crate::sys::ROOTLESS_STEPS.get(step).copied().unwrap_or("?")
                ),
                source: std::io::Error::from_raw_os_error(errno),
            });
        }
        mapped.map_err(|source| Error::Os {
            operation: format!("write the id maps of the rootless child {pid}"),
            source,
        })?;
        let tap = crate::tap::recv_fd(&ours)?;
        let netns = crate::tap::recv_fd(&ours)?;
        Ok(Self {
            tap,
            netns,
            ruleset,
        })
    }
}

/// A request that brings `link` up.
fn link_up(link: Link<'_>) -> Result<Requests> {
    let mut requests = Requests::new();
    requests.set_link(
        link,
        LinkChange {
            up: Some(true),
            ..LinkChange::default()
        },
    )?;
    Ok(requests)
}

/// The requests that configure the tap (by index): MTU, queue length,
/// addresses, up, default routes — for a child that sends them prebuilt.
///
/// # Errors
///
/// [`Error::Invalid`] for an addressing the kernel would refuse.
pub fn tap_setup(addressing: &EgressAddressing, index: u32) -> Result<Requests> {
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
    Ok(setup)
}
