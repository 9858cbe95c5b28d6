//! The Slack sink, in two modes.
//!
//! - **Incoming webhook** (`slack.webhook_url`): each notification is a message of its own; Slack
//!   answers `ok` as text, or a 4xx with a reason (`invalid_blocks`, `no_text`, …).
//! - **Bot token** (`slack.bot_token`): with a slow analyzer (an LLM), a first look is posted as soon
//!   as the evidence is in (the alert, the top findings and evidence, "analysis running") and the
//!   analysis replaces it with `chat.update`. `chat.postMessage` goes to a channel chosen by the group's labels
//!   (`slack.routes`, else `slack.channel`). The first message of an incident (an alert group) is
//!   posted to the channel and its `ts` is stored; the repeats, partial resolutions and the resolution
//!   reply in its thread. The resolution closes the incident: the group firing again later starts a
//!   new thread. A resolution without a thread (its firing was never posted) is a message of its
//!   own. The Web API answers HTTP 200 with `ok: false` and an `error` for its own failures; `ratelimited` and the other transient errors are retried like a 429, in the same
//!   loop and no sooner than Slack's `Retry-After`.
//!
//! Mattermost accepts the same incoming-webhook payload: it shows the top-level `text` and the
//! attachment's colour (it ignores Block Kit blocks).

pub mod blocks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aiops_model::alertmanager::AlertStatus;
use aiops_model::{
    Context, JobId, Notification, Notifier, StageError, Thread, Threads, WebhookPayload,
};
use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{Failure, post_json, post_json_checked};
pub use blocks::Links;

/// The name deliveries and threads are recorded under.
pub const SINK: &str = "slack";

/// A channel for groups whose labels match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Label name → value; all must match (the group's common labels, else its first alert's).
    pub labels: BTreeMap<String, String>,
    pub channel: String,
}

/// How the sink talks to Slack.
#[derive(Debug)]
enum Mode {
    Webhook(SecretString),
    Bot {
        token: SecretString,
        api_url: String,
        default_channel: String,
        routes: Vec<Route>,
        threads: Arc<dyn Threads>,
    },
}

/// The Slack sink.
#[derive(Debug)]
pub struct SlackNotifier {
    client: reqwest::Client,
    mode: Mode,
    links: Links,
    retries: u32,
}

#[derive(Deserialize)]
struct PostMessageAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    ts: Option<String>,
}

/// Web API errors worth retrying; every other `error` is final.
const TRANSIENT: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// A `chat.postMessage` answer: Slack reports its own failures as HTTP 200 with `ok: false` and an
/// `error`; the transient ones (`ratelimited`, …) are retried with the request's own policy.
fn read_post_message(text: String) -> Result<PostMessageAnswer, Failure> {
    let answer: PostMessageAnswer = serde_json::from_str(&text).map_err(|e| Failure {
        message: format!("answered something else than JSON: {e}"),
        retriable: true,
    })?;
    if answer.ok {
        return Ok(answer);
    }
    let error = answer.error.unwrap_or_else(|| "unknown_error".into());
    Err(Failure {
        retriable: TRANSIENT.contains(&error.as_str()),
        message: format!("answered {error}"),
    })
}

fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("aiops/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl SlackNotifier {
    /// Incoming-webhook mode.
    pub fn webhook(
        url: SecretString,
        links: Links,
        timeout: Duration,
        retries: u32,
    ) -> Result<Self, String> {
        reqwest::Url::parse(url.expose_secret())
            .map_err(|e| format!("slack.webhook_url is not a URL: {e}"))?;
        Ok(Self {
            client: client(timeout)?,
            mode: Mode::Webhook(url),
            links,
            retries,
        })
    }

    /// Bot-token mode: `chat.postMessage` at `api_url` (`https://slack.com/api`), incident threads
    /// kept in `threads`.
    #[allow(clippy::too_many_arguments)]
    pub fn bot(
        token: SecretString,
        api_url: &str,
        default_channel: &str,
        routes: Vec<Route>,
        threads: Arc<dyn Threads>,
        links: Links,
        timeout: Duration,
        retries: u32,
    ) -> Result<Self, String> {
        reqwest::Url::parse(api_url).map_err(|e| format!("slack.api_url is not a URL: {e}"))?;
        if default_channel.trim().is_empty() {
            return Err("slack.channel is required with slack.bot_token".into());
        }
        Ok(Self {
            client: client(timeout)?,
            mode: Mode::Bot {
                token,
                api_url: api_url.trim_end_matches('/').to_owned(),
                default_channel: default_channel.to_owned(),
                routes,
                threads,
            },
            links,
            retries,
        })
    }
}

