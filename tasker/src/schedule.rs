//! Recurring tasks: a cron expression read in a time zone, and the task it starts at each slot.
//!
//! A schedule is declared with its workflow (`#[task_handler(schedule = "…")]` or a template's
//! `schedules:`) or registered at run time ([`Tasker::register_schedule`](crate::Tasker::register_schedule)).
//! Every worker looks for due schedules; each slot runs exactly once across any number of them
//! (see `store/schedules.rs` for how).

use std::collections::VecDeque;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasker_rules::{CivilTime, Cron, parse_cron};

pub use tasker_rules::MAX_CRON_LEN;

/// Longest schedule name, in bytes (the column's width).
pub const MAX_SCHEDULE_NAME_LEN: usize = 128;
/// Longest time zone name, in bytes (the column's width).
pub const MAX_TIME_ZONE_LEN: usize = 64;
/// Most missed slots a schedule may catch up on after an outage.
pub use tasker_rules::MAX_SCHEDULE_CATCH_UP as MAX_CATCH_UP;
/// How late a slot may start and still count as on time; an older one is missed, and runs only
/// under the schedule's `catch_up`.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// A schedule declared with its workflow: in code (`#[task_handler(schedule = "…")]`) or in the
/// template's YAML (`schedules:`).
///
/// ```yaml
/// schedules:
///   - cron: "0 2 * * *"          # 5 fields, or 6 with seconds first
///     time_zone: Europe/Berlin   # IANA name, default UTC
///     context: { region: eu }
///     catch_up: 3                # after an outage, run the 3 most recent missed slots
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTemplate {
    /// Unique among all schedules; `<namespace>.<name>` of the template when left out (a
    /// template with several schedules names each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The cron expression: `minute hour day month weekday`, or six fields with seconds first.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// The context of every run (`{}` when left out), unless the workflow's code builds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// Missed slots (over a minute late, after an outage) to run anyway: 0 skips them all, N
    /// runs the N most recent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub catch_up: u32,
    /// Whether the workflow's code builds each run's context
    /// ([`TaskHandler::schedule_context`](crate::TaskHandler::schedule_context)); set by the
    /// macro.
    #[serde(skip)]
    pub built_in_code: bool,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ScheduleTemplate {
    /// A schedule on `cron`, in UTC, with the template's default name.
    pub fn new(cron: impl Into<String>) -> Self {
        Self {
            name: None,
            cron: cron.into(),
            time_zone: utc(),
            context: None,
            catch_up: 0,
            built_in_code: false,
        }
    }

    /// Its name: the one given, else `<namespace>.<name>` of its template.
    pub fn name_in(&self, namespace: &str, task_name: &str) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{namespace}.{task_name}"))
    }
}

/// A schedule registered at run time ([`Tasker::register_schedule`](crate::Tasker::register_schedule),
/// REST `PUT /schedules/{name}`): the task it starts, when, and over what context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Unique among all schedules: ASCII letters, digits, `_`, `-` and `.`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,128}$"))]
    pub name: String,
    /// The template's namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The template's name.
    pub task_name: String,
    /// The template's version.
    #[serde(default = "default_version")]
    pub version: String,
    /// The cron expression: `minute hour day month weekday`, or six fields with seconds first.
    #[schemars(length(min = 1, max = 128))]
    pub cron: String,
    /// The IANA time zone the expression is read in.
    #[serde(default = "utc")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// The context of every run; it must satisfy the template's schema.
    #[serde(default = "empty_object")]
    pub context: Value,
    /// Missed slots to run after an outage: 0 skips them, N runs the N most recent.
    #[serde(default, deserialize_with = "crate::integral::deserialize")]
    #[schemars(range(max = 1000))]
    pub catch_up: u32,
}

fn default_namespace() -> String {
    tasker_rules::DEFAULT_NAMESPACE.to_owned()
}

fn default_version() -> String {
    tasker_rules::DEFAULT_VERSION.to_owned()
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl Schedule {
    /// A schedule `name` starting a task of `task_name` (default namespace and version) on
    /// `cron`, in UTC, over `{}`.
    pub fn new(
        name: impl Into<String>,
        task_name: impl Into<String>,
        cron: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: default_namespace(),
            task_name: task_name.into(),
            version: default_version(),
            cron: cron.into(),
            time_zone: utc(),
            context: empty_object(),
            catch_up: 0,
        }
    }

    /// A schedule `name` starting tasks of the `#[task_handler]` workflow `H` over `context`.
    pub fn of<H: crate::TaskHandler>(
        name: impl Into<String>,
        cron: impl Into<String>,
        context: &H::Context,
    ) -> crate::Result<Self> {
        Ok(Self::new(name, H::NAME, cron)
            .namespace(H::NAMESPACE)
            .version(H::VERSION)
            .context(serde_json::to_value(context)?))
    }

    /// Sets the template's namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the template's version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Reads the cron expression in the IANA time zone `time_zone`.
    pub fn time_zone(mut self, time_zone: impl Into<String>) -> Self {
        self.time_zone = time_zone.into();
        self
    }

    /// Sets the context of every run.
    pub fn context(mut self, context: Value) -> Self {
        self.context = context;
        self
    }

    /// Runs up to `slots` missed slots after an outage (0, the default, skips them).
    pub fn catch_up(mut self, slots: u32) -> Self {
        self.catch_up = slots;
        self
    }
}

