//! PostgreSQL's completion of a batch of successes in three statements, whatever its size:
//! the steps, their transitions and their children in one; the tasks' states and step counts
//! in one; the tasks' new states, serial mutexes and transitions in one. Each text never
//! changes, so each connection prepares it once.
//!
//! The first statement also locks the batch's task rows, in id order. A statement sees the
//! database as it was when it started, so two completers finishing a task's last two steps at
//! once could each count the other's step as still running and neither finish the task; with
//! the lock, the second counts after the first has committed.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};

use super::super::Conn;
use super::super::conn::PG_NOW;
use super::super::prepared::Prepared;
use super::super::rows::Cell;
use super::super::transitions::{Entity, written_in_statement};
use super::{TaskCounts, counts_columns, finalizing};
use crate::error::Result;
use crate::model::{CompletionOutcome, EventRecord, Metadata, Outcome, StepTransition};
use crate::state::{StepState, TaskState};

#[derive(QueryableByName)]
struct Recorded {
    #[diesel(sql_type = BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = BigInt)]
    became_ready: i64,
}

/// Records successes fenced on (`lease_owner`, `attempts`), appends their transitions,
/// counts one satisfied parent on each child and makes ready the
/// children left with none, and locks the tasks. Binds: step ids, owners, attempts, results,
/// transition metadata.
static RECORD: LazyLock<String> = LazyLock::new(|| {
    let (pending, in_progress, complete) = (
        StepState::Pending.as_str(),
        StepState::InProgress.as_str(),
        StepState::Complete.as_str(),
    );
    let steps_written = written_in_statement(Entity::Step, "step");
    format!(
        "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[]) \
                      AS v(id, owner, attempt, results, metadata)), \
         done AS ( \
           UPDATE tasker_workflow_steps s SET state = '{complete}', results = v.results, \
             processed = TRUE, processed_at = {PG_NOW}, in_process = FALSE, lease_owner = NULL, \
             lease_expires_at = NULL, ready_at = NULL, updated_at = {PG_NOW} \
           FROM v WHERE s.workflow_step_id = v.id AND s.state = '{in_progress}' \
             AND s.lease_owner = v.owner AND s.attempts = v.attempt \
           RETURNING s.workflow_step_id, s.task_id, s.attempts, v.metadata), \
         step_rows AS ( \
           SELECT workflow_step_id AS id, '{in_progress}' AS from_state, '{complete}' AS to_state, \
             metadata, 0 AS n FROM done), \
         {steps_written}, \
         children AS ( \
           UPDATE tasker_workflow_steps c SET remaining_parents = c.remaining_parents - x.n, \
             ready_at = CASE WHEN c.remaining_parents = x.n AND c.state = '{pending}' \
                             AND c.ready_at IS NULL THEN {PG_NOW} ELSE c.ready_at END, \
             updated_at = {PG_NOW} \
           FROM (SELECT e.to_step_id, COUNT(*)::int AS n FROM tasker_workflow_step_edges e \
                 JOIN done d ON d.workflow_step_id = e.from_step_id GROUP BY e.to_step_id) x \
           WHERE c.workflow_step_id = x.to_step_id \
           RETURNING c.remaining_parents = 0 AND c.state = '{pending}' AS ready), \
         locked AS ( \
           SELECT task_id FROM tasker_tasks WHERE task_id IN (SELECT task_id FROM done) \
           ORDER BY task_id FOR UPDATE) \
         SELECT d.workflow_step_id, d.attempts, \
           (SELECT COUNT(*) FROM children WHERE ready) AS became_ready \
         FROM done d WHERE (SELECT COUNT(*) FROM locked) >= 0"
    )
});

/// Each task's state and step counts (after [`RECORD`] locked the rows). Bind: task ids. A
/// lateral count per task, so the plan is an index lookup per task even when the statistics
/// of freshly filled tables suggest scanning every step.
static COUNT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT t.task_id, t.state AS task_state, c.* FROM tasker_tasks t \
         CROSS JOIN LATERAL (SELECT {counts} FROM tasker_workflow_steps s WHERE s.task_id = t.task_id) c \
         WHERE t.task_id = ANY($1)",
        counts = counts_columns("s.")
    )
});

/// Moves tasks to their new states (a null state leaves the task's), frees the serial tasks
/// whose running step finished, and writes the task transitions. Binds: finished serial
/// steps, task ids, new states, the same finished serial steps, then the transitions' task
/// ids, from, to, and position in the task's path.
static MOVE: LazyLock<String> = LazyLock::new(|| {
    let complete = TaskState::Complete.as_str();
    let tasks_written = written_in_statement(Entity::Task, "task");
    format!(
        "WITH moved AS ( \
           UPDATE tasker_tasks t SET state = COALESCE(x.state, t.state), \
             complete = CASE WHEN x.state IS NULL THEN t.complete ELSE x.state = '{complete}' END, \
             running_step_id = CASE WHEN t.running_step_id = ANY($1) THEN NULL ELSE t.running_step_id END, \
             updated_at = CASE WHEN x.state IS NULL THEN t.updated_at ELSE {PG_NOW} END \
           FROM unnest($2::bigint[], $3::text[]) AS x(task_id, state) \
           WHERE t.task_id = x.task_id AND (x.state IS NOT NULL OR t.running_step_id = ANY($4)) \
           RETURNING t.task_id), \
         task_rows AS ( \
           SELECT id, from_state, to_state, '{{}}' AS metadata, n \
           FROM unnest($5::bigint[], $6::text[], $7::text[], $8::int[]) \
             AS h(id, from_state, to_state, n)), \
         {tasks_written} \
         SELECT COUNT(*) FROM moved"
    )
});

