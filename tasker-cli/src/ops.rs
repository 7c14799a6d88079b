//! Commands that read and change a database, and the ones that read templates.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tasker::{TaskFilter, Tasker};

use tasker::diagram;

use crate::{CliError, SchemaKind, Tasks, scaffold, table};

/// Runs `f` on a runtime of its own: the commands are one-shot.
fn block_on<T>(f: impl std::future::Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the runtime: {e}")))?
        .block_on(f)
}

fn db_error(url: &str) -> impl Fn(tasker::Error) -> CliError + '_ {
    move |e| CliError::failure(format!("{url}: {e}"))
}

/// A SQLite URL names a file; opening a missing one would create an empty database.
fn check_exists(url: &str) -> Result<(), CliError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(());
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path == ":memory:" || Path::new(path).exists() {
        Ok(())
    } else {
        Err(CliError::failure(format!(
            "no database at `{path}` (set --database-url or TASKER_DATABASE_URL)"
        )))
    }
}

fn connect(url: &str) -> Result<tasker::Store, CliError> {
    tasker::Store::connect(url, 2, Duration::from_secs(10)).map_err(db_error(url))
}

/// An engine over an existing, migrated database, running no workflows of its own.
async fn engine(url: &str) -> Result<Tasker, CliError> {
    engine_with(url, false).await
}

/// An engine over the database at `url`, which must exist and be migrated; with `templates`,
/// it knows the templates the workers on it stored (to create their tasks).
async fn engine_with(url: &str, templates: bool) -> Result<Tasker, CliError> {
    check_exists(url)?;
    let owned = url.to_owned();
    let pending = tokio::task::spawn_blocking(move || -> Result<usize, CliError> {
        let status = connect(&owned)?
            .migration_status()
            .map_err(db_error(&owned))?;
        Ok(status.iter().filter(|m| !m.applied).count())
    })
    .await
    .map_err(|e| CliError::failure(e.to_string()))??;
    if pending > 0 {
        return Err(CliError::failure(format!(
            "{url}: {pending} migration(s) not applied; run `cargo tasker migrate` first"
        )));
    }
    Tasker::builder()
        .database_url(url)
        .auto_register(false)
        .templates_from_database(templates)
        .configure(|c| {
            c.migrate_on_start = false;
            c.pool_size = 2;
            // The project's events and subscriptions are for its own programs: the CLI runs
            // none of their subscribers, and needs no definitions to operate on tasks.
            c.custom_events_directories.clear();
            c.subscriptions_directories.clear();
        })
        .build()
        .await
        .map_err(db_error(url))
}

pub(crate) fn migrate(out: &mut impl Write, url: &str) -> Result<(), CliError> {
    let applied = connect(url)?.migrate().map_err(db_error(url))?;
    writeln!(out, "applied {applied} migration(s) to {url}")?;
    Ok(())
}

pub(crate) fn status(out: &mut impl Write, url: &str, as_json: bool) -> Result<(), CliError> {
    check_exists(url)?;
    let status = connect(url)?.migration_status().map_err(db_error(url))?;
    if as_json {
        let list: Vec<_> = status
            .iter()
            .map(|m| json!({ "name": m.name, "applied": m.applied }))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = status
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                if m.applied { "applied" } else { "pending" }.to_owned(),
            ]
        })
        .collect();
    write!(out, "{}", table::render(&["MIGRATION", "STATE"], &rows))?;
    let pending = status.iter().filter(|m| !m.applied).count();
    if pending > 0 {
        writeln!(out, "{pending} pending: run `cargo tasker migrate`")?;
    }
    Ok(())
}

/// The YAML files under `paths`: each file as given, each directory's `*.yaml`/`*.yml`.
fn template_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let default = [PathBuf::from(scaffold::TASKS_DIR)];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| CliError::failure(format!("cannot read `{}`: {e}", path.display())))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(CliError::usage(format!(
                "`{}` does not exist",
                path.display()
            )));
        }
    }
    Ok(files)
}

