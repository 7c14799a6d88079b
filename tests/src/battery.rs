//! The fault battery's harness: an execution ledger that step handlers write to through their own
//! connection, worker processes a driver can kill, stop and restart, and an invariant checker
//! that reads the ledger beside the engine's tables.
//!
//! The invariants (DESIGN §1, §5): no lost step, no overlapping executions of one step while a
//! lease is valid, no attempt claimed twice, exactly one accepted result per step, every step
//! started after all its parents completed, and legal state histories.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
use tasker::{StepError, StepState, StepTemplate, TaskState, TaskTemplate, handler_fn};

/// The handler name every battery step uses.
pub const HANDLER: &str = "battery_step";

/// A 4-step diamond: a → (b, c) → d.
pub fn diamond() -> TaskTemplate {
    TaskTemplate::new("battery", "diamond", "1.0.0")
        .step(StepTemplate::new("a", HANDLER).retry_limit(10))
        .step(
            StepTemplate::new("b", HANDLER)
                .depends_on(["a"])
                .retry_limit(10),
        )
        .step(
            StepTemplate::new("c", HANDLER)
                .depends_on(["a"])
                .retry_limit(10),
        )
        .step(
            StepTemplate::new("d", HANDLER)
                .depends_on(["b", "c"])
                .retry_limit(10),
        )
}

/// One root, `width` children of it, and a `join` of them all.
pub fn fan_in(width: usize) -> TaskTemplate {
    let middle: Vec<String> = (0..width).map(|i| format!("m{i}")).collect();
    let mut template = TaskTemplate::new("battery", "fan_in", "1.0.0")
        .step(StepTemplate::new("root", HANDLER).retry_limit(10));
    for name in &middle {
        template = template.step(
            StepTemplate::new(name, HANDLER)
                .depends_on(["root"])
                .retry_limit(10),
        );
    }
    template.step(
        StepTemplate::new("join", HANDLER)
            .depends_on(middle)
            .retry_limit(10),
    )
}

/// A single step.
pub fn single() -> TaskTemplate {
    TaskTemplate::new("battery", "single", "1.0.0")
        .step(StepTemplate::new("only", HANDLER).retry_limit(10))
}

/// An engine builder with only the battery's workflows, run by [`ledger_handler`] as `worker`.
pub fn engine(ledger: &Ledger, worker: Arc<str>, work: Duration) -> tasker::TaskerBuilder {
    tasker::Tasker::builder()
        .auto_register(false)
        .template(diamond())
        .template(fan_in(50))
        .template(single())
        .handler(HANDLER, ledger_handler(ledger.clone(), worker, work))
}

/// Where the ledger lives: a PostgreSQL URL, or a SQLite file.
#[derive(Clone)]
pub enum Ledger {
    /// Rows in a PostgreSQL table.
    Postgres(Pool<ConnectionManager<diesel::pg::PgConnection>>),
    /// Rows in a SQLite file of its own (not the engine's, so it adds no write contention).
    Sqlite(Pool<ConnectionManager<diesel::sqlite::SqliteConnection>>),
}

/// What a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    /// The handler began.
    Start,
    /// The handler returned its result.
    End,
    /// The worker's late result was refused (`workflow.step_result_rejected`).
    Rejected,
}

impl Mark {
    fn as_str(self) -> &'static str {
        match self {
            Mark::Start => "start",
            Mark::End => "end",
            Mark::Rejected => "rejected",
        }
    }
}

/// One ledger row.
#[derive(Debug, Clone, QueryableByName)]
pub struct LedgerRow {
    /// The task.
    #[diesel(sql_type = BigInt)]
    pub task_id: i64,
    /// The step.
    #[diesel(sql_type = BigInt)]
    pub step_id: i64,
    /// The step's name.
    #[diesel(sql_type = Text)]
    pub step: String,
    /// The attempt.
    #[diesel(sql_type = Integer)]
    pub attempt: i32,
    /// The worker (its lease owner id).
    #[diesel(sql_type = Text)]
    pub worker: String,
    /// `start`, `end` or `rejected`.
    #[diesel(sql_type = Text)]
    pub mark: String,
    /// When, on the ledger database's clock.
    #[diesel(sql_type = Timestamp)]
    pub at: NaiveDateTime,
}

