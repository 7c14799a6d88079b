//! The REST API (feature `server`): the seed's routes under a prefix (default `/tasker`).
//!
//! [`router`] builds an axum [`Router`] over an engine; [`serve`] binds and runs it, refusing a
//! non-loopback address without authentication unless [`ServerConfig::allow_insecure`] says
//! so. Every error is JSON `{code, message, path}`; bodies over the limit get 413. Every route
//! is one entry of one table ([`routes`] lists them), from which the router, each route's
//! permission check and the OpenAPI document served at `/openapi.json` are all built, so a
//! route cannot be served without its permission and its documentation.

mod auth;
mod error;
#[cfg(feature = "graphql")]
mod graphql;
mod openapi;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Json, Router};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use auth::{
    Access, ApiKey, Auth, AuthFuture, Authenticator, Authorizer, Caller, Forbidden, JwtConfig,
    Permissions, Unauthenticated, grants,
};
/// The request headers an [`Authenticator`] reads.
pub use axum::http::HeaderMap;
pub use error::ApiError;
#[cfg(feature = "graphql")]
pub use graphql::{MAX_COMPLEXITY, MAX_DEPTH, sdl as graphql_sdl};
pub use openapi::openapi_document;

use crate::{StepInfo, TaskFilter, TaskRequest, TaskRow, TaskSort, TaskState, Tasker};

/// How the API is served.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where the routes live (default `/tasker`; empty for the root).
    pub prefix: String,
    /// Who may call, and how they prove it, with the built-in API keys and JWTs (default:
    /// nobody needs to). Unused when `authenticator` is set.
    pub auth: Auth,
    /// An application's own way to identify callers, instead of `auth`.
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// What a caller may do (default: [`Permissions`], what its permissions grant).
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// Largest accepted request body, in bytes (default 1 MiB + 64 KiB for the envelope).
    pub body_limit: usize,
    /// Serve without authentication on a non-loopback address (default `false`).
    pub allow_insecure: bool,
    /// What `/metrics` renders (see [`crate::metrics::install_prometheus`]).
    pub metrics: Option<crate::metrics::PrometheusHandle>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("prefix", &self.prefix)
            .field("auth", &self.auth)
            .field(
                "authenticator",
                &self.authenticator.as_ref().map(|_| "custom"),
            )
            .field("authorizer", &self.authorizer.as_ref().map(|_| "custom"))
            .field("body_limit", &self.body_limit)
            .field("allow_insecure", &self.allow_insecure)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// Identifies callers with `authenticator` instead of the built-in `auth`.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Decides what callers may do with `authorizer` instead of their permissions alone.
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// Whether callers must prove who they are.
    fn authenticates(&self) -> bool {
        match &self.authenticator {
            Some(authenticator) => authenticator.is_enabled(),
            None => self.auth.is_enabled(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            prefix: "/tasker".to_owned(),
            auth: Auth::none(),
            authenticator: None,
            authorizer: None,
            body_limit: (1 << 20) + (64 << 10),
            allow_insecure: false,
            metrics: None,
        }
    }
}

/// One route: method, path (under the prefix), who may call it and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The path, with `{id}`-style parameters.
    pub path: &'static str,
    /// Who may call it.
    pub guard: Guard,
    /// What it does.
    pub summary: &'static str,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Anyone.
    Public,
    /// A caller granted this `resource:action`, on the records the path names.
    Permission(&'static str),
    /// Any authenticated caller; each operation the request holds is then authorized as its
    /// REST route is (GraphQL).
    PerOperation,
}

/// The methods the API serves.
#[derive(Debug, Clone, Copy)]
enum Verb {
    Get,
    Post,
    Patch,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// A type's schema in the OpenAPI document, as a reference to its component.
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// A type's own schema, inline (its parts still referenced), to read its fields from.
fn inline_schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    T::json_schema(generator)
}

/// A route with the handler that serves it, and what its request carries.
struct Endpoint {
    route: Route,
    handler: MethodRouter<Arc<AppState>>,
    /// The JSON body's schema.
    body: Option<SchemaFn>,
    /// The query parameters, as the schema of the struct they fill.
    query: Option<SchemaFn>,
    /// The success status and its body: JSON of a schema, or text.
    response: (u16, Answer),
    /// Path parameters its success body supplies, each with the JSON pointer to its value: the
    /// document links this route to the routes that take them, for clients and contract testers.
    supplies: &'static [(&'static str, &'static str)],
}

/// A success body.
#[derive(Clone, Copy)]
enum Answer {
    Json(SchemaFn),
    Text,
}

impl Endpoint {
    /// The route takes a JSON body of type `T`.
    fn body<T: JsonSchema>(mut self) -> Self {
        self.body = Some(schema_of::<T>);
        self
    }

    /// The route takes query parameters, the fields of `T`.
    fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(inline_schema_of::<T>);
        self
    }

    /// The route answers `status` with a JSON `T`.
    fn answers<T: JsonSchema>(mut self, status: u16) -> Self {
        self.response = (status, Answer::Json(schema_of::<T>));
        self
    }

    /// The route answers 200 with text.
    fn answers_text(mut self) -> Self {
        self.response = (200, Answer::Text);
        self
    }

    /// The success body holds values of these path parameters, at these JSON pointers.
    fn supplies(mut self, parameters: &'static [(&'static str, &'static str)]) -> Self {
        self.supplies = parameters;
        self
    }
}

/// A table entry: the handler is attached for exactly the method the route names.
fn endpoint<H, T>(
    verb: Verb,
    path: &'static str,
    guard: Guard,
    summary: &'static str,
    handler: H,
) -> Endpoint
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    Endpoint {
        route: Route {
            method: verb.as_str(),
            path,
            guard,
            summary,
        },
        handler: on(verb.filter(), handler),
        body: None,
        query: None,
        response: (200, Answer::Text),
        supplies: &[],
    }
}

