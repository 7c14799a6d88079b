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

/// The API a step calls, from its `handler_config`: the seed's `Api::Config` (`type: api`, `url`
/// as the base of relative paths, `params`, `headers`, `ssl`, `retry_delay`,
/// `enable_exponential_backoff`, `jitter_factor`) and the request the configuration-driven
/// [`HttpHandler`] makes (`path`, `method`, `body`, `timeout_seconds`). An unknown key is refused
/// by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// `api`, when given: marks the configuration as the seed's API configuration, which every
    /// [`ApiHandler`] reads.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The URL, or the base that request paths are relative to; `${VAR}` is interpolated.
    pub url: String,
    /// The path the configuration-driven handler requests, relative to `url`; `${VAR}` is
    /// interpolated.
    #[serde(default)]
    pub path: Option<String>,
    /// The method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Query parameters sent with every request; values are interpolated.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Headers sent with every request; values are interpolated.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body.
    #[serde(default)]
    pub body: Option<Value>,
    /// Deadline of a request, in seconds (default 30).
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    /// TLS settings.
    #[serde(default)]
    pub ssl: Option<SslConfig>,
    /// Seconds to wait before retrying a failure the server gave no `Retry-After` for; without
    /// it, the engine's backoff decides.
    #[serde(default)]
    pub retry_delay: Option<f64>,
    /// Whether `retry_delay` doubles with each attempt (default `true`).
    #[serde(default)]
    pub enable_exponential_backoff: Option<bool>,
    /// The share of the delay added or taken at random, 0 to 1 (default 0.1).
    #[serde(default)]
    pub jitter_factor: Option<f64>,
}

/// TLS settings of an API (`handler_config.ssl`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslConfig {
    /// Whether the server's certificate is verified (default `true`; `false` is for test
    /// servers only).
    #[serde(default)]
    pub verify: Option<bool>,
    /// A PEM file of extra root certificates to trust.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Default share of jitter on `retry_delay`.
const DEFAULT_JITTER: f64 = 0.1;

impl RequestConfig {
    /// Reads the step's `handler_config`, which must describe a request.
    pub fn from_step(cx: &StepContext<impl Sized>) -> Result<Self, StepError> {
        Self::parse(cx.handler_config()).map_err(|e| invalid_config(cx.step_name(), e))
    }

    /// The step's API configuration if its `handler_config` says `type: api`.
    pub fn api_of_step(cx: &StepContext<impl Sized>) -> Result<Option<Self>, StepError> {
        if cx.handler_config().get("type").and_then(Value::as_str) != Some("api") {
            return Ok(None);
        }
        Self::from_step(cx).map(Some)
    }

