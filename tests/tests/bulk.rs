//! Bulk creation: `Tasker::create_many` and `POST /tasks` with an array, on SQLite and
//! PostgreSQL. A batch answers each request in its place, honours idempotency keys per request,
//! and writes the rows, transitions and events the same creates one by one would.

use std::collections::HashMap;

use reqwest::StatusCode;
use tasker::events::Event;
use tasker::prelude::*;
use tasker::serde_json::{Value, json};
use tasker::server::ServerConfig;
use tasker::{Error, IdentityStrategy, NewTask};
use tasker_tests::{ApiServer, Kind, TestDatabase, assert_history_consistent, conformance};

conformance!(
    a_batch_answers_each_request_in_its_place,
    idempotency_keys_are_honoured_per_request,
    identical_requests_in_a_batch_are_duplicates_under_hash_identity,
    a_batch_writes_what_creates_one_by_one_write,
    bypassed_steps_in_a_batch,
    a_batch_larger_than_one_statement,
    a_database_error_fails_the_whole_batch,
    typed_contexts_in_a_batch,
    the_api_takes_an_array_of_task_requests,
    concurrent_creates_share_transactions,
    a_request_that_fails_in_the_database_fails_alone,
);

/// `fetch → {charge, pack} → ship`; `pack` is skippable, the context needs an `order_id`.
fn order() -> TaskTemplate {
    TaskTemplate::new("shop", "order", "1.0.0")
        .schema(json!({
            "type": "object",
            "required": ["order_id"],
            "properties": { "order_id": { "type": "integer" } }
        }))
        .step(StepTemplate::new("fetch", "ok"))
        .step(StepTemplate::new("charge", "ok").depends_on(["fetch"]))
        .step(
            StepTemplate::new("pack", "ok")
                .depends_on(["fetch"])
                .skippable(true),
        )
        .step(StepTemplate::new("ship", "ok").depends_on(["charge", "pack"]))
}

/// One skippable step.
fn note() -> TaskTemplate {
    TaskTemplate::new("shop", "note", "1.0.0")
        .step(StepTemplate::new("write", "ok").skippable(true))
}

async fn engine(db: &TestDatabase, identity: IdentityStrategy) -> Tasker {
    db.builder()
        .identity_strategy(identity)
        .template(order())
        .template(note())
        .handler("ok", handler_fn(|_| async { Ok(json!({ "ok": true })) }))
        .build()
        .await
        .expect("build")
}

fn order_request(order_id: i64) -> TaskRequest {
    TaskRequest::new("order")
        .namespace("shop")
        .version("1.0.0")
        .context(json!({ "order_id": order_id }))
}

fn note_request() -> TaskRequest {
    TaskRequest::new("note").namespace("shop").version("1.0.0")
}

/// The id of a created task, failing the test on an error.
fn created(result: &tasker::Result<NewTask>) -> NewTask {
    match result {
        Ok(task) => *task,
        Err(error) => panic!("expected a task, got {error}"),
    }
}

async fn a_batch_answers_each_request_in_its_place(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Unique).await;
    let results = tasker
        .create_many(vec![
            order_request(1),
            order_request(2).context(json!({ "order_id": "two" })),
            TaskRequest::new("missing"),
            order_request(4),
            order_request(5).initiator("i".repeat(200)),
            order_request(6).bypass_step("charge"),
            order_request(7).bypass_step("nope"),
            note_request(),
        ])
        .await
        .expect("batch");
    assert_eq!(results.len(), 8, "one result per request");
    assert!(
        matches!(results[1], Err(Error::InvalidContext { .. })),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(Error::UnknownTemplate { .. })),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(
            results[4],
            Err(Error::InvalidField {
                field: "initiator",
                ..
            })
        ),
        "{:?}",
        results[4]
    );
    assert!(
        matches!(results[5], Err(Error::StepNotSkippable { .. })),
        "{:?}",
        results[5]
    );
    assert!(
        matches!(results[6], Err(Error::UnknownBypassStep { .. })),
        "{:?}",
        results[6]
    );
    let ids: Vec<i64> = [0, 3, 7].iter().map(|&i| created(&results[i]).id).collect();
    assert!([0, 3, 7].iter().all(|&i| !created(&results[i]).existing));
    // Each id is the task of its own request.
    for (id, expected) in ids.iter().zip([Some(1), Some(4), None]) {
        let task = tasker.task(*id).await.expect("task");
        assert_eq!(
            task.context.get("order_id").and_then(Value::as_i64),
            expected
        );
        assert_history_consistent(&tasker, *id).await;
    }
    assert_eq!(
        db.count("tasker_tasks"),
        3,
        "only the valid requests are written"
    );
    assert_eq!(db.count("tasker_workflow_steps"), 4 + 4 + 1);
    assert_eq!(db.count("tasker_workflow_step_edges"), 4 + 4);
    assert!(
        tasker
            .create_many(Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );
}

