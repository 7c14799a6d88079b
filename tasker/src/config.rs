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
    /// Deadline of every database statement (PostgreSQL `statement_timeout`, and the limit on an
    /// idle open transaction); SQLite waits this long for another process's write lock.
    /// Default: 30 s.
    pub statement_timeout: Duration,
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
    /// Keys whose values are masked in events, logs and output (matched ignoring case, anywhere
    /// in the key). Default: the seed's list, [`crate::redact::DEFAULT_KEYS`].
    pub redact_keys: Vec<String>,
    /// What replaces a masked value. Default: `[FILTERED]`.
    pub redact_mask: String,
}

impl Default for TaskerConfig {
    fn default() -> Self {
        let lease = Duration::from_secs(30);
        Self {
            database_url: std::env::var("TASKER_DATABASE_URL")
                .unwrap_or_else(|_| "tasker.db".to_owned()),
            pool_size: 8,
            connection_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
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
            redact_keys: crate::redact::DEFAULT_KEYS
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
            redact_mask: crate::redact::DEFAULT_MASK.to_owned(),
        }
    }
}

/// The keys of a configuration file: every one optional, durations in seconds.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    database_url: Option<String>,
    pool_size: Option<u32>,
    connection_timeout_seconds: Option<f64>,
    statement_timeout_seconds: Option<f64>,
    migrate_on_start: Option<bool>,
    concurrency: Option<usize>,
    claim_batch: Option<usize>,
    lease_seconds: Option<f64>,
    heartbeat_seconds: Option<f64>,
    sweep_interval_seconds: Option<f64>,
    max_poll_interval_seconds: Option<f64>,
    default_step_timeout_seconds: Option<f64>,
    shutdown_grace_seconds: Option<f64>,
    max_context_bytes: Option<usize>,
    max_result_bytes: Option<usize>,
    environment: Option<String>,
    backoff: Option<BackoffFile>,
    redact_keys: Option<Vec<String>>,
    redact_mask: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackoffFile {
    table_seconds: Option<Vec<f64>>,
    multiplier: Option<f64>,
    max_seconds: Option<f64>,
    jitter_enabled: Option<bool>,
    jitter: Option<f64>,
}

impl TaskerConfig {
    /// The redactor these settings describe.
    pub fn redactor(&self) -> crate::redact::Redactor {
        crate::redact::Redactor::new(&self.redact_keys, self.redact_mask.clone())
    }

    /// Reads a YAML configuration file (as `cargo tasker init` writes it) over the defaults.
    ///
    /// `TASKER_DATABASE_URL` and `TASKER_ENV`, when set, win over the file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> crate::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::Config(format!("cannot read `{}`: {e}", path.display())))?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses configuration YAML over the defaults; `source` names it in errors.
    pub fn from_yaml(text: &str, source: &str) -> crate::Result<Self> {
        let file: ConfigFile = if text.trim().is_empty() {
            ConfigFile::default()
        } else {
            serde_norway::from_str(text)
                .map_err(|e| crate::Error::Config(format!("`{source}`: {e}")))?
        };
        let mut config = TaskerConfig::default();
        let seconds = |key: &str, value: Option<f64>| -> crate::Result<Option<Duration>> {
            match value {
                None => Ok(None),
                Some(s) if (0.0..1e9).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
                Some(s) => Err(crate::Error::Config(format!(
                    "`{source}`: `{key}` must be a number of seconds, not {s}"
                ))),
            }
        };
        if std::env::var_os("TASKER_DATABASE_URL").is_none()
            && let Some(url) = file.database_url
        {
            config.database_url = url;
        }
        if std::env::var_os("TASKER_ENV").is_none() && file.environment.is_some() {
            config.environment = file.environment;
        }
        config.pool_size = file.pool_size.unwrap_or(config.pool_size);
        if let Some(keys) = file.redact_keys {
            config.redact_keys = keys;
        }
        if let Some(mask) = file.redact_mask {
            config.redact_mask = mask;
        }
        config.migrate_on_start = file.migrate_on_start.unwrap_or(config.migrate_on_start);
        config.concurrency = file.concurrency.unwrap_or(config.concurrency);
        config.claim_batch = file.claim_batch.unwrap_or(config.claim_batch);
        config.max_context_bytes = file.max_context_bytes.unwrap_or(config.max_context_bytes);
        config.max_result_bytes = file.max_result_bytes.unwrap_or(config.max_result_bytes);
        if let Some(d) = seconds(
            "connection_timeout_seconds",
            file.connection_timeout_seconds,
        )? {
            config.connection_timeout = d;
        }
        if let Some(d) = seconds("statement_timeout_seconds", file.statement_timeout_seconds)? {
            config.statement_timeout = d;
        }
        if let Some(d) = seconds("lease_seconds", file.lease_seconds)? {
            config.lease = d;
            config.heartbeat = d / 3;
        }
        if let Some(d) = seconds("heartbeat_seconds", file.heartbeat_seconds)? {
            config.heartbeat = d;
        }
        if let Some(d) = seconds("sweep_interval_seconds", file.sweep_interval_seconds)? {
            config.sweep_interval = d;
        }
        if let Some(d) = seconds("max_poll_interval_seconds", file.max_poll_interval_seconds)? {
            config.max_poll_interval = d;
        }
        if let Some(d) = seconds(
            "default_step_timeout_seconds",
            file.default_step_timeout_seconds,
        )? {
            config.default_step_timeout = d;
        }
        if let Some(d) = seconds("shutdown_grace_seconds", file.shutdown_grace_seconds)? {
            config.shutdown_grace = d;
        }
        if let Some(backoff) = file.backoff {
            if let Some(table) = backoff.table_seconds {
                config.backoff.table = table;
            }
            config.backoff.multiplier = backoff.multiplier.unwrap_or(config.backoff.multiplier);
            if let Some(d) = seconds("backoff.max_seconds", backoff.max_seconds)? {
                config.backoff.max = d;
            }
            config.backoff.jitter_enabled = backoff
                .jitter_enabled
                .unwrap_or(config.backoff.jitter_enabled);
            config.backoff.jitter = backoff.jitter.unwrap_or(config.backoff.jitter);
        }
        if config.concurrency == 0 || config.claim_batch == 0 || config.pool_size == 0 {
            return Err(crate::Error::Config(format!(
                "`{source}`: `concurrency`, `claim_batch` and `pool_size` must be at least 1"
            )));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_override_defaults_and_unknown_keys_are_refused() {
        let config = TaskerConfig::from_yaml(
            "concurrency: 4\nlease_seconds: 12\nbackoff:\n  max_seconds: 60\n",
            "t.yaml",
        )
        .expect("config");
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.lease, Duration::from_secs(12));
        assert_eq!(config.heartbeat, Duration::from_secs(4));
        assert_eq!(config.backoff.max, Duration::from_secs(60));
        assert_eq!(config.claim_batch, 32);

        let error = TaskerConfig::from_yaml("concurency: 4\n", "t.yaml").expect_err("typo");
        assert!(
            error.to_string().contains("unknown field `concurency`"),
            "{error}"
        );
        let error = TaskerConfig::from_yaml("lease_seconds: -1\n", "t.yaml").expect_err("neg");
        assert!(error.to_string().contains("lease_seconds"), "{error}");
    }
}
