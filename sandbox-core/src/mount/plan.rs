//! The new root: system binds, /proc, a minimal /dev, the policy's binds,
//! tmpfs and masks, mounted by fd on targets resolved beneath it.

use std::path::{Path, PathBuf};

use sandbox_policy::{FsMode, Policy};

use crate::error::{Error, Result};
use sandbox_child::{
    MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, Reg, Step,
    TargetKind,
};

use crate::plan::builder::{Builder, path_cstring};

/// The host directories a minimal root binds read-only (or recreates as
/// symlinks, on merged-/usr systems).
const SYSTEM_PATHS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The device nodes of the minimal `/dev`, bound from the host's.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where the new root is attached before `pivot_root`, in the sandbox's
/// private mount namespace (it hides nothing outside it).
const STAGING: &str = "/tmp";

/// Where a mount's source comes from.
#[derive(Debug)]
enum Source {
    /// `open_tree` of a host path, then these attributes.
    Host {
        path: PathBuf,
        recursive: bool,
        attrs: u64,
    },
    /// A new filesystem.
    New {
        fstype: &'static str,
        options: Vec<(String, Option<String>)>,
        attrs: u64,
    },
    /// An empty read-only tmpfs for a directory, `/dev/null` for a file.
    Mask,
}

#[derive(Debug)]
struct Mount {
    target: PathBuf,
    kind: TargetKind,
    source: Source,
}

/// Where the sandbox's `/etc/resolv.conf` really is: the file itself, or
/// where the symlink points (as on systemd-resolved hosts), as a path
/// inside the new root; `base` is the tree the new root shows (`/`, or a
/// rootfs).
fn resolv_conf_target(base: &Path) -> PathBuf {
    let path = base.join("etc/resolv.conf");
    match std::fs::read_link(&path) {
        Ok(link) => {
            let mut out = PathBuf::from("/");
            for c in Path::new("/etc").join(link).components() {
                match c {
                    std::path::Component::Normal(name) => out.push(name),
                    std::path::Component::ParentDir => {
                        out.pop();
                    }
                    _ => {}
                }
            }
            out
        }
        Err(_) => PathBuf::from("/etc/resolv.conf"),
    }
}

/// A symlink to make in the new root: `(link, target)`.
type Symlink = (PathBuf, PathBuf);

const RO: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

/// A new filesystem's source.
fn new_fs(fstype: &'static str, options: &[(&str, Option<&str>)], attrs: u64) -> Source {
    Source::New {
        fstype,
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.map(String::from)))
            .collect(),
        attrs,
    }
}

/// The host's system directories, bound read-only (or recreated as
/// symlinks, on merged-/usr systems).
fn system_mounts(mounts: &mut Vec<Mount>, symlinks: &mut Vec<Symlink>) -> Result<()> {
    for path in SYSTEM_PATHS {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(path)
                    .map_err(Error::prepare(format!("read the symlink {path}")))?;
                symlinks.push((PathBuf::from(path), target));
            }
            Ok(m) if m.is_dir() => mounts.push(Mount {
                target: PathBuf::from(path),
                kind: TargetKind::Dir,
                source: Source::Host {
                    path: PathBuf::from(path),
                    recursive: true,
                    attrs: RO,
                },
            }),
            _ => {}
        }
    }
    Ok(())
}

/// The minimal `/dev`: a small tmpfs, the host's harmless devices, a
/// private devpts, `/dev/shm` and the usual symlinks.
fn dev_mounts(mounts: &mut Vec<Mount>, symlinks: &mut Vec<Symlink>) {
    let dir = |target: &str, source: Source| Mount {
        target: PathBuf::from(target),
        kind: TargetKind::Dir,
        source,
    };
    mounts.push(dir(
        "/dev",
        new_fs(
            "tmpfs",
            &[("mode", Some("0755")), ("size", Some("65536"))],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        ),
    ));
    for dev in DEVICES {
        let host = Path::new("/dev").join(dev);
        if host.exists() {
            mounts.push(Mount {
                target: host.clone(),
                kind: TargetKind::File,
                source: Source::Host {
                    path: host,
                    recursive: false,
                    attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
                },
            });
        }
    }
    mounts.push(dir(
        "/dev/pts",
        new_fs(
            "devpts",
            &[
                ("newinstance", None),
                ("ptmxmode", Some("0666")),
                ("mode", Some("0620")),
            ],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        ),
    ));
    mounts.push(dir(
        "/dev/shm",
        new_fs(
            "tmpfs",
            &[("mode", Some("1777"))],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        ),
    ));
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        symlinks.push((PathBuf::from(link), PathBuf::from(target)));
    }
}

