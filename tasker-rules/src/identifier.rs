//! Namespaces, task names and step names: non-empty, bounded, and safe in paths and URLs.

use std::fmt;

use crate::{
    MAX_NAME_LEN, MAX_NAMESPACE_LEN, MAX_STEP_NAME_LEN, NAME_CHARS, is_name_char, shorten,
};

/// What an identifier names; each kind has its own length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identifier {
    /// A template's namespace (`namespace_name`).
    Namespace,
    /// A template's task name (`name`).
    TaskName,
    /// A step's name.
    StepName,
}

impl Identifier {
    /// The longest value this kind allows, in bytes.
    pub const fn max_len(self) -> usize {
        match self {
            Self::Namespace => MAX_NAMESPACE_LEN,
            Self::TaskName => MAX_NAME_LEN,
            Self::StepName => MAX_STEP_NAME_LEN,
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Namespace => "namespace",
            Self::TaskName => "task name",
            Self::StepName => "step name",
        })
    }
}

/// Why a value cannot be an identifier; `Display` is the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierProblem<'a> {
    /// The value is empty.
    Empty(Identifier),
    /// The value is longer than its kind allows.
    TooLong {
        /// What the value names.
        kind: Identifier,
        /// The value.
        value: &'a str,
    },
    /// The value holds a character other than ASCII letters, digits, `_`, `-` and `.`.
    BadChar {
        /// What the value names.
        kind: Identifier,
        /// The value.
        value: &'a str,
        /// The first character refused.
        bad: char,
    },
}

impl fmt::Display for IdentifierProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty(kind) => write!(f, "{kind} is empty"),
            Self::TooLong { kind, value } => write!(
                f,
                "{kind} `{}` is {} bytes long, over the maximum of {}",
                shorten(value),
                value.len(),
                kind.max_len()
            ),
            Self::BadChar { kind, value, bad } => {
                write!(f, "{kind} `{value}` contains {bad:?}; use {NAME_CHARS}")
            }
        }
    }
}

/// Why `value` cannot be a `kind`, if it cannot: it must be non-empty, at most
/// [`Identifier::max_len`] bytes, and made of ASCII letters, digits, `_`, `-` and `.`.
pub fn identifier_problem(kind: Identifier, value: &str) -> Option<IdentifierProblem<'_>> {
    if value.is_empty() {
        return Some(IdentifierProblem::Empty(kind));
    }
    if value.len() > kind.max_len() {
        return Some(IdentifierProblem::TooLong { kind, value });
    }
    value
        .chars()
        .find(|&c| !is_name_char(c))
        .map(|bad| IdentifierProblem::BadChar { kind, value, bad })
}
