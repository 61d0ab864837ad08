//! "At least as strict as": a partial order on policies, and the
//! tighten-only merge built on it.
//!
//! Policies are compared resolved (unset fields read as the `default`
//! profile's). `a` is at least as strict as `b` when, field by field, `a`
//! grants no more than `b`:
//!
//! | field | stricter is |
//! |---|---|
//! | `filesystem.mode` | `minimal` < `rootfs` < `host-readonly` < `off`; and `minimal` is looser than `rootfs` (it shows the host's system directories) |
//! | `filesystem.root` | the same tree |
//! | `filesystem.root_overlay` | none (a read-only root); or the base has one too, and `a`'s upper is a tmpfs or the base's upper directory |
//! | `filesystem.binds` | each of `a`'s binds is one of `b`'s (same source and target), writable or with `sockets` only if `b`'s is |
//! | `filesystem.tmpfs` | each of `a`'s tmpfs targets is one of `b`'s, no larger |
//! | `filesystem.mask` | `a` masks every path `b` masks |
//! | `filesystem.overlay` | each of `a`'s overlays is one of `b`'s (same lowers and target), with a tmpfs upper or `b`'s upper directory |
//! | `network.mode` | `none` < `allowlist` < `host` |
//! | `network.allow` | (allowlist) each of `a`'s rules is covered by one of `b`'s |
//! | `network.deny` | (allowlist) each of `b`'s rules is covered by one of `a`'s |
//! | `network.dns` (as in effect: `auto` read as what it resolves to) | `off` < `allowed-names` < `any` |
//! | `network.allow_metadata`, `privilege.allow_nested_userns` | `false` < `true` |
//! | `privilege.user` | any other user < `root` |
//! | `privilege.seccomp` | `strict` < `default` < `off` |
//! | `privilege.socket_families` | each of `a`'s families is one of `b`'s |
//! | `privilege.landlock` | `require` < `auto` < `off` |
//! | `resources.*`, `network.limits.*` | a smaller limit; `unlimited` is the largest |
//! | `env.allow` | each of `a`'s globs is matched by one of `b`'s (so it passes no more names) |
//! | `on_unavailable` | `fail` < `degrade` |
//!
//! `filesystem.workdir` and `env.set` do not grant anything and are not
//! compared. Each row is reflexive and transitive, so the whole order is.
//! The `network.deny` row is conservative: a stricter allowlist that no
//! longer reaches a denied range must still repeat the deny rule.

use crate::ByteSize;
use crate::env::glob_matches;
use crate::error::{Error, Problem};
use crate::model::*;

impl Policy {
    /// Whether this policy grants no more than `other`, field by field (see
    /// the module's table). Reflexive and transitive; two policies may be
    /// incomparable.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_policy::Policy;
    ///
    /// let strict = Policy::profile("strict")?;
    /// let networked = Policy::profile("networked")?;
    /// assert!(strict.is_at_least_as_strict_as(&Policy::default()));
    /// assert!(!networked.is_at_least_as_strict_as(&Policy::default()));
    /// assert!(strict.is_at_least_as_strict_as(&networked));
    ///
    /// // More memory, but /home masked: incomparable with `strict`.
    /// let odd = Policy::from_toml_str("[resources]\nmemory = \"1GiB\"\n[filesystem]\nmask = [\"/home\"]\n")?;
    /// assert!(!odd.is_at_least_as_strict_as(&strict) && !strict.is_at_least_as_strict_as(&odd));
    /// # Ok::<(), sandbox_policy::Error>(())
    /// ```
    pub fn is_at_least_as_strict_as(&self, other: &Policy) -> bool {
        self.loosenings(other).is_empty()
    }

