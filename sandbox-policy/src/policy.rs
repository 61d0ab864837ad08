//! Reading, writing, completing and merging whole policies.

use crate::error::{Error, Format, line_column};
use crate::model::{Env, Filesystem, Network, Policy, Privilege, Resources};

impl Default for Policy {
    /// The `default` profile: minimal filesystem, no network, privileges
    /// dropped, default seccomp, 30 s, 512 MiB, 128 pids, 1 MiB of output,
    /// fail when a layer cannot be enforced.
    fn default() -> Self {
        crate::profiles::default_profile()
    }
}

impl Policy {
    /// A policy that sets nothing: merged onto a base, it changes nothing.
    pub fn empty() -> Self {
        Policy {
            filesystem: Filesystem::default(),
            network: Network::default(),
            privilege: Privilege::default(),
            resources: Resources::default(),
            env: Env::default(),
            on_unavailable: None,
        }
    }

    /// Parses a TOML policy, rejecting unknown fields, then validates it.
    ///
    /// # Errors
    ///
    /// [`Error::Parse`] naming the field, line and column;
    /// [`Error::Invalid`] listing every semantic problem.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_policy::{Error, Policy};
    ///
    /// let policy = Policy::from_toml_str(r#"
    ///     [network]
    ///     mode = "allowlist"
    ///     allow = ["10.0.0.0/8:443/tcp"]
    /// "#)?;
    /// assert_eq!(policy.network.allow.as_ref().map(Vec::len), Some(1));
    ///
    /// let err = Policy::from_toml_str("[network]\nallow = [\"10.0.0.0/33\"]\n").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "TOML policy, network.allow[0] (line 2, column 10): invalid CIDR \"10.0.0.0/33\": prefix length must be at most 32"
    /// );
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        let parse_error = |field: String, err: &toml::de::Error| {
            let (line, column) = err.span().map_or((1, 1), |s| line_column(text, s.start));
            Error::Parse {
                format: Format::Toml,
                field,
                line,
                column,
                message: err.message().trim_end().to_string(),
            }
        };
        let de = toml::Deserializer::parse(text).map_err(|e| parse_error(".".into(), &e))?;
        let policy: Policy = serde_path_to_error::deserialize(de).map_err(|e| {
            let mut err = parse_error(e.path().to_string(), e.inner());
            // The deserializer may point at the enclosing array or table;
            // the path names the exact value, so point at that.
            if let (Error::Parse { line, column, .. }, Some(start)) =
                (&mut err, toml_value_start(text, e.path()))
            {
                (*line, *column) = line_column(text, start);
            }
            err
        })?;
        policy.validate()?;
        Ok(policy)
    }

    /// Parses a JSON policy, rejecting unknown fields, then validates it.
    ///
    /// # Errors
    ///
    /// As [`Policy::from_toml_str`].
    pub fn from_json_str(text: &str) -> Result<Self, Error> {
        let json_error = |field: String, err: &serde_json::Error| Error::Parse {
            format: Format::Json,
            field,
            line: err.line(),
            column: err.column(),
            message: strip_json_position(&err.to_string()),
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let policy: Policy = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| json_error(e.path().to_string(), e.inner()))?;
        // Nothing but white space may follow the document.
        de.end().map_err(|e| json_error(".".into(), &e))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Reads a policy file: JSON if its name ends in `.json`, TOML
    /// otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] if the file cannot be read; otherwise as
    /// [`Policy::from_toml_str`].
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
            kind: e.kind(),
        })?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        }
    }

    /// The canonical TOML form: stable field order, canonical units and
    /// rules, unset fields left out. Parses back to an equal policy.
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`] if the serializer refuses a value. Every value
    /// of this model has a TOML form (integers are u32, durations and
    /// sizes are strings, map keys are strings), so this is a bug if it
    /// happens; it is an error rather than text that would parse back as
    /// another policy.
    pub fn to_toml_string(&self) -> Result<String, Error> {
        toml::to_string(self).map_err(|e| Error::Serialize {
            format: Format::Toml,
            message: e.to_string(),
        })
    }

    /// The canonical JSON form (pretty-printed). Parses back to an equal
    /// policy.
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`], as for
    /// [`to_toml_string`](Policy::to_toml_string).
    pub fn to_json_string(&self) -> Result<String, Error> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Serialize {
            format: Format::Json,
            message: e.to_string(),
        })
    }

    /// This policy with every unset field taken from `base`. Lists and maps
    /// are replaced whole, not concatenated.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_policy::{NetMode, Policy};
    ///
    /// let job = Policy::from_toml_str("[network]\nmode = \"none\"\n")?;
    /// let merged = Policy::default().merge(&job);
    /// assert_eq!(merged.network.mode, Some(NetMode::None));
    /// assert_eq!(merged.resources, Policy::default().resources);
    /// # Ok::<(), sandbox_policy::Error>(())
    /// ```
    pub fn merge(&self, over: &Policy) -> Policy {
        let (b, o) = (self, over);
        Policy {
            filesystem: Filesystem {
                mode: pick(&o.filesystem.mode, &b.filesystem.mode),
                root: pick(&o.filesystem.root, &b.filesystem.root),
                root_overlay: pick(&o.filesystem.root_overlay, &b.filesystem.root_overlay),
                binds: pick(&o.filesystem.binds, &b.filesystem.binds),
                tmpfs: pick(&o.filesystem.tmpfs, &b.filesystem.tmpfs),
                workdir: pick(&o.filesystem.workdir, &b.filesystem.workdir),
                mask: pick(&o.filesystem.mask, &b.filesystem.mask),
                overlay: pick(&o.filesystem.overlay, &b.filesystem.overlay),
            },
            network: Network {
                mode: pick(&o.network.mode, &b.network.mode),
                allow: pick(&o.network.allow, &b.network.allow),
                deny: pick(&o.network.deny, &b.network.deny),
                dns: pick(&o.network.dns, &b.network.dns),
                allow_metadata: pick(&o.network.allow_metadata, &b.network.allow_metadata),
                limits: b.network.limits.merged(&o.network.limits),
            },
            privilege: Privilege {
                user: pick(&o.privilege.user, &b.privilege.user),
                seccomp: pick(&o.privilege.seccomp, &b.privilege.seccomp),
                landlock: pick(&o.privilege.landlock, &b.privilege.landlock),
                allow_nested_userns: pick(
                    &o.privilege.allow_nested_userns,
                    &b.privilege.allow_nested_userns,
                ),
                socket_families: pick(&o.privilege.socket_families, &b.privilege.socket_families),
            },
            resources: Resources {
                wall_time: pick(&o.resources.wall_time, &b.resources.wall_time),
                cpu_time: pick(&o.resources.cpu_time, &b.resources.cpu_time),
                memory: pick(&o.resources.memory, &b.resources.memory),
                max_output_bytes: pick(
                    &o.resources.max_output_bytes,
                    &b.resources.max_output_bytes,
                ),
                max_file_size: pick(&o.resources.max_file_size, &b.resources.max_file_size),
                pids: pick(&o.resources.pids, &b.resources.pids),
                cpu: pick(&o.resources.cpu, &b.resources.cpu),
                open_files: pick(&o.resources.open_files, &b.resources.open_files),
                kernel: b.resources.kernel.merged(&o.resources.kernel),
            },
            env: Env {
                allow: pick(&o.env.allow, &b.env.allow),
                set: pick(&o.env.set, &b.env.set),
            },
            on_unavailable: pick(&o.on_unavailable, &b.on_unavailable),
        }
    }

    /// This policy completed with the `default` profile: what a run of it
    /// means. Every field the default profile sets is set.
    pub fn resolved(&self) -> Policy {
        Policy::default().merge(self)
    }
}

/// Where the value at `path` starts in the TOML `text`.
fn toml_value_start(text: &str, path: &serde_path_to_error::Path) -> Option<usize> {
    use serde_path_to_error::Segment;
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut found: Option<&toml::Spanned<DeValue<'_>>> = None;
    for segment in path.iter() {
        let value = match (segment, found.map(toml::Spanned::get_ref)) {
            (Segment::Map { key }, None) => {
                table
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == key.as_str())?
                    .1
            }
            (Segment::Map { key }, Some(DeValue::Table(t))) => {
                table = t;
                t.iter()
                    .find(|(k, _)| k.get_ref().as_ref() == key.as_str())?
                    .1
            }
            (Segment::Seq { index }, Some(DeValue::Array(a))) => a.get(*index)?,
            _ => return found.map(|v| v.span().start),
        };
        found = Some(value);
    }
    found.map(|v| v.span().start)
}

fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
    over.as_ref().or(base.as_ref()).cloned()
}

/// serde_json appends " at line L column C" to its messages; the position
/// is reported in fields of its own.
fn strip_json_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
