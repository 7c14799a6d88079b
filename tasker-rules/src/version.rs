//! Template versions: semantic versions, bounded in length.

use std::fmt;

use crate::{MAX_VERSION_LEN, shorten};

/// Why a string is not a semantic version; `Display` says which part is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemverProblem {
    /// The core is not three dot-separated parts.
    NotThreeNumbers,
    /// A core part is not a number.
    NotNumbers,
    /// A core number has a leading zero.
    LeadingZero,
    /// A numeric pre-release identifier has a leading zero.
    PreReleaseLeadingZero,
    /// A pre-release or build identifier is empty.
    EmptyIdentifier,
    /// A pre-release or build identifier holds a character other than ASCII letters, digits, `-`.
    IdentifierChar,
}

impl fmt::Display for SemverProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotThreeNumbers => "expected three numbers separated by dots",
            Self::NotNumbers => "MAJOR, MINOR and PATCH must be numbers",
            Self::LeadingZero => "numbers must not have leading zeros",
            Self::PreReleaseLeadingZero => {
                "numeric pre-release identifiers must not have leading zeros"
            }
            Self::EmptyIdentifier => "pre-release and build identifiers must not be empty",
            Self::IdentifierChar => {
                "pre-release and build identifiers use only ASCII letters, digits and `-`"
            }
        })
    }
}

/// Why a string cannot be a template's version; `Display` is the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionProblem<'a> {
    /// Longer than [`MAX_VERSION_LEN`] bytes.
    TooLong(&'a str),
    /// Not a semantic version.
    NotSemver {
        /// The version.
        version: &'a str,
        /// What is wrong with it.
        why: SemverProblem,
    },
}

impl fmt::Display for VersionProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLong(version) => write!(
                f,
                "version `{}` is {} bytes long, over the maximum of {MAX_VERSION_LEN}",
                shorten(version),
                version.len()
            ),
            Self::NotSemver { version, why } => write!(
                f,
                "version `{version}` is not a semantic version `MAJOR.MINOR.PATCH` \
                 (optionally `-pre` and `+build`): {why}"
            ),
        }
    }
}

/// Why `version` cannot be a template's version, if it cannot: at most [`MAX_VERSION_LEN`]
/// bytes of `MAJOR.MINOR.PATCH[-PRE][+BUILD]` as semver 2.0.0 defines it.
pub fn version_problem(version: &str) -> Option<VersionProblem<'_>> {
    if version.len() > MAX_VERSION_LEN {
        return Some(VersionProblem::TooLong(version));
    }
    semver_problem(version).map(|why| VersionProblem::NotSemver { version, why })
}

fn semver_problem(version: &str) -> Option<SemverProblem> {
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Some(SemverProblem::NotThreeNumbers);
    }
    for part in parts {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Some(SemverProblem::NotNumbers);
        }
        if has_leading_zero(part) {
            return Some(SemverProblem::LeadingZero);
        }
    }
    for ident in pre.into_iter().flat_map(|pre| pre.split('.')) {
        if let Some(problem) = identifier_problem(ident) {
            return Some(problem);
        }
        if ident.bytes().all(|b| b.is_ascii_digit()) && has_leading_zero(ident) {
            return Some(SemverProblem::PreReleaseLeadingZero);
        }
    }
    build
        .into_iter()
        .flat_map(|build| build.split('.'))
        .find_map(identifier_problem)
}

/// Checks one dot-separated pre-release or build identifier.
fn identifier_problem(ident: &str) -> Option<SemverProblem> {
    if ident.is_empty() {
        Some(SemverProblem::EmptyIdentifier)
    } else if !ident
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Some(SemverProblem::IdentifierChar)
    } else {
        None
    }
}

fn has_leading_zero(number: &str) -> bool {
    number.len() > 1 && number.starts_with('0')
}
