//! Persistence: the diesel schema, the embedded migrations, and every query the engine runs,
//! compiled once per backend.
//!
//! One code base serves SQLite and PostgreSQL: `ops.rs` is written against a concrete
//! connection type `Conn` and included once per backend, and the few places where the two differ
//! (the claim's row locking, the database clock, `NOTIFY`, `BEGIN IMMEDIATE`) live in the
//! `Dialect` implementation of each connection.

pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{
    ConnectionManager, CustomizeConnection, ManageConnection, Pool as R2d2Pool, R2D2Connection,
};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::state::{StepState, TaskState};

pub(crate) mod sqlite_ops {
    //! Operations on SQLite.
    pub(crate) type Conn = diesel::sqlite::SqliteConnection;
    include!("ops.rs");
}

#[cfg(feature = "postgres")]
pub(crate) mod pg_ops {
    //! Operations on PostgreSQL.
    pub(crate) type Conn = diesel::pg::PgConnection;
    include!("ops.rs");
}

#[cfg(feature = "postgres")]
mod listener;
#[cfg(feature = "postgres")]
pub(crate) use listener::spawn_listener;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// The channel PostgreSQL `NOTIFY`s when steps become ready.
pub(crate) const READY_CHANNEL: &str = "tasker_ready";

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// What differs between the backends.
pub(crate) trait Dialect: Connection + Sized {
    /// The database clock as a UTC timestamp expression.
    const NOW: &'static str;
    /// The database clock plus `seconds`.
    fn now_plus(seconds: f64) -> String;
    /// Runs `f` in a write transaction (a savepoint inside a caller's transaction).
    fn write<T>(c: &mut Self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T>;
    /// The statement selecting (and on PostgreSQL locking) ready steps.
    fn claim_candidates_sql(named_task_ids: &str, limit: usize) -> String;
    /// Tells other processes that steps became ready (PostgreSQL `NOTIFY`, sent at commit).
    fn notify_ready(c: &mut Self) -> Result<()>;
}

fn in_transaction<C>(c: &mut C) -> bool
where
    C: Connection<TransactionManager = AnsiTransactionManager>,
{
    matches!(
        AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
        Ok(Some(_))
    )
}

fn claim_candidates(named_task_ids: &str, limit: usize, now: &str, locking: &str) -> String {
    format!(
        "SELECT s.workflow_step_id, s.task_id, s.state, t.concurrent, \
                (t.running_step_id IS NULL) AS task_free \
         FROM tasker_workflow_steps s JOIN tasker_tasks t ON t.task_id = s.task_id \
         WHERE s.state IN ('pending', 'error') AND s.remaining_parents = 0 \
           AND s.ready_at IS NOT NULL AND s.ready_at <= {now} \
           AND t.named_task_id IN ({named_task_ids}) \
         ORDER BY s.priority DESC, s.ready_at, s.workflow_step_id \
         LIMIT {limit} {locking}"
    )
}

impl Dialect for SqliteConnection {
    const NOW: &'static str = "strftime('%Y-%m-%d %H:%M:%f', 'now')";

    fn now_plus(seconds: f64) -> String {
        format!("strftime('%Y-%m-%d %H:%M:%f', 'now', '{seconds:+.6} seconds')")
    }

    fn write<T>(c: &mut Self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        // BEGIN IMMEDIATE takes the write lock up front; a deferred transaction that later
        // writes fails with SQLITE_BUSY instead of waiting (see reference/deps.md).
        if in_transaction(c) {
            c.transaction(f)
        } else {
            c.immediate_transaction(f)
        }
    }

    fn claim_candidates_sql(named_task_ids: &str, limit: usize) -> String {
        claim_candidates(named_task_ids, limit, Self::NOW, "")
    }

    fn notify_ready(_: &mut Self) -> Result<()> {
        Ok(())
    }
}

#[cfg(feature = "postgres")]
impl Dialect for diesel::pg::PgConnection {
    const NOW: &'static str = "(now() AT TIME ZONE 'UTC')";

    fn now_plus(seconds: f64) -> String {
        format!("((now() AT TIME ZONE 'UTC') + interval '{seconds:.6} seconds')")
    }

    fn write<T>(c: &mut Self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        c.transaction(f)
    }

