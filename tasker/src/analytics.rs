//! Analytics over the tasks created within a period ([`Tasker::performance`],
//! [`Tasker::bottlenecks`], and the REST API's `/analytics` routes): throughput, durations and
//! error rates, and the slowest tasks and steps.
//!
//! [`Tasker::performance`]: crate::Tasker::performance
//! [`Tasker::bottlenecks`]: crate::Tasker::bottlenecks

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::state::{StepState, TaskState};
use crate::store::Timed;

/// Percentiles of durations, in seconds (none when there are no durations).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Percentiles {
    /// How many durations.
    pub count: usize,
    /// The median.
    pub p50: Option<f64>,
    /// The 95th percentile.
    pub p95: Option<f64>,
    /// The 99th percentile.
    pub p99: Option<f64>,
    /// The longest.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Nearest-rank percentiles of `seconds`.
    fn of(mut seconds: Vec<f64>) -> Self {
        seconds.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let n = seconds.len();
            (n > 0).then(|| seconds[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        Self {
            count: seconds.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: seconds.last().copied(),
        }
    }
}

/// How the tasks created within a period fared.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Performance {
    /// The period, in hours back from now.
    pub period_hours: f64,
    /// Tasks created in the period, by their state now.
    pub tasks_by_state: BTreeMap<String, usize>,
    /// Their steps, by state.
    pub steps_by_state: BTreeMap<String, usize>,
    /// Of the tasks that finished, the share complete (none when none finished).
    pub completion_rate: Option<f64>,
    /// Of the tasks that finished, the share in `error`.
    pub error_rate: Option<f64>,
    /// Tasks completed per hour of the period.
    pub tasks_completed_per_hour: f64,
    /// Steps completed per hour of the period.
    pub steps_completed_per_hour: f64,
    /// From creation to completion, of the complete tasks.
    pub task_seconds: Percentiles,
    /// The last attempt of each complete step.
    pub step_seconds: Percentiles,
    /// Attempts beyond the first, over all the steps.
    pub retries: i64,
}

/// A task among the slowest.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SlowTask {
    /// The task.
    pub task_id: i64,
    /// Its template, `namespace/name@version`.
    pub template: String,
    /// From creation to completion.
    pub seconds: f64,
}

/// A step (by template and name) among the slowest.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SlowStep {
    /// Its template, `namespace/name@version`.
    pub template: String,
    /// The step's name.
    pub step: String,
    /// The durations of its complete runs.
    pub seconds: Percentiles,
    /// How many such steps the period's tasks have.
    pub steps: usize,
    /// The share of them in `error` now.
    pub error_rate: f64,
    /// Attempts per step, on average.
    pub mean_attempts: f64,
}

/// The slowest tasks and steps of a period.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Bottlenecks {
    /// The period, in hours back from now.
    pub period_hours: f64,
    /// The slowest complete tasks, slowest first.
    pub slowest_tasks: Vec<SlowTask>,
    /// The steps with the highest 95th percentile, slowest first.
    pub slowest_steps: Vec<SlowStep>,
}

fn by_state(rows: &[Timed]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(row.state.clone()).or_default() += 1;
    }
    counts
}

fn seconds_of(rows: &[Timed], state: &str) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.state == state)
        .filter_map(|r| r.seconds)
        .collect()
}

/// The performance report of `tasks` and their `steps`, created within `period`.
pub(crate) fn performance(period: Duration, tasks: &[Timed], steps: &[Timed]) -> Performance {
    let hours = period.as_secs_f64() / 3600.0;
    let count = |rows: &[Timed], state: &str| rows.iter().filter(|r| r.state == state).count();
    let (complete, error) = (
        count(tasks, TaskState::Complete.as_str()),
        count(tasks, TaskState::Error.as_str()),
    );
    let finished = complete + error + count(tasks, TaskState::Cancelled.as_str());
    let share = |n: usize| (finished > 0).then(|| n as f64 / finished as f64);
    let steps_complete = count(steps, StepState::Complete.as_str());
    Performance {
        period_hours: hours,
        tasks_by_state: by_state(tasks),
        steps_by_state: by_state(steps),
        completion_rate: share(complete),
        error_rate: share(error),
        tasks_completed_per_hour: complete as f64 / hours,
        steps_completed_per_hour: steps_complete as f64 / hours,
        task_seconds: Percentiles::of(seconds_of(tasks, TaskState::Complete.as_str())),
        step_seconds: Percentiles::of(seconds_of(steps, StepState::Complete.as_str())),
        retries: steps.iter().map(|s| (s.attempts - 1).max(0)).sum(),
    }
}

/// The `limit` slowest complete tasks and steps among `tasks` and `steps`.
pub(crate) fn bottlenecks(
    period: Duration,
    tasks: &[Timed],
    steps: &[Timed],
    limit: usize,
) -> Bottlenecks {
    let complete = TaskState::Complete.as_str();
    let mut slowest_tasks: Vec<SlowTask> = tasks
        .iter()
        .filter(|t| t.state == complete)
        .filter_map(|t| {
            Some(SlowTask {
                task_id: t.id,
                template: t.template.clone(),
                seconds: t.seconds?,
            })
        })
        .collect();
    slowest_tasks.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    slowest_tasks.truncate(limit);
    let mut groups: BTreeMap<(&str, &str), Vec<&Timed>> = BTreeMap::new();
    for step in steps {
        groups
            .entry((step.template.as_str(), step.name.as_str()))
            .or_default()
            .push(step);
    }
    let mut slowest_steps: Vec<SlowStep> = groups
        .into_iter()
        .map(|((template, step), rows)| {
            let n = rows.len();
            let errors = rows
                .iter()
                .filter(|r| r.state == StepState::Error.as_str())
                .count();
            let complete = StepState::Complete.as_str();
            SlowStep {
                template: template.to_owned(),
                step: step.to_owned(),
                seconds: Percentiles::of(
                    rows.iter()
                        .filter(|r| r.state == complete)
                        .filter_map(|r| r.seconds)
                        .collect(),
                ),
                steps: n,
                error_rate: errors as f64 / n as f64,
                mean_attempts: rows.iter().map(|r| r.attempts).sum::<i64>() as f64 / n as f64,
            }
        })
        .collect();
    slowest_steps.sort_by(|a, b| {
        let key = |s: &SlowStep| s.seconds.p95.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a))
    });
    slowest_steps.truncate(limit);
    Bottlenecks {
        period_hours: period.as_secs_f64() / 3600.0,
        slowest_tasks,
        slowest_steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (p.count, p.p50, p.p95, p.p99, p.max),
            (100, Some(50.0), Some(95.0), Some(99.0), Some(100.0))
        );
        let one = Percentiles::of(vec![2.5]);
        assert_eq!((one.p50, one.p99), (Some(2.5), Some(2.5)));
        assert_eq!(Percentiles::of(Vec::new()).p50, None);
    }
}
