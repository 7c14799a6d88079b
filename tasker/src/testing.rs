//! A harness for tests of your workflows (feature `testing`): an engine on a temporary SQLite
//! file whose clock you move instead of waiting for it, steps run until nothing is left to
//! run, and failures injected into named steps.
//!
//! Every time rule reads the engine's clock, so moving it drives them all: retry backoff
//! (server `Retry-After` included), delayed tasks, schedules, deadlines and leases. A retry after an hour
//! of backoff runs in milliseconds:
//!
//! ```no_run
//! # use std::time::Duration;
//! # use tasker::prelude::*;
//! # use tasker::testing::Harness;
//! # async fn example(builder: tasker::TaskerBuilder) -> tasker::Result<()> {
//! let harness = Harness::new(builder).await?;
//! harness.fail_step("charge", 1, true);
//! let task = harness.tasker().create_task(TaskRequest::new("order")).await?.id;
//! harness.run_until_idle().await?; // the charge failed and waits for its backoff
//! harness.advance(Duration::from_secs(3600)).await?;
//! harness.run_until_idle().await?; // its retry ran
//! assert_eq!(harness.tasker().task(task).await?.state, TaskState::Complete);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::engine::TaskerBuilder;
use crate::{Result, StepError, Tasker};

/// Who the harness's attempts belong to.
const OWNER: &str = "tasker-testing";

/// An engine for tests: a temporary SQLite file, a clock the test moves, and injected step
/// failures. Dropping it deletes the file.
pub struct Harness {
    tasker: Tasker,
    /// Step name → (failures left to inject, whether they are retryable).
    failures: Mutex<HashMap<String, (u32, bool)>>,
    // Declared last: the engine's connections close before the file goes.
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Builds `builder`'s engine on a new temporary SQLite file, its clock at the real time.
    /// Steps run only when the test calls [`Harness::run_until_idle`].
    pub async fn new(builder: TaskerBuilder) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(crate::Error::TempDir)?;
        let path = dir.path().join("tasker.db");
        let tasker = builder
            .database_url(path.display().to_string())
            .configure(|c| c.migrate_on_start = true)
            .build()
            .await?;
        Ok(Self {
            tasker,
            failures: Mutex::default(),
            _dir: dir,
        })
    }

    /// The engine: create tasks, read their state, operate on them.
    pub fn tasker(&self) -> &Tasker {
        &self.tasker
    }

    /// The engine's clock now (UTC).
    pub async fn now(&self) -> Result<chrono::NaiveDateTime> {
        self.tasker.inner().store.run(|store| store.clock()).await
    }

    /// Moves the engine's clock `by` forward. Nothing runs until the next
    /// [`Harness::run_until_idle`].
    pub async fn advance(&self, by: Duration) -> Result<()> {
        let seconds = by.as_secs_f64();
        self.tasker
            .inner()
            .store
            .run(move |store| store.advance_clock(seconds))
            .await
    }

    /// Makes the next `times` attempts of steps named `step` fail, without running their
    /// handler: retryable failures back off and retry as a handler's would, permanent ones
    /// fail the step at once.
    pub fn fail_step(&self, step: &str, times: u32, retryable: bool) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.insert(step.to_owned(), (times, retryable));
        }
    }

    /// Runs what is ready now (delayed tasks whose time came, the slots of schedules that came
    /// due, retries whose backoff passed, steps whose worker's lease expired, the children of
    /// what completes), and ends overdue tasks, until nothing is left to run at this clock;
    /// returns how many attempts ran.
    pub async fn run_until_idle(&self) -> Result<usize> {
        let lease = self.tasker.inner().config.lease;
        let mut attempts = 0;
        loop {
            self.tasker.run_due_schedules().await?;
            self.tasker.start_due_tasks().await?;
            self.tasker.recover_expired_leases().await?;
            self.tasker.enforce_deadlines().await?;
            let claimed = self.tasker.claim_steps(OWNER, 64, lease).await?;
            if claimed.is_empty() {
                return Ok(attempts);
            }
            attempts += claimed.len();
            let mut outcomes = Vec::with_capacity(claimed.len());
            for step in claimed {
                let injected = self.injected(&step.name);
                outcomes.push(self.tasker.attempt_claimed(OWNER, step, injected).await);
            }
            self.tasker.complete_steps(outcomes).await?;
        }
    }

    /// The failure to inject into the next attempt of `step`, if any is left.
    fn injected(&self, step: &str) -> Option<StepError> {
        let mut failures = self.failures.lock().ok()?;
        let (left, retryable) = failures.get_mut(step)?;
        if *left == 0 {
            return None;
        }
        *left -= 1;
        let message = format!("injected failure of `{step}`");
        Some(if *retryable {
            StepError::retryable(message)
        } else {
            StepError::permanent(message)
        })
    }
}
