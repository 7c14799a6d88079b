//! The engine's conformance suite: every test runs on SQLite and on PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use serde_json::{Value, json};
use tasker::Error;
use tasker::prelude::*;
use tasker::{CompletionOutcome, Outcome, PruneOptions, Pruned};
use tasker_tests::{Kind, TestDatabase, assert_history_consistent, conformance, states};

const WAIT: Duration = Duration::from_secs(30);

/// The step history of one failed attempt followed by a successful retry.
const RETRIED_ONCE: [&str; 6] = [
    "pending",
    "in_progress",
    "error",
    "pending",
    "in_progress",
    "complete",
];

conformance!(
    linear_chain,
    diamond,
    fan_out_fan_in,
    retryable_failure_then_success,
    retries_exhausted,
    permanent_error_is_not_retried,
    not_retryable_still_runs_once,
    cancel_mid_run,
    retry_task_in_error,
    manual_resolution_unblocks_dependents,
    bypass_skippable_step,
    concurrent_false_runs_one_step_at_a_time,
    lease_expiry_runs_the_step_again,
    stale_completion_is_fenced,
    idempotent_create_under_concurrency,
    create_inside_caller_transaction,
    invalid_context_writes_nothing,
    refused_operations,
    migrations_are_idempotent,
    retry_after_is_honoured,
    shutdown_releases_unfinished_steps,
    hash_identity_refuses_duplicate_requests,
    a_custom_identity_decides_what_is_a_duplicate,
    heartbeat_keeps_long_steps_leased,
    cancelling_a_step_fails_its_task,
    results_keep_every_character,
    prefetch_claims_ahead_of_free_slots,
    histories_are_exact,
    prefetch_shrinks_when_steps_run_long,
    workers_are_listed_while_they_run,
    annotations_are_checked_and_kept,
    delayed_tasks_start_at_their_time,
    pruning_deletes_finished_tasks_whole,
);

/// A handler that records its parents' results and returns `{"step": name, "seen": [...]}`.
fn echo() -> impl StepHandler {
    handler_fn(|cx| async move {
        let mut seen: Vec<String> = cx.parents().keys().cloned().collect();
        seen.sort();
        Ok(json!({ "step": cx.step_name(), "seen": seen, "attempt": cx.attempt() }))
    })
}

fn request(name: &str) -> TaskRequest {
    TaskRequest::new(name).namespace("test").version("1.0.0")
}

async fn run_to_end(tasker: &Tasker, req: TaskRequest) -> tasker::TaskRow {
    let worker = tasker.start_worker();
    let task = tasker.create_task(req).await.expect("create");
    let done = tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    assert_history_consistent(tasker, task.id).await;
    done
}

async fn linear_chain(db: TestDatabase) {
    let template = TaskTemplate::new("test", "linear", "1.0.0")
        .step(StepTemplate::new("a", "echo"))
        .step(StepTemplate::new("b", "echo").depends_on(["a"]))
        .step(StepTemplate::new("c", "echo").depends_on(["b"]))
        .step(StepTemplate::new("d", "echo").depends_on(["c"]));
    let tasker = db
        .builder()
        .template(template)
        .handler("echo", echo())
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("linear")).await;
    assert_eq!(done.state, TaskState::Complete);
    let steps = tasker.steps(done.task_id).await.expect("steps");
    let seen: Vec<Value> = steps
        .iter()
        .map(|s| s.results.clone().unwrap_or_default()["seen"].clone())
        .collect();
    assert_eq!(seen, [json!([]), json!(["a"]), json!(["b"]), json!(["c"])]);
    // Each step started after its parent finished.
    for pair in steps.windows(2) {
        assert!(
            pair[1].last_attempted_at >= pair[0].processed_at,
            "{} started before {} finished",
            pair[1].name,
            pair[0].name
        );
    }
    assert!(
        steps
            .iter()
            .all(|s| s.attempts == 1 && s.state == StepState::Complete)
    );
}

async fn diamond(db: TestDatabase) {
    let template = TaskTemplate::new("test", "diamond", "1.0.0")
        .step(StepTemplate::new("top", "echo"))
        .step(StepTemplate::new("left", "echo").depends_on(["top"]))
        .step(StepTemplate::new("right", "echo").depends_on(["top"]))
        .step(StepTemplate::new("bottom", "echo").depends_on(["left", "right"]));
    let tasker = db
        .builder()
        .template(template)
        .handler("echo", echo())
        .build()
        .await
        .expect("build");
    let mut events = tasker.subscribe();
    let done = run_to_end(&tasker, request("diamond")).await;
    assert_eq!(done.state, TaskState::Complete);
    let steps = tasker.steps(done.task_id).await.expect("steps");
    let bottom = steps.iter().find(|s| s.name == "bottom").expect("bottom");
    assert_eq!(
        bottom.results.as_ref().expect("results")["seen"],
        json!(["left", "right"])
    );
    // Exactly one event per recorded transition (transitions are the events with a `to`).
    let mut published = Vec::new();
    while let Ok(event) = events.try_recv() {
        if event.to.is_some() {
            published.push(event);
        }
    }
    let mut recorded = tasker
        .task_transitions(done.task_id)
        .await
        .expect("transitions")
        .len();
    for step in &steps {
        recorded += tasker
            .step_transitions(step.step_id)
            .await
            .expect("transitions")
            .len();
    }
    assert_eq!(published.len(), recorded);
    assert_eq!(
        published
            .iter()
            .filter(|e| e.name == "step.completed")
            .count(),
        4
    );
    assert_eq!(
        published
            .iter()
            .filter(|e| e.name == "task.completed")
            .count(),
        1
    );
}

async fn fan_out_fan_in(db: TestDatabase) {
    let mut template =
        TaskTemplate::new("test", "fan", "1.0.0").step(StepTemplate::new("start", "echo"));
    let middle: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
    for name in &middle {
        template = template.step(StepTemplate::new(name.clone(), "middle").depends_on(["start"]));
    }
    template = template.step(StepTemplate::new("join", "join").depends_on(middle.clone()));
    let finished = Arc::new(AtomicUsize::new(0));
    let joins = Arc::new(AtomicUsize::new(0));
    let (f, j) = (Arc::clone(&finished), Arc::clone(&joins));
    let tasker = db
        .builder()
        .template(template)
        .handler("echo", echo())
        .handler("middle", handler_fn(move |_| {
            let f = Arc::clone(&f);
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                Ok(json!(1))
            }
        }))
        .handler("join", handler_fn(move |cx| {
            let (f, j) = (Arc::clone(&finished), Arc::clone(&j));
            async move {
                j.fetch_add(1, Ordering::SeqCst);
                Ok(json!({ "middle_done": f.load(Ordering::SeqCst), "parents": cx.parents().len() }))
            }
        }))
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("fan")).await;
    assert_eq!(done.state, TaskState::Complete);
    assert_eq!(
        joins.load(Ordering::SeqCst),
        1,
        "the join runs exactly once"
    );
    let steps = tasker.steps(done.task_id).await.expect("steps");
    let join = steps.iter().find(|s| s.name == "join").expect("join");
    assert_eq!(
        join.results.as_ref().expect("results"),
        &json!({ "middle_done": 50, "parents": 50 })
    );
    assert_eq!(join.attempts, 1);
}

