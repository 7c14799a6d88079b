//! Tracing spans: one `tasker.task` span per task this process runs steps of, and one
//! `tasker.step` span per attempt as its child.
//!
//! A task's span opens when this process first runs one of its steps and closes when this
//! process records the task's end (its status `ERROR` if the task failed). Steps of one task run
//! by several processes give one task span in each, joined by `task_id` and `correlation_id`.
//! A span whose task ends elsewhere is closed after an hour without a step here.

use std::time::{Duration, Instant};

use tracing::field::Empty;

use super::Inner;

/// How long a task's span stays open without a step running here.
const IDLE: Duration = Duration::from_secs(3600);

/// An open task span and when a step last used it.
pub(crate) struct TaskSpan {
    span: tracing::Span,
    opened: Instant,
    last_used: Instant,
}

/// The span of `task_id`, opened now if this is its first step here.
pub(crate) fn task_span(inner: &Inner, task_id: i64, named_task_id: i64) -> tracing::Span {
    let Ok(mut spans) = inner.task_spans.lock() else {
        return tracing::Span::none();
    };
    let entry = spans.entry(task_id).or_insert_with(|| {
        let template = inner.by_named_task.get(&named_task_id).map(|t| &t.template);
        let span = tracing::info_span!(
            parent: None,
            "tasker.task",
            task_id,
            namespace = template.map_or("", |t| t.namespace_name.as_str()),
            name = template.map_or("", |t| t.name.as_str()),
            version = template.map_or("", |t| t.version.as_str()),
            correlation_id = Empty,
            otel.status_code = Empty,
        );
        if let Some(correlation) = super::correlation(inner, task_id) {
            span.record("correlation_id", correlation);
        }
        TaskSpan {
            span,
            opened: Instant::now(),
            last_used: Instant::now(),
        }
    });
    entry.last_used = Instant::now();
    entry.span.clone()
}

/// Closes the span of a task that ended here.
pub(crate) fn close_task(inner: &Inner, task_id: i64, failed: bool) {
    let closed = inner
        .task_spans
        .lock()
        .ok()
        .and_then(|mut spans| spans.remove(&task_id));
    if let Some(task) = closed {
        task.span
            .record("otel.status_code", if failed { "ERROR" } else { "OK" });
        crate::metrics::task_finished(task.opened.elapsed().as_secs_f64());
    }
}

/// Closes the spans of tasks no step ran for in a long time (they ended in another process).
pub(crate) fn close_idle(inner: &Inner) {
    if let Ok(mut spans) = inner.task_spans.lock() {
        spans.retain(|_, task| task.last_used.elapsed() < IDLE);
    }
}
