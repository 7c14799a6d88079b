//! `cargo run --release -p tasker-bench -- [--backend sqlite|postgres|both] [--scale quick|full]
//! [--section all|standard|time|drain] [--only LABEL]`
//!
//! Measures, on each backend, the database's own floor (one small UPDATE per transaction) and
//! then the engine on trivial workflows: end-to-end steps/s and tasks/s from the first create
//! to the last completion, the create rate, commits per step (PostgreSQL), the idle latency of
//! a 4-step linear task, and peak RSS. After each throughput run it reads from the database
//! the ready → start latency of every step, and counts the statements the engine sent
//! (client-side, see `statements.rs`). Last, the growth ratio: claim-and-complete cost with
//! 1,000 and with 1,000,000 finished steps in the tables (100,000 at `--scale quick`). Then
//! time: the same cost with 1,000 and with 1,000,000 delayed tasks waiting, and with 1,000,000
//! finished steps while a prune deletes them. Then the
//! backlog drain (`drain.rs`): tasks created first, then drained by one or 4 worker processes.
//! Figures are rates and ratios to the floor, so they can be compared across machines.
//! `--top-statements N` also prints each run's N most frequent statement shapes. PostgreSQL is `TASKER_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each run uses its own schema (each drain run its
//! own database), dropped after.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

mod drain;
mod growth;
mod probe;
mod statements;
mod worker_process;

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tasker::prelude::*;

use crate::probe::Probe;
use crate::worker_process::WorkerProcesses;

/// How large a run is.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    Quick,
    Full,
}

/// One workflow shape.
struct Shape {
    name: &'static str,
    tasks: usize,
    template: TaskTemplate,
}

fn shapes(scale: Scale) -> Vec<Shape> {
    let n = |quick: usize, full: usize| if scale == Scale::Full { full } else { quick };
    let mut fan =
        TaskTemplate::new("bench", "fanout", "1.0.0").step(StepTemplate::new("root", "noop"));
    let middle: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    for name in &middle {
        fan = fan.step(StepTemplate::new(name, "noop").depends_on(["root"]));
    }
    fan = fan.step(StepTemplate::new("join", "noop").depends_on(middle.clone()));
    let mut wide =
        TaskTemplate::new("bench", "wide", "1.0.0").step(StepTemplate::new("root", "noop"));
    let fanned: Vec<String> = (0..998).map(|i| format!("w{i}")).collect();
    for name in &fanned {
        wide = wide.step(StepTemplate::new(name, "noop").depends_on(["root"]));
    }
    wide = wide.step(StepTemplate::new("sink", "noop").depends_on(fanned));
    vec![
        Shape {
            name: "single",
            tasks: n(2000, 10_000),
            template: single(),
        },
        Shape {
            name: "linear4",
            tasks: n(500, 2500),
            template: TaskTemplate::new("bench", "linear4", "1.0.0")
                .step(StepTemplate::new("a", "noop"))
                .step(StepTemplate::new("b", "noop").depends_on(["a"]))
                .step(StepTemplate::new("c", "noop").depends_on(["b"]))
                .step(StepTemplate::new("d", "noop").depends_on(["c"])),
        },
        Shape {
            name: "diamond4",
            tasks: n(500, 2500),
            template: growth::diamond(),
        },
        Shape {
            name: "fanout50",
            tasks: n(40, 200),
            template: fan,
        },
        Shape {
            name: "wide1000",
            tasks: 1,
            template: wide,
        },
    ]
}

/// The single-step shape.
pub(crate) fn single() -> TaskTemplate {
    TaskTemplate::new("bench", "single", "1.0.0").step(StepTemplate::new("only", "noop"))
}

/// The template a worker process is asked to run, by name: any shape of either section.
fn template_named(name: &str) -> Option<TaskTemplate> {
    shapes(Scale::Quick)
        .into_iter()
        .map(|s| s.template)
        .chain(drain::templates())
        .find(|t| t.name == name)
}

/// A database for one measurement, removed afterwards.
struct Database {
    url: String,
    cleanup: Box<dyn FnOnce()>,
}

fn sqlite_database() -> Database {
    let path =
        std::env::temp_dir().join(format!("tasker-bench-{}.db", uuid::Uuid::new_v4().simple()));
    let url = path.display().to_string();
    Database {
        url,
        cleanup: Box::new(move || {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }),
    }
}

