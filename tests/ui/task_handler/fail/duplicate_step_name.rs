use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step(name = "charge")]
    async fn charge_card(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }

    #[step(name = "charge")]
    async fn charge_wallet(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(2)
    }
}

fn main() {}
