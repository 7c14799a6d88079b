//! HTTP step handlers (feature `http`): call an API, classify its answer as the seed does, and
//! store the result.
//!
//! | Status | Outcome |
//! |---|---|
//! | 200–226 | success: [`ApiStepHandler::process_results`] shapes the stored result |
//! | 429, 503 | retryable, after the server's `Retry-After` (seconds or an HTTP date) when given, capped by the backoff's `max` |
//! | 400, 401, 403, 404, 422 | permanent, code `HTTP_<status>` |
//! | anything else, and transport errors (refused, reset, timed out) | retryable, after the backoff |
//!
//! [`HttpHandler`] needs no code: it reads the request from the step's `handler_config`:
//!
//! ```yaml
//! handler: http
//! handler_config:
//!   url: https://api.example.com/orders/${ORDER_API_VERSION}/lookup
//!   method: POST                 # default GET
//!   params: { id: "42" }         # query string
//!   headers: { Authorization: "Bearer ${ORDER_API_TOKEN}" }
//!   body: { include: [items] }   # JSON body
//!   timeout_seconds: 10          # default 30
//! ```
//!
//! `${NAME}` in the URL, parameters and headers is replaced by the environment variable `NAME`
//! when the step runs; a variable that is not set fails the step permanently, naming it.
//! Implement [`ApiStepHandler`] to build the request in code (`process`) or to shape the result
//! (`process_results`), and register it wrapped in [`ApiHandler`].

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;

use crate::handler::{StepContext, StepError, StepHandler, StepResult};

/// Default deadline of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The request described by a step's `handler_config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// The URL; `${VAR}` is interpolated.
    pub url: String,
    /// The method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Query parameters; values are interpolated.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Headers; values are interpolated.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body.
    #[serde(default)]
    pub body: Option<Value>,
    /// Deadline of the request, in seconds (default 30).
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

impl RequestConfig {
    /// Reads the step's `handler_config`.
    pub fn from_step(cx: &StepContext<impl Sized>) -> Result<Self, StepError> {
        Self::deserialize(cx.handler_config()).map_err(|e| {
            StepError::permanent_with_code(
                format!(
                    "step `{}` has an invalid `handler_config` for an HTTP request: {e}",
                    cx.step_name()
                ),
                "HANDLER_CONFIG",
            )
        })
    }
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The body as text.
    pub body: String,
}

impl ApiResponse {
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| Value::String(self.body.clone()))
    }

    /// A header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// An HTTP client for step handlers: reqwest over rustls, with a default deadline.
#[derive(Debug, Clone)]
pub struct ApiClient {
    client: reqwest::Client,
}

