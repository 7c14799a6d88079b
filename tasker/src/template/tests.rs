use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// The seed README's `order_process` template (`handler_class` kept: it is an alias of `handler`).
const ORDER_PROCESS: &str = r#"---
name: order_process
module_namespace: # Optional namespace
task_handler_class: OrderProcess
concurrent: true # Whether steps can run concurrently

schema: # JSON Schema for validating task context
  type: object
  required:
    - order_id
  properties:
    order_id:
      type: integer

step_templates:
  - name: fetch_order
    description: Fetch order details from database
    handler_class: OrderProcess::StepHandler::FetchOrderHandler

  - name: validate_items
    description: Validate order items are available
    depends_on_step: fetch_order
    handler_class: OrderProcess::StepHandler::ValidateItemsHandler

  - name: process_payment
    description: Process payment for the order
    depends_on_step: validate_items
    handler_class: OrderProcess::StepHandler::ProcessPaymentHandler
    # Retry configuration
    default_retryable: true
    default_retry_limit: 3

  - name: update_inventory
    description: Update inventory levels
    depends_on_step: process_payment
    handler_class: OrderProcess::StepHandler::UpdateInventoryHandler

  - name: send_confirmation
    description: Send confirmation email
    depends_on_step: update_inventory
    handler_class: OrderProcess::StepHandler::SendConfirmationHandler
"#;

fn parse(yaml: &str) -> Result<TaskTemplate, TemplateError> {
    parse_template(yaml, "test.yaml", None)
}

fn parse_ok(yaml: &str) -> TaskTemplate {
    match parse(yaml) {
        Ok(template) => template,
        Err(error) => panic!("expected the template to load, got:\n{error}"),
    }
}

fn parse_err(yaml: &str) -> TemplateError {
    match parse(yaml) {
        Ok(template) => panic!("expected an error, got {template:#?}"),
        Err(error) => error,
    }
}

/// Asserts that `error` holds a problem with exactly this step and key whose message contains
/// every one of `fragments`.
#[track_caller]
fn assert_problem(
    error: &TemplateError,
    step: Option<&str>,
    key: Option<&str>,
    fragments: &[&str],
) {
    let found = error.problems().iter().any(|p| {
        p.step.as_deref() == step
            && p.key.as_deref() == key
            && fragments.iter().all(|f| p.message.contains(f))
    });
    assert!(
        found,
        "no problem with step {step:?}, key {key:?} and message containing {fragments:?} in:\n{error:#?}"
    );
}

/// A template of the given `(name, dependencies)` steps, all run by handler `h`.
fn graph(steps: &[(&str, &[&str])]) -> String {
    let mut yaml = String::from("name: graph\nstep_templates:\n");
    for (name, deps) in steps {
        yaml.push_str(&format!("  - name: {name}\n    handler: h\n"));
        if !deps.is_empty() {
            yaml.push_str(&format!("    depends_on_steps: [{}]\n", deps.join(", ")));
        }
    }
    yaml
}

#[test]
fn seed_order_process_parses_with_its_dependencies() {
    let template = parse_ok(ORDER_PROCESS);
    assert_eq!(template.name, "order_process");
    assert_eq!(template.full_name(), "default/order_process@0.1.0");
    assert_eq!(template.task_handler_class.as_deref(), Some("OrderProcess"));
    assert_eq!(template.module_namespace, None);
    assert!(template.concurrent);
    assert_eq!(
        template.schema,
        Some(json!({
            "type": "object",
            "required": ["order_id"],
            "properties": {"order_id": {"type": "integer"}}
        }))
    );
    let deps: Vec<(&str, Vec<&str>)> = template
        .step_templates
        .iter()
        .map(|s| (s.name.as_str(), s.dependencies()))
        .collect();
    assert_eq!(
        deps,
        [
            ("fetch_order", vec![]),
            ("validate_items", vec!["fetch_order"]),
            ("process_payment", vec!["validate_items"]),
            ("update_inventory", vec!["process_payment"]),
            ("send_confirmation", vec!["update_inventory"]),
        ]
    );
    assert_eq!(
        template.step_templates[0].handler,
        "OrderProcess::StepHandler::FetchOrderHandler"
    );
    assert_eq!(template.topological_order(), [0, 1, 2, 3, 4]);
    let handlers: Vec<&str> = template
        .step_templates
        .iter()
        .map(|s| s.handler.as_str())
        .collect();
    assert!(template.validate_handlers(&handlers).is_ok());
}

#[test]
fn depends_on_step_and_steps_are_unioned_without_duplicates() {
    let template = parse_ok(
        "name: t
step_templates:
  - {name: a, handler: h}
  - {name: b, handler: h}
  - name: c
    handler: h
    depends_on_step: a
    depends_on_steps: [b, a, b]
",
    );
    assert_eq!(template.step_templates[2].dependencies(), ["a", "b"]);
}

