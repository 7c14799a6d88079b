//! The runtime's error type.

use crate::state::{StepState, TaskState};
use crate::template::TemplateError;

/// Everything that can go wrong outside a step handler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file cannot be read.
    #[error("invalid configuration: cannot read `{}`: {source}", path.display())]
    ConfigUnreadable {
        /// The file.
        path: std::path::PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A configuration file is not valid YAML, has an unknown key, or a value out of range.
    #[error("invalid configuration: `{file}`{}: {source}", key_in_file(.key.as_deref()))]
    ConfigMalformed {
        /// The file (or whatever the YAML was read from).
        file: String,
        /// The dotted key at fault (`backoff.max_seconds`); `None` for the document itself,
        /// as for an unknown top-level key (which the source names).
        key: Option<String>,
        /// What is wrong.
        source: serde_norway::Error,
    },
    /// A server, telemetry or metrics setting cannot be applied.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database URL names no supported backend.
    #[error(
        "unsupported database URL `{0}`: expected a file path, `sqlite://PATH`, or `postgres://…`"
    )]
    UnsupportedUrl(String),
    /// The PostgreSQL backend was asked for but not compiled in.
    #[error("PostgreSQL support is not compiled in: enable the `postgres` feature of tasker")]
    PostgresDisabled,
    /// A connection could not be had from the pool in time.
    #[error("database connection unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// Connecting to the database failed.
    #[error("cannot connect to the database: {0}")]
    Connection(#[from] diesel::ConnectionError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// Running the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A template is malformed or does not fit the registered handlers.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Two templates claim the same `namespace/name@version`.
    #[error("task template `{0}` is registered twice")]
    DuplicateTemplate(String),
    /// Two step handlers claim the same name.
    #[error("step handler `{0}` is registered twice")]
    DuplicateHandler(String),
    /// A `#[task_handler]` type that holds state was not handed to the builder.
    #[error(
        "`{task}` is run by `{handler_type}`, which does not implement `Default`: hand an instance to the builder with `.task_handler(…)`, or turn automatic registration off with `.auto_register(false)`"
    )]
    TaskHandlerNeedsInstance {
        /// The template's full name.
        task: String,
        /// The handler type.
        handler_type: &'static str,
    },
    /// A template names a `#[step_handler]` type that holds state and was not handed over.
    #[error(
        "step `{step}` of `{task}` uses the step handler `{name}` (`{handler_type}`), which does not implement `Default`: register an instance with `.handler(\"{name}\", …)`"
    )]
    StepHandlerNeedsInstance {
        /// The template's full name.
        task: String,
        /// The step.
        step: String,
        /// The handler's registered name.
        name: String,
        /// The handler type.
        handler_type: &'static str,
    },
    /// A `#[subscriber]` type that holds state was not handed to the builder.
    #[error(
        "subscriber `{0}` does not implement `Default`: hand an instance to the builder with `.subscriber(…)`, or turn automatic registration off with `.auto_register(false)`"
    )]
    SubscriberNeedsInstance(String),
    /// A subscriber asks for events that do not exist.
    #[error(
        "subscriber `{subscriber}` asks for `{pattern}`, which matches no published or declared event (`cargo tasker events` lists them)"
    )]
    UnknownEvent {
        /// The subscriber.
        subscriber: String,
        /// The pattern that matches nothing.
        pattern: String,
    },
    /// No template is registered under this name.
    #[error("no task template `{namespace}/{name}@{version}` is registered")]
    UnknownTemplate {
        /// Requested namespace.
        namespace: String,
        /// Requested name.
        name: String,
        /// Requested version.
        version: String,
    },
    /// The task context does not satisfy the template's JSON Schema.
    #[error("context of `{template}` is invalid: {}", .errors.join("; "))]
    InvalidContext {
        /// The template's full name.
        template: String,
        /// One message per violation, each naming the field (JSON pointer) at fault.
        errors: Vec<String>,
    },
    /// The request itself is malformed.
    #[error("invalid task request: {0}")]
    InvalidRequest(String),
    /// A `hash`-identity request matches one made in the same minute.
    #[error("task request is identical to a request made in the last minute (task {0})")]
    DuplicateRequest(i64),
    /// No task with this id.
    #[error("task {0} not found")]
    TaskNotFound(i64),
    /// No step with this id (or not in this task).
    #[error("workflow step {0} not found")]
    StepNotFound(i64),
    /// The task state machine refuses this transition.
    #[error("task {task_id} cannot go from `{from}` to `{to}`")]
    TaskTransitionRefused {
        /// The task.
        task_id: i64,
        /// Its current state.
        from: TaskState,
        /// The refused target state.
        to: TaskState,
    },
    /// The step state machine refuses this transition.
    #[error("workflow step {step_id} cannot go from `{from}` to `{to}`")]
    StepTransitionRefused {
        /// The step.
        step_id: i64,
        /// Its current state.
        from: StepState,
        /// The refused target state.
        to: StepState,
    },
    /// A completion from an attempt that no longer owns the step was rejected (fencing).
    #[error(
        "stale completion of workflow step {step_id} attempt {attempt} by `{owner}` rejected: the step has a newer attempt or owner"
    )]
    StaleCompletion {
        /// The step.
        step_id: i64,
        /// The attempt that tried to complete it.
        attempt: i32,
        /// The worker that tried to complete it.
        owner: String,
    },
    /// A value could not be (de)serialised.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// A blocking database task panicked or was cancelled.
    #[error("background database task failed: {0}")]
    Join(String),
}

/// ` at `key`` for a key in a configuration file, nothing for the document itself.
fn key_in_file(key: Option<&str>) -> String {
    key.map(|key| format!(" at `{key}`")).unwrap_or_default()
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
