//! Leases (heartbeat, expiry, release) and operators' actions: cancel, retry, resolve, update.

use std::collections::HashSet;
use std::time::Duration;

use diesel::prelude::*;

use super::Conn;
use super::complete::{decrement_children, finalize_tasks, release_serial};
use super::rows::Cell;
use super::schema::*;
use super::transitions::{record_steps, record_tasks};
use crate::error::{Error, Result};
use crate::model::{EventRecord, Metadata, StepTransition, TaskTransition};
use crate::state::{StepState, TaskState};

const STEPS: &str = "tasker_workflow_steps";

/// Extends the leases of the given steps while `owner` still holds them; returns the steps it
/// extended.
pub(crate) fn heartbeat(
    c: &mut Conn<'_>,
    owner: &str,
    step_ids: &[i64],
    lease: Duration,
) -> Result<HashSet<i64>> {
    use tasker_workflow_steps::dsl as s;
    let expires = c.now_plus(lease.as_secs_f64());
    let extended: Vec<i64> = c.load(
        diesel::update(s::tasker_workflow_steps)
            .filter(s::workflow_step_id.eq_any(step_ids))
            .filter(s::lease_owner.eq(owner))
            .filter(s::state.eq(StepState::InProgress.as_str()))
            .set(s::lease_expires_at.eq(expires))
            .returning(s::workflow_step_id),
    )?;
    Ok(extended.into_iter().collect())
}

/// An in-progress step whose lease expired, as the sweeper recovers it.
#[derive(Debug, Clone)]
pub(crate) struct ExpiredStep {
    pub(crate) step_id: i64,
    pub(crate) task_id: i64,
    pub(crate) name: String,
    pub(crate) attempts: i32,
    pub(crate) owner: String,
    pub(crate) retryable: bool,
    pub(crate) retry_limit: i32,
    pub(crate) concurrent: bool,
}

#[derive(Queryable)]
struct ExpiredRow {
    step_id: i64,
    task_id: i64,
    name: String,
    attempts: i32,
    owner: Option<String>,
    retryable: bool,
    retry_limit: i32,
    concurrent: bool,
}

/// Up to `limit` steps whose lease has expired, oldest expiry first.
pub(crate) fn expired_leases(c: &mut Conn<'_>, limit: usize) -> Result<Vec<ExpiredStep>> {
    use tasker_tasks::dsl as t;
    use tasker_workflow_steps::dsl as s;
    let now = c.now_plus(0.0);
    let rows: Vec<ExpiredRow> = c.load(
        s::tasker_workflow_steps
            .inner_join(t::tasker_tasks)
            .filter(s::state.eq(StepState::InProgress.as_str()))
            .filter(s::lease_expires_at.lt(now))
            .order(s::lease_expires_at.asc())
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .select((
                s::workflow_step_id,
                s::task_id,
                s::name,
                s::attempts,
                s::lease_owner,
                s::retryable,
                s::retry_limit,
                t::concurrent,
            )),
    )?;
    rows.into_iter()
        .map(|row| {
            let owner = row.owner.ok_or_else(|| Error::CorruptData {
                table: STEPS,
                id: row.step_id,
                column: "lease_owner",
                problem: "the step is in progress under a lease without an owner".to_owned(),
            })?;
            Ok(ExpiredStep {
                step_id: row.step_id,
                task_id: row.task_id,
                name: row.name,
                attempts: row.attempts,
                owner,
                retryable: row.retryable,
                retry_limit: row.retry_limit,
                concurrent: row.concurrent,
            })
        })
        .collect()
}

