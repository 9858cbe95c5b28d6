//! Jobs in the durable queue: what ingest writes, what a worker claims, and what the history keeps.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::alertmanager::{AlertStatus, WebhookPayload};
use crate::analysis::Analysis;

/// A job's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where a job's lifecycle stands. A job waiting for its next attempt is `Queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 4] = [Self::Queued, Self::Running, Self::Done, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Who asked for the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobSource {
    /// Alertmanager (or Grafana) posted a webhook.
    Webhook,
    /// Someone called `/analyze`.
    Manual,
}

impl JobSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Self::Webhook),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }
}

/// A job as ingest hands it to the store.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub source: JobSource,
    /// `None` for jobs that are never duplicates (manual analyses).
    pub dedup_key: Option<String>,
    pub group_key: String,
    pub status: AlertStatus,
    pub alertname: String,
    /// The payload as JSON text, kept verbatim for the history.
    pub payload: String,
}

impl NewJob {
    /// The job for a parsed payload: a webhook's job carries the dedup key (a manual analysis is
    /// never a duplicate); `raw` is the payload as received, else the parsed one is serialized.
    pub fn for_payload(payload: &WebhookPayload, raw: Option<String>, source: JobSource) -> Self {
        Self {
            id: JobId::new(),
            source,
            dedup_key: (source == JobSource::Webhook).then(|| payload.dedup_key()),
            group_key: payload.group_key.clone(),
            status: payload.status,
            alertname: payload.alertname().to_owned(),
            // Serializing our own type cannot fail.
            payload: raw.unwrap_or_else(|| serde_json::to_string(payload).unwrap_or_default()),
        }
    }
}

/// What the store answers for each job of an enqueue call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Created(JobId),
    /// A job with the same dedup key was received within the dedup TTL; this is its id.
    Duplicate(JobId),
}

impl EnqueueOutcome {
    pub fn job_id(self) -> JobId {
        match self {
            Self::Created(id) | Self::Duplicate(id) => id,
        }
    }

    pub fn is_duplicate(self) -> bool {
        matches!(self, Self::Duplicate(_))
    }
}

/// A job a worker holds under a lease.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: JobId,
    pub source: JobSource,
    /// The number of this attempt, starting at 1.
    pub attempt: u32,
    pub payload: String,
    /// The analysis of an earlier attempt that got past rca, so a retry does not pay for it again.
    pub analysis: Option<Analysis>,
    pub timings: StageTimings,
    /// Sinks that already received this job; a retry skips them.
    pub deliveries: Vec<DeliveryRecord>,
}

impl ClaimedJob {
    pub fn delivered_to(&self, sink: &str) -> bool {
        self.deliveries.iter().any(|d| d.sink == sink)
    }
}

/// A resolution of an alert group, and when the group first fired again after it (before the job
/// asking): what tells a flapping group ([`crate::Store::resolutions`]). Times are when the webhooks
/// were received.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolution {
    pub resolved_at: OffsetDateTime,
    pub refired_at: Option<OffsetDateTime>,
}

/// How long each stage took, in milliseconds, for the last attempt that ran it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rca_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_ms: Option<u64>,
}

/// One sink's successful delivery of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub sink: String,
    #[serde(with = "time::serde::rfc3339")]
    pub delivered_at: OffsetDateTime,
    /// What the sink returned that later deliveries need, such as a Slack message `ts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A job as the history shows it (`GET /analyses/{id}`).
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: JobId,
    pub source: JobSource,
    pub state: JobState,
    pub group_key: String,
    pub status: AlertStatus,
    pub alertname: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub timings: StageTimings,
    pub analysis: Option<Analysis>,
    pub deliveries: Vec<DeliveryRecord>,
    /// What on-call engineers said about the analysis (Slack's Right / Wrong buttons), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<Feedback>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub payload: serde_json::Value,
}

/// An on-call engineer's verdict on an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Right,
    Wrong,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Right => "right",
            Self::Wrong => "wrong",
        }
    }

    /// The verdict a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "right" => Some(Self::Right),
            "wrong" => Some(Self::Wrong),
            _ => None,
        }
    }
}

/// One verdict: who gave it, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub verdict: Verdict,
    /// The Slack user's name.
    pub user: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Queue counts for `/queue/status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueCounts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub dead: u64,
    /// Age of the oldest job waiting to run, in seconds.
    pub oldest_queued_age_secs: Option<f64>,
    /// Jobs that reached done or dead in the last 60 seconds.
    pub finished_last_minute: u64,
    /// The last jobs that ended dead (at most [`RECENT_DEAD`]), newest first, with why.
    pub recent_dead: Vec<DeadJob>,
}

/// How many dead jobs `/queue/status` names.
pub const RECENT_DEAD: usize = 5;

/// A job that ended dead, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadJob {
    pub id: JobId,
    pub alertname: String,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
}

impl QueueCounts {
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Queued => self.queued,
            JobState::Running => self.running,
            JobState::Done => self.done,
            JobState::Dead => self.dead,
        }
    }
}
