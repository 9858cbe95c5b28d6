//! Alertmanager's API v2, for the silences the Slack buttons create: `POST /api/v2/silences` with a
//! `postableSilence` (matchers, `startsAt`, `endsAt`, `createdBy`, `comment`); Alertmanager answers
//! `{"silenceID": …}`.

use std::time::Duration;

use aiops_model::{SilenceRequest, Silencer, StageError};
use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::http::post_json;

/// The `[alertmanager]` section: where silences go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL, e.g. `http://alertmanager:9093`. Empty: the Silence buttons say
    /// that silences are not configured.
    #[serde(default)]
    pub url: String,
    /// Sent as the `Authorization` header, e.g. `Bearer …` (a proxy in front of Alertmanager).
    /// Secret.
    #[serde(default, serialize_with = "aiops_model::secret::serialize_masked")]
    pub authorization: Option<SecretString>,
    /// Per-request timeout.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    5
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            authorization: None,
            timeout_secs: default_timeout_secs(),
        }
    }
}

/// Creates silences in one Alertmanager.
#[derive(Debug)]
pub struct AlertmanagerClient {
    client: reqwest::Client,
    url: String,
    authorization: Option<SecretString>,
}

impl AlertmanagerClient {
    /// The client for `config`, or none when `alertmanager.url` is empty.
    pub fn new(config: &AlertmanagerConfig) -> Result<Option<Self>, String> {
        if config.url.trim().is_empty() {
            return Ok(None);
        }
        reqwest::Url::parse(&config.url)
            .map_err(|e| format!("alertmanager.url is not a URL: {e}"))?;
        if let Some(a) = &config.authorization {
            HeaderValue::from_str(a.expose_secret())
                .map_err(|_| "alertmanager.authorization is not a valid header value".to_owned())?;
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .user_agent(concat!("aiops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Some(Self {
            client,
            url: config.url.trim_end_matches('/').to_owned(),
            authorization: config.authorization.clone(),
        }))
    }
}

#[async_trait]
impl Silencer for AlertmanagerClient {
    async fn silence(&self, request: &SilenceRequest) -> Result<String, StageError> {
        let time = |t: time::OffsetDateTime| {
            t.format(&Rfc3339)
                .map_err(|e| StageError::permanent(format!("cannot format a time: {e}")))
        };
        let body = json!({
            "matchers": request.matchers.iter().map(|(name, value)| json!({
                "name": name, "value": value, "isRegex": false, "isEqual": true,
            })).collect::<Vec<_>>(),
            "startsAt": time(request.starts_at)?,
            "endsAt": time(request.ends_at)?,
            "createdBy": request.created_by,
            "comment": request.comment,
        });
        let mut headers = HeaderMap::new();
        if let Some(a) = &self.authorization {
            let value = HeaderValue::from_str(a.expose_secret()).map_err(|_| {
                StageError::permanent("alertmanager.authorization is not a valid header value")
            })?;
            headers.insert(AUTHORIZATION, value);
        }
        let url = format!("{}/api/v2/silences", self.url);
        let answer = post_json(&self.client, &url, headers, &body, 1, "Alertmanager").await?;
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "silenceID")]
            silence_id: String,
        }
        serde_json::from_str::<Created>(&answer.body)
            .map(|c| c.silence_id)
            .map_err(|e| StageError::permanent(format!("Alertmanager answered no silenceID: {e}")))
    }
}
