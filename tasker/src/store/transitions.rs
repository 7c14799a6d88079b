//! Writing transition rows. Each checked transition becomes one row here and its event is
//! returned, so the two cannot part. The rows go to append-only logs, `sort_key` going on +10
//! as in the seed; the seed's tables are views over the logs that derive `most_recent` (the
//! migration `transition_log` says why), so a transition is one inserted row and nothing else.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer};

use super::Conn;
use super::conn::Bind;
use crate::error::Result;
use crate::model::{EventRecord, StepTransition, TaskTransition, TransitionRow};

/// Records step transitions; returns their events, in order.
pub(crate) fn record_steps(
    c: &mut Conn<'_>,
    transitions: Vec<StepTransition>,
) -> Result<Vec<EventRecord>> {
    let (rows, events): (Vec<TransitionRow>, Vec<EventRecord>) =
        transitions.into_iter().map(StepTransition::split).unzip();
    write_steps(c, &rows, false)?;
    Ok(events)
}

/// Records the first transitions of steps just created (their keys start at 0).
pub(crate) fn record_new_steps(
    c: &mut Conn<'_>,
    transitions: Vec<StepTransition>,
) -> Result<Vec<EventRecord>> {
    let (rows, events): (Vec<TransitionRow>, Vec<EventRecord>) =
        transitions.into_iter().map(StepTransition::split).unzip();
    write_steps(c, &rows, true)?;
    Ok(events)
}

/// Records task transitions; returns their events, in order.
pub(crate) fn record_tasks(
    c: &mut Conn<'_>,
    transitions: Vec<TaskTransition>,
) -> Result<Vec<EventRecord>> {
    let (rows, events): (Vec<TransitionRow>, Vec<EventRecord>) =
        transitions.into_iter().map(TaskTransition::split).unzip();
    write_tasks(c, &rows, false)?;
    Ok(events)
}

/// Records the first transitions of tasks just created (their keys start at 0).
pub(crate) fn record_new_tasks(
    c: &mut Conn<'_>,
    transitions: Vec<TaskTransition>,
) -> Result<Vec<EventRecord>> {
    let (rows, events): (Vec<TransitionRow>, Vec<EventRecord>) =
        transitions.into_iter().map(TaskTransition::split).unzip();
    write_tasks(c, &rows, true)?;
    Ok(events)
}

/// Entity ids of `rows`, each once.
fn entities(rows: &[TransitionRow]) -> Vec<i64> {
    rows.iter()
        .map(|r| r.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Each row's `sort_key`, continuing from `next` (the key after each entity's last row; 0 for
/// entities without rows).
fn keys(rows: &[TransitionRow], mut next: HashMap<i64, i32>) -> Vec<i32> {
    rows.iter()
        .map(|r| {
            let key = next.entry(r.id).or_insert(0);
            let sort_key = *key;
            *key += 10;
            sort_key
        })
        .collect()
}

/// Which transition table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entity {
    Task,
    Step,
}

impl Entity {
    /// The transition table and its entity column.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Entity::Task => ("tasker_task_transition_log", "task_id"),
            Entity::Step => ("tasker_workflow_step_transition_log", "workflow_step_id"),
        }
    }
}

/// Two PostgreSQL CTEs, `{name}_last` and `{name}_written`, that record the transitions of
/// the CTE `{name}_rows` (columns `id`, `from_state`, `to_state`, `metadata`, `n`: the row's
/// place in its entity's path, counting from 0). Each entity's keys go on from its last row's
/// `sort_key`, read through the `(entity, sort_key)` unique index, which also refuses a row
/// written twice at one key by writers that raced.
#[cfg(feature = "postgres")]
pub(crate) fn written_in_statement(entity: Entity, name: &str) -> String {
    let (table, id) = entity.table();
    format!(
        "{name}_last AS ( \
           SELECT r.{id} AS id, MAX(r.sort_key) AS sort_key FROM {table} r \
           WHERE r.{id} IN (SELECT id FROM {name}_rows) GROUP BY r.{id}), \
         {name}_written AS ( \
           INSERT INTO {table} ({id}, from_state, to_state, metadata, sort_key) \
           SELECT h.id, h.from_state, h.to_state, h.metadata, \
             COALESCE(o.sort_key + 10, 0) + h.n * 10 \
           FROM {name}_rows h LEFT JOIN {name}_last o ON o.id = h.id)"
    )
}

