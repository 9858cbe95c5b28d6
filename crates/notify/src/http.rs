//! POSTing JSON to a remote sink: retries on 429 (never sooner than `Retry-After`), 5xx, timeouts and
//! connection errors, with exponential backoff and jitter; any other 4xx is final. Error messages
//! never carry the URL, which is a secret for webhooks.

use std::time::Duration;

use aiops_model::{RetryAfter, StageError};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio_retry::RetryIf;
use tokio_retry::strategy::{ExponentialBackoff, jitter};

/// An answer with a 2xx status: its body.
#[derive(Debug)]
pub struct Answer {
    pub body: String,
}

/// Why a remote's 2xx answer is still a failure (Slack's Web API answers `200 {"ok": false}`), and
/// whether trying again can help.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub retriable: bool,
}

/// POSTs `body` to `url`, retrying up to `retries` times. `who` names the remote in errors (empty:
/// the sink's name, which the worker puts before every error, says it).
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    body: &Value,
    retries: u32,
    who: &str,
) -> Result<Answer, StageError> {
    post_json_checked(client, url, headers, body, retries, who, |body| {
        Ok(Answer { body })
    })
    .await
}

/// [`post_json`], where `check` reads a 2xx answer's body and may still refuse it. A refusal it marks
/// retriable is retried by the same loop as a 429, no sooner than the answer's `Retry-After`: one
/// retry policy per request.
pub async fn post_json_checked<T>(
    client: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    body: &Value,
    retries: u32,
    who: &str,
    check: impl Fn(String) -> Result<T, Failure>,
) -> Result<T, StageError> {
    let retry_after = RetryAfter::default();
    let backoff = ExponentialBackoff::from_millis(2)
        .factor(250)
        .max_delay(Duration::from_secs(10))
        .map(jitter);
    let strategy = retry_after.honoured_by(backoff).take(retries as usize);
    let named = |what: String| match who.is_empty() {
        true => what,
        false => format!("{who} {what}"),
    };
    let attempt = || async {
        let response = client
            .post(url)
            .headers(headers.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| Failure {
                retriable: true,
                // The URL may carry a token: never let it into an error message.
                message: named(match e.is_timeout() {
                    true => "gave no answer in time".to_owned(),
                    false => format!("request failed: {}", e.without_url()),
                }),
            })?;
        let status = response.status();
        let asked = RetryAfter::parse(
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let text = response.text().await.map_err(|e| Failure {
            retriable: true,
            message: named(format!("answer broke off: {}", e.without_url())),
        })?;
        if status.is_success() {
            return check(text).map_err(|refused| {
                retry_after.set(asked);
                Failure {
                    message: named(refused.message),
                    retriable: refused.retriable,
                }
            });
        }
        retry_after.set(asked);
        let detail: String = text.trim().chars().take(200).collect();
        Err(Failure {
            retriable: status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error(),
            message: named(match detail.is_empty() {
                true => format!("answered {status}"),
                false => format!("answered {status}: {detail}"),
            }),
        })
    };
    RetryIf::start(strategy, attempt, |f: &Failure| f.retriable)
        .await
        .map_err(|f| match f.retriable {
            true => StageError::retriable(f.message),
            false => StageError::permanent(f.message),
        })
}
