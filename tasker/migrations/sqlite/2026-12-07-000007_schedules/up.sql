-- Recurring tasks. `next_run_at` is the earliest slot not yet handled: a worker that finds it
-- due locks the row (skipping one another holds), creates the slot's task and moves
-- `next_run_at` past the clock in one transaction. Each slot's task also carries the idempotency
-- key `schedule:<name>:<slot>`, unique among tasks, so a slot never runs twice.
CREATE TABLE tasker_schedules (
    schedule_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(128) NOT NULL UNIQUE,
    namespace_name VARCHAR(64) NOT NULL,
    task_name VARCHAR(64) NOT NULL,
    version VARCHAR(16) NOT NULL,
    cron VARCHAR(128) NOT NULL,
    time_zone VARCHAR(64) NOT NULL,
    -- NULL: each run's context is built by the workflow's code.
    context TEXT,
    catch_up INTEGER NOT NULL DEFAULT 0,
    -- 'template' (declared in code or YAML, kept in step with it) or 'api'.
    origin VARCHAR(16) NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    next_run_at TIMESTAMP NOT NULL,
    -- A run asked for now (`trigger`), not yet started.
    trigger_at TIMESTAMP,
    last_slot_at TIMESTAMP,
    last_task_id BIGINT,
    missed_slots BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX tasker_schedules_due ON tasker_schedules (next_run_at) WHERE paused = 0;