fn write_steps(c: &mut Conn<'_>, rows: &[TransitionRow], fresh: bool) -> Result<()> {
    write(c, Entity::Step, rows, fresh)
}

fn write_tasks(c: &mut Conn<'_>, rows: &[TransitionRow], fresh: bool) -> Result<()> {
    write(c, Entity::Task, rows, fresh)
}

fn write(c: &mut Conn<'_>, entity: Entity, rows: &[TransitionRow], fresh: bool) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let next = if fresh {
        HashMap::new()
    } else {
        next_keys(c, entity, &entities(rows))?
    };
    let keys = keys(rows, next);
    match c {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => insert_json(c, entity, rows, &keys)?,
        #[cfg(feature = "postgres")]
        Conn::Postgres(pg) => insert_unnested(pg, entity, rows, &keys)?,
    };
    Ok(())
}

/// Inserts transition rows bound as one JSON value (SQLite has no arrays), so the statement's
/// text is the same for every batch.
#[cfg(feature = "sqlite")]
fn insert_json(
    c: &mut Conn<'_>,
    entity: Entity,
    rows: &[TransitionRow],
    keys: &[i32],
) -> QueryResult<usize> {
    let (table, id) = entity.table();
    let values: Vec<serde_json::Value> = rows
        .iter()
        .zip(keys)
        .map(|(r, sort_key)| serde_json::json!([r.id, r.from, r.to, r.metadata, sort_key]))
        .collect();
    let source = c.json_rows(
        1,
        &[
            ("id", "bigint"),
            ("from_state", "text"),
            ("to_state", "text"),
            ("metadata", "text"),
            ("sort_key", "integer"),
        ],
    );
    c.execute_sql(
        &format!("INSERT INTO {table} ({id}, from_state, to_state, metadata, sort_key) {source}"),
        &[Bind::Text(&serde_json::Value::Array(values).to_string())],
    )
}

/// Inserts transition rows on PostgreSQL as one array per column, `unnest`ed: one text for
/// every batch, prepared once per connection, and no parse and plan of each row as a multi-row
/// `VALUES` list would cost (most of the insert's time for a bulk create's thousands).
#[cfg(feature = "postgres")]
fn insert_unnested(
    c: &mut diesel::pg::PgConnection,
    entity: Entity,
    rows: &[TransitionRow],
    keys: &[i32],
) -> QueryResult<usize> {
    use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
    let (table, id) = entity.table();
    let head = format!(
        "INSERT INTO {table} ({id}, from_state, to_state, metadata, sort_key) SELECT * FROM "
    );
    super::prepared::Prepared::<diesel::pg::Pg>::unnest(&head, 5, "")
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.from).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.to).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.metadata.as_str()).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(keys.to_vec())
        .execute(c)
}

#[derive(QueryableByName)]
struct Last {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    sort_key: i32,
}

/// Where each entity's sort keys go on: 10 past its last row's.
fn next_keys(c: &mut Conn<'_>, entity: Entity, ids: &[i64]) -> Result<HashMap<i64, i32>> {
    let (table, id) = entity.table();
    let sql = format!(
        "SELECT {id} AS id, MAX(sort_key) AS sort_key FROM {table} WHERE {ids} GROUP BY {id}",
        ids = c.in_ids(id, 1),
    );
    let last: Vec<Last> = c.load_sql(&sql, &[Bind::Ids(ids)])?;
    Ok(last.into_iter().map(|r| (r.id, r.sort_key + 10)).collect())
}
