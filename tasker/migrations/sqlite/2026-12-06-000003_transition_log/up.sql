-- Transitions become an append-only log: the engine no longer clears the previous row's
-- `most_recent` on every transition (half of all transition writes), and the seed's tables
-- become views over the logs with `most_recent` derived (the row with the highest `sort_key`
-- of its entity), so queries written for the seed's tables keep working.
DROP INDEX tasker_task_transitions_most_recent;
ALTER TABLE tasker_task_transitions DROP COLUMN most_recent;
ALTER TABLE tasker_task_transitions RENAME TO tasker_task_transition_log;

DROP INDEX tasker_workflow_step_transitions_most_recent;
ALTER TABLE tasker_workflow_step_transitions DROP COLUMN most_recent;
ALTER TABLE tasker_workflow_step_transitions RENAME TO tasker_workflow_step_transition_log;

CREATE VIEW tasker_task_transitions AS
SELECT l.id, l.task_id, l.from_state, l.to_state, l.metadata, l.sort_key,
       NOT EXISTS (
           SELECT 1 FROM tasker_task_transition_log n
           WHERE n.task_id = l.task_id AND n.sort_key > l.sort_key
       ) AS most_recent,
       l.created_at, l.updated_at
FROM tasker_task_transition_log l;

CREATE VIEW tasker_workflow_step_transitions AS
SELECT l.id, l.workflow_step_id, l.from_state, l.to_state, l.metadata, l.sort_key,
       NOT EXISTS (
           SELECT 1 FROM tasker_workflow_step_transition_log n
           WHERE n.workflow_step_id = l.workflow_step_id AND n.sort_key > l.sort_key
       ) AS most_recent,
       l.created_at, l.updated_at
FROM tasker_workflow_step_transition_log l;
