//! A built batch, sent on a netfilter socket; and the kernel's table read
//! back.

use std::os::fd::{AsFd, AsRawFd};

use sandbox_child::net::NetlinkFailure;

use super::TABLE;
use crate::error::{Error, Result};
use crate::sys;

/// An nf_tables batch as bytes, with how many ACKs it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftBatch {
    bytes: Vec<u8>,
    acks: u32,
}

impl NftBatch {
    pub(super) fn from_bytes(bytes: Vec<u8>) -> Self {
        let acks = sys::count_ack_requests(&bytes);
        Self { bytes, acks }
    }

    /// Sends the batch on `socket` (a `NETLINK_NETFILTER` socket, such as
    /// the one a sandbox's child opened in its namespace) and checks the
    /// ACKs.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_on(&self, socket: impl AsFd) -> Result<()> {
        sandbox_child::net::send_batch_and_check_acks(socket.as_fd(), &self.bytes, self.acks)
            .map_err(|failure| Error::Netlink {
                request: match failure {
                    NetlinkFailure::Refused { at, .. } => {
                        format!("nftables batch (message {at})")
                    }
                    NetlinkFailure::Socket(_) => "nftables batch (send or receive)".into(),
                },
                error: failure.errno().into(),
            })
    }

    /// The bytes, as sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many ACKs the kernel sends back when the batch succeeds.
    pub fn acks(&self) -> u32 {
        self.acks
    }

    /// Sends the batch on a new `NETLINK_NETFILTER` socket in the caller's
    /// network namespace and checks the ACKs.
    ///
    /// # Errors
    ///
    /// [`Error::Netlink`] with the first errno the kernel answered (the
    /// batch is then rolled back whole).
    pub fn send(&self) -> Result<()> {
        self.send_on(netfilter_socket()?)
    }

    /// The batch's rules rendered by libnftnl (table, chain and
    /// expressions; no handle), in order.
    pub(super) fn rules(&self) -> Result<Vec<String>> {
        sys::render_rules(&self.bytes).map_err(|detail| Error::Malformed {
            request: "our own nftables batch".into(),
            detail,
        })
    }
}

/// A `NETLINK_NETFILTER` socket in the caller's network namespace.
pub(super) fn netfilter_socket() -> Result<std::os::fd::OwnedFd> {
    sandbox_child::net::netlink_socket(Some(rustix::net::netlink::NETFILTER))
        .map_err(Error::os("socket(NETLINK_NETFILTER)"))
}

/// What the kernel holds in table `inet sandbox`, rendered by libnftnl.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelRuleset {
    /// Chains as `name (hook H, policy P)`, sorted.
    pub chains: Vec<String>,
    /// Rules in chain order (`output` then `input`), each rendered as
    /// libnftnl prints its expressions (no handle).
    pub rules: Vec<String>,
}

impl KernelRuleset {
    /// Dumps table `inet sandbox` of the caller's network namespace.
    ///
    /// # Errors
    ///
    /// [`Error::Mismatch`] if there is no such table; [`Error::Os`] or
    /// [`Error::Netlink`] if the dump failed.
    pub fn read() -> Result<Self> {
        let socket = netfilter_socket()?;
        let dump = |kind| {
            sys::nft_dump(socket.as_raw_fd(), kind, TABLE).map_err(|(what, errno)| {
                if errno == libc::ENOENT {
                    Error::Mismatch {
                        detail: format!("no table inet {TABLE} in this network namespace"),
                    }
                } else {
                    Error::Netlink {
                        request: what,
                        error: std::io::Error::from_raw_os_error(errno),
                    }
                }
            })
        };
        let mut chains = dump(sys::DumpKind::Chains)?;
        chains.sort();
        let mut rules = dump(sys::DumpKind::Rules)?;
        // The dump lists chains in creation order (output, input): keep it.
        rules.retain(|r| !r.is_empty());
        Ok(Self { chains, rules })
    }
}
