//! The new root: system binds, /proc, a minimal /dev, the policy's binds,
//! tmpfs and masks, mounted by fd on targets resolved beneath it.

use std::path::{Path, PathBuf};

use sandbox_policy::{FsMode, Policy};

use crate::error::{Error, Result};
use sandbox_child::{
    MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, Reg, Step,
    TargetKind,
};

use super::{Builder, path_cstring};

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
/// where the host's symlink points (as on systemd-resolved hosts), as a
/// path inside the new root.
fn resolv_conf_target() -> PathBuf {
    let path = Path::new("/etc/resolv.conf");
    match std::fs::read_link(path) {
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
        Err(_) => path.to_path_buf(),
    }
}

/// The new root's mounts. `resolv_conf` is bound read-only over the
/// sandbox's `/etc/resolv.conf` (not with `filesystem.mode = "off"`).
pub(super) fn filesystem_steps(
    b: &mut Builder,
    policy: &Policy,
    mode: FsMode,
    resolv_conf: Option<String>,
) -> Result<()> {
    let fs = &policy.filesystem;
    let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    let mut mounts: Vec<Mount> = Vec::new();
    let mut symlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    if mode == FsMode::Minimal {
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
                        attrs: ro,
                    },
                }),
                _ => {}
            }
        }
    }
    mounts.push(Mount {
        target: PathBuf::from("/proc"),
        kind: TargetKind::Dir,
        source: Source::New {
            fstype: "proc",
            options: Vec::new(),
            attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        },
    });
    if mode != FsMode::Off {
        mounts.push(Mount {
            target: PathBuf::from("/dev"),
            kind: TargetKind::Dir,
            source: Source::New {
                fstype: "tmpfs",
                options: vec![
                    ("mode".into(), Some("0755".into())),
                    ("size".into(), Some("65536".into())),
                ],
                attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
            },
        });
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
        mounts.push(Mount {
            target: PathBuf::from("/dev/pts"),
            kind: TargetKind::Dir,
            source: Source::New {
                fstype: "devpts",
                options: vec![
                    ("newinstance".into(), None),
                    ("ptmxmode".into(), Some("0666".into())),
                    ("mode".into(), Some("0620".into())),
                ],
                attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
            },
        });
        mounts.push(Mount {
            target: PathBuf::from("/dev/shm"),
            kind: TargetKind::Dir,
            source: Source::New {
                fstype: "tmpfs",
                options: vec![("mode".into(), Some("1777".into()))],
                attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            },
        });
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
    // host-readonly: the directories where the host's services keep their
    // sockets, each a fresh tmpfs (see `sockets`).
    for dir in crate::sockets::masked_host_dirs(policy, mode) {
        let sticky = dir.ends_with("tmp");
        mounts.push(Mount {
            target: dir,
            kind: TargetKind::Dir,
            source: Source::New {
                fstype: "tmpfs",
                options: vec![(
                    "mode".into(),
                    Some(if sticky { "1777" } else { "0755" }.into()),
                )],
                attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            },
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
                    ro
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
    // Parents before children, so no later mount hides an earlier one.
    mounts.sort_by_key(|m| m.target.components().count());

    // Sources first: host trees must be opened before the staging mount
    // hides anything.
    let mut sources: Vec<(Reg, Option<Reg>)> = Vec::new();
    for m in &mounts {
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
    let root = match mode {
        FsMode::Minimal => b.new_fs(
            "tmpfs",
            &[("mode".into(), Some("0755".into()))],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            Path::new("/"),
        )?,
        FsMode::HostReadonly => b.host_tree(Path::new("/"), true, ro)?,
        FsMode::Off => {
            let out = b.register();
            b.push(
                Step::OpenDir {
                    path: path_cstring(Path::new("/"))?,
                    out,
                },
                "open /",
            );
            out
        }
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
    for (m, (source, file_source)) in mounts.iter().zip(sources) {
        let optional = matches!(m.source, Source::Mask);
        let target = b.resolve(root, &m.target, m.kind, pivot && !optional, optional)?;
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
    if let (Some(text), true) = (resolv_conf, pivot) {
        generated_file(b, root, &resolv_conf_target(), text.into_bytes())?;
    }
    if pivot {
        // The minimal /dev is complete: make it read-only (its devices stay
        // writable, being devices).
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
    } else {
        b.push(Step::Close(root), "close /");
    }
    Ok(())
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
