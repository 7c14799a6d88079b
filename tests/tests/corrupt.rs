//! Stored data the engine cannot read is reported as corrupt, naming the table, row and column;
//! nothing reads it as a default. Each test writes a bad value by hand, then reads it through
//! the public API, on SQLite and on PostgreSQL.

use std::time::Duration;

use serde_json::json;
use tasker::Error;
use tasker::prelude::*;
use tasker::{Outcome, TaskFilter};
use tasker_tests::{TestDatabase, conformance};

conformance!(
    unreadable_task_state,
    unreadable_task_columns,
    unreadable_context_fails_the_step_for_good,
    unreadable_step_state,
    unreadable_step_results,
    unreadable_transitions,
    unreadable_parent_result_fails_the_child_for_good,
    in_progress_step_without_lease_owner,
    unreadable_stored_template,
    results_that_are_not_json_are_refused,
);

const WAIT: Duration = Duration::from_secs(30);

/// Asserts `result` is `CorruptData` for this table, row and column.
#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(
    result: tasker::Result<T>,
    table: &str,
    id: i64,
    column: &str,
) {
    match result {
        Err(Error::CorruptData {
            table: t,
            id: i,
            column: c,
            ..
        }) => assert_eq!((t, i, c), (table, id, column)),
        other => panic!("expected corrupt data in {table} row {id} column {column}, got {other:?}"),
    }
}

fn chain() -> TaskTemplate {
    TaskTemplate::new("test", "chain", "1.0.0")
        .step(StepTemplate::new("a", "ok"))
        .step(StepTemplate::new("b", "ok").depends_on(["a"]))
}

async fn engine(db: &TestDatabase) -> Tasker {
    db.builder()
        .template(chain())
        .handler("ok", handler_fn(|_cx| async { Ok(json!({ "ok": true })) }))
        .build()
        .await
        .expect("build")
}

fn request() -> TaskRequest {
    TaskRequest::new("chain")
        .namespace("test")
        .version("1.0.0")
        .context(json!({ "order": 1 }))
}

/// Steps `a` and `b` of a new task.
async fn create(tasker: &Tasker) -> (i64, i64, i64) {
    let task = tasker.create_task(request()).await.expect("create").id;
    let steps = tasker.steps(task).await.expect("steps");
    (task, steps[0].step_id, steps[1].step_id)
}

async fn unreadable_task_state(db: TestDatabase) {
    let tasker = engine(&db).await;
    let (task, _, _) = create(&tasker).await;
    db.execute(&format!(
        "UPDATE tasker_tasks SET state = 'running' WHERE task_id = {task}"
    ));
    assert_corrupt(tasker.task(task).await, "tasker_tasks", task, "state");
    assert_corrupt(
        tasker
            .tasks(TaskFilter {
                limit: 10,
                ..TaskFilter::default()
            })
            .await,
        "tasker_tasks",
        task,
        "state",
    );
    // Cancelling decided from the stored state; it must not guess one.
    assert_corrupt(
        tasker.cancel_task(task).await,
        "tasker_tasks",
        task,
        "state",
    );
    assert_corrupt(tasker.retry_task(task).await, "tasker_tasks", task, "state");
    match tasker.task_counts().await {
        Err(Error::CorruptData {
            table,
            column,
            problem,
            ..
        }) => {
            assert_eq!((table, column), ("tasker_tasks", "state"));
            assert!(problem.contains("running"), "{problem}");
        }
        other => panic!("expected corrupt task states, got {other:?}"),
    }
}

async fn unreadable_task_columns(db: TestDatabase) {
    let tasker = engine(&db).await;
    for column in ["context", "tags", "bypass_steps"] {
        let (task, _, _) = create(&tasker).await;
        db.execute(&format!(
            "UPDATE tasker_tasks SET {column} = '{{not json' WHERE task_id = {task}"
        ));
        assert_corrupt(tasker.task(task).await, "tasker_tasks", task, column);
    }
}

