//! The task handler hooks of the seed: adjusting a task's steps for its context before it is
//! written ([`TaskHandler::establish_step_dependencies_and_defaults`]), and annotating a task
//! when it finishes ([`TaskHandler::update_annotations`]).

use std::fmt;
use std::sync::Arc;

use serde::Deserialize as _;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::StepInfo;
use crate::state::TaskState;
use crate::template::TaskTemplate;
use crate::workflow::TaskHandler;

/// Why a task handler refused the plan of a task's steps; the task is not created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(String);

impl PlanError {
    /// A refusal saying `message`.
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

/// One step of a task about to be created, as its hook may adjust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    name: String,
    pub(crate) retry_limit: i32,
    pub(crate) retryable: bool,
    pub(crate) skippable: bool,
    pub(crate) bypassed: bool,
}

impl PlannedStep {
    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many attempts it gets.
    pub fn retry_limit(&self) -> u32 {
        u32::try_from(self.retry_limit).unwrap_or_default()
    }

    /// Whether failures are retried.
    pub fn retryable(&self) -> bool {
        self.retryable
    }

    /// Whether an operator may bypass it.
    pub fn skippable(&self) -> bool {
        self.skippable
    }

    /// Whether it is bypassed: it does not run, and its dependents do not wait for it.
    pub fn bypassed(&self) -> bool {
        self.bypassed
    }

    /// Gives the step `limit` attempts (at least 1).
    pub fn set_retry_limit(&mut self, limit: u32) -> &mut Self {
        self.retry_limit = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        self
    }

    /// Makes failures of the step retried or not.
    pub fn set_retryable(&mut self, retryable: bool) -> &mut Self {
        self.retryable = retryable;
        self
    }

    /// Lets an operator bypass the step later, or not.
    pub fn set_skippable(&mut self, skippable: bool) -> &mut Self {
        self.skippable = skippable;
        self
    }

    /// Bypasses the step for this task, as if the request had named it in `bypass_steps`.
    pub fn bypass(&mut self) -> &mut Self {
        self.bypassed = true;
        self
    }
}

/// The steps of a task about to be created, with their dependencies: what
/// [`TaskHandler::establish_step_dependencies_and_defaults`] adjusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    pub(crate) steps: Vec<PlannedStep>,
    /// `(parent, child)` indexes into `steps`.
    pub(crate) edges: Vec<(usize, usize)>,
}

impl StepPlan {
    /// A plan of `steps` as `(name, retry_limit, retryable, skippable, bypassed)` with `edges`
    /// as `(parent, child)` indexes.
    pub(crate) fn new(
        steps: impl IntoIterator<Item = (String, i32, bool, bool, bool)>,
        edges: Vec<(usize, usize)>,
    ) -> Self {
        let steps = steps
            .into_iter()
            .map(
                |(name, retry_limit, retryable, skippable, bypassed)| PlannedStep {
                    name,
                    retry_limit,
                    retryable,
                    skippable,
                    bypassed,
                },
            )
            .collect();
        Self { steps, edges }
    }

    /// The plan every task of `template` starts from: its steps with their settings and
    /// dependencies as the template declares them, none bypassed. The engine hands the hook
    /// this plan (with a request's bypassed steps marked); a unit test of a hook can too:
    ///
    /// ```
    /// # use tasker::prelude::*;
    /// # use tasker::TaskHandler;
    /// # #[tasker::data]
    /// # struct Shipment { express: bool }
    /// # #[derive(Default)]
    /// # struct Shipping;
    /// # #[task_handler(name = "shipping", context = Shipment)]
    /// # impl Shipping {
    /// #     #[step]
    /// #     async fn pack(&self, _cx: &StepContext<Shipment>) -> Result<i64, StepError> {
    /// #         Ok(1)
    /// #     }
    /// #     #[step(depends_on = pack, skippable)]
    /// #     async fn insure(&self, _cx: &StepContext<Shipment>, _: i64) -> Result<(), StepError> {
    /// #         Ok(())
    /// #     }
    /// #     fn establish_step_dependencies_and_defaults(
    /// #         &self,
    /// #         shipment: &Shipment,
    /// #         steps: &mut StepPlan,
    /// #     ) -> Result<(), PlanError> {
    /// #         if shipment.express {
    /// #             steps.step("insure")?.bypass();
    /// #         }
    /// #         Ok(())
    /// #     }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let template = <Shipping as TaskHandler>::template(None)?;
    /// let mut plan = StepPlan::of_template(&template);
    /// let express = Shipment { express: true };
    /// Shipping.establish_step_dependencies_and_defaults(&express, &mut plan)?;
    /// assert!(plan.step("insure")?.bypassed());
    /// # Ok(())
    /// # }
    /// ```
    pub fn of_template(template: &TaskTemplate) -> Self {
        Self::new(
            template.step_templates.iter().map(|s| {
                (
                    s.name.clone(),
                    i32::try_from(s.default_retry_limit).unwrap_or(i32::MAX),
                    s.default_retryable,
                    s.skippable,
                    false,
                )
            }),
            template.step_edges(),
        )
    }

