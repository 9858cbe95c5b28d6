//! The generic webhook sink: POSTs the JSON [`Document`] (the analysis with the group's facts), with
//! an optional `Authorization` header and an `Idempotency-Key` (the job id), retrying 429 (after
//! `Retry-After`), 5xx and timeouts.

use std::time::Duration;

use aiops_model::{Notification, Notifier, StageError};
use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::Document;
use crate::http::post_json;

#[derive(Debug)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: SecretString,
    authorization: Option<SecretString>,
    retries: u32,
}

impl WebhookNotifier {
    pub fn new(url: SecretString, timeout: Duration) -> Result<Self, String> {
        Self::with_auth(url, None, timeout, 0)
    }

    /// With an `Authorization` header value (secret) and `retries` per delivery.
    pub fn with_auth(
        url: SecretString,
        authorization: Option<SecretString>,
        timeout: Duration,
        retries: u32,
    ) -> Result<Self, String> {
        reqwest::Url::parse(url.expose_secret())
            .map_err(|e| format!("webhook.url is not a URL: {e}"))?;
        if let Some(a) = &authorization {
            HeaderValue::from_str(a.expose_secret())
                .map_err(|_| "webhook.authorization is not a valid header value".to_owned())?;
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("aiops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            url,
            authorization,
            retries,
        })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn deliver(&self, notification: Notification<'_>) -> Result<Option<String>, StageError> {
        let mut headers = HeaderMap::new();
        // The same job delivered again (after a crash between the POST and its record) carries the
        // same key, so a receiver can drop the repeat.
        if let Ok(key) = HeaderValue::from_str(&notification.job_id.to_string()) {
            headers.insert("idempotency-key", key);
        }
        if let Some(a) = &self.authorization
            && let Ok(value) = HeaderValue::from_str(a.expose_secret())
        {
            headers.insert(AUTHORIZATION, value);
        }
        let body = serde_json::to_value(Document::new(&notification))
            .map_err(|e| StageError::permanent(format!("cannot encode the document: {e}")))?;
        post_json(
            &self.client,
            self.url.expose_secret(),
            headers,
            &body,
            self.retries,
            "",
        )
        .await
        .map(|_| None)
    }
}
