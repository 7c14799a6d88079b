//! A worker: claims ready steps across all tasks, runs them concurrently under a deadline while
//! heartbeating their leases, records their outcomes in batches, and recovers expired leases.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::TaskerConfig;
use crate::engine::Tasker;
use crate::error::Result;
use crate::events::{Event, EventError, EventKind};
use crate::handler::{OutputReader, StepContext, StepError};
use crate::model::{ClaimedStep, CompletionOutcome, ErrorClass, Failure, FailureReason, Outcome};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Steps run at the same time.
    pub concurrency: usize,
    /// Most steps claimed per statement.
    pub claim_batch: usize,
    /// Most steps claimed ahead of free slots, so a slot that frees starts its next step without
    /// a round trip; they wait here under their lease (kept alive by the heartbeat). Fewer as
    /// steps run longer; see [`TaskerConfig::prefetch`].
    pub prefetch: usize,
    /// Identity recorded as `lease_owner`; unique per process incarnation by default.
    pub id: String,
}

impl WorkerOptions {
    /// Options from the engine configuration, with a fresh worker id.
    pub fn from_config(config: &TaskerConfig) -> Self {
        Self {
            concurrency: config.concurrency.max(1),
            claim_batch: config.claim_batch.max(1),
            prefetch: config.prefetch,
            id: new_worker_id(),
        }
    }
}

/// `host:pid:random`, so a restarted process never reuses a dead one's leases.
fn new_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &random[..8])
}

/// A running worker; stop it with [`Worker::shutdown`].
#[derive(Debug)]
pub struct Worker {
    id: String,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

/// Steps this worker is running, by id, for heartbeats and release at shutdown.
type InFlight = Arc<Mutex<HashSet<i64>>>;

impl Worker {
    pub(crate) fn start(tasker: Tasker, options: WorkerOptions) -> Self {
        let (stop, stopped) = watch::channel(false);
        let id = options.id.clone();
        let handle = tokio::spawn(run(tasker, options, stopped));
        Self { id, stop, handle }
    }

    /// This worker's `lease_owner` identity.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops claiming, lets running steps finish within the configured grace period, releases
    /// the rest for other workers, and returns when everything is recorded.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.handle.await {
            tracing::error!(%error, "worker task failed");
        }
    }
}

/// What the worker's loops share.
struct Shared {
    tasker: Tasker,
    owner: Arc<str>,
    /// One permit per step running (`concurrency`).
    slots: Arc<Semaphore>,
    /// One permit per step claimed and not yet run (`concurrency + prefetch`): bounds what the
    /// worker holds, running or waiting to run. A finished step's outcome waits for the
    /// completer without it, so recording overlaps the next claims instead of holding them back.
    held: Arc<Semaphore>,
    /// Claimed steps waiting for a slot.
    queued: std::sync::atomic::AtomicUsize,
    in_flight: InFlight,
    /// How far ahead the worker claims; see [`Prefetch`].
    prefetch: Prefetch,
}

/// How long claimed steps may wait for a slot: the worker holds ahead only as many steps as its
/// slots start within this time at the recent step duration.
const PREFETCH_HORIZON: Duration = Duration::from_millis(50);

/// Claiming ahead, adapted to how long steps run. With short steps the worker holds the full
/// `prefetch` ahead of its slots; with long ones, fewer (none once a step outlasts the
/// horizon), so a slow worker does not sit on ready steps another worker could run. The places
/// it does not use are held back as permits of `held`.
struct Prefetch {
    most: usize,
    concurrency: usize,
    /// A moving average of recent step durations, in microseconds (0 before the first).
    step_micros: std::sync::atomic::AtomicU64,
    /// Places in `held` kept back from claims.
    reserve: std::sync::Mutex<Vec<OwnedSemaphorePermit>>,
}

impl Prefetch {
    /// Counts a step that ran for `took` and moves the reserve towards what the new average
    /// allows: freeing places at once, and taking back the finished step's place (`place`,
    /// returned when the reserve does not need it) and places that are free.
    fn ran(
        &self,
        took: Duration,
        held: &Arc<Semaphore>,
        place: OwnedSemaphorePermit,
    ) -> Option<OwnedSemaphorePermit> {
        use std::sync::atomic::Ordering::Relaxed;
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let before = self.step_micros.load(Relaxed);
        let average = if before == 0 {
            took
        } else {
            (before.saturating_mul(7) + took) / 8
        };
        self.step_micros.store(average, Relaxed);
        let horizon = u64::try_from(PREFETCH_HORIZON.as_micros()).unwrap_or(u64::MAX);
        let ahead = u64::try_from(self.concurrency)
            .unwrap_or(u64::MAX)
            .saturating_mul(horizon)
            / average;
        let ahead = usize::try_from(ahead).unwrap_or(usize::MAX).min(self.most);
        let Ok(mut reserve) = self.reserve.lock() else {
            return Some(place);
        };
        let keep = self.most - ahead;
        reserve.truncate(keep);
        if reserve.len() >= keep {
            return Some(place);
        }
        reserve.push(place);
        while reserve.len() < keep {
            match Arc::clone(held).try_acquire_owned() {
                Ok(permit) => reserve.push(permit),
                Err(_) => break,
            }
        }
        None
    }
}

