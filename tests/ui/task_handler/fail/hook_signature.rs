use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }

    // The hook returns nothing where the engine expects a `Result`.
    fn establish_step_dependencies_and_defaults(
        &self,
        _context: &tasker::serde_json::Value,
        _steps: &mut StepPlan,
    ) {
    }
}

fn main() {}
