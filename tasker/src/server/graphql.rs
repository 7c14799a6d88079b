//! The GraphQL endpoint (feature `graphql`): the seed's queries and mutations over tasks,
//! steps, transitions and annotations at `POST /graphql`, with each operation authorized as
//! its REST route is, and limits on a query's depth and complexity.
//!
//! [`sdl`] prints the schema (`cargo tasker schema graphql`) for client generators.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, Enum, ErrorExtensions, InputObject, Json, Object, Schema,
    SimpleObject,
};
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Access, ApiError, AppState, Caller, CorrelationId};
use crate::{AnnotationFilter, StepInfo, TaskFilter, TaskRow, TaskSort, TransitionInfo};

/// A GraphQL request, as JSON.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct GraphQlRequest {
    /// The query or mutation document.
    query: String,
    /// Which operation of the document to run, when it holds several.
    #[serde(default)]
    operation_name: Option<String>,
    /// The operation's variables.
    #[serde(default)]
    variables: Option<Map<String, Value>>,
    /// Request extensions (none are read).
    #[serde(default)]
    #[expect(dead_code, reason = "taken, as GraphQL clients send it; none is read")]
    extensions: Option<Map<String, Value>>,
}

/// A GraphQL answer: `data`, and `errors` when any field failed or the request was refused.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "the OpenAPI document's description of the answer")]
pub(super) struct GraphQlResponse {
    /// What the operation selected.
    data: Option<Value>,
    /// What went wrong: `message`, `locations`, `path`, and `extensions` with a GraphQL `code`
    /// (`BAD_USER_INPUT`, `FORBIDDEN`, `INTERNAL_SERVER_ERROR`) and, from the API, its `error`
    /// code, `status` and field `path` where there is one.
    errors: Option<Vec<Map<String, Value>>>,
}

/// `POST /graphql`: runs the request's operation as the caller the guard identified.
pub(super) async fn execute(
    State(state): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<Caller>,
    axum::Extension(correlation): axum::Extension<CorrelationId>,
    body: Result<super::Body<GraphQlRequest>, ApiError>,
) -> Result<axum::Json<async_graphql::Response>, ApiError> {
    let super::Body(body) = body?;
    let mut request = async_graphql::Request::new(body.query)
        .variables(async_graphql::Variables::from_json(Value::Object(
            body.variables.unwrap_or_default(),
        )))
        .data(Arc::clone(&state))
        .data(Gate {
            caller,
            correlation,
        });
    if let Some(name) = body.operation_name {
        request = request.operation_name(name);
    }
    let mut response = state.graphql.execute(request).await;
    // Errors without a code are async-graphql's own: a malformed query or an argument that
    // does not coerce (an `Int` past 32 bits), the caller's to fix, as GraphQL tools read it.
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "BAD_USER_INPUT");
        }
    }
    Ok(axum::Json(response))
}

/// Deepest selection a query may nest. The schema's own data nests 4 deep at most (`tasks {
/// workflowSteps { transitions { toState } } }`); the introspection query client generators
/// send nests 13 deep (its type references' `ofType` chain).
pub const MAX_DEPTH: usize = 16;
/// Most a query may cost: a field costs 1, a list of tasks its `limit` times its fields, and a
/// task's steps or a record's transitions 10 times theirs.
pub const MAX_COMPLEXITY: usize = 5_000;

/// What a nested list (a task's steps, a record's transitions) is taken to hold, for a query's
/// complexity: each item costs the database a little, and the lists have no limit argument.
const NESTED_LIST: usize = 10;

/// What a page of `limit` tasks costs: a limit outside its bounds (refused when the field
/// runs) costs as the largest page would.
fn page_cost(limit: i32, child_complexity: usize) -> usize {
    let limit = usize::try_from(limit)
        .unwrap_or(super::MAX_PAGE)
        .min(super::MAX_PAGE);
    limit.saturating_mul(child_complexity)
}

/// The schema served at `/graphql`.
pub(super) type TaskerSchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema, with its limits.
pub(super) fn schema() -> TaskerSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The schema in GraphQL's schema definition language.
pub fn sdl() -> String {
    schema().sdl()
}

/// Who is asking, for the operations' authorization, and the request's correlation id.
struct Gate {
    caller: Caller,
    correlation: CorrelationId,
}

