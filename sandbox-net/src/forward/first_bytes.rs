//! The first bytes of a connection admitted by a name pin, read before
//! they go upstream: a TLS ClientHello must name (SNI) a host the pinned
//! rules allow, and a plain HTTP request must carry a `Host` they allow.
//! Anything else (SSH, a server that speaks first) passes on the pin
//! alone. An ECH ClientHello's outer name is checked like any SNI.

use std::time::{Duration, Instant};

use sandbox_policy::HostPattern;
use smoltcp::socket::tcp;

/// The most bytes held while deciding (a ClientHello with post-quantum key
/// shares is 1-2 KiB; HTTP request headers rarely pass 8 KiB).
pub(crate) const MAX_FIRST_BYTES: usize = 16 * 1024;

/// Why first bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytesRefusal {
    /// A ClientHello whose SNI no pinned rule allows.
    SniMismatch,
    /// A ClientHello without SNI (or one that did not parse).
    NoSni,
    /// An HTTP request whose `Host` no pinned rule allows, or without one.
    HostMismatch,
}

impl FirstBytesRefusal {
    /// The name used in reports: `sni-mismatch`, `no-sni`, `host-mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SniMismatch => "sni-mismatch",
            Self::NoSni => "no-sni",
            Self::HostMismatch => "host-mismatch",
        }
    }
}

/// What to do with a connection's first bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FirstBytes {
    /// Not enough to decide.
    NeedMore,
    /// Let them through (and all that follows).
    Pass,
    /// Reset the connection.
    Refuse(FirstBytesRefusal),
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// The verdict on `bytes`, the first the client sent; `finished`: no more
/// will come (the client closed, the buffer is full, or time ran out).
pub(crate) fn judge(bytes: &[u8], allowed: &[HostPattern], finished: bool) -> FirstBytes {
    let Some(&first) = bytes.first() else {
        return if finished {
            FirstBytes::Pass
        } else {
            FirstBytes::NeedMore
        };
    };
    let matches = |name: &str| allowed.iter().any(|p| p.matches(name));
    if first == 0x16 {
        return match client_hello_sni(bytes) {
            Parse::Incomplete if !finished => FirstBytes::NeedMore,
            Parse::Incomplete | Parse::Malformed => FirstBytes::Refuse(FirstBytesRefusal::NoSni),
            Parse::Done(None) => FirstBytes::Refuse(FirstBytesRefusal::NoSni),
            Parse::Done(Some(name)) if matches(&name) => FirstBytes::Pass,
            Parse::Done(Some(_)) => FirstBytes::Refuse(FirstBytesRefusal::SniMismatch),
        };
    }
    let method = METHODS.iter().find(|m| bytes.starts_with(m));
    let maybe_method = METHODS.iter().any(|m| m.starts_with(bytes));
    match method {
        Some(_) => match http_host(bytes) {
            Parse::Incomplete if !finished => FirstBytes::NeedMore,
            Parse::Done(Some(host)) if matches(&host) => FirstBytes::Pass,
            _ => FirstBytes::Refuse(FirstBytesRefusal::HostMismatch),
        },
        None if maybe_method && !finished => FirstBytes::NeedMore,
        // Started like a method and stopped: not HTTP.
        None => FirstBytes::Pass,
    }
}

/// The name `bytes` present (a ClientHello's SNI, or an HTTP request's
/// `Host`), for reports.
pub(crate) fn presented_name(bytes: &[u8]) -> Option<String> {
    let name = if bytes.first() == Some(&0x16) {
        client_hello_sni(bytes)
    } else {
        http_host(bytes)
    };
    match name {
        Parse::Done(name) => name.filter(|n| n.len() <= 253),
        _ => None,
    }
}

