//! The forwarder's limits: caps on flows and buffered bytes, a rate of new
//! flows, a TCP handshake timeout.

use std::time::{Duration, Instant};

use crate::forward::tcp::TCP_BUFFER_BYTES;

/// Limits that keep one sandbox from exhausting the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwarderLimits {
    /// UDP and ICMP echo flows open at once; new ones beyond are refused.
    pub max_udp_flows: usize,
    /// A UDP flow with no traffic for this long is closed.
    pub udp_idle: Duration,
    /// TCP connections open (or opening) at once; new SYNs beyond are
    /// answered with a reset and counted.
    pub max_tcp_flows: usize,
    /// Bytes of connection buffers (each TCP connection holds
    /// [`TCP_BUFFER_BYTES`] each way) at most: a new connection that would
    /// exceed it is refused with a reset and counted.
    pub max_buffered_bytes: usize,
    /// New flows (TCP connections and UDP flows) per second, with a burst
    /// of as many; beyond, a SYN is dropped (the sandbox retries) and a
    /// datagram opening a flow too.
    pub new_flows_per_second: u32,
    /// How long the sandbox has to complete a TCP handshake once the host
    /// side connected; then the connection is dropped, its slot freed.
    pub tcp_handshake_timeout: Duration,
    /// The shortest time a DNS answer's addresses stay pinned to an
    /// allowed name, whatever its TTL.
    pub min_pin_ttl: Duration,
    /// The longest.
    pub max_pin_ttl: Duration,
}

impl Default for ForwarderLimits {
    fn default() -> Self {
        Self {
            max_udp_flows: 256,
            udp_idle: Duration::from_secs(60),
            max_tcp_flows: 256,
            max_buffered_bytes: 256 * 2 * TCP_BUFFER_BYTES,
            new_flows_per_second: 1000,
            tcp_handshake_timeout: Duration::from_secs(10),
            min_pin_ttl: crate::forward::MIN_PIN_TTL,
            max_pin_ttl: crate::forward::MAX_PIN_TTL,
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` saved.
#[derive(Debug)]
pub(super) struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub(super) fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    pub(super) fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_its_rate() {
        let mut limit = RateLimit::new(100);
        let burst = (0..1000).filter(|_| limit.take()).count();
        assert!((100..=101).contains(&burst), "{burst}");
        std::thread::sleep(Duration::from_millis(100));
        let refilled = (0..1000).filter(|_| limit.take()).count();
        assert!(
            (9..=15).contains(&refilled),
            "{refilled} after 100 ms at 100/s"
        );
    }
}
