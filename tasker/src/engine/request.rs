//! What a caller asks for when creating a task.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::template::{DEFAULT_NAMESPACE, DEFAULT_VERSION};

/// Longest `initiator`, `source_system` and `reason`, in characters.
pub(crate) const MAX_LABEL_CHARS: usize = 128;
/// Longest `correlation_id`, in characters.
const MAX_CORRELATION_ID_CHARS: usize = 128;
/// Longest `idempotency_key`, in characters.
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Longest delay a request may ask for: 100 years, in seconds.
pub(crate) const MAX_DELAY_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;
/// The documented form of text a column can store: no NUL character (see `check_storable`).
pub(crate) const STORABLE: &str = "^[^\\x00]*$";

/// A request to run a workflow over a context, with the seed's fields and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
// One way of saying when: `run_at` or `delay_seconds`, not both.
#[schemars(extend("not" = {
    "required": ["run_at", "delay_seconds"],
    "properties": { "run_at": { "type": "string" }, "delay_seconds": { "type": "number" } }
}))]
pub struct TaskRequest {
    /// Task (template) name.
    pub name: String,
    /// Template namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Template version (default `0.1.0`).
    #[serde(default = "default_version")]
    pub version: String,
    /// The JSON context, validated against the template's schema.
    #[serde(default = "empty_object")]
    pub context: Value,
    /// Who asked (default `unknown`).
    #[serde(default = "unknown")]
    #[schemars(length(max = MAX_LABEL_CHARS), regex(pattern = STORABLE))]
    pub initiator: String,
    /// Which system asked (default `unknown`).
    #[serde(default = "unknown")]
    #[schemars(length(max = MAX_LABEL_CHARS), regex(pattern = STORABLE))]
    pub source_system: String,
    /// Why (default `unknown`).
    #[serde(default = "unknown")]
    #[schemars(length(max = MAX_LABEL_CHARS), regex(pattern = STORABLE))]
    pub reason: String,
    /// Free tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Skippable steps to resolve at creation without running them.
    #[serde(default)]
    pub bypass_steps: Vec<String>,
    /// When the request was made (default: now).
    #[serde(default)]
    pub requested_at: Option<DateTime<Utc>>,
    /// Claim priority: higher runs first (default 0).
    #[serde(default, deserialize_with = "crate::integral::deserialize")]
    pub priority: i32,
    /// Caller-provided idempotency key: a second request with the same key returns the first task.
    #[serde(default)]
    #[schemars(length(min = 1, max = MAX_IDEMPOTENCY_KEY_CHARS), regex(pattern = STORABLE))]
    pub idempotency_key: Option<String>,
    /// When its steps may start (UTC): the task is created at once, and waits until then.
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// Seconds from now (the database clock) until its steps may start; not with `run_at`.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = MAX_DELAY_SECONDS))]
    pub delay_seconds: Option<f64>,
    /// Seconds from its start until its deadline (default: the template's `timeout_seconds`):
    /// past it, its open steps are cancelled and it ends in `error` (`deadline_exceeded`).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = MAX_DELAY_SECONDS))]
    pub timeout_seconds: Option<f64>,
    /// Carried to every span and event of the task (default: a new UUID), so its work can be
    /// followed across processes and into the caller's own logs.
    #[serde(default)]
    #[schemars(length(min = 1, max = MAX_CORRELATION_ID_CHARS), regex(pattern = STORABLE))]
    pub correlation_id: Option<String>,
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}
fn default_version() -> String {
    DEFAULT_VERSION.to_owned()
}
fn unknown() -> String {
    "unknown".to_owned()
}
fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl TaskRequest {
    /// A request for the `#[task_handler]` workflow `H` over its typed context; the other
    /// fields can be set as usual before it is created.
    pub fn of<H: crate::workflow::TaskHandler>(context: &H::Context) -> crate::Result<Self> {
        Ok(Self::new(H::NAME)
            .namespace(H::NAMESPACE)
            .version(H::VERSION)
            .context(serde_json::to_value(context)?))
    }

    /// A request for task `name` in the default namespace and version, with an empty context.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: default_namespace(),
            version: default_version(),
            context: empty_object(),
            initiator: unknown(),
            source_system: unknown(),
            reason: unknown(),
            tags: Vec::new(),
            bypass_steps: Vec::new(),
            requested_at: None,
            run_at: None,
            delay_seconds: None,
            timeout_seconds: None,
            priority: 0,
            idempotency_key: None,
            correlation_id: None,
        }
    }

    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the context.
    pub fn context(mut self, context: Value) -> Self {
        self.context = context;
        self
    }

    /// Sets who asked.
    pub fn initiator(mut self, initiator: impl Into<String>) -> Self {
        self.initiator = initiator.into();
        self
    }

    /// Sets which system asked.
    pub fn source_system(mut self, source_system: impl Into<String>) -> Self {
        self.source_system = source_system.into();
        self
    }

    /// Sets why.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Bypasses a skippable step.
    pub fn bypass_step(mut self, step: impl Into<String>) -> Self {
        self.bypass_steps.push(step.into());
        self
    }

    /// Sets the correlation id carried to the task's spans and events.
    pub fn correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Sets the claim priority: higher runs first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Starts the task's steps at `at` (UTC) instead of now; the task exists, durable and
    /// cancellable, from the start.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self.delay_seconds = None;
        self
    }

    /// Starts the task's steps `delay` from now (the database clock) instead of at once.
    pub fn delay(mut self, delay: std::time::Duration) -> Self {
        self.delay_seconds = Some(delay.as_secs_f64());
        self.run_at = None;
        self
    }

    /// Gives the task a deadline, `timeout` after it starts (instead of its template's).
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout_seconds = Some(timeout.as_secs_f64());
        self
    }

    /// Sets when the request was made.
    pub fn requested_at(mut self, at: DateTime<Utc>) -> Self {
        self.requested_at = Some(at);
        self
    }

    /// Refuses a field longer than what is stored of it, or an empty key.
    pub(crate) fn check_fields(&self) -> crate::Result<()> {
        for (field, value) in [
            ("initiator", &self.initiator),
            ("source_system", &self.source_system),
            ("reason", &self.reason),
        ] {
            check_label(field, value)?;
        }
        if let Some(at) = self.requested_at {
            check_time("requested_at", at)?;
        }
        if let Some(at) = self.run_at {
            check_time("run_at", at)?;
        }
        if let Some(delay) = self.delay_seconds {
            if self.run_at.is_some() {
                return Err(Error::InvalidField {
                    field: "delay_seconds",
                    problem: "give `run_at` or `delay_seconds`, not both".to_owned(),
                });
            }
            if !(0.0..=MAX_DELAY_SECONDS).contains(&delay) {
                return Err(Error::InvalidField {
                    field: "delay_seconds",
                    problem: format!("must be 0 to {MAX_DELAY_SECONDS} seconds (100 years)"),
                });
            }
        }
        if let Some(timeout) = self.timeout_seconds
            && !(0.0..=MAX_DELAY_SECONDS).contains(&timeout)
        {
            return Err(Error::InvalidField {
                field: "timeout_seconds",
                problem: format!("must be 0 to {MAX_DELAY_SECONDS} seconds (100 years)"),
            });
        }
        for (field, value, max) in [
            (
                "correlation_id",
                &self.correlation_id,
                MAX_CORRELATION_ID_CHARS,
            ),
            (
                "idempotency_key",
                &self.idempotency_key,
                MAX_IDEMPOTENCY_KEY_CHARS,
            ),
        ] {
            let Some(value) = value else { continue };
            if value.is_empty() || value.chars().count() > max {
                return Err(Error::InvalidField {
                    field,
                    problem: format!("must be 1 to {max} characters"),
                });
            }
            check_storable(field, value)?;
        }
        Ok(())
    }
}

