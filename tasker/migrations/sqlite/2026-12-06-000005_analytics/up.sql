-- Analytics read the tasks created within a period; with this index their cost follows the
-- period's tasks, not the whole history (a task's steps are then found by `task_id`).
CREATE INDEX tasker_tasks_created_at ON tasker_tasks (created_at);