#[test]
fn defaults_match_the_seed() {
    let template = parse_ok("name: t\nstep_templates:\n  - {name: a, handler: h}\n");
    assert_eq!(template.namespace_name, "default");
    assert_eq!(template.version, "0.1.0");
    assert!(template.concurrent);
    assert!(template.environments.is_empty());
    let step = &template.step_templates[0];
    assert!(step.default_retryable);
    assert_eq!(step.default_retry_limit, 3);
    assert!(!step.skippable);
    assert_eq!(step.timeout_seconds, None);
    assert_eq!(step, &StepTemplate::new("a", "h"));
}

#[test]
fn unknown_top_level_key_is_named_with_its_line() {
    let error = parse_err("name: t\nretries: 3\nstep_templates:\n  - {name: a, handler: h}\n");
    assert_eq!(error.source, "test.yaml");
    assert_problem(
        &error,
        None,
        Some("retries"),
        &[
            "unknown field `retries`",
            "expected one of",
            "line 2 column 1",
        ],
    );
}

#[test]
fn unknown_step_key_names_the_step_index_name_and_line() {
    let error = parse_err(
        "name: t
step_templates:
  - name: a
    handler: h
  - name: b
    handler: h
    retry_limit: 5
",
    );
    assert_problem(
        &error,
        Some("b"),
        Some("retry_limit"),
        &[
            "step_templates[1]",
            "unknown field `retry_limit`",
            "line 7 column 5",
        ],
    );
}

#[test]
fn unknown_step_key_before_the_name_still_finds_the_step() {
    let error =
        parse_err("name: t\nstep_templates:\n  - retry_limit: 5\n    name: b\n    handler: h\n");
    assert_problem(
        &error,
        Some("b"),
        Some("retry_limit"),
        &["step_templates[0]", "line 3"],
    );
}

#[test]
fn missing_and_mistyped_keys_are_located() {
    // `handler` may be left out (a `#[task_handler]` supplies it), but a template that runs on
    // named handlers must name one for each step.
    let template = parse_ok("name: t\nstep_templates:\n  - name: a\n");
    let error = match template.validate_handlers(&["h"]) {
        Ok(()) => panic!("expected a missing handler"),
        Err(error) => error,
    };
    assert_problem(
        &error,
        Some("a"),
        Some("handler"),
        &["no `handler` is named"],
    );

    let error = parse_err("step_templates:\n  - {name: a, handler: h}\n");
    assert!(
        error.to_string().contains("missing field `name`"),
        "{error}"
    );

    let error = parse_err(
        "name: t\nstep_templates:\n  - {name: a, handler: h, default_retry_limit: lots}\n",
    );
    assert_problem(
        &error,
        Some("a"),
        Some("default_retry_limit"),
        &[
            "step_templates[0].default_retry_limit",
            "invalid type",
            "line 3",
        ],
    );
}

#[test]
fn unknown_handler_suggests_the_closest_registered_one() {
    let template = parse_ok(
        "name: t\nstep_templates:\n  - {name: a, handler: FetchOrdr}\n  - {name: b, handler: Zzz}\n",
    );
    let error = match template.validate_handlers(&["FetchOrder", "SendMail"]) {
        Ok(()) => panic!("expected unknown handlers"),
        Err(error) => error,
    };
    assert_eq!(error.source, "default/t@0.1.0");
    assert_eq!(error.problems().len(), 2);
    assert_problem(
        &error,
        Some("a"),
        Some("handler"),
        &[
            "no step handler named `FetchOrdr`",
            "did you mean `FetchOrder`?",
        ],
    );
    assert_problem(
        &error,
        Some("b"),
        Some("handler"),
        &["no step handler named `Zzz` is registered"],
    );
    assert!(!error.problems()[1].message.contains("did you mean"));
}

#[test]
fn unknown_dependency_suggests_the_closest_step() {
    let error = parse_err(
        "name: order
step_templates:
  - {name: fetch_order, handler: h}
  - {name: validate_items, handler: h, depends_on_step: fetch_ordr}
  - {name: pay, handler: h, depends_on_steps: [fetch_order, nothing_like_it]}
",
    );
    assert_problem(
        &error,
        Some("validate_items"),
        Some("depends_on_step"),
        &["unknown dependency `fetch_ordr` (did you mean `fetch_order`?)"],
    );
    assert_problem(
        &error,
        Some("pay"),
        Some("depends_on_steps"),
        &["unknown dependency `nothing_like_it`"],
    );
    assert_eq!(error.problems().len(), 2);
    assert_eq!(
        error.to_string(),
        "test.yaml: 2 problems
  step `validate_items`, key `depends_on_step`: unknown dependency `fetch_ordr` (did you mean `fetch_order`?)
  step `pay`, key `depends_on_steps`: unknown dependency `nothing_like_it`"
    );
}

#[test]
fn single_problem_displays_on_one_line() {
    let error = parse_err(
        "name: t\nstep_templates:\n  - {name: a, handler: h, depends_on_step: fetch_ordr}\n",
    );
    assert_eq!(
        error.to_string(),
        "test.yaml: step `a`, key `depends_on_step`: unknown dependency `fetch_ordr`"
    );
}