/// The one route table.
fn table() -> Vec<Endpoint> {
    use Guard::{Permission, Public};
    use Verb::{Delete, Get, Patch, Post};
    #[cfg_attr(
        not(feature = "graphql"),
        allow(unused_mut, reason = "GraphQL's routes are added only with `graphql`")
    )]
    let mut table = vec![
        endpoint(Get, "/health/live", Public, "The process is up.", health_live)
            .answers::<views::Health>(200),
        endpoint(
            Get,
            "/health/ready",
            Public,
            "The database answers (503 when it does not).",
            health_ready,
        )
        .answers::<views::Health>(200),
        endpoint(
            Get,
            "/health/status",
            Permission("tasker.health_status:index"),
            "Tasks and steps by state, the steps ready now and the oldest one's wait, and the workers seen within three heartbeats.",
            health_status,
        )
        .answers::<views::HealthStatus>(200),
        endpoint(
            Get,
            "/metrics",
            Permission("tasker.metrics:index"),
            "Prometheus metrics.",
            metrics,
        )
        .answers_text(),
        endpoint(
            Get,
            "/openapi.json",
            Public,
            "This API's OpenAPI document.",
            openapi,
        )
        .answers::<serde_json::Map<String, Value>>(200),
        endpoint(
            Get,
            "/tasks",
            Permission("tasker.task:index"),
            "List tasks: filters namespace, name, version, state, annotation (TYPE:KEY=VALUE); limit, offset; sort_by (task_id, requested_at, created_at, priority), sort_order (asc, desc).",
            list_tasks,
        )
        .answers::<views::TaskList>(200)
        .query::<ListQuery>()
        .supplies(&[("id", "/tasks/0/task_id")]),
        endpoint(
            Post,
            "/tasks",
            Permission("tasker.task:create"),
            "Create a task from a task request; 201 with the task. An array of up to 1000 requests creates them in one transaction; 200 with one result per request, `{status, task}` or `{status, error}`.",
            create_task,
        )
        .answers::<views::Created>(201)
        .body::<CreateBody>()
        .supplies(&[("id", "/task_id")]),
        endpoint(
            Get,
            "/tasks/{id}",
            Permission("tasker.task:show"),
            "A task.",
            show_task,
        )
        .answers::<views::TaskDetail>(200)
        .query::<ShowQuery>()
        .supplies(&[("id", "/task_id"), ("step_id", "/workflow_steps/0/step_id")]),
        endpoint(
            Patch,
            "/tasks/{id}",
            Permission("tasker.task:update"),
            "Change a task's reason and tags.",
            update_task,
        )
        .answers::<views::TaskView>(200)
        .body::<TaskUpdate>(),
        endpoint(
            Delete,
            "/tasks/{id}",
            Permission("tasker.task:cancel"),
            "Cancel a task and its unfinished steps.",
            cancel_task,
        )
        .answers::<views::Cancelled>(200),
        endpoint(
            Post,
            "/tasks/{id}/retry",
            Permission("tasker.task:retry"),
            "Send a task in error back to pending.",
            retry_task,
        )
        .answers::<views::TaskView>(200),
        endpoint(
            Get,
            "/tasks/{id}/diagram",
            Permission("tasker.task:show"),
            "A Mermaid flowchart of the task, coloured by step state.",
            task_diagram,
        )
        .answers_text(),
        endpoint(
            Get,
            "/tasks/{id}/workflow_steps",
            Permission("tasker.workflow_step:index"),
            "A task's steps.",
            list_steps,
        )
        .answers::<views::StepList>(200)
        .supplies(&[
            ("id", "/workflow_steps/0/task_id"),
            ("step_id", "/workflow_steps/0/step_id"),
        ]),
        endpoint(
            Get,
            "/tasks/{id}/workflow_steps/{step_id}",
            Permission("tasker.workflow_step:show"),
            "A step.",
            show_step,
        )
        .answers::<views::StepView>(200),
        endpoint(
            Patch,
            "/tasks/{id}/workflow_steps/{step_id}",
            Permission("tasker.workflow_step:update"),
            "Set a step's retry_limit, or resolve it by hand (`resolve: true`, optional `results`).",
            update_step,
        )
        .answers::<views::StepView>(200)
        .body::<StepUpdate>(),
        endpoint(
            Delete,
            "/tasks/{id}/workflow_steps/{step_id}",
            Permission("tasker.workflow_step:cancel"),
            "Cancel a step for good.",
            cancel_step,
        )
        .answers::<views::CancelledStep>(200),
        endpoint(
            Post,
            "/prune",
            Permission("tasker.task:destroy"),
            "Delete the tasks finished (complete, cancelled, resolved; in error with `include_errors`) and unchanged for `older_than_seconds`, with their steps, edges, transitions and annotations, in small batches; `dry_run` only counts.",
            prune,
        )
        .answers::<crate::Pruned>(200)
        .body::<PruneBody>(),
        endpoint(
            Get,
            "/tasks/{id}/annotations",
            Permission("tasker.task:show"),
            "A task's annotations, oldest first.",
            list_annotations,
        )
        .answers::<views::Annotations>(200),
        endpoint(
            Post,
            "/tasks/{id}/annotations",
            Permission("tasker.task:update"),
            "Annotate a task: a typed JSON object (the type is created on first use); 201 with its annotations.",
            annotate_task,
        )
        .answers::<views::Annotations>(201)
        .body::<AnnotationBody>(),
        endpoint(
            Get,
            "/annotation_types",
            Permission("tasker.task:index"),
            "Every annotation type in use.",
            annotation_types,
        )
        .answers::<views::AnnotationTypes>(200),
        endpoint(
            Post,
            "/dependent_systems/object_maps",
            Permission("tasker.dependent_system:create"),
            "Map an object's id in one dependent system to its id in another (systems created on first use); mapping a pair again, either way round, answers the stored map.",
            map_objects,
        )
        .answers::<crate::ObjectMap>(200)
        .body::<ObjectMapBody>()
        .supplies(&[("system", "/system_one"), ("object", "/remote_id_one")]),
        endpoint(
            Get,
            "/dependent_systems/{system}/objects/{object}/maps",
            Permission("tasker.dependent_system:index"),
            "Every map of the object `object` of dependent system `system`, on either side: its ids in the other systems.",
            object_maps,
        )
        .answers::<views::ObjectMaps>(200),
        endpoint(
            Get,
            "/schedules",
            Permission("tasker.schedule:index"),
            "Every schedule, by name, with its next runs.",
            list_schedules,
        )
        .answers::<views::ScheduleList>(200)
        .supplies(&[("name", "/schedules/0/name")]),
        endpoint(
            Post,
            "/schedules",
            Permission("tasker.schedule:create"),
            "Register a recurring task, or replace the one of that name: the template it starts, a cron expression (5 fields, or 6 with seconds first) in an IANA time zone, the context of every run, and how many missed slots to catch up on after an outage.",
            register_schedule,
        )
        .answers::<crate::ScheduleInfo>(200)
        .body::<crate::Schedule>()
        .supplies(&[("name", "/name")]),
        endpoint(
            Get,
            "/schedules/{name}",
            Permission("tasker.schedule:show"),
            "A schedule with its next runs.",
            show_schedule,
        )
        .answers::<crate::ScheduleInfo>(200),
        endpoint(
            Delete,
            "/schedules/{name}",
            Permission("tasker.schedule:destroy"),
            "Delete a schedule (one its template declares comes back when a process registering the template starts).",
            remove_schedule,
        )
        .answers::<views::RemovedSchedule>(200),
        endpoint(
            Post,
            "/schedules/{name}/pause",
            Permission("tasker.schedule:update"),
            "Pause a schedule: no slot runs until it is resumed.",
            pause_schedule,
        )
        .answers::<crate::ScheduleInfo>(200),
        endpoint(
            Post,
            "/schedules/{name}/resume",
            Permission("tasker.schedule:update"),
            "Resume a schedule from its next slot (the slots that passed while it was paused do not run).",
            resume_schedule,
        )
        .answers::<crate::ScheduleInfo>(200),
        endpoint(
            Post,
            "/schedules/{name}/trigger",
            Permission("tasker.schedule:trigger"),
            "Ask for a run now, outside the schedule's slots: the next worker to look starts it, once; 202.",
            trigger_schedule,
        )
        .answers::<crate::ScheduleInfo>(202),
        endpoint(
            Get,
            "/analytics/performance",
            Permission("tasker.analytics:index"),
            "How the tasks created in the last `period` hours (default 24, at most 720) fared: tasks and steps by state, completion and error rates, throughput, duration percentiles, retries.",
            analytics_performance,
        )
        .answers::<crate::analytics::Performance>(200)
        .query::<PerformanceQuery>(),
        endpoint(
            Get,
            "/analytics/bottlenecks",
            Permission("tasker.analytics:index"),
            "The slowest complete tasks and steps among those created in the last `period` hours, of the templates `namespace`, `name`, `version` name; `limit` (default 10, at most 100) of each.",
            analytics_bottlenecks,
        )
        .answers::<crate::analytics::Bottlenecks>(200)
        .query::<BottlenecksQuery>(),
        endpoint(
            Get,
            "/handlers",
            Permission("tasker.handler:index"),
            "Every registered template.",
            list_handlers,
        )
        .answers::<views::HandlerList>(200)
        .supplies(&[
            ("namespace", "/handlers/0/namespace"),
            ("name", "/handlers/0/name"),
        ]),
        endpoint(
            Get,
            "/handlers/{namespace}",
            Permission("tasker.handler:index"),
            "The templates of a namespace.",
            namespace_handlers,
        )
        .answers::<views::NamespaceHandlers>(200),
        endpoint(
            Get,
            "/handlers/{namespace}/{name}",
            Permission("tasker.handler:show"),
            "A template (`?version=`; default the highest) with its dependency graph.",
            show_handler,
        )
        .answers::<views::TemplateDetail>(200)
        .query::<VersionQuery>(),
    ];
    #[cfg(feature = "graphql")]
    table.push(
        endpoint(
            Post,
            "/graphql",
            Guard::PerOperation,
            "GraphQL: the seed's queries and mutations over tasks, steps, transitions and annotations. Each operation needs the permission of the REST route that does the same; a refused one is answered in `errors` with `extensions.code`.",
            graphql::execute,
        )
        .answers::<graphql::GraphQlResponse>(200)
        .body::<graphql::GraphQlRequest>(),
    );
    table
}

