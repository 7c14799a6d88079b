//! Recording attempt outcomes, releasing dependents, and finalizing tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use super::Conn;
use super::conn::Bind;
use super::rows::Cell;
use super::schema::*;
use super::transitions::{record_steps, record_tasks};
use crate::error::Result;
use crate::model::{
    CompletionOutcome, EventRecord, Failure, FailureReason, Metadata, Outcome, StepTransition,
    TaskTransition,
};
use crate::state::{StepState, TaskState};

#[cfg(feature = "postgres")]
mod postgres;

/// Records the outcomes of finished attempts in one transaction, fenced on
/// (`lease_owner`, `attempts`): an outcome whose attempt no longer owns the step is rejected.
///
/// Steps made ready are announced to other processes (`NOTIFY`) only when there are more of
/// them than `takes_locally`, the number the caller's own worker is about to claim: a worker
/// that completes a step usually runs its children itself, and waking every other process for
/// them makes each run an empty claim. Polling still finds anything left.
pub(crate) fn complete(
    c: &mut Conn<'_>,
    outcomes: &[Outcome],
    takes_locally: usize,
) -> Result<(Vec<CompletionOutcome>, Vec<EventRecord>)> {
    if outcomes.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // Failures are rare and each writes its own backoff: they take the general path.
    #[cfg(feature = "postgres")]
    if let Conn::Postgres(pg) = c
        && outcomes.iter().all(|o| o.result.is_ok())
    {
        return postgres::complete_successes(pg, outcomes, takes_locally);
    }
    c.write(|c| {
        let accepted = record_successes(c, outcomes)?;
        let mut results = Vec::with_capacity(outcomes.len());
        let mut transitions = Vec::with_capacity(outcomes.len());
        let (mut succeeded, mut serial, mut tasks) = (Vec::new(), Vec::new(), BTreeSet::new());
        // Whether a failure made its step ready again at once, which other workers must hear.
        let mut ready_now = false;
        for o in outcomes {
            let recorded = match &o.result {
                Ok(_) => accepted.contains(&(o.step_id, o.attempt)),
                Err(failure) => record_failure(c, o, failure)?,
            };
            if !recorded {
                results.push(CompletionOutcome::Stale);
                continue;
            }
            results.push(CompletionOutcome::Recorded);
            tasks.insert(o.task_id);
            if !o.concurrent {
                serial.push(o.step_id);
            }
            let step = (o.task_id, o.step_id, o.name.as_str());
            let (to, metadata) = match &o.result {
                Ok(_) => {
                    succeeded.push(o.step_id);
                    let metadata = Metadata::Completed {
                        attempt: o.attempt,
                        duration_ms: o.duration_ms,
                    };
                    (StepState::Complete, metadata)
                }
                Err(failure) => {
                    ready_now |= failure.retry_in.is_some_and(|d| d.is_zero());
                    let metadata = Metadata::failed(o.attempt, failure, o.duration_ms);
                    (StepState::Error, metadata)
                }
            };
            transitions.push(StepTransition::new(
                step,
                StepState::InProgress,
                to,
                metadata,
            )?);
        }
        let mut events = record_steps(c, transitions)?;
        release_serial(c, &serial)?;
        let became_ready = decrement_children(c, &succeeded)?;
        if became_ready > takes_locally || ready_now {
            c.notify_ready()?;
        }
        let tasks: Vec<i64> = tasks.into_iter().collect();
        events.extend(finalize_tasks(c, &tasks)?);
        Ok((results, events))
    })
}

