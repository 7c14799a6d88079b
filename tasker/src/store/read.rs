//! Read paths: tasks, steps, transitions and queue figures, checked as they are read.

use std::collections::HashMap;

use diesel::prelude::*;

use super::Conn;
use super::rows::{Cell, StepRecord, TaskRecord, TransitionRecord};
use super::schema::*;
use super::transitions::Entity;
use crate::error::{Error, Result};
use crate::model::{
    MAX_LIST_LIMIT, StepInfo, TaskFilter, TaskRow, TaskSort, TransitionInfo, WorkerInfo,
};
use crate::state::{StepState, TaskState};

/// One task with its template's identity.
pub(crate) fn load_task(c: &mut Conn<'_>, task_id: i64) -> Result<TaskRow> {
    use tasker_tasks::dsl as t;
    let record: TaskRecord = c
        .get_result(
            t::tasker_tasks
                .inner_join(tasker_named_tasks::table.inner_join(tasker_task_namespaces::table))
                .filter(t::task_id.eq(task_id))
                .select(TaskRecord::columns()),
        )
        .optional()?
        .ok_or(Error::TaskNotFound(task_id))?;
    record.try_into()
}

/// The tasks of `ids` that exist, by id (`ids` is bound value by value: at most a few thousand).
#[cfg(feature = "server")]
pub(crate) fn load_tasks(c: &mut Conn<'_>, ids: &[i64]) -> Result<HashMap<i64, TaskRow>> {
    use tasker_tasks::dsl as t;
    let records: Vec<TaskRecord> = c.load(
        t::tasker_tasks
            .inner_join(tasker_named_tasks::table.inner_join(tasker_task_namespaces::table))
            .filter(t::task_id.eq_any(ids))
            .select(TaskRecord::columns()),
    )?;
    records
        .into_iter()
        .map(|record| {
            let task = TaskRow::try_from(record)?;
            Ok((task.task_id, task))
        })
        .collect()
}

/// Tasks matching `filter`, in its order.
pub(crate) fn list_tasks(c: &mut Conn<'_>, filter: &TaskFilter) -> Result<Vec<TaskRow>> {
    // A boxed query is typed for one backend, so the listing is built once per backend here.
    macro_rules! listing {
        ($conn:expr, |$annotation:ident| $holds:expr) => {{
            use tasker_tasks::dsl as t;
            let mut query = t::tasker_tasks
                .inner_join(tasker_named_tasks::table.inner_join(tasker_task_namespaces::table))
                .select(TaskRecord::columns())
                .into_boxed();
            if let Some(namespace) = &filter.namespace {
                query = query.filter(tasker_task_namespaces::name.eq(namespace.clone()));
            }
            if let Some(name) = &filter.name {
                query = query.filter(tasker_named_tasks::name.eq(name.clone()));
            }
            if let Some(version) = &filter.version {
                query = query.filter(tasker_named_tasks::version.eq(version.clone()));
            }
            if let Some(state) = filter.state {
                query = query.filter(t::state.eq(state.as_str()));
            }
            if let Some($annotation) = &filter.annotation {
                use tasker_task_annotations::dsl as a;
                let annotated = a::tasker_task_annotations
                    .inner_join(tasker_annotation_types::table)
                    .filter(a::task_id.eq(t::task_id))
                    .filter(tasker_annotation_types::name.eq($annotation.annotation_type.clone()))
                    .filter($holds);
                query = query.filter(diesel::dsl::exists(annotated));
            }
            query = match (filter.sort, filter.ascending) {
                (TaskSort::Id, false) => query.order(t::task_id.desc()),
                (TaskSort::Id, true) => query.order(t::task_id.asc()),
                (TaskSort::RequestedAt, false) => {
                    query.order((t::requested_at.desc(), t::task_id.desc()))
                }
                (TaskSort::RequestedAt, true) => {
                    query.order((t::requested_at.asc(), t::task_id.asc()))
                }
                (TaskSort::CreatedAt, false) => {
                    query.order((t::created_at.desc(), t::task_id.desc()))
                }
                (TaskSort::CreatedAt, true) => query.order((t::created_at.asc(), t::task_id.asc())),
                (TaskSort::Priority, false) => query.order((t::priority.desc(), t::task_id.desc())),
                (TaskSort::Priority, true) => query.order((t::priority.asc(), t::task_id.asc())),
            };
            let limit = i64::try_from(filter.limit.clamp(1, MAX_LIST_LIMIT)).unwrap_or(1);
            let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
            query.limit(limit).offset(offset).load::<TaskRecord>($conn)
        }};
    }
    use diesel::dsl::sql;
    use diesel::sql_types::{Bool, Text};
    // An annotation's key as PostgreSQL's `->>` gives it: a string's text, any other value's
    // JSON (`12`, `true`). SQLite's `->>` gives a number or a boolean as an SQL number, so its
    // text is taken from `->` (the value's JSON) unless the value is a string.
    let records = match c {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => listing!(*c, |annotation| {
            let key = || annotation.key.clone();
            sql::<Bool>("(CASE WHEN substr(tasker_task_annotations.annotation -> ")
                .bind::<Text, _>(key())
                .sql(", 1, 1) = '\"' THEN tasker_task_annotations.annotation ->> ")
                .bind::<Text, _>(key())
                .sql(" ELSE tasker_task_annotations.annotation -> ")
                .bind::<Text, _>(key())
                .sql(" END) = ")
                .bind::<Text, _>(annotation.value.clone())
        })?,
        #[cfg(feature = "postgres")]
        Conn::Postgres(c) => listing!(*c, |annotation| {
            sql::<Bool>("(tasker_task_annotations.annotation::jsonb ->> ")
                .bind::<Text, _>(annotation.key.clone())
                .sql(") = ")
                .bind::<Text, _>(annotation.value.clone())
        })?,
    };
    records.into_iter().map(TaskRow::try_from).collect()
}

