//! Test support: a throwaway database per test on SQLite or PostgreSQL, and checks shared by the
//! conformance suite.
//!
//! PostgreSQL tests run when `TASKER_TEST_POSTGRES_URL` names a server (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test gets its own schema, dropped
//! afterwards. Without the variable they are skipped with a notice, unless
//! `TASKER_TEST_REQUIRE_POSTGRES=1`, which makes a missing server a failure (CI sets both).

use std::io::Write;
use std::sync::Once;
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use tasker::{BackoffConfig, StepState, TaskState, Tasker, TaskerBuilder};

/// The backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh schema on the PostgreSQL server named by `TASKER_TEST_POSTGRES_URL`.
    Postgres,
}

/// A database that exists for one test and is removed after it.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL the engine connects to.
    pub url: String,
    /// The backend.
    pub kind: Kind,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDatabase {
    /// A SQLite file in a fresh temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = dir.path().join("tasker.db").display().to_string();
        Self {
            url,
            kind: Kind::Sqlite,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh schema on the test PostgreSQL server, or `None` (with a notice) when none is set.
    pub fn postgres(test: &str) -> Option<Self> {
        let Ok(server) = std::env::var("TASKER_TEST_POSTGRES_URL") else {
            if std::env::var("TASKER_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("TASKER_TEST_REQUIRE_POSTGRES=1 but TASKER_TEST_POSTGRES_URL is not set");
            }
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                // Written to the real stderr so the notice shows even though tests capture output.
                let _ = writeln!(
                    std::io::stderr(),
                    "notice: PostgreSQL tests skipped: set TASKER_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB to run them"
                );
            });
            let _ = test;
            return None;
        };
        let schema = format!("tasker_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = diesel::pg::PgConnection::establish(&server)
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {server}: {e}"));
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("create test schema");
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options=-csearch_path%3D{schema}");
        Some(Self {
            url,
            kind: Kind::Postgres,
            _dir: None,
            pg: Some((server, schema)),
        })
    }

    /// An engine builder on this database with settings that keep tests quick: short leases,
    /// frequent sweeps, fixed 50 ms backoff.
    pub fn builder(&self) -> TaskerBuilder {
        let url = self.url.clone();
        Tasker::builder().configure(move |c| {
            c.database_url = url;
            c.pool_size = 6;
            c.lease = Duration::from_secs(5);
            c.heartbeat = Duration::from_millis(500);
            c.sweep_interval = Duration::from_millis(100);
            c.max_poll_interval = Duration::from_millis(100);
            c.shutdown_grace = Duration::from_secs(5);
            c.backoff = BackoffConfig::fixed(Duration::from_millis(50));
            c.environment = None;
        })
    }

    /// Runs `f` on a plain diesel connection to this database.
    pub fn with_sqlite<T>(&self, f: impl FnOnce(&mut diesel::sqlite::SqliteConnection) -> T) -> T {
        let mut conn =
            diesel::sqlite::SqliteConnection::establish(&self.url).expect("sqlite connection");
        conn.batch_execute("PRAGMA busy_timeout = 10000")
            .expect("busy timeout");
        f(&mut conn)
    }

    /// Runs `f` on a plain diesel connection to this database.
    pub fn with_postgres<T>(&self, f: impl FnOnce(&mut diesel::pg::PgConnection) -> T) -> T {
        let mut conn = diesel::pg::PgConnection::establish(&self.url).expect("postgres connection");
        f(&mut conn)
    }

    /// Runs SQL on this database outside the engine (to set up states the engine never writes).
    pub fn execute(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => self.with_sqlite(|c| c.batch_execute(sql)),
            Kind::Postgres => self.with_postgres(|c| c.batch_execute(sql)),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Counts the rows of a table.
    pub fn count(&self, table: &str) -> i64 {
        self.number(&format!("SELECT COUNT(*) AS n FROM {table}"))
    }

    /// The integer a query returns in its column `n` (one row).
    pub fn number(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Number {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let load = |q: &str| diesel::sql_query(q.to_owned());
        match self.kind {
            Kind::Sqlite => self.with_sqlite(|c| {
                diesel::RunQueryDsl::get_result::<Number>(load(query), c)
                    .unwrap_or_else(|e| panic!("{query}: {e}"))
                    .n
            }),
            Kind::Postgres => self.with_postgres(|c| {
                diesel::RunQueryDsl::get_result::<Number>(load(query), c)
                    .unwrap_or_else(|e| panic!("{query}: {e}"))
                    .n
            }),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((server, schema)) = &self.pg
            && let Ok(mut admin) = diesel::pg::PgConnection::establish(server)
        {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn(TestDatabase)`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestDatabase::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::TestDatabase::postgres(stringify!($name)) {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

/// Checks the recorded history of a task and each of its steps: sort keys 0, 10, 20…, exactly
/// one `most_recent` row (the last), each transition allowed by the state machine and starting
/// where the previous one ended, and the last one matching the current state.
pub async fn assert_history_consistent(tasker: &Tasker, task_id: i64) {
    let task = tasker.task(task_id).await.expect("task");
    let transitions = tasker
        .task_transitions(task_id)
        .await
        .expect("task transitions");
    let mut problems = chain_violations(
        &format!("task {task_id}"),
        &links(&transitions),
        task.state.as_str(),
        task_transition_allowed,
    );
    for step in tasker.steps(task_id).await.expect("steps") {
        let transitions = tasker
            .step_transitions(step.step_id)
            .await
            .expect("step transitions");
        problems.extend(chain_violations(
            &format!("step `{}`", step.name),
            &links(&transitions),
            step.state.as_str(),
            step_transition_allowed,
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn links(transitions: &[tasker::TransitionInfo]) -> Vec<Link<'_>> {
    transitions
        .iter()
        .map(|t| Link {
            from: t.from_state.as_deref(),
            to: &t.to_state,
            sort_key: t.sort_key,
            most_recent: t.most_recent,
        })
        .collect()
}

/// One recorded transition, as the history checks read it.
pub(crate) struct Link<'a> {
    pub(crate) from: Option<&'a str>,
    pub(crate) to: &'a str,
    pub(crate) sort_key: i32,
    pub(crate) most_recent: bool,
}

/// Whether the task state machine allows `from → to`.
pub(crate) fn task_transition_allowed(from: &str, to: &str) -> bool {
    match (from.parse::<TaskState>(), to.parse::<TaskState>()) {
        (Ok(f), Ok(t)) => f.check(t) == tasker::state::Transition::Allowed,
        _ => false,
    }
}

/// Whether the step state machine allows `from → to`.
pub(crate) fn step_transition_allowed(from: &str, to: &str) -> bool {
    match (from.parse::<StepState>(), to.parse::<StepState>()) {
        (Ok(f), Ok(t)) => f.check(t) == tasker::state::Transition::Allowed,
        _ => false,
    }
}

/// Everything wrong with one entity's transitions, in order (empty when nothing is): sort keys
/// 0, 10, 20…, only the last row `most_recent`, each starting where the last ended and allowed,
/// and the last ending in `current`.
pub(crate) fn chain_violations(
    what: &str,
    chain: &[Link<'_>],
    current: &str,
    allowed: fn(&str, &str) -> bool,
) -> Vec<String> {
    if chain.is_empty() {
        return vec![format!("history: {what} has no transitions")];
    }
    let mut v = Vec::new();
    let mut previous: Option<&str> = None;
    for (i, t) in chain.iter().enumerate() {
        if t.sort_key != 10 * i as i32 {
            v.push(format!(
                "history: {what} has sort key {} at {i}",
                t.sort_key
            ));
        }
        if t.most_recent != (i + 1 == chain.len()) {
            v.push(format!("history: {what} has most_recent wrong at {i}"));
        }
        if t.from != previous {
            v.push(format!(
                "history: {what} transition {i} starts at {:?}, not where the last ended ({previous:?})",
                t.from
            ));
        }
        if let Some(from) = t.from
            && !allowed(from, t.to)
        {
            v.push(format!(
                "history: {what} made the illegal transition {from} → {}",
                t.to
            ));
        }
        previous = Some(t.to);
    }
    if previous != Some(current) {
        v.push(format!(
            "history: {what} is `{current}` but its last transition is {previous:?}"
        ));
    }
    v
}

/// The `to_state`s of a list of transitions, in order.
pub fn states(transitions: &[tasker::TransitionInfo]) -> Vec<&str> {
    transitions.iter().map(|t| t.to_state.as_str()).collect()
}

/// The README's Rust examples, compiled as doctests so they stay true to the code.
#[doc = include_str!("../../README.md")]
pub mod readme {}
pub mod battery;

/// The REST API served on a free local port, with a client for it; dropping it stops the
/// server.
pub struct ApiServer {
    /// The API's base URL, `http://127.0.0.1:PORT/tasker`.
    pub base: String,
    /// A client to call it with.
    pub client: reqwest::Client,
    /// Dropped with the server value, which ends `serve`'s shutdown future.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ApiServer {
    /// Serves `tasker` with `config` until the returned value is dropped.
    pub async fn start(tasker: Tasker, config: tasker::server::ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}/tasker", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = tasker::server::serve(tasker, config, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        tasker::http::install_crypto_provider();
        Self {
            base,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }
}
