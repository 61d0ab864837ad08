//! `sbx run`'s policy flags: each is a policy field, applied on top of
//! `--profile` or `--policy`. Lists (`--bind`, `--tmpfs`, `--allow`,
//! `--deny`, `--env`, `--env-pass`) add to the base's; the rest replace
//! its value. `--tighten-only` refuses a result that grants more than the
//! base.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, ValueEnum};
use sandbox_policy::{Bind, ByteSize, Duration, Limit, NetMode, NetRule, Policy, Tmpfs, User};

/// The policy flags of `sbx run`.
#[derive(Args, Debug, Default)]
pub(crate) struct PolicyFlags {
    /// Bind a host path into the sandbox, read-only unless `:rw`
    /// (`SRC`, `SRC:DST`, `SRC:DST:rw`; repeatable).
    #[arg(long, value_name = "SRC[:DST][:rw]")]
    bind: Vec<String>,
    /// Mount a fresh tmpfs, optionally of a size (`/scratch:64MiB`;
    /// repeatable).
    #[arg(long, value_name = "DST[:SIZE]")]
    tmpfs: Vec<String>,
    /// The network: none, allowlist (only the --allow rules) or host.
    #[arg(long, value_enum, value_name = "MODE")]
    net: Option<NetChoice>,
    /// Allow egress to an address, network or port (`10.0.0.0/8`,
    /// `192.0.2.1:443`, `192.0.2.0/24:8000-8099/tcp`; repeatable). Turns a
    /// `none` network into `allowlist` unless --net says otherwise.
    #[arg(long, value_name = "RULE")]
    allow: Vec<String>,
    /// Deny egress to an address, network or port, even if allowed
    /// (repeatable).
    #[arg(long, value_name = "RULE")]
    deny: Vec<String>,
    /// Memory limit (`512MiB`, `2GiB`, `unlimited`).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Process and thread limit (a number or `unlimited`).
    #[arg(long, value_name = "N")]
    pids: Option<String>,
    /// CPU bandwidth in percent of one CPU (50 is half, 200 two).
    #[arg(long, value_name = "PCT")]
    cpu: Option<String>,
    /// Wall-clock limit (`30s`, `10m`, `unlimited`).
    #[arg(long, value_name = "DUR")]
    timeout: Option<String>,
    /// Set an environment variable (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Pass a variable of the caller's (a name, or a glob with `*`;
    /// repeatable).
    #[arg(long, value_name = "NAME")]
    env_pass: Vec<String>,
    /// The working directory inside the sandbox.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Who the command runs as: nobody, root (of the sandbox's user
    /// namespace) or a uid.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Run in an unpacked image (`sbx image unpack`): its `rootfs` as the
    /// sandbox's root (read-only), its config's Env and WorkingDir, and
    /// its Entrypoint and Cmd when no command is given.
    #[arg(long, value_name = "DIR")]
    pub(crate) image: Option<PathBuf>,
    /// With a root of one's own (--image, or `mode = "rootfs"`): make it
    /// writable, copy-on-write; writes go to a tmpfs discarded after the
    /// run (`tmpfs`) or are kept in DIR (DIR/diff; `sbx changes` takes
    /// them out).
    #[arg(long, value_name = "tmpfs|DIR")]
    root_overlay: Option<String>,
    /// Refuse flags that grant more than the base policy or profile.
    #[arg(long)]
    tighten_only: bool,
}

/// `--net`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum NetChoice {
    None,
    Allowlist,
    Host,
}

/// Which flag sets the policy field `field` (for refusals).
fn flag_of(field: &str) -> &'static str {
    const FLAGS: [(&str, &str); 16] = [
        ("filesystem.mode", "--image"),
        ("filesystem.root_overlay", "--root-overlay"),
        ("filesystem.root", "--image"),
        ("filesystem.binds", "--bind"),
        ("filesystem.tmpfs", "--tmpfs"),
        ("network.mode", "--net"),
        ("network.allow", "--allow"),
        ("network.deny", "--deny"),
        ("resources.memory", "--memory"),
        ("resources.pids", "--pids"),
        ("resources.cpu", "--cpu"),
        ("resources.wall_time", "--timeout"),
        ("env.allow", "--env-pass"),
        ("env.set", "--env"),
        ("filesystem.workdir", "--workdir"),
        ("privilege.user", "--user"),
    ];
    FLAGS
        .iter()
        .find(|(prefix, _)| field.starts_with(prefix))
        .map_or("a flag", |(_, flag)| flag)
}

