//! Workflows declared with `#[task_handler]`, `#[step]` and `#[step_handler]`, run on SQLite
//! and PostgreSQL through the public API.

use std::time::Duration;

use tasker::prelude::*;
use tasker::{Error, TaskHandler};
use tasker_tests::{TestDatabase, conformance};

const WAIT: Duration = Duration::from_secs(30);

/// The context of the typed diamond.
#[tasker::data]
#[derive(Debug, Clone, PartialEq)]
pub struct Numbers {
    /// The number everything starts from.
    pub base: i64,
}

/// What `start` hands on.
#[tasker::data]
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// The base, read from the context.
    pub value: i64,
}

/// `start → {double, square} → sum`, each step typed by its parents' outputs.
#[derive(Default)]
pub struct Diamond;

/// Adds a number's double and its square.
#[task_handler(name = "typed_diamond", namespace = "tests", version = "2.0.0", context = Numbers)]
impl Diamond {
    /// Reads the base from the context.
    #[step]
    async fn start(&self, cx: &StepContext<Numbers>) -> Result<Start, StepError> {
        Ok(Start {
            value: cx.context().base,
        })
    }

    #[step(depends_on = start, retry_limit = 4, timeout = "90s", description = "Twice the base.")]
    async fn double(&self, _cx: &StepContext<Numbers>, start: Start) -> Result<i64, StepError> {
        Ok(start.value * 2)
    }

    #[step(depends_on = start, skippable, retryable = false)]
    async fn square(&self, _cx: &StepContext<Numbers>, start: Start) -> Result<i64, StepError> {
        Ok(start.value * start.value)
    }

    #[step(depends_on = [double, square])]
    async fn sum(
        &self,
        cx: &StepContext<Numbers>,
        double: i64,
        square: Option<i64>,
    ) -> Result<Vec<i64>, StepError> {
        // `start` is not a parent: its output is read through the typed reference.
        let start = cx.output(Self::START).await?;
        let square = square.unwrap_or(0);
        Ok(vec![start.value, double, square, double + square])
    }
}

/// A step that always fails, whose child expects a number from it.
#[derive(Default)]
pub struct Fragile;

#[task_handler(name = "fragile", namespace = "tests", timeout = "90s")]
impl Fragile {
    #[step]
    async fn first(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Err(StepError::permanent("first always fails"))
    }

    #[step(depends_on = first)]
    async fn second(&self, _cx: &StepContext, first: i64) -> Result<i64, StepError> {
        Ok(first + 1)
    }
}

/// Bound to `tests/templates/bound_order.yaml`, which supplies identity and retry settings.
#[derive(Default)]
pub struct BoundOrder;

#[task_handler(template = "templates/bound_order.yaml")]
impl BoundOrder {
    #[step]
    async fn reserve(&self, cx: &StepContext) -> Result<String, StepError> {
        Ok(cx.handler_config()["warehouse"]
            .as_str()
            .unwrap_or("none")
            .to_owned())
    }

    #[step(depends_on = reserve)]
    async fn ship(&self, _cx: &StepContext, warehouse: String) -> Result<String, StepError> {
        Ok(format!("shipped from {warehouse}"))
    }
}

/// The context of a scheduled report: the slot it covers.
#[tasker::data]
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSlot {
    /// The slot, RFC 3339 in UTC.
    pub slot: String,
}

/// Runs on weekday mornings in Berlin; each run's context is built from its slot.
#[derive(Default)]
pub struct WeekdayReport;

#[task_handler(
    name = "weekday_report",
    namespace = "tests",
    version = "1.0.0",
    context = ReportSlot,
    schedule = "0 6 * * MON-FRI",
    time_zone = "Europe/Berlin",
    catch_up = 2,
    schedule_context = Self::for_slot
)]
impl WeekdayReport {
    fn for_slot(slot: chrono::DateTime<chrono::Utc>) -> ReportSlot {
        ReportSlot {
            slot: slot.to_rfc3339(),
        }
    }

    #[step]
    async fn render(&self, cx: &StepContext<ReportSlot>) -> Result<String, StepError> {
        Ok(cx.context().slot.clone())
    }
}

