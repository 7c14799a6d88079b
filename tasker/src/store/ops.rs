// Database operations, written once against `Conn` and compiled for each backend: `store/mod.rs`
// includes this file in a module per backend, with `Conn` the concrete diesel connection.

use std::collections::{BTreeSet, HashMap, HashSet};

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Timestamp};

use crate::error::{Error, Result};
use crate::state::{StepState, TaskState};
use crate::store::schema::*;
use crate::store::{
    ClaimedStep, CompletionOutcome, Dialect, EventRecord, NewTask, Outcome, PreparedTask, StepRow,
    TaskCounts, TaskRow, TemplateIds, TransitionRow,
};
use crate::template::TaskTemplate;

fn now() -> diesel::expression::SqlLiteral<Timestamp> {
    sql::<Timestamp>(<Conn as Dialect>::NOW)
}

fn now_plus_nullable(seconds: f64) -> diesel::expression::SqlLiteral<Nullable<Timestamp>> {
    sql::<Nullable<Timestamp>>(&<Conn as Dialect>::now_plus(seconds))
}

/// Parent step names and their results (JSON text), for one child.
type ParentResults = Vec<(String, Option<String>)>;

/// Writes transition rows for steps (`true`) or tasks (`false`), keeping `sort_key` (+10) and
/// `most_recent` (exactly one per entity) as the seed does: two statements for any batch, one
/// for new entities.
macro_rules! record_transitions {
    ($fn_name:ident, $fresh_fn:ident, $insert_fn:ident, $table:ident, $entity:ident, $insertable:ident) => {
        #[derive(Insertable)]
        #[diesel(table_name = $table)]
        #[diesel(treat_none_as_default_value = false)]
        struct $insertable<'a> {
            $entity: i64,
            from_state: Option<&'a str>,
            to_state: &'a str,
            metadata: &'a str,
            sort_key: i32,
            most_recent: bool,
        }

        pub(crate) fn $fn_name(c: &mut Conn, rows: &[TransitionRow]) -> Result<()> {
            if rows.is_empty() {
                return Ok(());
            }
            let ids: Vec<i64> = rows
                .iter()
                .map(|r| r.id)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // The row that stops being most recent is the one with the highest sort key, so
            // one statement both retires it and says where each entity's keys continue.
            let last: Vec<(i64, i32)> = diesel::update($table::table)
                .filter($table::$entity.eq_any(&ids))
                .filter($table::most_recent.eq(true))
                .set($table::most_recent.eq(false))
                .returning(($table::$entity, $table::sort_key))
                .get_results(c)?;
            let next: HashMap<i64, i32> = last.into_iter().map(|(id, k)| (id, k + 10)).collect();
            $insert_fn(c, rows, next)
        }

        /// Writes the first transitions of entities that have none yet (just created): no
        /// earlier row to retire, so one statement.
        pub(crate) fn $fresh_fn(c: &mut Conn, rows: &[TransitionRow]) -> Result<()> {
            if rows.is_empty() {
                return Ok(());
            }
            $insert_fn(c, rows, HashMap::new())
        }

        fn $insert_fn(
            c: &mut Conn,
            rows: &[TransitionRow],
            mut next: HashMap<i64, i32>,
        ) -> Result<()> {
            let mut remaining: HashMap<i64, usize> = HashMap::new();
            for r in rows {
                *remaining.entry(r.id).or_default() += 1;
            }
            let inserts: Vec<$insertable<'_>> = rows
                .iter()
                .map(|r| {
                    let key = next.entry(r.id).or_insert(0);
                    let sort_key = *key;
                    *key += 10;
                    let left = remaining.entry(r.id).or_default();
                    *left -= 1;
                    $insertable {
                        $entity: r.id,
                        from_state: r.from,
                        to_state: r.to,
                        metadata: &r.metadata,
                        sort_key,
                        most_recent: *left == 0,
                    }
                })
                .collect();
            diesel::insert_into($table::table)
                .values(&inserts)
                .execute(c)?;
            Ok(())
        }
    };
}

record_transitions!(
    record_step_transitions,
    record_first_step_transitions,
    insert_step_transitions,
    tasker_workflow_step_transitions,
    workflow_step_id,
    NewStepTransition
);
record_transitions!(
    record_task_transitions,
    record_first_task_transitions,
    insert_task_transitions,
    tasker_task_transitions,
    task_id,
    NewTaskTransition
);

/// Upserts the namespaces, named tasks and named steps of `templates`; returns their ids.
pub(crate) fn sync_templates(
    c: &mut Conn,
    templates: &[&TaskTemplate],
) -> Result<Vec<TemplateIds>> {
    <Conn as Dialect>::write(c, |c| {
        let mut out = Vec::with_capacity(templates.len());
        for t in templates {
            diesel::insert_into(tasker_task_namespaces::table)
                .values(tasker_task_namespaces::name.eq(&t.namespace_name))
                .on_conflict(tasker_task_namespaces::name)
                .do_nothing()
                .execute(c)?;
            let namespace_id: i64 = tasker_task_namespaces::table
                .filter(tasker_task_namespaces::name.eq(&t.namespace_name))
                .select(tasker_task_namespaces::task_namespace_id)
                .first(c)?;
            let configuration = serde_json::to_string(t)?;
            diesel::insert_into(tasker_named_tasks::table)
                .values((
                    tasker_named_tasks::task_namespace_id.eq(namespace_id),
                    tasker_named_tasks::name.eq(&t.name),
                    tasker_named_tasks::version.eq(&t.version),
                    tasker_named_tasks::description.eq(&t.description),
                    tasker_named_tasks::configuration.eq(&configuration),
                ))
                .on_conflict((
                    tasker_named_tasks::task_namespace_id,
                    tasker_named_tasks::name,
                    tasker_named_tasks::version,
                ))
                .do_update()
                .set((
                    tasker_named_tasks::configuration.eq(&configuration),
                    tasker_named_tasks::description.eq(&t.description),
                    tasker_named_tasks::updated_at.eq(now()),
                ))
                .execute(c)?;
            let named_task_id: i64 = tasker_named_tasks::table
                .filter(tasker_named_tasks::task_namespace_id.eq(namespace_id))
                .filter(tasker_named_tasks::name.eq(&t.name))
                .filter(tasker_named_tasks::version.eq(&t.version))
                .select(tasker_named_tasks::named_task_id)
                .first(c)?;
            let mut step_ids = HashMap::new();
            for step in &t.step_templates {
                let system = step
                    .dependent_system
                    .as_deref()
                    .or(t.default_dependent_system.as_deref())
                    .unwrap_or("default");
                diesel::insert_into(tasker_dependent_systems::table)
                    .values(tasker_dependent_systems::name.eq(system))
                    .on_conflict(tasker_dependent_systems::name)
                    .do_nothing()
                    .execute(c)?;
                let system_id: i64 = tasker_dependent_systems::table
                    .filter(tasker_dependent_systems::name.eq(system))
                    .select(tasker_dependent_systems::dependent_system_id)
                    .first(c)?;
                diesel::insert_into(tasker_named_steps::table)
                    .values((
                        tasker_named_steps::dependent_system_id.eq(system_id),
                        tasker_named_steps::name.eq(&step.name),
                        tasker_named_steps::description.eq(&step.description),
                    ))
                    .on_conflict((
                        tasker_named_steps::dependent_system_id,
                        tasker_named_steps::name,
                    ))
                    .do_nothing()
                    .execute(c)?;
                let named_step_id: i64 = tasker_named_steps::table
                    .filter(tasker_named_steps::dependent_system_id.eq(system_id))
                    .filter(tasker_named_steps::name.eq(&step.name))
                    .select(tasker_named_steps::named_step_id)
                    .first(c)?;
                diesel::insert_into(tasker_named_tasks_named_steps::table)
                    .values((
                        tasker_named_tasks_named_steps::named_task_id.eq(named_task_id),
                        tasker_named_tasks_named_steps::named_step_id.eq(named_step_id),
                        tasker_named_tasks_named_steps::skippable.eq(step.skippable),
                        tasker_named_tasks_named_steps::default_retryable
                            .eq(step.default_retryable),
                        tasker_named_tasks_named_steps::default_retry_limit
                            .eq(step.default_retry_limit as i32),
                    ))
                    .on_conflict((
                        tasker_named_tasks_named_steps::named_task_id,
                        tasker_named_tasks_named_steps::named_step_id,
                    ))
                    .do_update()
                    .set((
                        tasker_named_tasks_named_steps::skippable.eq(step.skippable),
                        tasker_named_tasks_named_steps::default_retryable
                            .eq(step.default_retryable),
                        tasker_named_tasks_named_steps::default_retry_limit
                            .eq(step.default_retry_limit as i32),
                    ))
                    .execute(c)?;
                step_ids.insert(step.name.clone(), named_step_id);
            }
            out.push(TemplateIds {
                named_task_id,
                step_ids,
            });
        }
        Ok(out)
    })
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

#[derive(Insertable)]
#[diesel(table_name = tasker_workflow_steps)]
#[diesel(treat_none_as_default_value = false)]
struct NewStepRow<'a> {
    task_id: i64,
    named_step_id: i64,
    name: &'a str,
    state: &'a str,
    retryable: bool,
    retry_limit: i32,
    skippable: bool,
    remaining_parents: i32,
    priority: i32,
}

