//! Custom events defined in YAML, in the seed's format: every `*.yml`/`*.yaml` file of the
//! directories of [`custom_events_directories`](crate::TaskerConfig::custom_events_directories)
//! (default `config/tasker/events`).
//!
//! ```yaml
//! events:
//!   order:                          # the category: the name's first part
//!     fulfilled:                    # the key: `order.fulfilled`
//!       description: The order left the warehouse.
//!       constant: ORDER_FULFILLED   # documentation, as in the seed
//!       fired_by: [ship_order]      # documentation, as in the seed
//!       payload_schema:             # JSON Schema; optional
//!         type: object
//!         required: [order_id]
//!         properties:
//!           order_id: { type: integer }
//! ```
//!
//! A name must have a dot, must not be an event of the [catalog](super::CATALOG) nor start with a
//! reserved family (`task`, `step`, `workflow`, `observability`, `test`), and may be defined
//! once across all files. `description` is required; a `constant` with a dot must be the
//! event's own name (the seed's examples wrote names there). Each `payload_schema` is compiled
//! once, at load; a payload published for the event is checked against it and refused, with
//! the JSON pointer of every violation, when it does not fit.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::config::DEFAULT_EVENTS_DIR;
use crate::error::{ContextViolation, Error, FileProblem, Result};
use crate::yaml::{self, Entries};

/// A custom event defined in a YAML file of an events directory.
pub struct EventDefinition {
    name: String,
    description: String,
    constant: Option<String>,
    fired_by: Vec<String>,
    payload_schema: Option<Value>,
    validator: Option<jsonschema::Validator>,
    file: PathBuf,
}

impl EventDefinition {
    /// The dotted name, `<category>.<key>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it means.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The seed's `constant`, kept as documentation.
    pub fn constant(&self) -> Option<&str> {
        self.constant.as_deref()
    }

    /// What publishes it (the seed's `fired_by`), kept as documentation.
    pub fn fired_by(&self) -> &[String] {
        &self.fired_by
    }

    /// The JSON Schema its payload must satisfy, if it gives one.
    pub fn payload_schema(&self) -> Option<&Value> {
        self.payload_schema.as_ref()
    }

    /// The file that defines it.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Every way `payload` breaks the payload schema (none without a schema).
    fn violations(&self, payload: &Value) -> Vec<ContextViolation> {
        let Some(validator) = &self.validator else {
            return Vec::new();
        };
        validator
            .iter_errors(payload)
            .map(|e| ContextViolation::new(e.instance_path().to_string(), e.to_string()))
            .collect()
    }
}

impl fmt::Debug for EventDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventDefinition")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("constant", &self.constant)
            .field("fired_by", &self.fired_by)
            .field("payload_schema", &self.payload_schema)
            .field("file", &self.file)
            .finish()
    }
}

/// The custom events of the events directories, sorted by name.
#[derive(Debug, Default)]
pub struct EventDefinitions {
    events: Vec<EventDefinition>,
}

impl EventDefinitions {
    /// No definitions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every `*.yml`/`*.yaml` file directly in each of `dirs`. A directory that does not
    /// exist is an error, except [`DEFAULT_EVENTS_DIR`]. Every file is read; the error lists
    /// every problem of every file, each with its file and key.
    pub fn load(dirs: &[PathBuf]) -> Result<Self> {
        let (files, mut problems) =
            yaml::files_of(dirs, DEFAULT_EVENTS_DIR, "custom_events_directories");
        let mut events = Vec::new();
        for file in &files {
            match yaml::read_file(file) {
                Ok(text) => read(&text, file, &mut events, &mut problems),
                Err(message) => problems.push(FileProblem::new(file, None, message)),
            }
        }
        Self::sorted(events, problems)
    }

    /// Reads one file's text; `file` names it in errors and in each definition.
    pub fn parse(text: &str, file: impl AsRef<Path>) -> Result<Self> {
        let (mut events, mut problems) = (Vec::new(), Vec::new());
        read(text, file.as_ref(), &mut events, &mut problems);
        Self::sorted(events, problems)
    }

