//! Events and subscribers: the exact events a diamond with a retry publishes, custom events,
//! and subscribers that fail, panic or hang without touching the workflow.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tasker::events::{Event, EventKind};
use tasker::prelude::*;
use tasker::serde_json::json;
use tasker::subscriber::{Subscriber, SubscriberError};
use tasker::{Error, StepResult};
use tasker_tests::{TestDatabase, conformance};

const WAIT: Duration = Duration::from_secs(30);

tasker::custom_event! {
    /// A parcel was handed to the carrier.
    pub PARCEL_SHIPPED = "parcel.shipped";
}

/// Keeps every event it is given.
#[derive(Clone, Default)]
struct Recorder {
    patterns: &'static [&'static str],
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    fn new(patterns: &'static [&'static str]) -> Self {
        Self {
            patterns,
            events: Arc::default(),
        }
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Waits until `count` events arrived (delivery is asynchronous), then returns them.
    async fn wait_for(&self, count: usize) -> Vec<Event> {
        for _ in 0..300 {
            if self.events().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.events()
    }
}

impl Subscriber for Recorder {
    fn events(&self) -> &[&str] {
        self.patterns
    }

    async fn handle(&self, event: &Event) -> Result<(), SubscriberError> {
        if let Ok(mut events) = self.events.lock() {
            events.push(event.clone());
        }
        Ok(())
    }
}

/// Fails on every event.
struct Failing;

impl Subscriber for Failing {
    fn events(&self) -> &[&str] {
        &["*"]
    }

    async fn handle(&self, _: &Event) -> Result<(), SubscriberError> {
        Err("the alerting service is down".into())
    }
}

/// Panics on every event.
struct Panicking;

impl Subscriber for Panicking {
    fn events(&self) -> &[&str] {
        &["step.*"]
    }

    async fn handle(&self, _: &Event) -> Result<(), SubscriberError> {
        panic!("subscriber bug")
    }
}

/// Never finishes handling its first event.
struct Hanging;

impl Subscriber for Hanging {
    fn events(&self) -> &[&str] {
        &["task.*"]
    }

    async fn handle(&self, _: &Event) -> Result<(), SubscriberError> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Fails its first attempt with a retryable error, then succeeds.
struct FlakyOnce(AtomicUsize);

impl StepHandler for FlakyOnce {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(StepError::retryable("carrier API unavailable"));
        }
        cx.publish(
            &PARCEL_SHIPPED,
            json!({ "carrier": "ups", "api_token": "SECRET" }),
        )?;
        Ok(json!({ "shipped": true }))
    }
}

fn diamond() -> TaskTemplate {
    TaskTemplate::new("events", "diamond", "1.0.0")
        .step(StepTemplate::new("start", "ok"))
        .step(StepTemplate::new("left", "ok").depends_on(["start"]))
        .step(StepTemplate::new("right", "flaky").depends_on(["start"]))
        .step(StepTemplate::new("join", "ok").depends_on(["left", "right"]))
}

conformance!(
    a_diamond_with_a_retry_publishes_exactly_these_events,
    a_deadline_ends_an_overdue_task,
    a_payload_that_breaks_its_schema_is_refused_when_published,
    a_subscription_file_turns_a_subscriber_off_and_narrows_another
);

