//! What the engine, the server and the CLI read: tasks, steps and transitions as stored, the
//! records of committed transitions, and what a worker claims and reports.
//!
//! The store produces these and depends on this module, never the other way round.

mod attempt;
mod execution;
mod transition;

use serde_json::Value;

use crate::state::{StepState, TaskState};

pub use attempt::{
    ClaimedStep, CompletionOutcome, ErrorClass, Failure, FailureReason, Outcome, ParentOutput,
};
pub use execution::{ExecutionContext, ExecutionStatus, HealthStatus, RecommendedAction};
pub use transition::EventRecord;
pub(crate) use transition::{Change, Metadata, StepTransition, TaskTransition, TransitionRow};

/// The result of creating a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTask {
    /// The task's id.
    pub id: i64,
    /// `true` when an earlier task with the same idempotency key was returned instead.
    pub existing: bool,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct TaskRow {
    /// Id.
    pub task_id: i64,
    /// Template namespace.
    pub namespace: String,
    /// Template name.
    pub name: String,
    /// Template version.
    pub version: String,
    /// Current state.
    pub state: TaskState,
    /// The JSON context.
    pub context: Value,
    /// Who asked for the task.
    pub initiator: Option<String>,
    /// The system that asked.
    pub source_system: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Steps bypassed at creation.
    pub bypass_steps: Vec<String>,
    /// Claim priority (higher first).
    pub priority: i32,
    /// Caller-provided idempotency key.
    pub idempotency_key: Option<String>,
    /// When it was requested (UTC).
    #[serde(serialize_with = "crate::timestamp::serialize")]
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    pub requested_at: chrono::NaiveDateTime,
    /// When it was created (UTC, database clock).
    #[serde(serialize_with = "crate::timestamp::serialize")]
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    pub created_at: chrono::NaiveDateTime,
    /// When it last changed (UTC, database clock).
    #[serde(serialize_with = "crate::timestamp::serialize")]
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    pub updated_at: chrono::NaiveDateTime,
    /// When a delayed task's steps start (UTC), if it was created with `run_at` or `delay`.
    #[serde(serialize_with = "crate::timestamp::option::serialize")]
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    pub run_at: Option<chrono::NaiveDateTime>,
    /// When it ends in error if still open (UTC), if it has a `timeout_seconds`.
    #[serde(serialize_with = "crate::timestamp::option::serialize")]
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    pub deadline_at: Option<chrono::NaiveDateTime>,
}

/// A workflow step as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct StepInfo {
    /// Id.
    pub step_id: i64,
    /// Its task.
    pub task_id: i64,
    /// Name.
    pub name: String,
    /// Current state.
    pub state: StepState,
    /// Attempts made so far.
    pub attempts: i32,
    /// Maximum attempts.
    pub retry_limit: i32,
    /// Whether failures are retried.
    pub retryable: bool,
    /// Whether it may be bypassed.
    pub skippable: bool,
    /// The result (or error) JSON.
    pub results: Option<Value>,
    /// Parents not yet complete.
    pub remaining_parents: i32,
    /// When it became (or becomes) ready to run, UTC; kept while it runs, so a step given back
    /// keeps its place in the queue; `None` when it cannot run or has finished.
    #[serde(serialize_with = "crate::timestamp::option::serialize")]
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    pub ready_at: Option<chrono::NaiveDateTime>,
    /// Worker holding its lease.
    pub lease_owner: Option<String>,
    /// When the last attempt started.
    #[serde(serialize_with = "crate::timestamp::option::serialize")]
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    pub last_attempted_at: Option<chrono::NaiveDateTime>,
    /// When it finished.
    #[serde(serialize_with = "crate::timestamp::option::serialize")]
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    pub processed_at: Option<chrono::NaiveDateTime>,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TransitionInfo {
    /// State left (`None` for the initial transition).
    pub from_state: Option<String>,
    /// State entered.
    pub to_state: String,
    /// Metadata.
    pub metadata: Value,
    /// Order within the entity (0, 10, 20, …).
    pub sort_key: i32,
    /// Whether this is the entity's current state.
    pub most_recent: bool,
    /// When (UTC, database clock).
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub created_at: chrono::NaiveDateTime,
}

