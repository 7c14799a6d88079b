//! Runs the seed's order-processing workflow end to end and prints every step's transitions.
//!
//! `cargo run -p tasker-examples --example order_process` uses a SQLite file in the system's
//! temporary directory; set `TASKER_DATABASE_URL=postgres://…` to run it on PostgreSQL.
#![allow(clippy::print_stdout, reason = "an example reports what happened")]

use std::time::Duration;

use tasker::prelude::*;
use tasker_examples::order_process::{OrderContext, OrderProcess};

#[tasker::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, temp_file) = match std::env::var("TASKER_DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let path =
                std::env::temp_dir().join(format!("tasker-example-{}.db", std::process::id()));
            (path.display().to_string(), Some(path))
        }
    };
    println!("database: {url}");

    // `OrderProcess` is `Default`, so the engine finds and registers it by itself.
    let tasker = Tasker::builder().database_url(&url).build().await?;
    let worker = tasker.start_worker();

    let request = TaskRequest::of::<OrderProcess>(&OrderContext { order_id: 12345 })?
        .initiator("example")
        .reason("demonstration");
    let task = tasker.create_task(request).await?;
    println!("created task {}", task.id);

    let finished = tasker
        .wait_for_task(task.id, Duration::from_secs(60))
        .await?;
    worker.shutdown().await;

    for step in tasker.steps(task.id).await? {
        println!("\nstep {} (attempts: {})", step.name, step.attempts);
        for t in tasker.step_transitions(step.step_id).await? {
            let from = t.from_state.as_deref().unwrap_or("-");
            let note = match t.metadata.get("error") {
                Some(error) => format!("  ({error})"),
                None => String::new(),
            };
            println!("  {:>3}  {from:>11} -> {}{note}", t.sort_key, t.to_state);
        }
    }
    println!("\ntask {} is {}", task.id, finished.state);
    if let Some(path) = temp_file {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    if finished.state != TaskState::Complete {
        return Err(format!("task ended in `{}`", finished.state).into());
    }
    Ok(())
}
