//! The configuration: every section, composed from the crates that own them, loaded in layers.

use std::path::Path;

use aiops_context::{ContextConfig, LokiConfig, PrometheusConfig};
use aiops_ingest::ServerConfig;
use aiops_notify::{AlertmanagerConfig, GrafanaConfig, NotifyConfig, SlackConfig, WebhookConfig};
use aiops_rca::{LlmConfig, RulesConfig};
use aiops_store::StoreConfig;
use aiops_worker::WorkerConfig;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The embedded first layer.
pub const DEFAULT_TOML: &str = include_str!("../../../configs/default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub context: ContextConfig,
    #[serde(default)]
    pub prometheus: PrometheusConfig,
    #[serde(default)]
    pub loki: LokiConfig,
    #[serde(default)]
    pub llm: LlmConfig,
    #[serde(default)]
    pub rules: RulesConfig,
    #[serde(default)]
    pub slack: SlackConfig,
    #[serde(default)]
    pub webhook: WebhookConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub grafana: GrafanaConfig,
    #[serde(default)]
    pub alertmanager: AlertmanagerConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// The `[log]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing env-filter directive; `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

fn default_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: LogFormat::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl Config {
    /// Loads `configs/default.toml` (built in), then `file`, then `AIOPS__SECTION__KEY` variables;
    /// resolves `*_file` secrets and checks every section.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        use config::{Environment, File, FileFormat};
        let mut builder =
            config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            anyhow::ensure!(
                path.is_file(),
                "config file {} does not exist",
                path.display()
            );
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let env = Environment::with_prefix("AIOPS")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true);
        let mut config: Config = builder
            .add_source(env)
            .build()
            .context("cannot read the configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        config.resolve().context("invalid configuration")?;
        Ok(config)
    }

    /// Reads `*_file` secrets and validates every section. Errors name the key.
    fn resolve(&mut self) -> anyhow::Result<()> {
        use aiops_model::secret::{non_empty, resolve_file};
        let check = |r: Result<(), String>| r.map_err(anyhow::Error::msg);
        check(self.server.resolve())?;
        check(self.store.validate())?;
        check(self.worker.validate())?;
        check(self.context.validate())?;
        self.llm.api_key = non_empty(self.llm.api_key.take());
        check(resolve_file(
            "llm.api_key",
            &mut self.llm.api_key,
            self.llm.api_key_file.as_deref(),
        ))?;
        check(self.llm.validate())?;
        let slack = &mut self.slack;
        slack.webhook_url = non_empty(slack.webhook_url.take());
        slack.bot_token = non_empty(slack.bot_token.take());
        check(resolve_file(
            "slack.webhook_url",
            &mut slack.webhook_url,
            slack.webhook_url_file.as_deref(),
        ))?;
        check(resolve_file(
            "slack.bot_token",
            &mut slack.bot_token,
            slack.bot_token_file.as_deref(),
        ))?;
        slack.signing_secret = non_empty(slack.signing_secret.take());
        check(resolve_file(
            "slack.signing_secret",
            &mut slack.signing_secret,
            slack.signing_secret_file.as_deref(),
        ))?;
        self.alertmanager.authorization = non_empty(self.alertmanager.authorization.take());
        check(self.slack.validate())?;
        self.webhook.url = non_empty(self.webhook.url.take());
        self.webhook.authorization = non_empty(self.webhook.authorization.take());
        self.notify.link_key = non_empty(self.notify.link_key.take());
        check(resolve_file(
            "notify.link_key",
            &mut self.notify.link_key,
            self.notify.link_key_file.as_deref(),
        ))?;
        check(self.notify.filter.validate())?;
        if !self.notify.stdout
            && self.notify.file.is_empty()
            && self.webhook.url.is_none()
            && !self.slack.is_enabled()
        {
            anyhow::bail!(
                "no notification sink is enabled: set notify.stdout, notify.file, webhook.url or slack"
            );
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("cannot print the configuration")
    }
}
