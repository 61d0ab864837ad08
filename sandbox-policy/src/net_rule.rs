//! Network rules: `CIDR`, `CIDR:PORT`, `CIDR:PORT-PORT`, each optionally
//! followed by `/tcp` or `/udp`; IPv6 in brackets when a port follows
//! (`[2001:db8::/32]:443/tcp`); and the same forms with a host name or a
//! `*.` wildcard in place of the CIDR (`pypi.org:443/tcp`,
//! `*.githubusercontent.com:443`). A hand-written, exact parser.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::host_rule::{HostPattern, looks_like_host};

/// An address range: an address and a prefix length, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// An inclusive port range; a single port is `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    start: u16,
    end: u16,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Where a rule points: a range of addresses, or host names (whose
/// addresses are learnt from the DNS answers the sandbox gets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// An address range.
    Net(IpNet),
    /// A host name or a wildcard.
    Host(HostPattern),
}

/// One allow or deny rule: a range of addresses or host names, optionally
/// ports and a protocol. Absent ports or protocol mean "any".
///
/// # Examples
///
/// ```
/// use sandbox_policy::NetRule;
///
/// let rule: NetRule = "10.0.0.0/8:443/tcp".parse()?;
/// assert_eq!(rule.to_string(), "10.0.0.0/8:443/tcp");
/// let v6: NetRule = "[2001:db8::/32]:8000-8080".parse()?;
/// assert!(v6.covers(&"[2001:db8:1::/48]:8080".parse()?));
/// let err = "10.0.0.0/33".parse::<NetRule>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid CIDR \"10.0.0.0/33\": prefix length must be at most 32");
/// let named: NetRule = "*.githubusercontent.com:443/tcp".parse()?;
/// assert_eq!(named.host_pattern().map(|h| h.name()), Some("githubusercontent.com"));
/// assert_eq!(named.net(), None);
/// # Ok::<(), sandbox_policy::NetRuleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetRule {
    dest: Destination,
    ports: Option<PortRange>,
    protocol: Option<Protocol>,
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NetRuleError {
    message: String,
}

fn fail(message: String) -> NetRuleError {
    NetRuleError { message }
}

impl NetRuleError {
    pub(crate) fn new(message: String) -> Self {
        Self { message }
    }
}

impl IpNet {
    /// `addr/prefix`, refusing a prefix too long for the family or host
    /// bits set.
    ///
    /// # Errors
    ///
    /// A message naming the problem.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, NetRuleError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(fail(format!(
                "invalid CIDR \"{addr}/{prefix}\": prefix length must be at most {max}"
            )));
        }
        let net = Self { addr, prefix };
        if net.network() != addr {
            return Err(fail(format!(
                "invalid CIDR \"{addr}/{prefix}\": host bits are set (the network is {}/{prefix})",
                net.network()
            )));
        }
        Ok(net)
    }

    /// The first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// `addr` with the host bits cleared.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    /// Whether `addr` is in this range (same family only).
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                Self {
                    addr,
                    prefix: self.prefix,
                }
                .network()
                    == self.addr
            }
            _ => false,
        }
    }

    /// Whether every address of `other` is in this range.
    pub fn contains(&self, other: &IpNet) -> bool {
        other.prefix >= self.prefix && self.contains_addr(other.addr)
    }
}

impl PortRange {
    /// `start..=end`.
    ///
    /// # Errors
    ///
    /// Port 0, or `start > end`.
    pub fn new(start: u16, end: u16) -> Result<Self, NetRuleError> {
        if start == 0 {
            return Err(fail("invalid port 0: ports are 1-65535".into()));
        }
        if start > end {
            return Err(fail(format!(
                "invalid port range {start}-{end}: the start is above the end"
            )));
        }
        Ok(Self { start, end })
    }

    /// The first port.
    pub fn start(&self) -> u16 {
        self.start
    }

    /// The last port.
    pub fn end(&self) -> u16 {
        self.end
    }

