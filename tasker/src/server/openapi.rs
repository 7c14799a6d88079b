//! The OpenAPI 3.1 document: built from the route table, with schemas from the same Rust types
//! the handlers read and answer (schemars), and with the served templates' task requests, each
//! with its context schema, so a generated client gets typed contexts.

use serde_json::{Map, Value, json};

use super::{Answer, ApiError, Endpoint, Guard, Route, table};
use crate::TaskTemplate;
use crate::template::{DEFAULT_NAMESPACE, DEFAULT_VERSION};

/// The OpenAPI 3.1 document of [`routes`](super::routes) under `prefix`, creating tasks of
/// `templates`.
pub fn openapi_document(prefix: &str, templates: &[&TaskTemplate]) -> Value {
    let prefix = prefix.trim_end_matches('/');
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
    let error_body = generator.subschema_for::<ApiError>().to_value();
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": error_body.clone() } },
        })
    };
    let table = table();
    let mut paths = Map::new();
    for endpoint in &table {
        let route = &endpoint.route;
        let mut parameters: Vec<Value> = path_parameters(route.path)
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": path_parameter_schema(name) }))
            .collect();
        if let Some(query) = endpoint.query {
            parameters.extend(query_parameters(query(&mut generator).to_value()));
        }
        let mut responses = Map::new();
        let (status, answer) = endpoint.response;
        let content = match answer {
            Answer::Json(schema) => {
                json!({ "application/json": { "schema": schema(&mut generator).to_value() } })
            }
            Answer::Text => json!({ "text/plain": { "schema": { "type": "string" } } }),
        };
        let mut success = json!({ "description": "Success", "content": content });
        let links = links(endpoint.supplies, &table);
        if !links.is_empty() {
            success["links"] = Value::Object(links);
        }
        responses.insert(status.to_string(), success);
        if status == 201 {
            // A create answers 200 too: the earlier task an idempotency key names, or an
            // array's answers.
            responses.insert(
                "200".to_owned(),
                json!({ "description": "An earlier task, or one answer per request of an array", "content": content }),
            );
        }
        responses.insert(
            "4XX".to_owned(),
            error("The request is refused: `{code, message, path}`, `path` a JSON pointer to the field at fault"),
        );
        let mut operation = json!({
            "operationId": operation_id(route),
            "summary": route.summary,
            "parameters": parameters,
        });
        if let Some(body) = endpoint.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": body(&mut generator).to_value() } },
            });
        }
        if route.guard != Guard::Public {
            responses.insert("401".to_owned(), error("No valid credentials"));
            operation["security"] = json!([{ "apiKey": [] }, { "bearer": [] }]);
        }
        if let Guard::Permission(permission) = route.guard {
            responses.insert(
                "403".to_owned(),
                error(&format!("The caller may not `{permission}`")),
            );
            operation["x-tasker-permission"] = json!(permission);
        }
        operation["responses"] = Value::Object(responses);
        let entry = paths
            .entry(format!("{prefix}{}", route.path))
            .or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = operation;
    }
    let mut schemas = generator.take_definitions(true);
    describe_templates(&mut schemas, templates);
    let mut document = json!({
        "openapi": "3.1.0",
        "info": { "title": "tasker", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
            }
        },
    });
    spell_out_true(&mut document);
    document
}

/// Writes each `true` schema (anything goes) of a property or an item as `{}`: the same in
/// JSON Schema, and the form client generators that predate OpenAPI 3.1 read.
fn spell_out_true(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match (key.as_str(), child) {
                    ("properties", Value::Object(properties)) => {
                        for property in properties.values_mut() {
                            if *property == Value::Bool(true) {
                                *property = json!({});
                            }
                            spell_out_true(property);
                        }
                    }
                    ("items", item @ Value::Bool(true)) => *item = json!({}),
                    (_, child) => spell_out_true(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(spell_out_true),
        _ => {}
    }
}

/// A route's `operationId`: its method and path, e.g. `get_tasks_id_workflow_steps`.
fn operation_id(route: &Route) -> String {
    let mut id = route.method.to_ascii_lowercase();
    for segment in route.path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            segment
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_'),
        );
    }
    id
}

/// OpenAPI links from an answer that supplies `supplied` path parameters to every route that
/// takes only parameters among them.
fn links(supplied: &[(&str, &str)], table: &[Endpoint]) -> Map<String, Value> {
    table
        .iter()
        .filter_map(|target| {
            let mut parameters = Map::new();
            for name in path_parameters(target.route.path) {
                let (_, pointer) = supplied.iter().find(|(n, _)| *n == name)?;
                parameters.insert(name.to_owned(), json!(format!("$response.body#{pointer}")));
            }
            (!parameters.is_empty()).then(|| {
                let id = operation_id(&target.route);
                (
                    id.clone(),
                    json!({ "operationId": id, "parameters": parameters }),
                )
            })
        })
        .collect()
}