#[derive(QueryableByName)]
struct StepAttempt {
    #[diesel(sql_type = BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

/// Records every successful outcome of a batch in one statement, fenced per step on
/// (`lease_owner`, `attempts`); returns the (step, attempt) pairs it recorded. The outcomes
/// are bound as one JSON value, so the statement's text is the same for every batch.
fn record_successes(c: &mut Conn<'_>, outcomes: &[Outcome]) -> Result<HashSet<(i64, i32)>> {
    let rows: Vec<serde_json::Value> = outcomes
        .iter()
        .filter_map(|o| {
            let json = o.result.as_ref().ok()?;
            Some(serde_json::json!([o.step_id, o.owner, o.attempt, json]))
        })
        .collect();
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = serde_json::Value::Array(rows).to_string();
    let sql = format!(
        "WITH v AS ({source}) \
         UPDATE tasker_workflow_steps SET state = '{complete}', results = v.results, \
           processed = TRUE, processed_at = {now}, in_process = FALSE, lease_owner = NULL, \
           lease_expires_at = NULL, ready_at = NULL, updated_at = {now} \
         FROM v WHERE tasker_workflow_steps.workflow_step_id = v.id \
           AND tasker_workflow_steps.lease_owner = v.owner \
           AND tasker_workflow_steps.attempts = v.attempt \
           AND tasker_workflow_steps.state = '{in_progress}' \
         RETURNING tasker_workflow_steps.workflow_step_id, tasker_workflow_steps.attempts",
        source = c.json_rows(
            1,
            &[
                ("id", "bigint"),
                ("owner", "text"),
                ("attempt", "integer"),
                ("results", "text")
            ]
        ),
        complete = StepState::Complete.as_str(),
        in_progress = StepState::InProgress.as_str(),
        now = c.now_sql(),
    );
    let recorded: Vec<StepAttempt> = c.load_sql(&sql, &[Bind::Text(&rows)])?;
    Ok(recorded
        .into_iter()
        .map(|r| (r.workflow_step_id, r.attempts))
        .collect())
}

/// Records a failed attempt, fenced on (`lease_owner`, `attempts`); `false` when the attempt no
/// longer owns the step.
fn record_failure(c: &mut Conn<'_>, o: &Outcome, failure: &Failure) -> Result<bool> {
    use tasker_workflow_steps::dsl as s;
    let ready_at = match failure.retry_in {
        // A step recovered from a dead worker keeps its place in the queue (its `ready_at`,
        // kept through the claim) instead of going behind newer work.
        Some(delay) if delay.is_zero() && failure.reason == FailureReason::LeaseExpired => {
            c.ready_at_kept()
        }
        Some(delay) => c.now_plus(delay.as_secs_f64()),
        None => diesel::dsl::sql("NULL"),
    };
    let backoff = failure
        .retry_in
        .map(|d| i32::try_from(d.as_secs_f64().ceil() as i64).unwrap_or(i32::MAX));
    let now = c.now();
    let updated = c.execute(
        diesel::update(s::tasker_workflow_steps)
            .filter(s::workflow_step_id.eq(o.step_id))
            .filter(s::state.eq(StepState::InProgress.as_str()))
            .filter(s::lease_owner.eq(&o.owner))
            .filter(s::attempts.eq(o.attempt))
            .set((
                s::state.eq(StepState::Error.as_str()),
                s::results.eq(&failure.error_json),
                s::ready_at.eq(ready_at),
                s::backoff_request_seconds.eq(backoff),
                s::in_process.eq(false),
                s::lease_owner.eq(None::<String>),
                s::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
                s::updated_at.eq(now),
            )),
    )?;
    Ok(updated > 0)
}

/// Frees the `concurrent: false` tasks whose running step was one of `step_ids`.
pub(crate) fn release_serial(c: &mut Conn<'_>, step_ids: &[i64]) -> Result<()> {
    if !step_ids.is_empty() {
        let sql = format!(
            "UPDATE tasker_tasks SET running_step_id = NULL WHERE {ids}",
            ids = c.in_ids("running_step_id", 1),
        );
        c.execute_sql(&sql, &[Bind::Ids(step_ids)])?;
    }
    Ok(())
}

/// Counts one satisfied parent for each child of `parents`; children whose last parent this was
/// become ready now. Returns how many children became ready.
pub(crate) fn decrement_children(c: &mut Conn<'_>, parents: &[i64]) -> Result<usize> {
    if parents.is_empty() {
        return Ok(0);
    }
    let now = c.now_sql();
    let children = c.in_ids("from_step_id", 1);
    // Counting edges (not children) handles two parents of one child finishing together.
    c.execute_sql(
        &format!(
            "UPDATE tasker_workflow_steps SET remaining_parents = remaining_parents - \
               (SELECT COUNT(*) FROM tasker_workflow_step_edges e \
                 WHERE e.to_step_id = tasker_workflow_steps.workflow_step_id AND {parents}), \
               updated_at = {now} \
             WHERE workflow_step_id IN (SELECT to_step_id FROM tasker_workflow_step_edges WHERE {children})",
            parents = c.in_ids("e.from_step_id", 1),
            children = c.in_ids("from_step_id", 2),
        ),
        &[Bind::Ids(parents), Bind::Ids(parents)],
    )?;
    Ok(c.execute_sql(
        &format!(
            "UPDATE tasker_workflow_steps SET ready_at = {now} \
             WHERE remaining_parents = 0 AND state = '{pending}' AND ready_at IS NULL \
               AND workflow_step_id IN (SELECT to_step_id FROM tasker_workflow_step_edges WHERE {children})",
            pending = StepState::Pending.as_str(),
        ),
        &[Bind::Ids(parents)],
    )?)
}

#[derive(QueryableByName)]
struct TaskCounts {
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = BigInt)]
    done: i64,
    #[diesel(sql_type = BigInt)]
    running: i64,
    #[diesel(sql_type = BigInt)]
    runnable: i64,
    #[diesel(sql_type = BigInt)]
    failed: i64,
}

/// The seed's execution status, reduced to what finalization acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskStatus {
    Runnable,
    Processing,
    BlockedByFailures,
    AllComplete,
    Waiting,
}

