//! What the kernel's ruleset refused: chain `refuse` logs every packet it
//! refuses to an nfnetlink_log group ([`LOG_GROUP`]), read through a
//! `NETLINK_NETFILTER` socket the sandbox's child opened in its namespace.
//! Each logged packet's destination becomes a refusal.

use crate::nft::nla::attr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::net::{RecvFlags, SendFlags};

use crate::error::{Error, Result};

/// The nfnetlink_log group chain `refuse` logs to.
pub const LOG_GROUP: u16 = 1;
/// Bytes of each refused packet copied to the log (IPv6 and TCP headers).
pub const LOG_SNAPLEN: u32 = 96;

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;

/// Binds `socket` to [`LOG_GROUP`], copying packets, each sent at once.
///
/// # Errors
///
/// [`Error::Netlink`] if the kernel refused (no nfnetlink_log), or
/// [`Error::Os`] for the socket.
pub fn bind_log_group(socket: BorrowedFd<'_>) -> Result<()> {
    let mut body = Vec::new();
    attr(&mut body, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
    let mut mode = LOG_SNAPLEN.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    attr(&mut body, NFULA_CFG_MODE, &mode);
    attr(&mut body, NFULA_CFG_QTHRESH, &1u32.to_be_bytes());
    let mut message = Vec::new();
    let len = 16 + 4 + body.len();
    message.extend_from_slice(&(len as u32).to_ne_bytes());
    message.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    message.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    message.extend_from_slice(&LOG_GROUP.to_be_bytes());
    message.extend_from_slice(&body);
    rustix::net::send(socket, &message, SendFlags::empty())
        .map_err(Error::os("send the log group's configuration"))?;
    let mut reply = [0u8; 512];
    let n = rustix::net::recv(socket, &mut reply, RecvFlags::empty())
        .map_err(Error::os("receive the log group's acknowledgement"))?
        .0;
    match sandbox_child::net::first_error(&reply[..n]) {
        Some((_, errno)) if errno != 0 => Err(Error::Netlink {
            request: "bind the nfnetlink_log group".into(),
            error: std::io::Error::from_raw_os_error(errno),
        }),
        _ => Ok(()),
    }
}

/// A refused packet: its destination and protocol name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedPacket {
    /// Destination address.
    pub addr: IpAddr,
    /// Destination port (TCP and UDP).
    pub port: Option<u16>,
    /// `tcp`, `udp`, `icmp` or `other`.
    pub protocol: &'static str,
}

/// The destination of an IP packet (from its network header).
fn destination(packet: &[u8]) -> Option<LoggedPacket> {
    let (addr, proto, l4) = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            (
                IpAddr::V4(Ipv4Addr::from(dst)),
                *packet.get(9)?,
                packet.get(ihl..),
            )
        }
        6 => {
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(dst)),
                *packet.get(6)?,
                packet.get(40..),
            )
        }
        _ => return None,
    };
    let port =
        |l4: Option<&[u8]>| l4.and_then(|b| Some(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])));
    let (protocol, port) = match proto {
        6 => ("tcp", port(l4)),
        17 => ("udp", port(l4)),
        1 | 58 => ("icmp", None),
        _ => ("other", None),
    };
    Some(LoggedPacket {
        addr,
        port,
        protocol,
    })
}

/// Reads every logged packet waiting on `socket` (without blocking).
pub fn drain_log(socket: impl AsFd, mut each: impl FnMut(LoggedPacket)) {
    let mut buffer = [0u8; 8192];
    loop {
        let n = match rustix::net::recv(&socket, &mut buffer, RecvFlags::DONTWAIT) {
            Ok((n, _)) if n > 0 => n,
            // Nothing waiting, or an overrun (ENOBUFS): what was lost is
            // lost; the socket goes on.
            Err(rustix::io::Errno::NOBUFS) | Err(rustix::io::Errno::INTR) => continue,
            _ => return,
        };
        let mut at = 0;
        while at + 16 <= n {
            let word = |o: usize| {
                u32::from_ne_bytes([buffer[o], buffer[o + 1], buffer[o + 2], buffer[o + 3]])
            };
            let len = word(at) as usize;
            if len < 16 || at + len > n {
                break;
            }
            let kind = u16::from_ne_bytes([buffer[at + 4], buffer[at + 5]]);
            if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
                && let Some(packet) = payload(&buffer[at + 20..at + len]).and_then(destination)
            {
                each(packet);
            }
            at += len.next_multiple_of(4);
        }
    }
}

/// The `NFULA_PAYLOAD` attribute among `attrs`.
fn payload(mut attrs: &[u8]) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NFULA_PAYLOAD {
            return attrs.get(4..len);
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_of_logged_packets() {
        let mut v4 = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 2, 100, 198, 18, 2, 2,
        ];
        v4.extend_from_slice(&[0x9c, 0x40, 0, 80]);
        let p = destination(&v4);
        assert_eq!(
            p,
            Some(LoggedPacket {
                addr: "198.18.2.2"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                port: Some(80),
                protocol: "tcp",
            })
        );
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(&[0; 16]);
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0x9c, 0x40, 0, 53]);
        assert_eq!(
            destination(&v6).map(|p| (p.port, p.protocol)),
            Some((Some(53), "udp"))
        );
        assert_eq!(destination(&[0x45, 0, 0]), None);
        let mut attrs = Vec::new();
        attr(&mut attrs, 1, &[8, 0, 3, 0]);
        attr(&mut attrs, NFULA_PAYLOAD, &v4);
        assert_eq!(payload(&attrs), Some(&v4[..]));
    }
}