/// The `Authorization: Bearer` header of a bot token.
fn bearer(token: &SecretString) -> Result<HeaderMap, StageError> {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        .map_err(|_| StageError::permanent("slack.bot_token is not a valid header value"))?;
    headers.insert(AUTHORIZATION, value);
    Ok(headers)
}

impl SlackNotifier {
    /// One Web API call (`chat.postMessage`, `chat.update`) with the sink's retry policy; answers
    /// the message's channel and `ts`.
    async fn call(
        &self,
        api_url: &str,
        token: &SecretString,
        method: &str,
        body: &Value,
    ) -> Result<(String, String), StageError> {
        let url = format!("{api_url}/{method}");
        let answer = post_json_checked(
            &self.client,
            &url,
            bearer(token)?,
            body,
            self.retries,
            "Slack API",
            read_post_message,
        )
        .await?;
        match (answer.channel, answer.ts) {
            (Some(channel), Some(ts)) => Ok((channel, ts)),
            _ => Err(StageError::permanent(format!(
                "Slack API answered {method} ok without channel and ts"
            ))),
        }
    }
}

/// Keeps the incident's message as it now reads (without where it is), for the resolution's edit.
/// A failure costs only that edit, so it is logged, not returned.
async fn keep_root(threads: &dyn Threads, group: &str, body: &Value) {
    let mut root = body.clone();
    if let Some(o) = root.as_object_mut() {
        for key in ["channel", "ts", "thread_ts"] {
            o.remove(key);
        }
    }
    if let Err(e) = threads.save_root(group, SINK, &root.to_string()).await {
        tracing::warn!(error = %e, "cannot keep the incident's message; its resolution will not edit it");
    }
}

impl SlackNotifier {
    /// Edits the incident's message for its resolution (`chat.update`): "Resolved after …", no
    /// buttons. The reply in the thread is already posted, so a failure here is only logged.
    async fn resolve_root(
        &self,
        api_url: &str,
        token: &SecretString,
        threads: &dyn Threads,
        group: &str,
        thread: &Thread,
        notification: Notification<'_>,
    ) {
        let root = match threads.root(group, SINK).await {
            Ok(Some(root)) => root,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the incident's message");
                return;
            }
        };
        let Ok(root) = serde_json::from_str::<Value>(&root) else {
            return;
        };
        let mut body = blocks::resolved_root(&root, &notification);
        body["channel"] = Value::String(thread.channel.clone());
        body["ts"] = Value::String(thread.ts.clone());
        if let Err(e) = self.call(api_url, token, "chat.update", &body).await {
            tracing::warn!(error = %e, "cannot mark the incident's message resolved");
        }
    }
}