/// The engine, once the caller may do `permission` on the records named.
async fn allow<'c>(
    ctx: &Context<'c>,
    permission: &'static str,
    task_id: Option<i64>,
    step_id: Option<i64>,
) -> async_graphql::Result<&'c Arc<AppState>> {
    let state = ctx.data::<Arc<AppState>>()?;
    let gate = ctx.data::<Gate>()?;
    let access = Access {
        permission,
        task_id,
        step_id,
    };
    state
        .authorizer
        .authorize(&gate.caller, access)
        .await
        .map_err(|refused| error(ApiError::from(refused)))?;
    Ok(state)
}

/// An API error as a GraphQL error: its message, with extensions `code` (the class GraphQL
/// tools read: `BAD_USER_INPUT`, `UNAUTHENTICATED`, `FORBIDDEN`, `INTERNAL_SERVER_ERROR`),
/// and the REST answer's `error` code, `status` and field `path`.
fn error(error: ApiError) -> async_graphql::Error {
    let class = match error.status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "FORBIDDEN",
        400..=499 => "BAD_USER_INPUT",
        _ => "INTERNAL_SERVER_ERROR",
    };
    async_graphql::Error::new(error.message.clone()).extend_with(|_, extensions| {
        extensions.set("code", class);
        extensions.set("error", error.code);
        extensions.set("status", error.status.as_u16());
        if let Some(path) = &error.path {
            extensions.set("path", path.as_str());
        }
    })
}

fn engine_error(e: crate::Error) -> async_graphql::Error {
    error(ApiError::from(e))
}

/// The root queries.
pub(super) struct Query;

/// How a listing is ordered (the seed's `sortBy`).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Default)]
pub(super) enum TaskSortBy {
    /// The task id.
    TaskId,
    /// When it was requested (the default).
    #[default]
    RequestedAt,
    /// When it was created.
    CreatedAt,
    /// Its priority.
    Priority,
}

/// Oldest first or newest first.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Default)]
pub(super) enum SortOrder {
    /// Oldest (or lowest) first.
    Asc,
    /// Newest (or highest) first (the default).
    #[default]
    Desc,
}

/// A task's state.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::TaskState")]
pub(super) enum TaskStatus {
    /// Created, not started.
    Pending,
    /// Running.
    InProgress,
    /// Every step complete.
    Complete,
    /// A step failed for good.
    Error,
    /// Cancelled.
    Cancelled,
    /// Resolved by hand.
    ResolvedManually,
}

/// A step's state.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::StepState")]
pub(super) enum StepStatus {
    /// Waiting to run.
    Pending,
    /// Running.
    InProgress,
    /// Done.
    Complete,
    /// Failed (retried until its retry limit).
    Error,
    /// Cancelled.
    Cancelled,
    /// Resolved by hand.
    ResolvedManually,
}

/// A page of a listing.
struct Page {
    limit: usize,
    offset: u64,
    sort: TaskSort,
    ascending: bool,
}

impl Page {
    fn filter(self) -> TaskFilter {
        TaskFilter {
            limit: self.limit,
            offset: self.offset,
            sort: self.sort,
            ascending: self.ascending,
            ..TaskFilter::default()
        }
    }
}

/// A listing's page, its bounds checked as REST checks them (`limit` 1 to 100, `offset` not
/// negative), refused with the same codes.
fn page(
    limit: i32,
    offset: i64,
    sort_by: TaskSortBy,
    sort_order: SortOrder,
) -> async_graphql::Result<Page> {
    let limit = usize::try_from(limit)
        .ok()
        .filter(|limit| (1..=super::MAX_PAGE).contains(limit))
        .ok_or_else(|| error(super::page_limit_refused()))?;
    let offset = u64::try_from(offset)
        .map_err(|_| error(ApiError::bad_request("offset must not be negative").at("/offset")))?;
    Ok(Page {
        limit,
        offset,
        sort: match sort_by {
            TaskSortBy::TaskId => TaskSort::Id,
            TaskSortBy::RequestedAt => TaskSort::RequestedAt,
            TaskSortBy::CreatedAt => TaskSort::CreatedAt,
            TaskSortBy::Priority => TaskSort::Priority,
        },
        ascending: sort_order == SortOrder::Asc,
    })
}

async fn list(state: &AppState, filter: TaskFilter) -> async_graphql::Result<Vec<Task>> {
    let tasks = state.tasker.tasks(filter).await.map_err(engine_error)?;
    Ok(tasks.into_iter().map(|t| Task::new(state, t)).collect())
}

