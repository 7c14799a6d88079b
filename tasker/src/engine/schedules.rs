//! Schedules on the engine: keeping the declared ones stored, the run-time operations, and
//! firing due slots (each worker's duty, exactly once across all of them: `store/schedules.rs`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, Utc};

use super::{TaskRequest, Tasker, check_context};
use crate::error::{Error, Result};
use crate::model::NewTask;
use crate::registry::{Registry, TemplateKey};
use crate::schedule::{
    Schedule, ScheduleInfo, Timetable, catch_up_problem, schedule_name_problem, slot_key,
    trigger_key,
};
use crate::store::{Definition, Firing, ORIGIN_API, ORIGIN_TEMPLATE, ScheduleRow, Store};

/// How far ahead a schedule whose expression has no slot within its search window looks again.
const NO_SLOT_RECHECK_DAYS: i64 = 366;

/// Slots listed per schedule, the next one included.
const UPCOMING: usize = 5;

impl Tasker {
    /// Every schedule, by name, with its next runs.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let rows = self.inner.store.run(|store| store.schedules(None)).await?;
        Ok(rows.into_iter().map(info).collect())
    }

    /// The schedule `name`, with its next runs.
    pub async fn schedule(&self, name: &str) -> Result<ScheduleInfo> {
        storable(name)?;
        let name = name.to_owned();
        let row = self
            .inner
            .store
            .run(move |store| store.schedule(&name))
            .await?;
        Ok(info(row))
    }

    /// Registers (or replaces) a schedule at run time: from its next slot on, every worker that
    /// can run its template starts a task of it at each slot, exactly once across all of them.
    /// The template must be registered here and the context must satisfy its schema; a
    /// schedule declared with a template cannot be replaced this way.
    ///
    /// ```no_run
    /// # async fn run(tasker: tasker::Tasker) -> tasker::Result<()> {
    /// use tasker::Schedule;
    ///
    /// let nightly = Schedule::new("nightly-report", "report", "0 2 * * *")
    ///     .namespace("reports")
    ///     .version("1.0.0")
    ///     .time_zone("Europe/Berlin")
    ///     .context(serde_json::json!({ "region": "eu" }))
    ///     .catch_up(1);
    /// let stored = tasker.register_schedule(nightly).await?;
    /// println!("next run at {}", stored.next_run_at);
    /// # Ok(()) }
    /// ```
    pub async fn register_schedule(&self, schedule: Schedule) -> Result<ScheduleInfo> {
        let invalid = |field, problem| Error::InvalidField { field, problem };
        let request = TaskRequest::new(&schedule.task_name)
            .namespace(&schedule.namespace)
            .version(&schedule.version)
            .context(schedule.context.clone());
        let registered = self.find_template(&request)?;
        if let Some(problem) = schedule_name_problem(&schedule.name) {
            return Err(invalid("name", problem));
        }
        if let Some(problem) = catch_up_problem(schedule.catch_up) {
            return Err(invalid("catch_up", problem));
        }
        let timetable = Timetable::parse(&schedule.cron, &schedule.time_zone)
            .map_err(|(field, problem)| invalid(field, problem))?;
        let context = check_context(&request, registered, self.inner.config.max_context_bytes)?;
        let definition = Definition {
            name: schedule.name.clone(),
            namespace_name: schedule.namespace,
            task_name: schedule.task_name,
            version: schedule.version,
            cron: schedule.cron,
            time_zone: schedule.time_zone,
            context: Some(context),
            catch_up: i32::try_from(schedule.catch_up).unwrap_or(i32::MAX),
            origin: ORIGIN_API,
        };
        let name = schedule.name;
        self.inner
            .store
            .run(move |store| {
                let next = first_slot(&timetable, store.now()?)?;
                store.upsert_schedule(&definition, next)
            })
            .await?;
        self.schedule(&name).await
    }

    /// Deletes the schedule `name`; whether there was one. A schedule its template declares
    /// comes back when a process registering that template starts.
    pub async fn remove_schedule(&self, name: &str) -> Result<bool> {
        if storable(name).is_err() {
            return Ok(false);
        }
        let name = name.to_owned();
        self.inner
            .store
            .run(move |store| store.delete_schedule(&name))
            .await
    }

    /// Pauses the schedule `name`: no slot runs until it is resumed.
    pub async fn pause_schedule(&self, name: &str) -> Result<ScheduleInfo> {
        self.change_schedule(name, |store, name| {
            store.set_schedule_paused(name, true, None)
        })
        .await
    }

    /// Resumes the schedule `name` from its next slot: the slots that passed while it was paused
    /// do not run.
    pub async fn resume_schedule(&self, name: &str) -> Result<ScheduleInfo> {
        self.change_schedule(name, |store, name| {
            let timetable = timetable_of(&store.schedule(name)?)?;
            let next = first_slot(&timetable, store.now()?)?;
            store.set_schedule_paused(name, false, Some(next))
        })
        .await
    }

    /// Asks for a run of the schedule `name` now, outside its slots (paused or not): the next
    /// worker to look for due schedules starts it, once, within `max_poll_interval`, or
    /// [`Tasker::run_due_schedules`] here does at once. Asking again before it starts asks for
    /// the same run.
    pub async fn trigger_schedule(&self, name: &str) -> Result<ScheduleInfo> {
        self.change_schedule(name, |store, name| store.trigger_schedule(name))
            .await
    }

    /// Runs `change` on the schedule `name` (it answers whether there was one), then reads it.
    async fn change_schedule(
        &self,
        name: &str,
        change: impl FnOnce(&Store, &str) -> Result<bool> + Send + 'static,
    ) -> Result<ScheduleInfo> {
        storable(name)?;
        let owned = name.to_owned();
        self.inner
            .store
            .run(move |store| match change(store, &owned)? {
                true => Ok(()),
                false => Err(Error::ScheduleNotFound(owned)),
            })
            .await?;
        self.schedule(name).await
    }

    /// Starts the tasks of every due slot (and asked-for run) of the schedules this process can
    /// run, as each worker does every `max_poll_interval`; returns how many tasks it created.
    /// Safe to run in any number of processes at once: each slot runs once.
    pub async fn run_due_schedules(&self) -> Result<usize> {
        let (now, due) = self.inner.store.run(|store| store.due_schedules()).await?;
        let mut created = 0;
        for row in due {
            let name = row.name.clone();
            match self.fire(row, now).await {
                Ok(count) => created += count,
                Err(error) => tracing::warn!(schedule = %name, %error, "firing a schedule failed"),
            }
        }
        Ok(created)
    }

    /// Fires one due schedule read at `now`; how many tasks it created (none when another
    /// worker fired it first, or this process cannot run it).
    async fn fire(&self, row: ScheduleRow, now: NaiveDateTime) -> Result<usize> {
        let started = std::time::Instant::now();
        let registry = &self.inner.registry;
        if registry
            .find(&row.namespace_name, &row.task_name, &row.version)
            .is_none()
        {
            return Ok(0);
        }
        let built = registry.schedule_contexts.get(&row.name);
        if row.context.is_none() && built.is_none() {
            // Its contexts are built by code this process does not have.
            return Ok(0);
        }
        let timetable = timetable_of(&row)?;
        let mut runs: Vec<(DateTime<Utc>, String)> = Vec::new();
        let (mut next_run_at, mut skipped, mut last_slot_at) = (row.next_run_at, 0, None);
        if !row.paused && row.next_run_at <= now {
            let catch_up = u32::try_from(row.catch_up).unwrap_or(0);
            let due = timetable.due(row.next_run_at.and_utc(), now.and_utc(), catch_up);
            next_run_at = match due.next {
                Some(next) => next.naive_utc(),
                None => now + chrono::Duration::days(NO_SLOT_RECHECK_DAYS),
            };
            skipped = i64::try_from(due.skipped).unwrap_or(i64::MAX);
            last_slot_at = due.slots.last().map(DateTime::naive_utc);
            runs.extend(
                due.slots
                    .iter()
                    .map(|&slot| (slot, slot_key(&row.name, slot))),
            );
        }
        if let Some(asked) = row.trigger_at {
            runs.push((asked.and_utc(), trigger_key(&row.name, asked.and_utc())));
        }
        let mut tasks = Vec::new();
        let mut requests = Vec::new();
        let mut error = None;
        for (slot, key) in runs {
            let context = match built {
                Some(build) => build(slot),
                None => Ok(serde_json::from_str(
                    row.context.as_deref().unwrap_or("{}"),
                )?),
            };
            let request = context.map(|context| {
                TaskRequest::new(&row.task_name)
                    .namespace(&row.namespace_name)
                    .version(&row.version)
                    .context(context)
                    .idempotency_key(key)
                    .initiator("tasker")
                    .source_system("schedule")
                    .reason(format!("schedule {}", row.name))
                    .requested_at(slot)
            });
            match request.and_then(|request| Ok((self.prepare(&request)?, request))) {
                Ok((task, request)) => {
                    tasks.push(task);
                    requests.push(request);
                }
                Err(refused) => {
                    let at = slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    error = Some(format!("the run for {at} could not start: {refused}"));
                }
            }
        }
        let name = row.name.clone();
        let firing = Firing {
            schedule_id: row.schedule_id,
            read: row,
            tasks,
            next_run_at,
            skipped,
            last_slot_at,
            error,
        };
        let creating = self.inner.creations.read().await;
        let fired = self
            .write(move |store| {
                Ok(match store.fire_schedule(&firing)? {
                    Some((results, events)) => (Some(results), events),
                    None => (None, Vec::new()),
                })
            })
            .await?;
        let (results, events) = fired;
        self.publish(events);
        drop(creating);
        let Some(results) = results else {
            return Ok(0);
        };
        if skipped > 0 {
            metrics::counter!("tasker_schedule_missed_slots_total", "schedule" => name.clone())
                .increment(u64::try_from(skipped).unwrap_or(0));
            tracing::info!(schedule = %name, skipped, "missed schedule slots skipped");
        }
        let created: Vec<(&NewTask, &TaskRequest)> = results
            .iter()
            .zip(&requests)
            .filter_map(|(result, request)| result.as_ref().ok().map(|task| (task, request)))
            .filter(|(task, _)| !task.existing)
            .collect();
        for (task, request) in &created {
            self.emit_created(task, request, started.elapsed());
        }
        if !created.is_empty() {
            metrics::counter!("tasker_schedule_runs_total", "schedule" => name)
                .increment(created.len() as u64);
            self.inner.wake.notify_one();
        }
        Ok(created.len())
    }
}

