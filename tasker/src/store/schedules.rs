//! Schedules: their rows, and firing one due slot exactly once.
//!
//! A slot runs exactly once across any number of workers by two guards, either of which would
//! do alone. The firing transaction locks the schedule's row (`SKIP LOCKED` on PostgreSQL, so a
//! second worker moves on; SQLite has one writer at a time), checks that `next_run_at` and
//! `trigger_at` are still what the worker read, creates the slots' tasks and moves
//! `next_run_at` past the clock before it commits. And each slot's task carries the idempotency
//! key `schedule:<name>:<slot>`, unique among tasks. A worker killed mid-way leaves nothing
//! committed, and the next worker to look fires the same slots.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::Conn;
use super::create::{PreparedTask, create_tasks};
use super::schema::tasker_schedules::dsl as s;
use crate::error::{Error, Result};
use crate::model::{EventRecord, NewTask};

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = super::schema::tasker_schedules)]
pub(crate) struct ScheduleRow {
    pub(crate) schedule_id: i64,
    pub(crate) name: String,
    pub(crate) namespace_name: String,
    pub(crate) task_name: String,
    pub(crate) version: String,
    pub(crate) cron: String,
    pub(crate) time_zone: String,
    pub(crate) context: Option<String>,
    pub(crate) catch_up: i32,
    pub(crate) origin: String,
    pub(crate) paused: bool,
    pub(crate) next_run_at: NaiveDateTime,
    pub(crate) trigger_at: Option<NaiveDateTime>,
    pub(crate) last_slot_at: Option<NaiveDateTime>,
    pub(crate) last_task_id: Option<i64>,
    pub(crate) missed_slots: i64,
    pub(crate) last_error: Option<String>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) updated_at: NaiveDateTime,
}

impl ScheduleRow {
    /// The columns to select (the derived selection is the same on both backends).
    fn columns() -> <Self as Selectable<super::conn::SomeBackend>>::SelectExpression {
        <Self as Selectable<super::conn::SomeBackend>>::construct_selection()
    }
}

/// What a schedule is, as declared or registered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Definition {
    pub(crate) name: String,
    pub(crate) namespace_name: String,
    pub(crate) task_name: String,
    pub(crate) version: String,
    pub(crate) cron: String,
    pub(crate) time_zone: String,
    /// JSON text; `None` when the workflow's code builds each run's.
    pub(crate) context: Option<String>,
    pub(crate) catch_up: i32,
    /// `template` or `api`.
    pub(crate) origin: &'static str,
}

/// Where a schedule declared with a template comes from.
pub(crate) const ORIGIN_TEMPLATE: &str = "template";
/// Where a schedule registered at run time comes from.
pub(crate) const ORIGIN_API: &str = "api";

/// Every schedule (or the one named `name`), by name.
pub(crate) fn list(c: &mut Conn<'_>, name: Option<&str>) -> Result<Vec<ScheduleRow>> {
    let all = s::tasker_schedules
        .select(ScheduleRow::columns())
        .order(s::name.asc());
    Ok(match name {
        Some(name) => c.load(all.filter(s::name.eq(name)))?,
        None => c.load(all)?,
    })
}

/// The schedule named `name`.
pub(crate) fn one(c: &mut Conn<'_>, name: &str) -> Result<ScheduleRow> {
    list(c, Some(name))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::ScheduleNotFound(name.to_owned()))
}

/// The database clock.
pub(crate) fn now(c: &mut Conn<'_>) -> Result<NaiveDateTime> {
    let now = c.now();
    Ok(c.get_result(diesel::select(now))?)
}