async fn retryable_failure_then_success(db: TestDatabase) {
    let template = TaskTemplate::new("test", "flaky", "1.0.0")
        .step(StepTemplate::new("flaky", "flaky").retry_limit(3));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let tasker = db
        .builder()
        .configure(|c| c.backoff = tasker::BackoffConfig::fixed(Duration::from_millis(400)))
        .template(template)
        .handler(
            "flaky",
            handler_fn(move |_| {
                let c = Arc::clone(&c);
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(StepError::retryable("try again"))
                    } else {
                        Ok(json!("ok"))
                    }
                }
            }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("flaky")).await;
    assert_eq!(done.state, TaskState::Complete);
    let step = tasker.steps(done.task_id).await.expect("steps").remove(0);
    assert_eq!(step.attempts, 2);
    let transitions = tasker
        .step_transitions(step.step_id)
        .await
        .expect("transitions");
    assert_eq!(states(&transitions), RETRIED_ONCE);
    assert_eq!(transitions[2].metadata["error"], "try again");
    // The retry was not claimed before the backoff ran out (database clock on both sides).
    let waited = transitions[4].created_at - transitions[2].created_at;
    assert!(
        waited >= chrono::Duration::milliseconds(390),
        "retried after {waited}"
    );
    let task_states = states(
        &tasker
            .task_transitions(done.task_id)
            .await
            .expect("task transitions"),
    )
    .join(",");
    assert_eq!(task_states, "pending,in_progress,complete");
}

async fn retries_exhausted(db: TestDatabase) {
    let template = TaskTemplate::new("test", "doomed", "1.0.0")
        .step(StepTemplate::new("doomed", "fail").retry_limit(3))
        .step(StepTemplate::new("after", "echo").depends_on(["doomed"]));
    let tasker = db
        .builder()
        .template(template)
        .handler(
            "fail",
            handler_fn(|_| async { Err(StepError::retryable("still down")) }),
        )
        .handler("echo", echo())
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("doomed")).await;
    assert_eq!(done.state, TaskState::Error);
    let steps = tasker.steps(done.task_id).await.expect("steps");
    assert_eq!(
        (steps[0].state, steps[0].attempts, steps[0].ready_at),
        (StepState::Error, 3, None)
    );
    assert_eq!((steps[1].state, steps[1].attempts), (StepState::Pending, 0));
    assert_eq!(
        steps[0].results.as_ref().expect("error")["error"],
        "still down"
    );
}

