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

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::events::Event;
use crate::handler::BoxFuture;

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
    /// The events it receives: exact names, `family.*`, or `*` for all.
    fn events(&self) -> &[&str];

    /// Handles one event.
    fn handle(&self, event: &Event) -> impl Future<Output = Result<(), SubscriberError>> + Send;
}

/// The object-safe form of [`Subscriber`].
pub trait DynSubscriber: Send + Sync + 'static {
    /// See [`Subscriber::events`].
    fn events_dyn(&self) -> &[&str];
    /// See [`Subscriber::handle`].
    fn handle_dyn<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SubscriberError>>;
}

impl<S: Subscriber> DynSubscriber for S {
    fn events_dyn(&self) -> &[&str] {
        self.events()
    }
    fn handle_dyn<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SubscriberError>> {
        Box::pin(self.handle(event))
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
    pub(crate) fn start(subscribers: Vec<(String, Arc<dyn DynSubscriber>)>) -> Self {
        let entries = subscribers
            .into_iter()
            .map(|(name, subscriber)| {
                let (queue, rx) = mpsc::channel(QUEUE);
                let counters = Arc::new(Counters::default());
                let patterns = subscriber
                    .events_dyn()
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect();
                tokio::spawn(deliver(name.clone(), subscriber, rx, Arc::clone(&counters)));
                Entry {
                    name,
                    patterns,
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
