//! Netlink attributes, written by hand where libnftnl has no builder (set
//! elements with timeouts or interval flags, nfnetlink_log's
//! configuration).

/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 1 << 15;

/// Appends an attribute (padded to 4 bytes).
pub(crate) fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Appends a nested attribute whose payload `fill` writes.
pub(crate) fn nested(out: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    fill(out);
    let len = (out.len() - start) as u16;
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    out[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
}
