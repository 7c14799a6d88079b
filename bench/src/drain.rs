//! Backlog drain: the scenario the issue's authors ran against other engines ("enqueue 10,000
//! no-op jobs, start one worker, time the drain"). N tasks are created first, with no worker
//! running, through the fastest public path; then one worker (or 4 worker processes) starts
//! and the clock runs until the last task is complete.
//!
//! On PostgreSQL each measurement gets a database of its own rather than a schema, so
//! `pg_stat_database.xact_commit` counts this measurement's commits and nobody else's: other
//! sessions on the same server (other benchmarks, test suites) use other databases.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tasker::Worker;
use tasker::prelude::*;

use crate::probe::Probe;
use crate::statements::{self, Shapes, Snapshot};
use crate::worker_process::WorkerProcesses;
use crate::{Database, Scale, Settings};

/// Clients creating the backlog concurrently through `Tasker::create_task`.
/// Longest a drain may take before the measurement fails.
const DEADLINE: Duration = Duration::from_secs(600);

/// The database's own commit rates, measured earlier in the same run.
#[derive(Clone, Copy)]
pub(crate) struct Floors {
    /// One client, one small UPDATE per commit.
    pub(crate) one_client: f64,
    /// Four clients (PostgreSQL only).
    pub(crate) four_clients: Option<f64>,
}

impl Floors {
    /// The floor the drain targets are stated against, and its name: PostgreSQL's
    /// 4-client floor, SQLite's single-commit floor.
    fn reference(self) -> (f64, &'static str) {
        match self.four_clients {
            Some(four) => (four, "the 4-client floor"),
            None => (self.one_client, "the single-commit floor"),
        }
    }
}

/// The drain's workflow shapes: 1 step, 3 steps in a line, and the 4-step diamond.
pub(crate) fn templates() -> Vec<TaskTemplate> {
    vec![
        crate::single(),
        TaskTemplate::new("bench", "linear3", "1.0.0")
            .step(StepTemplate::new("a", "noop"))
            .step(StepTemplate::new("b", "noop").depends_on(["a"]))
            .step(StepTemplate::new("c", "noop").depends_on(["b"])),
        crate::growth::diamond(),
    ]
}

/// One drain measurement: which shape, how many worker processes, at which settings.
struct Run {
    shape: TaskTemplate,
    processes: usize,
    settings: Settings,
}

impl Run {
    fn label(&self) -> String {
        let processes = if self.processes > 1 {
            format!(" ×{} proc", self.processes)
        } else {
            String::new()
        };
        format!(
            "drain {}{processes} {}",
            self.shape.name,
            self.settings.label()
        )
    }
}

/// Every drain measurement of one backend, in order: each shape with one worker process at
/// concurrency 4, 16 and the default configuration; on PostgreSQL also the single-step and
/// diamond shapes with 4 worker processes of concurrency 16.
fn runs(sqlite: bool) -> Vec<Run> {
    let mut runs = Vec::new();
    for shape in templates() {
        for settings in [
            Settings::Bench { concurrency: 4 },
            Settings::Bench { concurrency: 16 },
            Settings::Default,
        ] {
            runs.push(Run {
                shape: shape.clone(),
                processes: 1,
                settings,
            });
        }
    }
    if !sqlite {
        for shape in templates() {
            if shape.name == "single" || shape.name == "diamond4" {
                runs.push(Run {
                    shape,
                    processes: 4,
                    settings: Settings::Bench { concurrency: 16 },
                });
            }
        }
    }
    runs
}

/// Runs every drain measurement of one backend and prints a pair of lines for each, and with
/// `top` > 0 the most frequent statement shapes of the enqueue and of a one-process drain.
pub(crate) async fn run_section(
    sqlite: bool,
    scale: Scale,
    server: &str,
    floors: Floors,
    top: usize,
    only: Option<&str>,
) -> Result<(), String> {
    let backend = if sqlite { "sqlite" } else { "postgres" };
    let tasks = if scale == Scale::Full { 10_000 } else { 2_000 };
    let (floor, floor_name) = floors.reference();
    println!(
        "{backend:<8} drain: {tasks} tasks created first with no worker running, then the worker(s) start, timed to the last task complete; rates ÷ {floor_name} ({floor:.0} commits/s)"
    );
    for run in runs(sqlite) {
        let label = run.label();
        if only.is_some_and(|only| !label.contains(only)) {
            continue;
        }
        let figures = if sqlite {
            let db = crate::sqlite_database();
            let result = measure(&db.url, None, &run, tasks, top).await;
            (db.cleanup)();
            result?
        } else {
            let (db, stats) = isolated_postgres_database(server)?;
            let result = measure(&db.url, Some(&stats), &run, tasks, top).await;
            (db.cleanup)();
            result?
        };
        figures.print(backend, &label, floor);
    }
    Ok(())
}

