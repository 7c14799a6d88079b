//! The catalog of events the engine publishes, by their seed names.
//!
//! Each transition of a task or step publishes exactly one of these (see
//! [`Tasker::subscribe`](crate::Tasker::subscribe)); the payload is an
//! [`EventRecord`](crate::EventRecord).

/// The receiving end of [`Tasker::subscribe`](crate::Tasker::subscribe), and its error
/// (`Lagged(n)` when a slow receiver missed `n` events, `Closed` when the engine is gone).
pub use tokio::sync::broadcast::{Receiver, error::RecvError};

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A task's transition.
    Task,
    /// A step's transition.
    Step,
}

impl EventKind {
    /// `task` or `step`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Task => "task",
            EventKind::Step => "step",
        }
    }
}

/// One event of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventInfo {
    /// The dotted name, e.g. `step.completed`.
    pub name: &'static str,
    /// What the event is about.
    pub kind: EventKind,
    /// When it is published.
    pub description: &'static str,
}

const fn event(name: &'static str, kind: EventKind, description: &'static str) -> EventInfo {
    EventInfo {
        name,
        kind,
        description,
    }
}

/// Every event the engine publishes.
pub const CATALOG: &[EventInfo] = &[
    event(
        "task.initialize_requested",
        EventKind::Task,
        "A task was created (its first transition, to `pending`).",
    ),
    event(
        "task.start_requested",
        EventKind::Task,
        "A task's first step was claimed: the task is `in_progress`.",
    ),
    event(
        "task.completed",
        EventKind::Task,
        "Every step of the task is complete or resolved.",
    ),
    event(
        "task.failed",
        EventKind::Task,
        "A step failed for good: the task is in `error`.",
    ),
    event(
        "task.retry_requested",
        EventKind::Task,
        "A task in `error` was sent back to `pending` by a retry.",
    ),
    event(
        "task.cancelled",
        EventKind::Task,
        "A task was cancelled with its unfinished steps.",
    ),
    event(
        "task.resolved_manually",
        EventKind::Task,
        "An operator resolved the task by hand.",
    ),
    event(
        "step.initialize_requested",
        EventKind::Step,
        "A step was created with its task (its first transition, to `pending`).",
    ),
    event(
        "step.execution_requested",
        EventKind::Step,
        "A worker claimed the step and started an attempt.",
    ),
    event(
        "step.completed",
        EventKind::Step,
        "An attempt succeeded and its result was stored.",
    ),
    event(
        "step.failed",
        EventKind::Step,
        "An attempt failed (retried later while attempts remain).",
    ),
    event(
        "step.retry_requested",
        EventKind::Step,
        "A failed step went back to `pending` for another attempt.",
    ),
    event(
        "step.cancelled",
        EventKind::Step,
        "The step was cancelled with its task.",
    ),
    event(
        "step.resolved_manually",
        EventKind::Step,
        "An operator resolved the step, or it was bypassed at creation.",
    ),
];

/// The catalog entry named `name`.
pub fn find(name: &str) -> Option<&'static EventInfo> {
    CATALOG.iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{StepState, TaskState};

    /// Every event a transition can publish is in the catalog, and nothing else is.
    #[test]
    fn the_catalog_is_exactly_the_published_events() {
        let task_states = [
            TaskState::Pending,
            TaskState::InProgress,
            TaskState::Complete,
            TaskState::Error,
            TaskState::Cancelled,
            TaskState::ResolvedManually,
        ];
        let step_states = [
            StepState::Pending,
            StepState::InProgress,
            StepState::Complete,
            StepState::Error,
            StepState::Cancelled,
            StepState::ResolvedManually,
        ];
        let mut published: Vec<&str> = Vec::new();
        for to in task_states {
            published.push(TaskState::event(None, to));
            for from in task_states {
                published.push(TaskState::event(Some(from), to));
            }
        }
        for to in step_states {
            published.push(StepState::event(None, to));
            for from in step_states {
                published.push(StepState::event(Some(from), to));
            }
        }
        published.sort_unstable();
        published.dedup();
        let mut catalog: Vec<&str> = CATALOG.iter().map(|e| e.name).collect();
        catalog.sort_unstable();
        assert_eq!(published, catalog);
    }
}
