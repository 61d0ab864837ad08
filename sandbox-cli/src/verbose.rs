//! `sbx run -v`: sandbox-core's `tracing` events on stderr (the decision's
//! cost, and each run's phase timings), with a subscriber of our own that
//! prints one line per event.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Prints sandbox-core's INFO events as `sbx: MESSAGE (FIELD=VALUE …)`.
struct Lines {
    next_span: AtomicU64,
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let sep = if self.rest.is_empty() { "" } else { "; " };
            let _ = write!(self.rest, "{sep}{}: {value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

impl Subscriber for Lines {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("sandbox_core") && *metadata.level() <= Level::INFO
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        eprintln!("sbx: {} ({})", fields.message, fields.rest);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Prints sandbox-core's events on stderr from now on.
pub(crate) fn install() -> Result<(), String> {
    tracing::subscriber::set_global_default(Lines {
        next_span: AtomicU64::new(1),
    })
    .map_err(|e| format!("-v: {e}"))
}
