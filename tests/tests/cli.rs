//! `cargo tasker` operating on a live database: list, show, diagram, cancel, retry, resolve,
//! status, on SQLite and PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tasker::prelude::*;
use tasker::serde_json::{Value, json};
use tasker_cli::CliError;
use tasker_tests::{TestDatabase, conformance};

const WAIT: Duration = Duration::from_secs(30);

conformance!(operations_on_a_live_database);

tasker::custom_event! {
    /// An order was audited.
    pub ORDER_AUDITED = "order.audited";
}

/// Runs `cargo tasker ARGS --database-url URL` in-process, off the async runtime.
async fn cli(url: &str, args: &[&str]) -> Result<String, CliError> {
    let mut argv: Vec<String> = vec!["cargo-tasker".into(), "tasker".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv.push("--database-url".into());
    argv.push(url.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        tasker_cli::run(argv.into_iter().map(Into::into), &mut out)
            .map(|()| String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .expect("cli thread")
}

fn request(name: &str) -> TaskRequest {
    TaskRequest::new(name).namespace("shop").version("1.0.0")
}

async fn operations_on_a_live_database(db: TestDatabase) {
    let charge_fails = Arc::new(AtomicBool::new(true));
    let fails = Arc::clone(&charge_fails);
    let tasker = db
        .builder()
        .template(
            TaskTemplate::new("shop", "order", "1.0.0")
                .step(StepTemplate::new("fetch", "ok"))
                .step(StepTemplate::new("charge", "charge").depends_on(["fetch"])),
        )
        .template(TaskTemplate::new("shop", "ping", "1.0.0").step(StepTemplate::new("only", "ok")))
        .handler("ok", handler_fn(|_| async { Ok(json!({ "ok": true })) }))
        .handler(
            "charge",
            handler_fn(move |_| {
                let fails = Arc::clone(&fails);
                async move {
                    if fails.load(Ordering::SeqCst) {
                        Err(StepError::permanent("card declined"))
                    } else {
                        Ok(json!({ "charged": true }))
                    }
                }
            }),
        )
        .build()
        .await
        .expect("build");
    let url = db.url.as_str();

    let worker = tasker.start_worker();
    let failed = tasker
        .create_task(
            request("order")
                .reason("first")
                .context(json!({ "card": { "token": "tok_CANARY" }, "sku": "book" })),
        )
        .await
        .expect("order");
    let done = tasker.create_task(request("ping")).await.expect("ping");
    for id in [failed.id, done.id] {
        tasker.wait_for_task(id, WAIT).await.expect("finish");
    }
    worker.shutdown().await;
    let waiting = tasker.create_task(request("ping")).await.expect("pending");

    let list = cli(url, &["tasks", "list"]).await.expect("list");
    for (id, state) in [
        (failed.id, "error"),
        (done.id, "complete"),
        (waiting.id, "pending"),
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.contains(state)),
            "task {id} {state} missing from:\n{list}"
        );
    }
    assert!(
        list.contains("shop/order@1.0.0") && list.contains("first"),
        "{list}"
    );

    let json: Value = serde_json::from_str(
        &cli(url, &["tasks", "list", "--state", "error", "--json"])
            .await
            .expect("json"),
    )
    .expect("list JSON");
    let ids: Vec<i64> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["task_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [failed.id]);

    let show = cli(url, &["tasks", "show", &failed.id.to_string()])
        .await
        .expect("show");
    assert!(
        show.contains("\"sku\":\"book\"") && !show.contains("tok_CANARY"),
        "{show}"
    );
    assert!(show.contains("error: card declined"), "{show}");
    // Its charge failed for good: the task is blocked, half done.
    assert!(
        show.contains(
            "execution blocked_by_failures (handle_failures), health blocked, 50% complete (1 of 2 steps)"
        ),
        "{show}"
    );
    let shown: Value = serde_json::from_str(
        &cli(url, &["tasks", "show", &failed.id.to_string(), "--json"])
            .await
            .expect("show"),
    )
    .expect("show JSON");
    assert_eq!(shown["task"]["state"], "error");
    assert_eq!(shown["execution_context"]["permanently_blocked_steps"], 1);
    let names: Vec<&str> = shown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["fetch", "charge"]);

    let diagram = cli(url, &["diagram", "--task", &failed.id.to_string()])
        .await
        .expect("diagram");
    assert!(diagram.contains("flowchart TD"), "{diagram}");
    assert!(diagram.contains("s0 --> s1"), "{diagram}");
    assert!(
        diagram.contains("class s0 complete") && diagram.contains("class s1 error"),
        "{diagram}"
    );

    // Cancel the waiting task; a second cancel is a no-op that says so.
    let id = waiting.id.to_string();
    assert!(
        cli(url, &["tasks", "cancel", &id])
            .await
            .expect("cancel")
            .contains("cancelled task")
    );
    assert!(
        cli(url, &["tasks", "cancel", &id])
            .await
            .expect("again")
            .contains("already")
    );
    assert_eq!(
        tasker.task(waiting.id).await.expect("task").state,
        TaskState::Cancelled
    );

    // Retry the failed task: it goes back to pending, and with the card fixed it completes.
    let id = failed.id.to_string();
    assert!(
        cli(url, &["tasks", "retry", &id])
            .await
            .expect("retry")
            .contains("pending again")
    );
    charge_fails.store(false, Ordering::SeqCst);
    let worker = tasker.start_worker();
    let finished = tasker
        .wait_for_task(failed.id, WAIT)
        .await
        .expect("retried");
    worker.shutdown().await;
    assert_eq!(finished.state, TaskState::Complete);
    // The earlier attempt's failure is still shown, though the step has since completed.
    let show = cli(url, &["tasks", "show", &id]).await.expect("show");
    let failed_attempts = show.split("failed attempts:").nth(1).unwrap_or_default();
    assert!(
        failed_attempts.lines().any(|l| l.starts_with("charge ")
            && l.contains("permanent")
            && l.contains("card declined")),
        "{show}"
    );
    let shown: Value = serde_json::from_str(
        &cli(url, &["tasks", "show", &id, "--json"])
            .await
            .expect("show"),
    )
    .expect("show JSON");
    let failures = shown["failed_attempts"].as_array().expect("failures");
    assert_eq!(failures.len(), 1, "{shown}");
    assert_eq!(failures[0]["step"], "charge");
    assert_eq!(failures[0]["attempt"], 1);
    assert_eq!(failures[0]["error"], "card declined");

    // Resolve a step by hand on a fresh failure.
    charge_fails.store(true, Ordering::SeqCst);
    let worker = tasker.start_worker();
    let again = tasker.create_task(request("order")).await.expect("order");
    tasker.wait_for_task(again.id, WAIT).await.expect("fails");
    worker.shutdown().await;
    let steps = tasker.steps(again.id).await.expect("steps");
    let charge = steps.iter().find(|s| s.name == "charge").expect("charge");
    let resolved = cli(
        url,
        &[
            "steps",
            "resolve",
            &charge.step_id.to_string(),
            "--result",
            r#"{"charged":"by hand"}"#,
        ],
    )
    .await
    .expect("resolve");
    assert!(resolved.contains("resolved step"), "{resolved}");
    let steps = tasker.steps(again.id).await.expect("steps");
    let charge = steps.iter().find(|s| s.name == "charge").expect("charge");
    assert_eq!(charge.state, StepState::ResolvedManually);
    assert_eq!(charge.results, Some(json!({ "charged": "by hand" })));

    // Custom events declared in this program's code were recorded for tools like this one.
    let events = cli(url, &["events"]).await.expect("events");
    let line = events
        .lines()
        .find(|l| l.starts_with("order.audited"))
        .unwrap_or_else(|| panic!("order.audited missing from:\n{events}"));
    assert!(
        line.contains("recorded by a worker") && line.contains("An order was audited."),
        "{line}"
    );
    assert!(events.contains("task.before_transition") && events.contains("Not published"));
    let _ = ORDER_AUDITED;

    // A task created from the command line, later: it exists at once and waits.
    let created = cli(
        url,
        &[
            "tasks",
            "create",
            "ping",
            "--namespace",
            "shop",
            "--version",
            "1.0.0",
            "--delay",
            "2h",
            "--timeout",
            "1h",
            "--json",
        ],
    )
    .await
    .expect("create");
    let created: Value = serde_json::from_str(&created).expect("task JSON");
    let later = created["task_id"].as_i64().expect("id");
    assert_eq!(created["state"], "pending");
    assert!(created["run_at"].is_string(), "{created}");
    // Its deadline counts from its start, an hour after its run_at.
    let task = tasker
        .task(created["task_id"].as_i64().expect("id"))
        .await
        .expect("task");
    let (run_at, deadline) = (
        task.run_at.expect("run_at"),
        task.deadline_at.expect("deadline"),
    );
    assert_eq!((deadline - run_at).num_seconds(), 3600, "{created}");
    assert_eq!(tasker.steps(later).await.expect("steps")[0].ready_at, None);
    let at = cli(
        url,
        &[
            "tasks",
            "create",
            "ping",
            "--namespace",
            "shop",
            "--version",
            "1.0.0",
            "--run-at",
            "2999-01-01T00:00:00Z",
        ],
    )
    .await
    .expect("create at");
    assert!(
        at.contains("its steps start at 2999-01-01 00:00:00 UTC"),
        "{at}"
    );
    let unknown = cli(url, &["tasks", "create", "nope"])
        .await
        .expect_err("unknown");
    assert!(unknown.message.contains("nope"), "{}", unknown.message);
    let bad = cli(url, &["tasks", "create", "ping", "--delay", "soon"])
        .await
        .expect_err("bad delay");
    assert_eq!(bad.code, 2, "{}", bad.message);

    // Annotations: added, listed, and tasks found by one.
    let annotated = cli(
        url,
        &[
            "tasks",
            "annotate",
            &done.id.to_string(),
            "billing",
            r#"{"invoice":"INV-7"}"#,
        ],
    )
    .await
    .expect("annotate");
    assert_eq!(
        annotated.trim(),
        format!("annotated task {} (billing)", done.id)
    );
    let notes = cli(url, &["tasks", "annotations", &done.id.to_string()])
        .await
        .expect("annotations");
    assert!(
        notes
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("billing") && l.contains(r#"{"invoice":"INV-7"}"#)),
        "{notes}"
    );
    let found = cli(
        url,
        &[
            "tasks",
            "list",
            "--annotation",
            "billing:invoice=INV-7",
            "--json",
        ],
    )
    .await
    .expect("list by annotation");
    let found: Value = serde_json::from_str(&found).expect("tasks JSON");
    let ids: Vec<i64> = found
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["task_id"].as_i64())
        .collect();
    assert_eq!(ids, [done.id]);
    let bad = cli(url, &["tasks", "list", "--annotation", "billing"])
        .await
        .expect_err("malformed filter");
    assert_eq!(bad.code, 2, "{}", bad.message);
    let not_object = cli(
        url,
        &["tasks", "annotate", &done.id.to_string(), "billing", "[1]"],
    )
    .await
    .expect_err("not an object");
    assert!(
        not_object.message.contains("must be a JSON object"),
        "{}",
        not_object.message
    );

    // Schedules: listed with their next run, paused, triggered, resumed.
    tasker
        .register_schedule(
            tasker::Schedule::new("nightly-ping", "ping", "0 3 * * *")
                .namespace("shop")
                .version("1.0.0")
                .time_zone("Asia/Tokyo"),
        )
        .await
        .expect("register");
    let listed = cli(url, &["schedules", "list"]).await.expect("list");
    let row = listed
        .lines()
        .find(|l| l.starts_with("nightly-ping"))
        .unwrap_or_else(|| panic!("no schedule in:\n{listed}"));
    // 03:00 in Tokyo is 18:00 UTC.
    assert!(
        row.contains("shop/ping@1.0.0")
            && row.contains("0 3 * * * (Asia/Tokyo)")
            && row.contains(" 18:00:00"),
        "{row}"
    );
    let paused = cli(url, &["schedules", "pause", "nightly-ping"])
        .await
        .expect("pause");
    assert_eq!(paused.trim(), "paused schedule nightly-ping");
    let listed = cli(url, &["schedules", "list"]).await.expect("list");
    assert!(listed.contains("paused"), "{listed}");
    cli(url, &["schedules", "trigger", "nightly-ping"])
        .await
        .expect("trigger");
    assert_eq!(tasker.run_due_schedules().await.expect("fire"), 1);
    let shown = cli(url, &["schedules", "show", "nightly-ping", "--json"])
        .await
        .expect("show");
    let shown: Value = serde_json::from_str(&shown).expect("schedule JSON");
    assert!(shown["last_task_id"].is_i64(), "{shown}");
    assert_eq!(shown["paused"], true);
    let resumed = cli(url, &["schedules", "resume", "nightly-ping"])
        .await
        .expect("resume");
    assert!(resumed.contains(" 18:00:00 UTC"), "{resumed}");
    let shown = cli(url, &["schedules", "show", "nightly-ping"])
        .await
        .expect("show");
    assert_eq!(shown.matches("  next:").count(), 5, "{shown}");
    let missing = cli(url, &["schedules", "pause", "nope"])
        .await
        .expect_err("unknown schedule");
    assert!(
        missing.message.contains("schedule `nope` not found"),
        "{}",
        missing.message
    );

    // Pruning: a dry run counts, then the finished tasks go and the others stay.
    let preview = cli(url, &["prune", "--older-than", "0s", "--dry-run"])
        .await
        .expect("dry run");
    let finished = db.number("SELECT COUNT(*) AS n FROM tasker_tasks WHERE state IN ('complete', 'cancelled', 'resolved_manually')");
    assert!(
        preview.starts_with(&format!("would delete {finished} task(s)")),
        "{preview} ({finished} finished)"
    );
    let kept = cli(url, &["prune", "--older-than", "30d"])
        .await
        .expect("prune");
    assert!(kept.starts_with("deleted 0 task(s)"), "{kept}");
    let pruned = cli(url, &["prune", "--older-than", "0s"])
        .await
        .expect("prune");
    assert!(
        pruned.starts_with(&format!("deleted {finished} task(s)")),
        "{pruned}"
    );
    assert!(
        tasker.task(done.id).await.is_err(),
        "a complete task was kept"
    );
    assert!(
        tasker.task(later).await.is_ok(),
        "a pending task was pruned"
    );

    // Migrations and errors.
    let status = cli(url, &["status"]).await.expect("status");
    assert!(
        status.contains("applied") && !status.contains("pending"),
        "{status}"
    );
    assert!(
        cli(url, &["migrate"])
            .await
            .expect("migrate")
            .contains("applied 0 migration(s)")
    );
    let missing = cli(url, &["tasks", "show", "987654"])
        .await
        .expect_err("missing");
    assert!(
        missing.message.contains("task 987654 not found"),
        "{}",
        missing.message
    );
    let bad = cli(url, &["steps", "resolve", "1", "--result", "{nope"])
        .await
        .expect_err("json");
    assert_eq!(bad.code, 2);
    assert!(
        bad.message.contains("`--result` is not JSON"),
        "{}",
        bad.message
    );
}

#[tokio::test]
async fn a_missing_sqlite_file_is_not_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("typo.db");
    let url = path.display().to_string();
    let error = cli(&url, &["tasks", "list"]).await.expect_err("missing");
    assert!(
        error.message.contains("no database at"),
        "{}",
        error.message
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn an_unmigrated_database_is_reported() {
    let db = TestDatabase::sqlite();
    std::fs::write(&db.url, b"").expect("empty file");
    let error = cli(&db.url, &["tasks", "list"])
        .await
        .expect_err("unmigrated");
    assert!(
        error.message.contains("cargo tasker migrate"),
        "{}",
        error.message
    );
    let status = cli(&db.url, &["status"]).await.expect("status");
    assert!(status.contains("pending"), "{status}");
}
