//! The attacks, run inside the sandbox as `escape --attack NAME [ARG]`
//! (and outside, for the controls): each prints `WORKED <evidence>` or
//! `REFUSED <why>`.

use std::ffi::CString;
use std::process::Command;
use std::time::Duration;

pub(crate) type Attempt = Result<String, String>;

pub(crate) fn errno_text() -> String {
    std::io::Error::last_os_error().to_string()
}

/// `ret < 0` → `Err(errno)`, else `Ok(what)`.
fn judge(ret: i64, what: &str) -> Attempt {
    if ret < 0 {
        Err(errno_text())
    } else {
        Ok(format!("{what} (returned {ret})"))
    }
}

pub(crate) fn tiocsti(request: u64) -> Attempt {
    let byte = b'x';
    // SAFETY: ioctl on fd 0 with a pointer to one byte that outlives it.
    let ret = unsafe { libc::syscall(libc::SYS_ioctl, 0, request, &byte as *const u8) };
    judge(ret, "a byte pushed into the terminal's input")
}

fn open_dev_tty() -> Attempt {
    let path = CString::new("/dev/tty").unwrap();
    // SAFETY: open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    judge(fd.into(), "opened the controlling terminal")
}

fn leaked_fds() -> Attempt {
    let mut extra = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let fd: i32 = entry.file_name().to_string_lossy().parse().unwrap_or(-1);
        let target = std::fs::read_link(entry.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        // 0-2 are stdio; the directory being listed is read_dir's own.
        if fd > 2 && !target.ends_with("/fd") && !target.starts_with("/proc/") {
            extra.push(format!("{fd} -> {target}"));
        }
    }
    if extra.is_empty() {
        Err("only stdio (and the listing's own fd) open".into())
    } else {
        Ok(format!("inherited: {}", extra.join(", ")))
    }
}

fn cwd_outside_root() -> Attempt {
    // runc CVE-2024-21626: a cwd (or fd) left outside the new root.
    let cwd = std::fs::read_link("/proc/self/cwd").map_err(|e| e.to_string())?;
    let up = std::fs::canonicalize("/..").map_err(|e| e.to_string())?;
    if cwd.starts_with("/")
        && !cwd.to_string_lossy().contains("(unreachable)")
        && up == std::path::Path::new("/")
    {
        Err(format!(
            "cwd is {} inside the root; /.. is /",
            cwd.display()
        ))
    } else {
        Ok(format!("cwd {} / parent {}", cwd.display(), up.display()))
    }
}