async fn permanent_error_is_not_retried(db: TestDatabase) {
    let template = TaskTemplate::new("test", "perm", "1.0.0")
        .step(StepTemplate::new("perm", "fail").retry_limit(5));
    let tasker = db
        .builder()
        .template(template)
        .handler(
            "fail",
            handler_fn(|_| async { Err(StepError::permanent_with_code("not found", "HTTP_404")) }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("perm")).await;
    assert_eq!(done.state, TaskState::Error);
    let step = tasker.steps(done.task_id).await.expect("steps").remove(0);
    assert_eq!(step.attempts, 1);
    assert_eq!(
        step.results.as_ref().expect("error")["error_code"],
        "HTTP_404"
    );
}

async fn not_retryable_still_runs_once(db: TestDatabase) {
    let template = TaskTemplate::new("test", "once", "1.0.0")
        .step(StepTemplate::new("ok", "echo").retryable(false))
        .step(
            StepTemplate::new("fails", "fail")
                .retryable(false)
                .retry_limit(5),
        );
    let tasker = db
        .builder()
        .template(template)
        .handler("echo", echo())
        .handler(
            "fail",
            handler_fn(|_| async { Err(StepError::retryable("transient")) }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("once")).await;
    assert_eq!(done.state, TaskState::Error);
    let steps = tasker.steps(done.task_id).await.expect("steps");
    assert_eq!(
        (steps[0].state, steps[0].attempts),
        (StepState::Complete, 1)
    );
    assert_eq!((steps[1].state, steps[1].attempts), (StepState::Error, 1));
}

async fn cancel_mid_run(db: TestDatabase) {
    let template = TaskTemplate::new("test", "cancel", "1.0.0")
        .step(StepTemplate::new("slow", "slow"))
        .step(StepTemplate::new("next", "echo").depends_on(["slow"]));
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (s, r) = (Arc::clone(&started), Arc::clone(&release));
    let tasker = db
        .builder()
        .template(template)
        .handler(
            "slow",
            handler_fn(move |_| {
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                async move {
                    s.notify_one();
                    r.notified().await;
                    Ok(json!("slow done"))
                }
            }),
        )
        .handler("echo", echo())
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker.create_task(request("cancel")).await.expect("create");
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("slow step started");
    tasker.cancel_task(task.id).await.expect("cancel");
    release.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown().await;
    let done = tasker.task(task.id).await.expect("task");
    assert_eq!(done.state, TaskState::Cancelled);
    let steps = tasker.steps(task.id).await.expect("steps");
    assert_eq!(
        (steps[0].state, steps[0].attempts),
        (StepState::Cancelled, 1),
        "the running step's late result is rejected"
    );
    assert_eq!(
        (steps[1].state, steps[1].attempts),
        (StepState::Cancelled, 0),
        "nothing more is claimed"
    );
    assert_history_consistent(&tasker, task.id).await;
}

async fn retry_task_in_error(db: TestDatabase) {
    let template = TaskTemplate::new("test", "retry", "1.0.0")
        .step(StepTemplate::new("a", "echo"))
        .step(
            StepTemplate::new("b", "gate")
                .depends_on(["a"])
                .retry_limit(1),
        );
    let open = Arc::new(AtomicBool::new(false));
    let o = Arc::clone(&open);
    let tasker = db
        .builder()
        .template(template)
        .handler("echo", echo())
        .handler(
            "gate",
            handler_fn(move |_| {
                let o = Arc::clone(&o);
                async move {
                    if o.load(Ordering::SeqCst) {
                        Ok(json!("through"))
                    } else {
                        Err(StepError::retryable("gate closed"))
                    }
                }
            }),
        )
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker.create_task(request("retry")).await.expect("create");
    let failed = tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    assert_eq!(failed.state, TaskState::Error);
    open.store(true, Ordering::SeqCst);
    tasker.retry_task(task.id).await.expect("retry");
    let done = tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    assert_eq!(done.state, TaskState::Complete);
    let steps = tasker.steps(task.id).await.expect("steps");
    assert_eq!(
        (steps[0].attempts, steps[1].attempts),
        (1, 2),
        "only the failed step ran again"
    );
    let task_states =
        states(&tasker.task_transitions(task.id).await.expect("transitions")).join(",");
    assert_eq!(
        task_states,
        "pending,in_progress,error,pending,in_progress,complete"
    );
    assert_history_consistent(&tasker, task.id).await;
}

async fn manual_resolution_unblocks_dependents(db: TestDatabase) {
    let template = TaskTemplate::new("test", "resolve", "1.0.0")
        .step(StepTemplate::new("broken", "fail"))
        .step(StepTemplate::new("after", "read"))
        .step(StepTemplate::new("last", "echo").depends_on(["broken", "after"]));
    let tasker = db
        .builder()
        .template(template)
        .handler(
            "fail",
            handler_fn(|_| async { Err(StepError::permanent("needs a human")) }),
        )
        .handler("read", echo())
        .handler(
            "echo",
            handler_fn(|cx| async move { Ok(cx.parent("broken").cloned().unwrap_or_default()) }),
        )
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker
        .create_task(request("resolve"))
        .await
        .expect("create");
    assert_eq!(
        tasker
            .wait_for_task(task.id, WAIT)
            .await
            .expect("wait")
            .state,
        TaskState::Error
    );
    let broken = tasker.steps(task.id).await.expect("steps").remove(0);
    tasker
        .resolve_step(broken.step_id, Some(json!({ "fixed_by": "ops" })))
        .await
        .expect("resolve");
    let done = tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    assert_eq!(done.state, TaskState::Complete);
    let steps = tasker.steps(task.id).await.expect("steps");
    assert_eq!(steps[0].state, StepState::ResolvedManually);
    assert_eq!(
        steps[2].results,
        Some(json!({ "fixed_by": "ops" })),
        "the child saw the operator's result"
    );
    assert_history_consistent(&tasker, task.id).await;
}

async fn bypass_skippable_step(db: TestDatabase) {
    let template = TaskTemplate::new("test", "bypass", "1.0.0")
        .step(StepTemplate::new("a", "echo"))
        .step(
            StepTemplate::new("optional", "never")
                .depends_on(["a"])
                .skippable(true),
        )
        .step(StepTemplate::new("c", "echo").depends_on(["optional"]));
    let tasker = db
        .builder()
        .template(template)
        .handler("echo", echo())
        .handler(
            "never",
            handler_fn(|_| async { Err(StepError::permanent("bypassed steps never run")) }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("bypass").bypass_step("optional")).await;
    assert_eq!(done.state, TaskState::Complete);
    let steps = tasker.steps(done.task_id).await.expect("steps");
    assert_eq!(
        (steps[1].state, steps[1].attempts),
        (StepState::ResolvedManually, 0)
    );
    let transitions = tasker
        .step_transitions(steps[1].step_id)
        .await
        .expect("transitions");
    assert_eq!(
        transitions.last().expect("transition").metadata,
        json!({ "reason": "bypassed" })
    );

    let tasks_before = db.count("tasker_tasks");
    match tasker.create_task(request("bypass").bypass_step("a")).await {
        Err(error @ Error::StepNotSkippable { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("`a`") && message.contains("not skippable"),
                "{message}"
            );
            let Error::StepNotSkippable { template, step } = error else {
                unreachable!("matched above")
            };
            assert_eq!(
                (template.as_str(), step.as_str()),
                ("test/bypass@1.0.0", "a")
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(db.count("tasker_tasks"), tasks_before, "nothing written");
}

async fn concurrent_false_runs_one_step_at_a_time(db: TestDatabase) {
    let steps = ["s1", "s2", "s3", "s4", "s5"];
    let serial = steps.iter().fold(
        TaskTemplate::new("test", "serial", "1.0.0").concurrent(false),
        |t, s| t.step(StepTemplate::new(*s, "track")),
    );
    let parallel = steps
        .iter()
        .fold(TaskTemplate::new("test", "parallel", "1.0.0"), |t, s| {
            t.step(StepTemplate::new(*s, "barrier"))
        });
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(steps.len()));
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let tasker = db
        .builder()
        .template(serial)
        .template(parallel)
        .handler(
            "track",
            handler_fn(move |_| {
                let (r, m) = (Arc::clone(&r), Arc::clone(&m));
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    Ok(json!(now))
                }
            }),
        )
        .handler(
            "barrier",
            handler_fn(move |_| {
                let b = Arc::clone(&barrier);
                async move {
                    // Only passes if all five run at the same time.
                    tokio::time::timeout(Duration::from_secs(10), b.wait())
                        .await
                        .map_err(|_| StepError::permanent("steps did not run concurrently"))?;
                    Ok(json!("together"))
                }
            }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("serial")).await;
    assert_eq!(done.state, TaskState::Complete);
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "a `concurrent: false` task ran two steps at once"
    );
    let done = run_to_end(&tasker, request("parallel")).await;
    assert_eq!(
        done.state,
        TaskState::Complete,
        "the concurrent task's steps ran together"
    );
}

fn single(name: &str) -> TaskTemplate {
    TaskTemplate::new("test", name, "1.0.0").step(StepTemplate::new("only", "who"))
}

/// An engine running `single(name)` with the `who` handler.
async fn single_tasker(db: &TestDatabase, name: &str) -> Tasker {
    db.builder()
        .template(single(name))
        .handler("who", who())
        .build()
        .await
        .expect("build")
}

fn who() -> impl StepHandler {
    handler_fn(|cx| async move { Ok(json!({ "by": "worker", "attempt": cx.attempt() })) })
}

async fn lease_expiry_runs_the_step_again(db: TestDatabase) {
    let tasker = single_tasker(&db, "lease").await;
    let task = tasker.create_task(request("lease")).await.expect("create");
    // A worker claims the step and vanishes without heartbeating.
    let claimed = tasker
        .claim_steps("ghost", 10, Duration::from_millis(200))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let worker = tasker.start_worker();
    let done = tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    assert_eq!(done.state, TaskState::Complete);
    let step = tasker.steps(task.id).await.expect("steps").remove(0);
    assert_eq!(step.attempts, 2);
    assert_eq!(step.results, Some(json!({ "by": "worker", "attempt": 2 })));
    let transitions = tasker
        .step_transitions(step.step_id)
        .await
        .expect("transitions");
    assert_eq!(states(&transitions), RETRIED_ONCE);
    assert_eq!(transitions[2].metadata["reason"], "lease_expired");
    assert_history_consistent(&tasker, task.id).await;
}

async fn stale_completion_is_fenced(db: TestDatabase) {
    let tasker = single_tasker(&db, "fence").await;
    let task = tasker.create_task(request("fence")).await.expect("create");
    let zombie = tasker
        .claim_steps("zombie", 10, Duration::from_millis(100))
        .await
        .expect("claim")
        .remove(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(tasker.recover_expired_leases().await.expect("sweep"), 1);
    let worker = tasker.start_worker();
    assert_eq!(
        tasker
            .wait_for_task(task.id, WAIT)
            .await
            .expect("wait")
            .state,
        TaskState::Complete
    );
    worker.shutdown().await;
    // The zombie wakes up and reports its stale attempt.
    let late = Outcome {
        step_id: zombie.step_id,
        task_id: zombie.task_id,
        name: zombie.name.clone(),
        attempt: zombie.attempt,
        owner: "zombie".to_owned(),
        concurrent: true,
        result: Ok(json!({ "by": "zombie" }).to_string()),
        duration_ms: None,
    };
    assert_eq!(
        tasker.complete_steps(vec![late]).await.expect("complete"),
        [CompletionOutcome::Stale]
    );
    let step = tasker.steps(task.id).await.expect("steps").remove(0);
    assert_eq!(
        step.results,
        Some(json!({ "by": "worker", "attempt": 2 })),
        "the newer attempt's result stands"
    );
    assert_eq!(step.state, StepState::Complete);
    assert_history_consistent(&tasker, task.id).await;
}

async fn idempotent_create_under_concurrency(db: TestDatabase) {
    let tasker = single_tasker(&db, "idem").await;
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let tasker = tasker.clone();
        callers.spawn(async move {
            tasker
                .create_task(request("idem").idempotency_key("order-77"))
                .await
        });
    }
    let mut created = Vec::new();
    while let Some(result) = callers.join_next().await {
        created.push(result.expect("join").expect("create"));
    }
    let first = created[0].id;
    assert!(
        created.iter().all(|c| c.id == first),
        "every caller got the same task: {created:?}"
    );
    assert_eq!(
        created.iter().filter(|c| !c.existing).count(),
        1,
        "exactly one caller created it"
    );
    assert_eq!(db.count("tasker_tasks"), 1);
    assert_eq!(db.count("tasker_workflow_steps"), 1);
}

async fn create_inside_caller_transaction(db: TestDatabase) {
    let tasker = single_tasker(&db, "tx").await;
    #[derive(Debug)]
    struct Rollback;
    impl From<diesel::result::Error> for Rollback {
        fn from(_: diesel::result::Error) -> Self {
            Rollback
        }
    }
    let create = |commit: bool| -> Result<i64, Rollback> {
        match db.kind {
            Kind::Sqlite => db.with_sqlite(|c| {
                diesel::Connection::transaction(c, |c| {
                    let created = tasker
                        .create_task_in(c, request("tx"))
                        .map_err(|_| Rollback)?;
                    if commit {
                        Ok(created.id)
                    } else {
                        Err(Rollback)
                    }
                })
            }),
            Kind::Postgres => db.with_postgres(|c| {
                diesel::Connection::transaction(c, |c| {
                    let created = tasker
                        .create_task_in(c, request("tx"))
                        .map_err(|_| Rollback)?;
                    if commit {
                        Ok(created.id)
                    } else {
                        Err(Rollback)
                    }
                })
            }),
        }
    };
    assert!(create(false).is_err());
    for table in [
        "tasker_tasks",
        "tasker_workflow_steps",
        "tasker_task_transitions",
        "tasker_workflow_step_transitions",
    ] {
        assert_eq!(
            db.count(table),
            0,
            "{table} has rows from a rolled-back creation"
        );
    }
    let id = create(true).expect("committed creation");
    let worker = tasker.start_worker();
    let done = tasker.wait_for_task(id, WAIT).await.expect("wait");
    worker.shutdown().await;
    assert_eq!(
        done.state,
        TaskState::Complete,
        "a task created in a committed transaction runs"
    );
}

async fn invalid_context_writes_nothing(db: TestDatabase) {
    let template = single("schema").schema(json!({
        "type": "object",
        "required": ["order_id"],
        "properties": { "order_id": { "type": "integer" }, "email": { "type": "string" } }
    }));
    let tasker = db
        .builder()
        .template(template)
        .handler("who", who())
        .build()
        .await
        .expect("build");
    match tasker
        .create_task(request("schema").context(json!({ "order_id": "12", "email": 5 })))
        .await
    {
        Err(Error::InvalidContext { errors, .. }) => {
            assert!(
                errors
                    .iter()
                    .any(|e| e.pointer == "/order_id" && e.message.contains("integer")),
                "{errors:?}"
            );
            assert!(errors.iter().any(|e| e.pointer == "/email"), "{errors:?}");
        }
        other => panic!("expected InvalidContext, got {other:?}"),
    }
    match tasker
        .create_task(request("schema").context(json!({})))
        .await
    {
        Err(e @ Error::InvalidContext { .. }) => assert!(e.to_string().contains("order_id"), "{e}"),
        other => panic!("expected InvalidContext, got {other:?}"),
    }
    assert_eq!(db.count("tasker_tasks"), 0);
    assert_eq!(db.count("tasker_workflow_steps"), 0);
    match tasker.create_task(TaskRequest::new("nope")).await {
        Err(Error::UnknownTemplate { name, .. }) => assert_eq!(name, "nope"),
        other => panic!("expected UnknownTemplate, got {other:?}"),
    }
}

async fn refused_operations(db: TestDatabase) {
    let template = TaskTemplate::new("test", "refuse", "1.0.0")
        .step(StepTemplate::new("fails", "fail").retry_limit(1));
    let tasker = db
        .builder()
        .template(template)
        .handler(
            "fail",
            handler_fn(|_| async { Err(StepError::permanent("no")) }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("refuse")).await;
    assert_eq!(done.state, TaskState::Error);
    // The seed's machine has no `error → cancelled` for tasks.
    assert!(matches!(
        tasker.cancel_task(done.task_id).await,
        Err(Error::TaskTransitionRefused {
            from: TaskState::Error,
            to: TaskState::Cancelled,
            ..
        })
    ));
    let other = tasker.create_task(request("refuse")).await.expect("create");
    assert!(matches!(
        tasker.retry_task(other.id).await,
        Err(Error::TaskTransitionRefused {
            from: TaskState::Pending,
            ..
        })
    ));
    tasker
        .cancel_task(other.id)
        .await
        .expect("cancel pending task");
    let step = tasker.steps(other.id).await.expect("steps").remove(0);
    assert!(matches!(
        tasker.resolve_step(step.step_id, None).await,
        Err(Error::StepTransitionRefused {
            from: StepState::Cancelled,
            to: StepState::ResolvedManually,
            ..
        })
    ));
    assert!(matches!(
        tasker.task(i64::MAX).await,
        Err(Error::TaskNotFound(_))
    ));
    assert_history_consistent(&tasker, other.id).await;
}

async fn migrations_are_idempotent(db: TestDatabase) {
    // Two engines starting at once on an empty database do not break each other.
    let (a, b) = tokio::join!(
        db.builder()
            .template(single("mig"))
            .handler("who", who())
            .build(),
        db.builder()
            .template(single("mig"))
            .handler("who", who())
            .build(),
    );
    let tasker = a.expect("first concurrent start");
    b.expect("second concurrent start");
    assert_eq!(
        tasker.migrate().await.expect("migrate again"),
        0,
        "running them twice is harmless"
    );
    assert_eq!(
        run_to_end(&tasker, request("mig")).await.state,
        TaskState::Complete
    );
}

async fn retry_after_is_honoured(db: TestDatabase) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let tasker = db
        .builder()
        .template(single("later"))
        .handler(
            "who",
            handler_fn(move |_| {
                let c = Arc::clone(&c);
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(StepError::retry_after(
                            "429 Too Many Requests",
                            Duration::from_millis(600),
                        ))
                    } else {
                        Ok(json!("ok"))
                    }
                }
            }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("later")).await;
    assert_eq!(done.state, TaskState::Complete);
    let step = tasker.steps(done.task_id).await.expect("steps").remove(0);
    let transitions = tasker
        .step_transitions(step.step_id)
        .await
        .expect("transitions");
    // The server's delay (600 ms) wins over the configured 50 ms backoff.
    let waited = transitions[4].created_at - transitions[2].created_at;
    assert!(
        waited >= chrono::Duration::milliseconds(590),
        "retried after {waited}"
    );
    assert_eq!(transitions[2].metadata["retry_in_seconds"], json!(0.6));
}

async fn shutdown_releases_unfinished_steps(db: TestDatabase) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let tasker = db
        .builder()
        .configure(|c| c.shutdown_grace = Duration::from_millis(200))
        .template(single("stuck"))
        .handler(
            "who",
            handler_fn(move |_| {
                let c = Arc::clone(&c);
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        // Outlives the first worker's grace period.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Ok(json!("second worker"))
                }
            }),
        )
        .build()
        .await
        .expect("build");
    let first = tasker.start_worker();
    let task = tasker.create_task(request("stuck")).await.expect("create");
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.shutdown().await;
    let released = tasker.steps(task.id).await.expect("steps").remove(0);
    assert_eq!(
        (released.state, released.attempts, released.lease_owner),
        (StepState::Error, 0, None)
    );
    assert!(
        released.ready_at.is_some(),
        "a released step is ready again at once"
    );
    let second = tasker.start_worker();
    let done = tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    second.shutdown().await;
    assert_eq!(done.state, TaskState::Complete);
    let step = tasker.steps(task.id).await.expect("steps").remove(0);
    assert_eq!(
        (step.attempts, step.results),
        (1, Some(json!("second worker"))),
        "the released attempt is not counted"
    );
    let transitions = tasker
        .step_transitions(step.step_id)
        .await
        .expect("transitions");
    assert_eq!(transitions[2].metadata["reason"], "released");
    assert_history_consistent(&tasker, task.id).await;
}

/// One task per order and day, whatever else the request says.
struct OrderPerDay;

impl tasker::TaskIdentity for OrderPerDay {
    fn identity(
        &self,
        request: &TaskRequest,
        requested_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        format!(
            "{}:{}",
            request.context["order_id"],
            requested_at.format("%Y-%m-%d")
        )
    }
}

/// A user's identity strategy decides which requests are one task; an idempotency key still
/// decides when given.
async fn a_custom_identity_decides_what_is_a_duplicate(db: TestDatabase) {
    let tasker = db
        .builder()
        .identity_strategy(tasker::IdentityStrategy::custom(OrderPerDay))
        .template(single("custom"))
        .handler("who", who())
        .build()
        .await
        .expect("build");
    let at: chrono::DateTime<chrono::Utc> = "2026-11-29T10:00:05Z".parse().expect("time");
    let order = |id: i64| {
        request("custom")
            .context(json!({ "order_id": id }))
            .requested_at(at)
    };
    let first = tasker.create_task(order(1)).await.expect("first");
    let later_same_day = order(1)
        .reason("asked again")
        .requested_at(at + chrono::Duration::hours(5));
    match tasker.create_task(later_same_day).await {
        Err(Error::DuplicateRequest(id)) => assert_eq!(id, first.id),
        other => panic!("expected DuplicateRequest, got {other:?}"),
    }
    let next_day = order(1).requested_at(at + chrono::Duration::days(1));
    assert_ne!(
        tasker.create_task(next_day).await.expect("next day").id,
        first.id
    );
    assert_ne!(
        tasker.create_task(order(2)).await.expect("other order").id,
        first.id
    );
    let keyed = tasker
        .create_task(order(1).idempotency_key("by-key"))
        .await
        .expect("a key decides instead");
    assert!(!keyed.existing && keyed.id != first.id);
    assert_eq!(db.count("tasker_tasks"), 4);
}

async fn hash_identity_refuses_duplicate_requests(db: TestDatabase) {
    let tasker = db
        .builder()
        .identity_strategy(tasker::IdentityStrategy::Hash)
        .template(single("hashed"))
        .handler("who", who())
        .build()
        .await
        .expect("build");
    let at: chrono::DateTime<chrono::Utc> = "2026-11-29T10:00:05Z".parse().expect("time");
    let req = request("hashed")
        .context(json!({ "order_id": 1 }))
        .requested_at(at);
    let first = tasker.create_task(req.clone()).await.expect("first");
    match tasker
        .create_task(req.clone().requested_at(at + chrono::Duration::seconds(30)))
        .await
    {
        Err(Error::DuplicateRequest(id)) => assert_eq!(id, first.id),
        other => panic!("expected DuplicateRequest, got {other:?}"),
    }
    let other = tasker
        .create_task(req.clone().context(json!({ "order_id": 2 })))
        .await
        .expect("different context");
    assert_ne!(other.id, first.id);
    assert_eq!(db.count("tasker_tasks"), 2);
    // Cancelling twice: the second is a no-op that reports `false`.
    assert!(tasker.cancel_task(first.id).await.expect("cancel"));
    assert!(!tasker.cancel_task(first.id).await.expect("cancel again"));
}

/// On PostgreSQL a worker in another process is woken by `NOTIFY`, not by its polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_wakes_workers_of_other_processes() {
    let Some(db) = TestDatabase::postgres("notify") else {
        return;
    };
    let slow_polling = |b: tasker::TaskerBuilder| {
        b.configure(|c| c.max_poll_interval = Duration::from_secs(60))
            .template(single("notify"))
            .handler("who", who())
    };
    let producer = slow_polling(db.builder()).build().await.expect("producer");
    let consumer = slow_polling(db.builder()).build().await.expect("consumer");
    let worker = consumer.start_worker();
    // Let the idle worker's polling back off well past the wait below (10 ms doubling: ~5 s
    // of idling leaves it sleeping about 5 s between claims).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let task = producer
        .create_task(request("notify"))
        .await
        .expect("create");
    let done = consumer
        .wait_for_task(task.id, Duration::from_millis(1500))
        .await
        .expect("wait");
    worker.shutdown().await;
    assert_eq!(
        done.state,
        TaskState::Complete,
        "the NOTIFY woke the other engine's worker"
    );
}

