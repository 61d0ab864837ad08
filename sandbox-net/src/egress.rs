//! `EgressNamespace`: a network namespace with `tap0` configured and the
//! egress ruleset loaded before the link comes up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use sandbox_child::{Reg, Step, Trial};

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
        let (sync_read, sync_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(Error::os("pipe"))?;
        let (ours, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(Error::os("socketpair"))?;
        // Registers: the tap, then the namespace fd.
        let (tap_reg, netns_reg): (Reg, Reg) = (0, 1);
        let mut steps = vec![
            (
                Step::WaitForParent(sync_read.as_raw_fd()),
                "wait for the id maps".to_string(),
            ),
            (Step::LoopbackUp, "bring loopback up".to_string()),
        ];
        steps.extend(egress_steps(
            network,
            addressing,
            theirs.as_fd(),
            tap_reg,
            &[],
        )?);
        steps.push((
            Step::OpenFile {
                path: c"/proc/self/ns/net".to_owned(),
                flags: libc::O_RDONLY,
                out: netns_reg,
            },
            "open the network namespace".to_string(),
        ));
        steps.push((
            Step::SendFd {
                socket: theirs.as_raw_fd(),
                reg: netns_reg,
            },
            "pass the namespace fd to the parent".to_string(),
        ));
        let (steps, names): (Vec<Step>, Vec<String>) = steps.into_iter().unzip();
        let trial =
            Trial::start(libc::CLONE_NEWUSER | libc::CLONE_NEWNET, &steps, 2).map_err(|f| {
                Error::Os {
                    operation: "clone(CLONE_NEWUSER|CLONE_NEWNET)".into(),
                    error: f.errno.into(),
                }
            })?;
        let pid = trial.pid();
        drop((sync_read, theirs));
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
        // The fds the child sent wait in the socket after it exits.
        if let Err(failure) = trial.finish() {
            return Err(Error::Os {
                operation: format!(
                    "rootless egress namespace: {}",
                    names
                        .get(failure.step)
                        .map_or("the child (clone, or it died)", String::as_str)
                ),
                error: failure.errno.into(),
            });
        }
        mapped.map_err(|error| Error::Os {
            operation: format!("write the id maps of the rootless child {pid}"),
            error,
        })?;
        let tap = crate::tap::recv_fd(&ours)?;
        let netns = crate::tap::recv_fd(&ours)?;
        Ok(Self {
            tap,
            netns,
            ruleset: Ruleset::from_network(network, &addressing.gateway),
        })
    }
}

/// The link index the tap gets in a new network namespace: loopback is 1,
/// the first device made is 2 (the child checks).
pub const TAP_INDEX: u32 = 2;

/// The steps a child in a new network namespace runs to make its egress
/// inside, each with a description for errors: the ruleset for `network`
/// (one nf_tables batch); the tap, which must come out as link
/// [`TAP_INDEX`], its fd in register `tap`; its MTU, queue length,
/// addresses, state and routes (rtnetlink); its fd passed over `socket`
/// (an fd the child inherits at the same number); the register closed.
/// Then, for each register of `netfilter`, a `NETLINK_NETFILTER` socket
/// opened in the namespace into it and passed over `socket` too (for
/// [`EgressForwarder::set_log_socket`](crate::forward::EgressForwarder::set_log_socket)
/// and
/// [`EgressForwarder::set_pin_socket`](crate::forward::EgressForwarder::set_pin_socket)).
/// Loopback and anything else the namespace needs are the caller's.
///
/// The run's child (`sandbox-core`) and
/// [`EgressNamespace::create_rootless`] run exactly these.
///
/// # Errors
///
/// A tap name longer than [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) or
/// holding a NUL; libnftnl failing to build the batch.
pub fn egress_steps(
    network: &Network,
    addressing: &EgressAddressing,
    socket: BorrowedFd<'_>,
    tap: Reg,
    netfilter: &[Reg],
) -> Result<Vec<(Step, String)>> {
    crate::tap::check_name(addressing.name)?;
    let name = std::ffi::CString::new(addressing.name).map_err(|_| Error::Invalid {
        what: "interface name",
        detail: addressing.name.into(),
    })?;
    let batch = Ruleset::from_network(network, &addressing.gateway).batch()?;
    let setup = tap_setup(addressing, TAP_INDEX)?;
    let mut steps = vec![
        (
            Step::NftBatch {
                bytes: batch.as_bytes().to_vec(),
                acks: batch.acks(),
            },
            "install the egress ruleset (nftables)".into(),
        ),
        (
            Step::CreateTap {
                name,
                index: TAP_INDEX as std::ffi::c_int,
                out: tap,
            },
            format!("create {} (/dev/net/tun, TUNSETIFF)", addressing.name),
        ),
        (
            Step::Netlink {
                bytes: setup.as_bytes().to_vec(),
                count: setup.len() as u32,
            },
            format!(
                "configure {} (MTU {}, queue, addresses, up, routes)",
                addressing.name, addressing.mtu
            ),
        ),
        (
            Step::SendFd {
                socket: socket.as_raw_fd(),
                reg: tap,
            },
            "pass the tap fd to the parent".into(),
        ),
        (Step::Close(tap), "close the tap".into()),
    ];
    for &reg in netfilter {
        steps.extend([
            (
                Step::OpenNetfilter { out: reg },
                "open a netfilter socket in the namespace".into(),
            ),
            (
                Step::SendFd {
                    socket: socket.as_raw_fd(),
                    reg,
                },
                "pass the netfilter socket to the parent".into(),
            ),
            (Step::Close(reg), "close the netfilter socket".into()),
        ]);
    }
    Ok(steps)
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
