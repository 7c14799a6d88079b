use tasker::prelude::*;

#[step_handler(name = "shop.fetch", retry_limit = 3)]
async fn fetch(_cx: &StepContext) -> Result<i64, StepError> {
    Ok(1)
}

fn main() {}
