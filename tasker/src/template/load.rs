//! Reading task templates from YAML: parsing, environment overrides, then validation.
//!
//! serde_norway bounds what a document can cost: nesting deeper than 128 levels fails with
//! `recursion limit exceeded`, and alias expansion ("billion laughs") with
//! `repetition limit exceeded`. [`MAX_TEMPLATE_BYTES`] bounds the rest.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value as JsonValue;
use serde_norway::Value as YamlValue;

use super::{Problem, TaskTemplate, TemplateError};
use crate::yaml::split_path;

/// Largest template document accepted, in bytes (1 MiB).
pub const MAX_TEMPLATE_BYTES: usize = crate::yaml::MAX_FILE_BYTES;

/// Parses, merges the environment `env` into, and validates one YAML template.
///
/// `source` names the document in errors (usually its path). With `env`, the block
/// `environments.<env>` is deep-merged into the base before the template is built:
/// `step_templates` entries are matched by `name` (unmatched ones are ignored), mappings merge
/// recursively, scalars and sequences replace. Every environment block must be well formed,
/// selected or not. The returned template keeps `environments` as written.
pub fn parse_template(
    yaml: &str,
    source: &str,
    env: Option<&str>,
) -> Result<TaskTemplate, TemplateError> {
    let fail = |problem: Problem| TemplateError::new(source, vec![problem]);
    if yaml.len() > MAX_TEMPLATE_BYTES {
        return Err(fail(Problem::new(format!(
            "template is {} bytes, over the maximum of {MAX_TEMPLATE_BYTES}",
            yaml.len()
        ))));
    }
    if yaml.trim().is_empty() {
        return Err(fail(Problem::new("template is empty")));
    }

    let base: TaskTemplate = serde_norway::from_str(yaml)
        .map_err(|e| TemplateError::new(source, every_problem(yaml, &e)))?;
    if !base.environments.is_empty() {
        serde_norway::from_str::<EnvironmentsShape>(yaml)
            .map_err(|e| fail(yaml_problem(&e, yaml, "")))?;
    }
    let template = match env {
        Some(env) if base.environments.contains_key(env) => {
            apply_environment(yaml, env).map_err(fail)?
        }
        _ => base,
    };
    template
        .validate()
        .map_err(|e| TemplateError::new(source, e.problems))?;
    Ok(template)
}

/// Reads and parses the template at `path` (see [`parse_template`]).
pub fn load_template_file(path: &Path, env: Option<&str>) -> Result<TaskTemplate, TemplateError> {
    let source = path.display().to_string();
    let yaml = crate::yaml::read_file(path)
        .map_err(|message| TemplateError::new(&source, vec![Problem::new(message)]))?;
    parse_template(&yaml, &source, env)
}

/// Loads every `*.yaml` and `*.yml` file directly in `dir`, in file-name order.
///
/// All files are tried; the error carries every file's problems, each message prefixed with
/// its file, and also reports templates that share a `namespace/name@version`.
pub fn load_templates_dir(
    dir: &Path,
    env: Option<&str>,
) -> Result<Vec<TaskTemplate>, TemplateError> {
    let source = dir.display().to_string();
    let unreadable = |e: std::io::Error| {
        TemplateError::new(
            &source,
            vec![Problem::new(format!("cannot read directory: {e}"))],
        )
    };
    let files = crate::yaml::files_in(dir).map_err(unreadable)?;
    let mut templates = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    let mut defined_in: HashMap<String, String> = HashMap::new();
    for path in &files {
        match load_template_file(path, env) {
            Ok(template) => {
                let file = path.display().to_string();
                if let Some(first) = defined_in.get(&template.full_name()) {
                    problems.push(
                        Problem::new(format!(
                            "{file}: template `{}` is also defined in {first}",
                            template.full_name()
                        ))
                        .at_key("name"),
                    );
                } else {
                    defined_in.insert(template.full_name(), file);
                }
                templates.push(template);
            }
            Err(error) => problems.extend(error.problems.into_iter().map(|p| Problem {
                message: format!("{}: {}", error.source, p.message),
                ..p
            })),
        }
    }
    if problems.is_empty() {
        Ok(templates)
    } else {
        Err(TemplateError::new(source, problems))
    }
}

/// Most problems one file reports: past this, the rest are left for the next run.
const MAX_PROBLEMS: usize = 64;

/// Every problem of a document that does not deserialise: the first, then those found by
/// reading it again without what was refused (an unknown key, a value of the wrong type), so
/// one typo does not hide the file's other problems. Problems after the first carry no line:
/// they come from the document as rewritten.
fn every_problem(yaml: &str, first: &serde_norway::Error) -> Vec<Problem> {
    let mut problems = vec![yaml_problem(first, yaml, "")];
    let Ok(mut root) = serde_norway::from_str::<YamlValue>(yaml) else {
        return problems;
    };
    let mut refused = first.to_string();
    while problems.len() < MAX_PROBLEMS && remove_refused(&mut root, &refused) {
        let Ok(rewritten) = serde_norway::to_string(&root) else {
            break;
        };
        match serde_norway::from_str::<TaskTemplate>(&rewritten) {
            Ok(template) => {
                if let Err(error) = template.validate() {
                    problems.extend(error.problems);
                }
                break;
            }
            Err(error) => {
                let mut problem = yaml_problem(&error, &rewritten, "");
                if let Some(at) = problem.message.rfind(" at line ") {
                    problem.message.truncate(at);
                }
                problems.push(problem);
                refused = error.to_string();
            }
        }
    }
    problems
}