    /// The steps, in template order.
    pub fn steps(&self) -> &[PlannedStep] {
        &self.steps
    }

    /// The step `name`, to adjust; an error names a step the template does not have.
    pub fn step(&mut self, name: &str) -> std::result::Result<&mut PlannedStep, PlanError> {
        let index = self.index(name)?;
        Ok(&mut self.steps[index])
    }

    /// The names of the steps `name` waits for.
    pub fn dependencies(&self, name: &str) -> Vec<&str> {
        let Ok(child) = self.index(name) else {
            return Vec::new();
        };
        self.edges
            .iter()
            .filter(|(_, c)| *c == child)
            .map(|(p, _)| self.steps[*p].name.as_str())
            .collect()
    }

    /// Makes `step` wait for `parent` too. Dependencies can be added, not removed: a step's
    /// code may read its template's parents. An error names an unknown step, or the cycle the
    /// dependency would close.
    pub fn add_dependency(
        &mut self,
        step: &str,
        parent: &str,
    ) -> std::result::Result<&mut Self, PlanError> {
        let (child, parent_index) = (self.index(step)?, self.index(parent)?);
        if self.edges.contains(&(parent_index, child)) {
            return Ok(self);
        }
        if let Some(path) = self.path(child, parent_index) {
            let names: Vec<&str> = path.iter().map(|&i| self.steps[i].name.as_str()).collect();
            return Err(PlanError::new(format!(
                "making `{step}` depend on `{parent}` would close the cycle {} -> {step}",
                names.join(" -> ")
            )));
        }
        self.edges.push((parent_index, child));
        Ok(self)
    }

    fn index(&self, name: &str) -> std::result::Result<usize, PlanError> {
        self.steps
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| PlanError::new(format!("the task has no step named `{name}`")))
    }

    /// The steps from `from` to `to` along dependency edges (parent to child), if `to` depends
    /// on `from` at any depth.
    fn path(&self, from: usize, to: usize) -> Option<Vec<usize>> {
        let mut came_from: Vec<Option<usize>> = vec![None; self.steps.len()];
        let mut queue = std::collections::VecDeque::from([from]);
        let mut seen = vec![false; self.steps.len()];
        seen[from] = true;
        while let Some(at) = queue.pop_front() {
            if at == to {
                let mut path = vec![to];
                let mut cursor = to;
                while let Some(previous) = came_from[cursor] {
                    path.push(previous);
                    cursor = previous;
                }
                path.reverse();
                return Some(path);
            }
            for &(p, c) in &self.edges {
                if p == at && !seen[c] {
                    seen[c] = true;
                    came_from[c] = Some(at);
                    queue.push_back(c);
                }
            }
        }
        None
    }
}

/// A task that has just finished (complete, or in error), as
/// [`TaskHandler::update_annotations`] sees it.
#[derive(Debug, Clone)]
pub struct FinishedTask<C> {
    /// The task's id.
    pub task_id: i64,
    /// `complete` or `error`.
    pub state: TaskState,
    /// Its context.
    pub context: C,
    /// Its steps, with their states and results.
    pub steps: Vec<StepInfo>,
}

impl<C> FinishedTask<C> {
    /// The step `name`, if the task has it.
    pub fn step(&self, name: &str) -> Option<&StepInfo> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// An annotation a hook adds: a JSON object of notes under a type.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Its type (created on first use).
    pub annotation_type: String,
    /// What it says: a JSON object.
    pub annotation: Value,
}

