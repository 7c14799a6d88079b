//! The process's logger (feature `logging`): text or JSON lines on stderr, as the
//! configuration's [`LogConfig`] says.
//!
//! ```no_run
//! # fn run() -> tasker::Result<()> {
//! let config = tasker::TaskerConfig::from_file("config/tasker/tasker.yaml")?;
//! tasker::logging::init(&config.log)?;
//! # Ok(()) }
//! ```

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use crate::config::{LogConfig, LogFormat};

/// A boxed layer of a subscriber `S`.
pub type BoxLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// Installs the global `tracing` subscriber: lines in `config.format` on stderr, filtered by
/// `RUST_LOG` when set, else by `config.filter`.
pub fn init(config: &LogConfig) -> crate::Result<()> {
    tracing_subscriber::registry()
        .with(filter(config)?)
        .with(layer(config))
        .try_init()
        .map_err(|e| crate::Error::TracingSubscriber(Box::new(e)))
}

/// The filter `RUST_LOG` or, without it, `config.filter` describes.
pub fn filter(config: &LogConfig) -> crate::Result<EnvFilter> {
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        return Ok(filter);
    }
    EnvFilter::try_new(&config.filter)
        .map_err(|e| crate::Error::LogFilter(format!("`{}`: {e}", config.filter)))
}

/// The formatting layer for `config.format`, writing to stderr, to compose into a subscriber of
/// your own.
pub fn layer<S>(config: &LogConfig) -> BoxLayer<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    use std::io::IsTerminal;
    let colours = std::io::stderr().is_terminal();
    formatted(config, std::io::stderr, colours)
}

/// The formatting layer for `config.format`, writing to `writer` (without colours).
pub fn layer_to<S, W>(config: &LogConfig, writer: W) -> BoxLayer<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    formatted(config, writer, false)
}

fn formatted<S, W>(config: &LogConfig, writer: W, colours: bool) -> BoxLayer<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(colours);
    match config.format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let config = LogConfig {
            format,
            filter: "info".to_owned(),
        };
        let subscriber = tracing_subscriber::registry()
            .with(layer_to(&config, move || writer.clone()))
            .with(filter(&config).expect("filter"));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("tasker.step", task_id = 7, step = "charge");
            let _entered = span.enter();
            tracing::info!(attempt = 2, "step failed");
        });
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn json_lines_carry_the_event_and_its_spans() {
        let text = logged(LogFormat::Json);
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["message"], "step failed");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["span"]["name"], "tasker.step");
        assert_eq!(line["span"]["task_id"], 7);
        assert_eq!(line["spans"][0]["step"], "charge");
        assert!(line["timestamp"].is_string(), "{line}");
    }

    #[test]
    fn text_lines_are_for_people() {
        let text = logged(LogFormat::Text);
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
        assert!(text.contains("step failed"), "{text}");
        assert!(text.contains("attempt=2"), "{text}");
    }

    #[test]
    fn a_bad_filter_names_its_key() {
        let config = LogConfig {
            format: LogFormat::Text,
            filter: "tasker=loud".to_owned(),
        };
        if std::env::var_os("RUST_LOG").is_none() {
            let error = filter(&config).expect_err("bad filter");
            assert!(error.to_string().contains("log.filter"), "{error}");
        }
    }
}