#[Object]
impl Query {
    /// Tasks, in the order asked (newest requested first by default); `tasker.task:index`.
    #[graphql(complexity = "page_cost(limit, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] limit: i32,
        #[graphql(default = 0)] offset: i64,
        #[graphql(default)] sort_by: TaskSortBy,
        #[graphql(default)] sort_order: SortOrder,
        namespace: Option<String>,
        name: Option<String>,
        version: Option<String>,
    ) -> async_graphql::Result<Vec<Task>> {
        let state = allow(ctx, "tasker.task:index", None, None).await?;
        let filter = TaskFilter {
            namespace,
            name,
            version,
            ..page(limit, offset, sort_by, sort_order)?.filter()
        };
        list(state, filter).await
    }

    /// Tasks in one state; `tasker.task:index`.
    #[graphql(complexity = "page_cost(limit, child_complexity)")]
    async fn tasks_by_status(
        &self,
        ctx: &Context<'_>,
        status: TaskStatus,
        #[graphql(default = 20)] limit: i32,
        #[graphql(default = 0)] offset: i64,
        #[graphql(default)] sort_by: TaskSortBy,
        #[graphql(default)] sort_order: SortOrder,
    ) -> async_graphql::Result<Vec<Task>> {
        let state = allow(ctx, "tasker.task:index", None, None).await?;
        let filter = TaskFilter {
            state: Some(status.into()),
            ..page(limit, offset, sort_by, sort_order)?.filter()
        };
        list(state, filter).await
    }

    /// Tasks with an annotation of `annotationType` whose `annotationKey` holds
    /// `annotationValue`; `tasker.task:index`.
    #[graphql(complexity = "page_cost(limit, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn tasks_by_annotation(
        &self,
        ctx: &Context<'_>,
        annotation_type: String,
        annotation_key: String,
        annotation_value: String,
        #[graphql(default = 20)] limit: i32,
        #[graphql(default = 0)] offset: i64,
        #[graphql(default)] sort_by: TaskSortBy,
        #[graphql(default)] sort_order: SortOrder,
    ) -> async_graphql::Result<Vec<Task>> {
        let state = allow(ctx, "tasker.task:index", None, None).await?;
        let filter = TaskFilter {
            annotation: Some(AnnotationFilter {
                annotation_type,
                key: annotation_key,
                value: annotation_value,
            }),
            ..page(limit, offset, sort_by, sort_order)?.filter()
        };
        list(state, filter).await
    }

    /// A task; `tasker.task:show`.
    async fn task(&self, ctx: &Context<'_>, task_id: i64) -> async_graphql::Result<Task> {
        let state = allow(ctx, "tasker.task:show", Some(task_id), None).await?;
        load_task(state, task_id).await
    }

    /// A step of a task; `tasker.workflow_step:show`.
    async fn step(
        &self,
        ctx: &Context<'_>,
        task_id: i64,
        step_id: i64,
    ) -> async_graphql::Result<Step> {
        let state = allow(
            ctx,
            "tasker.workflow_step:show",
            Some(task_id),
            Some(step_id),
        )
        .await?;
        find_step(state, task_id, step_id).await
    }

    /// The annotation types in use (any authenticated caller, as in the seed).
    async fn annotation_types(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        let state = ctx.data::<Arc<AppState>>()?;
        state.tasker.annotation_types().await.map_err(engine_error)
    }
}

/// Task `task_id`, as GraphQL shows it.
async fn load_task(state: &AppState, task_id: i64) -> async_graphql::Result<Task> {
    let task = state.tasker.task(task_id).await.map_err(engine_error)?;
    Ok(Task::new(state, task))
}

/// A step of a task, with its links.
async fn find_step(state: &AppState, task_id: i64, step_id: i64) -> async_graphql::Result<Step> {
    let mut steps = Step::of_task(state, task_id).await?;
    let at = steps
        .iter()
        .position(|s| s.info.step_id == step_id)
        .ok_or_else(|| {
            error(ApiError::not_found(format!(
                "task {task_id} has no step {step_id}"
            )))
        })?;
    Ok(steps.swap_remove(at))
}

/// A task.
pub(super) struct Task {
    row: TaskRow,
}

impl Task {
    fn new(state: &AppState, mut row: TaskRow) -> Self {
        state.tasker.redactor().redact(&mut row.context);
        Self { row }
    }
}