fn postgres_database(server: &str) -> Result<Database, String> {
    let schema = format!("tasker_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(server).map_err(|e| format!("{server}: {e}"))?;
    statements::silence(&mut admin);
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .map_err(|e| e.to_string())?;
    let separator = if server.contains('?') { '&' } else { '?' };
    let url = format!("{server}{separator}options=-csearch_path%3D{schema}");
    let server = server.to_owned();
    Ok(Database {
        url,
        cleanup: Box::new(move || {
            if let Ok(mut admin) = PgConnection::establish(&server) {
                let _ = admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
            }
        }),
    })
}

/// Commits per second of one small UPDATE per transaction, with `clients` connections.
fn floor(url: &str, sqlite: bool, clients: usize, commits: usize) -> Result<f64, String> {
    let setup =
        "CREATE TABLE IF NOT EXISTS bench_floor (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)";
    if sqlite {
        let mut c = SqliteConnection::establish(url).map_err(|e| e.to_string())?;
        c.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;",
        )
        .map_err(|e| e.to_string())?;
        c.batch_execute(setup).map_err(|e| e.to_string())?;
        c.batch_execute("INSERT OR IGNORE INTO bench_floor VALUES (1, 0)")
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        for _ in 0..commits {
            c.batch_execute(
                "BEGIN IMMEDIATE; UPDATE bench_floor SET n = n + 1 WHERE id = 1; COMMIT;",
            )
            .map_err(|e| e.to_string())?;
        }
        return Ok(commits as f64 / start.elapsed().as_secs_f64());
    }
    let mut c = PgConnection::establish(url).map_err(|e| e.to_string())?;
    c.batch_execute(setup).map_err(|e| e.to_string())?;
    c.batch_execute(&format!(
        "INSERT INTO bench_floor SELECT g, 0 FROM generate_series(1, {clients}) g ON CONFLICT DO NOTHING"
    ))
    .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let url = url.to_owned();
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = PgConnection::establish(&url).map_err(|e| e.to_string())?;
                let sql = format!("UPDATE bench_floor SET n = n + 1 WHERE id = {}", client + 1);
                for _ in 0..commits {
                    c.batch_execute(&sql).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| "floor thread panicked".to_owned())??;
    }
    Ok((clients * commits) as f64 / start.elapsed().as_secs_f64())
}

/// Committed transactions of the current database so far (PostgreSQL statistics).
fn pg_commits(url: &str) -> Option<i64> {
    #[derive(QueryableByName)]
    struct Commits {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        commits: i64,
    }
    let mut c = PgConnection::establish(url).ok()?;
    statements::silence(&mut c);
    // A backend flushes its statistics when it exits, and at most once a second otherwise.
    std::thread::sleep(Duration::from_millis(1100));
    let _ = c.batch_execute("SELECT pg_stat_clear_snapshot()");
    diesel::sql_query(
        "SELECT xact_commit AS commits FROM pg_stat_database WHERE datname = current_database()",
    )
    .get_result::<Commits>(&mut c)
    .ok()
    .map(|r| r.commits)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 of `samples` (milliseconds), and how many there were.
fn percentiles_ms(mut samples: Vec<f64>) -> (f64, f64, usize) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples.get(i).copied().unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99), samples.len())
}

/// Prints the ready → start latency of every step of the run in `probe`'s database, the
/// statements the engine's connections sent per step (`counted`, over the run), and the `top`
/// statement shapes of this process.
fn print_latency_and_statements(
    probe: &mut Probe,
    label: &str,
    steps: usize,
    counted: statements::Snapshot,
    top: usize,
) -> Result<(), String> {
    let (p50, p99, n) = percentiles_ms(probe.ready_to_start_ms()?);
    let backend = if probe.is_sqlite() {
        "sqlite"
    } else {
        "postgres"
    };
    println!(
        "{backend:<8} {label:<14} ready→start p50 {p50:>6.1} ms  p99 {p99:>6.1} ms ({n} steps)  statements/step {:>5.2}  transactions/step {:>4.2}",
        counted.statements as f64 / steps as f64,
        counted.transactions as f64 / steps as f64,
    );
    for (shape, count) in statements::top(top) {
        let shape: String = shape.chars().take(150).collect();
        println!(
            "{backend:<8} {label:<14}   {:>6.2}/step  {shape}",
            count as f64 / steps as f64
        );
    }
    Ok(())
}

