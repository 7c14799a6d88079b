//! Creating a task: its row, its steps, their edges and the first transitions, in one
//! transaction.

use diesel::prelude::*;

use super::Conn;
use super::schema::*;
use super::transitions::{record_new_steps, record_new_tasks};
use crate::error::{Error, Result};
use crate::model::{EventRecord, Metadata, NewTask, StepTransition, TaskTransition};
use crate::state::StepState;

/// A task ready to insert, built and checked by the engine.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct PreparedTask {
    pub(crate) named_task_id: i64,
    pub(crate) concurrent: bool,
    pub(crate) requested_at: chrono::NaiveDateTime,
    pub(crate) initiator: String,
    pub(crate) source_system: String,
    pub(crate) reason: String,
    pub(crate) bypass_steps: String,
    pub(crate) tags: String,
    pub(crate) context: String,
    pub(crate) identity_hash: String,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) priority: i32,
    pub(crate) correlation_id: String,
    pub(crate) steps: Vec<PreparedStep>,
    /// (parent index, child index) into `steps`.
    pub(crate) edges: Vec<(usize, usize)>,
}

/// A step ready to insert.
#[derive(Debug, Clone)]
pub(crate) struct PreparedStep {
    pub(crate) named_step_id: i64,
    pub(crate) name: String,
    pub(crate) retryable: bool,
    pub(crate) retry_limit: i32,
    pub(crate) skippable: bool,
    pub(crate) bypassed: bool,
    pub(crate) remaining_parents: i32,
}

#[derive(Insertable)]
#[diesel(table_name = tasker_tasks)]
#[diesel(treat_none_as_default_value = false)]
struct NewTaskRow<'a> {
    named_task_id: i64,
    concurrent: bool,
    requested_at: chrono::NaiveDateTime,
    initiator: &'a str,
    source_system: &'a str,
    reason: &'a str,
    bypass_steps: &'a str,
    tags: &'a str,
    context: &'a str,
    identity_hash: &'a str,
    idempotency_key: Option<&'a str>,
    priority: i32,
    correlation_id: &'a str,
}

impl<'a> NewTaskRow<'a> {
    fn of(task: &'a PreparedTask) -> Self {
        Self {
            named_task_id: task.named_task_id,
            concurrent: task.concurrent,
            requested_at: task.requested_at,
            initiator: &task.initiator,
            source_system: &task.source_system,
            reason: &task.reason,
            bypass_steps: &task.bypass_steps,
            tags: &task.tags,
            context: &task.context,
            identity_hash: &task.identity_hash,
            idempotency_key: task.idempotency_key.as_deref(),
            priority: task.priority,
            correlation_id: &task.correlation_id,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = tasker_workflow_steps)]
#[diesel(treat_none_as_default_value = false)]
struct NewStepRow<'a> {
    task_id: i64,
    named_step_id: i64,
    name: &'a str,
    state: &'static str,
    retryable: bool,
    retry_limit: i32,
    skippable: bool,
    remaining_parents: i32,
    priority: i32,
}

/// Inserts a task, its steps, edges and initial transitions. Runs in a transaction of its own,
/// or in a savepoint when the caller already has one open.
pub(crate) fn create_task(
    c: &mut Conn<'_>,
    task: &PreparedTask,
) -> Result<(NewTask, Vec<EventRecord>)> {
    c.write(|c| {
        if let Some(id) = existing_by_key(c, task)? {
            return Ok((NewTask { id, existing: true }, Vec::new()));
        }
        let task_id = match insert_task(c, task)? {
            Inserted::New(id) => id,
            Inserted::Existing(id) => return Ok((NewTask { id, existing: true }, Vec::new())),
        };
        let step_ids = insert_steps(c, task_id, task)?;
        insert_edges(c, task, &step_ids)?;
        let mut events = first_transitions(c, task_id, task, &step_ids)?;
        if task.steps.iter().any(|s| s.bypassed) {
            events.extend(super::complete::finalize_tasks(c, &[task_id])?);
        }
        c.notify_ready()?;
        for event in &mut events {
            event.correlation_id = Some(task.correlation_id.clone());
        }
        Ok((
            NewTask {
                id: task_id,
                existing: false,
            },
            events,
        ))
    })
}

/// The task an earlier request with the same idempotency key created.
fn existing_by_key(c: &mut Conn<'_>, task: &PreparedTask) -> Result<Option<i64>> {
    use tasker_tasks::dsl as t;
    let Some(key) = &task.idempotency_key else {
        return Ok(None);
    };
    Ok(c.get_result(
        t::tasker_tasks
            .filter(t::idempotency_key.eq(key))
            .select(t::task_id)
            .limit(1),
    )
    .optional()?)
}

