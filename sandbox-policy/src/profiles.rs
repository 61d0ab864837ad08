//! The built-in profiles, embedded from `examples/policies/*.toml`.

use std::path::PathBuf;

use crate::error::Error;
use crate::model::*;
use crate::units::{ByteSize, Duration};

/// The names of the built-in profiles.
pub const PROFILE_NAMES: [&str; 3] = ["default", "strict", "networked"];

/// The profile files, as shipped under `examples/policies/`.
const PROFILE_FILES: [(&str, &str); 3] = [
    ("default", include_str!("../examples/policies/default.toml")),
    ("strict", include_str!("../examples/policies/strict.toml")),
    (
        "networked",
        include_str!("../examples/policies/networked.toml"),
    ),
];

impl Policy {
    /// A built-in profile: `default`, `strict` or `networked`. Each is the
    /// `default` profile with the fields its file sets.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownProfile`] for another name.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_policy::{Policy, SeccompMode};
    ///
    /// let strict = Policy::profile("strict")?;
    /// assert_eq!(strict.privilege.seccomp, Some(SeccompMode::Strict));
    /// assert!(Policy::profile("lax").is_err());
    /// # Ok::<(), sandbox_policy::Error>(())
    /// ```
    pub fn profile(name: &str) -> Result<Policy, Error> {
        let (_, text) = PROFILE_FILES
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::UnknownProfile {
                name: name.to_string(),
                known: PROFILE_NAMES.join(", "),
            })?;
        Ok(default_profile().merge(&Policy::from_toml_str(text)?))
    }

    /// The TOML text of a built-in profile, as shipped.
    pub fn profile_text(name: &str) -> Option<&'static str> {
        PROFILE_FILES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }
}

/// The `default` profile, built in code so that `Policy::default()` cannot
/// fail; a test checks that `examples/policies/default.toml` says the same.
pub(crate) fn default_profile() -> Policy {
    Policy {
        filesystem: Filesystem {
            mode: Some(FsMode::Minimal),
            root: None,
            root_overlay: None,
            binds: Some(Vec::new()),
            tmpfs: Some(vec![Tmpfs {
                target: PathBuf::from("/tmp"),
                size: Some(ByteSize::mib(64)),
            }]),
            workdir: Some(PathBuf::from("/tmp")),
            mask: Some(Vec::new()),
            overlay: Some(Vec::new()),
        },
        network: Network {
            mode: Some(NetMode::None),
            allow: Some(Vec::new()),
            deny: Some(Vec::new()),
            dns: Some(DnsMode::Auto),
            allow_metadata: Some(false),
            limits: NetLimits {
                tcp_connections: Some(256),
                udp_flows: Some(256),
                new_flows_per_second: Some(1000),
            },
        },
        privilege: Privilege {
            user: Some(User::Nobody),
            seccomp: Some(SeccompMode::Default),
            landlock: Some(LandlockMode::Auto),
            allow_nested_userns: Some(false),
            socket_families: Some(Vec::new()),
        },
        resources: Resources {
            wall_time: Some(Limit::Max(Duration::from_secs(30))),
            cpu_time: Some(Limit::Max(Duration::from_secs(30))),
            memory: Some(Limit::Max(ByteSize::mib(512))),
            max_output_bytes: Some(Limit::Max(ByteSize::mib(1))),
            max_file_size: Some(Limit::Max(ByteSize::mib(64))),
            pids: Some(Limit::Max(128)),
            cpu: Some(Limit::Unlimited),
            open_files: Some(Limit::Max(256)),
            kernel: KernelQuotas {
                inotify_instances: Some(Limit::Max(32)),
                inotify_watches: Some(Limit::Max(8192)),
                fanotify_groups: Some(Limit::Max(8)),
                fanotify_marks: Some(Limit::Max(8192)),
                namespaces: Some(Limit::Max(64)),
                user_namespaces: Some(Limit::Max(16)),
                pending_signals: Some(Limit::Max(1024)),
            },
        },
        env: Env {
            allow: Some(["PATH", "LANG", "LC_*", "TZ"].map(String::from).to_vec()),
            set: Some(Default::default()),
        },
        on_unavailable: Some(OnUnavailable::Fail),
    }
}
