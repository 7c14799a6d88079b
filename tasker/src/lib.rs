//! tasker: durable, queueable multi-step workflows for Rust.
//!
//! A **task** is a run of a named workflow (`namespace/name@version`) over a JSON context. Its
//! **steps** form a DAG: root steps run first, a step becomes ready when all its parents are
//! complete, ready steps run concurrently, and failed steps retry with exponential backoff. Every
//! task, step, attempt and transition is persisted with diesel, in an embedded SQLite file by
//! default or in PostgreSQL for many workers on many machines.
//!
//! ```no_run
//! use tasker::prelude::*;
//!
//! # async fn run() -> tasker::Result<()> {
//! let template = TaskTemplate::new("ecommerce", "order_process", "1.0.0")
//!     .step(StepTemplate::new("fetch_order", "fetch_order"))
//!     .step(StepTemplate::new("send_confirmation", "send_confirmation").depends_on(["fetch_order"]));
//!
//! let tasker = Tasker::builder()
//!     .database_url("tasker.db")
//!     .template(template)
//!     .handler("fetch_order", handler_fn(|cx| async move { Ok(cx.context().clone()) }))
//!     .handler("send_confirmation", handler_fn(|_| async { Ok(serde_json::json!({"sent": true})) }))
//!     .build()
//!     .await?;
//!
//! let worker = tasker.start_worker();
//! let task = tasker
//!     .create_task(TaskRequest::new("order_process").namespace("ecommerce").version("1.0.0"))
//!     .await?;
//! let done = tasker.wait_for_task(task.id, std::time::Duration::from_secs(10)).await?;
//! assert_eq!(done.state, TaskState::Complete);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod engine;
mod error;
pub mod handler;
pub mod registry;
pub mod state;
pub mod store;
pub mod template;

pub use config::TaskerConfig;
pub use engine::backoff::BackoffConfig;
pub use engine::{
    IdentityStrategy, TaskRequest, Tasker, TaskerBuilder, TaskerConnection, Worker, WorkerOptions,
};
pub use error::{Error, Result};
pub use handler::{StepContext, StepError, StepHandler, StepResult, handler_fn};
pub use registry::{Registry, TemplateKey};
pub use state::{StepState, TaskState};
pub use store::{Backend, EventRecord, NewTask, StepInfo, Store, TaskRow, TransitionInfo};
pub use template::{StepTemplate, TaskTemplate};

/// The names most programs need: `use tasker::prelude::*;`.
pub mod prelude {
    pub use crate::{
        StepContext, StepError, StepHandler, StepResult, StepState, StepTemplate, TaskRequest,
        TaskState, TaskTemplate, Tasker, handler_fn,
    };
}
