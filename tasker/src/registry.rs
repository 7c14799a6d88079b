//! The registry of task templates and step handlers a worker can run.

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::generated::{StepHandlerRegistration, TaskHandlerParts, TaskHandlerRegistration};
use crate::handler::{DynStepHandler, StepHandler};
use crate::hooks::TaskHooks;
use crate::template::{self, TaskTemplate};
use crate::workflow::TaskHandler;

/// `(namespace, name, version)` of a task template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateKey {
    /// Namespace.
    pub namespace: String,
    /// Task name.
    pub name: String,
    /// Version.
    pub version: String,
}

impl TemplateKey {
    /// The key of `template`.
    pub fn of(template: &TaskTemplate) -> Self {
        Self {
            namespace: template.namespace_name.clone(),
            name: template.name.clone(),
            version: template.version.clone(),
        }
    }
}

impl fmt::Display for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.version)
    }
}

/// A template with what the engine derives from it once.
pub(crate) struct RegisteredTemplate {
    pub(crate) template: TaskTemplate,
    pub(crate) validator: Option<jsonschema::Validator>,
    /// The hooks of the `#[task_handler]` it comes from, when it defines any.
    pub(crate) hooks: Option<Arc<dyn TaskHooks>>,
}

/// Task templates and step handlers, registered at start-up.
#[derive(Default)]
pub struct Registry {
    templates: HashMap<TemplateKey, Arc<RegisteredTemplate>>,
    pub(crate) handlers: HashMap<String, Arc<dyn DynStepHandler>>,
    /// What builds the run contexts of the schedules declared by `#[task_handler]`s, by name.
    pub(crate) schedule_contexts: HashMap<String, crate::generated::ScheduleContext>,
    /// Task handler types already registered, so automatic registration skips them.
    task_handler_types: HashSet<TypeId>,
    /// The environment whose overrides YAML-bound task handlers apply.
    environment: Option<String>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut templates: Vec<String> = self.templates.keys().map(ToString::to_string).collect();
        templates.sort();
        let mut handlers: Vec<&String> = self.handlers.keys().collect();
        handlers.sort();
        f.debug_struct("Registry")
            .field("templates", &templates)
            .field("handlers", &handlers)
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a template after checking its structure; a second template with the same
    /// `namespace/name@version` is an error.
    pub fn register_template(&mut self, template: TaskTemplate) -> Result<&mut Self> {
        self.insert_template(template, None)
    }

    fn insert_template(
        &mut self,
        template: TaskTemplate,
        hooks: Option<Arc<dyn TaskHooks>>,
    ) -> Result<&mut Self> {
        template.validate()?;
        let key = TemplateKey::of(&template);
        if self.templates.contains_key(&key) {
            return Err(Error::DuplicateTemplate(key.to_string()));
        }
        let validator = match &template.schema {
            Some(schema) => Some(schema_validator(schema).map_err(|e| {
                template::TemplateError::new(
                    template.full_name(),
                    vec![template::Problem {
                        step: None,
                        key: Some("schema".to_owned()),
                        message: format!("invalid JSON Schema: {e}"),
                    }],
                )
            })?),
            None => None,
        };
        self.templates.insert(
            key,
            Arc::new(RegisteredTemplate {
                template,
                validator,
                hooks,
            }),
        );
        Ok(self)
    }

    /// Loads and registers every `*.yaml`/`*.yml` template in `dir`, applying the overrides of
    /// `environment`.
    pub fn load_templates_dir(
        &mut self,
        dir: impl AsRef<Path>,
        environment: Option<&str>,
    ) -> Result<&mut Self> {
        for template in template::load_templates_dir(dir.as_ref(), environment)? {
            self.register_template(template)?;
        }
        Ok(self)
    }

    /// Registers a `#[task_handler]` workflow: its template and one step handler per step.
    pub fn register_task_handler<H: TaskHandler>(&mut self, handler: H) -> Result<&mut Self> {
        let parts = TaskHandlerParts::of(handler, self.environment.as_deref())?;
        self.register_task_parts(TypeId::of::<H>(), parts)
    }

