//! The fault battery: many worker processes on one PostgreSQL database, a claim storm, a fan-in
//! race, kill -9, a stopped (zombie) worker, database restarts, and SQLite with several workers.
//! Each test checks every invariant of `tasker_tests::battery::check` and prints its figures.
//!
//! CI runs a small size of each. The full size:
//!
//! ```sh
//! TASKER_BATTERY=full TASKER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo test --release -p tasker-tests --test battery -- --nocapture
//! ```
#![allow(clippy::print_stdout, reason = "each battery test prints its figures")]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use tasker::{BackoffConfig, Error, TaskRequest, TaskState, Tasker};
use tasker::{CompletionOutcome, Outcome};
use tasker_tests::TestDatabase;
use tasker_tests::battery::{
    self, CheckOptions, Ledger, LedgerRow, WorkerProcess, WorkerSpec, percentile, size,
};

const WORKER: &str = env!("CARGO_BIN_EXE_battery_worker");

/// The battery's tests run one at a time: they time leases, and several sets of worker
/// processes starving each other of CPU would test the machine, not the engine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A driver engine: creates tasks and reads state; runs no steps.
async fn driver(url: &str, ledger: &Ledger) -> Tasker {
    battery::engine(ledger, "driver".into(), Duration::ZERO)
        .configure(|c| {
            c.database_url = url.to_owned();
            c.pool_size = 8;
            c.backoff = BackoffConfig::fixed(Duration::from_millis(50));
            c.environment = None;
        })
        .build()
        .await
        .expect("driver engine")
}

/// Creates `n` tasks of `name` from 4 concurrent clients; returns their ids.
async fn create(tasker: &Tasker, name: &str, n: usize) -> Vec<i64> {
    create_as(tasker, name, n, "").await
}

