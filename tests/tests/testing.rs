//! `tasker::testing`: the harness users test their workflows with. Its clock moves when the
//! test says, and every time rule (backoff, delayed starts, deadlines) follows it; failures are
//! injected by step name.

use std::time::Duration;

use tasker::prelude::*;
use tasker::serde_json::json;
use tasker::testing::Harness;

const HOUR: Duration = Duration::from_secs(3600);

/// `fetch → charge`, with backoffs of an hour, then two.
fn builder() -> tasker::TaskerBuilder {
    Tasker::builder()
        .template(
            TaskTemplate::new("shop", "order", "1.0.0")
                .step(StepTemplate::new("fetch", "ok"))
                .step(
                    StepTemplate::new("charge", "ok")
                        .depends_on(["fetch"])
                        .retry_limit(3),
                ),
        )
        .handler(
            "ok",
            handler_fn(|cx| async move { Ok(json!({ "step": cx.step_name() })) }),
        )
        .configure(|c| {
            c.backoff.table = vec![3600.0, 7200.0];
            c.backoff.jitter_enabled = false;
            c.backoff.max = Duration::from_secs(86_400);
        })
}

fn order() -> TaskRequest {
    TaskRequest::new("order").namespace("shop").version("1.0.0")
}

/// Two retryable failures back off an hour, then two; the retries run as soon as the clock
/// passes each backoff, never before, with no real waiting.
#[tokio::test]
async fn backoffs_of_hours_follow_the_test_clock() {
    let harness = Harness::new(builder()).await.expect("harness");
    harness.fail_step("charge", 2, true);
    let tasker = harness.tasker();
    let id = tasker.create_task(order()).await.expect("create").id;

    assert_eq!(
        harness.run_until_idle().await.expect("run"),
        2,
        "fetch, then charge"
    );
    let charge = |steps: Vec<tasker::StepInfo>| steps.into_iter().find(|s| s.name == "charge");
    let failed = charge(tasker.steps(id).await.expect("steps")).expect("charge");
    assert_eq!((failed.state, failed.attempts), (StepState::Error, 1));
    let retry_at = failed.ready_at.expect("a retry time");
    let now = harness.now().await.expect("clock");
    let waits = (retry_at - now).num_seconds();
    assert!((3590..=3600).contains(&waits), "backoff {waits} s");

    harness
        .advance(HOUR - Duration::from_secs(30))
        .await
        .expect("advance");
    assert_eq!(
        harness.run_until_idle().await.expect("run"),
        0,
        "retried early"
    );
    harness
        .advance(Duration::from_secs(60))
        .await
        .expect("advance");
    assert_eq!(
        harness.run_until_idle().await.expect("run"),
        1,
        "the first retry"
    );
    harness.advance(2 * HOUR).await.expect("advance");
    assert_eq!(
        harness.run_until_idle().await.expect("run"),
        1,
        "the second retry"
    );

    let task = tasker.task(id).await.expect("task");
    assert_eq!(task.state, TaskState::Complete);
    let charge = charge(tasker.steps(id).await.expect("steps")).expect("charge");
    assert_eq!(charge.attempts, 3);
    assert_eq!(charge.results, Some(json!({ "step": "charge" })));
}

/// A permanent injected failure fails the step at once: no retry, the task in error.
#[tokio::test]
async fn a_permanent_injected_failure_fails_the_task() {
    let harness = Harness::new(builder()).await.expect("harness");
    harness.fail_step("fetch", 1, false);
    let id = harness
        .tasker()
        .create_task(order())
        .await
        .expect("create")
        .id;
    assert_eq!(harness.run_until_idle().await.expect("run"), 1);
    harness.advance(24 * HOUR).await.expect("advance");
    assert_eq!(harness.run_until_idle().await.expect("run"), 0);
    let task = harness.tasker().task(id).await.expect("task");
    assert_eq!(task.state, TaskState::Error);
}

