//! Properties over arbitrary valid policies: parse∘serialize is the
//! identity (TOML and JSON), both formats agree, merging an empty override
//! changes nothing, a tighten-only merge never loosens, and the strictness
//! order is reflexive and transitive.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use proptest::prelude::*;
use sandbox_policy::*;

fn net_rule() -> impl Strategy<Value = NetRule> {
    let v4 = (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
        IpNet::new(IpAddr::V4(Ipv4Addr::from(a & mask)), p).unwrap()
    });
    let v6 = (any::<u128>(), 0u8..=128).prop_map(|(a, p)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
        IpNet::new(IpAddr::V6(Ipv6Addr::from(a & mask)), p).unwrap()
    });
    let ports = prop::option::of(
        (1u16..=65535, 0u16..100)
            .prop_map(|(s, w)| PortRange::new(s, s.saturating_add(w)).unwrap()),
    );
    let proto = prop::option::of(prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)]);
    let host = prop_oneof![
        Just("a.example.com"),
        Just("b.example.com"),
        Just("*.example.com"),
        Just("*.a.example.com"),
        Just("pypi.org"),
    ]
    .prop_map(|h| h.parse::<HostPattern>().unwrap());
    prop_oneof![
        3 => (prop_oneof![v4, v6], ports.clone(), proto.clone())
            .prop_map(|(n, p, t)| NetRule::new(n, p, t)),
        1 => (host, ports, proto).prop_map(|(h, p, t)| NetRule::host(h, p, t)),
    ]
}

fn dns_mode() -> impl Strategy<Value = DnsMode> {
    prop_oneof![
        Just(DnsMode::Off),
        Just(DnsMode::Auto),
        Just(DnsMode::AllowedNames),
        Just(DnsMode::Any)
    ]
}

fn limit<T: std::fmt::Debug + Clone + 'static>(
    inner: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<Limit<T>>> {
    prop::option::of(prop_oneof![1 => Just(Limit::Unlimited), 4 => inner.prop_map(Limit::Max)])
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![1u64..100_000, (1u64..1000).prop_map(|m| m * 60_000)]
        .prop_map(Duration::from_millis)
}

fn size(min: u64) -> impl Strategy<Value = ByteSize> {
    prop_oneof![
        min..u64::MAX / 2,
        (min.div_ceil(1 << 20).max(1)..4096).prop_map(|m| m << 20)
    ]
    .prop_map(ByteSize::from_bytes)
}

