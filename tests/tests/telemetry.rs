//! Spans, correlation ids, metrics and redaction, observed from outside: an in-memory
//! OpenTelemetry exporter, a captured log, a Prometheus render and a subscriber's payloads.
//!
//! One test in its own binary: it installs the process-wide tracing subscriber and metrics
//! recorder.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{SpanId, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tasker::StepResult;
use tasker::events::Event;
use tasker::prelude::*;
use tasker::serde_json::json;
use tasker::subscriber::{Subscriber, SubscriberError};
use tasker_tests::TestDatabase;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const CANARY: &str = "CANARY-7f3a9c";

tasker::custom_event! {
    /// A card was charged.
    pub CARD_CHARGED = "card.charged";
}

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut out) = self.0.lock() {
            out.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[derive(Clone, Default)]
struct Payloads(Arc<Mutex<Vec<String>>>);

impl Subscriber for Payloads {
    fn events(&self) -> &[&str] {
        &["*"]
    }
    async fn handle(&self, event: &Event) -> Result<(), SubscriberError> {
        let text = tasker::serde_json::to_string(event)?;
        if let Ok(mut all) = self.0.lock() {
            all.push(text);
        }
        Ok(())
    }
}

/// Fails its first attempt, then charges and reports it with secrets in the result and event.
struct Charge(AtomicUsize);

impl StepHandler for Charge {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(StepError::retryable("gateway timeout"));
        }
        cx.publish(&CARD_CHARGED, json!({ "amount": 3000, "api_key": CANARY }))?;
        Ok(json!({ "charged": true, "token": CANARY }))
    }
}

fn spans_named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diamond_is_one_span_tree_with_metrics_and_no_secrets() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let log = Captured::default();
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::TRACE)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(log.clone())
                .with_ansi(false),
        )
        .with(tasker::telemetry::layer(&provider))
        .init();
    let metrics = tasker::metrics::install_prometheus().expect("recorder");

    let db = TestDatabase::sqlite();
    let payloads = Payloads::default();
    let tasker = db
        .builder()
        .template(
            TaskTemplate::new("shop", "checkout", "1.0.0")
                .step(StepTemplate::new("cart", "ok"))
                .step(StepTemplate::new("stock", "ok").depends_on(["cart"]))
                .step(StepTemplate::new("charge", "charge").depends_on(["cart"]))
                .step(StepTemplate::new("receipt", "ok").depends_on(["stock", "charge"])),
        )
        .handler("ok", handler_fn(|_| async { Ok(json!({ "ok": true })) }))
        .handler("charge", Charge(AtomicUsize::new(0)))
        .subscriber(payloads.clone())
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker
        .create_task(
            TaskRequest::new("checkout")
                .namespace("shop")
                .version("1.0.0")
                .correlation_id("req-42")
                .context(json!({ "user": { "password": CANARY }, "cart_id": 7 })),
        )
        .await
        .expect("create");
    let done = tasker
        .wait_for_task(task.id, Duration::from_secs(30))
        .await
        .expect("wait");
    worker.shutdown().await;
    assert_eq!(done.state, TaskState::Complete);

    // The task's span closes when its end is published; wait for it.
    let mut spans = Vec::new();
    for _ in 0..300 {
        spans = exporter.get_finished_spans().expect("spans");
        if !spans_named(&spans, "tasker.task").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tasks = spans_named(&spans, "tasker.task");
    assert_eq!(
        tasks.len(),
        1,
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let root = tasks[0];
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    assert_eq!(root.status, Status::Ok);
    assert_eq!(attribute(root, "task_id"), Some(task.id.to_string()));
    assert_eq!(attribute(root, "name").as_deref(), Some("checkout"));
    assert_eq!(attribute(root, "correlation_id").as_deref(), Some("req-42"));

    let steps = spans_named(&spans, "tasker.step");
    // Four steps, one of them attempted twice.
    assert_eq!(steps.len(), 5);
    for step in &steps {
        assert_eq!(step.parent_span_id, root.span_context.span_id());
        assert_eq!(step.span_context.trace_id(), root.span_context.trace_id());
        assert_eq!(attribute(step, "correlation_id").as_deref(), Some("req-42"));
    }
    let charge: Vec<_> = steps
        .iter()
        .filter(|s| attribute(s, "step").as_deref() == Some("charge"))
        .collect();
    assert_eq!(charge.len(), 2);
    let failed = charge
        .iter()
        .find(|s| attribute(s, "attempt").as_deref() == Some("1"))
        .expect("first attempt");
    assert!(
        matches!(&failed.status, Status::Error { description } if description == "gateway timeout"),
        "{:?}",
        failed.status
    );
    assert_eq!(
        attribute(failed, "error").as_deref(),
        Some("gateway timeout")
    );
    let retried = charge
        .iter()
        .find(|s| attribute(s, "attempt").as_deref() == Some("2"))
        .expect("second attempt");
    assert_eq!(retried.status, Status::Ok);

    // Every event of the task carries the request's correlation id.
    for _ in 0..300 {
        if payloads.0.lock().map(|p| p.len()).unwrap_or(0) > 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let published = payloads.0.lock().map(|p| p.clone()).unwrap_or_default();
    let of_task: Vec<&String> = published
        .iter()
        .filter(|p| p.contains(&format!("\"task_id\":{}", task.id)))
        .collect();
    assert!(of_task.len() > 20, "{}", of_task.len());
    assert!(
        of_task
            .iter()
            .all(|p| p.contains("\"correlation_id\":\"req-42\""))
    );

    // Metrics counted the work.
    let text = metrics.render();
    for line in [
        "tasker_steps_completed_total 4",
        "tasker_steps_failed_total 1",
        "tasker_steps_retried_total 1",
        "tasker_tasks_completed_total 1",
        "tasker_step_duration_seconds_count{outcome=\"completed\"} 4",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    assert!(
        text.contains("tasker_task_duration_seconds_count 1"),
        "{text}"
    );

    // The canary reached the step (its result is stored as written) but no output.
    let steps_rows = tasker.steps(task.id).await.expect("steps");
    let charged = steps_rows
        .iter()
        .find(|s| s.name == "charge")
        .expect("charge");
    assert_eq!(charged.results.as_ref().expect("results")["token"], CANARY);
    let custom = published
        .iter()
        .find(|p| p.contains("card.charged"))
        .expect("custom event delivered");
    assert!(custom.contains("[FILTERED]"), "{custom}");
    let logged =
        String::from_utf8_lossy(&log.0.lock().map(|l| l.clone()).unwrap_or_default()).into_owned();
    assert!(logged.contains("tasker.step"), "the log captured nothing");
    let exported = format!("{spans:?}");
    for (what, output) in [
        ("log", &logged),
        ("spans", &exported),
        ("events", &published.join("\n")),
    ] {
        assert!(
            !output.contains(CANARY),
            "the canary leaked into the {what}"
        );
    }
}
