//! Domain and wire types of aiops, and the port traits the stages implement. No I/O lives here.
//!
//! # Layout
//! - [`alertmanager`]: the Alertmanager (and Grafana) webhook payload, its validation and dedup key.
//! - [`job`]: jobs in the durable queue, their states, timings and delivery records.
//! - [`context`]: the evidence the context stage gathers for one alert group.
//! - [`facts`]: the typed facts the context stage establishes and the analyzers reason from.
//! - [`analysis`]: the typed root-cause analysis the rca stage produces.
//! - [`ports`]: the traits `Store`, `Threads`, `Ledger`, `ContextSource`, `Analyzer` and `Notifier`,
//!   and their errors.
//! - [`metrics`]: every metric aiops exports, registered in one place.
//! - [`secret`]: helpers for secrets in configuration (masking, `*_file` keys).
//! - [`clock`]: wall-clock time behind a trait, so tests can move it.
//! - [`retry`]: honouring a remote's `Retry-After` between retries.
//! - [`tokens`]: the one token estimate every budget uses.
//! - [`tools`]: the tools an LLM may call (definitions, checked calls) and the `Investigator` port.
//! - [`redact`]: removing secrets from text and JSON before they leave the process.
#![forbid(unsafe_code)]

pub mod actions;
pub mod alertmanager;
pub mod analysis;
pub mod clock;
pub mod context;
pub mod facts;
pub mod job;
pub mod metrics;
pub mod ports;
pub mod redact;
pub mod retry;
pub mod secret;
pub mod signed;
pub mod tokens;
pub mod tools;

pub use actions::SlackAction;
pub use alertmanager::{Alert, AlertStatus, InputError, Labels, WebhookPayload};
pub use analysis::{Analysis, AnalyzerInfo, Category, EvidenceRef, ToolCallRecord};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::{Context, Evidence, EvidenceSource, SourceFailure};
pub use facts::{ChangeKind, Fact, Finding, Resource, Symptom};
pub use job::{
    ClaimedJob, DeadJob, DeliveryRecord, EnqueueOutcome, Feedback, JobId, JobRecord, JobSource,
    JobState, NewJob, QueueCounts, RECENT_DEAD, Resolution, StageTimings, Verdict,
};
pub use metrics::Metrics;
pub use ports::{
    AnalysisPage, Analyzer, AttemptEnd, ContextSource, Grapher, Ledger, Notification, Notifier,
    SilenceRequest, Silencer, StageError, Store, StoreError, Thread, Threads, first_look_sink,
};
pub use retry::RetryAfter;
pub use signed::LinkSigner;
pub use tools::{Investigator, ToolCall};