    fn register_task_parts(
        &mut self,
        type_id: TypeId,
        parts: TaskHandlerParts,
    ) -> Result<&mut Self> {
        let hooks = (parts.hooks.establishes() || parts.hooks.annotates()).then_some(parts.hooks);
        self.insert_template(parts.template, hooks)?;
        for (name, step) in parts.steps {
            self.register_dyn_handler(name, step)?;
        }
        self.schedule_contexts.extend(parts.schedule_contexts);
        self.task_handler_types.insert(type_id);
        Ok(self)
    }

    /// Moves every template, step handler and task handler of `other` into this registry. A
    /// template or step handler registered in both is an error, and then nothing is moved.
    pub fn merge(&mut self, other: Registry) -> Result<()> {
        let mut keys: Vec<&TemplateKey> = other.templates.keys().collect();
        keys.sort();
        if let Some(key) = keys.into_iter().find(|k| self.templates.contains_key(*k)) {
            return Err(Error::DuplicateTemplate(key.to_string()));
        }
        let mut names: Vec<&String> = other.handlers.keys().collect();
        names.sort();
        if let Some(name) = names.into_iter().find(|n| self.handlers.contains_key(*n)) {
            return Err(Error::DuplicateHandler(name.clone()));
        }
        self.templates.extend(other.templates);
        self.handlers.extend(other.handlers);
        self.schedule_contexts.extend(other.schedule_contexts);
        // Task handlers registered there are not discovered again.
        self.task_handler_types.extend(other.task_handler_types);
        Ok(())
    }

    /// Adds every `#[task_handler]` and `#[step_handler]` of the program not registered yet,
    /// building those that are `Default`; one that is not and is needed is an error.
    pub fn register_discovered(&mut self) -> Result<&mut Self> {
        for registration in inventory::iter::<TaskHandlerRegistration> {
            let type_id = (registration.type_id)();
            if self.task_handler_types.contains(&type_id) {
                continue;
            }
            let Some(parts) = (registration.default_parts)(self.environment.as_deref()) else {
                let (namespace, name, version) = (registration.key)();
                return Err(Error::TaskHandlerNeedsInstance {
                    task: format!("{namespace}/{name}@{version}"),
                    handler_type: registration.type_name,
                });
            };
            self.register_task_parts(type_id, parts?)?;
        }
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let mut stateful: HashMap<&str, &'static str> = HashMap::new();
        for registration in inventory::iter::<StepHandlerRegistration> {
            if seen
                .insert(registration.name, registration.type_name)
                .is_some()
            {
                return Err(Error::DuplicateHandler(registration.name.to_owned()));
            }
            if self.handlers.contains_key(registration.name) {
                continue;
            }
            match (registration.instance)() {
                Some(handler) => {
                    self.handlers.insert(registration.name.to_owned(), handler);
                }
                None => {
                    stateful.insert(registration.name, registration.type_name);
                }
            }
        }
        for template in self.templates() {
            for step in &template.step_templates {
                if let Some(handler_type) = stateful.get(step.handler.as_str()) {
                    return Err(Error::StepHandlerNeedsInstance {
                        task: template.full_name(),
                        step: step.name.clone(),
                        name: step.handler.clone(),
                        handler_type,
                    });
                }
            }
        }
        Ok(self)
    }

    /// Registers a step handler under `name`, the name templates use in `handler`.
    pub fn register_handler(
        &mut self,
        name: impl Into<String>,
        handler: impl StepHandler,
    ) -> Result<&mut Self> {
        self.register_dyn_handler(name, Arc::new(handler))
    }

    /// Registers an already shared step handler under `name`.
    pub fn register_dyn_handler(
        &mut self,
        name: impl Into<String>,
        handler: Arc<dyn DynStepHandler>,
    ) -> Result<&mut Self> {
        let name = name.into();
        if self.handlers.contains_key(&name) {
            return Err(Error::DuplicateHandler(name));
        }
        self.handlers.insert(name, handler);
        Ok(self)
    }

