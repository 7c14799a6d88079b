//! tasker: durable, queueable multi-step workflows for Rust.
//!
//! A **task** is a run of a named workflow (`namespace/name@version`) over a JSON context. Its
//! **steps** form a DAG: root steps run first, a step becomes ready when all its parents are
//! complete, ready steps run concurrently, and failed steps retry with exponential backoff. Every
//! task, step, attempt and transition is persisted with diesel, in an embedded SQLite file by
//! default or in PostgreSQL for many workers on many machines. Workflows are declared with
//! [`macro@task_handler`] and checked by the compiler:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use tasker::prelude::*;
//!
//! #[tasker::data]
//! pub struct Greeting {
//!     pub name: String,
//! }
//!
//! #[derive(Default)]
//! pub struct Greet;
//!
//! #[task_handler(name = "greet", namespace = "demo", version = "1.0.0", context = Greeting)]
//! impl Greet {
//!     #[step]
//!     async fn compose(&self, cx: &StepContext<Greeting>) -> Result<String, StepError> {
//!         Ok(format!("hello {}", cx.context().name))
//!     }
//!
//!     #[step(depends_on = compose, retry_limit = 5)]
//!     async fn send(&self, _cx: &StepContext<Greeting>, text: String) -> Result<usize, StepError> {
//!         Ok(text.len())
//!     }
//! }
//!
//! # async fn run() -> tasker::Result<()> {
//! let tasker = Tasker::builder().database_url("tasker.db").build().await?;
//! let worker = tasker.start_worker();
//! let task = tasker.create::<Greet>(&Greeting { name: "world".into() }).await?;
//! let done = tasker.wait_for_task(task.id, Duration::from_secs(10)).await?;
//! assert_eq!(done.state, TaskState::Complete);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Where to read on
//!
//! The README (the crate's front page on crates.io) is the guide, section by section: creating
//! task handlers (the macros, YAML templates, hooks), step handlers and [`StepContext`], API
//! step handlers ([`http`]), dependencies, operating on tasks, workers and scale-out, the event
//! system ([`events`], [`subscriber`](mod@subscriber)), telemetry (`tasker::telemetry`, `tasker::logging`,
//! [`metrics`]), the REST and GraphQL API (`tasker::server`), scheduling ([`schedule`]),
//! retention, testing (`tasker::testing`) and the `cargo tasker` command line. The modules in
//! plain text need the feature of the same name (below).
//!
//! # Features
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `sqlite` | yes | the embedded SQLite backend (SQLite built from source); a PostgreSQL-only application may turn it off |
//! | `postgres` | yes | the PostgreSQL backend (libpq built from source, no OpenSSL) |
//! | `macros` | yes | `#[task_handler]`, `#[step]`, `#[step_handler]`, `#[subscriber]`, `#[tasker::data]`, `custom_event!` |
//! | `http` | yes | `tasker::http`: API step handlers over reqwest and rustls |
//! | `server` | no | `tasker::server`: the REST API (axum), with API keys and JWTs |
//! | `graphql` | no | `POST /graphql` beside the REST routes (turns on `server`) |
//! | `logging` | no | `tasker::logging`: text or JSON log lines, as the configuration says |
//! | `opentelemetry` | no | `tasker::telemetry`: span export over OTLP/HTTP (turns on `logging`) |
//! | `testing` | no | `tasker::testing`: a harness with a temporary database and a test clock (turns on `sqlite`) |
//!
//! Modules behind a feature are documented on docs.rs, which builds with every feature; locally,
//! `cargo doc --open -p tasker-engine --all-features`.

// docs.rs marks each item behind a feature with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("tasker-engine needs a database: enable its `sqlite` feature, `postgres`, or both");

pub mod analytics;
mod backoff;
pub mod config;
pub mod diagram;
pub mod engine;
mod error;
pub mod events;
mod generated;
pub mod handler;
pub mod hooks;
#[cfg(feature = "http")]
pub mod http;
mod integral;
#[cfg(feature = "logging")]
pub mod logging;
pub mod metrics;
pub mod model;
pub mod redact;
pub mod registry;
pub mod schedule;
mod seconds;
#[cfg(feature = "server")]
pub mod server;
pub mod state;
mod store;
pub mod subscriber;
#[cfg(feature = "opentelemetry")]
pub mod telemetry;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timestamp;
pub mod workflow;
mod yaml;

