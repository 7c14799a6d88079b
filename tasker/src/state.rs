//! Task and step states, the transitions between them, and the event each transition publishes.
//!
//! Both machines use the seed engine's six states and exactly its allowed transitions. A
//! transition to the current state is not an error: it is a no-op that reports `false`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! states {
    ($(#[$meta:meta])* $ty:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[derive(schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $ty {
            /// Created, waiting to run.
            Pending,
            /// Running now.
            InProgress,
            /// Finished successfully.
            Complete,
            /// Failed (a step may be retried; see its `ready_at`).
            Error,
            /// Cancelled by an operator or with its task.
            Cancelled,
            /// Marked as done by an operator.
            ResolvedManually,
        }

        impl $ty {
            /// Every state, in declaration order.
            pub const ALL: [$ty; 6] = [
                $ty::Pending,
                $ty::InProgress,
                $ty::Complete,
                $ty::Error,
                $ty::Cancelled,
                $ty::ResolvedManually,
            ];

            /// The state's name as stored in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $ty::Pending => "pending",
                    $ty::InProgress => "in_progress",
                    $ty::Complete => "complete",
                    $ty::Error => "error",
                    $ty::Cancelled => "cancelled",
                    $ty::ResolvedManually => "resolved_manually",
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .into_iter()
                    .find(|state| state.as_str() == s)
                    .ok_or_else(|| UnknownState(s.to_owned()))
            }
        }
    };
}

states!(
    /// The state of a task.
    TaskState
);
states!(
    /// The state of a workflow step.
    StepState
);

/// A state name that is not one of the six.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown state `{0}`, expected one of `pending`, `in_progress`, `complete`, `error`, `cancelled`, `resolved_manually`"
)]
pub struct UnknownState(pub String);

/// Whether a transition is allowed, refused, or a no-op because the entity is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The transition is allowed.
    Allowed,
    /// `from == to`: nothing to do (reported as `false`, never as an error).
    Same,
    /// The state machine forbids it.
    Refused,
}

impl TaskState {
    /// Whether the task machine allows `self → to` (the seed's table).
    pub fn check(self, to: TaskState) -> Transition {
        use TaskState::*;
        if self == to {
            return Transition::Same;
        }
        let allowed = matches!(
            (self, to),
            (Pending, InProgress | Cancelled | Error)
                | (InProgress, Complete | Error | Cancelled | Pending)
                | (Error, Pending | ResolvedManually)
                | (Complete, Cancelled)
                | (ResolvedManually, Cancelled)
        );
        if allowed {
            Transition::Allowed
        } else {
            Transition::Refused
        }
    }

    /// Whether the task can no longer make progress on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Complete | TaskState::Cancelled | TaskState::ResolvedManually
        )
    }

    /// The event a transition into `self` publishes, given where it came from.
    pub fn event(from: Option<TaskState>, to: TaskState) -> &'static str {
        match (from, to) {
            (Some(TaskState::Error), TaskState::Pending) => "task.retry_requested",
            (_, TaskState::Pending) => "task.initialize_requested",
            (_, TaskState::InProgress) => "task.start_requested",
            (_, TaskState::Complete) => "task.completed",
            (_, TaskState::Error) => "task.failed",
            (_, TaskState::Cancelled) => "task.cancelled",
            (_, TaskState::ResolvedManually) => "task.resolved_manually",
        }
    }
}

impl StepState {
    /// Whether the step machine allows `self → to` (the seed's table).
    pub fn check(self, to: StepState) -> Transition {
        use StepState::*;
        if self == to {
            return Transition::Same;
        }
        let allowed = matches!(
            (self, to),
            (Pending, InProgress | Error | Cancelled | ResolvedManually)
                | (InProgress, Complete | Error | Cancelled)
                | (Error, Pending | ResolvedManually)
        );
        if allowed {
            Transition::Allowed
        } else {
            Transition::Refused
        }
    }

