DROP INDEX tasker_tasks_created_at;
