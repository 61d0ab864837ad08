//! Reading policies: strictness, error positions, validation, profiles and
//! canonical output.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use sandbox_policy::{
    ByteSize, Duration, Error, Format, Limit, NetMode, OnUnavailable, PROFILE_NAMES, Policy,
    SeccompMode, User,
};

fn parse_err(toml: &str) -> (String, usize, usize, String) {
    match Policy::from_toml_str(toml).unwrap_err() {
        Error::Parse {
            field,
            line,
            column,
            message,
            format: Format::Toml,
        } => (field, line, column, message),
        other => panic!("expected a parse error, got {other}"),
    }
}

fn problems(toml: &str) -> Vec<String> {
    match Policy::from_toml_str(toml).unwrap_err() {
        Error::Invalid { problems } => problems.iter().map(ToString::to_string).collect(),
        other => panic!("expected validation problems, got {other}"),
    }
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let (field, line, _, message) = parse_err("[network]\nmode = \"none\"\nallow_metdata = true\n");
    assert_eq!((field.as_str(), line), ("network.allow_metdata", 3));
    assert!(
        message.contains("unknown field `allow_metdata`") && message.contains("allow_metadata"),
        "{message}"
    );
    let (field, _, _, message) = parse_err("[netwrk]\n");
    assert_eq!(field, "netwrk");
    assert!(message.contains("unknown field `netwrk`"), "{message}");
    let (field, _, _, message) =
        parse_err("[[filesystem.binds]]\nsource = \"/a\"\ntarget = \"/a\"\nrw = true\n");
    assert_eq!(field, "filesystem.binds[0].rw");
    assert!(message.contains("unknown field `rw`"), "{message}");
}

#[test]
fn value_errors_name_field_line_and_expectation() {
    let (field, line, _, message) = parse_err("[resources]\nwall_time = \"30\"\n");
    assert_eq!((field.as_str(), line), ("resources.wall_time", 2));
    assert_eq!(message, "invalid duration \"30\": a unit is required");
    let (field, _, _, message) = parse_err("[resources]\nmemory = \"lots\"\n");
    assert_eq!(field, "resources.memory");
    assert_eq!(
        message,
        "invalid size \"lots\": expected a number before the unit"
    );
    let (field, _, _, message) = parse_err("[network]\nmode = \"open\"\n");
    assert_eq!(field, "network.mode");
    assert!(
        message.contains("unknown variant `open`") && message.contains("allowlist"),
        "{message}"
    );
    let (field, _, _, message) =
        parse_err("[network]\nallow = [\"10.0.0.0/8\", \"198.51.100.0/24\", \"10.0.0.0/8:0\"]\n");
    assert_eq!(field, "network.allow[2]");
    assert!(message.starts_with("invalid port 0"), "{message}");
    // The position is the offending element's, not its array's.
    let (_, line, column, _) =
        parse_err("[network]\nallow = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/8:0\",\n]\n");
    assert_eq!((line, column), (4, 3));
    let (_, line, column, _) = parse_err("[[filesystem.binds]]\nsource = \"/a\"\ntarget = 5\n");
    assert_eq!((line, column), (3, 10));
    let (field, _, _, message) = parse_err("[privilege]\nuser = \"bob\"\n");
    assert_eq!(field, "privilege.user");
    assert!(
        message.contains("\"nobody\", \"root\" or a numeric uid"),
        "{message}"
    );
    let (_, _, _, message) = parse_err("[privilege]\nuser = -1\n");
    assert!(message.contains("must not be negative"), "{message}");
    let (line, column) = {
        let (_, l, c, _) = parse_err("on_unavailable = \"fail\"\n[resources]\npids = \"many\"\n");
        (l, c)
    };
    assert_eq!((line, column), (3, 8));
    // Syntax errors have a position too.
    let (field, line, _, _) = parse_err("[network\nmode = 1\n");
    assert_eq!((field.as_str(), line), (".", 1));
}

#[test]
fn json_errors_name_field_line_and_column() {
    let err =
        Policy::from_json_str("{\n  \"network\": {\n    \"allow\": [\"10.0.0.0/8:99999\"]\n  }\n}")
            .unwrap_err();
    match &err {
        Error::Parse {
            format: Format::Json,
            field,
            line,
            message,
            ..
        } => {
            assert_eq!((field.as_str(), *line), ("network.allow[0]", 3));
            assert!(message.starts_with("invalid port 99999"), "{message}");
            assert!(!message.contains(" at line "), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .starts_with("JSON policy, network.allow[0] (line 3, column "),
        "{err}"
    );
    let err = Policy::from_json_str("{\"env\": {\"allow\": []}} trailing").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Parse {
                format: Format::Json,
                ..
            }
        ),
        "{err}"
    );
    let err = Policy::from_json_str("{\"resources\": {\"pids\": 1.5}}").unwrap_err();
    assert!(err.to_string().contains("resources.pids"), "{err}");
}