async fn heartbeat_keeps_long_steps_leased(db: TestDatabase) {
    let tasker = db
        .builder()
        .configure(|c| {
            c.lease = Duration::from_millis(600);
            c.heartbeat = Duration::from_millis(100);
        })
        .template(single("long"))
        .handler(
            "who",
            handler_fn(|cx| async move {
                // Runs well past one lease; the heartbeat must keep the sweeper away.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok(json!({ "attempt": cx.attempt() }))
            }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("long")).await;
    assert_eq!(done.state, TaskState::Complete);
    let step = tasker.steps(done.task_id).await.expect("steps").remove(0);
    assert_eq!(
        (step.attempts, step.results),
        (1, Some(json!({ "attempt": 1 })))
    );
}

async fn cancelling_a_step_fails_its_task(db: TestDatabase) {
    let template = TaskTemplate::new("test", "two", "1.0.0")
        .step(StepTemplate::new("a", "echo"))
        .step(StepTemplate::new("b", "echo").depends_on(["a"]))
        .step(StepTemplate::new("c", "echo").depends_on(["b"]));
    let tasker = db
        .builder()
        .template(template)
        .handler("echo", echo())
        .build()
        .await
        .expect("build");
    let task = tasker.create_task(request("two")).await.expect("create");
    let steps = tasker.steps(task.id).await.expect("steps");
    let b = steps.iter().find(|s| s.name == "b").expect("b").step_id;
    assert!(tasker.cancel_step(task.id, b).await.expect("cancel"));
    assert!(!tasker.cancel_step(task.id, b).await.expect("again"));
    assert!(matches!(
        tasker.cancel_step(task.id + 1000, b).await,
        Err(Error::StepNotFound(_))
    ));
    let worker = tasker.start_worker();
    let done = tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    // `a` ran; `b` is cancelled, so `c` never runs and the task fails.
    assert_eq!(done.state, TaskState::Error);
    let steps = tasker.steps(task.id).await.expect("steps");
    let state = |name: &str| steps.iter().find(|s| s.name == name).expect("step").state;
    assert_eq!(
        (state("a"), state("b"), state("c")),
        (
            StepState::Complete,
            StepState::Cancelled,
            StepState::Pending
        )
    );
    assert_history_consistent(&tasker, task.id).await;
}

/// Results are written in one batched statement per completion; quotes, backslashes, SQL
/// comment markers and non-ASCII text must come back byte for byte, in both steps of a batch.
async fn results_keep_every_character(db: TestDatabase) {
    let nasty = "it's a \\'quote\\' -- not a comment; /* nor this */ ''; DROP TABLE x; é ✓ \u{1F600} \\u0000";
    let template = TaskTemplate::new("test", "chars", "1.0.0")
        .step(StepTemplate::new("a", "nasty"))
        .step(StepTemplate::new("b", "nasty"));
    let tasker = db
        .builder()
        .template(template)
        .handler(
            "nasty",
            handler_fn(move |cx| async move {
                Ok(json!({ "text": nasty, "step": cx.step_name(), "key": { "o'k": [nasty] } }))
            }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("chars")).await;
    assert_eq!(done.state, TaskState::Complete);
    for step in tasker.steps(done.task_id).await.expect("steps") {
        let results = step.results.expect("results");
        assert_eq!(results["text"], nasty);
        assert_eq!(results["key"]["o'k"][0], nasty);
        assert_eq!(results["step"], step.name.as_str());
    }
}

/// The same, on a server whose sessions default to `standard_conforming_strings = off`, where
/// a backslash in a string literal is an escape: the engine's sessions must turn it back on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_keep_every_character_without_standard_strings() {
    let Some(mut db) = TestDatabase::postgres("nonstandard_strings") else {
        return;
    };
    assert!(db.url.contains("options=-c"), "{}", db.url);
    db.url.push_str("%20-cstandard_conforming_strings%3Doff");
    results_keep_every_character(db).await;
}

/// A registry handed to the builder adds to what the builder has; it never replaces a template
/// or a step handler registered there.
#[tokio::test]
async fn a_registry_handed_to_the_builder_cannot_replace_what_it_has() {
    let db = TestDatabase::sqlite();
    let mut theirs = tasker::Registry::new();
    theirs
        .register_template(single("merged"))
        .expect("template");
    let error = db
        .builder()
        .template(single("merged"))
        .handler("who", who())
        .registry(theirs)
        .build()
        .await
        .expect_err("duplicate template");
    assert!(
        matches!(&error, Error::DuplicateTemplate(key) if key == "test/merged@1.0.0"),
        "{error}"
    );

    let mut theirs = tasker::Registry::new();
    theirs.register_handler("who", who()).expect("handler");
    let error = db
        .builder()
        .template(single("merged"))
        .handler("who", who())
        .registry(theirs)
        .build()
        .await
        .expect_err("duplicate handler");
    assert!(
        matches!(&error, Error::DuplicateHandler(name) if name == "who"),
        "{error}"
    );
}

/// `postgres_schema` puts tasker's tables in a schema of their own, created if missing, and
/// refuses a name that is not a plain identifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_holds_the_tables() {
    // The test database only decides whether PostgreSQL tests run; this test uses the server.
    let Some(_db) = TestDatabase::postgres("postgres_schema") else {
        return;
    };
    let Ok(server) = std::env::var("TASKER_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = format!("tasker_schema_{}", uuid::Uuid::new_v4().simple());
    let build = |schema: String| {
        let server = server.clone();
        Tasker::builder()
            .configure(move |c| {
                c.database_url = server;
                c.postgres_schema = Some(schema);
                c.environment = None;
            })
            .template(single("schema"))
            .handler("who", who())
            .auto_register(false)
            .build()
    };
    let tasker = build(schema.clone()).await.expect("build");
    let done = run_to_end(&tasker, request("schema")).await;
    assert_eq!(done.state, TaskState::Complete);
    drop(tasker);
    let mut admin = diesel::pg::PgConnection::establish(&server).expect("admin connection");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let tables: Count = diesel::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = '{schema}' AND table_name = 'tasker_tasks'"
        )),
        &mut admin,
    )
    .expect("count");
    let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    assert_eq!(tables.n, 1, "tasker_tasks lives in {schema}");

    let error = build("Not-Plain".to_owned()).await.expect_err("refused");
    assert!(
        matches!(&error, Error::InvalidPostgresSchema { schema, .. } if schema == "Not-Plain"),
        "{error}"
    );
}

