//! Host names in network rules: `pypi.org`, and `*.githubusercontent.com`
//! for every name below a domain. Names are checked as DNS names
//! (RFC 1035 lengths, letters, digits and hyphens after IDNA), kept in
//! their ASCII (punycode) form, lower case, without a trailing dot.

use std::fmt;

use crate::net_rule::NetRuleError;

/// A host name, or a wildcard for every name below a domain.
///
/// `*.example.com` matches `a.example.com` and `a.b.example.com`, not
/// `example.com` itself (allow both to have both). A wildcard is only
/// ever the whole leftmost label, and is followed by at least two labels
/// (`*.com` is refused).
///
/// # Examples
///
/// ```
/// use sandbox_policy::HostPattern;
///
/// let exact: HostPattern = "PyPI.org.".parse()?;
/// assert_eq!(exact.to_string(), "pypi.org");
/// assert!(exact.matches("pypi.org") && !exact.matches("www.pypi.org"));
/// let below: HostPattern = "*.githubusercontent.com".parse()?;
/// assert!(below.matches("objects.githubusercontent.com"));
/// assert!(!below.matches("githubusercontent.com") && !below.matches("evilgithubusercontent.com"));
/// assert_eq!("bücher.example".parse::<HostPattern>()?.to_string(), "xn--bcher-kva.example");
/// # Ok::<(), sandbox_policy::NetRuleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPattern {
    /// ASCII, lower case, no trailing dot; for a wildcard, the domain
    /// below which it matches.
    name: String,
    wildcard: bool,
}

/// The longest name DNS carries (in its dotted form).
const MAX_NAME: usize = 253;
/// The longest label.
const MAX_LABEL: usize = 63;

fn fail(message: String) -> NetRuleError {
    NetRuleError::new(message)
}

impl HostPattern {
    /// The name (for a wildcard, the domain below which it matches).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this matches every name below [`name`](Self::name).
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether `name` (ASCII, any case, a trailing dot or not) is matched.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        if self.wildcard {
            let (n, domain) = (name.as_bytes(), self.name.as_bytes());
            n.len() > domain.len() + 1
                && n[n.len() - domain.len() - 1] == b'.'
                && n[n.len() - domain.len()..].eq_ignore_ascii_case(domain)
        } else {
            name.eq_ignore_ascii_case(&self.name)
        }
    }

    /// Whether every name `other` matches, this matches too.
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self.wildcard, other.wildcard) {
            (false, false) => self.name == other.name,
            (false, true) => false,
            // Below us, or (for a wildcard) at or below our domain.
            (true, false) => self.matches(&other.name),
            (true, true) => self.name == other.name || self.matches(&other.name),
        }
    }
}

/// Whether `text` looks like a host name rather than an address: it has
/// a letter or a `*` (an address, v4 or v6, has hex digits only in its
/// IPv6 groups, which never come with a dot-separated letter label).
pub(crate) fn looks_like_host(text: &str) -> bool {
    !text.contains(':')
        && !text.contains('/')
        && text
            .bytes()
            .any(|b| b.is_ascii_alphabetic() || b == b'*' || !b.is_ascii())
}

impl std::str::FromStr for HostPattern {
    type Err = NetRuleError;

