//! The Slack sink, in two modes.
//!
//! - **Incoming webhook** (`slack.webhook_url`): each notification is a message of its own; Slack
//!   answers `ok` as text, or a 4xx with a reason (`invalid_blocks`, `no_text`, …).
//! - **Bot token** (`slack.bot_token`): with a slow analyzer (an LLM), a first look is posted as soon
//!   as the evidence is in (the alert, the top findings and evidence, "analysis running") and the
//!   analysis replaces it with `chat.update`. `chat.postMessage` goes to a channel chosen by the group's labels
//!   (`slack.routes`, else `slack.channel`). The first message of an incident (an alert group) is
//!   posted to the channel and its `ts` is stored; the repeats, partial resolutions and the resolution
//!   reply in its thread, and the resolution edits the message (✅, "Resolved after …"). A group
//!   that fires again within `notify.flap_window_secs` of its resolution flaps: the same message
//!   and thread go on ("flapping ×N"; the message follows the latest firing); firing again later
//!   starts a new incident, a new message. A resolution without a thread (its firing was never
//!   posted) is a message of its own. The Web API answers HTTP 200 with `ok: false` and an `error` for its own failures; `ratelimited` and the other transient errors are retried like a 429, in the same
//!   loop and no sooner than Slack's `Retry-After`.
//!
//! Mattermost accepts the same incoming-webhook payload: it shows the top-level `text` and the
//! attachment's colour (it ignores Block Kit blocks).

pub mod blocks;
mod upload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aiops_model::alertmanager::AlertStatus;
use aiops_model::{
    Context, Grapher, Notification, Notifier, StageError, Thread, Threads, WebhookPayload,
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
    /// Draws the group's graph: uploaded into the thread (bot mode), or an image block whose URL
    /// aiops signs (webhook mode, with `notify.public_url`).
    graphs: Option<Arc<dyn Grapher>>,
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
            graphs: None,
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
            graphs: None,
        })
    }
}

impl SlackNotifier {
    /// Adds the group's graph to analyses: uploaded into the thread in bot mode; in webhook mode an
    /// image block at `<aiops_url>/analyses/{id}/graph.png?sig=…` (with `links.signer` and
    /// `links.aiops_url`).
    #[must_use]
    pub fn with_graphs(mut self, graphs: Arc<dyn Grapher>) -> Self {
        self.graphs = Some(graphs);
        self
    }

    /// The graph of a firing group with an analysis, if there is one to draw. A failure costs only
    /// the graph: it is logged.
    async fn graph(&self, n: &Notification<'_>) -> Option<Vec<u8>> {
        let grapher = self.graphs.as_ref()?;
        if n.analysis.is_none() || n.payload.status != AlertStatus::Firing {
            return None;
        }
        match grapher.graph(n.payload).await {
            Ok(png) => png,
            Err(e) => {
                tracing::warn!(error = %e, "cannot draw the group's graph");
                None
            }
        }
    }

    /// Bot mode: the graph into the incident's thread. Best effort, like the resolution's edit.
    async fn post_graph(
        &self,
        api_url: &str,
        token: &SecretString,
        channel: &str,
        thread_ts: &str,
        n: &Notification<'_>,
    ) {
        let Some(png) = self.graph(n).await else {
            return;
        };
        let title = format!(
            "{}: the rule's expression around its start",
            n.payload.alertname()
        );
        let upload = upload::Upload {
            channel,
            thread_ts,
            title: &title,
            png,
        };
        if let Err(e) = upload::upload(&self.client, api_url, token, upload).await {
            tracing::warn!(error = %e, "cannot upload the graph into the thread");
        }
    }

    /// Webhook mode: an image block of the graph, whose URL Slack fetches without credentials
    /// (signed), when aiops has a public URL and there is a graph to draw.
    async fn graph_block(&self, n: &Notification<'_>) -> Option<Value> {
        let signer = self.links.signer.as_ref()?;
        if self.links.aiops_url.is_empty() {
            return None;
        }
        self.graph(n).await?;
        let url = format!(
            "{}/analyses/{}/graph.png?sig={}",
            self.links.aiops_url.trim_end_matches('/'),
            n.job_id,
            signer.graph(n.job_id)
        );
        Some(serde_json::json!({
            "type": "image",
            "image_url": url,
            "alt_text": format!("{}: the rule's expression around its start", n.payload.alertname()),
        }))
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
        let body = blocks::resolved_root(&root, &notification);
        if let Err(e) = self.edit_root(api_url, token, thread, &body).await {
            tracing::warn!(error = %e, "cannot mark the incident's message resolved");
        }
    }

    /// `chat.update`s the incident's message (`thread`) to read as `body`; answers what it sent.
    async fn edit_root(
        &self,
        api_url: &str,
        token: &SecretString,
        thread: &Thread,
        body: &Value,
    ) -> Result<Value, StageError> {
        let mut root = body.clone();
        if let Some(o) = root.as_object_mut() {
            o.remove("thread_ts");
        }
        root["channel"] = Value::String(thread.channel.clone());
        root["ts"] = Value::String(thread.ts.clone());
        self.call(api_url, token, "chat.update", &root).await?;
        Ok(root)
    }
}

