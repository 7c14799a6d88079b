//! The macros' compile-pass cases: each module must compile as written, and its test checks
//! what the macros generated. They are modules of one test binary rather than trybuild cases:
//! a trybuild pass case builds (not only checks) every dependency again, twice over.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each case is written as a user's crate would be, where its items are public API"
)]

#[path = "task_handler/pass/edge_forms.rs"]
mod edge_forms;
#[path = "task_handler/pass/hooks.rs"]
mod hooks;
#[path = "step_handler/pass/forms.rs"]
mod step_handler_forms;
#[path = "task_handler/pass/typed_context.rs"]
mod typed_context;