/// A task delayed by a day starts when the clock reaches it; a deadline ends a task whose
/// retry waits past it.
#[tokio::test]
async fn delayed_starts_and_deadlines_follow_the_test_clock() {
    let harness = Harness::new(builder()).await.expect("harness");
    let tasker = harness.tasker();
    let later = tasker
        .create_task(order().delay(24 * HOUR))
        .await
        .expect("create")
        .id;
    assert_eq!(harness.run_until_idle().await.expect("run"), 0);
    harness.advance(23 * HOUR).await.expect("advance");
    assert_eq!(
        harness.run_until_idle().await.expect("run"),
        0,
        "started early"
    );
    harness.advance(2 * HOUR).await.expect("advance");
    assert_eq!(harness.run_until_idle().await.expect("run"), 2);
    assert_eq!(
        tasker.task(later).await.expect("task").state,
        TaskState::Complete
    );

    // The charge fails and would retry in an hour; the task's deadline is in half an hour.
    harness.fail_step("charge", 1, true);
    let overdue = tasker
        .create_task(order().timeout(HOUR / 2))
        .await
        .expect("create")
        .id;
    assert_eq!(harness.run_until_idle().await.expect("run"), 2);
    assert_eq!(
        tasker.task(overdue).await.expect("task").state,
        TaskState::InProgress
    );
    harness.advance(HOUR).await.expect("advance");
    assert_eq!(
        harness.run_until_idle().await.expect("run"),
        0,
        "ran past its deadline"
    );
    let task = tasker.task(overdue).await.expect("task");
    assert_eq!(task.state, TaskState::Error);
    let transitions = tasker.task_transitions(overdue).await.expect("transitions");
    assert_eq!(
        transitions.last().map(|t| t.metadata.clone()),
        Some(json!({ "reason": "deadline_exceeded" }))
    );
}

/// A schedule's slots come due as the clock moves: one task per slot passed on time, and after
/// a jump of hours only the slot on time runs (the others were missed, and it catches up none).
#[tokio::test]
async fn schedules_follow_the_test_clock() {
    let builder = builder().template(
        TaskTemplate::new("shop", "restock", "1.0.0")
            .step(StepTemplate::new("count", "ok"))
            .schedule(tasker::ScheduleTemplate::new("*/15 * * * *")),
    );
    let harness = Harness::new(builder).await.expect("harness");
    let tasker = harness.tasker();
    assert_eq!(harness.run_until_idle().await.expect("run"), 0);
    let schedule = tasker.schedule("shop.restock").await.expect("schedule");
    let now = harness.now().await.expect("clock").and_utc();
    let to_slot = (schedule.next_run_at - now).to_std().expect("a slot ahead");
    harness
        .advance(to_slot + Duration::from_secs(1))
        .await
        .expect("advance");
    for slot in 0..8 {
        assert_eq!(
            harness.run_until_idle().await.expect("run"),
            1,
            "slot {slot}"
        );
        harness
            .advance(Duration::from_secs(15 * 60))
            .await
            .expect("advance");
    }
    harness.advance(2 * HOUR).await.expect("advance");
    assert_eq!(harness.run_until_idle().await.expect("run"), 1);
    let schedule = tasker.schedule("shop.restock").await.expect("schedule");
    assert_eq!(
        schedule.missed_slots, 8,
        "two hours of slots, the last on time"
    );
    let restocks = tasker
        .tasks(tasker::TaskFilter {
            name: Some("restock".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("tasks");
    assert_eq!(restocks.len(), 9);
    assert!(restocks.iter().all(|t| t.state == TaskState::Complete));
}

/// A step claimed by a worker that died is recovered when the clock passes its lease, and run
/// again at once (the worker died, not the step): no real waiting for the lease.
#[tokio::test]
async fn expired_leases_follow_the_test_clock() {
    let harness = Harness::new(builder()).await.expect("harness");
    let tasker = harness.tasker();
    let id = tasker.create_task(order()).await.expect("create").id;
    let lease = Duration::from_secs(300);
    let claimed = tasker.claim_steps("died", 1, lease).await.expect("claim");
    assert_eq!(claimed.len(), 1, "the dead worker holds fetch");
    assert_eq!(harness.run_until_idle().await.expect("run"), 0);
    harness
        .advance(lease - Duration::from_secs(10))
        .await
        .expect("advance");
    assert_eq!(
        harness.run_until_idle().await.expect("run"),
        0,
        "recovered before its lease expired"
    );
    harness
        .advance(Duration::from_secs(20))
        .await
        .expect("advance");
    assert_eq!(
        harness.run_until_idle().await.expect("run"),
        2,
        "fetch again, then charge"
    );
    let fetch = tasker.steps(id).await.expect("steps").remove(0);
    assert_eq!((fetch.name.as_str(), fetch.attempts), ("fetch", 2));
    assert_eq!(
        tasker.task(id).await.expect("task").state,
        TaskState::Complete
    );
}