#[test]
fn duplicate_step_is_named() {
    let error = parse_err(&graph(&[("a", &[]), ("b", &["a"]), ("a", &[])]));
    assert_problem(
        &error,
        Some("a"),
        Some("name"),
        &[
            "duplicate step `a`",
            "step_templates[2]",
            "first declared at step_templates[0]",
        ],
    );
    assert_eq!(error.problems().len(), 1);
}

#[test]
fn self_dependency_is_refused() {
    let error = parse_err(&graph(&[("a", &[]), ("b", &["a", "b"])]));
    assert_problem(
        &error,
        Some("b"),
        Some("depends_on_steps"),
        &["step `b` depends on itself"],
    );
    assert_eq!(
        error.problems().len(),
        1,
        "a self dependency is not also a cycle"
    );
}

#[test]
fn cycle_is_reported_with_its_path() {
    // Run order: `a` before `b` before `c` before `a`.
    let error = parse_err(
        "name: t
step_templates:
  - {name: a, handler: h, depends_on_step: c}
  - {name: b, handler: h, depends_on_step: a}
  - {name: c, handler: h, depends_on_step: b}
  - {name: d, handler: h}
",
    );
    assert_problem(
        &error,
        Some("a"),
        Some("depends_on_step"),
        &["dependency cycle `a -> b -> c -> a`"],
    );
    assert_eq!(error.problems().len(), 1);
}

#[test]
fn distinct_cycles_are_each_reported() {
    let error = parse_err(&graph(&[
        ("a", &["b"]),
        ("b", &["a"]),
        ("c", &["d"]),
        ("d", &["c"]),
    ]));
    assert_problem(
        &error,
        Some("a"),
        Some("depends_on_steps"),
        &["`a -> b -> a`"],
    );
    assert_problem(
        &error,
        Some("c"),
        Some("depends_on_steps"),
        &["`c -> d -> c`"],
    );
    assert_eq!(error.problems().len(), 2);
}

#[test]
fn topological_order_does_not_panic_on_a_cycle() {
    let template: TaskTemplate =
        match serde_norway::from_str(&graph(&[("a", &["b"]), ("b", &["a"]), ("c", &[])])) {
            Ok(template) => template,
            Err(error) => panic!("{error}"),
        };
    assert_eq!(template.topological_order(), [2]);
}

#[test]
fn invalid_json_schema_is_refused() {
    let error =
        parse_err("name: t\nschema: {type: 12}\nstep_templates:\n  - {name: a, handler: h}\n");
    assert_problem(&error, None, Some("schema"), &["invalid JSON Schema", "12"]);
}

#[test]
fn invalid_versions_are_refused_and_semver_is_accepted() {
    for version in [
        "1.0",
        "1.0.0.0",
        "01.2.3",
        "1.2.x",
        "1.2.3-",
        "1.2.3+",
        "1.2.3-a..b",
        "v1.2.3",
        "1.2.3-01",
    ] {
        let error = parse_err(&format!(
            "name: t\nversion: \"{version}\"\nstep_templates:\n  - {{name: a, handler: h}}\n"
        ));
        assert_problem(
            &error,
            None,
            Some("version"),
            &[&format!("version `{version}` is not a semantic version")],
        );
    }
    let error = parse_err(
        "name: t\nversion: 1.2.3-a-very-long-pre-release\nstep_templates:\n  - {name: a, handler: h}\n",
    );
    assert_problem(&error, None, Some("version"), &["over the maximum of 16"]);
    for version in [
        "0.1.0",
        "10.20.30",
        "1.2.3-rc.1",
        "1.0.0+b.5",
        "1.2.3-0.a-b+x-1",
    ] {
        let template = parse_ok(&format!(
            "name: t\nversion: {version}\nstep_templates:\n  - {{name: a, handler: h}}\n"
        ));
        assert_eq!(template.version, version);
    }
}

#[test]
fn identifiers_are_checked() {
    let long = "n".repeat(65);
    let error = parse_err(&format!(
        "name: {long}\nnamespace_name: \"\"\nstep_templates:\n  - {{name: \"bad name\", handler: h}}\n  - {{name: \"\", handler: h}}\n"
    ));
    assert_problem(
        &error,
        None,
        Some("name"),
        &["task name", "65 bytes long, over the maximum of 64"],
    );
    assert_problem(
        &error,
        None,
        Some("namespace_name"),
        &["namespace is empty"],
    );
    assert_problem(
        &error,
        Some("bad name"),
        Some("name"),
        &["contains ' '", "ASCII letters"],
    );
    assert_problem(
        &error,
        None,
        Some("name"),
        &["step_templates[1] has an empty name"],
    );
    assert_eq!(error.problems().len(), 4);
}

