//! HTTP step handlers against a real server on 127.0.0.1: every status class, both
//! `Retry-After` forms, timeouts, refused connections, configuration and an end-to-end retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tasker::http::{ApiClient, ApiHandler, ApiResponse, ApiStepHandler, HttpHandler};
use tasker::prelude::*;
use tasker::serde_json::{Value, json};
use tasker_tests::{TestDatabase, conformance};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    head: String,
    body: String,
}

/// A tiny HTTP/1.1 server: each path answers with a fixed status and headers.
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let flaky = Arc::new(AtomicUsize::new(0));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (log, flaky) = (Arc::clone(&log), Arc::clone(&flaky));
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while buffer.len() < head_end + length {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buffer[head_end..]).into_owned();
                let mut first = head.lines().next().unwrap_or("").split(' ');
                let method = first.next().unwrap_or("").to_owned();
                let target = first.next().unwrap_or("").to_owned();
                let path = target.split('?').next().unwrap_or("").to_owned();
                if let Ok(mut log) = log.lock() {
                    log.push(Seen {
                        method: method.clone(),
                        target: target.clone(),
                        head: head.clone(),
                        body: body.clone(),
                    });
                }
                let in_30s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
                let (status, extra, payload): (u16, String, String) = match path.as_str() {
                    "/ok" => (200, String::new(), r#"{"order":42}"#.to_owned()),
                    "/created" => (201, String::new(), "made".to_owned()),
                    "/im-used" => (226, String::new(), String::new()),
                    "/429-seconds" => {
                        (429, "Retry-After: 7\r\n".to_owned(), "slow down".to_owned())
                    }
                    "/503-date" => (503, format!("Retry-After: {in_30s}\r\n"), String::new()),
                    "/503-bare" => (503, String::new(), String::new()),
                    "/busy" => (429, "Retry-After: 1000\r\n".to_owned(), String::new()),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        (200, String::new(), String::new())
                    }
                    "/flaky" => {
                        if flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                            (
                                503,
                                "Retry-After: 1\r\n".to_owned(),
                                "maintenance".to_owned(),
                            )
                        } else {
                            (200, String::new(), r#"{"ok":true}"#.to_owned())
                        }
                    }
                    echo if echo.ends_with("/echo") => (
                        200,
                        String::new(),
                        json!({ "method": method, "target": target, "head": head, "body": body })
                            .to_string(),
                    ),
                    other => {
                        let code = other.trim_start_matches('/').parse().unwrap_or(404);
                        (code, String::new(), format!("status {code}"))
                    }
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{payload}",
                    payload.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Server { base, seen }
}

fn cx(config: Value) -> StepContext {
    StepContext::new(1, 1, "call", 1, json!({}), Default::default(), config)
}

async fn call(config: Value) -> Result<Value, StepError> {
    let handler = HttpHandler::from_config().expect("client");
    handler.handle(&cx(config)).await
}

