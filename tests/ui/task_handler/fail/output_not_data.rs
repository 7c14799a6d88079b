use tasker::prelude::*;

struct Receipt {
    id: i64,
}

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<Receipt, StepError> {
        Ok(Receipt { id: 1 })
    }
}

fn main() {}