/// A label (`initiator`, `source_system`, `reason`): at most [`MAX_LABEL_CHARS`] characters,
/// and storable.
pub(crate) fn check_label(field: &'static str, value: &str) -> crate::Result<()> {
    if value.chars().count() > MAX_LABEL_CHARS {
        return Err(Error::InvalidField {
            field,
            problem: format!("is longer than {MAX_LABEL_CHARS} characters"),
        });
    }
    check_storable(field, value)
}

/// Refuses text a database column cannot hold: PostgreSQL's text types refuse the NUL
/// character (SQLite would store it, so both refuse it alike).
fn check_storable(field: &'static str, value: &str) -> crate::Result<()> {
    if value.contains('\0') {
        return Err(Error::InvalidField {
            field,
            problem: "contains the NUL character (U+0000), which cannot be stored".to_owned(),
        });
    }
    Ok(())
}

/// Refuses a time outside years 1 to 9999, which every backend stores and orders alike
/// (PostgreSQL's `timestamp` ends at 4713 BC, SQLite's text form sorts only four-digit years).
fn check_time(field: &'static str, at: chrono::DateTime<chrono::Utc>) -> crate::Result<()> {
    use chrono::Datelike;
    if !(1..=9999).contains(&at.year()) {
        return Err(Error::InvalidField {
            field,
            problem: format!("{at} is outside the years 1 to 9999"),
        });
    }
    Ok(())
}

/// How a task's `identity_hash` is made, which decides what counts as a duplicate request.
#[derive(Clone, Default)]
pub enum IdentityStrategy {
    /// Every request is a new task (the seed's default).
    #[default]
    Unique,
    /// Identical requests within the same minute are one task (the seed's `:hash`); the second
    /// gets [`Error::DuplicateRequest`](crate::Error::DuplicateRequest).
    Hash,
    /// Requests to which a [`TaskIdentity`] of yours gives the same identity are one task (the
    /// seed's `:custom`); the second gets [`Error::DuplicateRequest`](crate::Error::DuplicateRequest).
    Custom(std::sync::Arc<dyn TaskIdentity>),
}

