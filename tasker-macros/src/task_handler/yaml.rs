//! `template = "path.yaml"`: the YAML template must declare the same workflow as the code.
//!
//! Only what the code also declares is compared (identity, steps, dependencies, retry and
//! timeout settings; a schedule is declared in one place only). Values only the file gives are
//! held to the runtime's rules for them (identity, retry limit, timeout, custom event names,
//! schedules); the rest of the file is checked by the runtime when it loads it.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::path::PathBuf;

use serde::Deserialize;
use syn::LitStr;
use tasker_rules::{
    DEFAULT_NAMESPACE, DEFAULT_RETRY_LIMIT, DEFAULT_VERSION, Identifier, MAX_SCHEDULE_CATCH_UP,
    custom_event_problem, identifier_problem, retry_limit_problem, timeout_problem,
    version_problem,
};

use super::parse::{Step, TaskHandler, TaskOptions};
use crate::attr::Attr;
use crate::ctxt::Ctxt;

/// The YAML file a workflow is bound to, once it has been checked.
pub(crate) struct BoundTemplate {
    /// Absolute path, for `include_str!` (which also makes cargo rebuild when it changes).
    pub(crate) absolute: String,
    /// The path as written, for messages.
    pub(crate) written: String,
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) version: String,
}

#[derive(Deserialize)]
struct YamlTemplate {
    name: Option<String>,
    namespace_name: Option<String>,
    version: Option<String>,
    concurrent: Option<bool>,
    timeout_seconds: Option<f64>,
    #[serde(default)]
    step_templates: Vec<YamlStep>,
    #[serde(default)]
    schedules: Vec<YamlSchedule>,
}

#[derive(Deserialize)]
struct YamlSchedule {
    cron: String,
    time_zone: Option<String>,
    catch_up: Option<u32>,
    context: Option<serde_norway::Value>,
}

#[derive(Deserialize)]
struct YamlStep {
    name: String,
    depends_on_step: Option<String>,
    #[serde(default)]
    depends_on_steps: Vec<String>,
    default_retry_limit: Option<u32>,
    default_retryable: Option<bool>,
    skippable: Option<bool>,
    timeout_seconds: Option<f64>,
    #[serde(default)]
    custom_events: Vec<YamlEvent>,
}

#[derive(Deserialize)]
struct YamlEvent {
    name: String,
}

/// Reads the template at `path` (relative to the crate root) and compares it with the code.
pub(crate) fn check(cx: &mut Ctxt, path: &LitStr, model: &TaskHandler) -> Option<BoundTemplate> {
    let written = path.value();
    let absolute = match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(root) => PathBuf::from(root).join(&written),
        None => PathBuf::from(&written),
    };
    let text = match std::fs::read_to_string(&absolute) {
        Ok(text) => text,
        Err(e) => {
            cx.error_at(
                path,
                format!(
                    "cannot read template `{written}` (looked for `{}`): {e}; \
                     the path is relative to the crate's `Cargo.toml`",
                    absolute.display()
                ),
            );
            return None;
        }
    };
    let yaml: YamlTemplate = match serde_norway::from_str(&text) {
        Ok(yaml) => yaml,
        Err(e) => {
            cx.error_at(
                path,
                format!("template `{written}` is not a valid task template: {e}"),
            );
            return None;
        }
    };
    let options = &model.options;
    let name = same(
        cx,
        "name",
        options.name.get(),
        yaml.name.as_deref(),
        None,
        &written,
    );
    let namespace = same(
        cx,
        "namespace",
        options.namespace.get(),
        yaml.namespace_name.as_deref(),
        Some(DEFAULT_NAMESPACE),
        &written,
    );
    let version = same(
        cx,
        "version",
        options.version.get(),
        yaml.version.as_deref(),
        Some(DEFAULT_VERSION),
        &written,
    );
    if let (Some(code), Some(span)) = (options.concurrent.get(), options.concurrent.span()) {
        let file = yaml.concurrent.unwrap_or(true);
        if *code != file {
            cx.error_span(
                span,
                format!("`concurrent` is `{code}` here but `{file}` in `{written}`"),
            );
        }
    }
    if let (Some(code), Some(span), Some(file)) = (
        options.timeout_seconds.get(),
        options.timeout_seconds.span(),
        yaml.timeout_seconds,
    ) && (code - file).abs() > f64::EPSILON
    {
        cx.error_span(
            span,
            format!("`timeout` is {code} s here but `timeout_seconds: {file}` in `{written}`"),
        );
    }
    check_file_identity(cx, path, &written, options, &yaml);
    check_schedules(cx, path, &written, options, &yaml.schedules);
    check_steps(cx, path, &written, &model.steps, &yaml.step_templates);
    let name = match name {
        Some(name) => name,
        None => {
            cx.error_at(
                path,
                format!("template `{written}` has no `name`, and the attribute sets none"),
            );
            String::new()
        }
    };
    Some(BoundTemplate {
        absolute: absolute.display().to_string(),
        written,
        name,
        namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        version: version.unwrap_or_else(|| DEFAULT_VERSION.to_owned()),
    })
}

