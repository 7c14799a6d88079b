//! Handlers that hold state are handed to the builder; forgetting one is a start-up error.
//!
//! A separate test binary: every builder in a binary discovers every handler compiled into it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tasker::prelude::*;
use tasker::{Error, StepResult};
use tasker_tests::TestDatabase;

/// Counts the steps it runs; the count is shared with the test.
pub struct Counting {
    runs: Arc<AtomicUsize>,
}

#[task_handler(name = "counting", namespace = "stateful")]
impl Counting {
    #[step]
    async fn count(&self, _cx: &StepContext) -> Result<usize, StepError> {
        Ok(self.runs.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// A named step handler with a prefix it was built with.
pub struct Prefixer {
    prefix: String,
}

#[step_handler(name = "stateful.prefix")]
impl StepHandler for Prefixer {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        Ok(format!("{}{}", self.prefix, cx.step_name()).into())
    }
}

fn prefix_template() -> TaskTemplate {
    TaskTemplate::new("stateful", "prefixing", "1.0.0")
        .step(StepTemplate::new("only", "stateful.prefix"))
}

#[tokio::test]
async fn a_stateful_task_handler_must_be_handed_over() {
    let db = TestDatabase::sqlite();
    let error = db.builder().build().await.expect_err("missing instance");
    assert!(
        matches!(&error, Error::TaskHandlerNeedsInstance { task, handler_type }
            if task == "stateful/counting@0.1.0" && handler_type.ends_with("::Counting")),
        "{error}"
    );
    assert!(error.to_string().contains(".task_handler("), "{error}");
}

#[tokio::test]
async fn a_handed_over_task_handler_runs_with_its_state() {
    let db = TestDatabase::sqlite();
    let runs = Arc::new(AtomicUsize::new(0));
    let tasker = db
        .builder()
        .task_handler(Counting {
            runs: Arc::clone(&runs),
        })
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker
        .create::<Counting>(&tasker::serde_json::json!({}))
        .await
        .expect("create");
    let done = tasker
        .wait_for_task(task.id, Duration::from_secs(30))
        .await
        .expect("wait");
    worker.shutdown().await;
    assert_eq!(done.state, TaskState::Complete);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stateful_step_handler_a_template_uses_must_be_handed_over() {
    let db = TestDatabase::sqlite();
    let runs = Arc::new(AtomicUsize::new(0));
    let error = db
        .builder()
        .task_handler(Counting { runs })
        .template(prefix_template())
        .build()
        .await
        .expect_err("missing instance");
    assert!(
        matches!(&error, Error::StepHandlerNeedsInstance { name, step, .. }
            if name == "stateful.prefix" && step == "only"),
        "{error}"
    );
}

#[tokio::test]
async fn a_handed_over_step_handler_runs() {
    let db = TestDatabase::sqlite();
    let runs = Arc::new(AtomicUsize::new(0));
    let tasker = db
        .builder()
        .task_handler(Counting { runs })
        .template(prefix_template())
        .handler(
            "stateful.prefix",
            Prefixer {
                prefix: "step:".to_owned(),
            },
        )
        .build()
        .await
        .expect("build");
    let worker = tasker.start_worker();
    let task = tasker
        .create_task(
            TaskRequest::new("prefixing")
                .namespace("stateful")
                .version("1.0.0"),
        )
        .await
        .expect("create");
    tasker
        .wait_for_task(task.id, Duration::from_secs(30))
        .await
        .expect("wait");
    worker.shutdown().await;
    let steps = tasker.steps(task.id).await.expect("steps");
    assert_eq!(steps[0].results, Some("step:only".into()));
}
