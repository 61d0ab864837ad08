//! nf_tables over netlink: the batch sender and dumps rendered by
//! libnftnl.

use sandbox_child::net::first_error;

use super::errno;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;

/// The netlink messages of a buffer: `(type, flags, seq, message)`.
fn messages(bytes: &[u8]) -> impl Iterator<Item = (u16, u16, u32, &[u8])> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        if offset + 16 > bytes.len() {
            return None;
        }
        let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let len = u32::from_ne_bytes(word(offset)) as usize;
        if len < 16 || offset + len > bytes.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([bytes[offset + 4], bytes[offset + 5]]);
        let flags = u16::from_ne_bytes([bytes[offset + 6], bytes[offset + 7]]);
        let seq = u32::from_ne_bytes(word(offset + 8));
        let message = &bytes[offset..offset + len];
        offset += (len + 3) & !3;
        Some((kind, flags, seq, message))
    })
}

/// How many messages of a batch ask for an ACK.
pub(crate) fn count_ack_requests(bytes: &[u8]) -> u32 {
    messages(bytes)
        .filter(|(_, flags, _, _)| flags & libc::NLM_F_ACK as u16 != 0)
        .count() as u32
}

/// What to dump from table `inet <table>`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DumpKind {
    Chains,
    Rules,
}

/// An aligned copy of one netlink message, for libnftnl's parsers.
fn aligned(message: &[u8]) -> Vec<u64> {
    let mut buffer = vec![0u64; message.len().div_ceil(8)];
    // SAFETY: the u64 buffer has at least message.len() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            message.as_ptr(),
            buffer.as_mut_ptr().cast::<u8>(),
            message.len(),
        );
    }
    buffer
}

/// Renders one NEWRULE message with libnftnl (no handle, position or id).
fn render_rule(message: &[u8]) -> Result<String, String> {
    use nftnl_sys as nft;
    let buffer = aligned(message);
    // SAFETY: libnftnl allocates a rule, parses the (aligned, complete)
    // message into it, prints it into our buffer, and we free it.
    unsafe {
        let rule = nft::nftnl_rule_alloc();
        if rule.is_null() {
            return Err("nftnl_rule_alloc failed".into());
        }
        let parsed = nft::nftnl_rule_nlmsg_parse(buffer.as_ptr().cast(), rule);
        let result = if parsed < 0 {
            Err(format!("nftnl_rule_nlmsg_parse: errno {}", errno()))
        } else {
            for attr in [
                nft::NFTNL_RULE_HANDLE,
                nft::NFTNL_RULE_POSITION,
                nft::NFTNL_RULE_ID,
            ] {
                nft::nftnl_rule_unset(rule, attr as u16);
            }
            let mut text = vec![0u8; 16 * 1024];
            let n = nft::nftnl_rule_snprintf(
                text.as_mut_ptr().cast(),
                text.len(),
                rule,
                nft::NFTNL_OUTPUT_DEFAULT,
                0,
            );
            if n < 0 {
                Err("nftnl_rule_snprintf failed".into())
            } else {
                text.truncate((n as usize).min(text.len()));
                Ok(String::from_utf8_lossy(&text).trim().to_string())
            }
        };
        nft::nftnl_rule_free(rule);
        result
    }
}

/// Renders one NEWCHAIN message as `name (hook H, policy P)`.
fn render_chain(message: &[u8]) -> Result<String, String> {
    use nftnl_sys as nft;
    let buffer = aligned(message);
    // SAFETY: as in render_rule, for a chain; the strings libnftnl returns
    // live as long as the chain, which we free after copying them.
    unsafe {
        let chain = nft::nftnl_chain_alloc();
        if chain.is_null() {
            return Err("nftnl_chain_alloc failed".into());
        }
        let result = if nft::nftnl_chain_nlmsg_parse(buffer.as_ptr().cast(), chain) < 0 {
            Err(format!("nftnl_chain_nlmsg_parse: errno {}", errno()))
        } else {
            let name = nft::nftnl_chain_get_str(chain, nft::NFTNL_CHAIN_NAME as u16);
            let name = if name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(name)
                    .to_string_lossy()
                    .into_owned()
            };
            if !nft::nftnl_chain_is_set(chain, nft::NFTNL_CHAIN_HOOKNUM as u16) {
                nft::nftnl_chain_free(chain);
                return Ok(format!("{name} (regular)"));
            }
            let hook = match nft::nftnl_chain_get_u32(chain, nft::NFTNL_CHAIN_HOOKNUM as u16) {
                0 => "prerouting",
                1 => "input",
                2 => "forward",
                3 => "output",
                4 => "postrouting",
                _ => "?",
            };
            let policy = match nft::nftnl_chain_get_u32(chain, nft::NFTNL_CHAIN_POLICY as u16) {
                0 => "drop",
                1 => "accept",
                _ => "?",
            };
            Ok(format!("{name} (hook {hook}, policy {policy})"))
        };
        nft::nftnl_chain_free(chain);
        result
    }
}

