//! What a run produced.

use std::time::Duration;

use serde::Serialize;

use crate::report::EffectiveSandbox;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (`SIGKILL` when the sandbox was killed: a
    /// timeout, [`SandboxChild::kill`](crate::SandboxChild::kill), or the
    /// OOM killer).
    Signaled(i32),
}

impl ExitStatus {
    pub(crate) fn from_wait_status(status: i32) -> Self {
        if libc::WIFEXITED(status) {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        } else {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(code) => Some(*code),
            ExitStatus::Signaled(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(_) => None,
            ExitStatus::Signaled(sig) => Some(*sig),
        }
    }

    /// The shell's convention: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match self {
            ExitStatus::Exited(code) => *code,
            ExitStatus::Signaled(sig) => 128 + sig,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// The result of a sandboxed run: how it ended, what it printed (capped),
/// what it used, and the report of what confined it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunOutcome {
    /// How the command ended.
    pub status: ExitStatus,
    /// Whether the wall-clock limit killed the sandbox.
    pub timed_out: bool,
    /// Whether the kernel's OOM killer killed a process of the run (known
    /// when memory is limited by a cgroup).
    pub oom_killed: bool,
    /// Whether a fork or clone in the run failed at the process limit
    /// (known when it is enforced by a cgroup).
    pub pids_limit_hit: bool,
    /// Standard output, at most `max_output_bytes` of it, when it was
    /// captured ([`Stdio::Piped`](crate::Stdio::Piped)); empty when it was
    /// relayed elsewhere.
    #[serde(with = "lossy")]
    pub stdout: Vec<u8>,
    /// Whether some of standard output was not passed on: past
    /// `max_output_bytes` (the rest was read and dropped), or its
    /// destination went away or failed (the command then got `EPIPE`, as
    /// from a pipe of its own).
    pub stdout_truncated: bool,
    /// Standard error, as [`stdout`](RunOutcome::stdout).
    #[serde(with = "lossy")]
    pub stderr: Vec<u8>,
    /// Whether some of standard error was not passed on, as
    /// [`stdout_truncated`](RunOutcome::stdout_truncated).
    pub stderr_truncated: bool,
    /// From the clone to the end of the last process of the sandbox.
    #[serde(serialize_with = "millis")]
    pub wall_time: Duration,
    /// User plus system CPU time of every process of the sandbox that was
    /// reaped.
    #[serde(serialize_with = "millis")]
    pub cpu_time: Duration,
    /// Peak memory in bytes: the cgroup's high-water mark when memory is
    /// limited by a cgroup, else the largest resident set of one process.
    pub peak_memory: Option<u64>,
    /// What the egress forwarder did (runs with allowlisted egress).
    pub egress: Option<EgressStats>,
    /// What the run was confined by.
    pub report: EffectiveSandbox,
    /// How long each part of the run took.
    pub timings: crate::timings::RunTimings,
    /// What the run changed through each overlay, read from its upper after
    /// the run (a tmpfs upper just before it is discarded): see
    /// [`overlay_changes`](crate::overlay_changes).
    pub changes: Vec<crate::changes::OverlayChanges>,
}

/// What a run's egress forwarder relayed and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EgressStats {
    /// TCP connections relayed (host side connected).
    pub tcp_connections: u64,
    /// TCP connections whose host connect failed (the sandbox got a
    /// reset).
    pub tcp_connect_failed: u64,
    /// Bytes relayed out over TCP (sandbox → outside).
    pub tcp_bytes_out: u64,
    /// Bytes relayed in over TCP.
    pub tcp_bytes_in: u64,
    /// UDP datagrams relayed out (DNS included).
    pub udp_datagrams_out: u64,
    /// UDP datagrams relayed in.
    pub udp_datagrams_in: u64,
    /// DNS queries relayed to the resolver.
    pub dns_queries: u64,
    /// DNS queries refused at the gateway (names no allow rule matches, or
    /// DNS over TCP, with `dns = "allowed-names"`).
    pub dns_refused: u64,
    /// DNS answers refused for putting an allowed name on an internal
    /// address (the rebinding defence).
    pub dns_rebinding: u64,
    /// Addresses pinned to allowed names.
    pub pins_added: u64,
    /// Answers not pinned: the pin cap was reached.
    pub pins_over_cap: u64,
    /// Answers whose pins the kernel refused (SERVFAIL to the sandbox).
    pub pin_errors: u64,
    /// Connections a name pin admitted, reset because their TLS
    /// ClientHello named (SNI) a host no pinned rule allows.
    pub sni_mismatch: u64,
    /// … because their ClientHello had no SNI.
    pub no_sni: u64,
    /// … because their HTTP request's `Host` was not a pinned rule's (or
    /// missing).
    pub host_mismatch: u64,
    /// ICMP echo requests relayed.
    pub echo_requests: u64,
    /// New flows the policy refused (the forwarder's own enforcement).
    pub refused: u64,
    /// … of which to link-local or cloud-metadata addresses.
    pub refused_metadata: u64,
    /// New flows refused at the caps of `network.limits` (a TCP connect
    /// gets a reset; a UDP flow is dropped).
    pub over_limit: u64,
    /// New flows dropped by the rate cap (`network.limits.new_flows_per_second`).
    pub over_rate: u64,
    /// TCP handshakes the sandbox never completed, expired.
    pub handshakes_expired: u64,
    /// TCP connects given up while the host side was still connecting (the
    /// sandbox reset its SYN, or nothing answered for 135 s).
    pub tcp_connects_abandoned: u64,
    /// TCP connections the sandbox reset (passed on as a reset).
    pub tcp_resets_from_sandbox: u64,
    /// UDP (or other) datagrams the sandbox sent in IP fragments, put
    /// back together and relayed whole.
    pub datagrams_reassembled: u64,
    /// Fragmented datagrams given up (overlapping, malformed, incomplete
    /// after 30 s, or past the 64 held at once).
    pub fragmented_datagrams_dropped: u64,
    /// Refused datagrams answered with ICMP administratively prohibited.
    pub datagrams_prohibited: u64,
    /// New flows the kernel's ruleset refused (read from its log group).
    pub refused_by_kernel: u64,
    /// Every refusal, the first [`MAX_REFUSALS`](sandbox_net::forward::MAX_REFUSALS)
    /// of them in order: when, the name or address, port, protocol, why,
    /// and whether the kernel or the forwarder refused it.
    pub refusals: Vec<EgressRefusalRecord>,
    /// How many refusals of each reason (`not-allowed`, `dns-refused`, …),
    /// listed or not.
    pub refusals_by_reason: std::collections::BTreeMap<String, u64>,
    /// How the forwarder stopped, if it failed before the run ended.
    pub error: Option<String>,
}

