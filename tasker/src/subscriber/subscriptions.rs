//! Subscription files: which registered subscribers run, on which events, with which `config`,
//! and the built-in `type: log` subscriber (see the [module docs](super) for the format).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{DynSubscriber, Subscriber, SubscriberError};
use crate::config::DEFAULT_SUBSCRIPTIONS_DIR;
use crate::error::{Error, FileProblem, Result};
use crate::events::Event;
use crate::yaml::{self, Entries};

/// One entry of a subscriptions file.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// Its key under `subscriptions`.
    name: String,
    file: PathBuf,
    target: Target,
    enabled: bool,
    events: Option<Vec<String>>,
    config: Option<Value>,
}

impl Subscription {
    /// The dotted key of its `field`, for errors.
    fn key(&self, field: &str) -> String {
        format!("subscriptions.{}.{field}", self.name)
    }
}

/// What a subscription configures.
#[derive(Debug)]
enum Target {
    /// A registered subscriber, by its name or the end of its path (`class`).
    Registered(String),
    /// The built-in subscriber that writes events to `tracing` (`type: log`).
    Log(LogLevel),
}

/// A subscriptions file as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct SubscriptionsFile {
    subscriptions: Entries<RawSubscription>,
}

/// One subscription as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    #[serde(default)]
    class: Option<String>,
    #[serde(default, rename = "type")]
    built_in: Option<BuiltIn>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    config: Option<Value>,
}

fn enabled_by_default() -> bool {
    true
}

/// The subscribers a subscription can name by `type`, needing no code.
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum BuiltIn {
    /// Writes each event it receives to `tracing`.
    Log,
}

/// The `config` of a `type: log` subscription.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogConfig {
    #[serde(default)]
    level: LogLevel,
}

/// The `tracing` level a `type: log` subscription writes at.
#[derive(Deserialize, Debug, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// Loads every `*.yml`/`*.yaml` file directly in each of `dirs`. A directory that does not
/// exist is an error, except [`DEFAULT_SUBSCRIPTIONS_DIR`]. Every file is read; the error lists
/// every problem of every file, each with its file and key.
pub(crate) fn load_subscriptions(dirs: &[PathBuf]) -> Result<Vec<Subscription>> {
    let (files, mut problems) =
        yaml::files_of(dirs, DEFAULT_SUBSCRIPTIONS_DIR, "subscriptions_directories");
    let mut subscriptions: Vec<Subscription> = Vec::new();
    for file in &files {
        match yaml::read_file(file) {
            Ok(text) => read(&text, file, &mut subscriptions, &mut problems),
            Err(message) => problems.push(FileProblem::new(file, None, message)),
        }
    }
    if problems.is_empty() {
        Ok(subscriptions)
    } else {
        Err(Error::Subscriptions(problems))
    }
}

/// Reads the subscriptions of one file into `subscriptions`, and what is wrong with them into
/// `problems`.
fn read(
    text: &str,
    file: &Path,
    subscriptions: &mut Vec<Subscription>,
    problems: &mut Vec<FileProblem>,
) {
    // A file of comments only is an empty document, which has no `subscriptions`.
    let parsed: SubscriptionsFile = if text.trim().is_empty() {
        SubscriptionsFile::default()
    } else {
        match yaml::parse(text) {
            Ok(parsed) => parsed,
            Err((key, message)) => return problems.push(FileProblem::new(file, key, message)),
        }
    };
    for (name, raw) in parsed.subscriptions.0 {
        let at = format!("subscriptions.{name}");
        if let Some(first) = subscriptions.iter().find(|s| s.name == name) {
            let message = format!(
                "subscription `{name}` is also defined in `{}`",
                first.file.display()
            );
            problems.push(FileProblem::new(file, Some(at), message));
            continue;
        }
        match subscription(name, raw, file) {
            Ok(subscription) => subscriptions.push(subscription),
            Err((field, message)) => {
                let key = field.map_or(at.clone(), |field| format!("{at}.{field}"));
                problems.push(FileProblem::new(file, Some(key), message));
            }
        }
    }
}

