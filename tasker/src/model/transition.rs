//! Checked state changes. A [`StepTransition`] or [`TaskTransition`] can only be made through its
//! state machine's check, and the store turns each into exactly one transition row and one
//! [`EventRecord`] in the same call, so a state change cannot be written without either.

use std::time::Duration;

use serde_json::{Value, json};

use super::{ErrorClass, Failure, FailureReason};
use crate::error::{Error, Result};
use crate::state::{StepState, TaskState, Transition};

/// What changed: a task's or a step's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// A task's state changed (`from` is `None` for its first transition).
    Task {
        from: Option<TaskState>,
        to: TaskState,
    },
    /// A step's state changed.
    Step {
        from: Option<StepState>,
        to: StepState,
    },
}

impl Change {
    /// The catalog event this change publishes.
    pub(crate) fn event_name(self) -> &'static str {
        match self {
            Change::Task { from, to } => TaskState::event(from, to),
            Change::Step { from, to } => StepState::event(from, to),
        }
    }

    fn left(self) -> Option<&'static str> {
        match self {
            Change::Task { from, .. } => from.map(TaskState::as_str),
            Change::Step { from, .. } => from.map(StepState::as_str),
        }
    }

    fn entered(self) -> &'static str {
        match self {
            Change::Task { to, .. } => to.as_str(),
            Change::Step { to, .. } => to.as_str(),
        }
    }
}

/// The typed metadata of a transition, stored as JSON on its row and published on its event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Metadata {
    /// Nothing to say (stored as `{}`, published as `null`).
    None,
    /// A worker claimed the step for an attempt.
    Claimed { attempt: i32, worker: String },
    /// An attempt succeeded.
    Completed {
        attempt: i32,
        duration_ms: Option<f64>,
    },
    /// An attempt failed.
    Failed {
        attempt: i32,
        reason: FailureReason,
        message: String,
        class: ErrorClass,
        retry_in: Option<Duration>,
        duration_ms: Option<f64>,
    },
    /// A worker gave the claimed step back unrun (shutdown).
    Released { worker: String },
    /// A task retry re-armed the step with a new retry limit.
    TaskRetry { retry_limit: i32 },
    /// The step was bypassed at creation.
    Bypassed,
    /// The task's deadline passed while it was open.
    DeadlineExceeded,
}

impl Metadata {
    /// The metadata of a failed attempt.
    pub(crate) fn failed(attempt: i32, failure: &Failure, duration_ms: Option<f64>) -> Self {
        Metadata::Failed {
            attempt,
            reason: failure.reason,
            message: failure.message.clone(),
            class: failure.class,
            retry_in: failure.retry_in,
            duration_ms,
        }
    }

    /// The JSON published on the event (`null` when there is nothing to say).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Metadata::None => Value::Null,
            Metadata::Claimed { attempt, worker } => {
                json!({ "attempt": attempt, "worker": worker })
            }
            Metadata::Completed {
                attempt,
                duration_ms,
            } => json!({ "attempt": attempt, "duration_ms": duration_ms }),
            Metadata::Failed {
                attempt,
                reason,
                message,
                class,
                retry_in,
                duration_ms,
            } => json!({
                "attempt": attempt,
                "reason": reason.as_str(),
                "error": message,
                "error_class": class.as_str(),
                "retry_in_seconds": retry_in.map(|d| d.as_secs_f64()),
                "duration_ms": duration_ms,
            }),
            Metadata::Released { worker } => json!({ "reason": "released", "worker": worker }),
            Metadata::TaskRetry { retry_limit } => {
                json!({ "reason": "task_retry", "retry_limit": retry_limit })
            }
            Metadata::Bypassed => json!({ "reason": "bypassed" }),
            Metadata::DeadlineExceeded => json!({ "reason": "deadline_exceeded" }),
        }
    }

    /// The JSON text stored on the row (`{}` when there is nothing to say).
    fn to_row(&self) -> String {
        match self {
            Metadata::None => "{}".to_owned(),
            other => other.to_json().to_string(),
        }
    }

    /// The attempt the transition concerns, if any.
    pub(crate) fn attempt(&self) -> Option<i32> {
        match self {
            Metadata::Claimed { attempt, .. }
            | Metadata::Completed { attempt, .. }
            | Metadata::Failed { attempt, .. } => Some(*attempt),
            _ => None,
        }
    }

    /// How long the attempt ran, if it ran.
    pub(crate) fn duration_ms(&self) -> Option<f64> {
        match self {
            Metadata::Completed { duration_ms, .. } | Metadata::Failed { duration_ms, .. } => {
                *duration_ms
            }
            _ => None,
        }
    }

    /// The failure's class, message and reason, for a failed attempt.
    pub(crate) fn failure(&self) -> Option<(ErrorClass, &str, FailureReason)> {
        match self {
            Metadata::Failed {
                class,
                message,
                reason,
                ..
            } => Some((*class, message, *reason)),
            _ => None,
        }
    }
}

/// A transition row to write: entity id, from, to, JSON metadata.
#[derive(Debug, Clone)]
pub(crate) struct TransitionRow {
    pub(crate) id: i64,
    pub(crate) from: Option<&'static str>,
    pub(crate) to: &'static str,
    pub(crate) metadata: String,
}

/// A checked change of a step's state.
#[derive(Debug, Clone)]
pub(crate) struct StepTransition {
    task_id: i64,
    step_id: i64,
    name: String,
    from: Option<StepState>,
    to: StepState,
    metadata: Metadata,
}

impl StepTransition {
    /// A new step's first transition, into `pending`.
    pub(crate) fn created(task_id: i64, step_id: i64, name: &str) -> Self {
        Self {
            task_id,
            step_id,
            name: name.to_owned(),
            from: None,
            to: StepState::Pending,
            metadata: Metadata::None,
        }
    }