/// Stores `definition`: inserts it with `next_run_at`, or updates the stored one (its timing
/// only when its expression or time zone changed, and then from `next_run_at`; its paused state
/// stays). A run-time registration may not replace a schedule declared with a template. Returns
/// whether anything was written.
pub(crate) fn upsert(
    c: &mut Conn<'_>,
    definition: &Definition,
    next_run_at: NaiveDateTime,
) -> Result<bool> {
    c.write(|c| {
        let now = now(c)?;
        let inserted = c.execute(
            diesel::insert_into(s::tasker_schedules)
                .values((
                    s::name.eq(&definition.name),
                    s::namespace_name.eq(&definition.namespace_name),
                    s::task_name.eq(&definition.task_name),
                    s::version.eq(&definition.version),
                    s::cron.eq(&definition.cron),
                    s::time_zone.eq(&definition.time_zone),
                    s::context.eq(&definition.context),
                    s::catch_up.eq(definition.catch_up),
                    s::origin.eq(definition.origin),
                    s::next_run_at.eq(next_run_at),
                    s::created_at.eq(now),
                    s::updated_at.eq(now),
                ))
                .on_conflict(s::name)
                .do_nothing(),
        )?;
        if inserted > 0 {
            return Ok(true);
        }
        let stored = one(c, &definition.name)?;
        if definition.origin == ORIGIN_API && stored.origin == ORIGIN_TEMPLATE {
            return Err(Error::InvalidField {
                field: "name",
                problem: format!(
                    "schedule `{}` is declared by template {}/{}@{}: change it there",
                    stored.name, stored.namespace_name, stored.task_name, stored.version
                ),
            });
        }
        let retimed = stored.cron != definition.cron || stored.time_zone != definition.time_zone;
        let unchanged = !retimed
            && stored.namespace_name == definition.namespace_name
            && stored.task_name == definition.task_name
            && stored.version == definition.version
            && stored.context == definition.context
            && stored.catch_up == definition.catch_up
            && stored.origin == definition.origin;
        if unchanged {
            return Ok(false);
        }
        let next = if retimed {
            next_run_at
        } else {
            stored.next_run_at
        };
        c.execute(
            diesel::update(s::tasker_schedules.filter(s::schedule_id.eq(stored.schedule_id))).set(
                (
                    s::namespace_name.eq(&definition.namespace_name),
                    s::task_name.eq(&definition.task_name),
                    s::version.eq(&definition.version),
                    s::cron.eq(&definition.cron),
                    s::time_zone.eq(&definition.time_zone),
                    s::context.eq(&definition.context),
                    s::catch_up.eq(definition.catch_up),
                    s::origin.eq(definition.origin),
                    s::next_run_at.eq(next),
                    s::updated_at.eq(now),
                ),
            ),
        )?;
        Ok(true)
    })
}

/// Deletes the template schedules of `namespace/task_name@version` not named in `keep` (the
/// template no longer declares them); returns how many went.
pub(crate) fn remove_undeclared(
    c: &mut Conn<'_>,
    (namespace, task_name, version): (&str, &str, &str),
    keep: &[String],
) -> Result<usize> {
    c.write(|c| {
        Ok(c.execute(diesel::delete(
            s::tasker_schedules
                .filter(s::origin.eq(ORIGIN_TEMPLATE))
                .filter(s::namespace_name.eq(namespace))
                .filter(s::task_name.eq(task_name))
                .filter(s::version.eq(version))
                .filter(s::name.ne_all(keep)),
        ))?)
    })
}

/// Deletes the schedule `name`; whether there was one.
pub(crate) fn delete(c: &mut Conn<'_>, name: &str) -> Result<bool> {
    c.write(|c| Ok(c.execute(diesel::delete(s::tasker_schedules.filter(s::name.eq(name))))? > 0))
}

/// Pauses the schedule `name`, or resumes it from `next_run_at`; whether there was one.
pub(crate) fn set_paused(
    c: &mut Conn<'_>,
    name: &str,
    paused: bool,
    next_run_at: Option<NaiveDateTime>,
) -> Result<bool> {
    c.write(|c| {
        let updated_at = c.now();
        let target = s::tasker_schedules.filter(s::name.eq(name));
        let changed = match next_run_at {
            Some(next) => c.execute(diesel::update(target).set((
                s::paused.eq(paused),
                s::next_run_at.eq(next),
                s::updated_at.eq(updated_at),
            )))?,
            None => c.execute(
                diesel::update(target).set((s::paused.eq(paused), s::updated_at.eq(updated_at))),
            )?,
        };
        Ok(changed > 0)
    })
}

/// Asks for a run of `name` now (kept if one is already asked for); whether there was one.
pub(crate) fn request_trigger(c: &mut Conn<'_>, name: &str) -> Result<bool> {
    c.write(|c| {
        let now = now(c)?;
        let changed = c.execute(
            diesel::update(s::tasker_schedules.filter(s::name.eq(name)))
                .filter(s::trigger_at.is_null())
                .set((s::trigger_at.eq(now), s::updated_at.eq(now))),
        )?;
        if changed > 0 {
            return Ok(true);
        }
        one(c, name).map(|_| true)
    })
}

