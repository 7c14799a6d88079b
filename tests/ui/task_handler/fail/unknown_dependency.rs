use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step]
    async fn fetch_order(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }

    #[step(depends_on = fetch_ordr)]
    async fn charge(&self, _cx: &StepContext, order: i64) -> Result<i64, StepError> {
        Ok(order)
    }
}

fn main() {}