async fn a_diamond_with_a_retry_publishes_exactly_these_events(db: TestDatabase) {
    let recorder = Recorder::new(&["task.*", "step.*"]);
    let shipped = Recorder::new(&["parcel.*"]);
    let tasker = db
        .builder()
        .template(diamond())
        .handler("ok", handler_fn(|_| async { Ok(json!({ "ok": true })) }))
        .handler("flaky", FlakyOnce(AtomicUsize::new(0)))
        .subscriber(recorder.clone())
        .subscriber(shipped.clone())
        .subscriber(Failing)
        .subscriber(Panicking)
        .subscriber(Hanging)
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker
        .create_task(
            TaskRequest::new("diamond")
                .namespace("events")
                .version("1.0.0"),
        )
        .await
        .expect("create");
    let done = tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    // Failing, panicking and hanging subscribers did not stop or fail anything.
    assert_eq!(done.state, TaskState::Complete);

    let events = recorder.wait_for(28).await;
    let of = |step: Option<&str>| -> Vec<&str> {
        events
            .iter()
            .filter(|e| e.step_name.as_deref() == step)
            .map(|e| e.name.as_ref())
            .collect()
    };
    assert_eq!(
        of(None),
        [
            "task.initialize_requested",
            "task.start_requested",
            "task.completed"
        ]
    );
    let once = [
        "step.initialize_requested",
        "step.execution_requested",
        "step.before_handle",
        "step.handle",
        "step.completed",
    ];
    for step in ["start", "left", "join"] {
        assert_eq!(of(Some(step)), once, "{step}");
    }
    assert_eq!(
        of(Some("right")),
        [
            "step.initialize_requested",
            "step.execution_requested",
            "step.before_handle",
            "step.handle",
            "step.failed",
            "step.retry_requested",
            "step.execution_requested",
            "step.before_handle",
            "step.handle",
            "step.completed",
        ]
    );
    assert_eq!(events.len(), 3 + 3 * 5 + 10, "{:#?}", names(&events));
    assert_eq!(
        events.last().map(|e| e.name.as_ref()),
        Some("task.completed")
    );
    assert!(events.iter().all(|e| e.task_id == Some(task.id)));

    // The failed attempt's event carries its attempt, error and timing.
    let failed = events
        .iter()
        .find(|e| e.name == "step.failed")
        .expect("failed");
    assert_eq!(failed.attempt, Some(1));
    let error = failed.error.as_ref().expect("error");
    assert_eq!(
        (error.class.as_str(), error.message.as_str()),
        ("retryable", "carrier API unavailable")
    );
    assert!(failed.duration_ms.is_some());
    let retried = events
        .iter()
        .filter(|e| e.step_name.as_deref() == Some("right") && e.name == "step.completed")
        .collect::<Vec<_>>();
    assert_eq!(retried[0].attempt, Some(2));

    // The custom event arrived once, tagged with its step, its secret masked.
    let custom = shipped.wait_for(1).await;
    assert_eq!(custom.len(), 1);
    assert_eq!(custom[0].kind, EventKind::Custom);
    assert_eq!(custom[0].step_name.as_deref(), Some("right"));
    assert_eq!(custom[0].payload["carrier"], "ups");
    assert_eq!(custom[0].payload["api_token"], "[FILTERED]");

    // Failures were counted, not propagated (delivery is asynchronous: wait for the counts).
    for _ in 0..300 {
        let stats = tasker.subscriber_stats();
        if stats.iter().filter(|s| s.failed > 0).count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = tasker.subscriber_stats();
    let failing = stats
        .iter()
        .find(|s| s.name.ends_with("Failing"))
        .expect("failing");
    assert!(failing.failed > 0 && failing.delivered == 0, "{failing:?}");
    let panicking = stats
        .iter()
        .find(|s| s.name.ends_with("Panicking"))
        .expect("panicking");
    assert!(panicking.failed > 0, "{panicking:?}");
    let recorded = stats
        .iter()
        .find(|s| s.name.ends_with("Recorder"))
        .expect("recorder");
    assert_eq!(recorded.failed, 0);
}

fn names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {}", e.name, e.step_name.as_deref().unwrap_or("")))
        .collect()
}

#[tokio::test]
async fn workflow_and_observability_events_describe_the_work() {
    let db = TestDatabase::sqlite();
    let recorder = Recorder::new(&["workflow.*", "observability.*"]);
    let tasker = db
        .builder()
        .template(diamond())
        .handler("ok", handler_fn(|_| async { Ok(json!({ "ok": true })) }))
        .handler("flaky", FlakyOnce(AtomicUsize::new(0)))
        .subscriber(recorder.clone())
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker
        .create_task(
            TaskRequest::new("diamond")
                .namespace("events")
                .version("1.0.0"),
        )
        .await
        .expect("create");
    tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    let events = recorder.wait_for(1).await;
    let count = |name: &str| events.iter().filter(|e| e.name == name).count();
    assert_eq!(count("observability.task.enqueue"), 1);
    assert_eq!(
        count("observability.step.handle"),
        5,
        "{:#?}",
        names(&events)
    );
    assert_eq!(count("observability.step.backoff"), 1);
    assert_eq!(count("observability.step.max_retries_reached"), 0);
    assert!(count("workflow.viable_steps_discovered") >= 1);
    assert!(count("workflow.task_finalization_completed") >= 1);
    let backoff = events
        .iter()
        .find(|e| e.name == "observability.step.backoff")
        .expect("backoff");
    assert_eq!(backoff.step_name.as_deref(), Some("right"));
    assert!(backoff.payload["retry_in_seconds"].as_f64().is_some());
    // Every published name is in the catalog, as published.
    for event in &events {
        let info = tasker::events::find(&event.name).expect("in the catalog");
        assert!(info.not_published.is_none(), "{}", event.name);
    }
}