/// A worker claims up to `concurrency + prefetch` steps while it runs only `concurrency`; the
/// rest wait in the worker under their lease. With `prefetch: 0` it claims no more than it runs.
async fn prefetch_claims_ahead_of_free_slots(db: TestDatabase) {
    for prefetch in [4, 0] {
        let name = format!("prefetch{prefetch}");
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let (handler_gate, handler_running) = (Arc::clone(&gate), Arc::clone(&running));
        let tasker = db
            .builder()
            .template(single(&name))
            .handler(
                "who",
                handler_fn(move |_cx| {
                    let (gate, running) = (Arc::clone(&handler_gate), Arc::clone(&handler_running));
                    async move {
                        running.fetch_add(1, Ordering::SeqCst);
                        let permit = gate.acquire().await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                        Ok(json!(null))
                    }
                }),
            )
            .build()
            .await
            .expect("build");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            tasks.push(tasker.create_task(request(&name)).await.expect("create").id);
        }
        let worker = tasker.start_worker_with(tasker::WorkerOptions {
            concurrency: 1,
            claim_batch: 32,
            prefetch,
            id: format!("prefetching-{prefetch}"),
        });
        // The worker holds 1 + prefetch steps in progress, and runs one.
        let expected = 1 + prefetch;
        let deadline = tokio::time::Instant::now() + WAIT;
        let held = loop {
            let held = in_progress(&tasker, &tasks).await;
            if held >= expected || tokio::time::Instant::now() > deadline {
                break held;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Give a worker that would claim more the time to do it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = in_progress(&tasker, &tasks).await;
        assert_eq!((held, after), (expected, expected), "prefetch {prefetch}");
        assert_eq!(running.load(Ordering::SeqCst), 1, "one step runs at a time");
        gate.add_permits(8);
        for task in &tasks {
            let done = tasker.wait_for_task(*task, WAIT).await.expect("wait");
            assert_eq!(done.state, TaskState::Complete);
        }
        worker.shutdown().await;
    }
}

/// One transition as stored, with the parts that vary between runs replaced: the worker's
/// name by `W` and a duration by `D`.
fn stored_transition(t: &tasker::TransitionInfo) -> Value {
    let mut metadata = t.metadata.clone();
    if let Some(object) = metadata.as_object_mut() {
        for (key, value) in object.iter_mut() {
            match key.as_str() {
                "worker" => *value = json!("W"),
                "duration_ms" if !value.is_null() => *value = json!("D"),
                _ => {}
            }
        }
    }
    json!([
        t.from_state,
        t.to_state,
        metadata,
        t.sort_key,
        t.most_recent
    ])
}

/// Every transition a run writes, checked row by row on both backends: PostgreSQL claims and
/// completes in a few batched statements and SQLite step by step, and both must write the
/// same rows (a retry's `error → pending → in_progress`, a serial task, a join).
async fn histories_are_exact(db: TestDatabase) {
    let template = TaskTemplate::new("test", "exact", "1.0.0")
        .concurrent(false)
        .step(StepTemplate::new("a", "echo"))
        .step(StepTemplate::new("b", "flaky").depends_on(["a"]))
        .step(StepTemplate::new("c", "echo").depends_on(["a"]))
        .step(StepTemplate::new("d", "echo").depends_on(["b", "c"]));
    let failed = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&failed);
    let tasker = db
        .builder()
        .configure(|c| c.backoff = tasker::BackoffConfig::fixed(Duration::from_millis(50)))
        .template(template)
        .handler("echo", echo())
        .handler(
            "flaky",
            handler_fn(move |_| {
                let f = Arc::clone(&f);
                async move {
                    if f.swap(true, Ordering::SeqCst) {
                        Ok(json!("ok"))
                    } else {
                        Err(StepError::retryable("once"))
                    }
                }
            }),
        )
        .build()
        .await
        .expect("build");
    let done = run_to_end(&tasker, request("exact")).await;
    assert_eq!(done.state, TaskState::Complete);
    let mut steps = Vec::new();
    for step in tasker.steps(done.task_id).await.expect("steps") {
        let transitions = tasker
            .step_transitions(step.step_id)
            .await
            .expect("transitions");
        let rows: Vec<Value> = transitions.iter().map(stored_transition).collect();
        steps.push(json!({ "step": step.name, "transitions": rows }));
    }
    steps.sort_by_key(|s| s["step"].as_str().map(str::to_owned));
    let claimed = |attempt: i32, key: i32, last: bool| json!(["pending", "in_progress", { "attempt": attempt, "worker": "W" }, key, last]);
    let completed = |attempt: i32, key: i32| json!(["in_progress", "complete", { "attempt": attempt, "duration_ms": "D" }, key, true]);
    let created = json!([null, "pending", {}, 0, false]);
    let simple = |name: &str| {
        json!({ "step": name, "transitions": [
            created.clone(),
            claimed(1, 10, false),
            completed(1, 20),
        ] })
    };
    let b = json!({ "step": "b", "transitions": [
        created.clone(),
        claimed(1, 10, false),
        ["in_progress", "error", {
            "attempt": 1, "duration_ms": "D", "error": "once", "error_class": "retryable",
            "reason": "step_error", "retry_in_seconds": 0.05,
        }, 20, false],
        ["error", "pending", {}, 30, false],
        claimed(2, 40, false),
        completed(2, 50),
    ] });
    assert_eq!(
        Value::Array(steps),
        json!([simple("a"), b, simple("c"), simple("d")])
    );
    let task: Vec<Value> = tasker
        .task_transitions(done.task_id)
        .await
        .expect("task transitions")
        .iter()
        .map(|t| {
            json!([
                t.from_state,
                t.to_state,
                t.metadata,
                t.sort_key,
                t.most_recent
            ])
        })
        .collect();
    assert_eq!(
        Value::Array(task),
        json!([
            [null, "pending", {}, 0, false],
            ["pending", "in_progress", {}, 10, false],
            ["in_progress", "complete", {}, 20, true],
        ])
    );
    // The seed's tables, views over the logs, derive the same `most_recent`: one row per
    // entity, the last (keys 20, 50, 20, 20 for the steps, 20 for the task).
    let most_recent = |view: &str, entity: &str| {
        db.number(&format!(
            "SELECT COUNT(*) * 1000 + COALESCE(SUM(sort_key), 0) AS n FROM {view} \
             WHERE most_recent AND {entity}"
        ))
    };
    let of_task = format!(
        "workflow_step_id IN (SELECT workflow_step_id FROM tasker_workflow_steps WHERE task_id = {})",
        done.task_id
    );
    assert_eq!(
        most_recent("tasker_workflow_step_transitions", &of_task),
        4110
    );
    assert_eq!(
        most_recent(
            "tasker_task_transitions",
            &format!("task_id = {}", done.task_id)
        ),
        1020
    );
}