/// What one drain measured.
struct Figures {
    tasks: usize,
    steps: usize,
    enqueue: Duration,
    /// How the backlog was created.
    enqueue_path: String,
    drain: Duration,
    /// Commits of the enqueue and of the drain (PostgreSQL).
    commits: Option<(i64, i64)>,
    enqueue_statements: Snapshot,
    drain_statements: Snapshot,
    /// The most frequent statement shapes of the enqueue, and of the drain when it ran here.
    top: (Shapes, Shapes),
}

impl Figures {
    fn print(&self, backend: &str, label: &str, floor: f64) {
        let enqueue_rate = self.tasks as f64 / self.enqueue.as_secs_f64();
        let steps_rate = self.steps as f64 / self.drain.as_secs_f64();
        let tasks_rate = self.tasks as f64 / self.drain.as_secs_f64();
        let per = |n: u64, of: usize| n as f64 / of as f64;
        let commits = |pick: fn((i64, i64)) -> i64, of: usize| {
            self.commits.map_or_else(
                || "-".to_owned(),
                |c| format!("{:.2}", pick(c) as f64 / of as f64),
            )
        };
        println!(
            "{backend:<8} {label:<28} {:>6} tasks {:>6} steps  enqueue {:>6.0} tasks/s ÷ floor {:>5.2}  drain {:>6.0} steps/s ÷ floor {:>5.2} {:>6.0} tasks/s ÷ floor {:>5.2}  commits/step {:>5}  statements/step {:>5.2}",
            self.tasks,
            self.steps,
            enqueue_rate,
            enqueue_rate / floor,
            steps_rate,
            steps_rate / floor,
            tasks_rate,
            tasks_rate / floor,
            commits(|c| c.1, self.steps),
            per(self.drain_statements.statements, self.steps),
        );
        println!(
            "{backend:<8} {label:<28} enqueue {:>5.1} s ({}): commits/task {:>5}  statements/task {:>5.2}  transactions/task {:>4.2};  drain {:>5.1} s: transactions/step {:>4.2}",
            self.enqueue.as_secs_f64(),
            self.enqueue_path,
            commits(|c| c.0, self.tasks),
            per(self.enqueue_statements.statements, self.tasks),
            per(self.enqueue_statements.transactions, self.tasks),
            self.drain.as_secs_f64(),
            per(self.drain_statements.transactions, self.steps),
        );
        for (shapes, of, unit) in [
            (&self.top.0, self.tasks, "task"),
            (&self.top.1, self.steps, "step"),
        ] {
            for (shape, count) in shapes {
                let shape: String = shape.chars().take(150).collect();
                println!(
                    "{backend:<8} {label:<28}   {:>6.2}/{unit}  {shape}",
                    per(*count, of)
                );
            }
        }
    }
}

/// Creates the backlog, then drains it with `run`'s workers.
async fn measure(
    url: &str,
    stats: Option<&CommitStats>,
    run: &Run,
    tasks: usize,
    top: usize,
) -> Result<Figures, String> {
    let backlog = create_backlog(url, stats, &run.shape, tasks, top).await?;
    let drained = drain_backlog(url, stats, run, tasks, top).await?;
    let commits = match (backlog.commits_before, drained.commits) {
        (Some(before), Some((between, after))) => Some((between - before, after - between)),
        _ => None,
    };
    Ok(Figures {
        tasks,
        steps: tasks * run.shape.step_templates.len(),
        enqueue: backlog.took,
        enqueue_path: backlog.path,
        drain: drained.took,
        commits,
        enqueue_statements: backlog.statements,
        drain_statements: drained.statements,
        top: (backlog.top, drained.top),
    })
}

/// What creating the backlog measured.
struct Backlog {
    took: Duration,
    path: String,
    /// `xact_commit` before the first create (PostgreSQL).
    commits_before: Option<i64>,
    statements: Snapshot,
    top: Shapes,
}

