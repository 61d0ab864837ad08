//! The child's mount steps: the new root built by fd (`open_tree`,
//! `fsmount`, `move_mount`, `mount_setattr`) on targets resolved with
//! `openat2`, then `pivot_root`. All through rustix (which allocates
//! nothing for a `&CStr` path) except `mount_setattr`, which rustix does
//! not wrap.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self, AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{
    self, FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags,
    MoveMountFlags, OpenTreeFlags, UnmountFlags,
};

use crate::registers::Registers;
use crate::step::{MOUNT_ATTR_RDONLY, Reg, TargetKind};

/// `openat2(dir, name, flags | O_CLOEXEC, RESOLVE_BENEATH | NO_SYMLINKS |
/// NO_MAGICLINKS)`: one component, never leaving `dir`.
fn open_beneath(dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> Result<OwnedFd, Errno> {
    fs::openat2(
        dir,
        name,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`, 32 bytes on every
/// architecture: four `__u64`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_IDMAP`.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A detached clone of the mount at `path` (`open_tree(OPEN_TREE_CLONE)`,
/// not recursive), idmapped to the user namespace `userns`
/// (`mount_setattr(MOUNT_ATTR_IDMAP)`): through it a file owned by uid
/// `k` on disk is owned by what `userns` maps `k` to. For the parent
/// (a root caller) with a run's user namespace; fails where the
/// filesystem cannot be idmapped (`EINVAL`: overlayfs, tmpfs before 6.3).
///
/// # Errors
///
/// The errno of `open_tree` or `mount_setattr`.
pub fn idmapped_tree(path: &CStr, userns: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let tree = mount::open_tree(
        CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    let userns_fd = u64::try_from(userns.as_raw_fd()).map_err(|_| Errno::BADF)?;
    mount_setattr_with(
        tree.as_fd(),
        c"",
        libc::AT_EMPTY_PATH as u32,
        MOUNT_ATTR_IDMAP,
        userns_fd,
    )?;
    Ok(tree)
}

/// `mount_setattr(dir, path, flags, {attr_set: set})`: not in rustix.
fn mount_setattr(dir: BorrowedFd<'_>, path: &CStr, flags: u32, set: u64) -> Result<(), Errno> {
    mount_setattr_with(dir, path, flags, set, 0)
}

/// `mount_setattr(dir, path, flags, {attr_set: set, userns_fd})`.
fn mount_setattr_with(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: u32,
    set: u64,
    userns_fd: u64,
) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd,
    };
    // SAFETY: mount_setattr(2) reads a NUL-terminated path (a `&CStr`)
    // and `size` bytes of `attr`, a live local of exactly that size laid
    // out as the kernel's `struct mount_attr` (four u64s, no padding); it
    // writes nothing back. `dir` is a live fd (or AT_FDCWD) for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dir.as_raw_fd(),
            path.as_ptr(),
            flags,
            &raw const attr,
            size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        Err(crate::last_errno())
    } else {
        Ok(())
    }
}

/// `mount(NULL, "/", NULL, MS_REC | MS_PRIVATE)`.
pub(crate) fn make_private() -> Result<(), Errno> {
    mount::mount_change(
        c"/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
}

/// `mount(source, target, fstype, flags, NULL)`: the old API (the probe).
pub(crate) fn old_mount(
    source: &CStr,
    target: &CStr,
    fstype: Option<&CString>,
    flags: u64,
) -> Result<(), Errno> {
    let flags = MountFlags::from_bits_retain(u32::try_from(flags).map_err(|_| Errno::INVAL)?);
    mount::mount(
        source,
        target,
        fstype.map_or(c"", CString::as_c_str),
        flags,
        None,
    )
}

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE [| AT_RECURSIVE])`.
pub(crate) fn open_tree(path: &CStr, recursive: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    mount::open_tree(CWD, path, flags)
}

/// `open_tree(dir, name, OPEN_TREE_CLONE)`.
pub(crate) fn open_tree_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    mount::open_tree(
        dir,
        name,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
}

/// `open(path, O_PATH | O_DIRECTORY)`.
pub(crate) fn open_dir(path: &CStr) -> Result<OwnedFd, Errno> {
    fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `mount_setattr(mount, "", AT_EMPTY_PATH [| AT_RECURSIVE], set)`.
pub(crate) fn set_attrs(mount: BorrowedFd<'_>, set: u64, recursive: bool) -> Result<(), Errno> {
    /// `AT_RECURSIVE` (not among rustix's `AtFlags`).
    const AT_RECURSIVE: u32 = 0x8000;
    let mut flags = AtFlags::EMPTY_PATH.bits();
    if recursive {
        flags |= AT_RECURSIVE;
    }
    mount_setattr(mount, c"", flags, set)
}

/// `mount_setattr(AT_FDCWD, "/", 0, MOUNT_ATTR_RDONLY)`.
pub(crate) fn root_read_only() -> Result<(), Errno> {
    mount_setattr(CWD, c"/", 0, MOUNT_ATTR_RDONLY)
}

/// `fsopen`, `fsconfig` per option, `fsconfig(CMD_CREATE)`, `fsmount`.
pub(crate) fn new_filesystem(
    fstype: &CStr,
    options: &[(CString, Option<CString>)],
    attrs: u64,
) -> Result<OwnedFd, Errno> {
    let fs = mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (key, value) in options {
        match value {
            Some(value) => mount::fsconfig_set_string(&fs, key.as_c_str(), value.as_c_str())?,
            None => mount::fsconfig_set_flag(&fs, key.as_c_str())?,
        }
    }
    mount::fsconfig_create(&fs)?;
    let attrs = MountAttrFlags::from_bits_retain(u32::try_from(attrs).map_err(|_| Errno::INVAL)?);
    mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
}

/// `/proc/self/fd/N` of each fd, joined by `:`, NUL-terminated, written
/// into `buffer` (no allocation). `EINVAL` if it does not fit.
fn fd_paths(
    fds: impl Iterator<Item = Result<std::ffi::c_int, Errno>>,
    buffer: &mut [u8],
) -> Result<&CStr, Errno> {
    let mut at = 0;
    let mut put = |bytes: &[u8], at: &mut usize| -> Result<(), Errno> {
        let end = *at + bytes.len();
        buffer
            .get_mut(*at..end)
            .ok_or(Errno::INVAL)?
            .copy_from_slice(bytes);
        *at = end;
        Ok(())
    };
    for (i, fd) in fds.enumerate() {
        let fd = fd?;
        if i > 0 {
            put(b":", &mut at)?;
        }
        put(b"/proc/self/fd/", &mut at)?;
        let mut digits = [0u8; 20];
        put(
            crate::spawn::decimal(fd.unsigned_abs() as usize, &mut digits),
            &mut at,
        )?;
    }
    put(b"\0", &mut at)?;
    CStr::from_bytes_with_nul(buffer.get(..at).ok_or(Errno::INVAL)?).map_err(|_| Errno::INVAL)
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)` (an `O_PATH` fd too).
pub(crate) fn chown(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
    fs::chownat(
        fd,
        c"",
        uid.map(fs::Uid::from_raw),
        gid.map(fs::Gid::from_raw),
        AtFlags::EMPTY_PATH,
    )
}

/// `fchmod`, or for an `O_PATH` fd a `chmod` of its `/proc/self/fd` path
/// (which reaches the inode itself).
pub(crate) fn chmod(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let mode = rustix::fs::Mode::from_raw_mode(mode);
    match rustix::fs::fchmod(fd, mode) {
        Err(Errno::BADF) => {
            let mut buffer = [0u8; 64];
            let path = fd_paths([Ok(fd.as_raw_fd())].into_iter(), &mut buffer)?;
            rustix::fs::chmod(path, mode)
        }
        other => other,
    }
}

/// An overlayfs of `lowers` (the first on top) with `upper` and `work`,
/// each named by its fd's `/proc/self/fd` path, `userxattr` (the
/// sandbox's user namespace cannot set `trusted.` attributes).
pub(crate) fn new_overlay(
    lowers: impl Iterator<Item = Result<std::ffi::c_int, Errno>>,
    upper: std::ffi::c_int,
    work: std::ffi::c_int,
    attrs: u64,
) -> Result<OwnedFd, Errno> {
    let fs = mount::fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let configured = (|| {
        let mut buffer = [0u8; 4096];
        mount::fsconfig_set_string(&fs, c"lowerdir", fd_paths(lowers, &mut buffer)?)?;
        mount::fsconfig_set_string(
            &fs,
            c"upperdir",
            fd_paths([Ok(upper)].into_iter(), &mut buffer)?,
        )?;
        mount::fsconfig_set_string(
            &fs,
            c"workdir",
            fd_paths([Ok(work)].into_iter(), &mut buffer)?,
        )?;
        mount::fsconfig_set_flag(&fs, c"userxattr")?;
        mount::fsconfig_create(&fs)
    })();
    if let Err(e) = configured {
        // The kernel says why in the context's log: pass it on (stderr).
        let mut line = [0u8; 512];
        // (No let chain: this crate builds with Rust 1.85.)
        if let (Ok(n), Ok(stderr)) = (rustix::io::read(&fs, &mut line), crate::exec::inherited(2)) {
            let _ = rustix::io::write(stderr, line.get(..n).unwrap_or_default());
            let _ = rustix::io::write(stderr, b"\n");
        }
        return Err(e);
    }
    let attrs = MountAttrFlags::from_bits_retain(u32::try_from(attrs).map_err(|_| Errno::INVAL)?);
    mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
}

/// `move_mount(mount, "", AT_FDCWD, path, F_EMPTY_PATH)`.
pub(crate) fn attach_at(mount: BorrowedFd<'_>, path: &CStr) -> Result<(), Errno> {
    mount::move_mount(
        mount,
        c"",
        CWD,
        path,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// `move_mount(from, "", to, "", F_EMPTY_PATH | T_EMPTY_PATH)`.
fn move_onto(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), Errno> {
    mount::move_mount(
        from,
        c"",
        to,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// What a [`resolve`] looks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolve {
    pub(crate) kind: TargetKind,
    pub(crate) create: bool,
    pub(crate) optional: bool,
}

/// Walks `components` beneath `base` one at a time with `openat2`,
/// creating what is missing if `create`; `None` for a missing optional
/// target.
pub(crate) fn resolve(
    base: BorrowedFd<'_>,
    components: &[CString],
    how: Resolve,
) -> Result<Option<OwnedFd>, Errno> {
    let mut held: Option<OwnedFd> = None;
    for (i, name) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let file = last && how.kind == TargetKind::File;
        let flags = if last && how.kind != TargetKind::Dir {
            OFlags::PATH
        } else {
            OFlags::PATH | OFlags::DIRECTORY
        };
        let dir = held.as_ref().map_or(base, AsFd::as_fd);
        // Open what is there; create it only if it is missing (a
        // read-only mount refuses even an mkdir of an existing name with
        // EROFS).
        let mut opened = open_beneath(dir, name, flags);
        if how.create && opened.as_ref().err() == Some(&Errno::NOENT) {
            let made = if file {
                fs::mknodat(
                    dir,
                    name.as_c_str(),
                    FileType::RegularFile,
                    Mode::from(0o644),
                    0,
                )
            } else {
                fs::mkdirat(dir, name.as_c_str(), Mode::from(0o755))
            };
            opened = match made {
                Ok(()) | Err(Errno::EXIST) => open_beneath(dir, name, flags),
                Err(e) => Err(e),
            };
        }
        match opened {
            Ok(fd) => held = Some(fd),
            Err(Errno::NOENT) if how.optional => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(held)
}

/// Moves the mount in `from` onto the target in `to` (an optional target
/// that was missing: nothing), then closes both.
pub(crate) fn move_mount(registers: &mut Registers, from: Reg, to: Reg) -> Result<(), Errno> {
    if let Some(target) = registers.optional(to) {
        move_onto(registers.get(from)?, target)?;
    }
    registers.close(from);
    registers.close(to);
    Ok(())
}

/// Covers the target in `target` with `dir_source` or `file_source` by
/// its type, then closes all three.
pub(crate) fn mask(
    registers: &mut Registers,
    target: Reg,
    dir_source: Reg,
    file_source: Reg,
) -> Result<(), Errno> {
    if let Some(fd) = registers.optional(target) {
        let st = fs::fstat(fd)?;
        let source = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            dir_source
        } else {
            file_source
        };
        move_onto(registers.get(source)?, fd)?;
    }
    for r in [target, dir_source, file_source] {
        registers.close(r);
    }
    Ok(())
}

/// `openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0644)`,
/// write `contents` whole, `fchmod(0644)` (past the umask).
pub(crate) fn write_file(dir: BorrowedFd<'_>, name: &CStr, contents: &[u8]) -> Result<(), Errno> {
    let fd = fs::openat(
        dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from(0o644),
    )?;
    write_all(&fd, contents)?;
    fs::fchmod(&fd, Mode::from(0o644))
}

/// Writes all of `bytes` to `fd`.
pub(crate) fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `symlinkat(target, dir, name)`.
pub(crate) fn symlink(dir: BorrowedFd<'_>, name: &CStr, target: &CStr) -> Result<(), Errno> {
    fs::symlinkat(target, dir, name)
}

/// `unlinkat(dir, name, 0)`.
pub(crate) fn unlink(dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    fs::unlinkat(dir, name, AtFlags::empty())
}

/// `fchdir(root)`, `pivot_root(".", ".")`, `umount2(".", MNT_DETACH)`,
/// `chdir("/")`.
pub(crate) fn pivot_root(root: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::process::fchdir(root)?;
    rustix::process::pivot_root(c".", c".")?;
    mount::unmount(c".", UnmountFlags::DETACH)?;
    rustix::process::chdir(c"/")
}
