//! A worker process for the fault battery: runs the battery's workflows with the ledger handler
//! until SIGTERM, printing `ready ID` once its worker is claiming.
//!
//! Settings come from the environment: `TASKER_DATABASE_URL`, `BATTERY_LEDGER_URL`,
//! `BATTERY_CONCURRENCY`, `BATTERY_LEASE_MS`, `BATTERY_WORK_MS`.
#![allow(
    clippy::print_stdout,
    reason = "the driver reads the worker's id from stdout"
)]

use std::sync::Arc;
use std::time::Duration;

use tasker::prelude::*;
use tasker::{BackoffConfig, WorkerOptions};
use tasker_tests::battery::{self, Ledger, Mark};

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn millis(name: &str) -> Result<Duration, String> {
    var(name)?
        .parse()
        .map(Duration::from_millis)
        .map_err(|e| format!("{name}: {e}"))
}

/// Writes a `rejected` ledger row for each late result this worker had refused.
struct Rejections {
    ledger: Ledger,
    worker: Arc<str>,
}

impl Subscriber for Rejections {
    fn events(&self) -> &[&str] {
        &["workflow.step_result_rejected"]
    }

    async fn handle(&self, event: &Event) -> Result<(), SubscriberError> {
        let (ledger, worker) = (self.ledger.clone(), Arc::clone(&self.worker));
        let (task, step, attempt) = (
            event.task_id.unwrap_or_default(),
            event.step_id.unwrap_or_default(),
            event.attempt.unwrap_or_default(),
        );
        let name = event.step_name.clone().unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            ledger.record(task, step, &name, attempt, &worker, Mark::Rejected)
        })
        .await
        .map_err(|e| SubscriberError::from(e.to_string()))?
        .map_err(SubscriberError::from)
    }
}

async fn run() -> Result<(), String> {
    let url = var("TASKER_DATABASE_URL")?;
    let concurrency: usize = var("BATTERY_CONCURRENCY")?
        .parse()
        .map_err(|e| format!("BATTERY_CONCURRENCY: {e}"))?;
    let lease = millis("BATTERY_LEASE_MS")?;
    let work = millis("BATTERY_WORK_MS")?;
    let ledger = Ledger::open(&var("BATTERY_LEDGER_URL")?, concurrency as u32 + 2)?;
    let options = WorkerOptions {
        concurrency,
        claim_batch: concurrency,
        ..WorkerOptions::from_config(&tasker::TaskerConfig::default())
    };
    let worker_id: Arc<str> = options.id.clone().into();
    let tasker = battery::engine(&ledger, Arc::clone(&worker_id), work)
        .configure(|c| {
            c.database_url = url;
            c.pool_size = concurrency as u32 + 4;
            c.lease = lease;
            c.heartbeat = lease / 4;
            c.sweep_interval = lease / 4;
            c.max_poll_interval = Duration::from_millis(200);
            c.shutdown_grace = Duration::from_secs(10);
            c.backoff = BackoffConfig::fixed(Duration::from_millis(50));
            c.migrate_on_start = false;
        })
        .subscriber(Rejections {
            ledger,
            worker: Arc::clone(&worker_id),
        })
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let worker = tasker.start_worker_with(options);
    println!("ready {}", worker.id());
    tasker::shutdown_signal().await;
    worker.shutdown().await;
    println!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("battery_worker: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
