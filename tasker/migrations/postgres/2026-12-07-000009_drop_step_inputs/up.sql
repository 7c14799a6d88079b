-- A step's inputs are its task's context and its parents' results, each stored once; the seed's
-- per-step copy of the context (never written here) would multiply a large context by the
-- task's steps.
ALTER TABLE tasker_workflow_steps DROP COLUMN inputs;