/// Gives back steps `owner` claimed but will not run (shutdown): they become ready again at
/// once, in their old place in the queue, and the attempt is not counted.
pub(crate) fn release(c: &mut Conn<'_>, owner: &str, step_ids: &[i64]) -> Result<Vec<EventRecord>> {
    use tasker_workflow_steps::dsl as s;
    if step_ids.is_empty() {
        return Ok(Vec::new());
    }
    c.write(|c| {
        let (ready_at, now) = (c.ready_at_kept(), c.now());
        let released: Vec<(i64, i64, String)> = c.load(
            diesel::update(s::tasker_workflow_steps)
                .filter(s::workflow_step_id.eq_any(step_ids))
                .filter(s::lease_owner.eq(owner))
                .filter(s::state.eq(StepState::InProgress.as_str()))
                .set((
                    s::state.eq(StepState::Error.as_str()),
                    s::attempts.eq(s::attempts - 1),
                    s::ready_at.eq(ready_at),
                    s::in_process.eq(false),
                    s::lease_owner.eq(None::<String>),
                    s::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
                    s::updated_at.eq(now),
                ))
                .returning((s::workflow_step_id, s::task_id, s::name)),
        )?;
        let transitions = released
            .iter()
            .map(|(id, task_id, name)| {
                let metadata = Metadata::Released {
                    worker: owner.to_owned(),
                };
                let step = (*task_id, *id, name.as_str());
                StepTransition::new(step, StepState::InProgress, StepState::Error, metadata)
            })
            .collect::<Result<Vec<_>>>()?;
        let events = record_steps(c, transitions)?;
        let ids: Vec<i64> = released.iter().map(|r| r.0).collect();
        release_serial(c, &ids)?;
        c.notify_ready()?;
        Ok(events)
    })
}

/// The current state of a task.
fn task_state(c: &mut Conn<'_>, task_id: i64) -> Result<TaskState> {
    use tasker_tasks::dsl as t;
    let state: String = c
        .get_result(
            t::tasker_tasks
                .filter(t::task_id.eq(task_id))
                .select(t::state),
        )
        .optional()?
        .ok_or(Error::TaskNotFound(task_id))?;
    Cell::new("tasker_tasks", task_id, "state").state(&state)
}

/// Moves a task to `to` (checked), with its row's `state`.
fn move_task(
    c: &mut Conn<'_>,
    task_id: i64,
    from: TaskState,
    to: TaskState,
) -> Result<Vec<EventRecord>> {
    move_task_with(c, task_id, from, to, Metadata::None)
}

/// [`move_task`], recording `metadata` with the transition.
fn move_task_with(
    c: &mut Conn<'_>,
    task_id: i64,
    from: TaskState,
    to: TaskState,
    metadata: Metadata,
) -> Result<Vec<EventRecord>> {
    use tasker_tasks::dsl as t;
    let transition = TaskTransition::new(task_id, from, to)?.with(metadata);
    let now = c.now();
    let target = t::tasker_tasks.filter(t::task_id.eq(task_id));
    if matches!(to, TaskState::Cancelled | TaskState::Error) {
        c.execute(diesel::update(target).set((
            t::state.eq(to.as_str()),
            t::running_step_id.eq(None::<i64>),
            t::updated_at.eq(now),
        )))?;
    } else {
        c.execute(diesel::update(target).set((t::state.eq(to.as_str()), t::updated_at.eq(now))))?;
    }
    record_tasks(c, vec![transition])
}

/// Cancels a task and its unfinished steps.
pub(crate) fn cancel_task(c: &mut Conn<'_>, task_id: i64) -> Result<Vec<EventRecord>> {
    c.write(|c| {
        let current = task_state(c, task_id)?;
        if current == TaskState::Cancelled {
            return Ok(Vec::new());
        }
        let open = open_steps(c, task_id)?;
        let mut events = move_task(c, task_id, current, TaskState::Cancelled)?;
        events.extend(cancel_open_steps(c, task_id, &open, Metadata::None)?);
        Ok(events)
    })
}

/// Ends task `task_id` in `error` because its deadline passed, cancelling its open steps (a
/// running attempt's late result is then refused), all recorded with `deadline_exceeded`.
/// Does nothing when the task is no longer open or its deadline has moved.
pub(crate) fn expire_task(c: &mut Conn<'_>, task_id: i64) -> Result<Vec<EventRecord>> {
    use tasker_tasks::dsl as t;
    c.write(|c| {
        let current = task_state(c, task_id)?;
        let now = c.now();
        let overdue: i64 = c.get_result(
            t::tasker_tasks
                .filter(t::task_id.eq(task_id))
                .filter(t::deadline_at.le(now.nullable()))
                .count(),
        )?;
        if overdue == 0 || !matches!(current, TaskState::Pending | TaskState::InProgress) {
            return Ok(Vec::new());
        }
        let open = open_steps(c, task_id)?;
        let mut events = cancel_open_steps(c, task_id, &open, Metadata::DeadlineExceeded)?;
        events.extend(move_task_with(
            c,
            task_id,
            current,
            TaskState::Error,
            Metadata::DeadlineExceeded,
        )?);
        Ok(events)
    })
}