    /// Whether every port of `other` is in this range.
    pub fn contains(&self, other: &PortRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl NetRule {
    /// An address rule from its parts.
    pub fn new(net: IpNet, ports: Option<PortRange>, protocol: Option<Protocol>) -> Self {
        Self {
            dest: Destination::Net(net),
            ports,
            protocol,
        }
    }

    /// A host-name rule from its parts.
    pub fn host(host: HostPattern, ports: Option<PortRange>, protocol: Option<Protocol>) -> Self {
        Self {
            dest: Destination::Host(host),
            ports,
            protocol,
        }
    }

    /// Where it points.
    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// The addresses, for an address rule.
    pub fn net(&self) -> Option<IpNet> {
        match &self.dest {
            Destination::Net(net) => Some(*net),
            Destination::Host(_) => None,
        }
    }

    /// The host names, for a host-name rule.
    pub fn host_pattern(&self) -> Option<&HostPattern> {
        match &self.dest {
            Destination::Host(host) => Some(host),
            Destination::Net(_) => None,
        }
    }

    /// The ports, if limited.
    pub fn ports(&self) -> Option<PortRange> {
        self.ports
    }

    /// The protocol, if limited.
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// Whether everything `other` matches, this rule matches too. An
    /// address rule never covers a host-name rule (a name may resolve
    /// anywhere) nor the other way round.
    pub fn covers(&self, other: &NetRule) -> bool {
        let ports = match (self.ports, other.ports) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a.contains(&b),
        };
        let protocol = self.protocol.is_none() || self.protocol == other.protocol;
        let dest = match (&self.dest, &other.dest) {
            (Destination::Net(a), Destination::Net(b)) => a.contains(b),
            (Destination::Host(a), Destination::Host(b)) => a.covers(b),
            _ => false,
        };
        dest && ports && protocol
    }

    /// Whether the port and protocol of a flow match (the destination
    /// aside).
    pub fn matches_transport(&self, port: u16, protocol: Protocol) -> bool {
        self.ports.is_none_or(|p| p.start <= port && port <= p.end)
            && self.protocol.is_none_or(|p| p == protocol)
    }

    /// Whether a connection to `addr:port` over `protocol` matches an
    /// address rule (a host-name rule matches no address by itself: the
    /// forwarder pins the addresses its names resolve to).
    pub fn matches(&self, addr: IpAddr, port: u16, protocol: Protocol) -> bool {
        self.net().is_some_and(|net| net.contains_addr(addr))
            && self.matches_transport(port, protocol)
    }

    /// Whether the rule covers every protocol to `addr` (it names neither
    /// ports nor a protocol): what an ICMP echo to `addr` needs.
    pub fn matches_any_transport(&self, addr: IpAddr) -> bool {
        self.net().is_some_and(|net| net.contains_addr(addr))
            && self.ports.is_none()
            && self.protocol.is_none()
    }
}

fn parse_net(s: &str, rule: &str) -> Result<IpNet, NetRuleError> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        fail(format!(
            "invalid rule {rule:?}: {addr:?} is not an IP address"
        ))
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u8>().map_err(|_| {
                fail(format!(
                    "invalid CIDR \"{s}\": prefix length must be at most {max}"
                ))
            })?
        }
        Some(p) => {
            return Err(fail(format!(
                "invalid CIDR \"{s}\": {p:?} is not a prefix length"
            )));
        }
    };
    IpNet::new(addr, prefix)
}

fn parse_port(p: &str, rule: &str) -> Result<u16, NetRuleError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(format!("invalid rule {rule:?}: {p:?} is not a port")));
    }
    p.parse::<u16>()
        .map_err(|_| fail(format!("invalid port {p} in {rule:?}: ports are 1-65535")))
}

fn parse_ports(s: &str, rule: &str) -> Result<PortRange, NetRuleError> {
    let (start, end) = match s.split_once('-') {
        Some((a, b)) => (parse_port(a, rule)?, parse_port(b, rule)?),
        None => {
            let p = parse_port(s, rule)?;
            (p, p)
        }
    };
    PortRange::new(start, end).map_err(|e| fail(format!("{e} (in {rule:?})")))
}