/// `unlimited` or a `T`.
fn limit<T: FromStr>(flag: &str, value: &str) -> Result<Limit<T>, String>
where
    T::Err: std::fmt::Display,
{
    if value == "unlimited" {
        return Ok(Limit::Unlimited);
    }
    value
        .parse()
        .map(Limit::Max)
        .map_err(|e| format!("{flag} {value}: {e}"))
}

fn bind(value: &str) -> Result<Bind, String> {
    let bad = |why: &str| format!("--bind {value}: {why} (expected SRC, SRC:DST or SRC:DST:rw)");
    let mut parts: Vec<&str> = value.split(':').collect();
    let writable = match parts.last() {
        Some(&"rw") if parts.len() > 1 => {
            parts.pop();
            true
        }
        Some(&"ro") if parts.len() > 1 => {
            parts.pop();
            false
        }
        _ => false,
    };
    let (source, target) = match parts.as_slice() {
        [source] => (*source, *source),
        [source, target] => (*source, *target),
        _ => return Err(bad("too many ':'")),
    };
    if source.is_empty() || target.is_empty() {
        return Err(bad("an empty path"));
    }
    Ok(Bind {
        source: source.into(),
        target: target.into(),
        writable,
        sockets: false,
    })
}

fn tmpfs(value: &str) -> Result<Tmpfs, String> {
    let (target, size) = match value.split_once(':') {
        Some((target, size)) => {
            let size = ByteSize::from_str(size).map_err(|e| format!("--tmpfs {value}: {e}"))?;
            (target, Some(size))
        }
        None => (value, None),
    };
    if target.is_empty() {
        return Err(format!(
            "--tmpfs {value}: an empty path (expected DST[:SIZE])"
        ));
    }
    Ok(Tmpfs {
        target: target.into(),
        size,
    })
}

fn user(value: &str) -> Result<User, String> {
    match value {
        "nobody" => Ok(User::Nobody),
        "root" => Ok(User::Root),
        uid => uid
            .parse()
            .map(User::Uid)
            .map_err(|_| format!("--user {value}: expected nobody, root or a numeric uid")),
    }
}

fn rules(flag: &str, values: &[String]) -> Result<Vec<NetRule>, String> {
    values
        .iter()
        .map(|v| v.parse().map_err(|e| format!("{flag} {v}: {e}")))
        .collect()
}

/// Appends `more` to the list `field` (the base's, or empty).
fn extend<T>(field: &mut Option<Vec<T>>, more: impl IntoIterator<Item = T>) {
    let mut more = more.into_iter().peekable();
    if more.peek().is_some() {
        field.get_or_insert_with(Vec::new).extend(more);
    }
}

