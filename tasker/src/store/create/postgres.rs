//! PostgreSQL's bulk inserts of task, step and edge rows: one array per column, `unnest`ed into
//! rows. The server parses and plans every row of a multi-row `VALUES` list, which at 2,000
//! tasks costs as much as inserting them; arrays are one bind per column whatever the batch,
//! and the statement's text never changes, so each connection prepares it once.

use std::marker::PhantomData;

use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Array, BigInt, Bool, HasSqlType, Integer, Nullable, Text, Untyped};

use super::{NewStepRow, NewTaskRow};

/// One column's values, bound as one array.
trait ColumnArray {
    fn bind<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

/// The values of one column of SQL type `ST`.
struct Column<ST, T> {
    values: Vec<T>,
    sql_type: PhantomData<ST>,
}

impl<ST: 'static, T> ColumnArray for Column<ST, T>
where
    Pg: HasSqlType<ST>,
    Vec<T>: ToSql<Array<ST>, Pg>,
{
    fn bind<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<Array<ST>, Vec<T>>(&self.values)
    }
}

/// `rows`' values of one column, for [`Unnest::column`].
fn column<'r, R, ST, T: 'r>(rows: &'r [R], value: impl Fn(&'r R) -> T) -> Column<ST, T> {
    Column {
        values: rows.iter().map(value).collect(),
        sql_type: PhantomData,
    }
}

/// `{head}unnest($1, …, $n){tail}`: a statement over rows bound one array per column. Unlike
/// `sql_query`, diesel caches it as a prepared statement (its text depends only on the SQL
/// around the arrays, never on the number of rows).
struct Unnest<'a> {
    head: &'a str,
    columns: Vec<Box<dyn ColumnArray + 'a>>,
    tail: &'a str,
}

impl<'a> Unnest<'a> {
    fn new(head: &'a str, tail: &'a str) -> Self {
        Self {
            head,
            columns: Vec::new(),
            tail,
        }
    }

    fn column<ST: 'static, T: 'a>(mut self, column: Column<ST, T>) -> Self
    where
        Pg: HasSqlType<ST>,
        Vec<T>: ToSql<Array<ST>, Pg>,
    {
        self.columns.push(Box::new(column));
        self
    }
}

impl QueryFragment<Pg> for Unnest<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(self.head);
        out.push_sql("unnest(");
        for (i, column) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            column.bind(&mut out)?;
        }
        out.push_sql(")");
        out.push_sql(self.tail);
        Ok(())
    }
}

impl QueryId for Unnest<'_> {
    type QueryId = ();
    // Cached by its SQL text, which the head and tail fix.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Unnest<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for Unnest<'_> {}

#[derive(QueryableByName)]
struct InsertedTask {
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = Text)]
    identity_hash: String,
}

#[derive(QueryableByName)]
struct InsertedStep {
    #[diesel(sql_type = BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = Text)]
    name: String,
}

/// Inserts task rows, skipping those whose identity hash or idempotency key is taken; returns
/// the id and identity hash of each inserted one.
pub(super) fn insert_tasks(
    c: &mut PgConnection,
    rows: &[NewTaskRow<'_>],
) -> QueryResult<Vec<(i64, String)>> {
    let inserted: Vec<InsertedTask> = Unnest::new(
        "INSERT INTO tasker_tasks (named_task_id, concurrent, requested_at, initiator, \
           source_system, reason, bypass_steps, tags, context, identity_hash, idempotency_key, \
           priority, correlation_id) SELECT * FROM ",
        " ON CONFLICT DO NOTHING RETURNING task_id, identity_hash",
    )
    .column(column::<_, BigInt, _>(rows, |r| r.named_task_id))
    .column(column::<_, Bool, _>(rows, |r| r.concurrent))
    .column(column::<_, diesel::sql_types::Timestamp, _>(rows, |r| {
        r.requested_at
    }))
    .column(column::<_, Text, _>(rows, |r| r.initiator))
    .column(column::<_, Text, _>(rows, |r| r.source_system))
    .column(column::<_, Text, _>(rows, |r| r.reason))
    .column(column::<_, Text, _>(rows, |r| r.bypass_steps))
    .column(column::<_, Text, _>(rows, |r| r.tags))
    .column(column::<_, Text, _>(rows, |r| r.context))
    .column(column::<_, Text, _>(rows, |r| r.identity_hash))
    .column(column::<_, Nullable<Text>, _>(rows, |r| r.idempotency_key))
    .column(column::<_, Integer, _>(rows, |r| r.priority))
    .column(column::<_, Text, _>(rows, |r| r.correlation_id))
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
    let inserted: Vec<InsertedStep> = Unnest::new(
        &head,
        " AS r(task_id, named_step_id, name, state, retryable, retry_limit, skippable, \
              remaining_parents, priority, ready) \
         RETURNING workflow_step_id, task_id, name",
    )
    .column(column::<_, BigInt, _>(rows, |r| r.task_id))
    .column(column::<_, BigInt, _>(rows, |r| r.named_step_id))
    .column(column::<_, Text, _>(rows, |r| r.name))
    .column(column::<_, Text, _>(rows, |r| r.state))
    .column(column::<_, Bool, _>(rows, |r| r.retryable))
    .column(column::<_, Integer, _>(rows, |r| r.retry_limit))
    .column(column::<_, Bool, _>(rows, |r| r.skippable))
    .column(column::<_, Integer, _>(rows, |r| r.remaining_parents))
    .column(column::<_, Integer, _>(rows, |r| r.priority))
    .column(column::<_, Bool, _>(rows, |r| r.ready))
    .load(c)?;
    Ok(inserted
        .into_iter()
        .map(|s| (s.workflow_step_id, s.task_id, s.name))
        .collect())
}

/// Inserts dependency edges, `(from, to)` step ids.
pub(super) fn insert_edges(c: &mut PgConnection, edges: &[(i64, i64)]) -> QueryResult<usize> {
    Unnest::new(
        "INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id) SELECT * FROM ",
        "",
    )
    .column(column::<_, BigInt, _>(edges, |e| e.0))
    .column(column::<_, BigInt, _>(edges, |e| e.1))
    .execute(c)
}
