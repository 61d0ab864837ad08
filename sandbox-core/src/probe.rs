//! What this host can enforce, found by trying (not guessed from sysctls),
//! once per process.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::cgroups::{self, CgroupPlacement, CgroupSupport, UnifiedHierarchy, V1Hierarchy};
use crate::host::{Capability, HostCapabilities};
use sandbox_child::{Step, StepFailure, Trial};

use crate::sys;

/// Probes the host once and caches the result for the life of the process.
///
/// # Examples
///
/// ```
/// let host = sandbox_core::probe();
/// println!("kernel {}, user namespaces: {:?}", host.kernel, host.user_namespaces);
/// ```
pub fn probe() -> &'static HostCapabilities {
    host_cell().get_or_init(probe_now)
}

/// The process's probe result (see `probe_cache` for the other way in).
pub(crate) fn host_cell() -> &'static OnceLock<HostCapabilities> {
    static HOST: OnceLock<HostCapabilities> = OnceLock::new();
    &HOST
}

/// Probes the host now, without the cache.
pub fn probe_now() -> HostCapabilities {
    let euid = rustix::process::geteuid().as_raw();
    let (landlock_abi, landlock) = match sys::landlock_abi_version() {
        Ok(abi) => (Some(abi), Capability::Available),
        Err(errno) => (
            None,
            Capability::Unavailable {
                reason: match errno {
                    rustix::io::Errno::NOSYS => {
                        "landlock_create_ruleset: not built into this kernel (ENOSYS)".into()
                    }
                    rustix::io::Errno::OPNOTSUPP => {
                        "landlock_create_ruleset: disabled at boot (EOPNOTSUPP)".into()
                    }
                    e => format!("landlock_create_ruleset: {e}"),
                },
            },
        ),
    };
    // The namespace trial runs in a child while this thread probes the
    // rest (the cgroup trials cost about as much).
    let namespaces = probe_user_namespaces(euid, rustix::process::getegid().as_raw());
    let cgroups = probe_cgroups();
    let (user_namespaces, nftables_in_userns, kernel_quotas) = namespaces();
    let overlay_tmpfs_upper = if user_namespaces.is_available() {
        probe_tmpfs_user_xattrs(euid, rustix::process::getegid().as_raw())
    } else {
        Capability::Unknown {
            reason: "needs a user namespace".into(),
        }
    };
    HostCapabilities {
        kernel: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
        euid,
        user_namespaces,
        openat2: Capability::from_result(
            "openat2",
            rustix::fs::openat2(
                rustix::fs::CWD,
                "/",
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::NO_SYMLINKS,
            )
            .map(drop),
        ),
        landlock_abi,
        landlock,
        seccomp_filter: Capability::from_result(
            "seccomp(SECCOMP_GET_ACTION_AVAIL)",
            sys::seccomp_errno_action_available(),
        ),
        cgroups,
        tun: Capability::from_result(
            "open /dev/net/tun",
            rustix::fs::open(
                "/dev/net/tun",
                OFlags::RDWR | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map(drop),
        ),
        nftables_in_userns,
        kernel_quotas,
        overlay_tmpfs_upper,
    }
}

/// A trial's first steps: new user and mount namespaces (and `more`
/// namespaces), the caller mapped to their root, `/` private, a tmpfs on
/// `/tmp`.
fn userns_tmpfs_steps(euid: u32, egid: u32, more: libc::c_int) -> Vec<Step> {
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let write = |path: &str, contents: &[u8]| Step::WriteSetting {
        path: c(path),
        contents: contents.to_vec(),
    };
    vec![
        Step::Unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | more),
        write("/proc/self/setgroups", b"deny"),
        write("/proc/self/uid_map", format!("0 {euid} 1\n").as_bytes()),
        write("/proc/self/gid_map", format!("0 {egid} 1\n").as_bytes()),
        Step::MakeMountsPrivate,
        Step::Mount {
            source: c("tmpfs"),
            target: c("/tmp"),
            fstype: Some(c("tmpfs")),
            flags: 0,
        },
    ]
}

/// Tries, in a throwaway child: a tmpfs mounted in a new user namespace,
/// and a `user.` extended attribute set on it (what overlayfs with
/// `userxattr` does to its upper when a lower directory is deleted).
fn probe_tmpfs_user_xattrs(euid: u32, egid: u32) -> Capability {
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let mut steps = userns_tmpfs_steps(euid, egid, 0);
    steps.push(Step::SetXattr {
        path: c("/tmp"),
        name: c("user.sandbox-probe"),
        value: b"1".to_vec(),
    });
    match Trial::start(0, &steps, 0).and_then(Trial::finish) {
        Ok(()) => Capability::Available,
        Err(f) if f.step == steps.len() - 1 => Capability::Unavailable {
            reason: format!(
                "setxattr user.* on a tmpfs in a user namespace: {} (Linux 6.6+)",
                f.errno
            ),
        },
        Err(f) => Capability::Unknown {
            reason: format!(
                "the trial failed before the attribute (step {}): {}",
                f.step, f.errno
            ),
        },
    }
}

