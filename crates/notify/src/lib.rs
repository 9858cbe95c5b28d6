//! Notification sinks for aiops: where analyses and resolutions are delivered.
//!
//! # Layout
//! - [`NotifyConfig`], [`WebhookConfig`], [`SlackConfig`], [`GrafanaConfig`]: the `[notify]`,
//!   `[webhook]`, `[slack]` and `[grafana]` sections.
//! - [`Document`]: the JSON document the webhook and file sinks send, and the stdout sink prints.
//! - [`StdoutNotifier`]: a readable text block (or the JSON document) per delivery on stdout.
//! - [`FileNotifier`]: the JSON document appended as one line to a file, at most once per job.
//! - [`WebhookNotifier`]: the JSON document POSTed to a URL.
//! - [`SlackNotifier`] (`slack`): Block Kit messages by incoming webhook, or by bot token with one
//!   thread per incident.
//! - [`Filtered`] (`filter`): what gets notified remotely, by severity, alert name and labels.
//! - [`AlertmanagerClient`] (`alertmanager`): silences through Alertmanager's API v2, for the
//!   Slack Silence buttons; [`AlertmanagerConfig`] is the `[alertmanager]` section.
//! - [`HtmlPage`] (`page`): the analysis page a browser gets from `GET /analyses/{id}`.
//! - `http`: POSTs with retries on 429 (honouring `Retry-After`), 5xx and timeouts.
#![forbid(unsafe_code)]

mod alertmanager;
mod document;
mod file;
pub mod filter;
mod http;
mod page;
pub mod slack;
mod stdout;
mod webhook;

use std::collections::BTreeMap;

use aiops_model::secret::serialize_masked;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use alertmanager::{AlertmanagerClient, AlertmanagerConfig};
pub use document::Document;
pub use file::FileNotifier;
pub use filter::{Filter, Filtered};
pub use page::HtmlPage;
pub use slack::{Links, Route, SlackNotifier};
pub use stdout::{StdoutFormat, StdoutNotifier};
pub use webhook::WebhookNotifier;

/// The `[notify]` section: the local sinks.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// aiops' own URL as people reach it, for links to the full analysis. Empty: paths only.
    #[serde(default)]
    pub public_url: String,
    /// What gets notified through Slack and the webhook; every job is still stored and analyzed.
    #[serde(default)]
    pub filter: Filter,
    /// A group that fires again within this many seconds of its resolution flaps: its incident goes
    /// on (the same Slack message and thread, "flapping ×N") and its analysis is reused unless the
    /// evidence changed. 0: every firing after a resolution is a new incident.
    #[serde(default = "default_flap_window_secs")]
    pub flap_window_secs: u64,
    /// Signs the links third parties fetch without credentials: the graph's
    /// (`/analyses/{id}/graph.png?sig=…`), which Slack fetches for a webhook-mode message's image.
    /// Unset: a random key per process, so links break at a restart and differ across replicas.
    #[serde(default, serialize_with = "serialize_masked")]
    pub link_key: Option<SecretString>,
    #[serde(default)]
    pub link_key_file: Option<std::path::PathBuf>,
}

fn default_flap_window_secs() -> u64 {
    1800
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
            public_url: String::new(),
            filter: Filter::default(),
            flap_window_secs: default_flap_window_secs(),
            link_key: None,
            link_key_file: None,
        }
    }
}

/// The `[webhook]` section: a generic HTTP sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// POST each delivery's JSON document here. Treated as a secret: URLs often carry tokens.
    #[serde(default, serialize_with = "serialize_masked")]
    pub url: Option<SecretString>,
    /// Sent as the `Authorization` header, e.g. `Bearer …`. Secret.
    #[serde(default, serialize_with = "serialize_masked")]
    pub authorization: Option<SecretString>,
    /// Per-request timeout.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries of a request that got 429, a 5xx or no answer in time.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

fn default_timeout_secs() -> u64 {
    10
}

fn default_retries() -> u32 {
    3
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

/// The `[slack]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Channels by labels in bot-token mode, first match wins, e.g.
    /// `[[slack.routes]] labels = { team = "db" } channel = "#db-oncall"`.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The Web API's base URL.
    #[serde(default = "default_slack_api")]
    pub api_url: String,
    /// Per-request timeout.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries of a request that got 429, a 5xx or no answer in time.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// The Slack app's signing secret (Basic Information → App Credentials). Set, the messages get
    /// buttons and `POST /slack/interactions` takes their presses, each verified with it. Secret.
    #[serde(default, serialize_with = "serialize_masked")]
    pub signing_secret: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_file: Option<std::path::PathBuf>,
}

/// The `[grafana]` section: where Explore links point.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrafanaConfig {
    /// Grafana's URL as people reach it. Empty: no Explore links.
    pub url: String,
    /// The uid of the Prometheus datasource Explore opens.
    pub prometheus_datasource: String,
}

impl Default for GrafanaConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            prometheus_datasource: "prometheus".into(),
        }
    }
}

/// Label values of a filter or route, as given.
pub type LabelMap = BTreeMap<String, String>;

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            authorization: None,
            timeout_secs: default_timeout_secs(),
            max_retries: default_retries(),
        }
    }
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_url_file: None,
            bot_token: None,
            bot_token_file: None,
            channel: String::new(),
            routes: Vec::new(),
            api_url: default_slack_api(),
            timeout_secs: default_timeout_secs(),
            max_retries: default_retries(),
            signing_secret: None,
            signing_secret_file: None,
        }
    }
}

impl SlackConfig {
    pub fn is_enabled(&self) -> bool {
        self.webhook_url.is_some() || self.bot_token.is_some()
    }

    /// Checks what bot-token mode needs: a default channel, routes with channels, the API's URL.
    pub fn validate(&self) -> Result<(), String> {
        if self.bot_token.is_none() {
            return Ok(());
        }
        if self.channel.trim().is_empty() {
            return Err(
                "slack.channel is required with slack.bot_token (routes fall back to it)".into(),
            );
        }
        if let Some(i) = self.routes.iter().position(|r| r.channel.trim().is_empty()) {
            return Err(format!("slack.routes[{i}].channel is empty"));
        }
        reqwest::Url::parse(&self.api_url)
            .map(drop)
            .map_err(|e| format!("slack.api_url is not a URL: {e}"))
    }
}
