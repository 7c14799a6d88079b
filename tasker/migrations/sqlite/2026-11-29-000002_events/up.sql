-- The correlation id of the request that created a task, carried to its spans and events.
ALTER TABLE tasker_tasks ADD COLUMN correlation_id VARCHAR(128);

-- Custom events declared by the programs that run workers, so tools that do not link their
-- code (`cargo tasker events`, the REST API) can list them.
CREATE TABLE tasker_custom_events (
    name VARCHAR(128) PRIMARY KEY NOT NULL,
    description TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
