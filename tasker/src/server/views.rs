//! What the API answers: one type per response body, so the handlers and the OpenAPI document
//! (their JSON Schemas, by schemars) cannot drift apart.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::redact::Redactor;
use crate::{StepInfo, StepState, TaskRow, TaskTemplate, WorkerInfo};

/// A status answer (`/health/live`, `/health/ready`).
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct Health {
    /// `live` or `ready`.
    pub(super) status: &'static str,
}

/// What `/health/status` reports.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct HealthStatus {
    /// Always `ok` (a database that does not answer is an error).
    pub(super) status: &'static str,
    /// Tasks by state.
    pub(super) tasks: BTreeMap<String, i64>,
    /// Steps by state.
    pub(super) steps: BTreeMap<String, i64>,
    /// Steps ready to run now.
    pub(super) ready_steps: i64,
    /// How long the oldest ready step has waited, in seconds.
    pub(super) oldest_ready_seconds: Option<f64>,
    /// How far back `workers` looks.
    pub(super) workers_seen_within_seconds: f64,
    /// The workers whose last heartbeat is that recent.
    pub(super) workers: Vec<WorkerInfo>,
}

/// A task, its context redacted.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(super) struct TaskView {
    #[serde(flatten)]
    task: TaskRow,
    /// `namespace/name@version`.
    full_name: String,
}

impl TaskView {
    pub(super) fn new(redactor: &Redactor, mut task: TaskRow) -> Self {
        redactor.redact(&mut task.context);
        let full_name = format!("{}/{}@{}", task.namespace, task.name, task.version);
        Self { task, full_name }
    }
}

/// A task with its steps, and with `?include_dependencies=true` what its graph says now.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct TaskDetail {
    #[serde(flatten)]
    pub(super) task: TaskView,
    /// Its steps, in creation order.
    pub(super) workflow_steps: Vec<StepView>,
    /// Where its steps stand and what that says (the seed's task execution context).
    pub(super) execution_context: crate::ExecutionContext,
    /// Its graph now (asked for with `include_dependencies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dependencies: Option<Dependencies>,
}

/// A page of tasks.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct TaskList {
    /// The tasks, in the order asked for.
    pub(super) tasks: Vec<TaskView>,
    /// The page size.
    pub(super) limit: usize,
    /// How many were skipped.
    pub(super) offset: u64,
}

/// One request's answer within a `POST /tasks` array.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct BatchItem {
    /// The status a single create would answer.
    pub(super) status: u16,
    /// The task, when the request created one or found it by its idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) task: Option<TaskView>,
    /// Why the request was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<super::ApiError>,
}

/// What `POST /tasks` answers: the task, or one item per request of an array.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub(super) enum Created {
    /// A single request's task.
    One(Box<TaskView>),
    /// An array's answers, in request order.
    Many(Vec<BatchItem>),
}

/// A cancelled task.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct Cancelled {
    /// Always true.
    pub(super) cancelled: bool,
    /// Whether anything changed (false when it was already cancelled).
    pub(super) changed: bool,
}

/// A step, its result redacted, with its parents' and children's ids.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(super) struct StepView {
    #[serde(flatten)]
    step: StepInfo,
    /// The steps it waits for.
    parent_ids: Vec<i64>,
    /// The steps that wait for it.
    child_ids: Vec<i64>,
}

impl StepView {
    /// `step` with its links among `edges` (its task's, `(parent, child)`).
    pub(super) fn new(redactor: &Redactor, mut step: StepInfo, edges: &[(i64, i64)]) -> Self {
        if let Some(results) = &mut step.results {
            redactor.redact(results);
        }
        let id = step.step_id;
        Self {
            parent_ids: edges.iter().filter(|e| e.1 == id).map(|e| e.0).collect(),
            child_ids: edges.iter().filter(|e| e.0 == id).map(|e| e.1).collect(),
            step,
        }
    }
}

/// A task's steps.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct StepList {
    /// In creation order.
    pub(super) workflow_steps: Vec<StepView>,
}

/// A step after a cancel.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct CancelledStep {
    #[serde(flatten)]
    pub(super) step: StepView,
    /// Whether anything changed (false when it was already cancelled).
    pub(super) changed: bool,
}

/// A dependency edge between two steps (ids) or step templates (names).
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct Edge<T> {
    /// The parent.
    from: T,
    /// The child.
    to: T,
}

/// What a task's graph says now.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct Dependencies {
    /// Every edge.
    edges: Vec<Edge<i64>>,
    /// The steps without parents.
    roots: Vec<i64>,
    /// The steps without children.
    leaves: Vec<i64>,
    /// The steps that may run now.
    ready: Vec<i64>,
    /// For each step still waiting (by id), the parents it waits for.
    waiting_for: BTreeMap<String, Vec<i64>>,
}

