//! Analytics over the tasks created within a period: counts by state, and the durations of
//! complete tasks and steps. The period's tasks come by the `created_at` index and their steps
//! by `task_id`, so the cost follows the period, not the history.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};

use super::Conn;
use super::conn::Bind;
use crate::error::Result;
use crate::state::{StepState, TaskState};

/// A task or step of the period, and for a complete one how long it took, in seconds.
#[derive(QueryableByName, Debug, Clone)]
pub(crate) struct Timed {
    #[diesel(sql_type = BigInt)]
    pub(crate) id: i64,
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    #[diesel(sql_type = Text)]
    pub(crate) template: String,
    #[diesel(sql_type = Text)]
    pub(crate) state: String,
    #[diesel(sql_type = Nullable<Double>)]
    pub(crate) seconds: Option<f64>,
    #[diesel(sql_type = BigInt)]
    pub(crate) attempts: i64,
}

/// Which tasks: created within the last `period_seconds`, of the template parts given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub(crate) period_seconds: f64,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) version: Option<String>,
}

/// `WHERE` conditions on the period's tasks (`t`, joined to `nt` and `ns`); binds from `$1`.
fn scope_sql(c: &Conn<'_>, scope: &Scope) -> (String, Vec<String>) {
    let mut sql = format!("t.created_at >= {}", c.now_plus_sql(-scope.period_seconds));
    let mut binds = Vec::new();
    for (column, value) in [
        ("ns.name", &scope.namespace),
        ("nt.name", &scope.name),
        ("nt.version", &scope.version),
    ] {
        if let Some(value) = value {
            binds.push(value.clone());
            sql.push_str(&format!(" AND {column} = ${}", binds.len()));
        }
    }
    (sql, binds)
}

const TEMPLATE: &str = "ns.name || '/' || nt.name || '@' || nt.version";

/// The period's tasks (`t`) with their template's names (`nt`, `ns`).
const TASKS: &str = "FROM tasker_tasks t \
     JOIN tasker_named_tasks nt ON nt.named_task_id = t.named_task_id \
     JOIN tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id";

/// Runs `select` (the columns of [`Timed`] and any joins) over the period's tasks.
fn timed(c: &mut Conn<'_>, scope: &Scope, select: &str, joins: &str) -> Result<Vec<Timed>> {
    let (filter, binds) = scope_sql(c, scope);
    let sql = format!("SELECT {select} {TASKS} {joins} WHERE {filter}");
    let binds: Vec<Bind<'_>> = binds.iter().map(|b| Bind::Text(b)).collect();
    Ok(c.load_sql(&sql, &binds)?)
}

/// The period's tasks: id, template, state, and for complete ones the seconds from creation
/// to completion.
pub(crate) fn tasks(c: &mut Conn<'_>, scope: &Scope) -> Result<Vec<Timed>> {
    let select = format!(
        "t.task_id AS id, nt.name AS name, {TEMPLATE} AS template, t.state AS state, \
         CASE WHEN t.state = '{complete}' THEN {seconds} END AS seconds, \
         CAST(0 AS BIGINT) AS attempts",
        complete = TaskState::Complete.as_str(),
        seconds = c.seconds_between("t.created_at", "t.updated_at"),
    );
    timed(c, scope, &select, "")
}

/// The steps of the period's tasks: id, step name, template, state, attempts, and for
/// complete ones the seconds of their last attempt.
pub(crate) fn steps(c: &mut Conn<'_>, scope: &Scope) -> Result<Vec<Timed>> {
    let select = format!(
        "s.workflow_step_id AS id, s.name AS name, {TEMPLATE} AS template, s.state AS state, \
         CASE WHEN s.state = '{complete}' THEN {seconds} END AS seconds, \
         CAST(s.attempts AS BIGINT) AS attempts",
        complete = StepState::Complete.as_str(),
        seconds = c.seconds_between("s.last_attempted_at", "s.processed_at"),
    );
    timed(
        c,
        scope,
        &select,
        "JOIN tasker_workflow_steps s ON s.task_id = t.task_id",
    )
}
