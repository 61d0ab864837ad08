//! The SNI of a QUIC connection, read from its client's Initial packets
//! (RFC 9000 §17.2.2; keys and header protection of RFC 9001 §5): the
//! Initial keys derive from the client's chosen Destination Connection ID
//! alone, so anyone on the path can read the ClientHello, and the
//! forwarder does before letting a UDP flow to a name pin go upstream.
//! QUIC version 1 only; the ClientHello may span several Initial packets.

use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use aes_gcm::aead::{Aead, Payload};

/// QUIC version 1's Initial salt (RFC 9001 §5.2).
const INITIAL_SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];

/// The most CRYPTO bytes gathered for one ClientHello.
const MAX_HELLO: usize = 16 * 1024;

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(secret: &[u8], label: &str, len: usize) -> Option<Vec<u8>> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::from_prk(secret).ok()?;
    let full = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    let mut out = vec![0u8; len];
    hk.expand(&info, &mut out).ok()?;
    Some(out)
}

/// The client's Initial key, IV and header-protection key for `dcid`.
pub(crate) fn client_initial_keys(dcid: &[u8]) -> Option<([u8; 16], [u8; 12], [u8; 16])> {
    let (initial, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(&INITIAL_SALT_V1), dcid);
    let client = expand_label(&initial, "client in", 32)?;
    let key = expand_label(&client, "quic key", 16)?.try_into().ok()?;
    let iv = expand_label(&client, "quic iv", 12)?.try_into().ok()?;
    let hp = expand_label(&client, "quic hp", 16)?.try_into().ok()?;
    Some((key, iv, hp))
}

/// A QUIC variable-length integer at `at`, and where it ends.
fn varint(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = *b.get(at)?;
    let len = 1usize << (first >> 6);
    let mut value = u64::from(first & 0x3f);
    for i in 1..len {
        value = (value << 8) | u64::from(*b.get(at + i)?);
    }
    Some((value, at + len))
}

/// What a datagram is to the SNI check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Initial {
    /// Not a QUIC v1 client Initial.
    Other,
    /// A client Initial that does not decrypt or parse.
    Malformed,
    /// The Initial's destination connection ID and CRYPTO frames
    /// (offset, bytes).
    Crypto(Vec<u8>, Vec<(u64, Vec<u8>)>),
}

/// Reads the first packet of `datagram` if it is a QUIC v1 client
/// Initial: its header protection removed and its payload decrypted.
pub(crate) fn open_initial(datagram: &[u8]) -> Initial {
    match open(datagram) {
        Some(found) => found,
        None => Initial::Malformed,
    }
}