/// The subscription `name` of `file`, or the field (`None`: the entry) and problem that refuse
/// it.
fn subscription(
    name: String,
    raw: RawSubscription,
    file: &Path,
) -> std::result::Result<Subscription, (Option<&'static str>, String)> {
    if raw.events.as_ref().is_some_and(Vec::is_empty) {
        return Err((
            Some("events"),
            "`events` is empty: list at least one (`task.failed`, `order.*`, `*`), or set \
             `enabled: false`"
                .to_owned(),
        ));
    }
    if raw.config.as_ref().is_some_and(|c| !c.is_object()) {
        return Err((
            Some("config"),
            "`config` must be a mapping of settings".to_owned(),
        ));
    }
    let target = match (raw.class, raw.built_in) {
        (Some(class), None) => Target::Registered(class),
        (None, Some(BuiltIn::Log)) => {
            if raw.events.is_none() {
                return Err((
                    None,
                    "`type: log` needs `events`: the ones to write to the log".to_owned(),
                ));
            }
            Target::Log(log_level(raw.config.as_ref())?)
        }
        (Some(_), Some(_)) => {
            return Err((
                None,
                "give `class` (a registered subscriber) or `type` (a built-in one), not both"
                    .to_owned(),
            ));
        }
        (None, None) => {
            return Err((
                None,
                "name the subscriber: `class: alerts::PageOnFailure` (a registered subscriber, \
                 by its path or the end of it), or `type: log`"
                    .to_owned(),
            ));
        }
    };
    Ok(Subscription {
        name,
        file: file.to_owned(),
        target,
        enabled: raw.enabled,
        events: raw.events,
        config: raw.config,
    })
}

/// The level a `type: log` subscription's `config` asks for.
fn log_level(
    config: Option<&Value>,
) -> std::result::Result<LogLevel, (Option<&'static str>, String)> {
    let Some(config) = config else {
        return Ok(LogLevel::default());
    };
    serde_path_to_error::deserialize::<_, LogConfig>(config)
        .map(|c| c.level)
        .map_err(|e| (Some("config"), e.to_string()))
}

/// A subscriber the engine may run: its name and instance (`None` when its type holds state and
/// was not handed to the builder).
pub(crate) struct Candidate {
    pub(crate) name: String,
    pub(crate) instance: Option<Arc<dyn DynSubscriber>>,
}

/// A subscriber that will run, with the events it receives.
pub(crate) struct Enrolled {
    pub(crate) name: String,
    pub(crate) subscriber: Arc<dyn DynSubscriber>,
    pub(crate) patterns: Vec<String>,
    /// The file and key of the subscription's `events`, when they replaced the subscriber's.
    pub(crate) chosen_by: Option<(PathBuf, String)>,
}

/// The subscribers that run: the candidates as their subscriptions leave them (turned off,
/// with other events, configured), and the built-in subscribers subscriptions add.
pub(crate) fn enroll(
    candidates: Vec<Candidate>,
    subscriptions: Vec<Subscription>,
) -> Result<Vec<Enrolled>> {
    let (chosen, built_in) = match_subscriptions(&candidates, subscriptions)?;
    let mut enrolled = Vec::new();
    let mut problems = Vec::new();
    for (candidate, subscription) in candidates.into_iter().zip(chosen) {
        if subscription.as_ref().is_some_and(|s| !s.enabled) {
            continue;
        }
        let Some(subscriber) = candidate.instance else {
            return Err(Error::SubscriberNeedsInstance(candidate.name));
        };
        if let Some(s) = &subscription
            && let Some(config) = &s.config
            && let Err(e) = subscriber.configure_dyn(config)
        {
            let message = format!("subscriber `{}` refuses this `config`: {e}", candidate.name);
            problems.push(FileProblem::new(&s.file, Some(s.key("config")), message));
            continue;
        }
        let (patterns, chosen_by) = match subscription {
            Some(
                s @ Subscription {
                    events: Some(_), ..
                },
            ) => {
                let key = s.key("events");
                (s.events.unwrap_or_default(), Some((s.file, key)))
            }
            _ => (
                subscriber
                    .events_dyn()
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect(),
                None,
            ),
        };
        enrolled.push(Enrolled {
            name: candidate.name,
            subscriber,
            patterns,
            chosen_by,
        });
    }
    for s in built_in.into_iter().filter(|s| s.enabled) {
        let Target::Log(level) = s.target else {
            continue;
        };
        let key = s.key("events");
        enrolled.push(Enrolled {
            name: s.name,
            subscriber: Arc::new(EventLog { level }),
            patterns: s.events.unwrap_or_default(),
            chosen_by: Some((s.file, key)),
        });
    }
    if problems.is_empty() {
        Ok(enrolled)
    } else {
        Err(Error::Subscriptions(problems))
    }
}