#[test]
fn validation_lists_every_problem() {
    let found = problems(
        r#"
        [filesystem]
        binds = [
            { source = "data", target = "/data" },
            { source = "/srv", target = "srv" },
            { source = "/srv", target = "/data", writable = true },
        ]
        tmpfs = [{ target = "/tmp/../etc", size = "1KiB" }]
        mask = ["/data"]
        workdir = "work"

        [network]
        mode = "none"
        allow = ["10.0.0.0/8"]
        dns = true

        [resources]
        memory = "512KiB"
        wall_time = "0s"
        pids = 0
        open_files = 2

        [env]
        allow = ["PATH", "BAD-NAME"]
        set = { "1X" = "y" }
        "#,
    );
    let expected = [
        "filesystem.binds[0].source: \"data\" is not an absolute path",
        "filesystem.binds[1].target: \"srv\" is not an absolute path",
        "filesystem.binds[2].target: \"/data\" is already a target (filesystem.binds[0].target)",
        "filesystem.tmpfs[0].target: \"/tmp/../etc\" must not contain `.` or `..` components",
        "filesystem.tmpfs[0].size: must be at least 4KiB",
        "filesystem.mask[0]: \"/data\" is already a target (filesystem.binds[0].target)",
        "filesystem.workdir: \"work\" is not an absolute path",
        "network.allow: allow rules need network.mode = \"allowlist\" (the mode is \"none\": nothing leaves the sandbox)",
        "network.dns: DNS needs network.mode = \"allowlist\" (the mode is \"none\")",
        "resources.wall_time: must be more than 0s (or \"unlimited\")",
        "resources.memory: 512KiB is below the minimum of 1MiB",
        "resources.pids: must be at least 1 (or \"unlimited\")",
        "resources.open_files: 2 is below 3: stdin, stdout and stderr need fds",
        "env.allow[1]: \"BAD-NAME\" is not a variable name or glob (letters, digits, '_' and '*')",
        "env.set.1X: is not a valid variable name (letters, digits and '_', not starting with a digit)",
    ];
    assert_eq!(found, expected);
    let msg = Policy::from_toml_str("[resources]\npids = 0\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "invalid policy (1 problem):\n  - resources.pids: must be at least 1 (or \"unlimited\")"
    );
}

#[test]
fn the_root_is_not_a_mount_target_but_nesting_is_fine() {
    let found = problems("[filesystem]\nmask = [\"/\"]\n");
    assert_eq!(
        found,
        ["filesystem.mask[0]: \"/\" is the sandbox's root: choose it with filesystem.mode"]
    );
    Policy::from_toml_str(
        "[filesystem]\ntmpfs = [{ target = \"/data\" }]\nbinds = [{ source = \"/srv\", target = \"/data/srv\" }]\nmask = [\"/data/srv/secret\"]\n",
    )
    .unwrap();
}

#[test]
fn a_secret_named_in_allow_is_refused_not_dropped() {
    let found = problems("[env]\nallow = [\"PATH\", \"GITHUB_TOKEN\"]\n");
    assert_eq!(
        found,
        [
            "env.allow[1]: \"GITHUB_TOKEN\" looks like a secret and is never passed through; give its value in env.set"
        ]
    );
    // A glob may match secrets: those are filtered out at run time, by design.
    let env =
        Policy::from_toml_str("[env]\nallow = [\"GITHUB_*\"]\nset = { GITHUB_TOKEN = \"t\" }\n")
            .unwrap()
            .env;
    assert!(env.passes("GITHUB_SHA") && !env.passes("GITHUB_TOKEN"));
}

#[test]
fn host_mode_takes_no_rules() {
    let found = problems("[network]\nmode = \"host\"\ndeny = [\"10.0.0.0/8\"]\n");
    assert_eq!(
        found,
        [
            "network.deny: rules need network.mode = \"allowlist\" (the mode is \"host\", which is not filtered)"
        ]
    );
}

#[test]
fn limits_users_and_units() {
    let p = Policy::from_toml_str(
        "[resources]\nwall_time = \"unlimited\"\nmemory = 1073741824\nmax_output_bytes = \"64KiB\"\npids = \"unlimited\"\n[privilege]\nuser = 1000\n",
    )
    .unwrap();
    assert_eq!(p.resources.wall_time, Some(Limit::Unlimited));
    assert_eq!(
        p.resources.memory,
        Some(Limit::Max(ByteSize::from_bytes(1 << 30)))
    );
    assert_eq!(
        p.resources.max_output_bytes,
        Some(Limit::Max(ByteSize::from_bytes(64 << 10)))
    );
    assert_eq!(p.resources.pids, Some(Limit::Unlimited));
    assert_eq!(p.privilege.user, Some(User::Uid(1000)));
    let text = p.to_toml_string().unwrap();
    assert!(
        text.contains("memory = \"1GiB\"") && text.contains("wall_time = \"unlimited\""),
        "{text}"
    );
    assert_eq!(Policy::from_toml_str(&text).unwrap(), p);
}

#[test]
fn profiles_are_shipped_valid_and_default_is_the_default() {
    assert_eq!(Policy::profile("default").unwrap(), Policy::default());
    let text = Policy::profile_text("default").unwrap();
    assert_eq!(
        Policy::from_toml_str(text).unwrap(),
        Policy::default(),
        "default.toml and the code agree"
    );
    let d = Policy::default();
    assert_eq!(d.network.mode, Some(NetMode::None));
    assert_eq!(d.privilege.seccomp, Some(SeccompMode::Default));
    assert_eq!(
        d.resources.wall_time,
        Some(Limit::Max(Duration::from_secs(30)))
    );
    assert_eq!(d.resources.memory, Some(Limit::Max(ByteSize::mib(512))));
    assert_eq!(d.resources.pids, Some(Limit::Max(128)));
    assert_eq!(
        d.resources.max_output_bytes,
        Some(Limit::Max(ByteSize::mib(1)))
    );
    assert_eq!(d.on_unavailable, Some(OnUnavailable::Fail));
    for name in PROFILE_NAMES {
        let p = Policy::profile(name).unwrap();
        p.validate().unwrap();
        assert_eq!(p.resolved(), p, "{name} sets every field");
        // The files under examples/policies/ are the embedded ones.
        let path = format!(
            "{}/examples/policies/{name}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            Policy::profile_text(name).unwrap()
        );
    }
    assert_eq!(
        Policy::profile("networked").unwrap().network.mode,
        Some(NetMode::Allowlist)
    );
    let err = Policy::profile("permissive").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown profile \"permissive\": the built-in profiles are default, strict, networked"
    );
}

