//! The child's mount steps: the new root built by fd (`open_tree`,
//! `fsmount`, `move_mount`, `mount_setattr`) on targets resolved with
//! `openat2`, then `pivot_root`.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_int};

use crate::errno;
use crate::exec::{check, close_reg, reg, set_reg};
use crate::step::{NO_FD, Step, TargetKind};

/// `openat2(dir, name, flags, RESOLVE_BENEATH | NO_SYMLINKS | NO_MAGICLINKS)`.
fn openat2_beneath(dir: c_int, name: &CString, flags: c_int) -> Result<c_int, c_int> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2(2) with a NUL-terminated name and a live open_how of
    // the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            name.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd as c_int)
    }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
/// `MOUNT_ATTR_RDONLY`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NOSUID`.
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// `MOUNT_ATTR_NODEV`.
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
/// `MOUNT_ATTR_NOEXEC`.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn mount_setattr(dir: c_int, path: &std::ffi::CStr, flags: libc::c_uint, set: u64) -> c_int {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) with a NUL-terminated path and a live
    // mount_attr of the size passed (MOUNT_ATTR_SIZE_VER0).
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dir,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) as c_int
    }
}

/// Runs one mount step (the caller dispatches only those here).
pub(crate) fn mount_step(step: &Step, registers: &[Cell<c_int>]) -> Result<(), c_int> {
    // SAFETY (for the whole match): every call is a thin syscall wrapper
    // given NUL-terminated strings and buffers the plan owns, or live
    // locals; fds come from the registers this plan filled.
    unsafe {
        match step {
            Step::OpenTree {
                path,
                recursive,
                out,
            } => {
                let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
                if *recursive {
                    flags |= AT_RECURSIVE;
                }
                let fd = check(libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    flags,
                ))?;
                set_reg(registers, *out, fd);
            }
            Step::OpenDir { path, out } => {
                let fd = check(libc::open(
                    path.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                ))?;
                set_reg(registers, *out, fd);
            }
            Step::SetMountAttrs {
                mount,
                set,
                recursive,
            } => {
                let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
                if *recursive {
                    flags |= AT_RECURSIVE;
                }
                check(mount_setattr(reg(registers, *mount), c"", flags, *set))?;
            }
            Step::NewFilesystem {
                fstype,
                options,
                attrs,
                out,
            } => {
                let fs = check(libc::syscall(
                    libc::SYS_fsopen,
                    fstype.as_ptr(),
                    FSOPEN_CLOEXEC,
                ))? as c_int;
                let result = (|| {
                    for (key, value) in options {
                        match value {
                            Some(v) => check(libc::syscall(
                                libc::SYS_fsconfig,
                                fs,
                                FSCONFIG_SET_STRING,
                                key.as_ptr(),
                                v.as_ptr(),
                                0,
                            ))?,
                            None => check(libc::syscall(
                                libc::SYS_fsconfig,
                                fs,
                                FSCONFIG_SET_FLAG,
                                key.as_ptr(),
                                std::ptr::null::<c_char>(),
                                0,
                            ))?,
                        };
                    }
                    check(libc::syscall(
                        libc::SYS_fsconfig,
                        fs,
                        FSCONFIG_CMD_CREATE,
                        std::ptr::null::<c_char>(),
                        std::ptr::null::<c_char>(),
                        0,
                    ))?;
                    check(libc::syscall(
                        libc::SYS_fsmount,
                        fs,
                        FSMOUNT_CLOEXEC,
                        *attrs,
                    ))
                })();
                libc::close(fs);
                set_reg(registers, *out, result?);
            }
            Step::AttachAt { mount, path } => {
                check(libc::syscall(
                    libc::SYS_move_mount,
                    reg(registers, *mount),
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                ))?;
            }
            Step::Resolve {
                base,
                components,
                kind,
                create,
                optional,
                out,
            } => {
                let mut dir = reg(registers, *base);
                let mut owned = NO_FD;
                for (i, name) in components.iter().enumerate() {
                    let last = i + 1 == components.len();
                    let flags = if !last || *kind == TargetKind::Dir {
                        libc::O_PATH | libc::O_DIRECTORY
                    } else {
                        libc::O_PATH
                    };
                    // Open what is there; create it only if it is missing
                    // (a read-only mount refuses even an mkdir of an
                    // existing name with EROFS).
                    let mut opened = openat2_beneath(dir, name, flags);
                    if *create && opened == Err(libc::ENOENT) {
                        let made = if last && *kind == TargetKind::File {
                            libc::mknodat(dir, name.as_ptr(), libc::S_IFREG | 0o644, 0)
                        } else {
                            libc::mkdirat(dir, name.as_ptr(), 0o755)
                        };
                        opened = if made < 0 && errno() != libc::EEXIST {
                            Err(errno())
                        } else {
                            openat2_beneath(dir, name, flags)
                        };
                    }
                    if owned >= 0 {
                        libc::close(owned);
                    }
                    match opened {
                        Ok(fd) => {
                            dir = fd;
                            owned = fd;
                        }
                        Err(libc::ENOENT) if *optional => {
                            set_reg(registers, *out, i64::from(NO_FD));
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
                set_reg(registers, *out, i64::from(owned));
            }
            Step::MoveMount { from, to } => {
                let target = reg(registers, *to);
                if target >= 0 {
                    check(libc::syscall(
                        libc::SYS_move_mount,
                        reg(registers, *from),
                        c"".as_ptr(),
                        target,
                        c"".as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
                    ))?;
                }
                close_reg(registers, *from);
                close_reg(registers, *to);
            }
            Step::Mask {
                target,
                dir_source,
                file_source,
            } => {
                let fd = reg(registers, *target);
                if fd >= 0 {
                    let mut st: libc::stat = std::mem::zeroed();
                    check(libc::fstat(fd, &mut st))?;
                    let source = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        *dir_source
                    } else {
                        *file_source
                    };
                    check(libc::syscall(
                        libc::SYS_move_mount,
                        reg(registers, source),
                        c"".as_ptr(),
                        fd,
                        c"".as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
                    ))?;
                }
                close_reg(registers, *target);
                close_reg(registers, *dir_source);
                close_reg(registers, *file_source);
            }
            Step::Symlink { dir, name, target } => {
                check(libc::symlinkat(
                    target.as_ptr(),
                    reg(registers, *dir),
                    name.as_ptr(),
                ))?;
            }
            Step::WriteFile {
                dir,
                name,
                contents,
            } => {
                let fd = check(libc::openat(
                    reg(registers, *dir),
                    name.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o644 as libc::c_uint,
                ))? as c_int;
                let mut written = 0;
                let mut result = Ok(0);
                while written < contents.len() {
                    let rest = &contents[written..];
                    match check(libc::write(fd, rest.as_ptr().cast(), rest.len()) as i64) {
                        Ok(n) => written += n as usize,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                if result.is_ok() {
                    result = check(libc::fchmod(fd, 0o644));
                }
                libc::close(fd);
                result?;
            }
            Step::OpenTreeAt { dir, name, out } => {
                let fd = check(libc::syscall(
                    libc::SYS_open_tree,
                    reg(registers, *dir),
                    name.as_ptr(),
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
                ))?;
                set_reg(registers, *out, fd);
            }
            Step::Unlink { dir, name } => {
                check(libc::unlinkat(reg(registers, *dir), name.as_ptr(), 0))?;
            }
            Step::Close(r) => close_reg(registers, *r),
            Step::PivotRoot { root } => {
                check(libc::fchdir(reg(registers, *root)))?;
                check(libc::syscall(
                    libc::SYS_pivot_root,
                    c".".as_ptr(),
                    c".".as_ptr(),
                ))?;
                check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
                check(libc::chdir(c"/".as_ptr()))?;
                close_reg(registers, *root);
            }
            Step::RootReadOnly => {
                check(mount_setattr(libc::AT_FDCWD, c"/", 0, MOUNT_ATTR_RDONLY))?;
            }
            _ => return Err(libc::EINVAL),
        }
    }
    Ok(())
}
