//! The escape suite: real attacks from inside a sandbox, each expected to
//! fail, most with a control showing the same attack works outside (where
//! that is safe to do on the host). It prints a table: case, expected,
//! observed in the sandbox, the control.
//!
//! One binary, `harness = false`: without arguments it is the suite (run
//! by `cargo test` and `cargo xtask escape`); with `--attack NAME [ARG]`
//! it is the attacker, run inside the sandbox (its directory is bound
//! read-only) and, for the controls, outside. Needs root, as CI has.
#![allow(unsafe_code)] // the attacker makes raw syscalls on purpose
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use sandbox_core::{Sandbox, Stdio};
use sandbox_policy::Policy;

/// What an attack observed: `Ok(evidence)` if it worked, `Err(why not)`.
type Attempt = Result<String, String>;

fn errno_text() -> String {
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

// ---------------------------------------------------------------- attacks

fn tiocsti(request: u64) -> Attempt {
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
    }
    .install()
    .map(|()| "the ruleset replaced".to_string())
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
fn attack(name: &str, arg: Option<&str>) -> Attempt {
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
        other => raw_syscall(other),
    }
}

// ------------------------------------------------------------------ suite

/// One row of the table.
struct Row {
    case: String,
    expected: &'static str,
    observed: String,
    control: String,
    escaped: bool,
}

struct Suite {
    exe: String,
    sandbox: Sandbox,
    rows: Vec<Row>,
}

/// A pseudo-terminal pair (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: posix_openpt/grantpt/unlockpt/ptsname on the fd just made;
    // ptsname's static buffer is copied before anything else runs.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt: {}", errno_text());
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(master)).to_owned();
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(slave >= 0, "open the pty: {}", errno_text());
        (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave))
    }
}

/// Runs `f` with fd 0 replaced by `fd` (this binary is single-threaded).
fn with_stdin<T>(fd: &OwnedFd, f: impl FnOnce() -> T) -> T {
    // SAFETY: dup/dup2 on fds this process owns; fd 0 is restored.
    unsafe {
        let saved = libc::dup(0);
        libc::dup2(fd.as_raw_fd(), 0);
        let result = f();
        libc::dup2(saved, 0);
        libc::close(saved);
        result
    }
}

impl Suite {
    fn inside(&self, name: &str, arg: Option<&str>, stdin: Stdio) -> Attempt {
        let mut cmd = self.sandbox.command(&self.exe);
        cmd.args(["--attack", name]).stdin(stdin);
        if let Some(arg) = arg {
            cmd.arg(arg);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("the sandbox failed: {e}"))?;
        parse(&out.stdout, &out.stderr)
    }

    fn outside(&self, name: &str, arg: Option<&str>) -> Attempt {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["--attack", name]);
        if let Some(arg) = arg {
            cmd.arg(arg);
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        parse(&out.stdout, &out.stderr)
    }

    /// A case: the attack inside must fail; the control (if any) outside
    /// should work, showing the attack is real.
    fn case(&mut self, name: &str, arg: Option<&str>, control: Control, stdin: Stdio) {
        let observed = self.inside(name, arg, stdin);
        let control = match control {
            Control::Same => match self.outside(name, arg) {
                Ok(evidence) => format!("works outside: {evidence}"),
                Err(e) => format!("fails outside too: {e}"),
            },
            Control::Other(arg) => match self.outside(name, Some(&arg)) {
                Ok(evidence) => format!("works outside: {evidence}"),
                Err(e) => format!("fails outside too: {e}"),
            },
            Control::None(why) => format!("no control: {why}"),
        };
        let case = match arg {
            Some(arg) => format!("{name} {arg}"),
            None => name.to_string(),
        };
        self.push(case, "refused", observed, control);
    }

    fn push(&mut self, case: String, expected: &'static str, observed: Attempt, control: String) {
        let (escaped, observed) = match observed {
            Ok(evidence) => (true, format!("ESCAPED: {evidence}")),
            Err(why) => (false, format!("{expected}: {why}")),
        };
        self.rows.push(Row {
            case,
            expected,
            observed,
            control,
            escaped,
        });
    }
}