/// How many steps of `tasks` are in progress.
async fn in_progress(tasker: &Tasker, tasks: &[i64]) -> usize {
    let mut held = 0;
    for task in tasks {
        let steps = tasker.steps(*task).await.expect("steps");
        held += steps
            .iter()
            .filter(|s| s.state == StepState::InProgress)
            .count();
    }
    held
}

/// A worker whose steps outlast the prefetch horizon (50 ms) stops claiming ahead: each
/// finished step's place is held back instead of filled, until it holds only what it runs.
async fn prefetch_shrinks_when_steps_run_long(db: TestDatabase) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler_gate = Arc::clone(&gate);
    let tasker = db
        .builder()
        .template(single("slow"))
        .handler(
            "who",
            handler_fn(move |_cx| {
                let gate = Arc::clone(&handler_gate);
                async move {
                    gate.acquire().await.expect("gate").forget();
                    Ok(json!(null))
                }
            }),
        )
        .build()
        .await
        .expect("build");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(
            tasker
                .create_task(request("slow"))
                .await
                .expect("create")
                .id,
        );
    }
    let worker = tasker.start_worker_with(tasker::WorkerOptions {
        concurrency: 1,
        claim_batch: 32,
        prefetch: 4,
        id: "slow-steps".to_owned(),
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    while in_progress(&tasker, &tasks).await < 5 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(in_progress(&tasker, &tasks).await, 5, "1 running + 4 ahead");
    // Six steps of 120 ms each: the first shows steps are long, the next four give back the
    // places claimed ahead, the sixth runs alone.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        gate.add_permits(1);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        in_progress(&tasker, &tasks).await,
        1,
        "only the running step is held"
    );
    gate.add_permits(10);
    for task in &tasks {
        let done = tasker.wait_for_task(*task, WAIT).await.expect("wait");
        assert_eq!(done.state, TaskState::Complete);
    }
    worker.shutdown().await;
}

