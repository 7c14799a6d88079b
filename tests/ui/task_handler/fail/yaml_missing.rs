use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(template = "config/tasker/tasks/nowhere.yaml")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