    /// Whether nothing can leave this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepState::Complete | StepState::Cancelled | StepState::ResolvedManually
        )
    }

    /// Whether children may run once the step is in this state.
    pub fn satisfies_dependents(self) -> bool {
        matches!(self, StepState::Complete | StepState::ResolvedManually)
    }

    /// The event a transition into `self` publishes, given where it came from.
    pub fn event(from: Option<StepState>, to: StepState) -> &'static str {
        match (from, to) {
            (Some(StepState::Error), StepState::Pending) => "step.retry_requested",
            (_, StepState::Pending) => "step.initialize_requested",
            (_, StepState::InProgress) => "step.execution_requested",
            (_, StepState::Complete) => "step.completed",
            (_, StepState::Error) => "step.failed",
            (_, StepState::Cancelled) => "step.cancelled",
            (_, StepState::ResolvedManually) => "step.resolved_manually",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's tables (reference §1.3), written out independently of `check`.
    const TASK_ALLOWED: &[(TaskState, TaskState)] = &[
        (TaskState::Pending, TaskState::InProgress),
        (TaskState::Pending, TaskState::Cancelled),
        (TaskState::Pending, TaskState::Error),
        (TaskState::InProgress, TaskState::Complete),
        (TaskState::InProgress, TaskState::Error),
        (TaskState::InProgress, TaskState::Cancelled),
        (TaskState::InProgress, TaskState::Pending),
        (TaskState::Error, TaskState::Pending),
        (TaskState::Error, TaskState::ResolvedManually),
        (TaskState::Complete, TaskState::Cancelled),
        (TaskState::ResolvedManually, TaskState::Cancelled),
    ];
    const STEP_ALLOWED: &[(StepState, StepState)] = &[
        (StepState::Pending, StepState::InProgress),
        (StepState::Pending, StepState::Error),
        (StepState::Pending, StepState::Cancelled),
        (StepState::Pending, StepState::ResolvedManually),
        (StepState::InProgress, StepState::Complete),
        (StepState::InProgress, StepState::Error),
        (StepState::InProgress, StepState::Cancelled),
        (StepState::Error, StepState::Pending),
        (StepState::Error, StepState::ResolvedManually),
    ];

    #[test]
    fn every_task_transition_is_allowed_or_refused_as_the_seed_says() {
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                let expected = if from == to {
                    Transition::Same
                } else if TASK_ALLOWED.contains(&(from, to)) {
                    Transition::Allowed
                } else {
                    Transition::Refused
                };
                assert_eq!(from.check(to), expected, "task {from} -> {to}");
            }
        }
    }

    #[test]
    fn every_step_transition_is_allowed_or_refused_as_the_seed_says() {
        for from in StepState::ALL {
            for to in StepState::ALL {
                let expected = if from == to {
                    Transition::Same
                } else if STEP_ALLOWED.contains(&(from, to)) {
                    Transition::Allowed
                } else {
                    Transition::Refused
                };
                assert_eq!(from.check(to), expected, "step {from} -> {to}");
            }
        }
        for state in [
            StepState::Complete,
            StepState::Cancelled,
            StepState::ResolvedManually,
        ] {
            assert!(
                StepState::ALL
                    .iter()
                    .all(|&to| state.check(to) != Transition::Allowed),
                "{state} is terminal"
            );
        }
    }

    #[test]
    fn names_round_trip_and_events_follow_the_catalog() {
        for state in StepState::ALL {
            assert_eq!(state.as_str().parse::<StepState>(), Ok(state));
        }
        assert!("running".parse::<TaskState>().is_err());
        assert_eq!(
            StepState::event(Some(StepState::Error), StepState::Pending),
            "step.retry_requested"
        );
        assert_eq!(
            StepState::event(Some(StepState::Pending), StepState::InProgress),
            "step.execution_requested"
        );
        assert_eq!(
            TaskState::event(Some(TaskState::Error), TaskState::Pending),
            "task.retry_requested"
        );
        assert_eq!(
            TaskState::event(None, TaskState::Pending),
            "task.initialize_requested"
        );
    }
}
