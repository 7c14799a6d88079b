use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }

    #[step]
    async fn update_annotations(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(2)
    }
}

fn main() {}
