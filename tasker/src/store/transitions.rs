//! Writing transition rows. Each checked transition becomes one row here and its event is
//! returned, so the two cannot part; `sort_key` (+10) and `most_recent` (one per entity) are
//! kept as the seed keeps them, in two statements for any batch and one for new entities.

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

/// Records the first transitions of steps just created (none to retire).
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

/// Records the first transitions of tasks just created (none to retire).
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

/// Each row's `sort_key` and `most_recent`, continuing from `next` (the key after each entity's
/// last row; 0 for entities without rows).
fn keys(rows: &[TransitionRow], mut next: HashMap<i64, i32>) -> Vec<(i32, bool)> {
    let mut remaining: HashMap<i64, usize> = HashMap::new();
    for r in rows {
        *remaining.entry(r.id).or_default() += 1;
    }
    rows.iter()
        .map(|r| {
            let key = next.entry(r.id).or_insert(0);
            let sort_key = *key;
            *key += 10;
            let left = remaining.entry(r.id).or_default();
            *left -= 1;
            (sort_key, *left == 0)
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
            Entity::Task => ("tasker_task_transitions", "task_id"),
            Entity::Step => ("tasker_workflow_step_transitions", "workflow_step_id"),
        }
    }
}

/// Two PostgreSQL CTEs, `{name}_retired` and `{name}_written`, that record the transitions of
/// the CTE `{name}_rows` (columns `id`, `from_state`, `to_state`, `metadata`, `n`, `last`: the
/// row's place in its entity's path, counting from 0, and whether it is the last). Each
/// entity's current row stops being most recent, and the keys go on from its `sort_key`. The
/// insert reads the retirement's rows, so an entity's old row is retired before its new one
/// is written, as the one-`most_recent` index requires within a statement.
#[cfg(feature = "postgres")]
pub(crate) fn written_in_statement(entity: Entity, name: &str) -> String {
    let (table, id) = entity.table();
    format!(
        "{name}_retired AS ( \
           UPDATE {table} r SET most_recent = FALSE \
           WHERE r.{id} IN (SELECT id FROM {name}_rows) AND r.most_recent \
           RETURNING r.{id} AS id, r.sort_key), \
         {name}_written AS ( \
           INSERT INTO {table} ({id}, from_state, to_state, metadata, sort_key, most_recent) \
           SELECT h.id, h.from_state, h.to_state, h.metadata, \
             COALESCE(o.sort_key + 10, 0) + h.n * 10, h.last \
           FROM {name}_rows h LEFT JOIN {name}_retired o ON o.id = h.id)"
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
        retire(c, entity, &entities(rows))?
    };
    let keys = keys(rows, next);
    match c {
        Conn::Sqlite(_) => insert_json(c, entity, rows, &keys)?,
        #[cfg(feature = "postgres")]
        Conn::Postgres(pg) => insert_unnested(pg, entity, rows, &keys)?,
    };
    Ok(())
}

/// Inserts transition rows bound as one JSON value (SQLite has no arrays), so the statement's
/// text is the same for every batch.
fn insert_json(
    c: &mut Conn<'_>,
    entity: Entity,
    rows: &[TransitionRow],
    keys: &[(i32, bool)],
) -> QueryResult<usize> {
    let (table, id) = entity.table();
    let values: Vec<serde_json::Value> = rows
        .iter()
        .zip(keys)
        .map(|(r, (sort_key, most_recent))| {
            serde_json::json!([r.id, r.from, r.to, r.metadata, sort_key, most_recent])
        })
        .collect();
    let source = c.json_rows(
        1,
        &[
            ("id", "bigint"),
            ("from_state", "text"),
            ("to_state", "text"),
            ("metadata", "text"),
            ("sort_key", "integer"),
            ("most_recent", "boolean"),
        ],
    );
    c.execute_sql(
        &format!(
            "INSERT INTO {table} ({id}, from_state, to_state, metadata, sort_key, most_recent) \
             {source}"
        ),
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
    keys: &[(i32, bool)],
) -> QueryResult<usize> {
    use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
    let (table, id) = entity.table();
    let head = format!(
        "INSERT INTO {table} ({id}, from_state, to_state, metadata, sort_key, most_recent) \
         SELECT * FROM "
    );
    super::prepared::Prepared::<diesel::pg::Pg>::unnest(&head, 6, "")
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.from).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.to).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.metadata.as_str()).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind::<Array<Bool>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .execute(c)
}

#[derive(QueryableByName)]
struct Retired {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    sort_key: i32,
}

/// Clears `most_recent` on the entities' current rows; returns where each one's sort keys
/// continue. The row that stops being most recent has the highest key, so one statement both
/// retires it and says where the keys go on.
fn retire(c: &mut Conn<'_>, entity: Entity, ids: &[i64]) -> Result<HashMap<i64, i32>> {
    let (table, id) = entity.table();
    let sql = format!(
        "UPDATE {table} SET most_recent = FALSE WHERE {ids} AND most_recent \
         RETURNING {id} AS id, sort_key",
        ids = c.in_ids(id, 1),
    );
    let last: Vec<Retired> = c.load_sql(&sql, &[Bind::Ids(ids)])?;
    Ok(last.into_iter().map(|r| (r.id, r.sort_key + 10)).collect())
}