/// Like [`create`], with `batch` in the idempotency keys so later batches are new tasks.
async fn create_as(tasker: &Tasker, name: &str, n: usize, batch: &str) -> Vec<i64> {
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..4 {
        let (tasker, name, batch) = (tasker.clone(), name.to_owned(), batch.to_owned());
        clients.spawn(async move {
            let mut ids = Vec::new();
            for i in (client..n).step_by(4) {
                let request = TaskRequest::new(&name)
                    .namespace("battery")
                    .version("1.0.0")
                    .context(serde_json::json!({ "i": i }))
                    .idempotency_key(format!("{name}-{batch}{i}"));
                let mut delay = Duration::from_millis(50);
                // A create during a database restart fails; the client retries, as a real one
                // would, and the idempotency key keeps it to one task.
                let task = loop {
                    match tasker.create_task(request.clone()).await {
                        Ok(task) => break task,
                        Err(error) if delay < Duration::from_secs(10) => {
                            eprintln!("create {name} {i}: {error}; retrying");
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                        Err(error) => panic!("create {name} {i}: {error}"),
                    }
                };
                ids.push(task.id);
            }
            ids
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(part) = clients.join_next().await {
        ids.extend(part.expect("create client"));
    }
    ids
}

/// Waits until `n` tasks are complete (database errors, as during a restart, are waited out).
async fn wait_complete(tasker: &Tasker, n: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let counts: HashMap<TaskState, i64> = tasker
            .task_counts()
            .await
            .map(|c| c.into_iter().collect())
            .unwrap_or_default();
        if counts.get(&TaskState::Complete).copied().unwrap_or(0) as usize >= n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "only {counts:?} of {n} tasks after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spec(db: &str, ledger: &str, concurrency: usize, lease_ms: u64, work_ms: u64) -> WorkerSpec {
    WorkerSpec {
        database_url: db.to_owned(),
        ledger_url: ledger.to_owned(),
        concurrency,
        lease: Duration::from_millis(lease_ms),
        work: Duration::from_millis(work_ms),
    }
}

fn spawn_all(spec: &WorkerSpec, n: usize) -> Vec<WorkerProcess> {
    (0..n).map(|_| WorkerProcess::spawn(WORKER, spec)).collect()
}

/// SIGTERMs every worker and checks each exits cleanly within its grace period.
fn terminate_all(workers: Vec<WorkerProcess>) {
    for worker in workers {
        let id = worker.id.clone();
        assert!(
            worker.terminate(Duration::from_secs(20)),
            "worker {id} did not exit cleanly on SIGTERM"
        );
    }
}

async fn ledger_rows(ledger: &Ledger) -> Vec<LedgerRow> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || ledger.rows())
        .await
        .expect("ledger")
}

async fn check(url: &str, ledger: &Ledger, options: CheckOptions) -> battery::Report {
    let rows = ledger_rows(ledger).await;
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || battery::check(&url, &rows, &options))
        .await
        .expect("checker")
}

/// A PostgreSQL battery test's setting: the engine database and the ledger (each a fresh
/// schema), a driver engine, and this test's turn to run.
struct Run {
    db: TestDatabase,
    ledger_db: TestDatabase,
    ledger: Ledger,
    tasker: Tasker,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

/// `None` (with a notice) when no PostgreSQL server is configured.
async fn postgres(test: &str) -> Option<Run> {
    let db = TestDatabase::postgres(test)?;
    let ledger_db = TestDatabase::postgres(test)?;
    let serial = SERIAL.lock().await;
    let ledger = Ledger::open(&ledger_db.url, 2).expect("ledger");
    let tasker = driver(&db.url, &ledger).await;
    Some(Run {
        db,
        ledger_db,
        ledger,
        tasker,
        _serial: serial,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_worker_processes_complete_every_diamond() {
    let Some(Run {
        db,
        ledger_db,
        ledger,
        tasker,
        _serial,
    }) = postgres("many_workers").await
    else {
        return;
    };
    let (processes, concurrency, n) = (4, 8, size(200, 2000));
    let workers = spawn_all(
        &spec(&db.url, &ledger_db.url, concurrency, 5000, 2),
        processes,
    );
    let started = Instant::now();
    create(&tasker, "diamond", n).await;
    wait_complete(&tasker, n, Duration::from_secs(600)).await;
    let took = started.elapsed().as_secs_f64();
    terminate_all(workers);
    let report = check(&db.url, &ledger, CheckOptions::default()).await;
    println!(
        "battery many-workers: {processes} processes × {concurrency}, {n} diamonds in {took:.1} s ({:.0} steps/s); {}",
        (n * 4) as f64 / took,
        report.summary()
    );
    assert_eq!(report.tasks, n);
    report.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_storm_never_claims_a_step_twice() {
    let Some(Run {
        db,
        ledger_db: _ledger_db,
        ledger,
        tasker: _driver,
        _serial,
    }) = postgres("claim_storm").await
    else {
        return;
    };
    let (claimers, rounds, ready) = (32, size(3, 20), size(200, 1000));
    let tasker = battery::engine(&ledger, "storm".into(), Duration::ZERO)
        .configure(|c| {
            c.database_url = db.url.clone();
            c.pool_size = claimers as u32 + 2;
            c.environment = None;
        })
        .build()
        .await
        .expect("engine");
    let (mut claims, mut doubles) = (0usize, 0usize);
    let mut claiming = Duration::ZERO;
    for round in 0..rounds {
        let ids = create_as(&tasker, "single", ready, &format!("round{round}-")).await;
        assert_eq!(ids.len(), ready);
        let barrier = Arc::new(tokio::sync::Barrier::new(claimers));
        let mut set = tokio::task::JoinSet::new();
        let started = Instant::now();
        for c in 0..claimers {
            let (tasker, barrier) = (tasker.clone(), Arc::clone(&barrier));
            set.spawn(async move {
                let owner = format!("claimer-{round}-{c}");
                barrier.wait().await;
                let mut mine = Vec::new();
                loop {
                    let got = tasker
                        .claim_steps(&owner, 8, Duration::from_secs(60))
                        .await
                        .expect("claim");
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|s| (s, owner.clone())));
                }
            });
        }
        let mut all = Vec::new();
        while let Some(mine) = set.join_next().await {
            all.extend(mine.expect("claimer"));
        }
        claiming += started.elapsed();
        let distinct: HashSet<i64> = all.iter().map(|(s, _)| s.step_id).collect();
        claims += all.len();
        doubles += all.len() - distinct.len();
        assert_eq!(
            distinct.len(),
            ready,
            "round {round}: every ready step claimed"
        );
        let outcomes: Vec<Outcome> = all
            .into_iter()
            .map(|(s, owner)| Outcome {
                step_id: s.step_id,
                task_id: s.task_id,
                name: s.name,
                attempt: s.attempt,
                owner,
                concurrent: s.concurrent,
                result: Ok("null".to_owned()),
                duration_ms: None,
            })
            .collect();
        let recorded = tasker.complete_steps(outcomes).await.expect("complete");
        assert!(recorded.iter().all(|r| *r == CompletionOutcome::Recorded));
    }
    println!(
        "battery claim-storm: {rounds} rounds × {ready} ready steps, {claimers} claimers: {claims} claims, {doubles} double claims, {:.0} claims/s",
        claims as f64 / claiming.as_secs_f64()
    );
    assert_eq!(doubles, 0);
    assert_eq!(claims, rounds * ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fan_in_join_runs_exactly_once() {
    let Some(Run {
        db,
        ledger_db,
        ledger,
        tasker,
        _serial,
    }) = postgres("fan_in").await
    else {
        return;
    };
    let n = size(20, 200);
    let workers = spawn_all(&spec(&db.url, &ledger_db.url, 8, 5000, 0), 4);
    let started = Instant::now();
    create(&tasker, "fan_in", n).await;
    wait_complete(&tasker, n, Duration::from_secs(600)).await;
    let took = started.elapsed().as_secs_f64();
    terminate_all(workers);
    let rows = ledger_rows(&ledger).await;
    let mut joins: HashMap<i64, usize> = HashMap::new();
    for row in rows
        .iter()
        .filter(|r| r.step == "join" && r.mark == "start")
    {
        *joins.entry(row.task_id).or_default() += 1;
    }
    let once = joins.values().filter(|n| **n == 1).count();
    let report = check(&db.url, &ledger, CheckOptions::default()).await;
    println!(
        "battery fan-in: {n} tasks of 1→50→1 on 4 processes × 8 in {took:.1} s: joins run once {once}/{n}; {}",
        report.summary()
    );
    assert_eq!(once, n, "each join runs exactly once: {joins:?}");
    report.assert_clean();
}

/// The database clock, as the ledger stamps it, read on a connection opened before the run:
/// four workers and their ledger pools hold close to PostgreSQL's default 100 connections, so
/// one opened at each kill could find none left.
fn ledger_now(clock: &std::sync::Mutex<diesel::pg::PgConnection>) -> chrono::NaiveDateTime {
    #[derive(QueryableByName)]
    struct Now {
        #[diesel(sql_type = diesel::sql_types::Timestamp)]
        at: chrono::NaiveDateTime,
    }
    let mut c = clock.lock().expect("ledger clock");
    diesel::sql_query("SELECT clock_timestamp() AT TIME ZONE 'UTC' AS at")
        .get_result::<Now>(&mut *c)
        .expect("clock")
        .at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_loses_nothing() {
    let Some(Run {
        db,
        ledger_db,
        ledger,
        tasker,
        _serial,
    }) = postgres("kill_nine").await
    else {
        return;
    };
    let (n, kills) = (size(200, 1500), size(3, 20));
    let lease_ms = 2000;
    // Steps work 300 ms, so the run outlasts the kills and every kill finds steps in flight.
    let spec = spec(&db.url, &ledger_db.url, 8, lease_ms, 300);
    let clock = Arc::new(std::sync::Mutex::new(
        diesel::pg::PgConnection::establish(&ledger_db.url).expect("ledger clock"),
    ));
    let mut workers = spawn_all(&spec, 4);
    let started = Instant::now();
    let creating = {
        let tasker = tasker.clone();
        tokio::spawn(async move { create(&tasker, "diamond", n).await })
    };
    let mut killed: Vec<(String, chrono::NaiveDateTime)> = Vec::new();
    for _ in 0..kills {
        let pause = Duration::from_millis(500 + fastrand_u64(2500));
        tokio::time::sleep(pause).await;
        let victim = workers.swap_remove(fastrand_u64(workers.len() as u64) as usize);
        let id = victim.id.clone();
        let clock = Arc::clone(&clock);
        let at = tokio::task::spawn_blocking(move || {
            let at = ledger_now(&clock);
            victim.kill9();
            at
        })
        .await
        .expect("kill");
        killed.push((id, at));
        let spec = spec.clone();
        workers.push(
            tokio::task::spawn_blocking(move || WorkerProcess::spawn(WORKER, &spec))
                .await
                .expect("restart"),
        );
    }
    creating.await.expect("creates");
    wait_complete(&tasker, n, Duration::from_secs(900)).await;
    let took = started.elapsed().as_secs_f64();
    terminate_all(workers);

    // Re-claim time: from a kill to the next start of each step the killed worker held (started
    // before the kill, and its result not the one accepted).
    let rows = ledger_rows(&ledger).await;
    let accepted: HashMap<i64, String> = tasker_steps_results(&db.url);
    let mut reclaim_ms = Vec::new();
    for (worker, at) in &killed {
        let held: HashSet<i64> = rows
            .iter()
            .filter(|r| &r.worker == worker && r.mark == "start" && r.at <= *at)
            .filter(|r| accepted.get(&r.step_id) != Some(worker))
            .map(|r| r.step_id)
            .collect();
        for step in held {
            if let Some(next) = rows
                .iter()
                .filter(|r| r.step_id == step && r.mark == "start" && r.at > *at)
                .map(|r| r.at)
                .min()
            {
                reclaim_ms.push((next - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
    }
    let report = check(&db.url, &ledger, CheckOptions::default()).await;
    let held = reclaim_ms.len();
    assert!(
        held > 0,
        "the kills found no step in flight, so they tested nothing"
    );
    println!(
        "battery kill-9: {kills} kills of 4 processes × 8 (lease {lease_ms} ms), {n} diamonds in {took:.1} s; {held} held steps re-claimed after p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {}",
        percentile(&mut reclaim_ms, 50.0),
        percentile(&mut reclaim_ms, 99.0),
        percentile(&mut reclaim_ms, 100.0),
        report.summary()
    );
    report.assert_clean();
}

/// Each step's accepted result's worker.
fn tasker_steps_results(url: &str) -> HashMap<i64, String> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        workflow_step_id: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        results: Option<String>,
    }
    let mut c = diesel::pg::PgConnection::establish(url).expect("engine database");
    diesel::sql_query("SELECT workflow_step_id, results FROM tasker_workflow_steps")
        .load::<Row>(&mut c)
        .expect("steps")
        .into_iter()
        .filter_map(|r| {
            let value: serde_json::Value = serde_json::from_str(r.results.as_deref()?).ok()?;
            Some((
                r.workflow_step_id,
                value.get("worker")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn fastrand_u64(below: u64) -> u64 {
    // uuid's randomness is enough for picking victims and pauses; no extra dependency.
    (uuid::Uuid::new_v4().as_u128() % u128::from(below.max(1))) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_late_result_is_rejected() {
    let Some(Run {
        db,
        ledger_db,
        ledger,
        tasker,
        _serial,
    }) = postgres("zombie").await
    else {
        return;
    };
    // The zombie's step works 1.5 s under a 1 s lease: long enough to be stopped mid-step.
    let spec = spec(&db.url, &ledger_db.url, 1, 1000, 1500);
    let zombie = WorkerProcess::spawn(WORKER, &spec);
    let task = create(&tasker, "single", 1).await[0];
    let first = wait_for_row(&ledger, |r| r.worker == zombie.id && r.mark == "start").await;
    zombie.signal("STOP");
    let stopped_at = Instant::now();
    let rescuer = WorkerProcess::spawn(WORKER, &spec);
    let done = tasker
        .wait_for_task(task, Duration::from_secs(60))
        .await
        .expect("task");
    assert_eq!(done.state, TaskState::Complete);
    let stopped_for = stopped_at.elapsed();
    zombie.signal("CONT");
    let rejected = wait_for_row(&ledger, |r| r.worker == zombie.id && r.mark == "rejected").await;
    assert_eq!((rejected.step_id, rejected.attempt), (first.step_id, 1));

    // The newer result stands, and a late write through the API is refused with a typed error.
    let steps = tasker.steps(task).await.expect("steps");
    let result = steps[0].results.clone().expect("result");
    assert_eq!(result["worker"], rescuer.id.as_str());
    assert_eq!(result["attempt"], 2);
    let late = tasker
        .complete_step(Outcome {
            step_id: first.step_id,
            task_id: task,
            name: "only".into(),
            attempt: 1,
            owner: zombie.id.clone(),
            concurrent: true,
            result: Ok("\"late\"".into()),
            duration_ms: None,
        })
        .await;
    assert!(
        matches!(late, Err(Error::StaleCompletion { attempt: 1, .. })),
        "{late:?}"
    );
    assert_eq!(
        tasker.steps(task).await.expect("steps")[0].results,
        Some(result)
    );

    let zombie_id = zombie.id.clone();
    terminate_all(vec![zombie, rescuer]);
    let report = check(
        &db.url,
        &ledger,
        CheckOptions {
            stopped_workers: HashSet::from([zombie_id]),
        },
    )
    .await;
    println!(
        "battery zombie: worker stopped {:.1} s past a 1 s lease; its late result for attempt 1 was rejected (workflow.step_result_rejected, Error::StaleCompletion) and attempt 2's stands; {}",
        stopped_for.as_secs_f64(),
        report.summary()
    );
    report.assert_clean();
}

async fn wait_for_row(ledger: &Ledger, found: impl Fn(&LedgerRow) -> bool) -> LedgerRow {
    let started = Instant::now();
    loop {
        if let Some(row) = ledger_rows(ledger).await.into_iter().find(&found) {
            return row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ledger row never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL cluster of the test's own, on a free port, so restarting it disturbs nobody.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// `None` (with a notice) when this machine has no PostgreSQL server binaries.
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("pg_ctl").exists())
            .max()?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::tempdir().expect("cluster directory");
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("port")
            .port();
        let cluster = Self {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = cluster.data();
        run(cluster
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&data));
        run(cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-w", "-l"])
            .arg(data.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                cluster.dir.path().display()
            ))
            .arg("start"));
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast restart: active connections are cut, the server comes back on the same port.
    fn restart(&self) -> Duration {
        let started = Instant::now();
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            // Without `-l` the new server would write to (and hold open) this test's pipes.
            .arg("-l")
            .arg(self.data().join("log"))
            .args(["-w", "-m", "fast", "restart"]));
        started.elapsed()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}

fn run(command: &mut Command) {
    let out = command.output().expect("command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_database_restarts() {
    let Some(ledger_db) = TestDatabase::postgres("restart_ledger") else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let Some(cluster) = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster")
    else {
        assert!(
            !std::env::var("TASKER_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1"),
            "TASKER_TEST_REQUIRE_POSTGRES=1 but there are no PostgreSQL server binaries to start a cluster with"
        );
        // To the real stderr, so the notice shows even though tests capture their output.
        let _ = writeln!(
            std::io::stderr(),
            "notice: database-restart battery skipped: no /usr/lib/postgresql/*/bin/pg_ctl"
        );
        return;
    };
    let url = cluster.url();
    let ledger = Ledger::open(&ledger_db.url, 2).expect("ledger");
    let tasker = driver(&url, &ledger).await;
    let (n, restarts, processes) = (size(150, 1000), size(1, 3), size(2, 4));
    let workers = spawn_all(&spec(&url, &ledger_db.url, 8, 5000, 50), processes);
    let started = Instant::now();
    create(&tasker, "diamond", n).await;
    let cluster = Arc::new(cluster);
    let mut downtime = Vec::new();
    for _ in 0..restarts {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let cluster = Arc::clone(&cluster);
        downtime.push(
            tokio::task::spawn_blocking(move || cluster.restart())
                .await
                .expect("restart")
                .as_secs_f64(),
        );
    }
    wait_complete(&tasker, n, Duration::from_secs(900)).await;
    let took = started.elapsed().as_secs_f64();
    let mut workers = workers;
    let alive = workers
        .iter_mut()
        .map(WorkerProcess::alive)
        .filter(|a| *a)
        .count();
    assert_eq!(alive, processes, "no worker exits");
    terminate_all(workers);
    let report = check(&url, &ledger, CheckOptions::default()).await;
    println!(
        "battery db-restart: {restarts} fast restarts ({}) under {processes} processes × 8, {n} diamonds in {took:.1} s; workers alive {alive}/{processes}; {}",
        downtime
            .iter()
            .map(|d| format!("{d:.1} s"))
            .collect::<Vec<_>>()
            .join(", "),
        report.summary()
    );
    report.assert_clean();
    drop(tasker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_with_four_workers_keeps_every_invariant() {
    let _serial = SERIAL.lock().await;
    let db = TestDatabase::sqlite();
    let ledger_dir = tempfile::tempdir().expect("ledger directory");
    let ledger_url = ledger_dir.path().join("ledger.db").display().to_string();
    let ledger = Ledger::open(&ledger_url, 4).expect("ledger");
    let n = size(100, 500);
    let mut engines = Vec::new();
    for i in 0..4 {
        let tasker = battery::engine(&ledger, format!("sqlite-{i}").into(), Duration::ZERO)
            .configure(|c| {
                c.database_url = db.url.clone();
                c.pool_size = 4;
                c.lease = Duration::from_secs(5);
                c.heartbeat = Duration::from_millis(1000);
                c.sweep_interval = Duration::from_millis(500);
                c.max_poll_interval = Duration::from_millis(100);
                c.environment = None;
            })
            .build()
            .await
            .expect("engine");
        engines.push(tasker);
    }
    let workers: Vec<_> = engines.iter().map(Tasker::start_worker).collect();
    let started = Instant::now();
    create(&engines[0], "diamond", n).await;
    wait_complete(&engines[0], n, Duration::from_secs(600)).await;
    let took = started.elapsed().as_secs_f64();
    for worker in workers {
        worker.shutdown().await;
    }
    let errors = db.count("tasker_workflow_step_transitions WHERE to_state = 'error'");
    let report = check(&db.url, &ledger, CheckOptions::default()).await;
    println!(
        "battery sqlite: 4 workers in one process on one file, {n} diamonds in {took:.1} s ({:.0} steps/s); failed attempts {errors}; {}",
        (n * 4) as f64 / took,
        report.summary()
    );
    assert_eq!(
        errors, 0,
        "no attempt failed, so no busy error reached a step"
    );
    report.assert_clean();
}

/// The checker itself: a clean run passes, and each kind of tampering is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_reports_each_broken_invariant() {
    let db = TestDatabase::sqlite();
    let ledger_dir = tempfile::tempdir().expect("ledger directory");
    let ledger_url = ledger_dir.path().join("ledger.db").display().to_string();
    let ledger = Ledger::open(&ledger_url, 2).expect("ledger");
    let tasker = battery::engine(&ledger, "w1".into(), Duration::ZERO)
        .configure(|c| {
            c.database_url = db.url.clone();
            c.max_poll_interval = Duration::from_millis(50);
            c.environment = None;
        })
        .build()
        .await
        .expect("engine");
    let worker = tasker.start_worker();
    create(&tasker, "diamond", 2).await;
    wait_complete(&tasker, 2, Duration::from_secs(60)).await;
    worker.shutdown().await;
    let clean = check(&db.url, &ledger, CheckOptions::default()).await;
    assert_eq!((clean.tasks, clean.steps), (2, 8));
    clean.assert_clean();

    // A second start of an attempt that ran; an overlapping later attempt; a lost task; a
    // broken history.
    let rows = ledger_rows(&ledger).await;
    let first = rows.iter().find(|r| r.mark == "start").expect("a start");
    let again = first.clone();
    tokio::task::spawn_blocking({
        let ledger = ledger.clone();
        move || {
            ledger.record(
                again.task_id,
                again.step_id,
                &again.step,
                again.attempt,
                "w2",
                battery::Mark::Start,
            )
        }
    })
    .await
    .expect("join")
    .expect("ledger row");
    // Attempt 2 of the same step, started while attempt 1 was still running.
    let mut ledger_conn =
        diesel::sqlite::SqliteConnection::establish(&ledger_url).expect("ledger connection");
    diesel::sql_query(format!(
        "INSERT INTO battery_ledger (task_id, step_id, step, attempt, worker, mark, at) \
         VALUES ({}, {}, '{}', 2, 'w3', 'start', '{}')",
        first.task_id,
        first.step_id,
        first.step,
        (first.at - chrono::Duration::seconds(1)).format("%Y-%m-%d %H:%M:%S%.3f")
    ))
    .execute(&mut ledger_conn)
    .expect("overlapping attempt");
    db.with_sqlite(|c| {
        diesel::sql_query(format!(
            "UPDATE tasker_tasks SET state = 'error' WHERE task_id = {}",
            first.task_id
        ))
        .execute(c)
        .expect("tamper task");
        diesel::sql_query(format!(
            "UPDATE tasker_workflow_step_transition_log SET sort_key = 5 WHERE workflow_step_id = {} AND sort_key = 0",
            first.step_id
        ))
        .execute(c)
        .expect("tamper history");
    });
    let report = check(&db.url, &ledger, CheckOptions::default()).await;
    for kind in ["duplicate attempt:", "overlap:", "lost:", "history:"] {
        assert!(
            report.violations.iter().any(|v| v.starts_with(kind)),
            "no `{kind}` in {:#?}",
            report.violations
        );
    }
}

/// An every-second schedule fired by 4 worker processes, one of them killed with SIGKILL and
/// replaced every second or so (some kills land while a worker is creating a slot's task):
/// every slot from the first to the last runs exactly once, none is missed.
async fn schedule_survives_kills(db: &TestDatabase, ledger_url: &str, driver: &Tasker) {
    driver
        .register_schedule(
            tasker::Schedule::new("battery-tick", "single", "* * * * * *")
                .namespace("battery")
                .version("1.0.0"),
        )
        .await
        .expect("register");
    let spec = spec(&db.url, ledger_url, 2, 2000, 10);
    let mut workers = spawn_all(&spec, 4);
    let kills = size(6, 20);
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(400 + fastrand_u64(1200))).await;
        let victim = workers.swap_remove(fastrand_u64(workers.len() as u64) as usize);
        tokio::task::spawn_blocking(move || victim.kill9())
            .await
            .expect("kill");
        let spec = spec.clone();
        let replacement = tokio::task::spawn_blocking(move || WorkerProcess::spawn(WORKER, &spec))
            .await
            .expect("spawn");
        workers.push(replacement);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    terminate_all(workers);
    let slots: Vec<chrono::NaiveDateTime> = {
        let mut tasks = driver
            .tasks(tasker::TaskFilter {
                limit: tasker::model::MAX_LIST_LIMIT,
                ..Default::default()
            })
            .await
            .expect("tasks");
        tasks.retain(|t| {
            t.idempotency_key
                .as_deref()
                .is_some_and(|k| k.starts_with("schedule:battery-tick:"))
        });
        let mut slots: Vec<_> = tasks.iter().map(|t| t.requested_at).collect();
        slots.sort();
        slots
    };
    let distinct: HashSet<_> = slots.iter().collect();
    let gaps: Vec<_> = slots
        .windows(2)
        .filter(|pair| pair[1] - pair[0] != chrono::Duration::seconds(1))
        .collect();
    let schedule = driver.schedule("battery-tick").await.expect("schedule");
    println!(
        "battery schedule ({:?}): {} slots over {kills} kills, {} doubled, {} gaps, {} missed",
        db.kind,
        slots.len(),
        slots.len() - distinct.len(),
        gaps.len(),
        schedule.missed_slots
    );
    assert!(slots.len() >= kills, "only {} slots ran", slots.len());
    assert_eq!(distinct.len(), slots.len(), "a slot ran twice");
    assert!(gaps.is_empty(), "slots lost between {gaps:?}");
    assert_eq!(schedule.missed_slots, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_each_slot_once_across_kills_on_postgres() {
    let Some(Run {
        db,
        ledger_db,
        tasker,
        _serial,
        ..
    }) = postgres("schedule_kills").await
    else {
        return;
    };
    schedule_survives_kills(&db, &ledger_db.url, &tasker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_each_slot_once_across_kills_on_sqlite() {
    let _serial = SERIAL.lock().await;
    let db = TestDatabase::sqlite();
    let ledger_dir = tempfile::tempdir().expect("ledger directory");
    let ledger_url = ledger_dir.path().join("ledger.db").display().to_string();
    let ledger = Ledger::open(&ledger_url, 2).expect("ledger");
    let tasker = driver(&db.url, &ledger).await;
    schedule_survives_kills(&db, &ledger_url, &tasker).await;
}