    /// Parses and checks a `handler_config`; the error names the key at fault.
    pub fn parse(config: &Value) -> Result<Self, String> {
        let config: Self = serde_path_to_error::deserialize(config).map_err(|e| {
            let path = e.path().to_string();
            match path.as_str() {
                "." => e.into_inner().to_string(),
                _ => format!("`{path}`: {}", e.into_inner()),
            }
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if let Some(kind) = self.kind.as_deref().filter(|k| *k != "api") {
            return Err(format!(
                "`type`: `{kind}` is not a handler type; the only one is `api`"
            ));
        }
        // A URL naming an environment variable is checked when the step runs.
        if !self.url.contains("${") {
            reqwest::Url::parse(&self.url).map_err(|e| format!("`url`: `{}` {e}", self.url))?;
        }
        let seconds = |key: &str, value: Option<f64>| match value {
            Some(v) if !v.is_finite() || v < 0.0 => Err(format!(
                "`{key}`: must be a non-negative number of seconds, not {v}"
            )),
            _ => Ok(()),
        };
        seconds("retry_delay", self.retry_delay)?;
        seconds("timeout_seconds", self.timeout_seconds)?;
        if let Some(jitter) = self.jitter_factor.filter(|j| !(0.0..=1.0).contains(j)) {
            return Err(format!(
                "`jitter_factor`: must be between 0 and 1, not {jitter}"
            ));
        }
        Ok(())
    }

    /// How long to wait before attempt `attempt + 1` after a failure the server gave no wait
    /// for: `retry_delay`, doubled per attempt unless `enable_exponential_backoff` is false,
    /// give or take `jitter_factor` of it. `None` leaves the wait to the engine's backoff.
    pub fn retry_wait(&self, attempt: u32) -> Option<Duration> {
        let delay = self.retry_delay?;
        let exponent = i32::try_from(attempt.saturating_sub(1).min(30)).unwrap_or(30);
        let base = if self.enable_exponential_backoff.unwrap_or(true) {
            delay * 2f64.powi(exponent)
        } else {
            delay
        };
        let jitter = self.jitter_factor.unwrap_or(DEFAULT_JITTER);
        let wait = base * (1.0 + jitter * (2.0 * fastrand::f64() - 1.0));
        Duration::try_from_secs_f64(wait.max(0.0)).ok()
    }
}

fn invalid_config(step: &str, problem: String) -> StepError {
    StepError::permanent_with_code(
        format!("step `{step}` has an invalid `handler_config` for an HTTP request: {problem}"),
        "HANDLER_CONFIG",
    )
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

/// An HTTP client for step handlers (the seed's Faraday connection): reqwest over rustls, with
/// a default deadline and, for a step whose `handler_config` says `type: api`, that API's base
/// URL, parameters and headers.
#[derive(Debug, Clone)]
pub struct ApiClient {
    client: reqwest::Client,
    base: Option<String>,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    /// The configuration it is aimed at ([`ApiClient::for_api`]).
    api: Option<std::sync::Arc<RequestConfig>>,
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
        Self::build(timeout, None)
    }

    fn build(timeout: Duration, ssl: Option<&SslConfig>) -> Result<Self, StepError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(ssl) = ssl {
            if ssl.verify == Some(false) {
                builder = builder.danger_accept_invalid_certs(true);
            }
            if let Some(file) = &ssl.ca_file {
                let pem = std::fs::read(file).map_err(|e| {
                    StepError::permanent_with_code(
                        format!("`ssl.ca_file` `{}` cannot be read: {e}", file.display()),
                        "HANDLER_CONFIG",
                    )
                })?;
                let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    StepError::permanent_with_code(
                        format!(
                            "`ssl.ca_file` `{}` holds no PEM certificate: {e}",
                            file.display()
                        ),
                        "HANDLER_CONFIG",
                    )
                })?;
                for root in roots {
                    builder = builder.add_root_certificate(root);
                }
            }
        }
        let client = builder
            .build()
            .map_err(|e| StepError::permanent(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base: None,
            params: Vec::new(),
            headers: Vec::new(),
            timeout: None,
            api: None,
        })
    }

    /// This client aimed at the API `config` describes: its `url` is the base of relative
    /// paths, its `params` and `headers` go with every request. `${VAR}`s are read now.
    pub fn for_api(&self, config: &RequestConfig) -> Result<Self, StepError> {
        let base = interpolate(&config.url)?;
        reqwest::Url::parse(&base).map_err(|e| {
            StepError::permanent_with_code(
                format!("`url` `{}` is not a URL: {e}", config.url),
                "HANDLER_CONFIG",
            )
        })?;
        let pairs = |map: &BTreeMap<String, String>| {
            map.iter()
                .map(|(k, v)| Ok((k.clone(), interpolate(v)?)))
                .collect::<Result<Vec<_>, StepError>>()
        };
        Ok(Self {
            client: self.client.clone(),
            base: Some(base),
            params: pairs(&config.params)?,
            headers: pairs(&config.headers)?,
            timeout: config
                .timeout_seconds
                .filter(|s| *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            api: Some(std::sync::Arc::new(config.clone())),
        })
    }

    /// The configuration this client is aimed at: the step's, for a client handed to `process`
    /// when the step's `handler_config` describes its API.
    pub fn api(&self) -> Option<&RequestConfig> {
        self.api.as_deref()
    }

    /// The underlying reqwest client, for requests built by hand (send them with
    /// [`ApiClient::send`]).
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// The base URL of the step's API, if its `handler_config` gave one.
    pub fn base_url(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// The URL of `path`: an absolute URL as it is, otherwise joined to the base URL with one
    /// `/` between them (so `/orders/7` and `orders/7` both go under the base's own path).
    pub fn url(&self, path: &str) -> String {
        match &self.base {
            Some(base) if !path.contains("://") => {
                let (base, path) = (base.trim_end_matches('/'), path.trim_start_matches('/'));
                if path.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}/{path}")
                }
            }
            _ => path.to_owned(),
        }
    }

    /// A request to `path` (see [`ApiClient::url`]) with the API's parameters, headers and
    /// deadline; send it with [`ApiClient::send`].
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, self.url(path));
        if !self.params.is_empty() {
            request = request.query(&self.params);
        }
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        request
    }

    /// A `GET` of `path`; see [`ApiClient::request`].
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// A `POST` to `path`; see [`ApiClient::request`].
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    /// A `PUT` to `path`; see [`ApiClient::request`].
    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PUT, path)
    }

    /// A `PATCH` of `path`; see [`ApiClient::request`].
    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PATCH, path)
    }

    /// A `DELETE` of `path`; see [`ApiClient::request`].
    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::DELETE, path)
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

    /// Makes the request `config` describes, on this client aimed at its API (aimed first,
    /// unless `config` is the one it is aimed at already): `method` `path` with `body`.
    pub async fn call(&self, config: &RequestConfig) -> Result<ApiResponse, StepError> {
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
        let aimed;
        let api = match self.api() {
            Some(own) if std::ptr::eq(own, config) => self,
            _ => {
                aimed = self.for_api(config)?;
                &aimed
            }
        };
        let path = interpolate(config.path.as_deref().unwrap_or(""))?;
        let mut request = api.request(method, &path);
        if let Some(body) = &config.body {
            request = request.json(body);
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
///
/// When the step's `handler_config` says `type: api`, the client handed to `process` is aimed
/// at that API: `client.get("/orders/7")` requests `/orders/7` under its `url`, with its
/// `params` and `headers`.
pub trait ApiStepHandler: Send + Sync + 'static {
    /// Makes the request. By default, the one the step's `handler_config` describes.
    fn process(
        &self,
        client: &ApiClient,
        cx: &StepContext,
    ) -> impl Future<Output = Result<ApiResponse, StepError>> + Send {
        async move {
            // The engine has read the step's configuration already when it aimed the client.
            let parsed;
            let config = match client.api() {
                Some(config) => config,
                None => {
                    parsed = RequestConfig::from_step(cx)?;
                    &parsed
                }
            };
            client.call(config).await
        }
    }

    /// Turns a successful response into the step's result. By default, the body as JSON (or
    /// text) with the status: `{"status": 200, "body": …}`.
    fn process_results(&self, response: &ApiResponse, _cx: &StepContext) -> StepResult {
        Ok(serde_json::json!({ "status": response.status, "body": response.json() }))
    }

    /// Whether the step's `handler_config` is its API's configuration even without
    /// `type: api`; true for the configuration-driven [`HttpHandler`], whose steps must have one.
    fn requires_config(&self) -> bool {
        false
    }
}

/// Runs an [`ApiStepHandler`] as a step handler, classifying each response.
#[derive(Debug)]
pub struct ApiHandler<H> {
    handler: H,
    client: ApiClient,
    /// Clients built for the `ssl` settings steps asked for, so connections are reused.
    tls: std::sync::Mutex<std::collections::HashMap<SslConfig, ApiClient>>,
}

impl<H: ApiStepHandler> ApiHandler<H> {
    /// Wraps `handler` with a client whose default timeout is [`DEFAULT_TIMEOUT`].
    pub fn new(handler: H) -> Result<Self, StepError> {
        Ok(Self::with_client(handler, ApiClient::new(DEFAULT_TIMEOUT)?))
    }

    /// Wraps `handler` with the given client.
    pub fn with_client(handler: H, client: ApiClient) -> Self {
        Self {
            handler,
            client,
            tls: Default::default(),
        }
    }

    /// The client for a step's `ssl` settings: the default one without any.
    fn client_for(&self, ssl: Option<&SslConfig>) -> Result<ApiClient, StepError> {
        let Some(ssl) = ssl.filter(|s| **s != SslConfig::default()) else {
            return Ok(self.client.clone());
        };
        let mut clients = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(ssl) {
            return Ok(client.clone());
        }
        let client = ApiClient::build(DEFAULT_TIMEOUT, Some(ssl))?;
        clients.insert(ssl.clone(), client.clone());
        Ok(client)
    }
}

impl<H: ApiStepHandler> StepHandler for ApiHandler<H> {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        let api = match self.handler.requires_config() {
            true => Some(RequestConfig::from_step(cx)?),
            false => RequestConfig::api_of_step(cx)?,
        };
        let client = self.client_for(api.as_ref().and_then(|a| a.ssl.as_ref()))?;
        let client = match &api {
            Some(api) => client.for_api(api)?,
            None => client,
        };
        let outcome = match self.handler.process(&client, cx).await {
            Ok(response) => classify(&response).map(|()| response),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(response) => self.handler.process_results(&response, cx),
            Err(StepError::Retryable {
                message,
                retry_after: None,
            }) => {
                let wait = api.as_ref().and_then(|a| a.retry_wait(cx.attempt()));
                Err(StepError::Retryable {
                    message,
                    retry_after: wait,
                })
            }
            Err(error) => Err(error),
        }
    }
}

/// The handler that needs no code: the request comes from `handler_config`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigRequest;

impl ApiStepHandler for ConfigRequest {
    fn requires_config(&self) -> bool {
        true
    }
}

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
