//! Egress by name: which names the sandbox may resolve (with
//! `dns = "allowed-names"`), and the addresses their answers pinned.
//!
//! A pin is (address, host-name allow rule) with an expiry: the answer's
//! TTL clamped to [`MIN_PIN_TTL`, `MAX_PIN_TTL`]. While it lives, a new
//! flow to that address on the rule's ports and protocol is allowed. An
//! answer that would put an allowed name on a loopback, private,
//! link-local, CGNAT, ULA or metadata address (in any IPv4-mapped form) is
//! refused unless an address rule allows that address: the rebinding
//! defence. At most [`MAX_PINS`] pins live at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sandbox_policy::{HostPattern, IpNet, NetRule, Network, Protocol};

use crate::forward::policy::canonical;
use crate::nft::{MAX_HOST_RULES, PinSet, PinUpdate};

/// The shortest time a pin lives, whatever the answer's TTL (CDNs answer
/// with TTLs of seconds; the client connects after it has the answer).
pub const MIN_PIN_TTL: Duration = Duration::from_secs(30);
/// The longest.
pub const MAX_PIN_TTL: Duration = Duration::from_secs(3600);
/// Pins (address and rule) alive at once, per sandbox.
pub const MAX_PINS: usize = 4096;

/// Why an answer was not pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinRefusal {
    /// An address no name may be pinned to (private, loopback, …).
    Rebinding,
    /// [`MAX_PINS`] reached.
    Cap,
}

#[derive(Debug, Clone, Copy)]
struct Pin {
    rule: u16,
    expires: Instant,
}

/// The host-name rules of a policy and the live pins.
#[derive(Debug, Clone)]
pub struct Names {
    /// Host-name allow rules, in policy order (a pin's `rule` indexes it).
    allow: Vec<NetRule>,
    deny: Vec<HostPattern>,
    /// Address allow rules: a private answer is kept if one covers it.
    nets: Vec<IpNet>,
    pins: HashMap<IpAddr, Vec<Pin>>,
    count: usize,
    /// A pin's shortest and longest life ([`MIN_PIN_TTL`], [`MAX_PIN_TTL`]
    /// unless set).
    ttl_bounds: (Duration, Duration),
}

impl Default for Names {
    fn default() -> Self {
        Self::from_network(&Network::default())
    }
}

impl PartialEq for Names {
    fn eq(&self, other: &Self) -> bool {
        self.allow == other.allow && self.deny == other.deny && self.nets == other.nets
    }
}

impl Eq for Names {}

/// Whether no name may be pinned to `addr` (unless an address rule allows
/// it).
pub fn is_internal(addr: IpAddr) -> bool {
    match canonical(addr) {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x64 && s[1] == 0xff9b)
        }
    }
}

impl Names {
    /// The host-name rules of `network`.
    pub fn from_network(network: &Network) -> Self {
        let allow: Vec<NetRule> = network
            .allow
            .iter()
            .flatten()
            .filter(|r| r.host_pattern().is_some())
            .take(MAX_HOST_RULES)
            .cloned()
            .collect();
        Self {
            allow,
            deny: network
                .deny
                .iter()
                .flatten()
                .filter_map(|r| r.host_pattern().cloned())
                .collect(),
            nets: network
                .allow
                .iter()
                .flatten()
                .filter_map(NetRule::net)
                .collect(),
            pins: HashMap::new(),
            count: 0,
            ttl_bounds: (MIN_PIN_TTL, MAX_PIN_TTL),
        }
    }

    /// Bounds the life of a pin to `min..=max`, whatever the answers' TTLs
    /// (`min` is raised to 1 s, `max` to `min`).
    pub fn set_ttl_bounds(&mut self, min: Duration, max: Duration) {
        let min = min.max(Duration::from_secs(1));
        self.ttl_bounds = (min, max.max(min));
    }

    /// Whether the policy names any host.
    pub fn any(&self) -> bool {
        !self.allow.is_empty()
    }

    /// The host-name allow rules `name` matches (none if a host-name deny
    /// rule matches it).
    pub fn rules_for(&self, name: &str) -> Vec<u16> {
        if self.deny.iter().any(|d| d.matches(name)) {
            return Vec::new();
        }
        self.allow
            .iter()
            .enumerate()
            .filter(|(_, r)| r.host_pattern().is_some_and(|h| h.matches(name)))
            .map(|(i, _)| i as u16)
            .collect()
    }

