#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `tracing` spans and events of a run, and its `RunOutcome::timings`.
//! Needs root, as in CI.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

mod common;
use common::*;

/// Everything a subscriber saw, as text: `span NAME {fields}`, `record
/// {fields}`, `event MESSAGE {fields}`.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Seen {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut text = Text::default();
        span.record(&mut text);
        let mut seen = self.0.lock().unwrap();
        seen.push(format!("span {} {}", span.metadata().name(), text.0));
        Id::from_u64(seen.len() as u64)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut text = Text::default();
        values.record(&mut text);
        self.0.lock().unwrap().push(format!("record {}", text.0));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = Text::default();
        event.record(&mut text);
        self.0.lock().unwrap().push(format!("event {}", text.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
#[ignore = "needs root"]
fn a_run_has_its_phases_as_spans_events_and_timings() {
    common::require_root();
    let seen = Seen::default();
    let (sandbox, out) = tracing::subscriber::with_default(seen.clone(), || {
        let sandbox = sandbox("");
        let out = sh(&sandbox, "sleep 0.2");
        (sandbox, out)
    });
    assert!(out.success());
    let seen = seen.0.lock().unwrap().clone();
    let has = |needle: &str| seen.iter().any(|line| line.contains(needle));
    assert!(has("event message=sandbox decided probe_us="), "{seen:#?}");
    assert!(has("span sandbox_run run_id="), "{seen:#?}");
    assert!(has("program=sh"), "{seen:#?}");
    for phase in ["span plan", "span clone", "span setup", "span teardown"] {
        assert!(has(phase), "{phase} in {seen:#?}");
    }
    assert!(has("record pid="), "{seen:#?}");
    assert!(has("phase=\"filesystem\""), "{seen:#?}");
    assert!(
        has("event message=sandbox run ended status=exit code 0"),
        "{seen:#?}"
    );

    // The same figures in the outcome: every phase of the default
    // profile, in order, within the setup; the command's 0.2 s in the run.
    let t = &out.timings;
    let names: Vec<&str> = t.phases.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "start",
            "network",
            "filesystem",
            "identity",
            "cgroups",
            "credentials",
            "command",
            "landlock",
            "seccomp",
            "exec"
        ],
        "{t:?}"
    );
    let phases: Duration = t.phases.iter().map(|(_, d)| *d).sum();
    assert!(phases <= t.setup, "{t:?}");
    assert!(t.supervise >= Duration::from_millis(200), "{t:?}");
    assert!(t.plan > Duration::ZERO && t.clone > Duration::ZERO && t.teardown > Duration::ZERO);
    // Control: a run that does not sleep is timed well under 0.2 s (the
    // figure follows the command, not a constant).
    let quick = sh(&sandbox, "true");
    assert!(
        quick.timings.supervise < Duration::from_millis(200),
        "{:?}",
        quick.timings
    );
    assert_eq!(quick.timings.phases.len(), 10);
}