/// Tries, in one throwaway child: a new user, mount and network namespace,
/// the uid and gid maps, a private propagation and a tmpfs mount (user
/// namespaces usable), then an nftables table created over netlink in that
/// network namespace (nf_tables usable in a user namespace).
fn probe_user_namespaces(
    euid: u32,
    egid: u32,
) -> impl FnOnce() -> (Capability, Capability, Capability) {
    let write = |path: &str, contents: &[u8]| Step::WriteSetting {
        path: CString::new(path).unwrap_or_default(),
        contents: contents.to_vec(),
    };
    let (batch, acks) = nftables_probe_batch();
    let mut names: Vec<String> = [
        "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWNET)",
        "write /proc/self/setgroups",
        "write /proc/self/uid_map",
        "write /proc/self/gid_map",
        "make / private",
        "mount tmpfs",
    ]
    .map(String::from)
    .to_vec();
    let mut steps = userns_tmpfs_steps(euid, egid, libc::CLONE_NEWNET);
    // The quotas a run sets, each written in the trial's own namespace
    // (the value does not matter: the write is what is tried).
    let quota_steps = steps.len()..steps.len() + crate::quotas::all_sysctls().count();
    for name in crate::quotas::all_sysctls() {
        let path = format!("/proc/sys/user/{name}");
        steps.push(write(&path, b"64"));
        names.push(format!("write {path}"));
    }
    let nft_step = steps.len();
    steps.push(Step::NftBatch { bytes: batch, acks });
    names.push("install the egress ruleset (nftables) in the new network namespace".into());
    let trial = Trial::start(0, &steps, 0);
    drop(steps);
    move || {
        let failed = |f: &StepFailure| Capability::Unavailable {
            reason: format!(
                "{}: {}",
                names
                    .get(f.step)
                    .map_or("the trial child (fork, or it died)", String::as_str),
                f.errno
            ),
        };
        match trial.and_then(Trial::finish) {
            Ok(()) => (
                Capability::Available,
                Capability::Available,
                Capability::Available,
            ),
            Err(f) if f.step == nft_step => {
                (Capability::Available, failed(&f), Capability::Available)
            }
            Err(f) if quota_steps.contains(&f.step) => (
                Capability::Available,
                Capability::Unknown {
                    reason: "not tried: a kernel quota could not be set first".into(),
                },
                failed(&f),
            ),
            Err(f) => {
                let why = failed(&f);
                let unknown = Capability::Unknown {
                    reason: format!("needs a user namespace, which failed: {}", reason_of(&why)),
                };
                (why, unknown.clone(), unknown)
            }
        }
    }
}

fn reason_of(capability: &Capability) -> &str {
    match capability {
        Capability::Available => "available",
        Capability::Unavailable { reason } | Capability::Unknown { reason } => reason,
    }
}

/// The batch an allowlisted run's child sends (the `networked` profile's
/// ruleset with a host-name rule too, so its pin sets with timeouts and
/// their lookups are tried, for a fresh network namespace), and the ACKs
/// it asks for: the probe tries exactly what a run will do.
fn nftables_probe_batch() -> (Vec<u8>, u32) {
    let mut network = sandbox_policy::Policy::profile("networked")
        .map(|p| p.resolved().network)
        .unwrap_or_default();
    if let Ok(rule) = "probe.invalid:443/tcp".parse() {
        network.allow.get_or_insert_with(Vec::new).push(rule);
    }
    match sandbox_net::Ruleset::from_network(&network, &sandbox_net::Gateway::default()).batch() {
        Ok(batch) => (batch.as_bytes().to_vec(), batch.acks()),
        Err(_) => (Vec::new(), 0),
    }
}

