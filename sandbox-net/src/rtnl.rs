//! Link, address and route configuration over rtnetlink
//! (`netlink-packet-route` builds the messages).
//!
//! Requests are built into one byte buffer ([`Requests`]), each asking for
//! an ACK. [`Rtnetlink::execute`] sends them and checks every ACK; a
//! sandbox's child sends the same bytes with `sandbox-child`'s
//! `Step::Netlink`, which neither allocates nor locks.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::tap::check_name;

/// Which link a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link<'a> {
    /// By index.
    Index(u32),
    /// By name (the kernel looks it up; no index needed in advance).
    Name(&'a str),
}

/// Changes to a link's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkChange {
    /// Up (`IFF_UP`) or down.
    pub up: Option<bool>,
    /// The MTU.
    pub mtu: Option<u32>,
    /// The transmit queue length.
    pub txqueuelen: Option<u32>,
}

/// A batch of rtnetlink requests as bytes, each asking for an ACK, with a
/// description per request for error messages.
///
/// # Examples
///
/// ```
/// use sandbox_net::{Link, LinkChange, Requests};
///
/// let mut requests = Requests::new();
/// requests
///     .set_link(Link::Name("tap0"), LinkChange { mtu: Some(65520), txqueuelen: Some(10_000), up: None })?
///     .add_address(Link::Index(2), "10.0.2.100".parse()?, 24)?
///     .add_default_route("10.0.2.2".parse()?, None);
/// assert_eq!(requests.len(), 3);
/// assert!(!requests.as_bytes().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Requests {
    bytes: Vec<u8>,
    descriptions: Vec<String>,
}

