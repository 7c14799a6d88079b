use tasker::prelude::*;

#[derive(Default)]
struct Flow;

// The version comes from the file alone, so the file's value is checked.
// The path is relative to trybuild's crate root, `target/tests/trybuild/tasker-ui-tests`.
#[task_handler(template = "../../../../tests/ui/templates/version_too_long.yaml")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
