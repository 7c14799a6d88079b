//! Claiming ready steps for a worker.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};

use super::Conn;
use super::conn::Bind;
use super::rows::Cell;
use super::schema::*;
use super::transitions::{record_steps, record_tasks};
use crate::error::{Error, Result};
use crate::model::{
    ClaimedStep, EventRecord, Metadata, ParentOutput, StepTransition, TaskTransition,
};
use crate::state::{StepState, TaskState};

#[cfg(feature = "postgres")]
mod postgres;

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Bool)]
    concurrent: bool,
    #[diesel(sql_type = Bool)]
    task_free: bool,
}

/// A step the claim took, before its task's context is attached.
struct Taken {
    step_id: i64,
    task_id: i64,
    name: String,
    attempt: i32,
    retryable: bool,
    retry_limit: i32,
    from: StepState,
    concurrent: bool,
}

/// Claims up to `limit` ready steps of the given named tasks for `owner`: marks them
/// `in_progress` with a lease, writes their transitions, starts their tasks, and returns what
/// the handlers need (context and parent results).
pub(crate) fn claim(
    c: &mut Conn<'_>,
    owner: &str,
    limit: usize,
    lease: Duration,
    named_task_ids: &[i64],
) -> Result<(Vec<ClaimedStep>, Vec<EventRecord>)> {
    if named_task_ids.is_empty() || limit == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    #[cfg(feature = "postgres")]
    #[allow(
        irrefutable_let_patterns,
        reason = "PostgreSQL may be the only backend compiled in"
    )]
    if let Conn::Postgres(pg) = c {
        return postgres::claim(pg, owner, limit, lease, named_task_ids);
    }
    c.write(|c| {
        let candidates = candidates(c, named_task_ids, limit)?;
        let chosen = take_serial_tasks(c, candidates)?;
        if chosen.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let taken = mark_claimed(c, owner, lease, &chosen)?;
        let mut events = record_steps(c, claim_transitions(owner, &taken)?)?;
        events.extend(start_tasks(c, &taken)?);
        let tasks = task_contexts(c, &taken)?;
        for event in &mut events {
            event.correlation_id = tasks
                .get(&event.task_id)
                .and_then(|t| t.correlation_id.clone());
        }
        let step_ids: Vec<i64> = taken.iter().map(|t| t.step_id).collect();
        let mut parents = parent_results(c, &step_ids)?;
        let claimed = taken
            .into_iter()
            .map(|t| {
                let task = tasks
                    .get(&t.task_id)
                    .ok_or(Error::TaskNotFound(t.task_id))?;
                Ok(ClaimedStep {
                    parents: parents.remove(&t.step_id).unwrap_or_default(),
                    step_id: t.step_id,
                    task_id: t.task_id,
                    named_task_id: task.named_task_id,
                    context: task.context.clone(),
                    name: t.name,
                    attempt: t.attempt,
                    retryable: t.retryable,
                    retry_limit: t.retry_limit,
                    concurrent: t.concurrent,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((claimed, events))
    })
}

/// Ready steps, highest priority and oldest first, locked on PostgreSQL (`SKIP LOCKED`, so
/// concurrent claimers take different steps). `CROSS JOIN` makes SQLite walk the ready-steps
/// index in claim order and stop at the limit; left to choose, it reads every task of the
/// named tasks and sorts their steps, which costs the whole backlog on every claim.
fn candidates(c: &mut Conn<'_>, named_task_ids: &[i64], limit: usize) -> Result<Vec<Candidate>> {
    let sql = format!(
        "SELECT s.workflow_step_id, s.task_id, s.state, t.concurrent, \
                (t.running_step_id IS NULL) AS task_free \
         FROM tasker_workflow_steps s CROSS JOIN tasker_tasks t \
         WHERE t.task_id = s.task_id AND s.state IN ('{pending}', '{error}') AND s.remaining_parents = 0 \
           AND s.ready_at IS NOT NULL AND s.ready_at <= {now} \
           AND {named} \
         ORDER BY s.priority DESC, s.ready_at, s.workflow_step_id \
         LIMIT $2 {lock}",
        pending = StepState::Pending.as_str(),
        error = StepState::Error.as_str(),
        now = c.now_sql(),
        named = c.in_ids("t.named_task_id", 1),
        lock = c.claim_lock(),
    );
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    Ok(c.load_sql(&sql, &[Bind::Ids(named_task_ids), Bind::Integer(limit)])?)
}

/// Keeps the candidates that may run: all of concurrent tasks, and one per `concurrent: false`
/// task, whose `running_step_id` is the mutex, taken with a conditional UPDATE so two claimers
/// cannot both win it.
fn take_serial_tasks(c: &mut Conn<'_>, candidates: Vec<Candidate>) -> Result<Vec<Candidate>> {
    use tasker_tasks::dsl as t;
    let mut taken: BTreeSet<i64> = BTreeSet::new();
    let mut chosen = Vec::with_capacity(candidates.len());
    for cand in candidates {
        if cand.concurrent {
            chosen.push(cand);
            continue;
        }
        if !cand.task_free || taken.contains(&cand.task_id) {
            continue;
        }
        let won = c.execute(
            diesel::update(t::tasker_tasks)
                .filter(t::task_id.eq(cand.task_id))
                .filter(t::running_step_id.is_null())
                .set(t::running_step_id.eq(cand.workflow_step_id)),
        )?;
        if won == 1 {
            taken.insert(cand.task_id);
            chosen.push(cand);
        }
    }
    Ok(chosen)
}

#[derive(QueryableByName)]
struct Marked {
    #[diesel(sql_type = BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Bool)]
    retryable: bool,
    #[diesel(sql_type = Integer)]
    retry_limit: i32,
}

/// Marks the chosen steps `in_progress` under `owner`'s lease and counts the attempt.
/// `ready_at` stays: a step given back (released, or recovered from a dead worker) goes back
/// to its original place in the queue.
fn mark_claimed(
    c: &mut Conn<'_>,
    owner: &str,
    lease: Duration,
    chosen: &[Candidate],
) -> Result<Vec<Taken>> {
    let ids: Vec<i64> = chosen.iter().map(|cand| cand.workflow_step_id).collect();
    let sql = format!(
        "UPDATE tasker_workflow_steps SET state = '{in_progress}', attempts = attempts + 1, \
           lease_owner = $1, lease_expires_at = {expires}, last_attempted_at = {now}, \
           in_process = TRUE, updated_at = {now} \
         WHERE {ids} \
         RETURNING workflow_step_id, task_id, name, attempts, retryable, retry_limit",
        in_progress = StepState::InProgress.as_str(),
        expires = c.now_plus_sql(lease.as_secs_f64()),
        now = c.now_sql(),
        ids = c.in_ids("workflow_step_id", 2),
    );
    let rows: Vec<Marked> = c.load_sql(&sql, &[Bind::Text(owner), Bind::Ids(&ids)])?;
    let chosen: HashMap<i64, &Candidate> = chosen.iter().map(|c| (c.workflow_step_id, c)).collect();
    rows.into_iter()
        .map(|row| {
            let step_id = row.workflow_step_id;
            let cand = chosen.get(&step_id).ok_or(Error::StepNotFound(step_id))?;
            Ok(Taken {
                from: Cell::new("tasker_workflow_steps", step_id, "state").state(&cand.state)?,
                concurrent: cand.concurrent,
                step_id,
                task_id: row.task_id,
                name: row.name,
                attempt: row.attempts,
                retryable: row.retryable,
                retry_limit: row.retry_limit,
            })
        })
        .collect()
}

/// `pending → in_progress` for each taken step, through `error → pending` for a retry.
fn claim_transitions(owner: &str, taken: &[Taken]) -> Result<Vec<StepTransition>> {
    let mut transitions = Vec::with_capacity(taken.len() + 4);
    for t in taken {
        let step = (t.task_id, t.step_id, t.name.as_str());
        transitions.extend(claimed_path(step, t.from, t.attempt, owner)?);
    }
    Ok(transitions)
}

/// A step's transitions when `owner` claims it from `from` for `attempt`.
fn claimed_path(
    step: (i64, i64, &str),
    from: StepState,
    attempt: i32,
    owner: &str,
) -> Result<Vec<StepTransition>> {
    let metadata = Metadata::Claimed {
        attempt,
        worker: owner.to_owned(),
    };
    StepTransition::path(step, from, StepState::InProgress, metadata)
}

#[derive(QueryableByName)]
struct TaskId {
    #[diesel(sql_type = BigInt)]
    task_id: i64,
}

/// Moves the taken steps' tasks that had not started to `in_progress`.
fn start_tasks(c: &mut Conn<'_>, taken: &[Taken]) -> Result<Vec<EventRecord>> {
    let task_ids: Vec<i64> = task_ids(taken);
    let sql = format!(
        "UPDATE tasker_tasks SET state = '{in_progress}', updated_at = {now} \
         WHERE {ids} AND state = '{pending}' RETURNING task_id",
        in_progress = TaskState::InProgress.as_str(),
        pending = TaskState::Pending.as_str(),
        now = c.now_sql(),
        ids = c.in_ids("task_id", 1),
    );
    let started: Vec<TaskId> = c.load_sql(&sql, &[Bind::Ids(&task_ids)])?;
    let transitions = started
        .into_iter()
        .map(|t| TaskTransition::new(t.task_id, TaskState::Pending, TaskState::InProgress))
        .collect::<Result<Vec<_>>>()?;
    record_tasks(c, transitions)
}

/// The taken steps' tasks, each once.
fn task_ids(taken: &[Taken]) -> Vec<i64> {
    let ids: BTreeSet<i64> = taken.iter().map(|t| t.task_id).collect();
    ids.into_iter().collect()
}

/// What a claimed step needs of its task.
#[derive(Clone, QueryableByName)]
struct TaskContext {
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = BigInt)]
    named_task_id: i64,
    #[diesel(sql_type = Text)]
    context: String,
    #[diesel(sql_type = Nullable<Text>)]
    correlation_id: Option<String>,
}

/// Each taken step's task, by id.
fn task_contexts(c: &mut Conn<'_>, taken: &[Taken]) -> Result<HashMap<i64, TaskContext>> {
    let sql = format!(
        "SELECT task_id, named_task_id, context, correlation_id FROM tasker_tasks WHERE {ids}",
        ids = c.in_ids("task_id", 1),
    );
    let rows: Vec<TaskContext> = c.load_sql(&sql, &[Bind::Ids(&task_ids(taken))])?;
    Ok(rows.into_iter().map(|row| (row.task_id, row)).collect())
}

#[derive(QueryableByName)]
struct Parent {
    #[diesel(sql_type = BigInt)]
    to_step_id: i64,
    #[diesel(sql_type = BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    results: Option<String>,
}

/// The results of the parents of each step, keyed by child id.
fn parent_results(c: &mut Conn<'_>, step_ids: &[i64]) -> Result<HashMap<i64, Vec<ParentOutput>>> {
    let sql = format!(
        "SELECT e.to_step_id, s.workflow_step_id, s.name, s.results \
         FROM tasker_workflow_step_edges e \
         JOIN tasker_workflow_steps s ON s.workflow_step_id = e.from_step_id \
         WHERE {children}",
        children = c.in_ids("e.to_step_id", 1),
    );
    let rows: Vec<Parent> = c.load_sql(&sql, &[Bind::Ids(step_ids)])?;
    let mut out: HashMap<i64, Vec<ParentOutput>> = HashMap::new();
    for row in rows {
        out.entry(row.to_step_id).or_default().push(ParentOutput {
            step_id: row.workflow_step_id,
            name: row.name,
            results: row.results,
        });
    }
    Ok(out)
}
