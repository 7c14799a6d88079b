//! Checks over the whole parsed workflow, each reporting at the user's token.
//!
//! The runtime's template rules that code can break (identity, step names and count, the
//! graph's depth; retry limit and timeout in `parse`) come from the same `tasker-rules`, so a
//! workflow that compiles is not refused for them at `build()`.

use std::collections::HashMap;

use proc_macro2::Span;
use tasker_rules::{
    Identifier, MAX_STEPS_PER_TEMPLATE, StepCountProblem, graph_depth_problem, identifier_problem,
    step_count_problem, version_problem,
};

use super::parse::{Step, TaskHandler};
use super::yaml::{self, BoundTemplate};
use crate::ctxt::Ctxt;
use crate::graph;

/// Runs every check; returns the YAML template the block is bound to, if any.
pub(crate) fn check(cx: &mut Ctxt, model: &mut TaskHandler) -> Option<BoundTemplate> {
    check_steps(cx, &model.steps);
    check_dependencies(cx, &model.steps);
    check_inputs(cx, &model.steps);
    super::schedule::check(cx, &model.options);
    let bound = match model.options.template.get() {
        Some(path) => yaml::check(cx, path, model),
        None => None,
    };
    check_identity(cx, model);
    bound
}

fn check_identity(cx: &mut Ctxt, model: &TaskHandler) {
    let options = &model.options;
    match options.name.get() {
        Some(name) => {
            if let Some(problem) = identifier_problem(Identifier::TaskName, &name.value()) {
                cx.error_at(name, problem);
            }
        }
        None if options.template.get().is_none() => cx.error_span(
            proc_macro2::Span::call_site(),
            "missing option `name`: `#[task_handler(name = \"order_process\", …)]`",
        ),
        None => {}
    }
    if let Some(namespace) = options.namespace.get()
        && let Some(problem) = identifier_problem(Identifier::Namespace, &namespace.value())
    {
        cx.error_at(namespace, problem);
    }
    if let Some(version) = options.version.get()
        && let Some(problem) = version_problem(&version.value())
    {
        cx.error_at(version, problem);
    }
}

fn check_steps(cx: &mut Ctxt, steps: &[Step]) {
    // No steps at all is reported by the parser, with a hint about `#[step]`.
    if let Some(problem @ StepCountProblem::TooMany(_)) = step_count_problem(steps.len()) {
        // At the first step over the limit.
        let span = steps
            .get(MAX_STEPS_PER_TEMPLATE)
            .map_or_else(Span::call_site, |s| s.name_span);
        cx.error_span(span, problem);
    }
    let mut seen: HashMap<&str, &Step> = HashMap::new();
    for step in steps {
        if let Some(problem) = identifier_problem(Identifier::StepName, &step.name) {
            cx.error_span(step.name_span, problem);
        }
        if let Some(first) = seen.insert(&step.name, step) {
            cx.error_span(
                step.name_span,
                format!(
                    "duplicate step name `{}`: method `{}` already uses it; \
                     give one of them another `name = \"…\"`",
                    step.name, first.method
                ),
            );
        }
    }
}

fn check_dependencies(cx: &mut Ctxt, steps: &[Step]) {
    let index: HashMap<String, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.method.to_string(), i))
        .collect();
    let methods: Vec<String> = steps.iter().map(|s| s.method.to_string()).collect();
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, step) in steps.iter().enumerate() {
        let mut listed: Vec<String> = Vec::new();
        for dep in &step.depends_on {
            let name = dep.to_string();
            if listed.contains(&name) {
                cx.error_at(dep, format!("`{name}` is listed twice in `depends_on`"));
                continue;
            }
            listed.push(name.clone());
            if dep == &step.method {
                cx.error_at(
                    dep,
                    format!("step `{name}` depends on itself; a step can only depend on others"),
                );
                continue;
            }
            match index.get(&name) {
                Some(&p) => parents[i].push(p),
                None => {
                    let mut message = format!("unknown step `{name}` in `depends_on`");
                    match graph::suggest(&name, methods.iter().map(String::as_str)) {
                        Some(close) => message.push_str(&format!("; did you mean `{close}`?")),
                        None => message.push_str(&format!(
                            "; the steps are {}",
                            crate::symbol::one_of(
                                &methods.iter().map(String::as_str).collect::<Vec<_>>()
                            )
                        )),
                    }
                    cx.error_at(dep, message);
                }
            }
        }
    }
    if let Some(cycle) = graph::find_cycle(&parents) {
        // `cycle` follows dependencies (each step depends on the next); it is printed in run
        // order from the same step, as `cargo tasker validate` and the diagrams draw it.
        let mut names: Vec<String> = std::iter::once(cycle[0])
            .chain(cycle[1..].iter().rev().copied())
            .map(|i| steps[i].method.to_string())
            .collect();
        names.push(names[0].clone());
        let first = &steps[cycle[0]];
        let next = &steps[cycle[1 % cycle.len()]].method;
        let span = first
            .depends_on
            .iter()
            .find(|d| *d == next)
            .map(|d| d.span())
            .unwrap_or(first.name_span);
        cx.error_span(
            span,
            format!(
                "dependency cycle `{}`: each step must run before the next, so none can start; \
                 remove one of these dependencies",
                names.join(" -> ")
            ),
        );
        // Depth is only defined without cycles; the runtime does not measure it either.
        return;
    }
    check_depth(cx, steps, &parents);
}

fn check_depth(cx: &mut Ctxt, steps: &[Step], parents: &[Vec<usize>]) {
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    if let Some(problem) = graph_depth_problem(&names, parents) {
        // At the chain's last step.
        let span = steps
            .get(problem.end)
            .map_or_else(Span::call_site, |s| s.name_span);
        cx.error_span(span, problem);
    }
}

fn check_inputs(cx: &mut Ctxt, steps: &[Step]) {
    for step in steps {
        if step.cx_ty.is_none() || step.output.is_none() || step.attr_failed {
            continue; // already reported by the parser
        }
        let (deps, inputs) = (step.depends_on.len(), step.inputs.len());
        if deps == inputs {
            continue;
        }
        let listed = if deps == 0 {
            "no steps".to_owned()
        } else {
            let names: Vec<String> = step.depends_on.iter().map(|d| format!("`{d}`")).collect();
            format!(
                "{deps} step{} ({})",
                if deps == 1 { "" } else { "s" },
                names.join(", ")
            )
        };
        let span: Span = match step.inputs.get(deps) {
            Some((pat, _)) => syn::spanned::Spanned::span(pat),
            None => step.depends_on_span.unwrap_or(step.sig_span),
        };
        cx.error_span(
            span,
            format!(
                "step `{}` depends on {listed} but takes {inputs} parameter{} after its context; \
                 it takes one parameter per dependency, in `depends_on` order, of that step's \
                 output type",
                step.method,
                if inputs == 1 { "" } else { "s" }
            ),
        );
    }
}