/// Up to `limit` open tasks whose deadline has passed.
pub(crate) fn overdue_tasks(c: &mut Conn<'_>, limit: usize) -> Result<Vec<i64>> {
    use tasker_tasks::dsl as t;
    let now = c.now();
    Ok(c.load(
        t::tasker_tasks
            .filter(t::deadline_at.le(now.nullable()))
            // Literal states, so PostgreSQL sees the partial index's predicate in the query.
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "state IN ('pending', 'in_progress')",
            ))
            .order(t::deadline_at.asc())
            .select(t::task_id)
            .limit(i64::try_from(limit).unwrap_or(i64::MAX)),
    )?)
}

/// The steps of `task_id` not in a terminal state (id, name, state). Every step's state is
/// read (not filtered in SQL), so one that cannot be read stops the caller instead of being
/// left behind.
fn open_steps(c: &mut Conn<'_>, task_id: i64) -> Result<Vec<(i64, String, StepState)>> {
    use tasker_workflow_steps::dsl as s;
    let steps: Vec<(i64, String, String)> = c.load(
        s::tasker_workflow_steps
            .filter(s::task_id.eq(task_id))
            .select((s::workflow_step_id, s::name, s::state)),
    )?;
    let mut open = Vec::with_capacity(steps.len());
    for (id, name, state) in steps {
        let state: StepState = Cell::new(STEPS, id, "state").state(&state)?;
        if !state.is_terminal() {
            open.push((id, name, state));
        }
    }
    Ok(open)
}

/// Cancels `open` steps (id, name, state) of `task_id`: one update, and a transition and event
/// each (an errored step through `pending`; see [`StepTransition::path`]).
fn cancel_open_steps(
    c: &mut Conn<'_>,
    task_id: i64,
    open: &[(i64, String, StepState)],
    metadata: Metadata,
) -> Result<Vec<EventRecord>> {
    use tasker_workflow_steps::dsl as s;
    let mut transitions = Vec::with_capacity(open.len());
    for (id, name, from) in open {
        let step = (task_id, *id, name.as_str());
        let path = StepTransition::path(step, *from, StepState::Cancelled, metadata.clone())?;
        transitions.extend(path);
    }
    let ids: Vec<i64> = open.iter().map(|r| r.0).collect();
    let now = c.now();
    c.execute(
        diesel::update(s::tasker_workflow_steps.filter(s::workflow_step_id.eq_any(&ids))).set((
            s::state.eq(StepState::Cancelled.as_str()),
            s::ready_at.eq(None::<chrono::NaiveDateTime>),
            s::in_process.eq(false),
            s::lease_owner.eq(None::<String>),
            s::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
            s::updated_at.eq(now),
        )),
    )?;
    record_steps(c, transitions)
}