impl Requests {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, message: RouteNetlinkMessage, flags: u16, description: String) {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.descriptions.len() as u32 + 1;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let start = self.bytes.len();
        self.bytes.resize(start + packet.buffer_len(), 0);
        packet.serialize(&mut self.bytes[start..]);
        self.descriptions.push(description);
    }

    fn link_message(link: Link<'_>) -> Result<(LinkMessage, String)> {
        let mut message = LinkMessage::default();
        let name = match link {
            Link::Index(index) => {
                message.header.index = index;
                format!("link {index}")
            }
            Link::Name(name) => {
                check_name(name)?;
                message
                    .attributes
                    .push(LinkAttribute::IfName(name.to_string()));
                format!("link {name}")
            }
        };
        Ok((message, name))
    }

    /// `RTM_SETLINK`: up/down, MTU, transmit queue length.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a bad interface name.
    pub fn set_link(&mut self, link: Link<'_>, change: LinkChange) -> Result<&mut Self> {
        let (mut message, name) = Self::link_message(link)?;
        let mut what = Vec::new();
        if let Some(up) = change.up {
            message.header.change_mask = LinkFlags::Up;
            if up {
                message.header.flags = LinkFlags::Up;
            }
            what.push(if up { "up" } else { "down" }.to_string());
        }
        if let Some(mtu) = change.mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
            what.push(format!("mtu {mtu}"));
        }
        if let Some(len) = change.txqueuelen {
            message.attributes.push(LinkAttribute::TxQueueLen(len));
            what.push(format!("txqueuelen {len}"));
        }
        self.push(
            RouteNetlinkMessage::SetLink(message),
            NLM_F_REQUEST | NLM_F_ACK,
            format!("set {name} {}", what.join(" ")),
        );
        Ok(self)
    }

    /// `RTM_NEWADDR`: an IPv4 or IPv6 address with its prefix length.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a prefix too long for the family, or a link
    /// given by name (addresses need the index).
    pub fn add_address(&mut self, link: Link<'_>, addr: IpAddr, prefix: u8) -> Result<&mut Self> {
        let Link::Index(index) = link else {
            return Err(Error::Invalid {
                what: "link",
                detail: "an address is added to a link by index".into(),
            });
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::Invalid {
                what: "prefix length",
                detail: format!("{addr}/{prefix}: at most {max}"),
            });
        }
        let mut message = AddressMessage::default();
        message.header.family = family(addr);
        message.header.prefix_len = prefix;
        message.header.index = index;
        message.attributes.push(AddressAttribute::Local(addr));
        message.attributes.push(AddressAttribute::Address(addr));
        if addr.is_ipv6() {
            // No duplicate address detection: the link is the sandbox's
            // own, and DAD would leave the address unusable for a second.
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.push(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            format!("add address {addr}/{prefix} to link {index}"),
        );
        Ok(self)
    }

    /// `RTM_NEWROUTE`: a default route via `gateway` (optionally out of a
    /// given link).
    pub fn add_default_route(&mut self, gateway: IpAddr, oif: Option<u32>) -> &mut Self {
        let mut message = RouteMessage::default();
        message.header.address_family = family(gateway);
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Static;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        if let Some(oif) = oif {
            message.attributes.push(RouteAttribute::Oif(oif));
        }
        self.push(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            format!("add default route via {gateway}"),
        );
        self
    }

    /// `RTM_NEWROUTE`: a route to `dest/prefix` directly on link `oif`.
    pub fn add_link_route(&mut self, dest: IpAddr, prefix: u8, oif: u32) -> &mut Self {
        let mut message = RouteMessage::default();
        message.header.address_family = family(dest);
        message.header.destination_prefix_length = prefix;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Static;
        message.header.scope = RouteScope::Link;
        message.header.kind = RouteType::Unicast;
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dest)));
        message.attributes.push(RouteAttribute::Oif(oif));
        self.push(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            format!("add route {dest}/{prefix} on link {oif}"),
        );
        self
    }

    /// `RTM_NEWLINK` of a veth pair `name` ↔ `peer`; the peer is created
    /// directly in the network namespace `peer_netns` if given.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a bad interface name.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: Option<BorrowedFd<'_>>,
    ) -> Result<&mut Self> {
        check_name(name)?;
        check_name(peer)?;
        let mut peer_message = LinkMessage::default();
        peer_message
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        if let Some(ns) = peer_netns {
            peer_message
                .attributes
                .push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        self.push(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            format!("add veth {name} <-> {peer}"),
        );
        Ok(self)
    }

    /// `RTM_DELLINK`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a bad interface name.
    pub fn delete_link(&mut self, link: Link<'_>) -> Result<&mut Self> {
        let (message, name) = Self::link_message(link)?;
        self.push(
            RouteNetlinkMessage::DelLink(message),
            NLM_F_REQUEST | NLM_F_ACK,
            format!("delete {name}"),
        );
        Ok(self)
    }

    /// The requests, as sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many requests.
    pub fn len(&self) -> usize {
        self.descriptions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.descriptions.is_empty()
    }

    /// What request `index` (0-based) does, for messages.
    pub fn description(&self, index: usize) -> &str {
        self.descriptions.get(index).map_or("?", String::as_str)
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// One link, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkState {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Whether it is up (`IFF_UP`).
    pub up: bool,
    /// Its MTU.
    pub mtu: Option<u32>,
    /// Its transmit queue length.
    pub txqueuelen: Option<u32>,
}

/// One address, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddressState {
    /// The link it is on.
    pub index: u32,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

/// One route of the main table, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteState {
    /// The destination (`None` for a default route).
    pub destination: Option<IpAddr>,
    /// The destination prefix length.
    pub prefix: u8,
    /// The gateway, if any.
    pub gateway: Option<IpAddr>,
    /// The output link, if any.
    pub oif: Option<u32>,
}

/// An rtnetlink socket in the caller's network namespace.
#[derive(Debug)]
pub struct Rtnetlink {
    fd: OwnedFd,
}

impl Rtnetlink {
    /// `socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)`.
    ///
    /// # Errors
    ///
    /// [`Error::Os`].
    pub fn open() -> Result<Self> {
        Ok(Self {
            fd: sandbox_child::net::netlink_socket(None)
                .map_err(Error::os("socket(NETLINK_ROUTE)"))?,
        })
    }

