//! `Step::CopyTree`: a tree copied into a new tmpfs where overlayfs cannot
//! serve (the overlay's copy fallback). Nothing is allocated: a fixed
//! stack of directory fds, one `getdents64` buffer, `sendfile` for the
//! data. No symlink is followed: every entry is opened as one component
//! of a directory fd with `O_NOFOLLOW`.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, RawDir, SeekFrom, Timestamps};
use rustix::io::Errno;

/// The deepest tree copied (a deeper one fails with `ENAMETOOLONG`).
const MAX_DEPTH: usize = 64;

/// Who the copy's entries belong to: uid and gid.
type Owner = (u32, u32);

fn open_dir(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Mode (set-id dropped), owner and times of `dst` as `src`'s.
fn finish(dst: BorrowedFd<'_>, src: &fs::Stat, owner: Owner) -> Result<(), Errno> {
    fs::fchown(
        dst,
        Some(fs::Uid::from_raw(owner.0)),
        Some(fs::Gid::from_raw(owner.1)),
    )?;
    fs::fchmod(dst, Mode::from_raw_mode(src.st_mode & 0o1777))?;
    let times = Timestamps {
        last_access: fs::Timespec {
            tv_sec: src.st_atime,
            tv_nsec: src.st_atime_nsec as _,
        },
        last_modification: fs::Timespec {
            tv_sec: src.st_mtime,
            tv_nsec: src.st_mtime_nsec as _,
        },
    };
    fs::futimens(dst, &times)
}

/// Copies the regular file `name` of `src_dir` into `dst_dir` (replacing
/// what an earlier lower put there).
fn copy_file(
    src_dir: BorrowedFd<'_>,
    dst_dir: BorrowedFd<'_>,
    name: &CStr,
    owner: Owner,
) -> Result<(), Errno> {
    let src = fs::openat(
        src_dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = fs::fstat(&src)?;
    let create = || {
        fs::openat(
            dst_dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    let dst = match create() {
        Err(Errno::EXIST) => {
            remove(dst_dir, name)?;
            create()?
        }
        other => other?,
    };
    loop {
        match rustix::fs::sendfile(&dst, &src, None, 1 << 30) {
            Ok(0) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    finish(dst.as_fd(), &stat, owner)
}

/// Removes `name` from `dir` whatever it is (an earlier lower's entry of
/// another type); a directory only if empty (a later lower's non-directory
/// over a non-empty directory fails with `ENOTEMPTY`).
fn remove(dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    match fs::unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => fs::unlinkat(dir, name, AtFlags::REMOVEDIR),
        other => other,
    }
}

/// Copies the symlink `name` of `src_dir` (its target as it is).
fn copy_symlink(
    src_dir: BorrowedFd<'_>,
    dst_dir: BorrowedFd<'_>,
    name: &CStr,
    owner: Owner,
) -> Result<(), Errno> {
    let mut target = [0u8; 4097];
    let len = readlink(src_dir, name, &mut target)?;
    let target = CStr::from_bytes_until_nul(target.get(..=len).ok_or(Errno::NAMETOOLONG)?)
        .map_err(|_| Errno::INVAL)?;
    match fs::symlinkat(target, dst_dir, name) {
        Err(Errno::EXIST) => {
            remove(dst_dir, name)?;
            fs::symlinkat(target, dst_dir, name)?;
        }
        other => other?,
    }
    fs::chownat(
        dst_dir,
        name,
        Some(fs::Uid::from_raw(owner.0)),
        Some(fs::Gid::from_raw(owner.1)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

/// `readlinkat` into `buf` (NUL-terminated after the target); the
/// target's length.
fn readlink(dir: BorrowedFd<'_>, name: &CStr, buf: &mut [u8; 4097]) -> Result<usize, Errno> {
    let len = fs::readlinkat_raw(dir, name, &mut buf[..4096])?;
    // A target of 4096 bytes may have been cut: refuse it.
    if len >= 4096 {
        return Err(Errno::NAMETOOLONG);
    }
    buf[len] = 0;
    Ok(len)
}

/// One level of the walk: the source directory (its offset where the
/// walk goes on) and the copy.
struct Level {
    src: OwnedFd,
    dst: OwnedFd,
}

/// Copies the tree beneath `from` into `to` (both directories), merging
/// into what is there: entries of `from` replace others of the same name,
/// directories merge. Regular files, directories and symlinks only (a
/// device, FIFO or socket fails with `EOPNOTSUPP`); entries belong to
/// `owner`, keep their times and modes less set-id bits. `to`'s root takes
/// `from`'s mode.
pub(crate) fn copy_tree(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    owner: Owner,
) -> Result<(), Errno> {
    let dot = c".";
    let mut stack: [Option<Level>; MAX_DEPTH] = [const { None }; MAX_DEPTH];
    stack[0] = Some(Level {
        src: open_dir(from, dot)?,
        dst: open_dir(to, dot)?,
    });
    let mut depth = 1;
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    while depth > 0 {
        let Some(level) = stack[depth - 1].as_ref() else {
            return Err(Errno::INVAL);
        };
        let mut next: Option<Level> = None;
        {
            let mut dir = RawDir::new(level.src.as_fd(), &mut buf);
            while let Some(entry) = dir.next() {
                let entry = entry?;
                let name = entry.file_name();
                if name == c"." || name == c".." {
                    continue;
                }
                let kind = match entry.file_type() {
                    FileType::Unknown => FileType::from_raw_mode(
                        fs::statat(level.src.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
                    ),
                    kind => kind,
                };
                match kind {
                    FileType::Directory => {
                        if depth == MAX_DEPTH {
                            return Err(Errno::NAMETOOLONG);
                        }
                        match fs::mkdirat(level.dst.as_fd(), name, Mode::from_raw_mode(0o700)) {
                            Ok(()) => {}
                            Err(Errno::EXIST) => {
                                let there =
                                    fs::statat(level.dst.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)?;
                                if FileType::from_raw_mode(there.st_mode) != FileType::Directory {
                                    remove(level.dst.as_fd(), name)?;
                                    fs::mkdirat(
                                        level.dst.as_fd(),
                                        name,
                                        Mode::from_raw_mode(0o700),
                                    )?;
                                }
                            }
                            Err(e) => return Err(e),
                        }
                        // Back here after the subdirectory, at the next entry.
                        fs::seek(
                            level.src.as_fd(),
                            SeekFrom::Start(entry.next_entry_cookie()),
                        )?;
                        next = Some(Level {
                            src: open_dir(level.src.as_fd(), name)?,
                            dst: open_dir(level.dst.as_fd(), name)?,
                        });
                        break;
                    }
                    FileType::RegularFile => {
                        copy_file(level.src.as_fd(), level.dst.as_fd(), name, owner)?;
                    }
                    FileType::Symlink => {
                        copy_symlink(level.src.as_fd(), level.dst.as_fd(), name, owner)?;
                    }
                    _ => return Err(Errno::OPNOTSUPP),
                }
            }
        }
        match next {
            Some(level) => {
                stack[depth] = Some(level);
                depth += 1;
            }
            None => {
                // The directory is done: its attributes last (creating
                // entries changed its times).
                if let Some(level) = stack[depth - 1].take() {
                    let stat = fs::fstat(&level.src)?;
                    finish(level.dst.as_fd(), &stat, owner)?;
                }
                depth -= 1;
            }
        }
    }
    Ok(())
}