#[test]
fn step_limits_are_checked() {
    let error = parse_err(
        "name: t
step_templates:
  - {name: a, handler: h, default_retry_limit: 5000}
  - {name: b, handler: h, timeout_seconds: 0}
  - {name: c, handler: h, timeout_seconds: .nan}
  - {name: d, handler: h, timeout_seconds: 1e300}
  - {name: e, handler: h, timeout_seconds: 2.5, default_retry_limit: 1000}
",
    );
    assert_problem(
        &error,
        Some("a"),
        Some("default_retry_limit"),
        &["retry limit 5000 is over the maximum of 1000"],
    );
    assert_problem(
        &error,
        Some("b"),
        Some("timeout_seconds"),
        &["greater than 0, got 0"],
    );
    assert_problem(
        &error,
        Some("c"),
        Some("timeout_seconds"),
        &["finite", "NaN"],
    );
    assert_problem(&error, Some("d"), Some("timeout_seconds"), &["too large"]);
    assert_eq!(error.problems().len(), 4);
}

#[test]
fn custom_event_names_are_checked() {
    let error = parse_err(
        "name: t
step_templates:
  - name: a
    handler: h
    custom_events:
      - name: order.fulfilled
      - name: fulfilled
      - name: step.completed
      - {name: order., description: trailing dot}
",
    );
    assert_problem(
        &error,
        Some("a"),
        Some("custom_events"),
        &["`fulfilled` must be a dotted name"],
    );
    assert_problem(
        &error,
        Some("a"),
        Some("custom_events"),
        &["`step.completed` uses the reserved prefix `step.`"],
    );
    assert_problem(
        &error,
        Some("a"),
        Some("custom_events"),
        &["`order.` must be a dotted name"],
    );
    assert_eq!(error.problems().len(), 3);
}

#[test]
fn named_steps_must_list_steps_and_dependencies() {
    let error = parse_err(
        "name: t
named_steps: [a]
step_templates:
  - {name: a, handler: h}
  - {name: b, handler: h, depends_on_step: a}
",
    );
    assert_problem(
        &error,
        Some("b"),
        Some("named_steps"),
        &["step `b` is not listed in `named_steps`"],
    );
    assert_eq!(error.problems().len(), 1);

    let template = parse_ok(
        "name: t\nnamed_steps: [a, b]\nstep_templates:\n  - {name: a, handler: h}\n  - {name: b, handler: h, depends_on_step: a}\n",
    );
    assert_eq!(
        template.named_steps.as_deref(),
        Some(&["a".to_owned(), "b".to_owned()][..])
    );
}

#[test]
fn missing_steps_and_too_many_steps_are_refused() {
    let error = parse_err("name: t\nstep_templates: []\n");
    assert_problem(
        &error,
        None,
        Some("step_templates"),
        &["template has no steps"],
    );

    let names: Vec<String> = (0..=MAX_STEPS_PER_TEMPLATE)
        .map(|i| format!("s{i}"))
        .collect();
    let steps: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let error = parse_err(&graph(&steps));
    assert_problem(
        &error,
        None,
        Some("step_templates"),
        &["1001 steps, over the maximum of 1000"],
    );
}

#[test]
fn graph_deeper_than_the_limit_is_refused() {
    let names: Vec<String> = (0..=MAX_GRAPH_DEPTH).map(|i| format!("s{i}")).collect();
    let mut steps: Vec<(&str, Vec<&str>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let deps = if i == 0 {
            vec![]
        } else {
            vec![names[i - 1].as_str()]
        };
        steps.push((name, deps));
    }
    let as_slices: Vec<(&str, &[&str])> = steps.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    let error = parse_err(&graph(&as_slices));
    assert_problem(
        &error,
        None,
        Some("step_templates"),
        &["ending at step `s100` is 101 steps long, over the maximum of 100"],
    );

    // Exactly at the limit is fine.
    assert!(parse(&graph(&as_slices[..MAX_GRAPH_DEPTH])).is_ok());
}

#[test]
fn all_problems_are_collected() {
    let error = parse_err(
        "name: t
version: \"1.0\"
schema: {type: 12}
step_templates:
  - {name: a, handler: h, depends_on_step: x}
  - {name: a, handler: h, default_retry_limit: 2000}
",
    );
    let keys: Vec<Option<&str>> = error.problems().iter().map(|p| p.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            Some("version"),
            Some("name"),
            Some("default_retry_limit"),
            Some("depends_on_step"),
            Some("schema")
        ]
    );
    assert!(
        error
            .to_string()
            .starts_with("test.yaml: 5 problems\n  key `version`: ")
    );
}

const WITH_ENVIRONMENTS: &str = "name: t
step_templates:
  - name: fetch
    handler: Fetch
    default_retry_limit: 3
    handler_config:
      url: https://example.com
      params: {a: 1, b: 2}
      headers: [x]
  - name: store
    handler_class: Store
    depends_on_step: fetch