const LEDGER_TABLE_PG: &str = "CREATE TABLE IF NOT EXISTS battery_ledger (
    id BIGSERIAL PRIMARY KEY, task_id BIGINT NOT NULL, step_id BIGINT NOT NULL,
    step TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL, mark TEXT NOT NULL,
    at TIMESTAMP NOT NULL)";
const LEDGER_TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS battery_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, task_id BIGINT NOT NULL, step_id BIGINT NOT NULL,
    step TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL, mark TEXT NOT NULL,
    at TIMESTAMP NOT NULL)";

impl Ledger {
    /// Opens (and creates the table of) the ledger at `url`: `postgres://…` or a SQLite path.
    pub fn open(url: &str, size: u32) -> Result<Self, String> {
        if url.starts_with("postgres") {
            let pool = Pool::builder()
                .max_size(size.max(1))
                .build(ConnectionManager::<diesel::pg::PgConnection>::new(url))
                .map_err(|e| format!("ledger {url}: {e}"))?;
            let mut c = pool.get().map_err(|e| e.to_string())?;
            c.batch_execute(LEDGER_TABLE_PG)
                .map_err(|e| e.to_string())?;
            Ok(Ledger::Postgres(pool))
        } else {
            let pool = Pool::builder()
                .max_size(size.max(1))
                .connection_customizer(Box::new(SqliteLedgerPragmas))
                .build(ConnectionManager::<diesel::sqlite::SqliteConnection>::new(
                    url,
                ))
                .map_err(|e| format!("ledger {url}: {e}"))?;
            let mut c = pool.get().map_err(|e| e.to_string())?;
            c.batch_execute(LEDGER_TABLE_SQLITE)
                .map_err(|e| e.to_string())?;
            Ok(Ledger::Sqlite(pool))
        }
    }

