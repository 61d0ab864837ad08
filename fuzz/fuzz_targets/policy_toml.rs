//! Any text given to the TOML policy parser: it must never panic, and a
//! policy it accepts must write back out to TOML and JSON that parse to the
//! same policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandbox_policy::Policy;

fuzz_target!(|text: &str| {
    if let Ok(policy) = Policy::from_toml_str(text) {
        let toml = policy.to_toml_string().unwrap();
        assert_eq!(
            Policy::from_toml_str(&toml).as_ref(),
            Ok(&policy),
            "TOML round trip of {text:?}:\n{toml}"
        );
        let json = policy.to_json_string().unwrap();
        assert_eq!(
            Policy::from_json_str(&json).as_ref(),
            Ok(&policy),
            "JSON round trip of {text:?}:\n{json}"
        );
        let _ = policy.to_string();
        let _ = policy.merge_tighten_only(&Policy::default());
    }
});