fn filesystem() -> impl Strategy<Value = Filesystem> {
    (
        prop::option::of(prop_oneof![
            Just(FsMode::Minimal),
            Just(FsMode::Rootfs),
            Just(FsMode::HostReadonly),
            Just(FsMode::Off)
        ]),
        prop::option::of(prop::collection::vec(any::<bool>(), 0..4)),
        prop::option::of(prop::collection::vec(prop::option::of(size(4096)), 0..3)),
        prop::option::of(prop::sample::select(vec![
            "/",
            "/tmp",
            "/work dir",
            "/srv/é",
        ])),
        prop::option::of(0usize..3),
        prop::option::of(prop::collection::vec(
            (1usize..4, any::<bool>(), prop::option::of(size(4096))),
            0..3,
        )),
        prop::option::of((any::<bool>(), prop::option::of(size(4096)))),
    )
        .prop_map(
            |(mode, binds, tmpfs, workdir, masks, overlays, root_overlay)| Filesystem {
                mode,
                // A root exactly where the mode needs one (and valid).
                root: (mode == Some(FsMode::Rootfs)).then(|| "/srv/images/x/rootfs".into()),
                // A writable root only with a root.
                root_overlay: root_overlay.filter(|_| mode == Some(FsMode::Rootfs)).map(
                    |(kept, size)| RootOverlay {
                        upper: kept.then(|| Upper::Dir("/host/root-upper".into())),
                        size: if kept { None } else { size },
                    },
                ),
                binds: binds.map(|b| {
                    b.into_iter()
                        .enumerate()
                        .map(|(i, writable)| Bind {
                            source: format!("/host/src{i}").into(),
                            target: format!("/b{i}").into(),
                            writable,
                            sockets: i % 2 == 1 && writable,
                        })
                        .collect()
                }),
                tmpfs: tmpfs.map(|t| {
                    t.into_iter()
                        .enumerate()
                        .map(|(i, size)| Tmpfs {
                            target: format!("/t{i}").into(),
                            size,
                        })
                        .collect()
                }),
                workdir: workdir.map(PathBuf::from),
                mask: masks.map(|n| (0..n).map(|i| PathBuf::from(format!("/m{i}"))).collect()),
                overlay: overlays.map(|o| {
                    o.into_iter()
                        .enumerate()
                        .map(|(i, (lowers, kept, size))| Overlay {
                            lower: if lowers == 1 {
                                Lowers::One(format!("/host/lower{i}").into())
                            } else {
                                Lowers::Many(
                                    (0..lowers)
                                        .map(|j| format!("/host/lower{i}-{j}").into())
                                        .collect(),
                                )
                            },
                            target: format!("/o{i}").into(),
                            upper: kept.then(|| Upper::Dir(format!("/host/upper{i}").into())),
                            size: if kept { None } else { size },
                            fallback: (!kept && i % 2 == 0).then_some(OverlayFallback::Copy),
                        })
                        .collect()
                }),
            },
        )
}

fn network() -> impl Strategy<Value = Network> {
    (
        prop::option::of(prop_oneof![
            Just(NetMode::None),
            Just(NetMode::Allowlist),
            Just(NetMode::Host)
        ]),
        prop::option::of(prop::collection::vec(net_rule(), 0..4)),
        prop::option::of(prop::collection::vec(net_rule(), 0..3)),
        prop::option::of(dns_mode()),
        prop::option::of(any::<bool>()),
        [
            prop::option::of(1u32..=NetLimits::MAX_FLOWS),
            prop::option::of(1u32..=NetLimits::MAX_FLOWS),
            prop::option::of(1u32..=NetLimits::MAX_RATE),
        ],
    )
        .prop_map(
            |(mode, allow, deny, dns, allow_metadata, [tcp, udp, rate])| {
                let filtered = matches!(mode, Some(NetMode::Allowlist) | None);
                let names = allow
                    .iter()
                    .flatten()
                    .any(|r: &NetRule| r.host_pattern().is_some());
                Network {
                    mode,
                    allow: if filtered {
                        allow
                    } else {
                        allow.map(|_| Vec::new())
                    },
                    deny: if filtered || mode == Some(NetMode::None) {
                        deny
                    } else {
                        deny.map(|_| Vec::new())
                    },
                    dns: match (mode, dns) {
                        (Some(NetMode::None), dns) => dns.map(|_| DnsMode::Off),
                        // Host-name rules need DNS.
                        (_, Some(DnsMode::Off)) if filtered && names => Some(DnsMode::Auto),
                        (_, dns) => dns,
                    },
                    allow_metadata,
                    limits: NetLimits {
                        tcp_connections: tcp,
                        udp_flows: udp,
                        new_flows_per_second: rate,
                    },
                }
            },
        )
}

fn privilege() -> impl Strategy<Value = Privilege> {
    (
        prop::option::of(prop_oneof![
            Just(User::Nobody),
            Just(User::Root),
            (0u32..u32::MAX).prop_map(User::Uid)
        ]),
        prop::option::of(prop_oneof![
            Just(SeccompMode::Default),
            Just(SeccompMode::Strict),
            Just(SeccompMode::Off)
        ]),
        prop::option::of(prop_oneof![
            Just(LandlockMode::Auto),
            Just(LandlockMode::Require),
            Just(LandlockMode::Off)
        ]),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::subsequence(SocketFamily::ALL.to_vec(), 0..3)),
    )
        .prop_map(
            |(user, seccomp, landlock, allow_nested_userns, socket_families)| Privilege {
                user,
                seccomp,
                landlock,
                allow_nested_userns,
                socket_families,
            },
        )
}