pub(crate) fn validate(
    out: &mut impl Write,
    paths: &[PathBuf],
    environment: Option<&str>,
) -> Result<(), CliError> {
    let files = template_files(paths)?;
    let mut failures = 0;
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    for file in &files {
        match tasker::template::load_template_file(file, environment) {
            Ok(template) => {
                let key = template.full_name();
                if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                    failures += 1;
                    writeln!(
                        out,
                        "{}: `{key}` is also declared by {}",
                        file.display(),
                        first.display()
                    )?;
                } else {
                    writeln!(
                        out,
                        "{}: ok ({key}, {} steps)",
                        file.display(),
                        template.step_templates.len()
                    )?;
                    seen.push((key, file.clone()));
                }
            }
            Err(error) => {
                failures += 1;
                for problem in error.problems() {
                    writeln!(out, "{}: {problem}", file.display())?;
                }
            }
        }
    }
    if files.is_empty() {
        return Err(CliError::usage(
            "no templates found (give files or directories)",
        ));
    }
    if failures > 0 {
        return Err(CliError::failure(format!(
            "{failures} of {} template(s) invalid",
            files.len()
        )));
    }
    Ok(())
}

pub(crate) fn diagram(
    out: &mut impl Write,
    template: Option<&Path>,
    task: Option<i64>,
    url: &str,
) -> Result<(), CliError> {
    if let Some(path) = template {
        let template = tasker::template::load_template_file(path, None)
            .map_err(|e| CliError::failure(e.to_string()))?;
        write!(out, "{}", diagram::template(&template))?;
        return Ok(());
    }
    let Some(task_id) = task else {
        return Err(CliError::usage("give a template file or `--task ID`"));
    };
    let text = block_on(async {
        let tasker = engine(url).await?;
        let task = tasker.task(task_id).await.map_err(db_error(url))?;
        let steps = tasker.steps(task_id).await.map_err(db_error(url))?;
        let edges = tasker.step_edges(task_id).await.map_err(db_error(url))?;
        let title = format!(
            "task {} {}/{}@{} ({})",
            task.task_id, task.namespace, task.name, task.version, task.state
        );
        Ok(diagram::task(&title, &steps, &edges))
    })?;
    write!(out, "{text}")?;
    Ok(())
}