/// Creates `tasks` tasks of `shape` with no worker running, on an engine of its own that is
/// closed afterwards: closing its connections is what makes PostgreSQL publish their
/// statistics before the drain's window opens.
async fn create_backlog(
    url: &str,
    stats: Option<&CommitStats>,
    shape: &TaskTemplate,
    tasks: usize,
    top: usize,
) -> Result<Backlog, String> {
    let requests: Vec<TaskRequest> = (0..tasks)
        .map(|_| {
            TaskRequest::new(&shape.name)
                .namespace(&shape.namespace_name)
                .version(&shape.version)
        })
        .collect();
    let creator = crate::engine(url, vec![shape.clone()], 16).await?;
    let commits_before = read_commits(stats)?;
    let before = statements::snapshot();
    let start = Instant::now();
    let path = enqueue(&creator, requests).await?;
    let took = start.elapsed();
    let statements = statements::peek().since(before);
    drop(creator);
    Ok(Backlog {
        took,
        path,
        commits_before,
        statements,
        top: statements::top(top),
    })
}

/// What draining the backlog measured.
struct Drained {
    took: Duration,
    /// `xact_commit` when the workers start and after they stop (PostgreSQL).
    commits: Option<(i64, i64)>,
    statements: Snapshot,
    top: Shapes,
}

/// Builds `run`'s workers, starts the clock and them together, and stops the clock when
/// `tasks` tasks are complete.
async fn drain_backlog(
    url: &str,
    stats: Option<&CommitStats>,
    run: &Run,
    tasks: usize,
    top: usize,
) -> Result<Drained, String> {
    let mut probe = Probe::connect(url, stats.is_none())?;
    let mut workers = Workers::build(url, run).await?;
    keep_polls_uncommitted(&mut probe)?;
    let commits_between = read_commits(stats)?;
    let before = statements::snapshot();
    let start = Instant::now();
    workers.start()?;
    wait_until_complete(&mut probe, tasks).await?;
    let took = start.elapsed();
    let (statements, top) = workers.stop(before, top).await?;
    if stats.is_some() {
        probe.batch("ROLLBACK")?;
    }
    drop(probe);
    let commits_after = read_commits(stats)?;
    Ok(Drained {
        took,
        commits: commits_between.zip(commits_after),
        statements,
        top,
    })
}

/// The workers that drain the backlog.
enum Workers {
    /// One worker in this process, on an engine of its own (not the creator's).
    Here(Tasker, Option<Worker>),
    /// Worker processes, which report their own counters.
    Processes(WorkerProcesses),
}

impl Workers {
    /// Builds the engine(s), without starting any worker.
    async fn build(url: &str, run: &Run) -> Result<Self, String> {
        if run.processes == 1 {
            let tasker = crate::engine_with(url, vec![run.shape.clone()], run.settings).await?;
            return Ok(Workers::Here(tasker, None));
        }
        tokio::task::block_in_place(|| {
            WorkerProcesses::spawn(run.processes, url, &run.shape.name, run.settings)
        })
        .map(Workers::Processes)
    }

    /// Starts every worker.
    fn start(&mut self) -> Result<(), String> {
        match self {
            Workers::Here(tasker, worker) => {
                *worker = Some(tasker.start_worker());
                Ok(())
            }
            Workers::Processes(processes) => processes.start(),
        }
    }

    /// The statements sent since `before` (with the `top` shapes, this process only), read
    /// before the graceful shutdown as the other lines do; then stops and closes everything.
    async fn stop(self, before: Snapshot, top: usize) -> Result<(Snapshot, Shapes), String> {
        match self {
            Workers::Here(tasker, worker) => {
                let counted = (statements::peek().since(before), statements::top(top));
                if let Some(worker) = worker {
                    worker.shutdown().await;
                }
                drop(tasker);
                Ok(counted)
            }
            Workers::Processes(processes) => {
                let counted = tokio::task::block_in_place(|| processes.stop())?;
                Ok((counted, Vec::new()))
            }
        }
    }
}

/// Creates the backlog through the fastest public path the engine has, and says which.
async fn enqueue(tasker: &Tasker, requests: Vec<TaskRequest>) -> Result<String, String> {
    // The fastest public path: `Tasker::create_many`, a batch per transaction. (Concurrent
    // single creates are what the throughput section measures.)
    by_create_many(tasker, requests).await
}

/// Most requests per `Tasker::create_many` call (the REST API's limit, for comparable batches).
const BULK: usize = 1000;

/// `Tasker::create_many` in batches of [`BULK`], one after another.
async fn by_create_many(tasker: &Tasker, requests: Vec<TaskRequest>) -> Result<String, String> {
    let mut requests = requests.into_iter();
    loop {
        let batch: Vec<TaskRequest> = requests.by_ref().take(BULK).collect();
        if batch.is_empty() {
            break;
        }
        for created in tasker.create_many(batch).await.map_err(|e| e.to_string())? {
            created.map_err(|e| e.to_string())?;
        }
    }
    Ok(format!("create_many, batches of {BULK}"))
}

