//! Engine configuration, with the defaults documented on each field.
//!
//! A configuration file (YAML, as `cargo tasker init` writes it) names each field as it is here,
//! durations with a `_seconds` suffix in seconds (`lease_seconds: 30`), retry delays under
//! `backoff` (see [`BackoffConfig`]). Every key is optional; an unknown key is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::BackoffConfig;
use crate::error::Error;

/// The default heartbeat is this fraction of the lease, so a lease survives two missed beats.
const HEARTBEATS_PER_LEASE: u32 = 3;

/// How the engine connects, runs steps and recovers them.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskerConfig {
    /// Database URL: a SQLite file path (or `sqlite://PATH`), or a `postgres://` URL.
    /// Default: `TASKER_DATABASE_URL`, else `tasker.db` in the current directory.
    pub database_url: String,
    /// Maximum connections in the pool. Default: 8.
    #[serde(deserialize_with = "at_least_one")]
    pub pool_size: u32,
    /// How long to wait for a pooled connection before failing. Default: 10 s.
    #[serde(
        rename = "connection_timeout_seconds",
        deserialize_with = "crate::seconds::deserialize"
    )]
    pub connection_timeout: Duration,
    /// Deadline of every database statement (PostgreSQL `statement_timeout`, and the limit on an
    /// idle open transaction); SQLite waits this long for another process's write lock.
    /// Default: 30 s.
    #[serde(
        rename = "statement_timeout_seconds",
        deserialize_with = "crate::seconds::deserialize"
    )]
    pub statement_timeout: Duration,
    /// Apply the embedded migrations when the engine starts. Default: true.
    pub migrate_on_start: bool,
    /// Steps one worker runs at the same time. Default: 8.
    #[serde(deserialize_with = "at_least_one")]
    pub concurrency: usize,
    /// Most steps claimed in one statement. Default: 64.
    #[serde(deserialize_with = "at_least_one")]
    pub claim_batch: usize,
    /// Most steps a worker claims ahead of its free slots, so a slot that frees starts the next
    /// step without waiting for a claim, and claims come in batches. They wait in the worker
    /// under their lease, which the heartbeat keeps alive. The worker holds fewer as its steps
    /// run longer: only as many as its slots start within about 50 ms at the recent step
    /// duration, none once steps take longer than that. Default: 64.
    pub prefetch: usize,
    /// How long a claimed step is owned before another worker may recover it. Default: 30 s.
    #[serde(
        rename = "lease_seconds",
        deserialize_with = "crate::seconds::deserialize"
    )]
    pub lease: Duration,
    /// How often a worker extends the leases of the steps it runs. Default: lease / 3.
    #[serde(
        rename = "heartbeat_seconds",
        deserialize_with = "crate::seconds::deserialize"
    )]
    pub heartbeat: Duration,
    /// How often a worker looks for steps whose lease expired. Default: 5 s.
    #[serde(
        rename = "sweep_interval_seconds",
        deserialize_with = "crate::seconds::deserialize"
    )]
    pub sweep_interval: Duration,
    /// Longest wait between two claims when idle and no wake-up arrives. Default: 1 s.
    #[serde(
        rename = "max_poll_interval_seconds",
        deserialize_with = "crate::seconds::deserialize"
    )]
    pub max_poll_interval: Duration,
    /// Deadline of one step attempt when its template sets none. Default: 5 min.
    #[serde(
        rename = "default_step_timeout_seconds",
        deserialize_with = "crate::seconds::deserialize"
    )]
    pub default_step_timeout: Duration,
    /// How long a graceful shutdown lets running steps finish. Default: 30 s.
    #[serde(
        rename = "shutdown_grace_seconds",
        deserialize_with = "crate::seconds::deserialize"
    )]
    pub shutdown_grace: Duration,
    /// Retry delays.
    pub backoff: BackoffConfig,
    /// Finished tasks (complete, cancelled, resolved by hand) unchanged for this long are
    /// deleted with everything of theirs by every worker, a small batch at a time, once a
    /// minute. Default: none (kept forever); `cargo tasker prune` does it by hand.
    #[serde(
        rename = "retention_seconds",
        deserialize_with = "crate::seconds::option"
    )]
    pub retention: Option<Duration>,
    /// Whether retention deletes tasks in `error` too. Default: `false` (they may still be
    /// retried or resolved).
    pub retention_includes_errors: bool,
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
    /// The PostgreSQL schema that holds tasker's tables: created if missing and put on every
    /// session's `search_path`, so several applications can share one database. Ignored on
    /// SQLite. Default: none (the URL's or the server's `search_path`).
    pub postgres_schema: Option<String>,
    /// Directories whose `*.yml`/`*.yaml` files define custom events, with the schemas their
    /// payloads must satisfy (see [`EventDefinitions`](crate::events::EventDefinitions)).
    /// Relative paths are read from the current directory; one that does not exist is an
    /// error, except the default. Default: [`DEFAULT_EVENTS_DIR`].
    pub custom_events_directories: Vec<PathBuf>,
    /// Directories whose `*.yml`/`*.yaml` files turn registered subscribers off, change the
    /// events they receive, or hand them a `config` (see [`mod@crate::subscriber`]). Read like
    /// `custom_events_directories`. Default: [`DEFAULT_SUBSCRIPTIONS_DIR`].
    pub subscriptions_directories: Vec<PathBuf>,
    /// How the process logs when it installs tasker's logger
    /// ([`logging::init`](crate::logging::init), feature `logging`).
    pub log: LogConfig,
}

