//! Persistence: the diesel schema, the embedded migrations, and every query the engine runs.
//!
//! Each operation is written once against [`Conn`], a connection of either backend; what truly
//! differs between SQLite and PostgreSQL (the clock, the claim's row lock, `NOTIFY`, `BEGIN
//! IMMEDIATE`) is in `conn.rs`, with the reason. Reads go through row structs and come out as
//! the read models of [`crate::model`]; a stored value that cannot be read is an
//! [`Error::CorruptData`] naming its table, row and column.

mod analytics;
mod annotations;
mod claim;
mod complete;
mod conn;
mod create;
#[cfg(feature = "sqlite")]
mod lane;
#[cfg(feature = "postgres")]
mod listener;
mod object_maps;
mod operate;
mod pool;
mod prepared;
mod read;
mod retention;
mod rows;
mod schedules;
pub(crate) mod schema;
mod templates;
mod transitions;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "postgres")]
use diesel::{Connection, connection::SimpleConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Error, Result};
use crate::model::{
    ClaimedStep, CompletionOutcome, EventRecord, MigrationStatus, NewTask, Outcome, StepInfo,
    TaskFilter, TaskRow, TransitionInfo, WorkerInfo,
};
use crate::state::{StepState, TaskState};

pub(crate) use analytics::{Scope, Timed};
pub(crate) use conn::Conn;
pub(crate) use create::{PreparedStep, PreparedTask, Start};
#[cfg(feature = "postgres")]
pub(crate) use listener::spawn_listener;
pub(crate) use operate::ExpiredStep;
pub use pool::ConnectOptions;
use pool::Pool;
#[cfg(feature = "postgres")]
pub(crate) use pool::{with_deadlines, with_schema};
pub(crate) use schedules::{Definition, Firing, ORIGIN_API, ORIGIN_TEMPLATE, ScheduleRow};
pub(crate) use templates::TemplateIds;

