//! Metrics through the [`metrics`] facade: counters and histograms for tasks and steps, and the
//! depth and age of the ready queue. [`install_prometheus`] installs a recorder whose
//! [`PrometheusHandle::render`] gives the Prometheus text format (the REST API's `/metrics`).
//!
//! | Metric | Type | Meaning |
//! |---|---|---|
//! | `tasker_tasks_started_total` | counter | tasks whose first step was claimed here |
//! | `tasker_tasks_completed_total`, `_failed_total`, `_cancelled_total`, `_retried_total` | counter | task outcomes recorded here |
//! | `tasker_task_duration_seconds` | histogram | from the task's first step here to its end here |
//! | `tasker_steps_started_total` | counter | attempts claimed here |
//! | `tasker_steps_completed_total`, `_failed_total`, `_retried_total` | counter | attempt outcomes |
//! | `tasker_step_duration_seconds` | histogram | how long handlers ran, by `outcome` |
//! | `tasker_ready_steps` | gauge | steps ready to run now (all workers), sampled every sweep |
//! | `tasker_oldest_ready_step_age_seconds` | gauge | how long the oldest ready step has waited |
//! | `tasker_subscriber_failures_total` | counter | subscriber deliveries that failed, by `subscriber` |
//! | `tasker_schedule_runs_total` | counter | tasks schedules started here, by `schedule` |
//! | `tasker_schedule_missed_slots_total` | counter | missed slots skipped here (beyond `catch_up`), by `schedule` |
//!
//! Without an installed recorder every call is a no-op.

pub use metrics_exporter_prometheus::PrometheusHandle;

use crate::events::Event;

/// Buckets of the duration histograms, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs a process-wide Prometheus recorder and describes tasker's metrics; call it once,
/// before building engines.
pub fn install_prometheus() -> crate::Result<PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .map_err(crate::Error::MetricsExporter)?
        .install_recorder()
        .map_err(crate::Error::MetricsExporter)?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tasker_tasks_started_total",
        "Tasks whose first step was claimed."
    );
    describe_counter!("tasker_tasks_completed_total", "Tasks completed.");
    describe_counter!("tasker_tasks_failed_total", "Tasks that failed.");
    describe_counter!("tasker_tasks_cancelled_total", "Tasks cancelled.");
    describe_counter!(
        "tasker_tasks_retried_total",
        "Tasks sent back to pending by a retry."
    );
    describe_histogram!(
        "tasker_task_duration_seconds",
        metrics::Unit::Seconds,
        "From a task's first step in this process to its end."
    );
    describe_counter!("tasker_steps_started_total", "Step attempts claimed.");
    describe_counter!(
        "tasker_steps_completed_total",
        "Step attempts that succeeded."
    );
    describe_counter!("tasker_steps_failed_total", "Step attempts that failed.");
    describe_counter!(
        "tasker_steps_retried_total",
        "Failed steps sent back for another attempt."
    );
    describe_histogram!(
        "tasker_step_duration_seconds",
        metrics::Unit::Seconds,
        "How long step handlers ran."
    );
    describe_gauge!("tasker_ready_steps", "Steps ready to run now.");
    describe_gauge!(
        "tasker_oldest_ready_step_age_seconds",
        metrics::Unit::Seconds,
        "How long the oldest ready step has waited."
    );
    describe_counter!(
        "tasker_subscriber_failures_total",
        "Subscriber deliveries that failed."
    );
    describe_counter!("tasker_schedule_runs_total", "Tasks started by schedules.");
    describe_counter!(
        "tasker_schedule_missed_slots_total",
        "Missed schedule slots skipped (beyond catch_up)."
    );
}

/// Counts what `event` says happened.
pub(crate) fn record(event: &Event) {
    let seconds = event.duration_ms.map(|ms| ms / 1000.0);
    match event.name.as_ref() {
        "task.start_requested" => metrics::counter!("tasker_tasks_started_total").increment(1),
        "task.completed" => metrics::counter!("tasker_tasks_completed_total").increment(1),
        "task.failed" => metrics::counter!("tasker_tasks_failed_total").increment(1),
        "task.cancelled" => metrics::counter!("tasker_tasks_cancelled_total").increment(1),
        "task.retry_requested" => metrics::counter!("tasker_tasks_retried_total").increment(1),
        "step.execution_requested" => {
            metrics::counter!("tasker_steps_started_total").increment(1);
        }
        "step.completed" => {
            metrics::counter!("tasker_steps_completed_total").increment(1);
            if let Some(s) = seconds {
                metrics::histogram!("tasker_step_duration_seconds", "outcome" => "completed")
                    .record(s);
            }
        }
        "step.failed" => {
            metrics::counter!("tasker_steps_failed_total").increment(1);
            if let Some(s) = seconds {
                metrics::histogram!("tasker_step_duration_seconds", "outcome" => "failed")
                    .record(s);
            }
        }
        "step.retry_requested" => metrics::counter!("tasker_steps_retried_total").increment(1),
        _ => {}
    }
}

/// Records a task's duration in this process.
pub(crate) fn task_finished(seconds: f64) {
    metrics::histogram!("tasker_task_duration_seconds").record(seconds);
}

/// Sets the queue gauges.
pub(crate) fn queue(ready: i64, oldest_age_seconds: Option<f64>) {
    metrics::gauge!("tasker_ready_steps").set(ready as f64);
    metrics::gauge!("tasker_oldest_ready_step_age_seconds").set(oldest_age_seconds.unwrap_or(0.0));
}

/// Counts a failed subscriber delivery.
pub(crate) fn subscriber_failed(name: &str) {
    metrics::counter!("tasker_subscriber_failures_total", "subscriber" => name.to_owned())
        .increment(1);
}
