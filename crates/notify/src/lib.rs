//! Notification sinks for aiops: where analyses and resolutions are delivered.
//!
//! # Layout
//! - [`NotifyConfig`], [`WebhookConfig`], [`SlackConfig`]: the `[notify]`, `[webhook]` and `[slack]`
//!   sections.
//! - [`Document`]: the JSON document the webhook and file sinks send, and the stdout sink prints.
//! - [`StdoutNotifier`]: a readable text block (or the JSON document) per delivery on stdout.
//! - [`FileNotifier`]: the JSON document appended as one line to a file, at most once per job.
//! - [`WebhookNotifier`]: the JSON document POSTed to a URL.
//!
//! Slack delivery lands with the notify issue; its configuration keys are already here.
#![forbid(unsafe_code)]

mod document;
mod file;
mod stdout;
mod webhook;

use aiops_model::secret::serialize_masked;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use document::Document;
pub use file::FileNotifier;
pub use stdout::{StdoutFormat, StdoutNotifier};
pub use webhook::WebhookNotifier;

/// The `[notify]` section: the local sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Print each delivery on stdout.
    #[serde(default = "default_true")]
    pub stdout: bool,
    /// `text` (for people) or `json` (one document per line, for tools).
    #[serde(default)]
    pub stdout_format: StdoutFormat,
    /// Append each delivery as a JSON line to this file. Empty: off.
    #[serde(default)]
    pub file: String,
}

fn default_true() -> bool {
    true
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            stdout: true,
            stdout_format: StdoutFormat::default(),
            file: String::new(),
        }
    }
}

/// The `[webhook]` section: a generic HTTP sink.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// POST each delivery's JSON document here. Treated as a secret: URLs often carry tokens.
    #[serde(default, serialize_with = "serialize_masked")]
    pub url: Option<SecretString>,
    /// Per-request timeout.
    #[serde(default = "default_webhook_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_webhook_timeout_secs() -> u64 {
    10
}

/// The `[slack]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// An incoming-webhook URL. Secret.
    #[serde(default, serialize_with = "serialize_masked")]
    pub webhook_url: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_file: Option<std::path::PathBuf>,
    /// A bot token (`xoxb-…`) for `chat.postMessage` and threads. Secret.
    #[serde(default, serialize_with = "serialize_masked")]
    pub bot_token: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_token_file: Option<std::path::PathBuf>,
    /// The default channel in bot-token mode.
    #[serde(default)]
    pub channel: String,
}

impl SlackConfig {
    pub fn is_enabled(&self) -> bool {
        self.webhook_url.is_some() || self.bot_token.is_some()
    }
}