/// The runtime's identity rules on the values only the file gives; a value the attribute also
/// gives is checked at the attribute.
fn check_file_identity(
    cx: &mut Ctxt,
    path: &LitStr,
    written: &str,
    options: &TaskOptions,
    yaml: &YamlTemplate,
) {
    let at =
        |key: &str, problem: &dyn Display| format!("template `{written}`, key `{key}`: {problem}");
    if let Some(name) = file_only(&options.name, &yaml.name)
        && let Some(problem) = identifier_problem(Identifier::TaskName, name)
    {
        cx.error_at(path, at("name", &problem));
    }
    if let Some(namespace) = file_only(&options.namespace, &yaml.namespace_name)
        && let Some(problem) = identifier_problem(Identifier::Namespace, namespace)
    {
        cx.error_at(path, at("namespace_name", &problem));
    }
    if let Some(version) = file_only(&options.version, &yaml.version)
        && let Some(problem) = version_problem(version)
    {
        cx.error_at(path, at("version", &problem));
    }
}

/// The file's schedules against the attribute's, and the runtime's rules on their values.
fn check_schedules(
    cx: &mut Ctxt,
    path: &LitStr,
    written: &str,
    options: &TaskOptions,
    schedules: &[YamlSchedule],
) {
    for (i, schedule) in schedules.iter().enumerate() {
        let at = |key: &str, problem: &dyn Display| {
            format!("template `{written}`, schedules[{i}], key `{key}`: {problem}")
        };
        if let Err(problem) = tasker_rules::parse_cron(&schedule.cron) {
            cx.error_at(path, at("cron", &problem));
        }
        if let Some(problem) = schedule
            .time_zone
            .as_deref()
            .and_then(super::schedule::time_zone_problem)
        {
            cx.error_at(path, at("time_zone", &problem));
        }
        if let Some(slots) = schedule.catch_up
            && slots > MAX_SCHEDULE_CATCH_UP
        {
            let problem = format!("{slots} is over the maximum of {MAX_SCHEDULE_CATCH_UP}");
            cx.error_at(path, at("catch_up", &problem));
        }
    }
    if let Some(cron) = options.schedule.get()
        && !schedules.is_empty()
    {
        cx.error_at(
            cron,
            format!("the schedule is declared both here and in `{written}`: keep one"),
        );
        return;
    }
    let Some(span) = options.schedule_context.span() else {
        return;
    };
    if options.schedule.get().is_some() {
        return;
    }
    match schedules {
        [] => cx.error_span(
            span,
            format!(
                "`schedule_context` needs a schedule: `schedule = \"…\"` here or one under \
                 `schedules:` in `{written}`"
            ),
        ),
        [only] if only.context.is_some() => cx.error_span(
            span,
            format!(
                "`schedule_context` builds the context of the schedule in `{written}`, which \
                 also gives a `context:`: keep one"
            ),
        ),
        [_] => {}
        several => cx.error_span(
            span,
            format!(
                "`schedule_context` builds the context of the workflow's one schedule, but \
                 `{written}` declares {} under `schedules:`",
                several.len()
            ),
        ),
    }
}

/// `value`, unless the attribute gives it too.
fn file_only<'a>(attr: &Attr<LitStr>, value: &'a Option<String>) -> Option<&'a str> {
    match attr.get() {
        Some(_) => None,
        None => value.as_deref(),
    }
}

/// The runtime's step rules on the settings only the file gives: a setting the code also
/// gives is checked at the code, and must agree with the file.
fn check_file_step(cx: &mut Ctxt, path: &LitStr, written: &str, step: &Step, file: &YamlStep) {
    let at = |key: &str, problem: &dyn Display| {
        format!(
            "template `{written}`, step `{}`, key `{key}`: {problem}",
            file.name
        )
    };
    if step.retry_limit.get().is_none()
        && let Some(problem) = file
            .default_retry_limit
            .and_then(|limit| retry_limit_problem(limit.into()))
    {
        cx.error_at(path, at("default_retry_limit", &problem));
    }
    if step.timeout_seconds.get().is_none()
        && let Some(problem) = file.timeout_seconds.and_then(timeout_problem)
    {
        cx.error_at(path, at("timeout_seconds", &problem));
    }
    for event in &file.custom_events {
        if let Some(problem) = custom_event_problem(&event.name) {
            cx.error_at(path, at("custom_events", &problem));
        }
    }
}

