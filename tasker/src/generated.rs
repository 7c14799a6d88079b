//! The runtime side of macro-generated code: compile-time probes, the program-wide lists of
//! handlers and subscribers, and the glue each generated step calls.
//!
//! Not public API: generated code reaches these through [`crate::__private`] only, so they can
//! change with the macros (which pin this crate's exact version).

use std::any::TypeId;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::handler::{BoxFuture, DynStepHandler, StepContext, StepError, StepHandler, StepResult};
use crate::hooks::{HooksOf, TaskHooks};
use crate::subscriber::DynSubscriber;
use crate::template::{Problem, TaskTemplate, TemplateError};
use crate::workflow::{StepOutput, StepReturn, TaskHandler};

/// One step of a task handler: the shared handler and the generated function that runs the step.
pub(crate) struct MethodStep<H> {
    handler: Arc<H>,
    run: fn(Arc<H>, StepContext) -> BoxFuture<'static, StepResult>,
}

impl<H: Send + Sync + 'static> StepHandler for MethodStep<H> {
    fn handle(&self, cx: &StepContext) -> impl Future<Output = StepResult> + Send {
        (self.run)(Arc::clone(&self.handler), cx.clone())
    }
}

/// What registering a task handler adds: its template, and a step handler per step under the
/// name the template's steps use.
pub(crate) struct TaskHandlerParts {
    pub(crate) template: TaskTemplate,
    pub(crate) steps: Vec<(String, Arc<dyn DynStepHandler>)>,
    /// What builds each schedule's run contexts, by schedule name.
    pub(crate) schedule_contexts: Vec<(String, ScheduleContext)>,
    /// Its hooks.
    pub(crate) hooks: Arc<dyn TaskHooks>,
}

/// Builds the context of a schedule's run for its slot.
pub(crate) type ScheduleContext =
    Arc<dyn Fn(chrono::DateTime<chrono::Utc>) -> Result<serde_json::Value> + Send + Sync>;

impl TaskHandlerParts {
    /// The parts of `handler`, with the template overrides of `environment`.
    pub(crate) fn of<H: TaskHandler>(handler: H, environment: Option<&str>) -> Result<Self> {
        let template = H::template(environment)?;
        let schedule_contexts = template
            .schedules
            .iter()
            .map(|schedule| {
                let name = schedule.name_in(&template.namespace_name, &template.name);
                let declared = schedule
                    .context
                    .clone()
                    .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
                let key = name.clone();
                let build: ScheduleContext =
                    Arc::new(move |slot| match H::schedule_context(&key, slot) {
                        Some(context) => Ok(serde_json::to_value(context)?),
                        None => Ok(declared.clone()),
                    });
                (name, build)
            })
            .collect();
        let handler = Arc::new(handler);
        Ok(Self {
            template,
            hooks: Arc::new(HooksOf(Arc::clone(&handler))),
            steps: handler.step_handlers(),
            schedule_contexts,
        })
    }
}

