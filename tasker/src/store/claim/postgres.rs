//! PostgreSQL's claim as one statement: data-modifying CTEs pick the ready steps (`SKIP
//! LOCKED`), take the serial tasks' mutex and start the tasks in one `UPDATE` of
//! `tasker_tasks` (a statement may not update a row twice), mark the steps `in_progress`,
//! append their transitions, and return each step with its
//! task's context and its parents' results. One round trip and one commit per batch, and the
//! text never changes, so each connection prepares it once.

use std::sync::LazyLock;
use std::time::Duration;

use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Nullable, Text};

use super::super::conn::PG_NOW;
use super::super::prepared::Prepared;
use super::super::rows::Cell;
use super::super::transitions::{Entity, written_in_statement};
use crate::error::Result;
use crate::model::{ClaimedStep, EventRecord, ParentOutput, TaskTransition};
use crate::state::{StepState, TaskState};

/// What the statement returns for each claimed step.
#[derive(QueryableByName)]
struct Row {
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
    #[diesel(sql_type = Text)]
    from_state: String,
    #[diesel(sql_type = Bool)]
    concurrent: bool,
    #[diesel(sql_type = Bool)]
    started: bool,
    #[diesel(sql_type = BigInt)]
    named_task_id: i64,
    #[diesel(sql_type = Text)]
    context: String,
    #[diesel(sql_type = Nullable<Text>)]
    correlation_id: Option<String>,
    #[diesel(sql_type = Array<BigInt>)]
    parent_ids: Vec<i64>,
    #[diesel(sql_type = Array<Text>)]
    parent_names: Vec<String>,
    #[diesel(sql_type = Array<Nullable<Text>>)]
    parent_results: Vec<Option<String>>,
}

/// The claim. Binds: named task ids, limit, owner, lease seconds, owner as a JSON string.
/// A serial task (`concurrent: false`) is taken only while its state is the one the pick read
/// and its mutex is free; a pending concurrent task is started only while it is still
/// pending, so a task start is recorded exactly when this statement made it.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    let (pending, error, in_progress) = (
        StepState::Pending.as_str(),
        StepState::Error.as_str(),
        StepState::InProgress.as_str(),
    );
    let (task_pending, task_in_progress) =
        (TaskState::Pending.as_str(), TaskState::InProgress.as_str());
    let now = PG_NOW;
    let steps_written = written_in_statement(Entity::Step, "step");
    let tasks_written = written_in_statement(Entity::Task, "task");
    format!(
        "WITH cand AS MATERIALIZED ( \
           SELECT s.workflow_step_id, s.task_id, s.state AS from_state, s.priority, s.ready_at, \
                  t.concurrent, t.state AS task_state \
           FROM tasker_workflow_steps s JOIN tasker_tasks t ON t.task_id = s.task_id \
           WHERE s.state IN ('{pending}', '{error}') AND s.remaining_parents = 0 \
             AND s.ready_at IS NOT NULL AND s.ready_at <= {now} \
             AND t.named_task_id = ANY($1) AND (t.concurrent OR t.running_step_id IS NULL) \
           ORDER BY s.priority DESC, s.ready_at, s.workflow_step_id \
           LIMIT $2 FOR UPDATE OF s SKIP LOCKED), \
         touch AS ( \
           SELECT DISTINCT ON (task_id) task_id, workflow_step_id AS step_id, task_state \
             FROM cand WHERE NOT concurrent \
             ORDER BY task_id, priority DESC, ready_at, workflow_step_id) , \
         started AS ( \
           UPDATE tasker_tasks t SET \
             running_step_id = CASE WHEN t.concurrent THEN t.running_step_id ELSE x.step_id END, \
             state = CASE WHEN t.state = '{task_pending}' THEN '{task_in_progress}' ELSE t.state END, \
             updated_at = {now} \
           FROM (SELECT task_id, step_id, task_state FROM touch \
                 UNION ALL SELECT DISTINCT task_id, NULL::bigint, task_state FROM cand \
                   WHERE concurrent AND task_state = '{task_pending}') x \
           WHERE t.task_id = x.task_id AND t.state = x.task_state \
             AND (t.concurrent OR t.running_step_id IS NULL) \
           RETURNING t.task_id, t.running_step_id, t.concurrent, x.task_state AS was), \
         claimed AS ( \
           UPDATE tasker_workflow_steps s SET state = '{in_progress}', attempts = s.attempts + 1, \
             lease_owner = $3, lease_expires_at = {now} + $4 * interval '1 second', \
             last_attempted_at = {now}, in_process = TRUE, updated_at = {now} \
           FROM cand c \
           WHERE s.workflow_step_id = c.workflow_step_id AND (c.concurrent OR EXISTS ( \
             SELECT 1 FROM started u WHERE NOT u.concurrent AND u.running_step_id = c.workflow_step_id)) \
           RETURNING s.workflow_step_id, s.task_id, s.name, s.attempts, s.retryable, s.retry_limit, \
             c.from_state, c.concurrent), \
         step_rows AS ( \
           SELECT u.workflow_step_id AS id, h.from_state, h.to_state, \
             CASE WHEN h.last THEN '{{\"attempt\":' || u.attempts || ',\"worker\":' || $5 || '}}' ELSE '{{}}' END AS metadata, \
             h.n \
           FROM claimed u CROSS JOIN LATERAL (VALUES \
             ('{error}', '{pending}', 0, FALSE), \
             ('{pending}', '{in_progress}', CASE WHEN u.from_state = '{error}' THEN 1 ELSE 0 END, TRUE)) \
             AS h(from_state, to_state, n, last) \
           WHERE h.last OR u.from_state = '{error}'), \
         {steps_written}, \
         task_rows AS ( \
           SELECT task_id AS id, '{task_pending}' AS from_state, '{task_in_progress}' AS to_state, \
             '{{}}' AS metadata, 0 AS n \
           FROM started WHERE was = '{task_pending}'), \
         {tasks_written} \
         SELECT u.workflow_step_id, u.task_id, u.name, u.attempts, u.retryable, u.retry_limit, \
           u.from_state, u.concurrent, \
           EXISTS (SELECT 1 FROM started b WHERE b.task_id = u.task_id AND b.was = '{task_pending}') AS started, \
           t.named_task_id, t.context, t.correlation_id, \
           COALESCE(p.ids, '{{}}') AS parent_ids, COALESCE(p.names, '{{}}') AS parent_names, \
           COALESCE(p.results, '{{}}') AS parent_results \
         FROM claimed u JOIN tasker_tasks t ON t.task_id = u.task_id \
         LEFT JOIN LATERAL ( \
           SELECT array_agg(ps.workflow_step_id ORDER BY ps.workflow_step_id) AS ids, \
                  array_agg(ps.name::text ORDER BY ps.workflow_step_id) AS names, \
                  array_agg(ps.results ORDER BY ps.workflow_step_id) AS results \
           FROM tasker_workflow_step_edges e \
           JOIN tasker_workflow_steps ps ON ps.workflow_step_id = e.from_step_id \
           WHERE e.to_step_id = u.workflow_step_id) p ON TRUE \
         ORDER BY u.workflow_step_id"
    )
});