environments:
  development:
    step_templates:
      - name: fetch
        default_retry_limit: 7
        handler_config:
          url: http://localhost
          params: {b: 20, c: 30}
          headers: [y, z]
      - name: ghost
        handler_config: {url: http://nowhere}
      - name: store
        handler: DevStore
  production:
    step_templates:
      - name: fetch
        handler_config: {url: https://prod.example.com}
";

#[test]
fn environment_override_is_deep_merged_by_step_name() {
    let template = match parse_template(WITH_ENVIRONMENTS, "env.yaml", Some("development")) {
        Ok(template) => template,
        Err(error) => panic!("{error}"),
    };
    let fetch = &template.step_templates[0];
    assert_eq!(fetch.default_retry_limit, 7, "scalars are replaced");
    assert_eq!(
        fetch.handler_config,
        Some(json!({
            "url": "http://localhost",
            "params": {"a": 1, "b": 20, "c": 30},
            "headers": ["y", "z"],
        })),
        "mappings merge recursively, sequences are replaced"
    );
    assert_eq!(
        template.step_templates[1].handler, "DevStore",
        "`handler` overrides `handler_class`"
    );
    assert_eq!(
        template.step_templates.len(),
        2,
        "`ghost` is not in the base and is ignored"
    );
    assert_eq!(template.step_templates[1].dependencies(), ["fetch"]);
    assert_eq!(
        template.environments.keys().collect::<Vec<_>>(),
        ["development", "production"],
        "environments are kept as written"
    );
}

#[test]
fn other_environments_and_no_environment_leave_the_base() {
    let base = parse_ok(WITH_ENVIRONMENTS);
    assert_eq!(base.step_templates[0].default_retry_limit, 3);
    assert_eq!(
        base.step_templates[0].handler_config,
        Some(json!({"url": "https://example.com", "params": {"a": 1, "b": 2}, "headers": ["x"]}))
    );
    assert_eq!(base.step_templates[1].handler, "Store");

    let production = match parse_template(WITH_ENVIRONMENTS, "env.yaml", Some("production")) {
        Ok(template) => template,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(
        production.step_templates[0].handler_config,
        Some(
            json!({"url": "https://prod.example.com", "params": {"a": 1, "b": 2}, "headers": ["x"]})
        )
    );
    assert_eq!(production.step_templates[0].default_retry_limit, 3);

    let unknown = match parse_template(WITH_ENVIRONMENTS, "env.yaml", Some("staging")) {
        Ok(template) => template,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(
        unknown, base,
        "an environment without a block changes nothing"
    );
}

#[test]
fn environment_override_is_validated_after_merging() {
    let yaml = "name: t
step_templates:
  - {name: a, handler: h}
  - {name: b, handler: h, depends_on_step: a}
environments:
  test:
    step_templates:
      - {name: a, depends_on_step: b}
";
    assert!(parse(yaml).is_ok());
    let error = match parse_template(yaml, "env.yaml", Some("test")) {
        Ok(_) => panic!("the override makes a cycle"),
        Err(error) => error,
    };
    assert_problem(
        &error,
        Some("a"),
        Some("depends_on_step"),
        &["dependency cycle `a -> b -> a`"],
    );
}

#[test]
fn unknown_keys_in_environment_blocks_are_refused_even_when_not_selected() {
    let top = "name: t
step_templates:
  - {name: a, handler: h}
environments:
  development:
    steps:
      - {name: a}
";
    for env in [None, Some("development"), Some("production")] {
        let error = match parse_template(top, "env.yaml", env) {
            Ok(_) => panic!("unknown key accepted with env {env:?}"),
            Err(error) => error,
        };
        assert_problem(
            &error,
            None,
            Some("steps"),
            &[
                "environments.development: unknown field `steps`",
                "expected `step_templates`",
                "line 6",
            ],
        );
    }

    let step = "name: t
step_templates:
  - {name: a, handler: h}
environments:
  development:
    step_templates:
      - name: a
        handler_cfg: {url: x}
";
    let error = parse_err(step);
    assert_problem(
        &error,
        Some("a"),
        Some("handler_cfg"),
        &[
            "environments.development.step_templates[0]: unknown field `handler_cfg`",
            "line 8",
        ],
    );

    let nameless = "name: t
step_templates:
  - {name: a, handler: h}
environments:
  development:
    step_templates:
      - handler_config: {url: x}
";
    let error = parse_err(nameless);
    assert_problem(&error, None, Some("name"), &["missing field `name`"]);
}

#[test]
fn environment_overrides_accept_every_step_key() {
    // Serialise a step that sets every key, and check that an override may carry each of them,
    // so the override's key list cannot drift from `StepTemplate`'s.
    let mut step = StepTemplate::new("a", "h")
        .depends_on(["b"])
        .handler_config(json!({"k": 1}))
        .timeout(Duration::from_secs(3));
    step.description = Some("d".into());
    step.dependent_system = Some("s".into());
    step.depends_on_step = Some("b".into());
    step.custom_events = vec![CustomEventTemplate {
        name: "order.done".into(),
        description: Some("d".into()),
    }];
    let entry = match serde_norway::to_string(&step) {
        Ok(entry) => entry,
        Err(error) => panic!("{error}"),
    };
    let keys = entry.lines().filter(|l| !l.starts_with([' ', '-'])).count();
    assert_eq!(keys, 12, "every StepTemplate key is serialised:\n{entry}");
    let indented: String = entry.lines().map(|l| format!("        {l}\n")).collect();
    let yaml = format!(
        "name: t\nstep_templates:\n  - {{name: a, handler: h}}\n  - {{name: b, handler: h}}\nenvironments:\n  x:\n    step_templates:\n      -\n{indented}"
    );
    assert!(parse(&yaml).is_ok(), "{yaml}");
}

#[test]
fn alias_bomb_is_refused_quickly() {
    // Nine levels of nine aliases each: 9^9 (~387 million) strings if expanded.
    let mut yaml = String::from("name: t\nstep_templates:\n  - {name: a, handler: h}\nschema:\n");
    yaml.push_str(
        "  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let levels = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in levels.windows(2) {
        let aliases = vec![format!("*{}", pair[0]); 9].join(",");
        yaml.push_str(&format!("  {next}: &{next} [{aliases}]\n", next = pair[1]));
    }
    let started = Instant::now();
    let error = parse_err(&yaml);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_problem(&error, None, None, &["repetition limit exceeded"]);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let depth = 10_000;
    let sequences = format!(
        "name: t\nstep_templates:\n  - {{name: a, handler: h}}\nschema: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let error = parse_err(&sequences);
    assert_problem(&error, None, None, &["recursion limit exceeded", "line 4"]);

    let mappings = format!(
        "name: t\nstep_templates:\n  - name: a\n    handler: h\n    handler_config: {}1{}\n",
        "{a: ".repeat(depth),
        "}".repeat(depth)
    );
    let error = parse_err(&mappings);
    assert_problem(&error, None, None, &["recursion limit exceeded", "line 5"]);

    // Deep but within serde_norway's limit of 128 is fine.
    let ok = format!(
        "name: t\nstep_templates:\n  - {{name: a, handler: h}}\nschema: {{default: {}1{}}}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(parse(&ok).is_ok());
}

#[test]
fn oversize_document_is_refused() {
    let mut yaml = String::from("name: t\nstep_templates:\n  - {name: a, handler: h}\n");
    yaml.push_str(&format!("# {}\n", "x".repeat(MAX_TEMPLATE_BYTES)));
    let error = parse_err(&yaml);
    assert_problem(&error, None, None, &["over the maximum of 1048576"]);
}

#[test]
fn malformed_yaml_reports_its_line() {
    let error = parse_err("name: t\n  step_templates:\n  - {name: a, handler: h}\n");
    assert_eq!(error.problems().len(), 1);
    assert_problem(&error, None, None, &["line 2"]);

    let error = parse_err("name: t\nstep_templates:\n  - {name: a, handler: h\n");
    assert_problem(&error, None, None, &["line"]);

    let error = parse_err("   \n");
    assert_problem(&error, None, None, &["template is empty"]);
}

#[test]
fn duplicate_keys_are_refused() {
    let error = parse_err("name: t\nname: u\nstep_templates:\n  - {name: a, handler: h}\n");
    assert_problem(&error, None, Some("name"), &["duplicate field `name`"]);
}

#[test]
fn load_template_file_names_the_path() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("{error}"),
    };
    let missing = dir.path().join("missing.yaml");
    let error = match load_template_file(&missing, None) {
        Ok(_) => panic!("missing file loaded"),
        Err(error) => error,
    };
    assert_eq!(error.source, missing.display().to_string());
    assert_problem(&error, None, None, &["cannot read"]);

    let huge = dir.path().join("huge.yaml");
    if let Err(error) = std::fs::write(&huge, "#".repeat(MAX_TEMPLATE_BYTES + 10)) {
        panic!("{error}");
    }
    match load_template_file(&huge, None) {
        Ok(_) => panic!("huge file loaded"),
        Err(error) => assert_problem(&error, None, None, &["over the maximum size of"]),
    }

    let latin1 = dir.path().join("latin1.yaml");
    if let Err(error) = std::fs::write(&latin1, b"name: caf\xe9\n") {
        panic!("{error}");
    }
    match load_template_file(&latin1, None) {
        Ok(_) => panic!("non-UTF-8 file loaded"),
        Err(error) => assert_problem(&error, None, None, &["not UTF-8"]),
    }

    let order = dir.path().join("order_process.yaml");
    if let Err(error) = std::fs::write(&order, ORDER_PROCESS) {
        panic!("{error}");
    }
    match load_template_file(&order, Some("development")) {
        Ok(template) => assert_eq!(template.name, "order_process"),
        Err(error) => panic!("{error}"),
    }
}

#[test]
fn load_templates_dir_reports_every_bad_file() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("{error}"),
    };
    let files = [
        ("a_good.yaml", ORDER_PROCESS),
        (
            "b_unknown_key.yml",
            "name: b\nstep_templates:\n  - {name: x, handler: h, retry: 1}\n",
        ),
        (
            "c_bad_dependency.yaml",
            "name: c\nstep_templates:\n  - {name: x, handler: h, depends_on_step: y}\n",
        ),
        ("notes.txt", "not a template"),
    ];
    for (name, text) in files {
        if let Err(error) = std::fs::write(dir.path().join(name), text) {
            panic!("{error}");
        }
    }
    let error = match load_templates_dir(dir.path(), None) {
        Ok(_) => panic!("bad files loaded"),
        Err(error) => error,
    };
    assert_eq!(error.source, dir.path().display().to_string());
    assert_eq!(error.problems().len(), 2, "{error}");
    assert_problem(
        &error,
        Some("x"),
        Some("retry"),
        &["b_unknown_key.yml: ", "unknown field `retry`"],
    );
    assert_problem(
        &error,
        Some("x"),
        Some("depends_on_step"),
        &["c_bad_dependency.yaml: unknown dependency `y`"],
    );

    for bad in ["b_unknown_key.yml", "c_bad_dependency.yaml"] {
        if let Err(error) = std::fs::remove_file(dir.path().join(bad)) {
            panic!("{error}");
        }
    }
    if let Err(error) = std::fs::write(dir.path().join("d_again.yaml"), ORDER_PROCESS) {
        panic!("{error}");
    }
    let error = match load_templates_dir(dir.path(), None) {
        Ok(_) => panic!("duplicate template loaded"),
        Err(error) => error,
    };
    assert_problem(
        &error,
        None,
        Some("name"),
        &[
            "d_again.yaml: template `default/order_process@0.1.0` is also defined in",
            "a_good.yaml",
        ],
    );
}

#[test]
fn load_templates_dir_is_sorted_by_file_name() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("{error}"),
    };
    for name in ["zeta", "alpha", "mid"] {
        let yaml = format!("name: {name}\nstep_templates:\n  - {{name: a, handler: h}}\n");
        if let Err(error) = std::fs::write(dir.path().join(format!("{name}.yaml")), yaml) {
            panic!("{error}");
        }
    }
    let templates = match load_templates_dir(dir.path(), None) {
        Ok(templates) => templates,
        Err(error) => panic!("{error}"),
    };
    let names: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
}

