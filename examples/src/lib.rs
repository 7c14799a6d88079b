//! Example workflows for tasker, shared by the runnable examples, the tests and the benchmarks.

pub mod order_process;
