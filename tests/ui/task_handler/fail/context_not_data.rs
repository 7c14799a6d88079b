use tasker::prelude::*;

struct OrderContext {
    order_id: i64,
}

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow", context = OrderContext)]
impl Flow {
    #[step]
    async fn fetch(&self, cx: &StepContext<OrderContext>) -> Result<i64, StepError> {
        Ok(cx.context().order_id)
    }
}

fn main() {}