/// Inserts a task, its steps, edges and initial transitions. Runs in a transaction of its own,
/// or in a savepoint when the caller already has one open.
pub(crate) fn create_task(
    c: &mut Conn,
    task: &PreparedTask,
) -> Result<(NewTask, Vec<EventRecord>)> {
    <Conn as Dialect>::write(c, |c| {
        if let Some(key) = &task.idempotency_key {
            let existing: Option<i64> = tasker_tasks::table
                .filter(tasker_tasks::idempotency_key.eq(key))
                .select(tasker_tasks::task_id)
                .first(c)
                .optional()?;
            if let Some(id) = existing {
                return Ok((NewTask { id, existing: true }, Vec::new()));
            }
        }
        let row = NewTaskRow {
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
        };
        // ON CONFLICT DO NOTHING makes concurrent creators with one key wait for the first
        // and then see its row, instead of failing on the unique index.
        let inserted: Option<i64> = diesel::insert_into(tasker_tasks::table)
            .values(&row)
            .on_conflict_do_nothing()
            .returning(tasker_tasks::task_id)
            .get_result(c)
            .optional()?;
        let task_id = match inserted {
            Some(id) => id,
            None => {
                let existing: Option<i64> = tasker_tasks::table
                    .filter(
                        tasker_tasks::identity_hash
                            .eq(&task.identity_hash)
                            .or(tasker_tasks::idempotency_key.eq(task.idempotency_key.as_deref())),
                    )
                    .select(tasker_tasks::task_id)
                    .first(c)
                    .optional()?;
                return match (existing, &task.idempotency_key) {
                    (Some(id), Some(_)) => Ok((NewTask { id, existing: true }, Vec::new())),
                    (Some(id), None) => Err(Error::DuplicateRequest(id)),
                    (None, _) => Err(Error::IdentityConflict),
                };
            }
        };
        let step_rows: Vec<NewStepRow<'_>> = task
            .steps
            .iter()
            .map(|s| NewStepRow {
                task_id,
                named_step_id: s.named_step_id,
                name: &s.name,
                state: if s.bypassed {
                    StepState::ResolvedManually.as_str()
                } else {
                    StepState::Pending.as_str()
                },
                retryable: s.retryable,
                retry_limit: s.retry_limit,
                skippable: s.skippable,
                remaining_parents: s.remaining_parents,
                priority: task.priority,
            })
            .collect();
        let step_ids: Vec<i64> = diesel::insert_into(tasker_workflow_steps::table)
            .values(&step_rows)
            .returning(tasker_workflow_steps::workflow_step_id)
            .get_results(c)?;
        // Runnable steps get `ready_at` from the database clock.
        let roots: Vec<i64> = task
            .steps
            .iter()
            .zip(&step_ids)
            .filter(|(s, _)| !s.bypassed && s.remaining_parents == 0)
            .map(|(_, id)| *id)
            .collect();
        if !roots.is_empty() {
            diesel::update(tasker_workflow_steps::table)
                .filter(tasker_workflow_steps::workflow_step_id.eq_any(&roots))
                .set(tasker_workflow_steps::ready_at.eq(now_plus_nullable(0.0)))
                .execute(c)?;
        }
        if !task.edges.is_empty() {
            let edges: Vec<_> = task
                .edges
                .iter()
                .map(|(from, to)| {
                    (
                        tasker_workflow_step_edges::from_step_id.eq(step_ids[*from]),
                        tasker_workflow_step_edges::to_step_id.eq(step_ids[*to]),
                    )
                })
                .collect();
            diesel::insert_into(tasker_workflow_step_edges::table)
                .values(&edges)
                .execute(c)?;
        }
        let mut events = Vec::with_capacity(step_ids.len() + 1);
        let task_transition = TransitionRow::new(task_id, None, TaskState::Pending.as_str(), "{}");
        record_first_task_transitions(c, std::slice::from_ref(&task_transition))?;
        events.push(EventRecord::task(
            task_id,
            None,
            TaskState::Pending,
            serde_json::Value::Null,
        ));
        let mut step_transitions = Vec::with_capacity(step_ids.len());
        for (s, id) in task.steps.iter().zip(&step_ids) {
            step_transitions.push(TransitionRow::new(
                *id,
                None,
                StepState::Pending.as_str(),
                "{}",
            ));
            events.push(EventRecord::step(
                task_id,
                *id,
                &s.name,
                None,
                StepState::Pending,
                serde_json::Value::Null,
            ));
            if s.bypassed {
                let metadata = serde_json::json!({ "reason": "bypassed" });
                step_transitions.push(TransitionRow::new(
                    *id,
                    Some(StepState::Pending.as_str()),
                    StepState::ResolvedManually.as_str(),
                    &metadata.to_string(),
                ));
                events.push(EventRecord::step(
                    task_id,
                    *id,
                    &s.name,
                    Some(StepState::Pending),
                    StepState::ResolvedManually,
                    metadata,
                ));
            }
        }
        record_first_step_transitions(c, &step_transitions)?;
        if task.steps.iter().any(|s| s.bypassed) {
            events.extend(finalize_tasks(c, &[task_id])?);
        }
        <Conn as Dialect>::notify_ready(c)?;
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

#[derive(QueryableByName)]
struct CandidateRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    task_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    state: String,
    #[diesel(sql_type = Bool)]
    concurrent: bool,
    #[diesel(sql_type = Bool)]
    task_free: bool,
}

/// Claims up to `limit` ready steps of the given named tasks for `owner`: marks them
/// `in_progress` with a lease, writes their transitions, starts their tasks, and returns what
/// the handlers need (context and parent results).
pub(crate) fn claim(
    c: &mut Conn,
    owner: &str,
    limit: usize,
    lease_seconds: f64,
    named_task_ids: &[i64],
) -> Result<(Vec<ClaimedStep>, Vec<EventRecord>)> {
    if named_task_ids.is_empty() || limit == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    <Conn as Dialect>::write(c, |c| {
        let ids = named_task_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let query = <Conn as Dialect>::claim_candidates_sql(&ids, limit);
        let candidates: Vec<CandidateRow> = diesel::sql_query(query).load(c)?;
        if candidates.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        // A task with `concurrent: false` runs one step at a time: its `running_step_id` is the
        // mutex, taken with a conditional UPDATE so two claimers cannot both win it.
        let mut taken_serial: BTreeSet<i64> = BTreeSet::new();
        let mut chosen: Vec<&CandidateRow> = Vec::with_capacity(candidates.len());
        for cand in &candidates {
            if cand.concurrent {
                chosen.push(cand);
                continue;
            }
            if !cand.task_free || taken_serial.contains(&cand.task_id) {
                continue;
            }
            let won = diesel::update(tasker_tasks::table)
                .filter(tasker_tasks::task_id.eq(cand.task_id))
                .filter(tasker_tasks::running_step_id.is_null())
                .set(tasker_tasks::running_step_id.eq(cand.workflow_step_id))
                .execute(c)?;
            if won == 1 {
                taken_serial.insert(cand.task_id);
                chosen.push(cand);
            }
        }
        if chosen.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let step_ids: Vec<i64> = chosen.iter().map(|c| c.workflow_step_id).collect();
        let claimed: Vec<(i64, i64, String, i32, bool, i32)> =
            diesel::update(tasker_workflow_steps::table)
                .filter(tasker_workflow_steps::workflow_step_id.eq_any(&step_ids))
                .set((
                    tasker_workflow_steps::state.eq(StepState::InProgress.as_str()),
                    tasker_workflow_steps::attempts.eq(tasker_workflow_steps::attempts + 1),
                    tasker_workflow_steps::lease_owner.eq(owner),
                    tasker_workflow_steps::lease_expires_at.eq(now_plus_nullable(lease_seconds)),
                    tasker_workflow_steps::last_attempted_at.eq(now_plus_nullable(0.0)),
                    tasker_workflow_steps::in_process.eq(true),
                    // `ready_at` stays: a step given back (released, or recovered from a dead
                    // worker) goes back to its original place in the queue.
                    tasker_workflow_steps::updated_at.eq(now()),
                ))
                .returning((
                    tasker_workflow_steps::workflow_step_id,
                    tasker_workflow_steps::task_id,
                    tasker_workflow_steps::name,
                    tasker_workflow_steps::attempts,
                    tasker_workflow_steps::retryable,
                    tasker_workflow_steps::retry_limit,
                ))
                .get_results(c)?;
        let from_error: BTreeSet<i64> = chosen
            .iter()
            .filter(|c| c.state == StepState::Error.as_str())
            .map(|c| c.workflow_step_id)
            .collect();
        let concurrent_of: HashMap<i64, bool> =
            chosen.iter().map(|c| (c.task_id, c.concurrent)).collect();

        let mut transitions = Vec::with_capacity(claimed.len() + from_error.len());
        let mut events = Vec::with_capacity(transitions.capacity() + 4);
        for (id, task_id, name, attempts, _, _) in &claimed {
            let metadata = serde_json::json!({ "attempt": attempts, "worker": owner });
            if from_error.contains(id) {
                transitions.push(TransitionRow::new(*id, Some("error"), "pending", "{}"));
                events.push(EventRecord::step(
                    *task_id,
                    *id,
                    name,
                    Some(StepState::Error),
                    StepState::Pending,
                    serde_json::Value::Null,
                ));
            }
            transitions.push(TransitionRow::new(
                *id,
                Some("pending"),
                "in_progress",
                &metadata.to_string(),
            ));
            events.push(EventRecord::step(
                *task_id,
                *id,
                name,
                Some(StepState::Pending),
                StepState::InProgress,
                metadata,
            ));
        }
        record_step_transitions(c, &transitions)?;

        let task_ids: Vec<i64> = claimed
            .iter()
            .map(|r| r.1)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let started: Vec<i64> = diesel::update(tasker_tasks::table)
            .filter(tasker_tasks::task_id.eq_any(&task_ids))
            .filter(tasker_tasks::state.eq(TaskState::Pending.as_str()))
            .set((
                tasker_tasks::state.eq(TaskState::InProgress.as_str()),
                tasker_tasks::updated_at.eq(now()),
            ))
            .returning(tasker_tasks::task_id)
            .get_results(c)?;
        let task_transitions: Vec<TransitionRow> = started
            .iter()
            .map(|id| TransitionRow::new(*id, Some("pending"), "in_progress", "{}"))
            .collect();
        record_task_transitions(c, &task_transitions)?;
        for id in &started {
            events.push(EventRecord::task(
                *id,
                Some(TaskState::Pending),
                TaskState::InProgress,
                serde_json::Value::Null,
            ));
        }

        let contexts: Vec<(i64, i64, String, Option<String>)> = tasker_tasks::table
            .filter(tasker_tasks::task_id.eq_any(&task_ids))
            .select((
                tasker_tasks::task_id,
                tasker_tasks::named_task_id,
                tasker_tasks::context,
                tasker_tasks::correlation_id,
            ))
            .load(c)?;
        let mut correlations = HashMap::with_capacity(contexts.len());
        let contexts: HashMap<i64, (i64, String)> = contexts
            .into_iter()
            .map(|(id, named, ctx, correlation)| {
                if let Some(correlation) = correlation {
                    correlations.insert(id, correlation);
                }
                (id, (named, ctx))
            })
            .collect();
        for event in &mut events {
            event.correlation_id = correlations.get(&event.task_id).cloned();
        }
        let parents = parent_results(c, &step_ids)?;

        let mut out = Vec::with_capacity(claimed.len());
        for (id, task_id, name, attempts, retryable, retry_limit) in claimed {
            let (named_task_id, context) = contexts.get(&task_id).cloned().unwrap_or_default();
            out.push(ClaimedStep {
                step_id: id,
                task_id,
                named_task_id,
                name,
                attempt: attempts,
                retryable,
                retry_limit,
                concurrent: concurrent_of.get(&task_id).copied().unwrap_or(true),
                context,
                parents: parents.get(&id).cloned().unwrap_or_default(),
            });
        }
        Ok((out, events))
    })
}

/// The results of the parents of each step, keyed by child id then parent name.
fn parent_results(c: &mut Conn, step_ids: &[i64]) -> Result<HashMap<i64, ParentResults>> {
    let rows: Vec<(i64, String, Option<String>)> = tasker_workflow_step_edges::table
        .inner_join(tasker_workflow_steps::table.on(
            tasker_workflow_steps::workflow_step_id.eq(tasker_workflow_step_edges::from_step_id),
        ))
        .filter(tasker_workflow_step_edges::to_step_id.eq_any(step_ids))
        .select((
            tasker_workflow_step_edges::to_step_id,
            tasker_workflow_steps::name,
            tasker_workflow_steps::results,
        ))
        .load(c)?;
    let mut out: HashMap<i64, Vec<(String, Option<String>)>> = HashMap::new();
    for (child, name, results) in rows {
        out.entry(child).or_default().push((name, results));
    }
    Ok(out)
}

/// Records the outcomes of finished attempts in one transaction, fenced on
/// (`lease_owner`, `attempts`): an outcome whose attempt no longer owns the step is rejected.
///
/// Steps made ready are announced to other processes (`NOTIFY`) only when there are more of
/// them than `takes_locally`, the number the caller's own worker is about to claim: a worker
/// that completes a step usually runs its children itself, and waking every other process for
/// them makes each run an empty claim. Polling still finds anything left.
pub(crate) fn complete(
    c: &mut Conn,
    outcomes: &[Outcome],
    takes_locally: usize,
) -> Result<(Vec<CompletionOutcome>, Vec<EventRecord>)> {
    if outcomes.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    <Conn as Dialect>::write(c, |c| {
        let mut results = Vec::with_capacity(outcomes.len());
        let mut transitions = Vec::with_capacity(outcomes.len());
        let mut events = Vec::with_capacity(outcomes.len() + 2);
        let mut succeeded = Vec::new();
        let mut serial_steps = Vec::new();
        let mut tasks = BTreeSet::new();
        // Whether a failure made its step ready again at once, which other workers must hear.
        let mut ready_now = false;
        let accepted = complete_successes(c, outcomes)?;
        for o in outcomes {
            if o.result.is_ok() && !accepted.contains(&(o.step_id, o.attempt)) {
                results.push(CompletionOutcome::Stale);
                continue;
            }
            let fenced = tasker_workflow_steps::table
                .filter(tasker_workflow_steps::workflow_step_id.eq(o.step_id))
                .filter(tasker_workflow_steps::state.eq(StepState::InProgress.as_str()))
                .filter(tasker_workflow_steps::lease_owner.eq(&o.owner))
                .filter(tasker_workflow_steps::attempts.eq(o.attempt));
            let updated = match &o.result {
                Ok(_) => 1,
                Err(failure) => {
                    let ready_at = match failure.retry_in {
                        // A step recovered from a dead worker keeps its place in the queue
                        // (its `ready_at`, kept through the claim) instead of going behind
                        // newer work.
                        Some(delay) if delay.is_zero() && failure.reason == "lease_expired" => {
                            sql::<Nullable<Timestamp>>(&format!(
                                "COALESCE(ready_at, {})",
                                <Conn as Dialect>::NOW
                            ))
                        }
                        Some(delay) => now_plus_nullable(delay.as_secs_f64()),
                        None => sql::<Nullable<Timestamp>>("NULL"),
                    };
                    if failure.retry_in.is_some_and(|d| d.is_zero()) {
                        ready_now = true;
                    }
                    diesel::update(fenced)
                        .set((
                            tasker_workflow_steps::state.eq(StepState::Error.as_str()),
                            tasker_workflow_steps::results.eq(&failure.error_json),
                            tasker_workflow_steps::ready_at.eq(ready_at),
                            tasker_workflow_steps::backoff_request_seconds
                                .eq(failure.retry_in.map(|d| d.as_secs_f64().ceil() as i32)),
                            tasker_workflow_steps::in_process.eq(false),
                            tasker_workflow_steps::lease_owner.eq(None::<String>),
                            tasker_workflow_steps::lease_expires_at
                                .eq(None::<chrono::NaiveDateTime>),
                            tasker_workflow_steps::updated_at.eq(now()),
                        ))
                        .execute(c)?
                }
            };
            if updated == 0 {
                results.push(CompletionOutcome::Stale);
                continue;
            }
            results.push(CompletionOutcome::Recorded);
            tasks.insert(o.task_id);
            if !o.concurrent {
                serial_steps.push(o.step_id);
            }
            match &o.result {
                Ok(_) => {
                    succeeded.push(o.step_id);
                    let metadata =
                        serde_json::json!({ "attempt": o.attempt, "duration_ms": o.duration_ms });
                    transitions.push(TransitionRow::new(
                        o.step_id,
                        Some("in_progress"),
                        "complete",
                        &metadata.to_string(),
                    ));
                    events.push(EventRecord::step(
                        o.task_id,
                        o.step_id,
                        &o.name,
                        Some(StepState::InProgress),
                        StepState::Complete,
                        metadata,
                    ));
                }
                Err(failure) => {
                    let metadata = failure.metadata(o.attempt, o.duration_ms);
                    transitions.push(TransitionRow::new(
                        o.step_id,
                        Some("in_progress"),
                        "error",
                        &metadata.to_string(),
                    ));
                    events.push(EventRecord::step(
                        o.task_id,
                        o.step_id,
                        &o.name,
                        Some(StepState::InProgress),
                        StepState::Error,
                        metadata,
                    ));
                }
            }
        }
        record_step_transitions(c, &transitions)?;
        release_serial(c, &serial_steps)?;
        let became_ready = if succeeded.is_empty() {
            0
        } else {
            decrement_children(c, &succeeded)?
        };
        if became_ready > takes_locally || ready_now {
            <Conn as Dialect>::notify_ready(c)?;
        }
        let tasks: Vec<i64> = tasks.into_iter().collect();
        events.extend(finalize_tasks(c, &tasks)?);
        Ok((results, events))
    })
}

#[derive(QueryableByName)]
struct StepAttemptRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    workflow_step_id: i64,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
}

/// A SQL string literal. Both backends read standard strings (every PostgreSQL session of the
/// pool sets `standard_conforming_strings`), where only `'` needs doubling; JSON text from serde
/// holds no NUL.
fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Records every successful outcome of a batch in one statement, fenced per step on
/// (`lease_owner`, `attempts`); returns the (step, attempt) pairs it recorded.
fn complete_successes(c: &mut Conn, outcomes: &[Outcome]) -> Result<HashSet<(i64, i32)>> {
    let mut accepted = HashSet::new();
    let successes: Vec<(&Outcome, &String)> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().map(|json| (o, json)))
        .collect();
    let now = <Conn as Dialect>::NOW;
    for chunk in successes.chunks(256) {
        let values = chunk
            .iter()
            .map(|(o, json)| {
                format!(
                    "({}, {}, {}, {})",
                    o.step_id,
                    sql_text(&o.owner),
                    o.attempt,
                    sql_text(json)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        // The id list lets both planners find the rows by primary key, whatever the history.
        let ids = chunk
            .iter()
            .map(|(o, _)| o.step_id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let fence = "v.id = tasker_workflow_steps.workflow_step_id \
                     AND v.owner = tasker_workflow_steps.lease_owner \
                     AND v.attempt = tasker_workflow_steps.attempts";
        let rows: Vec<StepAttemptRow> = diesel::sql_query(format!(
            "WITH v(id, owner, attempt, results) AS (VALUES {values}) \
             UPDATE tasker_workflow_steps SET state = 'complete', \
               results = (SELECT v.results FROM v WHERE {fence}), \
               processed = TRUE, processed_at = {now}, in_process = FALSE, lease_owner = NULL, \
               lease_expires_at = NULL, ready_at = NULL, updated_at = {now} \
             WHERE workflow_step_id IN ({ids}) AND state = 'in_progress' \
               AND EXISTS (SELECT 1 FROM v WHERE {fence}) \
             RETURNING workflow_step_id, attempts"
        ))
        .load(c)?;
        accepted.extend(rows.into_iter().map(|r| (r.workflow_step_id, r.attempts)));
    }
    Ok(accepted)
}

fn release_serial(c: &mut Conn, step_ids: &[i64]) -> Result<()> {
    if !step_ids.is_empty() {
        diesel::update(tasker_tasks::table)
            .filter(tasker_tasks::running_step_id.eq_any(step_ids))
            .set(tasker_tasks::running_step_id.eq(None::<i64>))
            .execute(c)?;
    }
    Ok(())
}

/// Counts one satisfied parent for each child of `parents`; children whose last parent this was
/// become ready now. Returns how many children became ready.
fn decrement_children(c: &mut Conn, parents: &[i64]) -> Result<usize> {
    let list = parents
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let now = <Conn as Dialect>::NOW;
    // Counting edges (not children) handles two parents of one child finishing together.
    diesel::sql_query(format!(
        "UPDATE tasker_workflow_steps SET remaining_parents = remaining_parents - \
           (SELECT COUNT(*) FROM tasker_workflow_step_edges e \
             WHERE e.to_step_id = tasker_workflow_steps.workflow_step_id AND e.from_step_id IN ({list})), \
           updated_at = {now} \
         WHERE workflow_step_id IN (SELECT to_step_id FROM tasker_workflow_step_edges WHERE from_step_id IN ({list}))"
    ))
    .execute(c)?;
    let ready = diesel::sql_query(format!(
        "UPDATE tasker_workflow_steps SET ready_at = {now} \
         WHERE remaining_parents = 0 AND state = 'pending' AND ready_at IS NULL \
           AND workflow_step_id IN (SELECT to_step_id FROM tasker_workflow_step_edges WHERE from_step_id IN ({list}))"
    ))
    .execute(c)?;
    Ok(ready)
}

#[derive(QueryableByName)]
struct CountsRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    task_id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    total: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    done: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    running: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    runnable: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    failed: i64,
}

fn task_counts(c: &mut Conn, task_ids: &[i64]) -> Result<Vec<TaskCounts>> {
    let list = task_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let rows: Vec<CountsRow> = diesel::sql_query(format!(
        "SELECT task_id, COUNT(*) AS total, \
           SUM(CASE WHEN state IN ('complete', 'resolved_manually') THEN 1 ELSE 0 END) AS done, \
           SUM(CASE WHEN state = 'in_progress' THEN 1 ELSE 0 END) AS running, \
           SUM(CASE WHEN state IN ('pending', 'error') AND remaining_parents = 0 AND ready_at IS NOT NULL THEN 1 ELSE 0 END) AS runnable, \
           SUM(CASE WHEN (state = 'error' AND ready_at IS NULL) OR state = 'cancelled' THEN 1 ELSE 0 END) AS failed \
         FROM tasker_workflow_steps WHERE task_id IN ({list}) GROUP BY task_id"
    ))
    .load(c)?;
    Ok(rows
        .into_iter()
        .map(|r| TaskCounts {
            task_id: r.task_id,
            total: r.total,
            done: r.done,
            running: r.running,
            runnable: r.runnable,
            failed: r.failed,
        })
        .collect())
}

/// Moves each task to the state its steps call for (the seed's execution-status rule):
/// all steps done → `complete`; nothing running or runnable and a step failed for good → `error`;
/// runnable work in an errored task → back to `pending`.
pub(crate) fn finalize_tasks(c: &mut Conn, task_ids: &[i64]) -> Result<Vec<EventRecord>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    let states: Vec<(i64, String)> = tasker_tasks::table
        .filter(tasker_tasks::task_id.eq_any(task_ids))
        .select((tasker_tasks::task_id, tasker_tasks::state))
        .load(c)?;
    let states: HashMap<i64, TaskState> = states
        .into_iter()
        .filter_map(|(id, s)| s.parse().ok().map(|s| (id, s)))
        .collect();
    let mut transitions = Vec::new();
    let mut events = Vec::new();
    let mut moved: std::collections::BTreeMap<&'static str, Vec<i64>> = Default::default();
    for counts in task_counts(c, task_ids)? {
        let Some(&current) = states.get(&counts.task_id) else {
            continue;
        };
        let path: &[TaskState] = match (current, counts.status()) {
            (TaskState::InProgress, TaskStatus::AllComplete) => &[TaskState::Complete],
            (TaskState::Pending, TaskStatus::AllComplete) => {
                &[TaskState::InProgress, TaskState::Complete]
            }
            (TaskState::Error, TaskStatus::AllComplete) => &[
                TaskState::Pending,
                TaskState::InProgress,
                TaskState::Complete,
            ],
            (TaskState::InProgress | TaskState::Pending, TaskStatus::BlockedByFailures) => {
                &[TaskState::Error]
            }
            (TaskState::Error, TaskStatus::Runnable) => &[TaskState::Pending],
            _ => &[],
        };
        let mut from = current;
        for &to in path {
            transitions.push(TransitionRow::new(
                counts.task_id,
                Some(from.as_str()),
                to.as_str(),
                "{}",
            ));
            events.push(EventRecord::task(
                counts.task_id,
                Some(from),
                to,
                serde_json::Value::Null,
            ));
            from = to;
        }
        if from != current {
            moved.entry(from.as_str()).or_default().push(counts.task_id);
        }
    }
    // One statement per state entered, not per task: a batch usually completes several.
    for (state, ids) in moved {
        diesel::update(tasker_tasks::table.filter(tasker_tasks::task_id.eq_any(&ids)))
            .set((
                tasker_tasks::state.eq(state),
                tasker_tasks::complete.eq(state == TaskState::Complete.as_str()),
                tasker_tasks::updated_at.eq(now()),
            ))
            .execute(c)?;
    }
    record_task_transitions(c, &transitions)?;
    Ok(events)
}

use crate::store::TaskStatus;

/// Extends the leases of the given steps while `owner` still holds them; returns the steps it
/// extended.
pub(crate) fn heartbeat(
    c: &mut Conn,
    owner: &str,
    step_ids: &[i64],
    lease_seconds: f64,
) -> Result<HashSet<i64>> {
    Ok(diesel::update(tasker_workflow_steps::table)
        .filter(tasker_workflow_steps::workflow_step_id.eq_any(step_ids))
        .filter(tasker_workflow_steps::lease_owner.eq(owner))
        .filter(tasker_workflow_steps::state.eq(StepState::InProgress.as_str()))
        .set(tasker_workflow_steps::lease_expires_at.eq(now_plus_nullable(lease_seconds)))
        .returning(tasker_workflow_steps::workflow_step_id)
        .get_results::<i64>(c)?
        .into_iter()
        .collect())
}

/// id, task, name, attempts, owner, retryable, retry_limit.
type ExpiredTuple = (i64, i64, String, i32, Option<String>, bool, i32);

/// Steps whose lease has expired, as outcomes-to-be: (id, task, name, attempt, owner, retryable,
/// retry_limit, concurrent).
pub(crate) fn expired_leases(c: &mut Conn, limit: usize) -> Result<Vec<StepRow>> {
    let rows: Vec<ExpiredTuple> = tasker_workflow_steps::table
        .filter(tasker_workflow_steps::state.eq(StepState::InProgress.as_str()))
        .filter(tasker_workflow_steps::lease_expires_at.lt(now_plus_nullable(0.0)))
        .order(tasker_workflow_steps::lease_expires_at.asc())
        .limit(limit as i64)
        .select((
            tasker_workflow_steps::workflow_step_id,
            tasker_workflow_steps::task_id,
            tasker_workflow_steps::name,
            tasker_workflow_steps::attempts,
            tasker_workflow_steps::lease_owner,
            tasker_workflow_steps::retryable,
            tasker_workflow_steps::retry_limit,
        ))
        .load(c)?;
    let task_ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let concurrent: HashMap<i64, bool> = tasker_tasks::table
        .filter(tasker_tasks::task_id.eq_any(&task_ids))
        .select((tasker_tasks::task_id, tasker_tasks::concurrent))
        .load::<(i64, bool)>(c)?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(
            |(id, task_id, name, attempts, owner, retryable, retry_limit)| StepRow {
                step_id: id,
                task_id,
                name,
                attempts,
                owner: owner.unwrap_or_default(),
                retryable,
                retry_limit,
                concurrent: concurrent.get(&task_id).copied().unwrap_or(true),
            },
        )
        .collect())
}

/// Gives back steps `owner` claimed but will not run (shutdown): they become ready again at
/// once and the attempt is not counted.
pub(crate) fn release(c: &mut Conn, owner: &str, step_ids: &[i64]) -> Result<Vec<EventRecord>> {
    if step_ids.is_empty() {
        return Ok(Vec::new());
    }
    <Conn as Dialect>::write(c, |c| {
        let released: Vec<(i64, i64, String)> = diesel::update(tasker_workflow_steps::table)
            .filter(tasker_workflow_steps::workflow_step_id.eq_any(step_ids))
            .filter(tasker_workflow_steps::lease_owner.eq(owner))
            .filter(tasker_workflow_steps::state.eq(StepState::InProgress.as_str()))
            .set((
                tasker_workflow_steps::state.eq(StepState::Error.as_str()),
                tasker_workflow_steps::attempts.eq(tasker_workflow_steps::attempts - 1),
                tasker_workflow_steps::ready_at.eq(sql::<Nullable<Timestamp>>(&format!(
                    "COALESCE(ready_at, {})",
                    <Conn as Dialect>::NOW
                ))),
                tasker_workflow_steps::in_process.eq(false),
                tasker_workflow_steps::lease_owner.eq(None::<String>),
                tasker_workflow_steps::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
                tasker_workflow_steps::updated_at.eq(now()),
            ))
            .returning((
                tasker_workflow_steps::workflow_step_id,
                tasker_workflow_steps::task_id,
                tasker_workflow_steps::name,
            ))
            .get_results(c)?;
        let metadata = serde_json::json!({ "reason": "released", "worker": owner });
        let transitions: Vec<TransitionRow> = released
            .iter()
            .map(|(id, _, _)| {
                TransitionRow::new(*id, Some("in_progress"), "error", &metadata.to_string())
            })
            .collect();
        record_step_transitions(c, &transitions)?;
        let ids: Vec<i64> = released.iter().map(|r| r.0).collect();
        release_serial(c, &ids)?;
        <Conn as Dialect>::notify_ready(c)?;
        Ok(released
            .into_iter()
            .map(|(id, task_id, name)| {
                EventRecord::step(
                    task_id,
                    id,
                    &name,
                    Some(StepState::InProgress),
                    StepState::Error,
                    metadata.clone(),
                )
            })
            .collect())
    })
}

/// Cancels a task and its unfinished steps.
pub(crate) fn cancel_task(c: &mut Conn, task_id: i64) -> Result<Vec<EventRecord>> {
    <Conn as Dialect>::write(c, |c| {
        let current = task_state(c, task_id)?;
        if current == TaskState::Cancelled {
            return Ok(Vec::new());
        }
        check_task(task_id, current, TaskState::Cancelled)?;
        let mut events = vec![EventRecord::task(
            task_id,
            Some(current),
            TaskState::Cancelled,
            serde_json::Value::Null,
        )];
        diesel::update(tasker_tasks::table.filter(tasker_tasks::task_id.eq(task_id)))
            .set((
                tasker_tasks::state.eq(TaskState::Cancelled.as_str()),
                tasker_tasks::running_step_id.eq(None::<i64>),
                tasker_tasks::updated_at.eq(now()),
            ))
            .execute(c)?;
        record_task_transitions(
            c,
            &[TransitionRow::new(
                task_id,
                Some(current.as_str()),
                TaskState::Cancelled.as_str(),
                "{}",
            )],
        )?;
        let open: Vec<(i64, String, String)> = tasker_workflow_steps::table
            .filter(tasker_workflow_steps::task_id.eq(task_id))
            .filter(tasker_workflow_steps::state.eq_any(["pending", "in_progress", "error"]))
            .select((
                tasker_workflow_steps::workflow_step_id,
                tasker_workflow_steps::name,
                tasker_workflow_steps::state,
            ))
            .load(c)?;
        events.extend(cancel_open_steps(c, task_id, &open)?);
        Ok(events)
    })
}

/// Cancels `open` steps (id, name, state) of `task_id`: one update, and a transition and event
/// each; an errored step goes through `pending`, as `error → cancelled` is not allowed.
fn cancel_open_steps(
    c: &mut Conn,
    task_id: i64,
    open: &[(i64, String, String)],
) -> Result<Vec<EventRecord>> {
    let mut events = Vec::new();
    let ids: Vec<i64> = open.iter().map(|r| r.0).collect();
    diesel::update(
        tasker_workflow_steps::table.filter(tasker_workflow_steps::workflow_step_id.eq_any(&ids)),
    )
    .set((
        tasker_workflow_steps::state.eq(StepState::Cancelled.as_str()),
        tasker_workflow_steps::ready_at.eq(None::<chrono::NaiveDateTime>),
        tasker_workflow_steps::in_process.eq(false),
        tasker_workflow_steps::lease_owner.eq(None::<String>),
        tasker_workflow_steps::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
        tasker_workflow_steps::updated_at.eq(now()),
    ))
    .execute(c)?;
    let mut transitions = Vec::new();
    for (id, name, state) in open {
        let id = *id;
        let mut from: StepState = state.parse().unwrap_or(StepState::Pending);
        // `error → cancelled` is not an allowed step transition; go through `pending`.
        if from == StepState::Error {
            transitions.push(TransitionRow::new(id, Some("error"), "pending", "{}"));
            events.push(EventRecord::step(
                task_id,
                id,
                name,
                Some(from),
                StepState::Pending,
                serde_json::Value::Null,
            ));
            from = StepState::Pending;
        }
        transitions.push(TransitionRow::new(
            id,
            Some(from.as_str()),
            "cancelled",
            "{}",
        ));
        events.push(EventRecord::step(
            task_id,
            id,
            name,
            Some(from),
            StepState::Cancelled,
            serde_json::Value::Null,
        ));
    }
    record_step_transitions(c, &transitions)?;
    Ok(events)
}

/// Puts a task in `error` back to `pending` and re-arms its failed steps with a fresh retry
/// budget.
pub(crate) fn retry_task(c: &mut Conn, task_id: i64) -> Result<Vec<EventRecord>> {
    <Conn as Dialect>::write(c, |c| {
        let current = task_state(c, task_id)?;
        if current != TaskState::Error {
            return Err(Error::TaskTransitionRefused {
                task_id,
                from: current,
                to: TaskState::Pending,
            });
        }
        let failed: Vec<(i64, String, i32, i32)> = tasker_workflow_steps::table
            .filter(tasker_workflow_steps::task_id.eq(task_id))
            .filter(tasker_workflow_steps::state.eq(StepState::Error.as_str()))
            .select((
                tasker_workflow_steps::workflow_step_id,
                tasker_workflow_steps::name,
                tasker_workflow_steps::attempts,
                tasker_workflow_steps::retry_limit,
            ))
            .load(c)?;
        let mut events = vec![EventRecord::task(
            task_id,
            Some(current),
            TaskState::Pending,
            serde_json::Value::Null,
        )];
        let mut transitions = Vec::new();
        for (id, name, attempts, limit) in &failed {
            // The attempt counter stays monotonic (it is the fencing token), so a fresh budget
            // raises the limit instead of resetting the count.
            let new_limit = attempts + (*limit).max(1);
            diesel::update(
                tasker_workflow_steps::table.filter(tasker_workflow_steps::workflow_step_id.eq(id)),
            )
            .set((
                tasker_workflow_steps::state.eq(StepState::Pending.as_str()),
                tasker_workflow_steps::retry_limit.eq(new_limit),
                tasker_workflow_steps::ready_at.eq(now_plus_nullable(0.0)),
                tasker_workflow_steps::updated_at.eq(now()),
            ))
            .execute(c)?;
            let metadata = serde_json::json!({ "reason": "task_retry", "retry_limit": new_limit });
            transitions.push(TransitionRow::new(
                *id,
                Some("error"),
                "pending",
                &metadata.to_string(),
            ));
            events.push(EventRecord::step(
                task_id,
                *id,
                name,
                Some(StepState::Error),
                StepState::Pending,
                metadata,
            ));
        }
        record_step_transitions(c, &transitions)?;
        diesel::update(tasker_tasks::table.filter(tasker_tasks::task_id.eq(task_id)))
            .set((
                tasker_tasks::state.eq(TaskState::Pending.as_str()),
                tasker_tasks::updated_at.eq(now()),
            ))
            .execute(c)?;
        record_task_transitions(
            c,
            &[TransitionRow::new(task_id, Some("error"), "pending", "{}")],
        )?;
        <Conn as Dialect>::notify_ready(c)?;
        Ok(events)
    })
}

/// Cancels one step of `task_id` for good: its dependents never run and its task, unless
/// cancelled itself, goes to `error` (a cancelled step blocks it as a failure would). A running
/// attempt's late result is rejected by fencing. Returns no events when already cancelled.
pub(crate) fn cancel_step(c: &mut Conn, task_id: i64, step_id: i64) -> Result<Vec<EventRecord>> {
    <Conn as Dialect>::write(c, |c| {
        let (name, state): (String, String) = tasker_workflow_steps::table
            .filter(tasker_workflow_steps::workflow_step_id.eq(step_id))
            .filter(tasker_workflow_steps::task_id.eq(task_id))
            .select((tasker_workflow_steps::name, tasker_workflow_steps::state))
            .first(c)
            .optional()?
            .ok_or(Error::StepNotFound(step_id))?;
        let from: StepState = state.parse().unwrap_or(StepState::Pending);
        if from == StepState::Cancelled {
            return Ok(Vec::new());
        }
        // An errored step is cancelled through `pending`; finished steps cannot be cancelled.
        if from != StepState::Error {
            check_step(step_id, from, StepState::Cancelled)?;
        }
        let mut events = cancel_open_steps(c, task_id, &[(step_id, name, state)])?;
        release_serial(c, &[step_id])?;
        events.extend(finalize_tasks(c, &[task_id])?);
        Ok(events)
    })
}

/// Marks a pending or failed step as resolved by an operator, optionally with its result; its
/// children may then run and the task may complete.
pub(crate) fn resolve_step(
    c: &mut Conn,
    step_id: i64,
    results: Option<&str>,
) -> Result<Vec<EventRecord>> {
    <Conn as Dialect>::write(c, |c| {
        let (task_id, name, state): (i64, String, String) = tasker_workflow_steps::table
            .filter(tasker_workflow_steps::workflow_step_id.eq(step_id))
            .select((
                tasker_workflow_steps::task_id,
                tasker_workflow_steps::name,
                tasker_workflow_steps::state,
            ))
            .first(c)
            .optional()?
            .ok_or(Error::StepNotFound(step_id))?;
        let from: StepState = state.parse().unwrap_or(StepState::Pending);
        if from == StepState::ResolvedManually {
            return Ok(Vec::new());
        }
        check_step(step_id, from, StepState::ResolvedManually)?;
        let task = task_state(c, task_id)?;
        if task == TaskState::Cancelled {
            return Err(Error::TaskTransitionRefused {
                task_id,
                from: task,
                to: TaskState::InProgress,
            });
        }
        diesel::update(
            tasker_workflow_steps::table
                .filter(tasker_workflow_steps::workflow_step_id.eq(step_id)),
        )
        .set((
            tasker_workflow_steps::state.eq(StepState::ResolvedManually.as_str()),
            tasker_workflow_steps::results.eq(results),
            tasker_workflow_steps::ready_at.eq(None::<chrono::NaiveDateTime>),
            tasker_workflow_steps::processed.eq(true),
            tasker_workflow_steps::processed_at.eq(now_plus_nullable(0.0)),
            tasker_workflow_steps::updated_at.eq(now()),
        ))
        .execute(c)?;
        record_step_transitions(
            c,
            &[TransitionRow::new(
                step_id,
                Some(from.as_str()),
                "resolved_manually",
                "{}",
            )],
        )?;
        let mut events = vec![EventRecord::step(
            task_id,
            step_id,
            &name,
            Some(from),
            StepState::ResolvedManually,
            serde_json::Value::Null,
        )];
        decrement_children(c, &[step_id])?;
        events.extend(finalize_tasks(c, &[task_id])?);
        <Conn as Dialect>::notify_ready(c)?;
        Ok(events)
    })
}

fn check_task(task_id: i64, from: TaskState, to: TaskState) -> Result<()> {
    match from.check(to) {
        crate::state::Transition::Allowed => Ok(()),
        _ => Err(Error::TaskTransitionRefused { task_id, from, to }),
    }
}

fn check_step(step_id: i64, from: StepState, to: StepState) -> Result<()> {
    match from.check(to) {
        crate::state::Transition::Allowed => Ok(()),
        _ => Err(Error::StepTransitionRefused { step_id, from, to }),
    }
}

fn task_state(c: &mut Conn, task_id: i64) -> Result<TaskState> {
    let state: String = tasker_tasks::table
        .filter(tasker_tasks::task_id.eq(task_id))
        .select(tasker_tasks::state)
        .first(c)
        .optional()?
        .ok_or(Error::TaskNotFound(task_id))?;
    Ok(state.parse().unwrap_or(TaskState::Pending))
}

/// The columns of a [`TaskRow`], over tasks joined with their named task and namespace.
macro_rules! task_columns {
    () => {
        (
            tasker_tasks::task_id,
            tasker_task_namespaces::name,
            tasker_named_tasks::name,
            tasker_named_tasks::version,
            tasker_tasks::state,
            tasker_tasks::context,
            tasker_tasks::initiator,
            tasker_tasks::source_system,
            tasker_tasks::reason,
            tasker_tasks::tags,
            tasker_tasks::bypass_steps,
            tasker_tasks::priority,
            tasker_tasks::idempotency_key,
            tasker_tasks::requested_at,
            tasker_tasks::created_at,
            tasker_tasks::updated_at,
        )
    };
}

/// One task with its template's identity.
pub(crate) fn load_task(c: &mut Conn, task_id: i64) -> Result<TaskRow> {
    let row = tasker_tasks::table
        .inner_join(tasker_named_tasks::table.inner_join(tasker_task_namespaces::table))
        .filter(tasker_tasks::task_id.eq(task_id))
        .select(task_columns!())
        .first(c)
        .optional()?
        .ok_or(Error::TaskNotFound(task_id))?;
    Ok(TaskRow::from_tuple(row))
}

/// The configuration (template JSON) of every stored named task.
pub(crate) fn load_templates(c: &mut Conn) -> Result<Vec<String>> {
    let rows: Vec<Option<String>> = tasker_named_tasks::table
        .order(tasker_named_tasks::named_task_id.asc())
        .select(tasker_named_tasks::configuration)
        .load(c)?;
    Ok(rows.into_iter().flatten().collect())
}

/// Tasks matching `filter`, newest first.
pub(crate) fn list_tasks(c: &mut Conn, filter: &crate::store::TaskFilter) -> Result<Vec<TaskRow>> {
    let mut query = tasker_tasks::table
        .inner_join(tasker_named_tasks::table.inner_join(tasker_task_namespaces::table))
        .select(task_columns!())
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
        query = query.filter(tasker_tasks::state.eq(state.as_str()));
    }
    use crate::store::TaskSort;
    query = match (filter.sort, filter.ascending) {
        (TaskSort::Id, false) => query.order(tasker_tasks::task_id.desc()),
        (TaskSort::Id, true) => query.order(tasker_tasks::task_id.asc()),
        (TaskSort::RequestedAt, false) => query.order((
            tasker_tasks::requested_at.desc(),
            tasker_tasks::task_id.desc(),
        )),
        (TaskSort::RequestedAt, true) => query.order((
            tasker_tasks::requested_at.asc(),
            tasker_tasks::task_id.asc(),
        )),
        (TaskSort::CreatedAt, false) => query.order((
            tasker_tasks::created_at.desc(),
            tasker_tasks::task_id.desc(),
        )),
        (TaskSort::CreatedAt, true) => {
            query.order((tasker_tasks::created_at.asc(), tasker_tasks::task_id.asc()))
        }
        (TaskSort::Priority, false) => {
            query.order((tasker_tasks::priority.desc(), tasker_tasks::task_id.desc()))
        }
        (TaskSort::Priority, true) => {
            query.order((tasker_tasks::priority.asc(), tasker_tasks::task_id.asc()))
        }
    };
    let rows = query
        .limit(filter.limit.clamp(1, crate::store::MAX_LIST_LIMIT) as i64)
        .offset(filter.offset.min(i64::MAX as u64) as i64)
        .load(c)?;
    Ok(rows.into_iter().map(TaskRow::from_tuple).collect())
}

