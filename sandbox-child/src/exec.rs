//! The child's steps, run one by one with raw syscalls on buffers the
//! plan owns (mount steps in `mounts.rs`).

use std::cell::Cell;
use std::ffi::{c_char, c_int};

use crate::errno;
use crate::mounts::mount_step;
use crate::step::{NO_FD, Reg, Step};

#[repr(C, packed)]
struct LandlockPathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// Checks a syscall's return value.
pub(crate) fn check(ret: impl Into<i64>) -> Result<i64, c_int> {
    let ret = ret.into();
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

pub(crate) fn reg(registers: &[Cell<c_int>], r: Reg) -> c_int {
    registers.get(r).map_or(NO_FD, Cell::get)
}

pub(crate) fn set_reg(registers: &[Cell<c_int>], r: Reg, fd: i64) {
    if let Some(cell) = registers.get(r) {
        cell.set(fd as c_int);
    }
}

pub(crate) fn close_reg(registers: &[Cell<c_int>], r: Reg) {
    let fd = reg(registers, r);
    if fd >= 0 {
        // SAFETY: close(2) of an fd this plan opened.
        unsafe { libc::close(fd) };
        set_reg(registers, r, i64::from(NO_FD));
    }
}

#[allow(clippy::too_many_lines)]
pub(crate) fn run_step(step: &Step, registers: &[Cell<c_int>]) -> Result<(), c_int> {
    // SAFETY (for the whole match): every call is a thin syscall wrapper
    // given NUL-terminated strings and buffers the plan owns, or live
    // locals; fds come from the registers this plan filled.
    unsafe {
        match step {
            Step::CloseFdsExcept(keep) => {
                let mut low: u32 = 3;
                for &fd in keep {
                    let fd = fd as u32;
                    if fd > low {
                        check(libc::syscall(libc::SYS_close_range, low, fd - 1, 0))?;
                    }
                    low = fd + 1;
                }
                check(libc::syscall(libc::SYS_close_range, low, u32::MAX, 0))?;
            }
            Step::ParentDeathSignal => {
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            }
            Step::WaitForParent(fd) => {
                let mut byte = 0u8;
                loop {
                    let n = libc::read(*fd, (&mut byte as *mut u8).cast(), 1);
                    if n == 1 {
                        break;
                    }
                    if n < 0 && errno() == libc::EINTR {
                        continue;
                    }
                    return Err(libc::ECANCELED);
                }
            }
            Step::CheckParentAlive(fd) => {
                let mut poll = libc::pollfd {
                    fd: *fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                check(libc::poll(&mut poll, 1, 0))?;
                if poll.revents & libc::POLLHUP != 0 {
                    return Err(libc::ECANCELED);
                }
            }
            Step::UnshareCgroup => {
                check(libc::unshare(libc::CLONE_NEWCGROUP))?;
            }
            Step::Unshare(flags) => {
                check(libc::unshare(*flags))?;
            }
            Step::Mount {
                source,
                target,
                fstype,
                flags,
            } => {
                check(libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                    *flags as libc::c_ulong,
                    std::ptr::null(),
                ))?;
            }
            Step::OpenFile { path, flags, out } => {
                let fd = check(libc::open(path.as_ptr(), *flags | libc::O_CLOEXEC))?;
                set_reg(registers, *out, fd);
            }
            Step::MakeMountsPrivate => {
                check(libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
            }
            Step::OpenTree { .. }
            | Step::OpenDir { .. }
            | Step::SetMountAttrs { .. }
            | Step::NewFilesystem { .. }
            | Step::AttachAt { .. }
            | Step::Resolve { .. }
            | Step::MoveMount { .. }
            | Step::Mask { .. }
            | Step::Symlink { .. }
            | Step::WriteFile { .. }
            | Step::OpenTreeAt { .. }
            | Step::Unlink { .. }
            | Step::Close(_)
            | Step::PivotRoot { .. }
            | Step::RootReadOnly => mount_step(step, registers)?,
            Step::HideCallerIdentity {
                arg_start,
                arg_len,
                name,
            } => {
                // SAFETY (beyond the block's): the range is this process's
                // own copy of the argument area at the top of its initial
                // stack, as the kernel reports it; nothing in this process
                // reads it again.
                if *arg_start != 0 {
                    std::ptr::write_bytes(*arg_start as *mut u8, 0, *arg_len);
                }
                check(libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0))?;
            }
            Step::SetHostname(name) => {
                check(libc::sethostname(name.as_ptr(), name.as_bytes().len()))?;
            }
            Step::LoopbackUp => {
                let sock = check(libc::socket(
                    libc::AF_INET,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    0,
                ))? as c_int;
                let mut req: libc::ifreq = std::mem::zeroed();
                req.ifr_name[0] = b'l' as c_char;
                req.ifr_name[1] = b'o' as c_char;
                let result =
                    check(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req)).and_then(|_| {
                        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                        check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &req))
                    });
                libc::close(sock);
                result?;
            }
            Step::NftBatch { bytes, acks } => {
                let fd = check(libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_NETFILTER,
                ))? as c_int;
                let sent = crate::net::send_batch_and_check_acks(
                    std::os::fd::BorrowedFd::borrow_raw(fd),
                    bytes,
                    *acks,
                );
                libc::close(fd);
                sent.map_err(|(_, e)| e)?;
            }
            Step::CreateTap { name, index, out } => {
                let tun = check(libc::open(
                    c"/dev/net/tun".as_ptr(),
                    libc::O_RDWR | libc::O_CLOEXEC,
                ))? as c_int;
                set_reg(registers, *out, i64::from(tun));
                let mut request: libc::ifreq = std::mem::zeroed();
                for (slot, byte) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
                    *slot = *byte as c_char;
                }
                // With a virtio_net_hdr, so that the forwarder can offload
                // checksums and segmentation (it enables them).
                request.ifr_ifru.ifru_flags =
                    (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
                check(libc::ioctl(tun, libc::TUNSETIFF as _, &mut request))?;
                check(libc::ioctl(tun, libc::SIOCGIFINDEX as _, &mut request)).or_else(|_| {
                    // SIOCGIFINDEX wants a socket on some kernels.
                    let sock = check(libc::socket(
                        libc::AF_INET,
                        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                        0,
                    ))? as c_int;
                    let r = check(libc::ioctl(sock, libc::SIOCGIFINDEX as _, &mut request));
                    libc::close(sock);
                    r
                })?;
                if request.ifr_ifru.ifru_ifindex != *index {
                    return Err(libc::ENXIO);
                }
            }
            Step::WriteSetting { path, contents } => {
                let fd =
                    check(libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC))? as c_int;
                let written = libc::write(fd, contents.as_ptr().cast(), contents.len());
                let error = errno();
                libc::close(fd);
                if written < 0 {
                    return Err(error);
                }
                if written as usize != contents.len() {
                    return Err(libc::EIO);
                }
            }
            Step::Netlink { bytes, count } => {
                let fd = check(libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_ROUTE,
                ))? as c_int;
                let sent = crate::net::send_each_and_check_acks(
                    std::os::fd::BorrowedFd::borrow_raw(fd),
                    bytes,
                    *count,
                );
                libc::close(fd);
                sent.map_err(|(_, e)| e)?;
            }
            Step::SendFd { socket, reg: r } => {
                crate::net::send_fd_raw(*socket, reg(registers, *r))?;
            }
            Step::DropBoundingAndAmbient => {
                for cap in 0..64 {
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 {
                        if errno() == libc::EINVAL {
                            break;
                        }
                        return Err(errno());
                    }
                }
                check(libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0,
                ))?;
                // SECBIT_NOROOT, SECBIT_NO_CAP_AMBIENT_RAISE and
                // SECBIT_KEEP_CAPS_LOCKED, each locked: exec as uid 0
                // grants nothing, ever again.
                const SECURE_BITS: libc::c_ulong =
                    (1 << 0) | (1 << 1) | (1 << 5) | (1 << 6) | (1 << 7);
                check(libc::prctl(libc::PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0))?;
            }
            Step::ClearGroups => {
                check(libc::syscall(
                    libc::SYS_setgroups,
                    0,
                    std::ptr::null::<libc::gid_t>(),
                ))?;
            }
            Step::SetGid(gid) => {
                check(libc::syscall(libc::SYS_setresgid, *gid, *gid, *gid))?;
            }
            Step::SetUid(uid) => {
                check(libc::syscall(libc::SYS_setresuid, *uid, *uid, *uid))?;
            }
            Step::ClearCapabilities => {
                #[repr(C)]
                struct Header {
                    version: u32,
                    pid: c_int,
                }
                #[repr(C)]
                struct Data {
                    effective: u32,
                    permitted: u32,
                    inheritable: u32,
                }
                let header = Header {
                    version: 0x2008_0522,
                    pid: 0,
                };
                let data = [
                    Data {
                        effective: 0,
                        permitted: 0,
                        inheritable: 0,
                    },
                    Data {
                        effective: 0,
                        permitted: 0,
                        inheritable: 0,
                    },
                ];
                check(libc::syscall(
                    libc::SYS_capset,
                    &header as *const Header,
                    data.as_ptr(),
                ))?;
            }
            Step::NoNewPrivs => {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            Step::ResetSignals => {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                check(libc::syscall(
                    libc::SYS_rt_sigprocmask,
                    libc::SIG_SETMASK,
                    &set as *const libc::sigset_t,
                    std::ptr::null_mut::<libc::sigset_t>(),
                    8usize,
                ))?;
                // The kernel's struct sigaction (x86_64's layout):
                // handler, flags, restorer, mask.
                #[repr(C)]
                struct KernelSigaction {
                    handler: usize,
                    flags: libc::c_ulong,
                    restorer: usize,
                    mask: u64,
                }
                let default = KernelSigaction {
                    handler: libc::SIG_DFL,
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                };
                for sig in 1..=64 {
                    if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                        continue;
                    }
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        &default as *const KernelSigaction,
                        std::ptr::null_mut::<KernelSigaction>(),
                        8usize,
                    );
                }
            }
            Step::NewSession => {
                check(libc::setsid())?;
            }
            Step::Stdio(fds) => {
                for (target, &fd) in fds.iter().enumerate() {
                    if fd != NO_FD {
                        check(libc::dup2(fd, target as c_int))?;
                    }
                }
            }
            Step::CloseOnExecAbove2 => {
                const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
                check(libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    CLOSE_RANGE_CLOEXEC,
                ))?;
            }
            Step::Chdir(path) => {
                check(libc::chdir(path.as_ptr()))?;
            }
            Step::Rlimit {
                resource,
                soft,
                hard,
            } => {
                let limit = libc::rlimit {
                    rlim_cur: *soft,
                    rlim_max: *hard,
                };
                check(libc::setrlimit(*resource, &limit))?;
            }
            Step::Landlock {
                handled,
                attr_size,
                rules,
            } => {
                let ruleset = check(libc::syscall(
                    libc::SYS_landlock_create_ruleset,
                    handled.as_ptr(),
                    *attr_size,
                    0u32,
                ))? as c_int;
                let result = (|| {
                    for (path, access) in rules {
                        let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                        if fd < 0 {
                            if errno() == libc::ENOENT {
                                continue;
                            }
                            return Err(errno());
                        }
                        let rule = LandlockPathBeneath {
                            allowed_access: *access,
                            parent_fd: fd,
                        };
                        const LANDLOCK_RULE_PATH_BENEATH: c_int = 1;
                        let added = libc::syscall(
                            libc::SYS_landlock_add_rule,
                            ruleset,
                            LANDLOCK_RULE_PATH_BENEATH,
                            &rule as *const LandlockPathBeneath,
                            0u32,
                        );
                        let e = errno();
                        libc::close(fd);
                        if added < 0 {
                            return Err(e);
                        }
                    }
                    check(libc::syscall(
                        libc::SYS_landlock_restrict_self,
                        ruleset,
                        0u32,
                    ))
                })();
                libc::close(ruleset);
                result?;
            }
            Step::Seccomp { filters, .. } => {
                for filter in filters {
                    let program = libc::sock_fprog {
                        len: filter.len,
                        filter: filter.instructions as *mut libc::sock_filter,
                    };
                    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
                    check(libc::syscall(
                        libc::SYS_seccomp,
                        SECCOMP_SET_MODE_FILTER,
                        0u32,
                        &program as *const libc::sock_fprog,
                    ))?;
                }
            }
            Step::Exec {
                candidates,
                argv,
                envp,
            } => {
                let mut result = libc::ENOENT;
                for path in candidates {
                    libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                    match errno() {
                        libc::ENOENT | libc::ENOTDIR => {}
                        libc::EACCES => result = libc::EACCES,
                        other => return Err(other),
                    }
                }
                return Err(result);
            }
        }
    }
    Ok(())
}