#[test]
fn topological_order_of_a_diamond() {
    // `d` waits for `b` and `c`, which both wait for `a`; declared out of order on purpose.
    let template = parse_ok(&graph(&[
        ("d", &["b", "c"]),
        ("c", &["a"]),
        ("b", &["a"]),
        ("a", &[]),
    ]));
    let order: Vec<&str> = template
        .topological_order()
        .into_iter()
        .map(|i| template.step_templates[i].name.as_str())
        .collect();
    assert_eq!(
        order,
        ["a", "c", "b", "d"],
        "ties go to the earlier declaration (`c`)"
    );
}

#[test]
fn templates_built_in_code_validate_too() {
    let template = TaskTemplate::new("shop", "order", "1.0.0")
        .step(StepTemplate::new("fetch", "Fetch"))
        .step(StepTemplate::new("ship", "Ship").depends_on(["fetch"]))
        .schema(json!({"type": "object"}));
    assert!(template.validate().is_ok());

    let broken = TaskTemplate::new("shop", "order", "1.0.0")
        .step(StepTemplate::new("ship", "Ship").depends_on(["fetch"]));
    let error = match broken.validate() {
        Ok(()) => panic!("unknown dependency accepted"),
        Err(error) => error,
    };
    assert_eq!(error.source, "shop/order@1.0.0");
    assert_problem(
        &error,
        Some("ship"),
        Some("depends_on_steps"),
        &["unknown dependency `fetch`"],
    );
}