    /// Checks that every step of every template names a registered handler.
    pub fn validate(&self) -> Result<()> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut keys: Vec<&TemplateKey> = self.templates.keys().collect();
        keys.sort();
        for key in keys {
            if let Some(registered) = self.templates.get(key) {
                registered.template.validate_handlers(&names)?;
            }
        }
        Ok(())
    }

    /// The template registered under `namespace/name@version`.
    pub fn template(&self, namespace: &str, name: &str, version: &str) -> Option<&TaskTemplate> {
        self.find(namespace, name, version).map(|r| &r.template)
    }

    /// Every registered template, sorted by key.
    pub fn templates(&self) -> Vec<&TaskTemplate> {
        let mut all: Vec<&TaskTemplate> = self.templates.values().map(|r| &r.template).collect();
        all.sort_by(|a, b| TemplateKey::of(a).cmp(&TemplateKey::of(b)));
        all
    }

    /// Sets the environment whose overrides task handlers registered from now on apply.
    pub(crate) fn set_environment(&mut self, environment: Option<String>) {
        self.environment = environment;
    }

    /// The keys of every registered template.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &TemplateKey> {
        self.templates.keys()
    }

    /// Every registered template with its key, sorted by key.
    pub(crate) fn registered(&self) -> Vec<(&TemplateKey, &Arc<RegisteredTemplate>)> {
        let mut all: Vec<(&TemplateKey, &Arc<RegisteredTemplate>)> =
            self.templates.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }

    pub(crate) fn find(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
    ) -> Option<&Arc<RegisteredTemplate>> {
        self.templates.get(&TemplateKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }
}

/// Whether a context schema takes `{}`, the context of a request that gives none.
#[cfg(feature = "server")]
pub(crate) fn accepts_empty_context(schema: &Value) -> bool {
    schema_validator(schema).is_ok_and(|validator| validator.is_valid(&serde_json::json!({})))
}

/// A validator for a template's context schema or a custom event's payload schema. schemars
/// marks an `i64` field `"format": "int64"` (a `u8` `"uint8"`, …) and JSON Schema validators
/// leave `format` unchecked, so a context with 2^63 in an `i64` passed its schema and failed
/// only when a step read it. Here the integer formats are checked: the value must be an
/// integer written as one and fit the type.
pub(crate) fn schema_validator(
    schema: &Value,
) -> std::result::Result<jsonschema::Validator, jsonschema::ValidationError<'_>> {
    jsonschema::options()
        .with_keyword("format", integer_format)
        .build(schema)
}

/// The `format` keyword: a range check for the integer formats, nothing for the others (JSON
/// Schema 2020-12 makes `format` an annotation by default).
fn integer_format<'a>(
    _: &'a serde_json::Map<String, Value>,
    format: &'a Value,
    _: jsonschema::paths::Location,
) -> std::result::Result<Box<dyn for<'i> jsonschema::Keyword<'i>>, jsonschema::ValidationError<'a>>
{
    let range: Option<(&'static str, i128, i128)> = match format.as_str() {
        Some("int8") => Some(("int8", i8::MIN.into(), i8::MAX.into())),
        Some("int16") => Some(("int16", i16::MIN.into(), i16::MAX.into())),
        Some("int32") => Some(("int32", i32::MIN.into(), i32::MAX.into())),
        Some("int64") => Some(("int64", i64::MIN.into(), i64::MAX.into())),
        // schemars's `isize` and `usize`, taken as 64 bits.
        Some("int") => Some(("int", i64::MIN.into(), i64::MAX.into())),
        Some("uint") => Some(("uint", 0, u64::MAX.into())),
        Some("uint8") => Some(("uint8", 0, u8::MAX.into())),
        Some("uint16") => Some(("uint16", 0, u16::MAX.into())),
        Some("uint32") => Some(("uint32", 0, u32::MAX.into())),
        Some("uint64") => Some(("uint64", 0, u64::MAX.into())),
        _ => None,
    };
    Ok(Box::new(IntegerFormat(range)))
}