/// Puts a task in `error` back to `pending` and re-arms its failed steps with a fresh retry
/// budget.
pub(crate) fn retry_task(c: &mut Conn<'_>, task_id: i64) -> Result<Vec<EventRecord>> {
    use tasker_workflow_steps::dsl as s;
    c.write(|c| {
        let current = task_state(c, task_id)?;
        if current != TaskState::Error {
            return Err(Error::TaskTransitionRefused {
                task_id,
                from: current,
                to: TaskState::Pending,
            });
        }
        let failed: Vec<(i64, String, i32, i32)> = c.load(
            s::tasker_workflow_steps
                .filter(s::task_id.eq(task_id))
                .filter(s::state.eq(StepState::Error.as_str()))
                .select((s::workflow_step_id, s::name, s::attempts, s::retry_limit)),
        )?;
        let mut transitions = Vec::with_capacity(failed.len());
        for (id, name, attempts, limit) in &failed {
            // The attempt counter stays monotonic (it is the fencing token), so a fresh budget
            // raises the limit instead of resetting the count.
            let retry_limit = attempts + (*limit).max(1);
            let (ready_at, now) = (c.now_plus(0.0), c.now());
            c.execute(
                diesel::update(s::tasker_workflow_steps.filter(s::workflow_step_id.eq(id))).set((
                    s::state.eq(StepState::Pending.as_str()),
                    s::retry_limit.eq(retry_limit),
                    s::ready_at.eq(ready_at),
                    s::updated_at.eq(now),
                )),
            )?;
            let metadata = Metadata::TaskRetry { retry_limit };
            let step = (task_id, *id, name.as_str());
            transitions.push(StepTransition::new(
                step,
                StepState::Error,
                StepState::Pending,
                metadata,
            )?);
        }
        // The task's event first, as operators read it: the task was retried, then its steps.
        let task_transition = TaskTransition::new(task_id, current, TaskState::Pending)?;
        let mut events = record_steps(c, transitions)?;
        let now = c.now();
        c.execute(
            diesel::update(tasker_tasks::table.filter(tasker_tasks::task_id.eq(task_id))).set((
                tasker_tasks::state.eq(TaskState::Pending.as_str()),
                tasker_tasks::updated_at.eq(now),
            )),
        )?;
        let mut task_events = record_tasks(c, vec![task_transition])?;
        task_events.append(&mut events);
        c.notify_ready()?;
        Ok(task_events)
    })
}

/// The task, name and state of a step (which must belong to `task_id`, when given).
fn step_state(
    c: &mut Conn<'_>,
    step_id: i64,
    task_id: Option<i64>,
) -> Result<(i64, String, StepState)> {
    use tasker_workflow_steps::dsl as s;
    let (task, name, state): (i64, String, String) = c
        .get_result(
            s::tasker_workflow_steps
                .filter(s::workflow_step_id.eq(step_id))
                .select((s::task_id, s::name, s::state)),
        )
        .optional()?
        .filter(|(task, _, _)| task_id.is_none_or(|id| id == *task))
        .ok_or(Error::StepNotFound(step_id))?;
    let state = Cell::new(STEPS, step_id, "state").state(&state)?;
    Ok((task, name, state))
}

/// Cancels one step of `task_id` for good: its dependents never run and its task, unless
/// cancelled itself, goes to `error` (a cancelled step blocks it as a failure would). A running
/// attempt's late result is rejected by fencing. Returns no events when already cancelled.
pub(crate) fn cancel_step(
    c: &mut Conn<'_>,
    task_id: i64,
    step_id: i64,
) -> Result<Vec<EventRecord>> {
    c.write(|c| {
        let (_, name, from) = step_state(c, step_id, Some(task_id))?;
        if from == StepState::Cancelled {
            return Ok(Vec::new());
        }
        // A finished step cannot be cancelled: the transition is refused before anything is
        // written.
        let mut events = cancel_open_steps(c, task_id, &[(step_id, name, from)], Metadata::None)?;
        release_serial(c, &[step_id])?;
        events.extend(finalize_tasks(c, &[task_id])?);
        Ok(events)
    })
}

/// Marks a pending or failed step as resolved by an operator, optionally with its result; its
/// children may then run and the task may complete.
pub(crate) fn resolve_step(
    c: &mut Conn<'_>,
    step_id: i64,
    results: Option<&str>,
) -> Result<Vec<EventRecord>> {
    use tasker_workflow_steps::dsl as s;
    c.write(|c| {
        let (task_id, name, from) = step_state(c, step_id, None)?;
        if from == StepState::ResolvedManually {
            return Ok(Vec::new());
        }
        let transition = StepTransition::new(
            (task_id, step_id, &name),
            from,
            StepState::ResolvedManually,
            Metadata::None,
        )?;
        let task = task_state(c, task_id)?;
        if task == TaskState::Cancelled {
            return Err(Error::TaskTransitionRefused {
                task_id,
                from: task,
                to: TaskState::InProgress,
            });
        }
        let (processed_at, now) = (c.now_plus(0.0), c.now());
        c.execute(
            diesel::update(s::tasker_workflow_steps.filter(s::workflow_step_id.eq(step_id))).set((
                s::state.eq(StepState::ResolvedManually.as_str()),
                s::results.eq(results),
                s::ready_at.eq(None::<chrono::NaiveDateTime>),
                s::processed.eq(true),
                s::processed_at.eq(processed_at),
                s::updated_at.eq(now),
            )),
        )?;
        let mut events = record_steps(c, vec![transition])?;
        decrement_children(c, &[step_id])?;
        events.extend(finalize_tasks(c, &[task_id])?);
        c.notify_ready()?;
        Ok(events)
    })
}

