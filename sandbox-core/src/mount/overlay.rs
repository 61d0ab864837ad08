//! `filesystem.overlay`: copy-on-write views of host trees, mounted by the
//! sandbox (overlayfs in its user namespace, `userxattr`) after the new
//! root's other mounts, before `pivot_root`.
//!
//! A tmpfs upper is a scratch tmpfs the child makes and attaches beneath
//! the new `/dev` (its own tmpfs) only long enough for overlayfs to take
//! its private clone of it: then it is detached and its directory removed,
//! so the sandbox reaches the writes only through the overlay. A directory
//! upper is `UPPER/diff` (the writes, kept) and `UPPER/work` (overlayfs's
//! own), made by the parent before the run.

use std::path::{Path, PathBuf};

use sandbox_child::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, Reg, Step, TargetKind};
use sandbox_policy::Overlay;

use crate::error::{Error, Result};
use crate::plan::builder::{Builder, path_cstring};

/// Where the new root is attached before `pivot_root` (see `plan`).
const STAGING: &str = "/tmp";

/// The writes' and overlayfs's work directories of a directory upper.
pub(crate) fn upper_dirs(upper: &Path) -> (PathBuf, PathBuf) {
    (upper.join("diff"), upper.join("work"))
}

/// Makes each directory upper's `diff` and `work` (in the parent, as the
/// caller, before the run).
pub(crate) fn prepare(overlays: &[Overlay]) -> Result<()> {
    for o in overlays {
        if let Some(upper) = o.upper_dir() {
            let (diff, work) = upper_dirs(upper);
            // overlayfs's own scratch: what an earlier run left there would
            // make the new mount read-only.
            match std::fs::remove_dir_all(&work) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::prepare(format!(
                        "empty the overlay work directory {}",
                        work.display()
                    ))(e));
                }
            }
            for dir in [&diff, &work] {
                std::fs::create_dir_all(dir).map_err(Error::prepare(format!(
                    "create the overlay upper {}",
                    dir.display()
                )))?;
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&diff, std::fs::Permissions::from_mode(top_mode(o)?))
                .map_err(Error::prepare(format!("chmod {}", diff.display())))?;
            user_xattrs(&diff)?;
            not_on_overlayfs(&diff)?;
        }
    }
    Ok(())
}

/// The kernel refuses an upper on an overlayfs ("not supported as
/// upperdir"), as a container's writable layer often is: say so before
/// the run.
fn not_on_overlayfs(dir: &Path) -> Result<()> {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    match rustix::fs::statfs(dir) {
        Ok(st) if st.f_type == OVERLAYFS_SUPER_MAGIC => Err(Error::Prepare {
            what: format!(
                "the overlay upper {} is on an overlayfs, which the kernel does not take as an upper: choose a directory on another filesystem",
                dir.display()
            ),
            error: std::io::ErrorKind::Unsupported.into(),
        }),
        _ => Ok(()),
    }
}

/// Whether `dir`'s filesystem stores `user.` attributes, which overlayfs
/// in a user namespace (`userxattr`) keeps its whiteouts and opaque
/// directories in (tmpfs before 6.6 does not).
fn user_xattrs(dir: &Path) -> Result<()> {
    const NAME: &str = "user.sandbox-probe";
    match rustix::fs::lsetxattr(dir, NAME, b"1", rustix::fs::XattrFlags::empty()) {
        Ok(()) => {
            let _ = rustix::fs::lremovexattr(dir, NAME);
            Ok(())
        }
        Err(e) => Err(Error::Prepare {
            what: format!(
                "the overlay upper {} is on a filesystem that does not store user.* attributes, which overlayfs in the sandbox's user namespace needs",
                dir.display()
            ),
            error: e.into(),
        }),
    }
}

/// The mode of the top lower's root: the overlay's root takes its
/// attributes from the upper's, which gets these.
fn top_mode(o: &Overlay) -> Result<u32> {
    top_meta(o).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    })
}

/// The owner the upper's root takes in the sandbox: the top lower's, each
/// id where the run's user namespace maps it to the same number (a root
/// caller's run with idmapped lowers: 0, and the sandbox's user).
fn top_owner(o: &Overlay, how: How) -> Result<(Option<u32>, Option<u32>)> {
    use std::os::unix::fs::MetadataExt;
    if !how.run_ids {
        return Ok((None, None));
    }
    let meta = top_meta(o)?;
    let same = |id: u32, inside: u32| (id == 0 || id == inside).then_some(id);
    Ok((same(meta.uid(), how.owner.0), same(meta.gid(), how.owner.1)))
}