    fn sorted(mut events: Vec<EventDefinition>, problems: Vec<FileProblem>) -> Result<Self> {
        if !problems.is_empty() {
            return Err(Error::EventDefinitions(problems));
        }
        events.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { events })
    }

    /// The event named `name`.
    pub fn get(&self, name: &str) -> Option<&EventDefinition> {
        self.events
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.events.get(i))
    }

    /// Every definition, by name.
    pub fn iter(&self) -> std::slice::Iter<'_, EventDefinition> {
        self.events.iter()
    }

    /// How many events are defined.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether `name` is an event this program can publish: one of the catalog's, one declared
    /// with `custom_event!`, or one defined here.
    pub fn is_known(&self, name: &str) -> bool {
        super::is_known(name) || self.get(name).is_some()
    }

    /// Checks a payload published as `name` against its definition's `payload_schema`; a name
    /// defined without a schema, or not defined here, takes any payload.
    pub fn check_payload(&self, name: &str, payload: &Value) -> Result<()> {
        let errors = self
            .get(name)
            .map(|e| e.violations(payload))
            .unwrap_or_default();
        if errors.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidEventPayload {
            event: name.to_owned(),
            errors,
        })
    }
}

impl<'a> IntoIterator for &'a EventDefinitions {
    type Item = &'a EventDefinition;
    type IntoIter = std::slice::Iter<'a, EventDefinition>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// An events file as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct EventsFile {
    events: Entries<Entries<RawEvent>>,
}

/// One event as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    description: String,
    #[serde(default)]
    constant: Option<String>,
    #[serde(default)]
    fired_by: Vec<String>,
    #[serde(default)]
    payload_schema: Option<Value>,
}

/// Reads the events of one file into `events`, and what is wrong with them into `problems`.
fn read(
    text: &str,
    file: &Path,
    events: &mut Vec<EventDefinition>,
    problems: &mut Vec<FileProblem>,
) {
    // A file of comments only is an empty document, which has no `events`.
    let parsed: EventsFile = if text.trim().is_empty() {
        EventsFile::default()
    } else {
        match yaml::parse(text) {
            Ok(parsed) => parsed,
            Err((key, message)) => return problems.push(FileProblem::new(file, key, message)),
        }
    };
    for (category, entries) in parsed.events.0 {
        for (key, raw) in entries.0 {
            let name = format!("{category}.{key}");
            let at = format!("events.{category}.{key}");
            match define(name, &at, raw, file, events) {
                Ok(event) => events.push(event),
                Err((key, message)) => problems.push(FileProblem::new(file, Some(key), message)),
            }
        }
    }
}

/// The definition of `name` (at key `at` of `file`), or the key and problem that refuse it.
fn define(
    name: String,
    at: &str,
    raw: RawEvent,
    file: &Path,
    defined: &[EventDefinition],
) -> std::result::Result<EventDefinition, (String, String)> {
    if let Some(problem) = name_problem(&name) {
        return Err((at.to_owned(), problem));
    }
    if let Some(first) = defined.iter().find(|e| e.name == name) {
        return Err((
            at.to_owned(),
            format!(
                "custom event `{name}` is also defined in `{}`",
                first.file.display()
            ),
        ));
    }
    if let Some(constant) = raw.constant.as_deref().filter(|c| c.contains('.'))
        && constant != name
    {
        return Err((
            format!("{at}.constant"),
            format!(
                "`{constant}` is not this event's name, `{name}`: an event is named \
                 `<category>.<key>`, and `constant` is documentation only"
            ),
        ));
    }
    let validator = match &raw.payload_schema {
        Some(schema) => {
            Some(compile(schema).map_err(|problem| (format!("{at}.payload_schema"), problem))?)
        }
        None => None,
    };
    Ok(EventDefinition {
        name,
        description: raw.description,
        constant: raw.constant,
        fired_by: raw.fired_by,
        payload_schema: raw.payload_schema,
        validator,
        file: file.to_owned(),
    })
}

