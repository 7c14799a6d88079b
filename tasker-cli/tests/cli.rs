//! The `cargo-tasker` binary on temporary crates: `--help` of every command, the scaffolds it
//! writes, bad input that writes nothing, and a fresh crate that builds and passes its tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tasker(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-tasker"))
        .arg("tasker")
        .args(args)
        .current_dir(dir)
        .env_remove("TASKER_DATABASE_URL")
        .env_remove("TASKER_ENV")
        // `init` runs `cargo add`; everything it needs is in the local registry cache once the
        // workspace has built, so the tests do not depend on the network.
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .expect("run cargo-tasker")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A minimal binary crate, as `cargo new` makes it.
fn new_crate(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("src")).expect("src");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n"),
    )
    .expect("manifest");
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").expect("main");
    dir
}

/// Every file under `root` with its contents, sorted by path.
fn tree(root: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "Cargo.lock")
            {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.push((relative, std::fs::read_to_string(&path).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn help_of_every_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["generate"],
        &["generate", "task-handler"],
        &["generate", "step-handler"],
        &["generate", "subscriber"],
        &["generate", "events"],
        &["migrate"],
        &["status"],
        &["validate"],
        &["diagram"],
        &["tasks"],
        &["tasks", "list"],
        &["tasks", "show"],
        &["tasks", "retry"],
        &["tasks", "cancel"],
        &["steps"],
        &["steps", "resolve"],
        &["events"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let output = tasker(dir.path(), &args);
        assert!(output.status.success(), "{command:?}: {}", text(&output));
        let name = if command.is_empty() {
            "help".to_owned()
        } else {
            format!("help_{}", command.join("_").replace('-', "_"))
        };
        insta::assert_snapshot!(name, String::from_utf8_lossy(&output.stdout));
    }
}

#[test]
fn task_handler_scaffold() {
    let krate = new_crate("shop");
    let output = tasker(
        krate.path(),
        &[
            "generate",
            "task-handler",
            "order_process",
            "--namespace",
            "ecommerce",
            "--version",
            "1.0.0",
            "--steps",
            "fetch,validate:fetch,pay:validate,ship:validate,notify:pay+ship",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    for (path, contents) in tree(krate.path()) {
        if path == "Cargo.toml" || path == "src/main.rs" {
            continue;
        }
        insta::assert_snapshot!(
            format!("task_handler__{}", path.replace(['/', '.'], "_")),
            contents
        );
    }
}

#[test]
fn step_handler_and_subscriber_scaffolds() {
    let krate = new_crate("shop");
    let output = tasker(krate.path(), &["generate", "step-handler", "charge_card"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = tasker(
        krate.path(),
        &[
            "generate",
            "subscriber",
            "alerts",
            "--events",
            "step.failed,task.completed",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    for (path, contents) in tree(krate.path()) {
        if path.starts_with("src/") && path != "src/main.rs" {
            insta::assert_snapshot!(
                format!("generated__{}", path.replace(['/', '.'], "_")),
                contents
            );
        }
    }
}

#[test]
fn bad_input_gets_an_error_and_writes_nothing() {
    let krate = new_crate("shop");
    let before = tree(krate.path());
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "generate",
                "task-handler",
                "flow",
                "--steps",
                "fetch,pay:fetc",
            ],
            "step `pay` depends on `fetc`, which is not a step; did you mean `fetch`?",
        ),
        (
            &["generate", "task-handler", "flow", "--steps", "a:c,b:a,c:b"],
            "cycle: `a -> c -> b -> a`",
        ),
        (
            &["generate", "task-handler", "Order-Process"],
            "workflow name `Order-Process` must start with a lowercase letter (try `order_process`)",
        ),
        (
            &["generate", "task-handler", "../escape"],
            "workflow name `../escape` must start with a lowercase letter",
        ),
        (
            &["generate", "task-handler", "flow", "--version", "1.0"],
            "version `1.0` is not a semantic version",
        ),
        (
            &["generate", "step-handler", "fn"],
            "step handler name `fn` is a Rust keyword",
        ),
        (
            &[
                "generate",
                "subscriber",
                "alerts",
                "--events",
                "step.exploded",
            ],
            "`step.exploded` is not in the event catalog",
        ),
    ];
    for (args, expected) in cases {
        let output = tasker(krate.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(
            text(&output).contains(expected),
            "{args:?}: {}",
            text(&output)
        );
        assert_eq!(tree(krate.path()), before, "{args:?} wrote files");
    }

    // An existing file is not overwritten, and nothing else is written either.
    std::fs::create_dir_all(krate.path().join("tests")).expect("tests dir");
    std::fs::write(krate.path().join("tests/flow.rs"), "// mine\n").expect("existing");
    let before = tree(krate.path());
    let output = tasker(krate.path(), &["generate", "task-handler", "flow"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("tests/flow.rs"), "{}", text(&output));
    assert!(text(&output).contains("--force"), "{}", text(&output));
    assert_eq!(tree(krate.path()), before);
    let output = tasker(
        krate.path(),
        &["generate", "task-handler", "flow", "--force"],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert_ne!(tree(krate.path()), before);

    // Outside a crate.
    let empty = tempfile::tempdir().expect("temp dir");
    let output = tasker(empty.path(), &["generate", "task-handler", "flow"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("no `Cargo.toml`"),
        "{}",
        text(&output)
    );
    assert!(tree(empty.path()).is_empty());
}

/// The workspace root, for the path dependency and the lock file of the fresh crate.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// `cargo new`, `cargo tasker init`, `cargo tasker generate task-handler …`, `… authenticator`
/// and `… authorizer`, then `cargo test` passes without edits.
#[test]
fn a_fresh_crate_builds_and_passes_its_generated_tests() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let parent = tempfile::tempdir().expect("temp dir");
    let status = Command::new(&cargo)
        .args(["new", "--quiet", "--vcs", "none", "shop"])
        .current_dir(parent.path())
        .status()
        .expect("cargo new");
    assert!(status.success());
    let krate = parent.path().join("shop");
    std::fs::write(krate.join(".gitignore"), "/target").expect(".gitignore");
    // The checkout's root, as the README says; the crate inside it is found.
    let checkout = workspace();
    let output = tasker(
        &krate,
        &[
            "init",
            "--tasker-path",
            checkout.to_str().expect("utf-8 path"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let ignored = std::fs::read_to_string(krate.join(".gitignore")).expect(".gitignore");
    assert!(ignored.starts_with("/target\n"), "{ignored}");
    for pattern in ["*.db", "*.db-wal", "*.db-shm"] {
        assert!(ignored.lines().any(|l| l == pattern), "{ignored}");
    }
    let output = tasker(
        &krate,
        &[
            "generate",
            "task-handler",
            "order_process",
            "--steps",
            "fetch,validate:fetch,pay:validate,ship:validate,notify:pay+ship",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    // A subscriber for the example's custom events: every engine of the crate's tests runs it,
    // so they start only if the engine finds the events in `config/tasker/events`.
    let output = tasker(&krate, &["generate", "events", "--create-example"]);
    assert!(output.status.success(), "{}", text(&output));

    for (path, contents) in tree(&krate) {
        let scaffolded = path.starts_with("config/tasker/tasker")
            || path.contains("hello_world")
            || path == "src/lib.rs";
        if scaffolded {
            insta::assert_snapshot!(format!("init__{}", path.replace(['/', '.'], "_")), contents);
        }
    }
    // The API's auth scaffolds turn on the dependency's `server` feature, keeping its path.
    for (kind, name) in [("authenticator", "sessions"), ("authorizer", "task_owners")] {
        let output = tasker(&krate, &["generate", kind, name]);
        assert!(output.status.success(), "{}", text(&output));
        assert!(
            text(&output).contains("tasker features: server"),
            "{}",
            text(&output)
        );
    }
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).expect("manifest");
    assert!(manifest.contains("tasker-engine = {"), "{manifest}");
    assert!(manifest.contains(r#"features = ["server"]"#), "{manifest}");
    // The generated tests run on `tasker::testing`, a feature of the dev-dependency.
    assert!(manifest.contains("[dev-dependencies]"), "{manifest}");
    assert!(manifest.contains(r#"features = ["testing"]"#), "{manifest}");
    assert!(manifest.contains("path = "), "{manifest}");

    // `cargo test` builds the crate's library and binary too, but with the dev-dependency's
    // `testing` feature; a plain `cargo build` would build every dependency again without it.
    // What it would catch, generated code outside the tests that needs `testing`, is checked
    // here instead: only `tests/` may name the harness.
    for (path, contents) in tree(&krate) {
        if !path.starts_with("tests/") {
            assert!(
                !contents.contains("tasker::testing"),
                "{path} names tasker::testing"
            );
        }
    }

    // The workspace's lock pins the versions tested here. The target directory is trybuild's
    // (not locked while these tests run), where the build scripts and procedural macros the two
    // have in common are built once; trybuild builds for the host triple by name, so this does.
    std::fs::copy(workspace().join("Cargo.lock"), krate.join("Cargo.lock")).expect("lock");
    let target = workspace().join("target/tests/trybuild");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc).arg("-vV").output().expect("rustc -vV");
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("host triple");
    let output = Command::new(&cargo)
        .arg("test")
        .args(["--target", &host])
        .args([
            "--offline",
            // A build to run once: no debug information, not even the standard library's.
            "--config",
            "profile.dev.debug=false",
            "--config",
            "profile.dev.strip=\"debuginfo\"",
        ])
        .env("CARGO_TARGET_DIR", &target)
        // Incremental artifacts of a crate built once would only take space.
        .env("CARGO_INCREMENTAL", "0")
        .current_dir(&krate)
        .output()
        .expect("cargo");
    let out = text(&output);
    assert!(output.status.success(), "cargo test:\n{out}");
    for test in [
        "order_process_runs_to_completion",
        "order_process_retries_a_failed_step",
        "custom_events_subscriber::tests::handles_its_events",
        "hello_world_runs_to_completion",
        "hello_world_retries_a_failed_step",
        "sessions_names_the_caller_of_a_known_session",
        "sessions_refuses_a_missing_or_unknown_session",
        "task_owners_lets_owners_act_on_their_tasks",
        "task_owners_refuses_what_permissions_do_not_grant",
    ] {
        assert!(out.contains(&format!("{test} ... ok")), "{test}:\n{out}");
    }
}

#[test]
fn validate_reports_every_problem_with_file_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tasks = dir.path().join("tasks");
    std::fs::create_dir_all(&tasks).expect("dir");
    std::fs::write(
        tasks.join("good.yaml"),
        "name: good\nstep_templates:\n  - name: a\n  - name: b\n    depends_on_step: a\n",
    )
    .expect("good");
    std::fs::write(
        tasks.join("bad.yaml"),
        "name: bad\nretries: 3\nstep_templates:\n  - name: a\n    depends_on_step: b\n  - name: b\n    depends_on_step: a\n",
    )
    .expect("bad");
    std::fs::write(
        tasks.join("cyclic.yaml"),
        "name: cyclic\nstep_templates:\n  - name: a\n    depends_on_step: b\n  - name: b\n    depends_on_steps: [a, c]\n",
    )
    .expect("cyclic");
    std::fs::write(
        tasks.join("twin.yml"),
        "name: good\nstep_templates:\n  - name: x\n",
    )
    .expect("twin");

    let output = tasker(dir.path(), &["validate", "tasks"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let out = text(&output);
    assert!(
        out.contains("tasks/good.yaml: ok (default/good@0.1.0, 2 steps)"),
        "{out}"
    );
    assert!(out.contains("tasks/bad.yaml: key `retries`"), "{out}");
    // The unknown key does not hide the file's cycle.
    assert!(
        out.contains("tasks/bad.yaml: step `a`, key `depends_on_step`: dependency cycle"),
        "{out}"
    );
    assert!(
        out.contains("tasks/cyclic.yaml: step `b`, key `depends_on_steps`"),
        "{out}"
    );
    assert!(out.contains("`c`"), "{out}");
    assert!(
        out.contains("tasks/twin.yml: `default/good@0.1.0` is also declared by"),
        "{out}"
    );
    assert!(out.contains("3 of 4 template(s) invalid"), "{out}");

    let output = tasker(dir.path(), &["validate", "tasks/good.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = tasker(dir.path(), &["validate", "nowhere"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}

#[test]
fn diagram_of_a_template_and_the_event_catalog() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tasks = dir.path().join("config/tasker/tasks");
    std::fs::create_dir_all(&tasks).expect("dir");
    std::fs::write(
        tasks.join("order.yaml"),
        "name: order\nnamespace_name: shop\nversion: 1.0.0\nstep_templates:\n  - name: fetch\n  - name: pay\n    depends_on_step: fetch\n  - name: ship\n    depends_on_step: fetch\n  - name: notify\n    depends_on_steps: [pay, ship]\n    custom_events:\n      - name: order.notified\n        description: The customer was told.\n",
    )
    .expect("template");
    let output = tasker(dir.path(), &["diagram", "config/tasker/tasks/order.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    insta::assert_snapshot!("diagram_template", String::from_utf8_lossy(&output.stdout));

    let output = tasker(dir.path(), &["events"]);
    assert!(output.status.success(), "{}", text(&output));
    insta::assert_snapshot!("events", String::from_utf8_lossy(&output.stdout));
    let output = tasker(dir.path(), &["events", "--json"]);
    let events: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        events.as_array().map(Vec::len),
        Some(tasker::events::CATALOG.len() + 1)
    );
}

/// The configuration file `init` writes documents the defaults: loading it changes nothing.
#[test]
fn the_init_configuration_states_the_defaults() {
    let text = include_str!("../templates/init/tasker.yaml");
    let loaded = tasker::TaskerConfig::from_yaml(text, "tasker.yaml").expect("config");
    assert_eq!(
        format!("{loaded:?}"),
        format!("{:?}", tasker::TaskerConfig::default())
    );
}

/// `schema graphql` prints the SDL the server runs; `schema openapi` the document with the
/// project's YAML templates, each with its context schema.
#[test]
fn schema_prints_the_api_schemas_for_client_generators() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = tasker(dir.path(), &["schema", "graphql"]);
    assert!(output.status.success(), "{}", text(&output));
    let sdl = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "type Query",
        "tasksByAnnotation(",
        "createTask(input: CreateTaskInput!): Task!",
        "enum TaskStatus",
    ] {
        assert!(sdl.contains(expected), "{expected} missing from\n{sdl}");
    }

    let tasks = dir.path().join("config/tasker/tasks");
    std::fs::create_dir_all(&tasks).expect("dir");
    std::fs::write(
        tasks.join("ship.yaml"),
        "name: ship\nnamespace_name: shop\nversion: 2.0.0\nschema:\n  type: object\n  required: [city]\n  properties:\n    city: { type: string }\nstep_templates:\n  - name: label\n    handler_class: label\n",
    )
    .expect("template");
    let output = tasker(dir.path(), &["schema", "openapi", "--prefix", "/api"]);
    assert!(output.status.success(), "{}", text(&output));
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("JSON document");
    assert!(document["paths"]["/api/tasks"]["post"].is_object());
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["Context_shop_ship_2.0.0"]["required"],
        serde_json::json!(["city"])
    );
    assert_eq!(
        schemas["TemplateRequest"]["anyOf"][0]["title"],
        "shop/ship@2.0.0"
    );
}

/// `events QUERY` keeps the events whose name or description contains it, ignoring case, from
/// the catalog, the events directory and the templates; a bad events file is named with its key.
#[test]
fn events_are_searched_by_name_or_description() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("config/tasker/events");
    let tasks = dir.path().join("config/tasker/tasks");
    for path in [&events, &tasks] {
        std::fs::create_dir_all(path).expect("dir");
    }
    std::fs::write(
        events.join("orders.yml"),
        "events:\n  order:\n    fulfilled:\n      description: The parcel left the warehouse.\n      payload_schema: { type: object }\n",
    )
    .expect("events");
    std::fs::write(
        tasks.join("order.yaml"),
        "name: order\nstep_templates:\n  - name: notify\n    custom_events:\n      - name: customer.notified\n        description: The ORDER's customer was told.\n",
    )
    .expect("template");

    let output = tasker(dir.path(), &["events", "Order"]);
    assert!(output.status.success(), "{}", text(&output));
    insta::assert_snapshot!("events_search", String::from_utf8_lossy(&output.stdout));

    let output = tasker(dir.path(), &["events", "RETRY", "--json"]);
    assert!(output.status.success(), "{}", text(&output));
    let found: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let names: Vec<&str> = found
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default())
        .collect();
    assert!(names.contains(&"step.retry_requested"), "{names:?}");
    assert!(names.contains(&"task.retry_requested"), "{names:?}");
    assert!(!names.contains(&"order.fulfilled"), "{names:?}");
    for event in found.as_array().expect("a list") {
        let text = format!("{} {}", event["name"], event["description"]).to_lowercase();
        assert!(text.contains("retry"), "{event}");
    }

    let output = tasker(dir.path(), &["events", "no such thing"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "no event's name or description contains `no such thing`\n"
    );

    // Another directory, named: it must exist, and its files must be valid.
    let output = tasker(dir.path(), &["events", "--events-dir", "elsewhere"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("`elsewhere`: cannot read this directory"),
        "{}",
        text(&output)
    );
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    std::fs::write(
        elsewhere.join("bad.yml"),
        "events:\n  step:\n    exploded: { description: Boom. }\n",
    )
    .expect("bad");
    let output = tasker(dir.path(), &["events", "--events-dir", "elsewhere"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("`elsewhere/bad.yml` at `events.step.exploded`: custom event `step.exploded` uses the reserved prefix `step.`"),
        "{}",
        text(&output)
    );
}

/// `generate events` keeps an empty directory; with `--create-example` it writes the example,
/// which the engine's loader accepts, and a subscriber for its events; `generate subscriber`
/// then takes the defined events too.
#[test]
fn events_scaffold_writes_the_directory_the_example_and_its_subscriber() {
    let krate = new_crate("shop");
    let output = tasker(krate.path(), &["generate", "events"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("wrote config/tasker/events/.keep"),
        "{}",
        text(&output)
    );
    assert!(
        text(&output).contains("no custom event is defined yet"),
        "{}",
        text(&output)
    );
    assert!(
        !krate
            .path()
            .join("src/custom_events_subscriber.rs")
            .exists()
    );

    let output = tasker(krate.path(), &["generate", "events", "--create-example"]);
    assert!(output.status.success(), "{}", text(&output));
    let events_dir = krate.path().join("config/tasker/events");
    assert_eq!(
        std::fs::read_to_string(events_dir.join("examples.yml")).expect("example"),
        include_str!("../templates/events/examples.yml")
    );
    let defined = tasker::events::EventDefinitions::load(&[events_dir]).expect("loads");
    let names: Vec<&str> = defined.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        ["notification.sent", "order.processed", "payment.completed"]
    );
    for (path, contents) in tree(krate.path()) {
        if path.starts_with("src/") && path != "src/main.rs" {
            insta::assert_snapshot!(
                format!("events__{}", path.replace(['/', '.'], "_")),
                contents
            );
        }
    }

    // Once is enough: the example is not overwritten without --force.
    let before = tree(krate.path());
    let output = tasker(krate.path(), &["generate", "events", "--create-example"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("examples.yml"), "{}", text(&output));
    assert_eq!(tree(krate.path()), before);
    let output = tasker(
        krate.path(),
        &["generate", "events", "--create-example", "--force"],
    );
    assert!(output.status.success(), "{}", text(&output));

    let output = tasker(
        krate.path(),
        &[
            "generate",
            "subscriber",
            "payments",
            "--events",
            "payment.completed,task.failed",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let module = std::fs::read_to_string(krate.path().join("src/payments.rs")).expect("module");
    assert!(
        module.contains(r#"#[subscriber(events = ["payment.completed", "task.failed"])]"#),
        "{module}"
    );
    assert!(module.contains("// A payment was taken."), "{module}");
}