/// The context of the audited workflow: what its hooks read.
#[tasker::data]
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// Gives `charge` one attempt and makes it wait for `notify`.
    pub rush: bool,
    /// Bypasses `notify`.
    pub quiet: bool,
    /// Makes the plan hook refuse the task.
    pub refuse: bool,
}

/// `check → charge`, and `notify` on its own; its hooks adjust the plan and annotate the task.
#[derive(Default)]
pub struct Audited;

#[task_handler(name = "audited", namespace = "tests", context = Audit)]
impl Audited {
    #[step]
    async fn check(&self, _cx: &StepContext<Audit>) -> Result<i64, StepError> {
        Ok(2)
    }

    #[step(depends_on = check)]
    async fn charge(&self, _cx: &StepContext<Audit>, check: i64) -> Result<i64, StepError> {
        Ok(check * 10)
    }

    #[step(skippable)]
    async fn notify(&self, _cx: &StepContext<Audit>) -> Result<bool, StepError> {
        Ok(true)
    }

    fn establish_step_dependencies_and_defaults(
        &self,
        context: &Audit,
        steps: &mut StepPlan,
    ) -> Result<(), PlanError> {
        if context.refuse {
            return Err(PlanError::new("this account is frozen"));
        }
        if context.rush {
            steps
                .step("charge")?
                .set_retry_limit(1)
                .set_retryable(false);
            steps.add_dependency("charge", "notify")?;
        }
        if context.quiet {
            steps.step("notify")?.bypass();
        }
        Ok(())
    }

    fn update_annotations(&self, task: &FinishedTask<Audit>) -> Vec<Annotation> {
        let charged = task.step("charge").and_then(|s| s.results.clone());
        vec![Annotation::new(
            "audit",
            tasker::serde_json::json!({
                "state": task.state,
                "charged": charged,
                "rush": task.context.rush,
            }),
        )]
    }
}

/// A standalone step handler with a typed context, for templates written by hand.
#[step_handler(name = "tests.greet")]
async fn greet(cx: &StepContext<Numbers>) -> Result<String, StepError> {
    Ok(format!("hello {}", cx.context().base))
}

/// A standalone step handler on the untyped JSON context.
#[step_handler]
async fn shout(cx: &StepContext) -> Result<tasker::serde_json::Value, StepError> {
    let greeting = cx.parent_as::<String>("greet")?;
    Ok(tasker::serde_json::json!({ "loud": greeting.to_uppercase() }))
}

fn greeting_template() -> TaskTemplate {
    TaskTemplate::new("tests", "greeting", "1.0.0")
        .step(StepTemplate::new("greet", "tests.greet"))
        .step(StepTemplate::new("shout", "shout").depends_on(["greet"]))
}

conformance!(
    typed_diamond_passes_outputs_by_type,
    bypassed_parent_arrives_as_none,
    context_schema_comes_from_the_type,
    parent_output_that_does_not_fit_fails_the_step,
    yaml_bound_handler_runs_with_the_yaml_settings,
    step_handlers_register_by_name,
    the_plan_hook_adjusts_each_task_s_steps_for_its_context,
    the_plan_hook_refuses_a_task_and_nothing_is_written,
    finished_tasks_are_annotated_before_their_event_is_published,
);

async fn run(tasker: &Tasker, task_id: i64) -> TaskState {
    let worker = tasker.start_worker();
    let state = tasker.wait_for_task(task_id, WAIT).await.map(|t| t.state);
    worker.shutdown().await;
    state.unwrap_or_else(|e| panic!("task {task_id} did not finish: {e}"))
}

async fn step_result(tasker: &Tasker, task_id: i64, name: &str) -> tasker::serde_json::Value {
    let steps = tasker.steps(task_id).await.expect("steps");
    let step = steps.into_iter().find(|s| s.name == name).expect("step");
    step.results.unwrap_or_default()
}