impl Annotation {
    /// An annotation of `annotation_type` saying `annotation` (a JSON object).
    pub fn new(annotation_type: impl Into<String>, annotation: Value) -> Self {
        Self {
            annotation_type: annotation_type.into(),
            annotation,
        }
    }
}

/// A task handler's hooks with its context type erased, as the engine keeps them.
pub(crate) trait TaskHooks: Send + Sync {
    /// Whether [`TaskHooks::establish`] does anything.
    fn establishes(&self) -> bool;
    /// Whether [`TaskHooks::annotate`] does anything.
    fn annotates(&self) -> bool;
    /// Runs the handler's `establish_step_dependencies_and_defaults` over `context`.
    fn establish(&self, template: &str, context: &Value, plan: &mut StepPlan) -> Result<()>;
    /// Runs the handler's `update_annotations`.
    fn annotate(
        &self,
        task_id: i64,
        state: TaskState,
        context: &Value,
        steps: Vec<StepInfo>,
    ) -> Result<Vec<Annotation>>;
}

/// The hooks of the task handler `H`.
pub(crate) struct HooksOf<H>(pub(crate) Arc<H>);

impl<H: TaskHandler> TaskHooks for HooksOf<H> {
    fn establishes(&self) -> bool {
        H::ESTABLISHES_STEPS
    }

    fn annotates(&self) -> bool {
        H::UPDATES_ANNOTATIONS
    }

    fn establish(&self, template: &str, context: &Value, plan: &mut StepPlan) -> Result<()> {
        if !H::ESTABLISHES_STEPS {
            return Ok(());
        }
        let context = context_of::<H>(template, context)?;
        self.0
            .establish_step_dependencies_and_defaults(&context, plan)
            .map_err(|source| Error::StepPlan {
                template: template.to_owned(),
                source,
            })
    }

    fn annotate(
        &self,
        task_id: i64,
        state: TaskState,
        context: &Value,
        steps: Vec<StepInfo>,
    ) -> Result<Vec<Annotation>> {
        if !H::UPDATES_ANNOTATIONS {
            return Ok(Vec::new());
        }
        let context = context_of::<H>(&format!("task {task_id}"), context)?;
        Ok(self.0.update_annotations(&FinishedTask {
            task_id,
            state,
            context,
            steps,
        }))
    }
}

/// The typed context of a task; it passed the template's schema, so this fails only when the
/// schema admits what the type does not.
fn context_of<H: TaskHandler>(template: &str, context: &Value) -> Result<H::Context> {
    H::Context::deserialize(context).map_err(|e| Error::InvalidContext {
        template: template.to_owned(),
        errors: vec![crate::error::ContextViolation {
            pointer: String::new(),
            message: e.to_string(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> StepPlan {
        // a -> b -> c
        StepPlan::new(
            ["a", "b", "c"].map(|n| (n.to_owned(), 3, true, false, false)),
            vec![(0, 1), (1, 2)],
        )
    }

    #[test]
    fn a_dependency_that_closes_a_cycle_is_refused_with_the_cycle() {
        let mut plan = plan();
        let error = plan.add_dependency("a", "c").expect_err("cycle");
        assert_eq!(
            error.to_string(),
            "making `a` depend on `c` would close the cycle a -> b -> c -> a"
        );
        assert_eq!(plan.edges, vec![(0, 1), (1, 2)]);
        plan.add_dependency("c", "a")
            .expect("a shortcut is no cycle");
        assert_eq!(plan.dependencies("c"), vec!["b", "a"]);
        let error = plan.add_dependency("c", "z").expect_err("unknown");
        assert_eq!(error.to_string(), "the task has no step named `z`");
    }

    #[test]
    fn step_settings_are_adjusted_in_place() {
        let mut plan = plan();
        plan.step("b")
            .expect("b")
            .set_retry_limit(0)
            .set_retryable(false)
            .set_skippable(true)
            .bypass();
        let b = &plan.steps()[1];
        assert_eq!(
            (b.retry_limit(), b.retryable(), b.skippable(), b.bypassed()),
            (1, false, true, true)
        );
        assert!(plan.step("nope").is_err());
    }
}
