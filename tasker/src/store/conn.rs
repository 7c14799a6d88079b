//! One connection of either backend, and the few things that differ between them.
//!
//! Queries are built once with diesel's DSL, which is backend-neutral until a query runs, and run
//! through [`Conn`], which hands each to the concrete connection. diesel's `MultiConnection`
//! would do the same dispatch, but its backend cannot run several things this store depends on:
//! multi-row `INSERT`s (steps, edges and transitions are inserted in one statement each), and the
//! per-backend SQL below (`FOR UPDATE SKIP LOCKED`, `NOTIFY`, `BEGIN IMMEDIATE`, the clock).

#[cfg(feature = "postgres")]
use diesel::connection::SimpleConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::prelude::*;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::query_dsl::LoadQuery;
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
use diesel::sqlite::{Sqlite, SqliteConnection};

use crate::error::Result;

#[cfg(feature = "postgres")]
use diesel::pg::{Pg, PgConnection};

/// The channel PostgreSQL `NOTIFY`s when steps become ready.
#[cfg(feature = "postgres")]
pub(crate) const READY_CHANNEL: &str = "tasker_ready";

/// PostgreSQL's clock as a UTC timestamp (the columns are `timestamp without time zone`).
#[cfg(feature = "postgres")]
pub(crate) const PG_NOW: &str = "(now() AT TIME ZONE 'UTC')";

/// A borrowed connection to SQLite or PostgreSQL.
pub(crate) enum Conn<'a> {
    Sqlite(&'a mut SqliteConnection),
    #[cfg(feature = "postgres")]
    Postgres(&'a mut PgConnection),
}

/// A query that returns rows of `U` on every compiled-in backend.
#[cfg(feature = "postgres")]
pub(crate) trait Load<'q, U>:
    LoadQuery<'q, SqliteConnection, U> + LoadQuery<'q, PgConnection, U>
{
}
#[cfg(feature = "postgres")]
impl<'q, U, T> Load<'q, U> for T where
    T: LoadQuery<'q, SqliteConnection, U> + LoadQuery<'q, PgConnection, U>
{
}
/// A query that returns rows of `U` on every compiled-in backend.
#[cfg(not(feature = "postgres"))]
pub(crate) trait Load<'q, U>: LoadQuery<'q, SqliteConnection, U> {}
#[cfg(not(feature = "postgres"))]
impl<'q, U, T> Load<'q, U> for T where T: LoadQuery<'q, SqliteConnection, U> {}

/// A statement that runs on every compiled-in backend.
#[cfg(feature = "postgres")]
pub(crate) trait Execute:
    ExecuteDsl<SqliteConnection> + ExecuteDsl<PgConnection> + RunQueryDsl<SqliteConnection>
{
}
#[cfg(feature = "postgres")]
impl<T> Execute for T where
    T: ExecuteDsl<SqliteConnection> + ExecuteDsl<PgConnection> + RunQueryDsl<SqliteConnection>
{
}
/// A statement that runs on every compiled-in backend.
#[cfg(not(feature = "postgres"))]
pub(crate) trait Execute:
    ExecuteDsl<SqliteConnection> + RunQueryDsl<SqliteConnection>
{
}
#[cfg(not(feature = "postgres"))]
impl<T> Execute for T where T: ExecuteDsl<SqliteConnection> + RunQueryDsl<SqliteConnection> {}

/// A value bound to a hand-written statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bind<'a> {
    BigInt(i64),
    Integer(i32),
    Text(&'a str),
}

/// Rows a hand-written statement returns, on every compiled-in backend.
#[cfg(feature = "postgres")]
pub(crate) trait ByName: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static {}
#[cfg(feature = "postgres")]
impl<T: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static> ByName for T {}
/// Rows a hand-written statement returns, on every compiled-in backend.
#[cfg(not(feature = "postgres"))]
pub(crate) trait ByName: QueryableByName<Sqlite> + 'static {}
#[cfg(not(feature = "postgres"))]
impl<T: QueryableByName<Sqlite> + 'static> ByName for T {}

fn bound<'a, DB>(sql: &str, binds: &[Bind<'a>]) -> BoxedSqlQuery<'a, DB, SqlQuery>
where
    DB: diesel::backend::Backend,
    i64: diesel::serialize::ToSql<BigInt, DB>,
    i32: diesel::serialize::ToSql<Integer, DB>,
    str: diesel::serialize::ToSql<Text, DB>,
    DB: diesel::sql_types::HasSqlType<BigInt>
        + diesel::sql_types::HasSqlType<Integer>
        + diesel::sql_types::HasSqlType<Text>,
{
    let mut query = diesel::sql_query(sql).into_boxed::<DB>();
    for bind in binds {
        query = match *bind {
            Bind::BigInt(v) => query.bind::<BigInt, _>(v),
            Bind::Integer(v) => query.bind::<Integer, _>(v),
            Bind::Text(v) => query.bind::<Text, _>(v),
        };
    }
    query
}

