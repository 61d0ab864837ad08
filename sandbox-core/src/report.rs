//! The `EffectiveSandbox` report: what was asked, what is enforced, and how.

use std::fmt;

use sandbox_policy::Policy;
use serde::Serialize;

use crate::host::HostCapabilities;

/// The layers of a sandbox, as the policy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// `filesystem`: what the process sees on disk.
    Filesystem,
    /// `network`: where it may connect.
    Network,
    /// `privilege`: who it runs as, what the kernel lets it do.
    Privilege,
    /// `resources`: time, memory, processes, output.
    Resources,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Filesystem => "filesystem",
            Layer::Network => "network",
            Layer::Privilege => "privilege",
            Layer::Resources => "resources",
        })
    }
}

/// A layer that cannot be enforced as the policy asks, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Downgrade {
    /// The layer concerned.
    pub layer: Layer,
    /// What is not enforced, and why.
    pub reason: String,
}

impl Downgrade {
    pub(crate) fn list(downgrades: &[Downgrade]) -> String {
        downgrades
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Downgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.layer, self.reason)
    }
}

/// Something worth knowing that is not a downgrade (it never makes a run
/// fail closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Note {
    /// The layer concerned.
    pub layer: Layer,
    /// The note.
    pub message: String,
}

/// One layer of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LayerReport {
    /// Whether the layer is in force as the policy asks (no downgrade).
    pub enforced: bool,
    /// How it is enforced, one mechanism per entry.
    pub mechanisms: Vec<String>,
}

/// What a run is (or was) actually confined by: the requested policy,
/// per layer whether it is enforced and by what, the downgrades and notes,
/// and the host's probed capabilities.
///
/// [`Sandbox::report`](crate::Sandbox::report) gives it before a run; every
/// [`RunOutcome`](crate::RunOutcome) carries it. It serializes to JSON and
/// displays as a short human summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EffectiveSandbox {
    /// The policy asked for, resolved (every field set).
    pub policy: Policy,
    /// The `filesystem` layer.
    pub filesystem: LayerReport,
    /// The `network` layer.
    pub network: LayerReport,
    /// The `privilege` layer.
    pub privilege: LayerReport,
    /// The `resources` layer.
    pub resources: LayerReport,
    /// Layers not enforced as asked. With `on_unavailable = "fail"` a
    /// non-empty list means the run is refused.
    pub downgrades: Vec<Downgrade>,
    /// Informational notes.
    pub notes: Vec<Note>,
    /// The host, as probed.
    pub host: HostCapabilities,
}

impl EffectiveSandbox {
    /// Whether every layer is enforced as asked.
    pub fn fully_enforced(&self) -> bool {
        self.downgrades.is_empty()
    }

    /// The report of one layer.
    pub fn layer(&self, layer: Layer) -> &LayerReport {
        match layer {
            Layer::Filesystem => &self.filesystem,
            Layer::Network => &self.network,
            Layer::Privilege => &self.privilege,
            Layer::Resources => &self.resources,
        }
    }

    pub(crate) fn layer_mut(&mut self, layer: Layer) -> &mut LayerReport {
        match layer {
            Layer::Filesystem => &mut self.filesystem,
            Layer::Network => &mut self.network,
            Layer::Privilege => &mut self.privilege,
            Layer::Resources => &mut self.resources,
        }
    }

    /// The report as pretty-printed JSON.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl fmt::Display for EffectiveSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sandbox on Linux {} (caller uid {}):",
            self.host.kernel, self.host.euid
        )?;
        for layer in [
            Layer::Filesystem,
            Layer::Network,
            Layer::Privilege,
            Layer::Resources,
        ] {
            let report = self.layer(layer);
            writeln!(
                f,
                "  {layer}: {}",
                if report.enforced {
                    "enforced"
                } else {
                    "NOT ENFORCED AS ASKED"
                }
            )?;
            for mechanism in &report.mechanisms {
                writeln!(f, "    - {mechanism}")?;
            }
        }
        for d in &self.downgrades {
            writeln!(f, "  downgrade: {d}")?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {}: {}", n.layer, n.message)?;
        }
        Ok(())
    }
}
