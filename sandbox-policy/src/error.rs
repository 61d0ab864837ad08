//! The crate's error type.

use std::fmt;

/// The format a policy was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML, as operators write it.
    Toml,
    /// JSON, as programs send it.
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Toml => "TOML",
            Format::Json => "JSON",
        })
    }
}

/// One problem with a policy: the field it concerns (`network.allow[2]`)
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field path.
    pub field: String,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A list of problems, one per line.
struct Lines<'a>(&'a [Problem]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// An error from parsing, validating or merging policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The document is not a well-formed policy: a syntax error, an unknown
    /// field, a value of the wrong type or form.
    #[error("{format} policy, {field} (line {line}, column {column}): {message}")]
    Parse {
        /// TOML or JSON.
        format: Format,
        /// The field path where it went wrong (`.` for the document).
        field: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The policy is well-formed but not valid; every problem is listed.
    #[error("invalid policy ({} problem{}):{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, Lines(problems))]
    Invalid {
        /// The problems.
        problems: Vec<Problem>,
    },
    /// A tighten-only merge was refused: the override would loosen these
    /// fields of the base.
    #[error("the override would loosen the base policy ({} field{}):{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, Lines(problems))]
    Loosens {
        /// The fields, and how each would loosen.
        problems: Vec<Problem>,
    },
    /// A policy file could not be read.
    #[error("cannot read policy file {}: {message}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        message: String,
        /// The kind of I/O error.
        kind: std::io::ErrorKind,
    },
    /// The policy could not be written in a format (it never happens for a
    /// policy this crate built: every value has a TOML and a JSON form; it
    /// is an error rather than text that would parse as another policy).
    #[error("this policy has no {format} form: {message}")]
    Serialize {
        /// TOML or JSON.
        format: Format,
        /// What the serializer said.
        message: String,
    },
    /// No built-in profile has this name.
    #[error("unknown profile {name:?}: the built-in profiles are {known}")]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
}

impl Error {
    /// The problems, for [`Error::Invalid`] and [`Error::Loosens`].
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Invalid { problems } | Error::Loosens { problems } => problems,
            _ => &[],
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