/// How a measured engine is configured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Settings {
    /// The benchmark's settings (claim batch 32, pool of 8, idle poll 50 ms) at a concurrency.
    Bench { concurrency: usize },
    /// `TaskerConfig::default()` untouched: what a user gets without configuring anything.
    Default,
}

impl Settings {
    /// The worker concurrency these settings give.
    fn concurrency(self) -> usize {
        match self {
            Settings::Bench { concurrency } => concurrency,
            Settings::Default => tasker::TaskerConfig::default().concurrency,
        }
    }

    /// For output lines: `c=16`, or `c=8 (default)`.
    fn label(self) -> String {
        match self {
            Settings::Bench { concurrency } => format!("c={concurrency}"),
            Settings::Default => format!("c={} (default)", self.concurrency()),
        }
    }

    /// As a worker process's `--worker-concurrency`: a number, or `default`.
    fn to_arg(self) -> String {
        match self {
            Settings::Bench { concurrency } => concurrency.to_string(),
            Settings::Default => "default".to_owned(),
        }
    }

    /// Reads [`Settings::to_arg`]'s form.
    fn from_arg(arg: &str) -> Result<Self, String> {
        match arg {
            "default" => Ok(Settings::Default),
            n => n
                .parse()
                .ok()
                .filter(|&c| c > 0)
                .map(|concurrency| Settings::Bench { concurrency })
                .ok_or_else(|| {
                    format!("--worker-concurrency {n}: expected a positive number or `default`")
                }),
        }
    }
}

/// Builds an engine on `url` with a `noop` handler and `templates`, with the benchmark's
/// settings at `concurrency`, for one measurement.
pub(crate) async fn engine(
    url: &str,
    templates: Vec<TaskTemplate>,
    concurrency: usize,
) -> Result<Tasker, String> {
    engine_with(url, templates, Settings::Bench { concurrency }).await
}

/// Builds an engine on `url` with a `noop` handler and `templates`, configured by `settings`.
pub(crate) async fn engine_with(
    url: &str,
    templates: Vec<TaskTemplate>,
    settings: Settings,
) -> Result<Tasker, String> {
    let mut builder = Tasker::builder().auto_register(false).database_url(url);
    if let Settings::Bench { concurrency } = settings {
        builder = builder.configure(|c| {
            c.concurrency = concurrency;
            c.claim_batch = 32;
            c.pool_size = 8;
            c.max_poll_interval = Duration::from_millis(50);
        });
    }
    builder = builder.handler(
        "noop",
        handler_fn(|_| async { Ok(tasker::serde_json::Value::Null) }),
    );
    for template in templates {
        builder = builder.template(template);
    }
    builder.build().await.map_err(|e| e.to_string())
}

