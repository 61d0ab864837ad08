//! `network`: the mode, the allow and deny rules, DNS and the forwarder's
//! caps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::net_rule::NetRule;

/// `network`: where the process may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The kind of network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NetMode>,
    /// Destinations allowed in `allowlist` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<NetRule>>,
    /// Destinations refused even if allowed (deny wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<NetRule>>,
    /// What the sandbox's DNS queries to the gateway get (see
    /// [`DnsMode`]; unset is [`DnsMode::Auto`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsMode>,
    /// Whether link-local and cloud-metadata addresses may be reached.
    /// They are blocked unless this is set to `true` explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_metadata: Option<bool>,
    /// Caps on the egress forwarder's flows (allowlist mode).
    #[serde(default, skip_serializing_if = "NetLimits::is_unset")]
    pub limits: NetLimits,
}

/// `network.limits`: what one sandbox may hold of the egress forwarder.
/// Past a cap a new TCP connection is refused with a reset, and a new UDP
/// flow (or ICMP echo flow) is dropped; past the rate a SYN is dropped (the
/// sandbox's retransmission gets through a second later). Every one is
/// counted in the run's egress figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetLimits {
    /// TCP connections open (or opening) at once; each holds up to
    /// 256 KiB of buffer each way in the forwarder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_connections: Option<u32>,
    /// UDP flows (a source and destination pair; DNS lookups end at their
    /// answer) and ICMP echo flows open at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_flows: Option<u32>,
    /// New flows (TCP and UDP) a second, with a burst of as many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_flows_per_second: Option<u32>,
}

impl NetLimits {
    /// The largest `tcp_connections` or `udp_flows` (the forwarder's fds).
    pub const MAX_FLOWS: u32 = 65_536;
    /// The largest `new_flows_per_second`.
    pub const MAX_RATE: u32 = 1_000_000;

    /// Whether nothing is set.
    pub fn is_unset(&self) -> bool {
        *self == Self::default()
    }

    /// Each cap with its policy name (`tcp_connections`), in order.
    pub fn fields(&self) -> [(&'static str, Option<u32>); 3] {
        [
            ("tcp_connections", self.tcp_connections),
            ("udp_flows", self.udp_flows),
            ("new_flows_per_second", self.new_flows_per_second),
        ]
    }

    /// Field by field: `over`'s where set, else `self`'s.
    pub fn merged(&self, over: &NetLimits) -> NetLimits {
        NetLimits {
            tcp_connections: over.tcp_connections.or(self.tcp_connections),
            udp_flows: over.udp_flows.or(self.udp_flows),
            new_flows_per_second: over.new_flows_per_second.or(self.new_flows_per_second),
        }
    }
}

/// `network.mode`, declared strictest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum NetMode {
    /// A network namespace with only loopback: no way out.
    None,
    /// Egress to the `allow` rules only, through the userspace forwarder.
    Allowlist,
    /// The host's network, unfiltered.
    Host,
}

/// `network.dns`: what the sandbox's DNS queries to its gateway get.
/// Declared strictest first.
///
/// In TOML: `"off"`, `"auto"`, `"allowed-names"` or `"any"`; `false` is
/// `"off"` and `true` is `"any"` (what `true` meant before names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DnsMode {
    /// No DNS: queries to the gateway are refused.
    Off,
    /// `AllowedNames` when an `allow` rule names a host, else `Off` (the
    /// default).
    Auto,
    /// Only names an `allow` rule matches (and no `deny` rule) are
    /// resolved, by the forwarder asking the host's resolver; every other
    /// query is answered REFUSED and recorded. The addresses in the
    /// answers are what the host-name rules allow.
    AllowedNames,
    /// Every query is relayed to the host's resolver. A channel out of the
    /// sandbox for anything that fits in a name (DNS exfiltration): use it
    /// only where that is acceptable.
    Any,
}

impl DnsMode {
    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsMode::Off => "off",
            DnsMode::Auto => "auto",
            DnsMode::AllowedNames => "allowed-names",
            DnsMode::Any => "any",
        }
    }
}

impl std::fmt::Display for DnsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DnsMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DnsMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(false) => Ok(DnsMode::Off),
            serde_json::Value::Bool(true) => Ok(DnsMode::Any),
            serde_json::Value::String(s) => match s.as_str() {
                "off" => Ok(DnsMode::Off),
                "auto" => Ok(DnsMode::Auto),
                "allowed-names" => Ok(DnsMode::AllowedNames),
                "any" => Ok(DnsMode::Any),
                other => Err(D::Error::custom(format!(
                    "unknown DNS mode {other:?}: expected \"off\", \"auto\", \"allowed-names\" or \"any\" (or true/false)"
                ))),
            },
            other => Err(D::Error::custom(format!(
                "expected a DNS mode (\"off\", \"auto\", \"allowed-names\", \"any\") or true/false, found {other}"
            ))),
        }
    }
}

impl JsonSchema for DnsMode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DnsMode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "What DNS queries to the gateway get: \"off\"; \"auto\" (allowed-names when an allow rule names a host, else off; the default); \"allowed-names\" (only names the allow rules match are resolved); \"any\" (everything relayed: an exfiltration channel). false is \"off\", true is \"any\".",
            "anyOf": [
                { "type": "boolean" },
                { "type": "string", "enum": ["off", "auto", "allowed-names", "any"] }
            ]
        })
    }
}

impl Network {
    /// Whether an `allow` rule names a host.
    pub fn has_host_rules(&self) -> bool {
        self.allow
            .iter()
            .flatten()
            .any(|rule| rule.host_pattern().is_some())
    }

    /// The DNS mode in effect: [`DnsMode::Auto`] (or unset) resolved by
    /// the rules; never `Auto`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_policy::{DnsMode, Policy};
    ///
    /// let named = Policy::from_toml_str("[network]\nmode = \"allowlist\"\nallow = [\"pypi.org:443\"]\n")?;
    /// assert_eq!(named.network.dns_mode(), DnsMode::AllowedNames);
    /// let cidr = Policy::from_toml_str("[network]\nmode = \"allowlist\"\nallow = [\"192.0.2.1:443\"]\n")?;
    /// assert_eq!(cidr.network.dns_mode(), DnsMode::Off);
    /// # Ok::<(), sandbox_policy::Error>(())
    /// ```
    pub fn dns_mode(&self) -> DnsMode {
        match self.dns.unwrap_or(DnsMode::Auto) {
            DnsMode::Auto if self.has_host_rules() => DnsMode::AllowedNames,
            DnsMode::Auto => DnsMode::Off,
            mode => mode,
        }
    }
}