/// The channel of the first route whose labels all match the group, else the default.
pub fn route<'a>(routes: &'a [Route], default: &'a str, payload: &WebhookPayload) -> &'a str {
    routes
        .iter()
        .find(|r| {
            r.labels
                .iter()
                .all(|(k, v)| payload.label(k) == Some(v.as_str()))
        })
        .map_or(default, |r| r.channel.as_str())
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn name(&self) -> &str {
        SINK
    }

    async fn deliver(&self, notification: Notification<'_>) -> Result<Option<String>, StageError> {
        let mut body = blocks::message(&notification, &self.links);
        match &self.mode {
            Mode::Webhook(url) => {
                let answer = post_json(
                    &self.client,
                    url.expose_secret(),
                    HeaderMap::new(),
                    &body,
                    self.retries,
                    "Slack webhook",
                )
                .await?;
                // Slack answers "ok"; Mattermost answers "ok" or an empty body.
                match answer.body.trim() {
                    "ok" | "" => Ok(None),
                    other => Err(StageError::permanent(format!(
                        "Slack webhook answered {:?}",
                        other.chars().take(200).collect::<String>()
                    ))),
                }
            }
            Mode::Bot {
                token,
                api_url,
                default_channel,
                routes,
                threads,
            } => {
                let group = notification.payload.group_key.as_str();
                let thread = threads
                    .thread(group, SINK)
                    .await
                    .map_err(|e| StageError::retriable(format!("cannot read the thread: {e}")))?;
                let channel = match &thread {
                    // An incident stays in the channel its thread is in.
                    Some(t) => t.channel.clone(),
                    None => route(routes, default_channel, notification.payload).to_owned(),
                };
                body["channel"] = Value::String(channel);
                if let Some(t) = &thread {
                    body["thread_ts"] = Value::String(t.ts.clone());
                }
                let (channel, ts) = self.call(api_url, token, "chat.postMessage", &body).await?;
                let resolved = notification.payload.status == AlertStatus::Resolved;
                match (&thread, resolved) {
                    // The incident is over: its message says so, and the group firing again
                    // starts a new thread.
                    (Some(t), true) => {
                        self.resolve_root(api_url, token, threads.as_ref(), group, t, notification)
                            .await;
                        threads.close_thread(group, SINK).await
                    }
                    (None, false) => {
                        let started = Thread {
                            channel,
                            ts: ts.clone(),
                        };
                        let saved = threads.save_thread(group, SINK, &started).await;
                        // The message is the incident's unless another delivery's won the race.
                        if saved.as_ref().is_ok_and(|s| *s == started) {
                            keep_root(threads.as_ref(), group, &body).await;
                        }
                        saved.map(drop)
                    }
                    _ => Ok(()),
                }
                .map_err(|e| StageError::retriable(format!("cannot record the thread: {e}")))?;
                Ok(Some(ts))
            }
        }
    }

    /// Bot mode only (an incoming webhook cannot edit what it posted): the first look, posted like
    /// an incident's first message (or in its open thread), answered as `<channel> <ts>`.
    async fn first_look(
        &self,
        job_id: JobId,
        payload: &WebhookPayload,
        context: &Context,
    ) -> Result<Option<String>, StageError> {
        let Mode::Bot {
            token,
            api_url,
            default_channel,
            routes,
            threads,
        } = &self.mode
        else {
            return Ok(None);
        };
        if payload.status != AlertStatus::Firing {
            return Ok(None);
        }
        let group = payload.group_key.as_str();
        let thread = threads
            .thread(group, SINK)
            .await
            .map_err(|e| StageError::retriable(format!("cannot read the thread: {e}")))?;
        let mut body = blocks::first_look(job_id, payload, context, &self.links);
        body["channel"] = Value::String(match &thread {
            Some(t) => t.channel.clone(),
            None => route(routes, default_channel, payload).to_owned(),
        });
        if let Some(t) = &thread {
            body["thread_ts"] = Value::String(t.ts.clone());
        }
        let (channel, ts) = self.call(api_url, token, "chat.postMessage", &body).await?;
        if thread.is_none() {
            let started = Thread {
                channel: channel.clone(),
                ts: ts.clone(),
            };
            let saved = threads
                .save_thread(group, SINK, &started)
                .await
                .map_err(|e| StageError::retriable(format!("cannot record the thread: {e}")))?;
            if saved == started {
                keep_root(threads.as_ref(), group, &body).await;
            }
        }
        Ok(Some(format!("{channel} {ts}")))
    }

    /// With a first look (`<channel> <ts>`), the analysis replaces it (`chat.update`); else as
    /// [`Notifier::deliver`].
    async fn deliver_after(
        &self,
        notification: Notification<'_>,
        first_look: Option<&str>,
    ) -> Result<Option<String>, StageError> {
        let located = first_look.and_then(|f| f.split_once(' '));
        let (Some((channel, ts)), Mode::Bot { token, api_url, .. }, Some(_)) =
            (located, &self.mode, notification.analysis)
        else {
            return self.deliver(notification).await;
        };
        let mut body = blocks::message(&notification, &self.links);
        body["channel"] = Value::String(channel.to_owned());
        body["ts"] = Value::String(ts.to_owned());
        let (_, ts) = self.call(api_url, token, "chat.update", &body).await?;
        if let Mode::Bot { threads, .. } = &self.mode {
            let group = notification.payload.group_key.as_str();
            if threads
                .thread(group, SINK)
                .await
                .is_ok_and(|t| t.is_some_and(|t| t.ts == ts))
            {
                keep_root(threads.as_ref(), group, &body).await;
            }
        }
        Ok(Some(ts))
    }
}