enum Control {
    /// The same attack, outside.
    Same,
    /// The attack outside with this argument instead (another target).
    Other(String),
    /// None, and why.
    None(&'static str),
}

fn parse(stdout: &[u8], stderr: &[u8]) -> Attempt {
    let text = String::from_utf8_lossy(stdout).trim().to_string();
    if let Some(evidence) = text.strip_prefix("WORKED ") {
        Ok(evidence.to_string())
    } else if let Some(why) = text.strip_prefix("REFUSED ") {
        Err(why.to_string())
    } else {
        // The attacker could not even report (killed by seccomp, say).
        Err(format!(
            "no report ({})",
            String::from_utf8_lossy(stderr)
                .trim()
                .chars()
                .take(120)
                .collect::<String>()
        ))
    }
}

#[allow(clippy::unnecessary_cast)]
fn tiocsti_control(master: &OwnedFd, slave: &OwnedFd) -> String {
    // Root outside the sandbox pushing a byte into its own pty, then
    // reading it back from the master: the attack is real.
    let result = with_stdin(slave, || tiocsti(libc::TIOCSTI as u64));
    match result {
        Ok(_) => {
            rustix::fs::fcntl_setfl(master, rustix::fs::OFlags::NONBLOCK).ok();
            let mut buf = [0u8; 16];
            let echoed = rustix::io::read(master, &mut buf).unwrap_or(0);
            format!("works outside: the pty echoed {echoed} byte(s)")
        }
        Err(e) => format!("fails outside too: {e}"),
    }
}

/// The suite's network namespace: loopback up with 198.18.1.1 and
/// 169.254.169.254 on it, an HTTP server on port 80 of each.
fn make_world() {
    use std::io::{Read, Write};
    sandbox_net::unshare_network_namespace().unwrap();
    let rtnl = sandbox_net::Rtnetlink::open().unwrap();
    let mut setup = sandbox_net::Requests::new();
    setup
        .set_link(
            sandbox_net::Link::Name("lo"),
            sandbox_net::LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    for addr in ["198.18.1.1", "169.254.169.254"] {
        setup
            .add_address(sandbox_net::Link::Index(1), addr.parse().unwrap(), 32)
            .unwrap();
    }
    rtnl.execute(&setup).unwrap();
    for addr in ["198.18.1.1:80", "169.254.169.254:80"] {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(stream, "HTTP/1.0 200 OK\r\n\r\nserved by {addr}");
            }
        });
    }
}

/// A policy with tight limits, for the resource attacks.
fn limited(extra: &str) -> Sandbox {
    Sandbox::new(Policy::from_toml_str(&format!("[resources]\n{extra}")).unwrap()).unwrap()
}

/// Attacks on the setup: a symlink planted in a bind source, walked by a
/// mount target.
fn setup_cases(suite: &mut Suite) {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
    std::fs::create_dir_all(dir.path().join("real/sub")).unwrap();
    let policy = |target: &str| {
        Policy::from_toml_str(&format!(
            "[filesystem]\nbinds = [{{ source = \"{}\", target = \"/work\" }}]\n\
             tmpfs = [{{ target = \"/tmp\" }}, {{ target = \"{target}\" }}]\n",
            dir.path().display()
        ))
        .unwrap()
    };
    // A tmpfs over /work/link/sub would land on the host's /etc/sub if the
    // symlink were followed.
    let attack = Sandbox::new(policy("/work/link/sub"))
        .unwrap()
        .command("true")
        .output();
    let observed = match attack {
        Err(e) => Err(e.to_string()),
        Ok(out) => Ok(format!("the run started: {}", out.status)),
    };
    let control = match Sandbox::new(policy("/work/real/sub"))
        .unwrap()
        .command("true")
        .output()
    {
        Ok(out) if out.success() => "the same through a real directory mounts".to_string(),
        other => format!("the real directory failed too: {other:?}"),
    };
    suite.push(
        "symlink planted in a bind source, under a mount target".into(),
        "refused",
        observed,
        control,
    );
}

