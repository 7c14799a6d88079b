//! Step handlers: the code that runs a step, what it is given, and how it fails.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// What a step handler returns: the step's JSON result, or why it failed.
pub type StepResult = Result<Value, StepError>;

/// Why a step attempt failed, and whether another attempt may help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// A transient failure: the step is retried under its policy, after `retry_after` when given
    /// (a server's `Retry-After`), otherwise after the configured backoff.
    #[error("{message}")]
    Retryable {
        /// What went wrong.
        message: String,
        /// How long the server asked us to wait before trying again.
        retry_after: Option<Duration>,
    },
    /// A failure no retry can fix: the step fails at once, whatever its retry limit.
    #[error("{message}")]
    Permanent {
        /// What went wrong.
        message: String,
        /// An application error code, e.g. `HTTP_404`.
        code: Option<String>,
    },
}

impl StepError {
    /// A transient failure, retried after the configured backoff.
    pub fn retryable(message: impl fmt::Display) -> Self {
        StepError::Retryable {
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// A transient failure, retried no sooner than `retry_after`.
    pub fn retry_after(message: impl fmt::Display, retry_after: Duration) -> Self {
        StepError::Retryable {
            message: message.to_string(),
            retry_after: Some(retry_after),
        }
    }

    /// A failure that is not retried.
    pub fn permanent(message: impl fmt::Display) -> Self {
        StepError::Permanent {
            message: message.to_string(),
            code: None,
        }
    }

    /// A failure that is not retried, with an application error code.
    pub fn permanent_with_code(message: impl fmt::Display, code: impl Into<String>) -> Self {
        StepError::Permanent {
            message: message.to_string(),
            code: Some(code.into()),
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Retryable { .. })
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        match self {
            StepError::Retryable { message, .. } | StepError::Permanent { message, .. } => message,
        }
    }

    /// The error as stored in the step's `results` (the seed's `error`/`error_class` keys).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            StepError::Retryable {
                message,
                retry_after,
            } => serde_json::json!({
                "error": message,
                "error_class": "retryable",
                "retry_after_seconds": retry_after.map(|d| d.as_secs_f64()),
            }),
            StepError::Permanent { message, code } => serde_json::json!({
                "error": message,
                "error_class": "permanent",
                "error_code": code,
            }),
        }
    }
}

impl From<serde_json::Error> for StepError {
    fn from(e: serde_json::Error) -> Self {
        StepError::permanent(format!("invalid data: {e}"))
    }
}

/// Everything a step handler is given for one attempt.
#[derive(Debug, Clone)]
pub struct StepContext {
    inner: Arc<StepContextInner>,
}

#[derive(Debug)]
struct StepContextInner {
    task_id: i64,
    step_id: i64,
    step_name: String,
    attempt: u32,
    context: Value,
    parents: HashMap<String, Value>,
    handler_config: Value,
}

impl StepContext {
    /// Builds a context; the engine does this for every attempt, tests may do it by hand.
    pub fn new(
        task_id: i64,
        step_id: i64,
        step_name: impl Into<String>,
        attempt: u32,
        context: Value,
        parents: HashMap<String, Value>,
        handler_config: Value,
    ) -> Self {
        Self {
            inner: Arc::new(StepContextInner {
                task_id,
                step_id,
                step_name: step_name.into(),
                attempt,
                context,
                parents,
                handler_config,
            }),
        }
    }

    /// The task's id.
    pub fn task_id(&self) -> i64 {
        self.inner.task_id
    }

    /// The step's id.
    pub fn step_id(&self) -> i64 {
        self.inner.step_id
    }

    /// The step's name.
    pub fn step_name(&self) -> &str {
        &self.inner.step_name
    }

    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The task's JSON context.
    pub fn context(&self) -> &Value {
        &self.inner.context
    }

    /// The task's context deserialised into `T`.
    pub fn context_as<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        T::deserialize(&self.inner.context)
            .map_err(|e| StepError::permanent(format!("task context does not fit: {e}")))
    }

    /// The results of the step's parents, by step name.
    pub fn parents(&self) -> &HashMap<String, Value> {
        &self.inner.parents
    }

    /// The result of the parent step `name`, if it is a parent and has a result.
    pub fn parent(&self, name: &str) -> Option<&Value> {
        self.inner.parents.get(name)
    }

    /// The result of the parent step `name` deserialised into `T`.
    pub fn parent_as<T: DeserializeOwned>(&self, name: &str) -> Result<T, StepError> {
        let value = self.parent(name).ok_or_else(|| {
            StepError::permanent(format!(
                "step `{}` has no parent named `{name}`",
                self.inner.step_name
            ))
        })?;
        T::deserialize(value).map_err(|e| {
            StepError::permanent(format!("result of parent step `{name}` does not fit: {e}"))
        })
    }

    /// The step template's `handler_config` (JSON `null` when absent).
    pub fn handler_config(&self) -> &Value {
        &self.inner.handler_config
    }

    /// A key that stays the same across attempts of this step, for idempotent side effects.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.inner.task_id, self.inner.step_name)
    }
}

/// The code that runs one step. Implement it with an `async fn`:
///
/// ```
/// use tasker::{StepContext, StepHandler, StepResult};
///
/// struct FetchOrder;
///
/// impl StepHandler for FetchOrder {
///     async fn handle(&self, cx: &StepContext) -> StepResult {
///         let order_id = cx.context()["order_id"].as_i64().unwrap_or_default();
///         Ok(serde_json::json!({ "order_id": order_id, "items": 3 }))
///     }
/// }
/// ```
pub trait StepHandler: Send + Sync + 'static {
    /// Runs one attempt of the step.
    fn handle(&self, cx: &StepContext) -> impl Future<Output = StepResult> + Send;
}

/// A boxed future returned by an object-safe step handler.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`StepHandler`] the registry stores.
pub trait DynStepHandler: Send + Sync + 'static {
    /// Runs one attempt of the step.
    fn handle_dyn<'a>(&'a self, cx: &'a StepContext) -> BoxFuture<'a, StepResult>;
}

impl<H: StepHandler> DynStepHandler for H {
    fn handle_dyn<'a>(&'a self, cx: &'a StepContext) -> BoxFuture<'a, StepResult> {
        Box::pin(self.handle(cx))
    }
}

/// A step handler made from an async closure taking the context by value.
///
/// ```
/// let handler = tasker::handler_fn(|cx| async move { Ok(cx.context().clone()) });
/// # let _ = handler;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = StepResult> + Send + 'static,
{
    FnHandler(f)
}

/// A step handler made from a closure; see [`handler_fn`].
pub struct FnHandler<F>(F);

impl<F, Fut> StepHandler for FnHandler<F>
where
    F: Fn(StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = StepResult> + Send + 'static,
{
    fn handle(&self, cx: &StepContext) -> impl Future<Output = StepResult> + Send {
        (self.0)(cx.clone())
    }
}
