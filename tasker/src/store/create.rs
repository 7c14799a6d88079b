//! Creating tasks: their rows, steps, edges and first transitions. A batch of any size is one
//! transaction of a fixed number of multi-row statements per chunk of tasks (a chunk is as many
//! tasks as one statement can bind); a single create is a batch of one.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;

use super::Conn;
use super::schema::*;
use super::transitions::{record_new_steps, record_new_tasks};
use crate::error::{Error, Result};
use crate::model::{EventRecord, Metadata, NewTask, StepTransition, TaskTransition};
use crate::state::StepState;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

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
    /// When a delayed task's steps start; `None` starts them at once.
    pub(crate) start: Option<Start>,
    /// Seconds from its start to its deadline, if it has one.
    pub(crate) timeout_seconds: Option<f64>,
}

/// When a delayed task's runnable steps become ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Start {
    /// At this time (UTC).
    At(chrono::NaiveDateTime),
    /// This many seconds after the database clock's now.
    After(f64),
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

/// A task row to insert.
struct NewTaskRow<'a> {
    named_task_id: i64,
    concurrent: bool,
    requested_at: chrono::NaiveDateTime,
    initiator: &'a str,
    source_system: &'a str,
    reason: &'a str,
    bypass_steps: &'a str,
    tags: &'a str,
    context: &'a str,
    identity_hash: &'a str,
    idempotency_key: Option<&'a str>,
    priority: i32,
    correlation_id: &'a str,
}

impl<'a> NewTaskRow<'a> {
    fn of(task: &'a PreparedTask) -> Self {
        Self {
            named_task_id: task.named_task_id,
            concurrent: task.concurrent,
            requested_at: task.requested_at,
            initiator: &task.initiator,
            source_system: &task.source_system,
            reason: &task.reason,
            bypass_steps: &task.bypass_steps,
            tags: &task.tags,
            context: &task.context,
            identity_hash: &task.identity_hash,
            idempotency_key: task.idempotency_key.as_deref(),
            priority: task.priority,
            correlation_id: &task.correlation_id,
        }
    }
}

/// A task row an insert returned.
#[derive(QueryableByName)]
struct InsertedTask {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    task_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    identity_hash: String,
}

/// A step row an insert returned.
#[derive(QueryableByName)]
struct InsertedStep {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    task_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// A step row to insert.
struct NewStepRow<'a> {
    task_id: i64,
    named_step_id: i64,
    name: &'a str,
    state: &'static str,
    retryable: bool,
    retry_limit: i32,
    skippable: bool,
    remaining_parents: i32,
    priority: i32,
    /// Runnable at once (not bypassed, no parent to wait for): `ready_at` is the clock.
    ready: bool,
}

/// Inserts one task; see [`create_tasks`]. A colliding idempotency key gives the earlier task,
/// a colliding identity hash [`Error::DuplicateRequest`].
pub(crate) fn create_task(
    c: &mut Conn<'_>,
    task: &PreparedTask,
) -> Result<(NewTask, Vec<EventRecord>)> {
    let (results, events) = create_tasks(c, std::slice::from_ref(task))?;
    // A batch answers each of its tasks, so a batch of one answers once.
    let created = results
        .into_iter()
        .next()
        .ok_or(Error::Database(diesel::result::Error::NotFound))??;
    Ok((created, events))
}

/// Inserts tasks with their steps, edges and first transitions, in one transaction of its own
/// (a savepoint when the caller has one open). Returns one result per task, in order, and the
/// events of the tasks it created, each task's together and in the order a single create
/// gives them.
///
/// A task whose idempotency key is taken (by a stored task or an earlier one of the batch)
/// gets that task with `existing: true`; one whose identity hash is taken gets
/// [`Error::DuplicateRequest`]; neither stops the others. A database error fails the whole
/// batch and writes nothing.
pub(crate) fn create_tasks(
    c: &mut Conn<'_>,
    tasks: &[PreparedTask],
) -> Result<(Vec<Result<NewTask>>, Vec<EventRecord>)> {
    c.write(|c| {
        let inserts = first_of_each_identity(tasks);
        let mut known = Known::default();
        let mut events = EventsByTask::default();
        let chunk: Vec<&PreparedTask> = tasks
            .iter()
            .zip(&inserts)
            .filter_map(|(task, &insert)| insert.then_some(task))
            .collect();
        let created = insert_tasks(c, &chunk, &mut known)?;
        write_children(c, &created, &mut events)?;
        for (id, task) in &created {
            schedule(c, *id, task.start, task.timeout_seconds)?;
        }
        if !known.created.is_empty() {
            c.notify_ready()?;
        }
        let results: Vec<Result<NewTask>> = tasks
            .iter()
            .zip(&inserts)
            .map(|(task, &insert)| known.outcome(task, insert))
            .collect();
        Ok((results, events.in_order_of(tasks, &known)))
    })
}