#[tokio::test]
async fn every_status_class() {
    let server = serve().await;
    let url = |path: &str| json!({ "url": format!("{}{path}", server.base) });

    let ok = call(url("/ok")).await.expect("200");
    assert_eq!(ok, json!({ "status": 200, "body": { "order": 42 } }));
    assert_eq!(call(url("/created")).await.expect("201")["body"], "made");
    assert_eq!(call(url("/im-used")).await.expect("226")["status"], 226);

    let slow_down = call(url("/429-seconds")).await.expect_err("429");
    assert_eq!(
        slow_down,
        StepError::Retryable {
            message: "HTTP 429: slow down".to_owned(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    match call(url("/503-date")).await.expect_err("503") {
        StepError::Retryable {
            retry_after: Some(wait),
            ..
        } => assert!((28..=31).contains(&wait.as_secs()), "{wait:?}"),
        other => panic!("expected a retry after the date, got {other:?}"),
    }
    assert!(matches!(
        call(url("/503-bare")).await.expect_err("503"),
        StepError::Retryable {
            retry_after: None,
            ..
        }
    ));
    for status in [400, 401, 403, 404, 422] {
        let error = call(url(&format!("/{status}"))).await.expect_err("4xx");
        assert_eq!(
            error,
            StepError::Permanent {
                message: format!("HTTP {status}: status {status}"),
                code: Some(format!("HTTP_{status}")),
            }
        );
    }
    for status in [409, 500, 502, 504] {
        let error = call(url(&format!("/{status}"))).await.expect_err("other");
        assert!(error.is_retryable(), "{status}: {error:?}");
    }
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let server = serve().await;
    let error = call(json!({ "url": format!("{}/slow", server.base), "timeout_seconds": 0.2 }))
        .await
        .expect_err("timeout");
    assert!(
        error.is_retryable() && error.message().contains("timed out"),
        "{error:?}"
    );

    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let error = call(json!({ "url": format!("http://127.0.0.1:{port}/") }))
        .await
        .expect_err("refused");
    assert!(
        error.is_retryable() && error.message().contains("could not connect"),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_request_comes_from_handler_config_with_environment_variables() {
    let server = serve().await;
    let echoed = call(json!({
        "url": format!("{}/echo", server.base),
        "method": "post",
        "params": { "id": "42", "crate": "${CARGO_PKG_NAME}" },
        "headers": { "X-Caller": "${CARGO_PKG_NAME}" },
        "body": { "items": [1, 2] },
    }))
    .await
    .expect("echo");
    let seen = server.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let request = seen.last().expect("a request");
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/echo?crate=tasker-tests&id=42");
    assert!(
        request
            .head
            .to_ascii_lowercase()
            .contains("x-caller: tasker-tests"),
        "{}",
        request.head
    );
    assert_eq!(
        serde_json::from_str::<Value>(&request.body).expect("json"),
        json!({ "items": [1, 2] })
    );
    assert_eq!(echoed["status"], 200);

    let missing =
        call(json!({ "url": format!("{}/ok?k=${{TASKER_SURELY_NOT_SET}}", server.base) }))
            .await
            .expect_err("unset variable");
    assert_eq!(
        missing,
        StepError::Permanent {
            message: "environment variable `TASKER_SURELY_NOT_SET` is not set (named in `handler_config`)".to_owned(),
            code: Some("HANDLER_CONFIG".to_owned()),
        }
    );
    let bad = call(json!({ "url": "x", "retries": 3 }))
        .await
        .expect_err("unknown key");
    assert!(bad.message().contains("unknown field `retries`"), "{bad:?}");
}

/// Builds its request in code and keeps only what it needs of the response.
struct OrderLookup {
    base: String,
}

impl ApiStepHandler for OrderLookup {
    async fn process(
        &self,
        client: &ApiClient,
        cx: &StepContext,
    ) -> Result<ApiResponse, StepError> {
        let request = client
            .reqwest()
            .get(format!("{}/ok", self.base))
            .header("X-Step", cx.step_name());
        client.send(request).await
    }

    fn process_results(&self, response: &ApiResponse, _cx: &StepContext) -> tasker::StepResult {
        Ok(json!({ "order_id": response.json()["order"] }))
    }
}

#[tokio::test]
async fn process_and_process_results_can_be_overridden() {
    let server = serve().await;
    let handler = ApiHandler::new(OrderLookup {
        base: server.base.clone(),
    })
    .expect("client");
    let result = handler.handle(&cx(Value::Null)).await.expect("result");
    assert_eq!(result, json!({ "order_id": 42 }));
    let seen = server.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(seen[0].head.to_ascii_lowercase().contains("x-step: call"));
}

/// Builds its request the seed's way: a path relative to the API the step's YAML configures.
struct StatusLookup;

impl ApiStepHandler for StatusLookup {
    async fn process(
        &self,
        client: &ApiClient,
        _cx: &StepContext,
    ) -> Result<ApiResponse, StepError> {
        client.send(client.get("/echo")).await
    }
}

fn cx_at(attempt: u32, config: Value) -> StepContext {
    StepContext::new(1, 1, "call", attempt, json!({}), Default::default(), config)
}

#[tokio::test]
async fn a_type_api_configuration_aims_the_client_at_its_base_url() {
    let server = serve().await;
    let handler = ApiHandler::new(StatusLookup).expect("client");
    let config = json!({
        "type": "api",
        "url": format!("{}/v1", server.base),
        "params": { "api_key": "${CARGO_PKG_NAME}" },
        "headers": { "Accept": "application/json" },
        "retry_delay": 1.0,
        "enable_exponential_backoff": true,
    });
    handler.handle(&cx(config)).await.expect("echo");
    let seen = server.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let request = seen.last().expect("a request");
    assert_eq!(request.target, "/v1/echo?api_key=tasker-tests");
    assert!(
        request
            .head
            .to_ascii_lowercase()
            .contains("accept: application/json"),
        "{}",
        request.head
    );

    // Without `type: api` the handler's own configuration is left to it.
    let unaimed = ApiHandler::new(StatusLookup).expect("client");
    let error = unaimed
        .handle(&cx(json!({ "url": server.base })))
        .await
        .expect_err("no base URL");
    assert!(error.is_retryable(), "{error:?}");

    // The configuration-driven handler takes `path` under `url`.
    let echoed = call(json!({
        "type": "api",
        "url": format!("{}/v2/", server.base),
        "path": "/echo",
        "method": "put",
    }))
    .await
    .expect("echo");
    assert_eq!(echoed["body"]["method"], "PUT");
    assert_eq!(echoed["body"]["target"], "/v2/echo");
}

#[tokio::test]
async fn retry_delay_paces_failures_the_server_gave_no_wait_for() {
    let server = serve().await;
    let handler = HttpHandler::from_config().expect("client");
    let config = |path: &str, exponential: bool| {
        json!({
            "type": "api",
            "url": server.base,
            "path": path,
            "retry_delay": 2.0,
            "enable_exponential_backoff": exponential,
            "jitter_factor": 0.0,
        })
    };
    let wait = |error: StepError| match error {
        StepError::Retryable { retry_after, .. } => retry_after,
        other => panic!("expected a retryable failure, got {other:?}"),
    };
    // The third attempt waits 2 s × 2².
    let error = handler
        .handle(&cx_at(3, config("/500", true)))
        .await
        .expect_err("500");
    assert_eq!(wait(error), Some(Duration::from_secs(8)));
    let error = handler
        .handle(&cx_at(3, config("/500", false)))
        .await
        .expect_err("500");
    assert_eq!(wait(error), Some(Duration::from_secs(2)));
    // The server's own wait wins.
    let error = handler
        .handle(&cx_at(3, config("/429-seconds", true)))
        .await
        .expect_err("429");
    assert_eq!(wait(error), Some(Duration::from_secs(7)));
    // Jitter stays within its share of the delay.
    let mut jittered = config("/500", false);
    jittered["jitter_factor"] = json!(0.5);
    for _ in 0..20 {
        let error = handler
            .handle(&cx_at(1, jittered.clone()))
            .await
            .expect_err("500");
        let seconds = wait(error).expect("a wait").as_secs_f64();
        assert!((1.0..=3.0).contains(&seconds), "{seconds}");
    }
}

#[tokio::test]
async fn a_bad_api_configuration_names_its_key() {
    for (config, expected) in [
        (
            json!({ "type": "api", "url": "http://x", "ssl": { "client_cert": "c.pem" } }),
            "`ssl.client_cert`: unknown field `client_cert`",
        ),
        (
            json!({ "type": "api", "url": "http://x", "jitter_factor": 2 }),
            "`jitter_factor`: must be between 0 and 1, not 2",
        ),
        (
            json!({ "type": "api", "url": "http://x", "retry_delay": -1 }),
            "`retry_delay`: must be a non-negative number of seconds",
        ),
        (
            json!({ "type": "soap", "url": "http://x" }),
            "`type`: `soap` is not a handler type",
        ),
        (
            json!({ "type": "api", "url": "nowhere" }),
            "`url`: `nowhere`",
        ),
    ] {
        let error = call(config.clone()).await.expect_err("invalid");
        assert!(
            matches!(&error, StepError::Permanent { code: Some(code), .. } if code == "HANDLER_CONFIG"),
            "{error:?}"
        );
        assert!(error.message().contains(expected), "{config}: {error:?}");
    }
}

conformance!(
    a_workflow_waits_for_retry_after_then_completes,
    retry_after_is_capped_by_the_backoff_maximum
);

async fn a_workflow_waits_for_retry_after_then_completes(db: TestDatabase) {
    let server = serve().await;
    let tasker = db
        .builder()
        .template(
            TaskTemplate::new("http", "flaky", "1.0.0").step(
                StepTemplate::new("call", "http")
                    .handler_config(json!({ "url": format!("{}/flaky", server.base) })),
            ),
        )
        .handler("http", HttpHandler::from_config().expect("client"))
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker
        .create_task(TaskRequest::new("flaky").namespace("http").version("1.0.0"))
        .await
        .expect("create");
    let done = tasker
        .wait_for_task(task.id, Duration::from_secs(30))
        .await
        .expect("wait");
    worker.shutdown().await;
    assert_eq!(done.state, TaskState::Complete);
    let steps = tasker.steps(task.id).await.expect("steps");
    assert_eq!(steps[0].attempts, 2);
    assert_eq!(
        steps[0].results,
        Some(json!({ "status": 200, "body": { "ok": true } }))
    );
    let transitions = tasker
        .step_transitions(steps[0].step_id)
        .await
        .expect("transitions");
    let failed = transitions
        .iter()
        .find(|t| t.to_state == "error")
        .expect("failure");
    assert_eq!(failed.metadata["retry_in_seconds"], 1.0);
}

async fn retry_after_is_capped_by_the_backoff_maximum(db: TestDatabase) {
    let server = serve().await;
    let tasker = db
        .builder()
        .configure(|c| c.backoff.max = Duration::from_secs(2))
        .template(
            TaskTemplate::new("http", "busy", "1.0.0").step(
                StepTemplate::new("call", "http")
                    .handler_config(json!({ "url": format!("{}/busy", server.base) })),
            ),
        )
        .handler("http", HttpHandler::from_config().expect("client"))
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker
        .create_task(TaskRequest::new("busy").namespace("http").version("1.0.0"))
        .await
        .expect("create");
    let mut metadata = Value::Null;
    for _ in 0..300 {
        let steps = tasker.steps(task.id).await.expect("steps");
        let transitions = tasker
            .step_transitions(steps[0].step_id)
            .await
            .expect("transitions");
        if let Some(failed) = transitions.iter().find(|t| t.to_state == "error") {
            metadata = failed.metadata.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tasker.cancel_task(task.id).await.expect("cancel");
    worker.shutdown().await;
    // The server asked for 1000 s; the configured maximum is 2 s.
    assert_eq!(metadata["retry_in_seconds"], 2.0, "{metadata}");
}