    fn claim_candidates_sql(named_task_ids: &str, limit: usize) -> String {
        claim_candidates(
            named_task_ids,
            limit,
            Self::NOW,
            "FOR UPDATE OF s SKIP LOCKED",
        )
    }

    fn notify_ready(c: &mut Self) -> Result<()> {
        c.batch_execute(&format!("NOTIFY {READY_CHANNEL}"))?;
        Ok(())
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

impl TransitionRow {
    pub(crate) fn new(id: i64, from: Option<&str>, to: &str, metadata: &str) -> Self {
        Self {
            id,
            from: from.map(static_state),
            to: static_state(to),
            metadata: metadata.to_owned(),
        }
    }
}

fn static_state(s: &str) -> &'static str {
    s.parse::<StepState>()
        .map(StepState::as_str)
        .unwrap_or("pending")
}

/// A transition that happened, to publish once its transaction committed.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// The event name, e.g. `step.completed`.
    pub name: &'static str,
    /// The task.
    pub task_id: i64,
    /// The step, for step events.
    pub step_id: Option<i64>,
    /// The step's name, for step events.
    pub step_name: Option<String>,
    /// The state left (`None` for an initial transition).
    pub from: Option<&'static str>,
    /// The state entered.
    pub to: &'static str,
    /// The transition's metadata.
    pub metadata: Value,
    /// The task's correlation id, once looked up.
    pub correlation_id: Option<String>,
}

impl EventRecord {
    pub(crate) fn task(
        task_id: i64,
        from: Option<TaskState>,
        to: TaskState,
        metadata: Value,
    ) -> Self {
        Self {
            name: TaskState::event(from, to),
            task_id,
            step_id: None,
            step_name: None,
            from: from.map(TaskState::as_str),
            to: to.as_str(),
            metadata,
            correlation_id: None,
        }
    }

    pub(crate) fn step(
        task_id: i64,
        step_id: i64,
        name: &str,
        from: Option<StepState>,
        to: StepState,
        metadata: Value,
    ) -> Self {
        Self {
            name: StepState::event(from, to),
            task_id,
            step_id: Some(step_id),
            step_name: Some(name.to_owned()),
            from: from.map(StepState::as_str),
            to: to.as_str(),
            metadata,
            correlation_id: None,
        }
    }
}

/// Database ids of a synced template.
#[derive(Debug, Clone)]
pub(crate) struct TemplateIds {
    pub(crate) named_task_id: i64,
    pub(crate) step_ids: HashMap<String, i64>,
}

/// A task ready to insert, built and checked by the engine.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct PreparedTask {
    pub(crate) named_task_id: i64,
    pub(crate) concurrent: bool,
    pub(crate) requested_at: chrono::NaiveDateTime,
    pub(crate) initiator: String,
    pub(crate) source_system: String,
    pub(crate) reason: String,
    pub(crate) bypass_steps: String,
    pub(crate) tags: String,
    pub(crate) context: String,
    pub(crate) identity_hash: String,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) priority: i32,
    pub(crate) correlation_id: String,
    pub(crate) steps: Vec<PreparedStep>,
    /// (parent index, child index) into `steps`.
    pub(crate) edges: Vec<(usize, usize)>,
}

/// A step ready to insert.
#[derive(Debug, Clone)]
pub(crate) struct PreparedStep {
    pub(crate) named_step_id: i64,
    pub(crate) name: String,
    pub(crate) retryable: bool,
    pub(crate) retry_limit: i32,
    pub(crate) skippable: bool,
    pub(crate) bypassed: bool,
    pub(crate) remaining_parents: i32,
}

/// The result of creating a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTask {
    /// The task's id.
    pub id: i64,
    /// `true` when an earlier task with the same idempotency key was returned instead.
    pub existing: bool,
}

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
    /// The task context, as JSON text.
    pub context: String,
    /// Parent step names and their results as JSON text.
    pub parents: Vec<(String, Option<String>)>,
}

/// A failed attempt, as the store records it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The error as JSON, stored in `results`.
    pub error_json: String,
    /// When to retry; `None` when the step failed for good.
    pub retry_in: Option<Duration>,
    /// Why, for the transition's metadata (`step_error`, `lease_expired`, `timeout`, …).
    pub reason: &'static str,
    /// The error message.
    pub message: String,
    /// `retryable` or `permanent`: the error's class, whether or not attempts remain.
    pub class: &'static str,
}