pub(crate) fn tasks(out: &mut impl Write, command: Tasks) -> Result<(), CliError> {
    match command {
        Tasks::List {
            namespace,
            name,
            version,
            state,
            annotation,
            limit,
            offset,
            json,
            database,
        } => {
            let url = database.database_url;
            let filter = TaskFilter {
                namespace,
                name,
                version,
                state,
                limit,
                offset,
                annotation,
                ..TaskFilter::default()
            };
            let mut tasks = block_on(async {
                engine(&url)
                    .await?
                    .tasks(filter)
                    .await
                    .map_err(db_error(&url))
            })?;
            let redactor = tasker::redact::Redactor::default();
            for task in &mut tasks {
                redactor.redact(&mut task.context);
            }
            if json {
                writeln!(out, "{}", to_json(&tasks)?)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| {
                    vec![
                        t.task_id.to_string(),
                        format!("{}/{}@{}", t.namespace, t.name, t.version),
                        t.state.to_string(),
                        t.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        table::shorten(t.reason.as_deref().unwrap_or(""), 40),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table::render(&["ID", "TASK", "STATE", "CREATED (UTC)", "REASON"], &rows)
            )?;
        }
        Tasks::Show { id, json, database } => {
            let url = database.database_url;
            let (mut task, mut steps, execution, failures) = block_on(async {
                let tasker = engine(&url).await?;
                let task = tasker.task(id).await.map_err(db_error(&url))?;
                let steps = tasker.steps(id).await.map_err(db_error(&url))?;
                let execution = tasker.execution_context(id).await.map_err(db_error(&url))?;
                // Failed attempts live in the steps' transitions; only a step that was retried
                // or is in error has any.
                let mut failures = Vec::new();
                for step in steps
                    .iter()
                    .filter(|s| s.attempts > 1 || s.state == tasker::StepState::Error)
                {
                    let transitions = tasker
                        .step_transitions(step.step_id)
                        .await
                        .map_err(db_error(&url))?;
                    failures.extend(
                        transitions
                            .into_iter()
                            .filter(|t| t.to_state == "error")
                            .map(|t| failure(step, &t)),
                    );
                }
                Ok((task, steps, execution, failures))
            })?;
            // Operators see the shape of the data, not its secrets.
            let redactor = tasker::redact::Redactor::default();
            redactor.redact(&mut task.context);
            for step in &mut steps {
                if let Some(results) = &mut step.results {
                    redactor.redact(results);
                }
            }
            if json {
                writeln!(
                    out,
                    "{}",
                    to_json(&json!({
                        "task": task,
                        "execution_context": execution,
                        "steps": steps,
                        "failed_attempts": failures,
                    }))?
                )?;
                return Ok(());
            }
            writeln!(
                out,
                "task {}  {}/{}@{}  {}",
                task.task_id, task.namespace, task.name, task.version, task.state
            )?;
            writeln!(
                out,
                "requested {} by {} from {}: {}",
                task.requested_at.format("%Y-%m-%d %H:%M:%S"),
                task.initiator.as_deref().unwrap_or("unknown"),
                task.source_system.as_deref().unwrap_or("unknown"),
                task.reason.as_deref().unwrap_or("unknown")
            )?;
            writeln!(
                out,
                "context {}",
                table::shorten(&task.context.to_string(), 200)
            )?;
            writeln!(
                out,
                "execution {} ({}), health {}, {}% complete ({} of {} steps)",
                label(&execution.execution_status),
                label(&execution.recommended_action),
                label(&execution.health_status),
                execution.completion_percentage,
                execution.completed_steps,
                execution.total_steps
            )?;
            writeln!(out)?;
            let rows: Vec<Vec<String>> = steps
                .iter()
                .map(|s| {
                    let detail = match &s.results {
                        Some(r) if r.get("error").is_some() => {
                            format!("error: {}", r["error"].as_str().unwrap_or_default())
                        }
                        Some(r) => r.to_string(),
                        None => String::new(),
                    };
                    vec![
                        s.step_id.to_string(),
                        s.name.clone(),
                        s.state.to_string(),
                        format!("{}/{}", s.attempts, s.retry_limit),
                        table::shorten(&detail, 60),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table::render(&["STEP", "NAME", "STATE", "ATTEMPTS", "RESULT"], &rows)
            )?;
            if !failures.is_empty() {
                writeln!(out, "\nfailed attempts:")?;
                let rows: Vec<Vec<String>> = failures
                    .iter()
                    .map(|f| {
                        let at = f["at"].as_str().unwrap_or_default();
                        vec![
                            f["step"].as_str().unwrap_or_default().to_owned(),
                            f["attempt"].to_string(),
                            at.get(..19).unwrap_or(at).replace('T', " "),
                            f["error_class"].as_str().unwrap_or_default().to_owned(),
                            table::shorten(f["error"].as_str().unwrap_or_default(), 70),
                        ]
                    })
                    .collect();
                write!(
                    out,
                    "{}",
                    table::render(&["STEP", "ATTEMPT", "AT", "CLASS", "ERROR"], &rows)
                )?;
            }
        }
        Tasks::Annotate {
            id,
            annotation_type,
            annotation,
            database,
        } => {
            let annotation: serde_json::Value = serde_json::from_str(&annotation)
                .map_err(|e| CliError::usage(format!("the annotation is not JSON: {e}")))?;
            let url = database.database_url;
            block_on(async {
                engine(&url)
                    .await?
                    .annotate(id, &annotation_type, annotation)
                    .await
                    .map_err(db_error(&url))
            })?;
            writeln!(out, "annotated task {id} ({annotation_type})")?;
        }
        Tasks::Annotations { id, json, database } => {
            let url = database.database_url;
            let annotations = block_on(async {
                let tasker = engine(&url).await?;
                tasker.task(id).await.map_err(db_error(&url))?;
                tasker.annotations(id).await.map_err(db_error(&url))
            })?;
            if json {
                writeln!(out, "{}", to_json(&annotations)?)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = annotations
                .iter()
                .map(|a| {
                    vec![
                        a.annotation_type.clone(),
                        a.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        table::shorten(&a.annotation.to_string(), 100),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table::render(&["TYPE", "ADDED (UTC)", "ANNOTATION"], &rows)
            )?;
        }
        Tasks::Retry { id, database } => {
            let url = database.database_url;
            block_on(async {
                engine(&url)
                    .await?
                    .retry_task(id)
                    .await
                    .map_err(db_error(&url))
            })?;
            writeln!(out, "task {id} is pending again; its failed steps will run")?;
        }
        Tasks::Cancel { id, database } => {
            let url = database.database_url;
            let cancelled = block_on(async {
                engine(&url)
                    .await?
                    .cancel_task(id)
                    .await
                    .map_err(db_error(&url))
            })?;
            if cancelled {
                writeln!(out, "cancelled task {id}")?;
            } else {
                writeln!(out, "task {id} was already cancelled")?;
            }
        }
        Tasks::Create {
            name,
            namespace,
            version,
            context,
            run_at,
            delay,
            timeout,
            reason,
            json,
            database,
        } => {
            let context: serde_json::Value = serde_json::from_str(&context)
                .map_err(|e| CliError::usage(format!("`--context` is not JSON: {e}")))?;
            let mut request = tasker::TaskRequest::new(name)
                .namespace(namespace)
                .version(version)
                .context(context)
                .initiator("cargo tasker")
                .source_system("cli");
            if let Some(reason) = reason {
                request = request.reason(reason);
            }
            if let Some(at) = run_at {
                request = request.run_at(at);
            }
            if let Some(delay) = delay {
                request = request.delay(delay);
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            let url = database.database_url;
            let task = block_on(async {
                // The templates are the ones the workers on this database stored.
                let tasker = engine_with(&url, true).await?;
                let created = tasker.create_task(request).await.map_err(db_error(&url))?;
                tasker.task(created.id).await.map_err(db_error(&url))
            })?;
            if json {
                writeln!(out, "{}", to_json(&task)?)?;
                return Ok(());
            }
            match task.run_at {
                Some(at) => writeln!(
                    out,
                    "created task {} ({}/{}@{}); its steps start at {} UTC",
                    task.task_id,
                    task.namespace,
                    task.name,
                    task.version,
                    at.format("%Y-%m-%d %H:%M:%S")
                )?,
                None => writeln!(
                    out,
                    "created task {} ({}/{}@{})",
                    task.task_id, task.namespace, task.name, task.version
                )?,
            }
        }
    }
    Ok(())
}

/// How a value serializes when it is a string (an enum's snake_case name).
fn label(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => String::new(),
    }
}

/// `cargo tasker schedules …`.
pub(crate) fn schedules(out: &mut impl Write, command: crate::Schedules) -> Result<(), CliError> {
    use crate::Schedules;
    let time = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M:%S").to_string();
    let (url, name) = match &command {
        Schedules::List { database, .. } => (database.database_url.clone(), None),
        Schedules::Show { name, database, .. }
        | Schedules::Pause { name, database }
        | Schedules::Resume { name, database }
        | Schedules::Trigger { name, database } => {
            (database.database_url.clone(), Some(name.clone()))
        }
    };
    let name = name.unwrap_or_default();
    block_on(async {
        let tasker = engine(&url).await?;
        let failed = db_error(&url);
        match command {
            Schedules::List { json, .. } => {
                let schedules = tasker.schedules().await.map_err(&failed)?;
                if json {
                    writeln!(out, "{}", to_json(&schedules)?)?;
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = schedules
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            format!("{}/{}@{}", s.namespace, s.task_name, s.version),
                            format!("{} ({})", s.cron, s.time_zone),
                            if s.paused {
                                "paused".to_owned()
                            } else {
                                time(s.next_run_at)
                            },
                            s.last_task_id.map(|id| id.to_string()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                write!(
                    out,
                    "{}",
                    table::render(
                        &["SCHEDULE", "TASK", "CRON", "NEXT RUN (UTC)", "LAST TASK"],
                        &rows
                    )
                )?;
            }
            Schedules::Show { json, .. } => {
                let schedule = tasker.schedule(&name).await.map_err(&failed)?;
                if json {
                    writeln!(out, "{}", to_json(&schedule)?)?;
                    return Ok(());
                }
                writeln!(
                    out,
                    "schedule {} → {}/{}@{} ({})",
                    schedule.name,
                    schedule.namespace,
                    schedule.task_name,
                    schedule.version,
                    schedule.origin
                )?;
                writeln!(
                    out,
                    "  cron:      {} ({})",
                    schedule.cron, schedule.time_zone
                )?;
                writeln!(out, "  catch up:  {} missed slot(s)", schedule.catch_up)?;
                writeln!(out, "  paused:    {}", schedule.paused)?;
                if let Some(at) = schedule.last_slot_at {
                    let task = schedule.last_task_id.unwrap_or_default();
                    writeln!(out, "  last slot: {} UTC (task {task})", time(at))?;
                }
                writeln!(out, "  missed:    {} slot(s)", schedule.missed_slots)?;
                if let Some(error) = &schedule.last_error {
                    writeln!(out, "  error:     {error}")?;
                }
                for at in &schedule.upcoming {
                    writeln!(out, "  next:      {} UTC", time(*at))?;
                }
            }
            Schedules::Pause { .. } => {
                tasker.pause_schedule(&name).await.map_err(&failed)?;
                writeln!(out, "paused schedule {name}")?;
            }
            Schedules::Resume { .. } => {
                let schedule = tasker.resume_schedule(&name).await.map_err(&failed)?;
                writeln!(
                    out,
                    "resumed schedule {name}; next run at {} UTC",
                    time(schedule.next_run_at)
                )?;
            }
            Schedules::Trigger { .. } => {
                tasker.trigger_schedule(&name).await.map_err(&failed)?;
                writeln!(
                    out,
                    "asked for a run of schedule {name} now: the next worker to look starts it"
                )?;
            }
        }
        Ok(())
    })
}

/// `cargo tasker prune`.
pub(crate) fn prune(
    out: &mut impl Write,
    options: tasker::PruneOptions,
    url: &str,
) -> Result<(), CliError> {
    let pruned = block_on(async {
        engine(url)
            .await?
            .prune(options)
            .await
            .map_err(db_error(url))
    })?;
    let verb = if options.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    writeln!(
        out,
        "{verb} {} task(s) and {} step(s) finished more than {} ago",
        pruned.tasks,
        pruned.steps,
        describe(options.older_than)
    )?;
    Ok(())
}

/// A duration as the operator would write it back.
fn describe(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub(crate) fn resolve_step(
    out: &mut impl Write,
    id: i64,
    result: Option<&str>,
    url: &str,
) -> Result<(), CliError> {
    let result = match result {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| CliError::usage(format!("`--result` is not JSON: {e}")))?,
        ),
        None => None,
    };
    let resolved = block_on(async {
        engine(url)
            .await?
            .resolve_step(id, result)
            .await
            .map_err(db_error(url))
    })?;
    if resolved {
        writeln!(out, "resolved step {id}; its dependents can run")?;
    } else {
        writeln!(out, "step {id} was already resolved")?;
    }
    Ok(())
}

/// The YAML templates of `dir`, or of `config/tasker/tasks` when there is one.
fn project_templates(dir: Option<&Path>) -> Result<Vec<tasker::TaskTemplate>, CliError> {
    let default = PathBuf::from(scaffold::TASKS_DIR);
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None if default.is_dir() => default,
        None => return Ok(Vec::new()),
    };
    template_files(&[dir])?
        .iter()
        .map(|file| {
            tasker::template::load_template_file(file, None)
                .map_err(|e| CliError::failure(e.to_string()))
        })
        .collect()
}

/// `cargo tasker schema`: the GraphQL SDL, or the OpenAPI document over the project's
/// templates.
pub(crate) fn schema(
    out: &mut impl Write,
    kind: SchemaKind,
    templates: Option<&Path>,
    prefix: &str,
) -> Result<(), CliError> {
    match kind {
        SchemaKind::Graphql => write!(out, "{}", tasker::server::graphql_sdl())?,
        SchemaKind::Openapi => {
            let templates = project_templates(templates)?;
            let templates: Vec<&tasker::TaskTemplate> = templates.iter().collect();
            let document = tasker::server::openapi_document(prefix, &templates);
            writeln!(out, "{}", to_json(&document)?)?;
        }
    }
    Ok(())
}

/// Where `cargo tasker events` finds custom events besides the catalog.
pub(crate) struct EventSources<'a> {
    /// The events directory (default: `config/tasker/events` if present).
    pub(crate) events_dir: Option<&'a Path>,
    /// The templates directory (default: `config/tasker/tasks` if present).
    pub(crate) templates: Option<&'a Path>,
    /// A database whose workers recorded their custom events.
    pub(crate) database_url: Option<&'a str>,
}

/// One line of `cargo tasker events`.
struct EventRow {
    name: String,
    kind: String,
    description: String,
}

impl EventRow {
    fn new(
        name: impl Into<String>,
        kind: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            description: description.into(),
        }
    }

    /// Whether the name or description contains `query`, ignoring case.
    fn matches(&self, query: &str) -> bool {
        let query = query.to_lowercase();
        self.name.to_lowercase().contains(&query)
            || self.description.to_lowercase().contains(&query)
    }
}

/// `cargo tasker events`: the catalog, then the custom events of the events directory, the
/// templates and the database (each listed once), those matching `query` when given.
pub(crate) fn events(
    out: &mut impl Write,
    query: Option<&str>,
    sources: &EventSources<'_>,
    as_json: bool,
) -> Result<(), CliError> {
    let mut rows: Vec<EventRow> = tasker::events::CATALOG
        .iter()
        .map(|e| {
            let description = match e.not_published {
                Some(why) => format!("{} Not published: {why}.", e.description),
                None => e.description.to_owned(),
            };
            EventRow::new(e.name, e.kind.as_str(), description)
        })
        .collect();
    for event in &project_events(sources.events_dir)? {
        let kind = format!("custom ({})", event.file().display());
        rows.push(EventRow::new(event.name(), kind, event.description()));
    }
    for template in project_templates(sources.templates)? {
        for step in &template.step_templates {
            for event in &step.custom_events {
                rows.push(EventRow::new(
                    event.name.clone(),
                    format!("custom ({}, step {})", template.full_name(), step.name),
                    event.description.clone().unwrap_or_default(),
                ));
            }
        }
    }
    if let Some(url) = sources.database_url {
        let stored = block_on(async {
            engine(url)
                .await?
                .stored_custom_events()
                .await
                .map_err(db_error(url))
        })?;
        for (name, description) in stored {
            // Workers record the events of their code and their events directory; the ones
            // found in this project's files are listed once, from there.
            if !rows.iter().any(|r| r.name == name) {
                let description = description.unwrap_or_default();
                rows.push(EventRow::new(
                    name,
                    "custom (recorded by a worker)",
                    description,
                ));
            }
        }
    }
    if let Some(query) = query {
        rows.retain(|row| row.matches(query));
    }
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|r| json!({ "name": r.name, "kind": r.kind, "description": r.description }))
            .collect();
        writeln!(out, "{}", to_json(&list)?)?;
        return Ok(());
    }
    if let (Some(query), true) = (query, rows.is_empty()) {
        writeln!(out, "no event's name or description contains `{query}`")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| vec![r.name, r.kind, r.description])
        .collect();
    write!(
        out,
        "{}",
        table::render(&["EVENT", "KIND", "DESCRIPTION"], &rows)
    )?;
    Ok(())
}

/// The custom events defined in `dir`, or in `config/tasker/events` when there is one.
fn project_events(dir: Option<&Path>) -> Result<tasker::events::EventDefinitions, CliError> {
    let dir = dir.map_or_else(
        || PathBuf::from(tasker::config::DEFAULT_EVENTS_DIR),
        Path::to_path_buf,
    );
    tasker::events::EventDefinitions::load(&[dir]).map_err(|e| CliError::failure(e.to_string()))
}

fn to_json(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::failure(e.to_string()))
}

/// One failed attempt of `step`, from its transition into `error`.
fn failure(step: &tasker::StepInfo, transition: &tasker::TransitionInfo) -> serde_json::Value {
    let metadata = &transition.metadata;
    json!({
        "step_id": step.step_id,
        "step": step.name,
        "attempt": metadata["attempt"],
        "error": metadata["error"],
        "error_class": metadata["error_class"],
        "reason": metadata["reason"],
        "at": tasker::timestamp::format(transition.created_at),
    })
}
