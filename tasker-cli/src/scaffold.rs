//! Generators: each builds a [`Plan`] of files, checked whole before anything is written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tasker::TaskTemplate;

use crate::steps::{self, StepSpec};
use crate::{CliError, names, project};

/// A file the generator will write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Path relative to the crate root.
    pub path: PathBuf,
    /// Its full contents.
    pub contents: String,
    /// Whether it replaces an existing file on purpose (an edited `src/lib.rs`).
    pub edit: bool,
}

/// Everything one generator writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The files, in the order they are written.
    pub files: Vec<PlannedFile>,
    /// Features of the tasker dependency the files need (`server`), added with `cargo add`.
    pub features: Vec<&'static str>,
    /// Features the files' tests need of the tasker dev-dependency (`testing`).
    pub dev_features: Vec<&'static str>,
    /// What to tell the user once the files are written.
    pub notes: Vec<String>,
}

impl Plan {
    fn create(&mut self, path: impl Into<PathBuf>, contents: String) {
        self.files.push(PlannedFile {
            path: path.into(),
            contents,
            edit: false,
        });
    }

    fn edit(&mut self, path: impl Into<PathBuf>, contents: String) {
        self.files.push(PlannedFile {
            path: path.into(),
            contents,
            edit: true,
        });
    }

    /// Refuses, listing them all, to overwrite files that exist (unless `force`).
    pub fn check(&self, root: &Path, force: bool) -> Result<(), CliError> {
        if force {
            return Ok(());
        }
        let existing: Vec<String> = self
            .files
            .iter()
            .filter(|f| !f.edit && root.join(&f.path).exists())
            .map(|f| format!("  {}", f.path.display()))
            .collect();
        if existing.is_empty() {
            Ok(())
        } else {
            Err(CliError::usage(format!(
                "these files exist; nothing was written (pass --force to overwrite them):\n{}",
                existing.join("\n")
            )))
        }
    }

    /// Writes every file, then formats the Rust ones with `rustfmt` when it is installed.
    pub fn write(&self, root: &Path) -> Result<Vec<PathBuf>, CliError> {
        let mut written = Vec::new();
        for file in &self.files {
            let path = root.join(&file.path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CliError::failure(format!("cannot create `{}`: {e}", dir.display()))
                })?;
            }
            std::fs::write(&path, &file.contents).map_err(|e| {
                CliError::failure(format!("cannot write `{}`: {e}", path.display()))
            })?;
            written.push(file.path.clone());
        }
        let rust: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|f| f.path.extension().is_some_and(|e| e == "rs"))
            .map(|f| root.join(&f.path))
            .collect();
        project::rustfmt(&rust);
        Ok(written)
    }
}

/// Replaces every `{{key}}` of `template`; a placeholder left over is a bug in the generator.
pub(crate) fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    debug_assert!(!out.contains("{{"), "unreplaced placeholder in:\n{out}");
    out
}

mod templates {
    pub(super) const MODULE: &str = include_str!("../templates/task_handler/module.rs");
    pub(super) const OUTPUT: &str = include_str!("../templates/task_handler/output.rs");
    pub(super) const ROOT_STEP: &str = include_str!("../templates/task_handler/root_step.rs");
    pub(super) const STEP: &str = include_str!("../templates/task_handler/step.rs");
    pub(super) const YAML: &str = include_str!("../templates/task_handler/template.yaml");
    pub(super) const YAML_STEP: &str = include_str!("../templates/task_handler/template_step.yaml");
    pub(super) const TEST: &str = include_str!("../templates/task_handler/test.rs");
    pub(super) const INIT_LIB: &str = include_str!("../templates/init/lib.rs");
    pub(super) const INIT_CONFIG: &str = include_str!("../templates/init/tasker.yaml");
    pub(super) const STEP_HANDLER: &str = include_str!("../templates/step_handler/module.rs");
    pub(super) const SUBSCRIBER: &str = include_str!("../templates/subscriber/module.rs");
    pub(super) const SUBSCRIBER_ARM: &str = include_str!("../templates/subscriber/arm.rs");
    pub(super) const AUTHENTICATOR: &str = include_str!("../templates/authenticator/module.rs");
    pub(super) const AUTHORIZER: &str = include_str!("../templates/authorizer/module.rs");
    pub(super) const EVENTS_EXAMPLE: &str = include_str!("../templates/events/examples.yml");
}