#[tokio::test]
async fn a_declared_custom_event_is_in_the_catalog_and_an_undeclared_one_fails() {
    assert!(
        tasker::events::custom_events()
            .iter()
            .any(|e| e.name() == "parcel.shipped"
                && e.description() == "A parcel was handed to the carrier.")
    );
    let db = TestDatabase::sqlite();
    let recorder = Recorder::new(&["audit.*"]);
    let mut audited = StepTemplate::new("audit", "audit");
    audited
        .custom_events
        .push(tasker::template::CustomEventTemplate {
            name: "audit.recorded".to_owned(),
            description: None,
        });
    let tasker = db
        .builder()
        .template(TaskTemplate::new("events", "audit", "1.0.0").step(audited))
        .template(
            TaskTemplate::new("events", "rogue", "1.0.0").step(StepTemplate::new("rogue", "audit")),
        )
        .handler(
            "audit",
            handler_fn(|cx| async move {
                cx.publish_declared("audit.recorded", json!({ "by": "test" }))?;
                Ok(json!(null))
            }),
        )
        .subscriber(recorder.clone())
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let ok = tasker
        .create_task(
            TaskRequest::new("audit")
                .namespace("events")
                .version("1.0.0"),
        )
        .await
        .expect("create");
    let rogue = tasker
        .create_task(
            TaskRequest::new("rogue")
                .namespace("events")
                .version("1.0.0"),
        )
        .await
        .expect("create");
    assert_eq!(
        tasker.wait_for_task(ok.id, WAIT).await.expect("ok").state,
        TaskState::Complete
    );
    assert_eq!(
        tasker
            .wait_for_task(rogue.id, WAIT)
            .await
            .expect("rogue")
            .state,
        TaskState::Error
    );
    worker.shutdown().await;
    let events = recorder.wait_for(1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].task_id, Some(ok.id));
    let steps = tasker.steps(rogue.id).await.expect("steps");
    let error = steps[0].results.as_ref().expect("error")["error"].to_string();
    assert!(
        error.contains("does not declare the custom event `audit.recorded`"),
        "{error}"
    );
}

#[tokio::test]
async fn a_subscriber_for_unknown_events_is_refused_at_start_up() {
    let db = TestDatabase::sqlite();
    let error = db
        .builder()
        .subscriber(Recorder::new(&["step.exploded"]))
        .build()
        .await
        .expect_err("unknown");
    assert!(
        matches!(&error, Error::UnknownEvent { pattern, .. } if pattern == "step.exploded"),
        "{error}"
    );
}

static SEEN_BY_MACRO: AtomicUsize = AtomicUsize::new(0);

