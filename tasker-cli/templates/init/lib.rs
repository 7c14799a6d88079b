//! Workflows run by tasker. `cargo tasker generate task-handler NAME` adds one.
