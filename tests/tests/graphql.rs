//! GraphQL at `POST /graphql` over real HTTP: the seed's queries and mutations on both
//! backends, the same permissions per operation as the REST routes that do the same, and the
//! limits on a query's depth and complexity.

use std::time::Duration;

use reqwest::StatusCode;
use tasker::prelude::*;
use tasker::serde_json::{Value, json};
use tasker::server::{ApiKey, Auth, ServerConfig};
use tasker::{AnnotationFilter, TaskFilter};
use tasker_tests::{ApiServer, TestDatabase, conformance};

const WAIT: Duration = Duration::from_secs(30);

/// Sends a GraphQL request with `headers`; the HTTP status and the JSON answer.
async fn graphql(
    api: &ApiServer,
    query: &str,
    variables: Value,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = api
        .client
        .post(format!("{}/graphql", api.base))
        .json(&json!({ "query": query, "variables": variables }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    (status, response.json().await.expect("JSON answer"))
}

/// The `data` of an answer that has no errors.
fn data(answer: &Value) -> &Value {
    assert!(answer.get("errors").is_none(), "{answer}");
    &answer["data"]
}

/// The API's error code (`extensions.error`) of an answer's first error, once its GraphQL
/// class (`extensions.code`) is checked against it.
fn error_code(answer: &Value) -> &str {
    let extensions = &answer["errors"][0]["extensions"];
    let code = extensions["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {answer}"));
    let class = match extensions["status"].as_u64() {
        Some(403) => "FORBIDDEN",
        Some(400..=499) => "BAD_USER_INPUT",
        _ => "INTERNAL_SERVER_ERROR",
    };
    assert_eq!(extensions["code"], class, "{answer}");
    code
}

/// An engine with `shop/order` (fetch → charge; the charge of order 2 fails for good).
async fn engine(db: &TestDatabase) -> Tasker {
    db.builder()
        .template(
            TaskTemplate::new("shop", "order", "1.0.0")
                .schema(json!({
                    "type": "object",
                    "required": ["order_id"],
                    "properties": { "order_id": { "type": "integer" } }
                }))
                .step(StepTemplate::new("fetch", "ok"))
                .step(StepTemplate::new("charge", "charge").depends_on(["fetch"])),
        )
        .handler(
            "ok",
            handler_fn(|_| async { Ok(json!({ "fetched": true, "password": "hunter2" })) }),
        )
        .handler(
            "charge",
            handler_fn(|cx| async move {
                if cx.context()["order_id"] == 2 {
                    Err(StepError::permanent("card declined"))
                } else {
                    Ok(json!({ "charged": true }))
                }
            }),
        )
        .build()
        .await
        .expect("build")
}

const CREATE: &str = r#"
mutation Create($orderId: Int!) {
  createTask(input: { name: "order", namespace: "shop", version: "1.0.0",
                      context: { order_id: $orderId }, tags: ["gql"] }) {
    taskId fullName status tags context
  }
}"#;

conformance!(the_seed_queries_and_mutations);

async fn the_seed_queries_and_mutations(db: TestDatabase) {
    let tasker = engine(&db).await;
    let worker = tasker.start_worker();
    let api = ApiServer::start(tasker.clone(), ServerConfig::default()).await;

    // createTask, then the task with its steps, their links and transitions.
    let (status, answer) = graphql(&api, CREATE, json!({ "orderId": 1 }), &[]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let created = &data(&answer)["createTask"];
    assert_eq!(created["fullName"], "shop/order@1.0.0");
    assert_eq!(created["tags"], json!(["gql"]));
    assert_eq!(created["context"], json!({ "order_id": 1 }));
    let done = created["taskId"].as_i64().expect("id");
    tasker.wait_for_task(done, WAIT).await.expect("done");
    let (_, answer) = graphql(
        &api,
        r#"query($id: Int!) { task(taskId: $id) {
             status complete
             workflowSteps { stepId name status parentIds childIds results transitions { toState } }
             transitions { fromState toState mostRecent } } }"#,
        json!({ "id": done }),
        &[],
    )
    .await;
    let task = &data(&answer)["task"];
    assert_eq!(task["status"], "COMPLETE", "{answer}");
    assert_eq!(task["complete"], true);
    let steps = task["workflowSteps"].as_array().expect("steps");
    let (fetch, charge) = (&steps[0], &steps[1]);
    assert_eq!(fetch["name"], "fetch");
    assert_eq!(charge["parentIds"], json!([fetch["stepId"]]));
    assert_eq!(fetch["childIds"], json!([charge["stepId"]]));
    // Results are redacted as REST redacts them.
    assert_eq!(fetch["results"]["password"], "[FILTERED]", "{answer}");
    let step_states: Vec<&str> = charge["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .filter_map(|t| t["toState"].as_str())
        .collect();
    assert_eq!(step_states.last(), Some(&"complete"), "{answer}");
    let last = task["transitions"]
        .as_array()
        .expect("transitions")
        .last()
        .cloned();
    assert_eq!(
        last,
        Some(json!({ "fromState": "in_progress", "toState": "complete", "mostRecent": true }))
    );

    // A second task fails at its charge: tasksByStatus finds each where it is.
    let (_, answer) = graphql(&api, CREATE, json!({ "orderId": 2 }), &[]).await;
    let failed = data(&answer)["createTask"]["taskId"].as_i64().expect("id");
    tasker.wait_for_task(failed, WAIT).await.expect("failed");
    let (_, answer) = graphql(
        &api,
        r#"{ complete: tasksByStatus(status: COMPLETE) { taskId }
             failed: tasksByStatus(status: ERROR) { taskId }
             all: tasks(limit: 10, sortBy: TASK_ID, sortOrder: ASC) { taskId } }"#,
        json!({}),
        &[],
    )
    .await;
    let found = data(&answer);
    assert_eq!(found["complete"], json!([{ "taskId": done }]));
    assert_eq!(found["failed"], json!([{ "taskId": failed }]));
    assert_eq!(
        found["all"],
        json!([{ "taskId": done }, { "taskId": failed }])
    );

    // Annotations, added from Rust, found by type, key and value (as text).
    tasker
        .annotate(done, "billing", json!({ "invoice": "INV-7", "lines": 3 }))
        .await
        .expect("annotate");
    tasker
        .annotate(failed, "billing", json!({ "invoice": "INV-8" }))
        .await
        .expect("annotate");
    tasker
        .annotate(
            failed,
            "support",
            json!({ "ticket": 12, "urgent": true, "ratio": 1.5 }),
        )
        .await
        .expect("annotate");
    let (_, answer) = graphql(
        &api,
        r#"{ byInvoice: tasksByAnnotation(annotationType: "billing", annotationKey: "invoice", annotationValue: "INV-7") { taskId annotations { annotationType annotation } }
             byNumber: tasksByAnnotation(annotationType: "support", annotationKey: "ticket", annotationValue: "12") { taskId }
             wrongType: tasksByAnnotation(annotationType: "support", annotationKey: "invoice", annotationValue: "INV-7") { taskId }
             byBool: tasksByAnnotation(annotationType: "support", annotationKey: "urgent", annotationValue: "true") { taskId }
             byFloat: tasksByAnnotation(annotationType: "support", annotationKey: "ratio", annotationValue: "1.5") { taskId }
             byQuoted: tasksByAnnotation(annotationType: "billing", annotationKey: "invoice", annotationValue: "\"INV-7\"") { taskId }
             annotationTypes }"#,
        json!({}),
        &[],
    )
    .await;
    let found = data(&answer);
    assert_eq!(
        found["byInvoice"],
        json!([{ "taskId": done, "annotations": [{ "annotationType": "billing", "annotation": { "invoice": "INV-7", "lines": 3 } }] }])
    );
    assert_eq!(found["byNumber"], json!([{ "taskId": failed }]));
    assert_eq!(found["wrongType"], json!([]));
    // Every value is compared as PostgreSQL's `->>` gives it, on both backends.
    assert_eq!(found["byBool"], json!([{ "taskId": failed }]));
    assert_eq!(found["byFloat"], json!([{ "taskId": failed }]));
    assert_eq!(found["byQuoted"], json!([]));
    assert_eq!(found["annotationTypes"], json!(["billing", "support"]));
    let by_rust = tasker
        .tasks(TaskFilter {
            annotation: Some(AnnotationFilter {
                annotation_type: "billing".into(),
                key: "invoice".into(),
                value: "INV-8".into(),
            }),
            limit: 10,
            ..TaskFilter::default()
        })
        .await
        .expect("tasks");
    assert_eq!(
        by_rust.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        [failed]
    );

    // updateTask, retryTask (the failed charge runs again and fails again), updateStep.
    let (_, answer) = graphql(
        &api,
        r#"mutation($id: Int!) { updateTask(taskId: $id, reason: "audit", tags: ["a", "b"]) { reason tags } }"#,
        json!({ "id": failed }),
        &[],
    )
    .await;
    assert_eq!(
        data(&answer)["updateTask"],
        json!({ "reason": "audit", "tags": ["a", "b"] })
    );
    let charge_of_failed = tasker.steps(failed).await.expect("steps")[1].step_id;
    let (_, answer) = graphql(
        &api,
        r#"mutation($id: Int!, $step: Int!) { updateStep(taskId: $id, stepId: $step, retryLimit: 7) { retryLimit } }"#,
        json!({ "id": failed, "step": charge_of_failed }),
        &[],
    )
    .await;
    assert_eq!(data(&answer)["updateStep"]["retryLimit"], 7);
    let (_, answer) = graphql(
        &api,
        r#"mutation($id: Int!, $step: Int!) { updateStep(taskId: $id, stepId: $step, resolve: true, results: { by: "hand" }) { status results } }"#,
        json!({ "id": failed, "step": charge_of_failed }),
        &[],
    )
    .await;
    assert_eq!(
        data(&answer)["updateStep"],
        json!({ "status": "RESOLVED_MANUALLY", "results": { "by": "hand" } })
    );
    // The same refusal as REST, with its code: a results without resolve.
    let (_, answer) = graphql(
        &api,
        r#"mutation($id: Int!, $step: Int!) { updateStep(taskId: $id, stepId: $step, results: { by: "hand" }) { status } }"#,
        json!({ "id": failed, "step": charge_of_failed }),
        &[],
    )
    .await;
    assert_eq!(error_code(&answer), "invalid_request", "{answer}");
    worker.shutdown().await;

    // cancelStep and cancelTask on a task no worker runs.
    let (_, answer) = graphql(&api, CREATE, json!({ "orderId": 3 }), &[]).await;
    let waiting = data(&answer)["createTask"]["taskId"].as_i64().expect("id");
    let charge = tasker.steps(waiting).await.expect("steps")[1].step_id;
    let (_, answer) = graphql(
        &api,
        r#"mutation($id: Int!, $step: Int!) { cancelStep(taskId: $id, stepId: $step) { status } }"#,
        json!({ "id": waiting, "step": charge }),
        &[],
    )
    .await;
    assert_eq!(data(&answer)["cancelStep"]["status"], "CANCELLED");
    let (_, answer) = graphql(
        &api,
        r#"mutation($id: Int!) { cancelTask(taskId: $id) { status } }"#,
        json!({ "id": waiting }),
        &[],
    )
    .await;
    assert_eq!(data(&answer)["cancelTask"]["status"], "CANCELLED");
    assert_eq!(
        tasker.task(waiting).await.expect("task").state,
        TaskState::Cancelled
    );
    let (_, answer) = graphql(
        &api,
        r#"query($id: Int!, $step: Int!) { step(taskId: $id, stepId: $step) { name status } }"#,
        json!({ "id": waiting, "step": charge }),
        &[],
    )
    .await;
    assert_eq!(
        data(&answer)["step"],
        json!({ "name": "charge", "status": "CANCELLED" })
    );

    // A delayed task, from GraphQL and from REST: created at once, waiting for its time.
    let (_, answer) = graphql(
        &api,
        r#"mutation { createTask(input: { name: "order", namespace: "shop", version: "1.0.0",
                                          context: { order_id: 4 }, delaySeconds: 3600 }) {
                        taskId status runAt } }"#,
        json!({}),
        &[],
    )
    .await;
    let delayed = &data(&answer)["createTask"];
    assert_eq!(delayed["status"], "PENDING");
    assert!(delayed["runAt"].is_string(), "{answer}");
    let run_at = "2999-01-01T00:00:00Z";
    let response = api
        .client
        .post(format!("{}/tasks", api.base))
        .json(
            &json!({ "name": "order", "namespace": "shop", "version": "1.0.0",
                       "context": { "order_id": 5 }, "run_at": run_at }),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("JSON");
    assert_eq!(
        created["run_at"], "2999-01-01T00:00:00.000000Z",
        "{created}"
    );
    let id = created["task_id"].as_i64().expect("id");
    assert_eq!(
        tasker.steps(id).await.expect("steps")[0].ready_at,
        None,
        "ready before its time"
    );

    // Errors carry the API's codes: an unknown task, a context that fails its schema.
    let (_, answer) = graphql(&api, "{ task(taskId: 999999) { taskId } }", json!({}), &[]).await;
    assert_eq!(error_code(&answer), "not_found", "{answer}");
    let (_, answer) = graphql(
        &api,
        r#"mutation { createTask(input: { name: "order", namespace: "shop", version: "1.0.0", context: { order_id: "x" } }) { taskId } }"#,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(error_code(&answer), "invalid_context", "{answer}");
    assert_eq!(
        answer["errors"][0]["extensions"]["path"],
        "/context/order_id"
    );
}

/// Each GraphQL operation needs the permission of the REST route that does the same: a caller
/// holding only that permission may do both, a caller holding every other permission neither.
#[tokio::test]
async fn each_operation_needs_its_rest_permission() {
    let db = TestDatabase::sqlite();
    let tasker = engine(&db).await;
    let task = tasker
        .create_task(
            TaskRequest::new("order")
                .namespace("shop")
                .version("1.0.0")
                .context(json!({ "order_id": 1 })),
        )
        .await
        .expect("task")
        .id;
    let step = tasker.steps(task).await.expect("steps")[0].step_id;
    // (operation, permission, REST method, REST path, REST body)
    let operations: Vec<(String, &str, &str, String, Option<Value>)> = vec![
        ("{ tasks { taskId } }".into(), "tasker.task:index", "GET", "/tasks".into(), None),
        (
            r#"{ tasksByStatus(status: PENDING) { taskId } }"#.into(),
            "tasker.task:index",
            "GET",
            "/tasks?state=pending".into(),
            None,
        ),
        (
            r#"{ tasksByAnnotation(annotationType: "t", annotationKey: "k", annotationValue: "v") { taskId } }"#.into(),
            "tasker.task:index",
            "GET",
            "/tasks".into(),
            None,
        ),
        (format!("{{ task(taskId: {task}) {{ taskId }} }}"), "tasker.task:show", "GET", format!("/tasks/{task}"), None),
        (
            format!("{{ step(taskId: {task}, stepId: {step}) {{ stepId }} }}"),
            "tasker.workflow_step:show",
            "GET",
            format!("/tasks/{task}/workflow_steps/{step}"),
            None,
        ),
        (
            r#"mutation { createTask(input: { name: "order", namespace: "shop", version: "1.0.0", context: { order_id: 5 } }) { taskId } }"#.into(),
            "tasker.task:create",
            "POST",
            "/tasks".into(),
            Some(json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": 5 } })),
        ),
        (
            format!(r#"mutation {{ updateTask(taskId: {task}, reason: "r") {{ taskId }} }}"#),
            "tasker.task:update",
            "PATCH",
            format!("/tasks/{task}"),
            Some(json!({ "reason": "r" })),
        ),
        (
            format!("mutation {{ updateStep(taskId: {task}, stepId: {step}, retryLimit: 4) {{ stepId }} }}"),
            "tasker.workflow_step:update",
            "PATCH",
            format!("/tasks/{task}/workflow_steps/{step}"),
            Some(json!({ "retry_limit": 4 })),
        ),
        (
            format!("mutation {{ retryTask(taskId: {task}) {{ taskId }} }}"),
            "tasker.task:retry",
            "POST",
            format!("/tasks/{task}/retry"),
            None,
        ),
        (
            format!("mutation {{ cancelStep(taskId: {task}, stepId: {step}) {{ stepId }} }}"),
            "tasker.workflow_step:cancel",
            "DELETE",
            format!("/tasks/{task}/workflow_steps/{step}"),
            None,
        ),
        (
            format!("mutation {{ cancelTask(taskId: {task}) {{ taskId }} }}"),
            "tasker.task:cancel",
            "DELETE",
            format!("/tasks/{task}"),
            None,
        ),
    ];
    let every: Vec<&str> = operations.iter().map(|o| o.1).collect();
    let mut auth = Auth::none();
    for (i, (_, permission, ..)) in operations.iter().enumerate() {
        auth = auth
            .api_key(ApiKey::from_secret(
                format!("only-{i}"),
                &format!("only-{i}"),
                [*permission],
            ))
            .api_key(ApiKey::from_secret(
                format!("but-{i}"),
                &format!("but-{i}"),
                every.iter().copied().filter(|p| p != permission),
            ));
    }
    let api = ApiServer::start(
        tasker,
        ServerConfig {
            auth,
            ..ServerConfig::default()
        },
    )
    .await;

    // No credentials: 401 before the body is read, as on every protected route.
    let (status, answer) = graphql(&api, "{ tasks { taskId } }", json!({}), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, _) = graphql(&api, "{ tasks", json!({}), &[("x-api-key", "wrong")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for (i, (query, permission, method, path, body)) in operations.iter().enumerate() {
        let only = format!("only-{i}");
        let but = format!("but-{i}");
        // Refusals first: a granted mutation would change what the next one finds.
        let (_, answer) = graphql(&api, query, json!({}), &[("x-api-key", &but)]).await;
        assert_eq!(error_code(&answer), "forbidden", "{permission}: {answer}");
        let status = rest(&api, method, path, body.clone(), &but).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "REST {method} {path} without {permission}"
        );

        let (_, answer) = graphql(&api, query, json!({}), &[("x-api-key", &only)]).await;
        assert!(
            answer.get("errors").is_none() || error_code(&answer) != "forbidden",
            "{permission}: {answer}"
        );
        let status = rest(&api, method, path, body.clone(), &only).await;
        assert_ne!(
            status,
            StatusCode::FORBIDDEN,
            "REST {method} {path} with {permission}"
        );
    }
}

async fn rest(
    api: &ApiServer,
    method: &str,
    path: &str,
    body: Option<Value>,
    key: &str,
) -> StatusCode {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = api
        .client
        .request(method, format!("{}{path}", api.base))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("send").status()
}

/// A query nested past the depth limit, or costing past the complexity limit, is refused
/// before it runs; a malformed query or body is answered, never a server error.
#[tokio::test]
async fn queries_are_limited_and_malformed_ones_answered() {
    let db = TestDatabase::sqlite();
    let tasker = engine(&db).await;
    let api = ApiServer::start(tasker, ServerConfig::default()).await;

    let deep = format!(
        "{{ __schema {{ types {{ {}name{} }} }} }}",
        "ofType { ".repeat(tasker::server::MAX_DEPTH),
        " }".repeat(tasker::server::MAX_DEPTH)
    );
    let (status, answer) = graphql(&api, &deep, json!({}), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nested too deep"), "{answer}");

    let fields = "taskId name namespace version fullName status complete context initiator \
                  sourceSystem reason tags bypassSteps priority idempotencyKey requestedAt \
                  createdAt updatedAt";
    let costly = format!(
        "{{ tasks(limit: 100) {{ {fields} workflowSteps {{ stepId name status attempts retryLimit results transitions {{ toState fromState createdAt }} }} }} }}"
    );
    let (_, answer) = graphql(&api, &costly, json!({}), &[]).await;
    let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too complex"), "{answer}");
    let cheap = format!("{{ tasks(limit: 5) {{ {fields} }} }}");
    let (_, answer) = graphql(&api, &cheap, json!({}), &[]).await;
    data(&answer);

    // Bounds of the seed's arguments (a negative limit took the server's worker down while
    // costing the query, before schemathesis found it), and malformed requests.
    for limit in ["101", "0", "-1", "-2147483648"] {
        let query = format!("{{ tasks(limit: {limit}) {{ taskId }} }}");
        let (status, answer) = graphql(&api, &query, json!({}), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(error_code(&answer), "invalid_request", "{answer}");
        assert_eq!(answer["errors"][0]["extensions"]["path"], "/limit");
    }
    let (_, answer) = graphql(
        &api,
        "{ tasks(limit: 3000000000) { taskId } }",
        json!({}),
        &[],
    )
    .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{answer}"
    );
    let (status, answer) = graphql(&api, "{ tasks { taskId ", json!({}), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["errors"].is_array(), "{answer}");
    let (status, answer) = graphql(&api, "{ nope }", json!({}), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["errors"].is_array(), "{answer}");
    let response = api
        .client
        .post(format!("{}/graphql", api.base))
        .json(&json!({ "variables": {} }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["code"], "invalid_body", "{answer}");
}
