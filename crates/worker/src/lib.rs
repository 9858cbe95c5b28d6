//! The aiops queue worker: claims jobs under a lease and runs them through context → rca → notify.
//!
//! # Layout
//! - [`WorkerConfig`]: the `[worker]` configuration section.
//! - [`Worker::process_one`]: claims and runs one job; tests drive the queue with it step by step.
//! - [`Worker::run`]: `concurrency` loops over `process_one`, until shutdown, then a grace period.
//! - [`backoff`]: when a failed attempt is tried again.
//!
//! The worker sees only the model's traits; the binary decides which store, sources, analyzer and sinks
//! it gets.
#![forbid(unsafe_code)]

pub mod flap;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiops_model::alertmanager::AlertStatus;
use aiops_model::{
    Analysis, Analyzer, AttemptEnd, ClaimedJob, Clock, ContextSource, DeliveryRecord, JobId,
    JobSource, Metrics, Notification, Notifier, StageError, StageTimings, Store, StoreError,
    WebhookPayload, first_look_sink,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// The default of `notify.flap_window_secs`: a group firing again this soon after it resolved
/// flaps (its incident goes on).
pub const DEFAULT_FLAP_WINDOW: Duration = Duration::from_secs(1800);
/// The resolutions read to tell a flapping group: its count stops there.
const HISTORY: u32 = 20;

/// After the grace, how long a claim under way may take to finish before the loops are cut.
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// The `[worker]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs processed at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts before a job is dead. A crash during an attempt counts too.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long a claim holds. A running job renews it every third of this; a job whose worker died is
    /// claimed again once it expires.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Delay before the second attempt; it doubles with each attempt (with jitter).
    #[serde(default = "default_backoff_base_secs")]
    pub backoff_base_secs: u64,
    /// The longest delay between attempts.
    #[serde(default = "default_backoff_max_secs")]
    pub backoff_max_secs: u64,
    /// How often an idle worker looks for due jobs (new jobs wake it at once).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// On shutdown, how long running jobs may take to finish before they are given back to the queue.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
}

fn default_concurrency() -> usize {
    4
}
fn default_max_attempts() -> u32 {
    5
}
fn default_lease_secs() -> u64 {
    120
}
fn default_backoff_base_secs() -> u64 {
    5
}
fn default_backoff_max_secs() -> u64 {
    600
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_shutdown_grace_secs() -> u64 {
    20
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            max_attempts: default_max_attempts(),
            lease_secs: default_lease_secs(),
            backoff_base_secs: default_backoff_base_secs(),
            backoff_max_secs: default_backoff_max_secs(),
            poll_interval_ms: default_poll_interval_ms(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
        }
    }
}

impl WorkerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("worker.concurrency must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return Err("worker.max_attempts must be at least 1".into());
        }
        if self.lease_secs < 3 {
            return Err("worker.lease_secs must be at least 3".into());
        }
        if self.backoff_max_secs < self.backoff_base_secs {
            return Err(
                "worker.backoff_max_secs must not be less than worker.backoff_base_secs".into(),
            );
        }
        Ok(())
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }
}

/// The delay before the attempt after `attempt` (1-based): `base · 2^(attempt−1)`, capped at `max`,
/// then scaled by a random factor in [0.5, 1] so that jobs that failed together do not retry together.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponential = base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max);
    exponential.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// How `process_one` ended for the job it claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The attempt failed and the job waits until `at`.
    Retrying {
        at: OffsetDateTime,
        error: String,
    },
    /// The job will not be tried again; the error stays in its history.
    Dead {
        error: String,
    },
    /// Another worker took the job over (this one's lease expired); its result was discarded.
    LeaseLost,
}

/// What an attempt produced so far; it is recorded with the attempt's end.
#[derive(Debug)]
struct Progress {
    timings: StageTimings,
    /// An analysis made by this attempt (none when an earlier attempt's was reused).
    analysis: Option<Analysis>,
    /// The delivery that completed the round, recorded together with the completion.
    last_delivery: Option<DeliveryRecord>,
    /// First looks posted by this attempt: sink → where the message is.
    first_looks: Vec<(String, String)>,
}

