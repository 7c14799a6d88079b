-- The workers seen recently: each records itself at start and on every heartbeat, and
-- removes itself when it stops gracefully, so `/health/status` can say who is working.
CREATE TABLE tasker_workers (
    worker_id VARCHAR(255) PRIMARY KEY,
    concurrency INTEGER NOT NULL,
    running INTEGER NOT NULL DEFAULT 0,
    started_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    last_seen_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX tasker_workers_last_seen ON tasker_workers (last_seen_at);
