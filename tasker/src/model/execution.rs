//! A task's execution context (the seed's `get_task_execution_context`): its steps counted by
//! where they stand, and what that says about the task.

use chrono::NaiveDateTime;
use schemars::JsonSchema;
use serde::Serialize;

use super::StepInfo;
use crate::state::StepState;

/// Where a task's steps stand, and what that says: its status, the action it calls for, its
/// health and how far it has come ([`Tasker::execution_context`](crate::Tasker::execution_context)).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ExecutionContext {
    /// Steps in all.
    pub total_steps: usize,
    /// Steps pending (ready or waiting for their parents).
    pub pending_steps: usize,
    /// Steps running now.
    pub in_progress_steps: usize,
    /// Steps complete or resolved by hand.
    pub completed_steps: usize,
    /// Steps whose last attempt failed (retrying or not).
    pub failed_steps: usize,
    /// Steps cancelled.
    pub cancelled_steps: usize,
    /// Steps a worker may claim now: pending or failed, their time come.
    pub ready_steps: usize,
    /// Failed steps that will not be retried (out of attempts, or not retryable).
    pub permanently_blocked_steps: usize,
    /// What the counts say, first match wins.
    pub execution_status: ExecutionStatus,
    /// What the status calls for.
    pub recommended_action: RecommendedAction,
    /// Whether failures are being recovered from.
    pub health_status: HealthStatus,
    /// Completed steps in percent of all, to two decimals (0 for a task without steps).
    pub completion_percentage: f64,
}

/// A task's execution status, by its steps (first match wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Some step is ready to run.
    HasReadySteps,
    /// None is ready, and some step is running.
    Processing,
    /// None is ready or running, and a failed step will not be retried.
    BlockedByFailures,
    /// Every step is complete or resolved.
    AllComplete,
    /// Steps wait for their parents or for a retry's time.
    WaitingForDependencies,
}

/// What an execution status calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecommendedAction {
    /// Run the ready steps.
    ExecuteReadySteps,
    /// Wait for the running steps.
    WaitForCompletion,
    /// Retry, resolve or cancel the failed steps.
    HandleFailures,
    /// Nothing is left to run.
    FinalizeTask,
    /// Wait for parents or backoffs.
    WaitForDependencies,
}

/// A task's health, by its failed steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// No step has failed.
    Healthy,
    /// Failed steps will be retried (or are ready to be).
    Recovering,
    /// A failed step will not be retried and nothing is ready.
    Blocked,
}

impl ExecutionContext {
    /// The context of a task whose steps are `steps`, at the database clock's `now`.
    ///
    /// As the seed, but a failed step counts as permanently blocked whenever no retry is
    /// scheduled for it (out of attempts, or not retryable), where the seed counted only the
    /// first: its tasks blocked by a permanent failure showed `waiting_for_dependencies`.
    pub fn of(steps: &[StepInfo], now: NaiveDateTime) -> Self {
        let count = |f: &dyn Fn(&StepInfo) -> bool| steps.iter().filter(|s| f(s)).count();
        let due = |s: &StepInfo| s.ready_at.is_some_and(|at| at <= now);
        let total = steps.len();
        let completed =
            count(&|s| matches!(s.state, StepState::Complete | StepState::ResolvedManually));
        let failed = count(&|s| s.state == StepState::Error);
        let ready = count(&|s| matches!(s.state, StepState::Pending | StepState::Error) && due(s));
        let blocked = count(&|s| s.state == StepState::Error && s.ready_at.is_none());
        let in_progress = count(&|s| s.state == StepState::InProgress);
        let (execution_status, recommended_action) = if ready > 0 {
            (
                ExecutionStatus::HasReadySteps,
                RecommendedAction::ExecuteReadySteps,
            )
        } else if in_progress > 0 {
            (
                ExecutionStatus::Processing,
                RecommendedAction::WaitForCompletion,
            )
        } else if blocked > 0 {
            (
                ExecutionStatus::BlockedByFailures,
                RecommendedAction::HandleFailures,
            )
        } else if total > 0 && completed == total {
            (
                ExecutionStatus::AllComplete,
                RecommendedAction::FinalizeTask,
            )
        } else {
            (
                ExecutionStatus::WaitingForDependencies,
                RecommendedAction::WaitForDependencies,
            )
        };
        let health_status = if failed == 0 {
            HealthStatus::Healthy
        } else if blocked > 0 && ready == 0 {
            HealthStatus::Blocked
        } else {
            HealthStatus::Recovering
        };
        let completion_percentage = if total == 0 {
            0.0
        } else {
            (10_000.0 * completed as f64 / total as f64).round() / 100.0
        };
        Self {
            total_steps: total,
            pending_steps: count(&|s| s.state == StepState::Pending),
            in_progress_steps: in_progress,
            completed_steps: completed,
            failed_steps: failed,
            cancelled_steps: count(&|s| s.state == StepState::Cancelled),
            ready_steps: ready,
            permanently_blocked_steps: blocked,
            execution_status,
            recommended_action,
            health_status,
            completion_percentage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 12, 6)
            .and_then(|d| d.and_hms_opt(10, minute, 0))
            .expect("a time")
    }

    fn step(state: StepState, ready_at: Option<NaiveDateTime>) -> StepInfo {
        StepInfo {
            step_id: 1,
            task_id: 1,
            name: "s".into(),
            state,
            attempts: 1,
            retry_limit: 3,
            retryable: true,
            skippable: false,
            results: None,
            remaining_parents: 0,
            ready_at,
            lease_owner: None,
            last_attempted_at: None,
            processed_at: None,
        }
    }

    fn status(steps: &[StepInfo]) -> (ExecutionStatus, RecommendedAction, HealthStatus, f64) {
        let cx = ExecutionContext::of(steps, at(30));
        (
            cx.execution_status,
            cx.recommended_action,
            cx.health_status,
            cx.completion_percentage,
        )
    }

    #[test]
    fn the_first_matching_rule_gives_the_status() {
        use ExecutionStatus as S;
        use HealthStatus as H;
        use RecommendedAction as A;
        use StepState::*;
        let done = step(Complete, None);
        let ready = step(Pending, Some(at(0)));
        let waiting = step(Pending, None);
        let retry_later = step(Error, Some(at(45)));
        let retry_now = step(Error, Some(at(29)));
        let dead = step(Error, None);
        let running = step(InProgress, None);
        assert_eq!(
            status(&[done.clone(), ready.clone(), dead.clone()]),
            (S::HasReadySteps, A::ExecuteReadySteps, H::Recovering, 33.33)
        );
        assert_eq!(
            status(&[done.clone(), retry_now.clone()]),
            (S::HasReadySteps, A::ExecuteReadySteps, H::Recovering, 50.0)
        );
        assert_eq!(
            status(&[running.clone(), waiting.clone()]),
            (S::Processing, A::WaitForCompletion, H::Healthy, 0.0)
        );
        assert_eq!(
            status(&[done.clone(), dead.clone(), waiting.clone()]),
            (S::BlockedByFailures, A::HandleFailures, H::Blocked, 33.33)
        );
        assert_eq!(
            status(&[done.clone(), step(ResolvedManually, None)]),
            (S::AllComplete, A::FinalizeTask, H::Healthy, 100.0)
        );
        assert_eq!(
            status(&[done, retry_later, waiting]),
            (
                S::WaitingForDependencies,
                A::WaitForDependencies,
                H::Recovering,
                33.33
            )
        );
        assert_eq!(
            status(&[]),
            (
                S::WaitingForDependencies,
                A::WaitForDependencies,
                H::Healthy,
                0.0
            )
        );
    }
}
