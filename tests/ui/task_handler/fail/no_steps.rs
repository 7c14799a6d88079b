use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    async fn helper(&self) -> i64 {
        1
    }
}

fn main() {}
