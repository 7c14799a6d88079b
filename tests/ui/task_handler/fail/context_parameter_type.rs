use tasker::prelude::*;

#[tasker::data]
struct OrderContext {
    order_id: i64,
}

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow", context = OrderContext)]
impl Flow {
    #[step]
    async fn fetch(&self, cx: &StepContext<String>) -> Result<usize, StepError> {
        Ok(cx.context().len())
    }
}

fn main() {}