impl Failure {
    fn metadata(&self, attempt: i32, duration_ms: Option<f64>) -> Value {
        serde_json::json!({
            "attempt": attempt,
            "reason": self.reason,
            "error": self.message,
            "error_class": self.class,
            "retry_in_seconds": self.retry_in.map(|d| d.as_secs_f64()),
            "duration_ms": duration_ms,
        })
    }
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
    pub result: std::result::Result<String, Failure>,
    /// How long the handler ran, when it ran.
    pub duration_ms: Option<f64>,
}

/// Whether an outcome was recorded or rejected by fencing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionOutcome {
    /// Recorded.
    Recorded,
    /// Rejected: the attempt no longer owns the step.
    Stale,
}

/// An in-progress step as the lease sweeper sees it.
#[derive(Debug, Clone)]
pub(crate) struct StepRow {
    pub(crate) step_id: i64,
    pub(crate) task_id: i64,
    pub(crate) name: String,
    pub(crate) attempts: i32,
    pub(crate) owner: String,
    pub(crate) retryable: bool,
    pub(crate) retry_limit: i32,
    pub(crate) concurrent: bool,
}

/// Step counts of one task, for finalization.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskCounts {
    pub(crate) task_id: i64,
    pub(crate) total: i64,
    pub(crate) done: i64,
    pub(crate) running: i64,
    pub(crate) runnable: i64,
    pub(crate) failed: i64,
}

/// The seed's execution status, reduced to what finalization acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskStatus {
    Runnable,
    Processing,
    BlockedByFailures,
    AllComplete,
    Waiting,
}

impl TaskCounts {
    pub(crate) fn status(&self) -> TaskStatus {
        if self.runnable > 0 {
            TaskStatus::Runnable
        } else if self.running > 0 {
            TaskStatus::Processing
        } else if self.failed > 0 {
            TaskStatus::BlockedByFailures
        } else if self.total > 0 && self.done == self.total {
            TaskStatus::AllComplete
        } else {
            TaskStatus::Waiting
        }
    }
}

type TaskTuple = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    i32,
    Option<String>,
    chrono::NaiveDateTime,
    chrono::NaiveDateTime,
    chrono::NaiveDateTime,
);

/// A task as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
    pub requested_at: chrono::NaiveDateTime,
    /// When it was created (UTC, database clock).
    pub created_at: chrono::NaiveDateTime,
    /// When it last changed (UTC, database clock).
    pub updated_at: chrono::NaiveDateTime,
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

/// One embedded migration and whether it has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The migration's name, `VERSION_description`.
    pub name: String,
    /// Whether the database has it.
    pub applied: bool,
}

/// Most tasks one listing returns.
pub const MAX_LIST_LIMIT: usize = 1000;

impl TaskRow {
    pub(crate) fn from_tuple(t: TaskTuple) -> Self {
        Self {
            task_id: t.0,
            namespace: t.1,
            name: t.2,
            version: t.3,
            state: t.4.parse().unwrap_or(TaskState::Pending),
            context: serde_json::from_str(&t.5).unwrap_or(Value::Null),
            initiator: t.6,
            source_system: t.7,
            reason: t.8,
            tags: serde_json::from_str(&t.9).unwrap_or_default(),
            bypass_steps: serde_json::from_str(&t.10).unwrap_or_default(),
            priority: t.11,
            idempotency_key: t.12,
            requested_at: t.13,
            created_at: t.14,
            updated_at: t.15,
        }
    }
}

pub(crate) type StepTuple = (
    i64,
    i64,
    String,
    String,
    i32,
    i32,
    bool,
    bool,
    Option<String>,
    i32,
    Option<chrono::NaiveDateTime>,
    Option<String>,
    Option<chrono::NaiveDateTime>,
    Option<chrono::NaiveDateTime>,
);

/// A workflow step as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
    pub ready_at: Option<chrono::NaiveDateTime>,
    /// Worker holding its lease.
    pub lease_owner: Option<String>,
    /// When the last attempt started.
    pub last_attempted_at: Option<chrono::NaiveDateTime>,
    /// When it finished.
    pub processed_at: Option<chrono::NaiveDateTime>,
}

