//! Client QUIC Initials built the way a client builds them (RFC 9001
//! keys from the Destination Connection ID, AES-128-GCM, header
//! protection), for tests of the forwarder's SNI check: shared by
//! sandbox-net's unit tests and sandbox-core's egress tests.
#![allow(dead_code, clippy::unwrap_used)]

use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use aes_gcm::aead::{Aead, Payload};

fn expand_label(secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::from_prk(secret).unwrap();
    let full = format!("tls13 {label}");
    let mut info = (len as u16).to_be_bytes().to_vec();
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    let mut out = vec![0u8; len];
    hk.expand(&info, &mut out).unwrap();
    out
}

/// The client's Initial key, IV and header-protection key for `dcid`.
pub(crate) fn keys(dcid: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    const SALT: [u8; 20] = [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ];
    let (initial, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(&SALT), dcid);
    let client = expand_label(&initial, "client in", 32);
    (
        expand_label(&client, "quic key", 16),
        expand_label(&client, "quic iv", 12),
        expand_label(&client, "quic hp", 16),
    )
}

/// A client Initial for `dcid` carrying `frames` (already encoded),
/// padded to 1200 bytes, packet number `pn` in 2 bytes, protected.
pub(crate) fn initial(dcid: &[u8], pn: u16, frames: &[u8]) -> Vec<u8> {
    let (key, iv, hp) = keys(dcid);
    let mut plain = frames.to_vec();
    let header_len = 1 + 4 + 1 + dcid.len() + 1 + 1 + 2 + 2;
    let total = 1200;
    plain.resize(total - header_len - 16, 0); // PADDING
    let length = (2 + plain.len() + 16) as u16;
    let mut header = vec![0xc1, 0, 0, 0, 1, dcid.len() as u8];
    header.extend_from_slice(dcid);
    header.push(0); // no SCID
    header.push(0); // no token
    header.extend_from_slice(&(0x4000 | length).to_be_bytes());
    let pn_at = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let mut nonce: [u8; 12] = iv.try_into().unwrap();
    for (i, b) in u64::from(pn).to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    let cipher = aes_gcm::Aes128Gcm::new(GenericArray::from_slice(&key));
    let sealed = cipher
        .encrypt(
            GenericArray::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &header,
            },
        )
        .unwrap();
    let mut packet = header;
    packet.extend_from_slice(&sealed);
    let mut mask = GenericArray::clone_from_slice(&packet[pn_at + 4..pn_at + 20]);
    aes::Aes128::new(GenericArray::from_slice(&hp)).encrypt_block(&mut mask);
    packet[0] ^= mask[0] & 0x0f;
    packet[pn_at] ^= mask[1];
    packet[pn_at + 1] ^= mask[2];
    packet
}

/// A CRYPTO frame (2-byte varints).
pub(crate) fn crypto(offset: u16, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&(0x4000 | offset).to_be_bytes());
    f.extend_from_slice(&(0x4000 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// A ClientHello handshake message naming `sni`, with `padding` bytes of
/// another extension.
pub(crate) fn client_hello(sni: &str, padding: usize) -> Vec<u8> {
    let mut list = vec![0u8];
    list.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    list.extend_from_slice(sni.as_bytes());
    let mut data = (list.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
    ext.extend_from_slice(&data);
    ext.extend_from_slice(&[0, 21]);
    ext.extend_from_slice(&(padding as u16).to_be_bytes());
    ext.extend(std::iter::repeat_n(0u8, padding));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut message = vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    message
}
