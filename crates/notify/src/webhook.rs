//! The generic webhook sink: POSTs the JSON [`Document`].

use std::time::Duration;

use aiops_model::{Notification, Notifier, StageError};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::Document;

#[derive(Debug)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: SecretString,
}

impl WebhookNotifier {
    pub fn new(url: SecretString, timeout: Duration) -> Result<Self, String> {
        reqwest::Url::parse(url.expose_secret())
            .map_err(|e| format!("webhook.url is not a URL: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("aiops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client, url })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn deliver(&self, notification: Notification<'_>) -> Result<Option<String>, StageError> {
        let response = self
            .client
            .post(self.url.expose_secret())
            .json(&Document::new(&notification))
            .send()
            .await
            // The URL may carry a token: never let it into an error message.
            .map_err(|e| {
                StageError::retriable(format!("webhook request failed: {}", e.without_url()))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(None);
        }
        let message = format!("webhook answered {status}");
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(StageError::retriable(message))
        } else {
            Err(StageError::permanent(message))
        }
    }
}