/// What stopped an attempt.
#[derive(Debug)]
enum Failure {
    Stage {
        stage: &'static str,
        error: StageError,
    },
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The stages a job runs through.
#[derive(Debug, Clone)]
pub struct Stages {
    pub context: Arc<dyn ContextSource>,
    pub analyzer: Arc<dyn Analyzer>,
    pub notifiers: Vec<Arc<dyn Notifier>>,
}

/// Claims jobs and runs them through the stages.
#[derive(Debug)]
pub struct Worker {
    store: Arc<dyn Store>,
    stages: Stages,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    owner: String,
    in_flight: Mutex<HashSet<JobId>>,
    flap_window: Duration,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        stages: Stages,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
    ) -> Self {
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
        for sink in &stages.notifiers {
            metrics.initialize_sink(sink.name());
        }
        Self {
            store,
            stages,
            metrics,
            clock,
            config,
            owner,
            in_flight: Mutex::default(),
            flap_window: DEFAULT_FLAP_WINDOW,
        }
    }

    /// A group firing again within `window` of its resolution flaps (`notify.flap_window_secs`).
    #[must_use]
    pub fn with_flap_window(mut self, window: Duration) -> Self {
        self.flap_window = window;
        self
    }

    /// Claims one due job and runs it to an outcome. `Ok(None)` means nothing was due.
    pub async fn process_one(&self) -> Result<Option<(JobId, Outcome)>, StoreError> {
        let (_never, mut abort) = watch::channel(false);
        self.process_until(&mut abort).await
    }

    /// [`Self::process_one`], with the attempt (never the claim) cut short when `abort` turns
    /// true: the claimed job then stays in flight, for [`Self::release_in_flight`] to give back.
    /// Cutting a claim short instead could leave a job leased in the store but unknown here.
    async fn process_until(
        &self,
        abort: &mut watch::Receiver<bool>,
    ) -> Result<Option<(JobId, Outcome)>, StoreError> {
        let Some(job) = self.store.claim(&self.owner, self.config.lease()).await? else {
            return Ok(None);
        };
        let id = job.id;
        let span = tracing::info_span!(
            "job",
            job_id = %id,
            attempt = job.attempt,
            group_key = tracing::field::Empty,
            alertname = tracing::field::Empty
        );
        self.track(id, true);
        self.metrics.workers_busy.inc();
        let outcome = tokio::select! {
            outcome = self.attempt(job).instrument(span) => outcome,
            _ = abort.wait_for(|aborted| *aborted) => {
                self.metrics.workers_busy.dec();
                return Ok(None);
            }
        };
        self.metrics.workers_busy.dec();
        self.track(id, false);
        outcome.map(|o| Some((id, o)))
    }

