//! DNS with `dns = "allowed-names"`: a query for a name no allow rule
//! matches is answered REFUSED by the gateway and never leaves; an answer
//! for an allowed name pins its addresses (in the forwarder and in the
//! kernel's sets) before the sandbox sees it, or is replaced by REFUSED
//! (an internal address: rebinding; the pin cap) or SERVFAIL (the kernel
//! refused the pins).

use std::time::Instant;

use sandbox_policy::DnsMode;

use crate::forward::dns_wire::{self, RCODE_REFUSED, RCODE_SERVFAIL};
use crate::forward::forwarder::EgressForwarder;
use crate::forward::names::PinRefusal;
use crate::forward::refusals::RefusalReason;
use crate::nft::{PinUpdate, pin_batch};

/// What becomes of a DNS message.
pub(super) enum Screened {
    /// Passed on as it is.
    Pass,
    /// Answered (or replaced) with this message.
    Answer(Vec<u8>),
    /// Dropped (not a message we can judge).
    Drop,
}

impl EgressForwarder {
    /// Whether names are screened (`dns = "allowed-names"`).
    pub(super) fn screens_names(&self) -> bool {
        self.policy.dns_mode() == DnsMode::AllowedNames
    }

    /// A query from the sandbox to the gateway.
    pub(super) fn screen_query(&mut self, query: &[u8]) -> Screened {
        let Some(question) = dns_wire::question(query) else {
            self.counters.dns_refused += 1;
            self.record_refusal(RefusalReason::DnsRefused, None, None, "dns");
            return Screened::Drop;
        };
        if self.policy.names.rules_for(&question.name).is_empty() {
            self.counters.dns_refused += 1;
            self.record_refusal(
                RefusalReason::DnsRefused,
                Some(question.name.clone()),
                None,
                "dns",
            );
            return Screened::Answer(dns_wire::answer_with_rcode(query, &question, RCODE_REFUSED));
        }
        Screened::Pass
    }

    /// An answer from the resolver, before the sandbox sees it.
    pub(super) fn screen_answer(&mut self, message: &[u8]) -> Screened {
        let Some(answer) = dns_wire::answer(message) else {
            return Screened::Drop;
        };
        let rules = self.policy.names.rules_for(&answer.name);
        if rules.is_empty() {
            // Not what was asked: never passed on.
            return Screened::Drop;
        }
        if answer.addresses.is_empty() {
            return Screened::Pass;
        }
        let updates = match self
            .policy
            .names
            .pin(&answer.addresses, &rules, Instant::now())
        {
            Ok(updates) => updates,
            Err(refusal) => {
                let reason = match refusal {
                    PinRefusal::Rebinding => {
                        self.counters.dns_rebinding += 1;
                        RefusalReason::Rebinding
                    }
                    PinRefusal::Cap => {
                        self.counters.pins_over_cap += 1;
                        RefusalReason::Cap
                    }
                };
                // The internal address (rebinding), or the first.
                let addr = answer
                    .addresses
                    .iter()
                    .map(|(a, _)| *a)
                    .find(|a| crate::forward::names::is_internal(*a))
                    .or(answer.addresses.first().map(|(a, _)| *a));
                self.record_refusal(
                    reason,
                    Some(answer.name.clone()),
                    addr.map(|a| (a, None)),
                    "dns",
                );
                return Screened::Answer(answer.replaced(message, RCODE_REFUSED));
            }
        };
        if self.apply_pins(&updates) {
            self.counters.pins_added += updates.iter().filter(|u| !u.replace).count() as u64;
            Screened::Pass
        } else {
            self.policy.names.unpin(&updates);
            self.counters.pin_errors += 1;
            Screened::Answer(answer.replaced(message, RCODE_SERVFAIL))
        }
    }

    /// The pins into the kernel's sets; whether they are there.
    fn apply_pins(&self, updates: &[PinUpdate]) -> bool {
        let Some(socket) = &self.pin_socket else {
            return false;
        };
        if pin_batch(updates).send_on(socket).is_ok() {
            return true;
        }
        // An element the kernel let expire a moment before we did cannot
        // be removed: add them all afresh.
        let fresh: Vec<PinUpdate> = updates
            .iter()
            .map(|u| PinUpdate {
                replace: false,
                ..u.clone()
            })
            .collect();
        pin_batch(&fresh).send_on(socket).is_ok()
    }
}

impl EgressForwarder {
    /// Judges the whole messages of screened DNS-over-TCP connections, and
    /// sends each on its way (a query to the resolver, an answer or a
    /// refusal to the sandbox); whether there were any.
    pub(super) fn screen_dns_streams(&mut self) -> bool {
        let messages = std::mem::take(&mut self.tcp.dns_messages);
        let any = !messages.is_empty();
        for (handle, query, message) in messages {
            let verdict = if query {
                self.screen_query(&message)
            } else {
                self.screen_answer(&message)
            };
            match (verdict, query) {
                (Screened::Pass, true) => self.tcp.dns_send(handle, true, &message),
                (Screened::Pass, false) => self.tcp.dns_send(handle, false, &message),
                (Screened::Answer(answer), _) => self.tcp.dns_send(handle, false, &answer),
                (Screened::Drop, _) => {}
            }
        }
        any
    }
}