/// One egress refusal, as the outcome reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EgressRefusalRecord {
    /// Milliseconds from the forwarder's start.
    pub after_ms: u64,
    /// `dns-refused`, `not-allowed`, `denied`, `metadata`, `rebinding`,
    /// `sni-mismatch`, `no-sni`, `host-mismatch`, `rate` or `cap`.
    pub reason: String,
    /// The name asked for or presented (DNS, SNI, `Host`), if any.
    pub name: Option<String>,
    /// The destination address, if any.
    pub addr: Option<String>,
    /// The destination port, if any.
    pub port: Option<u16>,
    /// `tcp`, `udp`, `icmp` or `dns`.
    pub protocol: String,
    /// Refused by the kernel's ruleset (else by the forwarder).
    pub kernel: bool,
}

impl From<&sandbox_net::forward::EgressRefusal> for EgressRefusalRecord {
    fn from(r: &sandbox_net::forward::EgressRefusal) -> Self {
        Self {
            after_ms: r.after.as_millis() as u64,
            reason: r.reason.as_str().to_string(),
            name: r.name.clone(),
            addr: r.addr.map(|a| a.to_string()),
            port: r.port,
            protocol: r.protocol.to_string(),
            kernel: r.kernel,
        }
    }
}

impl EgressStats {
    /// A forwarder's figures and refusals.
    pub(crate) fn from_forwarder(
        forwarder: &sandbox_net::forward::EgressForwarder,
        error: Option<String>,
    ) -> Self {
        let mut stats = Self::from_counters(&forwarder.counters(), error);
        stats.refusals = forwarder.refusals().iter().map(Into::into).collect();
        stats.refusals_by_reason = forwarder
            .refusals_by_reason()
            .into_iter()
            .map(|(reason, n)| (reason.as_str().to_string(), n))
            .collect();
        stats
    }

