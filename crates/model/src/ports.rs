//! The traits the stages implement, and their errors. The worker and the HTTP API see only these.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::alertmanager::WebhookPayload;
use crate::analysis::Analysis;
use crate::context::Context;
use crate::job::{
    ClaimedJob, DeliveryRecord, EnqueueOutcome, Feedback, JobId, JobRecord, NewJob, QueueCounts,
    Resolution, StageTimings,
};

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Too many jobs are waiting; the sender should retry later.
    #[error("the queue is full ({0} jobs waiting)")]
    QueueFull(u64),
    /// The database cannot be reached or written right now.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The disk that holds the database is full: nothing can be written until space is freed.
    #[error("the disk holding the store is full: {0}")]
    DiskFull(String),
    /// The worker's lease on the job expired and another worker may hold it.
    #[error("the lease on job {0} was lost")]
    LeaseLost(JobId),
    /// A stored row could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// No job has this id (never made, or purged past retention).
    #[error("no job {0}")]
    NotFound(JobId),
}

impl StoreError {
    /// Whether trying the same call again later can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Self::QueueFull(_) | Self::Unavailable(_) | Self::DiskFull(_)
        )
    }
}

/// The durable job queue and the analysis history.
///
/// Every method that changes a claimed job takes the claiming `owner` and fails with
/// [`StoreError::LeaseLost`] when that owner no longer holds the lease.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Commits the jobs in one transaction: all of them or none. Returns once they are durable.
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>, StoreError>;
    /// Claims the next due job (queued and due, or running with an expired lease).
    async fn claim(&self, owner: &str, lease: Duration) -> Result<Option<ClaimedJob>, StoreError>;
    async fn extend_lease(&self, id: JobId, owner: &str, lease: Duration)
    -> Result<(), StoreError>;
    /// Records a sink's delivery. Not lease-guarded: the delivery happened whoever holds the lease.
    async fn record_delivery(&self, id: JobId, delivery: &DeliveryRecord)
    -> Result<(), StoreError>;
    /// Marks the job done.
    async fn complete(&self, id: JobId, owner: &str, end: AttemptEnd<'_>)
    -> Result<(), StoreError>;
    /// Records a failed attempt. With `retry_at` the job waits until then; without, it is dead.
    async fn fail(
        &self,
        id: JobId,
        owner: &str,
        error: &str,
        end: AttemptEnd<'_>,
        retry_at: Option<OffsetDateTime>,
    ) -> Result<(), StoreError>;
    /// Gives a claimed job back without counting the attempt (graceful shutdown).
    async fn release(&self, id: JobId, owner: &str) -> Result<(), StoreError>;
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;
    async fn counts(&self) -> Result<QueueCounts, StoreError>;
    /// Answers when the store can serve reads and writes.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Deletes expired dedup keys, and finished jobs and threads past retention, now (every backend
    /// also does this once a minute by itself).
    async fn purge_expired(&self) -> Result<(), StoreError>;
    /// Waits until a job may have become due, or `max` passed.
    async fn wait_for_work(&self, max: Duration);
    /// Records an on-call engineer's verdict on a job's analysis. Not lease-guarded: anyone may
    /// judge any analysis, finished or not. [`StoreError::NotFound`] when there is no such job.
    async fn add_feedback(&self, id: JobId, feedback: &Feedback) -> Result<(), StoreError>;
    /// The jobs that got feedback, the most recently judged first, at most `limit`.
    async fn judged(&self, limit: u32) -> Result<Vec<JobId>, StoreError>;
    /// The group's webhook resolutions received before job `until`, newest first, at most `limit`,
    /// each with the group's first webhook firing after it and not after `until`: what tells a
    /// flapping group. A store that keeps no history answers none (then no group flaps).
    async fn resolutions(
        &self,
        group_key: &str,
        until: JobId,
        limit: u32,
    ) -> Result<Vec<Resolution>, StoreError> {
        let _ = (group_key, until, limit);
        Ok(Vec::new())
    }
    /// The group's latest webhook firing job received before job `until` that has an analysis.
    async fn last_analyzed(
        &self,
        group_key: &str,
        until: JobId,
    ) -> Result<Option<JobId>, StoreError> {
        let _ = (group_key, until);
        Ok(None)
    }
}

/// Renders a job as the page a person reads (`GET /analyses/{id}` with `Accept: text/html`).
pub trait AnalysisPage: Send + Sync + std::fmt::Debug {
    fn render(&self, job: &JobRecord) -> String;
}

/// A silence to create in Alertmanager: equality matchers, the time it holds, who and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceRequest {
    pub matchers: Vec<(String, String)>,
    pub starts_at: time::OffsetDateTime,
    pub ends_at: time::OffsetDateTime,
    pub created_by: String,
    pub comment: String,
}

/// Creates silences (Alertmanager's API v2); the Slack Silence buttons use it.
#[async_trait]
pub trait Silencer: Send + Sync + std::fmt::Debug {
    /// Creates the silence; answers its id.
    async fn silence(&self, request: &SilenceRequest) -> Result<String, StageError>;
}