fn open(d: &[u8]) -> Option<Initial> {
    let first = *d.first()?;
    // Long header, fixed bit, type Initial; version 1.
    if first & 0xc0 != 0xc0 || (first >> 4) & 0x03 != 0 || d.get(1..5)? != [0, 0, 0, 1] {
        return Some(Initial::Other);
    }
    let dcid_len = usize::from(*d.get(5)?);
    let dcid = d.get(6..6 + dcid_len)?.to_vec();
    let mut at = 6 + dcid_len;
    let scid_len = usize::from(*d.get(at)?);
    at += 1 + scid_len;
    let (token_len, next) = varint(d, at)?;
    at = next + usize::try_from(token_len).ok()?;
    let (length, pn_at) = varint(d, at)?;
    let length = usize::try_from(length).ok()?;
    let packet_end = pn_at.checked_add(length)?;
    if packet_end > d.len() {
        return None;
    }
    let (key, iv, hp) = client_initial_keys(&dcid)?;
    // Header protection: the sample starts 4 bytes past the packet number's
    // start.
    let sample = d.get(pn_at + 4..pn_at + 20)?;
    let mut mask = GenericArray::clone_from_slice(sample);
    aes::Aes128::new(GenericArray::from_slice(&hp)).encrypt_block(&mut mask);
    let mut header = d.get(..pn_at + 4)?.to_vec();
    header[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(header[0] & 0x03) + 1;
    header.truncate(pn_at + pn_len);
    let mut pn = 0u64;
    for i in 0..pn_len {
        header[pn_at + i] ^= mask[1 + i];
        pn = (pn << 8) | u64::from(header[pn_at + i]);
    }
    let mut nonce = iv;
    for (i, b) in pn.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    let cipher = aes_gcm::Aes128Gcm::new(GenericArray::from_slice(&key));
    let plain = cipher
        .decrypt(
            GenericArray::from_slice(&nonce),
            Payload {
                msg: d.get(pn_at + pn_len..packet_end)?,
                aad: &header,
            },
        )
        .ok()?;
    Some(Initial::Crypto(dcid, crypto_frames(&plain)?))
}

/// The CRYPTO frames of a decrypted Initial payload (PADDING, PING, ACK
/// and CONNECTION_CLOSE skipped; anything else is malformed in an
/// Initial).
fn crypto_frames(p: &[u8]) -> Option<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < p.len() {
        let (kind, next) = varint(p, at)?;
        at = next;
        match kind {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                // ACK: largest, delay, range count, first range, ranges
                // (and ECN counts for 0x03).
                let (_, n) = varint(p, at)?;
                let (_, n) = varint(p, n)?;
                let (count, n) = varint(p, n)?;
                let (_, mut n) = varint(p, n)?;
                for _ in 0..count.min(256) {
                    n = varint(p, varint(p, n)?.1)?.1;
                }
                if kind == 0x03 {
                    for _ in 0..3 {
                        n = varint(p, n)?.1;
                    }
                }
                at = n;
            }
            0x06 => {
                let (offset, n) = varint(p, at)?;
                let (len, n) = varint(p, n)?;
                let len = usize::try_from(len).ok()?;
                out.push((offset, p.get(n..n + len)?.to_vec()));
                at = n + len;
            }
            0x1c => {
                let (_, n) = varint(p, at)?;
                let (_, n) = varint(p, n)?;
                let (len, n) = varint(p, n)?;
                at = n + usize::try_from(len).ok()?;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The CRYPTO stream of one QUIC connection's Initials, put together.
#[derive(Debug, Default)]
pub(crate) struct HelloAssembly {
    bytes: Vec<u8>,
    filled: Vec<bool>,
}

impl HelloAssembly {
    /// Adds CRYPTO frames; the contiguous start of the stream once it
    /// holds a whole handshake message (the ClientHello), else `None`.
    /// `Err` past [`MAX_HELLO`].
    pub(crate) fn add(&mut self, frames: &[(u64, Vec<u8>)]) -> Result<Option<&[u8]>, ()> {
        for (offset, data) in frames {
            let start = usize::try_from(*offset).map_err(|_| ())?;
            let end = start.checked_add(data.len()).ok_or(())?;
            if end > MAX_HELLO {
                return Err(());
            }
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
                self.filled.resize(end, false);
            }
            self.bytes[start..end].copy_from_slice(data);
            self.filled[start..end].fill(true);
        }
        let contiguous = self
            .filled
            .iter()
            .position(|f| !f)
            .unwrap_or(self.filled.len());
        let have = &self.bytes[..contiguous];
        if have.len() >= 4 {
            let want = 4
                + ((usize::from(have[1]) << 16)
                    | (usize::from(have[2]) << 8)
                    | usize::from(have[3]));
            if have.len() >= want {
                return Ok(Some(&self.bytes[..want]));
            }
        }
        Ok(None)
    }
}

/// A UDP flow a name pin admitted, its datagrams held until its first one
/// shows what it is: not QUIC (passes on the pin), or a QUIC ClientHello
/// whose SNI must name a pinned host.
#[derive(Debug)]
pub(crate) struct QuicInspect {
    pub(crate) allowed: Vec<sandbox_policy::HostPattern>,
    pub(crate) held: Vec<Vec<u8>>,
    assembly: HelloAssembly,
}

/// Datagrams held at most while a ClientHello comes together.
const MAX_HELD_DATAGRAMS: usize = 16;

impl QuicInspect {
    /// Nothing seen yet; the SNI must match one of `allowed`.
    pub(crate) fn new(allowed: Vec<sandbox_policy::HostPattern>) -> Self {
        Self {
            allowed,
            held: Vec::new(),
            assembly: HelloAssembly::default(),
        }
    }

    /// Holds `datagram` and judges what has come: `None` while more is
    /// needed; `Some(Ok(()))` to let the held datagrams go; `Some(Err(..))`
    /// to refuse the flow (with the name the ClientHello gave, if any).
    pub(crate) fn judge(
        &mut self,
        datagram: &[u8],
    ) -> Option<Result<(), (crate::forward::FirstBytesRefusal, Option<String>)>> {
        use crate::forward::FirstBytesRefusal::{NoSni, SniMismatch};
        self.held.push(datagram.to_vec());
        let frames = match open_initial(datagram) {
            Initial::Other if self.held.len() == 1 => return Some(Ok(())),
            Initial::Other => return None,
            Initial::Malformed => return Some(Err((NoSni, None))),
            Initial::Crypto(_, frames) => frames,
        };
        let hello = match self.assembly.add(&frames) {
            Err(()) => return Some(Err((NoSni, None))),
            Ok(None) if self.held.len() >= MAX_HELD_DATAGRAMS => {
                return Some(Err((NoSni, None)));
            }
            Ok(None) => return None,
            Ok(Some(hello)) => hello,
        };
        match crate::forward::first_bytes::hello_sni(hello) {
            Some(Some(name)) if self.allowed.iter().any(|p| p.matches(&name)) => Some(Ok(())),
            Some(Some(name)) => Some(Err((SniMismatch, Some(name)))),
            _ => Some(Err((NoSni, None))),
        }
    }
}

#[cfg(test)]
#[path = "quic_tests.rs"]
mod tests;
