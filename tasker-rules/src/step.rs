//! Limits on a template's steps and their settings.

use std::fmt;
use std::time::Duration;

use crate::{MAX_RETRY_LIMIT, MAX_STEPS_PER_TEMPLATE};

/// Why a template's number of steps is refused; `Display` is the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepCountProblem {
    /// The template has no steps.
    Empty,
    /// The template has more than [`MAX_STEPS_PER_TEMPLATE`] steps (this many).
    TooMany(usize),
}

impl fmt::Display for StepCountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("template has no steps"),
            Self::TooMany(count) => write!(
                f,
                "template has {count} steps, over the maximum of {MAX_STEPS_PER_TEMPLATE}"
            ),
        }
    }
}

/// Why a template may not have `count` steps, if it may not: at least one, at most
/// [`MAX_STEPS_PER_TEMPLATE`].
pub fn step_count_problem(count: usize) -> Option<StepCountProblem> {
    if count == 0 {
        Some(StepCountProblem::Empty)
    } else if count > MAX_STEPS_PER_TEMPLATE {
        Some(StepCountProblem::TooMany(count))
    } else {
        None
    }
}

/// A retry limit over [`MAX_RETRY_LIMIT`] (this one); `Display` is the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLimitTooHigh(pub u64);

impl fmt::Display for RetryLimitTooHigh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry limit {} is over the maximum of {MAX_RETRY_LIMIT}",
            self.0
        )
    }
}

/// Why a step may not have the retry limit `limit`, if it may not: at most
/// [`MAX_RETRY_LIMIT`]. Taken as `u64` so a caller can check a value before narrowing it.
pub fn retry_limit_problem(limit: u64) -> Option<RetryLimitTooHigh> {
    (limit > u64::from(MAX_RETRY_LIMIT)).then_some(RetryLimitTooHigh(limit))
}

/// Why a step timeout is refused; `Display` is the message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeoutProblem {
    /// Not a finite number greater than 0 (this one).
    NotPositive(f64),
    /// Too large for a [`Duration`] (this many seconds).
    TooLarge(f64),
}

impl fmt::Display for TimeoutProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPositive(seconds) => write!(
                f,
                "timeout must be a finite number of seconds greater than 0, got {seconds}"
            ),
            // Anything too large has at least 20 digits: `3.6e19` reads better.
            Self::TooLarge(seconds) => write!(f, "timeout of {seconds:e} seconds is too large"),
        }
    }
}

/// Why a step may not time out after `seconds`, if it may not: a finite number greater than
/// 0 that fits in a [`Duration`].
pub fn timeout_problem(seconds: f64) -> Option<TimeoutProblem> {
    if !seconds.is_finite() || seconds <= 0.0 {
        Some(TimeoutProblem::NotPositive(seconds))
    } else if Duration::try_from_secs_f64(seconds).is_err() {
        Some(TimeoutProblem::TooLarge(seconds))
    } else {
        None
    }
}
