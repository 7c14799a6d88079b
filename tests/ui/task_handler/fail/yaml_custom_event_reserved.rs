use tasker::prelude::*;

#[derive(Default)]
struct Flow;

// Custom events are only declared in the file.
// The path is relative to trybuild's crate root, `target/tests/trybuild/tasker-ui-tests`.
#[task_handler(template = "../../../../tests/ui/templates/custom_event_reserved.yaml")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