/// A worker records itself at start (and at each heartbeat) and removes itself when it stops
/// gracefully; the list shows what it runs.
async fn workers_are_listed_while_they_run(db: TestDatabase) {
    let tasker = db
        .builder()
        .configure(|c| c.concurrency = 3)
        .build()
        .await
        .expect("build");
    let recent = Duration::from_secs(60);
    assert_eq!(tasker.workers(recent).await.expect("workers"), []);
    let worker = tasker.start_worker();
    let deadline = tokio::time::Instant::now() + WAIT;
    let seen = loop {
        let seen = tasker.workers(recent).await.expect("workers");
        if !seen.is_empty() || tokio::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].concurrency, seen[0].running), (3, 0));
    assert_eq!(seen[0].worker_id, worker.id());
    worker.shutdown().await;
    assert_eq!(tasker.workers(recent).await.expect("workers"), []);
}

/// Annotations are JSON objects of a named type, kept in order; what cannot be stored or
/// looked up by key is refused, naming the field, and nothing is written.
async fn annotations_are_checked_and_kept(db: TestDatabase) {
    let tasker = db
        .builder()
        .template(TaskTemplate::new("test", "note", "1.0.0").step(StepTemplate::new("a", "echo")))
        .handler("echo", echo())
        .build()
        .await
        .expect("build");
    let id = tasker
        .create_task(request("note"))
        .await
        .expect("create")
        .id;
    tasker
        .annotate(id, "audit", json!({ "by": "ann" }))
        .await
        .expect("annotate");
    tasker
        .annotate(id, "audit", json!({ "by": "bob" }))
        .await
        .expect("annotate");
    let refused = [
        ("audit", json!(["not", "an", "object"]), "annotation"),
        ("audit", json!({ "by": "a\u{0}b" }), "annotation"),
        ("audit", json!({ "a\u{0}": 1 }), "annotation"),
        ("", json!({}), "annotation_type"),
        (&*"t".repeat(65), json!({}), "annotation_type"),
    ];
    for (annotation_type, annotation, field) in refused {
        match tasker
            .annotate(id, annotation_type, annotation.clone())
            .await
        {
            Err(Error::InvalidField { field: f, .. }) => assert_eq!(f, field, "{annotation}"),
            other => panic!("{annotation}: {other:?}"),
        }
    }
    assert!(matches!(
        tasker.annotate(id + 1000, "audit", json!({})).await,
        Err(Error::TaskNotFound(_))
    ));
    let kept = tasker.annotations(id).await.expect("annotations");
    let by: Vec<&Value> = kept.iter().map(|a| &a.annotation["by"]).collect();
    assert_eq!(by, [&json!("ann"), &json!("bob")]);
    assert!(kept.iter().all(|a| a.annotation_type == "audit"));
    assert_eq!(tasker.annotation_types().await.expect("types"), ["audit"]);
}

/// A delayed task exists at once and is durable, but its steps start only at its `run_at`
/// (never before, on the database clock) and soon after; one cancelled before then never runs.
async fn delayed_tasks_start_at_their_time(db: TestDatabase) {
    let tasker = db
        .builder()
        .template(TaskTemplate::new("test", "later", "1.0.0").step(StepTemplate::new("a", "echo")))
        .handler("echo", echo())
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let delayed = tasker
        .create_task(request("later").delay(Duration::from_millis(1500)))
        .await
        .expect("create")
        .id;
    let at_once = tasker
        .create_task(request("later"))
        .await
        .expect("create")
        .id;
    let far = tasker
        .create_task(request("later").run_at(chrono::Utc::now() + chrono::Duration::hours(1)))
        .await
        .expect("create")
        .id;
    let past = tasker
        .create_task(request("later").run_at(chrono::Utc::now() - chrono::Duration::hours(1)))
        .await
        .expect("create")
        .id;
    tasker.wait_for_task(at_once, WAIT).await.expect("at once");
    tasker
        .wait_for_task(past, WAIT)
        .await
        .expect("a time already past");

    let waiting = tasker.task(delayed).await.expect("task");
    let run_at = waiting.run_at.expect("a delayed task has its run_at");
    let steps = tasker.steps(delayed).await.expect("steps");
    // Finished work came first only if the clock had reached the delayed task's time.
    if waiting.state != TaskState::Complete {
        assert_eq!(waiting.state, TaskState::Pending);
        assert_eq!(steps[0].attempts, 0, "claimed before its time");
        assert_eq!(steps[0].ready_at, None, "ready before its time");
    }
    let done = tasker.wait_for_task(delayed, WAIT).await.expect("delayed");
    assert_eq!(done.state, TaskState::Complete);
    let step = &tasker.steps(delayed).await.expect("steps")[0];
    assert!(
        step.last_attempted_at.expect("attempted") >= run_at,
        "started at {:?}, before its run_at {run_at}",
        step.last_attempted_at
    );
    assert_history_consistent(&tasker, delayed).await;

    // Cancelled before its time: it stays cancelled, and its time never starts it.
    assert!(tasker.cancel_task(far).await.expect("cancel"));
    assert_eq!(
        tasker.task(far).await.expect("task").state,
        TaskState::Cancelled
    );
    assert_eq!(tasker.start_due_tasks().await.expect("promote"), 0);
    worker.shutdown().await;
    let steps = tasker.steps(far).await.expect("steps");
    assert!(
        steps
            .iter()
            .all(|s| s.attempts == 0 && s.state == StepState::Cancelled)
    );

    // Both ways of saying when are refused together, and a time out of range.
    let both = request("later")
        .run_at(chrono::Utc::now())
        .delay(Duration::from_secs(1));
    assert!(
        both.run_at.is_none(),
        "the last one given wins in the builder"
    );
    let mut both = request("later");
    both.run_at = Some(chrono::Utc::now());
    both.delay_seconds = Some(1.0);
    assert!(matches!(
        tasker.create_task(both).await,
        Err(Error::InvalidField {
            field: "delay_seconds",
            ..
        })
    ));
    let mut negative = request("later");
    negative.delay_seconds = Some(-1.0);
    assert!(matches!(
        tasker.create_task(negative).await,
        Err(Error::InvalidField {
            field: "delay_seconds",
            ..
        })
    ));
}

