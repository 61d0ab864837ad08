//! The sandbox's filesystem: what `filesystem.mode` and the binds, tmpfs
//! and masks this host can give ([`decide`]), and the new root's mount
//! steps ([`plan`]).

use sandbox_policy::{FsMode, Policy};

use crate::findings::{Findings, name_of};
use crate::namespaces::Namespaces;
use crate::report::Layer;

mod overlay;
pub(crate) mod plan;

/// The filesystem view a run gets, with its report lines.
pub(crate) fn decide(
    policy: &Policy,
    host: &crate::host::HostCapabilities,
    namespaces: &Namespaces,
    found: &mut Findings,
) -> FsMode {
    let fs = &policy.filesystem;
    let asked = fs.mode.unwrap_or(FsMode::Minimal);
    let mode = if namespaces.made() {
        asked
    } else {
        FsMode::Off
    };
    let has_mounts = fs.binds.as_ref().is_some_and(|v| !v.is_empty())
        || fs.tmpfs.as_ref().is_some_and(|v| !v.is_empty())
        || fs.mask.as_ref().is_some_and(|v| !v.is_empty())
        || fs.overlay.as_ref().is_some_and(|v| !v.is_empty());
    if let Some(o) = fs
        .overlay
        .iter()
        .flatten()
        .find(|o| o.upper_dir().is_none())
        && !host.overlay_tmpfs_upper.is_available()
    {
        found.down(
            Layer::Filesystem,
            format!(
                "filesystem.overlay at {} (a tmpfs upper): overlayfs in the sandbox's user namespace keeps its whiteouts and opaque directories in user.* attributes, which tmpfs here does not store ({}): deleting a lower directory would fail",
                o.target.display(),
                crate::findings::reason(&host.overlay_tmpfs_upper)
            ),
        );
    }
    if namespaces.made()
        && asked == FsMode::Off
        && fs.overlay.as_ref().is_some_and(|v| !v.is_empty())
    {
        found.down(
            Layer::Filesystem,
            "filesystem.overlay needs a root of the sandbox's own (filesystem.mode = \"off\" has none): the overlays are not mounted".to_string(),
        );
    }
    if !namespaces.made() && (asked != FsMode::Off || has_mounts) {
        found.down(
            Layer::Filesystem,
            format!(
                "filesystem.mode = \"{}\" with its binds, tmpfs and masks needs a mount namespace, and user namespaces are unusable here ({}): the host filesystem would be visible",
                name_of(&asked),
                namespaces.why_not()
            ),
        );
    }
    let mut mechanism = |text: String| found.mechanism(Layer::Filesystem, text);
    match mode {
        FsMode::Minimal => mechanism(
            "minimal root on a read-only tmpfs: system directories bound read-only, nosuid, nodev; pivot_root, old root detached".into(),
        ),
        FsMode::Rootfs => mechanism(format!(
            "the tree at {} as the root, bound recursively read-only, nosuid, nodev; pivot_root, old root detached",
            fs.root.as_deref().unwrap_or(std::path::Path::new("?")).display()
        )),
        FsMode::HostReadonly => mechanism(
            "the host's tree, bound recursively read-only, nosuid, nodev; pivot_root, old root detached".into(),
        ),
        FsMode::Off => mechanism("the host's filesystem, as the caller sees it".into()),
    }
    if !namespaces.made() {
        return mode;
    }
    mechanism("fresh /proc of the sandbox's pid namespace".into());
    if mode != FsMode::Off {
        mechanism(
            "minimal /dev (null, zero, full, random, urandom, tty, a private devpts, shm)".into(),
        );
    }
    for b in fs.binds.iter().flatten() {
        mechanism(format!(
            "{} from {} ({})",
            b.target.display(),
            b.source.display(),
            if b.writable { "writable" } else { "read-only" }
        ));
    }
    for t in fs.tmpfs.iter().flatten() {
        mechanism(format!(
            "{}: tmpfs{}",
            t.target.display(),
            t.size.map(|s| format!(" of {s}")).unwrap_or_default()
        ));
    }
    for m in fs.mask.iter().flatten() {
        mechanism(format!("{}: masked", m.display()));
    }
    for o in fs.overlay.iter().flatten() {
        mechanism(format!(
            "{}: overlay of {} (overlayfs in the sandbox's user namespace; the lower never written), writes {}",
            o.target.display(),
            o.lower.joined(" over "),
            match (o.upper_dir(), o.size) {
                (Some(dir), _) => format!("kept in {}", overlay::upper_dirs(dir).0.display()),
                (None, Some(size)) => format!("to a tmpfs of {size}, discarded after the run"),
                (None, None) => "to a tmpfs, discarded after the run".into(),
            }
        ));
    }
    mechanism("every mount target resolved beneath the new root with openat2 (no symlinks), mounted by fd".into());
    mode
}
