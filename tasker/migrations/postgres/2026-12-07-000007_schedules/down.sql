DROP TABLE tasker_schedules;
