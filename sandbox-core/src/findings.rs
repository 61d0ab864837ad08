//! What the facilities find while deciding (downgrades, notes, the
//! mechanisms of each layer), and the small helpers they share. Below
//! every facility: it depends on the report's types only.

use sandbox_policy::{Policy, User};
use serde::Serialize;

use crate::host::{Capability, HostCapabilities};
use crate::report::{Downgrade, EffectiveSandbox, Layer, LayerReport, Note};

/// What the facilities found while deciding: downgrades, notes, and the
/// mechanisms each layer is enforced by.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    downgrades: Vec<Downgrade>,
    notes: Vec<Note>,
    mechanisms: [Vec<String>; 4],
}

impl Findings {
    /// `layer` is not enforced as asked, because of `reason`.
    pub(crate) fn down(&mut self, layer: Layer, reason: impl Into<String>) {
        self.downgrades.push(Downgrade {
            layer,
            reason: reason.into(),
        });
    }

    /// Something the caller should know about `layer` that is not a
    /// downgrade.
    pub(crate) fn note(&mut self, layer: Layer, message: impl Into<String>) {
        self.notes.push(Note {
            layer,
            message: message.into(),
        });
    }

    /// One mechanism `layer` is enforced by, in the report's order.
    pub(crate) fn mechanism(&mut self, layer: Layer, text: impl Into<String>) {
        let index = match layer {
            Layer::Filesystem => 0,
            Layer::Network => 1,
            Layer::Privilege => 2,
            Layer::Resources => 3,
        };
        self.mechanisms[index].push(text.into());
    }

    pub(crate) fn into_report(self, policy: &Policy, host: &HostCapabilities) -> EffectiveSandbox {
        let mut report = EffectiveSandbox {
            policy: policy.clone(),
            filesystem: LayerReport::default(),
            network: LayerReport::default(),
            privilege: LayerReport::default(),
            resources: LayerReport::default(),
            downgrades: self.downgrades,
            notes: self.notes,
            host: host.clone(),
        };
        let layers = [
            Layer::Filesystem,
            Layer::Network,
            Layer::Privilege,
            Layer::Resources,
        ];
        for (layer, mechanisms) in layers.into_iter().zip(self.mechanisms) {
            let enforced = !report.downgrades.iter().any(|d| d.layer == layer);
            *report.layer_mut(layer) = LayerReport {
                enforced,
                mechanisms,
            };
        }
        report
    }
}

/// The kebab-case name serde gives a policy enum value.
pub(crate) fn name_of(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Why a capability is (un)available, as the probe said.
pub(crate) fn reason(capability: &Capability) -> &str {
    match capability {
        Capability::Available => "available",
        Capability::Unavailable { reason } | Capability::Unknown { reason } => reason,
    }
}

/// The uid and gid the sandbox's user has inside.
pub(crate) fn ids_inside(user: Option<User>) -> (u32, u32) {
    match user.unwrap_or(User::Nobody) {
        User::Nobody => (65534, 65534),
        User::Root => (0, 0),
        User::Uid(uid) => (uid, uid),
    }
}
