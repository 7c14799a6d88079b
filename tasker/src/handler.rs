//! Step handlers: the code that runs a step, what it is given, and how it fails.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::ErrorClass;
use crate::state::StepState;

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

    /// Whether the error is retryable or permanent, as stored and published.
    pub fn class(&self) -> ErrorClass {
        match self {
            StepError::Retryable { .. } => ErrorClass::Retryable,
            StepError::Permanent { .. } => ErrorClass::Permanent,
        }
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
                "error_class": ErrorClass::Retryable.as_str(),
                "retry_after_seconds": retry_after.map(|d| d.as_secs_f64()),
            }),
            StepError::Permanent { message, code } => serde_json::json!({
                "error": message,
                "error_class": ErrorClass::Permanent.as_str(),
                "error_code": code,
            }),
        }
    }
}

/// Data that does not parse will not parse on a retry either.
impl From<serde_json::Error> for StepError {
    fn from(e: serde_json::Error) -> Self {
        StepError::permanent(format!("invalid data: {e}"))
    }
}

/// I/O fails transiently more often than not: retried.
impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> Self {
        StepError::retryable(format!("I/O error: {e}"))
    }
}

/// An engine error inside a step (say, creating a follow-up task) is retried.
impl From<crate::Error> for StepError {
    fn from(e: crate::Error) -> Self {
        StepError::retryable(e)
    }
}

/// A timeout the step imposed on its own work is retried.
impl From<tokio::time::error::Elapsed> for StepError {
    fn from(e: tokio::time::error::Elapsed) -> Self {
        StepError::retryable(format!("timed out: {e}"))
    }
}

/// Any boxed error is retried; classify it with [`ResultExt`](crate::ResultExt) to choose.
impl From<Box<dyn std::error::Error + Send + Sync>> for StepError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        StepError::retryable(e)
    }
}

/// Everything a step handler is given for one attempt.
///
/// `C` is the type of the task's context: JSON (`serde_json::Value`) for handlers registered by
/// name, the workflow's own context type inside a `#[task_handler]`.
pub struct StepContext<C = Value> {
    inner: Arc<StepContextInner>,
    context: Arc<C>,
}

impl<C> Clone for StepContext<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            context: Arc::clone(&self.context),
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for StepContext<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("task_id", &self.inner.task_id)
            .field("step_id", &self.inner.step_id)
            .field("step_name", &self.inner.step_name)
            .field("attempt", &self.inner.attempt)
            .field("context", &self.context)
            .field("parents", &self.inner.parents)
            .field("handler_config", &self.inner.handler_config)
            .finish()
    }
}

struct StepContextInner {
    task_id: i64,
    step_id: i64,
    step_name: String,
    attempt: u32,
    parents: HashMap<String, Value>,
    handler_config: Value,
    /// Where results of this task's steps that are not parents are looked up.
    outputs: Option<OutputReader>,
    /// Where custom events go, and which may be published.
    events: Option<EventSink>,
}

/// Publishes an event in the engine's process.
pub(crate) type Publisher = Arc<dyn Fn(crate::events::Event) + Send + Sync>;

/// Where a step's custom events go, and what they are checked against.
struct EventSink {
    publisher: Publisher,
    /// The names the step template's `custom_events` declare.
    declared: Vec<String>,
    /// The events of the events directories, whose payload schemas are enforced.
    definitions: Arc<crate::events::EventDefinitions>,
}

/// What a step reads of its task beyond its parents: the state and stored result of another of
/// the task's steps, by name (`None` when the task has no step of that name).
pub(crate) type OutputReader = Arc<
    dyn Fn(String) -> BoxFuture<'static, crate::Result<Option<(StepState, Option<Value>)>>>
        + Send
        + Sync,