/// Claims up to `limit` ready steps of the given named tasks for `owner` in one statement;
/// see the module's note. Returns the steps and the events of their transitions (the steps'
/// first, then the tasks started).
pub(super) fn claim(
    pg: &mut PgConnection,
    owner: &str,
    limit: usize,
    lease: Duration,
    named_task_ids: &[i64],
) -> Result<(Vec<ClaimedStep>, Vec<EventRecord>)> {
    let worker = serde_json::Value::from(owner).to_string();
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    let rows: Vec<Row> = Prepared::<Pg>::new(CLAIM.as_str())
        .bind::<Array<BigInt>, _>(named_task_ids)
        .bind::<Integer, _>(limit)
        .bind::<Text, _>(owner)
        .bind::<Double, _>(lease.as_secs_f64())
        .bind::<Text, _>(worker.as_str())
        .load(pg)?;
    let mut events = Vec::with_capacity(rows.len() + 4);
    let mut starts = Vec::new();
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let from = Cell::new("tasker_workflow_steps", row.workflow_step_id, "state")
            .state(&row.from_state)?;
        let step = (row.task_id, row.workflow_step_id, row.name.as_str());
        for transition in super::claimed_path(step, from, row.attempts, owner)? {
            let (_, mut event) = transition.split();
            event.correlation_id.clone_from(&row.correlation_id);
            events.push(event);
        }
        if row.started && !starts.iter().any(|(id, _)| *id == row.task_id) {
            starts.push((row.task_id, row.correlation_id.clone()));
        }
        let parents = row
            .parent_ids
            .into_iter()
            .zip(row.parent_names)
            .zip(row.parent_results)
            .map(|((step_id, name), results)| ParentOutput {
                step_id,
                name,
                results,
            })
            .collect();
        claimed.push(ClaimedStep {
            step_id: row.workflow_step_id,
            task_id: row.task_id,
            named_task_id: row.named_task_id,
            context: row.context,
            name: row.name,
            attempt: row.attempts,
            retryable: row.retryable,
            retry_limit: row.retry_limit,
            concurrent: row.concurrent,
            parents,
        });
    }
    for (task_id, correlation_id) in starts {
        let transition = TaskTransition::new(task_id, TaskState::Pending, TaskState::InProgress)?;
        let (_, mut event) = transition.split();
        event.correlation_id = correlation_id;
        events.push(event);
    }
    Ok((claimed, events))
}
