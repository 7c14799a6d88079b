//! Schedules: declared with a template or registered at run time, listed with their next runs,
//! paused, resumed and triggered; missed slots follow the schedule's policy; and each slot runs
//! exactly once however many engines fire at the same time. Every test runs on both backends.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use serde_json::json;
use tasker::prelude::*;
use tasker::{Error, Schedule, ScheduleTemplate, TaskFilter, TaskRow};
use tasker_tests::{Kind, TestDatabase, conformance};

conformance!(
    declared_schedules_follow_their_template,
    registered_schedules_are_checked,
    missed_slots_follow_the_policy,
    pause_resume_and_trigger,
    concurrent_engines_run_each_slot_once,
    workers_start_scheduled_tasks,
);

const WAIT: Duration = Duration::from_secs(30);

fn report() -> TaskTemplate {
    TaskTemplate::new("test", "report", "1.0.0")
        .schema(json!({
            "type": "object",
            "properties": { "region": { "type": "string" } },
            "required": ["region"]
        }))
        .step(StepTemplate::new("a", "echo"))
}

fn builder(db: &TestDatabase, template: TaskTemplate) -> tasker::TaskerBuilder {
    db.builder().template(template).handler(
        "echo",
        handler_fn(|cx| async move { Ok(json!({ "region": cx.context()["region"] })) }),
    )
}

fn eu() -> serde_json::Value {
    json!({ "region": "eu" })
}

/// A run-time schedule `name` of `test/report@1.0.0` on `cron`, over the `eu` context.
fn report_on(name: &str, cron: &str) -> Schedule {
    Schedule::new(name, "report", cron)
        .namespace("test")
        .version("1.0.0")
        .context(eu())
}

/// `name`'s cursor (its earliest slot not yet run) set to `at`, as after an outage.
fn set_cursor(db: &TestDatabase, name: &str, at: NaiveDateTime) {
    let at = at.format("%Y-%m-%d %H:%M:%S");
    let literal = match db.kind {
        Kind::Sqlite => format!("'{at}'"),
        Kind::Postgres => format!("TIMESTAMP '{at}'"),
    };
    db.execute(&format!(
        "UPDATE tasker_schedules SET next_run_at = {literal} WHERE name = '{name}'"
    ));
}

/// The tasks a schedule started, oldest slot first.
async fn started_by(tasker: &Tasker, schedule: &str) -> Vec<TaskRow> {
    let mut tasks: Vec<TaskRow> = tasker
        .tasks(TaskFilter {
            limit: 1000,
            ..TaskFilter::default()
        })
        .await
        .expect("tasks")
        .into_iter()
        .filter(|task| {
            task.idempotency_key
                .as_deref()
                .is_some_and(|key| key.starts_with(&format!("schedule:{schedule}:")))
        })
        .collect();
    tasks.sort_by_key(|task| task.requested_at);
    tasks
}

