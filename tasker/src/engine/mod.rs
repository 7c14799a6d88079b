//! The engine: creating tasks, running their steps on workers, and operating on them.

mod queue;
mod request;
mod schedules;
pub(crate) mod spans;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{Notify, broadcast};

pub(crate) use request::MAX_DELAY_SECONDS;
use request::check_label;
pub use request::{IdentityStrategy, TaskIdentity, TaskRequest};
#[cfg(feature = "server")]
pub(crate) use request::{MAX_LABEL_CHARS, STORABLE};
pub use worker::{Worker, WorkerOptions};

use crate::config::TaskerConfig;
use crate::error::{ContextViolation, Error, Result};
use crate::events::{Event, EventDefinitions, EventKind};
use crate::generated::SubscriberRegistration;
use crate::handler::StepHandler;
use crate::hooks::StepPlan;
use crate::model::Change;
use crate::model::{
    ClaimedStep, CompletionOutcome, EventRecord, NewTask, Outcome, PruneOptions, Pruned, StepInfo,
    TaskFilter, TaskRow, TemplateFilter, TransitionInfo, WorkerInfo,
};
use crate::registry::{RegisteredTemplate, Registry, TemplateKey};
use crate::state::{StepState, TaskState};
use crate::store::{self, PreparedStep, PreparedTask, Start, Store};
use crate::subscriber::{
    Candidate, DynSubscriber, Enrolled, Subscriber, SubscriberStats, Subscribers, Subscription,
    enroll, load_subscriptions,
};
use crate::template::TaskTemplate;
use crate::workflow::TaskHandler;

/// The engine: a store, the registered workflows, and the operations on tasks.
///
/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Tasker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) registry: Registry,
    pub(crate) config: TaskerConfig,
    pub(crate) identity: IdentityStrategy,
    /// Whether any registered template has an `update_annotations` hook.
    annotates: bool,
    /// Database ids of each registered template.
    ids: HashMap<TemplateKey, store::TemplateIds>,
    /// Templates by `named_task_id`, for workers resolving a claimed step.
    pub(crate) by_named_task: HashMap<i64, Arc<RegisteredTemplate>>,
    /// The `named_task_id`s whose steps this process can run (not those read from the
    /// database only).
    pub(crate) runnable: Vec<i64>,
    pub(crate) wake: Arc<Notify>,
    events: broadcast::Sender<Event>,
    subscribers: Subscribers,
    /// The custom events of the events directories, with their payload schemas.
    pub(crate) event_definitions: Arc<EventDefinitions>,
    pub(crate) redactor: crate::redact::Redactor,
    /// Correlation ids of the tasks this process works on.
    pub(crate) correlations: std::sync::Mutex<HashMap<i64, String>>,
    /// Held by creations until they have published, so later writes publish after them.
    pub(crate) creations: tokio::sync::RwLock<()>,
    /// Single creates waiting to share a transaction.
    create_queue: queue::CreateQueue,
    /// The open span of each task this process runs steps of.
    pub(crate) task_spans: std::sync::Mutex<HashMap<i64, spans::TaskSpan>>,
    listener_stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener_stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Tasker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasker")
            .field("store", &self.inner.store)
            .field("registry", &self.inner.registry)
            .finish()
    }
}

/// Builds a [`Tasker`]: configuration, templates and handlers.
#[must_use = "call `.build().await` to start the engine"]
pub struct TaskerBuilder {
    config: TaskerConfig,
    registry: Registry,
    identity: IdentityStrategy,
    auto_register: bool,
    templates_from_database: bool,
    /// `task_handler` registrations, run at `build` once the environment is known.
    task_handlers: Vec<PendingTaskHandler>,
    subscribers: Vec<NamedSubscriber>,
    error: Option<Error>,
}

type PendingTaskHandler = Box<dyn FnOnce(&mut Registry) -> Result<()> + Send>;

impl TaskerBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: TaskerConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the configuration with a YAML file's (see [`TaskerConfig::from_file`]).
    pub fn config_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        match TaskerConfig::from_file(path) {
            Ok(config) => self.config = config,
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
        }
        self
    }

    /// Sets the database URL (a SQLite path, or `postgres://…`).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.config.database_url = url.into();
        self
    }

    /// Sets how duplicate requests are recognised.
    pub fn identity_strategy(mut self, identity: IdentityStrategy) -> Self {
        self.identity = identity;
        self
    }

    /// Changes the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut TaskerConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Registers a task template.
    pub fn template(mut self, template: TaskTemplate) -> Self {
        if self.error.is_none()
            && let Err(e) = self.registry.register_template(template)
        {
            self.error = Some(e);
        }
        self
    }

    /// Loads every YAML template in `dir`, with the configured environment's overrides.
    pub fn templates_dir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        if self.error.is_none() {
            let env = self.config.environment.clone();
            if let Err(e) = self.registry.load_templates_dir(dir, env.as_deref()) {
                self.error = Some(e);
            }
        }
        self
    }

    /// Registers a `#[task_handler]` workflow with the instance that runs its steps; needed for
    /// handler types that hold state, optional for `Default` ones.
    pub fn task_handler<H: TaskHandler>(mut self, handler: H) -> Self {
        self.task_handlers.push(Box::new(move |registry| {
            registry.register_task_handler(handler).map(|_| ())
        }));
        self
    }

    /// Adds a subscriber; it receives the events its [`Subscriber::events`] select, off the path
    /// that runs steps (see [`mod@crate::subscriber`] for the delivery rules). Subscription
    /// files name it by its type's path.
    pub fn subscriber<S: Subscriber>(mut self, subscriber: S) -> Self {
        self.subscribers
            .push((std::any::type_name::<S>().to_owned(), Arc::new(subscriber)));
        self
    }

    /// Also loads the templates other programs stored in the database, so this process (an API
    /// server, say) can create and inspect their tasks without linking their code. It runs
    /// none of their steps.
    pub fn templates_from_database(mut self, enabled: bool) -> Self {
        self.templates_from_database = enabled;
        self
    }

    /// Whether `build` adds every `#[task_handler]` and `#[step_handler]` compiled into the
    /// program (default `true`); with `false`, only what is registered on the builder runs.
    pub fn auto_register(mut self, enabled: bool) -> Self {
        self.auto_register = enabled;
        self
    }

    /// Registers a step handler under the name templates use in `handler`.
    pub fn handler(mut self, name: impl Into<String>, handler: impl StepHandler) -> Self {
        if self.error.is_none()
            && let Err(e) = self.registry.register_handler(name, handler)
        {
            self.error = Some(e);
        }
        self
    }

    /// Uses a registry built elsewhere (its templates and handlers are added to this one's; one
    /// registered in both fails the build).
    pub fn registry(mut self, registry: Registry) -> Self {
        if self.error.is_none()
            && let Err(e) = self.registry.merge(registry)
        {
            self.error = Some(e);
        }
        self
    }

    /// Connects, migrates (unless disabled), checks the registry and records the templates.
    pub async fn build(self) -> Result<Tasker> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut registry = self.registry;
        registry.set_environment(self.config.environment.clone());
        register_handlers(&mut registry, self.task_handlers, self.auto_register)?;
        let definitions = EventDefinitions::load(&self.config.custom_events_directories)?;
        let subscriptions = load_subscriptions(&self.config.subscriptions_directories)?;
        let subscribers = collect_subscribers(self.subscribers, self.auto_register, subscriptions)?;
        check_subscriptions(&registry, &definitions, &subscribers)?;
        registry.validate()?;
        let store = connect(&self.config).await?;
        // Only the templates registered here are ones whose steps this process can run.
        let local: HashSet<TemplateKey> = registry.keys().cloned().collect();
        if self.templates_from_database {
            load_stored_templates(&store, &mut registry, &local).await?;
        }
        let stored = sync_templates(&store, &registry, &local).await?;
        schedules::sync_schedules(&store, &registry, &local, self.config.max_context_bytes).await?;
        sync_custom_events(&store, &definitions).await?;
        let wake_up = start_listener(&store, &self.config);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let redactor = self.config.redactor();
        let create_queue = queue::CreateQueue::new(create_writers(self.config.pool_size));
        Ok(Tasker {
            inner: Arc::new(Inner {
                store,
                annotates: registry
                    .registered()
                    .iter()
                    .any(|(_, r)| r.hooks.as_ref().is_some_and(|h| h.annotates())),
                registry,
                config: self.config,
                identity: self.identity,
                ids: stored.ids,
                by_named_task: stored.by_named_task,
                runnable: stored.runnable,
                wake: wake_up.wake,
                events,
                subscribers: Subscribers::start(subscribers),
                event_definitions: Arc::new(definitions),
                redactor,
                correlations: Default::default(),
                creations: tokio::sync::RwLock::new(()),
                create_queue,
                task_spans: Default::default(),
                listener_stop: wake_up.listener_stop,
            }),
        })
    }
}