/// Every route of the API, in the order of its table.
pub fn routes() -> Vec<Route> {
    table().into_iter().map(|e| e.route).collect()
}

struct AppState {
    tasker: Tasker,
    config: ServerConfig,
    authenticator: Arc<dyn Authenticator>,
    authorizer: Arc<dyn Authorizer>,
    #[cfg(feature = "graphql")]
    graphql: graphql::TaskerSchema,
}

type Shared = State<Arc<AppState>>;

/// The API's routes over `tasker`, under `config.prefix`.
pub fn router(tasker: Tasker, config: ServerConfig) -> Router {
    let prefix = config.prefix.trim_end_matches('/').to_owned();
    let body_limit = config.body_limit;
    let authenticator = config
        .authenticator
        .clone()
        .unwrap_or_else(|| Arc::new(config.auth.clone()));
    let authorizer = config
        .authorizer
        .clone()
        .unwrap_or_else(|| Arc::new(Permissions));
    let state = Arc::new(AppState {
        tasker,
        config,
        authenticator,
        authorizer,
        #[cfg(feature = "graphql")]
        graphql: graphql::schema(),
    });
    let mut paths: Vec<(&'static str, MethodRouter<Arc<AppState>>)> = Vec::new();
    for Endpoint { route, handler, .. } in table() {
        let handler = match route.guard {
            Guard::Public => handler,
            Guard::Permission(permission) => guarded(handler, &state, Some(permission)),
            Guard::PerOperation => guarded(handler, &state, None),
        };
        match paths.iter_mut().find(|(path, _)| *path == route.path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler),
            None => paths.push((route.path, handler)),
        }
    }
    let api = paths
        .into_iter()
        .fold(Router::new(), |api, (path, methods)| {
            api.route(path, methods)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    let routed = if prefix.is_empty() {
        api
    } else {
        Router::new().nest(&prefix, api).fallback(not_found)
    };
    routed.layer(axum::middleware::from_fn(correlate))
}

/// `handler` behind the check that its caller is who it says and may `permission` (on the
/// records its path names; with `None`, the handler authorizes each operation itself, with the
/// [`Caller`] it finds among the request's extensions). It runs before the handler's
/// extractors, so a caller without credentials gets 401 whatever else is wrong.
fn guarded(
    handler: MethodRouter<Arc<AppState>>,
    state: &Arc<AppState>,
    permission: Option<&'static str>,
) -> MethodRouter<Arc<AppState>> {
    let state = Arc::clone(state);
    handler.route_layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let state = Arc::clone(&state);
            async move {
                let (mut parts, body) = request.into_parts();
                let caller = match state.authenticator.authenticate(&parts.headers).await {
                    Ok(caller) => caller,
                    Err(refused) => return ApiError::from(refused).into_response(),
                };
                if let Some(permission) = permission {
                    let access = access(&mut parts, permission).await;
                    if let Err(refused) = state.authorizer.authorize(&caller, access).await {
                        return ApiError::from(refused).into_response();
                    }
                }
                parts.extensions.insert(caller);
                next.run(Request::from_parts(parts, body)).await
            }
        },
    ))
}

