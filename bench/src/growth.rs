//! Growth: what claiming and completing steps costs with little and with much in the tables
//! besides the work measured: finished history, or delayed tasks waiting for their time. The
//! backlog is copied in bulk SQL from one real task (a diamond that ran to the end, or a
//! one-step task delayed by a day), so every row (task, steps, edges, transitions) looks like
//! what the engine writes.

use std::time::{Duration, Instant};

use tasker::prelude::*;
use tasker::{Outcome, TemplateFilter};

use crate::probe::Probe;

/// What the tables hold besides the measured work.
#[derive(Clone, Copy)]
pub(crate) enum Backlog {
    /// About this many complete steps (diamond tasks that ran to the end, two days old).
    Finished(usize),
    /// This many one-step tasks delayed by a day.
    Future(usize),
    /// About this many complete steps, as `Finished`, pruned while the rounds run.
    Pruning(usize),
}

/// What one backlog measured (medians over the rounds).
pub(crate) struct Figures {
    /// Complete steps (finished history) or delayed tasks (future backlog) before the rounds.
    pub(crate) backlog: i64,
    /// Seconds spent copying the backlog and analysing the tables.
    pub(crate) seed_seconds: f64,
    /// Steps claimed and completed per second, in batches of 32, one claimer.
    pub(crate) claim_complete: f64,
    /// Tasks created per second, one creator.
    pub(crate) create: f64,
    /// Milliseconds for `Tasker::performance` plus `Tasker::bottlenecks` over the last hour,
    /// which holds one round's tasks (the history is two days old).
    pub(crate) analytics_ms: f64,
    /// With `Pruning`: the tasks pruned by the time the rounds ended, and whether the prune
    /// was still running then (so every round ran beside it).
    pub(crate) pruned: Option<(u64, bool)>,
}

/// The shape whose history is seeded and whose tasks are measured.
pub(crate) fn diamond() -> TaskTemplate {
    TaskTemplate::new("bench", "diamond4", "1.0.0")
        .step(StepTemplate::new("a", "noop"))
        .step(StepTemplate::new("b", "noop").depends_on(["a"]))
        .step(StepTemplate::new("c", "noop").depends_on(["a"]))
        .step(StepTemplate::new("d", "noop").depends_on(["b", "c"]))
}

fn request() -> TaskRequest {
    TaskRequest::new("diamond4")
        .namespace("bench")
        .version("1.0.0")
}

/// The one-step shape of the delayed backlog.
fn later() -> TaskTemplate {
    TaskTemplate::new("bench", "later", "1.0.0").step(StepTemplate::new("only", "noop"))
}

