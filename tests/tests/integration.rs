//! The conformance suite's test binary: each module is one area of the engine, run on SQLite and
//! PostgreSQL. One binary instead of one per file: each linked the whole engine again (tens of
//! megabytes apiece). Files that need a process of their own stay apart (`Cargo.toml` says why).

mod contract;
mod corrupt;
mod engine;
mod graphql;
mod http;
mod schedules;
mod server;
mod testing;
