//! Semantic validation: every problem of a well-formed policy, collected in
//! one error.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Problem};
use crate::model::{DnsMode, FsMode, KernelQuotas, Limit, NetLimits, NetMode, Policy};
use crate::units::ByteSize;

/// The smallest memory limit a run can live with.
const MIN_MEMORY: ByteSize = ByteSize::mib(1);

/// The largest `resources.cpu`: 1024 CPUs.
const MAX_CPU_PERCENT: u32 = 102_400;

impl Policy {
    /// Checks what parsing cannot: absolute and distinct mount targets,
    /// sensible limits, rules that fit the network mode, valid variable
    /// names. Every problem is reported, not only the first.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] with the list of problems.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        self.check_filesystem(&mut problems);
        self.check_network(&mut problems);
        self.check_resources(&mut problems);
        self.check_env(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid { problems })
        }
    }

    fn check_filesystem<'a>(&'a self, problems: &mut Vec<Problem>) {
        let fs = &self.filesystem;
        // Every mount target, by normalized path, with the field naming it.
        let mut targets: BTreeMap<&'a Path, String> = BTreeMap::new();
        let mut target = |field: String, path: &'a Path, problems: &mut Vec<Problem>| {
            if let Some(why) = not_clean_absolute(path) {
                problems.push(Problem::new(field, format!("{path:?} {why}")));
            } else if path == Path::new("/") {
                problems.push(Problem::new(
                    field,
                    "\"/\" is the sandbox's root: choose it with filesystem.mode",
                ));
            } else if let Some(first) = targets.get(path) {
                problems.push(Problem::new(
                    field,
                    format!("{path:?} is already a target ({first})"),
                ));
            } else {
                targets.insert(path, field);
            }
        };
        for (i, bind) in fs.binds.iter().flatten().enumerate() {
            if let Some(why) = not_clean_absolute(&bind.source) {
                problems.push(Problem::new(
                    format!("filesystem.binds[{i}].source"),
                    format!("{:?} {why}", bind.source),
                ));
            }
            target(
                format!("filesystem.binds[{i}].target"),
                &bind.target,
                problems,
            );
        }
        for (i, tmpfs) in fs.tmpfs.iter().flatten().enumerate() {
            target(
                format!("filesystem.tmpfs[{i}].target"),
                &tmpfs.target,
                problems,
            );
            if tmpfs.size.is_some_and(|s| s.bytes() < 4096) {
                problems.push(Problem::new(
                    format!("filesystem.tmpfs[{i}].size"),
                    "must be at least 4KiB",
                ));
            }
        }
        for (i, o) in fs.overlay.iter().flatten().enumerate() {
            let prefix = format!("filesystem.overlay[{i}]");
            target(format!("{prefix}.target"), &o.target, problems);
            overlay_problems(&prefix, o, problems);
        }
        if let Some(root_overlay) = &fs.root_overlay {
            match (&fs.mode, &fs.root) {
                (Some(FsMode::Rootfs), Some(root)) => {
                    overlay_problems(
                        "filesystem.root_overlay",
                        &root_overlay.over(root),
                        problems,
                    );
                }
                _ => problems.push(Problem::new(
                    "filesystem.root_overlay",
                    "a root overlay is only used with mode = \"rootfs\" and a root",
                )),
            }
        }
        // Overlays are mounted after the other mounts: one beneath an
        // overlay's target would be hidden by it.
        let overlay_targets: Vec<&Path> = fs
            .overlay
            .iter()
            .flatten()
            .map(|o| o.target.as_path())
            .collect();
        let others = fs
            .binds
            .iter()
            .flatten()
            .map(|b| b.target.as_path())
            .chain(fs.tmpfs.iter().flatten().map(|t| t.target.as_path()))
            .chain(fs.mask.iter().flatten().map(PathBuf::as_path))
            .chain(overlay_targets.iter().copied());
        for inner in others {
            if let Some(outer) = overlay_targets
                .iter()
                .find(|o| inner != **o && inner.starts_with(o))
            {
                problems.push(Problem::new(
                    "filesystem.overlay",
                    format!("{inner:?} is beneath the overlay at {outer:?}, which would hide it"),
                ));
            }
        }
        for (i, mask) in fs.mask.iter().flatten().enumerate() {
            target(format!("filesystem.mask[{i}]"), mask, problems);
        }
        match (&fs.mode, &fs.root) {
            (Some(FsMode::Rootfs), None) => problems.push(Problem::new(
                "filesystem.root",
                "mode = \"rootfs\" needs the root: a host directory",
            )),
            (Some(FsMode::Rootfs), Some(root)) => {
                if let Some(why) = not_clean_absolute(root) {
                    problems.push(Problem::new("filesystem.root", format!("{root:?} {why}")));
                } else if root == Path::new("/") {
                    problems.push(Problem::new(
                        "filesystem.root",
                        "\"/\" is the host's root: use mode = \"host-readonly\"",
                    ));
                }
            }
            (_, Some(_)) => problems.push(Problem::new(
                "filesystem.root",
                "a root is only used with mode = \"rootfs\"",
            )),
            (_, None) => {}
        }
        if let Some(workdir) = &fs.workdir
            && let Some(why) = not_clean_absolute(workdir)
        {
            problems.push(Problem::new(
                "filesystem.workdir",
                format!("{workdir:?} {why}"),
            ));
        }
    }

    fn check_network(&self, problems: &mut Vec<Problem>) {
        let net = &self.network;
        let has_allow = net.allow.as_ref().is_some_and(|a| !a.is_empty());
        let has_deny = net.deny.as_ref().is_some_and(|d| !d.is_empty());
        match net.mode {
            Some(NetMode::None) if has_allow => problems.push(Problem::new(
                "network.allow",
                "allow rules need network.mode = \"allowlist\" (the mode is \"none\": nothing leaves the sandbox)",
            )),
            Some(NetMode::Host) if has_allow || has_deny => problems.push(Problem::new(
                if has_allow { "network.allow" } else { "network.deny" },
                "rules need network.mode = \"allowlist\" (the mode is \"host\", which is not filtered)",
            )),
            _ => {}
        }
        let dns_on = matches!(net.dns, Some(DnsMode::AllowedNames | DnsMode::Any));
        if dns_on && net.mode == Some(NetMode::None) {
            problems.push(Problem::new(
                "network.dns",
                "DNS needs network.mode = \"allowlist\" (the mode is \"none\")",
            ));
        }
        if net.dns == Some(DnsMode::Off) && net.has_host_rules() {
            problems.push(Problem::new(
                "network.dns",
                "allow rules that name hosts need DNS (\"allowed-names\" or \"auto\", not \"off\"): their addresses come from the answers",
            ));
        }
        for (name, cap) in net.limits.fields() {
            let max = if name == "new_flows_per_second" {
                NetLimits::MAX_RATE
            } else {
                NetLimits::MAX_FLOWS
            };
            match cap {
                Some(0) => problems.push(Problem::new(
                    format!("network.limits.{name}"),
                    "must be at least 1 (0 would refuse every flow: use network.mode = \"none\")",
                )),
                Some(n) if n > max => problems.push(Problem::new(
                    format!("network.limits.{name}"),
                    format!("{n} is above {max}, the most one sandbox may hold"),
                )),
                _ => {}
            }
        }
    }

    fn check_resources(&self, problems: &mut Vec<Problem>) {
        let r = &self.resources;
        for (field, limit) in [
            ("resources.wall_time", &r.wall_time),
            ("resources.cpu_time", &r.cpu_time),
        ] {
            if let Some(Limit::Max(d)) = limit
                && d.as_millis() == 0
            {
                problems.push(Problem::new(
                    field,
                    "must be more than 0s (or \"unlimited\")",
                ));
            }
        }
        if let Some(Limit::Max(m)) = r.memory
            && m < MIN_MEMORY
        {
            problems.push(Problem::new(
                "resources.memory",
                format!("{m} is below the minimum of {MIN_MEMORY}"),
            ));
        }
        if let Some(Limit::Max(n)) = r.cpu
            && !(1..=MAX_CPU_PERCENT).contains(&n)
        {
            problems.push(Problem::new(
                "resources.cpu",
                format!(
                    "{n}: a percentage of one CPU from 1 to {MAX_CPU_PERCENT} (or \"unlimited\")"
                ),
            ));
        }
        if let Some(Limit::Max(0)) = r.pids {
            problems.push(Problem::new(
                "resources.pids",
                "must be at least 1 (or \"unlimited\")",
            ));
        }
        for (name, quota) in r.kernel.fields() {
            if let Some(Limit::Max(n)) = quota
                && n > KernelQuotas::MAX
            {
                problems.push(Problem::new(
                    format!("resources.kernel.{name}"),
                    format!("{n} is above {} (the kernel's limit)", KernelQuotas::MAX),
                ));
            }
        }
        if let Some(Limit::Max(n)) = r.open_files
            && n < 3
        {
            problems.push(Problem::new(
                "resources.open_files",
                format!("{n} is below 3: stdin, stdout and stderr need fds"),
            ));
        }
    }

    fn check_env(&self, problems: &mut Vec<Problem>) {
        for (i, glob) in self.env.allow.iter().flatten().enumerate() {
            if glob.is_empty()
                || !glob
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'*')
            {
                problems.push(Problem::new(
                    format!("env.allow[{i}]"),
                    format!(
                        "{glob:?} is not a variable name or glob (letters, digits, '_' and '*')"
                    ),
                ));
            } else if !glob.contains('*') && crate::env::looks_secret(glob) {
                problems.push(Problem::new(
                    format!("env.allow[{i}]"),
                    format!("{glob:?} looks like a secret and is never passed through; give its value in env.set"),
                ));
            }
        }
        for (name, value) in self.env.set.iter().flatten() {
            if !crate::env::is_valid_name(name) {
                problems.push(Problem::new(
                    format!("env.set.{name}"),
                    "is not a valid variable name (letters, digits and '_', not starting with a digit)",
                ));
            }
            if value.contains('\0') {
                problems.push(Problem::new(
                    format!("env.set.{name}"),
                    "the value contains a NUL byte",
                ));
            }
        }
    }
}

