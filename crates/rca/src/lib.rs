//! Root-cause analysis for aiops: turns an alert group and its context into an [`Analysis`].
//!
//! # Layout
//! - [`LlmConfig`] (`config`): the `[llm]` section, with provider presets.
//! - [`LlmAnalyzer`] (`llm`): any OpenAI-compatible API. It sends the context in a fenced data section,
//!   validates the answer (one repair round), retries 429/5xx/timeouts honouring `Retry-After`, limits
//!   concurrency and rate, caches by group and context, and falls back to the rules when it fails.
//! - `prompt`, `output`: the prompt and schema; parsing and validating what the model says.
//! - [`RulesAnalyzer`] (`rules`): the built-in analyzer that needs no LLM.
#![forbid(unsafe_code)]

mod config;
mod guard;
mod llm;
pub mod output;
pub mod prompt;
mod rules;

pub use aiops_model::Analysis;
pub use config::LlmConfig;
pub use llm::LlmAnalyzer;
pub use rules::{RulesAnalyzer, RulesConfig, analyze_by_rules};