fn write_path(path: &str) -> Attempt {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            use std::io::Write;
            // Never reached in the sandbox; nothing harmful is written.
            match f.write_all(b"") {
                Ok(()) => Ok(format!("{path} opened for writing")),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

fn read_path(path: &str) -> Attempt {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut head = [0u8; 4];
    f.read_exact(&mut head).map_err(|e| e.to_string())?;
    Ok(format!("{path} readable (starts {head:02x?})"))
}

fn mount_tmpfs(target: &str) -> Attempt {
    let (src, fstype, dir) = (
        CString::new("none").unwrap(),
        CString::new("tmpfs").unwrap(),
        CString::new(target).unwrap(),
    );
    // SAFETY: mount(2) with NUL-terminated strings and no data.
    let ret = unsafe {
        libc::mount(
            src.as_ptr(),
            dir.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        // SAFETY: umount2 of the path just mounted.
        unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
    }
    judge(ret.into(), "mounted a tmpfs")
}

fn unshare(flags: i32) -> Attempt {
    // SAFETY: unshare(2) changes only this (single-threaded) process.
    judge(unsafe { libc::unshare(flags) }.into(), "unshared")
}

fn ptrace_attach(pid: i32) -> Attempt {
    // SAFETY: ptrace(PTRACE_ATTACH); detached again if it worked.
    let ret = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
    if ret == 0 {
        // SAFETY: detach from the tracee just attached.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
    }
    judge(ret, &format!("attached to pid {pid}"))
}

fn process_vm_readv(pid: i32) -> Attempt {
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Any address: the permission check comes first.
    let remote = libc::iovec {
        iov_base: 0x400000 as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: one local iovec over `buf`; the remote one is only read.
    let ret = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    match ret {
        // EFAULT: allowed, the address just was not mapped.
        -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT) => Ok(format!(
            "pid {pid}'s memory readable (EFAULT at the probe address)"
        )),
        ret => judge(ret as i64, &format!("read pid {pid}'s memory")),
    }
}

fn raw_syscall(name: &str) -> Attempt {
    // SAFETY: each call passes arguments that make the kernel either refuse
    // or create one object (a key, a map, an fd) that is closed or left to
    // die with the process.
    let ret = unsafe {
        match name {
            "keyctl" => libc::syscall(libc::SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0),
            "add_key" => {
                let (t, d, p) = (c"user", c"escape-suite", c"x");
                libc::syscall(libc::SYS_add_key, t.as_ptr(), d.as_ptr(), p.as_ptr(), 1, -3)
            }
            "bpf" => {
                // BPF_MAP_CREATE, an array of 1 × 4-byte values.
                let mut attr = [0u32; 32];
                attr[0] = 2; // BPF_MAP_TYPE_ARRAY
                attr[1] = 4;
                attr[2] = 4;
                attr[3] = 1;
                libc::syscall(
                    libc::SYS_bpf,
                    0,
                    attr.as_ptr(),
                    std::mem::size_of_val(&attr),
                )
            }
            "userfaultfd" => libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC),
            "perf_event_open" => {
                // A software clock counter on this process.
                let mut attr = [0u64; 16];
                attr[0] = 1 | (128u64 << 32); // type SOFTWARE, size 128
                libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0)
            }
            "io_uring_setup" => {
                let mut params = [0u32; 30];
                libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr())
            }
            _ => return Err(format!("unknown syscall {name}")),
        }
    };
    judge(ret, &format!("{name} worked"))
}

fn raw_socket(family: i32, kind: i32, protocol: i32) -> Attempt {
    // SAFETY: socket(2); the fd is closed at once.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd >= 0 {
        // SAFETY: closing the fd just made.
        unsafe { libc::close(fd) };
    }
    judge(fd.into(), "raw socket opened")
}

fn setuid_binary() -> Attempt {
    // A setuid-root program (util-linux mount) asked to do what only root
    // may: with no_new_privs it runs as the caller.
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "none", "/tmp"])
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    if out.status.success() {
        Ok("setuid mount mounted a tmpfs".into())
    } else {
        Err(err)
    }
}

fn environ_leak(marker: &str) -> Attempt {
    for path in ["/proc/1/environ", "/proc/self/environ"] {
        if let Ok(env) = std::fs::read(path)
            && String::from_utf8_lossy(&env).contains(marker)
        {
            return Ok(format!("{marker} visible in {path}"));
        }
    }
    Err(format!(
        "{marker} in neither /proc/1/environ nor /proc/self/environ"
    ))
}

fn big_file(bytes: u64) -> Attempt {
    use std::io::Write;
    // The limit's signal would kill the attacker before it reports: take
    // the EFBIG instead.
    // SAFETY: setting a disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let mut f = std::fs::File::create("/tmp/big").map_err(|e| e.to_string())?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < bytes {
        match f.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) => return Err(format!("{e} after {written} bytes")),
        }
    }
    Ok(format!("{written} bytes written"))
}

/// A TCP connection to `host` (any form the libc resolves: dotted,
/// decimal, hex, octal, IPv4-mapped IPv6) port 80, and a GET.
fn http_get(host: &str) -> Attempt {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> = (host, 80)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {host}: {e}"))?
        .collect();
    let addr = *addrs.first().ok_or("no address")?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    match reply.lines().last() {
        Some(body) if reply.starts_with("HTTP/1.0 200") => Ok(format!("{addr} answered {body:?}")),
        _ => Err(format!("{addr}: no answer")),
    }
}

