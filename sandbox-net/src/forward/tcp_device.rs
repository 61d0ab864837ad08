//! The smoltcp device of the TCP relay: frames in and out are queues the
//! forwarder fills from the tap and drains to it, with buffers reused.

use std::collections::VecDeque;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};

/// A device whose frames are queues the forwarder fills and drains.
pub(super) struct QueueDevice {
    /// Frames for the stack, each from its offset on.
    pub(super) rx: VecDeque<(Vec<u8>, usize)>,
    pub(super) tx: VecDeque<Vec<u8>>,
    /// Frame buffers written out and given back, reused for later frames.
    pub(super) pool: Vec<Vec<u8>>,
    pub(super) mtu: usize,
    /// Bytes left free in front of every frame sent (for the tap's
    /// `virtio_net_hdr`).
    pub(super) headroom: usize,
    /// TCP checksums are the tap's business (offloaded): the stack neither
    /// checks nor computes them.
    pub(super) offload: bool,
}

pub(super) struct Rx(Vec<u8>, usize);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0.get(self.1..).unwrap_or_default())
    }
}

pub(super) struct Tx<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
    pub(super) pool: &'a mut Vec<Vec<u8>>,
    pub(super) headroom: usize,
}

/// Bytes zeroed at the start of a reused frame buffer: every header the
/// stack writes (Ethernet, IPv6, TCP with options) lies within them, so
/// padding it skips is never stale; the payload after is always written.
const HEADER_BYTES: usize = 14 + 40 + 60;

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let total = self.headroom + len;
        let mut frame = self.pool.pop().unwrap_or_default();
        if frame.len() >= total {
            frame.truncate(total);
            frame[..total.min(self.headroom + HEADER_BYTES)].fill(0);
        } else {
            frame.clear();
            frame.resize(total, 0);
        }
        let result = f(&mut frame[self.headroom..]);
        self.queue.push_back(frame);
        result
    }
}

/// Frame buffers kept for reuse at most.
pub(super) const POOL_SIZE: usize = 64;

impl Device for QueueDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let (frame, start) = self.rx.pop_front()?;
        Some((
            Rx(frame, start),
            Tx {
                queue: &mut self.tx,
                pool: &mut self.pool,
                headroom: self.headroom,
            },
        ))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx {
            queue: &mut self.tx,
            pool: &mut self.pool,
            headroom: self.headroom,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        if self.offload {
            caps.checksum.tcp = smoltcp::phy::Checksum::None;
        }
        caps
    }
}