impl FromStr for NetRule {
    type Err = NetRuleError;

    fn from_str(rule: &str) -> Result<Self, NetRuleError> {
        if rule.is_empty() {
            return Err(fail(
                "invalid rule \"\": expected CIDR[:PORT[-PORT]][/tcp|/udp] or HOST[:PORT[-PORT]][/tcp|/udp]".into(),
            ));
        }
        let (body, protocol) = if let Some(b) = rule.strip_suffix("/tcp") {
            (b, Some(Protocol::Tcp))
        } else if let Some(b) = rule.strip_suffix("/udp") {
            (b, Some(Protocol::Udp))
        } else {
            (rule, None)
        };
        // A host name has at most one ':' (before its ports); an IPv6
        // address has more, or brackets.
        let host_part = body.split_once(':').map_or(body, |(h, _)| h);
        if !body.starts_with('[') && body.matches(':').count() <= 1 && looks_like_host(host_part) {
            let host: HostPattern = host_part.parse()?;
            let ports = match body.split_once(':') {
                Some((_, ports)) => Some(parse_ports(ports, rule)?),
                None => None,
            };
            return Ok(Self::host(host, ports, protocol));
        }
        let (net, ports) = if let Some(inner) = body.strip_prefix('[') {
            let (net, rest) = inner
                .split_once(']')
                .ok_or_else(|| fail(format!("invalid rule {rule:?}: missing ']'")))?;
            let net = parse_net(net, rule)?;
            if !net.addr.is_ipv6() {
                return Err(fail(format!(
                    "invalid rule {rule:?}: brackets are for IPv6 addresses"
                )));
            }
            let ports = match rest {
                "" => None,
                _ => match rest.strip_prefix(':') {
                    Some(p) => Some(parse_ports(p, rule)?),
                    None => {
                        return Err(fail(format!(
                            "invalid rule {rule:?}: expected ':PORT' after ']'"
                        )));
                    }
                },
            };
            (net, ports)
        } else if body.matches(':').count() > 1 {
            // A bare IPv6 range; a port needs brackets.
            (parse_net(body, rule)?, None)
        } else {
            match body.split_once(':') {
                Some((net, ports)) => (parse_net(net, rule)?, Some(parse_ports(ports, rule)?)),
                None => (parse_net(body, rule)?, None),
            }
        };
        Ok(Self::new(net, ports, protocol))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl fmt::Display for NetRule {
    /// The canonical form, which parses back to the same rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.dest, self.ports) {
            (Destination::Net(net), Some(p)) if net.addr.is_ipv6() => write!(f, "[{net}]:{p}")?,
            (Destination::Net(net), Some(p)) => write!(f, "{net}:{p}")?,
            (Destination::Net(net), None) => write!(f, "{net}")?,
            (Destination::Host(host), Some(p)) => write!(f, "{host}:{p}")?,
            (Destination::Host(host), None) => write!(f, "{host}")?,
        }
        if let Some(proto) = self.protocol {
            write!(f, "/{proto}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for NetRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NetRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> NetRule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<NetRule>().unwrap_err().to_string()
    }

    #[test]
    fn every_form_parses_and_prints_canonically() {
        for (input, canonical) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("10.0.0.0/8:443", "10.0.0.0/8:443"),
            ("10.0.0.0/8:443-443", "10.0.0.0/8:443"),
            ("10.0.0.0/8:1000-2000/udp", "10.0.0.0/8:1000-2000/udp"),
            ("198.18.0.1/32/tcp", "198.18.0.1/32/tcp"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::/32/tcp", "2001:db8::/32/tcp"),
            ("[2001:db8::/32]", "2001:db8::/32"),
            ("[2001:db8::/32]:443/tcp", "[2001:db8::/32]:443/tcp"),
            ("[::1]:53/udp", "[::1/128]:53/udp"),
            ("::/0", "::/0"),
            ("389a::/15", "389a::/15"),
            ("pypi.org:443/tcp", "pypi.org:443/tcp"),
            ("*.githubusercontent.com:443", "*.githubusercontent.com:443"),
            ("GitHub.com:22", "github.com:22"),
            ("example.com", "example.com"),
            ("a.example:1000-2000/udp", "a.example:1000-2000/udp"),
        ] {
            let rule = ok(input);
            assert_eq!(rule.to_string(), canonical, "{input}");
            assert_eq!(ok(canonical), rule, "{canonical} round trip");
        }
    }

    #[test]
    fn every_error_is_specific() {
        assert_eq!(
            err("10.0.0.0/33"),
            "invalid CIDR \"10.0.0.0/33\": prefix length must be at most 32"
        );
        assert_eq!(
            err("2001:db8::/129"),
            "invalid CIDR \"2001:db8::/129\": prefix length must be at most 128"
        );
        assert_eq!(
            err("10.0.0.1/8"),
            "invalid CIDR \"10.0.0.1/8\": host bits are set (the network is 10.0.0.0/8)"
        );
        assert_eq!(
            err("10.0.0.0/8:0"),
            "invalid port 0: ports are 1-65535 (in \"10.0.0.0/8:0\")"
        );
        assert_eq!(
            err("10.0.0.0/8:70000"),
            "invalid port 70000 in \"10.0.0.0/8:70000\": ports are 1-65535"
        );
        assert_eq!(
            err("10.0.0.0/8:2000-1000"),
            "invalid port range 2000-1000: the start is above the end (in \"10.0.0.0/8:2000-1000\")"
        );
        assert_eq!(
            err("example"),
            "invalid host name \"example\": a single label is not a host on the internet; write the full name"
        );
        assert_eq!(
            err("10.0.0.0/8:"),
            "invalid rule \"10.0.0.0/8:\": \"\" is not a port"
        );
        assert_eq!(
            err("[10.0.0.0/8]:80"),
            "invalid rule \"[10.0.0.0/8]:80\": brackets are for IPv6 addresses"
        );
        assert_eq!(
            err("[2001:db8::/32"),
            "invalid rule \"[2001:db8::/32\": missing ']'"
        );
        assert_eq!(
            err("[2001:db8::/32]443"),
            "invalid rule \"[2001:db8::/32]443\": expected ':PORT' after ']'"
        );
        assert_eq!(
            err("10.0.0.0/8/sctp"),
            "invalid CIDR \"10.0.0.0/8/sctp\": \"8/sctp\" is not a prefix length"
        );
        assert_eq!(
            err("10.0.0.0/+8"),
            "invalid CIDR \"10.0.0.0/+8\": \"+8\" is not a prefix length"
        );
        assert!(err("").contains("expected CIDR"));
        assert!(err("10.0.0.0/8:+80").contains("is not a port"));
    }

    #[test]
    fn coverage_and_matching() {
        assert!(ok("10.0.0.0/8").covers(&ok("10.1.0.0/16:443/tcp")));
        assert!(!ok("10.1.0.0/16").covers(&ok("10.0.0.0/8")));
        assert!(ok("10.0.0.0/8:1-1000").covers(&ok("10.0.0.0/8:80-90")));
        assert!(!ok("10.0.0.0/8:80").covers(&ok("10.0.0.0/8")));
        assert!(!ok("10.0.0.0/8/tcp").covers(&ok("10.0.0.0/8")));
        assert!(!ok("0.0.0.0/0").covers(&ok("::/0")));
        let r = ok("198.18.0.0/15:80-90/tcp");
        assert!(r.matches("198.19.1.1".parse().unwrap(), 85, Protocol::Tcp));
        assert!(!r.matches("198.20.0.1".parse().unwrap(), 85, Protocol::Tcp));
        assert!(!r.matches("198.18.0.1".parse().unwrap(), 85, Protocol::Udp));
        assert!(!r.matches("198.18.0.1".parse().unwrap(), 91, Protocol::Tcp));
    }
}
