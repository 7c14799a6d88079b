DROP TABLE tasker_workers;