/// The agreed value of an identity key, reporting a difference at the attribute.
fn same(
    cx: &mut Ctxt,
    key: &str,
    code: Option<&LitStr>,
    file: Option<&str>,
    default: Option<&str>,
    written: &str,
) -> Option<String> {
    let file = file.or(default);
    match (code, file) {
        (Some(code), Some(file)) if code.value() != file => {
            cx.error_at(
                code,
                format!(
                    "`{key}` is `{}` here but `{file}` in `{written}`; the two must agree",
                    code.value()
                ),
            );
            Some(code.value())
        }
        (Some(code), _) => Some(code.value()),
        (None, file) => file.map(str::to_owned),
    }
}

fn check_steps(cx: &mut Ctxt, path: &LitStr, written: &str, steps: &[Step], yaml: &[YamlStep]) {
    let by_name: HashMap<&str, &YamlStep> = yaml.iter().map(|s| (s.name.as_str(), s)).collect();
    let method_to_name: HashMap<String, &str> = steps
        .iter()
        .map(|s| (s.method.to_string(), s.name.as_str()))
        .collect();
    for step in steps {
        let Some(file) = by_name.get(step.name.as_str()) else {
            cx.error_span(
                step.name_span,
                format!(
                    "step `{}` is not in template `{written}`; add it there or remove its `#[step]`",
                    step.name
                ),
            );
            continue;
        };
        check_file_step(cx, path, written, step, file);
        let code_deps: BTreeSet<&str> = step
            .depends_on
            .iter()
            .filter_map(|d| method_to_name.get(&d.to_string()).copied())
            .collect();
        let file_deps: BTreeSet<&str> = file
            .depends_on_step
            .iter()
            .chain(&file.depends_on_steps)
            .map(String::as_str)
            .collect();
        if code_deps != file_deps {
            cx.error_span(
                step.depends_on_span.unwrap_or(step.name_span),
                format!(
                    "step `{}` depends on {} here but on {} in `{written}`",
                    step.name,
                    list(&code_deps),
                    list(&file_deps)
                ),
            );
        }
        compare(
            cx,
            written,
            step,
            "retry_limit",
            "default_retry_limit",
            step.retry_limit.get().copied(),
            file.default_retry_limit.unwrap_or(DEFAULT_RETRY_LIMIT),
            step.retry_limit.span(),
        );
        compare(
            cx,
            written,
            step,
            "retryable",
            "default_retryable",
            step.retryable.get().copied(),
            file.default_retryable.unwrap_or(true),
            step.retryable.span(),
        );
        compare(
            cx,
            written,
            step,
            "skippable",
            "skippable",
            step.skippable.get().copied(),
            file.skippable.unwrap_or(false),
            step.skippable.span(),
        );
        if let (Some(code), Some(span)) = (step.timeout_seconds.get(), step.timeout_seconds.span())
            && file.timeout_seconds != Some(*code)
        {
            cx.error_span(
                span,
                format!(
                    "`timeout` of step `{}` is {code}s here but {} in `{written}`",
                    step.name,
                    file.timeout_seconds
                        .map_or("unset".to_owned(), |t| format!("{t}s"))
                ),
            );
        }
    }
    let in_code: BTreeSet<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    for file in yaml {
        if !in_code.contains(file.name.as_str()) {
            cx.error_at(
                path,
                format!(
                    "template `{written}` has step `{}`, which no `#[step]` method here implements",
                    file.name
                ),
            );
        }
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one comparison, spelt out at each call"
)]
fn compare<T: PartialEq + std::fmt::Display>(
    cx: &mut Ctxt,
    written: &str,
    step: &Step,
    option: &str,
    key: &str,
    code: Option<T>,
    file: T,
    span: Option<proc_macro2::Span>,
) {
    if let (Some(code), Some(span)) = (code, span)
        && code != file
    {
        cx.error_span(
            span,
            format!(
                "`{option}` of step `{}` is `{code}` here but `{key}` is `{file}` in `{written}`",
                step.name
            ),
        );
    }
}

fn list(names: &BTreeSet<&str>) -> String {
    if names.is_empty() {
        return "nothing".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