/// Replaces the namespace's nftables ruleset (with an empty one); with
/// `own-netns`, in a new network namespace (the control).
fn nft_replace(own_netns: bool) -> Attempt {
    if own_netns {
        unshare(libc::CLONE_NEWNET)?;
    }
    sandbox_net::Ruleset {
        output: Vec::new(),
        input: Vec::new(),
        sets: Vec::new(),
        cidr_sets: Vec::new(),
    }
    .install()
    .map(|()| "the ruleset replaced".to_string())
    .map_err(|e| e.to_string())
}

/// Adds an address to the first host-name rule's pin set (what a DNS
/// answer would have pinned), from inside; the control makes the same
/// ruleset in a new network namespace and adds it there.
fn pin_add(own_netns: bool) -> Attempt {
    if own_netns {
        unshare(libc::CLONE_NEWNET)?;
        let network = sandbox_policy::Policy::from_toml_str(
            "[network]\nmode = \"allowlist\"\nallow = [\"pinned.test:443/tcp\"]\n",
        )
        .map_err(|e| e.to_string())?
        .network;
        sandbox_net::Ruleset::from_network(&network, &sandbox_net::Gateway::default())
            .install()
            .map_err(|e| e.to_string())?;
    }
    sandbox_net::pin_batch(&[sandbox_net::PinUpdate {
        set: sandbox_net::PinSet { rule: 0, v6: false },
        addr: "198.18.2.2".parse().map_err(|_| "address".to_string())?,
        timeout: Some(std::time::Duration::from_secs(600)),
        replace: false,
    }])
    .send()
    .map(|()| "198.18.2.2 pinned".to_string())
    .map_err(|e| e.to_string())
}

/// Takes a link down over rtnetlink (`tap0`, or `lo` in a new network
/// namespace for the control).
fn link_down(own_netns: bool) -> Attempt {
    let name = if own_netns {
        unshare(libc::CLONE_NEWNET)?;
        "lo"
    } else {
        "tap0"
    };
    let rtnl = sandbox_net::Rtnetlink::open().map_err(|e| e.to_string())?;
    let mut down = sandbox_net::Requests::new();
    down.set_link(
        sandbox_net::Link::Name(name),
        sandbox_net::LinkChange {
            up: Some(false),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    rtnl.execute(&down)
        .map(|()| format!("{name} taken down"))
        .map_err(|e| e.to_string())
}

// The ioctl request constants' type differs between targets.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn attack(name: &str, arg: Option<&str>) -> Attempt {
    let pid = || arg.and_then(|a| a.parse().ok()).unwrap_or(1);
    match name {
        "tiocsti" => tiocsti(libc::TIOCSTI as u64),
        "tiocsti-high-bits" => tiocsti(0xffff_ffff_0000_0000 | libc::TIOCSTI as u64),
        "tioclinux" => tiocsti(libc::TIOCLINUX as u64),
        "dev-tty" => open_dev_tty(),
        "leaked-fds" => leaked_fds(),
        "cwd-outside-root" => cwd_outside_root(),
        "write" => write_path(arg.unwrap_or("/proc/1/exe")),
        "read" => read_path(arg.unwrap_or("/proc/1/exe")),
        "mount" => mount_tmpfs(arg.unwrap_or("/tmp")),
        "unshare-user" => unshare(libc::CLONE_NEWUSER),
        "unshare-mount" => unshare(libc::CLONE_NEWNS),
        "ptrace" => ptrace_attach(pid()),
        "process_vm_readv" => process_vm_readv(pid()),
        "af_packet" => raw_socket(libc::AF_PACKET, libc::SOCK_RAW, 0x0300),
        "raw_ip" => raw_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP),
        "setuid" => setuid_binary(),
        "environ" => environ_leak(arg.unwrap_or("ESCAPE_SUITE_SECRET")),
        "big-file" => big_file(arg.and_then(|a| a.parse().ok()).unwrap_or(8 << 20)),
        "http" => http_get(arg.unwrap_or("169.254.169.254")),
        "nft-replace" => nft_replace(arg == Some("own-netns")),
        "link-down" => link_down(arg == Some("own-netns")),
        "pin-add" => pin_add(arg == Some("own-netns")),
        other => crate::hardening::attack(other, arg)
            .or_else(|| crate::quotas::attack(other, arg))
            .unwrap_or_else(|| raw_syscall(other)),
    }
}