async fn idempotency_keys_are_honoured_per_request(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Unique).await;
    let earlier = tasker
        .create_task(order_request(1).idempotency_key("order-1"))
        .await
        .expect("earlier");
    let results = tasker
        .create_many(vec![
            order_request(1).idempotency_key("order-1"),
            order_request(2).idempotency_key("order-2"),
            order_request(2).idempotency_key("order-2"),
            order_request(3),
            order_request(2).idempotency_key("order-2"),
        ])
        .await
        .expect("batch");
    let results: Vec<NewTask> = results.iter().map(created).collect();
    assert_eq!(
        results[0],
        NewTask {
            id: earlier.id,
            existing: true
        },
        "a stored task's key gives that task"
    );
    assert!(!results[1].existing);
    assert_eq!(
        results[2],
        NewTask {
            id: results[1].id,
            existing: true
        },
        "a key used earlier in the batch gives the earlier request's task"
    );
    assert_eq!(results[4], results[2]);
    assert!(!results[3].existing);
    assert_eq!(db.count("tasker_tasks"), 3);
    assert_eq!(db.count("tasker_workflow_steps"), 3 * 4);
    // A second batch with the same keys creates nothing.
    let again = tasker
        .create_many(vec![
            order_request(2).idempotency_key("order-2"),
            order_request(1).idempotency_key("order-1"),
        ])
        .await
        .expect("again");
    let again: Vec<NewTask> = again.iter().map(created).collect();
    assert_eq!(
        again,
        [
            NewTask {
                id: results[1].id,
                existing: true
            },
            NewTask {
                id: earlier.id,
                existing: true
            }
        ]
    );
    assert_eq!(db.count("tasker_tasks"), 3);
}

async fn identical_requests_in_a_batch_are_duplicates_under_hash_identity(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Hash).await;
    let at: chrono::DateTime<chrono::Utc> = "2026-11-29T10:00:05Z".parse().expect("time");
    let earlier = tasker
        .create_task(order_request(1).requested_at(at))
        .await
        .expect("earlier");
    let results = tasker
        .create_many(vec![
            order_request(1).requested_at(at + chrono::Duration::seconds(20)),
            order_request(2).requested_at(at),
            order_request(2).requested_at(at + chrono::Duration::seconds(30)),
            order_request(2).requested_at(at).idempotency_key("keyed"),
        ])
        .await
        .expect("batch");
    assert!(
        matches!(results[0], Err(Error::DuplicateRequest(id)) if id == earlier.id),
        "{:?}",
        results[0]
    );
    let second = created(&results[1]);
    assert!(
        matches!(results[2], Err(Error::DuplicateRequest(id)) if id == second.id),
        "{:?}",
        results[2]
    );
    // A keyed request is identified by its key, not its hash.
    assert!(!created(&results[3]).existing);
    assert_eq!(db.count("tasker_tasks"), 3);
}

/// An event as a test compares it: everything but ids and times, with the task as its index
/// in the requests.
type Seen = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Value,
    Option<String>,
);

/// The events received so far, per task id, each as [`Seen`].
fn drain(events: &mut tokio::sync::broadcast::Receiver<Event>) -> HashMap<i64, Vec<Seen>> {
    let mut by_task: HashMap<i64, Vec<Seen>> = HashMap::new();
    while let Ok(event) = events.try_recv() {
        let Some(task_id) = event.task_id else {
            continue;
        };
        by_task.entry(task_id).or_default().push((
            event.name.to_string(),
            event.step_name.clone(),
            event.from.map(str::to_owned),
            event.to.map(str::to_owned),
            event.payload.clone(),
            event.correlation_id.clone(),
        ));
    }
    by_task
}