#[Object]
impl Task {
    /// Id.
    async fn task_id(&self) -> i64 {
        self.row.task_id
    }
    /// Template name.
    async fn name(&self) -> &str {
        &self.row.name
    }
    /// Template namespace.
    async fn namespace(&self) -> &str {
        &self.row.namespace
    }
    /// Template version.
    async fn version(&self) -> &str {
        &self.row.version
    }
    /// `namespace/name@version`.
    async fn full_name(&self) -> String {
        format!(
            "{}/{}@{}",
            self.row.namespace, self.row.name, self.row.version
        )
    }
    /// Current state.
    async fn status(&self) -> TaskStatus {
        self.row.state.into()
    }
    /// Whether it is complete.
    async fn complete(&self) -> bool {
        self.row.state == crate::TaskState::Complete
    }
    /// The context (redacted).
    async fn context(&self) -> Json<&Value> {
        Json(&self.row.context)
    }
    /// Who asked.
    async fn initiator(&self) -> Option<&str> {
        self.row.initiator.as_deref()
    }
    /// Which system asked.
    async fn source_system(&self) -> Option<&str> {
        self.row.source_system.as_deref()
    }
    /// Why.
    async fn reason(&self) -> Option<&str> {
        self.row.reason.as_deref()
    }
    /// Tags.
    async fn tags(&self) -> &[String] {
        &self.row.tags
    }
    /// Steps bypassed at creation.
    async fn bypass_steps(&self) -> &[String] {
        &self.row.bypass_steps
    }
    /// Claim priority.
    async fn priority(&self) -> i32 {
        self.row.priority
    }
    /// The caller's idempotency key.
    async fn idempotency_key(&self) -> Option<&str> {
        self.row.idempotency_key.as_deref()
    }
    /// When it was requested (UTC, RFC 3339).
    async fn requested_at(&self) -> String {
        utc(self.row.requested_at)
    }
    /// When it was created.
    async fn created_at(&self) -> String {
        utc(self.row.created_at)
    }
    /// When it last changed.
    async fn updated_at(&self) -> String {
        utc(self.row.updated_at)
    }
    /// When a delayed task's steps start.
    async fn run_at(&self) -> Option<String> {
        self.row.run_at.map(utc)
    }
    /// When it ends in error if still open.
    async fn deadline_at(&self) -> Option<String> {
        self.row.deadline_at.map(utc)
    }
    /// Its steps, in creation order.
    #[graphql(complexity = "NESTED_LIST.saturating_mul(child_complexity)")]
    async fn workflow_steps(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Step>> {
        Step::of_task(ctx.data::<Arc<AppState>>()?, self.row.task_id).await
    }
    /// Its recorded transitions, oldest first.
    #[graphql(complexity = "NESTED_LIST.saturating_mul(child_complexity)")]
    async fn transitions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Transition>> {
        let state = ctx.data::<Arc<AppState>>()?;
        let transitions = state
            .tasker
            .task_transitions(self.row.task_id)
            .await
            .map_err(engine_error)?;
        Ok(transitions.into_iter().map(Transition::from).collect())
    }
    /// Its annotations, oldest first.
    #[graphql(complexity = "NESTED_LIST.saturating_mul(child_complexity)")]
    async fn annotations(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Annotation>> {
        let state = ctx.data::<Arc<AppState>>()?;
        let annotations = state
            .tasker
            .annotations(self.row.task_id)
            .await
            .map_err(engine_error)?;
        Ok(annotations
            .into_iter()
            .map(|a| Annotation {
                annotation_type: a.annotation_type,
                annotation: Json(a.annotation),
                created_at: utc(a.created_at),
            })
            .collect())
    }
}

/// An annotation of a task.
#[derive(SimpleObject)]
pub(super) struct Annotation {
    /// Its type.
    annotation_type: String,
    /// What it says.
    annotation: Json<Value>,
    /// When it was added.
    created_at: String,
}

fn utc(at: chrono::NaiveDateTime) -> String {
    crate::timestamp::format(at)
}

/// A step.
pub(super) struct Step {
    info: StepInfo,
    parent_ids: Vec<i64>,
    child_ids: Vec<i64>,
}

impl Step {
    async fn of_task(state: &AppState, task_id: i64) -> async_graphql::Result<Vec<Step>> {
        let steps = state.tasker.steps(task_id).await.map_err(engine_error)?;
        let edges = state
            .tasker
            .step_edges(task_id)
            .await
            .map_err(engine_error)?;
        if steps.is_empty() {
            // A task has steps: none means no such task.
            state.tasker.task(task_id).await.map_err(engine_error)?;
        }
        Ok(steps
            .into_iter()
            .map(|mut info| {
                if let Some(results) = &mut info.results {
                    state.tasker.redactor().redact(results);
                }
                let id = info.step_id;
                Step {
                    parent_ids: edges.iter().filter(|e| e.1 == id).map(|e| e.0).collect(),
                    child_ids: edges.iter().filter(|e| e.0 == id).map(|e| e.1).collect(),
                    info,
                }
            })
            .collect())
    }
}

#[Object]
impl Step {
    /// Id.
    async fn step_id(&self) -> i64 {
        self.info.step_id
    }
    /// Its task.
    async fn task_id(&self) -> i64 {
        self.info.task_id
    }
    /// Name.
    async fn name(&self) -> &str {
        &self.info.name
    }
    /// Current state.
    async fn status(&self) -> StepStatus {
        self.info.state.into()
    }
    /// Attempts made.
    async fn attempts(&self) -> i32 {
        self.info.attempts
    }
    /// Most attempts.
    async fn retry_limit(&self) -> i32 {
        self.info.retry_limit
    }
    /// Whether failures are retried.
    async fn retryable(&self) -> bool {
        self.info.retryable
    }
    /// Whether it may be bypassed.
    async fn skippable(&self) -> bool {
        self.info.skippable
    }
    /// What it returned (redacted).
    async fn results(&self) -> Option<Json<&Value>> {
        self.info.results.as_ref().map(Json)
    }
    /// The steps it waits for.
    async fn parent_ids(&self) -> &[i64] {
        &self.parent_ids
    }
    /// The steps that wait for it.
    async fn child_ids(&self) -> &[i64] {
        &self.child_ids
    }
    /// Its recorded transitions, oldest first.
    #[graphql(complexity = "NESTED_LIST.saturating_mul(child_complexity)")]
    async fn transitions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Transition>> {
        let state = ctx.data::<Arc<AppState>>()?;
        let transitions = state
            .tasker
            .step_transitions(self.info.step_id)
            .await
            .map_err(engine_error)?;
        Ok(transitions.into_iter().map(Transition::from).collect())
    }
}

/// A recorded state change.
#[derive(SimpleObject)]
pub(super) struct Transition {
    /// The state left (none for the first).
    from_state: Option<String>,
    /// The state entered.
    to_state: String,
    /// Its order (0, 10, 20, …).
    sort_key: i32,
    /// Whether it is the current state.
    most_recent: bool,
    /// What was recorded with it.
    metadata: Json<Value>,
    /// When.
    created_at: String,
}

impl From<TransitionInfo> for Transition {
    fn from(t: TransitionInfo) -> Self {
        Self {
            from_state: t.from_state,
            to_state: t.to_state,
            sort_key: t.sort_key,
            most_recent: t.most_recent,
            metadata: Json(t.metadata),
            created_at: utc(t.created_at),
        }
    }
}

/// The root mutations.
pub(super) struct Mutation;

/// A task request (the REST body's fields).
#[derive(InputObject)]
pub(super) struct CreateTaskInput {
    /// Template name.
    name: String,
    /// Template namespace (default `default`).
    namespace: Option<String>,
    /// Template version (default `0.1.0`).
    version: Option<String>,
    /// The context.
    context: Option<Json<Value>>,
    /// Who asks.
    initiator: Option<String>,
    /// Which system asks.
    source_system: Option<String>,
    /// Why.
    reason: Option<String>,
    /// Tags.
    tags: Option<Vec<String>>,
    /// Skippable steps to bypass.
    bypass_steps: Option<Vec<String>>,
    /// Claim priority.
    priority: Option<i32>,
    /// An idempotency key.
    idempotency_key: Option<String>,
    /// When its steps may start (RFC 3339, UTC); the task is created at once.
    run_at: Option<String>,
    /// Seconds from now until its steps may start; not with `runAt`.
    delay_seconds: Option<f64>,
    /// Seconds from its start until its deadline (default: the template's).
    timeout_seconds: Option<f64>,
    /// A correlation id (default: the request's).
    correlation_id: Option<String>,
}

impl CreateTaskInput {
    /// The same JSON a REST create takes.
    fn into_json(self) -> Value {
        let mut body = serde_json::Map::new();
        body.insert("name".into(), self.name.into());
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(key.into(), value);
            }
        };
        put("namespace", self.namespace.map(Value::from));
        put("version", self.version.map(Value::from));
        put("context", self.context.map(|c| c.0));
        put("initiator", self.initiator.map(Value::from));
        put("source_system", self.source_system.map(Value::from));
        put("reason", self.reason.map(Value::from));
        put("tags", self.tags.map(Value::from));
        put("bypass_steps", self.bypass_steps.map(Value::from));
        put("priority", self.priority.map(Value::from));
        put("idempotency_key", self.idempotency_key.map(Value::from));
        put("run_at", self.run_at.map(Value::from));
        put("delay_seconds", self.delay_seconds.map(Value::from));
        put("timeout_seconds", self.timeout_seconds.map(Value::from));
        put("correlation_id", self.correlation_id.map(Value::from));
        Value::Object(body)
    }
}

