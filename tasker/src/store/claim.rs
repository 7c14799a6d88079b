//! Claiming ready steps for a worker.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};

use super::Conn;
use super::conn::id_list;
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
           AND t.named_task_id IN ({ids}) \
         ORDER BY s.priority DESC, s.ready_at, s.workflow_step_id \
         LIMIT {limit} {lock}",
        pending = StepState::Pending.as_str(),
        error = StepState::Error.as_str(),
        now = c.now_sql(),
        ids = id_list(named_task_ids),
        lock = c.claim_lock(),
    );
    Ok(c.load_sql(&sql, &[])?)
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

/// Marks the chosen steps `in_progress` under `owner`'s lease and counts the attempt.
fn mark_claimed(
    c: &mut Conn<'_>,
    owner: &str,
    lease: Duration,
    chosen: &[Candidate],
) -> Result<Vec<Taken>> {
    use tasker_workflow_steps::dsl as s;
    let ids: Vec<i64> = chosen.iter().map(|cand| cand.workflow_step_id).collect();
    let (now, expires, started) = (c.now(), c.now_plus(lease.as_secs_f64()), c.now_plus(0.0));
    let rows: Vec<(i64, i64, String, i32, bool, i32)> = c.load(
        diesel::update(s::tasker_workflow_steps)
            .filter(s::workflow_step_id.eq_any(&ids))
            .set((
                s::state.eq(StepState::InProgress.as_str()),
                s::attempts.eq(s::attempts + 1),
                s::lease_owner.eq(owner),
                s::lease_expires_at.eq(expires),
                s::last_attempted_at.eq(started),
                s::in_process.eq(true),
                // `ready_at` stays: a step given back (released, or recovered from a dead
                // worker) goes back to its original place in the queue.
                s::updated_at.eq(now),
            ))
            .returning((
                s::workflow_step_id,
                s::task_id,
                s::name,
                s::attempts,
                s::retryable,
                s::retry_limit,
            )),
    )?;
    let chosen: HashMap<i64, &Candidate> = chosen.iter().map(|c| (c.workflow_step_id, c)).collect();
    rows.into_iter()
        .map(
            |(step_id, task_id, name, attempt, retryable, retry_limit)| {
                let cand = chosen.get(&step_id).ok_or(Error::StepNotFound(step_id))?;
                Ok(Taken {
                    from: Cell::new("tasker_workflow_steps", step_id, "state")
                        .state(&cand.state)?,
                    concurrent: cand.concurrent,
                    step_id,
                    task_id,
                    name,
                    attempt,
                    retryable,
                    retry_limit,
                })
            },
        )
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

/// Moves the taken steps' tasks that had not started to `in_progress`.
fn start_tasks(c: &mut Conn<'_>, taken: &[Taken]) -> Result<Vec<EventRecord>> {
    use tasker_tasks::dsl as t;
    let task_ids: BTreeSet<i64> = taken.iter().map(|t| t.task_id).collect();
    let now = c.now();
    let started: Vec<i64> = c.load(
        diesel::update(t::tasker_tasks)
            .filter(t::task_id.eq_any(task_ids))
            .filter(t::state.eq(TaskState::Pending.as_str()))
            .set((
                t::state.eq(TaskState::InProgress.as_str()),
                t::updated_at.eq(now),
            ))
            .returning(t::task_id),
    )?;
    let transitions = started
        .into_iter()
        .map(|id| TaskTransition::new(id, TaskState::Pending, TaskState::InProgress))
        .collect::<Result<Vec<_>>>()?;
    record_tasks(c, transitions)
}

/// What a claimed step needs of its task.
#[derive(Clone, Queryable)]
struct TaskContext {
    task_id: i64,
    named_task_id: i64,
    context: String,
    correlation_id: Option<String>,
}

/// Each taken step's task, by id.
fn task_contexts(c: &mut Conn<'_>, taken: &[Taken]) -> Result<HashMap<i64, TaskContext>> {
    use tasker_tasks::dsl as t;
    let task_ids: BTreeSet<i64> = taken.iter().map(|t| t.task_id).collect();
    let rows: Vec<TaskContext> =
        c.load(t::tasker_tasks.filter(t::task_id.eq_any(task_ids)).select((
            t::task_id,
            t::named_task_id,
            t::context,
            t::correlation_id,
        )))?;
    Ok(rows.into_iter().map(|row| (row.task_id, row)).collect())
}

/// The results of the parents of each step, keyed by child id.
fn parent_results(c: &mut Conn<'_>, step_ids: &[i64]) -> Result<HashMap<i64, Vec<ParentOutput>>> {
    use tasker_workflow_step_edges::dsl as e;
    use tasker_workflow_steps::dsl as s;
    let rows: Vec<(i64, i64, String, Option<String>)> = c.load(
        e::tasker_workflow_step_edges
            .inner_join(s::tasker_workflow_steps.on(s::workflow_step_id.eq(e::from_step_id)))
            .filter(e::to_step_id.eq_any(step_ids))
            .select((e::to_step_id, s::workflow_step_id, s::name, s::results)),
    )?;
    let mut out: HashMap<i64, Vec<ParentOutput>> = HashMap::new();
    for (child, step_id, name, results) in rows {
        out.entry(child).or_default().push(ParentOutput {
            step_id,
            name,
            results,
        });
    }
    Ok(out)
}
