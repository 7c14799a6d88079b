//! SQLite's bulk inserts of task, step and edge rows: every row bound in one JSON text, read
//! with `json_each`. A multi-row `VALUES` list has a placeholder per value, so its text differs
//! with the batch's size: SQLite parsed each one anew (a tenth of a create's time) and a large
//! batch had to be cut to stay within the bind limit. These texts never change, so each
//! connection prepares them once.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde_json::json;

use super::super::Conn;
use super::super::conn::Bind;
use super::{InsertedStep, InsertedTask, NewStepRow, NewTaskRow};

/// `rows` as one JSON array of arrays.
fn json_text<R>(rows: &[R], row: impl Fn(&R) -> serde_json::Value) -> String {
    serde_json::Value::Array(rows.iter().map(row).collect()).to_string()
}

/// Inserts task rows, skipping those whose identity hash or idempotency key is taken; returns
/// the id and identity hash of each inserted one.
pub(super) fn insert_tasks(
    c: &mut SqliteConnection,
    rows: &[NewTaskRow<'_>],
) -> QueryResult<Vec<(i64, String)>> {
    let mut c = Conn::Sqlite(c);
    let source = c.json_rows(
        1,
        &[
            ("named_task_id", "bigint"),
            ("concurrent", "boolean"),
            ("requested_at", "timestamp"),
            ("initiator", "text"),
            ("source_system", "text"),
            ("reason", "text"),
            ("bypass_steps", "text"),
            ("tags", "text"),
            ("context", "text"),
            ("identity_hash", "text"),
            ("idempotency_key", "text"),
            ("priority", "integer"),
            ("correlation_id", "text"),
        ],
    );
    let values = json_text(rows, |r| {
        json!([
            r.named_task_id,
            r.concurrent,
            // diesel's text form of a timestamp on SQLite, which the reads parse.
            r.requested_at.format("%F %T%.f").to_string(),
            r.initiator,
            r.source_system,
            r.reason,
            r.bypass_steps,
            r.tags,
            r.context,
            r.identity_hash,
            r.idempotency_key,
            r.priority,
            r.correlation_id,
        ])
    });
    // `WHERE true` tells SQLite's parser that `ON CONFLICT` belongs to the insert.
    let inserted: Vec<InsertedTask> = c.load_sql(
        &format!(
            "INSERT INTO tasker_tasks (named_task_id, concurrent, requested_at, initiator, \
               source_system, reason, bypass_steps, tags, context, identity_hash, \
               idempotency_key, priority, correlation_id) \
             {source} WHERE true ON CONFLICT DO NOTHING RETURNING task_id, identity_hash"
        ),
        &[Bind::Text(&values)],
    )?;
    Ok(inserted
        .into_iter()
        .map(|t| (t.task_id, t.identity_hash))
        .collect())
}

/// Inserts step rows, the `ready` ones with `ready_at` from the database clock; returns the
/// id, task and name of each.
pub(super) fn insert_steps(
    c: &mut SqliteConnection,
    rows: &[NewStepRow<'_>],
) -> QueryResult<Vec<(i64, i64, String)>> {
    let mut c = Conn::Sqlite(c);
    let source = c.json_rows(
        1,
        &[
            ("task_id", "bigint"),
            ("named_step_id", "bigint"),
            ("name", "text"),
            ("state", "text"),
            ("retryable", "boolean"),
            ("retry_limit", "integer"),
            ("skippable", "boolean"),
            ("remaining_parents", "integer"),
            ("priority", "integer"),
            ("ready", "boolean"),
        ],
    );
    let values = json_text(rows, |r| {
        json!([
            r.task_id,
            r.named_step_id,
            r.name,
            r.state,
            r.retryable,
            r.retry_limit,
            r.skippable,
            r.remaining_parents,
            r.priority,
            r.ready,
        ])
    });
    let inserted: Vec<InsertedStep> = c.load_sql(
        &format!(
            "INSERT INTO tasker_workflow_steps (task_id, named_step_id, name, state, retryable, \
               retry_limit, skippable, remaining_parents, priority, ready_at) \
             SELECT task_id, named_step_id, name, state, retryable, retry_limit, skippable, \
               remaining_parents, priority, CASE WHEN ready THEN {now} END FROM ({source}) \
             RETURNING workflow_step_id, task_id, name",
            now = c.now_sql(),
        ),
        &[Bind::Text(&values)],
    )?;
    Ok(inserted
        .into_iter()
        .map(|s| (s.workflow_step_id, s.task_id, s.name))
        .collect())
}

/// Inserts dependency edges, `(from, to)` step ids.
pub(super) fn insert_edges(c: &mut SqliteConnection, edges: &[(i64, i64)]) -> QueryResult<usize> {
    let mut c = Conn::Sqlite(c);
    let source = c.json_rows(1, &[("from_step_id", "bigint"), ("to_step_id", "bigint")]);
    let values = json_text(edges, |&(from, to)| json!([from, to]));
    c.execute_sql(
        &format!("INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id) {source}"),
        &[Bind::Text(&values)],
    )
}
