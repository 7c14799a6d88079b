//! Structural checks of a [`TaskTemplate`]: identifiers, the step graph, limits and schemas.
//!
//! Every check runs and every problem is kept, so one load shows all that is wrong.

use std::collections::{HashMap, HashSet};
use std::fmt;

use tasker_rules::{
    Identifier, MAX_STEP_NAME_LEN, MAX_STEPS_PER_TEMPLATE, custom_event_problem,
    graph_depth_problem, identifier_problem, retry_limit_problem, step_count_problem,
    timeout_problem, version_problem,
};

use super::{StepTemplate, TaskTemplate};

// Enough to explain a broken graph without letting a hostile one produce megabytes of paths.
const MAX_CYCLES_REPORTED: usize = 16;
// Edit distance is quadratic; a template with thousands of typos gets suggestions for the first few.
const MAX_SUGGESTIONS: usize = 64;

/// One thing wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The step at fault, if the problem is in one.
    pub step: Option<String>,
    /// The YAML key at fault, e.g. `depends_on_step`.
    pub key: Option<String>,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl Problem {
    /// A problem with the template as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            step: None,
            key: None,
            message: message.into(),
        }
    }

    /// Names the step at fault.
    pub fn in_step(mut self, step: impl Into<String>) -> Self {
        self.step = Some(step.into());
        self
    }

    /// Names the YAML key at fault.
    pub fn at_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.step, &self.key) {
            (Some(step), Some(key)) => write!(f, "step `{step}`, key `{key}`: ")?,
            (Some(step), None) => write!(f, "step `{step}`: ")?,
            (None, Some(key)) => write!(f, "key `{key}`: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with one template (or one directory of templates).
///
/// `Display` prints one line per problem, prefixed by where the template came from.
// `Error` is implemented by hand: thiserror would take the `source` field for the error's cause.
#[derive(Debug, Clone)]
pub struct TemplateError {
    /// Where the template came from: a file path, or the template's `namespace/name@version`.
    pub source: String,
    /// Every problem found, in the order found.
    pub problems: Vec<Problem>,
}

impl TemplateError {
    /// An error from `source` with the given problems.
    pub fn new(source: impl Into<String>, problems: Vec<Problem>) -> Self {
        Self {
            source: source.into(),
            problems,
        }
    }

    /// Every problem found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [] => write!(f, "{}: invalid template", self.source),
            [only] => write!(f, "{}: {only}", self.source),
            all => {
                write!(f, "{}: {} problems", self.source, all.len())?;
                for problem in all {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for TemplateError {}

impl TaskTemplate {
    /// Checks the template's structure, reporting every problem found.
    ///
    /// Covers identifiers, the version, the step graph (unknown, self and cyclic dependencies,
    /// depth), `named_steps`, retry limits, timeouts, custom event names and the JSON Schema.
    pub fn validate(&self) -> Result<(), TemplateError> {
        let mut check = Checker::default();
        check.identity(self);
        check.steps(self);
        check.graph(self);
        check.named_steps(self);
        check.schema(self);
        check.schedules(self);
        check.finish(self.full_name())
    }

    /// Checks that every step's `handler` is one of `registered`.
    pub fn validate_handlers(&self, registered: &[&str]) -> Result<(), TemplateError> {
        let mut check = Checker::default();
        for step in &self.step_templates {
            if step.handler.is_empty() {
                check.push(
                    Problem::new("no `handler` is named: name a registered step handler")
                        .in_step(&step.name)
                        .at_key("handler"),
                );
                continue;
            }
            if registered.contains(&step.handler.as_str()) {
                continue;
            }
            let mut message = format!("no step handler named `{}` is registered", step.handler);
            if let Some(close) = check.suggest(&step.handler, registered.iter().copied()) {
                message.push_str(&format!(" (did you mean `{close}`?)"));
            }
            check.push(Problem::new(message).in_step(&step.name).at_key("handler"));
        }
        check.finish(self.full_name())
    }

    /// Indices into `step_templates` in dependency order (parents first).
    ///
    /// Kahn's algorithm; among ready steps the earliest declared goes first, so the order is
    /// deterministic. Steps on a cycle (which [`TaskTemplate::validate`] rejects) are left out.
    pub fn topological_order(&self) -> Vec<usize> {
        tasker_rules::topological_order(&self.parent_indices())
    }

    /// For each step, the indices of its known parents (first declaration of each name).
    ///
    /// Unknown names and self dependencies are dropped; they are reported by `validate`.
    fn parent_indices(&self) -> Vec<Vec<usize>> {
        let index = self.first_index_by_name();
        self.step_templates
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let mut seen = HashSet::new();
                unique_dependencies(step)
                    .filter_map(|dep| index.get(dep).copied())
                    .filter(|&p| p != i && seen.insert(p))
                    .collect()
            })
            .collect()
    }

    /// Its dependencies as `(parent, child)` indices into `step_templates`, each child's in
    /// declaration order; unknown parents and self dependencies are dropped, as in
    /// `parent_indices`.
    pub(crate) fn step_edges(&self) -> Vec<(usize, usize)> {
        self.parent_indices()
            .into_iter()
            .enumerate()
            .flat_map(|(child, parents)| parents.into_iter().map(move |p| (p, child)))
            .collect()
    }

    fn first_index_by_name(&self) -> HashMap<&str, usize> {
        let mut index = HashMap::with_capacity(self.step_templates.len());
        for (i, step) in self.step_templates.iter().enumerate() {
            index.entry(step.name.as_str()).or_insert(i);
        }
        index
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
    suggestions_made: usize,
}

impl Checker {
    fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    fn finish(self, source: String) -> Result<(), TemplateError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(TemplateError::new(source, self.problems))
        }
    }

    fn identity(&mut self, template: &TaskTemplate) {
        if let Some(problem) = identifier_problem(Identifier::Namespace, &template.namespace_name) {
            self.push(Problem::new(problem.to_string()).at_key("namespace_name"));
        }
        if let Some(problem) = identifier_problem(Identifier::TaskName, &template.name) {
            self.push(Problem::new(problem.to_string()).at_key("name"));
        }
        if let Some(problem) = version_problem(&template.version) {
            self.push(Problem::new(problem.to_string()).at_key("version"));
        }
        if let Some(seconds) = template.timeout_seconds {
            // A deadline is stored as a time: past a century it means a mistake.
            let problem = timeout_problem(seconds).map(|p| p.to_string()).or_else(|| {
                (seconds > crate::engine::MAX_DELAY_SECONDS)
                    .then(|| format!("{seconds} s is over 100 years"))
            });
            if let Some(problem) = problem {
                self.push(Problem::new(problem).at_key("timeout_seconds"));
            }
        }
    }

    /// A `handler_config` that says `type: api` is checked as the API configuration every
    /// `ApiHandler` reads, so a typo fails at start-up rather than at the step's first run.
    #[cfg(feature = "http")]
    fn api_config(&mut self, step: &crate::template::StepTemplate) {
        let Some(config) = &step.handler_config else {
            return;
        };
        if config.get("type").and_then(serde_json::Value::as_str) != Some("api") {
            return;
        }
        if let Err(problem) = crate::http::RequestConfig::parse(config) {
            self.push(
                Problem::new(format!("`type: api`: {problem}"))
                    .in_step(&step.name)
                    .at_key("handler_config"),
            );
        }
    }

    /// Each schedule's name, cron expression, time zone, catch-up and context; names unique.
    fn schedules(&mut self, template: &TaskTemplate) {
        use crate::schedule::{Timetable, catch_up_problem, schedule_name_problem};
        let mut names = HashSet::new();
        let several = template.schedules.len() > 1;
        for (i, schedule) in template.schedules.iter().enumerate() {
            let name = schedule.name_in(&template.namespace_name, &template.name);
            let mut problem = |key: &str, message: String| {
                self.push(
                    Problem::new(format!("schedules[{i}] (`{name}`): {message}")).at_key(key),
                );
            };
            if schedule.name.is_none() && several {
                problem(
                    "name",
                    "a template with several schedules names each (`name: …`)".to_owned(),
                );
            } else if let Some(message) = schedule_name_problem(&name) {
                problem("name", message);
            } else if !names.insert(name.clone()) {
                problem(
                    "name",
                    "another schedule of this template has this name".to_owned(),
                );
            }
            // Each on its own, so a bad expression does not hide a bad zone.
            if let Err((key, message)) = Timetable::parse(&schedule.cron, "UTC") {
                problem(key, message);
            }
            if let Err(message) = crate::schedule::parse_time_zone(&schedule.time_zone) {
                problem("time_zone", message);
            }
            if let Some(message) = catch_up_problem(schedule.catch_up) {
                problem("catch_up", message);
            }
            if schedule.context.as_ref().is_some_and(|c| !c.is_object()) {
                problem("context", "must be a JSON object".to_owned());
            }
        }
    }

    fn steps(&mut self, template: &TaskTemplate) {
        let steps = &template.step_templates;
        if let Some(problem) = step_count_problem(steps.len()) {
            self.push(Problem::new(problem.to_string()).at_key("step_templates"));
        }

        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
            if step.name.is_empty() {
                self.push(
                    Problem::new(format!("step_templates[{i}] has an empty name")).at_key("name"),
                );
            } else if let Some(problem) = identifier_problem(Identifier::StepName, &step.name) {
                self.push(
                    Problem::new(problem.to_string())
                        .in_step(&step.name)
                        .at_key("name"),
                );
            } else if let Some(&first) = first_seen.get(step.name.as_str()) {
                self.push(
                    Problem::new(format!(
                        "duplicate step `{}` (step_templates[{i}]; first declared at step_templates[{first}])",
                        step.name
                    ))
                    .in_step(&step.name)
                    .at_key("name"),
                );
            }
            first_seen.entry(step.name.as_str()).or_insert(i);
            self.step_settings(step);
            #[cfg(feature = "http")]
            self.api_config(step);
        }
    }

    fn step_settings(&mut self, step: &StepTemplate) {
        if let Some(problem) = retry_limit_problem(step.default_retry_limit.into()) {
            self.push(
                Problem::new(problem.to_string())
                    .in_step(&step.name)
                    .at_key("default_retry_limit"),
            );
        }
        if let Some(problem) = step.timeout_seconds.and_then(timeout_problem) {
            self.push(
                Problem::new(problem.to_string())
                    .in_step(&step.name)
                    .at_key("timeout_seconds"),
            );
        }
        for event in &step.custom_events {
            if let Some(problem) = custom_event_problem(&event.name) {
                self.push(
                    Problem::new(problem.to_string())
                        .in_step(&step.name)
                        .at_key("custom_events"),
                );
            }
        }
    }

    fn graph(&mut self, template: &TaskTemplate) {
        let steps = &template.step_templates;
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        let known: HashSet<&str> = names.iter().copied().collect();
        for step in steps {
            let listed = listed_dependencies(step);
            if listed > MAX_STEPS_PER_TEMPLATE {
                self.push(
                    Problem::new(format!(
                        "step lists {listed} dependencies, more than a template may have steps \
                         ({MAX_STEPS_PER_TEMPLATE})"
                    ))
                    .in_step(&step.name)
                    .at_key("depends_on_steps"),
                );
                continue;
            }
            for dep in unique_dependencies(step) {
                let key = dependency_key(step, dep);
                if dep == step.name {
                    self.push(
                        Problem::new(format!("step `{dep}` depends on itself"))
                            .in_step(&step.name)
                            .at_key(key),
                    );
                } else if !known.contains(dep) {
                    let mut message = format!("unknown dependency `{dep}`");
                    if let Some(close) = self.suggest(dep, names.iter().copied()) {
                        message.push_str(&format!(" (did you mean `{close}`?)"));
                    }
                    self.push(Problem::new(message).in_step(&step.name).at_key(key));
                }
            }
        }

        let parents = template.parent_indices();
        let cycles = find_cycles(&parents);
        for cycle in &cycles {
            // `cycle` starts at its earliest-declared step and follows dependencies (each step
            // depends on the next); print it in run order, from the same step.
            let start = cycle[0];
            let run_order: Vec<&str> = std::iter::once(start)
                .chain(cycle[1..].iter().rev().copied())
                .map(|i| names[i])
                .collect();
            let step = &steps[start];
            let start_depends_on = names[cycle.get(1).copied().unwrap_or(start)];
            self.push(
                Problem::new(format!(
                    "dependency cycle `{} -> {}` (each step must run before the next)",
                    run_order.join(" -> "),
                    names[start]
                ))
                .in_step(&step.name)
                .at_key(dependency_key(step, start_depends_on)),
            );
        }
        if !cycles.is_empty() {
            return;
        }

        if let Some(problem) = graph_depth_problem(&names, &parents) {
            self.push(Problem::new(problem.to_string()).at_key("step_templates"));
        }
    }

    fn named_steps(&mut self, template: &TaskTemplate) {
        let Some(named) = &template.named_steps else {
            return;
        };
        let named: HashSet<&str> = named.iter().map(String::as_str).collect();
        for step in &template.step_templates {
            if !named.contains(step.name.as_str()) {
                self.push(
                    Problem::new(format!(
                        "step `{}` is not listed in `named_steps`",
                        step.name
                    ))
                    .in_step(&step.name)
                    .at_key("named_steps"),
                );
            }
            // Already refused by `graph`; listing each name again would only add noise.
            if listed_dependencies(step) > MAX_STEPS_PER_TEMPLATE {
                continue;
            }
            for dep in unique_dependencies(step) {
                if !named.contains(dep) {
                    self.push(
                        Problem::new(format!("dependency `{dep}` is not listed in `named_steps`"))
                            .in_step(&step.name)
                            .at_key("named_steps"),
                    );
                }
            }
        }
    }

    fn schema(&mut self, template: &TaskTemplate) {
        for step in &template.step_templates {
            if let Some(schema) = &step.output_schema
                && let Err(error) = jsonschema::validator_for(schema)
            {
                self.push(
                    Problem::new(format!("invalid JSON Schema: {error}"))
                        .in_step(&step.name)
                        .at_key("output_schema"),
                );
            }
        }
        let Some(schema) = &template.schema else {
            return;
        };
        if let Err(error) = jsonschema::validator_for(schema) {
            let at = error.instance_path().as_str();
            let message = if at.is_empty() {
                format!("invalid JSON Schema: {error}")
            } else {
                format!("invalid JSON Schema at `{at}`: {error}")
            };
            self.push(Problem::new(message).at_key("schema"));
        }
    }

    /// The candidate closest to `wrong` by edit distance, if it is close enough to be a typo.
    fn suggest<'c>(
        &mut self,
        wrong: &str,
        candidates: impl Iterator<Item = &'c str>,
    ) -> Option<&'c str> {
        if self.suggestions_made >= MAX_SUGGESTIONS || wrong.len() > MAX_STEP_NAME_LEN {
            return None;
        }
        self.suggestions_made += 1;
        let wrong_len = wrong.chars().count();
        let limit = 2.max(wrong_len / 3);
        let mut best: Option<(usize, &str)> = None;
        for candidate in candidates {
            if candidate.len() > MAX_STEP_NAME_LEN
                || candidate.chars().count().abs_diff(wrong_len) > limit
            {
                continue;
            }
            let distance = edit_distance(wrong, candidate);
            if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
                best = Some((distance, candidate));
            }
        }
        best.map(|(_, name)| name)
    }
}

