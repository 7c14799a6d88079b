//! One mistake in the graph is the only error: the step constants and the `TaskHandler` impl
//! still exist, so code using them elsewhere type-checks.

use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }

    #[step(depends_on = fetc)]
    async fn charge(&self, _cx: &StepContext, order: i64) -> Result<i64, StepError> {
        Ok(order)
    }
}

async fn elsewhere(tasker: Tasker) -> tasker::Result<()> {
    let _ = Flow::FETCH.name();
    tasker.create::<Flow>(&tasker::serde_json::json!({})).await?;
    Ok(())
}

fn main() {
    let _ = elsewhere;
}