/// The v1 controllers a sandbox creates cgroups in.
const USED_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Finds the hierarchies and tries to create a cgroup beneath the caller's
/// own in each (through `openat2-root`, then removes it).
pub(crate) fn probe_cgroups() -> CgroupSupport {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = cgroups::parse_proc_cgroup(
        &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
    );
    let mounts = cgroups::parse_mountinfo(&mountinfo);
    let mut support = CgroupSupport {
        unified: None,
        v1: Vec::new(),
    };
    for m in mounts {
        if m.v2 {
            let Some(own_path) = own
                .iter()
                .find(|o| o.controllers.is_empty())
                .map(|o| o.path.clone())
            else {
                continue;
            };
            let Some(rel) = cgroups::relative_to_mount(&own_path, &m.root) else {
                continue;
            };
            let controllers =
                std::fs::read_to_string(m.mount_point.join(&rel).join("cgroup.controllers"))
                    .map(|t| t.split_whitespace().map(String::from).collect())
                    .unwrap_or_default();
            if support.unified.is_some() {
                continue;
            }
            let writable = can_create_beneath(&m.mount_point, &rel);
            let (placement, placement_failure) =
                match cgroups::place(&m.mount_point, &rel, &CgroupPlacement::Auto) {
                    Ok(p) => (Some(p), None),
                    Err(why) => (None, Some(why)),
                };
            support.unified = Some(UnifiedHierarchy {
                mount: m.mount_point,
                own: rel,
                controllers,
                writable,
                placement,
                placement_failure,
            });
        } else {
            let Some(own_path) = own
                .iter()
                .find(|o| {
                    !o.controllers.is_empty()
                        && o.controllers.iter().all(|c| m.controllers.contains(c))
                })
                .map(|o| o.path.clone())
            else {
                continue;
            };
            let Some(rel) = cgroups::relative_to_mount(&own_path, &m.root) else {
                continue;
            };
            // Trying costs a mkdir and an rmdir (slow on some v1
            // controllers): only where a sandbox would create cgroups.
            let writable = m
                .controllers
                .iter()
                .any(|c| USED_CONTROLLERS.contains(&c.as_str()))
                && can_create_beneath(&m.mount_point, &rel);
            if !support.v1.iter().any(|h| h.controllers == m.controllers) {
                support.v1.push(V1Hierarchy {
                    controllers: m.controllers,
                    mount: m.mount_point,
                    own: rel,
                    writable,
                });
            }
        }
    }
    support
}

/// Whether a cgroup can be created (and removed) beneath `mount/own`.
fn can_create_beneath(mount: &Path, own: &Path) -> bool {
    let Ok(root) = openat2_root::Root::open(mount) else {
        return false;
    };
    let probe: PathBuf = own.join(format!("sandbox-probe-{}", std::process::id()));
    match root.create_dir(&probe, 0o755) {
        Ok(()) => root.remove_dir(&probe).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::kernel_supported;

    #[test]
    fn kernels_from_5_15_are_supported() {
        assert!(kernel_supported("5.15.0-91-generic"));
        assert!(kernel_supported("6.1.0-57-amd64"));
        assert!(kernel_supported("6.18.44-fc-v1098"));
        assert!(!kernel_supported("5.10.0-28-amd64"));
        assert!(!kernel_supported("4.19.0"));
        assert!(kernel_supported("unknown"));
    }

    /// The nftables step tells a working nf_tables from a refused request:
    /// the probe's batch is acknowledged, the same batch for a protocol
    /// family nf_tables does not have is refused.
    #[test]
    #[ignore = "needs root"]
    fn the_nftables_trial_discriminates() {
        assert!(
            rustix::process::geteuid().is_root(),
            "needs root: run as root with --include-ignored, as CI does"
        );
        let (good, acks) = nftables_probe_batch();
        let mut bad = good.clone();
        // The NEWTABLE message's nfgenmsg family byte: 16 bytes of batch
        // begin header, 4 of its nfgenmsg, 16 of the table's header.
        bad[20 + 16] = 0xfe;
        let write = |path: &std::ffi::CStr, contents: &[u8]| Step::WriteSetting {
            path: path.to_owned(),
            contents: contents.to_vec(),
        };
        let trial = |batch: &[u8]| {
            let steps = [
                Step::Unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET),
                write(c"/proc/self/setgroups", b"deny"),
                write(c"/proc/self/uid_map", b"0 0 1\n"),
                write(c"/proc/self/gid_map", b"0 0 1\n"),
                Step::NftBatch {
                    bytes: batch.to_vec(),
                    acks,
                },
            ];
            Trial::start(0, &steps, 0).and_then(Trial::finish)
        };
        assert_eq!(trial(&good), Ok(()));
        let refused = trial(&bad).unwrap_err();
        assert_eq!(refused.step, 4, "{refused:?}");
        assert_eq!(refused.errno, rustix::io::Errno::OPNOTSUPP, "{refused:?}");
    }
}
