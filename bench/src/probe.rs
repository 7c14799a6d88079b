//! The benchmark's own connection to a run's database: progress polling, the ready → start
//! latency query and history seeding, none of which counts as the engine's statements.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::statements;

/// A connection of the benchmark, not the engine's.
pub(crate) enum Probe {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Float {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    v: Option<f64>,
}

impl Probe {
    /// Connects to `url` (a SQLite path or a PostgreSQL URL), uncounted.
    pub(crate) fn connect(url: &str, sqlite: bool) -> Result<Self, String> {
        if sqlite {
            let mut c = SqliteConnection::establish(url).map_err(|e| format!("{url}: {e}"))?;
            statements::silence(&mut c);
            // Cascading deletes need foreign keys on; the wait matches the engine's.
            c.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                .map_err(|e| e.to_string())?;
            Ok(Probe::Sqlite(c))
        } else {
            let mut c = PgConnection::establish(url).map_err(|e| format!("{url}: {e}"))?;
            statements::silence(&mut c);
            Ok(Probe::Postgres(c))
        }
    }

    /// Whether this is SQLite.
    pub(crate) fn is_sqlite(&self) -> bool {
        matches!(self, Probe::Sqlite(_))
    }

    /// Runs statements that return nothing.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Probe::Sqlite(c) => c.batch_execute(sql),
            Probe::Postgres(c) => c.batch_execute(sql),
        }
        .map_err(|e| format!("{e} in: {}", first_line(sql)))
    }

    /// The single `n` of a query (`SELECT COUNT(*) AS n …`).
    pub(crate) fn count(&mut self, sql: &str) -> Result<i64, String> {
        let query = diesel::sql_query(sql);
        match self {
            Probe::Sqlite(c) => query.get_result::<Count>(c),
            Probe::Postgres(c) => query.get_result::<Count>(c),
        }
        .map(|r| r.n)
        .map_err(|e| format!("{e} in: {}", first_line(sql)))
    }

    /// Every non-null `v` of a query.
    pub(crate) fn floats(&mut self, sql: &str) -> Result<Vec<f64>, String> {
        let query = diesel::sql_query(sql);
        match self {
            Probe::Sqlite(c) => query.load::<Float>(c),
            Probe::Postgres(c) => query.load::<Float>(c),
        }
        .map(|rows| rows.into_iter().filter_map(|r| r.v).collect())
        .map_err(|e| format!("{e} in: {}", first_line(sql)))
    }

    /// Tasks in state `complete`.
    pub(crate) fn complete_tasks(&mut self) -> Result<i64, String> {
        self.count("SELECT COUNT(*) AS n FROM tasker_tasks WHERE state = 'complete'")
    }

    /// Milliseconds from ready to first start of every started step, both read from the
    /// database's clock: ready is the latest `→ complete` transition of its parents, or its
    /// task's `created_at` for a root step; start is its first `pending → in_progress`.
    pub(crate) fn ready_to_start_ms(&mut self) -> Result<Vec<f64>, String> {
        let ms = if self.is_sqlite() {
            "(julianday(st.at) - julianday(COALESCE(p.at, k.created_at))) * 86400000.0"
        } else {
            "(EXTRACT(EPOCH FROM (st.at - COALESCE(p.at, k.created_at))) * 1000.0)::float8"
        };
        self.floats(&format!(
            "WITH started AS ( \
               SELECT workflow_step_id AS step_id, MIN(created_at) AS at \
               FROM tasker_workflow_step_transitions \
               WHERE from_state = 'pending' AND to_state = 'in_progress' \
               GROUP BY workflow_step_id), \
             parents_done AS ( \
               SELECT e.to_step_id AS step_id, MAX(t.created_at) AS at \
               FROM tasker_workflow_step_edges e \
               JOIN tasker_workflow_step_transitions t \
                 ON t.workflow_step_id = e.from_step_id AND t.to_state = 'complete' \
               GROUP BY e.to_step_id) \
             SELECT {ms} AS v \
             FROM tasker_workflow_steps s \
             JOIN tasker_tasks k ON k.task_id = s.task_id \
             JOIN started st ON st.step_id = s.workflow_step_id \
             LEFT JOIN parents_done p ON p.step_id = s.workflow_step_id"
        ))
    }
}

fn first_line(sql: &str) -> &str {
    let sql = sql.trim_start();
    sql.char_indices().nth(120).map_or(sql, |(i, _)| &sql[..i])
}
