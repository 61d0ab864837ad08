//! Which variables of the caller's environment a policy passes through.

use crate::model::Env;

/// Patterns of names that look like secrets: never passed through by an
/// `allow` glob, only by an explicit `set`.
const SECRET_PATTERNS: [&str; 9] = [
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*_KEY",
    "*CREDENTIAL*",
    "AWS_*",
    "*APIKEY*",
    "*PRIVATE*",
];

/// Whether `name` matches `glob`, where `*` matches any run of characters.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    fn go(g: &[u8], n: &[u8]) -> bool {
        match g.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(glob.as_bytes(), name.as_bytes())
}

/// Whether `name` looks like it holds a secret (`GITHUB_TOKEN`,
/// `DB_PASSWORD`, `SSH_KEY`, `AWS_ACCESS_KEY_ID`, …), compared without case.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_PATTERNS.iter().any(|p| glob_matches(p, &upper))
}

/// Whether `name` is a valid variable name: letters, digits and `_`, not
/// starting with a digit.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Env {
    /// Whether the caller's variable `name` is passed through: it matches an
    /// `allow` glob and does not look like a secret. (A variable in `set` is
    /// set whatever its name.)
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_policy::Policy;
    ///
    /// let env = Policy::from_toml_str("[env]\nallow = [\"PATH\", \"GITHUB_*\"]\n")?.env;
    /// assert!(env.passes("PATH"));
    /// assert!(env.passes("GITHUB_SHA"));
    /// assert!(!env.passes("GITHUB_TOKEN"));
    /// assert!(!env.passes("HOME"));
    /// # Ok::<(), sandbox_policy::Error>(())
    /// ```
    pub fn passes(&self, name: &str) -> bool {
        !looks_secret(name) && self.allow.iter().flatten().any(|g| glob_matches(g, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("LC_*", "LC_ALL"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("A*B*C", "AxxBxxC"));
        assert!(!glob_matches("A*B", "AxxC"));
        assert!(!glob_matches("PATH", "PATHX"));
    }

    #[test]
    fn secrets() {
        for s in [
            "GITHUB_TOKEN",
            "db_password",
            "SSH_KEY",
            "AWS_REGION",
            "MY_SECRET_THING",
            "API_CREDENTIALS",
        ] {
            assert!(looks_secret(s), "{s}");
        }
        for s in ["PATH", "LANG", "KEYBOARD", "HOME", "TERM"] {
            assert!(!looks_secret(s), "{s}");
        }
    }
}