/// The subscription of each candidate (in the candidates' order), and the built-in ones; a
/// subscription that names no candidate, or one another subscription names, is an error.
type Matched = (Vec<Option<Subscription>>, Vec<Subscription>);

fn match_subscriptions(
    candidates: &[Candidate],
    subscriptions: Vec<Subscription>,
) -> Result<Matched> {
    let mut chosen: Vec<Option<Subscription>> = candidates.iter().map(|_| None).collect();
    let mut built_in = Vec::new();
    let mut problems = Vec::new();
    for subscription in subscriptions {
        let Target::Registered(class) = &subscription.target else {
            built_in.push(subscription);
            continue;
        };
        let found = resolve(candidates, class).and_then(|i| match &chosen[i] {
            Some(first) => Err(format!(
                "subscriber `{}` is also configured by subscription `{}` in `{}`",
                candidates[i].name,
                first.name,
                first.file.display()
            )),
            None => Ok(i),
        });
        match found {
            Ok(i) => chosen[i] = Some(subscription),
            Err(message) => problems.push(FileProblem::new(
                &subscription.file,
                Some(subscription.key("class")),
                message,
            )),
        }
    }
    if problems.is_empty() {
        Ok((chosen, built_in))
    } else {
        Err(Error::Subscriptions(problems))
    }
}

/// The candidate `class` names: its whole name, or else the only one whose path ends with it.
fn resolve(candidates: &[Candidate], class: &str) -> std::result::Result<usize, String> {
    if let Some(i) = candidates.iter().position(|c| c.name == class) {
        return Ok(i);
    }
    let suffix = format!("::{class}");
    let ending: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].name.ends_with(&suffix))
        .collect();
    let names = |indexes: &mut dyn Iterator<Item = usize>| -> String {
        let names: Vec<String> = indexes
            .map(|i| format!("`{}`", candidates[i].name))
            .collect();
        names.join(", ")
    };
    match ending.as_slice() {
        [one] => Ok(*one),
        [] if candidates.is_empty() => Err(format!(
            "no subscriber is registered, so none is named `{class}`"
        )),
        [] => Err(format!(
            "no registered subscriber is named `{class}`; the registered ones are {}",
            names(&mut (0..candidates.len()))
        )),
        many => Err(format!(
            "`{class}` could be any of {}: write more of its path",
            names(&mut many.iter().copied())
        )),
    }
}

/// The subscriber of `type: log`: writes each event it receives to `tracing` (target
/// `tasker::events`), with its payload.
struct EventLog {
    level: LogLevel,
}

/// Writes `$event` to `tracing` with the macro `$level` (`info`, …): a `tracing` event's level
/// must be known where it is declared, so each level is its own call.
macro_rules! log_event {
    ($level:ident, $event:expr) => {{
        let event: &Event = $event;
        tracing::$level!(
            target: "tasker::events",
            event = %event.name,
            task_id = event.task_id,
            step_id = event.step_id,
            step = event.step_name.as_deref(),
            attempt = event.attempt,
            to = event.to,
            error = event.error.as_ref().map(|e| e.message.as_str()),
            correlation_id = event.correlation_id.as_deref(),
            payload = %event.payload,
            "event"
        )
    }};
}

impl Subscriber for EventLog {
    fn events(&self) -> &[&str] {
        // Its subscription's `events` are the patterns it runs with.
        &[]
    }

