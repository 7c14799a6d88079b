-- The seed's dependent system object maps: an object's id in one system mapped to its id in
-- another. A pair is stored with its lesser (system, id) side first, so the unique key holds
-- whichever way round it was given; each side has an index for lookups by either.
CREATE TABLE tasker_dependent_system_object_maps (
    dependent_system_object_map_id INTEGER PRIMARY KEY AUTOINCREMENT,
    dependent_system_one_id BIGINT NOT NULL REFERENCES tasker_dependent_systems (dependent_system_id),
    dependent_system_two_id BIGINT NOT NULL REFERENCES tasker_dependent_systems (dependent_system_id),
    remote_id_one VARCHAR(128) NOT NULL,
    remote_id_two VARCHAR(128) NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    UNIQUE (dependent_system_one_id, remote_id_one, dependent_system_two_id, remote_id_two)
);
CREATE INDEX tasker_object_maps_two
    ON tasker_dependent_system_object_maps (dependent_system_two_id, remote_id_two);