/// The correlation ids of `task_ids` (tasks created before correlation ids have none).
pub(crate) fn load_correlations(c: &mut Conn, task_ids: &[i64]) -> Result<HashMap<i64, String>> {
    let rows: Vec<(i64, Option<String>)> = tasker_tasks::table
        .filter(tasker_tasks::task_id.eq_any(task_ids))
        .select((tasker_tasks::task_id, tasker_tasks::correlation_id))
        .load(c)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, correlation)| Some((id, correlation?)))
        .collect())
}

/// Records the custom events this program declares (name, description).
pub(crate) fn sync_custom_events(c: &mut Conn, events: &[(String, String)]) -> Result<()> {
    for (name, description) in events {
        diesel::insert_into(tasker_custom_events::table)
            .values((
                tasker_custom_events::name.eq(name),
                tasker_custom_events::description.eq(description),
            ))
            .on_conflict(tasker_custom_events::name)
            .do_update()
            .set((
                tasker_custom_events::description.eq(description),
                tasker_custom_events::updated_at.eq(now()),
            ))
            .execute(c)?;
    }
    Ok(())
}

/// Every custom event any worker declared, by name.
pub(crate) fn list_custom_events(c: &mut Conn) -> Result<Vec<(String, Option<String>)>> {
    Ok(tasker_custom_events::table
        .order(tasker_custom_events::name.asc())
        .select((
            tasker_custom_events::name,
            tasker_custom_events::description,
        ))
        .load(c)?)
}