/// Everything stored of a task but its ids and times: its row's fields, each step's fields
/// with its transitions, and its edges by step name.
async fn stored(tasker: &Tasker, task_id: i64) -> Value {
    let task = tasker.task(task_id).await.expect("task");
    let steps = tasker.steps(task_id).await.expect("steps");
    let names: HashMap<i64, String> = steps.iter().map(|s| (s.step_id, s.name.clone())).collect();
    let mut step_values = Vec::new();
    for step in &steps {
        let transitions = tasker
            .step_transitions(step.step_id)
            .await
            .expect("transitions");
        step_values.push(json!({
            "name": step.name,
            "state": step.state.as_str(),
            "ready": step.ready_at.is_some(),
            "retry_limit": step.retry_limit,
            "transitions": transitions.iter().map(|t| json!([t.from_state, t.to_state, t.metadata, t.sort_key, t.most_recent])).collect::<Vec<_>>(),
        }));
    }
    let mut edges: Vec<(String, String)> = tasker
        .step_edges(task_id)
        .await
        .expect("edges")
        .into_iter()
        .map(|(from, to)| (names[&from].clone(), names[&to].clone()))
        .collect();
    edges.sort();
    let transitions = tasker
        .task_transitions(task_id)
        .await
        .expect("task transitions");
    json!({
        "state": task.state.as_str(),
        "context": task.context,
        "initiator": task.initiator,
        "reason": task.reason,
        "tags": task.tags,
        "bypass_steps": task.bypass_steps,
        "priority": task.priority,
        "transitions": transitions.iter().map(|t| json!([t.from_state, t.to_state, t.sort_key, t.most_recent])).collect::<Vec<_>>(),
        "steps": step_values,
        "edges": edges,
    })
}

async fn a_batch_writes_what_creates_one_by_one_write(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Unique).await;
    let requests = |batch: &str| -> Vec<TaskRequest> {
        vec![
            order_request(1)
                .initiator("shop")
                .reason("bulk")
                .tag("a")
                .priority(3)
                .correlation_id(format!("{batch}-0")),
            note_request().correlation_id(format!("{batch}-1")),
            order_request(2)
                .bypass_step("pack")
                .correlation_id(format!("{batch}-2")),
            note_request()
                .bypass_step("write")
                .correlation_id(format!("{batch}-3")),
        ]
    };
    let mut events = tasker.subscribe();
    let mut one_by_one = Vec::new();
    for request in requests("single") {
        one_by_one.push(tasker.create_task(request).await.expect("create").id);
    }
    let single_events = drain(&mut events);
    let batch: Vec<i64> = tasker
        .create_many(requests("batch"))
        .await
        .expect("batch")
        .iter()
        .map(|r| created(r).id)
        .collect();
    let batch_events = drain(&mut events);
    for (i, (single, bulk)) in one_by_one.iter().zip(&batch).enumerate() {
        let expected = stored(&tasker, *single).await;
        assert_eq!(stored(&tasker, *bulk).await, expected, "task {i}");
        assert_history_consistent(&tasker, *bulk).await;
        let relabel = |events: &[Seen], from: &str| -> Vec<Seen> {
            events
                .iter()
                .cloned()
                .map(|mut e| {
                    e.5 = e.5.map(|c| c.replacen(from, "x", 1));
                    e
                })
                .collect()
        };
        let single = relabel(&single_events[single], "single");
        let bulk = relabel(&batch_events[bulk], "batch");
        assert!(!bulk.is_empty());
        assert_eq!(bulk, single, "events of task {i}");
    }
    // No event of the batch belongs to anything but its tasks.
    assert_eq!(batch_events.len(), batch.len());
}