/// Whether a filter holds a NUL character: it matches nothing stored (nothing can hold one),
/// and PostgreSQL refuses to compare with it.
fn holds_nul<'a>(parts: impl IntoIterator<Item = Option<&'a String>>) -> bool {
    parts.into_iter().flatten().any(|part| part.contains('\0'))
}

/// Longest annotation type name, in characters (the column's).
const MAX_ANNOTATION_TYPE_CHARS: usize = 64;

/// Refuses an annotation type that is empty, too long or unstorable, and an annotation that is
/// not an object, is over `max_bytes`, or holds a NUL character (PostgreSQL's `jsonb`, which
/// the lookup by key reads it as, refuses one).
fn check_annotation(annotation_type: &str, annotation: &Value, max_bytes: usize) -> Result<()> {
    fn holds_nul(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(holds_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
            _ => false,
        }
    }
    let invalid = |field, problem: String| Err(Error::InvalidField { field, problem });
    let chars = annotation_type.chars().count();
    if chars == 0 || chars > MAX_ANNOTATION_TYPE_CHARS || annotation_type.contains('\0') {
        return invalid(
            "annotation_type",
            format!("must be 1 to {MAX_ANNOTATION_TYPE_CHARS} characters, none of them NUL"),
        );
    }
    if !annotation.is_object() {
        return invalid("annotation", "must be a JSON object".to_owned());
    }
    if holds_nul(annotation) {
        return invalid(
            "annotation",
            "contains the NUL character (U+0000), which cannot be stored".to_owned(),
        );
    }
    let bytes = serde_json::to_string(annotation)?.len();
    if bytes > max_bytes {
        return invalid(
            "annotation",
            format!("is {bytes} bytes, over the limit of {max_bytes}"),
        );
    }
    Ok(())
}

/// Refuses a dependent system name or remote id that is empty, over its column's width (64
/// and 128 characters) or holds a NUL character, naming it by `fields`.
fn check_object_ref(
    (system, remote_id): (&str, &str),
    fields: (&'static str, &'static str),
) -> Result<()> {
    for (field, value, max) in [(fields.0, system, 64), (fields.1, remote_id, 128)] {
        let chars = value.chars().count();
        if chars == 0 || chars > max || value.contains('\0') {
            return Err(Error::InvalidField {
                field,
                problem: format!("must be 1 to {max} characters, none of them NUL"),
            });
        }
    }
    Ok(())
}

/// A retry limit as stored: clamped to 1 to `MAX_RETRY_LIMIT`.
fn stored_retry_limit(limit: u32) -> i32 {
    i32::try_from(limit.clamp(1, crate::template::MAX_RETRY_LIMIT)).unwrap_or(i32::MAX)
}

/// How many batches of queued single creates may write at once: half the pool, leaving the
/// rest to workers and reads (on SQLite writes take turns anyway).
fn create_writers(pool_size: u32) -> usize {
    usize::try_from(pool_size / 2).unwrap_or(usize::MAX).max(1)
}

/// Events a lagging [`Tasker::subscribe`] receiver may fall behind by before it misses some.
const EVENT_BUFFER: usize = 4096;

/// A subscriber with the name it is reported under.
type NamedSubscriber = (String, Arc<dyn DynSubscriber>);

/// Registers the builder's task handlers, then (unless automatic registration is off) every
/// other `#[task_handler]` and `#[step_handler]` of the program.
fn register_handlers(
    registry: &mut Registry,
    task_handlers: Vec<PendingTaskHandler>,
    auto_register: bool,
) -> Result<()> {
    for register in task_handlers {
        register(registry)?;
    }
    if auto_register {
        registry.register_discovered()?;
    }
    Ok(())
}

/// The builder's subscribers and (unless automatic registration is off) every `#[subscriber]`
/// not handed over, as the subscription files leave them; one that holds state, was not handed
/// over and is not turned off is an error.
fn collect_subscribers(
    subscribers: Vec<NamedSubscriber>,
    auto_register: bool,
    subscriptions: Vec<Subscription>,
) -> Result<Vec<Enrolled>> {
    let mut candidates: Vec<Candidate> = subscribers
        .into_iter()
        .map(|(name, subscriber)| Candidate {
            name,
            instance: Some(subscriber),
        })
        .collect();
    if auto_register {
        for registration in inventory::iter::<SubscriberRegistration> {
            if candidates.iter().any(|c| c.name == registration.name) {
                continue;
            }
            candidates.push(Candidate {
                name: registration.name.to_owned(),
                instance: (registration.instance)(),
            });
        }
    }
    enroll(candidates, subscriptions)
}