/// How many steps are ready to run now, and how long (seconds, database clock) the oldest has
/// been waiting.
pub(crate) fn ready_stats(c: &mut Conn) -> Result<(i64, Option<f64>)> {
    let ready = tasker_workflow_steps::table
        .filter(tasker_workflow_steps::state.eq_any(["pending", "error"]))
        .filter(tasker_workflow_steps::remaining_parents.eq(0))
        .filter(tasker_workflow_steps::lease_owner.is_null())
        .filter(tasker_workflow_steps::ready_at.le(now_plus_nullable(0.0)));
    let count: i64 = ready.clone().count().get_result(c)?;
    let oldest: Option<chrono::NaiveDateTime> = ready
        .select(diesel::dsl::min(tasker_workflow_steps::ready_at))
        .first(c)?;
    let age = match oldest {
        Some(oldest) => {
            let now: chrono::NaiveDateTime = diesel::select(now()).first(c)?;
            Some((now - oldest).num_milliseconds().max(0) as f64 / 1000.0)
        }
        None => None,
    };
    Ok((count, age))
}

/// The dependency edges of a task's steps, as `(parent, child)` step ids.
pub(crate) fn load_edges(c: &mut Conn, task_id: i64) -> Result<Vec<(i64, i64)>> {
    let steps = tasker_workflow_steps::table
        .filter(tasker_workflow_steps::task_id.eq(task_id))
        .select(tasker_workflow_steps::workflow_step_id);
    Ok(tasker_workflow_step_edges::table
        .filter(tasker_workflow_step_edges::to_step_id.eq_any(steps))
        .order(tasker_workflow_step_edges::id.asc())
        .select((
            tasker_workflow_step_edges::from_step_id,
            tasker_workflow_step_edges::to_step_id,
        ))
        .load(c)?)
}