async fn bypassed_steps_in_a_batch(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Unique).await;
    let results = tasker
        .create_many(vec![
            note_request().bypass_step("write"),
            order_request(1).bypass_step("pack"),
            note_request(),
        ])
        .await
        .expect("batch");
    let ids: Vec<i64> = results.iter().map(|r| created(r).id).collect();
    // Every step of the note bypassed: the task is complete at once.
    assert_eq!(
        tasker.task(ids[0]).await.expect("task").state,
        TaskState::Complete
    );
    let steps = tasker.steps(ids[1]).await.expect("steps");
    let states: Vec<(&str, StepState, bool)> = steps
        .iter()
        .map(|s| (s.name.as_str(), s.state, s.ready_at.is_some()))
        .collect();
    assert_eq!(
        states,
        [
            ("fetch", StepState::Pending, true),
            ("charge", StepState::Pending, false),
            ("pack", StepState::ResolvedManually, false),
            ("ship", StepState::Pending, false),
        ]
    );
    assert_eq!(
        steps[3].remaining_parents, 1,
        "`ship` waits for `charge` only"
    );
    assert_eq!(
        tasker.task(ids[2]).await.expect("task").state,
        TaskState::Pending
    );
    for id in &ids {
        assert_history_consistent(&tasker, *id).await;
    }
    let worker = tasker.start_worker();
    let done = tasker
        .wait_for_task(ids[1], std::time::Duration::from_secs(30))
        .await
        .expect("wait");
    worker.shutdown().await;
    assert_eq!(done.state, TaskState::Complete);
}

/// 400 tasks of 20 steps: 8,000 step rows, more than one SQLite statement may bind (32,766
/// values, 9 a step row), so the batch is written in several chunks of one transaction.
async fn a_batch_larger_than_one_statement(db: TestDatabase) {
    let mut wide = TaskTemplate::new("shop", "wide", "1.0.0").step(StepTemplate::new("root", "ok"));
    let leaves: Vec<String> = (0..18).map(|i| format!("leaf{i}")).collect();
    for leaf in &leaves {
        wide = wide.step(StepTemplate::new(leaf, "ok").depends_on(["root"]));
    }
    wide = wide.step(
        StepTemplate::new("sink", "ok")
            .depends_on(leaves.clone())
            .skippable(true),
    );
    let tasker = db
        .builder()
        .template(wide)
        .handler("ok", handler_fn(|_| async { Ok(json!(1)) }))
        .build()
        .await
        .expect("build");
    let requests: Vec<TaskRequest> = (0..400)
        .map(|i| {
            let request = TaskRequest::new("wide")
                .namespace("shop")
                .version("1.0.0")
                .idempotency_key(format!("wide-{i}"));
            if i % 2 == 0 {
                request.bypass_step("sink")
            } else {
                request
            }
        })
        .collect();
    let results = tasker.create_many(requests).await.expect("batch");
    let ids: Vec<i64> = results.iter().map(|r| created(r).id).collect();
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 400);
    assert_eq!(db.count("tasker_tasks"), 400);
    assert_eq!(db.count("tasker_workflow_steps"), 400 * 20);
    assert_eq!(db.count("tasker_workflow_step_edges"), 400 * 36);
    assert_eq!(db.count("tasker_task_transitions"), 400);
    assert_eq!(
        db.count("tasker_workflow_step_transitions"),
        400 * 20 + 200,
        "a first transition per step and a second per bypassed one"
    );
    for (i, id) in ids.iter().enumerate().step_by(57) {
        assert_history_consistent(&tasker, *id).await;
        let key = tasker.task(*id).await.expect("task").idempotency_key;
        assert_eq!(key.as_deref(), Some(format!("wide-{i}").as_str()));
    }
}

async fn a_database_error_fails_the_whole_batch(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Unique).await;
    // The notes have no edges and would insert; the order's edges cannot.
    db.execute("DROP TABLE tasker_workflow_step_edges");
    let outcome = tasker
        .create_many(vec![note_request(), order_request(1), note_request()])
        .await;
    assert!(matches!(outcome, Err(Error::Database(_))), "{outcome:?}");
    for table in [
        "tasker_tasks",
        "tasker_workflow_steps",
        "tasker_task_transitions",
        "tasker_workflow_step_transitions",
    ] {
        assert_eq!(db.count(table), 0, "{table} has rows of a failed batch");
    }
}

/// The context of [`Parcel`].
#[tasker::data]
#[derive(Debug, Clone, PartialEq)]
pub struct ParcelContext {
    /// The parcel.
    pub parcel_id: i64,
}

/// Ships a parcel in one step.
#[derive(Default)]
pub struct Parcel;

