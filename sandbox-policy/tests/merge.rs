//! Merging, the strictness order and the tighten-only merge.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use sandbox_policy::{Error, Policy};

fn p(toml: &str) -> Policy {
    Policy::from_toml_str(toml).unwrap()
}

fn loosened_fields(base: &Policy, over: &Policy) -> Vec<String> {
    match base.merge_tighten_only(over).unwrap_err() {
        Error::Loosens { problems } => problems.into_iter().map(|p| p.field).collect(),
        other => panic!("{other}"),
    }
}

#[test]
fn tighten_only_lists_every_loosened_field() {
    let base = p(r#"
        on_unavailable = "fail"
        [filesystem]
        binds = [{ source = "/srv/data", target = "/data" }]
        [network]
        mode = "allowlist"
        allow = ["198.51.100.0/24:443/tcp"]
        [privilege]
        seccomp = "strict"
        [resources]
        memory = "256MiB"
    "#);
    let over = p(r#"
        on_unavailable = "degrade"
        [filesystem]
        binds = [{ source = "/srv/data", target = "/data", writable = true }]
        [network]
        allow = ["198.51.100.0/24:443/tcp", "203.0.113.0/24:443/tcp"]
        allow_metadata = true
        [privilege]
        seccomp = "default"
        [resources]
        memory = "1GiB"
    "#);
    let fields = loosened_fields(&base, &over);
    assert_eq!(
        fields,
        [
            "filesystem.binds",
            "network.allow",
            "network.allow_metadata",
            "privilege.seccomp",
            "resources.memory",
            "on_unavailable"
        ]
    );
    let err = base.merge_tighten_only(&over).unwrap_err().to_string();
    assert!(
        err.starts_with("the override would loosen the base policy (6 fields):"),
        "{err}"
    );
    assert!(
        err.contains("203.0.113.0/24:443/tcp is not covered by the base's allow rules"),
        "{err}"
    );
    assert!(
        err.contains("resources.memory: 1GiB is higher than 256MiB"),
        "{err}"
    );
    // A wider network mode.
    assert_eq!(
        loosened_fields(&base, &p("[network]\nmode = \"host\"\nallow = []\n")),
        ["network.mode"]
    );
    // Unlimited is higher than any limit.
    assert_eq!(
        loosened_fields(&base, &p("[resources]\npids = \"unlimited\"\n")),
        ["resources.pids"]
    );
    // A CPU share above the base's.
    let capped = p("[resources]\ncpu = 50\n");
    assert_eq!(
        loosened_fields(&capped, &p("[resources]\ncpu = 200\n")),
        ["resources.cpu"]
    );
    assert!(
        capped
            .merge_tighten_only(&p("[resources]\ncpu = 20\n"))
            .is_ok()
    );
}

#[test]
fn tighten_only_accepts_what_asks_for_less() {
    let base = Policy::profile("networked").unwrap();
    let job = p(r#"
        [network]
        allow = ["198.51.100.7/32:443/tcp"]
        dns = false
        [resources]
        wall_time = "5s"
        memory = "64MiB"
        [privilege]
        seccomp = "strict"
        landlock = "require"
        [filesystem]
        mask = ["/home"]
        [env]
        allow = ["PATH"]
        set = { MODE = "ci" }
    "#);
    let merged = base.merge_tighten_only(&job).unwrap();
    assert!(merged.is_at_least_as_strict_as(&base));
    assert_eq!(merged, base.merge(&job));
    // The empty override is always fine, and changes nothing.
    assert_eq!(base.merge_tighten_only(&Policy::empty()).unwrap(), base);
}

#[test]
fn strictness_is_reflexive_and_orders_the_profiles() {
    let default = Policy::default();
    let strict = Policy::profile("strict").unwrap();
    let networked = Policy::profile("networked").unwrap();
    for p in [&default, &strict, &networked, &Policy::empty()] {
        assert!(p.is_at_least_as_strict_as(p));
    }
    assert!(strict.is_at_least_as_strict_as(&default));
    assert!(default.is_at_least_as_strict_as(&networked));
    assert!(strict.is_at_least_as_strict_as(&networked));
    assert!(!networked.is_at_least_as_strict_as(&default));
    assert!(!default.is_at_least_as_strict_as(&strict));
    // Unset fields read as the default profile's.
    assert!(
        Policy::empty().is_at_least_as_strict_as(&default)
            && default.is_at_least_as_strict_as(&Policy::empty())
    );
}

#[test]
fn env_globs_compare_by_what_they_pass() {
    let base = p("[env]\nallow = [\"LC_*\", \"PATH\"]\n");
    assert!(
        base.merge_tighten_only(&p("[env]\nallow = [\"LC_ALL\", \"LC_*\"]\n"))
            .is_ok()
    );
    assert_eq!(
        loosened_fields(&base, &p("[env]\nallow = [\"L*\"]\n")),
        ["env.allow"]
    );
    assert_eq!(
        loosened_fields(&base, &p("[env]\nallow = [\"HOME\"]\n")),
        ["env.allow"]
    );
}

#[test]
fn network_limits_merge_field_by_field_and_only_tighten() {
    let base = p("[network]\nmode = \"allowlist\"\n[network.limits]\ntcp_connections = 64\n");
    let over = p("[network.limits]\nudp_flows = 32\n");
    let merged = base.merge(&over);
    assert_eq!(merged.network.limits.tcp_connections, Some(64));
    assert_eq!(merged.network.limits.udp_flows, Some(32));
    // Resolved over the default profile: unset caps are its 256 and 1000.
    let resolved = Policy::default().merge(&merged);
    assert_eq!(resolved.network.limits.new_flows_per_second, Some(1000));
    assert!(
        base.merge_tighten_only(&over).is_ok(),
        "32 < the default 256"
    );
    let looser = p("[network.limits]\ntcp_connections = 65\nnew_flows_per_second = 5000\n");
    assert_eq!(
        loosened_fields(&base, &looser),
        [
            "network.limits.tcp_connections",
            "network.limits.new_flows_per_second"
        ]
    );
}

#[test]
fn network_limits_are_validated() {
    for (toml, field, says) in [
        (
            "tcp_connections = 0",
            "network.limits.tcp_connections",
            "at least 1",
        ),
        (
            "udp_flows = 70000",
            "network.limits.udp_flows",
            "70000 is above 65536",
        ),
        (
            "new_flows_per_second = 2000000",
            "network.limits.new_flows_per_second",
            "above 1000000",
        ),
    ] {
        let err = Policy::from_toml_str(&format!("[network.limits]\n{toml}\n")).unwrap_err();
        let Error::Invalid { problems } = &err else {
            panic!("{toml}: {err}");
        };
        assert_eq!(problems[0].field, field, "{err}");
        assert!(problems[0].message.contains(says), "{err}");
    }
    let err = Policy::from_toml_str("[network.limits]\ntcp = 3\n").unwrap_err();
    assert!(err.to_string().contains("unknown field `tcp`"), "{err}");
}

#[test]
fn host_names_and_dns_modes_only_tighten() {
    let base = p(
        "[network]\nmode = \"allowlist\"\nallow = [\"*.example.com:443/tcp\", \"192.0.2.0/24\"]\n",
    );
    // A name below the wildcard, on the same port: tighter.
    let ok = p("[network]\nallow = [\"a.example.com:443/tcp\"]\n");
    assert!(base.merge_tighten_only(&ok).is_ok());
    for looser in [
        "[network]\nallow = [\"pypi.org:443/tcp\"]\n",
        "[network]\nallow = [\"example.com:443/tcp\"]\n",
        "[network]\nallow = [\"a.example.com:80/tcp\"]\n",
        // An address rule is not covered by a name rule.
        "[network]\nallow = [\"198.51.100.0/24\"]\n",
    ] {
        assert_eq!(
            loosened_fields(&base, &p(looser)),
            ["network.allow"],
            "{looser}"
        );
    }
    // The base resolves names only (auto, with a name rule): relaying
    // every name is looser, turning DNS off tighter.
    assert_eq!(
        loosened_fields(&base, &p("[network]\ndns = \"any\"\n")),
        ["network.dns"]
    );
    assert_eq!(
        loosened_fields(&base, &p("[network]\ndns = true\n")),
        ["network.dns"],
        "true is \"any\""
    );
    let no_names = p("[network]\nallow = [\"192.0.2.0/24\"]\ndns = \"off\"\n");
    assert!(base.merge_tighten_only(&no_names).is_ok());
}

#[test]
fn host_rules_need_dns() {
    let err = Policy::from_toml_str(
        "[network]\nmode = \"allowlist\"\nallow = [\"pypi.org:443\"]\ndns = \"off\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("network.dns") && err.contains("need DNS"),
        "{err}"
    );
    let err = Policy::from_toml_str("[network]\ndns = \"sometimes\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown DNS mode \"sometimes\""), "{err}");
    for bad in ["*.com", "a.*.b.com", "localhost", "-a.example.com"] {
        let err = Policy::from_toml_str(&format!("[network]\nallow = [\"{bad}:443\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid host name"), "{bad}: {err}");
    }
}

#[test]
fn a_root_of_ones_own_is_validated_and_compared() {
    let image = |root: &str| format!("[filesystem]\nmode = \"rootfs\"\nroot = \"{root}\"\n");
    let rootfs = p(&image("/srv/images/a/rootfs"));
    assert_eq!(
        rootfs.filesystem.root.as_deref(),
        Some(std::path::Path::new("/srv/images/a/rootfs"))
    );
    for (bad, field) in [
        ("[filesystem]\nmode = \"rootfs\"\n", "filesystem.root"),
        (&image("relative/rootfs")[..], "filesystem.root"),
        (&image("/")[..], "filesystem.root"),
        (
            "[filesystem]\nmode = \"minimal\"\nroot = \"/srv/x\"\n",
            "filesystem.root",
        ),
    ] {
        match Policy::from_toml_str(bad) {
            Err(Error::Invalid { problems }) => {
                assert!(
                    problems.iter().any(|p| p.field == field),
                    "{bad}: {problems:?}"
                )
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Another tree, or the host's system directories, loosen a rootfs
    // ceiling; a rootfs under a host-readonly ceiling does not.
    let other = p(&image("/srv/images/b/rootfs"));
    assert_eq!(loosened_fields(&rootfs, &other), ["filesystem.root"]);
    let minimal = p("[filesystem]\nmode = \"minimal\"\n");
    assert_eq!(loosened_fields(&rootfs, &minimal), ["filesystem.mode"]);
    assert_eq!(loosened_fields(&minimal, &rootfs), ["filesystem.mode"]);
    let host = p("[filesystem]\nmode = \"host-readonly\"\n");
    assert!(host.merge_tighten_only(&rootfs).is_ok());
    assert!(rootfs.merge_tighten_only(&rootfs).is_ok());
    assert!(
        rootfs
            .to_string()
            .contains("the tree at /srv/images/a/rootfs as root")
    );
}

#[test]
fn a_writable_root_is_validated_and_compared() {
    let image = "[filesystem]\nmode = \"rootfs\"\nroot = \"/srv/images/a/rootfs\"\n";
    let with = |o: &str| p(&format!("{image}root_overlay = {o}\n"));
    let read_only = p(image);
    let tmpfs = with("{}");
    let small = with(r#"{ size = "64MiB" }"#);
    let kept = with(r#"{ upper = "/var/lib/jobs/1" }"#);
    assert!(
        tmpfs.to_string().contains(
            "the tree at /srv/images/a/rootfs as root, writable (writes to a tmpfs, discarded)"
        ),
        "{tmpfs}"
    );
    for (bad, field) in [
        (
            "[filesystem]\nmode = \"minimal\"\nroot_overlay = {}\n".to_string(),
            "filesystem.root_overlay",
        ),
        (
            format!("{image}root_overlay = {{ upper = \"/srv/images/a/rootfs/up\" }}\n"),
            "filesystem.root_overlay.upper",
        ),
        (
            format!("{image}root_overlay = {{ upper = \"/var/x\", size = \"1MiB\" }}\n"),
            "filesystem.root_overlay.size",
        ),
        (
            format!("{image}root_overlay = {{ upper = \"tmp\" }}\n"),
            "filesystem.root_overlay.upper",
        ),
    ] {
        match Policy::from_toml_str(&bad) {
            Err(Error::Invalid { problems }) => {
                assert!(
                    problems.iter().any(|p| p.field == field),
                    "{bad}: {problems:?}"
                )
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Read-only < a small tmpfs < any tmpfs < a kept upper.
    let order = [&read_only, &small, &tmpfs, &kept];
    for (i, base) in order.iter().enumerate() {
        for (j, over) in order.iter().enumerate() {
            if j <= i {
                assert!(base.merge_tighten_only(over).is_ok(), "{i} {j}");
            } else {
                assert_eq!(
                    loosened_fields(base, over),
                    ["filesystem.root_overlay"],
                    "{i} {j}"
                );
            }
        }
    }
    assert!(read_only.merge_tighten_only(&kept).is_err());
}

#[test]
fn overlays_are_validated_and_compared() {
    let ovl = |body: &str| format!("[filesystem]\noverlay = [{body}]\n");
    let ok = p(&ovl(
        r#"{ lower = "/srv/repo", target = "/work", size = "1GiB" }"#,
    ));
    assert_eq!(
        ok.filesystem.overlay.as_ref().unwrap()[0].lower.paths(),
        [std::path::PathBuf::from("/srv/repo")]
    );
    assert!(
        ok.to_string()
            .contains("/work over /srv/repo (writes to a tmpfs of 1GiB, discarded)"),
        "{ok}"
    );
    for (bad, why) in [
        (
            ovl(r#"{ lower = "/srv/repo", target = "/work", upper = "/srv/repo/up" }"#),
            "overlaps the lower",
        ),
        (
            ovl(r#"{ lower = "/srv/repo", target = "/work", upper = "/var/up", size = "1GiB" }"#),
            "a size is for a tmpfs upper",
        ),
        (
            ovl(r#"{ lower = "/srv/a,b", target = "/work" }"#),
            "overlayfs cannot name",
        ),
        (ovl(r#"{ lower = [], target = "/work" }"#), "1 to 64 trees"),
        (
            ovl(r#"{ lower = "relative", target = "/work" }"#),
            "filesystem.overlay[0].lower",
        ),
        (
            format!(
                "{}tmpfs = [{{ target = \"/work/cache\" }}]\n",
                ovl(r#"{ lower = "/srv/repo", target = "/work" }"#)
            ),
            "beneath the overlay",
        ),
    ] {
        match Policy::from_toml_str(&bad) {
            Err(e @ Error::Invalid { .. }) => assert!(e.to_string().contains(why), "{bad}: {e}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    // A tmpfs upper is less than a kept one; another tree or target is not
    // the base's.
    let kept = p(&ovl(
        r#"{ lower = "/srv/repo", target = "/work", upper = "/var/up" }"#,
    ));
    let tmpfs = p(&ovl(r#"{ lower = "/srv/repo", target = "/work" }"#));
    assert!(kept.merge_tighten_only(&tmpfs).is_ok());
    assert_eq!(loosened_fields(&tmpfs, &kept), ["filesystem.overlay"]);
    let other = p(&ovl(r#"{ lower = "/srv/other", target = "/work" }"#));
    assert_eq!(loosened_fields(&tmpfs, &other), ["filesystem.overlay"]);
}