/// A prune deletes the finished tasks past the period with every row of theirs and keeps the
/// rest: tasks in error (unless asked), unfinished ones, recent ones. A worker with a retention
/// period prunes on its own.
async fn pruning_deletes_finished_tasks_whole(db: TestDatabase) {
    let template = |name: &str| {
        TaskTemplate::new("test", name, "1.0.0")
            .step(StepTemplate::new("a", "echo"))
            .step(
                StepTemplate::new("b", name)
                    .depends_on(["a"])
                    .retry_limit(1),
            )
    };
    let build = |retention: Option<Duration>| {
        db.builder()
            .template(template("ok"))
            .template(template("fails"))
            .handler("echo", echo())
            .handler("ok", echo())
            .handler(
                "fails",
                handler_fn(|_| async { Err(StepError::permanent("no")) }),
            )
            .configure(move |c| c.retention = retention)
    };
    let tasker = build(None).build().await.expect("build");
    let complete = run_to_end(&tasker, request("ok")).await.task_id;
    let failed = run_to_end(&tasker, request("fails")).await.task_id;
    let cancelled = tasker.create_task(request("ok")).await.expect("create").id;
    tasker.cancel_task(cancelled).await.expect("cancel");
    let pending = tasker.create_task(request("ok")).await.expect("create").id;
    tasker
        .annotate(complete, "audit", json!({ "by": "ann" }))
        .await
        .expect("annotate");
    let rows_of = |tasks: &[i64]| {
        let ids = tasks
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let steps =
            format!("SELECT workflow_step_id FROM tasker_workflow_steps WHERE task_id IN ({ids})");
        [
            format!("SELECT COUNT(*) AS n FROM tasker_tasks WHERE task_id IN ({ids})"),
            format!("SELECT COUNT(*) AS n FROM tasker_workflow_steps WHERE task_id IN ({ids})"),
            format!("SELECT COUNT(*) AS n FROM tasker_workflow_step_edges WHERE from_step_id IN ({steps}) OR to_step_id IN ({steps})"),
            format!("SELECT COUNT(*) AS n FROM tasker_workflow_step_transition_log WHERE workflow_step_id IN ({steps})"),
            format!("SELECT COUNT(*) AS n FROM tasker_task_transition_log WHERE task_id IN ({ids})"),
            format!("SELECT COUNT(*) AS n FROM tasker_task_annotations WHERE task_id IN ({ids})"),
        ]
        .iter()
        .map(|q| db.number(q))
        .collect::<Vec<i64>>()
    };
    let before = rows_of(&[complete, cancelled]);
    assert!(before.iter().all(|&n| n > 0), "{before:?}");
    let total_steps = db.number("SELECT COUNT(*) AS n FROM tasker_workflow_steps");
    let edges_before = db.number("SELECT COUNT(*) AS n FROM tasker_workflow_step_edges");

    // Nothing is an hour old yet.
    let hour = PruneOptions::older_than(Duration::from_secs(3600));
    assert_eq!(tasker.prune(hour).await.expect("prune"), Pruned::default());
    // A dry run counts what would go and deletes nothing.
    let now = PruneOptions {
        dry_run: true,
        ..PruneOptions::older_than(Duration::ZERO)
    };
    let preview = tasker.prune(now).await.expect("preview");
    assert_eq!(preview, Pruned { tasks: 2, steps: 4 });
    assert_eq!(rows_of(&[complete, cancelled]), before);

    let pruned = tasker
        .prune(PruneOptions::older_than(Duration::ZERO))
        .await
        .expect("prune");
    assert_eq!(pruned, preview);
    assert_eq!(
        rows_of(&[complete, cancelled]),
        [0; 6],
        "rows of pruned tasks left"
    );
    for kept in [failed, pending] {
        assert!(tasker.task(kept).await.is_ok(), "task {kept} was pruned");
    }
    assert_eq!(
        db.number("SELECT COUNT(*) AS n FROM tasker_workflow_steps"),
        total_steps - 4
    );
    assert_eq!(
        db.number("SELECT COUNT(*) AS n FROM tasker_workflow_step_edges"),
        edges_before - 2
    );

    // Tasks in error go when asked; unfinished ones never.
    let errors = PruneOptions {
        include_errors: true,
        ..PruneOptions::older_than(Duration::ZERO)
    };
    assert_eq!(
        tasker.prune(errors).await.expect("prune"),
        Pruned { tasks: 1, steps: 2 }
    );
    assert!(tasker.task(failed).await.is_err());
    assert!(tasker.task(pending).await.is_ok());

    // A worker of an engine with a retention period prunes as it starts (then once a minute).
    let done = run_to_end(&tasker, request("ok")).await.task_id;
    let retaining = build(Some(Duration::ZERO)).build().await.expect("build");
    let worker = retaining.start_worker();
    let deadline = std::time::Instant::now() + WAIT;
    while retaining.task(done).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    assert_eq!(rows_of(&[done]), [0; 6]);
}

/// A database the server refuses (a misspelt name) is reported with the server's reason, not
/// as a pool that timed out waiting for a connection.
#[tokio::test]
async fn a_refused_connection_names_the_server_s_reason() {
    let Ok(server) = std::env::var("TASKER_TEST_POSTGRES_URL") else {
        return;
    };
    let Some((base, _)) = server.rsplit_once('/') else {
        return;
    };
    let missing = format!("{base}/tasker_surely_missing_{}", std::process::id());
    let error = Tasker::builder()
        .database_url(missing)
        .build()
        .await
        .expect_err("no such database");
    // The server's own refusal, from one attempt: not the pool's timeout (`Error::Pool`), which
    // came only after `connection_timeout`.
    assert!(matches!(error, tasker::Error::Connection(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("does not exist"), "{text}");

    let unopenable = Tasker::builder()
        .database_url("/nonexistent-dir/tasker.db")
        .build()
        .await
        .expect_err("no such directory");
    assert!(
        matches!(unopenable, tasker::Error::Connection(_)),
        "{unopenable:?}"
    );
    assert!(
        unopenable
            .to_string()
            .contains("unable to open database file"),
        "{unopenable}"
    );
}
