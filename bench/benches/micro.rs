//! Micro-benchmarks of the engine's in-process work, with no database: template parsing and
//! validation, retry delays, step dispatch and event publishing. `cargo bench -p tasker-bench`.
//!
//! Only public API is measured. Publishing an event into a `Tasker` (`emit`, `publish`) is
//! crate-private, and a hand-built `StepContext` publishes nowhere, so the event benchmarks
//! measure the public pieces of that path: record → event, redaction, pattern routing and the
//! broadcast channel `Tasker::subscribe` hands out.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tasker::handler::DynStepHandler;
use tasker::redact::Redactor;
use tasker::serde_json::{self, Value, json};
use tasker::template::parse_template;
use tasker::{BackoffConfig, Event, EventRecord, StepContext, StepTemplate, TaskTemplate};

fn main() {
    // A template that fails to load would benchmark the error path instead.
    if let Err(error) = parse_template(DIAMOND_YAML, "diamond4.yaml", None) {
        panic!("the benchmark's template does not load: {error}");
    }
    divan::main();
}

const DIAMOND_YAML: &str = "\
name: diamond4
namespace_name: bench
version: 1.0.0
step_templates:
  - name: a
    handler: noop
  - name: b
    handler: noop
    depends_on_step: a
  - name: c
    handler: noop
    depends_on_step: a
    default_retry_limit: 5
  - name: d
    handler: noop
    depends_on_steps: [b, c]
";

/// A root, `steps - 2` children of it and a join: the benchmark binary's fan-out shapes.
fn fan_out(steps: usize) -> TaskTemplate {
    let middle: Vec<String> = (0..steps.saturating_sub(2))
        .map(|i| format!("m{i}"))
        .collect();
    let mut template =
        TaskTemplate::new("bench", "fan", "1.0.0").step(StepTemplate::new("root", "noop"));
    for name in &middle {
        template = template.step(StepTemplate::new(name, "noop").depends_on(["root"]));
    }
    template.step(StepTemplate::new("join", "noop").depends_on(middle))
}

/// Parsing and validating a 4-step YAML template, as loading a templates directory does.
#[divan::bench]
fn template_parse_yaml() -> bool {
    parse_template(divan::black_box(DIAMOND_YAML), "diamond4.yaml", None).is_ok()
}

/// Validating a template built in code (graph, names, limits), by number of steps.
#[divan::bench(args = [4, 52, 1000])]
fn template_validate(bencher: divan::Bencher, steps: usize) {
    let template = fan_out(steps);
    bencher.bench(|| divan::black_box(&template).validate().is_ok());
}

/// The delay before the next attempt, by attempt number (table, then polynomial, then cap).
#[divan::bench(args = [1, 8, 40])]
fn backoff_delay(attempts: u32) -> std::time::Duration {
    BackoffConfig::default().delay(divan::black_box(attempts), None)
}

/// The same without jitter: the formula alone.
#[divan::bench(args = [1, 8, 40])]
fn backoff_delay_no_jitter(bencher: divan::Bencher, attempts: u32) {
    let config = BackoffConfig {
        jitter_enabled: false,
        ..BackoffConfig::default()
    };
    bencher.bench(|| config.delay(divan::black_box(attempts), None));
}

fn noop_handlers() -> HashMap<String, Arc<dyn DynStepHandler>> {
    let handler: Arc<dyn DynStepHandler> =
        Arc::new(tasker::handler_fn(|cx: StepContext| async move {
            Ok(json!({ "step": cx.step_name(), "parents": cx.parents().len() }))
        }));
    HashMap::from([("noop".to_owned(), handler)])
}

const CONTEXT: &str = r#"{"order_id": 42, "customer": {"id": 7, "email": "a@example.com"}}"#;
const PARENT_RESULT: &str = r#"{"reserved": true, "items": [1, 2, 3]}"#;

/// What a worker does around a handler, without the database: look the handler up by name,
/// parse the claimed step's context and parent results, build the `StepContext`, run the
/// handler (a ready future, polled once) and serialise its result.
#[divan::bench]
fn step_dispatch_inline(bencher: divan::Bencher) {
    let handlers = noop_handlers();
    bencher.bench(|| {
        let handler = handlers.get(divan::black_box("noop"))?;
        let cx = step_context();
        let mut attempt = handler.handle_dyn(&cx);
        let result = match attempt
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(result) => result,
            Poll::Pending => return None,
        };
        result.ok().and_then(|v| serde_json::to_string(&v).ok())
    });
}

/// The same, with the handler spawned as its own tokio task as the worker does (so a panic is
/// a failed attempt), on a current-thread runtime.
#[divan::bench]
fn step_dispatch_spawned(bencher: divan::Bencher) {
    let handlers = noop_handlers();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    bencher.bench(|| {
        let handler = Arc::clone(handlers.get(divan::black_box("noop"))?);
        let cx = step_context();
        let joined = runtime.block_on(async move {
            tokio::spawn(async move { handler.handle_dyn(&cx).await }).await
        });
        joined
            .ok()?
            .ok()
            .and_then(|v| serde_json::to_string(&v).ok())
    });
}

fn step_context() -> StepContext {
    let context = serde_json::from_str(CONTEXT).unwrap_or(Value::Null);
    let parents = HashMap::from([(
        "a".to_owned(),
        serde_json::from_str(PARENT_RESULT).unwrap_or(Value::Null),
    )]);
    StepContext::new(1, 2, "b", 1, context, parents, Value::Null)
}

fn step_record() -> EventRecord {
    EventRecord::completed_step_sample(1, 2, "b")
}

/// A committed transition turned into the event subscribers receive.
#[divan::bench]
fn event_from_record(bencher: divan::Bencher) {
    bencher.with_inputs(step_record).bench_values(Event::from);
}

/// Masking sensitive keys of an event's payload, done for every published event.
#[divan::bench]
fn event_redact_payload(bencher: divan::Bencher) {
    let redactor = Redactor::default();
    bencher
        .with_inputs(|| json!({ "attempt": 1, "duration_ms": 0.25, "worker": "host-1234" }))
        .bench_local_refs(|payload| redactor.redact(payload));
}

/// Matching one event against four subscribers' patterns.
#[divan::bench]
fn event_route(bencher: divan::Bencher) {
    let event = Event::from(step_record());
    let patterns = ["task.*", "step.failed", "step.*", "*"];
    bencher.bench(|| {
        patterns
            .iter()
            .filter(|p| divan::black_box(&event).matches(p))
            .count()
    });
}

/// One event through the broadcast channel `Tasker::subscribe` returns, to one receiver.
#[divan::bench]
fn event_broadcast(bencher: divan::Bencher) {
    let (sender, mut receiver) = tokio::sync::broadcast::channel::<Event>(1024);
    let event = Event::from(step_record());
    bencher.bench_local(|| {
        let _ = sender.send(event.clone());
        receiver.try_recv().is_ok()
    });
}
