//! Workflows declared in Rust: the traits `#[task_handler]` implements and its types fulfil.
//!
//! Every `#[task_handler]` and `#[step_handler]` in the program is listed at start-up, and
//! [`TaskerBuilder::build`](crate::TaskerBuilder::build) registers them. A handler type that
//! implements `Default` is built by the engine; one that holds state (a pool, a client) is
//! handed over with [`TaskerBuilder::task_handler`](crate::TaskerBuilder::task_handler), and the
//! engine refuses to start while one is missing.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::handler::{DynStepHandler, StepError};
use crate::hooks::{Annotation, FinishedTask, PlanError, StepPlan};
use crate::template::TaskTemplate;

/// A type that can be a task's context: stored as JSON, validated by its JSON Schema.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task context",
    label = "a task context must implement `Serialize`, `Deserialize` and `JsonSchema`",
    note = "derive them: `#[derive(Serialize, Deserialize, JsonSchema)]`"
)]
pub trait TaskContext: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {}

impl<T> TaskContext for T where T: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {}

/// A type that can be a step's output: stored as JSON and handed to the steps that depend on it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the output of a step",
    label = "a step's output must implement `Serialize`, `Deserialize` and `JsonSchema`",
    note = "derive them: `#[derive(Serialize, Deserialize, JsonSchema)]`"
)]
pub trait StepOutput: Serialize + DeserializeOwned + JsonSchema + Send + 'static {}

impl<T> StepOutput for T where T: Serialize + DeserializeOwned + JsonSchema + Send + 'static {}

/// A workflow declared with `#[task_handler]`: its identity, context type, template and steps.
///
/// Implemented by the macro; implementing it by hand is possible but rarely useful.
pub trait TaskHandler: Send + Sync + Sized + 'static {
    /// The typed context every task of this workflow runs over.
    type Context: TaskContext;
    /// The template's namespace.
    const NAMESPACE: &'static str;
    /// The template's name.
    const NAME: &'static str;
    /// The template's version.
    const VERSION: &'static str;

    /// The workflow's template: steps, dependencies, retry settings and context schema, with
    /// the overrides of `environment` when it comes from a YAML file.
    fn template(environment: Option<&str>) -> Result<TaskTemplate>;

    /// The step handlers, each under the name the template's steps use.
    fn step_handlers(self: Arc<Self>) -> Vec<(String, Arc<dyn DynStepHandler>)>;

    /// The context of the task the workflow's schedule `schedule` starts for `slot` (the
    /// slot's time, UTC); `None` runs the schedule's declared context. `#[task_handler(...,
    /// schedule_context = Self::method)]` defines it as `method(slot)`.
    fn schedule_context(
        schedule: &str,
        slot: chrono::DateTime<chrono::Utc>,
    ) -> Option<Self::Context> {
        let _ = (schedule, slot);
        None
    }

    /// Whether the engine calls
    /// [`establish_step_dependencies_and_defaults`](TaskHandler::establish_step_dependencies_and_defaults);
    /// `#[task_handler]` sets it when the impl defines that method.
    const ESTABLISHES_STEPS: bool = false;

    /// Whether the engine calls [`update_annotations`](TaskHandler::update_annotations);
    /// `#[task_handler]` sets it when the impl defines that method.
    const UPDATES_ANNOTATIONS: bool = false;

    /// Adjusts a task's steps for its context before the task is written (the seed's hook of
    /// this name): retry settings, skippable, bypassed, and extra dependencies. An error refuses
    /// the task ([`Error::StepPlan`](crate::Error::StepPlan)) and nothing is written. Define it
    /// in the `#[task_handler]` impl as `fn establish_step_dependencies_and_defaults(&self,
    /// context: &Context, steps: &mut StepPlan) -> Result<(), PlanError>`.
    fn establish_step_dependencies_and_defaults(
        &self,
        context: &Self::Context,
        steps: &mut StepPlan,
    ) -> std::result::Result<(), PlanError> {
        let _ = (context, steps);
        Ok(())
    }

    /// The annotations to add to a task each time it finishes, complete or in error (the
    /// seed's `update_annotations`). They are written after the task's state is, but before its
    /// `task.completed` or `task.failed` event is published. Define it in the `#[task_handler]`
    /// impl as `fn update_annotations(&self, task: &FinishedTask<Context>) -> Vec<Annotation>`.
    fn update_annotations(&self, task: &FinishedTask<Self::Context>) -> Vec<Annotation> {
        let _ = task;
        Vec::new()
    }
}

/// A step parameter that can take its parent's output `T`: `T` itself, or `Option<T>` for a
/// parent that may be bypassed (its output is then `None`).
#[diagnostic::on_unimplemented(
    message = "this step parameter is `{Self}`, but the step it depends on outputs `{T}`",
    label = "expected `{T}` or `Option<{T}>`",
    note = "a step's parameters after its context are the outputs of its `depends_on` steps, in order"
)]
pub trait StepInput<T> {}

// Not recommended in errors: the note would point into this file, and the message already says
// what fits.
#[diagnostic::do_not_recommend]
impl<T> StepInput<T> for T {}
#[diagnostic::do_not_recommend]
impl<T> StepInput<T> for Option<T> {}

/// What a step method may return: `Result<T, E>` where `E` converts into a [`StepError`].
#[diagnostic::on_unimplemented(
    message = "a step must return `Result<T, StepError>`, not `{Self}`",
    label = "return `Result<T, E>` where `E: Into<StepError>`"
)]
pub trait StepReturn {
    /// The step's output on success.
    type Output;
    /// Converts the error into a [`StepError`].
    fn into_step_result(self) -> Result<Self::Output, StepError>;
}

impl<T, E: Into<StepError>> StepReturn for Result<T, E> {
    type Output = T;
    fn into_step_result(self) -> Result<T, StepError> {
        self.map_err(Into::into)
    }
}

/// Classifies any error while propagating it with `?`: `.retryable()?` or `.permanent()?`.
pub trait ResultExt<T> {
    /// Turns the error into a retryable [`StepError`].
    fn retryable(self) -> Result<T, StepError>;
    /// Turns the error into a permanent [`StepError`].
    fn permanent(self) -> Result<T, StepError>;
}

impl<T, E: std::fmt::Display> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, StepError> {
        self.map_err(StepError::retryable)
    }
    fn permanent(self) -> Result<T, StepError> {
        self.map_err(StepError::permanent)
    }
}
