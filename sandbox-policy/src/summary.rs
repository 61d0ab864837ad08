//! The one-screen human summary of a policy (`Display`), as
//! `sbx policy explain` prints it.

use std::fmt::{self, Display, Formatter, Write};

use crate::model::*;

impl Display for Policy {
    /// One line per layer; unset fields show as `(inherited)`.
    ///
    /// ```
    /// let text = sandbox_policy::Policy::default().to_string();
    /// assert!(text.contains("network      none: loopback only, no way out"));
    /// assert!(text.contains("wall 30s"));
    /// ```
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "filesystem   {}", FsLine(&self.filesystem))?;
        writeln!(f, "network      {}", NetLine(&self.network))?;
        writeln!(f, "privilege    {}", PrivLine(&self.privilege))?;
        writeln!(f, "resources    {}", ResLine(&self.resources))?;
        writeln!(f, "env          {}", EnvLine(&self.env))?;
        let on = match self.on_unavailable {
            Some(OnUnavailable::Fail) => "fail: refuse to run if a layer cannot be enforced",
            Some(OnUnavailable::Degrade) => "degrade: run with what can be enforced, and report it",
            None => "(inherited)",
        };
        write!(f, "unavailable  {on}")
    }
}

const INHERITED: &str = "(inherited)";

fn opt<T: Display>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| INHERITED.to_string(), ToString::to_string)
}

fn list<T>(items: &Option<Vec<T>>, show: impl Fn(&T) -> String) -> String {
    match items {
        None => INHERITED.into(),
        Some(v) if v.is_empty() => "none".into(),
        Some(v) => v.iter().map(show).collect::<Vec<_>>().join(", "),
    }
}

struct FsLine<'a>(&'a Filesystem);
struct NetLine<'a>(&'a Network);
struct PrivLine<'a>(&'a Privilege);
struct ResLine<'a>(&'a Resources);
struct EnvLine<'a>(&'a Env);

/// Where an overlay's writes go, in words.
fn upper_words(o: &crate::Overlay) -> String {
    match (o.upper_dir(), o.size) {
        (Some(dir), _) => format!("writes kept in {}", dir.display()),
        (None, Some(size)) => format!("writes to a tmpfs of {size}, discarded"),
        (None, None) => "writes to a tmpfs, discarded".into(),
    }
}