    /// Runs `concurrency` worker loops until `shutdown` resolves. Running jobs then get
    /// `shutdown_grace_secs` to finish; the ones that don't are given back to the queue.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        self.metrics
            .workers
            .set(i64::try_from(self.config.concurrency).unwrap_or(i64::MAX));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (abort_tx, abort_rx) = watch::channel(false);
        let mut loops = JoinSet::new();
        for _ in 0..self.config.concurrency {
            loops.spawn(self.clone().worker_loop(stop_rx.clone(), abort_rx.clone()));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        let finished =
            tokio::time::timeout(grace, async { while loops.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            // Attempts stop at once; a claim under way finishes, so its job is known and given
            // back. A store that hangs is cut after a bound: its lease then expires.
            let _ = abort_tx.send(true);
            let joined = tokio::time::timeout(ABORT_WAIT, async {
                while loops.join_next().await.is_some() {}
            })
            .await;
            if joined.is_err() {
                loops.abort_all();
                while loops.join_next().await.is_some() {}
            }
            self.release_in_flight().await;
        }
        tracing::info!("workers stopped");
    }

    async fn worker_loop(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
        mut abort: watch::Receiver<bool>,
    ) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        while !*stop.borrow() && !*abort.borrow() {
            match self.process_until(&mut abort).await {
                Ok(Some(_)) => continue,
                Ok(None) => {
                    tokio::select! {
                        () = self.store.wait_for_work(poll) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the store; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(poll) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    async fn release_in_flight(&self) {
        let ids: Vec<JobId> = self.lock_in_flight().drain().collect();
        for id in ids {
            match self.store.release(id, &self.owner).await {
                Ok(()) => tracing::info!(job_id = %id, "gave an unfinished job back to the queue"),
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "cannot give a job back; its lease will expire")
                }
            }
        }
    }

    fn track(&self, id: JobId, running: bool) {
        let mut set = self.lock_in_flight();
        if running {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<JobId>> {
        // A panic while holding this lock leaves a plain set behind, which is still valid.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn attempt(&self, job: ClaimedJob) -> Result<Outcome, StoreError> {
        if job.attempt > self.config.max_attempts {
            let error = format!(
                "abandoned: {} attempts started and none finished (the worker stopped or lost its lease each time)",
                job.attempt - 1
            );
            tracing::error!(%error, "job is dead");
            let end = AttemptEnd {
                timings: &job.timings,
                analysis: None,
                delivery: None,
            };
            self.store
                .fail(job.id, &self.owner, &error, end, None)
                .await?;
            return Ok(Outcome::Dead { error });
        }
        let mut progress = Progress {
            timings: job.timings.clone(),
            analysis: None,
            last_delivery: None,
            first_looks: Vec::new(),
        };
        let result = tokio::select! {
            result = self.execute(&job, &mut progress) => result,
            lost = self.keep_lease(job.id) => Err(Failure::Store(lost)),
        };
        self.settle(&job, &progress, result).await
    }

    /// Renews the lease until it is lost; only then does it return.
    async fn keep_lease(&self, id: JobId) -> StoreError {
        let every = self.config.lease() / 3;
        loop {
            tokio::time::sleep(every).await;
            match self
                .store
                .extend_lease(id, &self.owner, self.config.lease())
                .await
            {
                Ok(()) => {}
                Err(e @ StoreError::LeaseLost(_)) => return e,
                Err(e) => tracing::warn!(error = %e, "cannot renew the lease; trying again"),
            }
        }
    }

    async fn execute(&self, job: &ClaimedJob, progress: &mut Progress) -> Result<(), Failure> {
        let payload: WebhookPayload =
            serde_json::from_str(&job.payload).map_err(|e| Failure::Stage {
                stage: "decode",
                error: StageError::permanent(format!(
                    "stored payload is not a webhook payload: {e}"
                )),
            })?;
        let span = tracing::Span::current();
        span.record("group_key", payload.group_key.as_str());
        span.record("alertname", payload.alertname());

        let firings = self.firings(job, &payload).await;
        if payload.status == AlertStatus::Firing && job.analysis.is_none() {
            progress.analysis = Some(self.analyze(job, &payload, firings, progress).await?);
        }
        // A resolution needs no analysis: the notifier reports how long the group fired.
        let analysis = match payload.status {
            AlertStatus::Resolved => None,
            AlertStatus::Firing => progress.analysis.as_ref().or(job.analysis.as_ref()),
        };
        let notification = Notification {
            job_id: job.id,
            payload: &payload,
            analysis,
            firings,
        };
        let started = Instant::now();
        let delivered = self
            .notify(
                job,
                notification,
                &progress.first_looks,
                &mut progress.last_delivery,
            )
            .await;
        progress.timings.notify_ms = Some(elapsed_ms(started));
        self.observe("notify", started, delivered.is_ok());
        delivered
    }

    /// How many times the job's group fired in its incident (does it flap?). Manual analyses are
    /// not part of it; an unreadable history makes the job its incident's first firing.
    async fn firings(&self, job: &ClaimedJob, payload: &WebhookPayload) -> u32 {
        if job.source != JobSource::Webhook || self.flap_window.is_zero() {
            return 1;
        }
        match self
            .store
            .resolutions(&payload.group_key, job.id, HISTORY)
            .await
        {
            Ok(resolutions) => flap::firings(&resolutions, self.flap_window),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the group's history; it is taken not to flap");
                1
            }
        }
    }

    /// The analysis of the incident's earlier firing, when the group flaps, the analyzer is slow (a
    /// model: the rules cost nothing to run again) and the evidence is the same.
    async fn reusable(
        &self,
        job: &ClaimedJob,
        payload: &WebhookPayload,
        firings: u32,
        digest: &str,
    ) -> Option<Analysis> {
        if firings < 2 || !self.stages.analyzer.is_slow() {
            return None;
        }
        let read = async {
            let Some(previous) = self.store.last_analyzed(&payload.group_key, job.id).await? else {
                return Ok(None);
            };
            Ok::<_, StoreError>(self.store.get(previous).await?.map(|r| (previous, r)))
        };
        let (previous, record) = match read.await {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the earlier analysis; analyzing again");
                return None;
            }
        };
        let mut analysis = record.analysis?;
        if analysis.evidence_digest.as_deref() != Some(digest) {
            tracing::info!(%previous, "the group flaps and the evidence changed: analyzing again");
            return None;
        }
        let info = &mut analysis.analyzer;
        info.reused_from = info.reused_from.or(Some(previous));
        info.clear_cost();
        Some(analysis)
    }

    async fn analyze(
        &self,
        job: &ClaimedJob,
        payload: &WebhookPayload,
        firings: u32,
        progress: &mut Progress,
    ) -> Result<Analysis, Failure> {
        let started = Instant::now();
        let context = self.stages.context.gather(payload).await;
        progress.timings.context_ms = Some(elapsed_ms(started));
        self.observe("context", started, context.is_ok());
        let context = context.map_err(|error| Failure::Stage {
            stage: "context",
            error,
        })?;
        let digest = context.digest();
        if let Some(analysis) = self.reusable(job, payload, firings, &digest).await {
            tracing::info!(reused_from = ?analysis.analyzer.reused_from, firings, "the group flaps on the same evidence: its analysis is reused");
            self.metrics.analysis(&analysis.analyzer);
            return Ok(analysis);
        }
        if self.stages.analyzer.is_slow() {
            let notification = Notification {
                job_id: job.id,
                payload,
                analysis: None,
                firings,
            };
            self.first_look(job, notification, &context, &mut progress.first_looks)
                .await?;
        }

        let started = Instant::now();
        let analysis = self.stages.analyzer.analyze(payload, &context).await;
        progress.timings.rca_ms = Some(elapsed_ms(started));
        self.observe("rca", started, analysis.is_ok());
        let mut analysis = analysis.map_err(|error| Failure::Stage {
            stage: "rca",
            error,
        })?;
        self.metrics.analysis(&analysis.analyzer);
        analysis.evidence_digest = Some(digest);
        Ok(analysis)
    }

    /// Posts the first look to each sink that can edit it later and has none for this job yet,
    /// recorded at once (as `<sink>#first-look`) so a retry updates it instead of posting again. A
    /// sink that fails here still gets the analysis: the failure is only logged.
    async fn first_look(
        &self,
        job: &ClaimedJob,
        notification: Notification<'_>,
        context: &aiops_model::Context,
        posted: &mut Vec<(String, String)>,
    ) -> Result<(), Failure> {
        for sink in &self.stages.notifiers {
            let name = first_look_sink(sink.name());
            if job.delivered_to(sink.name()) || job.delivered_to(&name) {
                continue;
            }
            match sink.first_look(notification, context).await {
                Ok(Some(located)) => {
                    let record = DeliveryRecord {
                        sink: name,
                        delivered_at: self.clock.now(),
                        detail: Some(located.clone()),
                    };
                    self.persist(|| self.store.record_delivery(job.id, &record))
                        .await?;
                    posted.push((sink.name().to_owned(), located));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(sink = sink.name(), error = %e, "the first look failed; the analysis will be posted");
                }
            }
        }
        Ok(())
    }

    /// Delivers to every sink that has not received this job yet. One failing sink does not hold the
    /// others back; the attempt fails afterwards, and the retry goes to the failed sinks only. Each
    /// delivery is recorded at once, except the one that ends a fully successful round: that one is
    /// left in `last` and recorded with the job's completion, in the same transaction.
    async fn notify(
        &self,
        job: &ClaimedJob,
        notification: Notification<'_>,
        first_looks: &[(String, String)],
        last: &mut Option<DeliveryRecord>,
    ) -> Result<(), Failure> {
        let mut errors = Vec::new();
        let pending: Vec<&Arc<dyn Notifier>> = self
            .stages
            .notifiers
            .iter()
            .filter(|sink| !job.delivered_to(sink.name()))
            .collect();
        for (i, sink) in pending.iter().enumerate() {
            // Where this sink's first look is, from this attempt or an earlier one.
            let first_look_name = first_look_sink(sink.name());
            let first_look = first_looks
                .iter()
                .find(|(s, _)| s == sink.name())
                .map(|(_, at)| at.as_str())
                .or_else(|| {
                    job.deliveries
                        .iter()
                        .find(|d| d.sink == first_look_name)
                        .and_then(|d| d.detail.as_deref())
                });
            let delivered = sink.deliver_after(notification, first_look).await;
            let result = match &delivered {
                Ok(Some(detail)) if detail == "filtered" => "filtered",
                Ok(_) => "ok",
                Err(_) => "failed",
            };
            self.metrics.delivery(sink.name(), result);
            match delivered {
                Ok(detail) => {
                    let record = DeliveryRecord {
                        sink: sink.name().to_owned(),
                        delivered_at: self.clock.now(),
                        detail,
                    };
                    if i + 1 == pending.len() && errors.is_empty() {
                        *last = Some(record);
                    } else {
                        let record_it = || self.store.record_delivery(job.id, &record);
                        self.persist(record_it).await?;
                    }
                }
                Err(e) => {
                    tracing::warn!(sink = sink.name(), error = %e, retriable = e.is_retriable(), "delivery failed");
                    errors.push((sink.name().to_owned(), e));
                }
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        let retriable = errors.iter().all(|(_, e)| e.is_retriable());
        let message = errors
            .iter()
            .map(|(sink, e)| format!("{sink}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Failure::Stage {
            stage: "notify",
            error: StageError { message, retriable },
        })
    }

    /// Records how the attempt ended, with the analysis it produced and its last delivery.
    async fn settle(
        &self,
        job: &ClaimedJob,
        progress: &Progress,
        result: Result<(), Failure>,
    ) -> Result<Outcome, StoreError> {
        let end = AttemptEnd {
            timings: &progress.timings,
            analysis: progress.analysis.as_ref(),
            delivery: progress.last_delivery.as_ref(),
        };
        let (stage, error) = match result {
            Ok(()) => {
                let complete = || self.store.complete(job.id, &self.owner, end);
                return match self.persist(complete).await {
                    Ok(()) => {
                        tracing::info!(timings = ?progress.timings, "job done");
                        Ok(Outcome::Done)
                    }
                    Err(StoreError::LeaseLost(_)) => Ok(lease_lost()),
                    Err(e) => Err(e),
                };
            }
            Err(Failure::Store(StoreError::LeaseLost(_))) => return Ok(lease_lost()),
            Err(Failure::Store(e)) => ("store", StageError::retriable(e.to_string())),
            Err(Failure::Stage { stage, error }) => (stage, error),
        };
        let message = format!("{stage}: {}", error.message);
        let retry_at = (error.retriable && job.attempt < self.config.max_attempts).then(|| {
            let delay = backoff(
                job.attempt,
                Duration::from_secs(self.config.backoff_base_secs),
                Duration::from_secs(self.config.backoff_max_secs),
            );
            self.clock.now() + delay
        });
        let fail = || {
            self.store
                .fail(job.id, &self.owner, &message, end, retry_at)
        };
        match self.persist(fail).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost(_)) => return Ok(lease_lost()),
            Err(e) => return Err(e),
        }
        Ok(match retry_at {
            Some(at) => {
                tracing::warn!(error = %message, retry_at = %at, "attempt failed; will retry");
                Outcome::Retrying { at, error: message }
            }
            None => {
                tracing::error!(error = %message, "job is dead");
                Outcome::Dead { error: message }
            }
        })
    }

    /// Runs a store write that records what an attempt did, again while the store is unavailable
    /// (a database restart), for up to half a lease: the work is done, and recording it now is what
    /// keeps it from being done (and delivered) again by the next owner.
    async fn persist<F, Fut>(&self, write: F) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let deadline = Instant::now() + self.config.lease() / 2;
        let mut delay = Duration::from_millis(100);
        loop {
            match write().await {
                Err(StoreError::Unavailable(e)) if Instant::now() + delay < deadline => {
                    tracing::warn!(error = %e, "cannot record the attempt yet; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    fn observe(&self, stage: &'static str, started: Instant, ok: bool) {
        self.metrics
            .stage_finished(stage, started.elapsed().as_secs_f64(), ok);
    }
}

fn lease_lost() -> Outcome {
    tracing::warn!(
        "lost the lease; another worker owns the job now, this attempt's result is dropped"
    );
    Outcome::LeaseLost
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        for _ in 0..100 {
            let first = backoff(1, base, max);
            assert!(
                first >= Duration::from_millis(2500) && first <= base,
                "{first:?}"
            );
            let third = backoff(3, base, max);
            assert!(
                third >= Duration::from_secs(10) && third <= Duration::from_secs(20),
                "{third:?}"
            );
            let late = backoff(30, base, max);
            assert!(late >= Duration::from_secs(30) && late <= max, "{late:?}");
        }
    }
}
