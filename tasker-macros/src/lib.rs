//! Procedural macros for [tasker](https://docs.rs/tasker).
//!
//! The `#[task_handler]`, `#[step]` and `#[step_handler]` macros land here; until then workflows
//! are registered by hand through `tasker::Registry`. Depend on `tasker`, not on this crate.