>;

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
                parents,
                handler_config,
                outputs: None,
                events: None,
            }),
            context: Arc::new(context),
        }
    }

    /// Lets [`StepContext::output`] read the results of this task's steps that are not parents.
    pub(crate) fn with_outputs(mut self, outputs: OutputReader) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.outputs = Some(outputs);
        }
        self
    }

    /// Lets the step publish custom events: `publisher` delivers them, `declared` are the names
    /// its template's `custom_events` declare, `definitions` those of the events directories.
    pub(crate) fn with_events(
        mut self,
        publisher: Publisher,
        declared: Vec<String>,
        definitions: Arc<crate::events::EventDefinitions>,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.events = Some(EventSink {
                publisher,
                declared,
                definitions,
            });
        }
        self
    }

    /// The task's context deserialised into `T`.
    pub fn context_as<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        T::deserialize(&*self.context)
            .map_err(|e| StepError::permanent(format!("task context does not fit: {e}")))
    }

    /// The same attempt with the context deserialised into the workflow's context type.
    pub fn typed<C: DeserializeOwned>(&self) -> Result<StepContext<C>, StepError> {
        let context = self.context_as::<C>()?;
        Ok(StepContext {
            inner: Arc::clone(&self.inner),
            context: Arc::new(context),
        })
    }
}

impl<C> StepContext<C> {
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