    /// Every field in which this policy grants more than `other`, with how.
    pub fn loosenings(&self, other: &Policy) -> Vec<Problem> {
        let (a, b) = (self.resolved(), other.resolved());
        let mut out = Vec::new();
        let mut check = |field: &str, looser: bool, how: String| {
            if looser {
                out.push(Problem::new(field, how));
            }
        };
        let (fa, fb) = (&a.filesystem, &b.filesystem);
        // A root of the caller's hides the host's system directories that
        // `minimal` shows: `minimal` is looser than it, not stricter.
        let minimal_for_rootfs =
            fa.mode == Some(crate::FsMode::Minimal) && fb.mode == Some(crate::FsMode::Rootfs);
        check(
            "filesystem.mode",
            looser(fa.mode, fb.mode) || minimal_for_rootfs,
            format!("{} is looser than {}", show(&fa.mode), show(&fb.mode)),
        );
        check(
            "filesystem.root",
            // (Under a ceiling of the host's tree, any tree of it is less.)
            fa.mode == Some(crate::FsMode::Rootfs)
                && fb.mode == Some(crate::FsMode::Rootfs)
                && fa.root != fb.root,
            format!("{} is another tree than {}", show(&fa.root), show(&fb.root)),
        );
        for bind in fa.binds.iter().flatten() {
            let ok = fb.binds.iter().flatten().any(|c| {
                c.source == bind.source
                    && c.target == bind.target
                    && (c.writable || !bind.writable)
                    && (c.sockets || !bind.sockets)
            });
            check(
                "filesystem.binds",
                !ok,
                format!(
                    "{} -> {}{}{} is not granted by the base",
                    bind.source.display(),
                    bind.target.display(),
                    if bind.writable { " (writable)" } else { "" },
                    if bind.sockets { " (sockets)" } else { "" }
                ),
            );
        }
        for t in fa.tmpfs.iter().flatten() {
            let ok = fb
                .tmpfs
                .iter()
                .flatten()
                .any(|c| c.target == t.target && size_le(t.size, c.size));
            check(
                "filesystem.tmpfs",
                !ok,
                format!(
                    "{} is not granted by the base at that size",
                    t.target.display()
                ),
            );
        }
        for m in fb.mask.iter().flatten() {
            let ok = fa.mask.iter().flatten().any(|x| x == m);
            check(
                "filesystem.mask",
                !ok,
                format!("{} is masked by the base but not here", m.display()),
            );
        }
        for o in fa.overlay.iter().flatten() {
            let ok = fb
                .overlay
                .iter()
                .flatten()
                .any(|c| c.lower == o.lower && c.target == o.target && upper_no_looser(o, c));
            check(
                "filesystem.overlay",
                !ok,
                format!(
                    "an overlay of {} at {} the base does not have",
                    o.lower
                        .paths()
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":"),
                    o.target.display()
                ),
            );
        }
        if let (Some(mine), Some(root)) = (&fa.root_overlay, &fa.root) {
            let ok = match (&fb.root_overlay, &fb.root) {
                (Some(base), Some(base_root)) => {
                    upper_no_looser(&mine.over(root), &base.over(base_root))
                }
                _ => false,
            };
            check(
                "filesystem.root_overlay",
                !ok,
                "a writable root (or its upper) the base does not grant".to_string(),
            );
        }
        let (na, nb) = (&a.network, &b.network);
        check(
            "network.mode",
            looser(na.mode, nb.mode),
            format!("{} is looser than {}", show(&na.mode), show(&nb.mode)),
        );
        if na.mode == Some(NetMode::Allowlist) {
            for rule in na.allow.iter().flatten() {
                let ok = nb.mode == Some(NetMode::Host)
                    || nb.allow.iter().flatten().any(|c| c.covers(rule));
                check(
                    "network.allow",
                    !ok,
                    format!("{rule} is not covered by the base's allow rules"),
                );
            }
            if nb.mode == Some(NetMode::Allowlist) {
                for rule in nb.deny.iter().flatten() {
                    let ok = na.deny.iter().flatten().any(|c| c.covers(rule));
                    check(
                        "network.deny",
                        !ok,
                        format!("the base denies {rule}, this does not"),
                    );
                }
            }
        }
        check(
            "network.dns",
            na.dns_mode() > nb.dns_mode(),
            format!("DNS is {}, the base's is {}", na.dns_mode(), nb.dns_mode()),
        );
        check(
            "network.allow_metadata",
            flag(na.allow_metadata) && !flag(nb.allow_metadata),
            "metadata addresses are reachable, the base blocks them".into(),
        );
        for ((name, la), (_, lb)) in na.limits.fields().into_iter().zip(nb.limits.fields()) {
            limit(
                &mut check,
                &format!("network.limits.{name}"),
                la.map(Limit::Max),
                lb.map(Limit::Max),
            );
        }
        let (pa, pb) = (&a.privilege, &b.privilege);
        check(
            "privilege.user",
            is_root(pa.user) && !is_root(pb.user),
            format!("{} is looser than {}", show(&pa.user), show(&pb.user)),
        );
        check(
            "privilege.seccomp",
            looser(pa.seccomp, pb.seccomp),
            format!("{} is weaker than {}", show(&pa.seccomp), show(&pb.seccomp)),
        );
        check(
            "privilege.landlock",
            looser(pa.landlock, pb.landlock),
            format!(
                "{} is weaker than {}",
                show(&pa.landlock),
                show(&pb.landlock)
            ),
        );
        let families = |p: &Privilege| p.socket_families.clone().unwrap_or_default();
        let extra: Vec<&str> = families(pa)
            .into_iter()
            .filter(|f| !families(pb).contains(f))
            .map(SocketFamily::name)
            .collect();
        check(
            "privilege.socket_families",
            !extra.is_empty(),
            format!(
                "allows socket families the base does not: {}",
                extra.join(", ")
            ),
        );
        check(
            "privilege.allow_nested_userns",
            flag(pa.allow_nested_userns) && !flag(pb.allow_nested_userns),
            "nested user namespaces are allowed, the base forbids them".into(),
        );
        let (ra, rb) = (&a.resources, &b.resources);
        limit(
            &mut check,
            "resources.wall_time",
            ra.wall_time,
            rb.wall_time,
        );
        limit(&mut check, "resources.cpu_time", ra.cpu_time, rb.cpu_time);
        limit(&mut check, "resources.memory", ra.memory, rb.memory);
        limit(
            &mut check,
            "resources.max_output_bytes",
            ra.max_output_bytes,
            rb.max_output_bytes,
        );
        limit(
            &mut check,
            "resources.max_file_size",
            ra.max_file_size,
            rb.max_file_size,
        );
        limit(&mut check, "resources.pids", ra.pids, rb.pids);
        limit(&mut check, "resources.cpu", ra.cpu, rb.cpu);
        for ((name, qa), (_, qb)) in ra.kernel.fields().into_iter().zip(rb.kernel.fields()) {
            limit(&mut check, &format!("resources.kernel.{name}"), qa, qb);
        }
        limit(
            &mut check,
            "resources.open_files",
            ra.open_files,
            rb.open_files,
        );
        for glob in a.env.allow.iter().flatten() {
            let ok = b.env.allow.iter().flatten().any(|c| glob_matches(c, glob));
            check(
                "env.allow",
                !ok,
                format!("{glob} passes names the base does not"),
            );
        }
        check(
            "on_unavailable",
            looser(a.on_unavailable, b.on_unavailable),
            "degrade is looser than fail".into(),
        );
        out
    }

    /// `self.merge(over)`, refused if the result would grant anything this
    /// policy does not: an organisation's ceiling, and a job that may only
    /// ask for less.
    ///
    /// # Errors
    ///
    /// [`Error::Loosens`] listing every field the override would loosen.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_policy::{Error, Policy};
    ///
    /// let ceiling = Policy::default();
    /// let job = Policy::from_toml_str("[resources]\nwall_time = \"10s\"\n")?;
    /// assert!(ceiling.merge_tighten_only(&job).is_ok());
    ///
    /// let greedy = Policy::from_toml_str("[network]\nmode = \"host\"\n[resources]\npids = 4096\n")?;
    /// let err = ceiling.merge_tighten_only(&greedy).unwrap_err();
    /// assert_eq!(err.problems().len(), 2);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn merge_tighten_only(&self, over: &Policy) -> Result<Policy, Error> {
        let merged = self.merge(over);
        let problems = merged.loosenings(self);
        if problems.is_empty() {
            Ok(merged)
        } else {
            Err(Error::Loosens { problems })
        }
    }
}