/// A template's schedule is stored when an engine registering it starts, retimed when its
/// expression changes, and deleted when the template no longer declares it; one registered at
/// run time is left alone.
async fn declared_schedules_follow_their_template(db: TestDatabase) {
    let mut nightly = ScheduleTemplate::new("0 2 * * *");
    nightly.time_zone = "Europe/Berlin".to_owned();
    nightly.context = Some(eu());
    let tasker = builder(&db, report().schedule(nightly.clone()))
        .build()
        .await
        .expect("build");
    tasker
        .register_schedule(report_on("adhoc", "0 0 * * *"))
        .await
        .expect("register");
    let listed = tasker.schedule("test.report").await.expect("declared");
    assert_eq!(listed.origin, "template");
    assert_eq!(listed.context, Some(eu()));
    assert_eq!(
        (listed.cron.as_str(), listed.time_zone.as_str()),
        ("0 2 * * *", "Europe/Berlin")
    );
    assert!(!listed.paused);
    let now = Utc::now();
    assert!(listed.next_run_at > now - chrono::Duration::seconds(5));
    assert!(listed.next_run_at <= now + chrono::Duration::hours(25));
    assert_eq!(listed.upcoming.len(), 5);
    assert_eq!(listed.upcoming[0], listed.next_run_at);
    for pair in listed.upcoming.windows(2) {
        // A day apart, give or take a daylight-saving change; always 02:00 in Berlin, which is
        // 00:00 or 01:00 UTC.
        let gap = pair[1] - pair[0];
        assert!((23..=25).contains(&gap.num_hours()), "{pair:?}");
        assert!(pair[1].hour() <= 1 && pair[1].minute() == 0, "{pair:?}");
    }
    drop(tasker);

    nightly.cron = "30 3 * * *".to_owned();
    let tasker = builder(&db, report().schedule(nightly))
        .build()
        .await
        .expect("rebuild");
    let retimed = tasker.schedule("test.report").await.expect("declared");
    assert_eq!(retimed.cron, "30 3 * * *");
    assert_eq!(retimed.next_run_at.minute(), 30);
    drop(tasker);

    let tasker = builder(&db, report()).build().await.expect("rebuild");
    let names: Vec<String> = tasker
        .schedules()
        .await
        .expect("schedules")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        ["adhoc"],
        "the template's schedule goes, the registered one stays"
    );
}

/// A run-time schedule is refused with the field at fault: its name, expression, time zone,
/// template, context, or a name its template owns.
async fn registered_schedules_are_checked(db: TestDatabase) {
    let declared = ScheduleTemplate {
        context: Some(eu()),
        ..ScheduleTemplate::new("0 * * * *")
    };
    let tasker = builder(&db, report().schedule(declared))
        .build()
        .await
        .expect("build");
    let ok = || report_on("hourly", "0 * * * *");
    let field_of = |result: tasker::Result<tasker::ScheduleInfo>| match result {
        Err(Error::InvalidField { field, problem }) => (field, problem),
        other => panic!("expected a refused field, got {other:?}"),
    };
    let (field, problem) = field_of(
        tasker
            .register_schedule(Schedule {
                cron: "0 24 * * *".into(),
                ..ok()
            })
            .await,
    );
    assert_eq!(field, "cron");
    assert!(
        problem.contains("hour `24` is out of range 0-23 (column 3)"),
        "{problem}"
    );
    let (field, problem) = field_of(
        tasker
            .register_schedule(ok().time_zone("Europe/Berln"))
            .await,
    );
    assert_eq!(field, "time_zone");
    assert!(problem.contains("Europe/Berln"), "{problem}");
    let (field, _) = field_of(
        tasker
            .register_schedule(Schedule {
                name: "a/b".into(),
                ..ok()
            })
            .await,
    );
    assert_eq!(field, "name");
    let (field, _) = field_of(tasker.register_schedule(ok().catch_up(1001)).await);
    assert_eq!(field, "catch_up");
    let (field, problem) = field_of(
        tasker
            .register_schedule(Schedule {
                name: "test.report".into(),
                ..ok()
            })
            .await,
    );
    assert_eq!(field, "name");
    assert!(
        problem.contains("declared by template test/report@1.0.0"),
        "{problem}"
    );
    assert!(matches!(
        tasker.register_schedule(ok().version("9.9.9")).await,
        Err(Error::UnknownTemplate { .. })
    ));
    assert!(matches!(
        tasker
            .register_schedule(ok().context(json!({ "region": 5 })))
            .await,
        Err(Error::InvalidContext { .. })
    ));

    let stored = tasker.register_schedule(ok()).await.expect("valid");
    assert_eq!((stored.origin.as_str(), stored.catch_up), ("api", 0));
    let replaced = tasker
        .register_schedule(ok().catch_up(2))
        .await
        .expect("replace");
    assert_eq!(replaced.catch_up, 2);
    assert_eq!(
        replaced.next_run_at, stored.next_run_at,
        "same timing, same cursor"
    );
    assert_eq!(tasker.schedules().await.expect("list").len(), 2);
}

