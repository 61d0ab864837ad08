//! Any text given to the network rule parser (and the duration and size
//! parsers): never a panic, and what is accepted prints to a canonical form
//! that parses back to the same value and prints the same again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandbox_policy::{ByteSize, Duration, NetRule};

fuzz_target!(|text: &str| {
    if let Ok(rule) = text.parse::<NetRule>() {
        let canonical = rule.to_string();
        assert_eq!(
            canonical.parse::<NetRule>(),
            Ok(rule.clone()),
            "{text:?} -> {canonical:?}"
        );
        assert!(rule.covers(&rule));
    }
    if let Ok(d) = text.parse::<Duration>() {
        assert_eq!(d.to_string().parse::<Duration>(), Ok(d), "{text:?}");
    }
    if let Ok(s) = text.parse::<ByteSize>() {
        assert_eq!(s.to_string().parse::<ByteSize>(), Ok(s), "{text:?}");
    }
});