/// A stored schedule, with its next runs ([`Tasker::schedules`](crate::Tasker::schedules)).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ScheduleInfo {
    /// Its name.
    pub name: String,
    /// The template's namespace.
    pub namespace: String,
    /// The template's name.
    pub task_name: String,
    /// The template's version.
    pub version: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub time_zone: String,
    /// The context of every run; `None` when the workflow's code builds it.
    pub context: Option<Value>,
    /// Missed slots it runs after an outage.
    pub catch_up: u32,
    /// `template` (declared with its workflow) or `api` (registered at run time).
    pub origin: String,
    /// Whether it is paused.
    pub paused: bool,
    /// The earliest slot not yet run.
    #[serde(serialize_with = "crate::timestamp::utc::serialize")]
    pub next_run_at: DateTime<Utc>,
    /// The slots after that, up to five in all (none while paused).
    #[serde(serialize_with = "crate::timestamp::utc::list::serialize")]
    pub upcoming: Vec<DateTime<Utc>>,
    /// Whether a run asked for now ([`Tasker::trigger_schedule`](crate::Tasker::trigger_schedule))
    /// waits for a worker.
    pub trigger_pending: bool,
    /// The last slot it started a task for.
    #[serde(serialize_with = "crate::timestamp::utc::option::serialize")]
    pub last_slot_at: Option<DateTime<Utc>>,
    /// The task it last started.
    pub last_task_id: Option<i64>,
    /// Slots skipped because they were missed (over a minute late) beyond `catch_up`. After an
    /// outage of more than 100,000 slots, the ones before the last day are not counted.
    pub missed_slots: i64,
    /// Why its last run could not start (its context no longer fits the template, say);
    /// cleared by the next run that starts.
    pub last_error: Option<String>,
    /// When it was first stored.
    #[serde(serialize_with = "crate::timestamp::utc::serialize")]
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    #[serde(serialize_with = "crate::timestamp::utc::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// When a schedule's slots fall: its cron expression read in its time zone.
#[derive(Debug, Clone)]
pub(crate) struct Timetable {
    cron: Cron,
    zone: Tz,
}

/// The slots a due schedule runs now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Due {
    /// Oldest first: the most recent `catch_up` missed slots, then the ones on time.
    pub(crate) slots: Vec<DateTime<Utc>>,
    /// Missed slots left out.
    pub(crate) skipped: u64,
    /// The first slot after the clock.
    pub(crate) next: Option<DateTime<Utc>>,
}

/// Slots walked one by one before a long outage is skipped to its last day.
const MAX_WALK: usize = 100_000;

impl Timetable {
    /// Parses `cron` and `time_zone`; the error says which is wrong, and where.
    pub(crate) fn parse(cron: &str, time_zone: &str) -> Result<Self, (&'static str, String)> {
        let cron = parse_cron(cron).map_err(|problem| ("cron", problem.to_string()))?;
        let zone = parse_time_zone(time_zone).map_err(|problem| ("time_zone", problem))?;
        Ok(Self { cron, zone })
    }

