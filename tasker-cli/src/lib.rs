//! `cargo tasker`: scaffolding, migrations, validation and operations for tasker workflows.
//!
//! The binary is a thin shim over [`run`], which parses arguments, runs one command and writes
//! its output; errors come back as a [`CliError`] with the process exit code.

mod duration;
mod names;
mod ops;
mod project;
pub mod scaffold;
mod steps;
mod table;

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `cargo tasker …` as cargo invokes it (`cargo-tasker tasker …`).
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo")]
pub enum CargoCli {
    /// Scaffold, migrate, validate and operate tasker workflows.
    Tasker(TaskerArgs),
}

/// The `tasker` subcommand's arguments.
#[derive(Debug, Args)]
#[command(version, about)]
pub struct TaskerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `cargo tasker`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add tasker to this crate: the dependency, a documented configuration file,
    /// `config/tasker/tasks/` and an example workflow with its test.
    Init {
        /// Depend on tasker at this path instead of the published crate.
        #[arg(long, value_name = "PATH")]
        tasker_path: Option<PathBuf>,
        /// Where generated files go.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Generate a workflow, a step handler, a subscriber or the custom events directory.
    #[command(subcommand)]
    Generate(Generate),
    /// Apply tasker's embedded database migrations.
    Migrate {
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Show which migrations the database has applied.
    Status {
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check YAML task templates: structure, names, dependencies, cycles and schemas.
    Validate {
        /// Template files or directories of them (default: `config/tasker/tasks`).
        paths: Vec<PathBuf>,
        /// Apply this environment's overrides before checking (default: `TASKER_ENV`).
        #[arg(long, env = "TASKER_ENV", hide_env_values = true)]
        environment: Option<String>,
    },
    /// Print a Mermaid flowchart of a template, or of a live task coloured by step state.
    Diagram {
        /// A YAML template.
        #[arg(required_unless_present = "task", conflicts_with = "task")]
        template: Option<PathBuf>,
        /// The id of a task in the database.
        #[arg(long, value_name = "ID")]
        task: Option<i64>,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List, inspect, retry and cancel tasks.
    #[command(subcommand)]
    Tasks(Tasks),
    /// Operate on workflow steps.
    #[command(subcommand)]
    Steps(Steps),
    /// List recurring tasks with their next runs; pause, resume or trigger one.
    #[command(subcommand)]
    Schedules(Schedules),
    /// List the event catalog, with the custom events of the events directory, templates and
    /// programs; with QUERY, only the events whose name or description contains it.
    Events {
        /// Text to look for in names and descriptions, ignoring case (`order`, `retry`).
        query: Option<String>,
        /// The events directory whose YAML files define custom events (default:
        /// `config/tasker/events` if present).
        #[arg(long, value_name = "DIR")]
        events_dir: Option<PathBuf>,
        /// Templates whose custom events to list (default: `config/tasker/tasks` if present).
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
        /// Also list the custom events of the programs running workers on this database,
        /// declared in code or in their events directories (they record them at start-up).
        #[arg(long, env = "TASKER_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete finished tasks (complete, cancelled, resolved) unchanged for a while, with their
    /// steps, edges, transitions and annotations, in small batches.
    Prune {
        /// How long a task must have been finished (`30d`, `12h`, `90m`).
        #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
        older_than: std::time::Duration,
        /// Also delete tasks in `error` (kept by default: they may be retried).
        #[arg(long)]
        include_errors: bool,
        /// Count what would be deleted, and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print the API's schema for client generators: the GraphQL schema (SDL), or the OpenAPI
    /// document with the task requests of the YAML templates found.
    Schema {
        /// Which schema.
        #[arg(value_enum)]
        kind: SchemaKind,
        /// Templates to describe the task requests of (OpenAPI; default: `config/tasker/tasks`
        /// if present).
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
        /// The API's path prefix (OpenAPI).
        #[arg(long, default_value = "/tasker")]
        prefix: String,
    },
}

/// A schema `cargo tasker schema` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaKind {
    /// The GraphQL schema of `POST /graphql`, in SDL.
    Graphql,
    /// The OpenAPI 3.1 document of the REST API, as `/openapi.json` serves it.
    Openapi,
}

/// What `generate` makes.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// A `#[task_handler]` workflow module, its YAML template and a test that runs it.
    TaskHandler {
        /// The workflow's name, in snake_case (`order_process`).
        name: String,
        /// The template's namespace.
        #[arg(long, default_value = tasker_rules::DEFAULT_NAMESPACE)]
        namespace: String,
        /// The template's version.
        #[arg(long, default_value = tasker_rules::DEFAULT_VERSION)]
        version: String,
        /// The steps and what each depends on: `a,b:a,c:a,d:b+c`.
        #[arg(long, default_value = steps::DEFAULT_STEPS)]
        steps: String,
        /// Where generated files go.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// A `#[step_handler]` function that YAML templates name as `handler`, with its test.
    StepHandler {
        /// The handler's name, in snake_case.
        name: String,
        /// Where generated files go.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// An authenticator for the API (who is calling, from the request's headers), with tests;
    /// turns on the tasker dependency's `server` feature.
    Authenticator {
        /// Its name, in snake_case (`sessions`).
        name: String,
        /// Where generated files go.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// An authorizer for the API (may this caller do `resource:action` on this record), with
    /// tests; turns on the tasker dependency's `server` feature.
    Authorizer {
        /// Its name, in snake_case (`task_owners`).
        name: String,
        /// Where generated files go.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// A subscriber that reacts to events of the catalog or of `config/tasker/events`, with
    /// its test.
    Subscriber {
        /// The subscriber's name, in snake_case.
        name: String,
        /// The events it handles: `step.failed,task.completed`.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Where generated files go.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// The custom events directory, `config/tasker/events`, and a subscriber for the events
    /// its YAML files define, with its test.
    Events {
        /// Write `examples.yml`: three documented events with payload schemas (otherwise an
        /// empty directory is kept with `.keep`).
        #[arg(long)]
        create_example: bool,
        /// Where generated files go.
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// Where generated files go.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The crate to generate into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub crate_dir: PathBuf,
    /// Overwrite files that exist.
    #[arg(long)]
    pub force: bool,
}

/// Which database to use.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// A SQLite file path, or `postgres://…`.
    #[arg(
        long,
        env = "TASKER_DATABASE_URL",
        hide_env_values = true,
        default_value = "tasker.db"
    )]
    pub database_url: String,
}

/// `tasks` subcommands.
#[derive(Debug, Subcommand)]
pub enum Tasks {
    /// List tasks, newest first.
    List {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only tasks of this name.
        #[arg(long)]
        name: Option<String>,
        /// Only this version.
        #[arg(long)]
        version: Option<String>,
        /// Only tasks in this state (`pending`, `in_progress`, `complete`, `error`,
        /// `cancelled`, `resolved_manually`).
        #[arg(long)]
        state: Option<tasker::TaskState>,
        /// Only tasks with an annotation `TYPE:KEY=VALUE` (the key's value compared as text).
        #[arg(long, value_name = "TYPE:KEY=VALUE", value_parser = str::parse::<tasker::AnnotationFilter>)]
        annotation: Option<tasker::AnnotationFilter>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Show a task and its steps.
    Show {
        /// The task's id.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Add an annotation to a task: a typed JSON object (the seed's task annotation).
    Annotate {
        /// The task's id.
        id: i64,
        /// The annotation's type (created on first use).
        annotation_type: String,
        /// The annotation, a JSON object.
        annotation: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List a task's annotations, oldest first.
    Annotations {
        /// The task's id.
        id: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Send a task in `error` back to `pending`, with a fresh retry budget for its failed steps.
    Retry {
        /// The task's id.
        id: i64,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Cancel a task and its unfinished steps.
    Cancel {
        /// The task's id.
        id: i64,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Create a task of a template the workers on this database stored, now or later.
    Create {
        /// The template's name.
        name: String,
        /// The template's namespace.
        #[arg(long, default_value = tasker_rules::DEFAULT_NAMESPACE)]
        namespace: String,
        /// The template's version.
        #[arg(long, default_value = tasker_rules::DEFAULT_VERSION)]
        version: String,
        /// The task's context, as JSON.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        context: String,
        /// Start its steps at this time (RFC 3339: `2026-12-24T18:00:00Z`).
        #[arg(long, value_name = "TIME", conflicts_with = "delay")]
        run_at: Option<chrono::DateTime<chrono::Utc>>,
        /// Start its steps after this long (`90s`, `15m`, `2h`, `7d`).
        #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
        delay: Option<std::time::Duration>,
        /// End it in error if still open this long after it starts (default: the template's).
        #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
        timeout: Option<std::time::Duration>,
        /// Why (the task's `reason`).
        #[arg(long)]
        reason: Option<String>,
        /// Print the task as JSON.
        #[arg(long)]
        json: bool,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// `schedules` subcommands.
#[derive(Debug, Subcommand)]
pub enum Schedules {
    /// List every schedule with its next run.
    List {
        /// Print JSON (with each schedule's next five runs) instead of a table.
        #[arg(long)]
        json: bool,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Show a schedule and its next five runs.
    Show {
        /// The schedule's name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Pause a schedule: no slot runs until it is resumed.
    Pause {
        /// The schedule's name.
        name: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Resume a schedule from its next slot (the slots missed while paused do not run).
    Resume {
        /// The schedule's name.
        name: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Ask for a run now, outside the schedule's slots: the next worker to look starts it.
    Trigger {
        /// The schedule's name.
        name: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// `steps` subcommands.
#[derive(Debug, Subcommand)]
pub enum Steps {
    /// Mark a pending or failed step as resolved by hand, so its dependents can run.
    Resolve {
        /// The step's id (`cargo tasker tasks show` lists them).
        id: i64,
        /// The result its dependents receive, as JSON.
        #[arg(long, value_name = "JSON")]
        result: Option<String>,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// A command that did not succeed, with its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// What to tell the user.
    pub message: String,
    /// `1` when the command failed, `2` when it was used wrongly.
    pub code: i32,
}

impl CliError {
    /// The command failed (a database error, invalid templates).
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// The command was used wrongly (bad arguments, files in the way).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::failure(format!("cannot write output: {e}"))
    }
}

/// Parses `args` (as the binary received them) and runs the command, writing to `out`.
pub fn run(args: impl IntoIterator<Item = OsString>, out: &mut impl Write) -> Result<(), CliError> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    // Accept both `cargo tasker migrate` (argv: cargo-tasker tasker migrate) and `cargo-tasker migrate`.
    if args.get(1).is_none_or(|a| a != "tasker") {
        args.insert(1.min(args.len()), "tasker".into());
    }
    let CargoCli::Tasker(cli) = match CargoCli::try_parse_from(args) {
        Ok(cli) => cli,
        // `--help` and `--version` are answers, not errors.
        Err(e) if !e.use_stderr() => return Ok(write!(out, "{e}")?),
        Err(e) => return Err(CliError::usage(e.to_string().trim_end())),
    };
    match cli.command {
        Command::Init {
            tasker_path,
            target,
        } => {
            let plan = scaffold::init(&target.crate_dir)?;
            plan.check(&target.crate_dir, target.force)?;
            project::add_dependency(&target.crate_dir, tasker_path.as_deref())?;
            project::add_features(&target.crate_dir, &plan.dev_features, true)?;
            let written = plan.write(&target.crate_dir)?;
            writeln!(out, "added tasker to the crate's dependencies")?;
            report(out, &written)?;
            writeln!(
                out,
                "next: `cargo test` runs the example; `cargo tasker generate task-handler NAME --steps a,b:a` adds a workflow"
            )?;
        }
        Command::Generate(generate) => {
            let (plan, target) = match generate {
                Generate::TaskHandler {
                    name,
                    namespace,
                    version,
                    steps,
                    target,
                } => {
                    let request = scaffold::TaskHandlerRequest {
                        name,
                        namespace,
                        version,
                        steps,
                    };
                    (scaffold::task_handler(&target.crate_dir, &request)?, target)
                }
                Generate::StepHandler { name, target } => {
                    (scaffold::step_handler(&target.crate_dir, &name)?, target)
                }
                Generate::Subscriber {
                    name,
                    events,
                    target,
                } => (
                    scaffold::subscriber(&target.crate_dir, &name, &events)?,
                    target,
                ),
                Generate::Events {
                    create_example,
                    target,
                } => (scaffold::events(&target.crate_dir, create_example)?, target),
                Generate::Authenticator { name, target } => (
                    scaffold::auth(&target.crate_dir, scaffold::AuthKind::Authenticator, &name)?,
                    target,
                ),
                Generate::Authorizer { name, target } => (
                    scaffold::auth(&target.crate_dir, scaffold::AuthKind::Authorizer, &name)?,
                    target,
                ),
            };
            plan.check(&target.crate_dir, target.force)?;
            // The features go on the crate's tasker dependency; a crate without one is told
            // how to add it rather than given one from a source it did not choose.
            let wanted = !plan.features.is_empty() || !plan.dev_features.is_empty();
            if wanted && project::depends_on_tasker(&target.crate_dir)? {
                project::add_features(&target.crate_dir, &plan.features, false)?;
                project::add_features(&target.crate_dir, &plan.dev_features, true)?;
                if !plan.features.is_empty() {
                    writeln!(out, "  tasker features: {}", plan.features.join(", "))?;
                }
            } else if wanted {
                writeln!(
                    out,
                    "  tasker is not a dependency of this crate yet: `cargo tasker init` adds it"
                )?;
            }
            let written = plan.write(&target.crate_dir)?;
            report(out, &written)?;
            for note in &plan.notes {
                writeln!(out, "{note}")?;
            }
        }
        Command::Migrate { database } => ops::migrate(out, &database.database_url)?,
        Command::Status { database, json } => ops::status(out, &database.database_url, json)?,
        Command::Validate { paths, environment } => {
            ops::validate(out, &paths, environment.as_deref())?
        }
        Command::Diagram {
            template,
            task,
            database,
        } => ops::diagram(out, template.as_deref(), task, &database.database_url)?,
        Command::Tasks(tasks) => ops::tasks(out, tasks)?,
        Command::Schedules(schedules) => ops::schedules(out, schedules)?,
        Command::Steps(Steps::Resolve {
            id,
            result,
            database,
        }) => ops::resolve_step(out, id, result.as_deref(), &database.database_url)?,
        Command::Events {
            query,
            events_dir,
            templates,
            database_url,
            json,
        } => {
            let sources = ops::EventSources {
                events_dir: events_dir.as_deref(),
                templates: templates.as_deref(),
                database_url: database_url.as_deref(),
            };
            ops::events(out, query.as_deref(), &sources, json)?
        }
        Command::Schema {
            kind,
            templates,
            prefix,
        } => ops::schema(out, kind, templates.as_deref(), &prefix)?,
        Command::Prune {
            older_than,
            include_errors,
            dry_run,
            database,
        } => {
            let options = tasker::PruneOptions {
                older_than,
                include_errors,
                dry_run,
            };
            ops::prune(out, options, &database.database_url)?;
        }
    }
    Ok(())
}

fn report(out: &mut impl Write, written: &[PathBuf]) -> Result<(), CliError> {
    for path in written {
        writeln!(out, "  wrote {}", path.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        CargoCli::command().debug_assert();
    }
}