/// Polls until `tasks` tasks are complete.
async fn wait_until_complete(probe: &mut Probe, tasks: usize) -> Result<(), String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let complete = tokio::task::block_in_place(|| probe.complete_tasks())?;
        if usize::try_from(complete).is_ok_and(|n| n >= tasks) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{complete} of {tasks} tasks complete after {} s",
                DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// On PostgreSQL, keeps the benchmark's progress polling out of `xact_commit`: the probe's
/// statistics so far are published now, and its polls then run inside one read-committed
/// transaction (each poll sees the latest commits) that is rolled back after the drain. No
/// transaction id is taken and no snapshot is held between polls, so vacuum is not held back.
fn keep_polls_uncommitted(probe: &mut Probe) -> Result<(), String> {
    if probe.is_sqlite() {
        return Ok(());
    }
    probe.batch("SELECT pg_stat_force_next_flush()")?;
    probe.batch("BEGIN ISOLATION LEVEL READ COMMITTED")
}

/// Where a PostgreSQL measurement's commits are read: its database's row of
/// `pg_stat_database`, read from a connection to another database so the reading itself is
/// not counted.
struct CommitStats {
    server: String,
    database: String,
}

/// Committed transactions of the measurement's database so far; `None` on SQLite.
fn read_commits(stats: Option<&CommitStats>) -> Result<Option<i64>, String> {
    #[derive(QueryableByName)]
    struct Commits {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        commits: i64,
    }
    let Some(stats) = stats else {
        return Ok(None);
    };
    let mut c = PgConnection::establish(&stats.server).map_err(|e| e.to_string())?;
    statements::silence(&mut c);
    // A backend publishes its statistics when it exits, which the engines' closed connections
    // have just done; give that a moment.
    std::thread::sleep(Duration::from_millis(1100));
    c.batch_execute("SELECT pg_stat_clear_snapshot()")
        .map_err(|e| e.to_string())?;
    diesel::sql_query("SELECT xact_commit AS commits FROM pg_stat_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(&stats.database)
        .get_result::<Commits>(&mut c)
        .map(|r| Some(r.commits))
        .map_err(|e| format!("reading the commits of {}: {e}", stats.database))
}

/// A PostgreSQL database for one measurement, dropped afterwards, and where its commits are
/// read.
fn isolated_postgres_database(server: &str) -> Result<(Database, CommitStats), String> {
    let name = format!("tasker_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(server).map_err(|e| format!("{server}: {e}"))?;
    statements::silence(&mut admin);
    // `name` is a constant prefix and hex digits: safe to put into the statement.
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .map_err(|e| e.to_string())?;
    let url = with_database(server, &name);
    let (server, database) = (server.to_owned(), name);
    let stats = CommitStats {
        server: server.clone(),
        database: database.clone(),
    };
    Ok((
        Database {
            url,
            cleanup: Box::new(move || {
                if let Ok(mut admin) = PgConnection::establish(&server) {
                    statements::silence(&mut admin);
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
                }
            }),
        },
        stats,
    ))
}

/// `url` with its database name replaced by `database`; the query string is kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced_and_the_rest_kept() {
        for (url, expected) in [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/run",
            ),
            (
                "postgres://u:p@db/app?sslmode=disable",
                "postgres://u:p@db/run?sslmode=disable",
            ),
            ("postgres://db:5432", "postgres://db:5432/run"),
            (
                "postgres://db?connect_timeout=5",
                "postgres://db/run?connect_timeout=5",
            ),
            ("postgresql://db/a/b", "postgresql://db/run"),
        ] {
            assert_eq!(with_database(url, "run"), expected, "{url}");
        }
    }

    #[test]
    fn labels_name_shape_processes_and_settings() {
        let runs = super::runs(false);
        let labels: Vec<String> = runs.iter().map(super::Run::label).collect();
        assert!(
            labels.contains(&"drain single c=4".to_owned()),
            "{labels:?}"
        );
        assert!(
            labels.contains(&"drain diamond4 ×4 proc c=16".to_owned()),
            "{labels:?}"
        );
        assert!(
            labels
                .iter()
                .any(|l| l.starts_with("drain linear3 c=") && l.ends_with("(default)")),
            "{labels:?}"
        );
        assert!(super::runs(true).iter().all(|r| r.processes == 1));
    }
}