/// Why `name` cannot be a custom event defined in YAML, if it cannot.
fn name_problem(name: &str) -> Option<String> {
    if super::find(name).is_some() {
        return Some(format!(
            "`{name}` is an event of the engine's catalog; a custom event needs a name of its own"
        ));
    }
    tasker_rules::declared_event_problem(name).map(|p| p.to_string())
}

/// The keywords of JSON Schema (2020-12, with the earlier drafts' `definitions`,
/// `dependencies` and `additionalItems`), by which a payload schema is told from the seed's
/// field list.
const SCHEMA_KEYWORDS: &[&str] = &[
    "$anchor",
    "$comment",
    "$defs",
    "$dynamicAnchor",
    "$dynamicRef",
    "$id",
    "$ref",
    "$schema",
    "$vocabulary",
    "additionalItems",
    "additionalProperties",
    "allOf",
    "anyOf",
    "const",
    "contains",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "default",
    "definitions",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "deprecated",
    "description",
    "else",
    "enum",
    "examples",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "format",
    "if",
    "items",
    "maxContains",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minContains",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "not",
    "oneOf",
    "pattern",
    "patternProperties",
    "prefixItems",
    "properties",
    "propertyNames",
    "readOnly",
    "required",
    "then",
    "title",
    "type",
    "unevaluatedItems",
    "unevaluatedProperties",
    "uniqueItems",
    "writeOnly",
];