/// The NEWRULE messages of our own batch, rendered.
pub(crate) fn render_rules(batch: &[u8]) -> Result<Vec<String>, String> {
    messages(batch)
        .filter(|(kind, _, _, _)| *kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)
        .map(|(_, _, _, message)| render_rule(message))
        .collect()
}

/// Dumps the chains or rules of table `inet <table>` on `fd`, rendered by
/// libnftnl. `Err((what, errno))` if the kernel refused.
pub(crate) fn nft_dump(fd: i32, kind: DumpKind, table: &str) -> Result<Vec<String>, (String, i32)> {
    use nftnl_sys as nft;
    let what = match kind {
        DumpKind::Chains => format!("list chains of inet {table}"),
        DumpKind::Rules => format!("list rules of inet {table}"),
    };
    let table_name = std::ffi::CString::new(table).map_err(|_| (what.clone(), libc::EINVAL))?;
    let mut request = vec![0u64; 512];
    // SAFETY: libnftnl writes a header and a payload into our 4 KiB aligned
    // buffer (far more than a dump request needs); the objects are freed.
    let len = unsafe {
        let buf = request.as_mut_ptr().cast::<libc::c_char>();
        let (msg, flags) = match kind {
            DumpKind::Chains => (NFT_MSG_GETCHAIN, libc::NLM_F_DUMP),
            DumpKind::Rules => (NFT_MSG_GETRULE, libc::NLM_F_DUMP),
        };
        let header =
            nft::nftnl_nlmsg_build_hdr(buf, msg, libc::NFPROTO_INET as u16, flags as u16, 1);
        match kind {
            DumpKind::Chains => {
                let chain = nft::nftnl_chain_alloc();
                if chain.is_null() {
                    return Err((what, libc::ENOMEM));
                }
                nft::nftnl_chain_set_str(chain, nft::NFTNL_CHAIN_TABLE as u16, table_name.as_ptr());
                nft::nftnl_chain_nlmsg_build_payload(header, chain);
                nft::nftnl_chain_free(chain);
            }
            DumpKind::Rules => {
                let rule = nft::nftnl_rule_alloc();
                if rule.is_null() {
                    return Err((what, libc::ENOMEM));
                }
                nft::nftnl_rule_set_str(rule, nft::NFTNL_RULE_TABLE as u16, table_name.as_ptr());
                nft::nftnl_rule_nlmsg_build_payload(header, rule);
                nft::nftnl_rule_free(rule);
            }
        }
        (*header).nlmsg_len as usize
    };
    let request_bytes =
        // SAFETY: the buffer holds `len` initialized bytes written above.
        unsafe { std::slice::from_raw_parts(request.as_ptr().cast::<u8>(), len.min(4096)) };
    // SAFETY: send(2) of a live slice.
    if unsafe { libc::send(fd, request_bytes.as_ptr().cast(), request_bytes.len(), 0) } < 0 {
        return Err((what, errno()));
    }
    let mut out = Vec::new();
    let mut reply = vec![0u64; 16 * 1024];
    loop {
        // SAFETY: recv(2) into a live buffer of the size given.
        let n = unsafe { libc::recv(fd, reply.as_mut_ptr().cast(), reply.len() * 8, 0) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err((what, errno()));
        }
        // SAFETY: recv wrote n bytes into the buffer.
        let bytes = unsafe { std::slice::from_raw_parts(reply.as_ptr().cast::<u8>(), n as usize) };
        if bytes.is_empty() {
            return Err((what, libc::EPROTO));
        }
        for (kind, _, _, message) in messages(bytes) {
            match kind {
                k if k == libc::NLMSG_DONE as u16 => return Ok(out),
                k if k == libc::NLMSG_ERROR as u16 => {
                    if let Some((_, e)) = first_error(message)
                        && e != 0
                    {
                        return Err((what, e));
                    }
                }
                k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE => {
                    out.push(render_rule(message).map_err(|_| (what.clone(), libc::EPROTO))?);
                }
                k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN => {
                    out.push(render_chain(message).map_err(|_| (what.clone(), libc::EPROTO))?);
                }
                _ => {}
            }
        }
    }
}