/// Registered by the macro: every builder in this binary runs it.
#[tasker::subscriber(events = ["task.completed"])]
async fn count_completions(event: &Event) -> Result<(), SubscriberError> {
    if event.name == "task.completed" {
        SEEN_BY_MACRO.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

#[tokio::test]
async fn a_subscriber_declared_with_the_macro_registers_itself() {
    let db = TestDatabase::sqlite();
    let tasker = db
        .builder()
        .template(
            TaskTemplate::new("events", "single", "1.0.0").step(StepTemplate::new("only", "ok")),
        )
        .handler("ok", handler_fn(|_| async { Ok(json!(1)) }))
        .build()
        .await
        .expect("build");
    assert!(
        tasker
            .subscriber_stats()
            .iter()
            .any(|s| s.name.ends_with("::count_completions"))
    );
    let before = SEEN_BY_MACRO.load(Ordering::SeqCst);
    let worker = tasker.start_worker();
    let task = tasker
        .create_task(
            TaskRequest::new("single")
                .namespace("events")
                .version("1.0.0"),
        )
        .await
        .expect("create");
    tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    for _ in 0..300 {
        if SEEN_BY_MACRO.load(Ordering::SeqCst) > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(SEEN_BY_MACRO.load(Ordering::SeqCst) > before);
}

/// Past its deadline an open task ends in `error`: its running and waiting steps are cancelled
/// (the running attempt's late result is refused), every transition and event saying
/// `deadline_exceeded`. A task that finishes in time, or whose request gives it more time, is
/// untouched.
async fn a_deadline_ends_an_overdue_task(db: TestDatabase) {
    let recorder = Recorder::new(&["task.failed", "step.cancelled"]);
    let release = Arc::new(tokio::sync::Notify::new());
    let held = Arc::clone(&release);
    let tasker = db
        .builder()
        .template(
            TaskTemplate::new("shop", "slow", "1.0.0")
                .timeout_seconds(2.0)
                .step(StepTemplate::new("wait", "wait"))
                .step(StepTemplate::new("after", "ok").depends_on(["wait"])),
        )
        .handler("ok", handler_fn(|_| async { Ok(json!({ "ok": true })) }))
        .handler(
            "wait",
            handler_fn(move |cx| {
                let held = Arc::clone(&held);
                async move {
                    if cx.context()["hold"] == true {
                        held.notified().await;
                    }
                    Ok(json!({ "waited": true }))
                }
            }),
        )
        .subscriber(recorder.clone())
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let request = |hold: bool| {
        TaskRequest::new("slow")
            .namespace("shop")
            .version("1.0.0")
            .context(json!({ "hold": hold }))
    };
    let overdue = tasker.create_task(request(true)).await.expect("create").id;
    let in_time = tasker.create_task(request(false)).await.expect("create").id;
    let longer = tasker
        .create_task(request(false).timeout(Duration::from_secs(3600)))
        .await
        .expect("create")
        .id;

    let ended = tasker.wait_for_task(overdue, WAIT).await.expect("ended");
    assert_eq!(ended.state, TaskState::Error);
    let deadline = ended.deadline_at.expect("a deadline");
    assert!(
        deadline >= ended.created_at,
        "{deadline} before {}",
        ended.created_at
    );
    let last = tasker.task_transitions(overdue).await.expect("transitions");
    let last = last.last().expect("a transition");
    assert_eq!(last.to_state, "error");
    assert_eq!(last.metadata, json!({ "reason": "deadline_exceeded" }));
    for step in tasker.steps(overdue).await.expect("steps") {
        assert_eq!(step.state, StepState::Cancelled, "{}", step.name);
        let transitions = tasker
            .step_transitions(step.step_id)
            .await
            .expect("transitions");
        let cancelled = transitions.last().expect("a transition");
        assert_eq!(cancelled.metadata, json!({ "reason": "deadline_exceeded" }));
    }
    // The held attempt finishes after its task ended: its result is refused, nothing changes.
    release.notify_waiters();
    for id in [in_time, longer] {
        let done = tasker.wait_for_task(id, WAIT).await.expect("done");
        assert_eq!(done.state, TaskState::Complete, "task {id}");
    }
    assert_eq!(tasker.enforce_deadlines().await.expect("enforce"), 0);
    worker.shutdown().await;
    assert_eq!(
        tasker.task(overdue).await.expect("task").state,
        TaskState::Error
    );
    assert_eq!(
        tasker.steps(overdue).await.expect("steps")[0].state,
        StepState::Cancelled
    );

    let events = recorder.wait_for(3).await;
    let failed: Vec<&Event> = events.iter().filter(|e| e.name == "task.failed").collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0].task_id, Some(overdue));
    assert_eq!(failed[0].payload, json!({ "reason": "deadline_exceeded" }));
    let cancelled: Vec<&Event> = events
        .iter()
        .filter(|e| e.name == "step.cancelled")
        .collect();
    assert_eq!(cancelled.len(), 2, "{events:?}");
    assert!(
        cancelled
            .iter()
            .all(|e| e.payload["reason"] == "deadline_exceeded")
    );
}

/// An events directory defining `order.fulfilled` with a payload schema, and `order.noted`
/// without one.
fn events_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("orders.yml"),
        "\
events:
  order:
    fulfilled:
      description: The order left the warehouse.
      fired_by: [ship]
      payload_schema:
        type: object
        required: [order_id]
        properties:
          order_id: { type: integer }
    noted:
      description: Someone wrote a note on the order.
",
    )
    .expect("events file");
    dir
}

