//! Rows as the store reads them, and their checked conversion into the read models: a value
//! that cannot be read is an [`Error::CorruptData`] naming the table, row and column.

use diesel::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::conn::SomeBackend;
use super::schema::*;
use crate::error::{Error, Result};
use crate::model::{StepInfo, TaskRow, TransitionInfo};
use crate::state::{StepState, TaskState};

/// Where a stored value came from, for the error when it cannot be read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    pub(crate) table: &'static str,
    pub(crate) id: i64,
    pub(crate) column: &'static str,
}

impl Cell {
    pub(crate) fn new(table: &'static str, id: i64, column: &'static str) -> Self {
        Self { table, id, column }
    }

    fn corrupt(self, problem: impl std::fmt::Display) -> Error {
        Error::CorruptData {
            table: self.table,
            id: self.id,
            column: self.column,
            problem: problem.to_string(),
        }
    }

    /// The stored JSON text, parsed.
    pub(crate) fn json<T: DeserializeOwned>(self, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| self.corrupt(format!("not valid JSON: {e}")))
    }

    /// The stored state name, parsed.
    pub(crate) fn state<S: std::str::FromStr<Err = crate::state::UnknownState>>(
        self,
        text: &str,
    ) -> Result<S> {
        text.parse().map_err(|e| self.corrupt(e))
    }
}

const TASKS: &str = "tasker_tasks";
const STEPS: &str = "tasker_workflow_steps";

/// A task joined with its named task and namespace.
#[derive(Queryable, Selectable)]
#[diesel(table_name = tasker_tasks)]
pub(crate) struct TaskRecord {
    task_id: i64,
    #[diesel(select_expression = tasker_task_namespaces::name)]
    namespace: String,
    #[diesel(select_expression = tasker_named_tasks::name)]
    name: String,
    #[diesel(select_expression = tasker_named_tasks::version)]
    version: String,
    state: String,
    context: String,
    initiator: Option<String>,
    source_system: Option<String>,
    reason: Option<String>,
    tags: String,
    bypass_steps: String,
    priority: i32,
    idempotency_key: Option<String>,
    requested_at: chrono::NaiveDateTime,
    created_at: chrono::NaiveDateTime,
    updated_at: chrono::NaiveDateTime,
    run_at: Option<chrono::NaiveDateTime>,
    deadline_at: Option<chrono::NaiveDateTime>,
}

impl TaskRecord {
    /// The columns to select (the derived selection is the same on both backends).
    pub(crate) fn columns() -> <Self as Selectable<SomeBackend>>::SelectExpression {
        <Self as Selectable<SomeBackend>>::construct_selection()
    }
}

impl TryFrom<TaskRecord> for TaskRow {
    type Error = Error;

    fn try_from(r: TaskRecord) -> Result<Self> {
        let cell = |column| Cell::new(TASKS, r.task_id, column);
        Ok(TaskRow {
            task_id: r.task_id,
            state: cell("state").state::<TaskState>(&r.state)?,
            context: cell("context").json(&r.context)?,
            tags: cell("tags").json(&r.tags)?,
            bypass_steps: cell("bypass_steps").json(&r.bypass_steps)?,
            namespace: r.namespace,
            name: r.name,
            version: r.version,
            initiator: r.initiator,
            source_system: r.source_system,
            reason: r.reason,
            priority: r.priority,
            idempotency_key: r.idempotency_key,
            requested_at: r.requested_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            run_at: r.run_at,
            deadline_at: r.deadline_at,
        })
    }
}

/// A workflow step as the read model shows it.
#[derive(Queryable, Selectable)]
#[diesel(table_name = tasker_workflow_steps)]
pub(crate) struct StepRecord {
    workflow_step_id: i64,
    task_id: i64,
    name: String,
    state: String,
    attempts: i32,
    retry_limit: i32,
    retryable: bool,
    skippable: bool,
    results: Option<String>,
    remaining_parents: i32,
    ready_at: Option<chrono::NaiveDateTime>,
    lease_owner: Option<String>,
    last_attempted_at: Option<chrono::NaiveDateTime>,
    processed_at: Option<chrono::NaiveDateTime>,
}

impl StepRecord {
    /// The columns to select (the derived selection is the same on both backends).
    pub(crate) fn columns() -> <Self as Selectable<SomeBackend>>::SelectExpression {
        <Self as Selectable<SomeBackend>>::construct_selection()
    }
}

impl TryFrom<StepRecord> for StepInfo {
    type Error = Error;

    fn try_from(r: StepRecord) -> Result<Self> {
        let cell = |column| Cell::new(STEPS, r.workflow_step_id, column);
        Ok(StepInfo {
            step_id: r.workflow_step_id,
            task_id: r.task_id,
            state: cell("state").state::<StepState>(&r.state)?,
            results: r
                .results
                .as_deref()
                .map(|text| cell("results").json::<Value>(text))
                .transpose()?,
            name: r.name,
            attempts: r.attempts,
            retry_limit: r.retry_limit,
            retryable: r.retryable,
            skippable: r.skippable,
            remaining_parents: r.remaining_parents,
            ready_at: r.ready_at,
            lease_owner: r.lease_owner,
            last_attempted_at: r.last_attempted_at,
            processed_at: r.processed_at,
        })
    }
}

/// A transition row of either table (select its columns in this order).
#[derive(Queryable)]
pub(crate) struct TransitionRecord {
    id: i64,
    from_state: Option<String>,
    to_state: String,
    metadata: String,
    sort_key: i32,
    created_at: chrono::NaiveDateTime,
}

impl TransitionRecord {
    /// The read model, checking the states and metadata (`table` names the row's table;
    /// `most_recent` is whether no later row of its entity exists).
    pub(crate) fn into_info(
        self,
        table: &'static str,
        most_recent: bool,
    ) -> Result<TransitionInfo> {
        let cell = |column| Cell::new(table, self.id, column);
        // Both machines share the six state names.
        if let Some(from) = &self.from_state {
            cell("from_state").state::<StepState>(from)?;
        }
        cell("to_state").state::<StepState>(&self.to_state)?;
        Ok(TransitionInfo {
            metadata: cell("metadata").json(&self.metadata)?,
            from_state: self.from_state,
            to_state: self.to_state,
            sort_key: self.sort_key,
            most_recent,
            created_at: self.created_at,
        })
    }
}
