//! The REST API over real HTTP on 127.0.0.1: a task's whole life, the auth matrix, a corpus of
//! malformed requests, and the refusal to expose an unauthenticated API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use tasker::prelude::*;
use tasker::serde_json::{Value, json};
use tasker::server::{
    Access, ApiKey, Auth, AuthFuture, Authenticator, Authorizer, Caller, Forbidden, JwtConfig,
    ServerConfig, Unauthenticated, routes,
};
use tasker_tests::{ApiServer, TestDatabase, conformance};

const WAIT: Duration = Duration::from_secs(30);

/// A running API server and a client for it.
struct Api(ApiServer);

impl std::ops::Deref for Api {
    type Target = ApiServer;

    fn deref(&self) -> &ApiServer {
        &self.0
    }
}

async fn start(tasker: Tasker, config: ServerConfig) -> Api {
    Api(ApiServer::start(tasker, config).await)
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in auth {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, &[]).await
    }
}

fn templates() -> Vec<TaskTemplate> {
    vec![
        TaskTemplate::new("shop", "order", "1.0.0")
            .schema(json!({
                "type": "object",
                "required": ["order_id"],
                "properties": { "order_id": { "type": "integer" } }
            }))
            .step(StepTemplate::new("fetch", "ok"))
            .step(StepTemplate::new("charge", "charge").depends_on(["fetch"])),
        TaskTemplate::new("shop", "stuck", "1.0.0")
            .step(StepTemplate::new("blocked", "never"))
            .step(StepTemplate::new("after", "ok").depends_on(["blocked"])),
    ]
}

/// A request for a `shop/order` task with `fields` set over the defaults.
fn order(fields: Value) -> Value {
    let mut body = json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": 1 } });
    if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
        body.extend(fields);
    }
    body
}

/// An engine over the test templates whose handlers all succeed.
async fn succeeding(builder: tasker::TaskerBuilder) -> Tasker {
    let mut builder = builder;
    for template in templates() {
        builder = builder.template(template);
    }
    builder
        .handler("ok", handler_fn(|_| async { Ok(json!(1)) }))
        .handler("charge", handler_fn(|_| async { Ok(json!(1)) }))
        .handler("never", handler_fn(|_| async { Ok(json!(1)) }))
        .build()
        .await
        .expect("build")
}

conformance!(
    a_task_lives_its_whole_life_over_http,
    ordinary_bad_input_is_refused_never_a_server_error,
    the_correlation_header_follows_a_request,
    steps_name_their_parents_and_children,
    analytics_report_a_period,
    delayed_tasks_and_pruning_over_http,
    schedules_over_http,
    object_maps_over_http,
    annotations_over_http,
);

