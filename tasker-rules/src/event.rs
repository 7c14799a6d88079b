//! Custom event names: dotted, and clear of the engine's own event families.

use std::fmt;

use crate::{
    MAX_CUSTOM_EVENT_NAME_LEN, NAME_CHARS, RESERVED_EVENT_FAMILIES, RESERVED_EVENT_PREFIXES,
    is_name_char, shorten,
};

/// Why a string cannot name a custom event; `Display` is the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventNameProblem<'a> {
    /// No dot, or an empty part between dots.
    NotDotted(&'a str),
    /// Starts with one of [`RESERVED_EVENT_PREFIXES`].
    ReservedPrefix {
        /// The name.
        name: &'a str,
        /// The reserved prefix, as the name spells it.
        prefix: &'a str,
    },
    /// Longer than [`MAX_CUSTOM_EVENT_NAME_LEN`] bytes.
    TooLong(&'a str),
    /// Holds a character other than ASCII letters, digits, `_`, `-` and `.`.
    BadChar {
        /// The name.
        name: &'a str,
        /// The first character refused.
        bad: char,
    },
}

impl fmt::Display for EventNameProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotDotted(name) => write!(
                f,
                "custom event `{name}` must be a dotted name like `order.fulfilled`"
            ),
            Self::ReservedPrefix { name, prefix } => {
                write!(
                    f,
                    "custom event `{name}` uses the reserved prefix `{prefix}`; \
                     the engine's own events are "
                )?;
                for (i, family) in RESERVED_EVENT_FAMILIES.iter().enumerate() {
                    let separator = match i {
                        0 => "",
                        i if i + 1 == RESERVED_EVENT_FAMILIES.len() => " and ",
                        _ => ", ",
                    };
                    write!(f, "{separator}`{family}.*`")?;
                }
                Ok(())
            }
            Self::TooLong(name) => write!(
                f,
                "custom event `{}` is {} bytes long, over the maximum of \
                 {MAX_CUSTOM_EVENT_NAME_LEN}",
                shorten(name),
                name.len()
            ),
            Self::BadChar { name, bad } => {
                write!(
                    f,
                    "custom event `{name}` contains {bad:?}; use {NAME_CHARS}"
                )
            }
        }
    }
}

/// Why `name` cannot be a custom event a template declares (`custom_events`), if it cannot:
/// it must be dotted (`order.fulfilled`, no empty part) and must not start with a
/// [reserved prefix](RESERVED_EVENT_PREFIXES).
pub fn custom_event_problem(name: &str) -> Option<EventNameProblem<'_>> {
    if !is_dotted(name) {
        return Some(EventNameProblem::NotDotted(name));
    }
    RESERVED_EVENT_PREFIXES
        .iter()
        .find(|prefix| name.starts_with(*prefix))
        .map(|prefix| EventNameProblem::ReservedPrefix { name, prefix })
}

/// Why `name` cannot be a custom event declared in code with `custom_event!`, if it cannot.
///
/// Stricter than [`custom_event_problem`], because these names are stored
/// (`tasker_custom_events.name`) and listed program-wide: at most
/// [`MAX_CUSTOM_EVENT_NAME_LEN`] bytes of ASCII letters, digits, `_`, `-` and `.`, and no
/// reserved prefix in any letter case.
pub fn declared_event_problem(name: &str) -> Option<EventNameProblem<'_>> {
    if name.len() > MAX_CUSTOM_EVENT_NAME_LEN {
        return Some(EventNameProblem::TooLong(name));
    }
    if !is_dotted(name) {
        return Some(EventNameProblem::NotDotted(name));
    }
    if let Some(bad) = name.chars().find(|&c| !is_name_char(c)) {
        return Some(EventNameProblem::BadChar { name, bad });
    }
    RESERVED_EVENT_PREFIXES.iter().find_map(|reserved| {
        let prefix = name.get(..reserved.len())?;
        prefix
            .eq_ignore_ascii_case(reserved)
            .then_some(EventNameProblem::ReservedPrefix { name, prefix })
    })
}

/// Whether `name` has a dot and no empty part between dots.
fn is_dotted(name: &str) -> bool {
    name.contains('.') && !name.split('.').any(str::is_empty)
}