impl Conn<'_> {
    /// Runs a statement; returns the rows it touched.
    pub(crate) fn execute<Q: Execute>(&mut self, query: Q) -> QueryResult<usize> {
        match self {
            Conn::Sqlite(c) => ExecuteDsl::<SqliteConnection>::execute(query, c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => ExecuteDsl::<PgConnection>::execute(query, c),
        }
    }

    /// Runs a query; returns its rows.
    pub(crate) fn load<'q, U, Q: Load<'q, U>>(&mut self, query: Q) -> QueryResult<Vec<U>> {
        match self {
            Conn::Sqlite(c) => RunQueryDsl::<SqliteConnection>::load(query, c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => RunQueryDsl::<PgConnection>::load(query, c),
        }
    }

    /// Runs a query that returns one row.
    pub(crate) fn get_result<'q, U, Q: Load<'q, U>>(&mut self, query: Q) -> QueryResult<U> {
        match self {
            Conn::Sqlite(c) => RunQueryDsl::<SqliteConnection>::get_result(query, c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => RunQueryDsl::<PgConnection>::get_result(query, c),
        }
    }

    /// Runs hand-written SQL with bound values (placeholders from [`Conn::placeholder`]).
    pub(crate) fn load_sql<U: ByName>(
        &mut self,
        sql: &str,
        binds: &[Bind<'_>],
    ) -> QueryResult<Vec<U>> {
        match self {
            Conn::Sqlite(c) => bound::<Sqlite>(sql, binds).load(*c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => bound::<Pg>(sql, binds).load(*c),
        }
    }

    /// Runs hand-written SQL built from constants and integers only.
    pub(crate) fn execute_sql(&mut self, sql: &str) -> QueryResult<usize> {
        self.execute(diesel::sql_query(sql))
    }

    /// The `n`th (1-based) bind placeholder of hand-written SQL.
    pub(crate) fn placeholder(&self, n: usize) -> String {
        match self {
            // `?NNN` numbers the bind explicitly, as PostgreSQL's `$N` does.
            Conn::Sqlite(_) => format!("?{n}"),
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => format!("${n}"),
        }
    }

    /// Runs `f` in a write transaction (a savepoint inside a caller's transaction).
    pub(crate) fn write<T>(&mut self, f: impl FnOnce(&mut Conn<'_>) -> Result<T>) -> Result<T> {
        match self {
            Conn::Sqlite(c) => {
                // BEGIN IMMEDIATE takes the write lock up front; a deferred transaction that
                // later writes fails with SQLITE_BUSY instead of waiting (reference/deps.md).
                if in_transaction(*c) {
                    c.transaction(|c| f(&mut Conn::Sqlite(c)))
                } else {
                    c.immediate_transaction(|c| f(&mut Conn::Sqlite(c)))
                }
            }
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => c.transaction(|c| f(&mut Conn::Postgres(c))),
        }
    }

    /// The database clock as a UTC timestamp expression.
    pub(crate) fn now_sql(&self) -> &'static str {
        match self {
            Conn::Sqlite(_) => "strftime('%Y-%m-%d %H:%M:%f', 'now')",
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => PG_NOW,
        }
    }

    /// The database clock, for the DSL.
    pub(crate) fn now(&self) -> SqlLiteral<Timestamp> {
        sql::<Timestamp>(self.now_sql())
    }

    /// The database clock plus `seconds`, for nullable columns.
    pub(crate) fn now_plus(&self, seconds: f64) -> SqlLiteral<Nullable<Timestamp>> {
        sql::<Nullable<Timestamp>>(&match self {
            Conn::Sqlite(_) => {
                format!("strftime('%Y-%m-%d %H:%M:%f', 'now', '{seconds:+.6} seconds')")
            }
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => {
                format!("({PG_NOW} + interval '{seconds:.6} seconds')")
            }
        })
    }

    /// A step's `ready_at` kept where it is, or the clock when it has none: a step given back
    /// keeps its place in the queue.
    pub(crate) fn ready_at_kept(&self) -> SqlLiteral<Nullable<Timestamp>> {
        sql::<Nullable<Timestamp>>(&format!("COALESCE(ready_at, {})", self.now_sql()))
    }

    /// The row lock a claim takes on the steps it selects.
    pub(crate) fn claim_lock(&self) -> &'static str {
        match self {
            // One writer at a time: the write transaction is the lock.
            Conn::Sqlite(_) => "",
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => "FOR UPDATE OF s SKIP LOCKED",
        }
    }

    /// Tells other processes that steps became ready (PostgreSQL `NOTIFY`, sent at commit);
    /// SQLite has one process per file in practice and polls otherwise.
    pub(crate) fn notify_ready(&mut self) -> Result<()> {
        match self {
            Conn::Sqlite(_) => Ok(()),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => Ok(c.batch_execute(&format!("NOTIFY {READY_CHANNEL}"))?),
        }
    }
}

fn in_transaction<C>(c: &mut C) -> bool
where
    C: Connection<TransactionManager = AnsiTransactionManager>,
{
    matches!(
        AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
        Ok(Some(_))
    )
}

/// A comma-separated list of ids for hand-written SQL (integers only, never text).
pub(crate) fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}