#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A connection pool to the tasker tables, on either backend.
#[derive(Clone)]
pub struct Store {
    pool: Arc<Pool>,
    /// For the PostgreSQL listener's own connection.
    #[cfg(feature = "postgres")]
    url: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

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
        Ok(Self {
            pool: Arc::new(Pool::open(url, options)?),
            #[cfg(feature = "postgres")]
            url: url.into(),
        })
    }

    /// Which backend this store talks to.
    pub fn backend(&self) -> Backend {
        match &*self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(..) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Runs the read `f` on a pooled connection.
    fn with<T>(&self, f: impl FnOnce(&mut Conn<'_>) -> Result<T>) -> Result<T> {
        self.pool.with_conn(f)
    }

    /// Runs the write `f`; on SQLite it may share its transaction with writes made at the same
    /// time, and returns once that transaction committed (group commit, `lane.rs`).
    fn write<T>(&self, f: impl FnOnce(&mut Conn<'_>) -> Result<T>) -> Result<T> {
        self.pool.write_conn(f)
    }

    /// Applies the embedded migrations that have not run yet; returns how many ran. Safe to call
    /// from several processes at once: they serialise on a lock.
    pub fn migrate(&self) -> Result<usize> {
        let migration_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Migration(e);
        self.with(|c| match c {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.immediate_transaction(|c| {
                c.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|v| v.len())
                    .map_err(migration_error)
            }),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => c.transaction(|c| {
                // Two processes starting on an empty database would both see the migrations
                // pending; the transaction-scoped advisory lock makes the second wait.
                c.batch_execute("SELECT pg_advisory_xact_lock(7302147583)")?;
                c.run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len())
                    .map_err(migration_error)
            }),
        })
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
                .map(|m| MigrationStatus {
                    applied: applied.contains(&m.name().version().to_string()),
                    name: m.name().to_string(),
                })
                .collect())
        }
        self.with(|c| match c {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => status(*c, SQLITE_MIGRATIONS),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => status(*c, POSTGRES_MIGRATIONS),
        })
    }

    /// Creates the PostgreSQL schema `schema` (a name checked by `with_schema`) if it is
    /// missing; nothing on SQLite.
    #[cfg(feature = "postgres")]
    pub(crate) fn create_schema(&self, schema: &str) -> Result<()> {
        self.with(|c| match c {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => Ok(()),
            // An identifier cannot be bound; `with_schema` allowed only a plain lowercase name.
            Conn::Postgres(c) => {
                Ok(c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))?)
            }
        })
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

    /// Upserts the namespaces, named tasks and named steps of `templates`; returns their ids.
    pub(crate) fn sync_templates(
        &self,
        templates: &[&crate::template::TaskTemplate],
    ) -> Result<Vec<TemplateIds>> {
        self.write(|c| templates::sync_templates(c, templates))
    }

    /// The configuration (template JSON) of every stored named task, by named task id.
    pub(crate) fn stored_templates(&self) -> Result<Vec<(i64, Option<String>)>> {
        self.with(templates::load_templates)
    }

    /// Records the custom events this program declares (name, description).
    pub(crate) fn sync_custom_events(&self, events: &[(String, String)]) -> Result<()> {
        self.write(|c| templates::sync_custom_events(c, events))
    }

    /// Every custom event any worker declared, by name.
    pub(crate) fn custom_events(&self) -> Result<Vec<(String, Option<String>)>> {
        self.with(templates::list_custom_events)
    }

    /// Inserts a prepared task with its steps, edges and first transitions.
    pub(crate) fn create_task(&self, task: &PreparedTask) -> Result<(NewTask, Vec<EventRecord>)> {
        self.write(|c| create::create_task(c, task))
    }

    /// Inserts prepared tasks in one transaction; one result per task, in order (see
    /// `create::create_tasks`).
    pub(crate) fn create_tasks(
        &self,
        tasks: &[PreparedTask],
    ) -> Result<(Vec<Result<NewTask>>, Vec<EventRecord>)> {
        self.write(|c| create::create_tasks(c, tasks))
    }

    /// Claims up to `limit` ready steps of `named_task_ids` for `owner` with a lease of `lease`.
    pub(crate) fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        named_task_ids: &[i64],
    ) -> Result<(Vec<ClaimedStep>, Vec<EventRecord>)> {
        self.write(|c| claim::claim(c, owner, limit, lease, named_task_ids))
    }

    /// Records attempt outcomes, fenced on (`owner`, `attempt`); see `complete::complete`.
    pub(crate) fn complete(
        &self,
        outcomes: &[Outcome],
        takes_locally: usize,
    ) -> Result<(Vec<CompletionOutcome>, Vec<EventRecord>)> {
        self.write(|c| complete::complete(c, outcomes, takes_locally))
    }

    /// Extends `owner`'s leases on `step_ids`; returns the steps it still held.
    pub(crate) fn heartbeat(
        &self,
        owner: &str,
        step_ids: &[i64],
        lease: Duration,
    ) -> Result<HashSet<i64>> {
        self.write(|c| operate::heartbeat(c, owner, step_ids, lease))
    }

    /// Makes ready up to `limit` scheduled steps whose time has come; reads first, so an idle
    /// store is not written to. Returns how many left the schedule.
    pub(crate) fn promote_due(&self, limit: usize) -> Result<usize> {
        if !self.with(create::any_due)? {
            return Ok(0);
        }
        self.write(|c| create::promote_due(c, limit))
    }

    /// Deletes up to `limit` finished tasks unchanged for `older_than_seconds`, in one
    /// transaction (see `retention::prune_batch`).
    pub(crate) fn prune_batch(
        &self,
        older_than_seconds: f64,
        include_errors: bool,
        limit: usize,
    ) -> Result<crate::model::Pruned> {
        self.write(|c| retention::prune_batch(c, older_than_seconds, include_errors, limit))
    }

    /// What a prune would delete now.
    pub(crate) fn prune_preview(
        &self,
        older_than_seconds: f64,
        include_errors: bool,
    ) -> Result<crate::model::Pruned> {
        self.with(|c| retention::prune_preview(c, older_than_seconds, include_errors))
    }

    /// Every schedule (or the one named `name`), by name.
    pub(crate) fn schedules(&self, name: Option<&str>) -> Result<Vec<ScheduleRow>> {
        self.with(|c| schedules::list(c, name))
    }

    /// The schedule named `name`.
    pub(crate) fn schedule(&self, name: &str) -> Result<ScheduleRow> {
        self.with(|c| schedules::one(c, name))
    }

    /// The database clock now (UTC).
    pub(crate) fn now(&self) -> Result<chrono::NaiveDateTime> {
        self.with(schedules::now)
    }

    /// Stores a schedule's definition (see `schedules::upsert`); whether anything was written.
    pub(crate) fn upsert_schedule(
        &self,
        definition: &Definition,
        next_run_at: chrono::NaiveDateTime,
    ) -> Result<bool> {
        self.write(|c| schedules::upsert(c, definition, next_run_at))
    }

    /// Stores the schedules each template declares, with its next slot, and deletes the ones
    /// it no longer declares: one transaction for them all.
    pub(crate) fn sync_schedules(
        &self,
        declared: &[(crate::TemplateKey, Vec<(Definition, chrono::NaiveDateTime)>)],
    ) -> Result<()> {
        self.write(|c| {
            for (key, definitions) in declared {
                for (definition, next_run_at) in definitions {
                    schedules::upsert(c, definition, *next_run_at)?;
                }
                let keep: Vec<String> = definitions.iter().map(|(d, _)| d.name.clone()).collect();
                let key = (
                    key.namespace.as_str(),
                    key.name.as_str(),
                    key.version.as_str(),
                );
                schedules::remove_undeclared(c, key, &keep)?;
            }
            Ok(())
        })
    }

    /// Deletes the schedule `name`; whether there was one.
    pub(crate) fn delete_schedule(&self, name: &str) -> Result<bool> {
        self.write(|c| schedules::delete(c, name))
    }

    /// Pauses or resumes (from `next_run_at`) the schedule `name`; whether there was one.
    pub(crate) fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        next_run_at: Option<chrono::NaiveDateTime>,
    ) -> Result<bool> {
        self.write(|c| schedules::set_paused(c, name, paused, next_run_at))
    }

    /// Asks for a run of the schedule `name` now; whether there was one.
    pub(crate) fn trigger_schedule(&self, name: &str) -> Result<bool> {
        self.write(|c| schedules::request_trigger(c, name))
    }

    /// The clock and the schedules due by it.
    pub(crate) fn due_schedules(&self) -> Result<(chrono::NaiveDateTime, Vec<ScheduleRow>)> {
        self.with(schedules::due)
    }

    /// Fires a due schedule exactly once (see `schedules::fire`).
    pub(crate) fn fire_schedule(&self, firing: &Firing) -> Result<Option<schedules::Fired>> {
        self.write(|c| schedules::fire(c, firing))
    }

    /// Moves the SQLite clock `seconds` forward (`tasker::testing`, whose engines are on
    /// SQLite; PostgreSQL's clock is the server's, and it has no `tasker_clock`).
    #[cfg(feature = "testing")]
    pub(crate) fn advance_clock(&self, seconds: f64) -> Result<()> {
        self.write(|c| {
            c.execute_sql(
                &format!("UPDATE tasker_clock SET offset_seconds = offset_seconds + {seconds}"),
                &[],
            )?;
            Ok(())
        })
    }

    /// The engine's clock now (UTC).
    #[cfg(feature = "testing")]
    pub(crate) fn clock(&self) -> Result<chrono::NaiveDateTime> {
        self.with(|c| {
            let now = c.now();
            Ok(c.get_result(diesel::select(now))?)
        })
    }

    /// Up to `limit` steps whose lease expired.
    pub(crate) fn expired_leases(&self, limit: usize) -> Result<Vec<ExpiredStep>> {
        self.with(|c| operate::expired_leases(c, limit))
    }

    /// Gives back steps `owner` claimed but will not run.
    pub(crate) fn release(&self, owner: &str, step_ids: &[i64]) -> Result<Vec<EventRecord>> {
        self.write(|c| operate::release(c, owner, step_ids))
    }

    /// Cancels a task and its unfinished steps.
    pub(crate) fn cancel_task(&self, task_id: i64) -> Result<Vec<EventRecord>> {
        self.write(|c| operate::cancel_task(c, task_id))
    }

    /// Ends an overdue task in error (see `operate::expire_task`).
    pub(crate) fn expire_task(&self, task_id: i64) -> Result<Vec<EventRecord>> {
        self.write(|c| operate::expire_task(c, task_id))
    }

    /// Up to `limit` open tasks whose deadline has passed.
    pub(crate) fn overdue_tasks(&self, limit: usize) -> Result<Vec<i64>> {
        self.with(|c| operate::overdue_tasks(c, limit))
    }

    /// Cancels one step of a task for good.
    pub(crate) fn cancel_step(&self, task_id: i64, step_id: i64) -> Result<Vec<EventRecord>> {
        self.write(|c| operate::cancel_step(c, task_id, step_id))
    }

    /// Sends a task in `error` back to `pending` with fresh retry budgets.
    pub(crate) fn retry_task(&self, task_id: i64) -> Result<Vec<EventRecord>> {
        self.write(|c| operate::retry_task(c, task_id))
    }

    /// Resolves a pending or failed step by hand, with an optional result (JSON text).
    pub(crate) fn resolve_step(
        &self,
        step_id: i64,
        results: Option<&str>,
    ) -> Result<Vec<EventRecord>> {
        self.write(|c| operate::resolve_step(c, step_id, results))
    }

    /// Sets a step's retry limit and/or resolves it, in one transaction (see
    /// `operate::update_step`).
    #[cfg(feature = "server")]
    pub(crate) fn update_step(
        &self,
        task_id: i64,
        step_id: i64,
        retry_limit: Option<i32>,
        resolve: Option<Option<&str>>,
    ) -> Result<Vec<EventRecord>> {
        self.write(|c| operate::update_step(c, task_id, step_id, retry_limit, resolve))
    }

    /// Changes a task's reason and/or tags (JSON text); `false` when there is no such task.
    pub(crate) fn update_task(
        &self,
        task_id: i64,
        reason: Option<&str>,
        tags: Option<&str>,
    ) -> Result<bool> {
        self.write(|c| operate::update_task(c, task_id, reason, tags))
    }

    /// Sets a step's retry limit; `false` when the task has no such step.
    pub(crate) fn set_retry_limit(&self, task_id: i64, step_id: i64, limit: i32) -> Result<bool> {
        self.write(|c| operate::set_retry_limit(c, task_id, step_id, limit))
    }

    /// One task.
    pub(crate) fn task(&self, task_id: i64) -> Result<TaskRow> {
        self.with(|c| read::load_task(c, task_id))
    }

    /// The tasks of `ids` that exist, by id.
    #[cfg(feature = "server")]
    pub(crate) fn tasks_by_id(&self, ids: &[i64]) -> Result<HashMap<i64, TaskRow>> {
        self.with(|c| read::load_tasks(c, ids))
    }

    /// Tasks matching `filter`.
    pub(crate) fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRow>> {
        self.with(|c| read::list_tasks(c, filter))
    }

    /// The steps of a task, in creation order.
    pub(crate) fn steps(&self, task_id: i64) -> Result<Vec<StepInfo>> {
        self.with(|c| read::load_steps(c, task_id))
    }

    /// The state and stored result of the step `name` of a task, if it has one by that name.
    pub(crate) fn step_output(
        &self,
        task_id: i64,
        name: &str,
    ) -> Result<Option<(StepState, Option<serde_json::Value>)>> {
        self.with(|c| read::step_output(c, task_id, name))
    }

    /// A step's transitions, oldest first.
    pub(crate) fn step_transitions(&self, step_id: i64) -> Result<Vec<TransitionInfo>> {
        self.with(|c| read::transitions(c, transitions::Entity::Step, step_id))
    }

    /// A task's transitions, oldest first.
    pub(crate) fn task_transitions(&self, task_id: i64) -> Result<Vec<TransitionInfo>> {
        self.with(|c| read::transitions(c, transitions::Entity::Task, task_id))
    }

    /// A task's dependency edges as `(parent, child)` step ids.
    pub(crate) fn edges(&self, task_id: i64) -> Result<Vec<(i64, i64)>> {
        self.with(|c| read::load_edges(c, task_id))
    }

    /// The correlation ids of `task_ids`.
    pub(crate) fn correlations(&self, task_ids: &[i64]) -> Result<HashMap<i64, String>> {
        self.with(|c| read::load_correlations(c, task_ids))
    }

    /// How many tasks are in each state.
    pub(crate) fn tasks_by_state(&self) -> Result<Vec<(TaskState, i64)>> {
        self.with(read::tasks_by_state)
    }

    /// Steps ready now, and the oldest one's wait in seconds.
    pub(crate) fn ready_stats(&self) -> Result<(i64, Option<f64>)> {
        self.with(read::ready_stats)
    }

    /// The tasks created within `scope` (see `analytics::tasks`).
    pub(crate) fn analytics_tasks(&self, scope: &Scope) -> Result<Vec<Timed>> {
        self.with(|c| analytics::tasks(c, scope))
    }

    /// The steps of the tasks created within `scope` (see `analytics::steps`).
    pub(crate) fn analytics_steps(&self, scope: &Scope) -> Result<Vec<Timed>> {
        self.with(|c| analytics::steps(c, scope))
    }

    /// How many steps are in each state.
    pub(crate) fn steps_by_state(&self) -> Result<Vec<(StepState, i64)>> {
        self.with(read::steps_by_state)
    }

    /// The workers seen within the last `within_seconds`.
    pub(crate) fn workers(&self, within_seconds: f64) -> Result<Vec<WorkerInfo>> {
        self.with(|c| read::workers(c, within_seconds))
    }

    /// Records worker `id` as alive now (see `operate::worker_seen`).
    pub(crate) fn worker_seen(&self, id: &str, concurrency: i32, running: i32) -> Result<()> {
        self.write(|c| operate::worker_seen(c, id, concurrency, running))
    }

    /// Adds an annotation (JSON text) to a task (see `annotations::annotate`).
    pub(crate) fn annotate(
        &self,
        task_id: i64,
        annotation_type: &str,
        annotation: &str,
    ) -> Result<()> {
        self.write(|c| annotations::annotate(c, task_id, annotation_type, annotation))
    }

    /// Maps `one` to `two` ((system, id) each) unless mapped; whether it was created.
    pub(crate) fn map_objects(
        &self,
        one: (&str, &str),
        two: (&str, &str),
    ) -> Result<(crate::model::ObjectMap, bool)> {
        self.write(|c| object_maps::map(c, one, two))
    }

    /// Every object map with `remote_id` of `system` on either side.
    pub(crate) fn mapped_objects(
        &self,
        system: &str,
        remote_id: &str,
    ) -> Result<Vec<crate::model::ObjectMap>> {
        self.with(|c| object_maps::mapped(c, system, remote_id))
    }

    /// A task's annotations, oldest first.
    pub(crate) fn annotations(&self, task_id: i64) -> Result<Vec<crate::model::TaskAnnotation>> {
        self.with(|c| annotations::annotations(c, task_id))
    }

    /// Every annotation type, by name.
    pub(crate) fn annotation_types(&self) -> Result<Vec<String>> {
        self.with(annotations::annotation_types)
    }

    /// Forgets worker `id`.
    pub(crate) fn worker_stopped(&self, id: &str) -> Result<()> {
        self.write(|c| operate::worker_stopped(c, id))
    }

    /// Checks that the database answers.
    pub(crate) fn ping(&self) -> Result<()> {
        self.with(read::ping)
    }
}

/// Creates a prepared task on a caller's connection (inside its transaction, when one is open).
pub(crate) fn create_on(
    c: &mut Conn<'_>,
    task: &PreparedTask,
) -> Result<(NewTask, Vec<EventRecord>)> {
    create::create_task(c, task)
}