/// Changes a task's reason and tags (the only fields an update may change); `false` when there
/// is no such task.
pub(crate) fn update_task(
    c: &mut Conn,
    task_id: i64,
    reason: Option<&str>,
    tags: Option<&str>,
) -> Result<bool> {
    let target = tasker_tasks::table.filter(tasker_tasks::task_id.eq(task_id));
    let updated = match (reason, tags) {
        (Some(reason), Some(tags)) => diesel::update(target)
            .set((
                tasker_tasks::reason.eq(reason),
                tasker_tasks::tags.eq(tags),
                tasker_tasks::updated_at.eq(now()),
            ))
            .execute(c)?,
        (Some(reason), None) => diesel::update(target)
            .set((
                tasker_tasks::reason.eq(reason),
                tasker_tasks::updated_at.eq(now()),
            ))
            .execute(c)?,
        (None, Some(tags)) => diesel::update(target)
            .set((
                tasker_tasks::tags.eq(tags),
                tasker_tasks::updated_at.eq(now()),
            ))
            .execute(c)?,
        (None, None) => target.count().get_result::<i64>(c)? as usize,
    };
    Ok(updated > 0)
}

/// Sets a step's retry limit; `false` when there is no such step in the task.
pub(crate) fn set_retry_limit(
    c: &mut Conn,
    task_id: i64,
    step_id: i64,
    limit: i32,
) -> Result<bool> {
    let updated = diesel::update(
        tasker_workflow_steps::table
            .filter(tasker_workflow_steps::workflow_step_id.eq(step_id))
            .filter(tasker_workflow_steps::task_id.eq(task_id)),
    )
    .set((
        tasker_workflow_steps::retry_limit.eq(limit),
        tasker_workflow_steps::updated_at.eq(now()),
    ))
    .execute(c)?;
    Ok(updated > 0)
}