/// Refuses a subscriber pattern that matches no event: none the engine publishes, none declared
/// with `custom_event!`, in an events directory, or by a template's step. A pattern a
/// subscription file chose is reported with its file and key.
fn check_subscriptions(
    registry: &Registry,
    definitions: &EventDefinitions,
    subscribers: &[Enrolled],
) -> Result<()> {
    let declared: Vec<String> = registry
        .templates()
        .iter()
        .flat_map(|t| &t.step_templates)
        .flat_map(|s| s.custom_events.iter().map(|e| e.name.clone()))
        .collect();
    let known = |pattern: &str| {
        crate::events::CATALOG
            .iter()
            .filter(|e| e.not_published.is_none())
            .map(|e| e.name)
            .chain(crate::events::custom_events().iter().map(|e| e.name()))
            .chain(definitions.iter().map(|e| e.name()))
            .chain(declared.iter().map(String::as_str))
            .any(|event| crate::events::matches_pattern(event, pattern))
    };
    let mut problems = Vec::new();
    for subscriber in subscribers {
        for (i, pattern) in subscriber.patterns.iter().enumerate() {
            if known(pattern) {
                continue;
            }
            let Some((file, key)) = &subscriber.chosen_by else {
                return Err(Error::UnknownEvent {
                    subscriber: subscriber.name.clone(),
                    pattern: pattern.clone(),
                });
            };
            problems.push(crate::FileProblem::new(
                file,
                Some(format!("{key}[{i}]")),
                format!(
                    "`{pattern}` matches no published or declared event (`cargo tasker events` \
                     lists them)"
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Subscriptions(problems))
    }
}

/// Opens the store and, unless disabled, applies the migrations, on the blocking pool.
async fn connect(config: &TaskerConfig) -> Result<Store> {
    let postgres = config.database_url.starts_with("postgres://")
        || config.database_url.starts_with("postgresql://");
    let schema = config.postgres_schema.clone().filter(|_| postgres);
    let url = match &schema {
        #[cfg(feature = "postgres")]
        Some(schema) => store::with_schema(&config.database_url, schema)?,
        _ => config.database_url.clone(),
    };
    let options = store::ConnectOptions {
        pool_size: config.pool_size,
        connection_timeout: config.connection_timeout,
        statement_timeout: config.statement_timeout,
    };
    let migrate = config.migrate_on_start;
    tokio::task::spawn_blocking(move || -> Result<Store> {
        let store = Store::connect_with(&url, options)?;
        #[cfg(feature = "postgres")]
        if let Some(schema) = &schema {
            store.create_schema(schema)?;
        }
        if migrate {
            store.migrate()?;
        }
        Ok(store)
    })
    .await?
}

/// Adds the templates other programs stored in the database and this one lacks: this process
/// can create and inspect their tasks, but runs none of their steps.
async fn load_stored_templates(
    store: &Store,
    registry: &mut Registry,
    local: &HashSet<TemplateKey>,
) -> Result<()> {
    let stored = store.run(|store| store.stored_templates()).await?;
    for (id, configuration) in stored {
        let template = stored_template(id, configuration.as_deref())?;
        if !local.contains(&TemplateKey::of(&template)) {
            registry.register_template(template)?;
        }
    }
    Ok(())
}

/// What the engine keeps of the stored templates.
struct StoredTemplates {
    /// The database ids of each registered template.
    ids: HashMap<TemplateKey, store::TemplateIds>,
    /// Templates by `named_task_id`.
    by_named_task: HashMap<i64, Arc<RegisteredTemplate>>,
    /// The `named_task_id`s whose steps this process runs, sorted.
    runnable: Vec<i64>,
}

/// Records every registered template in the database and reads back their ids.
async fn sync_templates(
    store: &Store,
    registry: &Registry,
    local: &HashSet<TemplateKey>,
) -> Result<StoredTemplates> {
    let registered = registry.registered();
    let templates: Vec<TaskTemplate> = registered.iter().map(|(_, r)| r.template.clone()).collect();
    let synced = store
        .run(move |store| {
            let refs: Vec<&TaskTemplate> = templates.iter().collect();
            store.sync_templates(&refs)
        })
        .await?;
    let mut stored = StoredTemplates {
        ids: HashMap::new(),
        by_named_task: HashMap::new(),
        runnable: Vec::new(),
    };
    for ((key, registered), template_ids) in registered.into_iter().zip(synced) {
        stored
            .by_named_task
            .insert(template_ids.named_task_id, Arc::clone(registered));
        if local.contains(key) {
            stored.runnable.push(template_ids.named_task_id);
        }
        stored.ids.insert(key.clone(), template_ids);
    }
    stored.runnable.sort_unstable();
    Ok(stored)
}

/// Records the custom events this program declares in code and in its events directories, with
/// their descriptions (a directory's, for an event declared in both).
async fn sync_custom_events(store: &Store, definitions: &EventDefinitions) -> Result<()> {
    let custom: Vec<(String, String)> = crate::events::custom_events()
        .iter()
        .map(|e| (e.name(), e.description()))
        .chain(definitions.iter().map(|e| (e.name(), e.description())))
        .map(|(name, description)| (name.to_owned(), description.to_owned()))
        .collect();
    if !custom.is_empty() {
        store
            .run(move |store| store.sync_custom_events(&custom))
            .await?;
    }
    Ok(())
}

/// How this engine's workers are woken, and the flag that stops the PostgreSQL listener.
struct WakeUp {
    wake: Arc<Notify>,
    listener_stop: Arc<AtomicBool>,
}

/// On PostgreSQL, listens for the `NOTIFY` of other processes so their work wakes workers here;
/// otherwise only this process's own notifications do.
fn start_listener(store: &Store, config: &TaskerConfig) -> WakeUp {
    let wake_up = WakeUp {
        wake: Arc::new(Notify::new()),
        listener_stop: Arc::new(AtomicBool::new(false)),
    };
    #[cfg(feature = "postgres")]
    if store.backend() == store::Backend::Postgres {
        store::spawn_listener(
            store::with_deadlines(
                store.url(),
                config.connection_timeout,
                config.statement_timeout,
            ),
            Arc::clone(&wake_up.wake),
            Arc::clone(&wake_up.listener_stop),
        );
    }
    #[cfg(not(feature = "postgres"))]
    let _ = (store, config);
    wake_up
}

impl Tasker {
    /// Starts building an engine with the default configuration.
    pub fn builder() -> TaskerBuilder {
        TaskerBuilder {
            config: TaskerConfig::default(),
            registry: Registry::new(),
            identity: IdentityStrategy::default(),
            auto_register: true,
            templates_from_database: false,
            task_handlers: Vec::new(),
            subscribers: Vec::new(),
            error: None,
        }
    }

    /// The store, for low-level access.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The registered templates and handlers.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The configuration in force.
    pub fn config(&self) -> &TaskerConfig {
        &self.inner.config
    }

    /// Receives every transition as it is committed by this process (lagging receivers miss
    /// the oldest events).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Delivered, failed and dropped counts of each subscriber that runs (not those a
    /// subscription file turned off).
    pub fn subscriber_stats(&self) -> Vec<SubscriberStats> {
        self.inner.subscribers.stats()
    }

    /// The custom events of the events directories
    /// ([`TaskerConfig::custom_events_directories`]), loaded at start-up.
    pub fn event_definitions(&self) -> &EventDefinitions {
        &self.inner.event_definitions
    }

    /// Publishes a custom event from outside a step: to [`Tasker::subscribe`] receivers and the
    /// subscribers that ask for it, in this process. `name` must be declared with
    /// `custom_event!`, in an events directory or by a template's step; a payload that does not
    /// satisfy the definition's `payload_schema` is refused with
    /// [`Error::InvalidEventPayload`], naming the path of each violation. Sensitive keys of the
    /// payload are masked.
    pub fn publish_custom(&self, name: &str, payload: impl serde::Serialize) -> Result<()> {
        if !self.is_custom_event(name) {
            return Err(Error::UnknownCustomEvent(name.to_owned()));
        }
        let payload = serde_json::to_value(payload)?;
        self.inner.event_definitions.check_payload(name, &payload)?;
        let mut event = Event::new(name.to_owned(), EventKind::Custom);
        event.payload = payload;
        self.emit(event);
        Ok(())
    }

    /// Whether `name` is a custom event of this program: declared with `custom_event!`, in an
    /// events directory, or by a registered template's step.
    fn is_custom_event(&self, name: &str) -> bool {
        crate::events::custom_events()
            .iter()
            .any(|e| e.name() == name)
            || self.inner.event_definitions.get(name).is_some()
            || self
                .inner
                .registry
                .templates()
                .iter()
                .flat_map(|t| &t.step_templates)
                .flat_map(|s| &s.custom_events)
                .any(|e| e.name == name)
    }

    /// Publishes an event in this process: to [`Tasker::subscribe`] receivers and subscribers.
    pub(crate) fn emit(&self, event: Event) {
        emit(&self.inner, event);
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    pub(crate) fn publish(&self, events: Vec<EventRecord>) {
        publish(&self.inner, events);
    }

    /// Runs a write on the store and, once it has committed, publishes the events it recorded.
    pub(crate) async fn commit<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<(T, Vec<EventRecord>)> + Send + 'static,
    {
        let (value, events) = self.write(write).await?;
        self.publish_in_order(events).await;
        Ok(value)
    }

    /// Runs a write on the store and fills in the correlation ids of the events it recorded.
    async fn write<T, F>(&self, write: F) -> Result<(T, Vec<EventRecord>)>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<(T, Vec<EventRecord>)> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        self.inner
            .store
            .run(move |store| {
                let (value, mut events) = write(store)?;
                // The write has committed: failing now would make the caller retry it (and see
                // its own outcomes as stale). Correlation ids only decorate events.
                if let Err(error) = with_correlations(&inner, store, &mut events) {
                    tracing::warn!(%error, "correlation ids of these events are unavailable");
                }
                Ok((value, events))
            })
            .await
    }

    /// Publishes events of a write that committed after any task creation in flight here has
    /// published its own: a task's first events then always precede the events of its steps,
    /// which a worker here may claim the moment the creation commits.
    pub(crate) async fn publish_in_order(&self, events: Vec<EventRecord>) {
        if events.is_empty() {
            return;
        }
        if self.inner.annotates {
            self.update_annotations(&events).await;
        }
        let _after_creations = self.inner.creations.write().await;
        self.publish(events);
    }

    /// Runs the `update_annotations` hook of each task these events finish (complete or
    /// error), and writes what it returns. The task's outcome has committed already: a hook or
    /// write that fails is logged, and the events are still published.
    async fn update_annotations(&self, events: &[EventRecord]) {
        for event in events {
            let Change::Task {
                to: to @ (TaskState::Complete | TaskState::Error),
                ..
            } = event.change
            else {
                continue;
            };
            let task_id = event.task_id;
            if let Err(error) = self.annotate_finished(task_id, to).await {
                tracing::warn!(task_id, %error, "update_annotations failed");
            }
        }
    }

    async fn annotate_finished(&self, task_id: i64, state: TaskState) -> Result<()> {
        let task = self.task(task_id).await?;
        let Some(hooks) = self
            .inner
            .registry
            .find(&task.namespace, &task.name, &task.version)
            .and_then(|r| r.hooks.clone())
            .filter(|h| h.annotates())
        else {
            return Ok(());
        };
        let steps = self.steps(task_id).await?;
        let annotations = hooks.annotate(task_id, state, &task.context, steps)?;
        for annotation in annotations {
            self.annotate(task_id, &annotation.annotation_type, annotation.annotation)
                .await?;
        }
        Ok(())
    }

    /// Checks a request against its template and builds the rows to insert.
    fn prepare(&self, request: &TaskRequest) -> Result<PreparedTask> {
        let registered = self.find_template(request)?;
        let template = &registered.template;
        let ids = self
            .inner
            .ids
            .get(&TemplateKey::of(template))
            .ok_or_else(|| Error::TemplateNotStored(template.full_name()))?;
        let context = check_context(request, registered, self.inner.config.max_context_bytes)?;
        check_bypass(template, &request.bypass_steps)?;
        request.check_fields()?;
        let (mut steps, mut edges) = build_steps(template, ids, &request.bypass_steps)?;
        let mut bypass_steps = request.bypass_steps.clone();
        if let Some(hooks) = registered.hooks.as_deref().filter(|h| h.establishes()) {
            let whole = crate::integral::whole_numbers(&request.context);
            let value = whole.as_ref().unwrap_or(&request.context);
            let mut plan = StepPlan::new(
                steps.iter().map(|s| {
                    (
                        s.name.clone(),
                        s.retry_limit,
                        s.retryable,
                        s.skippable,
                        s.bypassed,
                    )
                }),
                std::mem::take(&mut edges),
            );
            hooks.establish(&template.full_name(), value, &mut plan)?;
            apply_plan(plan, &mut steps, &mut edges, &mut bypass_steps);
        }
        let requested_at = request.requested_at.unwrap_or_else(Utc::now);
        let identity_hash = match &request.idempotency_key {
            None => self.inner.identity.hash(request, requested_at),
            Some(_) => None,
        }
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        Ok(PreparedTask {
            named_task_id: ids.named_task_id,
            concurrent: template.concurrent,
            requested_at: requested_at.naive_utc(),
            initiator: request.initiator.clone(),
            source_system: request.source_system.clone(),
            reason: request.reason.clone(),
            bypass_steps: serde_json::to_string(&bypass_steps)?,
            tags: serde_json::to_string(&request.tags)?,
            context,
            identity_hash,
            idempotency_key: request.idempotency_key.clone(),
            priority: request.priority,
            correlation_id: request
                .correlation_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            steps,
            edges,
            timeout_seconds: request.timeout_seconds.or(template.timeout_seconds),
            start: match (request.run_at, request.delay_seconds) {
                (Some(at), _) => Some(Start::At(at.naive_utc())),
                (None, Some(seconds)) => Some(Start::After(seconds)),
                (None, None) => None,
            },
        })
    }

    /// The registered template a request names.
    fn find_template(&self, request: &TaskRequest) -> Result<&Arc<RegisteredTemplate>> {
        self.inner
            .registry
            .find(&request.namespace, &request.name, &request.version)
            .ok_or_else(|| Error::UnknownTemplate {
                namespace: request.namespace.clone(),
                name: request.name.clone(),
                version: request.version.clone(),
            })
    }

    /// Creates a task of the `#[task_handler]` workflow `H` over its typed context.
    ///
    /// ```no_run
    /// # use tasker::prelude::*;
    /// # async fn run<H: TaskHandler>(tasker: Tasker, context: H::Context) -> tasker::Result<()> {
    /// let task = tasker.create::<H>(&context).await?;
    /// # Ok(()) }
    /// ```
    pub async fn create<H: TaskHandler>(&self, context: &H::Context) -> Result<NewTask> {
        self.create_task(TaskRequest::of::<H>(context)?).await
    }

    /// Creates a task: validates the context against the template's schema, then writes the task,
    /// its steps, edges and initial transitions in one transaction. Nothing is written when any
    /// check fails. Creates made at the same time from many tasks share transactions (each still
    /// gets its own result), so they scale without connections of the caller's own.
    pub async fn create_task(&self, request: TaskRequest) -> Result<NewTask> {
        let started = std::time::Instant::now();
        let prepared = self.prepare(&request)?;
        let created = self.write_queued(prepared).await?;
        if !created.existing {
            self.emit_created(&created, &request, started.elapsed());
        }
        Ok(created)
    }

    /// Writes a prepared task together with the single creates queued alongside it: this call
    /// writes the queue when it gets a writer's slot first, else another writer answers it.
    async fn write_queued(&self, task: PreparedTask) -> Result<NewTask> {
        let queue = &self.inner.create_queue;
        let mut answered = queue.push(task);
        let writer = tokio::select! {
            biased;
            answer = &mut answered => return self.take_answer(queue::received(answer)?).await,
            writer = queue.writer() => writer,
        };
        let batch = queue.take();
        if batch.is_empty() {
            // Another writer took this task with its batch; its answer is on the way.
            drop(writer);
        } else {
            // Spawned, so that a caller that stops waiting does not drop the others' answers.
            let tasker = self.clone();
            tokio::spawn(async move {
                tasker.write_batch(batch).await;
                drop(writer);
            });
        }
        self.take_answer(queue::received(answered.await)?).await
    }

    /// Writes queued creates as one batch and answers each.
    async fn write_batch(&self, batch: Vec<queue::Waiting>) {
        let (tasks, answers): (Vec<PreparedTask>, Vec<_>) =
            batch.into_iter().map(|w| (w.task, w.answer)).unzip();
        let tasks: Arc<[PreparedTask]> = tasks.into();
        match self.write_tasks(Arc::clone(&tasks)).await {
            Ok(results) => {
                for (answer, result) in answers.into_iter().zip(results) {
                    // A caller that stopped waiting needs no answer.
                    let _ = answer.send(queue::Answer::Written(result));
                }
            }
            // A batch of one failed on its own account: that is its answer.
            Err(error) if answers.len() == 1 => {
                if let Some(answer) = answers.into_iter().next() {
                    let _ = answer.send(queue::Answer::Written(Err(error)));
                }
            }
            Err(_) => {
                for (answer, task) in answers.into_iter().zip(tasks.iter()) {
                    let _ = answer.send(queue::Answer::Alone(Box::new(task.clone())));
                }
            }
        }
    }

    /// A queued create's result: the one it was given, or that of writing it alone.
    async fn take_answer(&self, answer: queue::Answer) -> Result<NewTask> {
        match answer {
            queue::Answer::Written(result) => result,
            queue::Answer::Alone(task) => {
                let creating = self.inner.creations.read().await;
                let (created, events) = self.write(move |store| store.create_task(&task)).await?;
                self.publish(events);
                drop(creating);
                self.inner.wake.notify_one();
                Ok(created)
            }
        }
    }

    /// Creates tasks of the `#[task_handler]` workflow `H`, one per context, in one transaction;
    /// see [`Tasker::create_many`].
    ///
    /// ```no_run
    /// # use tasker::prelude::*;
    /// # async fn run<H: TaskHandler>(tasker: Tasker, contexts: Vec<H::Context>) -> tasker::Result<()> {
    /// for created in tasker.create_many_of::<H>(&contexts).await? {
    ///     println!("{:?}", created.map(|task| task.id));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn create_many_of<H: TaskHandler>(
        &self,
        contexts: &[H::Context],
    ) -> Result<Vec<Result<NewTask>>> {
        let requests = contexts.iter().map(TaskRequest::of::<H>).collect();
        self.create_requests(requests).await
    }

    /// Creates many tasks in one transaction, with a few multi-row statements for the whole
    /// batch instead of a transaction per task. Each request is checked exactly as by
    /// [`Tasker::create_task`], and gets its own result, in order: a request that fails its
    /// checks (or whose identity hash is taken) gets its error and the others are still
    /// created; an idempotency key already used, by a stored task or an earlier request of the
    /// batch, gives that task with `existing: true`. A database error fails the whole call and
    /// creates nothing. Events are those of the same creates one after the other.
    pub async fn create_many(&self, requests: Vec<TaskRequest>) -> Result<Vec<Result<NewTask>>> {
        self.create_requests(requests.into_iter().map(Ok).collect())
            .await
    }

    /// Prepares each request, writes the prepared ones as one batch, and answers each request
    /// in its place.
    async fn create_requests(
        &self,
        requests: Vec<Result<TaskRequest>>,
    ) -> Result<Vec<Result<NewTask>>> {
        let started = std::time::Instant::now();
        let mut answers: Vec<(usize, Result<NewTask>)> = Vec::new();
        let mut accepted: Vec<(usize, TaskRequest)> = Vec::new();
        let mut tasks: Vec<PreparedTask> = Vec::new();
        for (position, request) in requests.into_iter().enumerate() {
            match request.and_then(|r| Ok((self.prepare(&r)?, r))) {
                Ok((task, request)) => {
                    tasks.push(task);
                    accepted.push((position, request));
                }
                Err(refused) => answers.push((position, Err(refused))),
            }
        }
        if !tasks.is_empty() {
            let written = self.write_tasks(tasks.into()).await?;
            for ((position, request), created) in accepted.into_iter().zip(written) {
                if let Ok(task) = &created
                    && !task.existing
                {
                    self.emit_created(task, &request, started.elapsed());
                }
                answers.push((position, created));
            }
        }
        // Refused and written answers, each list in request order, merged back into it.
        answers.sort_by_key(|(position, _)| *position);
        Ok(answers.into_iter().map(|(_, answer)| answer).collect())
    }

    /// Writes prepared tasks in one transaction and publishes their events; one result each.
    async fn write_tasks(&self, tasks: Arc<[PreparedTask]>) -> Result<Vec<Result<NewTask>>> {
        // Held from before the commit until the events are out (see `publish_in_order`);
        // creations share it, so they do not wait for each other.
        let creating = self.inner.creations.read().await;
        let (written, events) = self.write(move |store| store.create_tasks(&tasks)).await?;
        self.publish(events);
        drop(creating);
        self.inner.wake.notify_one();
        Ok(written)
    }

    /// `observability.task.enqueue`, and `observability.step.skip` for each bypassed step.
    fn emit_created(&self, created: &NewTask, request: &TaskRequest, took: Duration) {
        let mut enqueue = Event::new("observability.task.enqueue", EventKind::Observability);
        enqueue.task_id = Some(created.id);
        enqueue.duration_ms = Some(took.as_secs_f64() * 1000.0);
        enqueue.payload = serde_json::json!({
            "namespace": request.namespace,
            "name": request.name,
            "version": request.version,
        });
        self.emit(enqueue);
        for step in &request.bypass_steps {
            let mut skip = Event::new("observability.step.skip", EventKind::Observability);
            skip.task_id = Some(created.id);
            skip.step_name = Some(step.clone());
            self.emit(skip);
        }
    }

    /// Creates a task on the caller's connection, inside the caller's open transaction when there
    /// is one: the task exists only if that transaction commits (transactional enqueue).
    ///
    /// Workers in this process find it by polling (within `max_poll_interval`); on PostgreSQL
    /// the `NOTIFY` sent at commit wakes every worker at once.
    pub fn create_task_in<C: TaskerConnection>(
        &self,
        conn: &mut C,
        request: TaskRequest,
    ) -> Result<NewTask> {
        let prepared = self.prepare(&request)?;
        let (created, _events) = conn.create_prepared(&prepared)?;
        Ok(created)
    }

    /// Tasks matching `filter`, newest first. A filter with a NUL character matches nothing
    /// (no stored name can hold one; PostgreSQL would refuse to compare it).
    pub async fn tasks(&self, filter: TaskFilter) -> Result<Vec<TaskRow>> {
        let annotation = filter.annotation.as_ref();
        let names = [&filter.namespace, &filter.name, &filter.version].map(Option::as_ref);
        let annotated = [
            annotation.map(|a| &a.annotation_type),
            annotation.map(|a| &a.key),
            annotation.map(|a| &a.value),
        ];
        if holds_nul(names.into_iter().chain(annotated)) {
            return Ok(Vec::new());
        }
        self.inner
            .store
            .run(move |store| store.tasks(&filter))
            .await
    }

    /// The tasks of `ids` that exist, by id (for the API's answer to a batch).
    #[cfg(feature = "server")]
    pub(crate) async fn tasks_by_id(&self, ids: Vec<i64>) -> Result<HashMap<i64, TaskRow>> {
        self.inner
            .store
            .run(move |store| store.tasks_by_id(&ids))
            .await
    }

    /// The redactor configured for this engine.
    pub fn redactor(&self) -> &crate::redact::Redactor {
        &self.inner.redactor
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.inner.store.run(|store| store.ping()).await
    }

    /// How many tasks are in each state.
    pub async fn task_counts(&self) -> Result<Vec<(TaskState, i64)>> {
        self.inner.store.run(|store| store.tasks_by_state()).await
    }

    /// How the tasks created within the last `period` fared: counts by state, completion and
    /// error rates, throughput, and duration percentiles of tasks and steps.
    pub async fn performance(&self, period: Duration) -> Result<crate::analytics::Performance> {
        let (tasks, steps) = self
            .analytics_rows(period, TemplateFilter::default())
            .await?;
        Ok(crate::analytics::performance(period, &tasks, &steps))
    }

    /// The `limit` slowest complete tasks and steps among the tasks created within the last
    /// `period`, of the templates `filter` names.
    pub async fn bottlenecks(
        &self,
        period: Duration,
        filter: TemplateFilter,
        limit: usize,
    ) -> Result<crate::analytics::Bottlenecks> {
        let (tasks, steps) = self.analytics_rows(period, filter).await?;
        Ok(crate::analytics::bottlenecks(period, &tasks, &steps, limit))
    }

    /// The rows analytics read: the period's tasks and their steps.
    async fn analytics_rows(
        &self,
        period: Duration,
        filter: TemplateFilter,
    ) -> Result<(Vec<store::Timed>, Vec<store::Timed>)> {
        if holds_nul([&filter.namespace, &filter.name, &filter.version].map(Option::as_ref)) {
            return Ok((Vec::new(), Vec::new()));
        }
        let scope = store::Scope {
            period_seconds: period.as_secs_f64(),
            namespace: filter.namespace,
            name: filter.name,
            version: filter.version,
        };
        self.inner
            .store
            .run(move |store| {
                Ok((
                    store.analytics_tasks(&scope)?,
                    store.analytics_steps(&scope)?,
                ))
            })
            .await
    }

    /// How many steps are in each state.
    pub async fn step_counts(&self) -> Result<Vec<(StepState, i64)>> {
        self.inner.store.run(|store| store.steps_by_state()).await
    }

    /// Steps ready to run now, and how long the oldest of them has waited.
    pub async fn ready_steps(&self) -> Result<(i64, Option<Duration>)> {
        let (ready, oldest) = self.inner.store.run(|store| store.ready_stats()).await?;
        Ok((ready, oldest.map(Duration::from_secs_f64)))
    }

    /// The workers, of any process on this database, whose last heartbeat is at most `within`
    /// old: each records itself when it starts and at every heartbeat (`heartbeat`, a third of
    /// the lease by default) and removes itself when it stops gracefully.
    pub async fn workers(&self, within: Duration) -> Result<Vec<WorkerInfo>> {
        self.inner
            .store
            .run(move |store| store.workers(within.as_secs_f64()))
            .await
    }

    /// The custom events the programs running workers on this database declared, with their
    /// descriptions.
    pub async fn stored_custom_events(&self) -> Result<Vec<(String, Option<String>)>> {
        self.inner.store.run(|store| store.custom_events()).await
    }

    /// The dependency edges between a task's steps, as `(parent, child)` step ids.
    pub async fn step_edges(&self, task_id: i64) -> Result<Vec<(i64, i64)>> {
        self.inner
            .store
            .run(move |store| store.edges(task_id))
            .await
    }

    /// Changes a task's reason and/or tags, the only fields that may change after creation.
    pub async fn update_task(
        &self,
        task_id: i64,
        reason: Option<String>,
        tags: Option<Vec<String>>,
    ) -> Result<TaskRow> {
        if let Some(reason) = &reason {
            check_label("reason", reason)?;
        }
        let tags = tags.map(|t| serde_json::to_string(&t)).transpose()?;
        let found = self
            .inner
            .store
            .run(move |store| store.update_task(task_id, reason.as_deref(), tags.as_deref()))
            .await?;
        if !found {
            return Err(Error::TaskNotFound(task_id));
        }
        self.task(task_id).await
    }

    /// Cancels one step of `task_id` for good: its dependents never run and the task ends in
    /// `error` once nothing else can run (resolve a step instead to skip it). Returns `false`
    /// when it was already cancelled.
    pub async fn cancel_step(&self, task_id: i64, step_id: i64) -> Result<bool> {
        self.commit(move |store| store.cancel_step(task_id, step_id).map(changed))
            .await
    }

    /// Sets the retry limit of a step of `task_id` (an operator giving a step more attempts).
    pub async fn set_retry_limit(&self, task_id: i64, step_id: i64, limit: u32) -> Result<()> {
        let limit = stored_retry_limit(limit);
        let found = self
            .inner
            .store
            .run(move |store| store.set_retry_limit(task_id, step_id, limit))
            .await?;
        if found {
            self.inner.wake.notify_one();
            Ok(())
        } else {
            Err(Error::StepNotFound(step_id))
        }
    }

    /// The task with id `task_id`.
    pub async fn task(&self, task_id: i64) -> Result<TaskRow> {
        self.inner.store.run(move |store| store.task(task_id)).await
    }

    /// The steps of a task, in creation order.
    pub async fn steps(&self, task_id: i64) -> Result<Vec<StepInfo>> {
        self.inner
            .store
            .run(move |store| store.steps(task_id))
            .await
    }

    /// Maps an object's id in one dependent system to its id in another (the seed's
    /// `DependentSystemObjectMap.find_or_create`): `one` and `two` are (system, id), the
    /// systems created on first use. Mapping a pair again, either way round, gives the stored
    /// map.
    pub async fn map_objects(
        &self,
        one: (&str, &str),
        two: (&str, &str),
    ) -> Result<crate::ObjectMap> {
        check_object_ref(one, ("system_one", "remote_id_one"))?;
        check_object_ref(two, ("system_two", "remote_id_two"))?;
        let (one, two) = (
            (one.0.to_owned(), one.1.to_owned()),
            (two.0.to_owned(), two.1.to_owned()),
        );
        let (map, _) = self
            .inner
            .store
            .run(move |store| store.map_objects((&one.0, &one.1), (&two.0, &two.1)))
            .await?;
        Ok(map)
    }

    /// Every object map with `remote_id` of dependent system `system` on either side, oldest
    /// first: that object's ids in the other systems.
    pub async fn mapped_objects(
        &self,
        system: &str,
        remote_id: &str,
    ) -> Result<Vec<crate::ObjectMap>> {
        if check_object_ref((system, remote_id), ("system", "remote_id")).is_err() {
            // Nothing stored can have it.
            return Ok(Vec::new());
        }
        let (system, remote_id) = (system.to_owned(), remote_id.to_owned());
        self.inner
            .store
            .run(move |store| store.mapped_objects(&system, &remote_id))
            .await
    }

    /// Where task `task_id`'s steps stand and what that says (the seed's task execution
    /// context: `execution_status`, `recommended_action`, `health_status`,
    /// `completion_percentage`), at the database clock.
    pub async fn execution_context(&self, task_id: i64) -> Result<crate::ExecutionContext> {
        let (steps, now) = self
            .inner
            .store
            .run(move |store| Ok((store.steps(task_id)?, store.now()?)))
            .await?;
        if steps.is_empty() {
            // A task has steps; none means no task (or one being created).
            self.task(task_id).await?;
        }
        Ok(crate::ExecutionContext::of(&steps, now))
    }

    /// The recorded transitions of a step, oldest first.
    pub async fn step_transitions(&self, step_id: i64) -> Result<Vec<TransitionInfo>> {
        self.inner
            .store
            .run(move |store| store.step_transitions(step_id))
            .await
    }

    /// The recorded transitions of a task, oldest first.
    pub async fn task_transitions(&self, task_id: i64) -> Result<Vec<TransitionInfo>> {
        self.inner
            .store
            .run(move |store| store.task_transitions(task_id))
            .await
    }

    /// Adds an annotation of `annotation_type` to a task: a JSON object of notes (the type is
    /// created on its first use). [`TaskFilter::annotation`] finds tasks by one of its keys.
    pub async fn annotate(
        &self,
        task_id: i64,
        annotation_type: &str,
        annotation: Value,
    ) -> Result<()> {
        check_annotation(
            annotation_type,
            &annotation,
            self.inner.config.max_context_bytes,
        )?;
        let annotation_type = annotation_type.to_owned();
        let annotation = serde_json::to_string(&annotation)?;
        self.inner
            .store
            .run(move |store| store.annotate(task_id, &annotation_type, &annotation))
            .await
    }

    /// A task's annotations, oldest first.
    pub async fn annotations(&self, task_id: i64) -> Result<Vec<crate::TaskAnnotation>> {
        self.inner
            .store
            .run(move |store| store.annotations(task_id))
            .await
    }

    /// The annotation types in use, by name.
    pub async fn annotation_types(&self) -> Result<Vec<String>> {
        self.inner.store.run(|store| store.annotation_types()).await
    }

    /// Cancels a task and its unfinished steps; workers claim nothing more from it. Returns
    /// `false` (and changes nothing) when the task is already cancelled.
    pub async fn cancel_task(&self, task_id: i64) -> Result<bool> {
        self.commit(move |store| store.cancel_task(task_id).map(changed))
            .await
    }

    /// Runs one attempt of a claimed step as a worker does, or, with `injected`, records that
    /// error instead of running the handler (`tasker::testing`'s injected failures).
    #[cfg(feature = "testing")]
    pub(crate) async fn attempt_claimed(
        &self,
        owner: &str,
        step: ClaimedStep,
        injected: Option<crate::StepError>,
    ) -> Outcome {
        let Some(error) = injected else {
            return worker::run_step(self, owner, step).await;
        };
        let failure = worker::retry_decision(
            step.attempt,
            step.retryable,
            step.retry_limit,
            &error,
            &self.inner.config,
            crate::FailureReason::StepError,
        );
        Outcome::of(step, owner, Err(failure), Some(0.0))
    }

    /// Ends the open tasks whose deadline has passed in `error`, their open steps cancelled,
    /// recorded and published with reason `deadline_exceeded`, as each worker does every
    /// `max_poll_interval`; returns how many it ended.
    pub async fn enforce_deadlines(&self) -> Result<usize> {
        const BATCH: usize = 100;
        let mut ended = 0;
        loop {
            let overdue = self
                .inner
                .store
                .run(|store| store.overdue_tasks(BATCH))
                .await?;
            let full = overdue.len() == BATCH;
            for task_id in overdue {
                if self
                    .commit(move |store| store.expire_task(task_id).map(changed))
                    .await?
                {
                    ended += 1;
                }
            }
            if !full {
                return Ok(ended);
            }
        }
    }

    /// Retries a task in `error`: it goes back to `pending` and its failed steps get a fresh
    /// retry budget.
    pub async fn retry_task(&self, task_id: i64) -> Result<()> {
        self.commit(move |store| store.retry_task(task_id).map(changed))
            .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Marks a pending or failed step as resolved by an operator, with an optional result its
    /// children will see; its children may then run and the task may complete. Returns `false`
    /// (and changes nothing) when the step is already resolved. A result over
    /// `max_result_bytes` is refused with [`Error::InvalidResult`], as a handler's would be.
    pub async fn resolve_step(&self, step_id: i64, results: Option<Value>) -> Result<bool> {
        let results = self.checked_result(step_id, results)?;
        let changed = self
            .commit(move |store| store.resolve_step(step_id, results.as_deref()).map(changed))
            .await?;
        self.inner.wake.notify_one();
        Ok(changed)
    }

    /// Changes a step of `task_id` in one transaction: its retry limit, and/or resolves it by
    /// hand with an optional result. Nothing changes when any part is refused.
    #[cfg(feature = "server")]
    pub(crate) async fn update_step(
        &self,
        task_id: i64,
        step_id: i64,
        retry_limit: Option<u32>,
        resolve: Option<Option<Value>>,
    ) -> Result<()> {
        let limit = retry_limit.map(stored_retry_limit);
        let resolve = resolve
            .map(|results| self.checked_result(step_id, results))
            .transpose()?;
        self.commit(move |store| {
            store
                .update_step(
                    task_id,
                    step_id,
                    limit,
                    resolve.as_ref().map(Option::as_deref),
                )
                .map(|events| ((), events))
        })
        .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// A hand-given step result as stored JSON text, refused over `max_result_bytes` as a
    /// handler's would be.
    fn checked_result(&self, step_id: i64, results: Option<Value>) -> Result<Option<String>> {
        let Some(results) = results else {
            return Ok(None);
        };
        let text = results.to_string();
        let limit = self.inner.config.max_result_bytes;
        if text.len() > limit {
            return Err(Error::InvalidResult {
                step_id,
                problem: format!(
                    "it is {} bytes, over the limit of {limit} (`max_result_bytes`)",
                    text.len()
                ),
            });
        }
        Ok(Some(text))
    }

    /// Waits until the task is `complete`, `error`, `cancelled` or `resolved_manually`, and
    /// returns it; gives up after `timeout`.
    pub async fn wait_for_task(&self, task_id: i64, timeout: Duration) -> Result<TaskRow> {
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let task = self.task(task_id).await?;
            if matches!(
                task.state,
                TaskState::Complete
                    | TaskState::Error
                    | TaskState::Cancelled
                    | TaskState::ResolvedManually
            ) {
                return Ok(task);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(task);
            }
            // Wake on this task's events; re-read at least every 100 ms for other processes.
            let wait = (deadline - now).min(Duration::from_millis(100));
            let _ = tokio::time::timeout(wait, async {
                loop {
                    match events.recv().await {
                        Ok(e) if e.task_id == Some(task_id) && e.kind == EventKind::Task => {
                            return;
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
            .await;
        }
    }

    /// Starts a worker in this process with the configured concurrency.
    pub fn start_worker(&self) -> Worker {
        Worker::start(self.clone(), WorkerOptions::from_config(&self.inner.config))
    }

    /// Starts a worker with explicit options.
    pub fn start_worker_with(&self, options: WorkerOptions) -> Worker {
        Worker::start(self.clone(), options)
    }

    /// Claims up to `limit` ready steps for `owner` with a lease of `lease`, exactly as a worker
    /// does. For custom workers and tests; a claimed step must be completed with
    /// [`Tasker::complete_steps`] before its lease expires, or it is recovered and run again.
    pub async fn claim_steps(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>> {
        let owner = owner.to_owned();
        let ids: Vec<i64> = self.inner.by_named_task.keys().copied().collect();
        self.commit(move |store| store.claim(&owner, limit, lease, &ids))
            .await
    }

    /// Records attempt outcomes exactly as a worker does, fenced on (`owner`, `attempt`): an
    /// outcome whose attempt no longer owns its step comes back [`CompletionOutcome::Stale`].
    /// A result that is not JSON, or over `max_result_bytes`, refuses the whole batch with
    /// [`Error::InvalidResult`].
    pub async fn complete_steps(&self, outcomes: Vec<Outcome>) -> Result<Vec<CompletionOutcome>> {
        let limit = self.inner.config.max_result_bytes;
        for outcome in &outcomes {
            let Ok(json) = &outcome.result else {
                continue;
            };
            let refused = |problem: String| Error::InvalidResult {
                step_id: outcome.step_id,
                problem,
            };
            if json.len() > limit {
                let size = json.len();
                return Err(refused(format!(
                    "it is {size} bytes, over the limit of {limit} (`max_result_bytes`)"
                )));
            }
            serde_json::from_str::<serde::de::IgnoredAny>(json)
                .map_err(|e| refused(format!("it is not JSON: {e}")))?;
        }
        let results = self
            .commit(move |store| store.complete(&outcomes, 0))
            .await?;
        self.inner.wake.notify_one();
        Ok(results)
    }

    /// Records one attempt's outcome as a worker does; an attempt that no longer owns its step
    /// (its lease expired and the step moved on) is refused with [`Error::StaleCompletion`].
    pub async fn complete_step(&self, outcome: Outcome) -> Result<()> {
        let (step_id, attempt, owner) = (outcome.step_id, outcome.attempt, outcome.owner.clone());
        match self.complete_steps(vec![outcome]).await?.first() {
            Some(CompletionOutcome::Recorded) => Ok(()),
            _ => Err(Error::StaleCompletion {
                step_id,
                attempt,
                owner,
            }),
        }
    }

    /// Runs a worker until ctrl-c or SIGTERM, then shuts it down gracefully: no new claims,
    /// running steps get [`TaskerConfig::shutdown_grace`], the rest are released. What a worker
    /// process's `main` calls.
    pub async fn run_worker(&self) {
        let worker = self.start_worker();
        tracing::info!(worker = worker.id(), "worker started");
        shutdown_signal().await;
        tracing::info!(worker = worker.id(), "shutting down");
        worker.shutdown().await;
    }

    /// Deletes the tasks finished (complete, cancelled, resolved; in error with
    /// `include_errors`) and unchanged for `older_than`, with their steps, edges, transitions
    /// and annotations, in batches of 500 tasks, each its own short transaction; returns what
    /// went (with `dry_run`, what would, and deletes nothing). Workers do this on their own
    /// when [`TaskerConfig::retention`](crate::TaskerConfig::retention) is set.
    pub async fn prune(&self, options: PruneOptions) -> Result<Pruned> {
        const BATCH: usize = 500;
        let seconds = options.older_than.as_secs_f64();
        let errors = options.include_errors;
        if options.dry_run {
            return self
                .inner
                .store
                .run(move |store| store.prune_preview(seconds, errors))
                .await;
        }
        let mut total = Pruned::default();
        loop {
            let batch = self
                .inner
                .store
                .run(move |store| store.prune_batch(seconds, errors, BATCH))
                .await?;
            total.tasks += batch.tasks;
            total.steps += batch.steps;
            if batch.tasks < BATCH as u64 {
                return Ok(total);
            }
            // Between batches, the claims and completions waiting for the database go first.
            tokio::task::yield_now().await;
        }
    }

    /// Starts the delayed tasks whose `run_at` has come (their steps become ready to claim), as
    /// each worker does every `max_poll_interval`; returns how many steps left the schedule.
    pub async fn start_due_tasks(&self) -> Result<usize> {
        const BATCH: usize = 1000;
        let mut started = 0;
        loop {
            let moved = self
                .inner
                .store
                .run(|store| store.promote_due(BATCH))
                .await?;
            started += moved;
            if moved < BATCH {
                return Ok(started);
            }
        }
    }

    /// Fails every step whose lease has expired under its retry policy, as each worker's sweeper
    /// does; returns how many were recovered.
    pub async fn recover_expired_leases(&self) -> Result<usize> {
        worker::sweep_expired(self).await
    }

    /// Applies the embedded migrations now; returns how many ran.
    pub async fn migrate(&self) -> Result<usize> {
        self.inner.store.run(|store| store.migrate()).await
    }
}

/// The request's context as the JSON to store, once it is within `max_bytes` and satisfies the
/// template's schema.
fn check_context(
    request: &TaskRequest,
    registered: &RegisteredTemplate,
    max_bytes: usize,
) -> Result<String> {
    let whole = crate::integral::whole_numbers(&request.context);
    let value = whole.as_ref().unwrap_or(&request.context);
    let context = serde_json::to_string(value)?;
    if context.len() > max_bytes {
        return Err(Error::ContextTooLarge {
            bytes: context.len(),
            limit: max_bytes,
        });
    }
    if let Some(validator) = &registered.validator {
        let errors: Vec<ContextViolation> = validator
            .iter_errors(value)
            .map(|e| ContextViolation::new(e.instance_path().to_string(), e.to_string()))
            .collect();
        if !errors.is_empty() {
            return Err(Error::InvalidContext {
                template: registered.template.full_name(),
                errors,
            });
        }
    }
    Ok(context)
}

/// Refuses a bypass of a step the template does not have, or of one that is not skippable.
fn check_bypass(template: &TaskTemplate, bypass_steps: &[String]) -> Result<()> {
    for name in bypass_steps {
        match template.find_step(name) {
            None => {
                return Err(Error::UnknownBypassStep {
                    template: template.full_name(),
                    step: name.clone(),
                });
            }
            Some(step) if !step.skippable => {
                return Err(Error::StepNotSkippable {
                    template: template.full_name(),
                    step: name.clone(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Dependency edges as `(parent, child)` indexes into a task's steps.
type StepEdges = Vec<(usize, usize)>;

/// The steps to insert, each counting the parents it still waits for (a bypassed parent does
/// not count), and the edges between them as `(parent, child)` indexes into the steps.
fn build_steps(
    template: &TaskTemplate,
    ids: &store::TemplateIds,
    bypass_steps: &[String],
) -> Result<(Vec<PreparedStep>, StepEdges)> {
    let bypassed = |name: &str| bypass_steps.iter().any(|b| b == name);
    let edges = template.step_edges();
    let mut remaining = vec![0; template.step_templates.len()];
    for &(parent, child) in &edges {
        if !bypassed(&template.step_templates[parent].name) {
            remaining[child] += 1;
        }
    }
    let mut steps = Vec::with_capacity(template.step_templates.len());
    for (child, step) in template.step_templates.iter().enumerate() {
        let named_step_id = ids
            .step_ids
            .get(&step.name)
            .copied()
            .ok_or_else(|| Error::TemplateNotStored(template.full_name()))?;
        steps.push(PreparedStep {
            named_step_id,
            name: step.name.clone(),
            retryable: step.default_retryable,
            retry_limit: step.default_retry_limit as i32,
            skippable: step.skippable,
            bypassed: bypassed(&step.name),
            remaining_parents: remaining[child],
        });
    }
    Ok((steps, edges))
}

/// Takes the steps' settings and dependencies from a plan a hook adjusted, recounting the
/// parents each step waits for; a step the hook bypassed joins `bypass_steps`.
fn apply_plan(
    plan: StepPlan,
    steps: &mut [PreparedStep],
    edges: &mut StepEdges,
    bypass_steps: &mut Vec<String>,
) {
    for (step, planned) in steps.iter_mut().zip(&plan.steps) {
        step.retry_limit = planned.retry_limit;
        step.retryable = planned.retryable;
        step.skippable = planned.skippable;
        if planned.bypassed && !step.bypassed {
            bypass_steps.push(step.name.clone());
        }
        step.bypassed = planned.bypassed;
    }
    *edges = plan.edges;
    let mut remaining = vec![0; steps.len()];
    for &(parent, child) in edges.iter() {
        if !steps[parent].bypassed {
            remaining[child] += 1;
        }
    }
    for (step, remaining) in steps.iter_mut().zip(remaining) {
        step.remaining_parents = remaining;
    }
}

/// For operations whose only output is their events: whether anything changed, and the events.
fn changed(events: Vec<EventRecord>) -> (bool, Vec<EventRecord>) {
    (!events.is_empty(), events)
}

/// Completes on ctrl-c, or SIGTERM on Unix: the signal to stop a worker or server gracefully.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) fn publish(inner: &Inner, events: Vec<EventRecord>) {
    if let Ok(mut known) = inner.correlations.lock() {
        // A bound on memory for long-lived processes; entries are re-read from the database.
        if known.len() > 100_000 {
            known.clear();
        }
        for record in &events {
            if let Some(correlation) = &record.correlation_id {
                known
                    .entry(record.task_id)
                    .or_insert_with(|| correlation.clone());
            }
        }
    }
    for record in events {
        let finished = record.task_finished();
        let mut event = Event::from(record);
        fill_correlation(inner, &mut event);
        if let (Some(failed), Some(task_id)) = (finished, event.task_id) {
            spans::close_task(inner, task_id, failed);
            if let Ok(mut known) = inner.correlations.lock() {
                known.remove(&task_id);
            }
        }
        deliver(inner, event);
    }
}

/// A template another program stored, read back.
fn stored_template(id: i64, configuration: Option<&str>) -> Result<TaskTemplate> {
    let corrupt = |problem: String| Error::CorruptData {
        table: "tasker_named_tasks",
        id,
        column: "configuration",
        problem,
    };
    let configuration = configuration.ok_or_else(|| corrupt("no template is stored".to_owned()))?;
    serde_json::from_str(configuration).map_err(|e| corrupt(format!("not a task template: {e}")))
}

/// Fills in the correlation ids of the tasks `events` concern that the write did not: from
/// what this process already knows, else with one query.
pub(crate) fn with_correlations(
    inner: &Inner,
    store: &Store,
    events: &mut [EventRecord],
) -> Result<()> {
    if let Ok(known) = inner.correlations.lock() {
        for event in events.iter_mut().filter(|e| e.correlation_id.is_none()) {
            event.correlation_id = known.get(&event.task_id).cloned();
        }
    }
    if events.iter().all(|e| e.correlation_id.is_some()) {
        return Ok(());
    }
    let mut ids: Vec<i64> = events
        .iter()
        .filter(|e| e.correlation_id.is_none())
        .map(|e| e.task_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let found = store.correlations(&ids)?;
    for event in events.iter_mut().filter(|e| e.correlation_id.is_none()) {
        event.correlation_id = found.get(&event.task_id).cloned();
    }
    Ok(())
}

/// The correlation id this process knows for `task_id`.
pub(crate) fn correlation(inner: &Inner, task_id: i64) -> Option<String> {
    inner.correlations.lock().ok()?.get(&task_id).cloned()
}

/// Publishes an event that is not a transition (transitions go through [`publish`]).
pub(crate) fn emit(inner: &Inner, mut event: Event) {
    fill_correlation(inner, &mut event);
    deliver(inner, event);
}

/// Tags an event with its task's correlation id, when this process knows it.
fn fill_correlation(inner: &Inner, event: &mut Event) {
    if event.correlation_id.is_none()
        && let Some(task_id) = event.task_id
    {
        event.correlation_id = correlation(inner, task_id);
    }
}

/// Hands an event to logs, metrics, subscribers and receivers, with sensitive keys masked.
fn deliver(inner: &Inner, mut event: Event) {
    inner.redactor.redact(&mut event.payload);
    tracing::debug!(
        event = %event.name,
        task_id = event.task_id,
        step = event.step_name.as_deref(),
        "event"
    );
    crate::metrics::record(&event);
    inner.subscribers.publish(&event);
    // No receiver is not an error: nobody subscribed.
    let _ = inner.events.send(event);
}

mod sealed {
    pub trait Sealed {}
}

/// A diesel connection tasks can be created on inside the caller's own transaction:
/// `SqliteConnection` with the `sqlite` feature, `PgConnection` with `postgres`.
pub trait TaskerConnection: sealed::Sealed {
    #[doc(hidden)]
    fn create_prepared(&mut self, task: &PreparedTask) -> Result<(NewTask, Vec<EventRecord>)>;
}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for diesel::sqlite::SqliteConnection {}
#[cfg(feature = "sqlite")]
impl TaskerConnection for diesel::sqlite::SqliteConnection {
    fn create_prepared(&mut self, task: &PreparedTask) -> Result<(NewTask, Vec<EventRecord>)> {
        store::create_on(&mut store::Conn::Sqlite(self), task)
    }
}

#[cfg(feature = "postgres")]
impl sealed::Sealed for diesel::pg::PgConnection {}
#[cfg(feature = "postgres")]
impl TaskerConnection for diesel::pg::PgConnection {
    fn create_prepared(&mut self, task: &PreparedTask) -> Result<(NewTask, Vec<EventRecord>)> {
        store::create_on(&mut store::Conn::Postgres(self), task)
    }
}