    pub(crate) fn from_counters(c: &sandbox_net::forward::Counters, error: Option<String>) -> Self {
        Self {
            tcp_connections: c.tcp.connected,
            tcp_connect_failed: c.tcp.connect_failed,
            tcp_bytes_out: c.tcp.bytes_out,
            tcp_bytes_in: c.tcp.bytes_in,
            udp_datagrams_out: c.udp_out,
            udp_datagrams_in: c.udp_in,
            dns_queries: c.dns_queries,
            dns_refused: c.dns_refused,
            dns_rebinding: c.dns_rebinding,
            pins_added: c.pins_added,
            pins_over_cap: c.pins_over_cap,
            pin_errors: c.pin_errors,
            sni_mismatch: c.tcp.sni_mismatch,
            no_sni: c.tcp.no_sni,
            host_mismatch: c.tcp.host_mismatch,
            refused_by_kernel: c.refused_by_kernel,
            refusals: Vec::new(),
            refusals_by_reason: Default::default(),
            echo_requests: c.echo_out,
            refused: c.refused,
            refused_metadata: c.refused_metadata,
            over_limit: c.over_limit,
            over_rate: c.over_rate,
            handshakes_expired: c.tcp.handshakes_expired,
            tcp_connects_abandoned: c.tcp.connects_abandoned,
            tcp_resets_from_sandbox: c.tcp.reset_by_sandbox,
            datagrams_reassembled: c.fragments.reassembled,
            fragmented_datagrams_dropped: c.fragments.dropped,
            datagrams_prohibited: c.prohibited_sent,
            error,
        }
    }
}

impl std::fmt::Display for EgressStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "egress: {} TCP connections ({} B out, {} B in, {} failed), {} UDP datagrams out, {} in, {} DNS queries; refused {} new flows ({} to metadata addresses), {} over the caps of network.limits, {} over its rate",
            self.tcp_connections,
            self.tcp_bytes_out,
            self.tcp_bytes_in,
            self.tcp_connect_failed,
            self.udp_datagrams_out,
            self.udp_datagrams_in,
            self.dns_queries,
            self.refused,
            self.refused_metadata,
            self.over_limit,
            self.over_rate
        )?;
        if self.dns_refused + self.dns_rebinding + self.pins_added + self.pin_errors > 0 {
            write!(
                f,
                "; names: {} pinned, {} queries refused, {} answers refused as rebinding, {} over the pin cap, {} pin errors; connections reset for SNI {} (no SNI {}), for Host {}",
                self.pins_added,
                self.dns_refused,
                self.dns_rebinding,
                self.pins_over_cap,
                self.pin_errors,
                self.sni_mismatch,
                self.no_sni,
                self.host_mismatch
            )?;
        }
        if !self.refusals_by_reason.is_empty() {
            let each: Vec<String> = self
                .refusals_by_reason
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            write!(
                f,
                "; refusals ({} by the kernel): {}",
                self.refused_by_kernel,
                each.join(", ")
            )?;
        }
        if let Some(error) = &self.error {
            write!(f, "; the forwarder failed: {error}")?;
        }
        Ok(())
    }
}

impl RunOutcome {
    /// Whether the command exited with code 0 (and was not killed).
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

mod lossy {
    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(bytes))
    }
}
