use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step(depends_on = again)]
    async fn again(&self, _cx: &StepContext, previous: i64) -> Result<i64, StepError> {
        Ok(previous)
    }
}

fn main() {}
