DROP INDEX tasker_task_annotations_task;
DROP INDEX tasker_tasks_finished;
DROP INDEX tasker_tasks_deadline;
ALTER TABLE tasker_tasks DROP COLUMN deadline_at;
DROP INDEX tasker_workflow_steps_scheduled;
ALTER TABLE tasker_workflow_steps DROP COLUMN scheduled_at;
ALTER TABLE tasker_tasks DROP COLUMN run_at;