/// The clock, and the schedules due by it: a slot has come (unless paused) or a run was asked.
/// An idle store answers with one read, and no clock.
pub(crate) fn due(c: &mut Conn<'_>) -> Result<(NaiveDateTime, Vec<ScheduleRow>)> {
    let clock = c.now();
    let rows: Vec<ScheduleRow> = c.load(
        s::tasker_schedules
            .select(ScheduleRow::columns())
            .filter(
                s::paused
                    .eq(false)
                    .and(s::next_run_at.le(clock))
                    .or(s::trigger_at.is_not_null()),
            )
            .order(s::next_run_at.asc()),
    )?;
    if rows.is_empty() {
        return Ok((NaiveDateTime::default(), rows));
    }
    // Read after the rows: every row due by the clock the query saw is due by this one.
    Ok((now(c)?, rows))
}

/// One firing of a due schedule, worked out from the row a worker read.
#[derive(Debug)]
pub(crate) struct Firing {
    pub(crate) schedule_id: i64,
    /// The row as read: the firing happens only if it is still so.
    pub(crate) read: ScheduleRow,
    /// The slots' tasks (and the asked-for run's), oldest first.
    pub(crate) tasks: Vec<PreparedTask>,
    /// The first slot after the clock.
    pub(crate) next_run_at: NaiveDateTime,
    /// Missed slots left out.
    pub(crate) skipped: i64,
    /// The latest slot run, if any.
    pub(crate) last_slot_at: Option<NaiveDateTime>,
    /// Why a run could not be prepared, if one could not.
    pub(crate) error: Option<String>,
}

/// Each task's result, and the events of those created.
pub(crate) type Fired = (Vec<Result<NewTask>>, Vec<EventRecord>);

/// Fires `firing` exactly once: `None` when another worker holds the row or already fired it
/// (the row is no longer as read); else each task's result and the events of those created.
pub(crate) fn fire(c: &mut Conn<'_>, firing: &Firing) -> Result<Option<Fired>> {
    c.write(|c| {
        #[derive(QueryableByName)]
        struct Locked {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            #[allow(dead_code, reason = "only whether a row came back matters")]
            schedule_id: i64,
        }
        let id = firing.schedule_id;
        let locked: Vec<Locked> = c.load_sql(
            &format!(
                "SELECT schedule_id FROM tasker_schedules WHERE schedule_id = {id} {}",
                c.skip_locked()
            ),
            &[],
        )?;
        if locked.is_empty() {
            return Ok(None);
        }
        let current: Option<ScheduleRow> = c
            .load(
                s::tasker_schedules
                    .select(ScheduleRow::columns())
                    .filter(s::schedule_id.eq(id)),
            )?
            .into_iter()
            .next();
        let read = &firing.read;
        let as_read = current.is_some_and(|row| {
            row.next_run_at == read.next_run_at
                && row.trigger_at == read.trigger_at
                && row.paused == read.paused
        });
        if !as_read {
            return Ok(None);
        }
        let (results, events) = create_tasks(c, &firing.tasks)?;
        let last_task_id = results
            .iter()
            .rev()
            .find_map(|result| result.as_ref().ok().map(|task| task.id));
        let refused = results.iter().find_map(|result| result.as_ref().err());
        let error = firing
            .error
            .clone()
            .or_else(|| refused.map(ToString::to_string));
        let updated_at = now(c)?;
        c.execute(
            diesel::update(s::tasker_schedules.filter(s::schedule_id.eq(id))).set((
                s::next_run_at.eq(firing.next_run_at),
                s::trigger_at.eq(None::<NaiveDateTime>),
                s::last_slot_at.eq(firing.last_slot_at.or(read.last_slot_at)),
                s::last_task_id.eq(last_task_id.or(read.last_task_id)),
                s::missed_slots.eq(s::missed_slots + firing.skipped),
                s::last_error.eq(error),
                s::updated_at.eq(updated_at),
            )),
        )?;
        Ok(Some((results, events)))
    })
}