/// Where templates of generated workflows live, relative to the crate root.
pub const TASKS_DIR: &str = "config/tasker/tasks";
/// The configuration file `init` writes.
pub const CONFIG_FILE: &str = "config/tasker/tasker.yaml";
/// Where YAML files define custom events, relative to the crate root (the engine's default).
pub const EVENTS_DIR: &str = tasker::config::DEFAULT_EVENTS_DIR;
/// The example file of `generate events --create-example`, in [`EVENTS_DIR`].
pub const EVENTS_EXAMPLE_FILE: &str = "examples.yml";
/// The subscriber `generate events` writes for the events of [`EVENTS_DIR`].
pub const EVENTS_SUBSCRIBER: &str = "custom_events_subscriber";

/// What `generate task-handler` is asked for.
#[derive(Debug, Clone)]
pub struct TaskHandlerRequest {
    /// Workflow name (snake_case).
    pub name: String,
    /// Template namespace.
    pub namespace: String,
    /// Template version.
    pub version: String,
    /// The `--steps` list.
    pub steps: String,
}

/// Plans a task handler: module, YAML template, test, and its `pub mod` line in `src/lib.rs`.
pub fn task_handler(root: &Path, request: &TaskHandlerRequest) -> Result<Plan, CliError> {
    let mut problems = Vec::new();
    if let Err(e) = names::check("workflow name", &request.name) {
        problems.push(e);
    }
    let steps = match steps::parse(&request.steps) {
        Ok(steps) => steps,
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    };
    if problems.is_empty() {
        // The runtime's own checks: namespace, version, limits.
        let mut template = TaskTemplate::new(&request.namespace, &request.name, &request.version);
        for step in &steps {
            template = template.step(
                tasker::StepTemplate::new(&step.name, &step.name).depends_on(step.parents.clone()),
            );
        }
        if let Err(e) = template.validate() {
            problems.extend(e.problems().iter().map(ToString::to_string));
        }
    }
    if !problems.is_empty() {
        return Err(CliError::usage(problems.join("\n")));
    }
    let crate_name = project::crate_name(root)?;
    let mut plan = Plan::default();
    plan_task_handler(&mut plan, root, &crate_name, request, &steps)?;
    Ok(plan)
}

fn plan_task_handler(
    plan: &mut Plan,
    root: &Path,
    crate_name: &str,
    request: &TaskHandlerRequest,
    steps: &[StepSpec],
) -> Result<(), CliError> {
    let name = request.name.as_str();
    let handler_type = names::camel_case(name);
    let context_type = format!("{handler_type}Context");
    let yaml_path = format!("{TASKS_DIR}/{name}.yaml");
    let summary = steps::summary(steps);
    let output_type = |step: &str| format!("{}Output", names::camel_case(step));

    let mut outputs = String::new();
    let mut methods = Vec::new();
    let mut yaml_steps = String::new();
    for step in steps {
        let output = output_type(&step.name);
        outputs.push_str(&render(
            templates::OUTPUT,
            &[("step", &step.name), ("output_type", &output)],
        ));
        let description = format!(
            "Placeholder for the `{}` step: replace with what it does.",
            step.name
        );
        let method = match step.parents.split_first() {
            None => render(
                templates::ROOT_STEP,
                &[
                    ("description", &description),
                    (
                        "signature",
                        &format!(
                            "    pub async fn {}(&self, cx: &StepContext<{context_type}>) -> Result<{output}, StepError> {{",
                            step.name
                        ),
                    ),
                    ("output_type", &output),
                ],
            ),
            Some((first, rest)) => {
                let mut params = format!("{first}: {}", output_type(first));
                for parent in rest {
                    let _ = write!(params, ", _{parent}: {}", output_type(parent));
                }
                let depends_on = if rest.is_empty() {
                    first.clone()
                } else {
                    format!("[{}]", step.parents.join(", "))
                };
                render(
                    templates::STEP,
                    &[
                        ("description", &description),
                        ("depends_on", &depends_on),
                        (
                            "signature",
                            &format!(
                                "    pub async fn {}(&self, _cx: &StepContext<{context_type}>, {params}) -> Result<{output}, StepError> {{",
                                step.name
                            ),
                        ),
                        ("first_parent", first),
                        ("output_type", &output),
                    ],
                )
            }
        };
        methods.push(method);
        let depends_on = match step.parents.as_slice() {
            [] => String::new(),
            [one] => format!("    depends_on_step: {one}\n"),
            many => format!("    depends_on_steps: [{}]\n", many.join(", ")),
        };
        yaml_steps.push_str(&render(
            templates::YAML_STEP,
            &[
                ("step", &step.name),
                ("description", &yaml_string(&description)),
                ("depends_on", &depends_on),
            ],
        ));
    }
    let module = render(
        templates::MODULE,
        &[
            ("name", name),
            ("summary", &summary),
            ("yaml_path", &yaml_path),
            ("context_type", &context_type),
            ("handler_type", &handler_type),
            ("outputs", &outputs),
            ("steps", &methods.join("\n")),
        ],
    );
    let yaml = render(
        templates::YAML,
        &[
            ("name", name),
            ("handler_type", &handler_type),
            ("namespace", &request.namespace),
            ("version", &request.version),
            ("summary", &yaml_string(&summary)),
            ("steps", yaml_steps.trim_end_matches('\n')),
            ("first_step", steps.first().map_or("", |s| s.name.as_str())),
        ],
    );
    let mut imports = [context_type.clone(), handler_type.clone()];
    imports.sort();
    let test = render(
        templates::TEST,
        &[
            ("name", name),
            (
                "imports",
                &format!("{crate_name}::{name}::{{{}}}", imports.join(", ")),
            ),
            ("context_type", &context_type),
            ("handler_type", &handler_type),
            ("first_step", steps.first().map_or("", |s| s.name.as_str())),
        ],
    );
    if !plan.dev_features.contains(&"testing") {
        plan.dev_features.push("testing");
    }
    plan.create(format!("src/{name}.rs"), module);
    plan.create(yaml_path, yaml);
    plan.create(format!("tests/{name}.rs"), test);
    add_module(plan, root, name)?;
    Ok(())
}