/// Sets new task `task_id`'s times: with `start`, its `run_at`, its runnable steps held in
/// `scheduled_at` (out of the claim's index, until [`promote_due`] makes them ready); with
/// `timeout_seconds`, its deadline that long after its start (`run_at`, else now). One
/// statement on the task and one on its steps for a delayed task, nothing for the others.
fn schedule(
    c: &mut Conn<'_>,
    task_id: i64,
    start: Option<Start>,
    timeout_seconds: Option<f64>,
) -> Result<()> {
    let at = start.map(|start| match start {
        Start::At(at) => c.timestamp_sql(at),
        Start::After(seconds) => c.now_plus_sql(seconds),
    });
    let mut set = Vec::new();
    if let Some(at) = &at {
        set.push(format!("run_at = {at}"));
    }
    if let Some(seconds) = timeout_seconds {
        let from = at.clone().unwrap_or_else(|| c.now_sql().to_owned());
        set.push(format!(
            "deadline_at = {}",
            c.plus_seconds_sql(&from, seconds)
        ));
    }
    if set.is_empty() {
        return Ok(());
    }
    c.execute_sql(
        &format!(
            "UPDATE tasker_tasks SET {} WHERE task_id = {task_id}",
            set.join(", ")
        ),
        &[],
    )?;
    if let Some(at) = at {
        c.execute_sql(
            &format!(
                "UPDATE tasker_workflow_steps SET scheduled_at = {at}, ready_at = NULL \
                 WHERE task_id = {task_id} AND ready_at IS NOT NULL"
            ),
            &[],
        )?;
    }
    Ok(())
}

/// Makes ready the scheduled steps whose time has come (at most `limit`, oldest first): a
/// pending one gets `ready_at` = its scheduled time, one cancelled or resolved meanwhile only
/// leaves the schedule. Returns how many left the schedule.
pub(crate) fn promote_due(c: &mut Conn<'_>, limit: usize) -> Result<usize> {
    let now = c.now_sql();
    let pending = crate::state::StepState::Pending.as_str();
    // PostgreSQL skips rows another promoter holds; SQLite has one writer at a time.
    let lock = c.skip_locked();
    let ready = c.execute_sql(
        &format!(
            "UPDATE tasker_workflow_steps \
             SET ready_at = CASE WHEN state = '{pending}' THEN scheduled_at END, \
                 scheduled_at = NULL \
             WHERE workflow_step_id IN ( \
               SELECT workflow_step_id FROM tasker_workflow_steps \
               WHERE scheduled_at IS NOT NULL AND scheduled_at <= {now} \
               ORDER BY scheduled_at LIMIT {limit} {lock})"
        ),
        &[],
    )?;
    if ready > 0 {
        c.notify_ready()?;
    }
    Ok(ready)
}

/// Whether a scheduled step's time has come (a read, so idle promoters write nothing).
pub(crate) fn any_due(c: &mut Conn<'_>) -> Result<bool> {
    use super::schema::tasker_workflow_steps::dsl as s;
    use diesel::dsl::exists;
    let now = c.now();
    Ok(c.get_result(diesel::select(exists(
        s::tasker_workflow_steps
            .filter(s::scheduled_at.is_not_null())
            .filter(s::scheduled_at.le(now.nullable())),
    )))?)
}

/// For each task, whether it is the first of the batch with its idempotency key and identity
/// hash; the others are answered by that first one, as they would be one after the other.
fn first_of_each_identity(tasks: &[PreparedTask]) -> Vec<bool> {
    let mut keys = HashSet::new();
    let mut hashes = HashSet::new();
    tasks
        .iter()
        .map(|task| {
            let key = task.idempotency_key.as_deref();
            let first = key.is_none_or(|key| !keys.contains(key))
                && !hashes.contains(task.identity_hash.as_str());
            // Only an inserted task takes its key and hash, as one create after another would.
            if first {
                keys.extend(key);
                hashes.insert(task.identity_hash.as_str());
            }
            first
        })
        .collect()
}

/// What the batch learnt of stored tasks: the ones it created, and the ones its tasks collided
/// with, by identity hash and by idempotency key.
#[derive(Default)]
struct Known {
    /// Task id by identity hash, for the tasks this batch inserted.
    created: HashMap<String, i64>,
    /// Task id by identity hash and by idempotency key, for every task seen.
    by_hash: HashMap<String, i64>,
    by_key: HashMap<String, i64>,
}

