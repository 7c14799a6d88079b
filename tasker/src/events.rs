//! The catalog of events the engine publishes, by their seed names.
//!
//! Each transition of a task or step publishes exactly one of these (see
//! [`Tasker::subscribe`](crate::Tasker::subscribe)); the payload is an
//! [`EventRecord`]. Applications add custom events, in code
//! ([`custom_event!`](crate::custom_event)) or in YAML ([`EventDefinitions`]).

use crate::model::{ErrorClass, EventRecord, FailureReason};

mod definitions;

pub use definitions::{EventDefinition, EventDefinitions};

/// The receiving end of [`Tasker::subscribe`](crate::Tasker::subscribe), and its error
/// (`Lagged(n)` when a slow receiver missed `n` events, `Closed` when the engine is gone).
pub use tokio::sync::broadcast::{Receiver, error::RecvError};

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A task's transition.
    Task,
    /// A step's transition or attempt.
    Step,
    /// What a worker does across tasks: claiming, running, recording.
    Workflow,
    /// Timings of the engine's work.
    Observability,
    /// Declared by the application and published from its steps.
    Custom,
}

impl EventKind {
    /// `task`, `step`, `workflow`, `observability` or `custom`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Task => "task",
            EventKind::Step => "step",
            EventKind::Workflow => "workflow",
            EventKind::Observability => "observability",
            EventKind::Custom => "custom",
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
    /// When it is published, and what its payload holds.
    pub description: &'static str,
    /// Why this engine never publishes it, for the seed's names that have no occurrence here;
    /// `None` for the events it publishes.
    pub not_published: Option<&'static str>,
}

const fn event(name: &'static str, kind: EventKind, description: &'static str) -> EventInfo {
    EventInfo {
        name,
        kind,
        description,
        not_published: None,
    }
}

const fn unpublished(
    name: &'static str,
    kind: EventKind,
    description: &'static str,
    why: &'static str,
) -> EventInfo {
    EventInfo {
        name,
        kind,
        description,
        not_published: Some(why),
    }
}

const SAME_AS_STEP: &str = "the same occurrence is published once, as the `step.*` event";
const SAME_AS_TASK: &str = "the same occurrence is published once, as the `task.*` event";
const BATCHED: &str = "transitions are committed in batched SQL, so there is no moment before \
                       one to observe; subscribe to the transition itself";
const NO_REENQUEUE: &str = "tasks are never re-enqueued: ready steps are claimed from the \
                            database, and retries wait on `ready_at`";

use EventKind::{Observability, Step, Task, Workflow};