enum Inserted {
    New(i64),
    Existing(i64),
}

/// Inserts the task row. `ON CONFLICT DO NOTHING` makes concurrent creators with one key wait
/// for the first and then see its row, instead of failing on the unique index.
fn insert_task(c: &mut Conn<'_>, task: &PreparedTask) -> Result<Inserted> {
    use tasker_tasks::dsl as t;
    let inserted: Option<i64> = c
        .get_result(
            diesel::insert_into(t::tasker_tasks)
                .values(&NewTaskRow::of(task))
                .on_conflict_do_nothing()
                .returning(t::task_id),
        )
        .optional()?;
    if let Some(id) = inserted {
        return Ok(Inserted::New(id));
    }
    let existing: Option<i64> = c
        .get_result(
            t::tasker_tasks
                .filter(
                    t::identity_hash
                        .eq(&task.identity_hash)
                        .or(t::idempotency_key.eq(task.idempotency_key.as_deref())),
                )
                .select(t::task_id)
                .limit(1),
        )
        .optional()?;
    match (existing, &task.idempotency_key) {
        (Some(id), Some(_)) => Ok(Inserted::Existing(id)),
        (Some(id), None) => Err(Error::DuplicateRequest(id)),
        (None, _) => Err(Error::IdentityConflict),
    }
}

/// Inserts the steps (runnable ones get `ready_at` from the database clock); returns their ids
/// in the order of `task.steps`.
fn insert_steps(c: &mut Conn<'_>, task_id: i64, task: &PreparedTask) -> Result<Vec<i64>> {
    use tasker_workflow_steps::dsl as s;
    let rows: Vec<NewStepRow<'_>> = task
        .steps
        .iter()
        .map(|step| NewStepRow {
            task_id,
            named_step_id: step.named_step_id,
            name: &step.name,
            state: if step.bypassed {
                StepState::ResolvedManually.as_str()
            } else {
                StepState::Pending.as_str()
            },
            retryable: step.retryable,
            retry_limit: step.retry_limit,
            skippable: step.skippable,
            remaining_parents: step.remaining_parents,
            priority: task.priority,
        })
        .collect();
    let step_ids: Vec<i64> = c.load(
        diesel::insert_into(s::tasker_workflow_steps)
            .values(&rows)
            .returning(s::workflow_step_id),
    )?;
    let roots: Vec<i64> = task
        .steps
        .iter()
        .zip(&step_ids)
        .filter(|(step, _)| !step.bypassed && step.remaining_parents == 0)
        .map(|(_, id)| *id)
        .collect();
    if !roots.is_empty() {
        let now = c.now_plus(0.0);
        c.execute(
            diesel::update(s::tasker_workflow_steps)
                .filter(s::workflow_step_id.eq_any(&roots))
                .set(s::ready_at.eq(now)),
        )?;
    }
    Ok(step_ids)
}

fn insert_edges(c: &mut Conn<'_>, task: &PreparedTask, step_ids: &[i64]) -> Result<()> {
    use tasker_workflow_step_edges::dsl as e;
    if task.edges.is_empty() {
        return Ok(());
    }
    let edges: Vec<_> = task
        .edges
        .iter()
        .map(|(from, to)| {
            (
                e::from_step_id.eq(step_ids[*from]),
                e::to_step_id.eq(step_ids[*to]),
            )
        })
        .collect();
    c.execute(diesel::insert_into(e::tasker_workflow_step_edges).values(&edges))?;
    Ok(())
}

/// The task's and its steps' first transitions; bypassed steps go on to `resolved_manually`.
fn first_transitions(
    c: &mut Conn<'_>,
    task_id: i64,
    task: &PreparedTask,
    step_ids: &[i64],
) -> Result<Vec<EventRecord>> {
    let mut events = record_new_tasks(c, vec![TaskTransition::created(task_id)])?;
    let mut steps = Vec::with_capacity(step_ids.len());
    for (step, &id) in task.steps.iter().zip(step_ids) {
        steps.push(StepTransition::created(task_id, id, &step.name));
        if step.bypassed {
            steps.push(StepTransition::new(
                (task_id, id, &step.name),
                StepState::Pending,
                StepState::ResolvedManually,
                Metadata::Bypassed,
            )?);
        }
    }
    events.extend(record_new_steps(c, steps)?);
    Ok(events)
}
