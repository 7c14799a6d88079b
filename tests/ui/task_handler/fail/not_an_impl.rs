use tasker::prelude::*;

#[task_handler(name = "flow")]
struct Flow;

fn main() {}
