//! What a worker claims, and what it reports about each attempt.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// A step claimed by a worker, with what its handler needs.
#[derive(Debug, Clone)]
pub struct ClaimedStep {
    /// The step.
    pub step_id: i64,
    /// Its task.
    pub task_id: i64,
    /// The task's named task (template) id.
    pub named_task_id: i64,
    /// The step's name.
    pub name: String,
    /// This attempt's number (the fencing token, with the owner).
    pub attempt: i32,
    /// Whether a failure may be retried.
    pub retryable: bool,
    /// Maximum attempts.
    pub retry_limit: i32,
    /// Whether the task runs its steps concurrently.
    pub concurrent: bool,
    /// The task context, as stored JSON text (read by the worker, which fails the attempt for
    /// good when it does not parse).
    pub context: String,
    /// The parent steps' results.
    pub parents: Vec<ParentOutput>,
}

/// A parent step's stored result, as a claimed step receives it.
#[derive(Debug, Clone)]
pub struct ParentOutput {
    /// The parent step.
    pub step_id: i64,
    /// Its name.
    pub name: String,
    /// Its result as stored JSON text (`None` when it was resolved by hand without one).
    pub results: Option<String>,
}

/// Why an attempt failed, as recorded in its transition and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The handler returned an error.
    StepError,
    /// The handler ran past its step's timeout.
    Timeout,
    /// The handler panicked.
    Panic,
    /// No handler is registered for the step.
    NoHandler,
    /// The result is over `max_result_bytes`.
    ResultTooLarge,
    /// The result could not be serialised.
    InvalidResult,
    /// The step's stored context or a parent's stored result cannot be read.
    CorruptData,
    /// The worker's lease expired before it reported (it died or stalled).
    LeaseExpired,
    /// A late result of an attempt that no longer owns its step.
    StaleAttempt,
}

impl FailureReason {
    /// The reason as stored in transition metadata and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::StepError => "step_error",
            FailureReason::Timeout => "timeout",
            FailureReason::Panic => "panic",
            FailureReason::NoHandler => "no_handler",
            FailureReason::ResultTooLarge => "result_too_large",
            FailureReason::InvalidResult => "invalid_result",
            FailureReason::CorruptData => "corrupt_data",
            FailureReason::LeaseExpired => "lease_expired",
            FailureReason::StaleAttempt => "stale_attempt",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether another attempt may help, as events and stored errors classify a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Transient: retried while attempts remain.
    Retryable,
    /// No retry can fix it.
    Permanent,
    /// A late result refused because its attempt lost the lease.
    LeaseLost,
}

impl ErrorClass {
    /// The class as stored and published.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
            ErrorClass::LeaseLost => "lease_lost",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The error as JSON, stored in `results`.
    pub error_json: String,
    /// When to retry; `None` when the step failed for good.
    pub retry_in: Option<Duration>,
    /// Why the attempt failed.
    pub reason: FailureReason,
    /// The error message.
    pub message: String,
    /// The error's class, whether or not attempts remain.
    pub class: ErrorClass,
}

/// The outcome of one attempt, to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The step.
    pub step_id: i64,
    /// Its task.
    pub task_id: i64,
    /// Its name.
    pub name: String,
    /// The attempt that produced this outcome.
    pub attempt: i32,
    /// The worker that ran it.
    pub owner: String,
    /// Whether its task runs steps concurrently.
    pub concurrent: bool,
    /// The JSON result (as text), or the failure.
    pub result: Result<String, Failure>,
    /// How long the handler ran, when it ran.
    pub duration_ms: Option<f64>,
}

impl Outcome {
    /// The outcome of `owner`'s attempt at the claimed `step`.
    pub(crate) fn of(
        step: ClaimedStep,
        owner: &str,
        result: Result<String, Failure>,
        duration_ms: Option<f64>,
    ) -> Self {
        Self {
            step_id: step.step_id,
            task_id: step.task_id,
            name: step.name,
            attempt: step.attempt,
            owner: owner.to_owned(),
            concurrent: step.concurrent,
            result,
            duration_ms,
        }
    }
}

/// Whether an outcome was recorded or rejected by fencing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionOutcome {
    /// Recorded.
    Recorded,
    /// Rejected: the attempt no longer owns the step.
    Stale,
}
