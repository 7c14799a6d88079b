//! Task annotations: typed JSON notes on a task (the seed's `tasker_task_annotations`), and
//! the annotation types they name.

use diesel::prelude::*;

use super::Conn;
use super::schema::*;
use crate::error::{Error, Result};
use crate::model::TaskAnnotation;

/// Adds `annotation` (JSON text) of `annotation_type` to task `task_id`, creating the type on
/// its first use.
pub(crate) fn annotate(
    c: &mut Conn<'_>,
    task_id: i64,
    annotation_type: &str,
    annotation: &str,
) -> Result<()> {
    use tasker_annotation_types::dsl as ty;
    use tasker_task_annotations::dsl as a;
    let exists: i64 = c.get_result(
        tasker_tasks::table
            .filter(tasker_tasks::task_id.eq(task_id))
            .count(),
    )?;
    if exists == 0 {
        return Err(Error::TaskNotFound(task_id));
    }
    c.execute(
        diesel::insert_into(ty::tasker_annotation_types)
            .values(ty::name.eq(annotation_type))
            .on_conflict(ty::name)
            .do_nothing(),
    )?;
    let type_id: i64 = c.get_result(
        ty::tasker_annotation_types
            .filter(ty::name.eq(annotation_type))
            .select(ty::annotation_type_id),
    )?;
    let (created, updated) = (c.now(), c.now());
    c.execute(diesel::insert_into(a::tasker_task_annotations).values((
        a::task_id.eq(task_id),
        a::annotation_type_id.eq(type_id),
        a::annotation.eq(annotation),
        a::created_at.eq(created),
        a::updated_at.eq(updated),
    )))?;
    Ok(())
}

/// A task's annotations, oldest first.
pub(crate) fn annotations(c: &mut Conn<'_>, task_id: i64) -> Result<Vec<TaskAnnotation>> {
    use tasker_annotation_types::dsl as ty;
    use tasker_task_annotations::dsl as a;
    let rows: Vec<(String, String, chrono::NaiveDateTime)> = c.load(
        a::tasker_task_annotations
            .inner_join(ty::tasker_annotation_types)
            .filter(a::task_id.eq(task_id))
            .order(a::task_annotation_id.asc())
            .select((ty::name, a::annotation, a::created_at)),
    )?;
    rows.into_iter()
        .map(|(annotation_type, annotation, created_at)| {
            Ok(TaskAnnotation {
                annotation_type,
                annotation: serde_json::from_str(&annotation)?,
                created_at,
            })
        })
        .collect()
}

/// Every annotation type, by name.
pub(crate) fn annotation_types(c: &mut Conn<'_>) -> Result<Vec<String>> {
    use tasker_annotation_types::dsl as ty;
    Ok(c.load(
        ty::tasker_annotation_types
            .order(ty::name.asc())
            .select(ty::name),
    )?)
}