/// The validator of a payload schema, or why it is not one.
fn compile(schema: &Value) -> std::result::Result<jsonschema::Validator, String> {
    // JSON Schema ignores unknown keywords, so the seed's field list
    // (`order_id: { type: String, required: true }`) would compile into a schema that accepts
    // every payload.
    if let Value::Object(map) = schema
        && !map.is_empty()
        && !map.keys().any(|k| SCHEMA_KEYWORDS.contains(&k.as_str()))
    {
        let keys: Vec<String> = map.keys().take(3).map(|k| format!("`{k}`")).collect();
        return Err(format!(
            "not a JSON Schema: none of its keys ({}) is a JSON Schema keyword; write the \
             seed's fields (`order_id: {{ type: String, required: true }}`) as \
             `type: object`, `properties: {{ order_id: {{ type: string }} }}` and \
             `required: [order_id]`",
            keys.join(", ")
        ));
    }
    crate::registry::schema_validator(schema).map_err(|e| format!("invalid JSON Schema: {e}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    const GOOD: &str = "\
events:
  order:
    fulfilled:
      description: The order left the warehouse.
      constant: ORDER_FULFILLED
      fired_by: [ship_order]
      payload_schema:
        type: object
        required: [order_id]
        properties:
          order_id: { type: integer }
          lines:
            type: array
            items: { type: object, required: [sku], properties: { sku: { type: string } } }
    cancelled:
      description: The customer cancelled the order.
  payment.card:
    declined:
      description: The card was declined.
      constant: payment.card.declined
";

    /// The one problem of `yaml` read as `file`: its key and message.
    fn problem(yaml: &str) -> (Option<String>, String) {
        match EventDefinitions::parse(yaml, "events/bad.yml") {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(Error::EventDefinitions(problems)) => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert_eq!(problems[0].file, Path::new("events/bad.yml"));
                (problems[0].key.clone(), problems[0].message.clone())
            }
            Err(other) => panic!("expected EventDefinitions, got {other:?}"),
        }
    }

    #[test]
    fn a_good_file_defines_its_events_with_their_documentation() {
        let defined = EventDefinitions::parse(GOOD, "events/orders.yml").expect("good");
        let names: Vec<&str> = defined.iter().map(EventDefinition::name).collect();
        assert_eq!(
            names,
            [
                "order.cancelled",
                "order.fulfilled",
                "payment.card.declined"
            ]
        );
        let fulfilled = defined.get("order.fulfilled").expect("fulfilled");
        assert_eq!(fulfilled.description(), "The order left the warehouse.");
        assert_eq!(fulfilled.constant(), Some("ORDER_FULFILLED"));
        assert_eq!(fulfilled.fired_by(), ["ship_order"]);
        assert_eq!(fulfilled.file(), Path::new("events/orders.yml"));
        assert!(fulfilled.payload_schema().is_some());
        assert!(defined.is_known("order.cancelled") && defined.is_known("step.failed"));
        assert!(!defined.is_known("order.lost"));
        // Comments only, or no events, define nothing.
        for empty in ["", "# nothing yet\n", "events:\n", "events: {}\n"] {
            let defined = EventDefinitions::parse(empty, "e.yml").expect(empty);
            assert!(defined.is_empty(), "{empty:?}");
        }
    }

    #[test]
    fn a_payload_is_checked_against_its_schema() {
        let defined = EventDefinitions::parse(GOOD, "events/orders.yml").expect("good");
        let good = json!({ "order_id": 7, "lines": [{ "sku": "A-1" }] });
        defined
            .check_payload("order.fulfilled", &good)
            .expect("fits");
        // Without a schema, or for an event defined elsewhere, anything goes.
        defined
            .check_payload("order.cancelled", &json!("anything"))
            .expect("no schema");
        defined
            .check_payload("parcel.shipped", &json!(null))
            .expect("not defined here");
        let bad = json!({ "order_id": "seven", "lines": [{ "qty": 1 }] });
        match defined.check_payload("order.fulfilled", &bad) {
            Err(error @ Error::InvalidEventPayload { .. }) => {
                let text = error.to_string();
                assert!(
                    text.starts_with("payload of custom event `order.fulfilled` is invalid"),
                    "{text}"
                );
                assert!(text.contains("at `/order_id`"), "{text}");
                assert!(text.contains("at `/lines/0`"), "{text}");
                assert!(text.contains("\"sku\" is a required property"), "{text}");
            }
            other => panic!("expected InvalidEventPayload, got {other:?}"),
        }
    }

    #[test]
    fn each_bad_input_is_named_by_its_key() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("events: [order]\n", Some("events"), "expected a mapping"),
            (
                "event:\n  order: {}\n",
                Some("event"),
                "unknown field `event`, expected `events`",
            ),
            (
                "events:\n  order:\n    fulfilled:\n      description: x\n      colour: red\n",
                Some("events.order.fulfilled.colour"),
                "unknown field `colour`, expected one of `description`",
            ),
            (
                "events:\n  order:\n    fulfilled:\n      constant: X\n",
                Some("events.order.fulfilled"),
                "missing field `description`",
            ),
            (
                "events:\n  order:\n    fulfilled: { description: a }\n    fulfilled: { description: b }\n",
                Some("events.order"),
                "duplicate key `fulfilled`",
            ),
            (
                "events:\n  order:\n    fulfilled: { description: a\n",
                Some("events.order.fulfilled"),
                "did not find expected",
            ),
            (
                "events:\n  task:\n    completed: { description: mine }\n",
                Some("events.task.completed"),
                "`task.completed` is an event of the engine's catalog",
            ),
            (
                "events:\n  workflow:\n    audited: { description: mine }\n",
                Some("events.workflow.audited"),
                "uses the reserved prefix `workflow.`",
            ),
            (
                "events:\n  Test:\n    ran: { description: mine }\n",
                Some("events.Test.ran"),
                "uses the reserved prefix `Test.`",
            ),
            (
                "events:\n  order:\n    \"\": { description: x }\n",
                Some("events.order."),
                "must be a dotted name",
            ),
            (
                "events:\n  order:\n    ful filled: { description: x }\n",
                Some("events.order.ful filled"),
                "contains ' '",
            ),
            (
                "events:\n  custom:\n    order_processed:\n      description: x\n      constant: order.processed\n",
                Some("events.custom.order_processed.constant"),
                "`order.processed` is not this event's name, `custom.order_processed`",
            ),
            (
                "events:\n  order:\n    fulfilled:\n      description: x\n      payload_schema: { type: objekt }\n",
                Some("events.order.fulfilled.payload_schema"),
                "invalid JSON Schema",
            ),
            (
                "events:\n  order:\n    fulfilled:\n      description: x\n      payload_schema:\n        order_id: { type: String, required: true }\n",
                Some("events.order.fulfilled.payload_schema"),
                "not a JSON Schema: none of its keys (`order_id`)",
            ),
        ];
        let mut wrong = Vec::new();
        for (yaml, key, message) in cases {
            let (found_key, found) = problem(yaml);
            if found_key.as_deref() != *key || !found.contains(message) {
                wrong.push(format!("{yaml}=> {found_key:?}: {found}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    }

    #[test]
    fn the_error_names_the_file_and_key() {
        let error = EventDefinitions::parse(
            "events:\n  step:\n    exploded: { description: x }\n",
            "config/tasker/events/bad.yml",
        )
        .expect_err("reserved");
        assert_eq!(
            error.to_string(),
            "invalid custom event definitions: `config/tasker/events/bad.yml` at \
             `events.step.exploded`: custom event `step.exploded` uses the reserved prefix \
             `step.`; the engine's own events are `task.*`, `step.*`, `workflow.*`, \
             `observability.*` and `test.*`"
        );
    }

    #[test]
    fn directories_are_read_whole_and_an_event_is_defined_once() {
        let root = tempfile::tempdir().expect("temp dir");
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        for dir in [&a, &b] {
            std::fs::create_dir_all(dir).expect("dir");
        }
        std::fs::write(a.join("orders.yml"), GOOD).expect("write");
        std::fs::write(a.join("notes.txt"), "not yaml").expect("write");
        std::fs::write(
            b.join("more.yaml"),
            "events:\n  order:\n    returned: { description: Back. }\n",
        )
        .expect("write");
        let defined = EventDefinitions::load(&[a.clone(), b.clone()]).expect("load");
        assert_eq!(defined.len(), 4);
        assert!(defined.get("order.returned").is_some());

        // The same event in another file, and a bad file next to it: both are reported.
        std::fs::write(
            b.join("again.yml"),
            "events:\n  order:\n    fulfilled: { description: Again. }\n",
        )
        .expect("write");
        std::fs::write(b.join("broken.yml"), "events: [\n").expect("write");
        match EventDefinitions::load(&[a.clone(), b.clone()]) {
            Err(Error::EventDefinitions(problems)) => {
                assert_eq!(problems.len(), 2, "{problems:?}");
                assert_eq!(problems[0].file, b.join("again.yml"));
                assert_eq!(problems[0].key.as_deref(), Some("events.order.fulfilled"));
                let first = a.join("orders.yml");
                assert!(
                    problems[0]
                        .message
                        .contains(&format!("is also defined in `{}`", first.display())),
                    "{problems:?}"
                );
                assert_eq!(problems[1].file, b.join("broken.yml"));
            }
            other => panic!("expected EventDefinitions, got {other:?}"),
        }
    }

    #[test]
    fn only_the_default_directory_may_be_missing() {
        let defined =
            EventDefinitions::load(&[PathBuf::from(DEFAULT_EVENTS_DIR)]).expect("default");
        assert!(defined.is_empty());
        let missing = PathBuf::from("/nonexistent/events");
        match EventDefinitions::load(std::slice::from_ref(&missing)) {
            Err(Error::EventDefinitions(problems)) => {
                assert_eq!(problems[0].file, missing);
                assert!(
                    problems[0]
                        .message
                        .contains("cannot read this directory of `custom_events_directories`"),
                    "{problems:?}"
                );
            }
            other => panic!("expected EventDefinitions, got {other:?}"),
        }
    }

    #[test]
    fn the_generated_example_is_accepted() {
        let example = include_str!("../../../tasker-cli/templates/events/examples.yml");
        let defined = EventDefinitions::parse(example, "examples.yml").expect("example");
        assert!(defined.len() >= 3, "{defined:?}");
        assert!(defined.iter().all(|e| e.payload_schema().is_some()));
    }
}