    fn from_str(text: &str) -> Result<Self, NetRuleError> {
        let bad = |why: &str| fail(format!("invalid host name {text:?}: {why}"));
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if rest.contains('*') {
            return Err(bad(
                "a wildcard is only the whole leftmost label (\"*.example.com\")",
            ));
        }
        let rest = rest.strip_suffix('.').unwrap_or(rest);
        if rest.is_empty() {
            return Err(bad("empty"));
        }
        // ASCII names are checked here, label by label (clearer errors);
        // others, and punycode labels, by IDNA.
        let idna = |name: &str| {
            idna::domain_to_ascii_strict(name)
                .map_err(|_| bad("not a valid internationalized domain name (IDNA)"))
        };
        let ascii = if rest.is_ascii() {
            rest.to_ascii_lowercase()
        } else {
            idna(rest)?.to_ascii_lowercase()
        };
        if ascii.len() > MAX_NAME {
            return Err(bad(&format!(
                "{} characters, more than DNS's {MAX_NAME}",
                ascii.len()
            )));
        }
        let labels: Vec<&str> = ascii.split('.').collect();
        for label in &labels {
            if label.is_empty() {
                return Err(bad("an empty label (two dots in a row)"));
            }
            if label.len() > MAX_LABEL {
                return Err(bad(&format!(
                    "the label {label:?} is longer than {MAX_LABEL} characters"
                )));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(bad(&format!(
                    "the label {label:?} has characters other than letters, digits and '-'"
                )));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad(&format!("the label {label:?} starts or ends with '-'")));
            }
        }
        if labels.len() < 2 {
            return Err(bad(if wildcard {
                "a wildcard needs a domain of at least two labels below it (\"*.example.com\", not \"*.com\")"
            } else {
                "a single label is not a host on the internet; write the full name"
            }));
        }
        if labels.iter().any(|l| l.starts_with("xn--")) {
            idna(&ascii)?;
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad(
                "the last label is all digits (an address? write it as one)",
            ));
        }
        // A name that reads back as digits, dots and '-' only (a
        // non-ASCII digit mapped by IDNA: "1.1-³") would be taken for an
        // address where its canonical form is written out.
        if !wildcard && !ascii.bytes().any(|b| b.is_ascii_alphabetic()) {
            return Err(bad(
                "its canonical form has no letter, so it would read as an address",
            ));
        }
        Ok(Self {
            name: ascii,
            wildcard,
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        s.parse::<HostPattern>().unwrap_err().to_string()
    }

    #[test]
    fn names_are_canonical_and_errors_specific() {
        for (input, canonical) in [
            ("pypi.org", "pypi.org"),
            ("GitHub.COM.", "github.com"),
            ("*.githubusercontent.com", "*.githubusercontent.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("a-b.c-d.example", "a-b.c-d.example"),
        ] {
            let p: HostPattern = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(p.to_string(), canonical);
        }
        assert!(err("*.com").contains("at least two labels"));
        assert!(err("localhost").contains("single label"));
        assert!(err("a.*.example.com").contains("only the whole leftmost label"));
        assert!(err("*example.com").contains("only the whole leftmost label"));
        assert!(err("a..example.com").contains("empty label"));
        assert!(err("-a.example.com").contains("starts or ends with '-'"));
        assert!(err(&format!("{}.example.com", "a".repeat(64))).contains("longer than 63"));
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(err(&long).contains("more than DNS's 253"), "{}", err(&long));
        assert!(err("a_b.example.com").contains("other than letters"));
        assert!(err("xn--zz.example").contains("IDNA"), "bad punycode");
        assert!(err("é..example").contains("IDNA"));
        assert!(err("1.2.3.4a.5").contains("all digits"));
        // Found by the net_rule fuzzer: IDNA maps "³" to "3", and
        // "11.1-3" written back would read as an address.
        assert!(err("11.1-³.").contains("no letter"), "{}", err("11.1-³."));
        assert!(
            "*.11.1-³".parse::<HostPattern>().is_ok(),
            "a wildcard reads back as a name"
        );
    }

    #[test]
    fn matching_and_coverage() {
        let p = |s: &str| s.parse::<HostPattern>().unwrap();
        let wild = p("*.example.com");
        assert!(wild.matches("a.example.com") && wild.matches("A.B.Example.Com."));
        assert!(!wild.matches("example.com") && !wild.matches("badexample.com"));
        assert!(wild.covers(&p("a.example.com")));
        assert!(wild.covers(&p("*.a.example.com")) && wild.covers(&p("*.example.com")));
        assert!(!wild.covers(&p("example.com")));
        assert!(!p("a.example.com").covers(&wild));
        assert!(p("a.example.com").covers(&p("A.example.com")));
    }
}