/// Removes from `root` what the error `refused` names: an unknown key, or a value of the wrong
/// shape. `false` when there is nothing to remove (a missing field, say).
fn remove_refused(root: &mut YamlValue, refused: &str) -> bool {
    let (path, message) = split_path(refused);
    let mut segments = path.map(parse_path).unwrap_or_default();
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field.to_owned());
    if let Some(field) = unknown {
        segments.push(Segment::Key(field));
    } else if message.starts_with("missing field") || message.starts_with("duplicate field") {
        return false;
    }
    let Some(last) = segments.pop() else {
        return false;
    };
    let mut node = &mut *root;
    for segment in &segments {
        let next = match segment {
            Segment::Key(k) => node.get_mut(k.as_str()),
            Segment::Index(i) => node.get_mut(*i),
        };
        let Some(next) = next else {
            return false;
        };
        node = next;
    }
    match (last, node) {
        (Segment::Key(k), YamlValue::Mapping(map)) => map.remove(k.as_str()).is_some(),
        (Segment::Index(i), YamlValue::Sequence(items)) if i < items.len() => {
            items.remove(i);
            true
        }
        _ => false,
    }
}

/// The base document with `environments.<env>` merged in, as a typed template.
fn apply_environment(yaml: &str, env: &str) -> Result<TaskTemplate, Problem> {
    let context = format!("environment `{env}`: ");
    let mut root: YamlValue =
        serde_norway::from_str(yaml).map_err(|e| yaml_problem(&e, yaml, ""))?;
    let overrides: Vec<YamlValue> = root
        .get("environments")
        .and_then(|envs| envs.get(env))
        .and_then(|block| block.get("step_templates"))
        .and_then(YamlValue::as_sequence)
        .cloned()
        .unwrap_or_default();
    if let Some(steps) = root
        .get_mut("step_templates")
        .and_then(YamlValue::as_sequence_mut)
    {
        for entry in &overrides {
            let Some(name) = entry.get("name").and_then(YamlValue::as_str) else {
                continue;
            };
            for step in steps
                .iter_mut()
                .filter(|s| s.get("name").and_then(YamlValue::as_str) == Some(name))
            {
                merge_step(step, entry);
            }
        }
    }
    serde_norway::from_value(root).map_err(|e| yaml_problem(&e, yaml, &context))
}

/// Deep-merges one environment entry into a base step.
fn merge_step(step: &mut YamlValue, entry: &YamlValue) {
    // `handler_class` is an alias of `handler`: an override of either replaces both, or the
    // merged step would name its handler twice.
    let overrides_handler = entry.get("handler").is_some() || entry.get("handler_class").is_some();
    if let (true, Some(step)) = (overrides_handler, step.as_mapping_mut()) {
        step.remove("handler");
        step.remove("handler_class");
    }
    deep_merge(step, entry);
}

/// Mappings merge key by key; anything else in `overlay` replaces what is in `base`.
fn deep_merge(base: &mut YamlValue, overlay: &YamlValue) {
    match (base, overlay) {
        (YamlValue::Mapping(base), YamlValue::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(slot) => deep_merge(slot, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// The shape every `environments` block must have; read only to reject malformed blocks.
#[derive(Deserialize)]
struct EnvironmentsShape {
    #[serde(default)]
    #[allow(dead_code, reason = "deserialised only to check its shape")]
    environments: BTreeMap<String, Option<EnvironmentBlock>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "deserialised only to check its shape")]
struct EnvironmentBlock {
    #[serde(default)]
    step_templates: Vec<StepOverride>,
}

/// A step override: a name, then any [`super::StepTemplate`] keys, all optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "deserialised only to check its shape")]
struct StepOverride {
    name: String,
    description: Option<String>,
    #[serde(alias = "handler_class")]
    handler: Option<String>,
    dependent_system: Option<String>,
    default_retryable: Option<bool>,
    default_retry_limit: Option<u32>,
    skippable: Option<bool>,
    depends_on_step: Option<String>,
    depends_on_steps: Option<Vec<String>>,
    handler_config: Option<JsonValue>,
    custom_events: Option<Vec<super::CustomEventTemplate>>,
    timeout_seconds: Option<f64>,
}

/// Turns a serde_norway error into a problem naming the step and key at fault.
///
/// serde_norway prints `path: message at line L column C`; the path (e.g.
/// `step_templates[1].handler_config`) locates the step, whose name is looked up in `yaml`.
fn yaml_problem(error: &serde_norway::Error, yaml: &str, context: &str) -> Problem {
    let text = error.to_string();
    let (path, message) = split_path(&text);
    let segments = path.map(parse_path).unwrap_or_default();

    let field = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field.to_owned());
    let key = field.or_else(|| {
        segments.iter().rev().find_map(|s| match s {
            Segment::Key(k) => Some(k.clone()),
            Segment::Index(_) => None,
        })
    });

    let mut problem = Problem::new(format!("{context}{text}"));
    problem.key = key;
    problem.step = step_name_at(&segments, yaml);
    problem
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (key, indices) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            segments.push(Segment::Key(key.to_owned()));
        }
        for index in indices.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                segments.push(Segment::Index(i));
            }
        }
    }
    segments
}

/// The name of the innermost `step_templates[i]` on `segments`, read from the document.
fn step_name_at(segments: &[Segment], yaml: &str) -> Option<String> {
    let end = segments.windows(2).rposition(|w| {
        matches!(&w[0], Segment::Key(k) if k == "step_templates")
            && matches!(w[1], Segment::Index(_))
    })? + 2;
    let root: YamlValue = serde_norway::from_str(yaml).ok()?;
    let mut node = &root;
    for segment in &segments[..end] {
        node = match segment {
            Segment::Key(k) => node.get(k.as_str())?,
            Segment::Index(i) => node.get(*i)?,
        };
    }
    node.get("name")?.as_str().map(str::to_owned)
}