/// Every event of the seed's task, step, workflow and observability catalogs, by its exact name,
/// and the one this engine adds (`workflow.step_result_rejected`).
/// Payloads are [`Event`] fields: ids, step name, attempt, states, error and duration.
pub const CATALOG: &[EventInfo] = &[
    event(
        "task.initialize_requested",
        Task,
        "A task was created (its first transition, to `pending`).",
    ),
    event(
        "task.start_requested",
        Task,
        "A task's first step was claimed: the task is `in_progress`.",
    ),
    event(
        "task.completed",
        Task,
        "Every step of the task is complete or resolved.",
    ),
    event(
        "task.failed",
        Task,
        "A step failed for good: the task is in `error`.",
    ),
    event(
        "task.retry_requested",
        Task,
        "A task in `error` was sent back to `pending` by a retry.",
    ),
    event(
        "task.cancelled",
        Task,
        "A task was cancelled with its unfinished steps.",
    ),
    event(
        "task.resolved_manually",
        Task,
        "An operator resolved the task by hand.",
    ),
    unpublished(
        "task.before_transition",
        Task,
        "Before a task's transition.",
        BATCHED,
    ),
    event(
        "step.initialize_requested",
        Step,
        "A step was created with its task (its first transition, to `pending`).",
    ),
    event(
        "step.execution_requested",
        Step,
        "A worker claimed the step and started an attempt (`attempt`).",
    ),
    event(
        "step.before_handle",
        Step,
        "The step's handler is about to run (`attempt`).",
    ),
    event(
        "step.handle",
        Step,
        "The step's handler returned (`attempt`, `duration_ms`, `error` if it failed); its outcome is recorded next.",
    ),
    event(
        "step.completed",
        Step,
        "An attempt succeeded and its result was stored (`attempt`, `duration_ms`).",
    ),
    event(
        "step.failed",
        Step,
        "An attempt failed (`attempt`, `duration_ms`, `error` with class and message); it is retried later while attempts remain.",
    ),
    event(
        "step.retry_requested",
        Step,
        "A failed step went back to `pending` for another attempt.",
    ),
    event(
        "step.cancelled",
        Step,
        "The step was cancelled with its task.",
    ),
    event(
        "step.resolved_manually",
        Step,
        "An operator resolved the step, or it was bypassed at creation.",
    ),
    unpublished(
        "step.before_transition",
        Step,
        "Before a step's transition.",
        BATCHED,
    ),
    unpublished(
        "workflow.task_started",
        Workflow,
        "A task started.",
        SAME_AS_TASK,
    ),
    unpublished(
        "workflow.task_completed",
        Workflow,
        "A task completed.",
        SAME_AS_TASK,
    ),
    unpublished(
        "workflow.task_failed",
        Workflow,
        "A task failed.",
        SAME_AS_TASK,
    ),
    unpublished(
        "workflow.step_completed",
        Workflow,
        "A step completed.",
        SAME_AS_STEP,
    ),
    unpublished(
        "workflow.step_failed",
        Workflow,
        "A step failed.",
        SAME_AS_STEP,
    ),
    event(
        "workflow.viable_steps_discovered",
        Workflow,
        "A worker's claim found ready steps (`payload.count`, `payload.task_ids`).",
    ),
    event(
        "workflow.no_viable_steps",
        Workflow,
        "A worker that had work found no ready step and goes idle.",
    ),
    unpublished(
        "workflow.orchestration_requested",
        Workflow,
        "Orchestration of a task was requested.",
        "workers claim ready steps from the database; nothing requests orchestration",
    ),
    event(
        "workflow.task_finalization_started",
        Workflow,
        "A batch of outcomes is being recorded; its tasks' states are decided in the same transaction (`payload.count`).",
    ),
    event(
        "workflow.task_finalization_completed",
        Workflow,
        "A batch of outcomes was recorded and its tasks finalized (`payload.count`, `payload.stale`, `duration_ms`).",
    ),
    unpublished(
        "workflow.task_reenqueue_started",
        Workflow,
        "A task re-enqueue started.",
        NO_REENQUEUE,
    ),
    unpublished(
        "workflow.task_reenqueue_requested",
        Workflow,
        "A task re-enqueue was requested.",
        NO_REENQUEUE,
    ),
    unpublished(
        "workflow.task_reenqueue_failed",
        Workflow,
        "A task re-enqueue failed.",
        NO_REENQUEUE,
    ),
    unpublished(
        "workflow.task_reenqueue_delayed",
        Workflow,
        "A task re-enqueue was delayed.",
        NO_REENQUEUE,
    ),
    unpublished(
        "workflow.task_state_unclear",
        Workflow,
        "A task's state could not be decided.",
        "a task's state is decided in the transaction that records its steps' outcomes",
    ),
    event(
        "workflow.step_execution_failed",
        Workflow,
        "A step's attempt failed outside its handler's control: a panic, a timeout, or no registered handler (`error`).",
    ),
    unpublished(
        "workflow.viable_steps_batch_ready",
        Workflow,
        "A batch of viable steps is ready.",
        "the same occurrence is `workflow.steps_execution_started`",
    ),
    event(
        "workflow.steps_execution_started",
        Workflow,
        "A worker started running a claimed batch (`payload.count`).",
    ),
    event(
        "workflow.step_result_rejected",
        Workflow,
        "A finished attempt's result was refused because its lease had expired and the step moved on (another attempt owns it); the newer result stands (`error.class` is `lease_lost`, `payload.worker` the late worker). Not in the seed's catalog.",
    ),
    event(
        "workflow.steps_execution_completed",
        Workflow,
        "A worker recorded the outcomes of a batch (`payload.count`).",
    ),
    unpublished(
        "observability.task.handle",
        Observability,
        "A task was handled.",
        "there is no per-task pass: steps are claimed across tasks",
    ),
    event(
        "observability.task.enqueue",
        Observability,
        "A task was created with its steps (`duration_ms` of the create).",
    ),
    unpublished(
        "observability.task.finalize",
        Observability,
        "A task was finalized.",
        "timed per batch as `workflow.task_finalization_completed`",
    ),
    event(
        "observability.step.handle",
        Observability,
        "How long a step's handler ran (`duration_ms`, `attempt`).",
    ),
    event(
        "observability.step.find_viable",
        Observability,
        "How long a claim took (`duration_ms`, `payload.count`).",
    ),
    event(
        "observability.step.backoff",
        Observability,
        "A failed step waits before its next attempt (`payload.retry_in_seconds`).",
    ),
    event(
        "observability.step.skip",
        Observability,
        "A skippable step was bypassed at creation.",
    ),
    event(
        "observability.step.max_retries_reached",
        Observability,
        "A step failed with a retryable error on its last allowed attempt (`attempt`, `error`).",
    ),
];