impl Known {
    fn learn(&mut self, id: i64, hash: String, key: Option<String>) {
        if let Some(key) = key {
            self.by_key.insert(key, id);
        }
        self.by_hash.insert(hash, id);
    }

    /// What a task gets: the task it inserted; else the task holding its idempotency key or
    /// identity hash (as [`collided`] says); else an identity conflict.
    fn outcome(&self, task: &PreparedTask, inserted: bool) -> Result<NewTask> {
        if inserted && let Some(&id) = self.created.get(&task.identity_hash) {
            return Ok(NewTask {
                id,
                existing: false,
            });
        }
        let by_key = task
            .idempotency_key
            .as_ref()
            .and_then(|key| self.by_key.get(key));
        match by_key.or_else(|| self.by_hash.get(&task.identity_hash)) {
            Some(&id) => collided(task, id),
            None => Err(Error::IdentityConflict),
        }
    }
}

/// What a request that collided with task `id` gets: that task when the request carries an
/// idempotency key (the key asks for exactly that), else a duplicate-request error.
fn collided(task: &PreparedTask, id: i64) -> Result<NewTask> {
    match task.idempotency_key {
        Some(_) => Ok(NewTask { id, existing: true }),
        None => Err(Error::DuplicateRequest(id)),
    }
}

/// Inserts the batch's task rows; returns the tasks it created with their ids. `ON CONFLICT DO
/// NOTHING` makes concurrent creators with one key wait for the first and then see its row,
/// instead of failing on the unique index; the tasks that collided are read back into `known`.
fn insert_tasks<'t>(
    c: &mut Conn<'_>,
    chunk: &[&'t PreparedTask],
    known: &mut Known,
) -> Result<Vec<(i64, &'t PreparedTask)>> {
    let rows: Vec<NewTaskRow<'_>> = chunk.iter().map(|task| NewTaskRow::of(task)).collect();
    // RETURNING's row order is not the rows' order in SQL; the identity hash (unique, and
    // unique within the batch) says which task each id belongs to.
    let inserted: Vec<(i64, String)> = match c {
        #[cfg(feature = "postgres")]
        Conn::Postgres(pg) => postgres::insert_tasks(pg, &rows)?,
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => sqlite::insert_tasks(c, &rows)?,
    };
    let inserted: HashMap<String, i64> = inserted.into_iter().map(|(id, h)| (h, id)).collect();
    let mut created = Vec::with_capacity(inserted.len());
    let mut collided = Vec::new();
    for &task in chunk {
        match inserted.get(&task.identity_hash) {
            Some(&id) => {
                known.created.insert(task.identity_hash.clone(), id);
                known.learn(id, task.identity_hash.clone(), task.idempotency_key.clone());
                created.push((id, task));
            }
            None => collided.push(task),
        }
    }
    read_collisions(c, &collided, known)?;
    Ok(created)
}

/// Reads the stored tasks that hold the identity hashes or idempotency keys of `collided`.
fn read_collisions(c: &mut Conn<'_>, collided: &[&PreparedTask], known: &mut Known) -> Result<()> {
    use tasker_tasks::dsl as t;
    if collided.is_empty() {
        return Ok(());
    }
    let hashes: Vec<&str> = collided.iter().map(|t| t.identity_hash.as_str()).collect();
    let keys: Vec<&str> = collided
        .iter()
        .filter_map(|t| t.idempotency_key.as_deref())
        .collect();
    let rows: Vec<(i64, String, Option<String>)> = c.load(
        t::tasker_tasks
            .filter(
                t::identity_hash
                    .eq_any(&hashes)
                    .or(t::idempotency_key.eq_any(&keys)),
            )
            .select((t::task_id, t::identity_hash, t::idempotency_key)),
    )?;
    for (id, hash, key) in rows {
        known.learn(id, hash, key);
    }
    Ok(())
}

/// Writes what belongs to the tasks just created: steps, edges, readiness, first transitions,
/// and the finalisation of tasks whose bypassed steps leave nothing (or less) to run.
fn write_children(
    c: &mut Conn<'_>,
    created: &[(i64, &PreparedTask)],
    events: &mut EventsByTask,
) -> Result<()> {
    if created.is_empty() {
        return Ok(());
    }
    let step_ids = insert_steps(c, created)?;
    insert_edges(c, created, &step_ids)?;
    events.add(first_transitions(c, created, &step_ids)?);
    let bypassing: Vec<i64> = created
        .iter()
        .filter(|(_, task)| task.steps.iter().any(|s| s.bypassed))
        .map(|(id, _)| *id)
        .collect();
    events.add(super::complete::finalize_tasks(c, &bypassing)?);
    Ok(())
}