/// What a request asks: `permission`, on the task and step its path names (ids that are not
/// numbers are left out; the handler refuses them after authentication).
async fn access(parts: &mut Parts, permission: &'static str) -> Access<'static> {
    let params = axum::extract::RawPathParams::from_request_parts(parts, &()).await;
    let id = |name: &str| {
        params
            .as_ref()
            .ok()
            .and_then(|p| p.iter().find(|(key, _)| *key == name))
            .and_then(|(_, value)| value.parse().ok())
    };
    Access {
        permission,
        task_id: id("id"),
        step_id: id("step_id"),
    }
}

/// Listens on `addr` (`127.0.0.1:3000`), for [`serve`].
pub async fn bind(addr: &str) -> crate::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Listen {
            addr: addr.to_owned(),
            source,
        })
}

/// Serves the API on `listener` until `shutdown` completes. Refuses a non-loopback address
/// without authentication unless `config.allow_insecure`.
pub async fn serve(
    tasker: Tasker,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let addr = listener
        .local_addr()
        .map_err(crate::Error::ListenerAddress)?;
    check_exposure(&config, addr)?;
    axum::serve(listener, router(tasker, config))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(crate::Error::Serve)
}

/// Refuses to expose an unauthenticated API beyond this machine unless told to.
pub fn check_exposure(config: &ServerConfig, addr: SocketAddr) -> crate::Result<()> {
    if !addr.ip().is_loopback() && !config.authenticates() && !config.allow_insecure {
        return Err(crate::Error::InsecureExposure { addr });
    }
    Ok(())
}

/// The header that carries a request's correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// A request's correlation id: the caller's `X-Correlation-ID`, or a new one.
#[derive(Debug, Clone)]
struct CorrelationId(String);

/// Takes the caller's `X-Correlation-ID` (1 to 128 visible ASCII characters; another value is
/// 400) or makes one, hands it to the handlers (a created task carries it unless its request
/// names its own) and the request's log span, and returns it on the response, errors included.
async fn correlate(mut request: Request, next: Next) -> Response {
    let given = request.headers().get(CORRELATION_HEADER).map(|value| {
        value
            .to_str()
            .ok()
            .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
    });
    let id = match given {
        Some(Some(id)) => id,
        Some(None) => {
            return ApiError::bad_request(format!(
                "the `{CORRELATION_HEADER}` header must be 1 to 128 visible ASCII characters"
            ))
            .into_response();
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let span = tracing::info_span!("tasker.api.request", correlation_id = %id);
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}

// --- extractors whose rejections are JSON errors -------------------------------------------

/// A JSON object body read into `T`; malformed JSON is 400, JSON of the wrong shape 422 (an
/// array too, which serde would otherwise read into a struct field by field), too large 413.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let AnyJson(value) = AnyJson::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the body must be a JSON object",
            )
            .at("/"));
        }
        serde_path_to_error::deserialize(value)
            .map(Body)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    e.inner().to_string(),
                )
                .at(json_pointer(e.path()))
            })
    }
}

/// Any JSON body, for a route that reads its shape itself.
struct AnyJson(Value);

impl<S: Send + Sync> FromRequest<S> for AnyJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<Value>::from_request(req, state).await {
            Ok(Json(value)) => Ok(AnyJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", text)
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", text)
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", text)
        }
        _ => ApiError::new(status, "invalid_body", text),
    }
}

/// A deserialiser's path as a JSON pointer into the body: `/context/lines/0`, `/` for the body
/// itself.
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            // RFC 6901: `~` and `/` inside a key are escaped.
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => pointer.push('?'),
        }
    }
    if pointer.is_empty() {
        pointer.push('/');
    }
    pointer
}

/// `pointer` (`/` for the whole value) within the value at `prefix` (empty for the body).
fn nested(prefix: &str, pointer: &str) -> String {
    match (prefix, pointer) {
        ("", pointer) => pointer.to_owned(),
        (prefix, "/") => prefix.to_owned(),
        (prefix, pointer) => format!("{prefix}{pointer}"),
    }
}

/// Path parameters; a malformed one is 400.
struct Params<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Params(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

/// Query parameters; a malformed one is 400.
struct QueryParams<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method",
    )
}

// --- representations -------------------------------------------------------------------

fn task_view(state: &AppState, task: TaskRow) -> views::TaskView {
    views::TaskView::new(state.tasker.redactor(), task)
}

fn step_view(state: &AppState, step: StepInfo, edges: &[(i64, i64)]) -> views::StepView {
    views::StepView::new(state.tasker.redactor(), step, edges)
}

/// A task's steps and dependency edges.
async fn steps_and_edges(
    state: &AppState,
    task_id: i64,
) -> Result<(Vec<StepInfo>, Vec<(i64, i64)>), ApiError> {
    Ok((
        state.tasker.steps(task_id).await?,
        state.tasker.step_edges(task_id).await?,
    ))
}

// --- handlers ----------------------------------------------------------------------------

async fn health_live() -> Json<views::Health> {
    Json(views::Health { status: "live" })
}

async fn health_ready(State(state): Shared) -> Response {
    match state.tasker.ping().await {
        Ok(()) => Json(views::Health { status: "ready" }).into_response(),
        Err(error) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("the database does not answer: {error}"),
        )
        .into_response(),
    }
}

/// Tasks and steps by state, the steps ready now and the oldest one's wait, and the workers
/// whose last heartbeat is at most three heartbeats old (this engine's `heartbeat`).
async fn health_status(State(state): Shared) -> Result<Json<views::HealthStatus>, ApiError> {
    fn by_state<S: std::fmt::Display>(
        counts: Vec<(S, i64)>,
    ) -> std::collections::BTreeMap<String, i64> {
        counts
            .into_iter()
            .map(|(state, count)| (state.to_string(), count))
            .collect()
    }
    let tasks = by_state(state.tasker.task_counts().await?);
    let steps = by_state(state.tasker.step_counts().await?);
    let (ready, oldest) = state.tasker.ready_steps().await?;
    let recent = state.tasker.config().heartbeat * 3;
    let workers = state.tasker.workers(recent).await?;
    Ok(Json(views::HealthStatus {
        status: "ok",
        tasks,
        steps,
        ready_steps: ready,
        oldest_ready_seconds: oldest.map(|d| d.as_secs_f64()),
        workers_seen_within_seconds: recent.as_secs_f64(),
        workers,
    }))
}