/// A claimed step waiting for a slot, with its place in the worker's holding.
type Queued = (ClaimedStep, OwnedSemaphorePermit);

async fn run(tasker: Tasker, options: WorkerOptions, stopped: watch::Receiver<bool>) {
    let shared = Arc::new(Shared {
        owner: options.id.clone().into(),
        slots: Arc::new(Semaphore::new(options.concurrency)),
        held: Arc::new(Semaphore::new(options.concurrency + options.prefetch)),
        queued: Default::default(),
        in_flight: Arc::default(),
        prefetch: Prefetch {
            most: options.prefetch,
            concurrency: options.concurrency,
            step_micros: Default::default(),
            reserve: Default::default(),
        },
        tasker,
    });
    // Bounded, so a completer that falls behind (a database outage) holds the slots back.
    let (outcomes, outcome_rx) = mpsc::channel::<Outcome>(2 * MAX_BATCH);
    let completer = tokio::spawn(complete_loop(
        shared.tasker.clone(),
        outcome_rx,
        Arc::clone(&shared.in_flight),
        stopped.clone(),
        Arc::clone(&shared.held),
    ));
    let (bg_stop, bg_stopped) = watch::channel(false);
    let heartbeat = tokio::spawn(heartbeat_loop(
        shared.tasker.clone(),
        Arc::clone(&shared.owner),
        options.concurrency,
        Arc::clone(&shared.in_flight),
        bg_stopped.clone(),
    ));
    let sweeper = tokio::spawn(sweep_loop(shared.tasker.clone(), bg_stopped.clone()));
    let promoter = tokio::spawn(promote_loop(shared.tasker.clone(), bg_stopped.clone()));
    let pruner = tokio::spawn(retention_loop(shared.tasker.clone(), bg_stopped));
    // Claims run ahead of the slots that start steps, so a claim overlaps running work and the
    // recording of finished work instead of waiting for a slot to free.
    let (queue, queued) = mpsc::unbounded_channel::<Queued>();
    // While steps wait locally, a claim waits until it can take half the prefetch at once:
    // claiming each step as its permit returns would be a round trip per step again.
    let batch = Batch {
        most: options.claim_batch,
        least: (options.prefetch / 2).clamp(1, options.claim_batch),
    };
    let fetcher = tokio::spawn(fetch_loop(
        Arc::clone(&shared),
        batch,
        stopped.clone(),
        queue,
    ));
    let mut running = JoinSet::new();
    start_loop(&shared, stopped, queued, &mut running, &outcomes).await;
    // The fetcher finishes the claim it is making; its steps are released below.
    if let Err(error) = fetcher.await {
        tracing::error!(%error, "claimer failed");
    }
    finish_running(&shared.tasker, &mut running).await;
    drop(outcomes);
    if let Err(error) = completer.await {
        tracing::error!(%error, "completer failed");
    }
    release_abandoned(&shared).await;
    let _ = bg_stop.send(true);
    let _ = heartbeat.await;
    let _ = sweeper.await;
    let _ = promoter.await;
    let _ = pruner.await;
}

/// How often a worker applies the retention period.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Deletes the tasks past the retention period once a minute, when one is set (every worker
/// does; PostgreSQL's skip the tasks another is deleting, SQLite's take turns).
async fn retention_loop(tasker: Tasker, mut stopped: watch::Receiver<bool>) {
    let inner = Arc::clone(tasker.inner());
    let Some(period) = inner.config.retention else {
        return;
    };
    let options = crate::PruneOptions {
        older_than: period,
        include_errors: inner.config.retention_includes_errors,
        dry_run: false,
    };
    let mut ticks = tokio::time::interval(RETENTION_EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick() => {},
            _ = stopped.changed() => return,
        }
        match tasker.prune(options).await {
            Ok(pruned) if pruned.tasks > 0 => {
                tracing::info!(
                    tasks = pruned.tasks,
                    steps = pruned.steps,
                    "pruned finished tasks"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "pruning finished tasks failed"),
        }
    }
}