/// Inserts the steps of every created task; returns their ids, per task in the order of its
/// `steps`.
fn insert_steps(c: &mut Conn<'_>, created: &[(i64, &PreparedTask)]) -> Result<Vec<Vec<i64>>> {
    let rows: Vec<NewStepRow<'_>> = created
        .iter()
        .flat_map(|&(task_id, task)| {
            task.steps.iter().map(move |step| NewStepRow {
                task_id,
                named_step_id: step.named_step_id,
                name: &step.name,
                state: if step.bypassed {
                    StepState::ResolvedManually.as_str()
                } else {
                    StepState::Pending.as_str()
                },
                retryable: step.retryable,
                retry_limit: step.retry_limit,
                skippable: step.skippable,
                remaining_parents: step.remaining_parents,
                priority: task.priority,
                ready: !step.bypassed && step.remaining_parents == 0,
            })
        })
        .collect();
    let returned = insert_step_rows(c, &rows)?;
    // (task, name) is unique (a constraint), so it says which step each returned id is.
    let ids: HashMap<(i64, &str), i64> = returned
        .iter()
        .map(|(id, task_id, name)| ((*task_id, name.as_str()), *id))
        .collect();
    created
        .iter()
        .map(|&(task_id, task)| {
            task.steps
                .iter()
                .map(|step| {
                    ids.get(&(task_id, step.name.as_str()))
                        .copied()
                        // Every inserted row is returned; one missing is the database's fault.
                        .ok_or(Error::Database(diesel::result::Error::NotFound))
                })
                .collect()
        })
        .collect()
}

/// Inserts step rows, the `ready` ones with `ready_at` from the database clock; returns each
/// one's id, task and name.
fn insert_step_rows(c: &mut Conn<'_>, rows: &[NewStepRow<'_>]) -> Result<Vec<(i64, i64, String)>> {
    Ok(match c {
        #[cfg(feature = "postgres")]
        Conn::Postgres(pg) => postgres::insert_steps(pg, rows, super::conn::PG_NOW)?,
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => sqlite::insert_steps(c, rows)?,
    })
}

/// Inserts the dependency edges of every created task.
fn insert_edges(
    c: &mut Conn<'_>,
    created: &[(i64, &PreparedTask)],
    step_ids: &[Vec<i64>],
) -> Result<()> {
    let edges: Vec<(i64, i64)> = created
        .iter()
        .zip(step_ids)
        .flat_map(|((_, task), ids)| task.edges.iter().map(|&(from, to)| (ids[from], ids[to])))
        .collect();
    if edges.is_empty() {
        return Ok(());
    }
    match c {
        #[cfg(feature = "postgres")]
        Conn::Postgres(pg) => {
            postgres::insert_edges(pg, &edges)?;
        }
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => {
            sqlite::insert_edges(c, &edges)?;
        }
    }
    Ok(())
}

/// The tasks' and their steps' first transitions; bypassed steps go on to `resolved_manually`.
fn first_transitions(
    c: &mut Conn<'_>,
    created: &[(i64, &PreparedTask)],
    step_ids: &[Vec<i64>],
) -> Result<Vec<EventRecord>> {
    let tasks = created
        .iter()
        .map(|&(id, _)| TaskTransition::created(id))
        .collect();
    let mut events = record_new_tasks(c, tasks)?;
    let mut steps = Vec::new();
    for (&(task_id, task), ids) in created.iter().zip(step_ids) {
        for (step, &id) in task.steps.iter().zip(ids) {
            steps.push(StepTransition::created(task_id, id, &step.name));
            if step.bypassed {
                steps.push(StepTransition::new(
                    (task_id, id, &step.name),
                    StepState::Pending,
                    StepState::ResolvedManually,
                    Metadata::Bypassed,
                )?);
            }
        }
    }
    events.extend(record_new_steps(c, steps)?);
    Ok(events)
}

/// The events of a batch, gathered per task so each task's come out together.
#[derive(Default)]
struct EventsByTask(HashMap<i64, Vec<EventRecord>>);

impl EventsByTask {
    /// Adds events, keeping their order within each task.
    fn add(&mut self, events: Vec<EventRecord>) {
        for event in events {
            self.0.entry(event.task_id).or_default().push(event);
        }
    }

    /// Every created task's events, task after task in the batch's order, tagged with the
    /// task's correlation id.
    fn in_order_of(mut self, tasks: &[PreparedTask], known: &Known) -> Vec<EventRecord> {
        let mut ordered = Vec::new();
        for task in tasks {
            let Some(events) = known
                .created
                .get(&task.identity_hash)
                .and_then(|id| self.0.remove(id))
            else {
                continue;
            };
            for mut event in events {
                event.correlation_id = Some(task.correlation_id.clone());
                ordered.push(event);
            }
        }
        ordered
    }
}