    /// The live pinned rules of `addr` that allow `port` over `protocol`.
    /// A host-name rule without a protocol is TCP only: UDP to a name needs
    /// `/udp`, and no ICMP echo goes to a pinned address.
    fn pinned_rules(
        &self,
        addr: IpAddr,
        (port, protocol): (u16, Protocol),
        now: Instant,
    ) -> impl Iterator<Item = &NetRule> {
        self.pins
            .get(&addr)
            .into_iter()
            .flatten()
            .filter(move |p| p.expires > now)
            .filter_map(|p| self.allow.get(usize::from(p.rule)))
            .filter(move |rule| {
                rule.protocol().unwrap_or(Protocol::Tcp) == protocol
                    && rule.matches_transport(port, protocol)
            })
    }

    /// Whether a live pin allows a new flow to `addr:port` over `protocol`
    /// (`None`: an ICMP echo, which no pin allows).
    pub fn allows(&self, addr: IpAddr, transport: Option<(u16, Protocol)>, now: Instant) -> bool {
        transport.is_some_and(|t| self.pinned_rules(addr, t, now).next().is_some())
    }

    /// The host patterns of the live pinned rules of `addr` that allow
    /// `transport`.
    pub fn patterns_for(
        &self,
        addr: IpAddr,
        transport: (u16, Protocol),
        now: Instant,
    ) -> Vec<HostPattern> {
        let mut patterns: Vec<HostPattern> = self
            .pinned_rules(addr, transport, now)
            .filter_map(|r| r.host_pattern().cloned())
            .collect();
        patterns.dedup();
        patterns
    }

    /// Pins `addresses` (with their TTLs, in seconds) to `rules`; the
    /// changes the kernel's sets need. Nothing is pinned if one address is
    /// internal (and no address rule allows it) or the cap would be passed.
    ///
    /// # Errors
    ///
    /// Why nothing was pinned.
    pub fn pin(
        &mut self,
        addresses: &[(IpAddr, u32)],
        rules: &[u16],
        now: Instant,
    ) -> Result<Vec<PinUpdate>, PinRefusal> {
        if addresses
            .iter()
            .any(|(a, _)| is_internal(*a) && !self.nets.iter().any(|n| n.contains_addr(*a)))
        {
            return Err(PinRefusal::Rebinding);
        }
        self.expire(now);
        let mut updates = Vec::new();
        let new = addresses.len() * rules.len();
        if self.count + new > MAX_PINS {
            return Err(PinRefusal::Cap);
        }
        for &(addr, ttl) in addresses {
            let (min, max) = self.ttl_bounds;
            let ttl = Duration::from_secs(u64::from(ttl)).clamp(min, max);
            let pins = self.pins.entry(addr).or_default();
            for &rule in rules {
                let replace = match pins.iter_mut().find(|p| p.rule == rule) {
                    Some(pin) => {
                        pin.expires = pin.expires.max(now + ttl);
                        true
                    }
                    None => {
                        pins.push(Pin {
                            rule,
                            expires: now + ttl,
                        });
                        self.count += 1;
                        false
                    }
                };
                updates.push(PinUpdate {
                    set: PinSet {
                        rule,
                        v6: addr.is_ipv6(),
                    },
                    addr,
                    timeout: Some(ttl),
                    replace,
                });
            }
        }
        Ok(updates)
    }

    /// Undoes what [`pin`](Self::pin) added for `updates` (the kernel
    /// refused them).
    pub fn unpin(&mut self, updates: &[PinUpdate]) {
        for update in updates.iter().filter(|u| !u.replace) {
            if let Some(pins) = self.pins.get_mut(&update.addr) {
                let before = pins.len();
                pins.retain(|p| p.rule != update.set.rule);
                self.count -= before - pins.len();
            }
        }
    }

    /// Pins alive now.
    pub fn live(&self, now: Instant) -> usize {
        self.pins
            .values()
            .flatten()
            .filter(|p| p.expires > now)
            .count()
    }

    fn expire(&mut self, now: Instant) {
        let mut count = 0;
        self.pins.retain(|_, pins| {
            pins.retain(|p| p.expires > now);
            count += pins.len();
            !pins.is_empty()
        });
        self.count = count;
    }
}

#[cfg(test)]
#[path = "names_tests.rs"]
mod tests;