/// The group's thread as a notification finds it. A resolved incident's thread is reopened when
/// the group fires again and flaps (`firings` over 1: within `notify.flap_window_secs` of the
/// resolution), and closed when it fires again later (a new incident, a new message). Answers the
/// thread and whether it was reopened.
async fn incident_thread(
    threads: &dyn Threads,
    group: &str,
    status: AlertStatus,
    firings: u32,
) -> Result<(Option<Thread>, bool), StageError> {
    let thread = threads
        .thread(group, SINK)
        .await
        .map_err(|e| StageError::retriable(format!("cannot read the thread: {e}")))?;
    let recorded = |e: aiops_model::StoreError| {
        StageError::retriable(format!("cannot record the thread: {e}"))
    };
    match thread {
        Some(t) if t.resolved && status == AlertStatus::Firing => {
            if firings > 1 {
                threads
                    .set_resolved(group, SINK, false)
                    .await
                    .map_err(recorded)?;
                let reopened = Thread {
                    resolved: false,
                    ..t
                };
                Ok((Some(reopened), true))
            } else {
                threads.close_thread(group, SINK).await.map_err(recorded)?;
                Ok((None, false))
            }
        }
        other => Ok((other, false)),
    }
}

impl SlackNotifier {
    /// Makes the incident's message read as `body` (a flapping group fired again: the message
    /// follows it), and keeps it for the resolution's edit. Best effort, like the resolution's edit.
    async fn update_root(
        &self,
        api_url: &str,
        token: &SecretString,
        threads: &dyn Threads,
        group: &str,
        thread: &Thread,
        body: &Value,
    ) {
        match self.edit_root(api_url, token, thread, body).await {
            Ok(root) => keep_root(threads, group, &root).await,
            Err(e) => tracing::warn!(error = %e, "cannot update the incident's message"),
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
                if let Some(image) = self.graph_block(&notification).await {
                    blocks::add_detail(&mut body, image);
                }
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
                let (thread, reopened) = incident_thread(
                    threads.as_ref(),
                    group,
                    notification.payload.status,
                    notification.firings,
                )
                .await?;
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
                let root = thread.as_ref().map_or(ts.as_str(), |t| t.ts.as_str());
                self.post_graph(api_url, token, &channel, root, &notification)
                    .await;
                let resolved = notification.payload.status == AlertStatus::Resolved;
                match (&thread, resolved) {
                    // The incident is over: its message says so. The thread stays open in case
                    // the group flaps.
                    (Some(t), true) if !t.resolved => {
                        self.resolve_root(api_url, token, threads.as_ref(), group, t, notification)
                            .await;
                        threads.set_resolved(group, SINK, true).await
                    }
                    // It flapped: the message follows the incident again.
                    (Some(t), false) if reopened => {
                        self.update_root(api_url, token, threads.as_ref(), group, t, &body)
                            .await;
                        Ok(())
                    }
                    (None, false) => {
                        let started = Thread {
                            channel,
                            ts: ts.clone(),
                            resolved: false,
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
        notification: Notification<'_>,
        context: &Context,
    ) -> Result<Option<String>, StageError> {
        let payload = notification.payload;
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
        let (thread, reopened) = incident_thread(
            threads.as_ref(),
            group,
            payload.status,
            notification.firings,
        )
        .await?;
        let mut body = blocks::first_look(&notification, context, &self.links);
        body["channel"] = Value::String(match &thread {
            Some(t) => t.channel.clone(),
            None => route(routes, default_channel, payload).to_owned(),
        });
        if let Some(t) = &thread {
            body["thread_ts"] = Value::String(t.ts.clone());
        }
        let (channel, ts) = self.call(api_url, token, "chat.postMessage", &body).await?;
        if let Some(t) = thread.as_ref().filter(|_| reopened) {
            self.update_root(api_url, token, threads.as_ref(), group, t, &body)
                .await;
        }
        if thread.is_none() {
            let started = Thread {
                channel: channel.clone(),
                ts: ts.clone(),
                resolved: false,
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
        let (channel, ts) = self.call(api_url, token, "chat.update", &body).await?;
        if let Mode::Bot { threads, .. } = &self.mode {
            let group = notification.payload.group_key.as_str();
            let thread = threads.thread(group, SINK).await;
            let root = match &thread {
                Ok(Some(t)) => t.ts.as_str(),
                _ => ts.as_str(),
            };
            self.post_graph(api_url, token, &channel, root, &notification)
                .await;
            match thread {
                // The first look was the incident's message: it now reads as the analysis.
                Ok(Some(t)) if t.ts == ts => keep_root(threads.as_ref(), group, &body).await,
                // A flapping group's first look replied in the thread: the incident's message
                // follows it.
                Ok(Some(t)) if notification.firings > 1 => {
                    self.update_root(api_url, token, threads.as_ref(), group, &t, &body)
                        .await;
                }
                _ => {}
            }
        }
        Ok(Some(ts))
    }
}