    /// `from → to`, refused with [`Error::StepTransitionRefused`] unless the step machine
    /// allows it.
    pub(crate) fn new(
        (task_id, step_id, name): (i64, i64, &str),
        from: StepState,
        to: StepState,
        metadata: Metadata,
    ) -> Result<Self> {
        match from.check(to) {
            Transition::Allowed => Ok(Self {
                task_id,
                step_id,
                name: name.to_owned(),
                from: Some(from),
                to,
                metadata,
            }),
            Transition::Same | Transition::Refused => {
                Err(Error::StepTransitionRefused { step_id, from, to })
            }
        }
    }

    /// `from → to` as the machine allows it: a failed step cannot go straight to `in_progress`
    /// or `cancelled`, so from `error` it first passes through `pending`.
    pub(crate) fn path(
        step: (i64, i64, &str),
        from: StepState,
        to: StepState,
        metadata: Metadata,
    ) -> Result<Vec<Self>> {
        let mut path = Vec::with_capacity(2);
        let mut from = from;
        if from == StepState::Error && from.check(to) == Transition::Refused {
            path.push(Self::new(step, from, StepState::Pending, Metadata::None)?);
            from = StepState::Pending;
        }
        path.push(Self::new(step, from, to, metadata)?);
        Ok(path)
    }

    /// The row to write and the event to publish once it is written.
    pub(crate) fn split(self) -> (TransitionRow, EventRecord) {
        let change = Change::Step {
            from: self.from,
            to: self.to,
        };
        let row = TransitionRow {
            id: self.step_id,
            from: change.left(),
            to: change.entered(),
            metadata: self.metadata.to_row(),
        };
        let event = EventRecord {
            task_id: self.task_id,
            step: Some((self.step_id, self.name)),
            change,
            metadata: self.metadata,
            correlation_id: None,
        };
        (row, event)
    }
}

/// A checked change of a task's state (task transitions carry no metadata).
#[derive(Debug, Clone)]
pub(crate) struct TaskTransition {
    task_id: i64,
    from: Option<TaskState>,
    to: TaskState,
    metadata: Metadata,
}

impl TaskTransition {
    /// A new task's first transition, into `pending`.
    pub(crate) fn created(task_id: i64) -> Self {
        Self {
            task_id,
            from: None,
            to: TaskState::Pending,
            metadata: Metadata::None,
        }
    }

    /// The transition, recorded and published with `metadata`.
    pub(crate) fn with(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// `from → to`, refused with [`Error::TaskTransitionRefused`] unless the task machine
    /// allows it.
    pub(crate) fn new(task_id: i64, from: TaskState, to: TaskState) -> Result<Self> {
        match from.check(to) {
            Transition::Allowed => Ok(Self {
                task_id,
                from: Some(from),
                to,
                metadata: Metadata::None,
            }),
            Transition::Same | Transition::Refused => {
                Err(Error::TaskTransitionRefused { task_id, from, to })
            }
        }
    }

    /// The row to write and the event to publish once it is written.
    pub(crate) fn split(self) -> (TransitionRow, EventRecord) {
        let change = Change::Task {
            from: self.from,
            to: self.to,
        };
        let row = TransitionRow {
            id: self.task_id,
            from: change.left(),
            to: change.entered(),
            metadata: self.metadata.to_row(),
        };
        let event = EventRecord {
            task_id: self.task_id,
            step: None,
            change,
            metadata: self.metadata,
            correlation_id: None,
        };
        (row, event)
    }
}

/// A committed transition, as the engine publishes it (see [`Event`](crate::Event)).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub(crate) task_id: i64,
    /// The step's id and name, for step transitions.
    pub(crate) step: Option<(i64, String)>,
    pub(crate) change: Change,
    pub(crate) metadata: Metadata,
    /// The task's correlation id, once known.
    pub(crate) correlation_id: Option<String>,
}

impl EventRecord {
    /// The catalog event's name, e.g. `step.completed`.
    pub fn name(&self) -> &'static str {
        self.change.event_name()
    }

    /// The task.
    pub fn task_id(&self) -> i64 {
        self.task_id
    }

    /// The step, for step transitions.
    pub fn step_id(&self) -> Option<i64> {
        self.step.as_ref().map(|(id, _)| *id)
    }

    /// The state left (`None` for a first transition).
    pub fn from(&self) -> Option<&'static str> {
        self.change.left()
    }

    /// The state entered.
    pub fn to(&self) -> &'static str {
        self.change.entered()
    }

    /// A step's completed attempt, for benchmarks of event publishing.
    #[doc(hidden)]
    pub fn completed_step_sample(task_id: i64, step_id: i64, name: &str) -> Self {
        let change = Change::Step {
            from: Some(StepState::InProgress),
            to: StepState::Complete,
        };
        Self {
            task_id,
            step: Some((step_id, name.to_owned())),
            change,
            metadata: Metadata::Completed {
                attempt: 1,
                duration_ms: Some(0.25),
            },
            correlation_id: Some("0b7c6c2e-8a47-4d3e-9a7e-3f0f2b1d5c11".to_owned()),
        }
    }

    /// Whether this is a task entering a state it does not leave on its own (`complete`,
    /// `error`, `cancelled`, `resolved_manually`), and if so whether it failed.
    pub(crate) fn task_finished(&self) -> Option<bool> {
        match self.change {
            Change::Task { to, .. } if to.is_terminal() || to == TaskState::Error => {
                Some(to == TaskState::Error)
            }
            _ => None,
        }
    }
}