/// Stores the schedules the templates registered here declare, and deletes the ones they no
/// longer do. Every process registering a template does this at start; an unchanged schedule
/// is not written.
pub(super) async fn sync_schedules(
    store: &Store,
    registry: &Registry,
    local: &HashSet<TemplateKey>,
    max_context_bytes: usize,
) -> Result<()> {
    let mut declared: Vec<(TemplateKey, Vec<(Definition, Timetable)>)> = Vec::new();
    let mut names: HashMap<String, TemplateKey> = HashMap::new();
    for (key, registered) in registry.registered() {
        if !local.contains(key) {
            continue;
        }
        let template = &registered.template;
        let mut definitions = Vec::new();
        for schedule in &template.schedules {
            let name = schedule.name_in(&template.namespace_name, &template.name);
            if let Some(other) = names.insert(name.clone(), key.clone()) {
                return Err(Error::InvalidField {
                    field: "schedules",
                    problem: format!("schedule `{name}` is declared by both {other} and {key}"),
                });
            }
            let timetable = Timetable::parse(&schedule.cron, &schedule.time_zone)
                .map_err(|(field, problem)| Error::InvalidField { field, problem })?;
            let built_in_code =
                schedule.built_in_code && registry.schedule_contexts.contains_key(&name);
            let context = if built_in_code {
                None
            } else {
                let declared = schedule
                    .context
                    .clone()
                    .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
                let request = TaskRequest::new(&template.name)
                    .namespace(&template.namespace_name)
                    .version(&template.version)
                    .context(declared);
                Some(check_context(&request, registered, max_context_bytes)?)
            };
            definitions.push((
                Definition {
                    name,
                    namespace_name: template.namespace_name.clone(),
                    task_name: template.name.clone(),
                    version: template.version.clone(),
                    cron: schedule.cron.clone(),
                    time_zone: schedule.time_zone.clone(),
                    context,
                    catch_up: i32::try_from(schedule.catch_up).unwrap_or(i32::MAX),
                    origin: ORIGIN_TEMPLATE,
                },
                timetable,
            ));
        }
        declared.push((key.clone(), definitions));
    }
    store
        .run(move |store| {
            let now = store.now()?;
            let timed = declared
                .into_iter()
                .map(|(key, definitions)| {
                    let definitions = definitions
                        .into_iter()
                        .map(|(definition, timetable)| {
                            Ok((definition, first_slot(&timetable, now)?))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok((key, definitions))
                })
                .collect::<Result<Vec<_>>>()?;
            store.sync_schedules(&timed)
        })
        .await
}

/// Refuses a name no schedule can have (too long, or holding a character a name may not, NUL
/// among them, which PostgreSQL would refuse to compare with) as not found.
fn storable(name: &str) -> Result<()> {
    match schedule_name_problem(name) {
        Some(_) => Err(Error::ScheduleNotFound(name.to_owned())),
        None => Ok(()),
    }
}

/// The first slot after `now`; refuses an expression with none in its search window.
fn first_slot(timetable: &Timetable, now: NaiveDateTime) -> Result<NaiveDateTime> {
    timetable
        .next_after(now.and_utc())
        .map(|at| at.naive_utc())
        .ok_or_else(|| Error::InvalidField {
            field: "cron",
            problem: "has no slot in the next five years".to_owned(),
        })
}

/// A stored schedule's timetable; one that no longer parses is corrupt data.
fn timetable_of(row: &ScheduleRow) -> Result<Timetable> {
    Timetable::parse(&row.cron, &row.time_zone).map_err(|(column, problem)| Error::CorruptData {
        table: "tasker_schedules",
        id: row.schedule_id,
        column,
        problem,
    })
}

/// The read model of a stored schedule.
fn info(row: ScheduleRow) -> ScheduleInfo {
    let upcoming = match Timetable::parse(&row.cron, &row.time_zone) {
        Ok(timetable) if !row.paused => {
            let next = row.next_run_at.and_utc();
            let mut slots = vec![next];
            slots.extend(timetable.upcoming(next, UPCOMING - 1));
            slots
        }
        _ => Vec::new(),
    };
    ScheduleInfo {
        name: row.name,
        namespace: row.namespace_name,
        task_name: row.task_name,
        version: row.version,
        cron: row.cron,
        time_zone: row.time_zone,
        context: row
            .context
            .and_then(|text| serde_json::from_str(&text).ok()),
        catch_up: u32::try_from(row.catch_up).unwrap_or(0),
        origin: row.origin,
        paused: row.paused,
        next_run_at: row.next_run_at.and_utc(),
        upcoming,
        trigger_pending: row.trigger_at.is_some(),
        last_slot_at: row.last_slot_at.map(|at| at.and_utc()),
        last_task_id: row.last_task_id,
        missed_slots: row.missed_slots,
        last_error: row.last_error,
        created_at: row.created_at.and_utc(),
        updated_at: row.updated_at.and_utc(),
    }
}