#[Object]
impl Mutation {
    /// Creates a task (or answers the earlier one its idempotency key names);
    /// `tasker.task:create`.
    async fn create_task(
        &self,
        ctx: &Context<'_>,
        input: CreateTaskInput,
    ) -> async_graphql::Result<Task> {
        let state = allow(ctx, "tasker.task:create", None, None).await?;
        let gate = ctx.data::<Gate>()?;
        let request = super::task_request(input.into_json(), &gate.correlation).map_err(error)?;
        let created = state
            .tasker
            .create_task(request)
            .await
            .map_err(engine_error)?;
        load_task(state, created.id).await
    }

    /// Changes a task's reason and tags; `tasker.task:update`.
    async fn update_task(
        &self,
        ctx: &Context<'_>,
        task_id: i64,
        reason: Option<String>,
        tags: Option<Vec<String>>,
    ) -> async_graphql::Result<Task> {
        let state = allow(ctx, "tasker.task:update", Some(task_id), None).await?;
        let task = state
            .tasker
            .update_task(task_id, reason, tags)
            .await
            .map_err(engine_error)?;
        Ok(Task::new(state, task))
    }

    /// Cancels a task and its unfinished steps; `tasker.task:cancel`.
    async fn cancel_task(&self, ctx: &Context<'_>, task_id: i64) -> async_graphql::Result<Task> {
        let state = allow(ctx, "tasker.task:cancel", Some(task_id), None).await?;
        state
            .tasker
            .cancel_task(task_id)
            .await
            .map_err(engine_error)?;
        load_task(state, task_id).await
    }