/// The policy's tmpfs, binds and masks, and (host-readonly) the tmpfs over
/// the directories where the host's services keep their sockets.
fn policy_mounts(policy: &Policy, mode: FsMode, mounts: &mut Vec<Mount>) -> Result<()> {
    let fs = &policy.filesystem;
    for t in fs.tmpfs.iter().flatten() {
        let mut options = vec![("mode".to_string(), Some("1777".to_string()))];
        if let Some(size) = t.size {
            options.push(("size".into(), Some(size.bytes().to_string())));
        }
        mounts.push(Mount {
            target: t.target.clone(),
            kind: TargetKind::Dir,
            source: Source::New {
                fstype: "tmpfs",
                options,
                attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            },
        });
    }
    // host-readonly: see `sockets`.
    for dir in crate::sockets::masked_host_dirs(policy, mode) {
        let mode = if dir.ends_with("tmp") { "1777" } else { "0755" };
        mounts.push(Mount {
            target: dir,
            kind: TargetKind::Dir,
            source: new_fs(
                "tmpfs",
                &[("mode", Some(mode))],
                MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            ),
        });
    }
    for bind in fs.binds.iter().flatten() {
        let meta = std::fs::metadata(&bind.source).map_err(Error::prepare(format!(
            "bind source {} (for {})",
            bind.source.display(),
            bind.target.display()
        )))?;
        mounts.push(Mount {
            target: bind.target.clone(),
            kind: if meta.is_dir() {
                TargetKind::Dir
            } else {
                TargetKind::File
            },
            source: Source::Host {
                path: bind.source.clone(),
                recursive: true,
                attrs: if bind.writable {
                    MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                } else {
                    RO
                },
            },
        });
    }
    for mask in fs.mask.iter().flatten() {
        mounts.push(Mount {
            target: mask.clone(),
            kind: TargetKind::Existing,
            source: Source::Mask,
        });
    }
    Ok(())
}

/// Every mount of the new root, parents before children (so no later
/// mount hides an earlier one), and the symlinks to make in it.
fn mount_list(policy: &Policy, mode: FsMode) -> Result<(Vec<Mount>, Vec<Symlink>)> {
    let mut mounts = Vec::new();
    let mut symlinks = Vec::new();
    if mode == FsMode::Minimal {
        system_mounts(&mut mounts, &mut symlinks)?;
    }
    mounts.push(Mount {
        target: PathBuf::from("/proc"),
        kind: TargetKind::Dir,
        source: new_fs(
            "proc",
            &[],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        ),
    });
    if mode != FsMode::Off {
        dev_mounts(&mut mounts, &mut symlinks);
    }
    policy_mounts(policy, mode, &mut mounts)?;
    mounts.sort_by_key(|m| m.target.components().count());
    Ok((mounts, symlinks))
}

/// Opens every mount's source (host trees before the staging mount hides
/// anything): its register, and for a mask the file source as well.
fn open_sources(b: &mut Builder, mounts: &[Mount]) -> Result<Vec<(Reg, Option<Reg>)>> {
    let mut sources = Vec::new();
    for m in mounts {
        sources.push(match &m.source {
            Source::Host {
                path,
                recursive,
                attrs,
            } => (b.host_tree(path, *recursive, *attrs)?, None),
            Source::New {
                fstype,
                options,
                attrs,
            } => (b.new_fs(fstype, options, *attrs, &m.target)?, None),
            Source::Mask => (
                b.new_fs(
                    "tmpfs",
                    &[
                        ("mode".into(), Some("0".into())),
                        ("size".into(), Some("4096".into())),
                    ],
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                    &m.target,
                )?,
                Some(b.host_tree(
                    Path::new("/dev/null"),
                    false,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
                )?),
            ),
        });
    }
    Ok(sources)
}