async fn metrics(State(state): Shared) -> Result<Response, ApiError> {
    let text = state
        .config
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    Ok((
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

async fn openapi(State(state): Shared) -> Json<Value> {
    Json(openapi_document(
        &state.config.prefix,
        &state.tasker.registry().templates(),
    ))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    namespace: Option<String>,
    name: Option<String>,
    version: Option<String>,
    state: Option<TaskState>,
    /// Page size (default 20).
    #[schemars(range(min = 1, max = MAX_PAGE))]
    limit: Option<usize>,
    /// Tasks to skip (default 0).
    #[schemars(range(max = i64::MAX))]
    offset: Option<u64>,
    /// The order (default `task_id`).
    #[schemars(extend("enum" = ["task_id", "requested_at", "created_at", "priority"]))]
    sort_by: Option<String>,
    /// `desc` (the default) or `asc`.
    #[schemars(extend("enum" = ["asc", "desc"]))]
    sort_order: Option<String>,
    /// Only tasks with an annotation `TYPE:KEY=VALUE`: of that type, whose top-level key
    /// holds that value, compared as text.
    #[schemars(regex(pattern = r"^[^\x00:]+:[^\x00=]+=[^\x00]*$"))]
    annotation: Option<String>,
}

async fn list_tasks(
    State(state): Shared,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<views::TaskList>, ApiError> {
    let sort = match query.sort_by.as_deref() {
        None | Some("task_id") => TaskSort::Id,
        Some("requested_at") => TaskSort::RequestedAt,
        Some("created_at") => TaskSort::CreatedAt,
        Some("priority") => TaskSort::Priority,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "cannot sort by `{other}`: use `task_id`, `requested_at`, `created_at` or `priority`"
            ))
            .at("/sort_by"));
        }
    };
    let ascending = match query.sort_order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sort_order `{other}` is not `asc` or `desc`"
            ))
            .at("/sort_order"));
        }
    };
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(page_limit_refused());
    }
    let offset = query.offset.unwrap_or(0);
    // Past i64 no database can skip: refused as the document bounds it.
    if i64::try_from(offset).is_err() {
        return Err(
            ApiError::bad_request(format!("offset must be at most {}", i64::MAX)).at("/offset"),
        );
    }
    let annotation = match query.annotation.as_deref().map(str::parse) {
        None => None,
        Some(Ok(filter)) => Some(filter),
        Some(Err(problem)) => return Err(ApiError::bad_request(problem).at("/annotation")),
    };
    let tasks = state
        .tasker
        .tasks(TaskFilter {
            namespace: query.namespace,
            name: query.name,
            version: query.version,
            state: query.state,
            limit,
            offset,
            sort,
            ascending,
            annotation,
        })
        .await?;
    Ok(Json(views::TaskList {
        tasks: tasks.into_iter().map(|t| task_view(&state, t)).collect(),
        limit,
        offset,
    }))
}

/// Most tasks a page of a listing holds (REST's `limit`, GraphQL's).
const MAX_PAGE: usize = 100;

/// The refusal of a page `limit` outside 1 to [`MAX_PAGE`].
fn page_limit_refused() -> ApiError {
    ApiError::bad_request(format!("limit must be 1 to {MAX_PAGE}")).at("/limit")
}

/// What `POST /tasks` takes: a task request, bare or in the seed's `{"task": …}`, or a
/// non-empty array of them, at most 1000 (`MAX_BULK_REQUESTS`).
// Only its schema is used (the OpenAPI document's); the handler reads the JSON itself.
#[derive(JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
#[expect(dead_code, reason = "the OpenAPI document's description of the body")]
enum CreateBody {
    One(TemplateRequest),
    Enveloped { task: TemplateRequest },
    // An array's requests are answered one by one: only their shape is the body's.
    Many(#[schemars(length(min = 1, max = MAX_BULK_REQUESTS))] Vec<TaskRequest>),
}

/// A task request for a template the server runs: the document names each one
/// (`openapi::describe_templates`); here, the generic request.
struct TemplateRequest;

impl JsonSchema for TemplateRequest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TemplateRequest".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<TaskRequest>()
    }
}

/// Most task requests one `POST /tasks` array may hold.
pub const MAX_BULK_REQUESTS: usize = 1000;

async fn create_task(
    State(state): Shared,
    axum::Extension(correlation): axum::Extension<CorrelationId>,
    body: Result<AnyJson, ApiError>,
) -> Result<Response, ApiError> {
    let AnyJson(body) = body?;
    match body {
        Value::Array(requests) => create_tasks(&state, requests, &correlation).await,
        request => create_one(&state, request, &correlation).await,
    }
}

/// One task request: 201 with the task, 200 with the earlier task its idempotency key names.
async fn create_one(
    state: &AppState,
    request: Value,
    correlation: &CorrelationId,
) -> Result<Response, ApiError> {
    let request = task_request(request, correlation)?;
    let created = state.tasker.create_task(request).await?;
    let task = state.tasker.task(created.id).await?;
    let status = if created.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(views::Created::One(Box::new(task_view(state, task)))),
    )
        .into_response())
}