/// A `#[task_handler]`'s entry in the program-wide list the engine reads at start-up.
pub struct TaskHandlerRegistration {
    pub(crate) type_name: &'static str,
    pub(crate) type_id: fn() -> TypeId,
    pub(crate) key: fn() -> (&'static str, &'static str, &'static str),
    /// The parts of a default instance; `None` when the type is not `Default` and an instance
    /// must be handed to the builder.
    pub(crate) default_parts: fn(Option<&str>) -> Option<Result<TaskHandlerParts>>,
}

impl TaskHandlerRegistration {
    /// The registration of `H`, named `type_name` in errors.
    pub const fn new<H: TaskHandler + DefaultProbe>(type_name: &'static str) -> Self {
        Self {
            type_name,
            type_id: TypeId::of::<H>,
            key: key_of::<H>,
            default_parts: default_parts_of::<H>,
        }
    }
}

fn key_of<H: TaskHandler>() -> (&'static str, &'static str, &'static str) {
    (H::NAMESPACE, H::NAME, H::VERSION)
}

fn default_parts_of<H: TaskHandler + DefaultProbe>(
    environment: Option<&str>,
) -> Option<Result<TaskHandlerParts>> {
    H::probe().map(|handler| TaskHandlerParts::of(handler, environment))
}

inventory::collect!(TaskHandlerRegistration);

/// A `#[step_handler]`'s entry in the program-wide list the engine reads at start-up.
pub struct StepHandlerRegistration {
    pub(crate) name: &'static str,
    pub(crate) type_name: &'static str,
    pub(crate) instance: fn() -> Option<Arc<dyn DynStepHandler>>,
}

impl StepHandlerRegistration {
    /// The registration of a standalone step handler under `name`; `instance` builds it when it
    /// needs no state.
    pub const fn new(
        name: &'static str,
        type_name: &'static str,
        instance: fn() -> Option<Arc<dyn DynStepHandler>>,
    ) -> Self {
        Self {
            name,
            type_name,
            instance,
        }
    }
}

inventory::collect!(StepHandlerRegistration);

/// A `#[subscriber]`'s entry in the program-wide list the engine reads at start-up.
pub struct SubscriberRegistration {
    pub(crate) name: &'static str,
    pub(crate) instance: fn() -> Option<Arc<dyn DynSubscriber>>,
}

impl SubscriberRegistration {
    /// The registration of the subscriber `name`; `instance` builds it when it needs no state.
    pub const fn new(name: &'static str, instance: fn() -> Option<Arc<dyn DynSubscriber>>) -> Self {
        Self { name, instance }
    }
}

inventory::collect!(SubscriberRegistration);

/// `Some(Default::default())` for a `Default` type, `None` otherwise, decided at compile time.
///
/// Generated code calls `(&&Probe::<T>::new()).instance()`: method lookup tries `&&Probe<T>`
/// first, which [`ViaDefault`] matches only when `T: Default`, then auto-derefs to
/// [`ViaNothing`].
pub struct Probe<T>(PhantomData<fn() -> T>);

impl<T> Probe<T> {
    /// A probe for `T`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The probe's answer for a `Default` type.
pub trait ViaDefault<T> {
    /// A default instance.
    fn instance(&self) -> Option<T>;
}

impl<T: Default> ViaDefault<T> for &Probe<T> {
    fn instance(&self) -> Option<T> {
        Some(T::default())
    }
}

/// The probe's answer for a type that must be handed over.
pub trait ViaNothing<T> {
    /// No instance.
    fn instance(&self) -> Option<T>;
}

impl<T> ViaNothing<T> for Probe<T> {
    fn instance(&self) -> Option<T> {
        None
    }
}

/// The probe's answer for a task handler, generated next to its [`TaskHandler`] impl.
pub trait DefaultProbe: Sized {
    /// A default instance when the type is `Default`.
    fn probe() -> Option<Self>;
}

/// The JSON Schema of `T` when it implements `JsonSchema`, `None` otherwise, decided at compile
/// time like [`Probe`], so an output type without a schema is reported once, by [`step_result`].
pub struct SchemaProbe<T>(PhantomData<fn() -> T>);

impl<T> SchemaProbe<T> {
    /// A probe for `T`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for SchemaProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The schema probe's answer for a `JsonSchema` type.
pub trait ViaJsonSchema {
    /// Its schema.
    fn schema(&self) -> Option<serde_json::Value>;
}

impl<T: JsonSchema> ViaJsonSchema for &SchemaProbe<T> {
    fn schema(&self) -> Option<serde_json::Value> {
        Some(schema_of::<T>())
    }
}

/// The schema probe's answer for any other type.
pub trait ViaNoSchema {
    /// No schema.
    fn schema(&self) -> Option<serde_json::Value>;
}

impl<T> ViaNoSchema for SchemaProbe<T> {
    fn schema(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Runs a step method's result through serialisation into the stored JSON.
pub fn step_result<R>(result: R) -> StepResult
where
    R: StepReturn,
    R::Output: StepOutput,
{
    let output = result.into_step_result()?;
    serde_json::to_value(output)
        .map_err(|e| StepError::permanent(format!("step output cannot be stored as JSON: {e}")))
}

/// Builds the runnable step of a task handler.
pub fn method_step<H: Send + Sync + 'static>(
    handler: &Arc<H>,
    run: fn(Arc<H>, StepContext) -> BoxFuture<'static, StepResult>,
) -> Arc<dyn DynStepHandler> {
    Arc::new(MethodStep {
        handler: Arc::clone(handler),
        run,
    })
}

/// A parent's stored output as the step parameter's type.
pub fn parent_input<C, P: DeserializeOwned>(
    cx: &StepContext<C>,
    parent: &str,
) -> Result<P, StepError> {
    cx.parent_as(parent)
}

/// Passes a step's future through, requiring it to be `Send` so a step that holds a non-`Send`
/// value across an `.await` is reported at the step.
pub fn require_send<F: Future + Send>(future: F) -> F {
    future
}

/// The attempt's context as `H`'s context type.
///
/// Generic over `H` so a context type that is not [`TaskContext`](crate::TaskContext) is
/// reported once, at the `context = …` option, and not again at every use.
pub fn typed_context<H: TaskHandler>(
    cx: &StepContext,
) -> Result<StepContext<H::Context>, StepError> {
    cx.typed()
}

/// The JSON Schema of `H`'s context type.
pub fn context_schema<H: TaskHandler>() -> serde_json::Value {
    schema_of::<H::Context>()
}

/// The JSON Schema of `T`, as stored in templates.
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    schemars::schema_for!(T).to_value()
}

/// What the placeholder `TaskHandler::template` of a `#[task_handler]` that did not compile
/// returns. The macros emit that placeholder next to their errors so one mistake does not
/// cascade; it never runs, since the program does not compile.
pub fn uncompiled_template(type_name: &'static str) -> Result<TaskTemplate> {
    Err(TemplateError::new(type_name, vec![Problem::new(UNCOMPILED)]).into())
}

const UNCOMPILED: &str = "this task handler did not compile";
