//! Accepted forms: defaults, JSON context, bare flags, one-element lists, integer timeouts,
//! renamed steps, `Option` parameters, custom error types, visibility, and `crate = path`.

use tasker::prelude::*;

/// An error of the application's own, converted into a `StepError`.
struct GatewayDown;

impl From<GatewayDown> for StepError {
    fn from(_: GatewayDown) -> Self {
        StepError::retryable("gateway down")
    }
}

#[derive(Default)]
pub struct Flow;

#[task_handler(name = "flow", concurrent = false, crate = ::tasker)]
impl Flow {
    #[step(skippable, retryable)]
    pub async fn first(&self, cx: &StepContext) -> Result<i64, StepError> {
        Ok(cx.context()["n"].as_i64().unwrap_or(0))
    }

    #[step(depends_on = [first], timeout = 30, name = "second-step")]
    async fn second(&self, _cx: &StepContext, first: Option<i64>) -> Result<(), GatewayDown> {
        let _ = first;
        Ok(())
    }

    #[step(depends_on = [first, second], timeout = "250ms", retry_limit = 1000)]
    async fn third(&self, cx: &StepContext, first: i64, _second: ()) -> Result<String, StepError> {
        let again: i64 = cx.output(Self::FIRST).await?;
        Ok(format!("{first}{again}"))
    }

    /// A raw identifier names the step `type` and its constant `TYPE`.
    #[step(depends_on = third)]
    async fn r#type(&self, _cx: &StepContext, third: String) -> Result<usize, StepError> {
        Ok(third.len())
    }

    /// Not a step: ordinary methods stay as they are.
    fn helper(&self) -> u8 {
        7
    }
}

#[test]
fn the_accepted_forms_generate_what_they_declare() {
    assert_eq!(Flow.helper(), 7);
    let template = <Flow as TaskHandler>::template(None).expect("template");
    assert_eq!(template.full_name(), "default/flow@0.1.0");
    assert!(!template.concurrent);
    let names: Vec<&str> = template
        .step_templates
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["first", "second-step", "third", "type"]);
    assert_eq!(Flow::TYPE.name(), "type");
    assert_eq!(
        template.step_templates[2].dependencies(),
        ["first", "second-step"]
    );
    assert_eq!(Flow::SECOND.name(), "second-step");
}