enum Parse<T> {
    Incomplete,
    Malformed,
    Done(T),
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

/// The SNI of the ClientHello at the start of `bytes` (TLS records of type
/// handshake, the message possibly spread over several).
fn client_hello_sni(bytes: &[u8]) -> Parse<Option<String>> {
    // The handshake message, gathered from the records' fragments.
    let mut message = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = bytes.get(at..at + 5) else {
            return Parse::Incomplete;
        };
        if header[0] != 0x16 || header[1] != 3 {
            return Parse::Malformed;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(fragment) = bytes.get(at + 5..at + 5 + len) else {
            message.extend_from_slice(bytes.get(at + 5..).unwrap_or_default());
            return match message.first() {
                Some(1) | None => Parse::Incomplete,
                Some(_) => Parse::Malformed,
            };
        };
        message.extend_from_slice(fragment);
        at += 5 + len;
        if message.len() >= 4 {
            if message[0] != 1 {
                return Parse::Malformed;
            }
            let want = 4
                + ((usize::from(message[1]) << 16)
                    | (usize::from(message[2]) << 8)
                    | usize::from(message[3]));
            if message.len() >= want {
                return match sni_of(&message[4..want]) {
                    Some(sni) => Parse::Done(sni),
                    None => Parse::Malformed,
                };
            }
        }
    }
}

/// The server name of a ClientHello handshake message (its 4-byte header
/// included); `Some(None)` if it has none, `None` if it does not parse.
pub(crate) fn hello_sni(message: &[u8]) -> Option<Option<String>> {
    (*message.first()? == 1).then_some(())?;
    sni_of(message.get(4..)?)
}

/// The server name of a ClientHello body; `Some(None)` if it has none.
fn sni_of(hello: &[u8]) -> Option<Option<String>> {
    // version, random
    let mut at = 2 + 32;
    at += 1 + usize::from(*hello.get(at)?); // session id
    at += 2 + u16_at(hello, at)?; // cipher suites
    at += 1 + usize::from(*hello.get(at)?); // compression methods
    let Some(ext_len) = u16_at(hello, at) else {
        return Some(None); // no extensions
    };
    let end = at + 2 + ext_len;
    at += 2;
    while at + 4 <= end {
        let kind = u16_at(hello, at)?;
        let len = u16_at(hello, at + 2)?;
        let data = hello.get(at + 4..at + 4 + len)?;
        if kind == 0 {
            // server_name_list: length, then (type, length, name).
            let list = data.get(2..)?;
            if *list.first()? != 0 {
                return Some(None);
            }
            let name_len = u16_at(list, 1)?;
            let name = list.get(3..3 + name_len)?;
            if !name.is_ascii() {
                return None;
            }
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            return Some(Some(name));
        }
        at += 4 + len;
    }
    Some(None)
}

/// The `Host` of the HTTP request at the start of `bytes`, without its
/// port.
fn http_host(bytes: &[u8]) -> Parse<Option<String>> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Parse::Incomplete;
    };
    let head = String::from_utf8_lossy(&bytes[..end]);
    let host = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("host")
            .then(|| value.trim().to_ascii_lowercase())
    });
    Parse::Done(host.map(|h| match h.rsplit_once(':') {
        Some((name, port))
            if !h.starts_with('[')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name.to_string()
        }
        _ => h,
    }))
}

/// A connection's first bytes, held until they are judged.
pub(crate) struct Inspect {
    pub(crate) allowed: Vec<HostPattern>,
    bytes: Vec<u8>,
    /// When the first of them came.
    since: Option<Instant>,
}

impl Inspect {
    /// Nothing read yet; the bytes must name one of `allowed`.
    pub(crate) fn new(allowed: Vec<HostPattern>) -> Self {
        Self {
            allowed,
            bytes: Vec::new(),
            since: None,
        }
    }
}

/// How long a client may take to send the rest of a ClientHello or a
/// request's headers once it started.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a connection's first bytes from its stack socket while they are
/// being judged (`inspect`), and judges them: the refusal (and the name
/// the bytes presented) if refused; when
/// they pass, they move to `held` (to go to the host first) and `inspect`
/// ends. `closed`: the sandbox closed its side.
pub(crate) fn read_and_judge(
    inspect: &mut Option<Inspect>,
    held: &mut Vec<u8>,
    socket: &mut tcp::Socket<'_>,
    closed: bool,
) -> Option<(FirstBytesRefusal, Option<String>)> {
    let state = inspect.as_mut()?;
    while socket.can_recv() && state.bytes.len() < MAX_FIRST_BYTES {
        let room = MAX_FIRST_BYTES - state.bytes.len();
        let bytes = &mut state.bytes;
        let _ = socket.recv(|data| {
            let n = data.len().min(room);
            bytes.extend_from_slice(&data[..n]);
            (n, ())
        });
    }
    if !state.bytes.is_empty() {
        state.since.get_or_insert_with(Instant::now);
    }
    let finished = closed
        || state.bytes.len() >= MAX_FIRST_BYTES
        || state
            .since
            .is_some_and(|t| t.elapsed() > FIRST_BYTES_TIMEOUT);
    match judge(&state.bytes, &state.allowed, finished) {
        FirstBytes::NeedMore => None,
        FirstBytes::Pass => {
            *held = std::mem::take(&mut state.bytes);
            *inspect = None;
            None
        }
        FirstBytes::Refuse(refusal) => Some((refusal, presented_name(&state.bytes))),
    }
}

#[cfg(test)]
#[path = "first_bytes_tests.rs"]
mod tests;