/// The top lower's root, which must be a directory.
fn top_meta(o: &Overlay) -> Result<std::fs::Metadata> {
    let top = o.lower.paths().first().ok_or_else(|| Error::Prepare {
        what: format!("the overlay at {} has no lower", o.target.display()),
        error: std::io::ErrorKind::InvalidInput.into(),
    })?;
    let meta = std::fs::metadata(top)
        .map_err(Error::prepare(format!("overlay lower {}", top.display())))?;
    if !meta.is_dir() {
        return Err(Error::Prepare {
            what: format!("overlay lower {}: not a directory", top.display()),
            error: std::io::ErrorKind::InvalidInput.into(),
        });
    }
    Ok(meta)
}

/// Each overlay's host directories, opened while every host path is in
/// view (before the new root is attached at the staging point, which may
/// hide some): its lowers, and a directory upper's `diff` and `work`.
pub(crate) struct Layers {
    lowers: Vec<Reg>,
    upper: Option<(Reg, Reg)>,
}

/// Opens every overlay's host directories (see [`Layers`]).
pub(crate) fn open_layers(b: &mut Builder, overlays: &[Overlay]) -> Result<Vec<Layers>> {
    let open = |b: &mut Builder, path: &Path| -> Result<Reg> {
        let out = b.register();
        b.push(
            Step::OpenDir {
                path: path_cstring(path)?,
                out,
            },
            format!("open the overlay layer {}", path.display()),
        );
        Ok(out)
    };
    let mut out = Vec::new();
    for o in overlays {
        let lowers = o
            .lower
            .paths()
            .iter()
            .map(|p| open(b, p))
            .collect::<Result<Vec<_>>>()?;
        let upper = match o.upper_dir() {
            Some(upper) => {
                let (diff, work) = upper_dirs(upper);
                Some((open(b, &diff)?, open(b, &work)?))
            }
            None => None,
        };
        out.push(Layers { lowers, upper });
    }
    Ok(out)
}

/// How the overlays are made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct How {
    /// The child's end of the socket each tmpfs upper goes to the parent on.
    pub(crate) socket: Option<std::ffi::c_int>,
    /// Overlays with `fallback = "copy"` are copies (overlayfs cannot take
    /// a tmpfs upper here).
    pub(crate) copy: bool,
    /// Who a copy's files belong to (the sandbox's user, inside).
    pub(crate) owner: (u32, u32),
    /// The run has a host uid of its own (a root caller): its lowers are
    /// idmapped where they can be.
    pub(crate) run_ids: bool,
}

/// The steps of every overlay, beneath `root` (attached at `STAGING`).
pub(crate) fn overlay_steps(
    b: &mut Builder,
    root: Reg,
    overlays: &[Overlay],
    layers: Vec<Layers>,
    how: How,
) -> Result<()> {
    for (i, (o, layers)) in overlays.iter().zip(layers).enumerate() {
        if how.copy && o.copies() && o.upper_dir().is_none() {
            copy(b, root, o, layers, how)?;
        } else {
            one(b, root, i, o, layers, how)?;
        }
    }
    Ok(())
}

/// The copy fallback: the lowers copied (the bottom one first) into a
/// new tmpfs, which goes to the parent (for the changes) and onto the
/// target.
fn copy(b: &mut Builder, root: Reg, o: &Overlay, layers: Layers, how: How) -> Result<()> {
    let tmpfs = tmpfs_upper(b, o)?;
    for (lower, path) in layers.lowers.iter().zip(o.lower.paths()).rev() {
        b.push(
            Step::CopyTree {
                from: *lower,
                to: tmpfs,
                uid: how.owner.0,
                gid: how.owner.1,
            },
            format!(
                "copy {} into the tmpfs of {} (fallback = \"copy\")",
                path.display(),
                o.target.display()
            ),
        );
    }
    for reg in layers.lowers {
        b.push(Step::Close(reg), "close");
    }
    if let Some(socket) = how.socket {
        b.push(
            Step::SendFd { socket, reg: tmpfs },
            format!("send the copy at {} to the parent", o.target.display()),
        );
    }
    let target = b.resolve(root, &o.target, TargetKind::Dir, true, false)?;
    b.push(
        Step::MoveMount {
            from: tmpfs,
            to: target,
        },
        format!("mount the copy on {}", o.target.display()),
    );
    Ok(())
}

/// The root overlay (`filesystem.root_overlay`): the new root itself. A
/// tmpfs upper is attached at `STAGING` (where the root goes next) only
/// until overlayfs holds its private clone of it.
pub(crate) fn root_steps(b: &mut Builder, o: &Overlay, layers: Layers, how: How) -> Result<Reg> {
    let (upper, work, scratch) = match layers.upper {
        Some((upper, work)) => (upper, work, None),
        None => {
            let tmpfs = tmpfs_upper(b, o)?;
            b.push(
                Step::AttachAt {
                    mount: tmpfs,
                    path: path_cstring(Path::new(STAGING))?,
                },
                format!("attach the root's upper at {STAGING} (scratch)"),
            );
            let (upper, work) = upper_and_work(b, tmpfs, Path::new("/"), o, how)?;
            (upper, work, Some(tmpfs))
        }
    };
    let overlay = new_overlay(b, o, layers.lowers, upper, work);
    if let Some(tmpfs) = scratch {
        b.push(
            Step::Unmount {
                path: path_cstring(Path::new(STAGING))?,
            },
            "detach the root's scratch upper",
        );
        b.push(Step::Close(tmpfs), "close");
    }
    Ok(overlay)
}