pub use tasker_rules::RESERVED_EVENT_FAMILIES as RESERVED_PREFIXES;

/// An event as subscribers receive it: what happened, to which task and step, and its details.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    /// The dotted name, e.g. `step.completed`.
    pub name: std::borrow::Cow<'static, str>,
    /// What it is about.
    pub kind: EventKind,
    /// When it was published (UTC).
    pub at: chrono::DateTime<chrono::Utc>,
    /// The task, when the event concerns one.
    pub task_id: Option<i64>,
    /// The step, for step events.
    pub step_id: Option<i64>,
    /// The step's name, for step events.
    pub step_name: Option<String>,
    /// The attempt, for step events that concern one.
    pub attempt: Option<i32>,
    /// The state left, for transitions (`None` for an initial transition).
    pub from: Option<&'static str>,
    /// The state entered, for transitions.
    pub to: Option<&'static str>,
    /// Why an attempt failed.
    pub error: Option<EventError>,
    /// How long the work took, in milliseconds.
    pub duration_ms: Option<f64>,
    /// The correlation id of the task's request, carried to every event of the task.
    pub correlation_id: Option<String>,
    /// Everything else: a transition's metadata, a custom event's payload, a batch's counts.
    /// Sensitive keys are masked.
    pub payload: serde_json::Value,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventError {
    /// Whether another attempt may help (`lease_lost` for a refused late result).
    pub class: ErrorClass,
    /// What went wrong.
    pub message: String,
    /// The engine's reason: `step_error`, `timeout`, `panic`, `no_handler`, `lease_expired`, ….
    pub reason: Option<FailureReason>,
}

impl Event {
    /// An event named `name` of `kind` with nothing else set, published now.
    pub fn new(name: impl Into<std::borrow::Cow<'static, str>>, kind: EventKind) -> Self {
        Self {
            name: name.into(),
            kind,
            at: chrono::Utc::now(),
            task_id: None,
            step_id: None,
            step_name: None,
            attempt: None,
            from: None,
            to: None,
            error: None,
            duration_ms: None,
            correlation_id: None,
            payload: serde_json::Value::Null,
        }
    }

    /// Whether `pattern` (an exact name, `family.*`, or `*`) selects this event.
    pub fn matches(&self, pattern: &str) -> bool {
        matches_pattern(&self.name, pattern)
    }
}