impl Display for FsLine<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let fs = self.0;
        let rootfs;
        let mode = match fs.mode {
            Some(FsMode::Minimal) => "minimal root (system directories read-only)",
            Some(FsMode::Rootfs) => {
                let root = fs.root.as_deref().unwrap_or(std::path::Path::new("?"));
                rootfs = match &fs.root_overlay {
                    None => format!("the tree at {} as root, read-only", root.display()),
                    Some(o) => format!(
                        "the tree at {} as root, writable ({})",
                        root.display(),
                        upper_words(&o.over(root))
                    ),
                };
                &rootfs
            }
            Some(FsMode::HostReadonly) => "the host, read-only",
            Some(FsMode::Off) => "the host, unconfined",
            None => INHERITED,
        };
        let binds = list(&fs.binds, |b| {
            format!(
                "{} at {} ({}{})",
                b.source.display(),
                b.target.display(),
                if b.writable { "rw" } else { "ro" },
                if b.sockets {
                    ", its unix sockets reachable"
                } else {
                    ""
                }
            )
        });
        let tmpfs = list(&fs.tmpfs, |t| match t.size {
            Some(s) => format!("{} ({s})", t.target.display()),
            None => t.target.display().to_string(),
        });
        let mask = list(&fs.mask, |m| m.display().to_string());
        let workdir = fs
            .workdir
            .as_ref()
            .map_or_else(|| INHERITED.to_string(), |w| w.display().to_string());
        write!(
            f,
            "{mode}; binds: {binds}; tmpfs: {tmpfs}; masked: {mask}; workdir {workdir}"
        )?;
        if let Some(overlays) = fs.overlay.as_ref().filter(|o| !o.is_empty()) {
            let described: Vec<String> = overlays
                .iter()
                .map(|o| {
                    format!(
                        "{} over {} ({}{})",
                        o.target.display(),
                        o.lower.joined(" + "),
                        upper_words(o),
                        if o.copies() {
                            "; a copy where overlayfs cannot serve"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            write!(f, "; overlays: {}", described.join(", "))?;
        }
        Ok(())
    }
}

/// The fields that are set, as `inotify instances 32, …`.
fn named_values<T: Display>(fields: &[(&str, Option<T>)]) -> String {
    let set: Vec<String> = fields
        .iter()
        .filter_map(|(name, v)| {
            v.as_ref()
                .map(|v| format!("{} {v}", name.replace('_', " ")))
        })
        .collect();
    set.join(", ")
}

impl Display for NetLine<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let n = self.0;
        match n.mode {
            Some(NetMode::None) => f.write_str("none: loopback only, no way out")?,
            Some(NetMode::Host) => f.write_str("host: the host's network, unfiltered")?,
            Some(NetMode::Allowlist) => {
                write!(f, "allowlist: {}", list(&n.allow, ToString::to_string))?;
                if n.deny.as_ref().is_some_and(|d| !d.is_empty()) {
                    write!(f, "; denied: {}", list(&n.deny, ToString::to_string))?;
                }
            }
            None => f.write_str(INHERITED)?,
        }
        let yes_no = |b: Option<bool>, yes: &str, no: &str| {
            b.map_or(INHERITED.to_string(), |b| {
                if b { yes } else { no }.to_string()
            })
        };
        let dns = match (n.dns, n.dns_mode()) {
            (None, _) => INHERITED.to_string(),
            (_, DnsMode::Off) => "off".to_string(),
            (_, DnsMode::AllowedNames) => "for allowed names only".to_string(),
            (_, DnsMode::Any) => "relayed for any name (an exfiltration channel)".to_string(),
            (_, DnsMode::Auto) => "auto".to_string(),
        };
        write!(f, "; DNS {dns}")?;
        write!(
            f,
            "; metadata addresses {}",
            yes_no(n.allow_metadata, "REACHABLE", "blocked")
        )?;
        if n.mode == Some(NetMode::Allowlist) {
            let caps = named_values(&n.limits.fields());
            if !caps.is_empty() {
                write!(f, "; caps: {caps}")?;
            }
        }
        Ok(())
    }
}

impl Display for PrivLine<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let p = self.0;
        let seccomp = p.seccomp.map_or(INHERITED, |s| match s {
            SeccompMode::Default => "default (dangerous syscalls denied)",
            SeccompMode::Strict => "strict (allowlist)",
            SeccompMode::Off => "off",
        });
        let landlock = p.landlock.map_or(INHERITED, |l| match l {
            LandlockMode::Auto => "auto",
            LandlockMode::Require => "required",
            LandlockMode::Off => "off",
        });
        let nested = p
            .allow_nested_userns
            .map_or(INHERITED, |b| if b { "allowed" } else { "no" });
        let families = p
            .socket_families
            .as_ref()
            .map_or(INHERITED.to_string(), |list| {
                let mut names = vec!["unix", "inet", "inet6", "netlink (route, sock_diag)"];
                names.extend(list.iter().map(|f| f.name()));
                names.join(", ")
            });
        write!(
            f,
            "user {}; no capabilities; seccomp {seccomp}; landlock {landlock}; nested user namespaces {nested}; socket families {families}",
            opt(&p.user)
        )
    }
}

impl Display for ResLine<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let mut out = String::new();
        for (name, value) in [
            ("wall", opt(&r.wall_time)),
            ("cpu", opt(&r.cpu_time)),
            ("memory", opt(&r.memory)),
            ("output", opt(&r.max_output_bytes)),
            ("file size", opt(&r.max_file_size)),
            ("pids", opt(&r.pids)),
            ("cpu %", opt(&r.cpu)),
            ("open files", opt(&r.open_files)),
        ] {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{name} {value}");
        }
        let quotas = named_values(&r.kernel.fields());
        if !quotas.is_empty() {
            let _ = write!(out, "; kernel quotas: {quotas}");
        }
        f.write_str(&out)
    }
}

impl Display for EnvLine<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let e = self.0;
        let set = match &e.set {
            None => INHERITED.to_string(),
            Some(m) if m.is_empty() => "none".into(),
            Some(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        };
        write!(
            f,
            "passes {} (never secret-looking names); sets {set}",
            list(&e.allow, Clone::clone)
        )
    }
}