/// The steps of a task, in creation order.
pub(crate) fn load_steps(c: &mut Conn<'_>, task_id: i64) -> Result<Vec<StepInfo>> {
    use tasker_workflow_steps::dsl as s;
    let records: Vec<StepRecord> = c.load(
        s::tasker_workflow_steps
            .filter(s::task_id.eq(task_id))
            .order(s::workflow_step_id.asc())
            .select(StepRecord::columns()),
    )?;
    records.into_iter().map(StepInfo::try_from).collect()
}

/// The stored result of the step `name` of `task_id` and its state, if the task has that step.
pub(crate) fn step_output(
    c: &mut Conn<'_>,
    task_id: i64,
    name: &str,
) -> Result<Option<(StepState, Option<serde_json::Value>)>> {
    use tasker_workflow_steps::dsl as s;
    let row: Option<(i64, String, Option<String>)> = c
        .get_result(
            s::tasker_workflow_steps
                .filter(s::task_id.eq(task_id))
                .filter(s::name.eq(name))
                .select((s::workflow_step_id, s::state, s::results))
                .limit(1),
        )
        .optional()?;
    let Some((id, state, results)) = row else {
        return Ok(None);
    };
    let cell = |column| Cell::new("tasker_workflow_steps", id, column);
    let state = cell("state").state(&state)?;
    let results = results
        .as_deref()
        .map(|r| cell("results").json(r))
        .transpose()?;
    Ok(Some((state, results)))
}

/// The transitions of one step or task, oldest first; the last is the most recent.
pub(crate) fn transitions(
    c: &mut Conn<'_>,
    entity: Entity,
    id: i64,
) -> Result<Vec<TransitionInfo>> {
    let (table, records): (&'static str, Vec<TransitionRecord>) = match entity {
        Entity::Step => {
            use tasker_workflow_step_transition_log::dsl as t;
            let records = c.load(
                t::tasker_workflow_step_transition_log
                    .filter(t::workflow_step_id.eq(id))
                    .order(t::sort_key.asc())
                    .select((
                        t::id,
                        t::from_state,
                        t::to_state,
                        t::metadata,
                        t::sort_key,
                        t::created_at,
                    )),
            )?;
            ("tasker_workflow_step_transition_log", records)
        }
        Entity::Task => {
            use tasker_task_transition_log::dsl as t;
            let records = c.load(
                t::tasker_task_transition_log
                    .filter(t::task_id.eq(id))
                    .order(t::sort_key.asc())
                    .select((
                        t::id,
                        t::from_state,
                        t::to_state,
                        t::metadata,
                        t::sort_key,
                        t::created_at,
                    )),
            )?;
            ("tasker_task_transition_log", records)
        }
    };
    let last = records.len().saturating_sub(1);
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.into_info(table, i == last))
        .collect()
}

/// The dependency edges of a task's steps, as `(parent, child)` step ids.
pub(crate) fn load_edges(c: &mut Conn<'_>, task_id: i64) -> Result<Vec<(i64, i64)>> {
    use tasker_workflow_step_edges::dsl as e;
    use tasker_workflow_steps::dsl as s;
    let steps = s::tasker_workflow_steps
        .filter(s::task_id.eq(task_id))
        .select(s::workflow_step_id);
    Ok(c.load(
        e::tasker_workflow_step_edges
            .filter(e::to_step_id.eq_any(steps))
            .order(e::id.asc())
            .select((e::from_step_id, e::to_step_id)),
    )?)
}