#[task_handler(name = "parcel", namespace = "bulk", version = "1.0.0", context = ParcelContext)]
impl Parcel {
    #[step]
    async fn ship(&self, cx: &StepContext<ParcelContext>) -> Result<i64, StepError> {
        Ok(cx.context().parcel_id)
    }
}

async fn typed_contexts_in_a_batch(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Unique).await;
    let contexts: Vec<ParcelContext> = (1..=3)
        .map(|parcel_id| ParcelContext { parcel_id })
        .collect();
    let results = tasker
        .create_many_of::<Parcel>(&contexts)
        .await
        .expect("batch");
    let ids: Vec<i64> = results.iter().map(|r| created(r).id).collect();
    let worker = tasker.start_worker();
    for (id, context) in ids.iter().zip(&contexts) {
        let done = tasker
            .wait_for_task(*id, std::time::Duration::from_secs(30))
            .await
            .expect("wait");
        assert_eq!(done.state, TaskState::Complete);
        assert_eq!(done.context, json!({ "parcel_id": context.parcel_id }));
    }
    worker.shutdown().await;
}

/// A running API server; dropping it stops the server.
struct Api(ApiServer);

impl Api {
    async fn start(tasker: Tasker) -> Self {
        Self(ApiServer::start(tasker, ServerConfig::default()).await)
    }

    async fn post(&self, body: &Value) -> (StatusCode, Value) {
        let response = self
            .0
            .client
            .post(format!("{}/tasks", self.0.base))
            .json(body)
            .send()
            .await
            .expect("send");
        let status = response.status();
        (status, response.json().await.expect("JSON answer"))
    }
}

async fn the_api_takes_an_array_of_task_requests(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Unique).await;
    let api = Api::start(tasker.clone()).await;
    let order = |order_id: Value| json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": order_id } });
    let mut keyed = order(json!(3));
    keyed["idempotency_key"] = json!("api-3");
    let (status, answer) = api
        .post(&json!([
            order(json!(1)),
            { "task": order(json!(2)) },
            order(json!("three")),
            keyed,
            keyed,
            { "name": "missing" },
        ]))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let items = answer.as_array().expect("an array of results");
    assert_eq!(items.len(), 6, "{answer}");
    let statuses: Vec<i64> = items.iter().filter_map(|i| i["status"].as_i64()).collect();
    assert_eq!(statuses, [201, 201, 422, 201, 200, 404], "{answer}");
    assert_eq!(items[0]["task"]["context"]["order_id"], 1, "{answer}");
    assert_eq!(items[0]["task"]["full_name"], "shop/order@1.0.0");
    assert_eq!(items[1]["task"]["context"]["order_id"], 2, "{answer}");
    // Errors are those of a single create, with paths within the item.
    assert_eq!(
        items[2]["error"],
        json!({
            "code": "invalid_context",
            "message": items[2]["error"]["message"],
            "path": "/context/order_id",
        }),
        "{answer}"
    );
    assert_eq!(items[4]["task"]["task_id"], items[3]["task"]["task_id"]);
    assert_eq!(items[5]["error"]["code"], "unknown_template", "{answer}");
    assert_eq!(db.count("tasker_tasks"), 3);

    // A request of the wrong shape breaks the documented body: the array is refused whole,
    // naming the item and its field, and nothing is created.
    let (status, answer) = api
        .post(&json!([
            order(json!(4)),
            { "task": { "name": "order", "namespace": "shop", "version": "1.0.0", "tags": ["a", 5] } },
        ]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["code"], "invalid_body", "{answer}");
    assert_eq!(answer["path"], "/1/task/tags/1", "{answer}");
    let (status, answer) = api.post(&json!([order(json!(4)), [null, null]])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["path"], "/1", "{answer}");
    assert_eq!(db.count("tasker_tasks"), 3);

    // One object is answered as before: the task itself, 201.
    let (status, answer) = api.post(&order(json!(9))).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["context"]["order_id"], 9, "{answer}");
    let (status, answer) = api.post(&order(json!("nine"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["path"], "/context/order_id", "{answer}");

    // An empty array, and one over the limit, are refused whole.
    let (status, answer) = api.post(&json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "invalid_request", "{answer}");
    let too_many = Value::Array(vec![order(json!(1)); 1001]);
    let (status, answer) = api.post(&too_many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("1000")),
        "{answer}"
    );
    assert_eq!(db.count("tasker_tasks"), 4);
}