/// A step publishes an event of the events directory (its template does not declare it): a
/// payload that fits the schema is delivered, one that does not fails the step for good,
/// naming the event and the path at fault, and is not delivered. The same holds outside a step.
async fn a_payload_that_breaks_its_schema_is_refused_when_published(db: TestDatabase) {
    let events = events_dir();
    let dir = events.path().to_owned();
    let recorder = Recorder::new(&["order.*"]);
    let tasker = db
        .builder()
        .configure(move |c| c.custom_events_directories = vec![dir])
        .template(
            TaskTemplate::new("events", "ship", "1.0.0").step(StepTemplate::new("ship", "ship")),
        )
        .handler(
            "ship",
            handler_fn(|cx| async move {
                let order_id = cx.context()["order_id"].clone();
                cx.publish_declared("order.fulfilled", json!({ "order_id": order_id }))?;
                Ok(json!({ "shipped": true }))
            }),
        )
        .subscriber(recorder.clone())
        .build()
        .await
        .expect("build");
    assert!(tasker.event_definitions().is_known("order.fulfilled"));
    let request = |order_id: serde_json::Value| {
        TaskRequest::new("ship")
            .namespace("events")
            .version("1.0.0")
            .context(json!({ "order_id": order_id }))
    };
    let worker = tasker.start_worker();
    let good = tasker.create_task(request(json!(7))).await.expect("good");
    let bad = tasker
        .create_task(request(json!("seven")))
        .await
        .expect("bad");
    let good = tasker.wait_for_task(good.id, WAIT).await.expect("good");
    let bad = tasker.wait_for_task(bad.id, WAIT).await.expect("bad");
    worker.shutdown().await;
    assert_eq!(good.state, TaskState::Complete);
    assert_eq!(bad.state, TaskState::Error);
    let step = &tasker.steps(bad.task_id).await.expect("steps")[0];
    assert_eq!(step.attempts, 1, "a refused payload is not retried");
    let results = step.results.as_ref().expect("error");
    assert_eq!(results["error_class"], "permanent");
    let error = results["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("payload of custom event `order.fulfilled` is invalid: at `/order_id`"),
        "{error}"
    );

    // Outside a step: the same check, and only declared custom events.
    tasker
        .publish_custom("order.fulfilled", json!({ "order_id": 8 }))
        .expect("fits");
    tasker
        .publish_custom("order.noted", json!(["no", "schema"]))
        .expect("no schema");
    match tasker.publish_custom("order.fulfilled", json!({})) {
        Err(Error::InvalidEventPayload { event, errors }) => {
            assert_eq!(event, "order.fulfilled");
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].pointer, "");
            assert!(
                errors[0]
                    .message
                    .contains("\"order_id\" is a required property")
            );
        }
        other => panic!("expected InvalidEventPayload, got {other:?}"),
    }
    for name in ["order.lost", "task.completed"] {
        assert!(
            matches!(
                tasker.publish_custom(name, json!({})),
                Err(Error::UnknownCustomEvent(n)) if n == name
            ),
            "{name}"
        );
    }

    let delivered = recorder.wait_for(3).await;
    let seen: Vec<(&str, Option<i64>, &serde_json::Value)> = delivered
        .iter()
        .map(|e| (e.name.as_ref(), e.task_id, &e.payload))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "order.fulfilled",
                Some(good.task_id),
                &json!({ "order_id": 7 })
            ),
            ("order.fulfilled", None, &json!({ "order_id": 8 })),
            ("order.noted", None, &json!(["no", "schema"])),
        ]
    );
    assert!(delivered.iter().all(|e| e.kind == EventKind::Custom));
    // Recorded with its description, as the events declared in code are.
    let stored = tasker.stored_custom_events().await.expect("stored");
    assert!(
        stored.contains(&(
            "order.fulfilled".to_owned(),
            Some("The order left the warehouse.".to_owned())
        )),
        "{stored:?}"
    );
}

/// Receives every event; its subscription narrows it to `task.completed` and hands it a config.
#[derive(Clone)]
struct Narrowed {
    recorder: Recorder,
    config: Arc<Mutex<Option<serde_json::Value>>>,
}

impl Subscriber for Narrowed {
    fn events(&self) -> &[&str] {
        &["*"]
    }

    async fn handle(&self, event: &Event) -> Result<(), SubscriberError> {
        self.recorder.handle(event).await
    }

    fn configure(&self, config: &serde_json::Value) -> Result<(), SubscriberError> {
        let mut slot = self.config.lock().map_err(|_| "poisoned")?;
        *slot = Some(config.clone());
        Ok(())
    }
}

/// Receives task events; its subscription turns it off.
#[derive(Clone)]
struct Silenced(Recorder);

impl Subscriber for Silenced {
    fn events(&self) -> &[&str] {
        &["task.*"]
    }

    async fn handle(&self, event: &Event) -> Result<(), SubscriberError> {
        self.0.handle(event).await
    }
}