/// The correlation ids of `task_ids` (tasks created before correlation ids have none).
pub(crate) fn load_correlations(
    c: &mut Conn<'_>,
    task_ids: &[i64],
) -> Result<HashMap<i64, String>> {
    use tasker_tasks::dsl as t;
    let rows: Vec<(i64, Option<String>)> = c.load(
        t::tasker_tasks
            .filter(t::task_id.eq_any(task_ids))
            .select((t::task_id, t::correlation_id)),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, correlation)| Some((id, correlation?)))
        .collect())
}

/// How many tasks are in each state.
pub(crate) fn tasks_by_state(c: &mut Conn<'_>) -> Result<Vec<(TaskState, i64)>> {
    use tasker_tasks::dsl as t;
    let rows = c.load(
        t::tasker_tasks
            .group_by(t::state)
            .select((t::state, diesel::dsl::count_star())),
    )?;
    parse_counts("tasker_tasks", rows)
}

/// How many steps are in each state.
pub(crate) fn steps_by_state(c: &mut Conn<'_>) -> Result<Vec<(StepState, i64)>> {
    use tasker_workflow_steps::dsl as s;
    let rows = c.load(
        s::tasker_workflow_steps
            .group_by(s::state)
            .select((s::state, diesel::dsl::count_star())),
    )?;
    parse_counts("tasker_workflow_steps", rows)
}

/// Counts by state name as counts by state; an unreadable name is corrupt data in `table`.
fn parse_counts<S>(table: &'static str, rows: Vec<(String, i64)>) -> Result<Vec<(S, i64)>>
where
    S: std::str::FromStr<Err = crate::state::UnknownState>,
{
    rows.into_iter()
        .map(|(state, count)| {
            let parsed =
                state
                    .parse()
                    .map_err(|e: crate::state::UnknownState| Error::CorruptData {
                        table,
                        id: 0,
                        column: "state",
                        problem: format!(
                            "{e} ({count} rows; find them with `WHERE state = '{state}'`)"
                        ),
                    })?;
            Ok((parsed, count))
        })
        .collect()
}

/// How many steps are ready to run now, and how long (seconds, database clock) the oldest has
/// been waiting.
pub(crate) fn ready_stats(c: &mut Conn<'_>) -> Result<(i64, Option<f64>)> {
    use tasker_workflow_steps::dsl as s;
    let ready_states = [StepState::Pending, StepState::Error].map(StepState::as_str);
    let now = c.now_plus(0.0);
    let ready = s::tasker_workflow_steps
        .filter(s::state.eq_any(ready_states))
        .filter(s::remaining_parents.eq(0))
        .filter(s::lease_owner.is_null())
        .filter(s::ready_at.le(now));
    let count: i64 = c.get_result(ready.clone().count())?;
    let oldest: Option<chrono::NaiveDateTime> =
        c.get_result(ready.select(diesel::dsl::min(s::ready_at)))?;
    let Some(oldest) = oldest else {
        return Ok((count, None));
    };
    let now: chrono::NaiveDateTime = c.get_result(diesel::select(c.now()))?;
    Ok((
        count,
        Some((now - oldest).num_milliseconds().max(0) as f64 / 1000.0),
    ))
}

/// The workers seen within the last `within_seconds`, longest running first.
pub(crate) fn workers(c: &mut Conn<'_>, within_seconds: f64) -> Result<Vec<WorkerInfo>> {
    use tasker_workers::dsl as w;
    let since = diesel::dsl::sql::<diesel::sql_types::Timestamp>(&c.now_plus_sql(-within_seconds));
    let rows: Vec<(
        String,
        i32,
        i32,
        chrono::NaiveDateTime,
        chrono::NaiveDateTime,
    )> = c.load(
        w::tasker_workers
            .filter(w::last_seen_at.ge(since))
            .order((w::started_at.asc(), w::worker_id.asc()))
            .select((
                w::worker_id,
                w::concurrency,
                w::running,
                w::started_at,
                w::last_seen_at,
            )),
    )?;
    Ok(rows
        .into_iter()
        .map(
            |(worker_id, concurrency, running, started_at, last_seen_at)| WorkerInfo {
                worker_id,
                concurrency,
                running,
                started_at,
                last_seen_at,
            },
        )
        .collect())
}

/// Runs a trivial query.
pub(crate) fn ping(c: &mut Conn<'_>) -> Result<()> {
    c.execute_sql("SELECT 1", &[])?;
    Ok(())
}