/// An array of task requests, created in one transaction: 200 with one result per request, in
/// order, each `{status, task}` or `{status, error}` with the status and error a single create
/// would answer (an error's `path` is within its request). A request of the wrong shape refuses
/// the whole array with 422, its `path` starting with the request's index.
async fn create_tasks(
    state: &AppState,
    requests: Vec<Value>,
    correlation: &CorrelationId,
) -> Result<Response, ApiError> {
    if requests.is_empty() {
        return Err(ApiError::bad_request("the array holds no task request").at("/"));
    }
    if requests.len() > MAX_BULK_REQUESTS {
        return Err(ApiError::bad_request(format!(
            "the array holds {} task requests, over the limit of {MAX_BULK_REQUESTS} a call: send them in several calls",
            requests.len()
        ))
        .at("/"));
    }
    // A request of the wrong shape breaks the documented body: the array is refused whole,
    // naming the item, before anything is written.
    let requests = requests
        .into_iter()
        .enumerate()
        .map(|(position, request)| {
            task_request(request, correlation).map_err(|error| {
                let path = nested(
                    &format!("/{position}"),
                    error.path.as_deref().unwrap_or("/"),
                );
                error.at(path)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let results = state.tasker.create_many(requests).await?;
    let ids: Vec<i64> = results.iter().flatten().map(|c| c.id).collect();
    let tasks = state.tasker.tasks_by_id(ids).await?;
    let items = results
        .into_iter()
        .map(|result| match result {
            // Two requests with one idempotency key share a task: each is answered with it.
            Ok(created) => match tasks.get(&created.id).cloned() {
                Some(task) => {
                    let status = if created.existing {
                        StatusCode::OK
                    } else {
                        StatusCode::CREATED
                    };
                    views::BatchItem {
                        status: status.as_u16(),
                        task: Some(task_view(state, task)),
                        error: None,
                    }
                }
                None => error_item(crate::Error::TaskNotFound(created.id).into()),
            },
            Err(error) => error_item(error.into()),
        })
        .collect();
    Ok((StatusCode::OK, Json(views::Created::Many(items))).into_response())
}

/// One request's failure within an array's answer.
fn error_item(error: ApiError) -> views::BatchItem {
    views::BatchItem {
        status: error.status.as_u16(),
        task: None,
        error: Some(error),
    }
}

/// A task request from JSON: the seed's envelope `{"task": {...}}` or the bare request, with
/// the request's correlation id unless it names its own. A body of the wrong shape is 422,
/// naming the field at fault.
fn task_request(body: Value, correlation: &CorrelationId) -> Result<TaskRequest, ApiError> {
    let (request, envelope) = match body {
        Value::Object(mut map) if map.len() == 1 && map.contains_key("task") => {
            (map.remove("task").unwrap_or(Value::Null), "/task")
        }
        other => (other, ""),
    };
    // serde reads an array into a struct field by field: only an object is a request.
    if !request.is_object() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "a task request must be a JSON object",
        )
        .at(nested(envelope, "/")));
    }
    let mut request: TaskRequest = serde_path_to_error::deserialize(request).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e.inner().to_string(),
        )
        .at(nested(envelope, &json_pointer(e.path())))
    })?;
    // The fields' bounds are the document's too: checked here, with the shape, so an array
    // holding a request outside them is refused whole.
    request.check_fields().map_err(|error| {
        let error = ApiError::from(error);
        let path = nested(envelope, error.path.as_deref().unwrap_or("/"));
        error.at(path)
    })?;
    request
        .correlation_id
        .get_or_insert_with(|| correlation.0.clone());
    Ok(request)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ShowQuery {
    #[serde(default)]
    include_dependencies: bool,
}

async fn show_task(
    State(state): Shared,
    Params(id): Params<i64>,
    QueryParams(query): QueryParams<ShowQuery>,
) -> Result<Json<views::TaskDetail>, ApiError> {
    let task = state.tasker.task(id).await?;
    let (steps, edges) = steps_and_edges(&state, id).await?;
    let execution_context = state.tasker.execution_context(id).await?;
    let dependencies = query
        .include_dependencies
        .then(|| views::Dependencies::of(&steps, &edges));
    Ok(Json(views::TaskDetail {
        task: task_view(&state, task),
        execution_context,
        workflow_steps: steps
            .into_iter()
            .map(|s| step_view(&state, s, &edges))
            .collect(),
        dependencies,
    }))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaskUpdate {
    #[schemars(length(max = crate::engine::MAX_LABEL_CHARS), regex(pattern = crate::engine::STORABLE))]
    reason: Option<String>,
    tags: Option<Vec<String>>,
}

async fn update_task(
    State(state): Shared,
    Params(id): Params<i64>,
    body: Result<Body<TaskUpdate>, ApiError>,
) -> Result<Json<views::TaskView>, ApiError> {
    let Body(update) = body?;
    let task = state
        .tasker
        .update_task(id, update.reason, update.tags)
        .await?;
    Ok(Json(task_view(&state, task)))
}

async fn cancel_task(
    State(state): Shared,
    Params(id): Params<i64>,
) -> Result<Json<views::Cancelled>, ApiError> {
    let changed = state.tasker.cancel_task(id).await?;
    Ok(Json(views::Cancelled {
        cancelled: true,
        changed,
    }))
}

async fn retry_task(
    State(state): Shared,
    Params(id): Params<i64>,
) -> Result<Json<views::TaskView>, ApiError> {
    state.tasker.retry_task(id).await?;
    Ok(Json(task_view(&state, state.tasker.task(id).await?)))
}

async fn task_diagram(State(state): Shared, Params(id): Params<i64>) -> Result<Response, ApiError> {
    let task = state.tasker.task(id).await?;
    let steps = state.tasker.steps(id).await?;
    let edges = state.tasker.step_edges(id).await?;
    let title = format!(
        "task {} {}/{}@{} ({})",
        task.task_id, task.namespace, task.name, task.version, task.state
    );
    Ok((
        [("content-type", "text/plain; charset=utf-8")],
        crate::diagram::task(&title, &steps, &edges),
    )
        .into_response())
}

async fn list_steps(
    State(state): Shared,
    Params(id): Params<i64>,
) -> Result<Json<views::StepList>, ApiError> {
    state.tasker.task(id).await?;
    let (steps, edges) = steps_and_edges(&state, id).await?;
    Ok(Json(views::StepList {
        workflow_steps: steps
            .into_iter()
            .map(|s| step_view(&state, s, &edges))
            .collect(),
    }))
}

/// A step of a task.
async fn find_step(
    state: &AppState,
    task_id: i64,
    step_id: i64,
) -> Result<views::StepView, ApiError> {
    let (steps, edges) = steps_and_edges(state, task_id).await?;
    steps
        .into_iter()
        .find(|s| s.step_id == step_id)
        .map(|step| step_view(state, step, &edges))
        .ok_or_else(|| ApiError::not_found(format!("task {task_id} has no step {step_id}")))
}

async fn show_step(
    State(state): Shared,
    Params((id, step_id)): Params<(i64, i64)>,
) -> Result<Json<views::StepView>, ApiError> {
    Ok(Json(find_step(&state, id, step_id).await?))
}

/// A step update: `resolve: true` (with optional `results`), or a `retry_limit` alone.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("anyOf" = [
    { "required": ["resolve"], "properties": { "resolve": { "const": true } } },
    {
        "required": ["retry_limit"],
        "properties": {
            "retry_limit": { "type": "integer" },
            "resolve": { "const": false },
            "results": { "type": "null" }
        }
    }
]))]
struct StepUpdate {
    #[schemars(range(min = 1, max = crate::template::MAX_RETRY_LIMIT))]
    #[serde(default, deserialize_with = "crate::integral::option")]
    retry_limit: Option<u32>,
    #[serde(default)]
    resolve: bool,
    results: Option<Value>,
}

