-- A delayed task (`run_at`, `delay`) is created at once; its runnable steps wait in
-- `scheduled_at`, outside the claim's index, until the promotion makes them ready, so a
-- backlog of future tasks costs the claim nothing.
ALTER TABLE tasker_tasks ADD COLUMN run_at TIMESTAMP;
ALTER TABLE tasker_workflow_steps ADD COLUMN scheduled_at TIMESTAMP;
CREATE INDEX tasker_workflow_steps_scheduled ON tasker_workflow_steps (scheduled_at)
    WHERE scheduled_at IS NOT NULL;
-- A task's deadline (`timeout_seconds`): past it, a worker ends the task in error. The index
-- holds only the open tasks that have one.
ALTER TABLE tasker_tasks ADD COLUMN deadline_at TIMESTAMP;
CREATE INDEX tasker_tasks_deadline ON tasker_tasks (deadline_at)
    WHERE deadline_at IS NOT NULL AND state IN ('pending', 'in_progress');
-- Retention deletes the tasks that finished longest ago, batch by batch: this index finds them
-- without reading the live ones; the annotations' lets the cascade find a task's.
CREATE INDEX tasker_tasks_finished ON tasker_tasks (updated_at)
    WHERE state IN ('complete', 'cancelled', 'resolved_manually', 'error');
CREATE INDEX tasker_task_annotations_task ON tasker_task_annotations (task_id);
