//! The forwarder's event loop, in a thread of its own (`run`) or as one
//! of many in a caller's poll loop (`timer`, `poll_fds`, `on_poll`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};

use crate::error::{Error, Result};
use crate::forward::echo::EchoKey;
use crate::forward::forwarder::{EgressForwarder, FRAME_CAPACITY};

/// What one poll round of a forwarder covered (see
/// [`EgressForwarder::poll_fds`]).
#[derive(Debug)]
pub struct PollRound {
    keys: Vec<(SocketAddr, SocketAddr)>,
    echo_keys: Vec<EchoKey>,
    /// How many fds the round appended.
    count: usize,
}

impl EgressForwarder {
    /// Runs until `stop` is set (checked at least every 100 ms) or the tap
    /// is closed.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if polling or the tap fails.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let mut frame = vec![0u8; FRAME_CAPACITY];
        while !stop.load(Ordering::Relaxed) {
            let (round, ready) = {
                let mut fds = Vec::new();
                let timer = self.timer();
                let round = self.poll_fds(&mut fds);
                let timeout = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: timer.as_nanos() as i64,
                };
                match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(Error::os("poll")(e)),
                }
                let ready: Vec<bool> = fds.iter().map(|p| !p.revents().is_empty()).collect();
                (round, ready)
            };
            if !self.on_poll(round, &ready, &mut frame)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// How long a poll may wait before the forwarder has work of its own
    /// (a TCP timer; at most 100 ms).
    pub fn timer(&mut self) -> Duration {
        self.tcp
            .next_timer()
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100))
    }

    /// For a loop that polls many forwarders at once: appends this
    /// round's fds to `fds`. Poll them (for at most
    /// [`timer`](EgressForwarder::timer)), then hand the round and the
    /// readiness of exactly these fds, in order, to
    /// [`on_poll`](EgressForwarder::on_poll).
    pub fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) -> PollRound {
        let keys: Vec<(SocketAddr, SocketAddr)> = self.flows.keys().copied().collect();
        let first = fds.len();
        fds.push(PollFd::new(&self.tap, PollFlags::IN));
        for key in &keys {
            if let Some(flow) = self.flows.get(key) {
                fds.push(PollFd::new(&flow.socket, PollFlags::IN));
            }
        }
        let echo_fds = self.echoes.sockets();
        let echo_keys = echo_fds.iter().map(|(key, _)| *key).collect();
        for (_, fd) in echo_fds {
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        }
        for (fd, read, write) in self.tcp.host_fds() {
            let mut flags = PollFlags::empty();
            if read {
                flags |= PollFlags::IN;
            }
            if write {
                flags |= PollFlags::OUT;
            }
            fds.push(PollFd::from_borrowed_fd(fd, flags));
        }
        PollRound {
            keys,
            echo_keys,
            count: fds.len() - first,
        }
    }

    /// Handles a round from [`poll_fds`](EgressForwarder::poll_fds):
    /// `ready[i]` says whether its i-th fd had events. `frame` is scratch
    /// space of any size the caller may share between forwarders. Returns
    /// `false` once the tap has closed (the sandbox is gone).
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the tap fails.
    pub fn on_poll(
        &mut self,
        round: PollRound,
        ready: &[bool],
        frame: &mut Vec<u8>,
    ) -> Result<bool> {
        if frame.len() < FRAME_CAPACITY {
            frame.resize(FRAME_CAPACITY, 0);
        }
        let ready = &ready[..round.count.min(ready.len())];
        if ready.first().copied().unwrap_or(false) && !self.read_tap()? {
            return Ok(false);
        }
        for (key, is_ready) in round.keys.iter().zip(ready.iter().skip(1)) {
            if *is_ready {
                self.relay_in(*key, frame);
            }
        }
        let echo_ready = ready.iter().skip(1 + round.keys.len());
        for (key, is_ready) in round.echo_keys.iter().zip(echo_ready) {
            if *is_ready {
                self.echo_in(*key, frame);
            }
        }
        for out in self.tcp.pump() {
            self.send_stack_frame(out);
        }
        // Judged DNS-over-TCP messages go out in the same round.
        if self.screen_dns_streams() {
            for out in self.tcp.pump() {
                self.send_stack_frame(out);
            }
        }
        self.take_first_bytes_refusals();
        self.drain_kernel_refusals();
        let idle = self.limits.udp_idle;
        self.flows.retain(|_, flow| flow.last.elapsed() < idle);
        self.echoes.expire(idle);
        Ok(true)
    }
}