/// The messages sinks started for alert groups (a Slack incident thread), which later notifications
/// of the same group reply to. The store implements it; the Slack sink sees only this.
#[async_trait]
pub trait Threads: Send + Sync + std::fmt::Debug {
    /// The open message a sink started for an alert group (its incident thread), if any.
    async fn thread(&self, group_key: &str, sink: &str) -> Result<Option<Thread>, StoreError>;
    /// Records the message a sink started for a group. The first record wins: the answer is the
    /// thread that is stored, which is another one if a concurrent delivery got there first.
    async fn save_thread(
        &self,
        group_key: &str,
        sink: &str,
        thread: &Thread,
    ) -> Result<Thread, StoreError>;
    /// Closes a group's open thread: the group firing again starts a new one.
    async fn close_thread(&self, group_key: &str, sink: &str) -> Result<(), StoreError>;
    /// Marks a group's open thread resolved (the incident is over but may flap), or firing again
    /// (it flapped: the group fired again soon after), keeping it open either way.
    async fn set_resolved(
        &self,
        group_key: &str,
        sink: &str,
        resolved: bool,
    ) -> Result<(), StoreError>;
    /// Keeps the open thread's message as it now reads (the sink's body), so that the resolution
    /// can edit it in place. Without a store: nothing is kept.
    async fn save_root(&self, group_key: &str, sink: &str, body: &str) -> Result<(), StoreError> {
        let _ = (group_key, sink, body);
        Ok(())
    }
    /// The open thread's message as last kept, if any.
    async fn root(&self, group_key: &str, sink: &str) -> Result<Option<String>, StoreError> {
        let _ = (group_key, sink);
        Ok(None)
    }
}

/// Draws a group's graph: a PNG of its rule's expression around the time it started (Slack's
/// upload and image block, the analysis page).
#[async_trait]
pub trait Grapher: Send + Sync + std::fmt::Debug {
    /// The PNG, or `None` when there is nothing to draw (no rule expression, no series).
    async fn graph(&self, payload: &WebhookPayload) -> Result<Option<Vec<u8>>, StageError>;
}

/// What the LLM cost per UTC day, for `llm.daily_budget_usd`: kept by the store, so every replica
/// counts against one budget and a restart does not reset it.
#[async_trait]
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// Adds `usd` to `day` (days since the Unix epoch, UTC; `usd` is negative to give a booking
    /// back) and answers the day's total after it, in one atomic step.
    async fn book(&self, day: i64, usd: f64) -> Result<f64, StoreError>;
}

/// What a worker records with the end of an attempt, in the same transaction.
#[derive(Debug, Clone, Copy)]
pub struct AttemptEnd<'a> {
    pub timings: &'a StageTimings,
    /// An analysis this attempt produced, kept so that a retry does not pay for it again.
    pub analysis: Option<&'a Analysis>,
    /// A delivery made just before the end. Recorded even when the lease was lost: it happened.
    pub delivery: Option<&'a DeliveryRecord>,
}

/// A stage's failure, classified for the worker's retry decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub message: String,
    pub retriable: bool,
}

impl StageError {
    pub fn retriable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retriable: true,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retriable: false,
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.retriable
    }
}

/// Gathers evidence for an alert group.
#[async_trait]
pub trait ContextSource: Send + Sync + std::fmt::Debug {
    async fn gather(&self, payload: &WebhookPayload) -> Result<Context, StageError>;
}

/// Turns an alert group and its context into an analysis.
#[async_trait]
pub trait Analyzer: Send + Sync + std::fmt::Debug {
    async fn analyze(
        &self,
        payload: &WebhookPayload,
        context: &Context,
    ) -> Result<Analysis, StageError>;
    /// Whether an answer may take long (a model): sinks that can edit a message then post a first
    /// look as soon as the evidence is in. The rule-based analyzer answers at once.
    fn is_slow(&self) -> bool {
        false
    }
}

/// What a sink delivers: a firing group with its analysis, or a resolution (no analysis).
#[derive(Debug, Clone, Copy)]
pub struct Notification<'a> {
    pub job_id: JobId,
    pub payload: &'a WebhookPayload,
    pub analysis: Option<&'a Analysis>,
    /// How many times the group has fired in this incident: 1, or more when it flaps (fired
    /// again within `notify.flap_window_secs` of resolving). Sinks show "flapping ×N".
    pub firings: u32,
}

/// A sink's first message for an alert group, which later notifications reply to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Thread {
    /// Where the message is (a Slack channel id).
    pub channel: String,
    /// The message's id (a Slack `ts`).
    pub ts: String,
    /// The incident resolved; the thread stays open in case the group flaps.
    #[serde(default)]
    pub resolved: bool,
}

/// A place analyses are delivered to.
#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// A stable name, used in delivery records: a renamed sink would deliver again.
    fn name(&self) -> &str;
    /// Delivers once. Returns what later deliveries need (such as a Slack `ts`), if anything.
    async fn deliver(&self, notification: Notification<'_>) -> Result<Option<String>, StageError>;
    /// A first look while a slow analysis runs: the alert with the top findings and evidence, to be
    /// completed in place by [`Notifier::deliver_after`]. Answers what locates the message, or
    /// none when the sink cannot edit what it posted (it then posts once, the analysis).
    /// The notification has no analysis yet.
    async fn first_look(
        &self,
        notification: Notification<'_>,
        context: &Context,
    ) -> Result<Option<String>, StageError> {
        let _ = (notification, context);
        Ok(None)
    }
    /// Delivers the notification in place of the first look `first_look` located, if any.
    async fn deliver_after(
        &self,
        notification: Notification<'_>,
        first_look: Option<&str>,
    ) -> Result<Option<String>, StageError> {
        let _ = first_look;
        self.deliver(notification).await
    }
}

/// The delivery record name of a sink's first look.
pub fn first_look_sink(sink: &str) -> String {
    format!("{sink}#first-look")
}