async fn update_step(
    State(state): Shared,
    Params((id, step_id)): Params<(i64, i64)>,
    body: Result<Body<StepUpdate>, ApiError>,
) -> Result<Json<views::StepView>, ApiError> {
    let Body(update) = body?;
    apply_step_update(&state, id, step_id, update).await?;
    Ok(Json(find_step(&state, id, step_id).await?))
}

/// Applies a step update (REST's and GraphQL's), in one transaction.
async fn apply_step_update(
    state: &AppState,
    id: i64,
    step_id: i64,
    update: StepUpdate,
) -> Result<(), ApiError> {
    find_step(state, id, step_id).await?;
    if update.retry_limit.is_none() && !update.resolve {
        return Err(ApiError::bad_request(
            "give `retry_limit`, or `resolve: true` (with optional `results`)",
        ));
    }
    if update.results.is_some() && !update.resolve {
        return Err(
            ApiError::bad_request("`results` is only taken with `resolve: true`").at("/results"),
        );
    }
    if let Some(limit) = update.retry_limit
        && !(1..=crate::template::MAX_RETRY_LIMIT).contains(&limit)
    {
        return Err(ApiError::bad_request(format!(
            "retry_limit must be 1 to {}",
            crate::template::MAX_RETRY_LIMIT
        ))
        .at("/retry_limit"));
    }
    let resolve = update.resolve.then_some(update.results);
    state
        .tasker
        .update_step(id, step_id, update.retry_limit, resolve)
        .await?;
    Ok(())
}

async fn cancel_step(
    State(state): Shared,
    Params((id, step_id)): Params<(i64, i64)>,
) -> Result<Json<views::CancelledStep>, ApiError> {
    let changed = state.tasker.cancel_step(id, step_id).await?;
    Ok(Json(views::CancelledStep {
        step: find_step(&state, id, step_id).await?,
        changed,
    }))
}

/// What `POST /prune` takes.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    /// How long a task must have been finished, in seconds.
    #[schemars(range(min = 0.0, max = 1e9))]
    older_than_seconds: f64,
    /// Delete tasks in `error` too (default: kept).
    #[serde(default)]
    include_errors: bool,
    /// Only count what would be deleted.
    #[serde(default)]
    dry_run: bool,
}

async fn prune(
    State(state): Shared,
    body: Result<Body<PruneBody>, ApiError>,
) -> Result<Json<crate::Pruned>, ApiError> {
    let Body(body) = body?;
    if !(0.0..=1e9).contains(&body.older_than_seconds) {
        return Err(
            ApiError::bad_request("older_than_seconds must be 0 to 1e9").at("/older_than_seconds")
        );
    }
    let options = crate::PruneOptions {
        older_than: std::time::Duration::from_secs_f64(body.older_than_seconds),
        include_errors: body.include_errors,
        dry_run: body.dry_run,
    };
    Ok(Json(state.tasker.prune(options).await?))
}

/// What `POST /tasks/{id}/annotations` takes.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AnnotationBody {
    /// Its type.
    #[schemars(length(min = 1, max = 64), regex(pattern = crate::engine::STORABLE))]
    annotation_type: String,
    /// A JSON object (no NUL character anywhere: annotations are looked up as `jsonb`).
    #[schemars(schema_with = "storable_object")]
    annotation: Value,
}

/// Any JSON holding no NUL character, in a key or a string, at any depth.
struct StorableJson;

impl JsonSchema for StorableJson {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StorableJson".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // A reference to itself: schemars ends the recursion with a `$ref`.
        let nested = generator.subschema_for::<StorableJson>();
        let no_nul = crate::engine::STORABLE;
        schemars::json_schema!({
            "anyOf": [
                { "type": ["null", "boolean", "number"] },
                { "type": "string", "pattern": no_nul },
                { "type": "array", "items": nested },
                {
                    "type": "object",
                    "propertyNames": { "pattern": no_nul },
                    "additionalProperties": nested
                }
            ]
        })
    }
}

/// A JSON object holding no NUL character, in a key or a string, at any depth.
fn storable_object(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let nested = generator.subschema_for::<StorableJson>();
    schemars::json_schema!({
        "type": "object",
        "propertyNames": { "pattern": crate::engine::STORABLE },
        "additionalProperties": nested
    })
}

async fn list_annotations(
    State(state): Shared,
    Params(id): Params<i64>,
) -> Result<Json<views::Annotations>, ApiError> {
    state.tasker.task(id).await?;
    Ok(Json(views::Annotations {
        task_id: id,
        annotations: state.tasker.annotations(id).await?,
    }))
}

async fn annotate_task(
    State(state): Shared,
    Params(id): Params<i64>,
    body: Result<Body<AnnotationBody>, ApiError>,
) -> Result<(StatusCode, Json<views::Annotations>), ApiError> {
    let Body(body) = body?;
    state
        .tasker
        .annotate(id, &body.annotation_type, body.annotation)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(views::Annotations {
            task_id: id,
            annotations: state.tasker.annotations(id).await?,
        }),
    ))
}

async fn annotation_types(State(state): Shared) -> Result<Json<views::AnnotationTypes>, ApiError> {
    Ok(Json(views::AnnotationTypes {
        annotation_types: state.tasker.annotation_types().await?,
    }))
}

/// What `POST /dependent_systems/object_maps` takes.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ObjectMapBody {
    /// The first system.
    #[schemars(length(min = 1, max = 64), regex(pattern = crate::engine::STORABLE))]
    system_one: String,
    /// The object's id there.
    #[schemars(length(min = 1, max = 128), regex(pattern = crate::engine::STORABLE))]
    remote_id_one: String,
    /// The second system.
    #[schemars(length(min = 1, max = 64), regex(pattern = crate::engine::STORABLE))]
    system_two: String,
    /// The object's id there.
    #[schemars(length(min = 1, max = 128), regex(pattern = crate::engine::STORABLE))]
    remote_id_two: String,
}

