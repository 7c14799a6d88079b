//! Recording templates (namespaces, named tasks, named steps) and custom events.

use std::collections::HashMap;

use diesel::prelude::*;

use super::Conn;
use super::schema::*;
use crate::error::Result;
use crate::template::{StepTemplate, TaskTemplate};

/// Database ids of a synced template.
#[derive(Debug, Clone)]
pub(crate) struct TemplateIds {
    pub(crate) named_task_id: i64,
    pub(crate) step_ids: HashMap<String, i64>,
}

/// Upserts the namespaces, named tasks and named steps of `templates`; returns their ids.
pub(crate) fn sync_templates(
    c: &mut Conn<'_>,
    templates: &[&TaskTemplate],
) -> Result<Vec<TemplateIds>> {
    c.write(|c| {
        let mut out = Vec::with_capacity(templates.len());
        for template in templates {
            let named_task_id = sync_named_task(c, template)?;
            let mut step_ids = HashMap::new();
            for step in &template.step_templates {
                let named_step_id = sync_named_step(c, template, step)?;
                link_step(c, named_task_id, named_step_id, step)?;
                step_ids.insert(step.name.clone(), named_step_id);
            }
            out.push(TemplateIds {
                named_task_id,
                step_ids,
            });
        }
        Ok(out)
    })
}

fn sync_named_task(c: &mut Conn<'_>, t: &TaskTemplate) -> Result<i64> {
    use tasker_named_tasks::dsl as nt;
    use tasker_task_namespaces::dsl as ns;
    c.execute(
        diesel::insert_into(ns::tasker_task_namespaces)
            .values(ns::name.eq(&t.namespace_name))
            .on_conflict(ns::name)
            .do_nothing(),
    )?;
    let namespace_id: i64 = c.get_result(
        ns::tasker_task_namespaces
            .filter(ns::name.eq(&t.namespace_name))
            .select(ns::task_namespace_id),
    )?;
    let configuration = serde_json::to_string(t)?;
    let now = c.now();
    c.execute(
        diesel::insert_into(nt::tasker_named_tasks)
            .values((
                nt::task_namespace_id.eq(namespace_id),
                nt::name.eq(&t.name),
                nt::version.eq(&t.version),
                nt::description.eq(&t.description),
                nt::configuration.eq(&configuration),
            ))
            .on_conflict((nt::task_namespace_id, nt::name, nt::version))
            .do_update()
            .set((
                nt::configuration.eq(&configuration),
                nt::description.eq(&t.description),
                nt::updated_at.eq(now),
            )),
    )?;
    Ok(c.get_result(
        nt::tasker_named_tasks
            .filter(nt::task_namespace_id.eq(namespace_id))
            .filter(nt::name.eq(&t.name))
            .filter(nt::version.eq(&t.version))
            .select(nt::named_task_id),
    )?)
}

fn sync_named_step(c: &mut Conn<'_>, t: &TaskTemplate, step: &StepTemplate) -> Result<i64> {
    use tasker_dependent_systems::dsl as ds;
    use tasker_named_steps::dsl as ns;
    let system = step
        .dependent_system
        .as_deref()
        .or(t.default_dependent_system.as_deref())
        .unwrap_or("default");
    c.execute(
        diesel::insert_into(ds::tasker_dependent_systems)
            .values(ds::name.eq(system))
            .on_conflict(ds::name)
            .do_nothing(),
    )?;
    let system_id: i64 = c.get_result(
        ds::tasker_dependent_systems
            .filter(ds::name.eq(system))
            .select(ds::dependent_system_id),
    )?;
    c.execute(
        diesel::insert_into(ns::tasker_named_steps)
            .values((
                ns::dependent_system_id.eq(system_id),
                ns::name.eq(&step.name),
                ns::description.eq(&step.description),
            ))
            .on_conflict((ns::dependent_system_id, ns::name))
            .do_nothing(),
    )?;
    Ok(c.get_result(
        ns::tasker_named_steps
            .filter(ns::dependent_system_id.eq(system_id))
            .filter(ns::name.eq(&step.name))
            .select(ns::named_step_id),
    )?)
}

fn link_step(
    c: &mut Conn<'_>,
    named_task_id: i64,
    named_step_id: i64,
    step: &StepTemplate,
) -> Result<()> {
    use tasker_named_tasks_named_steps::dsl as link;
    let retry_limit = i32::try_from(step.default_retry_limit).unwrap_or(i32::MAX);
    c.execute(
        diesel::insert_into(link::tasker_named_tasks_named_steps)
            .values((
                link::named_task_id.eq(named_task_id),
                link::named_step_id.eq(named_step_id),
                link::skippable.eq(step.skippable),
                link::default_retryable.eq(step.default_retryable),
                link::default_retry_limit.eq(retry_limit),
            ))
            .on_conflict((link::named_task_id, link::named_step_id))
            .do_update()
            .set((
                link::skippable.eq(step.skippable),
                link::default_retryable.eq(step.default_retryable),
                link::default_retry_limit.eq(retry_limit),
            )),
    )?;
    Ok(())
}

/// The configuration (template JSON) of every stored named task, by id.
pub(crate) fn load_templates(c: &mut Conn<'_>) -> Result<Vec<(i64, Option<String>)>> {
    use tasker_named_tasks::dsl as nt;
    Ok(c.load(
        nt::tasker_named_tasks
            .order(nt::named_task_id.asc())
            .select((nt::named_task_id, nt::configuration)),
    )?)
}

/// Records the custom events this program declares (name, description).
pub(crate) fn sync_custom_events(c: &mut Conn<'_>, events: &[(String, String)]) -> Result<()> {
    use tasker_custom_events::dsl as ce;
    for (name, description) in events {
        let now = c.now();
        c.execute(
            diesel::insert_into(ce::tasker_custom_events)
                .values((ce::name.eq(name), ce::description.eq(description)))
                .on_conflict(ce::name)
                .do_update()
                .set((ce::description.eq(description), ce::updated_at.eq(now))),
        )?;
    }
    Ok(())
}

/// Every custom event any worker declared, by name.
pub(crate) fn list_custom_events(c: &mut Conn<'_>) -> Result<Vec<(String, Option<String>)>> {
    use tasker_custom_events::dsl as ce;
    Ok(c.load(
        ce::tasker_custom_events
            .order(ce::name.asc())
            .select((ce::name, ce::description)),
    )?)
}