    /// Sends a task in error back to pending; `tasker.task:retry`.
    async fn retry_task(&self, ctx: &Context<'_>, task_id: i64) -> async_graphql::Result<Task> {
        let state = allow(ctx, "tasker.task:retry", Some(task_id), None).await?;
        state
            .tasker
            .retry_task(task_id)
            .await
            .map_err(engine_error)?;
        load_task(state, task_id).await
    }

    /// Sets a step's retry limit, or resolves it by hand (`resolve: true`, optional
    /// `results`); `tasker.workflow_step:update`.
    async fn update_step(
        &self,
        ctx: &Context<'_>,
        task_id: i64,
        step_id: i64,
        retry_limit: Option<i32>,
        resolve: Option<bool>,
        results: Option<Json<Value>>,
    ) -> async_graphql::Result<Step> {
        let state = allow(
            ctx,
            "tasker.workflow_step:update",
            Some(task_id),
            Some(step_id),
        )
        .await?;
        let update = super::StepUpdate {
            retry_limit: retry_limit.map(|l| u32::try_from(l).unwrap_or(0)),
            resolve: resolve.unwrap_or(false),
            results: results.map(|r| r.0),
        };
        super::apply_step_update(state, task_id, step_id, update)
            .await
            .map_err(error)?;
        find_step(state, task_id, step_id).await
    }

    /// Cancels a step for good; `tasker.workflow_step:cancel`.
    async fn cancel_step(
        &self,
        ctx: &Context<'_>,
        task_id: i64,
        step_id: i64,
    ) -> async_graphql::Result<Step> {
        let state = allow(
            ctx,
            "tasker.workflow_step:cancel",
            Some(task_id),
            Some(step_id),
        )
        .await?;
        state
            .tasker
            .cancel_step(task_id, step_id)
            .await
            .map_err(engine_error)?;
        find_step(state, task_id, step_id).await
    }
}
