use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step(depends_on = c)]
    async fn a(&self, _cx: &StepContext, c: i64) -> Result<i64, StepError> {
        Ok(c)
    }

    #[step(depends_on = a)]
    async fn b(&self, _cx: &StepContext, a: i64) -> Result<i64, StepError> {
        Ok(a)
    }

    #[step(depends_on = b)]
    async fn c(&self, _cx: &StepContext, b: i64) -> Result<i64, StepError> {
        Ok(b)
    }
}

fn main() {}
