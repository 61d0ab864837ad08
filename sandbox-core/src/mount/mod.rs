//! The sandbox's filesystem: what `filesystem.mode` and the binds, tmpfs
//! and masks this host can give ([`decide`]), and the new root's mount
//! steps ([`plan`]).

use sandbox_policy::{FsMode, Policy};

use crate::findings::{Findings, name_of};
use crate::namespaces::Namespaces;
use crate::report::Layer;

mod overlay;
pub(crate) mod plan;

/// The root overlay (`filesystem.root_overlay` over `filesystem.root`),
/// if the run has one: only with `mode = "rootfs"`.
pub(crate) fn root_overlay(policy: &Policy, mode: FsMode) -> Option<sandbox_policy::Overlay> {
    let fs = &policy.filesystem;
    match (mode, &fs.root, &fs.root_overlay) {
        (FsMode::Rootfs, Some(root), Some(o)) => Some(o.over(root)),
        _ => None,
    }
}

/// Every overlay a run with `mode` mounts: the root overlay first, then
/// `filesystem.overlay` (none without a root of the sandbox's own).
pub(crate) fn overlays(policy: &Policy, mode: FsMode) -> Vec<sandbox_policy::Overlay> {
    if mode == FsMode::Off {
        return Vec::new();
    }
    root_overlay(policy, mode)
        .into_iter()
        .chain(policy.filesystem.overlay.iter().flatten().cloned())
        .collect()
}

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
    let copy = !host.overlay_tmpfs_upper.is_available();
    if let Some(o) = overlays(policy, mode)
        .iter()
        .find(|o| o.upper_dir().is_none() && !o.copies())
        && copy
    {
        found.down(
            Layer::Filesystem,
            format!(
                "{} at {} (a tmpfs upper): overlayfs in the sandbox's user namespace keeps its whiteouts and opaque directories in user.* attributes, which tmpfs here does not store ({}): deleting a lower directory would fail",
                if o.target == std::path::Path::new("/") {
                    "filesystem.root_overlay"
                } else {
                    "filesystem.overlay"
                },
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
        FsMode::Rootfs => mechanism(match root_overlay(policy, mode) {
            None => format!(
                "the tree at {} as the root, bound recursively read-only, nosuid, nodev; pivot_root, old root detached",
                fs.root.as_deref().unwrap_or(std::path::Path::new("?")).display()
            ),
            Some(o) => format!(
                "the tree at {} as the root, writable through an overlay (overlayfs in the sandbox's user namespace; the tree never written), nosuid, nodev, writes {}; pivot_root, old root detached",
                o.lower.joined(":"),
                writes(&o)
            ),
        }),
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
        mechanism(if copy && o.copies() {
            format!(
                "{}: a copy of {} in a tmpfs{} (fallback = \"copy\": overlayfs cannot take a tmpfs upper here, {}); the lower never written, writes discarded after the run, the copy's files the sandbox user's",
                o.target.display(),
                o.lower.joined(" over "),
                o.size.map(|s| format!(" of {s}")).unwrap_or_default(),
                crate::findings::reason(&host.overlay_tmpfs_upper)
            )
        } else {
            format!(
                "{}: overlay of {} (overlayfs in the sandbox's user namespace; the lower never written), writes {}",
                o.target.display(),
                o.lower.joined(" over "),
                writes(o)
            )
        });
    }
    mechanism("every mount target resolved beneath the new root with openat2 (no symlinks), mounted by fd".into());
    mode
}

/// Where an overlay's writes go, for the report.
fn writes(o: &sandbox_policy::Overlay) -> String {
    match (o.upper_dir(), o.size) {
        (Some(dir), _) => format!("kept in {}", overlay::upper_dirs(dir).0.display()),
        (None, Some(size)) => format!("to a tmpfs of {size}, discarded after the run"),
        (None, None) => "to a tmpfs, discarded after the run".into(),
    }
}
