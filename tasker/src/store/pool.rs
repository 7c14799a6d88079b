//! The connection pool: per-session settings, health checks without a round trip per checkout,
//! and the per-file lane through which this process's SQLite writes go (`lane.rs`).

#[cfg(feature = "sqlite")]
use std::collections::HashMap;
#[cfg(feature = "sqlite")]
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{
    ConnectionManager, CustomizeConnection, ManageConnection, Pool as R2d2Pool, R2D2Connection,
};
#[cfg(feature = "sqlite")]
use diesel::sqlite::SqliteConnection;

#[cfg(feature = "sqlite")]
use super::lane::Lane;
use crate::error::{Error, Result};

#[cfg(feature = "sqlite")]
#[derive(Debug)]
pub(super) struct SqlitePragmas {
    pub(super) busy_timeout: Duration,
}

#[cfg(feature = "sqlite")]
impl CustomizeConnection<Pooled<SqliteConnection>, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(
        &self,
        pooled: &mut Pooled<SqliteConnection>,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        let conn = &mut pooled.conn;
        // WAL lets readers run beside the one writer; NORMAL syncs at checkpoints, which keeps
        // every committed transaction across a process crash (not across power loss).
        conn.batch_execute(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON;",
            self.busy_timeout.as_millis()
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Deadlines on every PostgreSQL session, so no call waits forever on a stuck server.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(super) struct PgSession {
    pub(super) statement_timeout: Duration,
}

#[cfg(feature = "postgres")]
impl CustomizeConnection<Pooled<diesel::pg::PgConnection>, diesel::r2d2::Error> for PgSession {
    fn on_acquire(
        &self,
        pooled: &mut Pooled<diesel::pg::PgConnection>,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        let conn = &mut pooled.conn;
        let ms = self.statement_timeout.as_millis().max(1);
        conn.batch_execute(&format!(
            "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms}; \
             SET lock_timeout = {ms}"
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// `url` with libpq's connection deadlines added where it sets none: a connect timeout, and
/// TCP keepalives and a user timeout so a connection to a vanished server fails instead of
/// hanging (a server-side `statement_timeout` cannot end a call the network swallowed).
#[cfg(feature = "postgres")]
pub(crate) fn with_deadlines(url: &str, connect: Duration, statement: Duration) -> String {
    let mut out = url.to_owned();
    let defaults = [
        ("connect_timeout", connect.as_secs().max(1).to_string()),
        ("keepalives_idle", "10".to_owned()),
        ("keepalives_interval", "5".to_owned()),
        ("keepalives_count", "3".to_owned()),
        (
            "tcp_user_timeout",
            (statement.as_millis() + 5000).to_string(),
        ),
    ];
    for (key, value) in defaults {
        if !url.contains(&format!("{key}=")) {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(&format!("{key}={value}"));
        }
    }
    out
}

/// `url` with `schema` first on every session's `search_path` (libpq's `options`). The name is
/// checked to be a plain lowercase identifier, since a schema name cannot be a bound value.
#[cfg(feature = "postgres")]
pub(crate) fn with_schema(url: &str, schema: &str) -> Result<String> {
    let refused = |problem| Error::InvalidPostgresSchema {
        schema: schema.to_owned(),
        problem,
    };
    let plain = schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(refused(
            "expected 1 to 63 lowercase letters, digits and `_`, not starting with a digit",
        ));
    }
    if url.contains("options=") {
        return Err(refused(
            "the database URL sets `options` already; put `-csearch_path=…` there instead",
        ));
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}options=-csearch_path%3D{schema}"))
}

/// How [`Store::connect_with`](super::Store::connect_with) connects.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Most connections in the pool.
    pub pool_size: u32,
    /// How long to wait for a pooled (or new) connection.
    pub connection_timeout: Duration,
    /// Deadline of every statement (see [`crate::TaskerConfig::statement_timeout`]).
    pub statement_timeout: Duration,
}

/// The write lane of each SQLite file this process has open, by canonical path: every pool on
/// a file shares it, so this process's writes to the file never contend with each other for
/// SQLite's one write lock (contending connections meet `SQLITE_BUSY`, and SQLite's busy
/// handler sleeps for milliseconds). Other processes on the same file wait in `busy_timeout`.
#[cfg(feature = "sqlite")]
fn sqlite_lane(path: &str) -> Arc<Lane> {
    static LANES: std::sync::OnceLock<std::sync::Mutex<HashMap<std::path::PathBuf, Arc<Lane>>>> =
        std::sync::OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
    let mut lanes = LANES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
    Arc::clone(lanes.entry(key).or_default())
}

/// A pooled connection, with what the pool knows of its health.
pub(crate) struct Pooled<C> {
    pub(crate) conn: C,
    /// When an operation on it last succeeded.
    last_ok: std::time::Instant,
    /// An operation on it failed at the database level: the pool drops it instead of reusing it.
    failed: bool,
}

impl<C> Pooled<C> {
    /// Makes the pool drop this connection when it comes back.
    #[cfg(feature = "sqlite")]
    pub(crate) fn mark_failed(&mut self) {
        self.failed = true;
    }

    /// Records how an operation on this connection ended.
    pub(crate) fn settle<T>(&mut self, result: &Result<T>) {
        match result {
            Ok(_) | Err(Error::Database(diesel::result::Error::NotFound)) => {
                self.last_ok = std::time::Instant::now();
            }
            Err(Error::Database(_)) => self.failed = true,
            Err(_) => {}
        }
    }
}

/// How long after a successful operation a connection is handed out again without a check.
/// Checking every checkout (r2d2's default `SELECT 1`) was a round trip for nearly every step;
/// a connection that fails is dropped when it is returned instead, so after a database restart
/// each stale connection fails one call, which the worker retries on a fresh one.
const TRUSTED_FOR: Duration = Duration::from_secs(5);

/// diesel's connection manager, checking a connection only when it has been idle a while.
pub(crate) struct Manager<C: R2D2Connection + 'static>(pub(super) ConnectionManager<C>);

impl<C: R2D2Connection + Send + 'static> ManageConnection for Manager<C> {
    type Connection = Pooled<C>;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> std::result::Result<Pooled<C>, diesel::r2d2::Error> {
        Ok(Pooled {
            conn: self.0.connect()?,
            last_ok: std::time::Instant::now(),
            failed: false,
        })
    }

    fn is_valid(&self, pooled: &mut Pooled<C>) -> std::result::Result<(), diesel::r2d2::Error> {
        if pooled.last_ok.elapsed() < TRUSTED_FOR {
            return Ok(());
        }
        self.0.is_valid(&mut pooled.conn)?;
        pooled.last_ok = std::time::Instant::now();
        Ok(())
    }

    fn has_broken(&self, pooled: &mut Pooled<C>) -> bool {
        pooled.failed || self.0.has_broken(&mut pooled.conn)
    }
}

pub(crate) enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(R2d2Pool<Manager<SqliteConnection>>, Arc<Lane>),
    #[cfg(feature = "postgres")]
    Postgres(R2d2Pool<Manager<diesel::pg::PgConnection>>),
}

impl Pool {
    /// Opens a pool to `url`: `postgres://…`/`postgresql://…` for PostgreSQL, anything else (a
    /// path, optionally `sqlite://`-prefixed) for a SQLite file, created if missing.
    pub(super) fn open(url: &str, options: ConnectOptions) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url, options)
        } else {
            Self::open_sqlite(url, options)
        }
    }

    #[cfg(feature = "postgres")]
    fn open_postgres(url: &str, options: ConnectOptions) -> Result<Self> {
        let url = with_deadlines(url, options.connection_timeout, options.statement_timeout);
        // The pool retries a refused connection until `connection_timeout` and then reports
        // only that it timed out; one attempt first fails at once with the server's reason (a
        // misspelt database, a wrong password).
        <diesel::pg::PgConnection as diesel::Connection>::establish(&url)?;
        let manager = Manager(ConnectionManager::<diesel::pg::PgConnection>::new(url));
        Ok(Pool::Postgres(
            R2d2Pool::builder()
                .max_size(options.pool_size.max(2))
                .min_idle(Some(1))
                .connection_timeout(options.connection_timeout)
                .connection_customizer(Box::new(PgSession {
                    statement_timeout: options.statement_timeout,
                }))
                .build(manager)?,
        ))
    }

    #[cfg(not(feature = "postgres"))]
    fn open_postgres(_: &str, _: ConnectOptions) -> Result<Self> {
        Err(Error::PostgresDisabled)
    }

    fn open_sqlite(url: &str, options: ConnectOptions) -> Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path.contains("://") {
            return Err(Error::UnsupportedUrl(url.to_owned()));
        }
        Self::open_sqlite_file(path, options)
    }

    #[cfg(not(feature = "sqlite"))]
    fn open_sqlite_file(_: &str, _: ConnectOptions) -> Result<Self> {
        Err(Error::SqliteDisabled)
    }

    #[cfg(feature = "sqlite")]
    fn open_sqlite_file(path: &str, options: ConnectOptions) -> Result<Self> {
        // Every connection to `:memory:` is its own database, so it gets exactly one.
        let size = if path == ":memory:" {
            1
        } else {
            options.pool_size.max(2)
        };
        // As for PostgreSQL: an unopenable file is reported at once, with SQLite's reason.
        if path != ":memory:" {
            <SqliteConnection as diesel::Connection>::establish(path)?;
        }
        let manager = Manager(ConnectionManager::<SqliteConnection>::new(path));
        let pool = R2d2Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .connection_timeout(options.connection_timeout)
            .connection_customizer(Box::new(SqlitePragmas {
                busy_timeout: options.statement_timeout,
            }))
            .build(manager)?;
        // After the pool opened (and so created) the file, so the path canonicalises.
        Ok(Pool::Sqlite(pool, sqlite_lane(path)))
    }

    /// Runs `f` on a pooled connection, and records whether the connection is still good.
    /// For reads: on SQLite they run beside the writer (WAL), outside its lane.
    pub(super) fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut super::Conn<'_>) -> Result<T>,
    ) -> Result<T> {
        match self {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool, _) => {
                let mut pooled = pool.get()?;
                let result = f(&mut super::Conn::Sqlite(&mut pooled.conn));
                pooled.settle(&result);
                result
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                let mut pooled = pool.get()?;
                let result = f(&mut super::Conn::Postgres(&mut pooled.conn));
                pooled.settle(&result);
                result
            }
        }
    }

    /// Runs the write `f`: on SQLite in the file's lane, where it may share its transaction
    /// with writes made at the same time (see `lane.rs`); on PostgreSQL like [`Pool::with_conn`].
    pub(super) fn write_conn<T>(
        &self,
        f: impl FnOnce(&mut super::Conn<'_>) -> Result<T>,
    ) -> Result<T> {
        match self {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool, lane) => lane.write(pool, f),
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => self.with_conn(f),
        }
    }
}
