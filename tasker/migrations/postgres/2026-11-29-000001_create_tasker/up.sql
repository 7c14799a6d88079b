-- tasker schema for PostgreSQL. Timestamps are UTC (timestamp without time zone); JSON is text so
-- that one diesel schema serves both backends.
CREATE TABLE tasker_task_namespaces (
    task_namespace_id BIGSERIAL PRIMARY KEY,
    name VARCHAR(64) NOT NULL UNIQUE,
    description VARCHAR(255),
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE tasker_named_tasks (
    named_task_id BIGSERIAL PRIMARY KEY,
    task_namespace_id BIGINT NOT NULL REFERENCES tasker_task_namespaces (task_namespace_id),
    name VARCHAR(64) NOT NULL,
    version VARCHAR(16) NOT NULL DEFAULT '0.1.0',
    description VARCHAR(255),
    configuration TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (task_namespace_id, name, version)
);

CREATE TABLE tasker_dependent_systems (
    dependent_system_id BIGSERIAL PRIMARY KEY,
    name VARCHAR(64) NOT NULL UNIQUE,
    description VARCHAR(255),
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE tasker_named_steps (
    named_step_id BIGSERIAL PRIMARY KEY,
    dependent_system_id BIGINT NOT NULL REFERENCES tasker_dependent_systems (dependent_system_id),
    name VARCHAR(128) NOT NULL,
    description VARCHAR(255),
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (dependent_system_id, name)
);

CREATE TABLE tasker_named_tasks_named_steps (
    id BIGSERIAL PRIMARY KEY,
    named_task_id BIGINT NOT NULL REFERENCES tasker_named_tasks (named_task_id),
    named_step_id BIGINT NOT NULL REFERENCES tasker_named_steps (named_step_id),
    skippable BOOLEAN NOT NULL DEFAULT FALSE,
    default_retryable BOOLEAN NOT NULL DEFAULT TRUE,
    default_retry_limit INTEGER NOT NULL DEFAULT 3,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (named_task_id, named_step_id)
);

CREATE TABLE tasker_tasks (
    task_id BIGSERIAL PRIMARY KEY,
    named_task_id BIGINT NOT NULL REFERENCES tasker_named_tasks (named_task_id),
    state VARCHAR(32) NOT NULL DEFAULT 'pending',
    complete BOOLEAN NOT NULL DEFAULT FALSE,
    concurrent BOOLEAN NOT NULL DEFAULT TRUE,
    running_step_id BIGINT,
    requested_at TIMESTAMP NOT NULL,
    initiator VARCHAR(128),
    source_system VARCHAR(128),
    reason VARCHAR(128),
    bypass_steps TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '[]',
    context TEXT NOT NULL,
    identity_hash VARCHAR(128) NOT NULL UNIQUE,
    idempotency_key VARCHAR(255) UNIQUE,
    priority INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX tasker_tasks_state ON tasker_tasks (state);
CREATE INDEX tasker_tasks_named_task ON tasker_tasks (named_task_id);

CREATE TABLE tasker_workflow_steps (
    workflow_step_id BIGSERIAL PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    named_step_id BIGINT NOT NULL REFERENCES tasker_named_steps (named_step_id),
    name VARCHAR(128) NOT NULL,
    state VARCHAR(32) NOT NULL DEFAULT 'pending',
    retryable BOOLEAN NOT NULL DEFAULT TRUE,
    retry_limit INTEGER NOT NULL DEFAULT 3,
    in_process BOOLEAN NOT NULL DEFAULT FALSE,
    processed BOOLEAN NOT NULL DEFAULT FALSE,
    processed_at TIMESTAMP,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempted_at TIMESTAMP,
    backoff_request_seconds INTEGER,
    inputs TEXT,
    results TEXT,
    skippable BOOLEAN NOT NULL DEFAULT FALSE,
    remaining_parents INTEGER NOT NULL DEFAULT 0,
    ready_at TIMESTAMP,
    lease_owner VARCHAR(128),
    lease_expires_at TIMESTAMP,
    priority INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (task_id, name)
);
-- The claim reads only ready rows, so this index keeps it O(ready), not O(all steps).
CREATE INDEX tasker_workflow_steps_ready ON tasker_workflow_steps (priority DESC, ready_at, workflow_step_id)
    WHERE state IN ('pending', 'error') AND remaining_parents = 0 AND ready_at IS NOT NULL;
CREATE INDEX tasker_workflow_steps_leases ON tasker_workflow_steps (lease_expires_at)
    WHERE state = 'in_progress';

CREATE TABLE tasker_workflow_step_edges (
    id BIGSERIAL PRIMARY KEY,
    from_step_id BIGINT NOT NULL REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE CASCADE,
    to_step_id BIGINT NOT NULL REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE CASCADE,
    name VARCHAR(64) NOT NULL DEFAULT 'provides',
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (from_step_id, to_step_id)
);
CREATE INDEX tasker_workflow_step_edges_to ON tasker_workflow_step_edges (to_step_id);

CREATE TABLE tasker_task_transitions (
    id BIGSERIAL PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    from_state VARCHAR(32),
    to_state VARCHAR(32) NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    sort_key INTEGER NOT NULL,
    most_recent BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (task_id, sort_key)
);
CREATE UNIQUE INDEX tasker_task_transitions_most_recent ON tasker_task_transitions (task_id) WHERE most_recent;

CREATE TABLE tasker_workflow_step_transitions (
    id BIGSERIAL PRIMARY KEY,
    workflow_step_id BIGINT NOT NULL REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE CASCADE,
    from_state VARCHAR(32),
    to_state VARCHAR(32) NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    sort_key INTEGER NOT NULL,
    most_recent BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (workflow_step_id, sort_key)
);
CREATE UNIQUE INDEX tasker_workflow_step_transitions_most_recent ON tasker_workflow_step_transitions (workflow_step_id) WHERE most_recent;

CREATE TABLE tasker_annotation_types (
    annotation_type_id BIGSERIAL PRIMARY KEY,
    name VARCHAR(64) NOT NULL UNIQUE,
    description VARCHAR(255),
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE tasker_task_annotations (
    task_annotation_id BIGSERIAL PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    annotation_type_id BIGINT NOT NULL REFERENCES tasker_annotation_types (annotation_type_id),
    annotation TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