/// How the process logs: the format of each line and which events are written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (the default, for people) or `json` (one object per line, for log pipelines).
    pub format: LogFormat,
    /// Which events are written, as `RUST_LOG` says it (`info,tasker=debug`); `RUST_LOG`, when
    /// set, wins. Default `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the event's fields and its spans (task and step ids,
    /// correlation id).
    Json,
}

/// The default events directory, the seed's; it may be missing (then no events are defined).
pub const DEFAULT_EVENTS_DIR: &str = "config/tasker/events";

/// The default subscriptions directory, the seed's; it may be missing.
pub const DEFAULT_SUBSCRIPTIONS_DIR: &str = "config/tasker/subscriptions";

impl Default for TaskerConfig {
    fn default() -> Self {
        let lease = Duration::from_secs(30);
        Self {
            database_url: database_url_from_env().unwrap_or_else(|| "tasker.db".to_owned()),
            pool_size: 8,
            connection_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            migrate_on_start: true,
            concurrency: 8,
            claim_batch: 64,
            prefetch: 64,
            lease,
            heartbeat: lease / HEARTBEATS_PER_LEASE,
            sweep_interval: Duration::from_secs(5),
            max_poll_interval: Duration::from_secs(1),
            default_step_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            retention: None,
            retention_includes_errors: false,
            max_context_bytes: 1 << 20,
            max_result_bytes: 1 << 20,
            environment: environment_from_env(),
            redact_keys: crate::redact::DEFAULT_KEYS
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
            redact_mask: crate::redact::DEFAULT_MASK.to_owned(),
            postgres_schema: None,
            log: LogConfig::default(),
            custom_events_directories: vec![PathBuf::from(DEFAULT_EVENTS_DIR)],
            subscriptions_directories: vec![PathBuf::from(DEFAULT_SUBSCRIPTIONS_DIR)],
        }
    }
}

impl TaskerConfig {
    /// The redactor these settings describe.
    pub fn redactor(&self) -> crate::redact::Redactor {
        crate::redact::Redactor::new(&self.redact_keys, self.redact_mask.clone())
    }

    /// Reads a YAML configuration file (as `cargo tasker init` writes it) over the defaults.
    ///
    /// `TASKER_DATABASE_URL` and `TASKER_ENV`, when set, win over the file.
    pub fn from_file(path: impl AsRef<Path>) -> crate::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigUnreadable {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses configuration YAML over the defaults; `source` names it in errors. Every key is
    /// optional, durations are in seconds (`lease_seconds: 30`), and an unknown key is refused
    /// by name.
    pub fn from_yaml(text: &str, source: &str) -> crate::Result<Self> {
        // An empty file (or one of comments only) is a YAML null, not an empty mapping.
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut config: Self = parse_yaml(text, source)?;
        let set: SetKeys = parse_yaml(text, source)?;
        if set.lease_seconds.is_some() && set.heartbeat_seconds.is_none() {
            config.heartbeat = config.lease / HEARTBEATS_PER_LEASE;
        }
        if let Some(url) = database_url_from_env() {
            config.database_url = url;
        }
        if let Some(environment) = environment_from_env() {
            config.environment = Some(environment);
        }
        Ok(config)
    }
}

/// Deserialises `text`; an error names `source` and the key at fault.
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str, source: &str) -> crate::Result<T> {
    serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text)).map_err(|error| {
        let key = error.path().to_string();
        Error::ConfigMalformed {
            file: source.to_owned(),
            // serde_path_to_error writes the document itself as `.`.
            key: (key != ".").then_some(key),
            source: error.into_inner(),
        }
    })
}

/// The keys of a file whose presence changes another key's default.
#[derive(serde::Deserialize)]
struct SetKeys {
    lease_seconds: Option<serde::de::IgnoredAny>,
    heartbeat_seconds: Option<serde::de::IgnoredAny>,
}

/// `TASKER_DATABASE_URL`, which wins over a file's `database_url`.
fn database_url_from_env() -> Option<String> {
    std::env::var("TASKER_DATABASE_URL").ok()
}