/// A tmpfs for an overlay's upper (its size the overlay's).
fn tmpfs_upper(b: &mut Builder, o: &Overlay) -> Result<Reg> {
    let mut options = vec![("mode".to_string(), Some("0755".to_string()))];
    if let Some(size) = o.size {
        options.push(("size".into(), Some(size.bytes().to_string())));
    }
    b.new_fs(
        "tmpfs",
        &options,
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        &o.target,
    )
}

/// `diff` and `work` made beneath `base` (at `dir`) of a scratch tmpfs
/// upper; `diff` takes the top lower's mode and goes to the parent, which
/// reads the changes from it after the run.
fn upper_and_work(
    b: &mut Builder,
    base: Reg,
    dir: &Path,
    o: &Overlay,
    how: How,
) -> Result<(Reg, Reg)> {
    let diff = b.resolve(base, &dir.join("diff"), TargetKind::Dir, true, false)?;
    b.push(
        Step::Chmod {
            reg: diff,
            mode: top_mode(o)?,
        },
        format!("the upper's root as {}'s", o.lower.joined(":")),
    );
    if let (uid, gid) = top_owner(o, how)?
        && (uid.is_some() || gid.is_some())
    {
        b.push(
            Step::Chown {
                reg: diff,
                uid,
                gid,
            },
            format!("the upper's root owned as {}'s", o.lower.joined(":")),
        );
    }
    if let Some(socket) = how.socket {
        b.push(
            Step::SendFd { socket, reg: diff },
            format!("send the upper of {} to the parent", o.target.display()),
        );
    }
    let work = b.resolve(base, &dir.join("work"), TargetKind::Dir, true, false)?;
    Ok((diff, work))
}

/// The overlay of `lowers` with `upper` and `work` (which it closes).
fn new_overlay(b: &mut Builder, o: &Overlay, lowers: Vec<Reg>, upper: Reg, work: Reg) -> Reg {
    let overlay = b.register();
    b.push(
        Step::NewOverlay {
            lowers: lowers.clone(),
            upper,
            work,
            attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            out: overlay,
        },
        format!(
            "overlay of {} for {}",
            o.lower.joined(":"),
            o.target.display()
        ),
    );
    for reg in lowers.into_iter().chain([upper, work]) {
        b.push(Step::Close(reg), "close");
    }
    overlay
}

fn one(b: &mut Builder, root: Reg, i: usize, o: &Overlay, layers: Layers, how: How) -> Result<()> {
    let scratch_name = format!(".sandbox-overlay-{i}");
    let scratch = Path::new("/dev").join(&scratch_name);
    let (upper, work) = match layers.upper {
        Some(dirs) => dirs,
        None => {
            let tmpfs = tmpfs_upper(b, o)?;
            let at = b.resolve(root, &scratch, TargetKind::Dir, true, false)?;
            b.push(
                Step::MoveMount {
                    from: tmpfs,
                    to: at,
                },
                format!("attach the upper of {} (scratch)", o.target.display()),
            );
            b.push(Step::Close(at), "close");
            upper_and_work(b, root, &scratch, o, how)?
        }
    };
    let overlay = new_overlay(b, o, layers.lowers, upper, work);
    let target = b.resolve(root, &o.target, TargetKind::Dir, true, false)?;
    b.push(
        Step::MoveMount {
            from: overlay,
            to: target,
        },
        format!("mount the overlay on {}", o.target.display()),
    );
    if o.upper_dir().is_none() {
        // The overlay holds a private clone of its upper: the scratch
        // attachment goes, so the writes are reached through it only.
        let host = Path::new(STAGING).join(scratch.strip_prefix("/").unwrap_or(&scratch));
        b.push(
            Step::Unmount {
                path: path_cstring(&host)?,
            },
            format!("detach the scratch upper of {}", o.target.display()),
        );
        let dev = b.resolve(root, Path::new("/dev"), TargetKind::Dir, false, false)?;
        b.push(
            Step::RemoveDir {
                dir: dev,
                name: path_cstring(Path::new(&scratch_name))?,
            },
            "remove the scratch directory",
        );
        b.push(Step::Close(dev), "close");
    }
    Ok(())
}
