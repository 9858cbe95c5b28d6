//! `POST /slack/interactions`: Slack's interactivity requests, sent when someone presses a button on
//! one of aiops' messages (Silence 1h / 4h, Right / Wrong, Re-analyze).
//!
//! Each request is verified with the app's signing secret before anything is read from it: Slack
//! signs `v0:<X-Slack-Request-Timestamp>:<body>` with HMAC-SHA256 and sends `v0=<hex>` as
//! `X-Slack-Signature`. A missing or wrong signature, a timestamp more than 5 minutes from now and a
//! signature seen before (a replayed request) get 401 and change nothing. The body is a form with
//! one field, `payload`, the `block_actions` JSON; each button carries the job's id as its `value`.
//! Slack wants an answer within 3 seconds: the action runs first (a silence is one request to
//! Alertmanager), then the message is amended through the interaction's `response_url` in the
//! background ("🔕 Silenced for 1h by @alice, until 14:05 UTC").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aiops_model::{
    Feedback, JobId, JobSource, NewJob, SilenceRequest, Silencer, SlackAction, Verdict,
    WebhookPayload,
};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::handlers::read_body;
use crate::{ApiError, AppState};

/// Requests older or newer than this are refused (Slack's own advice).
const MAX_SKEW_SECS: i64 = 300;

/// What the interactivity endpoint needs besides the API's state.
#[derive(Debug)]
pub struct Interactions {
    signing_secret: SecretString,
    silencer: Option<Arc<dyn Silencer>>,
    /// aiops' URL as people reach it, for the link in a silence's comment.
    public_url: String,
    http: reqwest::Client,
    /// Signatures seen in the last [`MAX_SKEW_SECS`] × 2, with their timestamps: a replay is
    /// refused.
    seen: Mutex<HashMap<String, i64>>,
}

impl Interactions {
    /// `silencer`: Alertmanager, when `alertmanager.url` is set.
    pub fn new(
        signing_secret: SecretString,
        silencer: Option<Arc<dyn Silencer>>,
        public_url: &str,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            signing_secret,
            silencer,
            public_url: public_url.trim_end_matches('/').to_owned(),
            http,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Checks the signature over `body` and that the request is fresh and new.
    fn verify(&self, req: &HttpRequest, body: &[u8], now: i64) -> Result<(), String> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("{name} is missing"))
        };
        let timestamp = header("x-slack-request-timestamp")?;
        let signature = header("x-slack-signature")?;
        let ts: i64 = timestamp
            .parse()
            .map_err(|_| "X-Slack-Request-Timestamp is not a number".to_owned())?;
        if (now - ts).abs() > MAX_SKEW_SECS {
            return Err(format!(
                "the request's timestamp is {}s from now (at most {MAX_SKEW_SECS}s)",
                now - ts
            ));
        }
        let hex = signature
            .strip_prefix("v0=")
            .ok_or_else(|| "X-Slack-Signature is not v0=…".to_owned())?;
        let expected = decode_hex(hex).ok_or_else(|| "X-Slack-Signature is not hex".to_owned())?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.signing_secret.expose_secret().as_bytes())
                .map_err(|_| "the signing secret cannot key HMAC".to_owned())?;
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac.verify_slice(&expected)
            .map_err(|_| "the signature does not match (slack.signing_secret)".to_owned())?;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|_, at| (now - *at).abs() <= 2 * MAX_SKEW_SECS);
        if seen.insert(signature.to_owned(), ts).is_some() {
            return Err("this request was received before (a replay)".into());
        }
        Ok(())
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Debug, Deserialize)]
struct Form {
    payload: String,
}

/// The parts of a `block_actions` payload aiops reads.
#[derive(Debug, Deserialize)]
struct BlockActions {
    #[serde(rename = "type")]
    kind: String,
    user: User,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    message: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Action {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

/// `POST /slack/interactions`.
pub async fn interactions(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(interactions) = state.interactions.clone() else {
        return Err(ApiError::NotFound(
            "Slack interactivity is not configured (slack.signing_secret)".into(),
        ));
    };
    let body = read_body(&req, body, &state).await?;
    let now = state.clock.now().unix_timestamp();
    if let Err(reason) = interactions.verify(&req, &body, now) {
        tracing::warn!(%reason, "a Slack interaction was refused");
        state.metrics.interaction("refused", "unauthorized");
        return Err(ApiError::Unauthorized);
    }
    let essence = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/x-www-form-urlencoded" {
        return Err(ApiError::UnsupportedMediaType(essence));
    }
    let form: Form = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::InvalidPayload(format!("not Slack's form (payload=…): {e}")))?;
    let payload: BlockActions = serde_json::from_str(&form.payload)
        .map_err(|e| ApiError::MalformedJson(format!("the payload field: {e}")))?;
    if payload.kind != "block_actions" {
        // Shortcuts, view submissions: nothing of aiops'.
        return Ok(HttpResponse::Ok().finish());
    }
    let who = payload
        .user
        .username
        .clone()
        .or_else(|| payload.user.name.clone())
        .unwrap_or_else(|| payload.user.id.clone());
    for action in &payload.actions {
        let line = act(&state, &interactions, action, &who, &payload.user.id).await;
        if let Some(url) = &payload.response_url {
            amend(&interactions, url, payload.message.as_ref(), &line);
        }
    }
    Ok(HttpResponse::Ok().finish())
}

