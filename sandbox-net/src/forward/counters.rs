//! What the forwarder counts.

use crate::forward::fragments::FragmentCounters;
use crate::forward::tcp::TcpCounters;

/// What the forwarder has done, for the report and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Frames read from the tap.
    pub frames_in: u64,
    /// Frames written to the tap.
    pub frames_out: u64,
    /// ARP and neighbour discovery frames handled.
    pub neighbours_answered: u64,
    /// UDP datagrams relayed out.
    pub udp_out: u64,
    /// UDP datagrams relayed back in.
    pub udp_in: u64,
    /// DNS queries relayed.
    pub dns_queries: u64,
    /// DNS queries answered REFUSED here: names no allow rule matches
    /// (with `dns = "allowed-names"`), or DNS over TCP in that mode.
    pub dns_refused: u64,
    /// DNS answers refused because they put an allowed name on an
    /// internal address (the rebinding defence).
    pub dns_rebinding: u64,
    /// Addresses pinned to allowed names (each new pin; refreshes not
    /// counted).
    pub pins_added: u64,
    /// Answers not pinned because the sandbox's pins were at their cap.
    pub pins_over_cap: u64,
    /// Answers whose pins the kernel's sets refused (the sandbox got
    /// SERVFAIL).
    pub pin_errors: u64,
    /// ICMP echo requests relayed out (through unprivileged ping sockets).
    pub echo_out: u64,
    /// ICMP echo replies relayed back in.
    pub echo_in: u64,
    /// Echo requests the policy allowed but the host refused a ping socket
    /// for (`net.ipv4.ping_group_range` excludes the caller's group).
    pub echo_unavailable: u64,
    /// New flows refused by the policy.
    pub refused: u64,
    /// Packets the kernel's ruleset refused (read from its log group).
    pub refused_by_kernel: u64,
    /// … of which to metadata addresses.
    pub refused_metadata: u64,
    /// New flows refused because a limit on flows or buffered bytes was
    /// reached.
    pub over_limit: u64,
    /// New flows refused by the rate limit.
    pub over_rate: u64,
    /// New TCP connections not relayed: refused by the policy or over a
    /// cap (their SYNs answered with a reset), or over the rate (dropped:
    /// the sandbox retries).
    pub tcp_dropped: u64,
    /// The TCP relay's own counters.
    pub tcp: TcpCounters,
    /// IP fragments from the sandbox, and the datagrams reassembled.
    pub fragments: FragmentCounters,
    /// ICMP "administratively prohibited" errors sent for refused
    /// datagrams (at most 100 a second; the rest are refused silently).
    pub prohibited_sent: u64,
    /// Frames the classifier did not handle itself (other protocols,
    /// malformed, ARP replies and the like), left to the TCP stack.
    pub ignored: u64,
}