/// A YAML double-quoted string.
fn yaml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Declares `pub mod name;` in `src/lib.rs`, creating the file for a binary-only crate (its
/// workflows then live in a library that its binary and tests share).
fn add_module(plan: &mut Plan, root: &Path, name: &str) -> Result<(), CliError> {
    let lib = Path::new("src/lib.rs");
    let planned = plan
        .files
        .iter()
        .position(|f| f.path == lib)
        .map(|i| plan.files.remove(i));
    let current = match planned {
        Some(file) => Some(file.contents),
        None => match std::fs::read_to_string(root.join(lib)) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(CliError::failure(format!(
                    "cannot read `{}`: {e}",
                    root.join(lib).display()
                )));
            }
        },
    };
    let (text, existed) = match current {
        Some(text) => (text, root.join(lib).exists()),
        None => (templates::INIT_LIB.to_owned(), false),
    };
    let updated = project::with_module(&text, name);
    if existed {
        plan.edit(lib, updated);
    } else {
        plan.create(lib, updated);
    }
    Ok(())
}

/// What `init` is asked for.
#[derive(Debug, Clone, Default)]
pub struct InitRequest {
    /// Depend on tasker at this path instead of the published crate.
    pub tasker_path: Option<PathBuf>,
}

/// The example workflow `init` adds.
pub const EXAMPLE_WORKFLOW: &str = "hello_world";

/// Plans `init`: the configuration file, the templates directory and an example workflow.
pub fn init(root: &Path) -> Result<Plan, CliError> {
    let crate_name = project::crate_name(root)?;
    let mut plan = Plan::default();
    plan.create(CONFIG_FILE, templates::INIT_CONFIG.to_owned());
    let example = TaskHandlerRequest {
        name: EXAMPLE_WORKFLOW.to_owned(),
        namespace: "examples".to_owned(),
        version: tasker_rules::DEFAULT_VERSION.to_owned(),
        steps: "compose,deliver:compose".to_owned(),
    };
    let steps = steps::parse(&example.steps).map_err(CliError::failure)?;
    plan_task_handler(&mut plan, root, &crate_name, &example, &steps)?;
    plan.edit(".gitignore", with_ignored(root));
    Ok(plan)
}

/// The SQLite files the default configuration creates (`tasker.db` and its write-ahead log),
/// which have no place in version control.
const IGNORED: [&str; 3] = ["*.db", "*.db-wal", "*.db-shm"];