/// Seeds `backlog` into the empty database at `url`, then runs `rounds` rounds of `tasks`
/// diamond tasks: created one by one, then claimed and completed until done. Each round's
/// tasks are deleted after it, so every round sees the same backlog.
pub(crate) async fn measure(
    url: &str,
    sqlite: bool,
    backlog: Backlog,
    tasks: usize,
    rounds: usize,
) -> Result<Figures, String> {
    let template = diamond();
    let width = template.step_templates.len();
    let tasker = crate::engine(url, vec![template, later()], 16).await?;
    let mut probe = Probe::connect(url, sqlite)?;
    let (pattern, copies) = match backlog {
        Backlog::Finished(steps) | Backlog::Pruning(steps) => {
            let pattern = tasker
                .create_task(request())
                .await
                .map_err(|e| e.to_string())?;
            drain(&tasker, width).await?;
            (pattern.id, (steps / width).saturating_sub(1))
        }
        Backlog::Future(tasks) => {
            let delayed = TaskRequest::new("later")
                .namespace("bench")
                .version("1.0.0")
                .delay(Duration::from_secs(86_400));
            let pattern = tasker
                .create_task(delayed)
                .await
                .map_err(|e| e.to_string())?;
            (pattern.id, tasks.saturating_sub(1))
        }
    };
    let started = Instant::now();
    seed(&mut probe, pattern, copies)?;
    let seed_seconds = started.elapsed().as_secs_f64();
    let pruning = matches!(backlog, Backlog::Pruning(_));
    let backlog = probe.count(match backlog {
        Backlog::Finished(_) | Backlog::Pruning(_) => {
            "SELECT COUNT(*) AS n FROM tasker_workflow_steps WHERE state = 'complete'"
        }
        Backlog::Future(_) => "SELECT COUNT(*) AS n FROM tasker_tasks WHERE run_at IS NOT NULL",
    })?;
    let last_history = probe.count("SELECT MAX(task_id) AS n FROM tasker_tasks")?;
    // The history is two days old: a prune of what finished a day ago takes all of it and
    // none of the rounds' tasks.
    let pruner = pruning.then(|| {
        let tasker = tasker.clone();
        tokio::spawn(async move {
            tasker
                .prune(tasker::PruneOptions::older_than(Duration::from_secs(
                    86_400,
                )))
                .await
        })
    });
    let mut claim_complete = Vec::with_capacity(rounds);
    let mut create = Vec::with_capacity(rounds);
    let mut analytics = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..tasks {
            tasker
                .create_task(request())
                .await
                .map_err(|e| e.to_string())?;
        }
        create.push(tasks as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        drain(&tasker, tasks * width).await?;
        claim_complete.push((tasks * width) as f64 / start.elapsed().as_secs_f64());
        let hour = Duration::from_secs(3600);
        let start = Instant::now();
        tasker.performance(hour).await.map_err(|e| e.to_string())?;
        tasker
            .bottlenecks(hour, TemplateFilter::default(), 10)
            .await
            .map_err(|e| e.to_string())?;
        analytics.push(start.elapsed().as_secs_f64() * 1000.0);
        probe.batch(&format!(
            "DELETE FROM tasker_tasks WHERE task_id > {last_history}"
        ))?;
    }
    let pruned = match pruner {
        Some(pruner) => {
            let running = !pruner.is_finished();
            let left = probe.count(&format!(
                "SELECT COUNT(*) AS n FROM tasker_tasks WHERE task_id <= {last_history}"
            ))?;
            pruner
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Some(((last_history - left).max(0) as u64, running))
        }
        None => None,
    };
    Ok(Figures {
        pruned,
        backlog,
        seed_seconds,
        claim_complete: median(claim_complete),
        create: median(create),
        analytics_ms: median(analytics),
    })
}