/// Which tasks [`Tasker::tasks`](crate::Tasker::tasks) lists: every field narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only tasks of this name.
    pub name: Option<String>,
    /// Only this version.
    pub version: Option<String>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// At most this many (1 to [`MAX_LIST_LIMIT`]; 0 means 1).
    pub limit: usize,
    /// Skip this many (in the listing's order).
    pub offset: u64,
    /// The order: by id (the default, newest first), request time, creation time or priority.
    pub sort: TaskSort,
    /// Oldest (or lowest) first instead of newest first.
    pub ascending: bool,
    /// Only tasks with an annotation of this type whose key holds this value.
    pub annotation: Option<AnnotationFilter>,
}

/// Tasks annotated with `key: value` in an annotation of `annotation_type` (the seed's
/// `Task.by_annotation`); the value is compared as text, so `5` matches the number 5 too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationFilter {
    /// The annotation type.
    pub annotation_type: String,
    /// A top-level key of the annotation.
    pub key: String,
    /// The value it holds, as text.
    pub value: String,
}

impl std::str::FromStr for AnnotationFilter {
    type Err = String;

    /// `TYPE:KEY=VALUE`, split at the first `:` and the next `=` (as REST's `annotation` and
    /// the CLI's `--annotation` take it).
    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.split_once(':').and_then(|(annotation_type, rest)| {
            let (key, value) = rest.split_once('=')?;
            (!annotation_type.is_empty() && !key.is_empty()).then(|| Self {
                annotation_type: annotation_type.to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
            })
        });
        parsed.ok_or_else(|| format!("`{text}` is not TYPE:KEY=VALUE"))
    }
}

/// An object's id in one dependent system mapped to its id in another (the seed's dependent
/// system object map); the side that sorts first by (system, id) is `one`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct ObjectMap {
    /// Its id.
    pub id: i64,
    /// The first system.
    pub system_one: String,
    /// The object's id there.
    pub remote_id_one: String,
    /// The second system.
    pub system_two: String,
    /// The object's id there.
    pub remote_id_two: String,
    /// When it was first mapped.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// What a prune deleted, or would delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Pruned {
    /// Tasks.
    pub tasks: u64,
    /// Their steps (with their edges and transitions).
    pub steps: u64,
}

/// Which tasks [`Tasker::prune`](crate::Tasker::prune) deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneOptions {
    /// Tasks finished (unchanged) for at least this long.
    pub older_than: std::time::Duration,
    /// Tasks in `error` too (kept by default: they may still be retried or resolved).
    pub include_errors: bool,
    /// Count what would go, and delete nothing.
    pub dry_run: bool,
}

impl PruneOptions {
    /// Complete, cancelled and resolved tasks unchanged for `older_than`.
    pub fn older_than(older_than: std::time::Duration) -> Self {
        Self {
            older_than,
            include_errors: false,
            dry_run: false,
        }
    }
}

/// A note on a task: typed JSON (the seed's task annotation).
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct TaskAnnotation {
    /// Its type.
    pub annotation_type: String,
    /// What it says.
    pub annotation: Value,
    /// When it was added (UTC, database clock).
    #[serde(serialize_with = "crate::timestamp::serialize")]
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    pub created_at: chrono::NaiveDateTime,
}

/// What tasks are listed by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskSort {
    /// The task id (creation order).
    #[default]
    Id,
    /// When the task was requested.
    RequestedAt,
    /// When the task was created.
    CreatedAt,
    /// The claim priority.
    Priority,
}

/// Most tasks one listing returns.
pub const MAX_LIST_LIMIT: usize = 1000;

/// One embedded migration and whether it has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The migration's name, `VERSION_description`.
    pub name: String,
    /// Whether the database has it.
    pub applied: bool,
}

/// A worker that recorded itself recently (see [`crate::Tasker::workers`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct WorkerInfo {
    /// Its id (`host:pid:random`), as in `lease_owner`.
    pub worker_id: String,
    /// Steps it runs at once.
    pub concurrency: i32,
    /// Steps it was running at its last heartbeat.
    pub running: i32,
    /// When it started (UTC, database clock).
    #[serde(serialize_with = "crate::timestamp::serialize")]
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    pub started_at: chrono::NaiveDateTime,
    /// Its last heartbeat (UTC, database clock).
    #[serde(serialize_with = "crate::timestamp::serialize")]
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    pub last_seen_at: chrono::NaiveDateTime,
}

/// Which templates an analytics query covers: each part given narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateFilter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only templates of this name.
    pub name: Option<String>,
    /// Only this version.
    pub version: Option<String>,
}