fn limit<T: PartialOrd + std::fmt::Display + Copy>(
    check: &mut impl FnMut(&str, bool, String),
    field: &str,
    a: Option<Limit<T>>,
    b: Option<Limit<T>>,
) {
    let looser = match (a, b) {
        (Some(Limit::Unlimited) | None, Some(Limit::Max(_))) => true,
        (Some(Limit::Max(x)), Some(Limit::Max(y))) => x > y,
        _ => false,
    };
    let show = |l: Option<Limit<T>>| l.map_or_else(|| "unset".to_string(), |l| l.to_string());
    check(
        field,
        looser,
        format!("{} is higher than {}", show(a), show(b)),
    );
}

fn size_le(a: Option<crate::ByteSize>, b: Option<crate::ByteSize>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(x), Some(y)) => x <= y,
    }
}

fn flag(b: Option<bool>) -> bool {
    b.unwrap_or(false)
}

/// Whether overlay `o`'s upper grants no more than `c`'s: a tmpfs upper
/// keeps nothing, so it is no more than a directory upper, and no larger
/// than the base's tmpfs.
fn upper_no_looser(o: &crate::Overlay, c: &crate::Overlay) -> bool {
    match (o.upper_dir(), c.upper_dir()) {
        (Some(mine), Some(base)) => mine == base,
        (Some(_), None) => false,
        (None, Some(_)) => true,
        (None, None) => {
            o.size.map_or(u64::MAX, ByteSize::bytes) <= c.size.map_or(u64::MAX, ByteSize::bytes)
        }
    }
}

fn is_root(u: Option<User>) -> bool {
    matches!(u, Some(User::Root | User::Uid(0)))
}

/// Whether `a` is looser than `b` in an enum declared strictest first.
/// (Both are set in resolved policies; unset counts as loosest.)
fn looser<T: Ord>(a: Option<T>, b: Option<T>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a > b,
        (None, Some(_)) => true,
        _ => false,
    }
}

/// A field's value as written in a policy, for messages.
fn show<T: serde::Serialize>(value: &Option<T>) -> String {
    match value {
        None => "unset".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| "?".into()),
    }
}