async fn a_task_lives_its_whole_life_over_http(db: TestDatabase) {
    // The worker process knows the handlers; the API process only the database.
    let charge_fails = Arc::new(AtomicBool::new(false));
    let fails = Arc::clone(&charge_fails);
    let mut worker_builder = db.builder();
    for template in templates() {
        worker_builder = worker_builder.template(template);
    }
    let worker_side = worker_builder
        .handler(
            "ok",
            handler_fn(|_| async { Ok(json!({ "ok": true, "password": "hunter2" })) }),
        )
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
        .handler(
            "never",
            handler_fn(|_| async { Err(StepError::permanent("needs a human")) }),
        )
        .build()
        .await
        .expect("worker side");
    let api_side = db
        .builder()
        .auto_register(false)
        .templates_from_database(true)
        .build()
        .await
        .expect("api side");
    let api = start(api_side, ServerConfig::default()).await;
    let worker = worker_side.start_worker();

    // Create, and watch it complete.
    let (status, created) = api
        .call(
            Method::POST,
            "/tasks",
            Some(json!({ "task": {
                "name": "order", "namespace": "shop", "version": "1.0.0",
                "context": { "order_id": 7 }, "initiator": "api-test", "reason": "http",
            }})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["task_id"].as_i64().expect("task id");
    assert_eq!(created["full_name"], "shop/order@1.0.0");
    worker_side.wait_for_task(id, WAIT).await.expect("wait");
    let (status, shown) = api.get(&format!("/tasks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["state"], "complete", "{shown}");
    let steps = shown["workflow_steps"].as_array().expect("steps");
    // Every time is RFC 3339 in UTC with microseconds: one shape, whatever the digits.
    for time in [
        &shown["requested_at"],
        &shown["created_at"],
        &steps[0]["processed_at"],
    ] {
        let text = time.as_str().unwrap_or_default();
        let shape: String = text
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99T99:99:99.999999Z", "{time}");
    }
    assert_eq!(steps.len(), 2);
    // Results are shown without their secrets.
    assert_eq!(steps[0]["results"]["password"], "[FILTERED]");
    let execution = &shown["execution_context"];
    assert_eq!(execution["execution_status"], "all_complete", "{shown}");
    assert_eq!(execution["recommended_action"], "finalize_task");
    assert_eq!(execution["health_status"], "healthy");
    assert_eq!(execution["completion_percentage"], 100.0);

    // List and filter.
    let (_, listed) = api
        .get("/tasks?state=complete&namespace=shop&sort_by=task_id&sort_order=asc")
        .await;
    let ids: Vec<i64> = listed["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["task_id"].as_i64())
        .collect();
    assert_eq!(ids, [id]);
    let (status, _) = api.get("/tasks?sort_by=password").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Steps, one step, the diagram, handlers, health, OpenAPI.
    let (_, listed) = api.get(&format!("/tasks/{id}/workflow_steps")).await;
    let step_id = listed["workflow_steps"][1]["step_id"]
        .as_i64()
        .expect("step id");
    let (status, step) = api
        .get(&format!("/tasks/{id}/workflow_steps/{step_id}"))
        .await;
    assert_eq!(
        (status, step["name"].as_str()),
        (StatusCode::OK, Some("charge"))
    );
    let (status, diagram) = api.get(&format!("/tasks/{id}/diagram")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        diagram
            .as_str()
            .is_some_and(|d| d.contains("class s1 complete")),
        "{diagram}"
    );
    let (_, handlers) = api.get("/handlers").await;
    assert_eq!(handlers["handlers"].as_array().map(Vec::len), Some(2));
    let (_, handler) = api.get("/handlers/shop/order").await;
    assert_eq!(handler["dependency_graph"]["roots"], json!(["fetch"]));
    assert_eq!(handler["dependency_graph"]["levels"]["charge"], 1);
    let (status, _) = api.get("/handlers/shop/order?version=9.9.9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/health/live").await.0, StatusCode::OK);
    assert_eq!(api.get("/health/ready").await.0, StatusCode::OK);
    let (_, status_counts) = api.get("/health/status").await;
    assert_eq!(status_counts["tasks"]["complete"], 1);
    assert_eq!(status_counts["steps"]["complete"], 2, "{status_counts}");
    assert_eq!(status_counts["ready_steps"], 0, "{status_counts}");
    assert_eq!(
        status_counts["workers"].as_array().map(Vec::len),
        Some(1),
        "the worker process's worker: {status_counts}"
    );

    // Update reason and tags.
    let (status, updated) = api
        .call(
            Method::PATCH,
            &format!("/tasks/{id}"),
            Some(json!({ "reason": "audited", "tags": ["vip"] })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (updated["reason"].as_str(), updated["tags"].clone()),
        (Some("audited"), json!(["vip"]))
    );

    // Retry a failed task.
    charge_fails.store(true, Ordering::SeqCst);
    let (_, failing) = api
        .call(Method::POST, "/tasks", Some(json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": 8 } })), &[])
        .await;
    let failing = failing["task_id"].as_i64().expect("id");
    assert_eq!(
        worker_side
            .wait_for_task(failing, WAIT)
            .await
            .expect("wait")
            .state,
        TaskState::Error
    );
    charge_fails.store(false, Ordering::SeqCst);
    let (status, retried) = api
        .call(Method::POST, &format!("/tasks/{failing}/retry"), None, &[])
        .await;
    // Back to pending; a fast worker may already have taken it further.
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert!(
        matches!(
            retried["state"].as_str(),
            Some("pending" | "in_progress" | "complete")
        ),
        "{retried}"
    );
    assert_eq!(
        worker_side
            .wait_for_task(failing, WAIT)
            .await
            .expect("wait")
            .state,
        TaskState::Complete
    );

    // Resolve a step by hand.
    let (_, stuck) = api
        .call(
            Method::POST,
            "/tasks",
            Some(json!({ "name": "stuck", "namespace": "shop", "version": "1.0.0" })),
            &[],
        )
        .await;
    let stuck = stuck["task_id"].as_i64().expect("id");
    assert_eq!(
        worker_side
            .wait_for_task(stuck, WAIT)
            .await
            .expect("wait")
            .state,
        TaskState::Error
    );
    let (_, steps) = api.get(&format!("/tasks/{stuck}/workflow_steps")).await;
    let blocked = steps["workflow_steps"][0]["step_id"].as_i64().expect("id");
    let (status, resolved) = api
        .call(
            Method::PATCH,
            &format!("/tasks/{stuck}/workflow_steps/{blocked}"),
            Some(json!({ "resolve": true, "results": { "by": "ops" } })),
            &[],
        )
        .await;
    assert_eq!(
        (status, resolved["state"].as_str()),
        (StatusCode::OK, Some("resolved_manually")),
        "{resolved}"
    );
    assert_eq!(
        worker_side
            .wait_for_task(stuck, WAIT)
            .await
            .expect("wait")
            .state,
        TaskState::Complete
    );
    let (status, limited) = api
        .call(
            Method::PATCH,
            &format!("/tasks/{stuck}/workflow_steps/{blocked}"),
            Some(json!({ "retry_limit": 9 })),
            &[],
        )
        .await;
    assert_eq!(
        (status, limited["retry_limit"].as_i64()),
        (StatusCode::OK, Some(9))
    );

    // Cancel another.
    worker.shutdown().await;
    let (_, waiting) = api
        .call(Method::POST, "/tasks", Some(json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": 9 } })), &[])
        .await;
    let waiting = waiting["task_id"].as_i64().expect("id");
    // Cancel one of its steps for good, then the task.
    let (_, steps) = api.get(&format!("/tasks/{waiting}/workflow_steps")).await;
    let charge = steps["workflow_steps"][1]["step_id"].as_i64().expect("id");
    let (status, step) = api
        .call(
            Method::DELETE,
            &format!("/tasks/{waiting}/workflow_steps/{charge}"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (status, step["state"].as_str(), step["changed"].as_bool()),
        (StatusCode::OK, Some("cancelled"), Some(true))
    );
    let (_, again) = api
        .call(
            Method::DELETE,
            &format!("/tasks/{waiting}/workflow_steps/{charge}"),
            None,
            &[],
        )
        .await;
    assert_eq!(again["changed"], false);
    let (status, cancelled) = api
        .call(Method::DELETE, &format!("/tasks/{waiting}"), None, &[])
        .await;
    assert_eq!(
        (status, cancelled["cancelled"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    assert_eq!(
        api.get(&format!("/tasks/{waiting}")).await.1["state"],
        "cancelled"
    );
}

fn token(
    secret: &[u8],
    algorithm: jsonwebtoken::Algorithm,
    permissions: &[&str],
    expires_in: i64,
) -> String {
    let exp = chrono_now() + expires_in;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        &json!({ "sub": "tester", "exp": exp, "permissions": permissions }),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("token")
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[tokio::test]
async fn the_auth_matrix() {
    let db = TestDatabase::sqlite();
    let tasker = succeeding(db.builder()).await;
    let secret = b"a-secret-of-at-least-thirty-two-bytes!!";
    let auth = Auth::none()
        .api_key(ApiKey::from_secret("admin", "k-admin", ["*"]))
        .api_key(ApiKey::from_secret(
            "reader",
            "k-reader",
            ["tasker.task:index", "tasker.task:show"],
        ))
        .jwt(JwtConfig::hs256(secret));
    let api = start(
        tasker,
        ServerConfig {
            auth,
            ..ServerConfig::default()
        },
    )
    .await;
    let create = json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": 1 } });
    let good_jwt = token(
        secret,
        jsonwebtoken::Algorithm::HS256,
        &["tasker.task:create"],
        600,
    );
    let expired = token(secret, jsonwebtoken::Algorithm::HS256, &["*"], -600);
    let other_alg = token(secret, jsonwebtoken::Algorithm::HS384, &["*"], 600);
    let wrong_secret = token(
        b"another-secret-of-thirty-two-bytes!!!!",
        jsonwebtoken::Algorithm::HS256,
        &["*"],
        600,
    );
    // Valid only from ten minutes on.
    let not_yet = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "tester", "nbf": chrono_now() + 600, "exp": chrono_now() + 1200, "permissions": ["*"] }),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("token");
    // `alg: none` with no signature.
    let unsigned = {
        use base64_like::encode;
        format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(
                format!(
                    r#"{{"sub":"x","exp":{},"permissions":["*"]}}"#,
                    chrono_now() + 600
                )
                .as_bytes()
            )
        )
    };
    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<Case<'_>> = vec![
        (
            "public liveness",
            Method::GET,
            "/health/live",
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "public readiness",
            Method::GET,
            "/health/ready",
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "no credentials",
            Method::GET,
            "/tasks",
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong key",
            Method::GET,
            "/tasks",
            None,
            vec![("x-api-key", "k-wrong".to_owned())],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong key as bearer",
            Method::GET,
            "/tasks",
            None,
            vec![("authorization", bearer("k-wrong"))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "token not valid yet",
            Method::GET,
            "/tasks",
            None,
            vec![("authorization", bearer(&not_yet))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired token",
            Method::GET,
            "/tasks",
            None,
            vec![("authorization", bearer(&expired))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "token signed with HS384",
            Method::GET,
            "/tasks",
            None,
            vec![("authorization", bearer(&other_alg))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "token with another secret",
            Method::GET,
            "/tasks",
            None,
            vec![("authorization", bearer(&wrong_secret))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unsigned token",
            Method::GET,
            "/tasks",
            None,
            vec![("authorization", bearer(&unsigned))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "reader may list",
            Method::GET,
            "/tasks",
            None,
            vec![("x-api-key", "k-reader".to_owned())],
            StatusCode::OK,
        ),
        (
            "reader may not create",
            Method::POST,
            "/tasks",
            Some(create.clone()),
            vec![("x-api-key", "k-reader".to_owned())],
            StatusCode::FORBIDDEN,
        ),
        (
            "reader may not see metrics",
            Method::GET,
            "/metrics",
            None,
            vec![("x-api-key", "k-reader".to_owned())],
            StatusCode::FORBIDDEN,
        ),
        (
            "token may create",
            Method::POST,
            "/tasks",
            Some(create.clone()),
            vec![("authorization", bearer(&good_jwt))],
            StatusCode::CREATED,
        ),
        (
            "token may not list",
            Method::GET,
            "/tasks",
            None,
            vec![("authorization", bearer(&good_jwt))],
            StatusCode::FORBIDDEN,
        ),
        (
            "admin key as bearer",
            Method::GET,
            "/handlers",
            None,
            vec![("authorization", bearer("k-admin"))],
            StatusCode::OK,
        ),
        (
            "admin may cancel",
            Method::DELETE,
            "/tasks/1",
            None,
            vec![("x-api-key", "k-admin".to_owned())],
            StatusCode::OK,
        ),
    ];
    for (what, method, path, body, headers, expected) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, answer) = api.call(method, path, body, &headers).await;
        assert_eq!(status, expected, "{what}: {answer}");
        if !status.is_success() {
            assert!(
                answer["code"].is_string() && answer["message"].is_string(),
                "{what}: {answer}"
            );
        }
    }
}

/// One row of the auth matrix: what, method, path, body, headers, expected status.
type Case<'a> = (
    &'a str,
    Method,
    &'a str,
    Option<Value>,
    Vec<(&'a str, String)>,
    StatusCode,
);

/// Base64url without padding, for hand-made tokens.
mod base64_like {
    pub(super) fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}

/// At least 300 malformed requests: every one gets a 4xx with a JSON error, none a 5xx.
#[tokio::test]
async fn malformed_requests_get_json_4xx_answers() {
    let db = TestDatabase::sqlite();
    let tasker = succeeding(db.builder()).await;
    let created = tasker
        .create_task(
            TaskRequest::new("order")
                .namespace("shop")
                .version("1.0.0")
                .context(json!({ "order_id": 1 })),
        )
        .await
        .expect("task");
    let api = start(
        tasker,
        ServerConfig {
            body_limit: 64 * 1024,
            ..ServerConfig::default()
        },
    )
    .await;

    let valid = json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": 1 } });
    let full = json!({
        "name": "order", "namespace": "shop", "version": "1.0.0",
        "context": { "order_id": 1, "lines": [{ "sku": "book", "quantity": 2 }] },
        "initiator": "corpus", "source_system": "tests", "reason": "malformed", "tags": ["a", "b"],
        "priority": 5, "idempotency_key": "k-1",
    });
    let text = full.to_string();
    let mut bodies: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let task_path = format!("/tasks/{}", created.id);
    // Every proper prefix of a valid body.
    for cut in 0..text.len() {
        bodies.push(("POST", "/tasks".to_owned(), text.as_bytes()[..cut].to_vec()));
    }
    // Each field with values of every wrong type for it.
    let (int, boolean, list, object, null, string) = (
        json!(1),
        json!(true),
        json!([]),
        json!({}),
        json!(null),
        json!("text"),
    );
    let strings = [&int, &boolean, &list, &object, &null];
    let lists = [&int, &boolean, &object, &null, &string];
    let optional_strings = [&int, &boolean, &list, &object];
    let wrong: Vec<(&str, Vec<&Value>)> = vec![
        ("name", strings.to_vec()),
        ("namespace", strings.to_vec()),
        ("version", strings.to_vec()),
        ("initiator", strings.to_vec()),
        ("source_system", strings.to_vec()),
        ("reason", strings.to_vec()),
        (
            "context",
            vec![&int, &boolean, &list, &object, &null, &string],
        ),
        ("tags", lists.to_vec()),
        ("bypass_steps", lists.to_vec()),
        (
            "requested_at",
            vec![&int, &boolean, &list, &object, &string],
        ),
        ("priority", vec![&boolean, &list, &object, &null, &string]),
        ("idempotency_key", optional_strings.to_vec()),
        ("correlation_id", optional_strings.to_vec()),
    ];
    for (field, values) in wrong {
        for value in values {
            let mut body = valid.clone();
            body[field] = value.clone();
            bodies.push(("POST", "/tasks".to_owned(), body.to_string().into_bytes()));
        }
    }
    // Contexts the schema refuses, unknown templates and fields, other shapes.
    for context in [
        json!({}),
        json!({ "order_id": "7" }),
        json!({ "order_id": 1.5 }),
        json!([1]),
        json!("x"),
    ] {
        let mut body = valid.clone();
        body["context"] = context;
        bodies.push(("POST", "/tasks".to_owned(), body.to_string().into_bytes()));
    }
    for extra in ["retries", "task", "status", "complete"] {
        let mut body = valid.clone();
        body[extra] = json!(3);
        bodies.push(("POST", "/tasks".to_owned(), body.to_string().into_bytes()));
    }
    for shape in [
        "null",
        "1",
        "\"x\"",
        "[]",
        "{}",
        "{\"task\": 1}",
        "{\"task\": {}}",
        "{\"name\": \"missing\"}",
        "{\"name\": \"\"}",
        "\u{feff}{}",
        "{\"name\": \"order\", \"bypass_steps\": [\"fetch\"]}",
    ] {
        bodies.push(("POST", "/tasks".to_owned(), shape.as_bytes().to_vec()));
    }
    bodies.push(("POST", "/tasks".to_owned(), vec![0xff, 0xfe, 0x7b, 0x7d]));
    bodies.push((
        "POST",
        "/tasks".to_owned(),
        "[".repeat(100_000).into_bytes(),
    ));
    bodies.push((
        "POST",
        "/tasks".to_owned(),
        format!("{{\"name\": \"{}\"}}", "x".repeat(200_000)).into_bytes(),
    ));
    bodies.push((
        "POST",
        "/tasks".to_owned(),
        format!("{{\"name\": \"{}\"}}", "x".repeat(1000)).into_bytes(),
    ));
    // Updates of tasks and steps.
    for body in [
        "",
        "{",
        "[]",
        "{\"reason\": 5}",
        "{\"tags\": \"vip\"}",
        "{\"status\": \"complete\"}",
        "{\"reason\": \"r\", \"x\": 1}",
        &format!("{{\"reason\": \"{}\"}}", "r".repeat(200)),
    ] {
        bodies.push(("PATCH", task_path.clone(), body.as_bytes().to_vec()));
        bodies.push((
            "PATCH",
            "/tasks/987654".to_owned(),
            body.as_bytes().to_vec(),
        ));
        bodies.push((
            "PATCH",
            format!("{task_path}/workflow_steps/1"),
            body.as_bytes().to_vec(),
        ));
    }
    for body in [
        "{}",
        "{\"retry_limit\": 0}",
        "{\"retry_limit\": -1}",
        "{\"retry_limit\": 100000}",
        "{\"retry_limit\": \"3\"}",
        "{\"resolve\": \"yes\"}",
        "{\"results\": {}}",
        "{\"resolve\": false}",
    ] {
        bodies.push((
            "PATCH",
            format!("{task_path}/workflow_steps/1"),
            body.as_bytes().to_vec(),
        ));
        bodies.push((
            "PATCH",
            format!("{task_path}/workflow_steps/999999"),
            body.as_bytes().to_vec(),
        ));
    }
    // Malformed paths and queries.
    for path in [
        "/tasks/abc",
        "/tasks/-",
        "/tasks/99999999999999999999",
        "/tasks/1/workflow_steps/x",
        "/tasks?limit=0",
        "/tasks?limit=1000",
        "/tasks?limit=x",
        "/tasks?state=done",
        "/tasks?offset=-1",
        "/tasks?sort_order=up",
        "/tasks?unknown=1",
        "/handlers/shop/none",
        "/handlers/nobody",
        "/nowhere",
        "/tasks/1/nowhere",
    ] {
        bodies.push(("GET", path.to_owned(), Vec::new()));
    }
    assert!(bodies.len() >= 300, "only {} cases", bodies.len());

    let client = api.client.clone();
    let mut statuses = std::collections::BTreeMap::new();
    for (method, path, body) in &bodies {
        let response = client
            .request(
                Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}{path}", api.base),
            )
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        assert!(
            status.is_client_error(),
            "{method} {path} {shown:?}: {status} {answer}"
        );
        assert!(
            answer["code"].is_string() && answer["message"].is_string(),
            "{method} {path} {shown:?}: {answer}"
        );
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    // The context error names its field.
    let (status, answer) = api
        .call(Method::POST, "/tasks", Some(json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": "7" } })), &[])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["path"], "/context/order_id", "{answer}");
    assert!(statuses.contains_key(&413), "{statuses:?}");
    eprintln!("{} malformed requests: {statuses:?}", bodies.len());
}

#[tokio::test]
async fn an_unauthenticated_api_is_not_exposed_beyond_loopback() {
    let config = ServerConfig::default();
    let public: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
    let error = tasker::server::check_exposure(&config, public).expect_err("refused");
    assert!(
        error.to_string().contains("without authentication"),
        "{error}"
    );
    assert!(
        tasker::server::check_exposure(&config, "127.0.0.1:8080".parse().expect("addr")).is_ok()
    );
    let insecure = ServerConfig {
        allow_insecure: true,
        ..ServerConfig::default()
    };
    assert!(tasker::server::check_exposure(&insecure, public).is_ok());
    let authenticated = ServerConfig {
        auth: Auth::none().api_key(ApiKey::from_secret("k", "secret", ["*"])),
        ..ServerConfig::default()
    };
    assert!(tasker::server::check_exposure(&authenticated, public).is_ok());
}

/// Error paths come from the errors' typed fields: a context violation's JSON pointer (even for
/// a key holding a backtick, which no message parser could cut out), a request field's name,
/// and the field a body of the wrong shape got wrong.
#[tokio::test]
async fn error_paths_name_the_field_at_fault() {
    let db = TestDatabase::sqlite();
    let tasker = db
        .builder()
        .template(
            TaskTemplate::new("shop", "odd", "1.0.0")
                .schema(json!({
                    "type": "object",
                    "properties": {
                        "odd`key": { "type": "integer" },
                        "a/b": { "type": "integer" },
                    }
                }))
                .step(StepTemplate::new("only", "ok")),
        )
        .handler("ok", handler_fn(|_| async { Ok(json!(1)) }))
        .build()
        .await
        .expect("build");
    let task = tasker
        .create_task(TaskRequest::new("odd").namespace("shop").version("1.0.0"))
        .await
        .expect("task");
    let api = start(tasker, ServerConfig::default()).await;
    let create = |fields: Value| {
        let mut body = json!({ "name": "odd", "namespace": "shop", "version": "1.0.0" });
        if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        body
    };

    for (context, path) in [
        (json!({ "odd`key": "7" }), "/context/odd`key"),
        (json!({ "a/b": "7" }), "/context/a~1b"),
        (json!([]), "/context"),
    ] {
        let (status, answer) = api
            .call(
                Method::POST,
                "/tasks",
                Some(create(json!({ "context": context }))),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["code"], "invalid_context", "{answer}");
        assert_eq!(answer["path"], path, "{answer}");
    }

    let long = "x".repeat(129);
    for (field, value) in [
        ("initiator", json!(long)),
        ("source_system", json!(long)),
        ("reason", json!(long)),
        ("correlation_id", json!("")),
        ("idempotency_key", json!("")),
    ] {
        let (status, answer) = api
            .call(
                Method::POST,
                "/tasks",
                Some(create(json!({ field: value }))),
                &[],
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {answer}"
        );
        assert_eq!(answer["code"], "invalid_field", "{field}: {answer}");
        assert_eq!(answer["path"], format!("/{field}"), "{field}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("`{field}`"))),
            "{field}: {answer}"
        );
    }
    let (status, answer) = api
        .call(
            Method::POST,
            "/tasks",
            Some(create(json!({ "bypass_steps": ["nope"] }))),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["path"], "/bypass_steps", "{answer}");

    // Bodies of the wrong shape: the deserialiser's path, as a pointer.
    let (status, answer) = api
        .call(
            Method::POST,
            "/tasks",
            Some(create(json!({ "tags": ["a", 5] }))),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["path"], "/tags/1", "{answer}");
    let (status, answer) = api
        .call(
            Method::PATCH,
            &format!("/tasks/{}", task.id),
            Some(json!({ "tags": ["a", 5] })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["code"], "invalid_body", "{answer}");
    assert_eq!(answer["path"], "/tags/1", "{answer}");
}

/// What the router really serves, method by path, is what the OpenAPI document says: each
/// documented path is asked with a method no route takes, and the `Allow` header of the 405
/// lists the methods served there. A route served without its table entry (so without its
/// permission and its documentation), or documented without being served, fails this.
#[tokio::test]
async fn the_router_serves_exactly_what_the_document_lists() {
    let db = TestDatabase::sqlite();
    let tasker = succeeding(db.builder()).await;
    let api = start(tasker, ServerConfig::default()).await;
    let (_, document) = api.get("/openapi.json").await;
    let paths = document["paths"].as_object().expect("paths");
    assert_eq!(
        paths.len(),
        routes()
            .iter()
            .map(|r| r.path)
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
    for (path, operations) in paths {
        let mut documented: Vec<String> = operations
            .as_object()
            .expect("operations")
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        if documented.iter().any(|m| m == "GET") {
            documented.push("HEAD".to_owned());
        }
        documented.sort();
        let concrete = path
            .replace("{id}", "1")
            .replace("{step_id}", "1")
            .replace("{namespace}", "shop")
            .replace("{name}", "order");
        let url = format!("{}{}", api.base, concrete.trim_start_matches("/tasker"));
        let response = api
            .client
            .request(Method::PUT, url)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        let allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut served: Vec<String> = allow
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        served.sort();
        assert_eq!(served, documented, "{path}");
    }
}

/// Values PostgreSQL cannot store (a NUL character, a year before 4713 BC) and limits the
/// engine sets are refused with 422 naming the field, on both backends alike (PostgreSQL
/// answered 500 to each before), and a step update is all or nothing.
async fn ordinary_bad_input_is_refused_never_a_server_error(db: TestDatabase) {
    // The integer formats schemars gives an `i64` and a `u8`.
    let tasker = succeeding(
        db.builder()
            .configure(|c| c.max_result_bytes = 1024)
            .template(
                TaskTemplate::new("shop", "counted", "1.0.0")
                    .schema(json!({
                        "type": "object",
                        "properties": {
                            "count": { "type": "integer", "format": "int64" },
                            "small": { "type": "integer", "format": "uint8", "minimum": 0 },
                        }
                    }))
                    .step(StepTemplate::new("count", "ok")),
            ),
    )
    .await;
    let api = start(tasker.clone(), ServerConfig::default()).await;
    let refused = |status: StatusCode, answer: &Value, path: &str| {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {answer}");
        assert_eq!(answer["path"], path, "{answer}");
    };
    for field in [
        "reason",
        "initiator",
        "source_system",
        "idempotency_key",
        "correlation_id",
    ] {
        let (status, answer) = api
            .call(
                Method::POST,
                "/tasks",
                Some(order(json!({ field: "a\u{0}b" }))),
                &[],
            )
            .await;
        refused(status, &answer, &format!("/{field}"));
        assert_eq!(answer["code"], "invalid_field", "{answer}");
    }
    for at in ["-5000-01-01T00:00:00Z", "+10000-01-01T00:00:00Z"] {
        let (status, answer) = api
            .call(
                Method::POST,
                "/tasks",
                Some(order(json!({ "requested_at": at }))),
                &[],
            )
            .await;
        refused(status, &answer, "/requested_at");
    }
    // A filter with a NUL character matches nothing (PostgreSQL answered 500 to it before).
    for filter in ["namespace", "name", "version"] {
        let (status, answer) = api.get(&format!("/tasks?{filter}=a%00b")).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {answer}");
        assert_eq!(answer["tasks"], json!([]), "{filter}: {answer}");
        let (status, answer) = api
            .get(&format!("/analytics/bottlenecks?{filter}=a%00b"))
            .await;
        assert_eq!(status, StatusCode::OK, "{filter}: {answer}");
    }
    // Integers outside their format's range fail the schema at creation, not the first step.
    for (context, path) in [
        (r#"{"count": 9223372036854775808}"#, "/context/count"),
        (r#"{"count": -9223372036854775809}"#, "/context/count"),
        (r#"{"small": 256}"#, "/context/small"),
    ] {
        let body = format!(
            r#"{{"name": "counted", "namespace": "shop", "version": "1.0.0", "context": {context}}}"#
        );
        let response = api
            .client
            .post(format!("{}/tasks", api.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        let status = response.status();
        let answer: Value = response.json().await.expect("json");
        refused(status, &answer, path);
        assert_eq!(answer["code"], "invalid_context", "{answer}");
    }
    assert_eq!(db.count("tasker_tasks"), 0, "nothing was written");

    let (status, created) = api
        .call(Method::POST, "/tasks", Some(order(json!({}))), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["task_id"].as_i64().expect("id");
    let (status, answer) = api
        .call(
            Method::PATCH,
            &format!("/tasks/{id}"),
            Some(json!({ "reason": "a\u{0}b" })),
            &[],
        )
        .await;
    refused(status, &answer, "/reason");

    // A hand-given result over `max_result_bytes` is refused like a handler's.
    let steps = tasker.steps(id).await.expect("steps");
    let fetch = steps[0].step_id;
    let (status, answer) = api
        .call(
            Method::PATCH,
            &format!("/tasks/{id}/workflow_steps/{fetch}"),
            Some(json!({ "resolve": true, "results": "x".repeat(2000) })),
            &[],
        )
        .await;
    refused(status, &answer, "/results");
    assert_eq!(answer["code"], "invalid_result", "{answer}");

    // A refused resolve leaves the retry limit it came with unwritten: one transaction.
    let worker = tasker.start_worker();
    let done = tasker.wait_for_task(id, WAIT).await.expect("wait");
    worker.shutdown().await;
    assert_eq!(done.state, TaskState::Complete, "{done:?}");
    let before = tasker.steps(id).await.expect("steps")[0].retry_limit;
    let (status, answer) = api
        .call(
            Method::PATCH,
            &format!("/tasks/{id}/workflow_steps/{fetch}"),
            Some(json!({ "retry_limit": before + 2, "resolve": true })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(
        tasker.steps(id).await.expect("steps")[0].retry_limit,
        before,
        "the retry limit of a refused update"
    );
}

/// On a protected route, a caller without credentials gets 401 whatever else is wrong with
/// the request (before, a malformed path or query got a 400 listing the expected fields).
#[tokio::test]
async fn authentication_comes_before_any_other_refusal() {
    let db = TestDatabase::sqlite();
    let tasker = succeeding(db.builder()).await;
    let auth = Auth::none().api_key(ApiKey::from_secret("admin", "k-admin", ["*"]));
    let api = start(
        tasker,
        ServerConfig {
            auth,
            ..ServerConfig::default()
        },
    )
    .await;
    let key = [("X-API-Key", "k-admin")];
    for (method, path, body, authenticated) in [
        (Method::GET, "/tasks/abc", None, StatusCode::BAD_REQUEST),
        (
            Method::GET,
            "/tasks?limit=abc",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/tasks",
            Some(json!({ "name": 5 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::PATCH,
            "/tasks/1/workflow_steps/1",
            Some(json!({ "resolve": "yes" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, answer) = api.call(method.clone(), path, body.clone(), &[]).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {answer}"
        );
        let (status, answer) = api.call(method.clone(), path, body, &key).await;
        assert_eq!(
            status, authenticated,
            "{method} {path} with a key: {answer}"
        );
    }
}

/// `X-Correlation-ID`: a created task carries the caller's (unless its body names its own),
/// every response returns it, errors included, and a request without one gets a fresh one.
async fn the_correlation_header_follows_a_request(db: TestDatabase) {
    let tasker = succeeding(db.builder()).await;
    let api = start(tasker, ServerConfig::default()).await;
    let send = |method: Method, path: &str, body: Option<Value>, id: Option<&str>| {
        let mut request = api.client.request(method, format!("{}{path}", api.base));
        if let Some(id) = id {
            request = request.header("X-Correlation-ID", id);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let echoed = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let carrying = |id: &str| {
        db.number(&format!(
            "SELECT COUNT(*) AS n FROM tasker_tasks WHERE correlation_id = '{id}'"
        ))
    };

    let response = send(
        Method::POST,
        "/tasks",
        Some(order(json!({}))),
        Some("req-7f3a"),
    )
    .await
    .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(echoed(&response).as_deref(), Some("req-7f3a"));
    assert_eq!(carrying("req-7f3a"), 1);

    // The body's own correlation id wins; an array's items take the header.
    let response = send(
        Method::POST,
        "/tasks",
        Some(order(json!({ "correlation_id": "own-1" }))),
        Some("req-8"),
    )
    .await
    .expect("send");
    assert_eq!(echoed(&response).as_deref(), Some("req-8"));
    assert_eq!((carrying("own-1"), carrying("req-8")), (1, 0));
    let response = send(
        Method::POST,
        "/tasks",
        Some(json!([order(json!({})), order(json!({}))])),
        Some("req-batch"),
    )
    .await
    .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(carrying("req-batch"), 2);

    // Errors carry it too, and a request without one gets a fresh one.
    let response = send(Method::GET, "/tasks/999", None, Some("req-404"))
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(echoed(&response).as_deref(), Some("req-404"));
    let response = send(Method::GET, "/health/live", None, None)
        .await
        .expect("send");
    assert!(
        echoed(&response).is_some_and(|id| id.len() == 36),
        "a fresh uuid"
    );
    let response = send(Method::GET, "/health/live", None, Some(&"x".repeat(129)))
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// Each step answers with its parents' and children's ids, and `include_dependencies` adds
/// what the graph says now: edges, roots, leaves, the steps ready to run and what each waiting
/// step waits for.
async fn steps_name_their_parents_and_children(db: TestDatabase) {
    let tasker = succeeding(db.builder()).await;
    let task = tasker
        .create_task(TaskRequest::new("stuck").namespace("shop").version("1.0.0"))
        .await
        .expect("task")
        .id;
    let api = start(tasker, ServerConfig::default()).await;
    let (status, answer) = api
        .get(&format!("/tasks/{task}?include_dependencies=true"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let steps = answer["workflow_steps"].as_array().expect("steps");
    let id = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["step_id"].as_i64())
            .expect("step")
    };
    let (blocked, after) = (id("blocked"), id("after"));
    assert_eq!(steps[0]["child_ids"], json!([after]), "{answer}");
    assert_eq!(steps[1]["parent_ids"], json!([blocked]), "{answer}");
    assert_eq!(
        answer["dependencies"],
        json!({
            "edges": [{ "from": blocked, "to": after }],
            "roots": [blocked],
            "leaves": [after],
            "ready": [blocked],
            "waiting_for": { after.to_string(): [blocked] },
        })
    );
    let (_, plain) = api.get(&format!("/tasks/{task}")).await;
    assert!(plain.get("dependencies").is_none(), "{plain}");
    let (_, one) = api
        .get(&format!("/tasks/{task}/workflow_steps/{after}"))
        .await;
    assert_eq!(one["parent_ids"], json!([blocked]), "{one}");
}

/// An application's own sessions: `X-Session: alice` is alice; anything else is refused.
struct Sessions;

impl Authenticator for Sessions {
    fn authenticate<'a>(
        &'a self,
        headers: &'a tasker::server::HeaderMap,
    ) -> AuthFuture<'a, Result<Caller, Unauthenticated>> {
        let session = headers
            .get("x-session")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            match session.as_deref() {
                Some(name @ ("alice" | "bob")) => Ok(Caller {
                    name: name.to_owned(),
                    permissions: vec!["tasker.task:*".to_owned()],
                }),
                _ => Err(Unauthenticated("no session: sign in first".to_owned())),
            }
        })
    }
}

/// A per-record rule: a caller may see only the tasks it owns.
struct Owners(i64);

impl Authorizer for Owners {
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        access: Access<'a>,
    ) -> AuthFuture<'a, Result<(), Forbidden>> {
        let allowed = access.resource() == "tasker.task"
            && (access.action() != "show"
                || (caller.name == "alice" && access.task_id == Some(self.0)));
        Box::pin(async move {
            if allowed {
                Ok(())
            } else {
                Err(Forbidden(format!(
                    "{} may not {}",
                    caller.name, access.permission
                )))
            }
        })
    }
}

/// An application's authenticator and authorizer replace the built-in ones: its sessions say
/// who calls, and its rule decides per record.
#[tokio::test]
async fn an_application_brings_its_own_authentication_and_authorization() {
    let db = TestDatabase::sqlite();
    let tasker = succeeding(db.builder()).await;
    let order = json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": 1 } });
    let mine = tasker
        .create_task(serde_json::from_value(order.clone()).expect("request"))
        .await
        .expect("task")
        .id;
    let theirs = tasker
        .create_task(serde_json::from_value(order).expect("request"))
        .await
        .expect("task")
        .id;
    let config = ServerConfig::default()
        .authenticator(Sessions)
        .authorizer(Owners(mine));
    assert!(
        tasker::server::check_exposure(&config, "0.0.0.0:3000".parse().expect("addr")).is_ok(),
        "an application's authenticator counts as authentication"
    );
    let api = start(tasker, config).await;
    const ALICE: &[(&str, &str)] = &[("X-Session", "alice")];
    const BOB: &[(&str, &str)] = &[("X-Session", "bob")];
    let (alice, bob) = (ALICE, BOB);
    let get = |path: String, who: &'static [(&'static str, &'static str)]| {
        let api = &api;
        async move { api.call(Method::GET, &path, None, who).await }
    };
    let (status, answer) = get(format!("/tasks/{mine}"), alice).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = get(format!("/tasks/{theirs}"), alice).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(
        answer["message"], "alice may not tasker.task:show",
        "{answer}"
    );
    let (status, _) = get(format!("/tasks/{mine}"), bob).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = get(format!("/tasks/{mine}"), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["message"], "no session: sign in first", "{answer}");
    // Listing is not a per-record action here; the handler routes are not this rule's.
    assert_eq!(get("/tasks".to_owned(), bob).await.0, StatusCode::OK);
    assert_eq!(
        get("/handlers".to_owned(), alice).await.0,
        StatusCode::FORBIDDEN
    );
}

/// `/analytics/performance` and `/analytics/bottlenecks` over real runs: two orders complete,
/// one fails at `charge` for good, and a stuck task stays pending.
async fn analytics_report_a_period(db: TestDatabase) {
    let mut builder = db.builder();
    for template in templates() {
        builder = builder.template(template);
    }
    let tasker = builder
        .handler("ok", handler_fn(|_| async { Ok(json!(1)) }))
        .handler(
            "charge",
            handler_fn(|cx| async move {
                if cx.context()["order_id"] == 3 {
                    Err(StepError::permanent("card declined"))
                } else {
                    Ok(json!({ "charged": true }))
                }
            }),
        )
        .handler("never", handler_fn(|_| async { Ok(json!(1)) }))
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    for order_id in 1..=3 {
        let id = tasker
            .create_task(
                serde_json::from_value(order(json!({ "context": { "order_id": order_id } })))
                    .expect("request"),
            )
            .await
            .expect("task")
            .id;
        tasker.wait_for_task(id, WAIT).await.expect("wait");
    }
    worker.shutdown().await;
    tasker
        .create_task(TaskRequest::new("stuck").namespace("shop").version("1.0.0"))
        .await
        .expect("stuck");
    let api = start(tasker, ServerConfig::default()).await;

    let (status, report) = api.get("/analytics/performance").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["period_hours"], 24.0);
    assert_eq!(
        report["tasks_by_state"],
        json!({ "complete": 2, "error": 1, "pending": 1 }),
        "{report}"
    );
    assert_eq!(
        report["steps_by_state"],
        json!({ "complete": 5, "error": 1, "pending": 2 }),
        "{report}"
    );
    assert_eq!(report["completion_rate"].as_f64(), Some(2.0 / 3.0));
    assert_eq!(report["error_rate"].as_f64(), Some(1.0 / 3.0));
    assert_eq!(report["task_seconds"]["count"], 2, "{report}");
    assert!(
        report["task_seconds"]["p50"]
            .as_f64()
            .is_some_and(|s| s >= 0.0),
        "{report}"
    );
    assert_eq!(report["step_seconds"]["count"], 5, "{report}");

    let (status, report) = api
        .get("/analytics/bottlenecks?namespace=shop&name=order&limit=5")
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["slowest_tasks"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    let steps = report["slowest_steps"].as_array().expect("steps");
    let charge = steps
        .iter()
        .find(|s| s["step"] == "charge")
        .expect("charge");
    assert_eq!(charge["template"], "shop/order@1.0.0");
    assert_eq!(charge["steps"], 3);
    assert_eq!(charge["error_rate"].as_f64(), Some(1.0 / 3.0));
    assert_eq!(charge["seconds"]["count"], 2);
    assert!(
        steps.iter().all(|s| s["template"] == "shop/order@1.0.0"),
        "{report}"
    );
    let (_, other) = api.get("/analytics/bottlenecks?name=stuck").await;
    assert_eq!(other["slowest_tasks"], json!([]), "{other}");

    for bad in ["period=0", "period=721", "limit=0"] {
        let (status, answer) = api.get(&format!("/analytics/bottlenecks?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
}

/// The document describes the task request of each served template (its context schema, its
/// `$defs` moved among the components, which fields it needs, which steps may be bypassed) and
/// the step update's two forms; for every request here, the document and the server agree on
/// whether it is taken.
#[tokio::test]
async fn the_document_and_the_server_agree_on_what_is_taken() {
    let db = TestDatabase::sqlite();
    let tasker = db
        .builder()
        .template(
            TaskTemplate::new("shop", "ship", "2.0.0")
                .schema(json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "required": ["address"],
                    "properties": { "address": { "$ref": "#/$defs/Address" } },
                    "$defs": {
                        "Address": {
                            "type": "object",
                            "required": ["city"],
                            "properties": { "city": { "type": "string" } }
                        }
                    }
                }))
                .step(StepTemplate::new("label", "ok"))
                .step(StepTemplate::new("notify", "ok").skippable(true)),
        )
        .template(
            TaskTemplate::new("default", "ping", "0.1.0").step(StepTemplate::new("pong", "ok")),
        )
        .handler("ok", handler_fn(|_| async { Ok(json!(1)) }))
        .build()
        .await
        .expect("build");
    let api = start(tasker.clone(), ServerConfig::default()).await;
    let (_, document) = api.get("/openapi.json").await;
    let validator = |component: &str| {
        jsonschema::validator_for(&json!({
            "$ref": format!("#/components/schemas/{component}"),
            "components": document["components"].clone(),
        }))
        .expect("schema")
    };
    let ship = |fields: Value| {
        let mut body = json!({ "name": "ship", "namespace": "shop", "version": "2.0.0", "context": { "address": { "city": "Oslo" } } });
        if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        body
    };
    let requests = [
        (ship(json!({})), true),
        (ship(json!({ "bypass_steps": ["notify"] })), true),
        (ship(json!({ "bypass_steps": ["label"] })), false),
        (ship(json!({ "context": { "address": {} } })), false),
        (
            ship(json!({ "context": { "address": { "city": 5 } } })),
            false,
        ),
        (
            json!({ "name": "ship", "namespace": "shop", "context": { "address": { "city": "Oslo" } } }),
            false,
        ),
        (
            json!({ "name": "ship", "namespace": "shop", "version": "2.0.0" }),
            false,
        ),
        (json!({ "name": "ping" }), true),
        (json!({ "name": "ping", "version": "0.2.0" }), false),
        (json!({ "name": "nope" }), false),
    ];
    let create = validator("TemplateRequest");
    for (request, taken) in requests {
        assert_eq!(create.is_valid(&request), taken, "document on {request}");
        let (status, answer) = api
            .call(Method::POST, "/tasks", Some(request.clone()), &[])
            .await;
        assert_eq!(
            status.is_success(),
            taken,
            "server on {request}: {status} {answer}"
        );
    }

    let id = tasker
        .create_task(TaskRequest::new("ping"))
        .await
        .expect("task")
        .id;
    let step = tasker.steps(id).await.expect("steps")[0].step_id;
    let updates = [
        (json!({ "retry_limit": 5 }), true),
        (json!({ "retry_limit": 5, "resolve": false }), true),
        (json!({ "resolve": false, "retry_limit": null }), false),
        (json!({ "results": { "n": 1 } }), false),
        (json!({}), false),
        (json!([5]), false),
        (json!({ "resolve": true, "results": { "n": 1 } }), true),
    ];
    let update = validator("StepUpdate");
    for (body, taken) in updates {
        assert_eq!(update.is_valid(&body), taken, "document on {body}");
        let (status, answer) = api
            .call(
                Method::PATCH,
                &format!("/tasks/{id}/workflow_steps/{step}"),
                Some(body.clone()),
                &[],
            )
            .await;
        assert_eq!(
            status.is_success(),
            taken,
            "server on {body}: {status} {answer}"
        );
    }
}

/// The document describes what requests carry: JSON bodies (a create body, a step update) and
/// typed query parameters, and the error body every refusal has; real requests and a real
/// refusal validate against those schemas.
#[tokio::test]
async fn the_document_describes_requests_and_errors() {
    let db = TestDatabase::sqlite();
    let api = start(succeeding(db.builder()).await, ServerConfig::default()).await;
    let (_, document) = api.get("/openapi.json").await;
    let operation =
        |method: &str, path: &str| document["paths"][format!("/tasker{path}")][method].clone();
    // A schema of the document, with its references resolved against the document.
    let validator = |schema: &Value| {
        let mut root = schema.clone();
        root["components"] = document["components"].clone();
        jsonschema::validator_for(&root).expect("schema")
    };
    let body = |method: &str, path: &str| {
        validator(&operation(method, path)["requestBody"]["content"]["application/json"]["schema"])
    };

    let create = body("post", "/tasks");
    assert!(create.is_valid(&order(json!({}))));
    assert!(create.is_valid(&json!({ "task": order(json!({})) })));
    assert!(create.is_valid(&json!([order(json!({})), order(json!({}))])));
    assert!(
        !create.is_valid(&json!({ "name": 5 })),
        "a name is a string"
    );
    assert!(!create.is_valid(&json!([])), "an empty array is refused");
    let update = body("patch", "/tasks/{id}/workflow_steps/{step_id}");
    assert!(update.is_valid(&json!({ "resolve": true, "results": { "x": 1 } })));
    assert!(!update.is_valid(&json!({ "retry_limit": -1 })));

    let list = operation("get", "/tasks");
    let parameter = |name: &str| {
        list["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(parameter("limit")["in"], "query", "{list}");
    let state = validator(&parameter("state")["schema"]);
    assert!(state.is_valid(&json!("complete")) && !state.is_valid(&json!("done")));

    let error = validator(
        &operation("get", "/tasks/{id}")["responses"]["4XX"]["content"]["application/json"]["schema"],
    );
    let (status, refusal) = api.get("/tasks/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error.is_valid(&refusal), "{refusal}");
    assert!(!error.is_valid(&json!({ "message": "no code" })));
    assert!(operation("get", "/tasks")["responses"]["401"].is_object());
    assert!(operation("get", "/health/live")["responses"]["401"].is_null());
}

/// Every answer matches the schema the document gives for its route and status: a task's
/// life, its steps, the lists, health, templates and analytics, on a running worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_its_documented_schema() {
    let db = TestDatabase::sqlite();
    let tasker = succeeding(db.builder()).await;
    let worker = tasker.start_worker();
    let api = start(tasker.clone(), ServerConfig::default()).await;
    let (_, document) = api.get("/openapi.json").await;
    let check = |method: Method, template: &'static str, path: String, body: Option<Value>| {
        let api = &api;
        let document = &document;
        async move {
            let (status, answer) = api.call(method.clone(), &path, body, &[]).await;
            let operation = &document["paths"][format!("/tasker{template}")]
                [method.as_str().to_ascii_lowercase()];
            // A refusal is documented under its range, `4XX`.
            let key = if status.is_client_error() {
                "4XX"
            } else {
                status.as_str()
            };
            let mut schema =
                operation["responses"][key]["content"]["application/json"]["schema"].clone();
            assert!(
                !schema.is_null(),
                "{method} {template}: no schema for {status}"
            );
            schema["components"] = document["components"].clone();
            let validator = jsonschema::validator_for(&schema).expect("schema");
            let errors: Vec<String> = validator
                .iter_errors(&answer)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {path} ({status}): {errors:?}\n{answer}"
            );
            answer
        }
    };
    let created = check(
        Method::POST,
        "/tasks",
        "/tasks".into(),
        Some(order(json!({}))),
    )
    .await;
    let id = created["task_id"].as_i64().expect("id");
    tasker.wait_for_task(id, WAIT).await.expect("wait");
    check(
        Method::POST,
        "/tasks",
        "/tasks".into(),
        Some(json!([order(json!({})), { "name": 5 }])),
    )
    .await;
    check(Method::GET, "/tasks", "/tasks?limit=5".into(), None).await;
    check(
        Method::GET,
        "/tasks/{id}",
        format!("/tasks/{id}?include_dependencies=true"),
        None,
    )
    .await;
    let steps = check(
        Method::GET,
        "/tasks/{id}/workflow_steps",
        format!("/tasks/{id}/workflow_steps"),
        None,
    )
    .await;
    let step = steps["workflow_steps"][0]["step_id"]
        .as_i64()
        .expect("step");
    check(
        Method::GET,
        "/tasks/{id}/workflow_steps/{step_id}",
        format!("/tasks/{id}/workflow_steps/{step}"),
        None,
    )
    .await;
    check(
        Method::PATCH,
        "/tasks/{id}",
        format!("/tasks/{id}"),
        Some(json!({ "reason": "audited" })),
    )
    .await;
    check(Method::GET, "/health/live", "/health/live".into(), None).await;
    check(Method::GET, "/health/ready", "/health/ready".into(), None).await;
    check(Method::GET, "/health/status", "/health/status".into(), None).await;
    check(Method::GET, "/handlers", "/handlers".into(), None).await;
    check(
        Method::GET,
        "/handlers/{namespace}",
        "/handlers/shop".into(),
        None,
    )
    .await;
    check(
        Method::GET,
        "/handlers/{namespace}/{name}",
        "/handlers/shop/order".into(),
        None,
    )
    .await;
    check(
        Method::GET,
        "/analytics/performance",
        "/analytics/performance".into(),
        None,
    )
    .await;
    check(
        Method::GET,
        "/analytics/bottlenecks",
        "/analytics/bottlenecks".into(),
        None,
    )
    .await;
    let stuck = tasker
        .create_task(TaskRequest::new("stuck").namespace("shop").version("1.0.0"))
        .await
        .expect("stuck")
        .id;
    let blocked = tasker.steps(stuck).await.expect("steps")[1].step_id;
    check(
        Method::DELETE,
        "/tasks/{id}/workflow_steps/{step_id}",
        format!("/tasks/{stuck}/workflow_steps/{blocked}"),
        None,
    )
    .await;
    let other = tasker
        .create_task(TaskRequest::new("stuck").namespace("shop").version("1.0.0"))
        .await
        .expect("stuck")
        .id;
    check(
        Method::DELETE,
        "/tasks/{id}",
        format!("/tasks/{other}"),
        None,
    )
    .await;
    // Refusals match the error body.
    check(Method::GET, "/tasks/{id}", "/tasks/999".into(), None).await;
    check(Method::POST, "/tasks", "/tasks".into(), Some(json!({ "name": "order", "namespace": "shop", "version": "1.0.0", "context": { "order_id": "x" } }))).await;
    worker.shutdown().await;
}

/// `run_at` and `delay_seconds` on create, and `POST /prune` with its dry run.
async fn delayed_tasks_and_pruning_over_http(db: TestDatabase) {
    let tasker = succeeding(db.builder()).await;
    let api = start(tasker.clone(), ServerConfig::default()).await;
    let (status, later) = api
        .call(
            Method::POST,
            "/tasks",
            Some(order(json!({ "delay_seconds": 3600 }))),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{later}");
    assert!(later["run_at"].is_string(), "{later}");
    let (status, refused) = api
        .call(
            Method::POST,
            "/tasks",
            Some(order(
                json!({ "delay_seconds": 5, "run_at": "2999-01-01T00:00:00Z" }),
            )),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["path"], "/delay_seconds", "{refused}");

    let worker = tasker.start_worker();
    let (_, done) = api
        .call(Method::POST, "/tasks", Some(order(json!({}))), &[])
        .await;
    let done = done["task_id"].as_i64().expect("id");
    tasker.wait_for_task(done, WAIT).await.expect("done");
    worker.shutdown().await;
    let (status, preview) = api
        .call(
            Method::POST,
            "/prune",
            Some(json!({ "older_than_seconds": 0, "dry_run": true })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview, json!({ "tasks": 1, "steps": 2 }));
    let (_, pruned) = api
        .call(
            Method::POST,
            "/prune",
            Some(json!({ "older_than_seconds": 0 })),
            &[],
        )
        .await;
    assert_eq!(pruned, preview);
    let (status, _) = api.get(&format!("/tasks/{done}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.get(&format!("/tasks/{}", later["task_id"])).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the delayed task is not finished: it stays"
    );
}

/// A schedule registered, listed, paused, triggered, resumed and removed over HTTP; a bad
/// expression is refused naming the field and the column.
async fn schedules_over_http(db: TestDatabase) {
    let tasker = succeeding(db.builder()).await;
    let api = start(tasker.clone(), ServerConfig::default()).await;
    let hourly = json!({
        "name": "hourly-order",
        "namespace": "shop",
        "task_name": "order",
        "version": "1.0.0",
        "cron": "0 * * * *",
        "time_zone": "America/New_York",
        "context": { "order_id": 7 },
        "catch_up": 2
    });
    let (status, stored) = api
        .call(Method::POST, "/schedules", Some(hourly.clone()), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["origin"], "api");
    assert_eq!(
        stored["upcoming"].as_array().map(Vec::len),
        Some(5),
        "{stored}"
    );
    assert!(
        stored["next_run_at"]
            .as_str()
            .is_some_and(|t| t.ends_with(":00:00.000000Z")),
        "{stored}"
    );

    let mut bad = hourly.clone();
    bad["cron"] = json!("0 * * * * * *");
    let (status, refused) = api.call(Method::POST, "/schedules", Some(bad), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["path"], "/cron", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|e| e.contains("found 7 (column 13)")),
        "{refused}"
    );
    let mut unknown = hourly.clone();
    unknown["task_name"] = json!("nope");
    let (status, _) = api
        .call(Method::POST, "/schedules", Some(unknown), &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, listed) = api.get("/schedules").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["schedules"][0]["name"], "hourly-order", "{listed}");

    let (status, paused) = api
        .call(Method::POST, "/schedules/hourly-order/pause", None, &[])
        .await;
    assert_eq!((status, &paused["paused"]), (StatusCode::OK, &json!(true)));
    let (status, asked) = api
        .call(Method::POST, "/schedules/hourly-order/trigger", None, &[])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{asked}");
    assert_eq!(asked["trigger_pending"], true);
    assert_eq!(tasker.run_due_schedules().await.expect("fire"), 1);
    let (_, shown) = api.get("/schedules/hourly-order").await;
    let task_id = shown["last_task_id"].as_i64().expect("the triggered task");
    let (_, task) = api.get(&format!("/tasks/{task_id}")).await;
    assert_eq!(task["context"], json!({ "order_id": 7 }), "{task}");
    let (status, resumed) = api
        .call(Method::POST, "/schedules/hourly-order/resume", None, &[])
        .await;
    assert_eq!(
        (status, &resumed["paused"]),
        (StatusCode::OK, &json!(false))
    );

    let (status, removed) = api
        .call(Method::DELETE, "/schedules/hourly-order", None, &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(removed, json!({ "name": "hourly-order", "removed": true }));
    for (method, path) in [
        (Method::GET, "/schedules/hourly-order"),
        (Method::DELETE, "/schedules/hourly-order"),
        (Method::POST, "/schedules/hourly-order/trigger"),
        (Method::GET, "/schedules/a%00b"),
    ] {
        let (status, body) = api.call(method.clone(), path, None, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
}

/// Dependent system object maps over HTTP: mapped once whichever way round, found from either
/// side, and refused naming the field when a name is too long.
async fn object_maps_over_http(db: TestDatabase) {
    let tasker = succeeding(db.builder()).await;
    let api = start(tasker.clone(), ServerConfig::default()).await;
    let map = |one: (&str, &str), two: (&str, &str)| {
        json!({
            "system_one": one.0, "remote_id_one": one.1,
            "system_two": two.0, "remote_id_two": two.1
        })
    };
    let (status, first) = api
        .call(
            Method::POST,
            "/dependent_systems/object_maps",
            Some(map(("shopify", "order-77"), ("erp", "SO-1001"))),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // Stored with the lesser side first.
    assert_eq!(
        (&first["system_one"], &first["remote_id_one"]),
        (&json!("erp"), &json!("SO-1001"))
    );
    let (_, again) = api
        .call(
            Method::POST,
            "/dependent_systems/object_maps",
            Some(map(("erp", "SO-1001"), ("shopify", "order-77"))),
            &[],
        )
        .await;
    assert_eq!(again["id"], first["id"], "the same map, either way round");
    tasker
        .map_objects(("shopify", "order-77"), ("warehouse", "W-9"))
        .await
        .expect("map from Rust");

    let (status, found) = api
        .get("/dependent_systems/shopify/objects/order-77/maps")
        .await;
    assert_eq!(status, StatusCode::OK);
    let others: Vec<(&str, &str)> = found["object_maps"]
        .as_array()
        .expect("maps")
        .iter()
        .map(|m| {
            let one = (
                m["system_one"].as_str().unwrap_or(""),
                m["remote_id_one"].as_str().unwrap_or(""),
            );
            let two = (
                m["system_two"].as_str().unwrap_or(""),
                m["remote_id_two"].as_str().unwrap_or(""),
            );
            if one == ("shopify", "order-77") {
                two
            } else {
                one
            }
        })
        .collect();
    assert_eq!(others, [("erp", "SO-1001"), ("warehouse", "W-9")]);
    let (_, from_erp) = api.get("/dependent_systems/erp/objects/SO-1001/maps").await;
    assert_eq!(from_erp["object_maps"].as_array().map(Vec::len), Some(1));
    let (_, unknown) = api.get("/dependent_systems/nope/objects/x/maps").await;
    assert_eq!(unknown, json!({ "object_maps": [] }));

    let (status, refused) = api
        .call(
            Method::POST,
            "/dependent_systems/object_maps",
            Some(map((&"s".repeat(65), "1"), ("erp", "2"))),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["path"], "/system_one", "{refused}");
}

/// Annotations over HTTP: added, listed, their types, and tasks found by one.
async fn annotations_over_http(db: TestDatabase) {
    let tasker = succeeding(db.builder()).await;
    let api = start(tasker.clone(), ServerConfig::default()).await;
    let (_, created) = api
        .call(Method::POST, "/tasks", Some(order(json!({}))), &[])
        .await;
    let id = created["task_id"].as_i64().expect("id");
    let (_, other) = api
        .call(Method::POST, "/tasks", Some(order(json!({}))), &[])
        .await;
    let (status, annotated) = api
        .call(
            Method::POST,
            &format!("/tasks/{id}/annotations"),
            Some(json!({ "annotation_type": "billing", "annotation": { "invoice": "INV-7", "lines": 3 } })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{annotated}");
    assert_eq!(
        annotated["annotations"][0]["annotation"]["invoice"],
        "INV-7"
    );
    let (_, listed) = api.get(&format!("/tasks/{id}/annotations")).await;
    assert_eq!(listed["annotations"].as_array().map(Vec::len), Some(1));
    let (_, types) = api.get("/annotation_types").await;
    assert_eq!(types, json!({ "annotation_types": ["billing"] }));

    for (filter, expected) in [
        ("billing:invoice=INV-7", vec![id]),
        ("billing:lines=3", vec![id]),
        ("billing:invoice=INV-8", vec![]),
        ("audit:invoice=INV-7", vec![]),
    ] {
        let (status, found) = api.get(&format!("/tasks?annotation={filter}")).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {found}");
        let ids: Vec<i64> = found["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .filter_map(|t| t["task_id"].as_i64())
            .collect();
        assert_eq!(ids, expected, "{filter}");
    }
    assert_ne!(other["task_id"].as_i64(), Some(id));
    let (status, refused) = api.get("/tasks?annotation=billing").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["path"], "/annotation");
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/tasks/{id}/annotations"),
            Some(json!({ "annotation_type": "billing", "annotation": [1] })),
            &[],
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    let (status, _) = api
        .call(
            Method::POST,
            "/tasks/987654/annotations",
            Some(json!({ "annotation_type": "billing", "annotation": {} })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.get("/tasks/987654/annotations").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
