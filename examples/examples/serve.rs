//! Serves the REST API with a worker pool over the example workflows.
//!
//! `cargo run -p tasker-examples --features server --example serve`, then for instance:
//!
//! ```sh
//! curl -s -X POST localhost:3000/tasker/tasks -H 'content-type: application/json' \
//!   -d '{"name": "order_process", "namespace": "ecommerce", "version": "1.0.0", "context": {"order_id": 1}}'
//! curl -s localhost:3000/tasker/tasks/1
//! curl -s localhost:3000/tasker/tasks/1/diagram
//! ```
//!
//! `TASKER_BIND` changes the address (default `127.0.0.1:3000`); beyond loopback the server
//! requires `TASKER_API_KEY` (a secret callers send as `X-API-Key`). `TASKER_DATABASE_URL`
//! chooses the database (default `tasker.db`). The log (a failed request's cause among it)
//! goes to stderr, as JSON lines with `TASKER_LOG_FORMAT=json`; `RUST_LOG` filters it (default
//! `info`).
#![allow(clippy::print_stdout, reason = "an example reports what happened")]

use tasker::prelude::*;
use tasker::server::{ApiKey, Auth, ServerConfig};
use tasker_examples::order_process::OrderProcess;

#[tasker::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `TASKER_LOG_FORMAT=json` writes one JSON object per line, as `log.format: json` in a
    // configuration file does.
    let format = match std::env::var("TASKER_LOG_FORMAT").as_deref() {
        Ok("json") => tasker::logging::LogFormat::Json,
        _ => tasker::logging::LogFormat::Text,
    };
    tasker::logging::init(&tasker::logging::LogConfig {
        format,
        ..Default::default()
    })?;
    let metrics = tasker::metrics::install_prometheus()?;
    // Naming the workflow links the example library into this binary (a binary that uses
    // nothing from a library does not link it, so its registrations would be missing).
    // `templates_from_database` also serves templates other worker processes registered.
    let tasker = Tasker::builder()
        .task_handler(OrderProcess::default())
        .templates_from_database(true)
        .build()
        .await?;
    let worker = tasker.start_worker();

    let bind = std::env::var("TASKER_BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let auth = match std::env::var("TASKER_API_KEY") {
        Ok(secret) => Auth::none().api_key(ApiKey::from_secret("operator", &secret, ["*"])),
        Err(_) => Auth::none(),
    };
    let config = ServerConfig {
        auth,
        metrics: Some(metrics),
        ..ServerConfig::default()
    };
    let listener = tasker::server::bind(&bind).await?;
    println!("serving http://{bind}{}  (ctrl-c stops)", config.prefix);
    tasker::server::serve(tasker.clone(), config, listener, tasker::shutdown_signal()).await?;
    worker.shutdown().await;
    Ok(())
}