async fn typed_diamond_passes_outputs_by_type(db: TestDatabase) {
    let tasker = db.builder().build().await.expect("build");
    let task = tasker
        .create::<Diamond>(&Numbers { base: 7 })
        .await
        .expect("create");
    assert_eq!(run(&tasker, task.id).await, TaskState::Complete);
    assert_eq!(step_result(&tasker, task.id, "start").await["value"], 7);
    assert_eq!(step_result(&tasker, task.id, "double").await, 14);
    assert_eq!(step_result(&tasker, task.id, "square").await, 49);
    assert_eq!(
        step_result(&tasker, task.id, "sum").await,
        tasker::serde_json::json!([7, 14, 49, 63])
    );

    let template = tasker
        .registry()
        .template(Diamond::NAMESPACE, Diamond::NAME, Diamond::VERSION)
        .expect("registered");
    let double = template.find_step("double").expect("double");
    assert_eq!(double.default_retry_limit, 4);
    assert_eq!(double.timeout_seconds, Some(90.0));
    assert_eq!(double.description.as_deref(), Some("Twice the base."));
    assert_eq!(double.dependencies(), ["start"]);
    let square = template.find_step("square").expect("square");
    assert!(square.skippable && !square.default_retryable);
    let start = template.find_step("start").expect("start");
    assert_eq!(
        start.description.as_deref(),
        Some("Reads the base from the context.")
    );
    assert_eq!(
        template.description.as_deref(),
        Some("Adds a number's double and its square.")
    );
    let sum = template.find_step("sum").expect("sum");
    assert_eq!(sum.dependencies(), ["double", "square"]);
    // Each step's output type is described by its JSON Schema.
    assert_eq!(sum.output_schema.as_ref().expect("schema")["type"], "array");
    assert_eq!(
        double.output_schema.as_ref().expect("schema")["type"],
        "integer"
    );
    let start_schema = start.output_schema.as_ref().expect("schema");
    assert!(
        start_schema["properties"]["value"].is_object(),
        "{start_schema}"
    );
}

async fn bypassed_parent_arrives_as_none(db: TestDatabase) {
    let tasker = db.builder().build().await.expect("build");
    let request = TaskRequest::of::<Diamond>(&Numbers { base: 3 })
        .expect("request")
        .bypass_step("square");
    let task = tasker.create_task(request).await.expect("create");
    assert_eq!(run(&tasker, task.id).await, TaskState::Complete);
    assert_eq!(
        step_result(&tasker, task.id, "sum").await,
        tasker::serde_json::json!([3, 6, 0, 6])
    );
}

async fn context_schema_comes_from_the_type(db: TestDatabase) {
    let tasker = db.builder().build().await.expect("build");
    let request = TaskRequest::new("typed_diamond")
        .namespace("tests")
        .version("2.0.0")
        .context(tasker::serde_json::json!({ "base": "seven" }));
    match tasker.create_task(request).await {
        Err(Error::InvalidContext { errors, .. }) => {
            assert!(errors.iter().any(|e| e.pointer == "/base"), "{errors:?}");
        }
        other => panic!("expected InvalidContext, got {other:?}"),
    }
    let missing = TaskRequest::new("typed_diamond")
        .namespace("tests")
        .version("2.0.0");
    assert!(matches!(
        tasker.create_task(missing).await,
        Err(Error::InvalidContext { .. })
    ));
}

async fn parent_output_that_does_not_fit_fails_the_step(db: TestDatabase) {
    let tasker = db.builder().build().await.expect("build");
    let task = tasker
        .create_task(TaskRequest::new("fragile").namespace("tests"))
        .await
        .expect("create");
    assert_eq!(run(&tasker, task.id).await, TaskState::Error);
    let steps = tasker.steps(task.id).await.expect("steps");
    let first = steps.iter().find(|s| s.name == "first").expect("first");
    // An operator resolves `first` by hand with a result that is not the `i64` `second` takes.
    let resolved = tasker
        .resolve_step(
            first.step_id,
            Some(tasker::serde_json::json!({ "not": "a number" })),
        )
        .await
        .expect("resolve");
    assert!(resolved);
    assert_eq!(run(&tasker, task.id).await, TaskState::Error);
    let second = step_result(&tasker, task.id, "second").await;
    let error = second["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("result of parent step `first` does not fit"),
        "{second}"
    );
    assert_eq!(second["error_class"], "permanent");
}

