use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow", version = "1.2.3-01")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
