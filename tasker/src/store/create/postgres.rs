//! PostgreSQL's bulk inserts of task, step and edge rows: one array per column, `unnest`ed into
//! rows. The server parses and plans every row of a multi-row `VALUES` list, which at 2,000
//! tasks costs as much as inserting them; arrays are one bind per column whatever the batch,
//! and the statement's text never changes, so each connection prepares it once.

use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamp};

use super::super::prepared::Prepared;
use super::{InsertedStep, InsertedTask, NewStepRow, NewTaskRow};

/// `rows`' values of one column, bound as one array.
fn column<'r, R, T: 'r>(rows: &'r [R], value: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

/// Inserts task rows, skipping those whose identity hash or idempotency key is taken; returns
/// the id and identity hash of each inserted one.
pub(super) fn insert_tasks(
    c: &mut PgConnection,
    rows: &[NewTaskRow<'_>],
) -> QueryResult<Vec<(i64, String)>> {
    let inserted: Vec<InsertedTask> = Prepared::<Pg>::unnest(
        "INSERT INTO tasker_tasks (named_task_id, concurrent, requested_at, initiator, \
           source_system, reason, bypass_steps, tags, context, identity_hash, idempotency_key, \
           priority, correlation_id) SELECT * FROM ",
        13,
        " ON CONFLICT DO NOTHING RETURNING task_id, identity_hash",
    )
    .bind::<Array<BigInt>, _>(column(rows, |r| r.named_task_id))
    .bind::<Array<Bool>, _>(column(rows, |r| r.concurrent))
    .bind::<Array<Timestamp>, _>(column(rows, |r| r.requested_at))
    .bind::<Array<Text>, _>(column(rows, |r| r.initiator))
    .bind::<Array<Text>, _>(column(rows, |r| r.source_system))
    .bind::<Array<Text>, _>(column(rows, |r| r.reason))
    .bind::<Array<Text>, _>(column(rows, |r| r.bypass_steps))
    .bind::<Array<Text>, _>(column(rows, |r| r.tags))
    .bind::<Array<Text>, _>(column(rows, |r| r.context))
    .bind::<Array<Text>, _>(column(rows, |r| r.identity_hash))
    .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.idempotency_key))
    .bind::<Array<Integer>, _>(column(rows, |r| r.priority))
    .bind::<Array<Text>, _>(column(rows, |r| r.correlation_id))
    .load(c)?;
    Ok(inserted
        .into_iter()
        .map(|t| (t.task_id, t.identity_hash))
        .collect())
}

/// Inserts step rows, the `ready` ones with `ready_at` from `now` (the database clock's
/// expression, a constant); returns the id, task and name of each.
pub(super) fn insert_steps(
    c: &mut PgConnection,
    rows: &[NewStepRow<'_>],
    now: &str,
) -> QueryResult<Vec<(i64, i64, String)>> {
    let head = format!(
        "INSERT INTO tasker_workflow_steps (task_id, named_step_id, name, state, retryable, \
           retry_limit, skippable, remaining_parents, priority, ready_at) \
         SELECT task_id, named_step_id, name, state, retryable, retry_limit, skippable, \
           remaining_parents, priority, CASE WHEN ready THEN {now} END FROM "
    );
    let inserted: Vec<InsertedStep> = Prepared::<Pg>::unnest(
        &head,
        10,
        " AS r(task_id, named_step_id, name, state, retryable, retry_limit, skippable, \
              remaining_parents, priority, ready) \
         RETURNING workflow_step_id, task_id, name",
    )
    .bind::<Array<BigInt>, _>(column(rows, |r| r.task_id))
    .bind::<Array<BigInt>, _>(column(rows, |r| r.named_step_id))
    .bind::<Array<Text>, _>(column(rows, |r| r.name))
    .bind::<Array<Text>, _>(column(rows, |r| r.state))
    .bind::<Array<Bool>, _>(column(rows, |r| r.retryable))
    .bind::<Array<Integer>, _>(column(rows, |r| r.retry_limit))
    .bind::<Array<Bool>, _>(column(rows, |r| r.skippable))
    .bind::<Array<Integer>, _>(column(rows, |r| r.remaining_parents))
    .bind::<Array<Integer>, _>(column(rows, |r| r.priority))
    .bind::<Array<Bool>, _>(column(rows, |r| r.ready))
    .load(c)?;
    Ok(inserted
        .into_iter()
        .map(|s| (s.workflow_step_id, s.task_id, s.name))
        .collect())
}

/// Inserts dependency edges, `(from, to)` step ids.
pub(super) fn insert_edges(c: &mut PgConnection, edges: &[(i64, i64)]) -> QueryResult<usize> {
    Prepared::<Pg>::unnest(
        "INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id) SELECT * FROM ",
        2,
        "",
    )
    .bind::<Array<BigInt>, _>(column(edges, |e| e.0))
    .bind::<Array<BigInt>, _>(column(edges, |e| e.1))
    .execute(c)
}
