use tasker::prelude::*;

#[tasker::data]
struct Order {
    rush: bool,
}

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow", context = Order)]
impl Flow {
    #[step]
    async fn fetch(&self, _cx: &StepContext<Order>) -> Result<i64, StepError> {
        Ok(1)
    }

    fn establish_step_dependencies_and_defaults(
        &self,
        context: &Order,
        steps: &mut StepPlan,
    ) -> Result<(), PlanError> {
        if context.rush {
            steps.step("fetch")?.set_retry_limit(1);
        }
        Ok(())
    }

    fn update_annotations(&self, task: &FinishedTask<Order>) -> Vec<Annotation> {
        vec![Annotation::new(
            "flow",
            tasker::serde_json::json!({ "rush": task.context.rush }),
        )]
    }
}

#[test]
fn both_hooks_are_found_by_name() {
    const _: () = assert!(<Flow as TaskHandler>::ESTABLISHES_STEPS);
    const _: () = assert!(<Flow as TaskHandler>::UPDATES_ANNOTATIONS);
}