fn resource_cases(suite: &mut Suite) {
    // A fork bomb: the pids limit holds it, the wall-time limit ends it,
    // and the host still starts processes meanwhile.
    let bomb = limited("pids = 64\nwall_time = \"3s\"\n");
    let started = Instant::now();
    let child = bomb
        .command("sh")
        .args(["-c", "b() { b | b & }; b; sleep 10"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let probe = Instant::now();
    let host_ok = Command::new("true").status().is_ok_and(|s| s.success());
    let host_ms = probe.elapsed().as_millis();
    let out = child.wait().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let observed = if out.pids_limit_hit && host_ok && elapsed < 10.0 {
        Err(format!(
            "pids limit hit (reported), the run over after {elapsed:.1} s{}; the host started a process in {host_ms} ms meanwhile",
            if out.timed_out {
                ", killed at the wall-time limit"
            } else {
                ", the bomb starved"
            }
        ))
    } else {
        Ok(format!(
            "pids_limit_hit {}, timed_out {}, host spawn ok {host_ok}",
            out.pids_limit_hit, out.timed_out
        ))
    };
    suite.push(
        "fork bomb".into(),
        "held",
        observed,
        "no control: it would take the host down".into(),
    );

    // A memory hog: the OOM killer, reported as such.
    let hog = limited("memory = \"64MiB\"\n");
    let out = hog
        .command("sh")
        .args(["-c", "head -c 1000000000 /dev/zero | tail > /dev/null"])
        .output()
        .unwrap();
    let observed = if out.oom_killed {
        Err(format!(
            "OOM-killed and reported; peak {} MiB",
            out.peak_memory.unwrap_or(0) >> 20
        ))
    } else {
        Ok(format!("not killed: {}", out.status))
    };
    suite.push(
        "memory hog (64 MiB limit)".into(),
        "held",
        observed,
        "no control: it would press the host".into(),
    );

    // 1 GiB of output: capped, flagged, and the command never blocked.
    let chatty = limited("max_output_bytes = \"1MiB\"\n");
    let started = Instant::now();
    let out = chatty
        .command("sh")
        .args(["-c", "head -c 1073741824 /dev/zero; echo done >&2"])
        .output()
        .unwrap();
    let observed = if out.stdout_truncated && out.stdout.len() == 1 << 20 && out.success() {
        Err(format!(
            "kept 1 MiB of 1 GiB, flagged truncated; the command finished in {:.1} s",
            started.elapsed().as_secs_f64()
        ))
    } else {
        Ok(format!(
            "kept {} bytes, truncated {}, {}",
            out.stdout.len(),
            out.stdout_truncated,
            out.status
        ))
    };
    suite.push(
        "1 GiB of output".into(),
        "capped",
        observed,
        "no control".into(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--attack") {
        let name = args.get(2).map_or("", String::as_str);
        match attack(name, args.get(3).map(String::as_str)) {
            Ok(evidence) => println!("WORKED {evidence}"),
            Err(why) => println!("REFUSED {why}"),
        }
        return;
    }
    if !rustix::process::geteuid().is_root() {
        println!("escape suite: skipped (needs root, as CI has)");
        return;
    }
    let started = Instant::now();
    // Everything runs in a network namespace of the suite's own: web
    // servers on 198.18.1.1 and on the metadata address, on its loopback.
    make_world();
    let exe = std::env::current_exe().unwrap().display().to_string();
    let dir = std::path::Path::new(&exe)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let policy = Policy::from_toml_str(&format!(
        "[filesystem]\nbinds = [{{ source = \"{dir}\", target = \"{dir}\" }}]\n\
         [resources]\nmax_file_size = \"4MiB\"\n"
    ))
    .unwrap();
    let sandbox = Sandbox::new(policy).unwrap();
    assert!(sandbox.report().fully_enforced(), "{}", sandbox.report());
    let mut suite = Suite {
        exe,
        sandbox,
        rows: Vec::new(),
    };

    // The terminal: a pty as the sandbox's stdin.
    let (master, slave) = pty();
    for name in ["tiocsti", "tiocsti-high-bits", "tioclinux"] {
        let observed = with_stdin(&slave, || suite.inside(name, None, Stdio::Inherit));
        let control = if name == "tiocsti" {
            tiocsti_control(&master, &slave)
        } else {
            "no control: same request as tiocsti".to_string()
        };
        suite.push(
            format!("{name} (stdin is a pty)"),
            "refused",
            observed,
            control,
        );
    }
    suite.case(
        "dev-tty",
        None,
        Control::None("the suite has no controlling tty either"),
        Stdio::Null,
    );

    // What the sandbox inherits.
    suite.case(
        "leaked-fds",
        None,
        Control::None("cargo's test runner leaks fds by design"),
        Stdio::Null,
    );
    suite.case(
        "cwd-outside-root",
        None,
        Control::None("outside, / is the host's"),
        Stdio::Null,
    );
    // SAFETY: setting a variable before any thread starts.
    unsafe { std::env::set_var("ESCAPE_SUITE_SECRET", "hunter2") };
    suite.case(
        "environ",
        Some("ESCAPE_SUITE_SECRET"),
        Control::Same,
        Stdio::Null,
    );

    // The supervisor's own binary (PID 1 is a fork of it: runc's
    // CVE-2019-5736 class).
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let victim_pid = victim.id().to_string();
    suite.case(
        "read",
        Some("/proc/1/exe"),
        Control::Other(format!("/proc/{victim_pid}/exe")),
        Stdio::Null,
    );
    setup_cases(&mut suite);

    // Writes that would change the host.
    for path in [
        "/proc/1/exe",
        "/proc/sys/kernel/core_pattern",
        "/proc/sysrq-trigger",
        "/sys/kernel/uevent_helper",
        "/sys/fs/cgroup/cgroup.procs",
        "/etc/passwd",
        "/usr/bin/sh",
    ] {
        suite.case(
            "write",
            Some(path),
            Control::None("it would change the host"),
            Stdio::Null,
        );
    }

    // Privilege.
    let scratch = tempfile::tempdir().unwrap();
    let scratch_path = scratch.path().display().to_string();
    suite.case(
        "mount",
        Some("/tmp"),
        Control::Other(scratch_path),
        Stdio::Null,
    );
    suite.case("unshare-user", None, Control::Same, Stdio::Null);
    suite.case("unshare-mount", None, Control::Same, Stdio::Null);
    suite.case(
        "setuid",
        None,
        Control::None("root outside is already privileged"),
        Stdio::Null,
    );
    suite.case(
        "ptrace",
        Some("1"),
        Control::Other(victim_pid.clone()),
        Stdio::Null,
    );
    suite.case(
        "process_vm_readv",
        Some("1"),
        Control::Other(victim_pid),
        Stdio::Null,
    );
    let _ = victim.kill();
    let _ = victim.wait();
    for name in [
        "keyctl",
        "add_key",
        "bpf",
        "userfaultfd",
        "perf_event_open",
        "io_uring_setup",
    ] {
        suite.case(name, None, Control::Same, Stdio::Null);
    }
    suite.case("af_packet", None, Control::Same, Stdio::Null);
    suite.case("raw_ip", None, Control::Same, Stdio::Null);

    // The network, with allowlisted egress to port 80 anywhere (metadata
    // stays blocked, as the policy's default).
    let networked = Sandbox::new(
        Policy::from_toml_str(&format!(
            "[filesystem]\nbinds = [{{ source = \"{dir}\", target = \"{dir}\" }}]\n\
             [network]\nmode = \"allowlist\"\nallow = [\"0.0.0.0/0:80/tcp\", \"[::/0]:80/tcp\"]\n"
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(
        networked.report().network.enforced,
        "{}",
        networked.report()
    );
    let offline = std::mem::replace(&mut suite.sandbox, networked);
    let reached = suite.inside("http", Some("198.18.1.1"), Stdio::Null);
    suite.rows.push(Row {
        case: "http 198.18.1.1 (allowed: the control)".into(),
        expected: "reached",
        observed: match &reached {
            Ok(evidence) => format!("reached: {evidence}"),
            Err(why) => format!("NOT REACHED: {why}"),
        },
        control: "-".into(),
        escaped: reached.is_err(),
    });
    for form in [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "169.254.43518",
    ] {
        suite.case("http", Some(form), Control::Same, Stdio::Null);
    }
    suite.case(
        "nft-replace",
        None,
        Control::Other("own-netns".into()),
        Stdio::Null,
    );
    suite.case(
        "link-down",
        None,
        Control::Other("own-netns".into()),
        Stdio::Null,
    );
    suite.case("af_packet", None, Control::Same, Stdio::Null);
    suite.sandbox = offline;

    // Resources.
    suite.case(
        "big-file",
        Some("8388608"),
        Control::None("no limit outside"),
        Stdio::Null,
    );
    resource_cases(&mut suite);

    // The table.
    println!(
        "\nescape suite: {} cases in {:.1} s\n",
        suite.rows.len(),
        started.elapsed().as_secs_f64()
    );
    println!("| case | expected | observed in the sandbox | control |");
    println!("|---|---|---|---|");
    for row in &suite.rows {
        println!(
            "| {} | {} | {} | {} |",
            row.case,
            row.expected,
            row.observed.replace('|', "/"),
            row.control.replace('|', "/")
        );
    }
    let escaped: Vec<&Row> = suite.rows.iter().filter(|r| r.escaped).collect();
    if !escaped.is_empty() {
        for row in escaped {
            eprintln!("ESCAPE: {}: {}", row.case, row.observed);
        }
        std::process::exit(1);
    }
    println!("every attack refused");
}
