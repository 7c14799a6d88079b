//! The rules a tasker task template follows, written once and shared by the runtime
//! (`tasker`, when it builds or loads a template), the macros (`tasker-macros`, which apply them
//! at compile time, at the user's token) and the CLI (`tasker-cli`).
//!
//! Limits and defaults are constants. Each rule is a function that returns `None` for an
//! acceptable value and otherwise a small typed problem whose `Display` is the message, so a
//! broken rule reads the same wherever it is reported; each caller wraps it in its own error
//! type (the runtime's `Problem`, the macros' spanned `syn::Error`, the CLI's usage error).
//!
//! ```
//! use tasker_rules::{Identifier, identifier_problem, version_problem};
//!
//! assert!(identifier_problem(Identifier::TaskName, "order_process").is_none());
//! let problem = version_problem("1.0").map(|p| p.to_string());
//! assert_eq!(
//!     problem.as_deref(),
//!     Some("version `1.0` is not a semantic version `MAJOR.MINOR.PATCH` \
//!           (optionally `-pre` and `+build`): expected three numbers separated by dots")
//! );
//! ```
//!
//! The crate has no dependencies, so the proc-macro crate can use it without the runtime.

mod cron;
mod event;
mod graph;
mod identifier;
mod step;
#[cfg(test)]
mod tests;
mod version;

pub use cron::{CivilTime, Cron, CronProblem, MAX_CRON_LEN, parse_cron};
pub use event::{EventNameProblem, custom_event_problem, declared_event_problem};
pub use graph::{GraphTooDeep, graph_depth_problem, topological_order};
pub use identifier::{Identifier, IdentifierProblem, identifier_problem};
pub use step::{
    RetryLimitTooHigh, StepCountProblem, TimeoutProblem, retry_limit_problem, step_count_problem,
    timeout_problem,
};
pub use version::{SemverProblem, VersionProblem, version_problem};

// The length limits are the widths of the columns the values are stored in (`migrations/`).

/// Longest namespace name, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Longest task name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest version string, in bytes.
pub const MAX_VERSION_LEN: usize = 16;
/// Longest step name, in bytes.
pub const MAX_STEP_NAME_LEN: usize = 128;
/// Longest name of a custom event declared in code (`custom_event!`), in bytes.
pub const MAX_CUSTOM_EVENT_NAME_LEN: usize = 128;
/// Most steps one template may declare.
pub const MAX_STEPS_PER_TEMPLATE: usize = 1000;
/// Most steps on one dependency chain (the graph's longest path, counted in steps).
pub const MAX_GRAPH_DEPTH: usize = 100;
/// Highest `default_retry_limit` a step may ask for.
pub const MAX_RETRY_LIMIT: u32 = 1000;
/// Most missed slots a schedule may catch up on after an outage (`catch_up`).
pub const MAX_SCHEDULE_CATCH_UP: u32 = 1000;

/// Default namespace of a template that names none (the seed's `default`).
pub const DEFAULT_NAMESPACE: &str = "default";
/// Default version of a template that names none (the seed's `0.1.0`).
pub const DEFAULT_VERSION: &str = "0.1.0";
/// Default number of attempts a step may make (the seed's `default_retry_limit`).
pub const DEFAULT_RETRY_LIMIT: u32 = 3;

/// Writes the reserved event families once, with and without their dot.
macro_rules! reserved_event_families {
    ($($family:literal),+ $(,)?) => {
        /// The engine's own event families (`task`, `step`, …), which custom events may not use.
        pub const RESERVED_EVENT_FAMILIES: &[&str] = &[$($family),+];
        /// Prefixes of the engine's own events (`task.`, `step.`, …), which custom events may
        /// not use.
        pub const RESERVED_EVENT_PREFIXES: &[&str] = &[$(concat!($family, ".")),+];
    };
}

reserved_event_families!("task", "step", "workflow", "observability", "test");

/// The first 32 characters of `value`, for messages about over-long values.
fn shorten(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(32) {
        Some((cut, _)) => format!("{}…", &value[..cut]).into(),
        None => value.into(),
    }
}

/// Whether `c` may appear in a namespace, task, step or custom event name.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// The characters [`is_name_char`] accepts, for messages.
const NAME_CHARS: &str = "ASCII letters, digits, `_`, `-` and `.`";
