//! The option names the attributes accept.

/// Options of `#[task_handler(...)]`.
pub(crate) const TASK_OPTIONS: &[&str] = &[
    "name",
    "namespace",
    "version",
    "context",
    "description",
    "concurrent",
    "timeout",
    "template",
    "crate",
    "schedule",
    "time_zone",
    "catch_up",
    "schedule_context",
];

/// Options of `#[step(...)]`.
pub(crate) const STEP_OPTIONS: &[&str] = &[
    "depends_on",
    "retry_limit",
    "retryable",
    "timeout",
    "skippable",
    "name",
    "description",
];

/// Options of `#[step_handler(...)]`.
pub(crate) const STEP_HANDLER_OPTIONS: &[&str] = &["name", "crate"];

/// `` `a`, `b` or `c` ``, for "expected one of" messages.
pub(crate) fn one_of(options: &[&str]) -> String {
    let quoted: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}