impl Dependencies {
    pub(super) fn of(steps: &[StepInfo], edges: &[(i64, i64)]) -> Self {
        let done = |id: i64| {
            steps.iter().any(|s| {
                s.step_id == id
                    && matches!(s.state, StepState::Complete | StepState::ResolvedManually)
            })
        };
        let ids = |keep: &dyn Fn(&StepInfo) -> bool| -> Vec<i64> {
            steps
                .iter()
                .filter(|s| keep(s))
                .map(|s| s.step_id)
                .collect()
        };
        let waiting_for = steps
            .iter()
            .filter(|s| s.remaining_parents > 0)
            .map(|step| {
                let parents = edges
                    .iter()
                    .filter(|e| e.1 == step.step_id && !done(e.0))
                    .map(|e| e.0)
                    .collect();
                (step.step_id.to_string(), parents)
            })
            .collect();
        Self {
            edges: edges.iter().map(|&(from, to)| Edge { from, to }).collect(),
            roots: ids(&|s| !edges.iter().any(|e| e.1 == s.step_id)),
            leaves: ids(&|s| !edges.iter().any(|e| e.0 == s.step_id)),
            ready: ids(&|s| {
                s.remaining_parents == 0
                    && matches!(s.state, StepState::Pending | StepState::Error)
                    && s.ready_at.is_some()
            }),
            waiting_for,
        }
    }
}

/// A registered template.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct TemplateView {
    namespace: String,
    name: String,
    version: String,
    /// `namespace/name@version`.
    full_name: String,
    description: Option<String>,
    /// Whether its steps may run at the same time.
    concurrent: bool,
    steps: Vec<StepTemplateView>,
}

/// A step of a template.
#[derive(Debug, Serialize, JsonSchema)]
struct StepTemplateView {
    name: String,
    description: Option<String>,
    depends_on: Vec<String>,
    retryable: bool,
    retry_limit: u32,
    skippable: bool,
}

impl TemplateView {
    pub(super) fn new(template: &TaskTemplate) -> Self {
        Self {
            namespace: template.namespace_name.clone(),
            name: template.name.clone(),
            version: template.version.clone(),
            full_name: template.full_name(),
            description: template.description.clone(),
            concurrent: template.concurrent,
            steps: template
                .step_templates
                .iter()
                .map(|s| StepTemplateView {
                    name: s.name.clone(),
                    description: s.description.clone(),
                    depends_on: s.dependencies().iter().map(|d| (*d).to_owned()).collect(),
                    retryable: s.default_retryable,
                    retry_limit: s.default_retry_limit,
                    skippable: s.skippable,
                })
                .collect(),
        }
    }
}

/// A template with its context schema and dependency graph.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct TemplateDetail {
    #[serde(flatten)]
    template: TemplateView,
    /// The JSON Schema its contexts must satisfy, if it has one.
    schema: Option<Value>,
    dependency_graph: DependencyGraph,
}

/// A template's graph: nodes, edges, roots, leaves and each step's depth from the roots.
#[derive(Debug, Serialize, JsonSchema)]
struct DependencyGraph {
    nodes: Vec<String>,
    edges: Vec<Edge<String>>,
    roots: Vec<String>,
    leaves: Vec<String>,
    /// Each step's depth: 0 for roots, one more than its deepest parent otherwise.
    levels: BTreeMap<String, usize>,
}

impl TemplateDetail {
    pub(super) fn new(template: &TaskTemplate) -> Self {
        let steps = &template.step_templates;
        let depends_on = |name: &str| steps.iter().any(|c| c.dependencies().contains(&name));
        let mut levels: BTreeMap<String, usize> = BTreeMap::new();
        for i in template.topological_order() {
            let step = &steps[i];
            let depth = step
                .dependencies()
                .iter()
                .filter_map(|p| levels.get(*p))
                .map(|d| d + 1)
                .max()
                .unwrap_or(0);
            levels.insert(step.name.clone(), depth);
        }
        let names = |keep: &dyn Fn(&crate::StepTemplate) -> bool| -> Vec<String> {
            steps
                .iter()
                .filter(|s| keep(s))
                .map(|s| s.name.clone())
                .collect()
        };
        Self {
            template: TemplateView::new(template),
            schema: template.schema.clone(),
            dependency_graph: DependencyGraph {
                nodes: names(&|_| true),
                edges: steps
                    .iter()
                    .flat_map(|s| {
                        s.dependencies().into_iter().map(|parent| Edge {
                            from: parent.to_owned(),
                            to: s.name.clone(),
                        })
                    })
                    .collect(),
                roots: names(&|s| s.dependencies().is_empty()),
                leaves: names(&|s| !depends_on(&s.name)),
                levels,
            },
        }
    }
}

/// A task's annotations, oldest first.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct Annotations {
    pub(super) task_id: i64,
    pub(super) annotations: Vec<crate::TaskAnnotation>,
}

/// Every annotation type in use.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct AnnotationTypes {
    pub(super) annotation_types: Vec<String>,
}

/// An object's maps to its ids in other systems.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct ObjectMaps {
    pub(super) object_maps: Vec<crate::ObjectMap>,
}

/// Every schedule, by name.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct ScheduleList {
    pub(super) schedules: Vec<crate::ScheduleInfo>,
}

/// A removed schedule.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct RemovedSchedule {
    /// Its name.
    pub(super) name: String,
    /// Always true.
    pub(super) removed: bool,
}

/// Every registered template.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct HandlerList {
    pub(super) handlers: Vec<TemplateView>,
}

/// The templates of one namespace.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct NamespaceHandlers {
    pub(super) namespace: String,
    pub(super) handlers: Vec<TemplateView>,
}