impl IdentityStrategy {
    /// The strategy of `identity`.
    pub fn custom(identity: impl TaskIdentity) -> Self {
        Self::Custom(std::sync::Arc::new(identity))
    }

    /// The identity hash of `request` made at `requested_at`, or `None` when every request is
    /// its own task.
    pub(crate) fn hash(
        &self,
        request: &TaskRequest,
        requested_at: DateTime<Utc>,
    ) -> Option<String> {
        match self {
            Self::Unique => None,
            Self::Hash => Some(identity_hash(request, requested_at)),
            Self::Custom(identity) => Some(hex_sha256(&identity.identity(request, requested_at))),
        }
    }
}

impl std::fmt::Debug for IdentityStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unique => "Unique",
            Self::Hash => "Hash",
            Self::Custom(_) => "Custom(..)",
        })
    }
}

/// Derives a task's identity from its request, for [`IdentityStrategy::custom`]: requests
/// with the same identity are one task, and a later one gets
/// [`Error::DuplicateRequest`](crate::Error::DuplicateRequest). An idempotency key, when the
/// request has one, still decides instead.
///
/// ```
/// use chrono::{DateTime, Utc};
/// use tasker::{IdentityStrategy, TaskIdentity, TaskRequest};
///
/// /// One task per order and day, whoever asks.
/// struct OrderPerDay;
///
/// impl TaskIdentity for OrderPerDay {
///     fn identity(&self, request: &TaskRequest, requested_at: DateTime<Utc>) -> String {
///         format!(
///             "{}/{}:{}:{}",
///             request.namespace,
///             request.name,
///             request.context["order_id"],
///             requested_at.format("%Y-%m-%d")
///         )
///     }
/// }
///
/// let strategy = IdentityStrategy::custom(OrderPerDay);
/// # let _ = strategy;
/// ```
pub trait TaskIdentity: Send + Sync + 'static {
    /// The identity of `request`, made at `requested_at` (any text: it is stored as its
    /// SHA-256).
    fn identity(&self, request: &TaskRequest, requested_at: DateTime<Utc>) -> String;
}

/// The seed's identity hash: SHA-256 (hex) of the JSON of these keys, in this order.
pub(crate) fn identity_hash(request: &TaskRequest, requested_at: DateTime<Utc>) -> String {
    #[derive(Serialize)]
    struct Identity<'a> {
        name: &'a str,
        initiator: &'a str,
        source_system: &'a str,
        context: &'a Value,
        reason: &'a str,
        bypass_steps: &'a [String],
        requested_at: String,
    }
    let identity = Identity {
        name: &request.name,
        initiator: &request.initiator,
        source_system: &request.source_system,
        context: &request.context,
        reason: &request.reason,
        bypass_steps: &request.bypass_steps,
        requested_at: requested_at.format("%Y-%m-%d %H:%M").to_string(),
    };
    hex_sha256(&serde_json::to_string(&identity).unwrap_or_default())
}

/// SHA-256 of `text`, in hex.
fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_out_of_bounds_are_named() {
        let long = "é".repeat(MAX_LABEL_CHARS + 1);
        let cases = [
            (TaskRequest::new("t").initiator(long.clone()), "initiator"),
            (
                TaskRequest::new("t").source_system(long.clone()),
                "source_system",
            ),
            (TaskRequest::new("t").reason(long), "reason"),
            (TaskRequest::new("t").correlation_id(""), "correlation_id"),
            (
                TaskRequest::new("t").correlation_id("c".repeat(129)),
                "correlation_id",
            ),
            (TaskRequest::new("t").idempotency_key(""), "idempotency_key"),
            (
                TaskRequest::new("t").idempotency_key("k".repeat(256)),
                "idempotency_key",
            ),
        ];
        for (request, expected) in cases {
            match request.check_fields() {
                Err(Error::InvalidField { field, .. }) => assert_eq!(field, expected),
                other => panic!("{expected}: expected InvalidField, got {other:?}"),
            }
        }
        // At the limits, all is well: 128 characters of two bytes each, 255-byte keys.
        let at_limits = TaskRequest::new("t")
            .initiator("é".repeat(MAX_LABEL_CHARS))
            .correlation_id("c".repeat(128))
            .idempotency_key("k".repeat(255));
        assert!(at_limits.check_fields().is_ok());
    }

    #[test]
    fn identical_requests_in_one_minute_share_a_hash() {
        let request = TaskRequest::new("order").context(serde_json::json!({"order_id": 1}));
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap_or_default();
        let a = identity_hash(&request, at("2026-11-29T10:00:05Z"));
        let b = identity_hash(&request, at("2026-11-29T10:00:55Z"));
        let c = identity_hash(&request, at("2026-11-29T10:01:00Z"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
        let other = identity_hash(&request.clone().reason("other"), at("2026-11-29T10:00:05Z"));
        assert_ne!(a, other);
    }
}