fn resources() -> BoxedStrategy<Resources> {
    (resource_limits().boxed(), kernel_quotas().boxed())
        .prop_map(|(mut r, kernel)| {
            r.kernel = kernel;
            r
        })
        .boxed()
}

fn kernel_quotas() -> impl Strategy<Value = KernelQuotas> {
    (
        limit(0u32..=KernelQuotas::MAX),
        limit(0u32..=KernelQuotas::MAX),
        limit(0u32..=1024),
    )
        .prop_map(
            |(inotify_instances, namespaces, pending_signals)| KernelQuotas {
                inotify_instances,
                namespaces,
                pending_signals,
                ..KernelQuotas::default()
            },
        )
}

fn resource_limits() -> impl Strategy<Value = Resources> {
    (
        limit(duration()),
        limit(duration()),
        limit(size(1 << 20)),
        limit(size(0)),
        limit(size(0)),
        limit(1u32..=u32::MAX),
        limit(3u32..=u32::MAX),
        limit(1u32..=102_400),
    )
        .prop_map(
            |(
                wall_time,
                cpu_time,
                memory,
                max_output_bytes,
                max_file_size,
                pids,
                open_files,
                cpu,
            )| {
                Resources {
                    wall_time,
                    cpu_time,
                    memory,
                    max_output_bytes,
                    max_file_size,
                    pids,
                    cpu,
                    open_files,
                    kernel: KernelQuotas::default(),
                }
            },
        )
}

fn env() -> impl Strategy<Value = Env> {
    (
        prop::option::of(prop::collection::vec(
            "[A-Z_*][A-Z0-9_*]{0,7}"
                .prop_filter("a secret named exactly is invalid", |g: &String| {
                    g.contains('*') || !looks_secret(g)
                }),
            0..4,
        )),
        prop::option::of(prop::collection::btree_map(
            "[A-Z_][A-Z0-9_]{0,7}",
            "[^\u{0}]{0,12}",
            0..3,
        )),
    )
        .prop_map(
            |(allow, set): (Option<Vec<String>>, Option<BTreeMap<String, String>>)| Env {
                allow,
                set,
            },
        )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        filesystem(),
        network(),
        privilege(),
        resources(),
        env(),
        prop::option::of(prop_oneof![
            Just(OnUnavailable::Fail),
            Just(OnUnavailable::Degrade)
        ]),
    )
        .prop_map(
            |(filesystem, network, privilege, resources, env, on_unavailable)| Policy {
                filesystem,
                network,
                privilege,
                resources,
                env,
                on_unavailable,
            },
        )
}