impl TaskCounts {
    fn status(&self) -> TaskStatus {
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

/// The columns of [`TaskCounts`] but `task_id`, over steps named with `prefix` (`s.` or empty).
fn counts_columns(prefix: &str) -> String {
    use StepState::{Cancelled, Complete, Error, InProgress, Pending, ResolvedManually};
    format!(
        "COUNT(*) AS total, \
           SUM(CASE WHEN {p}state IN ('{complete}', '{resolved}') THEN 1 ELSE 0 END) AS done, \
           SUM(CASE WHEN {p}state = '{in_progress}' THEN 1 ELSE 0 END) AS running, \
           SUM(CASE WHEN {p}state IN ('{pending}', '{error}') AND {p}remaining_parents = 0 AND {p}ready_at IS NOT NULL THEN 1 ELSE 0 END) AS runnable, \
           SUM(CASE WHEN ({p}state = '{error}' AND {p}ready_at IS NULL) OR {p}state = '{cancelled}' THEN 1 ELSE 0 END) AS failed",
        p = prefix,
        complete = Complete.as_str(),
        resolved = ResolvedManually.as_str(),
        in_progress = InProgress.as_str(),
        pending = Pending.as_str(),
        error = Error.as_str(),
        cancelled = Cancelled.as_str(),
    )
}

fn task_counts(c: &mut Conn<'_>, task_ids: &[i64]) -> Result<Vec<TaskCounts>> {
    let sql = format!(
        "SELECT task_id, {counts} FROM tasker_workflow_steps WHERE {ids} GROUP BY task_id",
        counts = counts_columns(""),
        ids = c.in_ids("task_id", 1),
    );
    Ok(c.load_sql(&sql, &[Bind::Ids(task_ids)])?)
}

/// The states a task passes through to reach what its steps call for (the seed's
/// execution-status rule): all steps done → `complete`; nothing running or runnable and a step
/// failed for good → `error`; runnable work in an errored task → back to `pending`.
fn finalize_path(current: TaskState, status: TaskStatus) -> &'static [TaskState] {
    use TaskState::{Complete, Error, InProgress, Pending};
    match (current, status) {
        (InProgress, TaskStatus::AllComplete) => &[Complete],
        (Pending, TaskStatus::AllComplete) => &[InProgress, Complete],
        (Error, TaskStatus::AllComplete) => &[Pending, InProgress, Complete],
        (InProgress | Pending, TaskStatus::BlockedByFailures) => &[Error],
        (Error, TaskStatus::Runnable) => &[Pending],
        _ => &[],
    }
}

#[derive(QueryableByName)]
struct TaskStateRow {
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = Text)]
    state: String,
}

/// The checked transitions that take a task from `current` to what `counts` call for, and the
/// state it ends in.
fn finalizing(
    task_id: i64,
    current: TaskState,
    counts: &TaskCounts,
) -> Result<(Vec<TaskTransition>, TaskState)> {
    let mut from = current;
    let mut path = Vec::new();
    for &to in finalize_path(current, counts.status()) {
        path.push(TaskTransition::new(task_id, from, to)?);
        from = to;
    }
    Ok((path, from))
}

/// Moves each task to the state its steps call for; see [`finalize_path`].
pub(crate) fn finalize_tasks(c: &mut Conn<'_>, task_ids: &[i64]) -> Result<Vec<EventRecord>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Locked on PostgreSQL, so the counts below (a later statement) see what another
    // completer of the same task committed first; see `complete/postgres.rs`.
    let lock = match c {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => "",
        #[cfg(feature = "postgres")]
        Conn::Postgres(_) => "FOR UPDATE",
    };
    let sql = format!(
        "SELECT task_id, state FROM tasker_tasks WHERE {ids} ORDER BY task_id {lock}",
        ids = c.in_ids("task_id", 1),
    );
    let states: Vec<TaskStateRow> = c.load_sql(&sql, &[Bind::Ids(task_ids)])?;
    let states = states
        .into_iter()
        .map(|row| {
            let state = Cell::new("tasker_tasks", row.task_id, "state").state(&row.state)?;
            Ok((row.task_id, state))
        })
        .collect::<Result<HashMap<i64, TaskState>>>()?;
    let mut transitions = Vec::new();
    let mut moved: BTreeMap<TaskState, Vec<i64>> = BTreeMap::new();
    for counts in task_counts(c, task_ids)? {
        let Some(&current) = states.get(&counts.task_id) else {
            continue;
        };
        let (path, end) = finalizing(counts.task_id, current, &counts)?;
        transitions.extend(path);
        if end != current {
            moved.entry(end).or_default().push(counts.task_id);
        }
    }
    // One statement per state entered, not per task: a batch usually completes several.
    let sql = format!(
        "UPDATE tasker_tasks SET state = $1, complete = $2, updated_at = {now} WHERE {ids}",
        now = c.now_sql(),
        ids = c.in_ids("task_id", 3),
    );
    for (state, ids) in moved {
        let binds = [
            Bind::Text(state.as_str()),
            Bind::Bool(state == TaskState::Complete),
            Bind::Ids(&ids),
        ];
        c.execute_sql(&sql, &binds)?;
    }
    record_tasks(c, transitions)
}