/// Runs a trivial query.
pub(crate) fn ping(c: &mut Conn) -> Result<()> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1")).execute(c)?;
    Ok(())
}

/// How many tasks are in each state.
pub(crate) fn tasks_by_state(c: &mut Conn) -> Result<Vec<(TaskState, i64)>> {
    let rows: Vec<(String, i64)> = tasker_tasks::table
        .group_by(tasker_tasks::state)
        .select((tasker_tasks::state, diesel::dsl::count_star()))
        .load(c)?;
    Ok(rows
        .into_iter()
        .filter_map(|(state, count)| Some((state.parse().ok()?, count)))
        .collect())
}

/// The steps of a task, in creation order.
pub(crate) fn load_steps(c: &mut Conn, task_id: i64) -> Result<Vec<crate::store::StepTuple>> {
    Ok(tasker_workflow_steps::table
        .filter(tasker_workflow_steps::task_id.eq(task_id))
        .order(tasker_workflow_steps::workflow_step_id.asc())
        .select((
            tasker_workflow_steps::workflow_step_id,
            tasker_workflow_steps::task_id,
            tasker_workflow_steps::name,
            tasker_workflow_steps::state,
            tasker_workflow_steps::attempts,
            tasker_workflow_steps::retry_limit,
            tasker_workflow_steps::retryable,
            tasker_workflow_steps::skippable,
            tasker_workflow_steps::results,
            tasker_workflow_steps::remaining_parents,
            tasker_workflow_steps::ready_at,
            tasker_workflow_steps::lease_owner,
            tasker_workflow_steps::last_attempted_at,
            tasker_workflow_steps::processed_at,
        ))
        .load(c)?)
}

/// The transitions of one step (`true`) or task (`false`), oldest first.
pub(crate) fn load_transitions(
    c: &mut Conn,
    id: i64,
    step: bool,
) -> Result<Vec<crate::store::TransitionTuple>> {
    if step {
        Ok(tasker_workflow_step_transitions::table
            .filter(tasker_workflow_step_transitions::workflow_step_id.eq(id))
            .order(tasker_workflow_step_transitions::sort_key.asc())
            .select((
                tasker_workflow_step_transitions::from_state,
                tasker_workflow_step_transitions::to_state,
                tasker_workflow_step_transitions::metadata,
                tasker_workflow_step_transitions::sort_key,
                tasker_workflow_step_transitions::most_recent,
                tasker_workflow_step_transitions::created_at,
            ))
            .load(c)?)
    } else {
        Ok(tasker_task_transitions::table
            .filter(tasker_task_transitions::task_id.eq(id))
            .order(tasker_task_transitions::sort_key.asc())
            .select((
                tasker_task_transitions::from_state,
                tasker_task_transitions::to_state,
                tasker_task_transitions::metadata,
                tasker_task_transitions::sort_key,
                tasker_task_transitions::most_recent,
                tasker_task_transitions::created_at,
            ))
            .load(c)?)
    }
}