/// Runs `shape.tasks` tasks through one worker: end-to-end rate, create rate, commits, then the
/// ready → start latency and the engine's statements per step.
async fn throughput(
    url: &str,
    sqlite: bool,
    shape: Shape,
    floor: f64,
    concurrency: usize,
    top: usize,
) -> Result<(), String> {
    let steps_per_task = shape.template.step_templates.len();
    let name = shape.template.name.clone();
    let tasker = engine(url, vec![shape.template], concurrency).await?;
    // Progress is polled on the benchmark's own connection, so it is not counted.
    let mut probe = Probe::connect(url, sqlite)?;
    let commits_before = if sqlite { None } else { pg_commits(url) };
    let statements_before = statements::snapshot();
    let worker = tasker.start_worker();
    let start = Instant::now();
    let creators = 4;
    let per = shape.tasks.div_ceil(creators);
    let mut handles = Vec::new();
    for c in 0..creators {
        let tasker = tasker.clone();
        let name = name.clone();
        let count = per.min(shape.tasks.saturating_sub(c * per));
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                let request = TaskRequest::new(&name).namespace("bench").version("1.0.0");
                ids.push(
                    tasker
                        .create_task(request)
                        .await
                        .map_err(|e| e.to_string())?
                        .id,
                );
            }
            Ok::<_, String>(ids)
        }));
    }
    let mut ids = Vec::new();
    for handle in handles {
        ids.extend(handle.await.map_err(|e| e.to_string())??);
    }
    let created = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let complete = tokio::task::block_in_place(|| probe.complete_tasks())?;
        if complete as usize >= ids.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{name}: not finished after 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = start.elapsed();
    let statements_after = statements::peek();
    worker.shutdown().await;
    // Closing the engine's connections makes PostgreSQL flush their statistics.
    drop(tasker);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let steps = shape.tasks * steps_per_task;
    let steps_per_s = steps as f64 / total.as_secs_f64();
    let commits = match (commits_before, if sqlite { None } else { pg_commits(url) }) {
        (Some(before), Some(after)) => format!("{:.2}", (after - before) as f64 / steps as f64),
        _ => "-".to_owned(),
    };
    let label = if concurrency == 16 {
        shape.name.to_owned()
    } else {
        format!("{} c={concurrency}", shape.name)
    };
    println!(
        "{:<8} {:<14} {:>6} tasks {:>6} steps  {:>8.0} steps/s {:>7.0} tasks/s  create {:>6.0}/s  commits/step {:>5}  steps/s ÷ floor {:>5.2}",
        if sqlite { "sqlite" } else { "postgres" },
        label,
        shape.tasks,
        steps,
        steps_per_s,
        shape.tasks as f64 / total.as_secs_f64(),
        shape.tasks as f64 / created.as_secs_f64(),
        commits,
        steps_per_s / floor,
    );
    print_latency_and_statements(
        &mut probe,
        &label,
        steps,
        statements_after.since(statements_before),
        top,
    )
}