/// 64 callers create at once: each gets its own task (or its own refusal), and on PostgreSQL,
/// where a trigger records each task's transaction, far fewer transactions than tasks wrote
/// them.
async fn concurrent_creates_share_transactions(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Unique).await;
    if db.kind == Kind::Postgres {
        db.execute(
            "CREATE TABLE tx_log (task_id BIGINT, tx BIGINT);
             CREATE FUNCTION log_tx() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO tx_log VALUES (NEW.task_id, txid_current()); RETURN NEW; END $$;
             CREATE TRIGGER log_tx AFTER INSERT ON tasker_tasks
               FOR EACH ROW EXECUTE FUNCTION log_tx();",
        );
    }
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..64_i64 {
        let tasker = tasker.clone();
        callers.spawn(async move {
            let request = match caller % 8 {
                // Refused before it is queued.
                7 => order_request(caller).context(json!({ "order_id": "x" })),
                // One key shared by eight callers.
                6 => order_request(caller).idempotency_key("shared"),
                _ => order_request(caller),
            };
            (caller, tasker.create_task(request).await)
        });
    }
    let mut shared = Vec::new();
    while let Some(joined) = callers.join_next().await {
        let (caller, result) = joined.expect("join");
        match caller % 8 {
            7 => assert!(
                matches!(result, Err(Error::InvalidContext { .. })),
                "{result:?}"
            ),
            6 => shared.push(created(&result)),
            _ => {
                let task = tasker.task(created(&result).id).await.expect("task");
                assert_eq!(
                    task.context,
                    json!({ "order_id": caller }),
                    "caller {caller}"
                );
            }
        }
    }
    assert_eq!(
        shared.iter().filter(|t| !t.existing).count(),
        1,
        "one caller created the shared task: {shared:?}"
    );
    assert!(shared.iter().all(|t| t.id == shared[0].id), "{shared:?}");
    assert_eq!(db.count("tasker_tasks"), 48 + 1);
    if db.kind == Kind::Postgres {
        let transactions = db.count("(SELECT DISTINCT tx FROM tx_log) AS t");
        assert!(
            transactions < 25,
            "49 tasks written in {transactions} transactions"
        );
    }
}

/// A request the database refuses (here, a trigger) fails alone: the creates it was queued
/// with are written, and a batch holding it fails whole.
async fn a_request_that_fails_in_the_database_fails_alone(db: TestDatabase) {
    let tasker = engine(&db, IdentityStrategy::Unique).await;
    db.execute(match db.kind {
        Kind::Sqlite => {
            "CREATE TRIGGER poison BEFORE INSERT ON tasker_tasks WHEN NEW.reason = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned request'); END;"
        }
        Kind::Postgres => {
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF NEW.reason = 'poison' THEN RAISE EXCEPTION 'poisoned request'; END IF;
               RETURN NEW; END $$;
             CREATE TRIGGER poison BEFORE INSERT ON tasker_tasks
               FOR EACH ROW EXECUTE FUNCTION poison();"
        }
    });
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..32_i64 {
        let tasker = tasker.clone();
        callers.spawn(async move {
            let reason = if caller == 13 { "poison" } else { "fine" };
            (
                caller,
                tasker
                    .create_task(order_request(caller).reason(reason))
                    .await,
            )
        });
    }
    while let Some(joined) = callers.join_next().await {
        let (caller, result) = joined.expect("join");
        if caller == 13 {
            assert!(matches!(result, Err(Error::Database(_))), "{result:?}");
        } else {
            let task = tasker.task(created(&result).id).await.expect("task");
            assert_eq!(task.context, json!({ "order_id": caller }));
        }
    }
    assert_eq!(db.count("tasker_tasks"), 31);
    let outcome = tasker
        .create_many(vec![
            order_request(100),
            order_request(101).reason("poison"),
        ])
        .await;
    assert!(matches!(outcome, Err(Error::Database(_))), "{outcome:?}");
    assert_eq!(db.count("tasker_tasks"), 31);
}