    /// The first slot strictly after `after`.
    ///
    /// Read on the wall clock of the time zone: a local time that a daylight-saving change skips
    /// runs as many seconds after the change as it would have been after the last time before
    /// it (02:30 becomes 03:30); one the change repeats runs once, at its first pass, except
    /// under an hour field that matches every hour, which follows the wall clock through both.
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let first = self.next_on_wall_clock(after)?;
        if !self.cron.every_hour() {
            return Some(first);
        }
        // The clock went back before `first`: the wall-clock times it repeats run again, and the
        // earliest of them may come before `first`.
        let offset = |at: DateTime<Utc>| self.zone.offset_from_utc_datetime(&at.naive_utc()).fix();
        let later = offset(first);
        if later.local_minus_utc() >= offset(after).local_minus_utc() {
            return Some(first);
        }
        let wall = after.naive_utc() + later + chrono::Duration::seconds(1);
        let repeated = naive(self.cron.next_at_or_after(civil(wall))?)?;
        let at = (repeated - later).and_utc();
        Some(if at > after && at < first && offset(at) == later {
            at
        } else {
            first
        })
    }

    /// The first slot after `after` found by walking the wall clock forward from `after`'s.
    fn next_on_wall_clock(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone).naive_local();
        let mut from = civil(local + chrono::Duration::seconds(1));
        // Each pass moves past one candidate; a wall-clock change costs at most a few.
        for _ in 0..64 {
            let found = self.cron.next_at_or_after(from)?;
            let naive = naive(found)?;
            let instant = match self.zone.from_local_datetime(&naive) {
                LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
                LocalResult::Ambiguous(first, second) => {
                    let (first, second) = (first.with_timezone(&Utc), second.with_timezone(&Utc));
                    if first > after {
                        Some(first)
                    } else if second > after && self.cron.every_hour() {
                        Some(second)
                    } else {
                        None
                    }
                }
                LocalResult::None => {
                    // The offset in force a day before; no zone changes twice within a day.
                    let before = naive - chrono::Duration::days(1);
                    let offset = self.zone.offset_from_utc_datetime(&before).fix();
                    Some((naive - offset).and_utc())
                }
            };
            match instant {
                Some(at) if at > after => return Some(at),
                _ => from = civil(naive + chrono::Duration::seconds(1)),
            }
        }
        None
    }

    /// The first slot at or after `at`.
    pub(crate) fn at_or_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after(at - chrono::Duration::seconds(1))
    }

    /// The next `n` slots after `after`.
    pub(crate) fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(after), |&at| self.next_after(at))
            .take(n)
            .collect()
    }

    /// Which slots from `cursor` (the earliest not yet run) to `now` to run: the on-time ones
    /// (within [`GRACE`] of `now`) and at most `catch_up` of the missed ones, the most recent.
    pub(crate) fn due(&self, cursor: DateTime<Utc>, now: DateTime<Utc>, catch_up: u32) -> Due {
        let on_time_from = now - chrono::Duration::from_std(GRACE).unwrap_or_default();
        let keep = usize::try_from(catch_up).unwrap_or(usize::MAX);
        let mut missed = VecDeque::new();
        let mut on_time = Vec::new();
        let mut skipped = 0u64;
        let mut walked = 0;
        let mut slot = self.at_or_after(cursor);
        while let Some(at) = slot.filter(|&at| at <= now) {
            if at >= on_time_from {
                on_time.push(at);
            } else {
                missed.push_back(at);
                if missed.len() > keep {
                    missed.pop_front();
                    skipped += 1;
                }
            }
            walked += 1;
            let last_day = on_time_from - chrono::Duration::days(1);
            slot = if walked == MAX_WALK && at < last_day {
                self.at_or_after(last_day)
            } else {
                self.next_after(at)
            };
        }
        let mut slots: Vec<_> = missed.into();
        slots.extend(on_time);
        Due {
            slots,
            skipped,
            next: self.next_after(now),
        }
    }
}

/// An IANA time zone by name, or why it is not one.
pub(crate) fn parse_time_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("`{name}` is not an IANA time zone name (such as `UTC` or `Europe/Berlin`)")
    })
}

/// Why `name` cannot name a schedule, if it cannot.
pub(crate) fn schedule_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_SCHEDULE_NAME_LEN {
        return Some(format!(
            "must be 1 to {MAX_SCHEDULE_NAME_LEN} bytes, not {}",
            name.len()
        ));
    }
    name.chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .map(|c| {
            format!(
                "`{name}` holds {c:?}; a schedule name is ASCII letters, digits, `_`, `-` and `.`"
            )
        })
}

/// Why a schedule's `catch_up` is refused, if it is.
pub(crate) fn catch_up_problem(catch_up: u32) -> Option<String> {
    (catch_up > MAX_CATCH_UP).then(|| format!("{catch_up} is over the maximum of {MAX_CATCH_UP}"))
}