/// Makes rustls's `ring` provider the process default unless one is installed already; reqwest
/// clients built without it panic (this crate builds reqwest without a bundled provider).
pub fn install_crypto_provider() {
    // Several libraries may install a provider; the first one wins, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl ApiClient {
    /// A client whose requests time out after `timeout` unless the request says otherwise.
    pub fn new(timeout: Duration) -> Result<Self, StepError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| StepError::permanent(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { client })
    }

    /// The underlying reqwest client, for requests built by hand (send them with
    /// [`ApiClient::send`]).
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request` and reads the whole response; transport failures are retryable.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<ApiResponse, StepError> {
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_ascii_lowercase())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let body = response.text().await.map_err(transport_error)?;
        Ok(ApiResponse {
            status,
            headers,
            body,
        })
    }

    /// Sends the request `config` describes, interpolating `${VAR}`s from the environment.
    pub async fn request(&self, config: &RequestConfig) -> Result<ApiResponse, StepError> {
        let url = interpolate(&config.url)?;
        let method = config
            .method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| {
            StepError::permanent_with_code(
                format!("`{method}` is not an HTTP method"),
                "HANDLER_CONFIG",
            )
        })?;
        let mut request = self.client.request(method, &url);
        let params: Vec<(String, String)> = config
            .params
            .iter()
            .map(|(k, v)| Ok((k.clone(), interpolate(v)?)))
            .collect::<Result<_, StepError>>()?;
        if !params.is_empty() {
            request = request.query(&params);
        }
        for (name, value) in &config.headers {
            request = request.header(name.as_str(), interpolate(value)?);
        }
        if let Some(body) = &config.body {
            request = request.json(body);
        }
        if let Some(seconds) = config.timeout_seconds.filter(|s| s.is_finite() && *s > 0.0) {
            request = request.timeout(Duration::from_secs_f64(seconds));
        }
        self.send(request).await
    }
}

fn transport_error(error: reqwest::Error) -> StepError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // The URL is left out: it may carry credentials from the environment.
    StepError::retryable(format!("HTTP request {what}: {}", error.without_url()))
}

/// Replaces `${NAME}` with the environment variable `NAME`.
pub fn interpolate(text: &str) -> Result<String, StepError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(StepError::permanent_with_code(
                format!("`${{` without a closing `}}` in `{text}`"),
                "HANDLER_CONFIG",
            ));
        };
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            StepError::permanent_with_code(
                format!("environment variable `{name}` is not set (named in `handler_config`)"),
                "HANDLER_CONFIG",
            )
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// How long a `Retry-After` value asks to wait: seconds, or an HTTP date (at least one second
/// from now, as the seed does). `None` when absent or unreadable.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or_default();
    Some(wait.max(Duration::from_secs(1)))
}

/// What a response means for the step: the seed's table (module docs).
pub fn classify(response: &ApiResponse) -> Result<(), StepError> {
    let status = response.status;
    match status {
        200..=226 => Ok(()),
        429 | 503 => {
            let message = format!("HTTP {status}: {}", snippet(&response.body));
            match response
                .header("retry-after")
                .and_then(|v| retry_after(v, SystemTime::now()))
            {
                Some(wait) => Err(StepError::retry_after(message, wait)),
                None => Err(StepError::retryable(message)),
            }
        }
        400 | 401 | 403 | 404 | 422 => Err(StepError::permanent_with_code(
            format!("HTTP {status}: {}", snippet(&response.body)),
            format!("HTTP_{status}"),
        )),
        _ => Err(StepError::retryable(format!(
            "HTTP {status}: {}",
            snippet(&response.body)
        ))),
    }
}

/// The start of a body, for error messages.
fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_owned(),
    }
}

/// A step that calls an HTTP API: `process` makes the request, `process_results` shapes what
/// is stored. Wrap it in [`ApiHandler`] to register it.
pub trait ApiStepHandler: Send + Sync + 'static {
    /// Makes the request. By default, the one the step's `handler_config` describes.
    fn process(
        &self,
        client: &ApiClient,
        cx: &StepContext,
    ) -> impl Future<Output = Result<ApiResponse, StepError>> + Send {
        async move {
            let config = RequestConfig::from_step(cx)?;
            client.request(&config).await
        }
    }

    /// Turns a successful response into the step's result. By default, the body as JSON (or
    /// text) with the status: `{"status": 200, "body": …}`.
    fn process_results(&self, response: &ApiResponse, _cx: &StepContext) -> StepResult {
        Ok(serde_json::json!({ "status": response.status, "body": response.json() }))
    }
}

/// Runs an [`ApiStepHandler`] as a step handler, classifying each response.
#[derive(Debug)]
pub struct ApiHandler<H> {
    handler: H,
    client: ApiClient,
}

impl<H: ApiStepHandler> ApiHandler<H> {
    /// Wraps `handler` with a client whose default timeout is [`DEFAULT_TIMEOUT`].
    pub fn new(handler: H) -> Result<Self, StepError> {
        Ok(Self {
            handler,
            client: ApiClient::new(DEFAULT_TIMEOUT)?,
        })
    }

    /// Wraps `handler` with the given client.
    pub fn with_client(handler: H, client: ApiClient) -> Self {
        Self { handler, client }
    }
}

impl<H: ApiStepHandler> StepHandler for ApiHandler<H> {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        let response = self.handler.process(&self.client, cx).await?;
        classify(&response)?;
        self.handler.process_results(&response, cx)
    }
}

/// The handler that needs no code: the request comes from `handler_config`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigRequest;

impl ApiStepHandler for ConfigRequest {}

/// An HTTP step handler driven entirely by the step's `handler_config`.
pub type HttpHandler = ApiHandler<ConfigRequest>;

impl HttpHandler {
    /// The configuration-driven HTTP handler: register it under the name templates use, e.g.
    /// `.handler("http", HttpHandler::from_config()?)`.
    pub fn from_config() -> Result<Self, StepError> {
        ApiHandler::new(ConfigRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(120)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(retry_after(&past, now), Some(Duration::from_secs(1)));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("", now), None);
    }

    #[test]
    fn interpolation_names_the_missing_variable() {
        let error = interpolate("https://x/${TASKER_TEST_SURELY_UNSET_VAR}/y").expect_err("unset");
        assert!(
            error
                .message()
                .contains("`TASKER_TEST_SURELY_UNSET_VAR` is not set")
        );
        assert_eq!(interpolate("no variables").expect("plain"), "no variables");
        assert!(interpolate("${OPEN").is_err());
    }
}