/// Whether `pattern` (an exact name, `prefix.*`, or `*`) selects the event `name`.
pub fn matches_pattern(name: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// A custom event declared with [`custom_event!`](crate::custom_event): its name is checked at
/// compile time (it has a dot and no reserved prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomEvent {
    name: &'static str,
    description: &'static str,
}

impl CustomEvent {
    #[doc(hidden)]
    pub const fn __new(name: &'static str, description: &'static str) -> Self {
        Self { name, description }
    }

    /// The dotted name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// What it means.
    pub const fn description(&self) -> &'static str {
        self.description
    }
}

/// The program-wide list of declared custom events, which `custom_event!` adds to; reached by
/// generated code through `__private` only.
pub(crate) mod registration {
    /// A custom event's entry in the program-wide list the catalog reads.
    pub struct CustomEventRegistration(pub &'static super::CustomEvent);

    inventory::collect!(CustomEventRegistration);
}

use registration::CustomEventRegistration;

/// Every custom event declared in this program, sorted by name.
pub fn custom_events() -> Vec<&'static CustomEvent> {
    let mut all: Vec<&'static CustomEvent> = inventory::iter::<CustomEventRegistration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    all.sort_by_key(|e| e.name);
    all.dedup_by_key(|e| e.name);
    all
}

/// Whether `name` is an event this program can publish: a catalog event that is published, or a
/// custom event declared with [`custom_event!`](crate::custom_event). Events of the events
/// directories are known to the engine that loaded them:
/// [`Tasker::event_definitions`](crate::Tasker::event_definitions)`().is_known(name)`.
pub fn is_known(name: &str) -> bool {
    find(name).is_some_and(|e| e.not_published.is_none())
        || custom_events().iter().any(|e| e.name == name)
}

/// The catalog entry named `name`.
pub fn find(name: &str) -> Option<&'static EventInfo> {
    CATALOG.iter().find(|e| e.name == name)
}

impl From<EventRecord> for Event {
    fn from(record: EventRecord) -> Self {
        let error = record
            .metadata
            .failure()
            .map(|(class, message, reason)| EventError {
                class,
                message: message.to_owned(),
                reason: Some(reason),
            });
        Event {
            name: record.name().into(),
            kind: if record.step.is_some() {
                EventKind::Step
            } else {
                EventKind::Task
            },
            at: chrono::Utc::now(),
            task_id: Some(record.task_id),
            step_id: record.step_id(),
            attempt: record.metadata.attempt(),
            from: record.from(),
            to: Some(record.to()),
            error,
            duration_ms: record.metadata.duration_ms(),
            payload: record.metadata.to_json(),
            step_name: record.step.map(|(_, name)| name),
            correlation_id: record.correlation_id,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_well_formed() {
        let mut names: Vec<&str> = CATALOG.iter().map(|e| e.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
        for e in CATALOG {
            assert!(e.name.starts_with(e.kind.as_str()), "{}", e.name);
        }
        assert_eq!(CATALOG.len(), 8 + 10 + 20 + 8);
    }

    #[test]
    fn patterns() {
        assert!(matches_pattern("step.failed", "step.*"));
        assert!(matches_pattern("step.failed", "*"));
        assert!(matches_pattern("step.failed", "step.failed"));
        assert!(!matches_pattern("step.failed", "task.*"));
    }

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
        // Transitions publish exactly the catalog's published task and step events, except the
        // ones the worker publishes around a handler.
        let mut catalog: Vec<&str> = CATALOG
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Task | EventKind::Step))
            .filter(|e| e.not_published.is_none())
            .filter(|e| !matches!(e.name, "step.before_handle" | "step.handle"))
            .map(|e| e.name)
            .collect();
        catalog.sort_unstable();
        assert_eq!(published, catalog);
    }
}