async fn yaml_bound_handler_runs_with_the_yaml_settings(db: TestDatabase) {
    let tasker = db
        .builder()
        .configure(|c| c.environment = Some("test".to_owned()))
        .build()
        .await
        .expect("build");
    assert_eq!(
        (BoundOrder::NAMESPACE, BoundOrder::NAME, BoundOrder::VERSION),
        ("tests", "bound_order", "1.2.0")
    );
    let template = tasker
        .registry()
        .template("tests", "bound_order", "1.2.0")
        .expect("registered");
    // The `test` environment's override applies.
    let reserve = template.find_step("reserve").expect("reserve");
    assert_eq!(reserve.default_retry_limit, 7);
    assert_eq!(
        reserve.output_schema.as_ref().expect("schema")["type"],
        "string"
    );
    let task = tasker
        .create::<BoundOrder>(&tasker::serde_json::json!({}))
        .await
        .expect("create");
    assert_eq!(run(&tasker, task.id).await, TaskState::Complete);
    assert_eq!(
        step_result(&tasker, task.id, "ship").await,
        "shipped from north"
    );
}

async fn step_handlers_register_by_name(db: TestDatabase) {
    let tasker = db
        .builder()
        .template(greeting_template())
        .build()
        .await
        .expect("build");
    let task = tasker
        .create_task(
            TaskRequest::new("greeting")
                .namespace("tests")
                .version("1.0.0")
                .context(tasker::serde_json::json!({ "base": 5 })),
        )
        .await
        .expect("create");
    assert_eq!(run(&tasker, task.id).await, TaskState::Complete);
    assert_eq!(
        step_result(&tasker, task.id, "shout").await,
        tasker::serde_json::json!({ "loud": "HELLO 5" })
    );
}

#[tokio::test]
async fn a_template_clashing_with_a_task_handler_is_refused() {
    let db = TestDatabase::sqlite();
    let clash = TaskTemplate::new("tests", "typed_diamond", "2.0.0")
        .step(StepTemplate::new("only", "tests.greet"));
    let error = db
        .builder()
        .template(clash)
        .build()
        .await
        .expect_err("clash");
    assert!(
        matches!(&error, Error::DuplicateTemplate(key) if key == "tests/typed_diamond@2.0.0"),
        "{error}"
    );
}

#[tokio::test]
async fn without_auto_registration_only_named_handlers_run() {
    let db = TestDatabase::sqlite();
    let tasker = db
        .builder()
        .auto_register(false)
        .task_handler(Diamond)
        .build()
        .await
        .expect("build");
    assert!(
        tasker
            .registry()
            .template("tests", "typed_diamond", "2.0.0")
            .is_some()
    );
    assert!(
        tasker
            .registry()
            .template("tests", "fragile", "0.1.0")
            .is_none()
    );
    assert!(matches!(
        tasker
            .create::<Fragile>(&tasker::serde_json::json!({}))
            .await,
        Err(Error::UnknownTemplate { .. })
    ));
}

#[tokio::test]
async fn a_registry_built_elsewhere_keeps_its_task_handlers() {
    let db = TestDatabase::sqlite();
    let mut registry = tasker::Registry::new();
    registry.register_task_handler(Diamond).expect("register");
    // Discovery must not register `Diamond` a second time.
    let tasker = db
        .builder()
        .registry(registry)
        .build()
        .await
        .expect("build");
    let task = tasker
        .create::<Diamond>(&Numbers { base: 2 })
        .await
        .expect("create");
    let worker = tasker.start_worker();
    let done = tasker.wait_for_task(task.id, WAIT).await.expect("wait");
    worker.shutdown().await;
    assert_eq!(done.state, TaskState::Complete);
}

