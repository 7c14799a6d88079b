//! Retention: deleting finished tasks, with everything of theirs (steps, edges, transitions,
//! annotations go by the foreign keys' cascade), a bounded batch per transaction.

use diesel::QueryableByName;

use super::Conn;
use super::conn::Bind;
use crate::error::Result;
use crate::model::Pruned;
use crate::state::TaskState;

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    task_id: i64,
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    tasks: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    steps: i64,
}

/// The states a prune deletes: the finished ones, and `error` when asked.
fn states(include_errors: bool) -> String {
    let mut states = vec![
        TaskState::Complete,
        TaskState::Cancelled,
        TaskState::ResolvedManually,
    ];
    if include_errors {
        states.push(TaskState::Error);
    }
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The tasks a prune takes: in those states, unchanged for `older_than_seconds`.
fn matching(c: &Conn<'_>, older_than_seconds: f64, include_errors: bool) -> String {
    format!(
        "state IN ({}) AND updated_at < {}",
        states(include_errors),
        c.now_plus_sql(-older_than_seconds)
    )
}

/// Deletes up to `limit` of the tasks that finished longest ago; returns how many tasks and
/// steps went. On PostgreSQL the tasks are locked and rows another transaction holds (a retry
/// under way) skipped; the delete checks the state again, so a task changed since stays.
pub(crate) fn prune_batch(
    c: &mut Conn<'_>,
    older_than_seconds: f64,
    include_errors: bool,
    limit: usize,
) -> Result<Pruned> {
    let matching = matching(c, older_than_seconds, include_errors);
    let ids: Vec<i64> = c
        .load_sql::<Id>(
            &format!(
                "SELECT task_id FROM tasker_tasks WHERE {matching} \
                 ORDER BY updated_at LIMIT {limit} {}",
                c.skip_locked()
            ),
            &[],
        )?
        .into_iter()
        .map(|row| row.task_id)
        .collect();
    if ids.is_empty() {
        return Ok(Pruned::default());
    }
    let counts: Vec<Counts> = c.load_sql(
        &format!(
            "SELECT CAST(0 AS BIGINT) AS tasks, COUNT(*) AS steps FROM tasker_workflow_steps \
             WHERE {}",
            c.in_ids("task_id", 1)
        ),
        &[Bind::Ids(&ids)],
    )?;
    let tasks = c.execute_sql(
        &format!(
            "DELETE FROM tasker_tasks WHERE {} AND state IN ({})",
            c.in_ids("task_id", 1),
            states(include_errors)
        ),
        &[Bind::Ids(&ids)],
    )?;
    Ok(Pruned {
        tasks: tasks as u64,
        steps: counts.first().map_or(0, |c| c.steps.max(0) as u64),
    })
}

/// What a prune would delete now, without deleting.
pub(crate) fn prune_preview(
    c: &mut Conn<'_>,
    older_than_seconds: f64,
    include_errors: bool,
) -> Result<Pruned> {
    let matching = matching(c, older_than_seconds, include_errors);
    let counts: Vec<Counts> = c.load_sql(
        &format!(
            "SELECT (SELECT COUNT(*) FROM tasker_tasks WHERE {matching}) AS tasks, \
               (SELECT COUNT(*) FROM tasker_workflow_steps s WHERE s.task_id IN \
                 (SELECT task_id FROM tasker_tasks WHERE {matching})) AS steps"
        ),
        &[],
    )?;
    Ok(counts.first().map_or_else(Pruned::default, |c| Pruned {
        tasks: c.tasks.max(0) as u64,
        steps: c.steps.max(0) as u64,
    }))
}
