//! Dependent system object maps (the seed's `tasker_dependent_system_object_maps`): an object's
//! id in one system mapped to its id in another.

use diesel::prelude::*;

use super::Conn;
use super::schema::tasker_dependent_system_object_maps::dsl as m;
use super::schema::tasker_dependent_systems::dsl as ds;
use crate::error::Result;
use crate::model::ObjectMap;

/// The id of dependent system `name`, created on its first use.
fn system_id(c: &mut Conn<'_>, name: &str) -> Result<i64> {
    c.execute(
        diesel::insert_into(ds::tasker_dependent_systems)
            .values(ds::name.eq(name))
            .on_conflict(ds::name)
            .do_nothing(),
    )?;
    Ok(c.get_result(
        ds::tasker_dependent_systems
            .filter(ds::name.eq(name))
            .select(ds::dependent_system_id),
    )?)
}

/// The map of `one` to `two` ((system, id) each), created unless it exists, whichever way
/// round it was stored; whether it was created.
pub(crate) fn map(
    c: &mut Conn<'_>,
    one: (&str, &str),
    two: (&str, &str),
) -> Result<(ObjectMap, bool)> {
    // The lesser side first, so the unique key holds for either order.
    let (one, two) = if one <= two { (one, two) } else { (two, one) };
    c.write(|c| {
        let (system_one, system_two) = (system_id(c, one.0)?, system_id(c, two.0)?);
        let now = c.now();
        let created = c.execute(
            diesel::insert_into(m::tasker_dependent_system_object_maps)
                .values((
                    m::dependent_system_one_id.eq(system_one),
                    m::remote_id_one.eq(one.1),
                    m::dependent_system_two_id.eq(system_two),
                    m::remote_id_two.eq(two.1),
                    m::created_at.eq(now),
                    m::updated_at.eq(c.now()),
                ))
                .on_conflict((
                    m::dependent_system_one_id,
                    m::remote_id_one,
                    m::dependent_system_two_id,
                    m::remote_id_two,
                ))
                .do_nothing(),
        )? > 0;
        let (id, created_at): (i64, chrono::NaiveDateTime) = c.get_result(
            m::tasker_dependent_system_object_maps
                .filter(m::dependent_system_one_id.eq(system_one))
                .filter(m::remote_id_one.eq(one.1))
                .filter(m::dependent_system_two_id.eq(system_two))
                .filter(m::remote_id_two.eq(two.1))
                .select((m::dependent_system_object_map_id, m::created_at)),
        )?;
        let map = ObjectMap {
            id,
            system_one: one.0.to_owned(),
            remote_id_one: one.1.to_owned(),
            system_two: two.0.to_owned(),
            remote_id_two: two.1.to_owned(),
            created_at: created_at.and_utc(),
        };
        Ok((map, created))
    })
}

/// Every map with `remote_id` of `system` on either side, oldest first.
pub(crate) fn mapped(c: &mut Conn<'_>, system: &str, remote_id: &str) -> Result<Vec<ObjectMap>> {
    let Some(system_id): Option<i64> = c
        .load(
            ds::tasker_dependent_systems
                .filter(ds::name.eq(system))
                .select(ds::dependent_system_id),
        )?
        .into_iter()
        .next()
    else {
        return Ok(Vec::new());
    };
    let rows: Vec<(i64, i64, String, i64, String, chrono::NaiveDateTime)> = c.load(
        m::tasker_dependent_system_object_maps
            .filter(
                m::dependent_system_one_id
                    .eq(system_id)
                    .and(m::remote_id_one.eq(remote_id))
                    .or(m::dependent_system_two_id
                        .eq(system_id)
                        .and(m::remote_id_two.eq(remote_id))),
            )
            .order(m::dependent_system_object_map_id.asc())
            .select((
                m::dependent_system_object_map_id,
                m::dependent_system_one_id,
                m::remote_id_one,
                m::dependent_system_two_id,
                m::remote_id_two,
                m::created_at,
            )),
    )?;
    let mut ids: Vec<i64> = rows.iter().flat_map(|r| [r.1, r.3]).collect();
    ids.sort_unstable();
    ids.dedup();
    let names: std::collections::HashMap<i64, String> = c
        .load::<(i64, String), _>(
            ds::tasker_dependent_systems
                .filter(ds::dependent_system_id.eq_any(&ids))
                .select((ds::dependent_system_id, ds::name)),
        )?
        .into_iter()
        .collect();
    let name = |id: i64| names.get(&id).cloned().unwrap_or_default();
    Ok(rows
        .into_iter()
        .map(
            |(id, one, remote_id_one, two, remote_id_two, created_at)| ObjectMap {
                id,
                system_one: name(one),
                remote_id_one,
                system_two: name(two),
                remote_id_two,
                created_at: created_at.and_utc(),
            },
        )
        .collect())
}