/// `#[task_handler(timeout = …)]` is the template's deadline, which each task gets from its
/// start.
#[tokio::test]
async fn a_task_handler_timeout_gives_its_tasks_a_deadline() {
    let db = TestDatabase::sqlite();
    let tasker = db
        .builder()
        .auto_register(false)
        .task_handler(Fragile)
        .build()
        .await
        .expect("build");
    let template = tasker
        .registry()
        .template("tests", "fragile", "0.1.0")
        .expect("registered");
    assert_eq!(template.timeout_seconds, Some(90.0));
    let id = tasker
        .create::<Fragile>(&tasker::serde_json::json!({}))
        .await
        .expect("create")
        .id;
    let task = tasker.task(id).await.expect("task");
    let deadline = task.deadline_at.expect("a deadline");
    let seconds = (deadline - task.created_at).num_milliseconds() as f64 / 1000.0;
    assert!(
        (89.0..=91.0).contains(&seconds),
        "deadline {seconds} s after creation"
    );
}

/// `#[task_handler(schedule = …)]` declares the template's one schedule, and
/// `schedule_context` builds each run's context from its slot.
/// A hook is an ordinary method: a unit test runs it on the plan its template starts from, with
/// no engine or database.
#[test]
fn a_hook_runs_on_the_plan_of_its_template_in_a_unit_test() {
    let template = <Audited as TaskHandler>::template(None).expect("template");
    let plan = StepPlan::of_template(&template);
    let names: Vec<&str> = plan.steps().iter().map(|s| s.name()).collect();
    assert_eq!(names, ["check", "charge", "notify"]);
    assert_eq!(plan.dependencies("charge"), ["check"]);
    let charge = &plan.steps()[1];
    let declared = template.find_step("charge").expect("charge");
    assert_eq!(charge.retry_limit(), declared.default_retry_limit);
    assert!(charge.retryable() && !charge.bypassed());
    assert!(plan.steps()[2].skippable());

    let mut rushed = plan.clone();
    let context = Audit {
        rush: true,
        quiet: true,
        refuse: false,
    };
    Audited
        .establish_step_dependencies_and_defaults(&context, &mut rushed)
        .expect("plan");
    let charge = rushed.step("charge").expect("charge");
    assert_eq!((charge.retry_limit(), charge.retryable()), (1, false));
    assert_eq!(rushed.dependencies("charge"), ["check", "notify"]);
    assert!(rushed.step("notify").expect("notify").bypassed());

    let refused = Audit {
        rush: false,
        quiet: false,
        refuse: true,
    };
    let error = Audited
        .establish_step_dependencies_and_defaults(&refused, &mut plan.clone())
        .expect_err("refused");
    assert_eq!(error.to_string(), "this account is frozen");
}

#[test]
fn a_task_handler_schedule_is_declared_with_its_template() {
    let template = <WeekdayReport as TaskHandler>::template(None).expect("template");
    let mut expected = tasker::ScheduleTemplate::new("0 6 * * MON-FRI");
    expected.time_zone = "Europe/Berlin".to_owned();
    expected.catch_up = 2;
    expected.built_in_code = true;
    assert_eq!(template.schedules, [expected]);
    assert_eq!(template.schedules[0].name, None);

    let slot = chrono::DateTime::parse_from_rfc3339("2026-12-07T05:00:00Z")
        .expect("slot")
        .with_timezone(&chrono::Utc);
    assert_eq!(
        WeekdayReport::schedule_context("x", slot),
        Some(ReportSlot {
            slot: "2026-12-07T05:00:00+00:00".to_owned()
        })
    );
}

/// The runtime accepts the declared schedule and stores it without a context, which the
/// workflow's code builds at each slot.
#[tokio::test]
async fn a_task_handler_schedule_is_stored_without_a_context() {
    let db = TestDatabase::sqlite();
    let tasker = db
        .builder()
        .auto_register(false)
        .task_handler(WeekdayReport)
        .build()
        .await
        .expect("build");
    let schedule = tasker
        .schedule("tests.weekday_report")
        .await
        .expect("declared schedule");
    assert_eq!(
        (
            schedule.cron.as_str(),
            schedule.time_zone.as_str(),
            schedule.catch_up
        ),
        ("0 6 * * MON-FRI", "Europe/Berlin", 2)
    );
    assert_eq!(schedule.context, None);
    assert_eq!(schedule.origin, "template");
}

