//! Subscribers: code that reacts to events, off the path that runs steps.
//!
//! **Delivery.** Each subscriber has its own bounded queue (1,024 events) and its own task, so a
//! slow subscriber delays only itself and a failing one fails only itself. Events are delivered
//! in the order this process published them, after their transaction committed: a task's
//! creation events come before any other of its events, and a step's events follow its own
//! history (claimed, handled, completed or failed, retried). Delivery is at most once:
//! when a queue is full the event is dropped for that subscriber and counted; a handler that
//! returns an error, panics or runs past 30 s is logged and counted, and the next event is
//! delivered. Events published by other processes are not delivered here. For work that must
//! not be lost, make it a step: steps are durable and retried.
//!
//! **Subscription files.** Every `*.yml`/`*.yaml` file of the directories of
//! [`subscriptions_directories`](crate::TaskerConfig::subscriptions_directories) (default
//! `config/tasker/subscriptions`) adjusts the registered subscribers at start-up, in the seed's
//! format:
//!
//! ```yaml
//! subscriptions:
//!   pager:                         # the subscription's name
//!     class: alerts::PageOnFailure # a registered subscriber, by its path or the end of it
//!     enabled: true                # false: it does not run
//!     events: [task.failed]        # replaces the events it asks for
//!     config: { team: payments }   # handed to `Subscriber::configure` once, at start-up
//!   audit_log:
//!     type: log                    # built in: writes its events to `tracing`
//!     events: ["order.*"]
//!     config: { level: info }      # trace, debug, info (default), warn or error
//! ```
//!
//! A subscriber is named by its `#[subscriber]` path or the type given to
//! [`TaskerBuilder::subscriber`](crate::TaskerBuilder::subscriber). A subscription that names no
//! registered subscriber, names one another subscription names, asks for an event that does not
//! exist, or gives a `config` the subscriber refuses fails the build, naming its file and key.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::events::Event;
use crate::handler::BoxFuture;

mod subscriptions;

pub(crate) use subscriptions::{Candidate, Enrolled, Subscription, enroll, load_subscriptions};

/// What a subscriber's failure carries.
pub type SubscriberError = Box<dyn std::error::Error + Send + Sync>;

/// Code that reacts to events. Implement it with an `async fn`, or use `#[subscriber]`.
///
/// ```
/// use tasker::events::Event;
/// use tasker::subscriber::{Subscriber, SubscriberError};
///
/// struct Alerts;
///
/// impl Subscriber for Alerts {
///     fn events(&self) -> &[&str] {
///         &["step.failed", "task.*"]
///     }
///
///     async fn handle(&self, event: &Event) -> Result<(), SubscriberError> {
///         let _ = (event.task_id, &event.error);
///         Ok(())
///     }
/// }
/// ```
pub trait Subscriber: Send + Sync + 'static {
    /// The events it receives: exact names, `family.*`, or `*` for all. A subscription file's
    /// `events` replaces them.
    fn events(&self) -> &[&str];

    /// Handles one event.
    fn handle(&self, event: &Event) -> impl Future<Output = Result<(), SubscriberError>> + Send;

    /// Reads the `config` a subscription file gives it (a JSON object), once, at start-up and
    /// before any event; an error fails the build, naming the file. Not called when no
    /// subscription gives one. The default refuses every `config`, so that one is never
    /// silently ignored.
    ///
    /// ```
    /// use std::sync::OnceLock;
    ///
    /// use tasker::events::Event;
    /// use tasker::subscriber::{Subscriber, SubscriberError};
    ///
    /// #[derive(Default)]
    /// struct Pager {
    ///     team: OnceLock<String>,
    /// }
    ///
    /// impl Subscriber for Pager {
    ///     fn events(&self) -> &[&str] {
    ///         &["task.failed"]
    ///     }
    ///
    ///     async fn handle(&self, event: &Event) -> Result<(), SubscriberError> {
    ///         let team = self.team.get().map_or("on-call", String::as_str);
    ///         let _ = (team, event.task_id);
    ///         Ok(())
    ///     }
    ///
    ///     fn configure(&self, config: &tasker::serde_json::Value) -> Result<(), SubscriberError> {
    ///         let team = config["team"].as_str().ok_or("`team` must be a string")?;
    ///         self.team.set(team.to_owned()).map_err(|_| "configured twice".into())
    ///     }
    /// }
    /// ```
    fn configure(&self, config: &serde_json::Value) -> Result<(), SubscriberError> {
        let _ = config;
        Err(
            "this subscriber takes no `config` (it does not implement `Subscriber::configure`)"
                .into(),
        )
    }
}