/// The new root's own mount: a tmpfs (minimal), the policy's root
/// read-only (rootfs), the host's tree read-only (host-readonly), or the
/// caller's `/` (off).
fn new_root(b: &mut Builder, policy: &Policy, mode: FsMode) -> Result<Reg> {
    match mode {
        FsMode::Rootfs => {
            let root = policy
                .filesystem
                .root
                .as_deref()
                .ok_or_else(|| Error::Prepare {
                    what: "filesystem.mode = \"rootfs\" without filesystem.root".into(),
                    error: std::io::ErrorKind::InvalidInput.into(),
                })?;
            if !root.is_dir() {
                return Err(Error::Prepare {
                    what: format!("filesystem.root {}: not a directory", root.display()),
                    error: std::io::ErrorKind::NotFound.into(),
                });
            }
            b.host_tree(root, true, RO)
        }
        FsMode::Minimal => b.new_fs(
            "tmpfs",
            &[("mode".into(), Some("0755".into()))],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            Path::new("/"),
        ),
        FsMode::HostReadonly => b.host_tree(Path::new("/"), true, RO),
        FsMode::Off => {
            let out = b.register();
            b.push(
                Step::OpenDir {
                    path: path_cstring(Path::new("/"))?,
                    out,
                },
                "open /",
            );
            Ok(out)
        }
    }
}

/// Each mount moved onto its target, resolved beneath `root` (created
/// where missing when the root is our own).
fn attach_mounts(
    b: &mut Builder,
    root: Reg,
    mounts: &[Mount],
    sources: Vec<(Reg, Option<Reg>)>,
    create: bool,
) -> Result<()> {
    for (m, (source, file_source)) in mounts.iter().zip(sources) {
        let optional = matches!(m.source, Source::Mask);
        let target = b.resolve(root, &m.target, m.kind, create && !optional, optional)?;
        match file_source {
            Some(file_source) => b.push(
                Step::Mask {
                    target,
                    dir_source: source,
                    file_source,
                },
                format!("mask {}", m.target.display()),
            ),
            None => b.push(
                Step::MoveMount {
                    from: source,
                    to: target,
                },
                format!("mount on {}", m.target.display()),
            ),
        }
    }
    Ok(())
}

fn symlink_steps(b: &mut Builder, root: Reg, symlinks: Vec<Symlink>) -> Result<()> {
    for (link, target) in symlinks {
        let name = link.file_name().map(Path::new).unwrap_or(Path::new(""));
        let parent = link.parent().unwrap_or(Path::new("/"));
        let dir = if parent == Path::new("/") {
            root
        } else {
            b.resolve(root, parent, TargetKind::Dir, false, false)?
        };
        b.push(
            Step::Symlink {
                dir,
                name: path_cstring(name)?,
                target: path_cstring(&target)?,
            },
            format!("symlink {} -> {}", link.display(), target.display()),
        );
        if dir != root {
            b.push(Step::Close(dir), "close");
        }
    }
    Ok(())
}

/// `/dev` made read-only (its devices stay writable, being devices), then
/// `pivot_root`, and a minimal root made read-only.
fn pivot_steps(b: &mut Builder, root: Reg, mode: FsMode) -> Result<()> {
    let dev = b.resolve(root, Path::new("/dev"), TargetKind::Dir, false, false)?;
    b.push(
        Step::SetMountAttrs {
            mount: dev,
            set: MOUNT_ATTR_RDONLY,
            recursive: false,
        },
        "make /dev read-only",
    );
    b.push(Step::Close(dev), "close");
    b.push(Step::PivotRoot { root }, "pivot_root into the new root");
    if mode == FsMode::Minimal {
        b.push(Step::RootReadOnly, "make / read-only");
    }
    Ok(())
}

