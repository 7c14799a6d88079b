use tasker::prelude::*;

#[derive(Default)]
struct Flow;

// The file declares `schedules:` already.
// The path is relative to trybuild's crate root, `target/tests/trybuild/tasker-ui-tests`.
#[task_handler(
    template = "../../../../tests/ui/templates/scheduled.yaml",
    schedule = "0 6 * * *"
)]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
