//! Root-cause analysis for aiops: turns an alert group and its context into an [`Analysis`].
//!
//! # Layout
//! - [`LlmConfig`] (`config`): the `[llm]` section, with provider presets.
//! - [`LlmAnalyzer`] (`llm`): any OpenAI-compatible API. It sends the context in a fenced data section,
//!   validates the answer (one repair round), retries 429/5xx/timeouts honouring `Retry-After`, limits
//!   concurrency and rate, caches by group and context, and falls back to the rules when it fails.
//! - `prompt`, `output`: the prompt and schema; parsing and validating what the model says.
//! - `check`: `aiops check-llm`'s battery against the configured endpoint ([`CheckReport`]).
//! - [`RulesAnalyzer`] (`rules`): the built-in analyzer that needs no LLM.
//! - `spend`: `llm.daily_budget_usd`, each request's worst case booked before it is sent, in the
//!   store's ledger ([`aiops_model::Ledger`]) or, without one, in a [`MemoryLedger`].
#![forbid(unsafe_code)]

mod check;
mod config;
mod guard;
mod llm;
pub mod output;
pub mod prompt;
mod rules;
mod spend;

pub use aiops_model::Analysis;
pub use check::{Check, CheckReport};
pub use config::LlmConfig;
pub use llm::LlmAnalyzer;
pub use rules::{RulesAnalyzer, RulesConfig, analyze_by_rules};
pub use spend::MemoryLedger;
