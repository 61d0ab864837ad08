//! Any text given to the JSON policy parser: it must never panic, and a
//! policy it accepts must write back out to JSON and TOML that parse to the
//! same policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandbox_policy::Policy;

fuzz_target!(|text: &str| {
    if let Ok(policy) = Policy::from_json_str(text) {
        let json = policy.to_json_string().unwrap();
        assert_eq!(
            Policy::from_json_str(&json).as_ref(),
            Ok(&policy),
            "JSON round trip of {text:?}:\n{json}"
        );
        let toml = policy.to_toml_string().unwrap();
        assert_eq!(
            Policy::from_toml_str(&toml).as_ref(),
            Ok(&policy),
            "TOML round trip of {text:?}:\n{toml}"
        );
        let _ = policy.is_at_least_as_strict_as(&Policy::default());
    }
});
