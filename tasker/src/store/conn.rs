//! One connection of either backend, and the few things that differ between them.
//!
//! Queries are built once with diesel's DSL, which is backend-neutral until a query runs, and run
//! through [`Conn`], which hands each to the concrete connection. diesel's `MultiConnection`
//! would do the same dispatch, but its backend cannot run several things this store depends on:
//! multi-row `INSERT`s (steps, edges and transitions are inserted in one statement each), and the
//! per-backend SQL below (`FOR UPDATE SKIP LOCKED`, `NOTIFY`, `BEGIN IMMEDIATE`, the clock).

use diesel::backend::Backend;
#[cfg(feature = "postgres")]
use diesel::connection::SimpleConnection;
#[cfg(feature = "sqlite")]
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::prelude::*;
use diesel::query_dsl::LoadQuery;
use diesel::query_dsl::methods::ExecuteDsl;
#[cfg(feature = "postgres")]
use diesel::sql_types::{Array, BigInt};
use diesel::sql_types::{Bool, Integer, Nullable, Text, Timestamp};
#[cfg(feature = "sqlite")]
use diesel::sqlite::{Sqlite, SqliteConnection};

use super::prepared::Prepared;
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
    #[cfg(feature = "sqlite")]
    Sqlite(&'a mut SqliteConnection),
    #[cfg(feature = "postgres")]
    Postgres(&'a mut PgConnection),
}

/// Defines `$name` as the bound `$bound` where backend `$feature` is compiled in, and as no
/// bound where it is not, so the traits below can ask it of every compiled-in backend.
macro_rules! backend_bound {
    ($feature:literal, $name:ident[$($params:tt)*]: $($bound:tt)+) => {
        #[cfg(feature = $feature)]
        pub(crate) trait $name<$($params)*>: $($bound)+ {}
        #[cfg(feature = $feature)]
        impl<$($params)* T: $($bound)+> $name<$($params)*> for T {}
        #[cfg(not(feature = $feature))]
        pub(crate) trait $name<$($params)*> {}
        #[cfg(not(feature = $feature))]
        impl<$($params)* T> $name<$($params)*> for T {}
    };
}

backend_bound!("sqlite", LoadSqlite['q, U,]: LoadQuery<'q, SqliteConnection, U>);
backend_bound!("postgres", LoadPg['q, U,]: LoadQuery<'q, PgConnection, U>);
backend_bound!("sqlite", ExecuteSqlite[]: ExecuteDsl<SqliteConnection> + RunQueryDsl<SqliteConnection>);
backend_bound!("postgres", ExecutePg[]: ExecuteDsl<PgConnection>);
backend_bound!("sqlite", ByNameSqlite[]: QueryableByName<Sqlite>);
backend_bound!("postgres", ByNamePg[]: QueryableByName<Pg>);

/// A query that returns rows of `U` on every compiled-in backend.
pub(crate) trait Load<'q, U>: LoadSqlite<'q, U> + LoadPg<'q, U> {}
impl<'q, U, T: LoadSqlite<'q, U> + LoadPg<'q, U>> Load<'q, U> for T {}

/// A statement that runs on every compiled-in backend.
pub(crate) trait Execute: ExecuteSqlite + ExecutePg {}
impl<T: ExecuteSqlite + ExecutePg> Execute for T {}

/// Rows a hand-written statement returns, on every compiled-in backend.
pub(crate) trait ByName: ByNameSqlite + ByNamePg + 'static {}
impl<T: ByNameSqlite + ByNamePg + 'static> ByName for T {}

/// The test clock's offset as a further `strftime` modifier, in builds with `tasker::testing`
/// (feature `testing`, a dev-dependency's, so tests get it and production builds do not pay
/// for the lookup); nothing otherwise.
#[cfg(all(feature = "sqlite", feature = "testing"))]
macro_rules! sqlite_offset {
    () => {
        ", (SELECT offset_seconds || ' seconds' FROM tasker_clock)"
    };
}
#[cfg(all(feature = "sqlite", not(feature = "testing")))]
macro_rules! sqlite_offset {
    () => {
        ""
    };
}

/// SQLite's clock: the system's, moved by `tasker_clock`'s offset under `tasker::testing`.
#[cfg(feature = "sqlite")]
const SQLITE_NOW: &str = concat!("strftime('%Y-%m-%d %H:%M:%f', 'now'", sqlite_offset!(), ")");

/// A compiled-in backend, for the select clauses diesel derives per backend (they read the same
/// on both).
#[cfg(feature = "sqlite")]
pub(crate) type SomeBackend = Sqlite;
/// A compiled-in backend, for the select clauses diesel derives per backend (they read the same
/// on both).
#[cfg(not(feature = "sqlite"))]
pub(crate) type SomeBackend = Pg;

/// A value bound to a hand-written statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bind<'a> {
    Integer(i32),
    Bool(bool),
    Text(&'a str),
    /// A list of ids, for [`Conn::in_ids`]: an array on PostgreSQL, JSON text on SQLite.
    Ids(&'a [i64]),
}

/// How a backend binds a [`Bind`].
pub(crate) trait Binds: Backend + Sized {
    /// `prepared` with `bind` bound to its next placeholder.
    fn bind<'a>(prepared: Prepared<'a, Self>, bind: Bind<'a>) -> Prepared<'a, Self>;
}

#[cfg(feature = "sqlite")]
impl Binds for Sqlite {
    fn bind<'a>(prepared: Prepared<'a, Self>, bind: Bind<'a>) -> Prepared<'a, Self> {
        match bind {
            Bind::Integer(v) => prepared.bind::<Integer, _>(v),
            Bind::Bool(v) => prepared.bind::<Bool, _>(v),
            Bind::Text(v) => prepared.bind::<Text, _>(v),
            Bind::Ids(ids) => prepared.bind::<Text, _>(format!("[{}]", id_list(ids))),
        }
    }
}

#[cfg(feature = "postgres")]
impl Binds for Pg {
    fn bind<'a>(prepared: Prepared<'a, Self>, bind: Bind<'a>) -> Prepared<'a, Self> {
        match bind {
            Bind::Integer(v) => prepared.bind::<Integer, _>(v),
            Bind::Bool(v) => prepared.bind::<Bool, _>(v),
            Bind::Text(v) => prepared.bind::<Text, _>(v),
            Bind::Ids(ids) => prepared.bind::<Array<BigInt>, _>(ids),
        }
    }
}

/// `sql` with `binds`, prepared once per connection.
fn prepared<'a, DB: Binds>(sql: &'a str, binds: &[Bind<'a>]) -> Prepared<'a, DB> {
    binds.iter().fold(Prepared::new(sql), |prepared, bind| {
        DB::bind(prepared, *bind)
    })
}

impl Conn<'_> {
    /// Runs a statement; returns the rows it touched.
    pub(crate) fn execute<Q: Execute>(&mut self, query: Q) -> QueryResult<usize> {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => ExecuteDsl::<SqliteConnection>::execute(query, c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => ExecuteDsl::<PgConnection>::execute(query, c),
        }
    }

    /// Runs a query; returns its rows.
    pub(crate) fn load<'q, U, Q: Load<'q, U>>(&mut self, query: Q) -> QueryResult<Vec<U>> {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => RunQueryDsl::<SqliteConnection>::load(query, c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => RunQueryDsl::<PgConnection>::load(query, c),
        }
    }

    /// Runs a query that returns one row.
    pub(crate) fn get_result<'q, U, Q: Load<'q, U>>(&mut self, query: Q) -> QueryResult<U> {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => RunQueryDsl::<SqliteConnection>::get_result(query, c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => RunQueryDsl::<PgConnection>::get_result(query, c),
        }
    }

    /// Runs hand-written SQL with bound values, placeholders `$1`, `$2`, … each used once, in
    /// order. The statement is prepared once per connection, so its text must not depend on
    /// the batch: lists go through [`Conn::in_ids`] and [`Bind::Ids`].
    pub(crate) fn load_sql<U: ByName>(
        &mut self,
        sql: &str,
        binds: &[Bind<'_>],
    ) -> QueryResult<Vec<U>> {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => prepared::<Sqlite>(sql, binds).load(*c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => prepared::<Pg>(sql, binds).load(*c),
        }
    }

    /// Runs a hand-written statement as [`Conn::load_sql`] does; returns the rows it touched.
    pub(crate) fn execute_sql(&mut self, sql: &str, binds: &[Bind<'_>]) -> QueryResult<usize> {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => prepared::<Sqlite>(sql, binds).execute(*c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => prepared::<Pg>(sql, binds).execute(*c),
        }
    }

    /// Rows bound as one JSON array of arrays (text) to placeholder `$n`: a `SELECT` with one
    /// column per `(name, PostgreSQL type)`, taken from each inner array in order.
    pub(crate) fn json_rows(&self, n: usize, columns: &[(&str, &str)]) -> String {
        let fields = columns.iter().enumerate();
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => {
                // `jsonb_each` parses the text once; each row is then binary JSONB, which
                // `->>` reads without parsing the row's text again for every column.
                let fields: Vec<String> = fields
                    .map(|(i, (name, _))| format!("value ->> {i} AS {name}"))
                    .collect();
                format!("SELECT {} FROM jsonb_each(${n})", fields.join(", "))
            }
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => {
                let fields: Vec<String> = fields
                    .map(|(i, (name, pg_type))| format!("(e->>{i})::{pg_type} AS {name}"))
                    .collect();
                format!(
                    "SELECT {} FROM json_array_elements(${n}::json) e",
                    fields.join(", ")
                )
            }
        }
    }

    /// `column` is one of the ids bound (as [`Bind::Ids`]) to placeholder `$n`.
    pub(crate) fn in_ids(&self, column: &str, n: usize) -> String {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => format!("{column} IN (SELECT value FROM json_each(${n}))"),
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => format!("{column} = ANY(${n})"),
        }
    }

    /// Runs `f` in a write transaction (a savepoint inside a caller's transaction).
    pub(crate) fn write<T>(&mut self, f: impl FnOnce(&mut Conn<'_>) -> Result<T>) -> Result<T> {
        match self {
            #[cfg(feature = "sqlite")]
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

    /// Seconds from timestamp expression `from` to `to`, as a double.
    pub(crate) fn seconds_between(&self, from: &str, to: &str) -> String {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => format!("((julianday({to}) - julianday({from})) * 86400.0)"),
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => {
                format!("CAST(EXTRACT(EPOCH FROM ({to} - {from})) AS DOUBLE PRECISION)")
            }
        }
    }

    /// The database clock as a UTC timestamp expression.
    pub(crate) fn now_sql(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => SQLITE_NOW,
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
        sql::<Nullable<Timestamp>>(&self.now_plus_sql(seconds))
    }

    /// The database clock plus `seconds`, for hand-written SQL.
    pub(crate) fn now_plus_sql(&self, seconds: f64) -> String {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => format!(
                concat!(
                    "strftime('%Y-%m-%d %H:%M:%f', 'now'",
                    sqlite_offset!(),
                    ", '{:+.6} seconds')"
                ),
                seconds
            ),
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => format!("({PG_NOW} + interval '{seconds:.6} seconds')"),
        }
    }

    /// The timestamp expression `base` plus `seconds`, for hand-written SQL.
    pub(crate) fn plus_seconds_sql(&self, base: &str, seconds: f64) -> String {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => {
                format!("strftime('%Y-%m-%d %H:%M:%f', {base}, '{seconds:+.6} seconds')")
            }
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => format!("({base} + interval '{seconds:.6} seconds')"),
        }
    }

    /// A UTC time as a timestamp literal (chrono formats it, so nothing of a caller's reaches
    /// the SQL text), in the form the backend's clock writes.
    pub(crate) fn timestamp_sql(&self, at: chrono::NaiveDateTime) -> String {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => format!("'{}'", at.format("%Y-%m-%d %H:%M:%S%.3f")),
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => format!("TIMESTAMP '{}'", at.format("%Y-%m-%d %H:%M:%S%.6f")),
        }
    }

    /// The lock a worker takes on rows it selects to update while others may do the same.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => "",
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        }
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
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => "",
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => "FOR UPDATE OF s SKIP LOCKED",
        }
    }

    /// Tells other processes that steps became ready (PostgreSQL `NOTIFY`, sent at commit);
    /// SQLite has one process per file in practice and polls otherwise.
    pub(crate) fn notify_ready(&mut self) -> Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => Ok(()),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => Ok(c.batch_execute(&format!("NOTIFY {READY_CHANNEL}"))?),
        }
    }
}

#[cfg(feature = "sqlite")]
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
#[cfg(feature = "sqlite")]
fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}