/// The object-safe form of [`Subscriber`].
pub trait DynSubscriber: Send + Sync + 'static {
    /// See [`Subscriber::events`].
    fn events_dyn(&self) -> &[&str];
    /// See [`Subscriber::handle`].
    fn handle_dyn<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SubscriberError>>;
    /// See [`Subscriber::configure`].
    fn configure_dyn(&self, config: &serde_json::Value) -> Result<(), SubscriberError>;
}

impl<S: Subscriber> DynSubscriber for S {
    fn events_dyn(&self) -> &[&str] {
        self.events()
    }
    fn handle_dyn<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SubscriberError>> {
        Box::pin(self.handle(event))
    }
    fn configure_dyn(&self, config: &serde_json::Value) -> Result<(), SubscriberError> {
        self.configure(config)
    }
}

/// How one subscriber is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Its name (the type's path for `#[subscriber]`, the one given to the builder otherwise).
    pub name: String,
    /// Events it handled successfully.
    pub delivered: u64,
    /// Events whose handling failed, panicked or timed out.
    pub failed: u64,
    /// Events dropped because its queue was full.
    pub dropped: u64,
}

/// Queue length per subscriber.
const QUEUE: usize = 1024;
/// Longest a subscriber may take over one event.
const HANDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

struct Entry {
    name: String,
    patterns: Vec<String>,
    queue: mpsc::Sender<Event>,
    counters: Arc<Counters>,
}

/// The running subscribers of an engine.
#[derive(Default)]
pub(crate) struct Subscribers {
    entries: Vec<Entry>,
}

impl Subscribers {
    /// Starts a delivery task for each subscriber; must run inside a tokio runtime.
    pub(crate) fn start(subscribers: Vec<Enrolled>) -> Self {
        let entries = subscribers
            .into_iter()
            .map(|enrolled| {
                let (queue, rx) = mpsc::channel(QUEUE);
                let counters = Arc::new(Counters::default());
                let name = enrolled.name;
                tokio::spawn(deliver(
                    name.clone(),
                    enrolled.subscriber,
                    rx,
                    Arc::clone(&counters),
                ));
                Entry {
                    name,
                    patterns: enrolled.patterns,
                    queue,
                    counters,
                }
            })
            .collect();
        Self { entries }
    }

    /// Queues `event` for every subscriber that wants it, without waiting.
    pub(crate) fn publish(&self, event: &Event) {
        for entry in &self.entries {
            if !entry.patterns.iter().any(|p| event.matches(p)) {
                continue;
            }
            if entry.queue.try_send(event.clone()).is_err() {
                entry.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    subscriber = %entry.name,
                    event = %event.name,
                    "subscriber queue full; event dropped for it"
                );
            }
        }
    }

    pub(crate) fn stats(&self) -> Vec<SubscriberStats> {
        self.entries
            .iter()
            .map(|e| SubscriberStats {
                name: e.name.clone(),
                delivered: e.counters.delivered.load(Ordering::Relaxed),
                failed: e.counters.failed.load(Ordering::Relaxed),
                dropped: e.counters.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }
}

async fn deliver(
    name: String,
    subscriber: Arc<dyn DynSubscriber>,
    mut rx: mpsc::Receiver<Event>,
    counters: Arc<Counters>,
) {
    while let Some(event) = rx.recv().await {
        let event_name = event.name.clone();
        let subscriber = Arc::clone(&subscriber);
        // Its own task, so a panic is caught as a failure of this event only.
        let handled = tokio::spawn(async move { subscriber.handle_dyn(&event).await });
        let abort = handled.abort_handle();
        let error = match tokio::time::timeout(HANDLE_TIMEOUT, handled).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(error))) => Some(error.to_string()),
            Ok(Err(panic)) => Some(format!("panicked: {panic}")),
            Err(_) => {
                abort.abort();
                Some(format!("timed out after {HANDLE_TIMEOUT:?}"))
            }
        };
        match error {
            None => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Some(error) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                crate::metrics::subscriber_failed(&name);
                tracing::warn!(subscriber = %name, event = %event_name, %error, "subscriber failed");
            }
        }
    }
}