/// `TASKER_ENV`, which wins over a file's `environment`.
fn environment_from_env() -> Option<String> {
    std::env::var("TASKER_ENV").ok()
}

/// Reads a count that must be at least 1 (`concurrency`, `claim_batch`, `pool_size`).
fn at_least_one<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + PartialOrd + From<u8>,
{
    let value = T::deserialize(deserializer)?;
    if value < T::from(1) {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(value)
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
        assert_eq!(config.claim_batch, 64);

        let error = TaskerConfig::from_yaml("concurency: 4\n", "t.yaml").expect_err("typo");
        assert!(
            error.to_string().contains("unknown field `concurency`"),
            "{error}"
        );
        let error = TaskerConfig::from_yaml("lease_seconds: -1\n", "t.yaml").expect_err("neg");
        assert!(error.to_string().contains("lease_seconds"), "{error}");
    }

    #[test]
    fn an_unknown_key_is_named_with_the_file_at_any_depth() {
        for (yaml, key) in [
            ("pool_size: 2\nretry_limit: 3\n", "retry_limit"),
            ("backoff:\n  max: 60\n", "max"),
        ] {
            match TaskerConfig::from_yaml(yaml, "config/tasker.yaml") {
                Err(error @ Error::ConfigMalformed { .. }) => {
                    let text = error.to_string();
                    assert!(text.contains(&format!("unknown field `{key}`")), "{text}");
                    assert!(text.contains("`config/tasker.yaml`"), "{text}");
                }
                other => panic!("expected ConfigMalformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_few_keys_leave_every_other_field_at_its_default() {
        let config = TaskerConfig::from_yaml(
            "pool_size: 3\nheartbeat_seconds: 2.5\nbackoff:\n  jitter_enabled: false\n",
            "t.yaml",
        )
        .expect("config");
        let default = TaskerConfig::default();
        assert_eq!(config.pool_size, 3);
        assert_eq!(config.heartbeat, Duration::from_millis(2500));
        assert!(!config.backoff.jitter_enabled);
        // The rest is untouched.
        assert_eq!(config.lease, default.lease);
        assert_eq!(config.statement_timeout, default.statement_timeout);
        assert_eq!(config.concurrency, default.concurrency);
        assert_eq!(config.max_context_bytes, default.max_context_bytes);
        assert_eq!(config.redact_keys, default.redact_keys);
        assert_eq!(config.redact_mask, default.redact_mask);
        assert_eq!(config.backoff.table, default.backoff.table);
        assert_eq!(config.backoff.max, default.backoff.max);
        assert_eq!(config.backoff.jitter, default.backoff.jitter);
        // An empty file, or one of comments only, is all defaults.
        for empty in ["", "  \n", "# nothing set\n"] {
            let config = TaskerConfig::from_yaml(empty, "t.yaml").expect("empty");
            assert_eq!(config.pool_size, default.pool_size, "{empty:?}");
        }
    }

    #[test]
    fn the_init_template_sets_every_default_it_shows() {
        let yaml = include_str!("../../tasker-cli/templates/init/tasker.yaml");
        let config = TaskerConfig::from_yaml(yaml, "tasker.yaml").expect("template");
        let default = TaskerConfig::default();
        assert_eq!(config.lease, default.lease);
        assert_eq!(config.heartbeat, default.heartbeat);
        assert_eq!(config.backoff, default.backoff);
        assert_eq!(config.default_step_timeout, default.default_step_timeout);
        assert_eq!(config.log, default.log);
        let json = TaskerConfig::from_yaml("log:\n  format: json\n", "t.yaml").expect("json");
        assert_eq!(json.log.format, LogFormat::Json);
        assert_eq!(json.log.filter, "info");
        let error = TaskerConfig::from_yaml("log:\n  format: xml\n", "t.yaml").expect_err("xml");
        assert!(error.to_string().contains("log.format"), "{error}");
    }

    #[test]
    fn counts_must_be_at_least_one_and_durations_non_negative() {
        for (yaml, key) in [
            ("concurrency: 0\n", "concurrency"),
            ("claim_batch: 0\n", "claim_batch"),
            ("pool_size: 0\n", "pool_size"),
            (
                "statement_timeout_seconds: -3\n",
                "statement_timeout_seconds",
            ),
            ("backoff:\n  max_seconds: -1\n", "backoff.max_seconds"),
        ] {
            let error = TaskerConfig::from_yaml(yaml, "t.yaml").expect_err(yaml);
            assert!(error.to_string().contains(key), "{yaml:?}: {error}");
        }
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let missing = std::path::Path::new("/nonexistent/tasker.yaml");
        match TaskerConfig::from_file(missing) {
            Err(Error::ConfigUnreadable { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected ConfigUnreadable, got {other:?}"),
        }
    }
}