/// Records a batch of successful outcomes; the PostgreSQL form of
/// [`super::complete`] for a batch without failures (see the module's note).
pub(super) fn complete_successes(
    pg: &mut PgConnection,
    outcomes: &[Outcome],
    takes_locally: usize,
) -> Result<(Vec<CompletionOutcome>, Vec<EventRecord>)> {
    let mut transitions = Vec::with_capacity(outcomes.len());
    let mut metadata = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        let step = (o.task_id, o.step_id, o.name.as_str());
        let completed = Metadata::Completed {
            attempt: o.attempt,
            duration_ms: o.duration_ms,
        };
        let (row, event) =
            StepTransition::new(step, StepState::InProgress, StepState::Complete, completed)?
                .split();
        metadata.push(row.metadata);
        transitions.push(event);
    }
    let ids: Vec<i64> = outcomes.iter().map(|o| o.step_id).collect();
    let owners: Vec<&str> = outcomes.iter().map(|o| o.owner.as_str()).collect();
    let attempts: Vec<i32> = outcomes.iter().map(|o| o.attempt).collect();
    let results: Vec<&str> = outcomes
        .iter()
        .map(|o| o.result.as_deref().unwrap_or_default())
        .collect();
    let metadata: Vec<&str> = metadata.iter().map(String::as_str).collect();
    pg.transaction(|pg| {
        let recorded: Vec<Recorded> = Prepared::<Pg>::new(RECORD.as_str())
            .bind::<Array<BigInt>, _>(&ids)
            .bind::<Array<Text>, _>(&owners)
            .bind::<Array<Integer>, _>(&attempts)
            .bind::<Array<Text>, _>(&results)
            .bind::<Array<Text>, _>(&metadata)
            .load(pg)?;
        let accepted: BTreeSet<(i64, i32)> = recorded
            .iter()
            .map(|r| (r.workflow_step_id, r.attempts))
            .collect();
        let became_ready = recorded.first().map_or(0, |r| r.became_ready);
        let (mut results, mut events) = (Vec::with_capacity(outcomes.len()), Vec::new());
        let (mut tasks, mut serial) = (BTreeSet::new(), Vec::new());
        for (o, event) in outcomes.iter().zip(transitions) {
            if !accepted.contains(&(o.step_id, o.attempt)) {
                results.push(CompletionOutcome::Stale);
                continue;
            }
            results.push(CompletionOutcome::Recorded);
            tasks.insert(o.task_id);
            if !o.concurrent {
                serial.push(o.step_id);
            }
            events.push(event);
        }
        if usize::try_from(became_ready).unwrap_or(usize::MAX) > takes_locally {
            Conn::Postgres(pg).notify_ready()?;
        }
        let tasks: Vec<i64> = tasks.into_iter().collect();
        events.extend(finalize(pg, &tasks, &serial)?);
        Ok((results, events))
    })
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Text)]
    task_state: String,
    #[diesel(embed)]
    counts: TaskCounts,
}

/// Moves each of `task_ids` (locked by the caller) to the state its steps call for, and frees
/// the serial tasks whose running step was one of `serial`.
fn finalize(pg: &mut PgConnection, task_ids: &[i64], serial: &[i64]) -> Result<Vec<EventRecord>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    let counted: Vec<Counted> = Prepared::<Pg>::new(COUNT.as_str())
        .bind::<Array<BigInt>, _>(task_ids)
        .load(pg)?;
    let (mut ids, mut states) = (Vec::new(), Vec::new());
    let mut events = Vec::new();
    let (mut h_ids, mut h_from, mut h_to, mut h_n) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in &counted {
        let id = row.counts.task_id;
        let current = Cell::new("tasker_tasks", id, "state").state(&row.task_state)?;
        let (path, end) = finalizing(id, current, &row.counts)?;
        for (n, transition) in path.into_iter().enumerate() {
            let (transition, event) = transition.split();
            h_ids.push(id);
            h_from.push(transition.from);
            h_to.push(transition.to);
            h_n.push(i32::try_from(n).unwrap_or(i32::MAX));
            events.push(event);
        }
        ids.push(id);
        states.push((end != current).then(|| end.as_str()));
    }
    if events.is_empty() && serial.is_empty() {
        return Ok(events);
    }
    Prepared::<Pg>::new(MOVE.as_str())
        .bind::<Array<BigInt>, _>(serial)
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Nullable<Text>>, _>(&states)
        .bind::<Array<BigInt>, _>(serial)
        .bind::<Array<BigInt>, _>(&h_ids)
        .bind::<Array<Nullable<Text>>, _>(&h_from)
        .bind::<Array<Text>, _>(&h_to)
        .bind::<Array<Integer>, _>(&h_n)
        .execute(pg)?;
    Ok(events)
}
