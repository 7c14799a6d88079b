//! A function with an untyped or typed context, and a `Default` type.

use tasker::prelude::*;

#[tasker::data]
pub struct Greeting {
    pub name: String,
}

#[step_handler]
async fn untyped(cx: &StepContext) -> Result<i64, StepError> {
    Ok(cx.attempt().into())
}

#[step_handler(name = "greetings.typed")]
async fn typed(cx: &StepContext<Greeting>) -> Result<String, StepError> {
    Ok(format!("hello {}", cx.context().name))
}

#[derive(Default)]
struct Shout;

#[step_handler(name = "greetings.shout")]
impl StepHandler for Shout {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        Ok(cx.step_name().to_uppercase().into())
    }
}
