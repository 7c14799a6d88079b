DROP VIEW tasker_workflow_step_transitions;
DROP VIEW tasker_task_transitions;

ALTER TABLE tasker_workflow_step_transition_log RENAME TO tasker_workflow_step_transitions;
ALTER TABLE tasker_workflow_step_transitions ADD COLUMN most_recent BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE tasker_workflow_step_transitions SET most_recent = TRUE
WHERE NOT EXISTS (
    SELECT 1 FROM tasker_workflow_step_transitions n
    WHERE n.workflow_step_id = tasker_workflow_step_transitions.workflow_step_id
      AND n.sort_key > tasker_workflow_step_transitions.sort_key
);
CREATE UNIQUE INDEX tasker_workflow_step_transitions_most_recent ON tasker_workflow_step_transitions (workflow_step_id) WHERE most_recent;

ALTER TABLE tasker_task_transition_log RENAME TO tasker_task_transitions;
ALTER TABLE tasker_task_transitions ADD COLUMN most_recent BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE tasker_task_transitions SET most_recent = TRUE
WHERE NOT EXISTS (
    SELECT 1 FROM tasker_task_transitions n
    WHERE n.task_id = tasker_task_transitions.task_id
      AND n.sort_key > tasker_task_transitions.sort_key
);
CREATE UNIQUE INDEX tasker_task_transitions_most_recent ON tasker_task_transitions (task_id) WHERE most_recent;