/// Runs one button's action; returns the line that amends the message.
async fn act(
    state: &AppState,
    interactions: &Interactions,
    action: &Action,
    who: &str,
    user_id: &str,
) -> String {
    let name = action.action_id.as_str();
    let Some(press) = SlackAction::parse(name) else {
        return format!("aiops does not know the action {name:?}");
    };
    let kind = press.action_id();
    let outcome = run(state, interactions, press, action, who, user_id).await;
    let result = if outcome.is_ok() { "ok" } else { "failed" };
    state.metrics.interaction(kind, result);
    match outcome {
        Ok(line) => line,
        Err(e) => {
            tracing::warn!(action = kind, error = %e, "a Slack action failed");
            format!("⚠️ {kind} by <@{user_id}> failed: {e}")
        }
    }
}

async fn run(
    state: &AppState,
    interactions: &Interactions,
    press: SlackAction,
    action: &Action,
    who: &str,
    user_id: &str,
) -> Result<String, String> {
    let id: JobId = action
        .value
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|_| "the button carries no analysis id".to_owned())?;
    let job = state
        .store
        .get(id)
        .await
        .map_err(|e| format!("cannot read the analysis: {e}"))?
        .ok_or_else(|| format!("no analysis {id} (past its retention?)"))?;
    let group: WebhookPayload = serde_json::from_value(job.payload.clone())
        .map_err(|e| format!("the stored alert group cannot be read: {e}"))?;
    let now = state.clock.now();
    match press {
        SlackAction::Silence { hours } => {
            let silencer = interactions
                .silencer
                .as_ref()
                .ok_or_else(|| "silences need alertmanager.url".to_owned())?;
            let labels = match group.common_labels.is_empty() {
                true => &group.group_labels,
                false => &group.common_labels,
            };
            let matchers: Vec<(String, String)> =
                labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            if matchers.is_empty() {
                return Err("the group has no labels to match".into());
            }
            let ends_at = now + time::Duration::hours(i64::from(hours));
            let comment = match interactions.public_url.is_empty() {
                true => format!("Silenced from Slack; aiops analysis {id}"),
                false => format!(
                    "Silenced from Slack: {}/analyses/{id}",
                    interactions.public_url
                ),
            };
            let request = SilenceRequest {
                matchers,
                starts_at: now,
                ends_at,
                created_by: format!("{who} (Slack)"),
                comment,
            };
            let silence = silencer
                .silence(&request)
                .await
                .map_err(|e| format!("Alertmanager: {e}"))?;
            tracing::info!(job_id = %id, %silence, user = who, hours, "silenced from Slack");
            Ok(format!(
                "🔕 Silenced for {hours}h by <@{user_id}>, until {} UTC (silence {silence})",
                clock(ends_at)
            ))
        }
        SlackAction::Feedback(verdict) => {
            let feedback = Feedback {
                verdict,
                user: who.to_owned(),
                at: now,
            };
            state
                .store
                .add_feedback(id, &feedback)
                .await
                .map_err(|e| format!("cannot store the feedback: {e}"))?;
            state.metrics.feedback(verdict);
            Ok(match verdict {
                Verdict::Right => format!("👍 <@{user_id}> says the analysis is right"),
                Verdict::Wrong => format!("👎 <@{user_id}> says the analysis is wrong"),
            })
        }
        SlackAction::Reanalyze => {
            let job = NewJob::for_payload(&group, None, JobSource::Manual);
            let new = job.id;
            state
                .store
                .enqueue(vec![job])
                .await
                .map_err(|e| format!("cannot queue the analysis: {e}"))?;
            tracing::info!(job_id = %new, of = %id, user = who, "re-analysis queued from Slack");
            Ok(format!("🔁 <@{user_id}> asked for a new analysis ({new})"))
        }
    }
}

/// `HH:MM` of a time, UTC.
fn clock(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// Amends the message through `response_url`, in the background: the original blocks with `line`
/// as a context block under them, or `line` alone when the payload carries no message.
fn amend(interactions: &Interactions, url: &str, message: Option<&Value>, line: &str) {
    let context = json!({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]});
    let body = match message.and_then(|m| m["blocks"].as_array()) {
        Some(blocks) => {
            let mut blocks = blocks.clone();
            blocks.push(context);
            json!({
                "replace_original": true,
                "text": message.and_then(|m| m["text"].as_str()).unwrap_or(line),
                "blocks": blocks,
            })
        }
        None => json!({"replace_original": false, "response_type": "in_channel", "text": line}),
    };
    let request = interactions.http.post(url).json(&body);
    tokio::spawn(async move {
        match request.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = %r.status(), "Slack refused the message's update"),
            Err(e) => tracing::warn!(error = %e.without_url(), "cannot update the Slack message"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_pairs_only() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
