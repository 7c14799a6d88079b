use tasker::prelude::*;

struct Fetch;

#[step_handler]
impl StepHandler for Fetch {
    async fn handle(&self, _cx: &StepContext) -> StepResult {
        Ok(1.into())
    }
}

fn main() {}