/// `step.dependencies()` without its quadratic de-duplication: a hostile template may list
/// hundreds of thousands of names.
fn unique_dependencies(step: &StepTemplate) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    step.depends_on_step
        .iter()
        .chain(&step.depends_on_steps)
        .map(String::as_str)
        .filter(move |dep| seen.insert(*dep))
}

/// How many dependency names `step` lists, duplicates included.
fn listed_dependencies(step: &StepTemplate) -> usize {
    step.depends_on_steps.len() + usize::from(step.depends_on_step.is_some())
}

/// The key of `step` that names `dep`.
fn dependency_key(step: &StepTemplate, dep: &str) -> &'static str {
    if step.depends_on_step.as_deref() == Some(dep) {
        "depends_on_step"
    } else {
        "depends_on_steps"
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Distinct cycles of the graph where `parents[i]` lists the steps `i` depends on.
///
/// Each cycle is a list of step indices in which each step depends on the next and the last
/// depends on the first. Found by an iterative depth-first search (no recursion, so a deep
/// graph cannot overflow the stack); at most `MAX_CYCLES_REPORTED` are returned.
fn find_cycles(parents: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        /// On the search stack, at this position.
        OnStack(usize),
        Done,
    }
    let mut mark = vec![Mark::New; parents.len()];
    let mut cycles = Vec::new();
    for root in 0..parents.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // (node, next parent to visit)
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::OnStack(0);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let Some(&parent) = parents[node].get(*next) else {
                mark[node] = Mark::Done;
                stack.pop();
                continue;
            };
            *next += 1;
            match mark[parent] {
                Mark::New => {
                    mark[parent] = Mark::OnStack(stack.len());
                    stack.push((parent, 0));
                }
                // Each back edge closes a different cycle, so no two found are the same.
                Mark::OnStack(at) if cycles.len() < MAX_CYCLES_REPORTED => {
                    let cycle: Vec<usize> = stack[at..].iter().map(|&(n, _)| n).collect();
                    cycles.push(rotate_to_min(&cycle));
                }
                Mark::OnStack(_) | Mark::Done => {}
            }
        }
    }
    cycles
}

/// `cycle` rotated so that its smallest index comes first.
fn rotate_to_min(cycle: &[usize]) -> Vec<usize> {
    let start = cycle
        .iter()
        .enumerate()
        .min_by_key(|&(_, &n)| n)
        .map_or(0, |(i, _)| i);
    cycle[start..]
        .iter()
        .chain(&cycle[..start])
        .copied()
        .collect()
}
