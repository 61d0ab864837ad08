//! How long each part of a run took, in the outcome and as `tracing`
//! events: the plan, the clone, the setup phase by phase (timed by the
//! child itself on the progress page), the run of the command, and the
//! teardown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// How long each part of a run took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RunTimings {
    /// Building the run's plan (in the parent).
    #[serde(serialize_with = "micros")]
    pub plan: Duration,
    /// The clone itself.
    #[serde(serialize_with = "micros")]
    pub clone: Duration,
    /// From the clone to the command's `execve`: the id maps, the
    /// cgroups and the child's steps.
    #[serde(serialize_with = "micros")]
    pub setup: Duration,
    /// The setup's phases as the child timed them (`start`, `network`,
    /// `filesystem`, `identity`, `cgroups`, `credentials`, `command`,
    /// `landlock`, `seccomp`, `exec`), in order.
    #[serde(serialize_with = "phase_micros")]
    pub phases: Vec<(&'static str, Duration)>,
    /// From the `execve` to the end of the sandbox's last process and its
    /// output.
    #[serde(serialize_with = "micros")]
    pub supervise: Duration,
    /// Reaping, collecting the status and usage, stopping the forwarder.
    #[serde(serialize_with = "micros")]
    pub teardown: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn phase_micros<S: serde::Serializer>(
    phases: &[(&'static str, Duration)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(phases.len()))?;
    for (name, d) in phases {
        map.serialize_entry(name, &u64::try_from(d.as_micros()).unwrap_or(u64::MAX))?;
    }
    map.end()
}

impl RunTimings {
    /// The setup's phases from the child's step start times: each phase
    /// from its first step's start to the next phase's (the last to
    /// `exec_ns`, when the parent saw the `execve`). Phases with an
    /// untimed step are left out.
    pub(crate) fn phases_from(
        phases: &[(usize, &'static str)],
        progress: &sandbox_child::Progress,
        exec_ns: u64,
    ) -> Vec<(&'static str, Duration)> {
        phases
            .iter()
            .enumerate()
            .filter_map(|(i, &(first, name))| {
                let start = progress.started_at(first)?;
                let end = match phases.get(i + 1) {
                    Some(&(next, _)) => progress.started_at(next)?,
                    None => exec_ns,
                };
                Some((name, Duration::from_nanos(end.saturating_sub(start))))
            })
            .collect()
    }
}

impl std::fmt::Display for RunTimings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "plan {:.2} ms, clone {:.2} ms, setup {:.2} ms (",
            ms(self.plan),
            ms(self.clone),
            ms(self.setup)
        )?;
        for (i, (name, d)) in self.phases.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {:.2}", ms(*d))?;
        }
        write!(
            f,
            "), run {:.2} ms, teardown {:.2} ms",
            ms(self.supervise),
            ms(self.teardown)
        )
    }
}

/// A new run id (process-wide, from 1), for tracing.
pub(crate) fn next_run_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