/// A subscriptions directory turns one subscriber off, narrows another's events and hands it
/// its `config`, and adds a `type: log` subscriber.
async fn a_subscription_file_turns_a_subscriber_off_and_narrows_another(db: TestDatabase) {
    let subscriptions = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        subscriptions.path().join("subscribers.yml"),
        "\
subscriptions:
  completions:
    class: Narrowed
    events: [task.completed]
    config: { channel: \"#orders\" }
  quiet:
    class: events::Silenced
    enabled: false
  trail:
    type: log
    events: [\"task.*\"]
    config: { level: debug }
",
    )
    .expect("subscriptions file");
    let dir = subscriptions.path().to_owned();
    let narrowed = Narrowed {
        recorder: Recorder::new(&[]),
        config: Arc::default(),
    };
    let silenced = Silenced(Recorder::new(&[]));
    let tasker = db
        .builder()
        .configure(move |c| c.subscriptions_directories = vec![dir])
        .template(
            TaskTemplate::new("events", "single", "1.0.0").step(StepTemplate::new("only", "ok")),
        )
        .handler("ok", handler_fn(|_| async { Ok(json!(1)) }))
        .subscriber(narrowed.clone())
        .subscriber(silenced.clone())
        .build()
        .await
        .expect("build");
    assert_eq!(
        narrowed.config.lock().map(|c| c.clone()).ok().flatten(),
        Some(json!({ "channel": "#orders" }))
    );
    let names: Vec<String> = tasker
        .subscriber_stats()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(names.iter().any(|n| n.ends_with("::Narrowed")), "{names:?}");
    assert!(names.iter().any(|n| n == "trail"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with("::Silenced")),
        "{names:?}"
    );

    let worker = tasker.start_worker();
    let task = tasker
        .create_task(
            TaskRequest::new("single")
                .namespace("events")
                .version("1.0.0"),
        )
        .await
        .expect("create");
    tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    let events = narrowed.recorder.wait_for(1).await;
    assert_eq!(names_of(&events), ["task.completed"]);
    for _ in 0..300 {
        let stats = tasker.subscriber_stats();
        if stats.iter().any(|s| s.name == "trail" && s.delivered >= 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let trail = tasker
        .subscriber_stats()
        .into_iter()
        .find(|s| s.name == "trail")
        .expect("trail");
    // task.initialize_requested, task.start_requested, task.completed.
    assert_eq!((trail.delivered, trail.failed), (3, 0), "{trail:?}");
    assert!(silenced.0.events().is_empty());
}

fn names_of(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_ref()).collect()
}

/// What a bad events or subscriptions file does to a build: an error naming its file and key.
#[tokio::test]
async fn bad_event_and_subscription_files_fail_the_build_naming_file_and_key() {
    let db = TestDatabase::sqlite();
    let root = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("file.yml"), text).expect("write");
        dir
    };
    let reserved = write(
        "reserved",
        "events:\n  step:\n    exploded: { description: x }\n",
    );
    let error = db
        .builder()
        .configure(move |c| c.custom_events_directories = vec![reserved])
        .build()
        .await
        .expect_err("reserved");
    let text = error.to_string();
    assert!(matches!(error, Error::EventDefinitions(_)), "{text}");
    assert!(
        text.contains("reserved/file.yml` at `events.step.exploded`"),
        "{text}"
    );

    let unknown = write(
        "unknown",
        "subscriptions:\n  pager:\n    class: PagerDuty\n",
    );
    let error = db
        .builder()
        .configure(move |c| c.subscriptions_directories = vec![unknown])
        .build()
        .await
        .expect_err("unknown subscriber");
    let text = error.to_string();
    assert!(matches!(error, Error::Subscriptions(_)), "{text}");
    assert!(
        text.contains("unknown/file.yml` at `subscriptions.pager.class`: no registered subscriber is named `PagerDuty`"),
        "{text}"
    );

    let pattern = write(
        "pattern",
        "subscriptions:\n  log:\n    type: log\n    events: [task.failed, order.*]\n",
    );
    let error = db
        .builder()
        .configure(move |c| c.subscriptions_directories = vec![pattern])
        .build()
        .await
        .expect_err("unknown event");
    let text = error.to_string();
    assert!(
        text.contains("pattern/file.yml` at `subscriptions.log.events[1]`: `order.*` matches no published or declared event"),
        "{text}"
    );

    let missing = root.path().join("missing");
    let error = db
        .builder()
        .configure(move |c| c.subscriptions_directories = vec![missing])
        .build()
        .await
        .expect_err("missing directory");
    assert!(
        error
            .to_string()
            .contains("cannot read this directory of `subscriptions_directories`"),
        "{error}"
    );
}