/// The new root's mounts. `resolv_conf` is bound read-only over the
/// sandbox's `/etc/resolv.conf` (not with `filesystem.mode = "off"`).
pub(crate) fn filesystem_steps(
    b: &mut Builder,
    policy: &Policy,
    decisions: &crate::decide::Decisions,
    resolv_conf: Option<String>,
    overlay_socket: Option<std::ffi::c_int>,
) -> Result<()> {
    let mode = decisions.fs_mode;
    let (mounts, symlinks) = mount_list(policy, mode)?;
    let sources = open_sources(b, &mounts)?;
    let mut overlays = super::overlays(policy, mode);
    super::overlay::prepare(&overlays)?;
    // The lowers the parent idmapped, over their paths before they are
    // opened (see `idmap`).
    if let Some(socket) = overlay_socket {
        for lower in crate::idmap::lowers(policy, decisions) {
            b.push(
                Step::RecvMount {
                    socket,
                    path: path_cstring(&lower)?,
                },
                format!("attach the lower {} idmapped", lower.display()),
            );
        }
    }
    let mut overlay_layers = super::overlay::open_layers(b, &overlays)?;
    let how = super::overlay::How {
        socket: overlay_socket,
        copy: decisions.overlay_copy,
        owner: (decisions.credentials.uid, decisions.credentials.gid),
        run_ids: decisions.credentials.run_ids,
    };
    let root = match super::root_overlay(policy, mode) {
        Some(o) if !overlay_layers.is_empty() => {
            overlays.remove(0);
            let layers = overlay_layers.remove(0);
            super::overlay::root_steps(b, &o, layers, how)?
        }
        _ => new_root(b, policy, mode)?,
    };
    let pivot = mode != FsMode::Off;
    if pivot {
        b.push(
            Step::AttachAt {
                mount: root,
                path: path_cstring(Path::new(STAGING))?,
            },
            format!("attach the new root at {STAGING} (private mount namespace)"),
        );
    }
    attach_mounts(b, root, &mounts, sources, pivot)?;
    symlink_steps(b, root, symlinks)?;
    if pivot {
        super::overlay::overlay_steps(b, root, &overlays, overlay_layers, how)?;
    }
    if let (Some(text), true) = (resolv_conf, pivot) {
        let base = match (mode, &policy.filesystem.root) {
            (FsMode::Rootfs, Some(root)) => root.as_path(),
            _ => Path::new("/"),
        };
        let target = resolv_conf_target(base);
        // A read-only root of the caller's cannot get a file it lacks.
        if mode == FsMode::Rootfs
            && super::root_overlay(policy, mode).is_none()
            && std::fs::symlink_metadata(base.join(target.strip_prefix("/").unwrap_or(&target)))
                .is_err()
        {
            return Err(Error::Prepare {
                what: format!(
                    "DNS through the gateway needs {} in the root {} to bind over (or network.dns = \"off\")",
                    target.display(),
                    base.display()
                ),
                error: std::io::ErrorKind::NotFound.into(),
            });
        }
        generated_file(b, root, &target, text.into_bytes())?;
    }
    if pivot {
        pivot_steps(b, root, mode)
    } else {
        b.push(Step::Close(root), "close /");
        Ok(())
    }
}

/// Binds a file with `contents` read-only over `target`: written to the new
/// `/dev` (a tmpfs attached in our namespace, so it can be cloned), bound
/// from there, and unlinked again.
fn generated_file(b: &mut Builder, root: Reg, target: &Path, contents: Vec<u8>) -> Result<()> {
    let dev = b.resolve(root, Path::new("/dev"), TargetKind::Dir, false, false)?;
    let name = path_cstring(Path::new(".sandbox-generated"))?;
    b.push(
        Step::WriteFile {
            dir: dev,
            name: name.clone(),
            contents,
        },
        format!("write the contents of {}", target.display()),
    );
    let file = b.register();
    b.push(
        Step::OpenTreeAt {
            dir: dev,
            name: name.clone(),
            out: file,
        },
        format!("open_tree the contents of {}", target.display()),
    );
    b.push(
        Step::SetMountAttrs {
            mount: file,
            set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            recursive: false,
        },
        format!("mount_setattr {}", target.display()),
    );
    let to = b.resolve(root, target, TargetKind::File, true, false)?;
    b.push(
        Step::MoveMount { from: file, to },
        format!("mount on {}", target.display()),
    );
    b.push(Step::Unlink { dir: dev, name }, "unlink the staging copy");
    b.push(Step::Close(dev), "close");
    Ok(())
}
