//! Engine configuration, with the defaults documented on each field.

use std::time::Duration;

use crate::engine::backoff::BackoffConfig;

/// How the engine connects, runs steps and recovers them.
#[derive(Debug, Clone)]
pub struct TaskerConfig {
    /// Database URL: a SQLite file path (or `sqlite://PATH`), or a `postgres://` URL.
    /// Default: `TASKER_DATABASE_URL`, else `tasker.db` in the current directory.
    pub database_url: String,
    /// Maximum connections in the pool. Default: 8.
    pub pool_size: u32,
    /// How long to wait for a pooled connection before failing. Default: 10 s.
    pub connection_timeout: Duration,
    /// Apply the embedded migrations when the engine starts. Default: true.
    pub migrate_on_start: bool,
    /// Steps one worker runs at the same time. Default: 8.
    pub concurrency: usize,
    /// Most steps claimed in one statement. Default: 32.
    pub claim_batch: usize,
    /// How long a claimed step is owned before another worker may recover it. Default: 30 s.
    pub lease: Duration,
    /// How often a worker extends the leases of the steps it runs. Default: lease / 3.
    pub heartbeat: Duration,
    /// How often a worker looks for steps whose lease expired. Default: 5 s.
    pub sweep_interval: Duration,
    /// Longest wait between two claims when idle and no wake-up arrives. Default: 1 s.
    pub max_poll_interval: Duration,
    /// Deadline of one step attempt when its template sets none. Default: 5 min.
    pub default_step_timeout: Duration,
    /// How long a graceful shutdown lets running steps finish. Default: 30 s.
    pub shutdown_grace: Duration,
    /// Retry delays.
    pub backoff: BackoffConfig,
    /// Largest accepted task context, in bytes of JSON. Default: 1 MiB.
    pub max_context_bytes: usize,
    /// Largest accepted step result, in bytes of JSON. Default: 1 MiB.
    pub max_result_bytes: usize,
    /// Environment whose template overrides apply. Default: `TASKER_ENV`.
    pub environment: Option<String>,
}

impl Default for TaskerConfig {
    fn default() -> Self {
        let lease = Duration::from_secs(30);
        Self {
            database_url: std::env::var("TASKER_DATABASE_URL")
                .unwrap_or_else(|_| "tasker.db".to_owned()),
            pool_size: 8,
            connection_timeout: Duration::from_secs(10),
            migrate_on_start: true,
            concurrency: 8,
            claim_batch: 32,
            lease,
            heartbeat: lease / 3,
            sweep_interval: Duration::from_secs(5),
            max_poll_interval: Duration::from_secs(1),
            default_step_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            max_context_bytes: 1 << 20,
            max_result_bytes: 1 << 20,
            environment: std::env::var("TASKER_ENV").ok(),
        }
    }
}