/// Starts delayed tasks whose time has come, ends overdue ones and fires due schedules, every
/// `max_poll_interval`: each worker does, so one that dies leaves the rest doing it; all are
/// idempotent (a promotion skips rows another holds, an expiry checks the task is still open
/// and overdue, a schedule's slot runs once).
async fn promote_loop(tasker: Tasker, mut stopped: watch::Receiver<bool>) {
    let inner = Arc::clone(tasker.inner());
    let mut ticks = tokio::time::interval(
        inner
            .config
            .max_poll_interval
            .max(Duration::from_millis(10)),
    );
    loop {
        tokio::select! {
            _ = ticks.tick() => {},
            _ = stopped.changed() => return,
        }
        match tasker.start_due_tasks().await {
            // Steps this process can run: claim them now rather than at the next poll.
            Ok(started) if started > 0 => inner.wake.notify_one(),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "starting delayed tasks failed"),
        }
        if let Err(error) = tasker.enforce_deadlines().await {
            tracing::warn!(%error, "ending overdue tasks failed");
        }
        if let Err(error) = tasker.run_due_schedules().await {
            tracing::warn!(%error, "starting scheduled tasks failed");
        }
    }
}

/// Claims ready steps while the worker holds fewer than `concurrency + prefetch` (at most
/// `claim_batch` per claim) and queues them for [`start_loop`]; waits for a wake-up or a poll
/// when none is ready.
async fn fetch_loop(
    shared: Arc<Shared>,
    batch: Batch,
    mut stopped: watch::Receiver<bool>,
    queue: mpsc::UnboundedSender<Queued>,
) {
    let inner = Arc::clone(shared.tasker.inner());
    let named_task_ids: Arc<Vec<i64>> = Arc::new(inner.runnable.clone());
    let min_poll = Duration::from_millis(10);
    let mut idle = min_poll;
    let mut db_retry = Duration::from_millis(50);
    // Whether the last claim found work, so `workflow.no_viable_steps` marks going idle once.
    let mut busy = false;
    loop {
        if *stopped.borrow() {
            return;
        }
        let Some(permits) = room(&shared, batch, &mut stopped).await else {
            return;
        };
        let (limit, lease) = (permits.len(), inner.config.lease);
        let (who, ids) = (Arc::clone(&shared.owner), Arc::clone(&named_task_ids));
        let claim_started = std::time::Instant::now();
        let claimed = shared
            .tasker
            .commit(move |store| store.claim(&who, limit, lease, &ids))
            .await;
        let claimed = match claimed {
            Ok(claimed) => {
                db_retry = Duration::from_millis(50);
                claimed
            }
            Err(error) => {
                tracing::warn!(%error, "claim failed; retrying");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(db_retry) => {},
                    _ = stopped.changed() => return,
                }
                db_retry = (db_retry * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if claimed.is_empty() {
            if std::mem::take(&mut busy) {
                shared
                    .tasker
                    .emit(Event::new("workflow.no_viable_steps", EventKind::Workflow));
            }
            drop(permits);
            tokio::select! {
                _ = inner.wake.notified() => idle = min_poll,
                _ = tokio::time::sleep(idle) => idle = (idle * 2).min(inner.config.max_poll_interval),
                _ = stopped.changed() => return,
            }
            continue;
        }
        idle = min_poll;
        busy = true;
        emit_claimed(&shared.tasker, &claimed, claim_started.elapsed());
        if let Ok(mut set) = shared.in_flight.lock() {
            set.extend(claimed.iter().map(|s| s.step_id));
        }
        for queued in claimed.into_iter().zip(permits) {
            shared
                .queued
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            // A closed queue means the worker is stopping: the step stays in flight and is
            // released at shutdown.
            let _ = queue.send(queued);
        }
    }
}

/// How many steps one claim asks for.
#[derive(Debug, Clone, Copy)]
struct Batch {
    /// At most this many (`claim_batch`).
    most: usize,
    /// At least this many while claimed steps still wait locally.
    least: usize,
}

/// Room for the next claim: waits for one free place in the worker's holding, and while steps
/// still wait locally for `batch.least`; then takes every free place up to `batch.most`. `None`
/// once stopped.
async fn room(
    shared: &Shared,
    batch: Batch,
    stopped: &mut watch::Receiver<bool>,
) -> Option<Vec<OwnedSemaphorePermit>> {
    let mut permits = Vec::with_capacity(batch.most);
    loop {
        let next = tokio::select! {
            permit = Arc::clone(&shared.held).acquire_owned() => permit.ok()?,
            _ = stopped.changed() => return None,
        };
        permits.push(next);
        while permits.len() < batch.most {
            match Arc::clone(&shared.held).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let waiting = shared.queued.load(std::sync::atomic::Ordering::Acquire);
        if permits.len() >= batch.least || waiting == 0 {
            return Some(permits);
        }
    }
}

/// Starts queued steps as slots free, each on its own task, until the worker is stopped.
async fn start_loop(
    shared: &Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
    mut queued: mpsc::UnboundedReceiver<Queued>,
    running: &mut JoinSet<()>,
    outcomes: &mpsc::Sender<Outcome>,
) {
    loop {
        while running.try_join_next().is_some() {}
        if *stopped.borrow() {
            return;
        }
        let slot = tokio::select! {
            permit = Arc::clone(&shared.slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stopped.changed() => return,
        };
        let (step, held) = tokio::select! {
            next = queued.recv() => match next {
                Some(next) => next,
                None => return,
            },
            _ = stopped.changed() => return,
        };
        shared
            .queued
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        let (tasker, owner) = (shared.tasker.clone(), Arc::clone(&shared.owner));
        let outcomes = outcomes.clone();
        let shared = Arc::clone(shared);
        running.spawn(async move {
            let started = std::time::Instant::now();
            let outcome = run_step(&tasker, &owner, step).await;
            let held = shared.prefetch.ran(started.elapsed(), &shared.held, held);
            // The permits go once the completer has taken the outcome: a full queue of outcomes
            // to record stops the worker running and claiming more.
            let _ = outcomes.send(outcome).await;
            drop((slot, held));
        });
    }
}

/// Graceful shutdown: no more claims; running steps get the grace period, then are aborted.
async fn finish_running(tasker: &Tasker, running: &mut JoinSet<()>) {
    let grace = tasker.inner().config.shutdown_grace;
    let graceful = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if graceful.is_err() {
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
}

/// Hands back at once whatever is still in flight (aborted at shutdown), rather than waiting
/// for its lease to expire.
async fn release_abandoned(shared: &Shared) {
    let abandoned: Vec<i64> = shared
        .in_flight
        .lock()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    if abandoned.is_empty() {
        return;
    }
    let who = Arc::clone(&shared.owner);
    let released = shared
        .tasker
        .inner()
        .store
        .run(move |store| store.release(&who, &abandoned))
        .await;
    match released {
        Ok(events) => shared.tasker.publish_in_order(events).await,
        Err(error) => {
            tracing::warn!(%error, "releasing steps at shutdown failed; their leases will expire")
        }
    }
}

/// Runs one attempt of a claimed step and turns its result into an outcome to record.
pub(crate) async fn run_step(tasker: &Tasker, owner: &str, step: ClaimedStep) -> Outcome {
    let inner = tasker.inner();
    let task = super::spans::task_span(inner, step.task_id, step.named_task_id);
    let span = tracing::info_span!(
        parent: &task,
        "tasker.step",
        task_id = step.task_id,
        step_id = step.step_id,
        step = %step.name,
        attempt = step.attempt,
        correlation_id = super::correlation(inner, step.task_id),
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let outcome = run_attempt(tasker, owner, step)
        .instrument(span.clone())
        .await;
    match &outcome.result {
        Ok(_) => {
            span.record("otel.status_code", "OK");
        }
        Err(failure) => {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", failure.message.as_str());
            span.record("error", failure.message.as_str());
        }
    }
    outcome
}

/// Aborts the handler's task when the attempt is dropped (a shutdown past its grace period).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_attempt(tasker: &Tasker, owner: &str, step: ClaimedStep) -> Outcome {
    let (result, duration_ms) = attempt(tasker, &step).await;
    Outcome::of(step, owner, result, duration_ms)
}

/// A failure the engine decided, not the handler: the error and why.
type EngineFailure = (StepError, FailureReason);

/// Runs the attempt: its result (JSON text) or failure, and how long the handler ran (`None`
/// when it could not start).
async fn attempt(
    tasker: &Tasker,
    step: &ClaimedStep,
) -> (std::result::Result<String, Failure>, Option<f64>) {
    let config = &tasker.inner().config;
    let prepared = match prepare_attempt(tasker, step) {
        Ok(prepared) => prepared,
        Err((error, reason)) => {
            let failed = failure(step, &error, config, reason);
            tasker.emit(execution_failed(step, &failed));
            return (Err(failed), None);
        }
    };
    tasker.emit(step_event(step, "step.before_handle", EventKind::Step));
    let started = std::time::Instant::now();
    let handled = run_handler(prepared).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let result = match handled {
        Ok(Ok(value)) => serialize_result(step, &value, config),
        Ok(Err(error)) => {
            tracing::info!(error = %error, "step attempt failed");
            Err(failure(step, &error, config, FailureReason::StepError))
        }
        Err((error, reason)) => {
            let failed = failure(step, &error, config, reason);
            emit_handled(tasker, step, took, Some(&failed));
            tasker.emit(execution_failed(step, &failed));
            return (Err(failed), Some(took));
        }
    };
    emit_handled(tasker, step, took, result.as_ref().err());
    (result, Some(took))
}

/// What one attempt runs: the handler, its context and its deadline.
struct Prepared {
    handler: Arc<dyn crate::handler::DynStepHandler>,
    cx: StepContext,
    timeout: Duration,
}

/// Finds the step's handler and builds its context; fails for good when there is no handler or
/// the stored context or a parent's result cannot be read.
fn prepare_attempt(
    tasker: &Tasker,
    step: &ClaimedStep,
) -> std::result::Result<Prepared, EngineFailure> {
    let inner = tasker.inner();
    let template = inner.by_named_task.get(&step.named_task_id);
    let step_template = template.and_then(|t| t.template.find_step(&step.name));
    let handler = step_template.and_then(|s| inner.registry.handlers.get(&s.handler));
    let (Some(step_template), Some(handler)) = (step_template, handler) else {
        let error =
            StepError::permanent(format!("no handler is registered for step `{}`", step.name));
        return Err((error, FailureReason::NoHandler));
    };
    let cx = StepContext::new(
        step.task_id,
        step.step_id,
        step.name.clone(),
        u32::try_from(step.attempt.max(1)).unwrap_or(1),
        read_context(step)?,
        read_parents(step)?,
        step_template
            .handler_config
            .clone()
            .unwrap_or(serde_json::Value::Null),
    )
    .with_outputs(output_reader(tasker, step.task_id))
    .with_events(
        {
            let tasker = tasker.clone();
            Arc::new(move |event| tasker.emit(event))
        },
        step_template
            .custom_events
            .iter()
            .map(|e| e.name.clone())
            .collect(),
        Arc::clone(&inner.event_definitions),
    );
    let timeout = step_template
        .timeout_seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(inner.config.default_step_timeout);
    Ok(Prepared {
        handler: Arc::clone(handler),
        cx,
        timeout,
    })
}

/// A stored value the attempt needs that cannot be read: the attempt fails for good, naming it.
fn corrupt(
    table: &'static str,
    id: i64,
    column: &'static str,
    e: serde_json::Error,
) -> EngineFailure {
    let error = crate::Error::CorruptData {
        table,
        id,
        column,
        problem: format!("not valid JSON: {e}"),
    };
    (StepError::permanent(error), FailureReason::CorruptData)
}

/// The task's context, parsed.
fn read_context(step: &ClaimedStep) -> std::result::Result<serde_json::Value, EngineFailure> {
    serde_json::from_str(&step.context)
        .map_err(|e| corrupt("tasker_tasks", step.task_id, "context", e))
}

/// The parents' results by name, parsed (a parent resolved by hand without a result has `null`).
fn read_parents(
    step: &ClaimedStep,
) -> std::result::Result<HashMap<String, serde_json::Value>, EngineFailure> {
    step.parents
        .iter()
        .map(|parent| {
            let value = match parent.results.as_deref() {
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| corrupt("tasker_workflow_steps", parent.step_id, "results", e))?,
                None => serde_json::Value::Null,
            };
            Ok((parent.name.clone(), value))
        })
        .collect()
}

/// Reads the outputs of the task's other steps, for [`StepContext::output`].
fn output_reader(tasker: &Tasker, task_id: i64) -> OutputReader {
    let store = tasker.inner().store.clone();
    Arc::new(move |name: String| {
        let store = store.clone();
        Box::pin(async move { store.run(move |s| s.step_output(task_id, &name)).await })
    })
}

/// Runs the handler as its own task, so a panic is caught as a failed attempt, under its
/// deadline.
async fn run_handler(prepared: Prepared) -> std::result::Result<crate::StepResult, EngineFailure> {
    let Prepared {
        handler,
        cx,
        timeout,
    } = prepared;
    let attempt = tokio::spawn(async move { handler.handle_dyn(&cx).await }.in_current_span());
    let _abort = AbortOnDrop(attempt.abort_handle());
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(join)) => Err((
            StepError::retryable(format!("step handler panicked: {join}")),
            FailureReason::Panic,
        )),
        Err(_) => Err((
            StepError::retryable(format!("step timed out after {timeout:?}")),
            FailureReason::Timeout,
        )),
    }
}

/// The handler's value as stored JSON text, within `max_result_bytes`.
fn serialize_result(
    step: &ClaimedStep,
    value: &serde_json::Value,
    config: &TaskerConfig,
) -> std::result::Result<String, Failure> {
    match serde_json::to_string(value) {
        Ok(json) if json.len() <= config.max_result_bytes => Ok(json),
        Ok(json) => {
            let error = StepError::permanent(format!(
                "result is {} bytes, over the limit of {} (`max_result_bytes`)",
                json.len(),
                config.max_result_bytes
            ));
            Err(failure(step, &error, config, FailureReason::ResultTooLarge))
        }
        Err(e) => Err(failure(
            step,
            &StepError::permanent(e),
            config,
            FailureReason::InvalidResult,
        )),
    }
}

/// An event about one claimed step's attempt.
fn step_event(step: &ClaimedStep, name: &'static str, kind: EventKind) -> Event {
    let mut event = Event::new(name, kind);
    event.task_id = Some(step.task_id);
    event.step_id = Some(step.step_id);
    event.step_name = Some(step.name.clone());
    event.attempt = Some(step.attempt);
    event
}

fn event_error(failure: &Failure) -> EventError {
    EventError {
        class: failure.class,
        message: failure.message.clone(),
        reason: Some(failure.reason),
    }
}

/// `step.handle` and `observability.step.handle`: the handler returned after `took` ms.
fn emit_handled(tasker: &Tasker, step: &ClaimedStep, took: f64, failed: Option<&Failure>) {
    let mut handled = step_event(step, "step.handle", EventKind::Step);
    handled.duration_ms = Some(took);
    handled.error = failed.map(event_error);
    tasker.emit(handled);
    let mut timing = step_event(step, "observability.step.handle", EventKind::Observability);
    timing.duration_ms = Some(took);
    tasker.emit(timing);
}

/// `workflow.step_execution_failed`: the attempt failed outside its handler's control.
fn execution_failed(step: &ClaimedStep, failure: &Failure) -> Event {
    let mut event = step_event(step, "workflow.step_execution_failed", EventKind::Workflow);
    event.error = Some(event_error(failure));
    event
}

/// The events of a claim that found steps.
fn emit_claimed(tasker: &Tasker, claimed: &[ClaimedStep], took: Duration) {
    let mut task_ids: Vec<i64> = claimed.iter().map(|s| s.task_id).collect();
    task_ids.sort_unstable();
    task_ids.dedup();
    let count = claimed.len();
    let mut found = Event::new("workflow.viable_steps_discovered", EventKind::Workflow);
    found.payload = serde_json::json!({ "count": count, "task_ids": task_ids });
    tasker.emit(found);
    let mut timing = Event::new("observability.step.find_viable", EventKind::Observability);
    timing.duration_ms = Some(took.as_secs_f64() * 1000.0);
    timing.payload = serde_json::json!({ "count": count });
    tasker.emit(timing);
    let mut started = Event::new("workflow.steps_execution_started", EventKind::Workflow);
    started.payload = serde_json::json!({ "count": count });
    tasker.emit(started);
}

/// The events of a recorded batch: finalization, backoffs and exhausted retries.
fn emit_recorded(
    tasker: &Tasker,
    outcomes: &[Outcome],
    results: &[CompletionOutcome],
    took: Duration,
) {
    let stale = results
        .iter()
        .filter(|r| **r == CompletionOutcome::Stale)
        .count();
    let mut finalized = Event::new("workflow.task_finalization_completed", EventKind::Workflow);
    finalized.duration_ms = Some(took.as_secs_f64() * 1000.0);
    finalized.payload = serde_json::json!({ "count": outcomes.len(), "stale": stale });
    tasker.emit(finalized);
    let mut completed = Event::new("workflow.steps_execution_completed", EventKind::Workflow);
    completed.payload = serde_json::json!({ "count": outcomes.len() - stale });
    tasker.emit(completed);
    for (outcome, result) in outcomes.iter().zip(results) {
        if *result == CompletionOutcome::Stale {
            tracing::warn!(
                step_id = outcome.step_id,
                attempt = outcome.attempt,
                "late result rejected: this attempt's lease expired and the step moved on"
            );
            let mut rejected = Event::new("workflow.step_result_rejected", EventKind::Workflow);
            rejected.task_id = Some(outcome.task_id);
            rejected.step_id = Some(outcome.step_id);
            rejected.step_name = Some(outcome.name.clone());
            rejected.attempt = Some(outcome.attempt);
            rejected.error = Some(EventError {
                class: ErrorClass::LeaseLost,
                message: crate::Error::StaleCompletion {
                    step_id: outcome.step_id,
                    attempt: outcome.attempt,
                    owner: outcome.owner.clone(),
                }
                .to_string(),
                reason: Some(FailureReason::StaleAttempt),
            });
            rejected.payload = serde_json::json!({ "worker": outcome.owner });
            tasker.emit(rejected);
            continue;
        }
        let (Err(failure), CompletionOutcome::Recorded) = (&outcome.result, result) else {
            continue;
        };
        let base = |name: &'static str| {
            let mut event = Event::new(name, EventKind::Observability);
            event.task_id = Some(outcome.task_id);
            event.step_id = Some(outcome.step_id);
            event.step_name = Some(outcome.name.clone());
            event.attempt = Some(outcome.attempt);
            event
        };
        match failure.retry_in {
            Some(delay) => {
                let mut backoff = base("observability.step.backoff");
                backoff.payload = serde_json::json!({ "retry_in_seconds": delay.as_secs_f64() });
                tasker.emit(backoff);
            }
            None if failure.class == ErrorClass::Retryable => {
                let mut exhausted = base("observability.step.max_retries_reached");
                exhausted.error = Some(event_error(failure));
                tasker.emit(exhausted);
            }
            None => {}
        }
    }
}

/// The recorded failure of an attempt: retried after a backoff when the error is retryable, the
/// step is retryable and attempts remain; failed for good otherwise.
fn failure(
    step: &ClaimedStep,
    error: &StepError,
    config: &TaskerConfig,
    reason: FailureReason,
) -> Failure {
    retry_decision(
        step.attempt,
        step.retryable,
        step.retry_limit,
        error,
        config,
        reason,
    )
}

pub(crate) fn retry_decision(
    attempt: i32,
    retryable: bool,
    retry_limit: i32,
    error: &StepError,
    config: &TaskerConfig,
    reason: FailureReason,
) -> Failure {
    let retry_after = match error {
        StepError::Retryable { retry_after, .. } => *retry_after,
        StepError::Permanent { .. } => None,
    };
    let can_retry = error.is_retryable() && retryable && attempt < retry_limit;
    Failure {
        error_json: error.to_json().to_string(),
        retry_in: can_retry.then(|| {
            let attempt = u32::try_from(attempt.max(1)).unwrap_or(1);
            config.backoff.delay(attempt, retry_after)
        }),
        reason,
        message: error.message().to_owned(),
        class: error.class(),
    }
}

/// The most outcomes recorded in one transaction.
const MAX_BATCH: usize = 128;

/// Records outcomes in batches: whatever finished while the previous batch was being written
/// goes into the next transaction.
async fn complete_loop(
    tasker: Tasker,
    mut rx: mpsc::Receiver<Outcome>,
    in_flight: InFlight,
    stopping: watch::Receiver<bool>,
    held: Arc<Semaphore>,
) {
    let inner = Arc::clone(tasker.inner());
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let shared = Arc::new(batch);
        let mut delay = Duration::from_millis(50);
        let mut starting = Event::new("workflow.task_finalization_started", EventKind::Workflow);
        starting.payload = serde_json::json!({ "count": shared.len() });
        tasker.emit(starting);
        let recording = std::time::Instant::now();
        // A database error must not lose an outcome: retry until it is written, through a
        // database restart (fencing makes a late write harmless if the lease expired
        // meanwhile). Only a shutdown bounds the wait, by its grace period.
        let mut gave_up_at: Option<tokio::time::Instant> = None;
        // This worker claims again as soon as it has room: as many as it may hold beyond what
        // it holds now.
        let takes_locally = if *stopping.borrow() {
            0
        } else {
            held.available_permits()
        };
        for attempt in 1.. {
            let outcomes = Arc::clone(&shared);
            match inner
                .store
                .run(move |store| store.complete(&outcomes, takes_locally))
                .await
            {
                Ok((results, events)) => {
                    tasker.publish_in_order(events).await;
                    emit_recorded(&tasker, &shared, &results, recording.elapsed());
                    break;
                }
                Err(error) => {
                    if *stopping.borrow() {
                        let deadline = *gave_up_at.get_or_insert_with(|| {
                            tokio::time::Instant::now() + inner.config.shutdown_grace
                        });
                        if tokio::time::Instant::now() >= deadline {
                            tracing::error!(%error, "shutting down without recording step outcomes; their leases will expire and they will run again");
                            break;
                        }
                    }
                    tracing::warn!(%error, attempt, "recording step outcomes failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Ok(mut set) = in_flight.lock() {
            for outcome in shared.iter() {
                set.remove(&outcome.step_id);
            }
        }
        inner.wake.notify_one();
    }
}

/// Records this worker as alive and extends the leases of its running steps every
/// `heartbeat` (the first at once); forgets the worker when it stops.
async fn heartbeat_loop(
    tasker: Tasker,
    owner: Arc<str>,
    concurrency: usize,
    in_flight: InFlight,
    mut stopped: watch::Receiver<bool>,
) {
    let inner = Arc::clone(tasker.inner());
    let lease = inner.config.lease;
    let mut ticks = tokio::time::interval(inner.config.heartbeat.max(Duration::from_millis(10)));
    let concurrency = i32::try_from(concurrency).unwrap_or(i32::MAX);
    loop {
        tokio::select! {
            _ = ticks.tick() => {},
            _ = stopped.changed() => break,
        }
        // Only steps still running here: one whose outcome could not be recorded must be
        // left to expire and be recovered, not kept alive by its worker's other steps.
        let running: Vec<i64> = in_flight
            .lock()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let (who, count) = (
            Arc::clone(&owner),
            i32::try_from(running.len()).unwrap_or(i32::MAX),
        );
        if let Err(error) = inner
            .store
            .run(move |store| store.worker_seen(&who, concurrency, count))
            .await
        {
            tracing::debug!(%error, "recording this worker as alive failed");
        }
        if running.is_empty() {
            continue;
        }
        let who = Arc::clone(&owner);
        let asked = running.clone();
        match inner
            .store
            .run(move |store| store.heartbeat(&who, &asked, lease))
            .await
        {
            Ok(extended) => {
                // A step finished between the snapshot and the UPDATE is not lost; only one
                // still running here whose lease another worker took is.
                let still: HashSet<i64> = in_flight
                    .lock()
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                for step_id in running {
                    if !extended.contains(&step_id) && still.contains(&step_id) {
                        tracing::warn!(
                            step_id,
                            "lease lost while running: the step was recovered by another worker, and this attempt's result will be rejected"
                        );
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "lease heartbeat failed"),
        }
    }
    let who = Arc::clone(&owner);
    if let Err(error) = inner
        .store
        .run(move |store| store.worker_stopped(&who))
        .await
    {
        tracing::debug!(%error, "forgetting this worker failed; it ages out of the list");
    }
}

/// Fails steps whose lease expired (their worker died or stalled) under their retry policy.
async fn sweep_loop(tasker: Tasker, mut stopped: watch::Receiver<bool>) {
    let inner = Arc::clone(tasker.inner());
    let mut ticks =
        tokio::time::interval(inner.config.sweep_interval.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = ticks.tick() => {},
            _ = stopped.changed() => return,
        }
        if let Err(error) = sweep_expired(&tasker).await {
            tracing::warn!(%error, "lease sweep failed");
        }
        super::spans::close_idle(&inner);
        match inner.store.run(|store| store.ready_stats()).await {
            Ok((ready, oldest)) => crate::metrics::queue(ready, oldest),
            Err(error) => tracing::debug!(%error, "queue sampling failed"),
        }
    }
}

/// The failure recorded for an attempt whose lease expired. It counts as an attempt (it may
/// have had effects, and a step that kills its worker every time must not loop forever), but
/// it is retried at once: the worker died, not the step's dependency, so there is nothing to
/// back off from.
fn lease_expired(
    attempt: i32,
    retryable: bool,
    retry_limit: i32,
    error: &StepError,
    config: &TaskerConfig,
) -> Failure {
    let mut failure = retry_decision(
        attempt,
        retryable,
        retry_limit,
        error,
        config,
        FailureReason::LeaseExpired,
    );
    if failure.retry_in.is_some() {
        failure.retry_in = Some(Duration::ZERO);
    }
    failure
}

/// One sweep: repeats until no expired lease is left, so a backlog never hides work.
pub(crate) async fn sweep_expired(tasker: &Tasker) -> Result<usize> {
    const BATCH: usize = 100;
    let inner = Arc::clone(tasker.inner());
    let mut recovered = 0;
    loop {
        let expired = inner
            .store
            .run(move |store| store.expired_leases(BATCH))
            .await?;
        if expired.is_empty() {
            return Ok(recovered);
        }
        let full = expired.len() == BATCH;
        let error = StepError::retryable(
            "lease expired: the worker running this attempt stopped heartbeating",
        );
        let outcomes: Vec<Outcome> = expired
            .into_iter()
            .map(|row| Outcome {
                step_id: row.step_id,
                task_id: row.task_id,
                name: row.name,
                attempt: row.attempts,
                result: Err(lease_expired(
                    row.attempts,
                    row.retryable,
                    row.retry_limit,
                    &error,
                    &inner.config,
                )),
                owner: row.owner,
                concurrent: row.concurrent,
                duration_ms: None,
            })
            .collect();
        let results = tasker
            .commit(move |store| store.complete(&outcomes, 0))
            .await?;
        recovered += results
            .iter()
            .filter(|r| **r == CompletionOutcome::Recorded)
            .count();
        inner.wake.notify_one();
        if !full {
            return Ok(recovered);
        }
    }
}