/// An integer format's name and range, or `None` for a format left unchecked.
struct IntegerFormat(Option<(&'static str, i128, i128)>);

impl<'i> jsonschema::Keyword<'i> for IntegerFormat {
    fn validate(
        &self,
        instance: &'i Value,
    ) -> std::result::Result<(), jsonschema::ValidationError<'i>> {
        match self.0 {
            Some((name, min, max)) if !self.is_valid(instance) => {
                Err(jsonschema::ValidationError::custom(format!(
                    "{instance} does not fit {name} (an integer from {min} to {max})"
                )))
            }
            _ => Ok(()),
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        let (Some((_, min, max)), Value::Number(number)) = (self.0, instance) else {
            return true;
        };
        // A number too large for 64 bits, or written with a fraction or an exponent, was read
        // as a float: it cannot be the integer a typed context expects.
        let exact = number
            .as_i64()
            .map(i128::from)
            .or_else(|| number.as_u64().map(i128::from));
        exact.is_some_and(|value| (min..=max).contains(&value))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn integer_formats_are_checked_exactly() {
        use serde_json::json;
        let validator = schema_validator(&json!({
            "type": "object",
            "properties": {
                "big": { "type": "integer", "format": "int64" },
                "small": { "type": "integer", "format": "uint8" },
                "when": { "type": "string", "format": "date-time" },
            }
        }))
        .expect("schema");
        let valid = |text: &str| validator.is_valid(&serde_json::from_str(text).expect("json"));
        assert!(valid(r#"{"big": 9223372036854775807, "small": 255}"#));
        assert!(valid(r#"{"big": -9223372036854775808, "small": 0}"#));
        assert!(!valid(r#"{"big": 9223372036854775808}"#));
        assert!(!valid(r#"{"big": -9223372036854775809}"#));
        assert!(!valid(r#"{"big": 1e3}"#));
        assert!(!valid(r#"{"small": 256}"#));
        assert!(!valid(r#"{"small": -1}"#));
        // Other formats stay annotations, as JSON Schema 2020-12 has them by default.
        assert!(valid(r#"{"when": "not a date"}"#));
    }

    use super::*;
    use crate::handler::handler_fn;
    use crate::template::StepTemplate;

    fn template(name: &str) -> TaskTemplate {
        TaskTemplate::new("shop", name, "1.0.0").step(StepTemplate::new("only", "ok"))
    }

    fn registry(templates: &[&str], handlers: &[&str]) -> Registry {
        let mut registry = Registry::new();
        for name in templates {
            registry
                .register_template(template(name))
                .expect("template");
        }
        for name in handlers {
            registry
                .register_handler(*name, handler_fn(|_| async { Ok(serde_json::json!(1)) }))
                .expect("handler");
        }
        registry
    }

    fn keys(registry: &Registry) -> Vec<String> {
        registry.templates().iter().map(|t| t.full_name()).collect()
    }

    #[test]
    fn merge_moves_templates_and_handlers() {
        let mut ours = registry(&["order"], &["ok"]);
        ours.merge(registry(&["refund"], &["charge"]))
            .expect("merge");
        assert_eq!(keys(&ours), ["shop/order@1.0.0", "shop/refund@1.0.0"]);
        let mut handlers: Vec<&String> = ours.handlers.keys().collect();
        handlers.sort();
        assert_eq!(handlers, ["charge", "ok"]);
        ours.validate().expect("every step has its handler");
    }

    #[test]
    fn merge_refuses_a_duplicate_template_and_moves_nothing() {
        let mut ours = registry(&["order"], &["ok"]);
        match ours.merge(registry(&["refund", "order"], &["charge"])) {
            Err(Error::DuplicateTemplate(key)) => assert_eq!(key, "shop/order@1.0.0"),
            other => panic!("expected DuplicateTemplate, got {other:?}"),
        }
        assert_eq!(keys(&ours), ["shop/order@1.0.0"]);
        assert!(!ours.handlers.contains_key("charge"));
    }

    #[test]
    fn merge_refuses_a_duplicate_handler_and_moves_nothing() {
        let mut ours = registry(&["order"], &["ok"]);
        match ours.merge(registry(&["refund"], &["charge", "ok"])) {
            Err(Error::DuplicateHandler(name)) => assert_eq!(name, "ok"),
            other => panic!("expected DuplicateHandler, got {other:?}"),
        }
        assert_eq!(keys(&ours), ["shop/order@1.0.0"]);
        assert!(!ours.handlers.contains_key("charge"));
    }
}
