use std::rc::Rc;

use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        let shared = Rc::new(1);
        std::future::ready(()).await;
        Ok(*shared)
    }
}

fn main() {}
