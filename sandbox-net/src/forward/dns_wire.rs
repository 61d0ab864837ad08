//! Just enough of the DNS wire format (RFC 1035) for the forwarder to
//! judge a query by its name and pin the addresses of an answer: the
//! question of a query, a REFUSED answer to it, and the A and AAAA records
//! of an answer that belong to the question's name (directly or through its
//! CNAME chain). Bounds-checked; anything malformed is `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record types.
pub(crate) const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
pub(crate) const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// Response codes.
pub(crate) const RCODE_SERVFAIL: u8 = 2;
pub(crate) const RCODE_REFUSED: u8 = 5;

/// The question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    pub(crate) id: u16,
    /// Lower case, dotted, no trailing dot (`""` for the root).
    pub(crate) name: String,
    pub(crate) qtype: u16,
    /// Where the question section ends in the message.
    pub(crate) end: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The name at `at` (following compression pointers, at most 32 of them),
/// lower case, and where it ends in the message (after the first pointer,
/// if any).
fn name_at(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at)?;
        match len {
            0 => {
                return Some((name, end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let target = usize::from(u16_at(msg, at)? & 0x3fff);
                end.get_or_insert(at + 2);
                // Pointers must go back, so they cannot loop.
                if target >= at {
                    return None;
                }
                at = target;
            }
            l if l & 0xc0 == 0 => {
                let label = msg.get(at + 1..at + 1 + usize::from(l))?;
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    // Names the forwarder judges are host names; anything
                    // else is kept as an unmatchable escape.
                    if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                        name.push(char::from(b.to_ascii_lowercase()));
                    } else {
                        name.push_str(&format!("\\{b:03}"));
                    }
                }
                if name.len() > 1024 {
                    return None;
                }
                at += 1 + usize::from(l);
            }
            _ => return None,
        }
    }
    None
}

/// The question of `msg` if it is a standard query (QR 0, opcode 0) with
/// exactly one question of class IN.
pub(crate) fn question(msg: &[u8]) -> Option<Question> {
    let flags = u16_at(msg, 2)?;
    let (qr, opcode) = (flags >> 15, (flags >> 11) & 0xf);
    if qr != 0 || opcode != 0 || u16_at(msg, 4)? != 1 {
        return None;
    }
    let (name, at) = name_at(msg, 12)?;
    let qtype = u16_at(msg, at)?;
    if u16_at(msg, at + 2)? != CLASS_IN {
        return None;
    }
    Some(Question {
        id: u16_at(msg, 0)?,
        name,
        qtype,
        end: at + 4,
    })
}

/// An answer to `query` (whose question is `q`) with no records and
/// response code `rcode`.
pub(crate) fn answer_with_rcode(query: &[u8], q: &Question, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.end);
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, the query's RD, RA; the code.
    let rd = query.get(2).map_or(0, |b| b & 0x01);
    out.push(0x80 | rd);
    out.push(0x80 | (rcode & 0x0f));
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..q.end).unwrap_or_default());
    out
}

/// What an answer says about its question's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) id: u16,
    pub(crate) rcode: u8,
    /// The question's name.
    pub(crate) name: String,
    /// The truncation bit.
    pub(crate) truncated: bool,
    /// A and AAAA records of the name or its CNAME chain, with TTLs.
    pub(crate) addresses: Vec<(IpAddr, u32)>,
    /// Where the question section ends.
    pub(crate) end: usize,
}

impl Answer {
    /// The same answer emptied, with response code `rcode` (what the
    /// sandbox gets when the forwarder will not let it through).
    pub(crate) fn replaced(&self, msg: &[u8], rcode: u8) -> Vec<u8> {
        let q = Question {
            id: self.id,
            name: self.name.clone(),
            qtype: 0,
            end: self.end,
        };
        answer_with_rcode(msg, &q, rcode)
    }
}

/// Reads an answer (QR 1, one question).
pub(crate) fn answer(msg: &[u8]) -> Option<Answer> {
    let flags = u16_at(msg, 2)?;
    if flags >> 15 != 1 || u16_at(msg, 4)? != 1 {
        return None;
    }
    let (qname, mut at) = name_at(msg, 12)?;
    at += 4;
    let end = at;
    let count = u16_at(msg, 6)?;
    let mut records = Vec::new();
    for _ in 0..count {
        let (owner, next) = name_at(msg, at)?;
        let rtype = u16_at(msg, next)?;
        let class = u16_at(msg, next + 2)?;
        let ttl = u32_at(msg, next + 4)?;
        let len = usize::from(u16_at(msg, next + 8)?);
        let data_at = next + 10;
        let data = msg.get(data_at..data_at + len)?;
        at = data_at + len;
        if class != CLASS_IN {
            continue;
        }
        let value = match rtype {
            TYPE_A if len == 4 => Some(Record::Addr(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(data).ok()?,
            )))),
            TYPE_AAAA if len == 16 => Some(Record::Addr(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(data).ok()?,
            )))),
            TYPE_CNAME => Some(Record::Alias(name_at(msg, data_at)?.0)),
            _ => None,
        };
        if let Some(value) = value {
            records.push((owner, value, ttl));
        }
    }
    // The names that are the question's: itself and its aliases, in
    // chain order (at most 16 links).
    let mut chain = vec![qname.clone()];
    for _ in 0..16 {
        let last = chain.last()?.clone();
        let next = records.iter().find_map(|(owner, value, _)| match value {
            Record::Alias(target) if *owner == last && !chain.contains(target) => {
                Some(target.clone())
            }
            _ => None,
        });
        match next {
            Some(target) => chain.push(target),
            None => break,
        }
    }
    let addresses = records
        .iter()
        .filter_map(|(owner, value, ttl)| match value {
            Record::Addr(addr) if chain.contains(owner) => Some((*addr, *ttl)),
            _ => None,
        })
        .collect();
    Some(Answer {
        id: u16_at(msg, 0)?,
        rcode: (flags & 0x0f) as u8,
        name: qname,
        truncated: flags & 0x0200 != 0,
        addresses,
        end,
    })
}

enum Record {
    Addr(IpAddr),
    Alias(String),
}

#[cfg(test)]
#[path = "dns_wire_tests.rs"]
mod tests;
