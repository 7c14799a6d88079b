//! Runs the `{{name}}` workflow end to end with `tasker::testing`: a temporary database and a
//! clock the test moves, so a retry runs without waiting for its backoff.

use std::time::Duration;

use tasker::prelude::*;
use tasker::testing::Harness;
use {{imports}};

#[tasker::test]
async fn {{name}}_runs_to_completion() -> tasker::Result<()> {
    let harness = Harness::new(Tasker::builder()).await?;
    let context = {{context_type}} { id: 1 };
    let task = harness.tasker().create::<{{handler_type}}>(&context).await?;
    harness.run_until_idle().await?;
    assert_eq!(harness.tasker().task(task.id).await?.state, TaskState::Complete);
    Ok(())
}

#[tasker::test]
async fn {{name}}_retries_a_failed_step() -> tasker::Result<()> {
    let harness = Harness::new(Tasker::builder()).await?;
    // The first attempt of `{{first_step}}` fails as a retryable error would.
    harness.fail_step("{{first_step}}", 1, true);
    let context = {{context_type}} { id: 1 };
    let task = harness.tasker().create::<{{handler_type}}>(&context).await?;
    harness.run_until_idle().await?;
    assert_ne!(harness.tasker().task(task.id).await?.state, TaskState::Complete);
    // Past its backoff, the retry runs and the workflow completes.
    harness.advance(Duration::from_secs(3600)).await?;
    harness.run_until_idle().await?;
    assert_eq!(harness.tasker().task(task.id).await?.state, TaskState::Complete);
    Ok(())
}