fn audit(rush: bool, quiet: bool, refuse: bool) -> Audit {
    Audit {
        rush,
        quiet,
        refuse,
    }
}

async fn the_plan_hook_adjusts_each_task_s_steps_for_its_context(db: TestDatabase) {
    let tasker = db.builder().build().await.expect("build");
    let by_name = |steps: Vec<tasker::StepInfo>| {
        steps
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect::<std::collections::HashMap<_, _>>()
    };

    let plain = tasker
        .create::<Audited>(&audit(false, false, false))
        .await
        .expect("create");
    let steps = by_name(tasker.steps(plain.id).await.expect("steps"));
    assert_eq!(steps["charge"].retry_limit, 3);
    assert!(steps["charge"].retryable);
    assert_eq!(steps["charge"].remaining_parents, 1);

    let rush = tasker
        .create::<Audited>(&audit(true, false, false))
        .await
        .expect("create");
    let steps = by_name(tasker.steps(rush.id).await.expect("steps"));
    assert_eq!(steps["charge"].retry_limit, 1);
    assert!(!steps["charge"].retryable);
    // It waits for `notify` too now.
    assert_eq!(steps["charge"].remaining_parents, 2);
    assert_eq!(run(&tasker, rush.id).await, TaskState::Complete);
    let steps = by_name(tasker.steps(rush.id).await.expect("steps"));
    let (notified, charged) = (
        steps["notify"].processed_at.expect("notify finished"),
        steps["charge"].last_attempted_at.expect("charge ran"),
    );
    assert!(notified <= charged, "charge ran before notify finished");

    // A bypassed step is recorded as the request's bypass would be, and waits for nothing.
    let quiet = tasker
        .create::<Audited>(&audit(true, true, false))
        .await
        .expect("create");
    assert_eq!(
        tasker.task(quiet.id).await.expect("task").bypass_steps,
        ["notify"]
    );
    let steps = by_name(tasker.steps(quiet.id).await.expect("steps"));
    assert_eq!(steps["charge"].remaining_parents, 1);
    assert_eq!(run(&tasker, quiet.id).await, TaskState::Complete);
    assert_eq!(step_result(&tasker, quiet.id, "charge").await, 20);
}

async fn the_plan_hook_refuses_a_task_and_nothing_is_written(db: TestDatabase) {
    let tasker = db.builder().build().await.expect("build");
    match tasker.create::<Audited>(&audit(false, false, true)).await {
        Err(error @ Error::StepPlan { .. }) => {
            let text = error.to_string();
            assert!(text.contains("tests/audited@0.1.0"), "{text}");
            assert!(text.contains("this account is frozen"), "{text}");
        }
        other => panic!("expected StepPlan, got {other:?}"),
    }
    let listed = tasker
        .tasks(tasker::TaskFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("tasks");
    assert!(listed.is_empty(), "{listed:?}");
}

async fn finished_tasks_are_annotated_before_their_event_is_published(db: TestDatabase) {
    let tasker = db.builder().build().await.expect("build");
    let mut events = tasker.subscribe();
    let task = tasker
        .create::<Audited>(&audit(false, false, false))
        .await
        .expect("create");
    let worker = tasker.start_worker();
    let annotations = tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("event");
            if event.name == "task.completed" && event.task_id == Some(task.id) {
                // Read at once: the hook ran before this event went out.
                return tasker.annotations(task.id).await.expect("annotations");
            }
        }
    })
    .await
    .expect("task.completed");
    worker.shutdown().await;
    assert_eq!(annotations.len(), 1, "{annotations:?}");
    assert_eq!(annotations[0].annotation_type, "audit");
    assert_eq!(
        annotations[0].annotation,
        tasker::serde_json::json!({"state": "complete", "charged": 20, "rush": false})
    );
    let found = tasker
        .tasks(tasker::TaskFilter {
            limit: 10,
            annotation: Some("audit:state=complete".parse().expect("filter")),
            ..Default::default()
        })
        .await
        .expect("tasks");
    assert_eq!(
        found.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        [task.id]
    );
}
