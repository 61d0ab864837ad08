//! The JSON Schema of a policy document, so that editors can check policy
//! files as they are written.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::model::{Limit, Policy, User};
use crate::net_rule::NetRule;
use crate::units::{ByteSize, Duration};

impl Policy {
    /// The JSON Schema (draft 2020-12) of a policy document, pretty-printed.
    /// It checks structure, names and forms; [`Policy::validate`] checks the
    /// rest (for instance that bind targets are distinct).
    ///
    /// # Examples
    ///
    /// ```
    /// let schema: serde_json::Value = serde_json::from_str(&sandbox_policy::Policy::json_schema())?;
    /// assert_eq!(schema["title"], "Policy");
    /// assert_eq!(schema["additionalProperties"], false);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(Policy);
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration with a unit: ms, s, m (or min) or h, with an optional decimal fraction: \"30s\", \"1.5s\", \"500ms\", \"2m\".",
            "pattern": "^\\s*[0-9]+(\\.[0-9]{1,9})?\\s*(ms|s|m|min|h)\\s*$"
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a number of bytes, or a string with a unit: B, K/KB, M/MB, G/GB, T/TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024): \"64MiB\", \"1G\".",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]{1,9})?\\s*(B|b|K|k|KB|kB|M|MB|G|GB|T|TB|KiB|MiB|GiB|TiB)?\\s*$" }
            ]
        })
    }
}

impl JsonSchema for NetRule {
    fn schema_name() -> Cow<'static, str> {
        "NetRule".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "CIDR, CIDR:PORT or CIDR:PORT-PORT, optionally followed by /tcp or /udp; IPv6 in brackets when a port follows: \"10.0.0.0/8:443/tcp\", \"[2001:db8::/32]:443\". Or a host name, or *. and a domain for every name below it, in the same forms: \"pypi.org:443/tcp\", \"*.githubusercontent.com:443\".",
            "minLength": 1
        })
    }
}

impl JsonSchema for User {
    fn schema_name() -> Cow<'static, str> {
        "User".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "\"nobody\", \"root\" (of the sandbox's user namespace), or a numeric uid.",
            "anyOf": [
                { "type": "string", "enum": ["nobody", "root"] },
                { "type": "integer", "minimum": 0, "maximum": 4294967294u64 }
            ]
        })
    }
}

impl<T: JsonSchema> JsonSchema for Limit<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Limit_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let inner = generator.subschema_for::<T>();
        json_schema!({
            "description": "A limit, or \"unlimited\".",
            "anyOf": [
                { "type": "string", "const": "unlimited" },
                inner
            ]
        })
    }
}