    /// Sends `requests` and checks every ACK.
    ///
    /// # Errors
    ///
    /// [`Error::Netlink`] naming the first refused request and the errno;
    /// the requests before it took effect, the ones after it were not
    /// processed.
    pub fn execute(&self, requests: &Requests) -> Result<()> {
        use sandbox_child::net::{NetlinkFailure, send_each_and_check_acks};
        let count = requests.len() as u32;
        send_each_and_check_acks(self.fd.as_fd(), requests.as_bytes(), count).map_err(|failure| {
            Error::Netlink {
                request: match failure {
                    NetlinkFailure::Refused { at, .. } => format!(
                        "{} (request {} of {})",
                        requests.description(at as usize),
                        at + 1,
                        requests.len()
                    ),
                    NetlinkFailure::Socket(_) => "the batch (send or receive)".to_string(),
                },
                error: failure.errno().into(),
            }
        })
    }

    fn dump(&self, message: RouteNetlinkMessage, what: &str) -> Result<Vec<RouteNetlinkMessage>> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = 1;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut request = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut request);
        rustix::io::write(&self.fd, &request).map_err(Error::os(format!("send {what}")))?;
        let mut out = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = rustix::io::read(&self.fd, &mut buffer)
                .map_err(Error::os(format!("receive {what}")))?;
            let mut offset = 0;
            while offset < n {
                let message =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer[offset..n])
                        .map_err(|e| Error::Malformed {
                            request: what.to_string(),
                            detail: e.to_string(),
                        })?;
                let len = message.header.length as usize;
                match message.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return Err(Error::Netlink {
                            request: what.to_string(),
                            error: e.to_io(),
                        });
                    }
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }

    /// Every link of the namespace.
    ///
    /// # Errors
    ///
    /// [`Error::Os`], [`Error::Netlink`] or [`Error::Malformed`].
    pub fn links(&self) -> Result<Vec<LinkState>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "list links",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .map(|link| {
                let mut state = LinkState {
                    index: link.header.index,
                    name: String::new(),
                    up: link.header.flags.contains(LinkFlags::Up),
                    mtu: None,
                    txqueuelen: None,
                };
                for attribute in link.attributes {
                    match attribute {
                        LinkAttribute::IfName(name) => state.name = name,
                        LinkAttribute::Mtu(mtu) => state.mtu = Some(mtu),
                        LinkAttribute::TxQueueLen(len) => state.txqueuelen = Some(len),
                        _ => {}
                    }
                }
                state
            })
            .collect())
    }

    /// The link named `name`, if there is one.
    ///
    /// # Errors
    ///
    /// As for [`links`](Rtnetlink::links).
    pub fn link(&self, name: &str) -> Result<Option<LinkState>> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// Every address of the namespace.
    ///
    /// # Errors
    ///
    /// [`Error::Os`], [`Error::Netlink`] or [`Error::Malformed`].
    pub fn addresses(&self) -> Result<Vec<AddressState>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            "list addresses",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .filter_map(|a| {
                let addr = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = addr.or_else(|| {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                Some(AddressState {
                    index: a.header.index,
                    addr,
                    prefix: a.header.prefix_len,
                })
            })
            .collect())
    }

    /// The routes of the main table (IPv4 and IPv6).
    ///
    /// # Errors
    ///
    /// [`Error::Os`], [`Error::Netlink`] or [`Error::Malformed`].
    pub fn routes(&self) -> Result<Vec<RouteState>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            "list routes",
        )?;
        let ip = |a: &RouteAddress| match a {
            RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
            RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
            _ => None,
        };
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .filter(|r| r.header.table == RouteHeader::RT_TABLE_MAIN)
            .map(|r| {
                let mut state = RouteState {
                    destination: None,
                    prefix: r.header.destination_prefix_length,
                    gateway: None,
                    oif: None,
                };
                for attribute in &r.attributes {
                    match attribute {
                        RouteAttribute::Destination(a) => state.destination = ip(a),
                        RouteAttribute::Gateway(a) => state.gateway = ip(a),
                        RouteAttribute::Oif(oif) => state.oif = Some(*oif),
                        _ => {}
                    }
                }
                state
            })
            .collect())
    }
}
