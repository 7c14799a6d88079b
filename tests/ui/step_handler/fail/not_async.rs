use tasker::prelude::*;

#[step_handler(name = "shop.fetch")]
fn fetch(_cx: &StepContext) -> Result<i64, StepError> {
    Ok(1)
}

fn main() {}