/// The diamond shape run by `processes` worker processes (this binary, re-executed) while this
/// process creates the tasks: PostgreSQL's scale-out configuration. Statements are this
/// process's creates plus what each worker process reports when it stops.
async fn multi_process(
    url: &str,
    scale: Scale,
    processes: usize,
    floor4: f64,
) -> Result<(), String> {
    let Some(shape) = shapes(scale).into_iter().find(|s| s.name == "diamond4") else {
        return Ok(());
    };
    let steps = shape.tasks * shape.template.step_templates.len();
    // Templates are stored by the first engine; the children register the same one.
    let creator = engine(url, vec![shape.template], 16).await?;
    // The children's engines are built before the clock starts; their workers start with it.
    let mut children = tokio::task::block_in_place(|| {
        WorkerProcesses::spawn(
            processes,
            url,
            "diamond4",
            Settings::Bench { concurrency: 16 },
        )
    })?;
    let commits_before = pg_commits(url);
    let statements_before = statements::snapshot();
    let start = Instant::now();
    children.start()?;
    let mut handles = Vec::new();
    let per = shape.tasks.div_ceil(4);
    for c in 0..4 {
        let creator = creator.clone();
        let count = per.min(shape.tasks.saturating_sub(c * per));
        handles.push(tokio::spawn(async move {
            for _ in 0..count {
                let request = TaskRequest::new("diamond4")
                    .namespace("bench")
                    .version("1.0.0");
                creator
                    .create_task(request)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for handle in handles {
        handle.await.map_err(|e| e.to_string())??;
    }
    // Before the progress polling below, which goes through the creator's engine.
    let created = statements::peek().since(statements_before);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let counts = creator.task_counts().await.map_err(|e| e.to_string())?;
        let complete = counts
            .iter()
            .find(|(s, _)| *s == TaskState::Complete)
            .map_or(0, |(_, n)| *n);
        if complete as usize >= shape.tasks {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = start.elapsed();
    let reported = tokio::task::block_in_place(|| children.stop())?;
    drop(creator);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let commits = match (commits_before, pg_commits(url)) {
        (Some(before), Some(after)) => format!("{:.2}", (after - before) as f64 / steps as f64),
        _ => "-".to_owned(),
    };
    let steps_per_s = steps as f64 / total.as_secs_f64();
    println!(
        "postgres diamond4 ×{processes} proc {:>6} tasks {:>6} steps  {:>8.0} steps/s {:>7.0} tasks/s  commits/step {:>5}  steps/s ÷ 4-client floor {:>5.2}",
        shape.tasks,
        steps,
        steps_per_s,
        shape.tasks as f64 / total.as_secs_f64(),
        commits,
        steps_per_s / floor4,
    );
    let mut probe = Probe::connect(url, false)?;
    print_latency_and_statements(
        &mut probe,
        &format!("diamond4 ×{processes}"),
        steps,
        created.plus(reported),
        0,
    )
}

/// p50/p99 from create to complete of a 4-step linear task on an idle engine.
async fn idle_latency(url: &str, sqlite: bool, runs: usize) -> Result<(), String> {
    let template = TaskTemplate::new("bench", "idle4", "1.0.0")
        .step(StepTemplate::new("a", "noop"))
        .step(StepTemplate::new("b", "noop").depends_on(["a"]))
        .step(StepTemplate::new("c", "noop").depends_on(["b"]))
        .step(StepTemplate::new("d", "noop").depends_on(["c"]));
    let tasker = engine(url, vec![template], 16).await?;
    let worker = tasker.start_worker();
    // Let the worker go idle first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let task = tasker
            .create_task(
                TaskRequest::new("idle4")
                    .namespace("bench")
                    .version("1.0.0"),
            )
            .await
            .map_err(|e| e.to_string())?;
        let done = tasker
            .wait_for_task(task.id, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        if done.state != TaskState::Complete {
            return Err(format!("idle task ended in {}", done.state));
        }
        samples.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    samples.sort();
    println!(
        "{:<8} idle linear4 latency (create → complete, {runs} runs): p50 {:.1} ms  p99 {:.1} ms",
        if sqlite { "sqlite" } else { "postgres" },
        percentile(&samples, 0.5).as_secs_f64() * 1000.0,
        percentile(&samples, 0.99).as_secs_f64() * 1000.0,
    );
    Ok(())
}

/// Rounds per backlog, and tasks per round.
const ROUNDS: usize = 3;

fn round_tasks(scale: Scale) -> usize {
    if scale == Scale::Full { 1000 } else { 250 }
}

/// The large backlog: 1,000,000 rows at full scale, 100,000 at quick.
fn large_backlog(scale: Scale) -> usize {
    if scale == Scale::Full {
        1_000_000
    } else {
        100_000
    }
}

/// The ratio lines' note on the scale.
fn scale_note(scale: Scale) -> &'static str {
    if scale == Scale::Full {
        ""
    } else {
        "; quick scale: 100k, full: 1M"
    }
}

/// `growth::measure` of `backlog` on a database of its own, dropped after.
async fn with_backlog(
    sqlite: bool,
    scale: Scale,
    server: &str,
    backlog: growth::Backlog,
) -> Result<growth::Figures, String> {
    let db = if sqlite {
        sqlite_database()
    } else {
        postgres_database(server)?
    };
    let result = growth::measure(&db.url, sqlite, backlog, round_tasks(scale), ROUNDS).await;
    (db.cleanup)();
    result
}

/// Claim-and-complete cost with a small and a large finished history, and their ratio.
async fn growth_ratio(sqlite: bool, scale: Scale, server: &str) -> Result<(), String> {
    let label = if sqlite { "sqlite" } else { "postgres" };
    let (tasks, rounds) = (round_tasks(scale), ROUNDS);
    let mut figures = Vec::new();
    for history in [1_000, large_backlog(scale)] {
        let f = with_backlog(sqlite, scale, server, growth::Backlog::Finished(history)).await?;
        println!(
            "{label:<8} growth: {:>9} finished steps  claim+complete {:>6.0} steps/s  create {:>5.0} tasks/s  analytics {:>6.1} ms  (diamond4, {rounds} rounds of {tasks} tasks, median; seeded in {:.1} s)",
            f.backlog, f.claim_complete, f.create, f.analytics_ms, f.seed_seconds,
        );
        figures.push(f);
    }
    if let [small, large] = figures.as_slice() {
        println!(
            "{label:<8} growth ratio (cost with {} ÷ with {} finished steps): claim+complete {:.2}  create {:.2}  analytics {:.2}  (target < 1.5{})",
            large.backlog,
            small.backlog,
            small.claim_complete / large.claim_complete,
            small.create / large.create,
            large.analytics_ms / small.analytics_ms,
            scale_note(scale),
        );
    }
    Ok(())
}

/// Claim-and-complete cost with a few and with many delayed tasks waiting, and their ratio.
async fn delayed_ratio(sqlite: bool, scale: Scale, server: &str) -> Result<(), String> {
    let label = if sqlite { "sqlite" } else { "postgres" };
    let (tasks, rounds) = (round_tasks(scale), ROUNDS);
    let mut figures = Vec::new();
    for waiting in [1_000, large_backlog(scale)] {
        let f = with_backlog(sqlite, scale, server, growth::Backlog::Future(waiting)).await?;
        println!(
            "{label:<8} delayed: {:>9} tasks waiting a day  claim+complete {:>6.0} steps/s  create {:>5.0} tasks/s  (diamond4, {rounds} rounds of {tasks} tasks, median; seeded in {:.1} s)",
            f.backlog, f.claim_complete, f.create, f.seed_seconds,
        );
        figures.push(f);
    }
    if let [small, large] = figures.as_slice() {
        println!(
            "{label:<8} delayed ratio (cost with {} ÷ with {} delayed tasks): claim+complete {:.2}  create {:.2}  (target < 1.5{})",
            large.backlog,
            small.backlog,
            small.claim_complete / large.claim_complete,
            small.create / large.create,
            scale_note(scale),
        );
    }
    Ok(())
}

/// Claim-and-complete cost with a million finished steps in the tables, with and without a
/// prune deleting them meanwhile, and their ratio.
async fn pruning_ratio(sqlite: bool, scale: Scale, server: &str) -> Result<(), String> {
    let label = if sqlite { "sqlite" } else { "postgres" };
    let (tasks, rounds) = (round_tasks(scale), ROUNDS);
    let history = large_backlog(scale);
    let mut figures = Vec::new();
    for backlog in [
        growth::Backlog::Finished(history),
        growth::Backlog::Pruning(history),
    ] {
        let f = with_backlog(sqlite, scale, server, backlog).await?;
        let pruning = match f.pruned {
            Some((pruned, running)) => format!(
                "  while pruning ({pruned} tasks gone when the rounds ended, {})",
                if running {
                    "prune still running"
                } else {
                    "prune done before the last round"
                }
            ),
            None => String::new(),
        };
        println!(
            "{label:<8} pruning: {:>9} finished steps  claim+complete {:>6.0} steps/s  create {:>5.0} tasks/s{pruning}  (diamond4, {rounds} rounds of {tasks} tasks, median)",
            f.backlog, f.claim_complete, f.create,
        );
        figures.push(f);
    }
    if let [quiet, pruning] = figures.as_slice() {
        println!(
            "{label:<8} pruning ratio (cost while pruning ÷ without): claim+complete {:.2}  create {:.2}  (target < 1.5)",
            quiet.claim_complete / pruning.claim_complete,
            quiet.create / pruning.create,
        );
    }
    Ok(())
}

/// Which measurements a run makes.
#[derive(Clone, Copy, PartialEq)]
enum Section {
    /// Everything: the standard measurements, then the drain.
    All,
    /// Throughput while creating, scaling, idle latency and growth.
    Standard,
    /// The backlog drain only.
    Drain,
    /// Time: claiming with a backlog of delayed tasks, and while pruning.
    Time,
}

/// The floors, then `section`'s measurements on one backend.
async fn run_backend(
    sqlite: bool,
    scale: Scale,
    server: &str,
    top: usize,
    section: Section,
    only: Option<&str>,
) -> Result<(), String> {
    let label = if sqlite { "sqlite" } else { "postgres" };
    let commits = if scale == Scale::Full { 5000 } else { 2000 };
    let db = if sqlite {
        sqlite_database()
    } else {
        postgres_database(server)?
    };
    let one = floor(&db.url, sqlite, 1, commits)?;
    let four = if sqlite {
        None
    } else {
        Some(floor(&db.url, sqlite, 4, commits / 2)?)
    };
    (db.cleanup)();
    match four {
        Some(four) => println!(
            "{label:<8} floor: one UPDATE per commit  {one:.0} commits/s (1 client)  {four:.0} commits/s (4 clients)"
        ),
        None => println!(
            "{label:<8} floor: one UPDATE per commit  {one:.0} commits/s (WAL, synchronous=NORMAL, the engine's setting)"
        ),
    }
    if matches!(section, Section::All | Section::Standard) {
        standard(sqlite, scale, server, top, one, four, only).await?;
    }
    if matches!(section, Section::All | Section::Time) && only.is_none() {
        delayed_ratio(sqlite, scale, server).await?;
        pruning_ratio(sqlite, scale, server).await?;
    }
    if matches!(section, Section::All | Section::Drain) {
        let floors = drain::Floors {
            one_client: one,
            four_clients: four,
        };
        drain::run_section(sqlite, scale, server, floors, top, only).await?;
    }
    Ok(())
}

/// Throughput while 4 clients create, scaling, idle latency and growth, against the floors
/// `one` (1 client) and `four` (4 clients, PostgreSQL). With `only`, just the throughput lines
/// whose shape name contains it.
async fn standard(
    sqlite: bool,
    scale: Scale,
    server: &str,
    top: usize,
    one: f64,
    four: Option<f64>,
    only: Option<&str>,
) -> Result<(), String> {
    let skipped = |shape: &Shape| only.is_some_and(|only| !shape.name.contains(only));
    for shape in shapes(scale).into_iter().filter(|s| !skipped(s)) {
        let db = if sqlite {
            sqlite_database()
        } else {
            postgres_database(server)?
        };
        let result = throughput(&db.url, sqlite, shape, one, 16, top).await;
        (db.cleanup)();
        result?;
    }
    if only.is_some() {
        return Ok(());
    }
    if let Some(four) = four {
        let db = postgres_database(server)?;
        let result = multi_process(&db.url, scale, 4, four).await;
        (db.cleanup)();
        result?;
    }
    // Scaling: the diamond shape with one worker at concurrency 1 and 4 (16 is above).
    for concurrency in [1, 4] {
        let Some(shape) = shapes(scale).into_iter().find(|s| s.name == "diamond4") else {
            continue;
        };
        let db = if sqlite {
            sqlite_database()
        } else {
            postgres_database(server)?
        };
        let result = throughput(&db.url, sqlite, shape, one, concurrency, top).await;
        (db.cleanup)();
        result?;
    }
    let db = if sqlite {
        sqlite_database()
    } else {
        postgres_database(server)?
    };
    let result = idle_latency(&db.url, sqlite, if scale == Scale::Full { 200 } else { 50 }).await;
    (db.cleanup)();
    result?;
    growth_ratio(sqlite, scale, server).await
}

#[tasker::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let top: usize = match value("--top-statements") {
        None => 0,
        Some(n) => n
            .parse()
            .map_err(|_| format!("--top-statements {n}: expected a number"))?,
    };
    // Before any engine connects, so every connection it opens counts.
    statements::install(top > 0)?;
    // A worker process of a multi-process measurement (see `worker_process.rs`).
    if let (Some(url), Some(shape)) = (value("--worker-url"), value("--worker-shape")) {
        let Some(template) = template_named(&shape) else {
            return Err(format!("--worker-shape {shape}: unknown shape"));
        };
        let settings = match value("--worker-concurrency") {
            Some(arg) => Settings::from_arg(&arg)?,
            None => Settings::Bench { concurrency: 16 },
        };
        return worker_process::run_child(&url, template, settings).await;
    }
    let scale = match value("--scale").as_deref() {
        None | Some("quick") => Scale::Quick,
        Some("full") => Scale::Full,
        Some(other) => return Err(format!("--scale {other}: expected quick or full")),
    };
    let section = match value("--section").as_deref() {
        None | Some("all") => Section::All,
        Some("standard") => Section::Standard,
        Some("drain") => Section::Drain,
        Some("time") => Section::Time,
        Some(other) => {
            return Err(format!(
                "--section {other}: expected all, standard, time or drain"
            ));
        }
    };
    let backends: &[bool] = match value("--backend").as_deref() {
        None | Some("both") => &[true, false],
        Some("sqlite") => &[true],
        Some("postgres") => &[false],
        Some(other) => {
            return Err(format!(
                "--backend {other}: expected sqlite, postgres or both"
            ));
        }
    };
    // A drain line whose label contains this runs alone (the floors still run first).
    let only = value("--only");
    let server = std::env::var("TASKER_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    println!(
        "tasker-bench: scale {}, {} CPUs, one worker (concurrency 16, claim batch 32) and 4 creating clients",
        if scale == Scale::Full {
            "full"
        } else {
            "quick"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for &sqlite in backends {
        run_backend(sqlite, scale, &server, top, section, only.as_deref()).await?;
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS {rss:.0} MiB");
    }
    Ok(())
}
