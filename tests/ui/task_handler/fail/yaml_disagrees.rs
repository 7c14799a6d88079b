use tasker::prelude::*;

#[derive(Default)]
struct Flow;

// trybuild builds this case in `target/tests/trybuild/tasker-ui-tests`, the crate root the path
// is relative to; `tests/ui.rs` runs the YAML cases only where that holds.
#[task_handler(template = "../../../../tests/ui/templates/order.yaml", version = "1.1.0")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }

    #[step(depends_on = fetch)]
    async fn validate(&self, _cx: &StepContext, order: i64) -> Result<i64, StepError> {
        Ok(order)
    }

    #[step(depends_on = fetch, retry_limit = 3)]
    async fn charge(&self, _cx: &StepContext, order: i64) -> Result<i64, StepError> {
        Ok(order)
    }

    #[step(depends_on = charge)]
    async fn ship(&self, _cx: &StepContext, charged: i64) -> Result<i64, StepError> {
        Ok(charged)
    }
}

fn main() {}