async fn map_objects(
    State(state): Shared,
    body: Result<Body<ObjectMapBody>, ApiError>,
) -> Result<Json<crate::ObjectMap>, ApiError> {
    let Body(body) = body?;
    let map = state
        .tasker
        .map_objects(
            (&body.system_one, &body.remote_id_one),
            (&body.system_two, &body.remote_id_two),
        )
        .await?;
    Ok(Json(map))
}

async fn object_maps(
    State(state): Shared,
    Params((system, object)): Params<(String, String)>,
) -> Result<Json<views::ObjectMaps>, ApiError> {
    Ok(Json(views::ObjectMaps {
        object_maps: state.tasker.mapped_objects(&system, &object).await?,
    }))
}

async fn list_schedules(State(state): Shared) -> Result<Json<views::ScheduleList>, ApiError> {
    Ok(Json(views::ScheduleList {
        schedules: state.tasker.schedules().await?,
    }))
}

async fn register_schedule(
    State(state): Shared,
    body: Result<Body<crate::Schedule>, ApiError>,
) -> Result<Json<crate::ScheduleInfo>, ApiError> {
    let Body(schedule) = body?;
    Ok(Json(state.tasker.register_schedule(schedule).await?))
}

async fn show_schedule(
    State(state): Shared,
    Params(name): Params<String>,
) -> Result<Json<crate::ScheduleInfo>, ApiError> {
    Ok(Json(state.tasker.schedule(&name).await?))
}

async fn remove_schedule(
    State(state): Shared,
    Params(name): Params<String>,
) -> Result<Json<views::RemovedSchedule>, ApiError> {
    if !state.tasker.remove_schedule(&name).await? {
        return Err(crate::Error::ScheduleNotFound(name).into());
    }
    Ok(Json(views::RemovedSchedule {
        name,
        removed: true,
    }))
}

async fn pause_schedule(
    State(state): Shared,
    Params(name): Params<String>,
) -> Result<Json<crate::ScheduleInfo>, ApiError> {
    Ok(Json(state.tasker.pause_schedule(&name).await?))
}

async fn resume_schedule(
    State(state): Shared,
    Params(name): Params<String>,
) -> Result<Json<crate::ScheduleInfo>, ApiError> {
    Ok(Json(state.tasker.resume_schedule(&name).await?))
}

async fn trigger_schedule(
    State(state): Shared,
    Params(name): Params<String>,
) -> Result<(StatusCode, Json<crate::ScheduleInfo>), ApiError> {
    let schedule = state.tasker.trigger_schedule(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(schedule)))
}

/// Most hours an analytics period may span (30 days).
const MAX_PERIOD_HOURS: u32 = 720;

/// `period` in hours as a duration, 1 to [`MAX_PERIOD_HOURS`] (default 24).
fn period(hours: Option<u32>) -> Result<std::time::Duration, ApiError> {
    let hours = hours.unwrap_or(24);
    if !(1..=MAX_PERIOD_HOURS).contains(&hours) {
        return Err(
            ApiError::bad_request(format!("period must be 1 to {MAX_PERIOD_HOURS} hours"))
                .at("/period"),
        );
    }
    Ok(std::time::Duration::from_secs(u64::from(hours) * 3600))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PerformanceQuery {
    /// Hours back from now (default 24).
    #[schemars(range(min = 1, max = MAX_PERIOD_HOURS))]
    period: Option<u32>,
}

async fn analytics_performance(
    State(state): Shared,
    QueryParams(query): QueryParams<PerformanceQuery>,
) -> Result<Json<crate::analytics::Performance>, ApiError> {
    let period = period(query.period)?;
    Ok(Json(state.tasker.performance(period).await?))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BottlenecksQuery {
    namespace: Option<String>,
    name: Option<String>,
    version: Option<String>,
    /// Hours back from now (default 24).
    #[schemars(range(min = 1, max = MAX_PERIOD_HOURS))]
    period: Option<u32>,
    /// How many of each (default 10).
    #[schemars(range(min = 1, max = 100))]
    limit: Option<usize>,
}

async fn analytics_bottlenecks(
    State(state): Shared,
    QueryParams(query): QueryParams<BottlenecksQuery>,
) -> Result<Json<crate::analytics::Bottlenecks>, ApiError> {
    let period = period(query.period)?;
    let limit = query.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1 to 100").at("/limit"));
    }
    let filter = crate::TemplateFilter {
        namespace: query.namespace,
        name: query.name,
        version: query.version,
    };
    Ok(Json(state.tasker.bottlenecks(period, filter, limit).await?))
}

async fn list_handlers(State(state): Shared) -> Result<Json<views::HandlerList>, ApiError> {
    let handlers = state
        .tasker
        .registry()
        .templates()
        .into_iter()
        .map(views::TemplateView::new)
        .collect();
    Ok(Json(views::HandlerList { handlers }))
}

async fn namespace_handlers(
    State(state): Shared,
    Params(namespace): Params<String>,
) -> Result<Json<views::NamespaceHandlers>, ApiError> {
    let handlers: Vec<views::TemplateView> = state
        .tasker
        .registry()
        .templates()
        .into_iter()
        .filter(|t| t.namespace_name == namespace)
        .map(views::TemplateView::new)
        .collect();
    if handlers.is_empty() {
        return Err(ApiError::not_found(format!(
            "no templates in namespace `{namespace}`"
        )));
    }
    Ok(Json(views::NamespaceHandlers {
        namespace,
        handlers,
    }))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    version: Option<String>,
}

async fn show_handler(
    State(state): Shared,
    Params((namespace, name)): Params<(String, String)>,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Result<Json<views::TemplateDetail>, ApiError> {
    let registry = state.tasker.registry();
    let mut matching: Vec<&crate::TaskTemplate> = registry
        .templates()
        .into_iter()
        .filter(|t| t.namespace_name == namespace && t.name == name)
        .filter(|t| query.version.as_ref().is_none_or(|v| *v == t.version))
        .collect();
    // The highest version when none is asked for (semver order on MAJOR.MINOR.PATCH).
    matching.sort_by_key(|t| {
        t.version
            .split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    let template = matching.last().ok_or_else(|| {
        ApiError::not_found(format!(
            "no template `{namespace}/{name}`{}",
            query
                .version
                .as_ref()
                .map(|v| format!("@{v}"))
                .unwrap_or_default()
        ))
    })?;
    Ok(Json(views::TemplateDetail::new(template)))
}