#[test]
fn a_step_listing_more_dependencies_than_steps_is_refused_cheaply() {
    let deps: Vec<String> = (0..=MAX_STEPS_PER_TEMPLATE)
        .map(|i| format!("d{i}"))
        .collect();
    let yaml = format!(
        "name: t\nstep_templates:\n  - {{name: a, handler: h, depends_on_steps: [{}]}}\n",
        deps.join(", ")
    );
    let error = parse_err(&yaml);
    assert_problem(
        &error,
        Some("a"),
        Some("depends_on_steps"),
        &["lists 1001 dependencies"],
    );
    assert_eq!(
        error.problems().len(),
        1,
        "the names themselves are not reported one by one"
    );
}

#[test]
fn many_cycles_are_capped() {
    // Every pair of 20 steps depends on each other: far more cycles than are worth printing.
    let names: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    let steps: Vec<(&str, Vec<&str>)> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                names
                    .iter()
                    .filter(|m| *m != n)
                    .map(String::as_str)
                    .collect(),
            )
        })
        .collect();
    let as_slices: Vec<(&str, &[&str])> = steps.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    let error = parse_err(&graph(&as_slices));
    let cycles = error
        .problems()
        .iter()
        .filter(|p| p.message.contains("dependency cycle"))
        .count();
    assert!((1..=16).contains(&cycles), "{cycles} cycles reported");
}

#[test]
fn an_invalid_output_schema_is_located() {
    let error = parse_err(
        "name: t\nstep_templates:\n  - name: a\n    handler: h\n    output_schema: { type: 12 }\n",
    );
    assert_problem(
        &error,
        Some("a"),
        Some("output_schema"),
        &["invalid JSON Schema"],
    );
    let template = parse_ok(
        "name: t\nstep_templates:\n  - name: a\n    handler: h\n    output_schema: { type: integer }\n",
    );
    assert_eq!(
        template.step_templates[0].output_schema,
        Some(serde_json::json!({ "type": "integer" }))
    );
}