    /// The task's context.
    pub fn context(&self) -> &C {
        &self.context
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

    /// The typed result of an earlier step of the same task, named by the constant a
    /// `#[task_handler]` generates for each step (`OrderProcess::FETCH_ORDER`).
    ///
    /// Parents' results are at hand; any other step's is read from the database, and must have
    /// finished (an ancestor always has).
    pub async fn output<T: DeserializeOwned>(&self, step: StepRef<T>) -> Result<T, StepError> {
        let name = step.name();
        let value = match self.inner.parents.get(name) {
            Some(value) => value.clone(),
            None => self.load_output(name).await?,
        };
        T::deserialize(&value)
            .map_err(|e| StepError::permanent(format!("result of step `{name}` does not fit: {e}")))
    }

    async fn load_output(&self, name: &str) -> Result<Value, StepError> {
        let Some(outputs) = &self.inner.outputs else {
            return Err(StepError::permanent(format!(
                "step `{}` has no parent named `{name}` and no database to look it up in",
                self.inner.step_name
            )));
        };
        let task_id = self.inner.task_id;
        let found = outputs(name.to_owned()).await.map_err(|e| match e {
            // Stored data that cannot be read will not read on a retry either.
            crate::Error::CorruptData { .. } => StepError::permanent(e),
            e => StepError::retryable(format!("reading the result of `{name}`: {e}")),
        })?;
        let (state, results) = found.ok_or_else(|| {
            StepError::permanent(format!("task {task_id} has no step named `{name}`"))
        })?;
        if !state.satisfies_dependents() {
            return Err(StepError::permanent(format!(
                "step `{name}` is `{state}`, not finished; only earlier steps' outputs can be read"
            )));
        }
        // A step resolved by hand without a result has none: its output reads as `null`.
        Ok(results.unwrap_or(Value::Null))
    }

    /// Publishes a custom event declared with [`custom_event!`](crate::custom_event), tagged
    /// with this task, step and attempt. Sensitive keys of `payload` are masked. When an events
    /// directory also defines the event with a `payload_schema`, a payload that does not
    /// satisfy it is refused with a permanent error naming the path of each violation.
    pub fn publish(
        &self,
        event: &crate::events::CustomEvent,
        payload: impl serde::Serialize,
    ) -> Result<(), StepError> {
        self.publish_event(event.name().into(), payload)
    }

    /// Publishes a custom event named in YAML rather than with
    /// [`custom_event!`](crate::custom_event): one the step's template declares in
    /// `custom_events`, or one an events directory defines (see
    /// [`EventDefinitions`](crate::events::EventDefinitions)). A payload that does not satisfy
    /// the definition's `payload_schema` is refused with a permanent error naming the event and
    /// the path of each violation, and nothing is published.
    pub fn publish_declared(
        &self,
        name: &str,
        payload: impl serde::Serialize,
    ) -> Result<(), StepError> {
        let declared = self.inner.events.as_ref().is_some_and(|sink| {
            sink.declared.iter().any(|n| n == name) || sink.definitions.get(name).is_some()
        });
        if !declared {
            return Err(StepError::permanent(format!(
                "step `{}` does not declare the custom event `{name}` in its template's \
                 `custom_events`, and no events directory defines it",
                self.inner.step_name
            )));
        }
        self.publish_event(name.to_owned().into(), payload)
    }

    fn publish_event(
        &self,
        name: std::borrow::Cow<'static, str>,
        payload: impl serde::Serialize,
    ) -> Result<(), StepError> {
        let payload = serde_json::to_value(payload)
            .map_err(|e| StepError::permanent(format!("custom event `{name}`: {e}")))?;
        let Some(sink) = &self.inner.events else {
            // A context built by hand (in a unit test) has nowhere to publish.
            return Ok(());
        };
        // The same payload would break the schema again on a retry.
        sink.definitions
            .check_payload(&name, &payload)
            .map_err(StepError::permanent)?;
        let mut event = crate::events::Event::new(name, crate::events::EventKind::Custom);
        event.task_id = Some(self.inner.task_id);
        event.step_id = Some(self.inner.step_id);
        event.step_name = Some(self.inner.step_name.clone());
        event.attempt = i32::try_from(self.inner.attempt).ok();
        event.payload = payload;
        (sink.publisher)(event);
        Ok(())
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

/// A typed reference to a step of a `#[task_handler]` workflow, for [`StepContext::output`].
pub struct StepRef<T> {
    name: &'static str,
    output: PhantomData<fn() -> T>,
}

impl<T> StepRef<T> {
    /// A reference to the step `name` whose output is a `T`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            output: PhantomData,
        }
    }

    /// The step's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for StepRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for StepRef<T> {}

impl<T> fmt::Debug for StepRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepRef({})", self.name)
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
///
/// `handle` is the seed's `process`: the engine wraps it (events, deadline, storing the result)
/// and cannot be bypassed. To shape what is stored apart from the work, as the seed's
/// `process_results` does, override [`StepHandler::process_results`]:
///
/// ```
/// use tasker::{StepContext, StepHandler, StepResult};
/// use tasker::serde_json::{Value, json};
///
/// struct CountRows;
///
/// impl StepHandler for CountRows {
///     async fn handle(&self, _cx: &StepContext) -> StepResult {
///         Ok(json!(["a", "b"]))
///     }
///
///     fn process_results(&self, output: Value, _cx: &StepContext) -> StepResult {
///         let count = output.as_array().map_or(0, Vec::len);
///         Ok(json!({ "rows": output, "count": count }))
///     }
/// }
/// ```
pub trait StepHandler: Send + Sync + 'static {
    /// Runs one attempt of the step (the seed's `process`).
    fn handle(&self, cx: &StepContext) -> impl Future<Output = StepResult> + Send;

    /// Turns what a successful `handle` returned into the stored result (the seed's
    /// `process_results`); an error fails the attempt as `handle`'s would. By default, the
    /// output is stored as it is.
    fn process_results(&self, output: Value, cx: &StepContext) -> StepResult {
        let _ = cx;
        Ok(output)
    }
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
        Box::pin(async move {
            let output = self.handle(cx).await?;
            self.process_results(output, cx)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    struct CountRows;

    impl StepHandler for CountRows {
        async fn handle(&self, cx: &StepContext) -> StepResult {
            Ok(cx.context()["rows"].clone())
        }

        fn process_results(&self, output: Value, cx: &StepContext) -> StepResult {
            let count = output.as_array().map(Vec::len).ok_or_else(|| {
                StepError::permanent(format!("step `{}` read no rows", cx.step_name()))
            })?;
            Ok(serde_json::json!({ "rows": output, "count": count }))
        }
    }

    fn cx(context: Value) -> StepContext {
        StepContext::new(1, 1, "count", 1, context, HashMap::new(), Value::Null)
    }

    #[tokio::test]
    async fn the_engine_stores_what_process_results_makes_of_the_output() {
        let handler: &dyn DynStepHandler = &CountRows;
        let stored = handler
            .handle_dyn(&cx(serde_json::json!({ "rows": ["a", "b"] })))
            .await
            .expect("result");
        assert_eq!(
            stored,
            serde_json::json!({ "rows": ["a", "b"], "count": 2 })
        );
        let error = handler
            .handle_dyn(&cx(serde_json::json!({})))
            .await
            .expect_err("no rows");
        assert_eq!(error, StepError::permanent("step `count` read no rows"));
    }
}