/// Why `path` is not a clean absolute path, if it is not one.
fn not_clean_absolute(path: &Path) -> Option<&'static str> {
    if !path.is_absolute() {
        return Some("is not an absolute path");
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Some("must not contain `.` or `..` components");
    }
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Some("contains a NUL byte");
    }
    None
}

/// The problems of one overlay's layers and upper; `prefix` names it.
fn overlay_problems(prefix: &str, o: &crate::Overlay, problems: &mut Vec<Problem>) {
    let field = |what: &str| format!("{prefix}.{what}");
    // overlayfs takes its layers as one option string.
    let host_path = |field: String, path: &Path, problems: &mut Vec<Problem>| {
        if let Some(why) = not_clean_absolute(path) {
            problems.push(Problem::new(field, format!("{path:?} {why}")));
        } else if path.to_string_lossy().contains([',', ':', '\\']) {
            problems.push(Problem::new(
                field,
                format!("{path:?}: overlayfs cannot name a path with ',', ':' or '\\'"),
            ));
        }
    };
    let lowers = o.lower.paths();
    if lowers.is_empty() || lowers.len() > 64 {
        problems.push(Problem::new(field("lower"), "1 to 64 trees"));
    }
    for lower in lowers {
        host_path(field("lower"), lower, problems);
    }
    if let Some(upper) = o.upper_dir() {
        host_path(field("upper"), upper, problems);
        if let Some(lower) = lowers
            .iter()
            .find(|l| upper.starts_with(l) || l.starts_with(upper))
        {
            problems.push(Problem::new(
                field("upper"),
                format!("{upper:?} overlaps the lower {lower:?}: writes would change it"),
            ));
        }
        if o.size.is_some() {
            problems.push(Problem::new(
                field("size"),
                "a size is for a tmpfs upper (this upper is a directory)",
            ));
        }
        if o.copies() {
            problems.push(Problem::new(
                field("fallback"),
                "a copy is for a tmpfs upper (this upper is a directory)",
            ));
        }
    }
    if o.size.is_some_and(|s| s.bytes() < 4096) {
        problems.push(Problem::new(field("size"), "must be at least 4KiB"));
    }
}