#[test]
fn schedules_parse_with_their_defaults() {
    let template = parse_ok(
        "name: report
namespace_name: reports
step_templates:
  - {name: a, handler: h}
schedules:
  - name: nightly
    cron: '0 2 * * *'
    time_zone: Europe/Berlin
    context: {region: eu}
    catch_up: 3
  - name: hourly
    cron: '@hourly'
",
    );
    let nightly = &template.schedules[0];
    assert_eq!(nightly.name_in("reports", "report"), "nightly");
    assert_eq!(
        (nightly.time_zone.as_str(), nightly.catch_up),
        ("Europe/Berlin", 3)
    );
    assert_eq!(nightly.context, Some(json!({"region": "eu"})));
    let hourly = &template.schedules[1];
    assert_eq!((hourly.time_zone.as_str(), hourly.catch_up), ("UTC", 0));
    assert!(!hourly.built_in_code);
    let unnamed = parse_ok(
        "name: report\nstep_templates:\n  - {name: a, handler: h}\nschedules:\n  - cron: '* * * * *'\n",
    );
    assert_eq!(
        unnamed.schedules[0].name_in("default", "report"),
        "default.report"
    );
}

#[test]
fn every_problem_of_a_schedule_is_reported_with_its_key() {
    let error = parse_err(
        "name: report
step_templates:
  - {name: a, handler: h}
schedules:
  - cron: '0 24 * * *'
    time_zone: Europe/Berln
  - name: nightly
    cron: '0 0 31 2 *'
    catch_up: 5000
  - name: nightly
    cron: '* * * * *'
    context: [1]
",
    );
    assert_problem(
        &error,
        None,
        Some("name"),
        &["several schedules names each"],
    );
    assert_problem(
        &error,
        None,
        Some("cron"),
        &["schedules[0]", "hour `24` is out of range 0-23 (column 3)"],
    );
    assert_problem(
        &error,
        None,
        Some("cron"),
        &["schedules[1] (`nightly`)", "never"],
    );
    assert_problem(
        &error,
        None,
        Some("time_zone"),
        &["`Europe/Berln` is not an IANA time zone"],
    );
    assert_problem(
        &error,
        None,
        Some("catch_up"),
        &["5000 is over the maximum of 1000"],
    );
    assert_problem(
        &error,
        None,
        Some("name"),
        &[
            "schedules[2]",
            "another schedule of this template has this name",
        ],
    );
    assert_problem(&error, None, Some("context"), &["must be a JSON object"]);
}

#[cfg(feature = "http")]
#[test]
fn an_api_handler_config_is_checked_at_load_naming_step_and_key() {
    let template = parse_ok(
        "name: t
step_templates:
  - name: fetch_order_status
    handler: FetchOrderStatus
    handler_config:
      type: api
      url: https://api.example.com
      params: {api_key: '${API_KEY}'}
      headers: {Accept: application/json}
      retry_delay: 1.0
      enable_exponential_backoff: true
      jitter_factor: 0.2
      ssl: {verify: true}
  - name: own_config
    handler: Own
    handler_config: {type_of_thing: x, retries: 3}
",
    );
    assert_eq!(template.step_templates.len(), 2);

    let error = parse_err(
        "name: t
step_templates:
  - name: fetch_order_status
    handler: FetchOrderStatus
    handler_config:
      type: api
      url: https://api.example.com
      retry_dealy: 1.0
",
    );
    assert_problem(
        &error,
        Some("fetch_order_status"),
        Some("handler_config"),
        &["`type: api`", "unknown field `retry_dealy`"],
    );
}

#[test]
fn one_refused_key_does_not_hide_the_file_s_other_problems() {
    let error = parse_err(
        "name: t
retries: 3
step_templates:
  - name: a
    timeout: 5
    depends_on_step: b
  - name: b
    default_retry_limit: lots
    depends_on_step: a
",
    );
    assert_problem(
        &error,
        None,
        Some("retries"),
        &["unknown field `retries`", "line 2"],
    );
    assert_problem(
        &error,
        Some("a"),
        Some("timeout"),
        &["unknown field `timeout`"],
    );
    assert_problem(
        &error,
        Some("b"),
        Some("default_retry_limit"),
        &["invalid type"],
    );
    assert_problem(
        &error,
        Some("a"),
        Some("depends_on_step"),
        &["dependency cycle `a -> b -> a`"],
    );
    assert_eq!(error.problems().len(), 4, "{error}");
    // Problems after the first have no line: the document they come from was rewritten.
    assert!(
        !error.problems()[1].message.contains(" at line "),
        "{error}"
    );

    // A missing required field stops the reading; what was found before it stays.
    let error = parse_err("retries: 3\nstep_templates: []\n");
    assert_problem(&error, None, Some("retries"), &["unknown field `retries`"]);
    assert_problem(&error, None, Some("name"), &["missing field `name`"]);
    assert_eq!(error.problems().len(), 2, "{error}");
}
