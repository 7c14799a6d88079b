//! Task and step templates: the shape of a workflow, loaded from YAML or built in code.
//!
//! A [`TaskTemplate`] names a workflow (`namespace/name@version`), the JSON Schema its context
//! must satisfy, and its [`StepTemplate`]s, which form a DAG through their dependencies. The YAML
//! format is the seed engine's (`step_templates`, `depends_on_step`, `depends_on_steps`,
//! `default_retryable`, `environments`, …) with `handler` naming a registered step handler.

mod load;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use load::{MAX_TEMPLATE_BYTES, load_template_file, load_templates_dir, parse_template};
// Written once in `tasker-rules`, which the macros and the CLI apply too.
pub use tasker_rules::{
    DEFAULT_NAMESPACE, DEFAULT_RETRY_LIMIT, DEFAULT_VERSION, MAX_GRAPH_DEPTH, MAX_NAME_LEN,
    MAX_NAMESPACE_LEN, MAX_RETRY_LIMIT, MAX_STEP_NAME_LEN, MAX_STEPS_PER_TEMPLATE, MAX_VERSION_LEN,
    RESERVED_EVENT_PREFIXES,
};
pub use validate::{Problem, TemplateError};

/// A workflow definition: its identity, context schema and steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTemplate {
    /// Task name, unique within its namespace and version.
    pub name: String,
    /// Namespace the task belongs to.
    #[serde(default = "default_namespace")]
    pub namespace_name: String,
    /// Version of the workflow (semantic version).
    #[serde(default = "default_version")]
    pub version: String,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seed key kept for compatibility: the module the handler lived in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_namespace: Option<String>,
    /// Seed key kept for compatibility: the class (here, type) implementing the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_handler_class: Option<String>,
    /// Whether ready steps of one task may run at the same time (default true).
    #[serde(default = "default_true")]
    pub concurrent: bool,
    /// The task's deadline, in seconds from its start: past it, its open steps are cancelled
    /// and it ends in `error` (`deadline_exceeded`). A request's `timeout_seconds` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Dependent system of steps that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_dependent_system: Option<String>,
    /// Optional list of every step name; when present, steps and dependencies must appear in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_steps: Option<Vec<String>>,
    /// JSON Schema the task context must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// The steps of the workflow.
    pub step_templates: Vec<StepTemplate>,
    /// Recurring runs of the workflow: a cron expression each, in a time zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<crate::schedule::ScheduleTemplate>,
    /// Per-environment overrides, merged by step name for the environment in `TASKER_ENV`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, Value>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTemplate {
    /// Step name, unique within the template.
    pub name: String,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Name of the registered step handler that runs this step (`handler_class` is accepted).
    /// A template bound to a `#[task_handler]` leaves it out: the macro supplies it.
    #[serde(default, alias = "handler_class")]
    pub handler: String,
    /// Dependent system this step talks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependent_system: Option<String>,
    /// Whether a failed attempt may be retried (the first attempt always runs).
    #[serde(default = "default_true")]
    pub default_retryable: bool,
    /// Maximum number of attempts.
    #[serde(default = "default_retry_limit")]
    pub default_retry_limit: u32,
    /// Whether the step may be bypassed at task creation (`bypass_steps`).
    #[serde(default)]
    pub skippable: bool,
    /// A single parent step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on_step: Option<String>,
    /// Several parent steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on_steps: Vec<String>,
    /// Free-form configuration handed to the step handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_config: Option<Value>,
    /// Custom events this step may publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_events: Vec<CustomEventTemplate>,
    /// Per-attempt deadline in seconds; the engine default applies when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// JSON Schema of the step's result, for readers of the template (generated for `#[step]`
    /// methods from their output type); results are not validated against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

/// A custom event declared by a step template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomEventTemplate {
    /// Dotted event name, e.g. `order.fulfilled`.
    pub name: String,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}
fn default_version() -> String {
    DEFAULT_VERSION.to_owned()
}
fn default_true() -> bool {
    true
}
fn default_retry_limit() -> u32 {
    DEFAULT_RETRY_LIMIT
}

impl TaskTemplate {
    /// Starts a template in code; add steps with [`TaskTemplate::step`].
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace_name: namespace.into(),
            version: version.into(),
            description: None,
            module_namespace: None,
            task_handler_class: None,
            concurrent: true,
            timeout_seconds: None,
            default_dependent_system: None,
            named_steps: None,
            schema: None,
            step_templates: Vec::new(),
            schedules: Vec::new(),
            environments: BTreeMap::new(),
        }
    }

    /// Adds a recurring run of the workflow.
    pub fn schedule(mut self, schedule: crate::schedule::ScheduleTemplate) -> Self {
        self.schedules.push(schedule);
        self
    }

    /// Adds a step.
    pub fn step(mut self, step: StepTemplate) -> Self {
        self.step_templates.push(step);
        self
    }

    /// Sets the JSON Schema of the context.
    pub fn schema(mut self, schema: Value) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Sets whether the task's ready steps may run at the same time.
    pub fn concurrent(mut self, concurrent: bool) -> Self {
        self.concurrent = concurrent;
        self
    }

    /// Gives its tasks a deadline, `seconds` after they start (see [`TaskTemplate::timeout_seconds`]).
    pub fn timeout_seconds(mut self, seconds: f64) -> Self {
        self.timeout_seconds = Some(seconds);
        self
    }

    /// The `namespace/name@version` identity of the template.
    pub fn full_name(&self) -> String {
        format!("{}/{}@{}", self.namespace_name, self.name, self.version)
    }

    /// Finds a step by name.
    pub fn find_step(&self, name: &str) -> Option<&StepTemplate> {
        self.step_templates.iter().find(|s| s.name == name)
    }
}

impl StepTemplate {
    /// A step run by the registered handler `handler`, with the seed's defaults.
    pub fn new(name: impl Into<String>, handler: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: None,
            handler: handler.into(),
            dependent_system: None,
            default_retryable: true,
            default_retry_limit: DEFAULT_RETRY_LIMIT,
            skippable: false,
            depends_on_step: None,
            depends_on_steps: Vec::new(),
            handler_config: None,
            custom_events: Vec::new(),
            timeout_seconds: None,
            output_schema: None,
        }
    }

    /// Adds parent steps.
    pub fn depends_on<I, S>(mut self, parents: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on_steps
            .extend(parents.into_iter().map(Into::into));
        self
    }

    /// Sets the maximum number of attempts.
    pub fn retry_limit(mut self, limit: u32) -> Self {
        self.default_retry_limit = limit;
        self
    }

    /// Sets whether a failed attempt may be retried.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.default_retryable = retryable;
        self
    }

    /// Marks the step as bypassable at task creation.
    pub fn skippable(mut self, skippable: bool) -> Self {
        self.skippable = skippable;
        self
    }

    /// Sets the handler configuration.
    pub fn handler_config(mut self, config: Value) -> Self {
        self.handler_config = Some(config);
        self
    }

    /// Sets the per-attempt deadline.
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout_seconds = Some(timeout.as_secs_f64());
        self
    }

    /// The effective parents: `depends_on_step` ∪ `depends_on_steps`, in order, without duplicates.
    pub fn dependencies(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = Vec::new();
        for d in self.depends_on_step.iter().chain(&self.depends_on_steps) {
            if !deps.contains(&d.as_str()) {
                deps.push(d);
            }
        }
        deps
    }
}