/// After an outage, a schedule runs its most recent `catch_up` missed slots (oldest first) and
/// counts the rest as missed; with no catch-up it runs none. Either way its cursor moves past
/// the clock, so a second look runs nothing.
async fn missed_slots_follow_the_policy(db: TestDatabase) {
    let tasker = builder(&db, report()).build().await.expect("build");
    // Hourly, half an hour away from now: no slot is on time, so every past one is missed.
    let minute = (Utc::now().minute() + 30) % 60;
    let cron = format!("{minute} * * * *");
    for (name, catch_up) in [("catching-up", 3), ("skipping", 0)] {
        tasker
            .register_schedule(report_on(name, &cron).catch_up(catch_up))
            .await
            .expect("register");
    }
    let outage_start = Utc::now() - chrono::Duration::hours(10);
    let mut first = outage_start
        .with_minute(minute)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .expect("a time");
    if first < outage_start {
        first += chrono::Duration::hours(1);
    }
    let now = Utc::now();
    let slots: Vec<DateTime<Utc>> = (0..12)
        .map(|h| first + chrono::Duration::hours(h))
        .filter(|&slot| slot <= now)
        .collect();
    for name in ["catching-up", "skipping"] {
        set_cursor(&db, name, first.naive_utc());
    }

    assert_eq!(tasker.run_due_schedules().await.expect("fire"), 3);
    assert_eq!(tasker.run_due_schedules().await.expect("fire again"), 0);

    let caught = started_by(&tasker, "catching-up").await;
    let ran: Vec<NaiveDateTime> = caught.iter().map(|task| task.requested_at).collect();
    let expected: Vec<NaiveDateTime> = slots[slots.len() - 3..]
        .iter()
        .map(DateTime::naive_utc)
        .collect();
    assert_eq!(ran, expected, "the three most recent missed slots");
    let next = *slots.last().expect("slots") + chrono::Duration::hours(1);
    let catching_up = tasker.schedule("catching-up").await.expect("schedule");
    assert_eq!(catching_up.missed_slots, slots.len() as i64 - 3);
    assert_eq!(catching_up.next_run_at, next);
    assert_eq!(
        catching_up.last_slot_at,
        slots.last().copied(),
        "the last slot run"
    );
    assert_eq!(
        catching_up.last_task_id,
        caught.last().map(|task| task.task_id)
    );

    assert!(started_by(&tasker, "skipping").await.is_empty());
    let skipping = tasker.schedule("skipping").await.expect("schedule");
    assert_eq!(skipping.missed_slots, slots.len() as i64);
    assert_eq!(skipping.next_run_at, next);
    assert_eq!(skipping.last_slot_at, None);
}

