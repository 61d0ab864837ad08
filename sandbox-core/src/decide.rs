//! Deciding, per layer, what this host can enforce of a policy: enforce,
//! downgrade (with the reason), or (in fail mode) refuse.

use sandbox_policy::{
    FsMode, LandlockMode, Limit, NetMode, OnUnavailable, Policy, SeccompMode, User,
};
use serde::Serialize;

use crate::probe::{Capability, HostCapabilities};
use crate::report::{Downgrade, EffectiveSandbox, Layer, LayerReport, Note};

/// What the run will do, layer by layer.
#[derive(Debug, Clone)]
pub(crate) struct Decisions {
    /// New user, mount, pid, ipc, uts and cgroup namespaces.
    pub(crate) namespaces: bool,
    /// The filesystem view actually built.
    pub(crate) fs_mode: FsMode,
    /// A new network namespace (loopback, and the egress tap if `egress`).
    pub(crate) new_netns: bool,
    /// Allowlisted egress: tap0, the ruleset, the forwarder.
    pub(crate) egress: bool,
    /// The tap's MTU with egress.
    pub(crate) egress_mtu: u32,
    /// The seccomp filter installed.
    pub(crate) seccomp: SeccompMode,
    /// The Landlock ABI used, if Landlock is applied.
    pub(crate) landlock_abi: Option<u32>,
    /// Memory limit (bytes) enforced through a cgroup.
    pub(crate) memory: Option<u64>,
    /// Process limit enforced through a cgroup.
    pub(crate) pids: Option<u32>,
    /// CPU bandwidth (percent of one CPU) enforced through a cgroup.
    pub(crate) cpu: Option<u32>,
    /// Process limit enforced instead by `RLIMIT_NPROC` under a host uid
    /// of the run's own (root callers, where no pids cgroup is writable).
    pub(crate) nproc: Option<u32>,
    /// Each run's user namespace owned by, and its user mapped to, a host
    /// uid and gid of its own (root callers).
    pub(crate) run_ids: bool,
    /// The kernel quotas set in the run's user namespace.
    pub(crate) quotas: crate::quotas::QuotaPlan,
    /// The uid and gid inside the sandbox.
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// `on_unavailable = "fail"`.
    pub(crate) fail_closed: bool,
}