#[test]
fn canonical_output_round_trips_and_is_stable() {
    for name in PROFILE_NAMES {
        let p = Policy::profile(name).unwrap();
        let toml = p.to_toml_string().unwrap();
        let json = p.to_json_string().unwrap();
        assert_eq!(
            Policy::from_toml_str(&toml).unwrap(),
            p,
            "{name} TOML:\n{toml}"
        );
        assert_eq!(
            Policy::from_json_str(&json).unwrap(),
            p,
            "{name} JSON:\n{json}"
        );
        assert_eq!(
            Policy::from_toml_str(&toml)
                .unwrap()
                .to_toml_string()
                .unwrap(),
            toml,
            "stable"
        );
    }
    assert_eq!(Policy::empty().to_toml_string().unwrap(), "");
    assert_eq!(Policy::from_toml_str("").unwrap(), Policy::empty());
    assert_eq!(Policy::from_json_str("{}").unwrap(), Policy::empty());
}

#[test]
fn merge_fills_unset_fields_from_the_base() {
    let base = Policy::default();
    assert_eq!(base.merge(&Policy::empty()), base);
    assert_eq!(Policy::empty().merge(&base), base);
    let over =
        Policy::from_toml_str("[resources]\nmemory = \"1GiB\"\n[env]\nallow = []\n").unwrap();
    let merged = base.merge(&over);
    assert_eq!(
        merged.resources.memory,
        Some(Limit::Max(ByteSize::mib(1024)))
    );
    assert_eq!(merged.resources.pids, base.resources.pids);
    assert_eq!(
        merged.env.allow,
        Some(vec![]),
        "a list is replaced, not concatenated"
    );
}

