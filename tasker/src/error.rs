//! The runtime's error type.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::state::{StepState, TaskState};
use crate::template::TemplateError;

/// An error of another library, kept as the source of ours.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong outside a step handler.
///
/// Each variant names what is at fault (file, key, field, task, step, row) in its fields, so
/// callers match on them rather than on the message; new variants may be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration file cannot be read.
    #[error("invalid configuration: cannot read `{}`: {source}", path.display())]
    ConfigUnreadable {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A configuration file is not valid YAML, has an unknown key, or a value out of range.
    #[error("invalid configuration: `{file}`{}: {source}", key_in_file(.key.as_deref()))]
    ConfigMalformed {
        /// The file (or whatever the YAML was read from).
        file: String,
        /// The dotted key at fault (`backoff.max_seconds`); `None` for the document itself.
        key: Option<String>,
        /// What is wrong.
        source: serde_norway::Error,
    },
    /// The configuration's `log.filter` is not a filter `RUST_LOG` could hold.
    #[error("invalid configuration: `log.filter` {0}")]
    LogFilter(String),
    /// The API server cannot listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address it was asked to listen on.
        addr: String,
        /// Why it cannot.
        source: std::io::Error,
    },
    /// The listener handed to the API server cannot tell its own address.
    #[error("listener has no address: {0}")]
    ListenerAddress(#[source] std::io::Error),
    /// A test harness could not create its temporary database directory.
    #[error("cannot create a temporary directory for the test database: {0}")]
    TempDir(#[source] std::io::Error),
    /// The API server stopped on an I/O error.
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// Serving without authentication beyond this machine was refused.
    #[error(
        "refusing to serve on {addr} without authentication: configure API keys or JWT, listen on a loopback address, or set `allow_insecure`"
    )]
    InsecureExposure {
        /// The non-loopback address.
        addr: SocketAddr,
    },
    /// The OTLP span exporter cannot be built.
    #[error("OTLP exporter: {0}")]
    OtlpExporter(#[source] BoxError),
    /// A global `tracing` subscriber is already installed.
    #[error("a tracing subscriber is already set: {0}")]
    TracingSubscriber(#[source] BoxError),
    /// The Prometheus metrics recorder cannot be installed.
    #[error("cannot install the metrics recorder: {0}")]
    MetricsExporter(#[source] metrics_exporter_prometheus::BuildError),
    /// The database URL names no supported backend.
    #[error(
        "unsupported database URL `{0}`: expected a file path, `sqlite://PATH`, or `postgres://…`"
    )]
    UnsupportedUrl(String),
    /// The PostgreSQL backend was asked for but not compiled in.
    #[error(
        "PostgreSQL support is not compiled in: enable the `postgres` feature of tasker-engine"
    )]
    PostgresDisabled,
    /// The SQLite backend was asked for but not compiled in.
    #[error("SQLite support is not compiled in: enable the `sqlite` feature of tasker-engine")]
    SqliteDisabled,
    /// A connection could not be had from the pool in time.
    #[error("database connection unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// Connecting to the database failed.
    #[error("cannot connect to the database: {0}")]
    Connection(#[from] diesel::ConnectionError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// Running or listing the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[source] BoxError),
    /// `postgres_schema` cannot be used: not a plain schema name, or the URL already sets
    /// `options`.
    #[error("`postgres_schema` `{schema}` cannot be used: {problem}")]
    InvalidPostgresSchema {
        /// The configured schema.
        schema: String,
        /// Why not.
        problem: &'static str,
    },
    /// A stored row holds a value tasker cannot read (written by hand, or corrupt).
    #[error("corrupt data in `{table}` row {id}, column `{column}`: {problem}")]
    CorruptData {
        /// The table, e.g. `tasker_workflow_steps`.
        table: &'static str,
        /// The row's primary key.
        id: i64,
        /// The column holding the unreadable value.
        column: &'static str,
        /// What is wrong with the value.
        problem: String,
    },
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
    /// A YAML file of an events directory (`custom_events_directories`) is unreadable,
    /// malformed, or defines an event it may not; every problem found is listed.
    #[error("invalid custom event definitions: {}", file_problems(.0))]
    EventDefinitions(Vec<FileProblem>),
    /// A YAML file of a subscriptions directory (`subscriptions_directories`) is unreadable,
    /// malformed, or does not fit the registered subscribers; every problem found is listed.
    #[error("invalid subscriptions: {}", file_problems(.0))]
    Subscriptions(Vec<FileProblem>),
    /// A name published as a custom event is not one: not declared with `custom_event!`, in an
    /// events directory, or by a template's step.
    #[error(
        "`{0}` is not a declared custom event (`cargo tasker events` lists the events there are)"
    )]
    UnknownCustomEvent(String),
    /// A custom event's payload does not satisfy the `payload_schema` its definition gives.
    #[error("payload of custom event `{event}` is invalid: {}", violations(.errors))]
    InvalidEventPayload {
        /// The event's name.
        event: String,
        /// Every violation, each naming the value at fault.
        errors: Vec<ContextViolation>,
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
    /// A registered template has no rows in the database, so no task of it can be created.
    #[error("task template `{0}` is registered but not stored in the database")]
    TemplateNotStored(String),
    /// The task context does not satisfy the template's JSON Schema.
    #[error("context of `{template}` is invalid: {}", violations(.errors))]
    InvalidContext {
        /// The template's full name.
        template: String,
        /// Every violation, each naming the value at fault.
        errors: Vec<ContextViolation>,
    },
    /// The task context is larger than the configured `max_context_bytes`.
    #[error(
        "invalid task request: context is {bytes} bytes, over the limit of {limit} (`max_context_bytes`)"
    )]
    ContextTooLarge {
        /// Its size, in bytes of JSON.
        bytes: usize,
        /// The configured limit.
        limit: usize,
    },
    /// `bypass_steps` names a step the template does not have.
    #[error(
        "invalid task request: bypass_steps names `{step}`, which is not a step of `{template}`"
    )]
    UnknownBypassStep {
        /// The template's full name.
        template: String,
        /// The name given.
        step: String,
    },
    /// `bypass_steps` names a step that is not skippable.
    #[error(
        "invalid task request: step `{step}` of `{template}` is not skippable and cannot be bypassed"
    )]
    StepNotSkippable {
        /// The template's full name.
        template: String,
        /// The step.
        step: String,
    },
    /// The task handler's `establish_step_dependencies_and_defaults` refused the task's steps.
    #[error("invalid task request: `{template}` refused the plan of its steps: {source}")]
    StepPlan {
        /// The template's full name.
        template: String,
        /// Why.
        source: crate::hooks::PlanError,
    },
    /// A field of a request is out of bounds, or holds what no column can store: a label
    /// (`initiator`, `source_system`, `reason`), `correlation_id`, `idempotency_key`,
    /// `requested_at`.
    #[error("invalid request: `{field}` {problem}")]
    InvalidField {
        /// The request field, as [`TaskRequest`](crate::TaskRequest) names it.
        field: &'static str,
        /// What is wrong, e.g. "is longer than 128 characters".
        problem: String,
    },
    /// The new task collided with a stored task's identity hash or idempotency key, and that
    /// task could not be read back.
    #[error(
        "invalid task request: task identity conflict (its identity hash or idempotency key is taken by a task that cannot be read)"
    )]
    IdentityConflict,
    /// A result handed to [`Tasker::complete_steps`](crate::Tasker::complete_steps) or
    /// [`Tasker::resolve_step`](crate::Tasker::resolve_step) is not JSON, or is over
    /// `max_result_bytes`; nothing was recorded.
    #[error("result of workflow step {step_id} is refused: {problem}")]
    InvalidResult {
        /// The step.
        step_id: i64,
        /// What is wrong with it.
        problem: String,
    },
    /// A `hash`-identity request matches one made in the same minute.
    #[error("task request is identical to a request made in the last minute (task {0})")]
    DuplicateRequest(i64),
    /// No task with this id.
    #[error("task {0} not found")]
    TaskNotFound(i64),
    /// No step with this id (or not in this task).
    #[error("workflow step {0} not found")]
    StepNotFound(i64),
    /// No schedule with this name.
    #[error("schedule `{0}` not found")]
    ScheduleNotFound(String),
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
    /// The batch writing a create stopped before answering it (its writer panicked, or the
    /// runtime is shutting down): the task may or may not have been created.
    #[error("task creation was interrupted before it was answered: the task may or may not exist")]
    CreationInterrupted,
    /// A blocking database task panicked or was cancelled.
    #[error("background database task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// One way a JSON value breaks its JSON Schema: a task context its template's `schema`, or a