    async fn handle(&self, event: &Event) -> std::result::Result<(), SubscriberError> {
        match self.level {
            LogLevel::Trace => log_event!(trace, event),
            LogLevel::Debug => log_event!(debug, event),
            LogLevel::Info => log_event!(info, event),
            LogLevel::Warn => log_event!(warn, event),
            LogLevel::Error => log_event!(error, event),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records nothing; takes any `config` that has `ok: true`.
    struct Picky;

    impl Subscriber for Picky {
        fn events(&self) -> &[&str] {
            &["task.*"]
        }

        async fn handle(&self, _: &Event) -> std::result::Result<(), SubscriberError> {
            Ok(())
        }

        fn configure(&self, config: &Value) -> std::result::Result<(), SubscriberError> {
            match config["ok"].as_bool() {
                Some(true) => Ok(()),
                _ => Err("`ok` must be true".into()),
            }
        }
    }

    /// Never reads a `config`.
    struct Plain;

    impl Subscriber for Plain {
        fn events(&self) -> &[&str] {
            &["step.failed"]
        }

        async fn handle(&self, _: &Event) -> std::result::Result<(), SubscriberError> {
            Ok(())
        }
    }

    fn candidates() -> Vec<Candidate> {
        vec![
            Candidate {
                name: "app::alerts::Picky".to_owned(),
                instance: Some(Arc::new(Picky)),
            },
            Candidate {
                name: "app::audit::Plain".to_owned(),
                instance: Some(Arc::new(Plain)),
            },
            Candidate {
                name: "app::audit::Stateful".to_owned(),
                instance: None,
            },
        ]
    }

    fn parse(yaml: &str) -> Result<Vec<Subscription>> {
        let (mut subscriptions, mut problems) = (Vec::new(), Vec::new());
        read(
            yaml,
            Path::new("subs/a.yml"),
            &mut subscriptions,
            &mut problems,
        );
        if problems.is_empty() {
            Ok(subscriptions)
        } else {
            Err(Error::Subscriptions(problems))
        }
    }

    /// The one problem loading and enrolling `yaml` meets: its key and message (among the
    /// candidates that have an instance).
    fn problem(yaml: &str) -> (Option<String>, String) {
        let mut runnable = candidates();
        runnable.retain(|c| c.instance.is_some());
        match parse(yaml).and_then(|s| enroll(runnable, s)) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(Error::Subscriptions(problems)) => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert_eq!(problems[0].file, Path::new("subs/a.yml"));
                (problems[0].key.clone(), problems[0].message.clone())
            }
            Err(other) => panic!("expected Subscriptions, got {other}"),
        }
    }

    fn enrolled(yaml: &str) -> Vec<(String, Vec<String>)> {
        let subscriptions = parse(yaml).expect("parse");
        enroll(candidates(), subscriptions)
            .expect("enroll")
            .into_iter()
            .map(|e| (e.name, e.patterns))
            .collect()
    }

