use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow", version = "1.0.0-very-long-pre-release")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