/// Changes a task's reason and tags (the only fields an update may change); `false` when there
/// is no such task.
pub(crate) fn update_task(
    c: &mut Conn<'_>,
    task_id: i64,
    reason: Option<&str>,
    tags: Option<&str>,
) -> Result<bool> {
    use tasker_tasks::dsl as t;
    let target = t::tasker_tasks.filter(t::task_id.eq(task_id));
    let now = c.now();
    let updated = match (reason, tags) {
        (Some(reason), Some(tags)) => c.execute(diesel::update(target).set((
            t::reason.eq(reason),
            t::tags.eq(tags),
            t::updated_at.eq(now),
        )))?,
        (Some(reason), None) => {
            c.execute(diesel::update(target).set((t::reason.eq(reason), t::updated_at.eq(now))))?
        }
        (None, Some(tags)) => {
            c.execute(diesel::update(target).set((t::tags.eq(tags), t::updated_at.eq(now))))?
        }
        (None, None) => usize::try_from(c.get_result::<i64, _>(target.count())?).unwrap_or(0),
    };
    Ok(updated > 0)
}

/// Sets the retry limit of a step of `task_id` and/or resolves it by hand (`resolve`: with
/// its optional result), all or nothing.
#[cfg(feature = "server")]
pub(crate) fn update_step(
    c: &mut Conn<'_>,
    task_id: i64,
    step_id: i64,
    retry_limit: Option<i32>,
    resolve: Option<Option<&str>>,
) -> Result<Vec<EventRecord>> {
    c.write(|c| {
        step_state(c, step_id, Some(task_id))?;
        if let Some(limit) = retry_limit {
            set_retry_limit(c, task_id, step_id, limit)?;
        }
        match resolve {
            Some(results) => resolve_step(c, step_id, results),
            None => Ok(Vec::new()),
        }
    })
}

/// Sets a step's retry limit; `false` when there is no such step in the task.
pub(crate) fn set_retry_limit(
    c: &mut Conn<'_>,
    task_id: i64,
    step_id: i64,
    limit: i32,
) -> Result<bool> {
    use tasker_workflow_steps::dsl as s;
    let now = c.now();
    let updated = c.execute(
        diesel::update(
            s::tasker_workflow_steps
                .filter(s::workflow_step_id.eq(step_id))
                .filter(s::task_id.eq(task_id)),
        )
        .set((s::retry_limit.eq(limit), s::updated_at.eq(now))),
    )?;
    Ok(updated > 0)
}

/// Records worker `id` as alive now, running `running` of `concurrency` steps, and forgets
/// workers not seen for a day (stopped without saying so).
pub(crate) fn worker_seen(
    c: &mut Conn<'_>,
    id: &str,
    concurrency: i32,
    running: i32,
) -> Result<()> {
    use tasker_workers::dsl as w;
    c.write(|c| {
        let now = c.now();
        c.execute(
            diesel::insert_into(w::tasker_workers)
                .values((
                    w::worker_id.eq(id),
                    w::concurrency.eq(concurrency),
                    w::running.eq(running),
                ))
                .on_conflict(w::worker_id)
                .do_update()
                .set((
                    w::concurrency.eq(concurrency),
                    w::running.eq(running),
                    w::last_seen_at.eq(now),
                )),
        )?;
        let day_ago = diesel::dsl::sql::<diesel::sql_types::Timestamp>(&c.now_plus_sql(-86_400.0));
        c.execute(diesel::delete(
            w::tasker_workers.filter(w::last_seen_at.lt(day_ago)),
        ))?;
        Ok(())
    })
}

/// Forgets worker `id` (it stopped).
pub(crate) fn worker_stopped(c: &mut Conn<'_>, id: &str) -> Result<()> {
    use tasker_workers::dsl as w;
    c.execute(diesel::delete(
        w::tasker_workers.filter(w::worker_id.eq(id)),
    ))?;
    Ok(())
}