/// The names of a path's `{parameters}`.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// The query parameters a struct's schema describes: one per property, required when the
/// struct requires it.
fn query_parameters(schema: Value) -> Vec<Value> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| {
                    json!({
                        "name": name,
                        "in": "query",
                        "required": required.contains(&name.as_str()),
                        "schema": property,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A path parameter's schema: ids are 64-bit integers, names are strings.
fn path_parameter_schema(name: &str) -> Value {
    if name == "id" || name.ends_with("_id") {
        json!({ "type": "integer", "format": "int64", "minimum": 1 })
    } else {
        json!({ "type": "string" })
    }
}

/// Replaces the `TemplateRequest` component (a [`TaskRequest`](crate::TaskRequest) for any
/// template) with one schema per template in `templates`: the request with the template's name,
/// namespace and version fixed (required unless they are the defaults), its context schema,
/// whose definitions join the components, and its skippable steps. Without templates it stays the generic request.
fn describe_templates(schemas: &mut Map<String, Value>, templates: &[&TaskTemplate]) {
    if templates.is_empty() {
        return;
    }
    let mut variants = Vec::with_capacity(templates.len());
    for template in templates {
        let component = unique_name(
            schemas,
            &format!(
                "Context_{}_{}_{}",
                template.namespace_name, template.name, template.version
            ),
        );
        let context = template.schema.clone().unwrap_or(json!({}));
        let context_required = !crate::registry::accepts_empty_context(&context);
        let context = embed(context, &component, schemas);
        schemas.insert(component.clone(), context);
        let skippable: Vec<&str> = template
            .step_templates
            .iter()
            .filter(|step| step.skippable)
            .map(|step| step.name.as_str())
            .collect();
        // An empty `enum` is valid JSON Schema, but client generators stumble on it.
        let bypassable = if skippable.is_empty() {
            json!({ "maxItems": 0 })
        } else {
            json!({ "items": { "enum": skippable } })
        };
        let mut required = vec![json!("name")];
        if template.namespace_name != DEFAULT_NAMESPACE {
            required.push(json!("namespace"));
        }
        if template.version != DEFAULT_VERSION {
            required.push(json!("version"));
        }
        if context_required {
            required.push(json!("context"));
        }
        variants.push(json!({
            "title": format!("{}/{}@{}", template.namespace_name, template.name, template.version),
            "allOf": [
                { "$ref": "#/components/schemas/TaskRequest" },
                {
                    "properties": {
                        "name": { "const": template.name },
                        "namespace": { "const": template.namespace_name },
                        "version": { "const": template.version },
                        "context": { "$ref": format!("#/components/schemas/{component}") },
                        "bypass_steps": bypassable,
                    },
                    "required": required,
                },
            ],
        }));
    }
    schemas.insert(
        "TemplateRequest".to_owned(),
        json!({
            "description": "A task request for one of the templates this server runs.",
            "anyOf": variants,
        }),
    );
}

/// A component name from `wanted`: the characters OpenAPI allows, and unused so far.
fn unique_name(schemas: &Map<String, Value>, wanted: &str) -> String {
    let base: String = wanted
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = base.clone();
    let mut n = 2;
    while schemas.contains_key(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// A template's context schema as the component `component`: its `$defs` (or `definitions`)
/// become components of their own, named after it, and its references follow them.
fn embed(mut schema: Value, component: &str, schemas: &mut Map<String, Value>) -> Value {
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    // A subschema's dialect is the document's; an `$id` would make its references relative.
    object.remove("$schema");
    object.remove("$id");
    let mut definitions = Vec::new();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = object.remove(key) {
            definitions.extend(defs.into_iter().map(|(name, def)| (key, name, def)));
        }
    }
    // A reference to the root (a recursive schema) is one to the component.
    let mut renamed = vec![("#".to_owned(), format!("#/components/schemas/{component}"))];
    for (key, name, _) in &definitions {
        let new = unique_name(schemas, &format!("{component}.{name}"));
        renamed.push((
            format!("#/{key}/{name}"),
            format!("#/components/schemas/{new}"),
        ));
        // Reserved now, so a later definition does not take the same name.
        schemas.insert(new, Value::Null);
    }
    for ((_, _, mut def), (_, new)) in definitions.into_iter().zip(&renamed[1..]) {
        rewrite_refs(&mut def, &renamed);
        let name = new.trim_start_matches("#/components/schemas/").to_owned();
        schemas.insert(name, def);
    }
    rewrite_refs(&mut schema, &renamed);
    schema
}

/// Points every `$ref` in `value` named in `renamed` at its new place.
fn rewrite_refs(value: &mut Value, renamed: &[(String, String)]) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "$ref" {
                    if let Some(target) = child.as_str()
                        && let Some((_, new)) = renamed.iter().find(|(old, _)| old == target)
                    {
                        *child = json!(new);
                    }
                } else {
                    rewrite_refs(child, renamed);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_refs(item, renamed)),
        _ => {}
    }
}
