//! The cgroup placement's vocabulary, shared by the strategies
//! (`placement`), the systemd scope (`systemd`) and the directory helper
//! (`dir`): what a caller may ask for, what was chosen, and the names.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The controllers a sandbox limits with.
pub(crate) const WANTED: [&str; 3] = ["memory", "pids", "cpu"];

/// The leaf the caller moves into (strategy 3), and the name that marks a
/// delegated parent (strategy 1).
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// How per-run cgroups on the unified hierarchy find their parent.
///
/// # Examples
///
/// ```no_run
/// use sandbox_core::{CgroupPlacement, Sandbox};
///
/// // A systemd unit with `Delegate=yes` gave us this subtree:
/// let sandbox = Sandbox::from_profile("default")?
///     .with_cgroup_placement(CgroupPlacement::Parent("/sys/fs/cgroup/jobs.slice/runner".into()))?;
/// # Ok::<(), sandbox_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CgroupPlacement {
    /// The strategies of this module, in order (the default).
    #[default]
    Auto,
    /// A delegated parent the caller was given: an absolute path (beneath
    /// the cgroup v2 mount) or one relative to the mount. It must hold no
    /// process; the controllers are enabled in it if they are not already.
    Parent(PathBuf),
    /// Move **every process** of the caller's cgroup (the caller and
    /// whatever shares its cgroup: a container's shell, say) into
    /// `<own>/supervisor`, then enable the controllers in `<own>`. Opt-in:
    /// it moves processes that are not the caller's.
    MoveCgroupToLeaf,
    /// A transient systemd scope with `Delegate=yes`, from the system
    /// manager (a root caller) or the caller's user manager: the last
    /// automatic strategy, asked for first.
    SystemdScope,
    /// Make no cgroup v2 placement: limits that need one are downgrades.
    Disabled,
}

/// The strategy that found the parent of a run's cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupStrategy {
    /// A parent the caller gave ([`CgroupPlacement::Parent`]).
    GivenParent,
    /// An empty delegated parent of the caller's leaf cgroup.
    DelegatedParent,
    /// The caller's own cgroup, which can enable controllers for its
    /// children (the root cgroup, or one holding no process).
    OwnCgroup,
    /// The caller moved itself (and the processes it started) into
    /// `<own>/supervisor`.
    MovedToLeaf,
    /// Every process of the caller's cgroup was moved into
    /// `<own>/supervisor` ([`CgroupPlacement::MoveCgroupToLeaf`]).
    MovedCgroupToLeaf,
    /// A transient scope with `Delegate=yes` from the systemd system
    /// manager.
    SystemdSystemScope,
    /// A transient scope with `Delegate=yes` from the caller's systemd user
    /// manager.
    SystemdUserScope,
}

impl std::fmt::Display for CgroupStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::GivenParent => "a delegated parent the caller gave",
            Self::DelegatedParent => "the empty delegated parent of the caller's leaf cgroup",
            Self::OwnCgroup => {
                "the caller's own cgroup, which enables controllers for its children"
            }
            Self::MovedToLeaf => "the caller moved itself into <own>/supervisor",
            Self::MovedCgroupToLeaf => {
                "every process of the caller's cgroup moved into <own>/supervisor (as asked)"
            }
            Self::SystemdSystemScope => {
                "a transient scope with Delegate=yes from the systemd system manager"
            }
            Self::SystemdUserScope => {
                "a transient scope with Delegate=yes from the caller's systemd user manager"
            }
        })
    }
}

/// Where a run's cgroup v2 goes, and what it gets there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Placement {
    /// How this parent was found.
    pub strategy: CgroupStrategy,
    /// The parent of the per-run cgroups, relative to the mount.
    pub parent: PathBuf,
    /// The controllers a child of `parent` gets (its
    /// `cgroup.subtree_control`, read back after enabling).
    pub controllers: Vec<String>,
    /// Whether the caller cannot move a run's process into `parent` itself
    /// and the systemd manager of the scope does it for each run
    /// (`AttachProcessesToUnit`: a caller whose cgroup is not beneath its
    /// manager's, as in a login session).
    pub moved_by_manager: bool,
}