/// Overrides that ask for little: strict modes and small limits, each field
/// set or not. Merged tighten-only onto most policies, they are accepted, so
/// chains of accepted merges get built.
fn tightening() -> impl Strategy<Value = Policy> {
    let small = |lo: u64, hi: u64| prop::option::of((lo..hi).prop_map(Limit::Max));
    (
        (
            prop::option::of(Just(FsMode::Minimal)),
            prop::option::of(Just(NetMode::None)),
            prop::option::of(Just(false)),
        ),
        (
            prop::option::of(Just(User::Nobody)),
            prop::option::of(Just(SeccompMode::Strict)),
            prop::option::of(Just(LandlockMode::Require)),
        ),
        (
            small(1, 50),
            small(1, 50),
            small(1 << 20, 2 << 20),
            small(3, 8),
            small(1, 4),
        ),
        prop::option::of(Just(OnUnavailable::Fail)),
    )
        .prop_map(
            |((fs, net, flag), (user, seccomp, landlock), (wall, cpu, mem, files, pids), on)| {
                let mut p = Policy::empty();
                p.filesystem.mode = fs;
                p.network.mode = net;
                p.network.dns = flag.map(|f| if f { DnsMode::Any } else { DnsMode::Off });
                p.network.allow_metadata = flag;
                p.privilege = Privilege {
                    user,
                    seccomp,
                    landlock,
                    allow_nested_userns: flag,
                    socket_families: None,
                };
                let ms = |l: Option<Limit<u64>>| {
                    l.map(|l| match l {
                        Limit::Max(v) => Limit::Max(Duration::from_millis(v)),
                        Limit::Unlimited => Limit::Unlimited,
                    })
                };
                p.resources.wall_time = ms(wall);
                p.resources.cpu_time = ms(cpu);
                p.resources.memory = mem.map(|l| match l {
                    Limit::Max(v) => Limit::Max(ByteSize::from_bytes(v)),
                    Limit::Unlimited => Limit::Unlimited,
                });
                let narrow = |l: Option<Limit<u64>>| {
                    l.map(|l| match l {
                        Limit::Max(v) => Limit::Max(u32::try_from(v).unwrap_or(u32::MAX)),
                        Limit::Unlimited => Limit::Unlimited,
                    })
                };
                p.resources.open_files = narrow(files);
                p.resources.pids = narrow(pids);
                p.on_unavailable = on;
                p
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_policies_are_valid(p in policy()) {
        prop_assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn toml_round_trip_is_identity(p in policy()) {
        let text = p.to_toml_string().unwrap();
        prop_assert_eq!(Policy::from_toml_str(&text).map_err(|e| format!("{e}\n{text}")), Ok(p));
    }

    #[test]
    fn json_round_trip_is_identity(p in policy()) {
        let text = p.to_json_string().unwrap();
        prop_assert_eq!(Policy::from_json_str(&text).map_err(|e| format!("{e}\n{text}")), Ok(p));
    }

    #[test]
    fn toml_and_json_of_a_policy_are_equal(p in policy()) {
        prop_assert_eq!(Policy::from_toml_str(&p.to_toml_string().unwrap()).unwrap(), Policy::from_json_str(&p.to_json_string().unwrap()).unwrap());
    }

    #[test]
    fn merging_an_empty_override_is_identity(p in policy()) {
        prop_assert_eq!(p.merge(&Policy::empty()), p.clone());
        prop_assert_eq!(Policy::empty().merge(&p), p);
    }

    #[test]
    fn tighten_only_never_loosens(base in policy(), over in prop_oneof![policy().boxed(), tightening().boxed()]) {
        match base.merge_tighten_only(&over) {
            Ok(merged) => prop_assert!(merged.is_at_least_as_strict_as(&base)),
            Err(Error::Loosens { problems }) => {
                prop_assert!(!problems.is_empty());
                prop_assert!(!base.merge(&over).is_at_least_as_strict_as(&base));
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }

    #[test]
    fn strictness_is_reflexive(p in policy()) {
        prop_assert!(p.is_at_least_as_strict_as(&p));
    }

    #[test]
    fn strictness_is_transitive_on_arbitrary_triples(a in policy(), b in policy(), c in policy()) {
        if a.is_at_least_as_strict_as(&b) && b.is_at_least_as_strict_as(&c) {
            prop_assert!(a.is_at_least_as_strict_as(&c));
        }
    }

    #[test]
    fn strictness_is_transitive_on_chains(c in policy(), o1 in tightening(), o2 in tightening()) {
        // Chains built to satisfy the premise: c ⊒ c·o1 ⊒ c·o1·o2.
        if let Ok(b) = c.merge_tighten_only(&o1)
            && let Ok(a) = b.merge_tighten_only(&o2) {
                prop_assert!(a.is_at_least_as_strict_as(&b) && b.is_at_least_as_strict_as(&c));
                prop_assert!(a.is_at_least_as_strict_as(&c));
            }
    }
}