impl PolicyFlags {
    /// `base` with the flags applied (and checked: `--tighten-only`,
    /// validation).
    pub(crate) fn apply(&self, base: &Policy) -> Result<Policy, String> {
        let base = base.resolved();
        let mut p = base.clone();
        if let Some(dir) = &self.image {
            let image = sandbox_image::read_unpacked(dir)
                .map_err(|e| format!("--image {}: {e}", dir.display()))?;
            p.filesystem.mode = Some(sandbox_policy::FsMode::Rootfs);
            p.filesystem.root = Some(dir.join("rootfs"));
            if let Some(workdir) = &image.config.working_dir {
                p.filesystem.workdir = Some(PathBuf::from(workdir));
            }
            let set = p.env.set.get_or_insert_with(Default::default);
            for pair in &image.config.env {
                if let Some((name, value)) = pair.split_once('=') {
                    set.entry(name.to_string())
                        .or_insert_with(|| value.to_string());
                }
            }
        }
        let fs = &mut p.filesystem;
        if let Some(upper) = &self.root_overlay {
            fs.root_overlay = Some(sandbox_policy::RootOverlay {
                upper: Some(if upper == "tmpfs" {
                    sandbox_policy::Upper::Tmpfs(sandbox_policy::TmpfsUpper::Tmpfs)
                } else {
                    sandbox_policy::Upper::Dir(PathBuf::from(upper))
                }),
                size: None,
            });
        }
        extend(
            &mut fs.binds,
            self.bind
                .iter()
                .map(|b| bind(b))
                .collect::<Result<Vec<_>, _>>()?,
        );
        extend(
            &mut fs.tmpfs,
            self.tmpfs
                .iter()
                .map(|t| tmpfs(t))
                .collect::<Result<Vec<_>, _>>()?,
        );
        if let Some(dir) = &self.workdir {
            fs.workdir = Some(dir.clone());
        }
        let net = &mut p.network;
        match self.net {
            Some(NetChoice::None) => net.mode = Some(NetMode::None),
            Some(NetChoice::Allowlist) => net.mode = Some(NetMode::Allowlist),
            Some(NetChoice::Host) => net.mode = Some(NetMode::Host),
            None if !self.allow.is_empty() && net.mode == Some(NetMode::None) => {
                net.mode = Some(NetMode::Allowlist);
            }
            None => {}
        }
        if net.mode != Some(NetMode::Allowlist) && !(self.allow.is_empty() && self.deny.is_empty())
        {
            return Err(format!(
                "--allow/--deny: the network is {}, which has no allowlist (use --net allowlist)",
                net.mode.map_or("unset", |m| match m {
                    NetMode::None => "none",
                    NetMode::Allowlist => "allowlist",
                    NetMode::Host => "host",
                })
            ));
        }
        extend(&mut net.allow, rules("--allow", &self.allow)?);
        extend(&mut net.deny, rules("--deny", &self.deny)?);
        let res = &mut p.resources;
        if let Some(v) = &self.memory {
            res.memory = Some(limit::<ByteSize>("--memory", v)?);
        }
        if let Some(v) = &self.pids {
            res.pids = Some(limit("--pids", v)?);
        }
        if let Some(v) = &self.cpu {
            res.cpu = Some(limit("--cpu", v)?);
        }
        if let Some(v) = &self.timeout {
            res.wall_time = Some(limit::<Duration>("--timeout", v)?);
        }
        for pair in &self.env {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("--env {pair}: expected NAME=VALUE"))?;
            p.env
                .set
                .get_or_insert_with(Default::default)
                .insert(name.to_string(), value.to_string());
        }
        extend(&mut p.env.allow, self.env_pass.iter().cloned());
        if let Some(u) = &self.user {
            p.privilege.user = Some(user(u)?);
        }
        if self.tighten_only {
            let problems = p.loosenings(&base);
            if !problems.is_empty() {
                let lines: Vec<String> = problems
                    .iter()
                    .map(|problem| {
                        format!("  {} loosens the base: {problem}", flag_of(&problem.field))
                    })
                    .collect();
                return Err(format!("--tighten-only refused:\n{}", lines.join("\n")));
            }
        }
        p.validate()
            .map_err(|e| format!("the policy with the flags applied: {e}"))?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn flags(args: &[&str]) -> PolicyFlags {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            flags: PolicyFlags,
        }
        let mut argv = vec!["sbx"];
        argv.extend_from_slice(args);
        Wrap::try_parse_from(argv).unwrap().flags
    }

    fn applied(args: &[&str]) -> Result<Policy, String> {
        flags(args).apply(&Policy::default())
    }

    #[test]
    fn each_flag_sets_its_field_and_lists_add_to_the_base() {
        let p = applied(&[
            "--bind",
            "/usr/share:/data",
            "--bind",
            "/srv:/srv:rw",
            "--tmpfs",
            "/scratch:64MiB",
            "--allow",
            "192.0.2.1:443",
            "--deny",
            "192.0.2.0/24",
            "--memory",
            "256MiB",
            "--pids",
            "64",
            "--cpu",
            "50",
            "--timeout",
            "30s",
            "--env",
            "A=b=c",
            "--env-pass",
            "LANG",
            "--workdir",
            "/srv",
            "--user",
            "1000",
        ])
        .unwrap();
        let base = Policy::default().resolved();
        let binds = p.filesystem.binds.unwrap();
        assert_eq!(
            binds.len(),
            base.filesystem.binds.clone().unwrap_or_default().len() + 2
        );
        let data = binds
            .iter()
            .find(|b| b.target == std::path::Path::new("/data"))
            .unwrap();
        assert_eq!(data.source, std::path::Path::new("/usr/share"));
        assert!(!data.writable);
        assert!(
            binds
                .iter()
                .any(|b| b.target == std::path::Path::new("/srv") && b.writable)
        );
        let tmpfs = p.filesystem.tmpfs.unwrap();
        assert!(
            tmpfs
                .iter()
                .any(|t| t.target == std::path::Path::new("/scratch")
                    && t.size == Some("64MiB".parse().unwrap()))
        );
        assert_eq!(
            p.network.mode,
            Some(NetMode::Allowlist),
            "--allow opens a none network"
        );
        assert_eq!(
            p.network.allow.unwrap(),
            vec!["192.0.2.1:443".parse::<NetRule>().unwrap()]
        );
        assert_eq!(p.network.deny.unwrap().len(), 1);
        assert_eq!(
            p.resources.memory,
            Some(Limit::Max("256MiB".parse().unwrap()))
        );
        assert_eq!(p.resources.pids, Some(Limit::Max(64)));
        assert_eq!(p.resources.cpu, Some(Limit::Max(50)));
        assert_eq!(
            p.resources.wall_time,
            Some(Limit::Max("30s".parse().unwrap()))
        );
        assert_eq!(p.env.set.unwrap().get("A").map(String::as_str), Some("b=c"));
        assert!(p.env.allow.unwrap().contains(&"LANG".to_string()));
        assert_eq!(p.filesystem.workdir, Some("/srv".into()));
        assert_eq!(p.privilege.user, Some(User::Uid(1000)));
        // No flag: the base, resolved.
        assert_eq!(applied(&[]).unwrap(), base);
    }

    #[test]
    fn a_bad_value_is_refused_naming_the_flag_and_the_value() {
        for (args, needle) in [
            (&["--memory", "12XB"][..], "--memory 12XB"),
            (&["--pids", "many"], "--pids many"),
            (&["--timeout", "soon"], "--timeout soon"),
            (&["--allow", "example"], "--allow example"),
            (&["--net", "host", "--allow", "10.0.0.1"], "--allow/--deny"),
            (&["--bind", "/a:/b:/c:rw"], "--bind /a:/b:/c:rw"),
            (&["--bind", "relative"], "the policy with the flags applied"),
            (&["--tmpfs", "/t:big"], "--tmpfs /t:big"),
            (&["--env", "NOVALUE"], "--env NOVALUE"),
            (&["--user", "alice"], "--user alice"),
        ] {
            let err = applied(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn tighten_only_refuses_what_loosens_and_takes_what_tightens() {
        let err =
            applied(&["--tighten-only", "--memory", "unlimited", "--net", "host"]).unwrap_err();
        assert!(
            err.contains("--memory loosens") && err.contains("--net loosens"),
            "{err}"
        );
        let err = applied(&["--tighten-only", "--bind", "/srv"]).unwrap_err();
        assert!(err.contains("--bind loosens"), "{err}");
        // Control: tighter values pass, and the same loosening flags pass
        // without --tighten-only.
        let tight = applied(&["--tighten-only", "--memory", "64MiB", "--timeout", "5s"]).unwrap();
        assert_eq!(
            tight.resources.memory,
            Some(Limit::Max("64MiB".parse().unwrap()))
        );
        assert!(applied(&["--memory", "unlimited", "--net", "host", "--bind", "/srv"]).is_ok());
    }
}