impl From<StepTuple> for StepInfo {
    fn from(t: StepTuple) -> Self {
        Self {
            step_id: t.0,
            task_id: t.1,
            name: t.2,
            state: t.3.parse().unwrap_or(StepState::Pending),
            attempts: t.4,
            retry_limit: t.5,
            retryable: t.6,
            skippable: t.7,
            results: t.8.and_then(|r| serde_json::from_str(&r).ok()),
            remaining_parents: t.9,
            ready_at: t.10,
            lease_owner: t.11,
            last_attempted_at: t.12,
            processed_at: t.13,
        }
    }
}

pub(crate) type TransitionTuple = (
    Option<String>,
    String,
    String,
    i32,
    bool,
    chrono::NaiveDateTime,
);

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
    pub created_at: chrono::NaiveDateTime,
}

impl From<TransitionTuple> for TransitionInfo {
    fn from(t: TransitionTuple) -> Self {
        Self {
            from_state: t.0,
            to_state: t.1,
            metadata: serde_json::from_str(&t.2).unwrap_or(Value::Null),
            sort_key: t.3,
            most_recent: t.4,
            created_at: t.5,
        }
    }
}

#[derive(Debug)]
struct SqlitePragmas {
    busy_timeout: Duration,
}

impl CustomizeConnection<Pooled<SqliteConnection>, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(
        &self,
        pooled: &mut Pooled<SqliteConnection>,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        let conn = &mut pooled.conn;
        // WAL lets readers run beside the one writer; NORMAL syncs at checkpoints, which keeps
        // every committed transaction across a process crash (not across power loss).
        conn.batch_execute(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON;",
            self.busy_timeout.as_millis()
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Deadlines on every PostgreSQL session, so no call waits forever on a stuck server, and
/// standard string literals, which the batched completion's inlined values rely on.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct PgSession {
    statement_timeout: Duration,
}

#[cfg(feature = "postgres")]
impl CustomizeConnection<Pooled<diesel::pg::PgConnection>, diesel::r2d2::Error> for PgSession {
    fn on_acquire(
        &self,
        pooled: &mut Pooled<diesel::pg::PgConnection>,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        let conn = &mut pooled.conn;
        let ms = self.statement_timeout.as_millis().max(1);
        conn.batch_execute(&format!(
            "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms}; \
             SET lock_timeout = {ms}; SET standard_conforming_strings = on"
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// `url` with libpq's connection deadlines added where it sets none: a connect timeout, and
/// TCP keepalives and a user timeout so a connection to a vanished server fails instead of
/// hanging (a server-side `statement_timeout` cannot end a call the network swallowed).
#[cfg(feature = "postgres")]
pub(crate) fn with_deadlines(url: &str, connect: Duration, statement: Duration) -> String {
    let mut out = url.to_owned();
    let defaults = [
        ("connect_timeout", connect.as_secs().max(1).to_string()),
        ("keepalives_idle", "10".to_owned()),
        ("keepalives_interval", "5".to_owned()),
        ("keepalives_count", "3".to_owned()),
        (
            "tcp_user_timeout",
            (statement.as_millis() + 5000).to_string(),
        ),
    ];
    for (key, value) in defaults {
        if !url.contains(&format!("{key}=")) {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(&format!("{key}={value}"));
        }
    }
    out
}

/// How [`Store::connect_with`] connects.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Most connections in the pool.
    pub pool_size: u32,
    /// How long to wait for a pooled (or new) connection.
    pub connection_timeout: Duration,
    /// Deadline of every statement (see [`crate::TaskerConfig::statement_timeout`]).
    pub statement_timeout: Duration,
}

/// Serialises this process's access to one SQLite file. SQLite has one writer at a time; without
/// the gate, contending connections meet `SQLITE_BUSY` and SQLite's busy handler sleeps for
/// milliseconds, which throttles a busy engine to a fraction of what the file can commit. Other
/// processes on the same file still wait through `busy_timeout`.
pub(crate) type Gate = Arc<std::sync::Mutex<()>>;

/// The gate of each SQLite file this process has open, by canonical path.
fn sqlite_gate(path: &str) -> Gate {
    static GATES: std::sync::OnceLock<std::sync::Mutex<HashMap<std::path::PathBuf, Gate>>> =
        std::sync::OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
    let mut gates = GATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    gates.retain(|_, gate| Arc::strong_count(gate) > 1);
    Arc::clone(gates.entry(key).or_default())
}

/// Holds a gate; poisoning is ignored because the gate guards no data of its own.
pub(crate) fn hold(gate: &Gate) -> std::sync::MutexGuard<'_, ()> {
    gate.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A pooled connection, with what the pool knows of its health.
pub(crate) struct Pooled<C> {
    pub(crate) conn: C,
    /// When an operation on it last succeeded.
    last_ok: std::time::Instant,
    /// An operation on it failed at the database level: the pool drops it instead of reusing it.
    failed: bool,
}

impl<C> Pooled<C> {
    /// Records how an operation on this connection ended.
    pub(crate) fn settle<T>(&mut self, result: &Result<T>) {
        match result {
            Ok(_) | Err(Error::Database(diesel::result::Error::NotFound)) => {
                self.last_ok = std::time::Instant::now();
            }
            Err(Error::Database(_)) => self.failed = true,
            Err(_) => {}
        }
    }
}

/// How long after a successful operation a connection is handed out again without a check.
/// Checking every checkout (r2d2's default `SELECT 1`) was a round trip for nearly every step;
/// a connection that fails is dropped when it is returned instead, so after a database restart
/// each stale connection fails one call, which the worker retries on a fresh one.
const TRUSTED_FOR: Duration = Duration::from_secs(5);

/// diesel's connection manager, checking a connection only when it has been idle a while.
pub(crate) struct Manager<C: R2D2Connection + 'static>(ConnectionManager<C>);

impl<C: R2D2Connection + Send + 'static> ManageConnection for Manager<C> {
    type Connection = Pooled<C>;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> std::result::Result<Pooled<C>, diesel::r2d2::Error> {
        Ok(Pooled {
            conn: self.0.connect()?,
            last_ok: std::time::Instant::now(),
            failed: false,
        })
    }

    fn is_valid(&self, pooled: &mut Pooled<C>) -> std::result::Result<(), diesel::r2d2::Error> {
        if pooled.last_ok.elapsed() < TRUSTED_FOR {
            return Ok(());
        }
        self.0.is_valid(&mut pooled.conn)?;
        pooled.last_ok = std::time::Instant::now();
        Ok(())
    }

    fn has_broken(&self, pooled: &mut Pooled<C>) -> bool {
        pooled.failed || self.0.has_broken(&mut pooled.conn)
    }
}

pub(crate) enum Pool {
    Sqlite(R2d2Pool<Manager<SqliteConnection>>, Gate),
    #[cfg(feature = "postgres")]
    Postgres(R2d2Pool<Manager<diesel::pg::PgConnection>>),
}

/// A connection pool to the tasker tables, on either backend.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Arc<Pool>,
    url: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

/// Runs `$func(conn, args…)` from the ops module of the store's backend.
macro_rules! dispatch {
    ($store:expr, $func:ident ( $($arg:expr),* $(,)? )) => {
        match &*$store.pool {
            $crate::store::Pool::Sqlite(p, gate) => {
                let _gate = $crate::store::hold(gate);
                let mut pooled = p.get()?;
                let result = $crate::store::sqlite_ops::$func(&mut pooled.conn, $($arg),*);
                pooled.settle(&result);
                result
            }
            #[cfg(feature = "postgres")]
            $crate::store::Pool::Postgres(p) => {
                let mut pooled = p.get()?;
                let result = $crate::store::pg_ops::$func(&mut pooled.conn, $($arg),*);
                pooled.settle(&result);
                result
            }
        }
    };
}
pub(crate) use dispatch;

impl Store {
    /// Connects to `url`: `postgres://…`/`postgresql://…` for PostgreSQL, anything else (a path,
    /// optionally `sqlite://`-prefixed) for a SQLite file, created if missing.
    pub fn connect(url: &str, pool_size: u32, connection_timeout: Duration) -> Result<Self> {
        Self::connect_with(
            url,
            ConnectOptions {
                pool_size,
                connection_timeout,
                statement_timeout: Duration::from_secs(30),
            },
        )
    }

    /// Connects like [`Store::connect`], with every deadline given.
    pub fn connect_with(url: &str, options: ConnectOptions) -> Result<Self> {
        let ConnectOptions {
            pool_size,
            connection_timeout,
            statement_timeout,
        } = options;
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let manager = Manager(ConnectionManager::<diesel::pg::PgConnection>::new(
                    with_deadlines(url, connection_timeout, statement_timeout),
                ));
                Pool::Postgres(
                    R2d2Pool::builder()
                        .max_size(pool_size.max(2))
                        .min_idle(Some(1))
                        .connection_timeout(connection_timeout)
                        .connection_customizer(Box::new(PgSession { statement_timeout }))
                        .build(manager)?,
                )
            }
            #[cfg(not(feature = "postgres"))]
            {
                return Err(Error::PostgresDisabled);
            }
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            if path.is_empty() || path.contains("://") {
                return Err(Error::UnsupportedUrl(url.to_owned()));
            }
            // Every connection to `:memory:` is its own database, so it gets exactly one.
            let size = if path == ":memory:" {
                1
            } else {
                pool_size.max(2)
            };
            let manager = Manager(ConnectionManager::<SqliteConnection>::new(path));
            let pool = R2d2Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                .connection_timeout(connection_timeout)
                .connection_customizer(Box::new(SqlitePragmas {
                    busy_timeout: statement_timeout,
                }))
                .build(manager)?;
            // After the pool opened (and so created) the file, so the path canonicalises.
            Pool::Sqlite(pool, sqlite_gate(path))
        };
        Ok(Self {
            pool: Arc::new(pool),
            url: url.into(),
        })
    }

    /// Which backend this store talks to.
    pub fn backend(&self) -> Backend {
        match &*self.pool {
            Pool::Sqlite(..) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Applies the embedded migrations that have not run yet; returns how many ran. Safe to call
    /// from several processes at once: they serialise on a lock.
    pub fn migrate(&self) -> Result<usize> {
        let migration_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Migration(e);
        match &*self.pool {
            Pool::Sqlite(p, gate) => {
                let _gate = hold(gate);
                let mut pooled = p.get()?;
                pooled.conn.immediate_transaction(|c| {
                    c.run_pending_migrations(SQLITE_MIGRATIONS)
                        .map(|v| v.len())
                        .map_err(migration_error)
                })
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                let mut pooled = p.get()?;
                pooled.conn.transaction(|c| {
                    // Two processes starting on an empty database would both see the migrations
                    // pending; the transaction-scoped advisory lock makes the second wait.
                    c.batch_execute("SELECT pg_advisory_xact_lock(7302147583)")?;
                    c.run_pending_migrations(POSTGRES_MIGRATIONS)
                        .map(|v| v.len())
                        .map_err(migration_error)
                })
            }
        }
    }

    /// Every embedded migration, oldest first, and whether this database has applied it.
    pub fn migration_status(&self) -> Result<Vec<MigrationStatus>> {
        fn status<DB, C, S>(conn: &mut C, source: S) -> Result<Vec<MigrationStatus>>
        where
            DB: diesel::backend::Backend,
            C: MigrationHarness<DB>,
            S: diesel::migration::MigrationSource<DB>,
        {
            let migration_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Migration(e);
            let applied: Vec<String> = conn
                .applied_migrations()
                .map_err(migration_error)?
                .iter()
                .map(ToString::to_string)
                .collect();
            Ok(source
                .migrations()
                .map_err(migration_error)?
                .iter()
                .map(|m| {
                    let name = m.name().to_string();
                    let version = m.name().version().to_string();
                    MigrationStatus {
                        applied: applied.contains(&version),
                        name,
                    }
                })
                .collect())
        }
        match &*self.pool {
            Pool::Sqlite(p, gate) => {
                let _gate = hold(gate);
                status(&mut p.get()?.conn, SQLITE_MIGRATIONS)
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => status(&mut p.get()?.conn, POSTGRES_MIGRATIONS),
        }
    }

    /// Runs blocking database work on tokio's blocking pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(Error::Join)?
    }
}