/// The kebab-case name serde gives a policy enum value.
pub(crate) fn name_of(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn reason(capability: &Capability) -> &str {
    match capability {
        Capability::Available => "available",
        Capability::Unavailable { reason } | Capability::Unknown { reason } => reason,
    }
}

/// What the sandbox's Landlock ruleset cannot say at `abi` (the newest
/// ABI this code uses is 6), with what stands in for it.
pub(crate) fn landlock_missing(abi: u32, host_network: bool) -> Vec<String> {
    let mut missing = Vec::new();
    if abi < 2 {
        missing.push(
            "linking or renaming a file into another directory (ABI 2): refused outright".into(),
        );
    }
    if abi < 3 {
        missing.push(
            "truncating files (ABI 3): only read-only mounts stop it outside the writable paths"
                .into(),
        );
    }
    if abi < 5 {
        missing.push("ioctl on device files (ABI 5): only seccomp's ioctl rules apply".into());
    }
    if abi < 6 {
        missing.push(format!(
            "scoping signals and abstract unix sockets (ABI 6): {}",
            if host_network {
                "the pid namespace confines signals, but the host's abstract unix sockets are reachable (network.mode = \"host\")"
            } else {
                "the pid and network namespaces confine them instead"
            }
        ));
    }
    missing
}

/// Decides what of `policy` (resolved) this host enforces.
pub(crate) fn decide(policy: &Policy, host: &HostCapabilities) -> (Decisions, EffectiveSandbox) {
    let mut report = EffectiveSandbox {
        policy: policy.clone(),
        filesystem: LayerReport::default(),
        network: LayerReport::default(),
        privilege: LayerReport::default(),
        resources: LayerReport::default(),
        downgrades: Vec::new(),
        notes: Vec::new(),
        host: host.clone(),
    };
    let mut downgrades: Vec<Downgrade> = Vec::new();
    let mut down = |layer, reason: String| downgrades.push(Downgrade { layer, reason });
    let mut notes: Vec<Note> = Vec::new();
    let mut note = |layer, message: String| notes.push(Note { layer, message });
    let mut mechanisms: [Vec<String>; 4] = Default::default();
    let [fs_mech, net_mech, priv_mech, res_mech] = &mut mechanisms;

    let namespaces = host.user_namespaces.is_available();
    let userns_why = reason(&host.user_namespaces);

    // filesystem
    let fs = &policy.filesystem;
    let fs_asked = fs.mode.unwrap_or(FsMode::Minimal);
    let fs_mode = if namespaces { fs_asked } else { FsMode::Off };
    let has_mounts = fs.binds.as_ref().is_some_and(|v| !v.is_empty())
        || fs.tmpfs.as_ref().is_some_and(|v| !v.is_empty())
        || fs.mask.as_ref().is_some_and(|v| !v.is_empty());
    if !namespaces && (fs_asked != FsMode::Off || has_mounts) {
        down(
            Layer::Filesystem,
            format!(
                "filesystem.mode = \"{}\" with its binds, tmpfs and masks needs a mount namespace, and user namespaces are unusable here ({userns_why}): the host filesystem would be visible",
                name_of(&fs_asked)
            ),
        );
    }
    match fs_mode {
        FsMode::Minimal => fs_mech.push(
            "minimal root on a read-only tmpfs: system directories bound read-only, nosuid, nodev; pivot_root, old root detached".into(),
        ),
        FsMode::HostReadonly => fs_mech.push(
            "the host's tree, bound recursively read-only, nosuid, nodev; pivot_root, old root detached".into(),
        ),
        FsMode::Off => fs_mech.push("the host's filesystem, as the caller sees it".into()),
    }
    if namespaces {
        fs_mech.push("fresh /proc of the sandbox's pid namespace".into());
        if fs_mode != FsMode::Off {
            fs_mech.push(
                "minimal /dev (null, zero, full, random, urandom, tty, a private devpts, shm)"
                    .into(),
            );
        }
        let binds = fs.binds.as_deref().unwrap_or_default();
        let tmpfs = fs.tmpfs.as_deref().unwrap_or_default();
        let masks = fs.mask.as_deref().unwrap_or_default();
        for b in binds {
            fs_mech.push(format!(
                "{} from {} ({})",
                b.target.display(),
                b.source.display(),
                if b.writable { "writable" } else { "read-only" }
            ));
        }
        for t in tmpfs {
            fs_mech.push(format!(
                "{}: tmpfs{}",
                t.target.display(),
                t.size.map(|s| format!(" of {s}")).unwrap_or_default()
            ));
        }
        for m in masks {
            fs_mech.push(format!("{}: masked", m.display()));
        }
        fs_mech.push("every mount target resolved beneath the new root with openat2 (no symlinks), mounted by fd".into());
    }

    // network
    let net_asked = policy.network.mode.unwrap_or(NetMode::None);
    let mut new_netns = false;
    let mut egress = false;
    match net_asked {
        NetMode::Allowlist
            if namespaces && host.tun.is_available() && host.nftables_in_userns.is_available() =>
        {
            new_netns = true;
            egress = true;
            let rules = sandbox_net::Ruleset::from_network(
                &policy.network,
                &sandbox_net::Gateway::default(),
            );
            net_mech.push(format!(
                "a new network namespace: tap0 10.0.2.100/24 and fd00:0:2::100/64 via the gateway 10.0.2.2 / fd00:0:2::2; a default-drop nftables ruleset (table inet sandbox, {} output rules) loaded before the link came up",
                rules.output.len()
            ));
            net_mech.push(
                "a userspace forwarder in the caller relays each allowed flow (TCP, UDP, ICMP echo through a ping socket) through a host socket of its own, enforcing the policy a second time (metadata blocked, deny over allow, IPv4-mapped forms), within caps on flows, buffered bytes and new flows per second".into(),
            );
            if policy.network.dns == Some(true) {
                net_mech.push(if fs_mode == FsMode::Off {
                    "DNS: queries to the gateway 10.0.2.2 are relayed to the host's resolver (the sandbox's /etc/resolv.conf is the host's: filesystem.mode = \"off\")".into()
                } else {
                    "DNS: the sandbox's /etc/resolv.conf names the gateway 10.0.2.2, whose queries are relayed to the host's resolver".into()
                });
            }
        }
        NetMode::None | NetMode::Allowlist => {
            if net_asked == NetMode::Allowlist {
                let why = if !namespaces {
                    format!("no user namespace ({userns_why})")
                } else if !host.tun.is_available() {
                    reason(&host.tun).to_string()
                } else {
                    reason(&host.nftables_in_userns).to_string()
                };
                down(
                    Layer::Network,
                    format!(
                        "network.mode = \"allowlist\": {why} (degraded, a run gets no network at all: loopback only)"
                    ),
                );
            }
            if namespaces {
                new_netns = true;
                net_mech.push("a new network namespace with only loopback: no route out".into());
            } else {
                down(
                    Layer::Network,
                    format!(
                        "no network namespace without a user namespace ({userns_why}): the host network would be reachable"
                    ),
                );
                net_mech.push("the host's network".into());
            }
        }
        NetMode::Host => net_mech.push("the host's network, shared, unfiltered (as asked)".into()),
    }

    // privilege
    let p = &policy.privilege;
    let (uid, gid) = match p.user.unwrap_or(User::Nobody) {
        User::Nobody => (65534, 65534),
        User::Root => (0, 0),
        User::Uid(uid) => (uid, uid),
    };
    // A root caller's runs each get a host uid and gid of their own, which
    // own their user namespace (see `quotas`); without a pids cgroup,
    // RLIMIT_NPROC then counts one run's processes.
    let run_ids = namespaces && host.euid == 0 && crate::quotas::RunIds::default().mapped_here();
    let run_uid = run_ids
        && matches!(policy.resources.pids, Some(Limit::Max(_)))
        && host.cgroups.hierarchy_for("pids").is_none();
    if namespaces {
        priv_mech.push(if host.euid == 0 {
            format!(
                "user namespace: runs as uid {uid} inside, {} outside; setup ran as the namespace's root and gave it up",
                if run_ids {
                    "a host uid of the run's own (2^30 and up), which also owns its user namespace"
                } else {
                    "the host's nobody (65534)"
                }
            )
        } else {
            format!(
                "user namespace: runs as uid {uid} inside, the caller's uid {} outside",
                host.euid
            )
        });
        priv_mech.push("pid, ipc, uts (hostname \"sandbox\") and cgroup namespaces".into());
        if host.euid != 0 {
            note(
                Layer::Privilege,
                "unprivileged caller: the caller's supplementary groups stay (setgroups is denied in an unprivileged user namespace)".into(),
            );
        }
    } else {
        down(
            Layer::Privilege,
            format!(
                "privilege.user = {}: no user namespace ({userns_why}); the command runs as the caller, uid {}",
                p.user.unwrap_or(User::Nobody),
                host.euid
            ),
        );
    }
    priv_mech.push(
        "no capabilities (effective, permitted, inheritable, ambient and bounding sets empty; securebits locked), no_new_privs, new session (setsid), parent-death signal, fds above 2 closed".into(),
    );
    let seccomp_asked = p.seccomp.unwrap_or(SeccompMode::Default);
    let seccomp = if seccomp_asked == SeccompMode::Off {
        SeccompMode::Off
    } else if host.seccomp_filter.is_available() {
        let known = crate::seccomp::KNOWN_SYSCALLS;
        let newest = known.last().map_or("none", |(name, _)| *name);
        priv_mech.push(match seccomp_asked {
            SeccompMode::Strict => format!(
                "seccomp strict: an allowlist of {} of the {} known syscalls, other known ones fail with EPERM",
                crate::seccomp::STRICT_ALLOWED.len() + 3,
                known.len()
            ),
            _ => format!(
                "seccomp default: {} of the {} known syscalls refused (EPERM), TIOCSTI/TIOCLINUX, odd personalities and new user namespaces refused",
                crate::seccomp::DEFAULT_DENIED.len(),
                known.len()
            ),
        });
        priv_mech.push(format!(
            "seccomp: a syscall number newer than {newest} (or an x32 one) fails with ENOSYS"
        ));
        let mut families = vec!["unix", "inet", "inet6", "netlink (route, sock_diag)"];
        families.extend(p.socket_families.iter().flatten().map(|f| f.name()));
        priv_mech.push(format!(
            "seccomp: sockets of {} only, any other family fails with EAFNOSUPPORT",
            families.join(", ")
        ));
        seccomp_asked
    } else {
        down(
            Layer::Privilege,
            format!(
                "privilege.seccomp = \"{}\": {}",
                name_of(&seccomp_asked),
                reason(&host.seccomp_filter)
            ),
        );
        SeccompMode::Off
    };
    let landlock_abi = match (p.landlock.unwrap_or(LandlockMode::Auto), host.landlock_abi) {
        (LandlockMode::Off, _) => None,
        (_, Some(abi)) => {
            priv_mech.push(format!(
                "Landlock ABI {abi}: writes only beneath the writable mounts{}",
                if abi >= 6 {
                    "; signals and abstract unix sockets scoped to the sandbox"
                } else {
                    ""
                }
            ));
            let missing = landlock_missing(abi, net_asked == NetMode::Host);
            if !missing.is_empty() {
                note(
                    Layer::Privilege,
                    format!(
                        "Landlock ABI {abi} on this kernel does not cover: {}",
                        missing.join("; ")
                    ),
                );
            }
            Some(abi)
        }
        (LandlockMode::Require, None) => {
            down(
                Layer::Privilege,
                format!(
                    "privilege.landlock = \"require\": {}",
                    reason(&host.landlock)
                ),
            );
            None
        }
        (LandlockMode::Auto, None) => {
            note(
                Layer::Privilege,
                format!(
                    "Landlock not applied (landlock = \"auto\"): {}",
                    reason(&host.landlock)
                ),
            );
            None
        }
    };

    // resources
    let r = &policy.resources;
    if let Some(Limit::Max(t)) = r.wall_time {
        res_mech.push(format!(
            "wall_time {t}: {}",
            if namespaces {
                "SIGKILL to the sandbox's pid namespace"
            } else {
                "SIGKILL to the sandbox's first process"
            }
        ));
    }
    if let Some(Limit::Max(t)) = r.cpu_time {
        res_mech.push(format!("cpu_time {t} per process: RLIMIT_CPU"));
    }
    if let Some(Limit::Max(n)) = r.max_file_size {
        res_mech.push(format!("max_file_size {n}: RLIMIT_FSIZE"));
    }
    if let Some(Limit::Max(n)) = r.open_files {
        res_mech.push(format!("open_files {n}: RLIMIT_NOFILE"));
    }
    res_mech.push("no core dumps: RLIMIT_CORE 0".into());
    match r.max_output_bytes {
        Some(Limit::Max(n)) => res_mech.push(format!(
            "stdout and stderr kept up to {n} each, the rest drained and dropped"
        )),
        _ => res_mech.push("stdout and stderr kept whole (max_output_bytes unlimited)".into()),
    }
    let cgroup_limit = |controller: &str,
                        asked: String,
                        res_mech: &mut Vec<String>,
                        down: &mut dyn FnMut(Layer, String)| {
        match host.cgroups.hierarchy_for(controller) {
            Some(h) => {
                res_mech.push(format!("{asked}: {}", h.describe(controller)));
                true
            }
            None => {
                let v2_why = host
                    .cgroups
                    .unified
                    .as_ref()
                    .map(|u| match (&u.placement, &u.placement_failure) {
                        (Some(p), _) => format!(
                            "; cgroup v2 gives run cgroups beneath {} only {}",
                            crate::cgroups::beneath(&u.mount, &p.parent).display(),
                            if p.controllers.is_empty() {
                                "no controller".to_string()
                            } else {
                                p.controllers.join(", ")
                            }
                        ),
                        (None, Some(why)) => format!("; cgroup v2: {why}"),
                        (None, None) => String::new(),
                    })
                    .unwrap_or_default();
                down(
                    Layer::Resources,
                    format!(
                        "{asked}: no cgroup with the {controller} controller where this caller can make a run's cgroup{v2_why}{}",
                        if host.euid != 0 {
                            " (unprivileged: delegate a subtree, or give one with Sandbox::with_cgroup_placement)"
                        } else {
                            ""
                        }
                    ),
                );
                false
            }
        }
    };
    let memory = match r.memory {
        Some(Limit::Max(m)) => {
            cgroup_limit("memory", format!("memory {m}"), res_mech, &mut down).then_some(m.bytes())
        }
        _ => None,
    };
    let mut nproc = None;
    let pids = match r.pids {
        // Without a pids cgroup, a root caller can still make the limit the
        // run's own: RLIMIT_NPROC counts per user, and the run gets a host
        // uid no other process has.
        Some(Limit::Max(n)) if run_uid => {
            res_mech.push(format!(
                "pids {n}: RLIMIT_NPROC, the sandbox's user mapped to a host uid of the run's own (no writable pids cgroup)"
            ));
            nproc = Some(n);
            None
        }
        Some(Limit::Max(n)) => {
            cgroup_limit("pids", format!("pids {n}"), res_mech, &mut down).then_some(n)
        }
        _ => None,
    };
    let quotas = if namespaces {
        let (lines, shared) = crate::quotas::report(policy, host.euid == 0, run_ids);
        if let Capability::Available = host.kernel_quotas {
            res_mech.extend(lines);
        } else if !r.kernel.is_unset() {
            down(
                Layer::Resources,
                format!(
                    "resources.kernel: the run's user namespace cannot cap them here ({})",
                    reason(&host.kernel_quotas)
                ),
            );
        }
        if let Some(shared) = shared {
            note(Layer::Resources, shared);
        }
        if host.kernel_quotas.is_available() {
            crate::quotas::plan(policy)
        } else {
            crate::quotas::QuotaPlan::default()
        }
    } else {
        if !r.kernel.is_unset() {
            down(
                Layer::Resources,
                format!(
                    "resources.kernel: the quotas are set in the run's own user namespace, and user namespaces are unusable here ({})",
                    reason(&host.user_namespaces)
                ),
            );
        }
        crate::quotas::QuotaPlan::default()
    };
    let cpu = match r.cpu {
        Some(Limit::Max(n)) => {
            cgroup_limit("cpu", format!("cpu {n}% of one CPU"), res_mech, &mut down).then_some(n)
        }
        _ => None,
    };
    // Where the run gets cgroups at all, the unified hierarchy tracks it
    // too (unless a controller there already put it there).
    let v2_limits = [
        ("memory", memory.is_some()),
        ("pids", pids.is_some()),
        ("cpu", cpu.is_some()),
    ]
    .iter()
    .any(|(c, on)| *on && host.cgroups.hierarchy_for(c).is_some_and(|h| h.v2));
    if let Some((mount, parent)) = host.cgroups.tracking_parent()
        && (memory.is_some() || pids.is_some() || cpu.is_some())
    {
        res_mech.push(if v2_limits {
            "the run's cgroup v2 tracks all of it as well (cgroup.events; cgroup.kill at teardown)"
                .to_string()
        } else {
            format!(
                "the run tracked in a per-run cgroup v2 beneath {} as well (cgroup.events; cgroup.kill at teardown)",
                crate::cgroups::beneath(&mount, &parent).display()
            )
        });
    }

    report.downgrades = downgrades;
    report.notes = notes;
    let [fs_mech, net_mech, priv_mech, res_mech] = mechanisms;
    for (layer, mech) in [
        (Layer::Filesystem, fs_mech),
        (Layer::Network, net_mech),
        (Layer::Privilege, priv_mech),
        (Layer::Resources, res_mech),
    ] {
        let enforced = !report.downgrades.iter().any(|d| d.layer == layer);
        *report.layer_mut(layer) = LayerReport {
            enforced,
            mechanisms: mech,
        };
    }
    let decisions = Decisions {
        namespaces,
        fs_mode,
        new_netns,
        egress,
        egress_mtu: sandbox_net::EgressAddressing::default().mtu,
        seccomp,
        landlock_abi,
        memory,
        pids,
        cpu,
        nproc,
        run_ids,
        quotas,
        uid,
        gid,
        fail_closed: policy.on_unavailable.unwrap_or(OnUnavailable::Fail) == OnUnavailable::Fail,
    };
    (decisions, report)
}
