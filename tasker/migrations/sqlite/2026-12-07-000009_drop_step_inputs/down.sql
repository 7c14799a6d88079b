ALTER TABLE tasker_workflow_steps ADD COLUMN inputs TEXT;