/// Gives a named set its flags (`timeout`, `interval`), which the `nftnl`
/// crate's constructor does not set.
pub(crate) fn set_flags<K>(set: &nftnl::set::Set<'_, K>, flags: u32) {
    // SAFETY: the set is a live nftnl_set the crate allocated; setting a
    // u32 attribute copies it.
    unsafe {
        nftnl_sys::nftnl_set_set_u32(
            set.as_ptr().as_ptr(),
            nftnl_sys::NFTNL_SET_FLAGS as u16,
            flags,
        );
    }
}

/// A `lookup` expression of register 1 in a set, with its flags (0)
/// written out as the kernel reports them, so the rules read back equal
/// the batch's.
pub(crate) struct SetLookup {
    name: std::ffi::CString,
    id: u32,
}

impl SetLookup {
    pub(crate) fn new<K>(set: &nftnl::set::Set<'_, K>) -> Self {
        Self {
            name: set.get_name().to_owned(),
            id: set.get_id(),
        }
    }
}

impl nftnl::expr::Expression for SetLookup {
    fn to_expr(&self, _rule: &nftnl::Rule<'_>) -> std::ptr::NonNull<nftnl_sys::nftnl_expr> {
        // SAFETY: a new expression, its attributes set from values we own
        // (libnftnl copies the string); a failed allocation aborts, as the
        // nftnl crate's own expressions do.
        unsafe {
            let Some(expr) =
                std::ptr::NonNull::new(nftnl_sys::nftnl_expr_alloc(c"lookup".as_ptr()))
            else {
                std::process::abort();
            };
            let e = expr.as_ptr();
            nftnl_sys::nftnl_expr_set_u32(
                e,
                nftnl_sys::NFTNL_EXPR_LOOKUP_SREG as u16,
                libc::NFT_REG_1 as u32,
            );
            nftnl_sys::nftnl_expr_set_str(
                e,
                nftnl_sys::NFTNL_EXPR_LOOKUP_SET as u16,
                self.name.as_ptr(),
            );
            nftnl_sys::nftnl_expr_set_u32(e, nftnl_sys::NFTNL_EXPR_LOOKUP_SET_ID as u16, self.id);
            nftnl_sys::nftnl_expr_set_u32(e, nftnl_sys::NFTNL_EXPR_LOOKUP_FLAGS as u16, 0);
            expr
        }
    }
}

/// A `log group N snaplen L` expression (nfnetlink_log), which the `nftnl`
/// crate lacks.
pub(crate) struct LogGroup {
    pub(crate) group: u16,
    pub(crate) snaplen: u32,
}

impl nftnl::expr::Expression for LogGroup {
    fn to_expr(&self, _rule: &nftnl::Rule<'_>) -> std::ptr::NonNull<nftnl_sys::nftnl_expr> {
        // SAFETY: as for SetLookup: a new expression, u16/u32 attributes
        // copied in.
        unsafe {
            let Some(expr) = std::ptr::NonNull::new(nftnl_sys::nftnl_expr_alloc(c"log".as_ptr()))
            else {
                std::process::abort();
            };
            let e = expr.as_ptr();
            nftnl_sys::nftnl_expr_set_u16(e, nftnl_sys::NFTNL_EXPR_LOG_GROUP as u16, self.group);
            nftnl_sys::nftnl_expr_set_u32(
                e,
                nftnl_sys::NFTNL_EXPR_LOG_SNAPLEN as u16,
                self.snaplen,
            );
            expr
        }
    }
}
