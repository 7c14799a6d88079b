//! Runs the order workflow with OpenTelemetry and prints its span tree: one `tasker.task` span
//! with a `tasker.step` child per attempt (the payment's failed first attempt shows `ERROR`).
//!
//! `cargo run -p tasker-examples --features opentelemetry --example traced`. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set (e.g. `http://localhost:4318`), the spans are exported
//! there over OTLP instead.
#![allow(clippy::print_stdout, reason = "an example reports what happened")]

use std::time::Duration;

use tasker::prelude::*;
use tasker::telemetry::SpanTree;
use tasker_examples::order_process::{OrderContext, OrderProcess};

#[tasker::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tree = SpanTree::default();
    let _guard = if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        Some(tasker::telemetry::init_otlp("tasker-example")?)
    } else {
        tasker::telemetry::install(&tree.provider())?;
        None
    };

    let database = std::env::temp_dir().join(format!("tasker-traced-{}.db", std::process::id()));
    let tasker = Tasker::builder()
        .database_url(database.display().to_string())
        .build()
        .await?;
    let worker = tasker.start_worker();
    let request = TaskRequest::of::<OrderProcess>(&OrderContext { order_id: 7 })?
        .correlation_id("example-request-1");
    let task = tasker.create_task(request).await?;
    let done = tasker
        .wait_for_task(task.id, Duration::from_secs(60))
        .await?;
    // Once the worker has stopped, everything it recorded is published and the task's span
    // has ended.
    worker.shutdown().await;

    println!("task {} is {}\n", task.id, done.state);
    print!("{}", tree.render());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    Ok(())
}
