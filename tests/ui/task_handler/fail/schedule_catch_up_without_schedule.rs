use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow", catch_up = 3)]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
