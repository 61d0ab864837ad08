//! Moving a connection's bytes: the sandbox's side (the stack's socket)
//! to the host's and back, through the first-bytes check and the DNS
//! framing where they apply; FINs and resets passed on.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

use super::{TcpRelay, sandbox_closed};
use crate::forward::first_bytes::{self, FirstBytesRefusal};

impl TcpRelay {
    pub(super) fn relay(&mut self) {
        let handles: Vec<SocketHandle> = self.connections.keys().copied().collect();
        for handle in handles {
            let Some(conn) = self.connections.get_mut(&handle) else {
                continue;
            };
            let socket = self.sockets.get_mut::<tcp::Socket<'_>>(handle);
            if conn.refused {
                continue;
            }
            if let Some(refusal) = first_bytes::read_and_judge(
                &mut conn.inspect,
                &mut conn.held,
                socket,
                sandbox_closed(socket.state()),
            ) {
                let (refusal, name) = refusal;
                match refusal {
                    FirstBytesRefusal::SniMismatch => self.counters.sni_mismatch += 1,
                    FirstBytesRefusal::NoSni => self.counters.no_sni += 1,
                    FirstBytesRefusal::HostMismatch => self.counters.host_mismatch += 1,
                }
                self.refused_first_bytes.push((conn.key.1, refusal, name));
                socket.abort();
                conn.refused = true;
                continue;
            }
            if !conn.held.is_empty() {
                match conn.host.write(&conn.held) {
                    Ok(n) => {
                        conn.held.drain(..n);
                        self.counters.bytes_out += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        socket.abort();
                        conn.host_eof = true;
                    }
                }
            }
            let guest_closed =
                sandbox_closed(socket.state()) && socket.state() != tcp::State::Closed;
            if let Some(framing) = &mut conn.dns {
                match framing.step(socket, &mut conn.host, &mut conn.host_eof) {
                    Some(messages) => self
                        .dns_messages
                        .extend(messages.into_iter().map(|(q, m)| (handle, q, m))),
                    None => {
                        socket.abort();
                        continue;
                    }
                }
                if guest_closed
                    && framing.guest_drained()
                    && conn.held.is_empty()
                    && !conn.host_write_shut
                {
                    let _ = conn.host.shutdown(Shutdown::Write);
                    conn.host_write_shut = true;
                }
                if conn.host_eof && framing.drained() && socket.may_send() {
                    socket.close();
                }
                continue;
            }
            let judged = conn.inspect.is_none() && conn.held.is_empty();
            // Sandbox → host: only what the host socket takes.
            while judged && socket.can_recv() {
                let written = socket.recv(|data| match conn.host.write(data) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, Ok(0)),
                    Err(e) => (0, Err(e)),
                });
                match written {
                    Ok(Ok(0)) | Err(_) => break,
                    Ok(Ok(n)) => self.counters.bytes_out += n as u64,
                    Ok(Err(_)) => {
                        // The host side failed (a reset from outside):
                        // the sandbox gets a reset too.
                        socket.abort();
                        conn.host_eof = true;
                        break;
                    }
                }
            }
            // The sandbox closed its side: pass the FIN on.
            if judged && guest_closed && socket.recv_queue() == 0 && !conn.host_write_shut {
                let _ = conn.host.shutdown(Shutdown::Write);
                conn.host_write_shut = true;
            }
            // Host → sandbox: only as much as the socket has room for, read
            // straight into its send buffer.
            while !conn.host_eof
                && socket.may_send()
                && socket.send_queue() < socket.send_capacity()
            {
                let host = &mut conn.host;
                let read = socket.send(|room| {
                    if room.is_empty() {
                        return (0, Err(io::ErrorKind::WouldBlock.into()));
                    }
                    match host.read(room) {
                        Ok(n) => (n, Ok(n)),
                        Err(e) => (0, Err(e)),
                    }
                });
                match read {
                    Ok(Ok(0)) => {
                        conn.host_eof = true;
                        socket.close();
                    }
                    Ok(Ok(n)) => self.counters.bytes_in += n as u64,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Ok(Err(_)) => {
                        socket.abort();
                        conn.host_eof = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
