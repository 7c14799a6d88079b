use tasker::prelude::*;

struct Flow;

impl Flow {
    #[tasker::step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