/// The idempotency key of the task a schedule starts for `slot`: unique among tasks, so no slot
/// runs twice.
pub(crate) fn slot_key(schedule: &str, slot: DateTime<Utc>) -> String {
    format!(
        "schedule:{schedule}:{}",
        slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The idempotency key of a run asked for at `requested` ([`crate::Tasker::trigger_schedule`]).
pub(crate) fn trigger_key(schedule: &str, requested: DateTime<Utc>) -> String {
    format!(
        "schedule:{schedule}:trigger:{}",
        requested.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

fn civil(at: NaiveDateTime) -> CivilTime {
    use chrono::{Datelike, Timelike};
    CivilTime {
        year: at.year(),
        month: at.month(),
        day: at.day(),
        hour: at.hour(),
        minute: at.minute(),
        second: at.second(),
    }
}

fn naive(at: CivilTime) -> Option<NaiveDateTime> {
    chrono::NaiveDate::from_ymd_opt(at.year, at.month, at.day)?
        .and_hms_opt(at.hour, at.minute, at.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn table(cron: &str, zone: &str) -> Timetable {
        Timetable::parse(cron, zone).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn slots_follow_the_time_zone() {
        // 09:00 in Berlin is 08:00 UTC in winter.
        let t = table("0 9 * * *", "Europe/Berlin");
        assert_eq!(
            t.next_after(at("2026-12-06T08:00:00Z")),
            Some(at("2026-12-07T08:00:00Z"))
        );
        assert_eq!(
            t.next_after(at("2026-12-06T07:59:59Z")),
            Some(at("2026-12-06T08:00:00Z"))
        );
    }

    #[test]
    fn a_skipped_local_time_runs_after_the_change() {
        // Berlin springs forward at 02:00 on 2027-03-28: 02:30 does not exist that day.
        let t = table("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            t.next_after(at("2027-03-27T12:00:00Z")),
            Some(at("2027-03-28T01:30:00Z")) // 03:30 CEST
        );
        assert_eq!(
            t.next_after(at("2027-03-28T01:30:00Z")),
            Some(at("2027-03-29T00:30:00Z")) // 02:30 CEST
        );
    }

    #[test]
    fn a_repeated_local_time_runs_once_unless_every_hour() {
        // Berlin falls back at 03:00 CEST on 2026-10-25: 02:15 happens twice.
        let daily = table("15 2 * * *", "Europe/Berlin");
        let first = at("2026-10-25T00:15:00Z"); // 02:15 CEST
        assert_eq!(daily.next_after(at("2026-10-24T12:00:00Z")), Some(first));
        assert_eq!(daily.next_after(first), Some(at("2026-10-26T01:15:00Z")));
        let hourly = table("15 * * * *", "Europe/Berlin");
        assert_eq!(hourly.next_after(first), Some(at("2026-10-25T01:15:00Z")));
        assert_eq!(
            hourly.next_after(at("2026-10-25T01:15:00Z")),
            Some(at("2026-10-25T02:15:00Z"))
        );
        // Every half hour through the change: no gap, no repeat, in UTC.
        let half_hourly = table("*/30 * * * *", "Europe/Berlin");
        let slots = half_hourly.upcoming(at("2026-10-24T23:45:00Z"), 8);
        let expected: Vec<_> = (0..8)
            .map(|i| at("2026-10-25T00:00:00Z") + chrono::Duration::minutes(30 * i))
            .collect();
        assert_eq!(slots, expected);
    }

    #[test]
    fn due_slots_keep_the_on_time_ones_and_catch_up_on_the_most_recent_missed() {
        let t = table("*/5 * * * *", "UTC");
        let cursor = at("2026-12-06T10:00:00Z");
        let now = at("2026-12-06T10:30:30Z");
        let skip = t.due(cursor, now, 0);
        assert_eq!(skip.slots, vec![at("2026-12-06T10:30:00Z")]);
        assert_eq!(skip.skipped, 6);
        assert_eq!(skip.next, Some(at("2026-12-06T10:35:00Z")));
        let catch_up = t.due(cursor, now, 2);
        assert_eq!(
            catch_up.slots,
            vec![
                at("2026-12-06T10:20:00Z"),
                at("2026-12-06T10:25:00Z"),
                at("2026-12-06T10:30:00Z")
            ]
        );
        assert_eq!(catch_up.skipped, 4);
        let none_due = t.due(at("2026-12-06T10:35:00Z"), now, 2);
        assert!(none_due.slots.is_empty() && none_due.skipped == 0);
    }

    #[test]
    fn a_long_outage_is_walked_only_over_its_last_day() {
        let t = table("* * * * * *", "UTC");
        let due = t.due(at("2026-01-01T00:00:00Z"), at("2026-12-06T00:00:00Z"), 3);
        assert_eq!(due.slots.len(), 3 + 61);
        assert_eq!(due.slots[0], at("2026-12-05T23:58:57Z"));
        assert!(due.skipped >= 100_000);
    }

    #[test]
    fn bad_names_and_zones_are_refused() {
        assert!(
            Timetable::parse("0 9 * * *", "Europe/Berln").is_err_and(|(f, _)| f == "time_zone")
        );
        assert!(Timetable::parse("0 9 * *", "UTC").is_err_and(|(f, _)| f == "cron"));
        assert!(schedule_name_problem("nightly.report-1").is_none());
        assert!(schedule_name_problem("a/b").is_some());
        assert!(schedule_name_problem("").is_some());
        assert!(catch_up_problem(MAX_CATCH_UP + 1).is_some());
    }
}