    /// Appends a row, stamped with the ledger database's clock.
    pub fn record(
        &self,
        task_id: i64,
        step_id: i64,
        step: &str,
        attempt: i32,
        worker: &str,
        mark: Mark,
    ) -> Result<(), String> {
        let insert = |now: &str| {
            format!(
                "INSERT INTO battery_ledger (task_id, step_id, step, attempt, worker, mark, at) \
                 VALUES ({task_id}, {step_id}, '{}', {attempt}, '{}', '{}', {now})",
                step.replace('\'', "''"),
                worker.replace('\'', "''"),
                mark.as_str()
            )
        };
        match self {
            Ledger::Postgres(pool) => {
                let mut c = pool.get().map_err(|e| e.to_string())?;
                c.batch_execute(&insert("clock_timestamp() AT TIME ZONE 'UTC'"))
                    .map_err(|e| e.to_string())
            }
            Ledger::Sqlite(pool) => {
                let mut c = pool.get().map_err(|e| e.to_string())?;
                c.batch_execute(&insert("strftime('%Y-%m-%d %H:%M:%f', 'now')"))
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Every row, in insertion order.
    pub fn rows(&self) -> Vec<LedgerRow> {
        let query = "SELECT task_id, step_id, step, attempt, worker, mark, at \
                     FROM battery_ledger ORDER BY id";
        match self {
            Ledger::Postgres(pool) => diesel::sql_query(query)
                .load(&mut pool.get().expect("ledger connection"))
                .expect("ledger rows"),
            Ledger::Sqlite(pool) => diesel::sql_query(query)
                .load(&mut pool.get().expect("ledger connection"))
                .expect("ledger rows"),
        }
    }
}

#[derive(Debug)]
struct SqliteLedgerPragmas;

impl diesel::r2d2::CustomizeConnection<diesel::sqlite::SqliteConnection, diesel::r2d2::Error>
    for SqliteLedgerPragmas
{
    fn on_acquire(
        &self,
        conn: &mut diesel::sqlite::SqliteConnection,
    ) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The battery's step handler: a `start` row, `work` of sleep, an `end` row, and the result
/// `{worker, attempt}`, so the checker can tell which execution's result was accepted. A ledger
/// that cannot be written fails the attempt (retryably), as a real side effect would.
pub fn ledger_handler(
    ledger: Ledger,
    worker: Arc<str>,
    work: Duration,
) -> impl tasker::StepHandler {
    handler_fn(move |cx| {
        let (ledger, worker) = (ledger.clone(), Arc::clone(&worker));
        async move {
            let (task_id, step_id, attempt) = (cx.task_id(), cx.step_id(), cx.attempt() as i32);
            let name = cx.step_name().to_owned();
            let write = |mark: Mark| {
                let (ledger, worker, name) = (ledger.clone(), Arc::clone(&worker), name.clone());
                async move {
                    tokio::task::spawn_blocking(move || {
                        ledger.record(task_id, step_id, &name, attempt, &worker, mark)
                    })
                    .await
                    .map_err(|e| StepError::retryable(e.to_string()))?
                    .map_err(StepError::retryable)
                }
            };
            write(Mark::Start).await?;
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            write(Mark::End).await?;
            Ok(serde_json::json!({ "worker": &*worker, "attempt": attempt }))
        }
    })
}

/// What the checker needs to know about the run besides the tables.
#[derive(Debug, Default, Clone)]
pub struct CheckOptions {
    /// Workers that were stopped (SIGSTOP) past their lease: their executions may overlap a
    /// later attempt, which is the point; their results must then have been rejected.
    pub stopped_workers: HashSet<String>,
}

/// The checker's findings.
#[derive(Debug, Default)]
pub struct Report {
    /// Tasks checked.
    pub tasks: usize,
    /// Steps checked.
    pub steps: usize,
    /// Handler executions (ledger `start` rows).
    pub executions: usize,
    /// Executions beyond one per step (re-runs after kills, retries).
    pub reruns: usize,
    /// Every broken invariant, one line each.
    pub violations: Vec<String>,
}

impl Report {
    /// Panics with the first violations if there are any.
    pub fn assert_clean(&self) {
        assert!(
            self.violations.is_empty(),
            "{} invariant violations, first ones:\n{}",
            self.violations.len(),
            self.violations
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// `tasks N  steps N  executions N (reruns N)  violations N`.
    pub fn summary(&self) -> String {
        format!(
            "tasks {}  steps {}  executions {} (re-runs {})  violations {}",
            self.tasks,
            self.steps,
            self.executions,
            self.reruns,
            self.violations.len()
        )
    }
}

#[derive(QueryableByName)]
struct TaskStateRow {
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = Text)]
    state: String,
}

#[derive(QueryableByName)]
struct StepRow {
    #[diesel(sql_type = BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    results: Option<String>,
}

#[derive(QueryableByName)]
struct EdgeRow {
    #[diesel(sql_type = BigInt)]
    from_step_id: i64,
    #[diesel(sql_type = BigInt)]
    to_step_id: i64,
}

#[derive(QueryableByName)]
struct TransitionRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    from_state: Option<String>,
    #[diesel(sql_type = Text)]
    to_state: String,
    #[diesel(sql_type = Integer)]
    sort_key: i32,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    most_recent: bool,
}

struct Tables {
    tasks: Vec<TaskStateRow>,
    steps: Vec<StepRow>,
    edges: Vec<EdgeRow>,
    step_transitions: Vec<TransitionRow>,
    task_transitions: Vec<TransitionRow>,
}

/// Loads the engine's tables on either connection type.
macro_rules! load_tables {
    ($c:expr) => {{
        let c = $c;
        let load_err = "battery tables";
        Tables {
            tasks: diesel::sql_query("SELECT task_id, state FROM tasker_tasks")
                .load(c)
                .expect(load_err),
            steps: diesel::sql_query(
                "SELECT workflow_step_id, task_id, name, state, attempts, results \
                 FROM tasker_workflow_steps",
            )
            .load(c)
            .expect(load_err),
            edges: diesel::sql_query(
                "SELECT from_step_id, to_step_id FROM tasker_workflow_step_edges",
            )
            .load(c)
            .expect(load_err),
            step_transitions: diesel::sql_query(
                "SELECT workflow_step_id AS id, from_state, to_state, sort_key, most_recent \
                 FROM tasker_workflow_step_transitions ORDER BY workflow_step_id, sort_key",
            )
            .load(c)
            .expect(load_err),
            task_transitions: diesel::sql_query(
                "SELECT task_id AS id, from_state, to_state, sort_key, most_recent \
                 FROM tasker_task_transitions ORDER BY task_id, sort_key",
            )
            .load(c)
            .expect(load_err),
        }
    }};
}

/// One handler execution, assembled from its ledger rows.
#[derive(Debug, Clone)]
struct Execution {
    worker: String,
    attempt: i32,
    start: NaiveDateTime,
    end: Option<NaiveDateTime>,
}

/// Checks every invariant over the engine database at `url` and the ledger's rows.
pub fn check(url: &str, ledger: &[LedgerRow], options: &CheckOptions) -> Report {
    let tables = if url.starts_with("postgres") {
        load_tables!(&mut diesel::pg::PgConnection::establish(url).expect("engine database"))
    } else {
        load_tables!(
            &mut diesel::sqlite::SqliteConnection::establish(url).expect("engine database")
        )
    };
    let mut report = Report {
        tasks: tables.tasks.len(),
        steps: tables.steps.len(),
        ..Report::default()
    };
    let v = &mut report.violations;

    // No lost step: every task and step finished.
    for task in &tables.tasks {
        if task.state != TaskState::Complete.as_str() {
            v.push(format!(
                "lost: task {} ended `{}`",
                task.task_id, task.state
            ));
        }
    }
    for step in &tables.steps {
        if step.state != StepState::Complete.as_str() {
            v.push(format!(
                "lost: step {} (`{}`) of task {} ended `{}`",
                step.workflow_step_id, step.name, step.task_id, step.state
            ));
        }
    }

    // Executions by step, from the ledger; no attempt started twice.
    let mut executions: HashMap<i64, BTreeMap<(i32, String), Execution>> = HashMap::new();
    let mut starts: HashMap<(i64, i32), usize> = HashMap::new();
    for row in ledger {
        let key = (row.attempt, row.worker.clone());
        match row.mark.as_str() {
            "start" => {
                report.executions += 1;
                *starts.entry((row.step_id, row.attempt)).or_default() += 1;
                executions.entry(row.step_id).or_default().insert(
                    key,
                    Execution {
                        worker: row.worker.clone(),
                        attempt: row.attempt,
                        start: row.at,
                        end: None,
                    },
                );
            }
            "end" => {
                if let Some(e) = executions
                    .get_mut(&row.step_id)
                    .and_then(|m| m.get_mut(&key))
                {
                    e.end = Some(row.at);
                }
            }
            _ => {}
        }
    }
    report.reruns = report.executions.saturating_sub(tables.steps.len());
    for ((step_id, attempt), n) in &starts {
        if *n > 1 {
            v.push(format!(
                "duplicate attempt: step {step_id} attempt {attempt} started {n} times"
            ));
        }
    }

    // No overlap while a lease is valid: a later attempt starts after an earlier one ended,
    // unless the earlier one's worker was stopped past its lease on purpose.
    for (step_id, by_attempt) in &executions {
        let runs: Vec<&Execution> = by_attempt.values().collect();
        for (i, earlier) in runs.iter().enumerate() {
            for later in &runs[i + 1..] {
                if later.attempt == earlier.attempt {
                    continue;
                }
                if let Some(end) = earlier.end
                    && end > later.start
                    && !options.stopped_workers.contains(&earlier.worker)
                {
                    v.push(format!(
                        "overlap: step {step_id} attempt {} ({}) ran until {end} but attempt {} ({}) started at {}",
                        earlier.attempt, earlier.worker, later.attempt, later.worker, later.start
                    ));
                }
            }
        }
    }

    // Exactly one accepted result per step, and it is a finished execution's.
    let mut completions: HashMap<i64, usize> = HashMap::new();
    for t in &tables.step_transitions {
        if t.to_state == StepState::Complete.as_str() {
            *completions.entry(t.id).or_default() += 1;
        }
    }
    let mut accepted_end: HashMap<i64, NaiveDateTime> = HashMap::new();
    for step in &tables.steps {
        let id = step.workflow_step_id;
        let n = completions.get(&id).copied().unwrap_or(0);
        if n != 1 {
            v.push(format!("accepted results: step {id} completed {n} times"));
        }
        let Some(result) = step
            .results
            .as_deref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        else {
            continue;
        };
        let (Some(worker), Some(attempt)) = (
            result.get("worker").and_then(|w| w.as_str()),
            result.get("attempt").and_then(serde_json::Value::as_i64),
        ) else {
            if step.state == StepState::Complete.as_str() {
                v.push(format!(
                    "accepted results: step {id} result {result} names no execution"
                ));
            }
            continue;
        };
        if attempt != i64::from(step.attempts) {
            v.push(format!(
                "accepted results: step {id} holds attempt {attempt}'s result but counts {} attempts",
                step.attempts
            ));
        }
        match executions
            .get(&id)
            .and_then(|m| m.get(&(attempt as i32, worker.to_owned())))
        {
            Some(Execution { end: Some(end), .. }) => {
                accepted_end.insert(id, *end);
            }
            _ => v.push(format!(
                "accepted results: step {id} holds a result of {worker} attempt {attempt}, which never finished"
            )),
        }
    }

    // Every execution started after all its parents' accepted executions ended.
    let mut parents: HashMap<i64, Vec<i64>> = HashMap::new();
    for e in &tables.edges {
        parents
            .entry(e.to_step_id)
            .or_default()
            .push(e.from_step_id);
    }
    for (step_id, by_attempt) in &executions {
        for run in by_attempt.values() {
            for parent in parents.get(step_id).into_iter().flatten() {
                match accepted_end.get(parent) {
                    Some(end) if *end <= run.start => {}
                    Some(end) => v.push(format!(
                        "order: step {step_id} attempt {} started at {} before parent {parent} finished at {end}",
                        run.attempt, run.start
                    )),
                    None => v.push(format!(
                        "order: step {step_id} attempt {} ran but parent {parent} has no accepted result",
                        run.attempt
                    )),
                }
            }
        }
    }

    // Legal state histories.
    let step_states: HashMap<i64, &str> = tables
        .steps
        .iter()
        .map(|s| (s.workflow_step_id, s.state.as_str()))
        .collect();
    let task_states: HashMap<i64, &str> = tables
        .tasks
        .iter()
        .map(|t| (t.task_id, t.state.as_str()))
        .collect();
    check_histories(
        v,
        "step",
        &tables.step_transitions,
        &step_states,
        crate::step_transition_allowed,
    );
    check_histories(
        v,
        "task",
        &tables.task_transitions,
        &task_states,
        crate::task_transition_allowed,
    );
    report
}

fn check_histories(
    v: &mut Vec<String>,
    what: &str,
    rows: &[TransitionRow],
    current: &HashMap<i64, &str>,
    allowed: fn(&str, &str) -> bool,
) {
    let mut by_id: BTreeMap<i64, Vec<crate::Link<'_>>> = BTreeMap::new();
    for r in rows {
        by_id.entry(r.id).or_default().push(crate::Link {
            from: r.from_state.as_deref(),
            to: &r.to_state,
            sort_key: r.sort_key,
            most_recent: r.most_recent,
        });
    }
    for (id, state) in current {
        let chain = by_id.get(id).map(Vec::as_slice).unwrap_or_default();
        v.extend(crate::chain_violations(
            &format!("{what} {id}"),
            chain,
            state,
            allowed,
        ));
    }
}

/// Settings of a worker process.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The engine database.
    pub database_url: String,
    /// The ledger.
    pub ledger_url: String,
    /// Steps it runs at once.
    pub concurrency: usize,
    /// Lease length.
    pub lease: Duration,
    /// How long each step's handler works.
    pub work: Duration,
}

/// A worker process (the `battery_worker` binary) the driver controls.
pub struct WorkerProcess {
    child: Child,
    /// Its lease owner id.
    pub id: String,
}

impl WorkerProcess {
    /// Starts `binary` with `spec` and waits until it reports its worker running.
    pub fn spawn(binary: &str, spec: &WorkerSpec) -> Self {
        let mut child = Command::new(binary)
            .env("TASKER_DATABASE_URL", &spec.database_url)
            .env("BATTERY_LEDGER_URL", &spec.ledger_url)
            .env("BATTERY_CONCURRENCY", spec.concurrency.to_string())
            .env("BATTERY_LEASE_MS", spec.lease.as_millis().to_string())
            .env("BATTERY_WORK_MS", spec.work.as_millis().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stdout = child.stdout.take().expect("worker stdout");
        let mut lines = BufReader::new(stdout).lines();
        let id = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(id) = line.strip_prefix("ready ") {
                        break id.to_owned();
                    }
                }
                other => panic!("worker exited before it was ready: {other:?}"),
            }
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, id }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits up to `within` for a clean exit; returns whether it exited 0.
    pub fn terminate(mut self, within: Duration) -> bool {
        self.signal("TERM");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(self.child.id().to_string())
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether the battery runs at the full size (`TASKER_BATTERY=full`) rather than the
/// small one CI runs.
pub fn full_size() -> bool {
    std::env::var("TASKER_BATTERY").is_ok_and(|v| v == "full")
}

/// `quick` normally, `full` with `TASKER_BATTERY=full`.
pub fn size(quick: usize, full: usize) -> usize {
    if full_size() { full } else { quick }
}

/// The `p`-th percentile (0–100) of `values`, which it sorts.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}