/// A paused schedule runs no slot, though a run can still be asked for (once, however often it
/// is asked before a worker starts it); resuming starts from the next slot, the paused ones not
/// counted as missed; a removed schedule is gone.
async fn pause_resume_and_trigger(db: TestDatabase) {
    let tasker = builder(&db, report()).build().await.expect("build");
    let minutely = report_on("minutely", "* * * * *");
    tasker.register_schedule(minutely).await.expect("register");
    let paused = tasker.pause_schedule("minutely").await.expect("pause");
    assert!(paused.paused && paused.upcoming.is_empty());
    let ten_minutes_ago = (Utc::now() - chrono::Duration::minutes(10))
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a time")
        .naive_utc();
    set_cursor(&db, "minutely", ten_minutes_ago);
    assert_eq!(tasker.run_due_schedules().await.expect("fire"), 0);

    let asked = tasker.trigger_schedule("minutely").await.expect("trigger");
    assert!(asked.trigger_pending);
    tasker.trigger_schedule("minutely").await.expect("again");
    assert_eq!(tasker.run_due_schedules().await.expect("fire"), 1);
    let runs = started_by(&tasker, "minutely").await;
    assert_eq!(runs.len(), 1);
    let key = runs[0].idempotency_key.as_deref().unwrap_or_default();
    assert!(key.starts_with("schedule:minutely:trigger:"), "{key}");
    assert_eq!(runs[0].context, eu());
    let after = tasker.schedule("minutely").await.expect("schedule");
    assert!(after.paused && !after.trigger_pending);
    assert_eq!(
        after.next_run_at.naive_utc(),
        ten_minutes_ago,
        "slots untouched"
    );

    let resumed = tasker.resume_schedule("minutely").await.expect("resume");
    assert!(!resumed.paused);
    assert!(resumed.next_run_at > Utc::now() - chrono::Duration::seconds(5));
    assert_eq!(resumed.upcoming.len(), 5);
    tasker.run_due_schedules().await.expect("fire");
    assert_eq!(
        tasker
            .schedule("minutely")
            .await
            .expect("schedule")
            .missed_slots,
        0
    );

    assert!(tasker.remove_schedule("minutely").await.expect("remove"));
    assert!(
        !tasker
            .remove_schedule("minutely")
            .await
            .expect("remove again")
    );
    assert!(matches!(
        tasker.schedule("minutely").await,
        Err(Error::ScheduleNotFound(name)) if name == "minutely"
    ));
    assert!(matches!(
        tasker.pause_schedule("minutely").await,
        Err(Error::ScheduleNotFound(_))
    ));
    assert!(matches!(
        tasker.trigger_schedule("minutely").await,
        Err(Error::ScheduleNotFound(_))
    ));
}

/// Four engines on one database firing an every-second schedule as fast as they can: every
/// slot from the first to the last runs, once, and none is counted as missed.
async fn concurrent_engines_run_each_slot_once(db: TestDatabase) {
    let mut engines = Vec::new();
    for _ in 0..4 {
        engines.push(builder(&db, report()).build().await.expect("build"));
    }
    engines[0]
        .register_schedule(report_on("every-second", "* * * * * *"))
        .await
        .expect("register");
    let until = std::time::Instant::now() + Duration::from_millis(3500);
    let firing: Vec<_> = engines
        .iter()
        .map(|tasker| async move {
            let mut created = 0;
            while std::time::Instant::now() < until {
                created += tasker.run_due_schedules().await.expect("fire");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            created
        })
        .collect();
    let created: usize = join_all(firing).await.into_iter().sum();
    let runs = started_by(&engines[0], "every-second").await;
    assert_eq!(
        runs.len(),
        created,
        "each engine's count is of tasks it created"
    );
    assert!(runs.len() >= 3, "{} slots ran in 3.5 s", runs.len());
    let slots: Vec<NaiveDateTime> = runs.iter().map(|task| task.requested_at).collect();
    assert_eq!(slots.iter().collect::<HashSet<_>>().len(), slots.len());
    for pair in slots.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(1), "{pair:?}");
    }
    let schedule = engines[0].schedule("every-second").await.expect("schedule");
    assert_eq!(schedule.missed_slots, 0);
}

/// Polls every future until all are done.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// A running worker fires a due schedule on its own, and the tasks it starts run to the end.
async fn workers_start_scheduled_tasks(db: TestDatabase) {
    let tasker = builder(&db, report()).build().await.expect("build");
    tasker
        .register_schedule(report_on("every-second", "* * * * * *"))
        .await
        .expect("register");
    let worker = tasker.start_worker();
    let deadline = std::time::Instant::now() + WAIT;
    let first = loop {
        if let Some(task) = started_by(&tasker, "every-second").await.first() {
            break task.task_id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled task started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let done = tasker.wait_for_task(first, WAIT).await.expect("wait");
    assert_eq!(done.state, TaskState::Complete);
    assert_eq!(done.source_system.as_deref(), Some("schedule"));
    let step = &tasker.steps(first).await.expect("steps")[0];
    assert_eq!(step.results, Some(json!({ "region": "eu" })));
    worker.shutdown().await;
}
