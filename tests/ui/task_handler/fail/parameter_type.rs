use tasker::prelude::*;

#[tasker::data]
struct Order {
    id: i64,
}

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<Order, StepError> {
        Ok(Order { id: 1 })
    }

    #[step(depends_on = fetch)]
    async fn charge(&self, _cx: &StepContext, order: String) -> Result<usize, StepError> {
        Ok(order.len())
    }
}

fn main() {}
