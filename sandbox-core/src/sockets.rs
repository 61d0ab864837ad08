//! The host's unix sockets: what a sandbox could connect to.
//!
//! Connecting to a pathname unix socket needs only write permission on
//! the socket inode, which a read-only bind does not take away, and no
//! network namespace stands in the way: a socket reachable in the sandbox's
//! tree is a channel to whatever serves it (D-Bus, journald, a container
//! runtime, an agent). So:
//!
//! - a bind whose source tree holds a socket is refused unless the bind
//!   says `sockets = true` (the tree is walked when the [`Sandbox`] is
//!   made; the report lists what it found);
//! - `host-readonly` hides the host's `/run`, `/var/run`, `/tmp` and
//!   `/var/tmp` behind a fresh tmpfs each (`/dev/shm` is the sandbox's own
//!   already), unless a bind or tmpfs of the policy takes that path.
//!
//! [`Sandbox`]: crate::Sandbox

use std::path::{Path, PathBuf};

use sandbox_policy::{FsMode, Policy};

use crate::error::{Error, Result};

/// The host directories `host-readonly` replaces with a fresh tmpfs: where
/// the host's services put their sockets.
pub(crate) const HOST_SOCKET_DIRS: &[&str] = &["/run", "/var/run", "/tmp", "/var/tmp"];

/// How many entries of a bind's tree are looked at before giving up.
const SCAN_LIMIT: usize = 500_000;

/// The host directories a run of `policy` gets a fresh tmpfs over: those
/// of [`HOST_SOCKET_DIRS`] that are real directories on this host (not a
/// symlink such as `/var/run -> /run`) and that no bind or tmpfs of the
/// policy takes.
pub(crate) fn masked_host_dirs(policy: &Policy, mode: FsMode) -> Vec<PathBuf> {
    if mode != FsMode::HostReadonly {
        return Vec::new();
    }
    let fs = &policy.filesystem;
    let taken = |dir: &Path| {
        fs.binds.iter().flatten().any(|b| b.target == dir)
            || fs.tmpfs.iter().flatten().any(|t| t.target == dir)
    };
    HOST_SOCKET_DIRS
        .iter()
        .map(PathBuf::from)
        .filter(|dir| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()))
        .filter(|dir| !taken(dir))
        .collect()
}

/// The unix sockets beneath `source` (itself included), without following
/// symlinks. Directories the caller cannot read are passed over: the
/// sandbox, with no more rights than the caller, cannot reach into them
/// either.
fn sockets_beneath(source: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let mut seen = 0usize;
    let mut stack = vec![source.to_path_buf()];
    match std::fs::symlink_metadata(source) {
        Ok(m) if m.file_type().is_socket() => return Ok(vec![source.to_path_buf()]),
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", source.display())),
    }
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > SCAN_LIMIT {
                return Err(format!(
                    "more than {SCAN_LIMIT} entries beneath {}: too many to check for unix sockets",
                    source.display()
                ));
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_socket() {
                found.push(entry.path());
            } else if kind.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The sockets each bind of `policy` makes reachable, checked against the
/// policy: a bind without `sockets = true` whose tree holds one is an
/// error naming the bind and the sockets.
///
/// Returns, for each bind with `sockets = true`, its target and the
/// sockets found beneath its source.
pub(crate) fn check_binds(policy: &Policy) -> Result<Vec<(PathBuf, Vec<PathBuf>)>> {
    let mut reachable = Vec::new();
    for bind in policy.filesystem.binds.iter().flatten() {
        let refuse = |reason: String| Error::BindExposesSockets {
            bind_source: bind.source.clone(),
            bind_target: bind.target.clone(),
            reason,
        };
        let sockets = match sockets_beneath(&bind.source) {
            Ok(sockets) => sockets,
            // The bind itself fails at run time with the source's error.
            Err(_) if !bind.source.exists() => continue,
            Err(e) if !bind.sockets => {
                return Err(refuse(format!(
                    "{e}; set `sockets = true` on the bind to allow whatever sockets it holds"
                )));
            }
            Err(_) => Vec::new(),
        };
        if bind.sockets {
            reachable.push((bind.target.clone(), sockets));
        } else if !sockets.is_empty() {
            let shown: Vec<String> = sockets
                .iter()
                .take(5)
                .map(|p| p.display().to_string())
                .collect();
            return Err(refuse(format!(
                "its tree holds {} unix socket(s) ({}{}), which the sandbox could connect to; set `sockets = true` on the bind to allow that",
                sockets.len(),
                shown.join(", "),
                if sockets.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(reachable)
}

/// What the report says of the host's unix sockets for a run of `policy`.
pub(crate) fn report_lines(
    policy: &Policy,
    mode: FsMode,
    reachable: &[(PathBuf, Vec<PathBuf>)],
) -> Vec<String> {
    let mut lines = Vec::new();
    let masked = masked_host_dirs(policy, mode);
    if !masked.is_empty() {
        lines.push(format!(
            "host unix sockets: {} replaced by a fresh tmpfs each (and /dev/shm is the sandbox's own); sockets elsewhere in the host's tree stay reachable",
            masked
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (target, sockets) in reachable {
        lines.push(format!(
            "bind {} (sockets = true): {} unix socket(s) reachable when the sandbox was made{}",
            target.display(),
            sockets.len(),
            if sockets.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    sockets
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    let checked = policy
        .filesystem
        .binds
        .iter()
        .flatten()
        .filter(|b| !b.sockets)
        .count();
    if checked > 0 {
        lines.push(format!(
            "{checked} bind(s) without `sockets = true` held no unix socket when the sandbox was made (one made there later would be reachable)"
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sockets_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let _one = std::os::unix::net::UnixListener::bind(dir.path().join("a/b/s")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let _other = std::os::unix::net::UnixListener::bind(outside.path().join("o")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        assert_eq!(
            sockets_beneath(dir.path()).unwrap(),
            vec![dir.path().join("a/b/s")]
        );
        assert_eq!(
            sockets_beneath(&dir.path().join("a/b/s")).unwrap().len(),
            1,
            "a socket as the source"
        );
        assert!(sockets_beneath(outside.path().join("none").as_path()).is_err());
    }

    #[test]
    fn binds_with_sockets_are_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let _s = std::os::unix::net::UnixListener::bind(dir.path().join("agent.sock")).unwrap();
        let toml = |sockets: bool| {
            format!(
                "[filesystem]\nbinds = [{{ source = \"{}\", target = \"/w\", sockets = {sockets} }}]\n",
                dir.path().display()
            )
        };
        let refused = check_binds(&Policy::from_toml_str(&toml(false)).unwrap()).unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains("agent.sock") && text.contains("sockets = true"),
            "{text}"
        );
        let allowed = check_binds(&Policy::from_toml_str(&toml(true)).unwrap()).unwrap();
        assert_eq!(allowed.len(), 1);
        assert_eq!(allowed[0].1, vec![dir.path().join("agent.sock")]);
    }
}
