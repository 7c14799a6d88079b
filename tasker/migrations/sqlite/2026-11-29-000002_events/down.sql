DROP TABLE tasker_custom_events;
ALTER TABLE tasker_tasks DROP COLUMN correlation_id;