/// Claims and completes (with a `null` result) until `steps` steps are done, as a worker does
/// with a claim batch of 32, minus the handlers.
async fn drain(tasker: &Tasker, steps: usize) -> Result<(), String> {
    const OWNER: &str = "bench-growth";
    let mut done = 0;
    let mut idle = 0;
    while done < steps {
        let claimed = tasker
            .claim_steps(OWNER, 32, Duration::from_secs(300))
            .await
            .map_err(|e| e.to_string())?;
        if claimed.is_empty() {
            // A child is ready as soon as its parent's completion commits; allow for a clock
            // tick on SQLite's millisecond timestamps.
            idle += 1;
            if idle > 1000 {
                return Err(format!("growth: {done} of {steps} steps done, none ready"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let outcomes = claimed
            .into_iter()
            .map(|s| Outcome {
                step_id: s.step_id,
                task_id: s.task_id,
                name: s.name,
                attempt: s.attempt,
                owner: OWNER.to_owned(),
                concurrent: s.concurrent,
                result: Ok("null".to_owned()),
                duration_ms: Some(0.0),
            })
            .collect::<Vec<_>>();
        done += outcomes.len();
        tasker
            .complete_steps(outcomes)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Copies the task `pattern` (with its steps, edges and transitions) `copies` times in one
/// transaction, then analyses the tables.
fn seed(probe: &mut Probe, pattern: i64, copies: usize) -> Result<(), String> {
    if copies == 0 {
        return Ok(());
    }
    let first = probe.count(&format!(
        "SELECT MIN(workflow_step_id) AS n FROM tasker_workflow_steps WHERE task_id = {pattern}"
    ))?;
    let last = probe.count(&format!(
        "SELECT MAX(workflow_step_id) AS n FROM tasker_workflow_steps WHERE task_id = {pattern}"
    ))?;
    let top_task = probe.count("SELECT MAX(task_id) AS n FROM tasker_tasks")?;
    let top_step = probe.count("SELECT MAX(workflow_step_id) AS n FROM tasker_workflow_steps")?;
    let width = last - first + 1;
    let series = if probe.is_sqlite() {
        format!(
            "(WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < {copies}) \
             SELECT k FROM s) g"
        )
    } else {
        format!("generate_series(1, {copies}) AS g(k)")
    };
    // Copy k of step `id` gets a fresh id after every existing one, in blocks of `width`.
    let step = |id: &str| format!("{top_step} + (g.k - 1) * {width} + ({id} - {first}) + 1");
    let steps_of_pattern = format!("BETWEEN {first} AND {last}");
    // History is two days old, so analytics over the last hour read none of it, and a prune
    // of what finished a day ago takes it all.
    let two_days_before = |column: &str| {
        if probe.is_sqlite() {
            format!("strftime('%Y-%m-%d %H:%M:%f', {column}, '-2 days')")
        } else {
            format!("{column} - interval '2 days'")
        }
    };
    let (created, updated) = (two_days_before("created_at"), two_days_before("updated_at"));
    let mut sql = String::from("BEGIN;\n");
    sql.push_str(&format!(
        "INSERT INTO tasker_tasks (task_id, named_task_id, state, complete, concurrent, \
           running_step_id, requested_at, initiator, source_system, reason, bypass_steps, tags, \
           context, identity_hash, idempotency_key, priority, created_at, updated_at, \
           correlation_id, run_at) \
         SELECT {top_task} + g.k, named_task_id, state, complete, concurrent, NULL, requested_at, \
           initiator, source_system, reason, bypass_steps, tags, context, 'history-' || g.k, \
           NULL, priority, {created}, {updated}, 'history-' || g.k, run_at \
         FROM {series} CROSS JOIN tasker_tasks t WHERE t.task_id = {pattern};\n"
    ));
    sql.push_str(&format!(
        "INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, name, \
           state, retryable, retry_limit, in_process, processed, processed_at, attempts, \
           last_attempted_at, backoff_request_seconds, results, skippable, \
           remaining_parents, ready_at, lease_owner, lease_expires_at, priority, created_at, \
           updated_at, scheduled_at) \
         SELECT {}, {top_task} + g.k, named_step_id, name, state, retryable, retry_limit, \
           in_process, processed, processed_at, attempts, last_attempted_at, \
           backoff_request_seconds, results, skippable, remaining_parents, ready_at, \
           lease_owner, lease_expires_at, priority, created_at, updated_at, scheduled_at \
         FROM {series} CROSS JOIN tasker_workflow_steps s \
         WHERE s.workflow_step_id {steps_of_pattern};\n",
        step("s.workflow_step_id"),
    ));
    sql.push_str(&format!(
        "INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, \
           updated_at) \
         SELECT {}, {}, name, created_at, updated_at \
         FROM {series} CROSS JOIN tasker_workflow_step_edges e \
         WHERE e.from_step_id {steps_of_pattern};\n",
        step("e.from_step_id"),
        step("e.to_step_id"),
    ));
    sql.push_str(&format!(
        "INSERT INTO tasker_workflow_step_transition_log (workflow_step_id, from_state, \
           to_state, metadata, sort_key, created_at, updated_at) \
         SELECT {}, from_state, to_state, metadata, sort_key, created_at, updated_at \
         FROM {series} CROSS JOIN tasker_workflow_step_transition_log t \
         WHERE t.workflow_step_id {steps_of_pattern};\n",
        step("t.workflow_step_id"),
    ));
    sql.push_str(&format!(
        "INSERT INTO tasker_task_transition_log (task_id, from_state, to_state, metadata, \
           sort_key, created_at, updated_at) \
         SELECT {top_task} + g.k, from_state, to_state, metadata, sort_key, created_at, \
           updated_at \
         FROM {series} CROSS JOIN tasker_task_transition_log t WHERE t.task_id = {pattern};\n"
    ));
    if !probe.is_sqlite() {
        // Explicit ids leave the sequences behind; the engine's next inserts must not collide.
        for (table, column) in [
            ("tasker_tasks", "task_id"),
            ("tasker_workflow_steps", "workflow_step_id"),
        ] {
            sql.push_str(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                   (SELECT MAX({column}) FROM {table}));\n"
            ));
        }
    }
    sql.push_str("COMMIT;\n");
    probe.batch(&sql)?;
    probe.batch(if probe.is_sqlite() {
        "ANALYZE"
    } else {
        "ANALYZE tasker_tasks, tasker_workflow_steps, tasker_workflow_step_edges, \
         tasker_workflow_step_transition_log, tasker_task_transition_log"
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