pub use backoff::BackoffConfig;
pub use config::TaskerConfig;
pub use engine::{
    IdentityStrategy, TaskIdentity, TaskRequest, Tasker, TaskerBuilder, TaskerConnection, Worker,
    WorkerOptions, shutdown_signal,
};
pub use error::{ContextViolation, Error, FileProblem, Result};
pub use events::{CustomEvent, Event, EventKind};
pub use handler::{StepContext, StepError, StepHandler, StepRef, StepResult, handler_fn};
pub use hooks::{Annotation, FinishedTask, PlanError, PlannedStep, StepPlan};
pub use model::{
    AnnotationFilter, ClaimedStep, CompletionOutcome, ErrorClass, EventRecord, ExecutionContext,
    Failure, FailureReason, MigrationStatus, NewTask, ObjectMap, Outcome, ParentOutput,
    PruneOptions, Pruned, StepInfo, TaskAnnotation, TaskFilter, TaskRow, TaskSort, TemplateFilter,
    TransitionInfo, WorkerInfo,
};
pub use registry::{Registry, TemplateKey};
pub use schedule::{Schedule, ScheduleInfo, ScheduleTemplate};
pub use state::{StepState, TaskState};
pub use store::{Backend, ConnectOptions, Store};
pub use subscriber::{Subscriber, SubscriberError};
pub use template::{StepTemplate, TaskTemplate};
pub use workflow::{ResultExt, StepOutput, TaskContext, TaskHandler};

#[cfg(feature = "macros")]
pub use tasker_macros::{
    custom_event, data, main, step, step_handler, subscriber, task_handler, test,
};

/// The JSON library contexts and results are made of, for code that builds them untyped.
pub use serde_json;

/// The date and time library of tasker's times (a schedule's slot, a task's `run_at`).
pub use chrono;

/// Not public API: what the macros' generated code names. It may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::events::registration::CustomEventRegistration;
    pub use crate::events::{CustomEvent, Event};
    pub use crate::generated::{
        DefaultProbe, Probe, SchemaProbe, StepHandlerRegistration, SubscriberRegistration,
        TaskHandlerRegistration, ViaDefault, ViaJsonSchema, ViaNoSchema, ViaNothing,
        context_schema, method_step, parent_input, require_send, schema_of, step_result,
        typed_context, uncompiled_template,
    };
    pub use crate::handler::{
        BoxFuture, DynStepHandler, StepContext, StepHandler, StepRef, StepResult,
    };
    pub use crate::hooks::{Annotation, FinishedTask, PlanError, StepPlan};
    pub use crate::schedule::ScheduleTemplate;
    pub use crate::subscriber::{DynSubscriber, Subscriber, SubscriberError};
    pub use crate::template::{StepTemplate, TaskTemplate, parse_template};
    pub use crate::workflow::{StepInput, StepReturn, TaskHandler};
    pub use crate::{Result, TaskContext};
    pub use ::chrono;
    pub use ::inventory;
    pub use ::schemars;
    pub use ::serde;
    pub use ::serde_json;
    pub use ::std::boxed::Box;
    pub use ::std::string::String;
    pub use ::std::sync::Arc;
    pub use ::std::vec::Vec;
    pub use ::tokio;
}

/// The names most programs need: `use tasker::prelude::*;`.
pub mod prelude {
    pub use crate::{Annotation, FinishedTask, PlanError, StepPlan};
    pub use crate::{Event, Subscriber, SubscriberError};
    pub use crate::{
        ResultExt, StepContext, StepError, StepHandler, StepRef, StepResult, StepState,
        StepTemplate, TaskHandler, TaskRequest, TaskState, TaskTemplate, Tasker, handler_fn,
    };
    #[cfg(feature = "macros")]
    pub use crate::{step_handler, subscriber, task_handler};
}