/// The last transition of a step, polled until it enters `state`.
async fn wait_for_step(tasker: &Tasker, step: i64, state: &str) -> tasker::TransitionInfo {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let transitions = tasker.step_transitions(step).await.expect("transitions");
        if let Some(last) = transitions.last().filter(|t| t.to_state == state) {
            return last.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "step {step} never reached {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn unreadable_context_fails_the_step_for_good(db: TestDatabase) {
    let tasker = engine(&db).await;
    let (task, a, _) = create(&tasker).await;
    db.execute(&format!(
        "UPDATE tasker_tasks SET context = '{{not json' WHERE task_id = {task}"
    ));
    let worker = tasker.start_worker();
    let failed = wait_for_step(&tasker, a, "error").await;
    worker.shutdown().await;
    assert_eq!(failed.metadata["reason"], "corrupt_data");
    assert_eq!(failed.metadata["error_class"], "permanent");
    assert_eq!(failed.metadata["retry_in_seconds"], serde_json::Value::Null);
    let message = failed.metadata["error"].as_str().expect("message");
    assert!(
        message.contains(&format!("`tasker_tasks` row {task}, column `context`")),
        "{message}"
    );
}

async fn unreadable_step_state(db: TestDatabase) {
    let tasker = engine(&db).await;
    let (task, a, _) = create(&tasker).await;
    db.execute(&format!(
        "UPDATE tasker_workflow_steps SET state = 'paused' WHERE workflow_step_id = {a}"
    ));
    assert_corrupt(
        tasker.steps(task).await,
        "tasker_workflow_steps",
        a,
        "state",
    );
    assert_corrupt(
        tasker.cancel_step(task, a).await,
        "tasker_workflow_steps",
        a,
        "state",
    );
    assert_corrupt(
        tasker.resolve_step(a, None).await,
        "tasker_workflow_steps",
        a,
        "state",
    );
    assert_corrupt(
        tasker.cancel_task(task).await,
        "tasker_workflow_steps",
        a,
        "state",
    );
}

async fn unreadable_step_results(db: TestDatabase) {
    let tasker = engine(&db).await;
    let (task, a, _) = create(&tasker).await;
    db.execute(&format!(
        "UPDATE tasker_workflow_steps SET results = '{{\"half\":' WHERE workflow_step_id = {a}"
    ));
    assert_corrupt(
        tasker.steps(task).await,
        "tasker_workflow_steps",
        a,
        "results",
    );
}

async fn unreadable_transitions(db: TestDatabase) {
    let tasker = engine(&db).await;
    let (task, a, _) = create(&tasker).await;
    db.execute(&format!(
        "UPDATE tasker_workflow_step_transition_log SET metadata = 'nope' WHERE workflow_step_id = {a}"
    ));
    let result = tasker.step_transitions(a).await;
    assert!(
        matches!(
            result,
            Err(Error::CorruptData {
                table: "tasker_workflow_step_transition_log",
                column: "metadata",
                ..
            })
        ),
        "{result:?}"
    );
    db.execute(&format!(
        "UPDATE tasker_task_transition_log SET to_state = 'started' WHERE task_id = {task}"
    ));
    let result = tasker.task_transitions(task).await;
    assert!(
        matches!(
            result,
            Err(Error::CorruptData {
                table: "tasker_task_transition_log",
                column: "to_state",
                ..
            })
        ),
        "{result:?}"
    );
}

async fn unreadable_parent_result_fails_the_child_for_good(db: TestDatabase) {
    let tasker = engine(&db).await;
    let (_, a, b) = create(&tasker).await;
    let claimed = tasker
        .claim_steps("by-hand", 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(claimed.step_id, a);
    tasker
        .complete_step(Outcome {
            step_id: a,
            task_id: claimed.task_id,
            name: claimed.name,
            attempt: claimed.attempt,
            owner: "by-hand".to_owned(),
            concurrent: true,
            result: Ok("{}".to_owned()),
            duration_ms: None,
        })
        .await
        .expect("complete a");
    db.execute(&format!(
        "UPDATE tasker_workflow_steps SET results = '[1,' WHERE workflow_step_id = {a}"
    ));
    let worker = tasker.start_worker();
    let failed = wait_for_step(&tasker, b, "error").await;
    worker.shutdown().await;
    assert_eq!(failed.metadata["reason"], "corrupt_data");
    let message = failed.metadata["error"].as_str().expect("message");
    assert!(
        message.contains(&format!(
            "`tasker_workflow_steps` row {a}, column `results`"
        )),
        "{message}"
    );
}

async fn in_progress_step_without_lease_owner(db: TestDatabase) {
    let tasker = engine(&db).await;
    let (_, a, _) = create(&tasker).await;
    db.execute(&format!(
        "UPDATE tasker_workflow_steps SET state = 'in_progress', lease_owner = NULL, \
         lease_expires_at = '2000-01-01 00:00:00' WHERE workflow_step_id = {a}"
    ));
    assert_corrupt(
        tasker.recover_expired_leases().await,
        "tasker_workflow_steps",
        a,
        "lease_owner",
    );
}

async fn unreadable_stored_template(db: TestDatabase) {
    let tasker = engine(&db).await;
    drop(tasker);
    db.execute("UPDATE tasker_named_tasks SET configuration = '{\"name\": 1}'");
    let result = db
        .builder()
        .auto_register(false)
        .templates_from_database(true)
        .build()
        .await;
    match result {
        Err(Error::CorruptData { table, column, .. }) => {
            assert_eq!((table, column), ("tasker_named_tasks", "configuration"));
        }
        other => panic!("expected a corrupt stored template, got {other:?}"),
    }
}

/// The public completion path cannot store what would read back as corrupt.
async fn results_that_are_not_json_are_refused(db: TestDatabase) {
    let tasker = engine(&db).await;
    let (task, a, _) = create(&tasker).await;
    let claimed = tasker
        .claim_steps("by-hand", 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .remove(0);
    let outcome = |result: &str| Outcome {
        step_id: a,
        task_id: task,
        name: claimed.name.clone(),
        attempt: claimed.attempt,
        owner: "by-hand".to_owned(),
        concurrent: true,
        result: Ok(result.to_owned()),
        duration_ms: None,
    };
    match tasker.complete_steps(vec![outcome("{oops")]).await {
        Err(Error::InvalidResult { step_id, problem }) => {
            assert_eq!(step_id, a);
            assert!(problem.contains("not JSON"), "{problem}");
        }
        other => panic!("expected the result to be refused, got {other:?}"),
    }
    let steps = tasker.steps(task).await.expect("steps stay readable");
    assert_eq!(
        steps[0].state,
        StepState::InProgress,
        "nothing was recorded"
    );
    tasker
        .complete_step(outcome("{\"ok\": true}"))
        .await
        .expect("a JSON result is recorded");
}