/// The crate's `.gitignore` with [`IGNORED`] added where missing.
fn with_ignored(root: &Path) -> String {
    let mut text = std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default();
    let missing: Vec<&str> = IGNORED
        .into_iter()
        .filter(|pattern| !text.lines().any(|line| line.trim() == *pattern))
        .collect();
    if missing.is_empty() {
        return text;
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# tasker's SQLite database (config/tasker/tasker.yaml: database_url)\n");
    for pattern in missing {
        text.push_str(pattern);
        text.push('\n');
    }
    text
}

/// Plans a standalone step handler module with its unit test.
pub fn step_handler(root: &Path, name: &str) -> Result<Plan, CliError> {
    names::check("step handler name", name).map_err(CliError::usage)?;
    project::crate_name(root)?;
    let mut plan = Plan::default();
    plan.create(
        format!("src/{name}.rs"),
        render(templates::STEP_HANDLER, &[("name", name)]),
    );
    add_module(&mut plan, root, name)?;
    Ok(plan)
}

/// What an API auth scaffold implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// `tasker::server::Authenticator`: who is calling.
    Authenticator,
    /// `tasker::server::Authorizer`: what a caller may do, record by record.
    Authorizer,
}

/// Plans an authenticator or authorizer module for the API, with its tests; the tasker
/// dependency gets the `server` feature.
pub fn auth(root: &Path, kind: AuthKind, name: &str) -> Result<Plan, CliError> {
    let (what, template) = match kind {
        AuthKind::Authenticator => ("authenticator name", templates::AUTHENTICATOR),
        AuthKind::Authorizer => ("authorizer name", templates::AUTHORIZER),
    };
    names::check(what, name).map_err(CliError::usage)?;
    project::crate_name(root)?;
    let mut plan = Plan::default();
    plan.create(
        format!("src/{name}.rs"),
        render(
            template,
            &[("name", name), ("Name", &names::camel_case(name))],
        ),
    );
    add_module(&mut plan, root, name)?;
    plan.features.push("server");
    Ok(plan)
}

/// An event a generated subscriber handles.
struct Handled {
    name: String,
    description: String,
    kind: tasker::EventKind,
}

/// Plans a subscriber module for `events`: names from the catalog, or defined in the crate's
/// [`EVENTS_DIR`].
pub fn subscriber(root: &Path, name: &str, events: &[String]) -> Result<Plan, CliError> {
    let mut problems = Vec::new();
    if let Err(e) = names::check("subscriber name", name) {
        problems.push(e);
    }
    if events.is_empty() {
        problems.push(
            "name the events to subscribe to: `--events step.failed,task.completed` \
             (`cargo tasker events` lists them)"
                .to_owned(),
        );
    }
    let defined = defined_events(root)?;
    let mut handled: Vec<Handled> = Vec::new();
    for event in events {
        let found = match tasker::events::find(event) {
            Some(info) if info.not_published.is_some() => {
                problems.push(format!(
                    "`{event}` is never published: {}",
                    info.not_published.unwrap_or_default()
                ));
                continue;
            }
            Some(info) => Handled {
                name: info.name.to_owned(),
                description: info.description.to_owned(),
                kind: info.kind,
            },
            None => match defined.get(event) {
                Some(definition) => Handled {
                    name: definition.name().to_owned(),
                    description: definition.description().to_owned(),
                    kind: tasker::EventKind::Custom,
                },
                None => {
                    problems.push(format!(
                        "`{event}` is not in the event catalog nor defined in `{EVENTS_DIR}` \
                         (`cargo tasker events` lists them)"
                    ));
                    continue;
                }
            },
        };
        if handled.iter().any(|h| h.name == found.name) {
            problems.push(format!("event `{event}` is listed twice"));
        } else {
            handled.push(found);
        }
    }
    if !problems.is_empty() {
        return Err(CliError::usage(problems.join("\n")));
    }
    project::crate_name(root)?;
    let mut plan = Plan::default();
    plan_subscriber(&mut plan, root, name, &handled, "subscriber")?;
    Ok(plan)
}

