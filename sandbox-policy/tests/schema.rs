//! The JSON Schema accepts the shipped profiles and refuses malformed
//! documents, as the parser does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use sandbox_policy::{PROFILE_NAMES, Policy};
use serde_json::{Value, json};

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&Policy::json_schema()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn schema_accepts_every_profile_and_parseable_document() {
    let v = validator();
    for name in PROFILE_NAMES {
        let doc: Value =
            serde_json::from_str(&Policy::profile(name).unwrap().to_json_string().unwrap())
                .unwrap();
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    for doc in [
        json!({}),
        json!({"resources": {"memory": 1048576, "wall_time": "1.5s", "pids": "unlimited"}}),
        json!({"privilege": {"user": 1000}}),
        json!({"network": {"mode": "allowlist", "allow": ["[2001:db8::/32]:443/tcp"]}}),
    ] {
        assert!(v.is_valid(&doc), "{doc}");
        Policy::from_json_str(&doc.to_string()).unwrap();
    }
}

#[test]
fn schema_refuses_what_the_parser_refuses() {
    let v = validator();
    for doc in [
        json!({"netwrk": {}}),
        json!({"network": {"mode": "open"}}),
        json!({"network": {"mode": "none", "extra": 1}}),
        json!({"resources": {"wall_time": "30"}}),
        json!({"resources": {"memory": "lots"}}),
        json!({"resources": {"pids": -1}}),
        json!({"privilege": {"user": "bob"}}),
        json!({"filesystem": {"binds": [{"source": "/a"}]}}),
        json!({"on_unavailable": "maybe"}),
    ] {
        assert!(!v.is_valid(&doc), "schema accepted {doc}");
        assert!(
            Policy::from_json_str(&doc.to_string()).is_err(),
            "parser accepted {doc}"
        );
    }
}