/// custom event's payload its definition's `payload_schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContextViolation {
    /// The JSON pointer of the value at fault within the context or payload (`/order_id`;
    /// empty for the value as a whole).
    pub pointer: String,
    /// What is wrong with it.
    pub message: String,
}

impl ContextViolation {
    /// A violation at `pointer`.
    pub(crate) fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ContextViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The whole context reads as `/`, which people recognise better than an empty pointer.
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "at `{at}`: {}", self.message)
    }
}

/// One problem in a YAML file of an events or subscriptions directory (or with the directory).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileProblem {
    /// The file at fault, or the directory when it cannot be read.
    pub file: PathBuf,
    /// The dotted key at fault (`events.order.fulfilled.payload_schema`); `None` for the file
    /// as a whole.
    pub key: Option<String>,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl FileProblem {
    /// A problem with `file`, at `key` when given.
    pub(crate) fn new(
        file: impl Into<PathBuf>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            key,
            message: message.into(),
        }
    }
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.file.display())?;
        if let Some(key) = &self.key {
            write!(f, " at `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One problem on the same line, several one per line.
fn file_problems(problems: &[FileProblem]) -> String {
    match problems {
        [one] => one.to_string(),
        all => {
            let lines: Vec<String> = all.iter().map(|p| format!("\n  {p}")).collect();
            format!("{} problems:{}", all.len(), lines.concat())
        }
    }
}

/// The violations of a context, on one line.
fn violations(errors: &[ContextViolation]) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// ` at `key`` for a key in a configuration file, nothing for the document itself.
fn key_in_file(key: Option<&str>) -> String {
    key.map(|key| format!(" at `{key}`")).unwrap_or_default()
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