    #[test]
    fn subscriptions_turn_off_narrow_and_add_subscribers() {
        let yaml = "\
subscriptions:
  pager:
    class: alerts::Picky
    events: [task.failed]
    config: { ok: true }
  quiet:
    class: app::audit::Plain
    enabled: false
  stateful_but_off:
    class: Stateful
    enabled: false
  trail:
    type: log
    events: [\"order.*\"]
    config: { level: debug }
";
        assert_eq!(
            enrolled(yaml),
            [
                (
                    "app::alerts::Picky".to_owned(),
                    vec!["task.failed".to_owned()]
                ),
                ("trail".to_owned(), vec!["order.*".to_owned()]),
            ]
        );
        // Without subscriptions every candidate runs, on its own events; one that holds state
        // and was not handed over is the same error as ever.
        match enroll(candidates(), Vec::new()) {
            Err(Error::SubscriberNeedsInstance(name)) => assert_eq!(name, "app::audit::Stateful"),
            Err(other) => panic!("expected SubscriberNeedsInstance, got {other}"),
            Ok(_) => panic!("a stateful subscriber ran without an instance"),
        }
        // A file of comments only subscribes nothing.
        assert!(parse("# none yet\n").expect("comments").is_empty());
    }

    #[test]
    fn each_bad_subscription_is_named_by_its_file_and_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "subscriptions:\n  s:\n    class: Plain\n    enabled: no way\n",
                "subscriptions.s.enabled",
                "invalid type",
            ),
            (
                "subscriptions:\n  s:\n    class: Plain\n    evnets: [task.failed]\n",
                "subscriptions.s.evnets",
                "unknown field `evnets`",
            ),
            (
                "subscription:\n  s: {}\n",
                "subscription",
                "unknown field `subscription`, expected `subscriptions`",
            ),
            (
                "subscriptions:\n  s: { class: Plain }\n  s: { class: Picky }\n",
                "subscriptions",
                "duplicate key `s`",
            ),
            (
                "subscriptions:\n  s:\n    enabled: false\n",
                "subscriptions.s",
                "name the subscriber: `class:",
            ),
            (
                "subscriptions:\n  s:\n    class: Plain\n    type: log\n",
                "subscriptions.s",
                "not both",
            ),
            (
                "subscriptions:\n  s:\n    type: slack\n",
                "subscriptions.s.type",
                "unknown variant `slack`, expected `log`",
            ),
            (
                "subscriptions:\n  s:\n    type: log\n",
                "subscriptions.s",
                "`type: log` needs `events`",
            ),
            (
                "subscriptions:\n  s:\n    type: log\n    events: [\"*\"]\n    config: { level: loud }\n",
                "subscriptions.s.config",
                "level: unknown variant `loud`",
            ),
            (
                "subscriptions:\n  s:\n    class: Plain\n    events: []\n",
                "subscriptions.s.events",
                "`events` is empty",
            ),
            (
                "subscriptions:\n  s:\n    class: Plain\n    config: [1]\n",
                "subscriptions.s.config",
                "must be a mapping",
            ),
            (
                "subscriptions:\n  s:\n    class: Pager\n",
                "subscriptions.s.class",
                "no registered subscriber is named `Pager`; the registered ones are \
                 `app::alerts::Picky`, `app::audit::Plain`",
            ),
            (
                "subscriptions:\n  s:\n    class: lerts::Picky\n",
                "subscriptions.s.class",
                "no registered subscriber is named `lerts::Picky`",
            ),
            (
                "subscriptions:\n  a:\n    class: Plain\n  b:\n    class: app::audit::Plain\n",
                "subscriptions.b.class",
                "subscriber `app::audit::Plain` is also configured by subscription `a` in \
                 `subs/a.yml`",
            ),
            (
                "subscriptions:\n  s:\n    class: Plain\n    config: { team: payments }\n",
                "subscriptions.s.config",
                "subscriber `app::audit::Plain` refuses this `config`: this subscriber takes \
                 no `config`",
            ),
            (
                "subscriptions:\n  s:\n    class: Picky\n    config: { ok: false }\n",
                "subscriptions.s.config",
                "subscriber `app::alerts::Picky` refuses this `config`: `ok` must be true",
            ),
        ];
        let mut wrong = Vec::new();
        for (yaml, key, message) in cases {
            let (found_key, found) = problem(yaml);
            if found_key.as_deref() != Some(*key) || !found.contains(message) {
                wrong.push(format!("{yaml}=> {found_key:?}: {found}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    }

    #[test]
    fn an_ambiguous_name_lists_what_it_could_be() {
        let mut all = candidates();
        all.push(Candidate {
            name: "other::Plain".to_owned(),
            instance: Some(Arc::new(Plain)),
        });
        let subscriptions = parse("subscriptions:\n  s: { class: Plain }\n").expect("parse");
        match enroll(all, subscriptions) {
            Err(error @ Error::Subscriptions(_)) => assert_eq!(
                error.to_string(),
                "invalid subscriptions: `subs/a.yml` at `subscriptions.s.class`: `Plain` could \
                 be any of `app::audit::Plain`, `other::Plain`: write more of its path"
            ),
            Err(other) => panic!("expected Subscriptions, got {other}"),
            Ok(_) => panic!("an ambiguous name was accepted"),
        }
    }

    #[test]
    fn subscriptions_are_unique_across_files_and_only_the_default_directory_may_be_missing() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("subscriptions");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("a.yml"), "subscriptions:\n  s: { class: Plain }\n").expect("a");
        std::fs::write(
            dir.join("b.yaml"),
            "subscriptions:\n  s: { class: Picky }\n",
        )
        .expect("b");
        match load_subscriptions(std::slice::from_ref(&dir)) {
            Err(Error::Subscriptions(problems)) => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert_eq!(problems[0].file, dir.join("b.yaml"));
                assert_eq!(problems[0].key.as_deref(), Some("subscriptions.s"));
                assert!(
                    problems[0].message.contains("also defined in"),
                    "{problems:?}"
                );
            }
            other => panic!("expected Subscriptions, got {other:?}"),
        }
        let default = load_subscriptions(&[PathBuf::from(DEFAULT_SUBSCRIPTIONS_DIR)]);
        assert!(default.expect("default").is_empty());
        let missing = root.path().join("nowhere");
        match load_subscriptions(std::slice::from_ref(&missing)) {
            Err(Error::Subscriptions(problems)) => {
                assert_eq!(problems[0].file, missing);
                assert!(
                    problems[0].message.contains("`subscriptions_directories`"),
                    "{problems:?}"
                );
            }
            other => panic!("expected Subscriptions, got {other:?}"),
        }
    }
}