#[test]
fn summary_fits_one_screen_and_says_what_is_set() {
    for name in PROFILE_NAMES {
        let text = Policy::profile(name).unwrap().to_string();
        println!("--- {name}\n{text}");
        assert_eq!(text.lines().count(), 6, "{text}");
        assert!(!text.contains("(inherited)"), "{text}");
    }
    let partial = Policy::from_toml_str("[network]\nmode = \"none\"\n")
        .unwrap()
        .to_string();
    assert!(
        partial.contains("network      none: loopback only"),
        "{partial}"
    );
    assert!(partial.contains("wall (inherited)"), "{partial}");
    let networked = Policy::profile("networked").unwrap().to_string();
    assert!(
        networked.contains(
            "allowlist: 198.51.100.0/24:443/tcp, [2001:db8::/32]:443/tcp; denied: 198.51.100.13/32"
        ),
        "{networked}"
    );
}

#[test]
fn load_reads_toml_and_json_files() {
    let dir = std::env::temp_dir().join(format!("sandbox-policy-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let strict = Policy::profile("strict").unwrap();
    std::fs::write(dir.join("p.toml"), strict.to_toml_string().unwrap()).unwrap();
    std::fs::write(dir.join("p.JSON"), strict.to_json_string().unwrap()).unwrap();
    assert_eq!(Policy::load(dir.join("p.toml")).unwrap(), strict);
    assert_eq!(Policy::load(dir.join("p.JSON")).unwrap(), strict);
    let err = Policy::load(dir.join("missing.toml")).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Read {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("cannot read policy file "),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cpu_is_a_percentage_of_one_cpu() {
    assert!(Policy::from_toml_str("[resources]\ncpu = 50\n").is_ok());
    assert!(Policy::from_toml_str("[resources]\ncpu = \"unlimited\"\n").is_ok());
    for bad in ["0", "102401"] {
        let found = problems(&format!("[resources]\ncpu = {bad}\n"));
        assert!(
            found
                .iter()
                .any(|p| p.contains("resources.cpu") && p.contains("percentage")),
            "{bad}: {found:?}"
        );
    }
}

#[test]
fn socket_families_parse_merge_tighten_and_explain() {
    use sandbox_policy::SocketFamily;
    let p =
        Policy::from_toml_str("[privilege]\nsocket_families = [\"vsock\", \"packet\"]\n").unwrap();
    assert_eq!(
        p.privilege.socket_families,
        Some(vec![SocketFamily::Vsock, SocketFamily::Packet])
    );
    let (field, line, _, message) = parse_err("[privilege]\nsocket_families = [\"vsok\"]\n");
    assert_eq!((field.as_str(), line), ("privilege.socket_families[0]", 2));
    assert!(message.contains("vsock"), "{message}");
    // Tighten-only: adding a family loosens, dropping one tightens.
    let base = Policy::default();
    let err = base.merge_tighten_only(&p).unwrap_err().to_string();
    assert!(
        err.contains("privilege.socket_families") && err.contains("vsock"),
        "{err}"
    );
    assert!(base.merge_tighten_only(&Policy::empty()).is_ok());
    let vsock_only = Policy::from_toml_str("[privilege]\nsocket_families = [\"vsock\"]\n").unwrap();
    assert!(vsock_only.is_at_least_as_strict_as(&p));
    assert!(!p.is_at_least_as_strict_as(&vsock_only));
    let text = p.resolved().to_string();
    assert!(
        text.contains(
            "socket families unix, inet, inet6, netlink (route, sock_diag), vsock, packet"
        ),
        "{text}"
    );
    assert!(Policy::json_schema().contains("vsock"));
}

#[test]
fn a_bind_may_allow_sockets_which_loosens_it() {
    let with = Policy::from_toml_str(
        "[filesystem]\nbinds = [{ source = \"/srv\", target = \"/srv\", sockets = true }]\n",
    )
    .unwrap();
    let without =
        Policy::from_toml_str("[filesystem]\nbinds = [{ source = \"/srv\", target = \"/srv\" }]\n")
            .unwrap();
    assert!(with.filesystem.binds.as_ref().unwrap()[0].sockets);
    assert!(!without.filesystem.binds.as_ref().unwrap()[0].sockets);
    assert!(without.is_at_least_as_strict_as(&with));
    let err = without.merge_tighten_only(&with).unwrap_err().to_string();
    assert!(err.contains("(sockets)"), "{err}");
    assert!(with.to_string().contains("its unix sockets reachable"));
    // Canonical output keeps it, and only when set.
    assert!(with.to_toml_string().unwrap().contains("sockets = true"));
    assert!(!without.to_toml_string().unwrap().contains("sockets"));
}
