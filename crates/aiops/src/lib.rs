//! The `aiops` binary's parts: CLI, configuration, telemetry and wiring. `main.rs` only calls [`main`].
//!
//! # Layout
//! - [`config`]: the composed configuration and its layered loading.
//! - `telemetry`: the tracing subscriber.
//! - `app`: builds the concrete store, stages and sinks, and runs the daemon.
//! - `cli`: the subcommands `serve`, `analyze`, `check-config`, `check-llm`, `eval` and `health`.
//! - `eval`: `aiops eval`, the scenario suite run with the configured analyzer.
//! - `export`: `aiops eval --export-feedback`, judged analyses as scenario skeletons.
#![forbid(unsafe_code)]

mod app;
mod cli;
pub mod config;
mod eval;
mod export;
mod telemetry;

pub use cli::main;
