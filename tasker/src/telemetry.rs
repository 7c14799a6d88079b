//! OpenTelemetry export of the engine's spans (feature `opentelemetry`).
//!
//! The engine's `tasker.task` and `tasker.step` spans (see the worker) become OpenTelemetry
//! spans through [`tracing_opentelemetry`]: a task's steps are children of its span, failed
//! attempts carry status `ERROR` and their message. [`init_otlp`] sets everything up from the
//! standard `OTEL_*` environment variables; [`layer`] fits a tracer provider you built into your
//! own `tracing` subscriber.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use opentelemetry_sdk;

/// Keeps the exporter running; dropping it flushes the spans not yet exported.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard").finish_non_exhaustive()
    }
}

impl TelemetryGuard {
    /// The provider spans are exported through.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "OpenTelemetry shutdown failed");
        }
    }
}

/// A `tracing` layer exporting spans through `provider`, for subscribers built by hand.
pub fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("tasker"))
}

/// Installs a global `tracing` subscriber that exports spans through `provider` (and prints
/// nothing): for a provider built by hand, such as [`SpanTree::provider`].
pub fn install(provider: &SdkTracerProvider) -> crate::Result<()> {
    tracing_subscriber::registry()
        .with(layer(provider))
        .try_init()
        .map_err(|e| crate::Error::TracingSubscriber(Box::new(e)))
}

/// Installs a global `tracing` subscriber that prints logs (filtered by `RUST_LOG`, default
/// `info`) and exports spans over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (default
/// `http://localhost:4318`), as service `OTEL_SERVICE_NAME` or `service_name`.
pub fn init_otlp(service_name: &str) -> crate::Result<TelemetryGuard> {
    init_otlp_with(service_name, &crate::config::LogConfig::default())
}

/// [`init_otlp`], with logs written as `log` says (text or JSON lines, and their filter when
/// `RUST_LOG` is not set).
pub fn init_otlp_with(
    service_name: &str,
    log: &crate::config::LogConfig,
) -> crate::Result<TelemetryGuard> {
    #[cfg(feature = "http")]
    crate::http::install_crypto_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| crate::Error::OtlpExporter(Box::new(e)))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    tracing_subscriber::registry()
        .with(crate::logging::filter(log)?)
        .with(crate::logging::layer(log))
        .with(layer(&provider))
        .try_init()
        .map_err(|e| crate::Error::TracingSubscriber(Box::new(e)))?;
    Ok(TelemetryGuard { provider })
}

/// An exporter that keeps finished spans in memory and renders them as an indented tree, for
/// examples, tests and debugging.
#[derive(Debug, Clone, Default)]
pub struct SpanTree {
    spans: std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>,
}

impl opentelemetry_sdk::trace::SpanExporter for SpanTree {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        if let Ok(mut spans) = self.spans.lock() {
            spans.extend(batch);
        }
        std::future::ready(Ok(()))
    }
}

impl SpanTree {
    /// A tracer provider that exports to this tree as each span ends.
    pub fn provider(&self) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_simple_exporter(self.clone())
            .build()
    }

    /// The finished spans so far, one per line, children indented under their parent, with
    /// their duration, status and chosen attributes.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let spans = self.spans.lock().map(|s| s.clone()).unwrap_or_default();
        let mut out = String::new();
        fn walk(
            out: &mut String,
            spans: &[opentelemetry_sdk::trace::SpanData],
            parent: opentelemetry::trace::SpanId,
            depth: usize,
        ) {
            let mut children: Vec<&opentelemetry_sdk::trace::SpanData> = spans
                .iter()
                .filter(|s| s.parent_span_id == parent)
                .collect();
            children.sort_by_key(|s| s.start_time);
            for span in children {
                let took = span
                    .end_time
                    .duration_since(span.start_time)
                    .unwrap_or_default();
                let attribute = |key: &str| {
                    span.attributes
                        .iter()
                        .find(|kv| kv.key.as_str() == key)
                        .map(|kv| kv.value.to_string())
                };
                let label = match (attribute("step"), attribute("name")) {
                    (Some(step), _) => format!(
                        "{step} (attempt {})",
                        attribute("attempt").unwrap_or_default()
                    ),
                    (None, Some(name)) => {
                        format!("{name} (task {})", attribute("task_id").unwrap_or_default())
                    }
                    _ => String::new(),
                };
                let status = match &span.status {
                    opentelemetry::trace::Status::Error { description } => {
                        format!("ERROR {description}")
                    }
                    opentelemetry::trace::Status::Ok => "OK".to_owned(),
                    opentelemetry::trace::Status::Unset => "unset".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{}{} {label}  {:.1} ms  {status}",
                    "  ".repeat(depth),
                    span.name,
                    took.as_secs_f64() * 1000.0
                );
                walk(out, spans, span.span_context.span_id(), depth + 1);
            }
        }
        walk(&mut out, &spans, opentelemetry::trace::SpanId::INVALID, 0);
        out
    }
}