/// Plans [`EVENTS_DIR`] (with `examples.yml` when `create_example`, else a `.keep` while it has
/// no YAML file) and a subscriber module for every event its files define, with its test.
pub fn events(root: &Path, create_example: bool) -> Result<Plan, CliError> {
    project::crate_name(root)?;
    let example_path = format!("{EVENTS_DIR}/{EVENTS_EXAMPLE_FILE}");
    let existing = defined_events(root)?;
    // The example replaces a file of the same name (with `--force`): that file's events are
    // not counted twice.
    let replaced = root.join(&example_path);
    let kept = |e: &&tasker::events::EventDefinition| !(create_example && e.file() == replaced);
    let mut handled: Vec<Handled> = existing
        .iter()
        .filter(kept)
        .map(|e| Handled {
            name: e.name().to_owned(),
            description: e.description().to_owned(),
            kind: tasker::EventKind::Custom,
        })
        .collect();
    let mut plan = Plan::default();
    if create_example {
        let example =
            tasker::events::EventDefinitions::parse(templates::EVENTS_EXAMPLE, &example_path)
                .map_err(|e| CliError::failure(format!("the example is invalid (a bug): {e}")))?;
        let mut problems = Vec::new();
        for event in &example {
            if let Some(first) = existing.get(event.name()).filter(kept) {
                problems.push(format!(
                    "the example defines `{}`, which `{}` defines already",
                    event.name(),
                    first.file().display()
                ));
            }
            handled.push(Handled {
                name: event.name().to_owned(),
                description: event.description().to_owned(),
                kind: tasker::EventKind::Custom,
            });
        }
        if !problems.is_empty() {
            return Err(CliError::usage(problems.join("\n")));
        }
        plan.create(example_path, templates::EVENTS_EXAMPLE.to_owned());
    } else if handled.is_empty() && !root.join(EVENTS_DIR).join(".keep").exists() {
        plan.create(format!("{EVENTS_DIR}/.keep"), String::new());
    }
    if handled.is_empty() {
        plan.notes.push(format!(
            "no custom event is defined yet: define some in `{EVENTS_DIR}/*.yml` (or run \
             `cargo tasker generate events --create-example`), then run this again for their \
             subscriber"
        ));
        return Ok(plan);
    }
    handled.sort_by(|a, b| a.name.cmp(&b.name));
    plan_subscriber(&mut plan, root, EVENTS_SUBSCRIBER, &handled, "events")?;
    plan.notes.push(format!(
        "engines read `{EVENTS_DIR}` from the directory they run in (the setting \
         `custom_events_directories`); one that cannot find these events refuses to start \
         with `{EVENTS_SUBSCRIBER}`"
    ));
    Ok(plan)
}

/// The custom events the crate's [`EVENTS_DIR`] defines (none without the directory).
fn defined_events(root: &Path) -> Result<tasker::events::EventDefinitions, CliError> {
    let dir = root.join(EVENTS_DIR);
    if !dir.is_dir() {
        return Ok(tasker::events::EventDefinitions::new());
    }
    tasker::events::EventDefinitions::load(&[dir]).map_err(|e| {
        CliError::failure(format!(
            "{e}\nnothing was written (`cargo tasker events` checks the directory)"
        ))
    })
}

/// Plans the subscriber module `name` for `handled`, with its test, and its `pub mod` line;
/// `command` is the `generate` subcommand its docs name.
fn plan_subscriber(
    plan: &mut Plan,
    root: &Path,
    name: &str,
    handled: &[Handled],
    command: &str,
) -> Result<(), CliError> {
    let arms: String = handled
        .iter()
        .map(|event| {
            // A YAML description may span lines; the arm's comment is one.
            let description = event.description.split_whitespace().collect::<Vec<_>>();
            render(
                templates::SUBSCRIBER_ARM,
                &[
                    ("event", &event.name),
                    ("description", &description.join(" ")),
                ],
            )
        })
        .collect();
    let event_list = handled
        .iter()
        .map(|e| format!("`{}`", e.name))
        .collect::<Vec<_>>()
        .join(", ");
    let patterns = handled
        .iter()
        .map(|e| format!("\"{}\"", e.name))
        .collect::<Vec<_>>()
        .join(", ");
    let first_kind = match handled.first().map(|e| e.kind) {
        Some(tasker::EventKind::Task) => "Task",
        Some(tasker::EventKind::Step) => "Step",
        Some(tasker::EventKind::Workflow) => "Workflow",
        Some(tasker::EventKind::Observability) => "Observability",
        _ => "Custom",
    };
    plan.create(
        format!("src/{name}.rs"),
        render(
            templates::SUBSCRIBER,
            &[
                ("name", name),
                ("command", command),
                ("event_list", &event_list),
                ("patterns", &patterns),
                ("arms", &arms),
                (
                    "first_event",
                    handled.first().map_or("", |e| e.name.as_str()),
                ),
                ("first_kind", first_kind),
            ],
        ),
    );
    add_module(plan, root, name)
}
