//! The worker against a real SQLite store, with stages that succeed, fail or hang on demand. Store
//! times come from a manual clock: backoff delays are stored as the next attempt's time, not slept,
//! so moving the clock is what makes a retry due.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aiops_model::{
    Clock, Context, ContextSource, JobId, JobSource, JobState, ManualClock, Metrics, NewJob,
    Notification, Notifier, StageError, Store, WebhookPayload,
};
use aiops_store::{SqliteStore, StoreConfig};
use aiops_worker::{Outcome, Stages, Worker, WorkerConfig};
use async_trait::async_trait;
use time::OffsetDateTime;

#[derive(Debug, Default)]
struct CountingContext(AtomicUsize);

#[async_trait]
impl ContextSource for CountingContext {
    async fn gather(&self, payload: &WebhookPayload) -> Result<Context, StageError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(aiops_context::alert_evidence(payload))
    }
}

/// Fails its first `failures` deliveries (retriably or not), then succeeds; counts deliveries.
#[derive(Debug)]
struct Sink {
    name: &'static str,
    failures: AtomicUsize,
    retriable: bool,
    delivered: AtomicUsize,
    hang: bool,
    last_had_analysis: std::sync::Mutex<Option<bool>>,
}

impl Sink {
    fn new(name: &'static str, failures: usize, retriable: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            failures: AtomicUsize::new(failures),
            retriable,
            delivered: AtomicUsize::new(0),
            hang: false,
            last_had_analysis: std::sync::Mutex::new(None),
        })
    }

    fn delivered(&self) -> usize {
        self.delivered.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Notifier for Sink {
    fn name(&self) -> &str {
        self.name
    }

    async fn deliver(&self, n: Notification<'_>) -> Result<Option<String>, StageError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            let message = format!("{} is down", self.name);
            return Err(if self.retriable {
                StageError::retriable(message)
            } else {
                StageError::permanent(message)
            });
        }
        *self.last_had_analysis.lock().expect("lock") = Some(n.analysis.is_some());
        self.delivered.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
}

struct Harness {
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    context: Arc<CountingContext>,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let store = SqliteStore::open(
        &dir.path().join("aiops.db"),
        &StoreConfig::default(),
        clock.clone(),
    )
    .await
    .expect("store opens");
    Harness {
        store: Arc::new(store),
        clock,
        context: Arc::default(),
        _dir: dir,
    }
}

impl Harness {
    fn worker(&self, sinks: Vec<Arc<Sink>>, config: WorkerConfig) -> Worker {
        let stages = Stages {
            context: self.context.clone(),
            analyzer: Arc::new(aiops_rca::RulesAnalyzer::default()),
            notifiers: sinks.into_iter().map(|s| s as Arc<dyn Notifier>).collect(),
        };
        Worker::new(
            self.store.clone(),
            stages,
            Arc::new(Metrics::new()),
            self.clock.clone(),
            config,
        )
    }

    async fn enqueue(&self, fixture: &str) -> JobId {
        let path = format!(
            "{}/../../tests/fixtures/alertmanager/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload = std::fs::read_to_string(path).expect("fixture");
        let parsed = aiops_model::alertmanager::parse_webhook(payload.as_bytes()).expect("parses");
        let job = NewJob::for_payload(&parsed, Some(payload), JobSource::Webhook);
        self.store.enqueue(vec![job]).await.expect("enqueue")[0].job_id()
    }
}

fn config() -> WorkerConfig {
    WorkerConfig {
        max_attempts: 3,
        backoff_base_secs: 10,
        backoff_max_secs: 100,
        ..WorkerConfig::default()
    }
}

#[tokio::test]
async fn a_job_runs_through_every_stage_and_is_recorded() {
    let h = harness().await;
    let sink = Sink::new("stdout", 0, true);
    let worker = h.worker(vec![sink.clone()], config());
    let id = h.enqueue("target-down-group-firing.json").await;
    let (done_id, outcome) = worker.process_one().await.expect("store").expect("a job");
    assert_eq!((done_id, outcome), (id, Outcome::Done));
    assert!(
        worker.process_one().await.expect("store").is_none(),
        "nothing else is due"
    );
    assert_eq!(sink.delivered(), 1);
    let record = h.store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Done);
    let analysis = record.analysis.expect("analysis kept");
    assert_eq!(analysis.analyzer.name, "rules");
    assert!(record.timings.context_ms.is_some() && record.timings.rca_ms.is_some());
    assert!(record.timings.notify_ms.is_some());
    assert_eq!(record.deliveries.len(), 1);
}

#[tokio::test]
async fn a_job_abandoned_by_a_crashed_worker_is_claimed_again_after_its_lease() {
    let h = harness().await;
    let sink = Sink::new("stdout", 0, true);
    let worker = h.worker(vec![sink.clone()], config());
    let id = h.enqueue("target-down-single.json").await;
    // Another worker claims the job and dies without a word.
    h.store
        .claim("crashed-worker", Duration::from_secs(120))
        .await
        .expect("claim")
        .expect("job");
    assert!(
        worker.process_one().await.expect("store").is_none(),
        "still leased"
    );
    h.clock.advance(Duration::from_secs(121));
    let (reclaimed, outcome) = worker
        .process_one()
        .await
        .expect("store")
        .expect("the abandoned job");
    assert_eq!((reclaimed, outcome), (id, Outcome::Done));
    assert_eq!(
        h.store
            .get(id)
            .await
            .expect("get")
            .expect("record")
            .attempts,
        2
    );
    assert_eq!(sink.delivered(), 1);
}

#[tokio::test]
async fn a_failed_delivery_is_retried_after_the_backoff_and_only_to_the_failed_sink() {
    let h = harness().await;
    let healthy = Sink::new("stdout", 0, true);
    let flaky = Sink::new("webhook", 1, true);
    let worker = h.worker(vec![healthy.clone(), flaky.clone()], config());
    let id = h.enqueue("target-down-single.json").await;
    let started = h.clock.now();

    let (_, outcome) = worker.process_one().await.expect("store").expect("job");
    let Outcome::Retrying { at, error } = outcome else {
        panic!("expected a retry, got {outcome:?}")
    };
    assert!(error.contains("webhook is down"), "{error}");
    let delay = at - started;
    assert!(
        delay >= time::Duration::seconds(5) && delay <= time::Duration::seconds(10),
        "first backoff {delay}"
    );
    let record = h.store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Queued);
    let stored = record.next_attempt_at.expect("a next attempt time");
    assert!(
        (stored - at).abs() < time::Duration::milliseconds(1),
        "stored in milliseconds: {stored} vs {at}"
    );

    h.clock
        .advance(Duration::from_secs_f64(delay.as_seconds_f64() - 0.5));
    assert!(
        worker.process_one().await.expect("store").is_none(),
        "not before the backoff"
    );
    h.clock.advance(Duration::from_secs(1));
    let (_, outcome) = worker.process_one().await.expect("store").expect("due now");
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(
        (healthy.delivered(), flaky.delivered()),
        (1, 1),
        "the healthy sink got it once"
    );
    assert_eq!(
        h.context.0.load(Ordering::SeqCst),
        1,
        "the retry reused the saved analysis"
    );
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_dead_with_its_error_visible() {
    let h = harness().await;
    let sink = Sink::new("webhook", 100, true);
    let worker = h.worker(vec![sink], config());
    let id = h.enqueue("target-down-single.json").await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        h.clock.advance(Duration::from_secs(1000));
        outcomes.push(worker.process_one().await.expect("store").expect("job").1);
    }
    assert!(matches!(outcomes[0], Outcome::Retrying { .. }));
    assert!(matches!(outcomes[1], Outcome::Retrying { .. }));
    assert!(
        matches!(&outcomes[2], Outcome::Dead { error } if error.contains("webhook is down")),
        "{outcomes:?}"
    );
    h.clock.advance(Duration::from_secs(1000));
    assert!(
        worker.process_one().await.expect("store").is_none(),
        "dead jobs are not retried"
    );
    let record = h.store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Dead);
    assert_eq!(record.attempts, 3);
    assert_eq!(
        record.last_error.as_deref(),
        Some("notify: webhook: webhook is down")
    );
}

#[tokio::test]
async fn a_permanent_error_kills_the_job_at_once() {
    let h = harness().await;
    let worker = h.worker(vec![Sink::new("webhook", 1, false)], config());
    h.enqueue("target-down-single.json").await;
    let (_, outcome) = worker.process_one().await.expect("store").expect("job");
    assert!(matches!(outcome, Outcome::Dead { .. }), "{outcome:?}");
}

#[tokio::test]
async fn a_resolved_group_is_delivered_without_an_analysis() {
    let h = harness().await;
    let sink = Sink::new("stdout", 0, true);
    let worker = h.worker(vec![sink.clone()], config());
    let id = h.enqueue("target-down-group-resolved.json").await;
    assert_eq!(
        worker.process_one().await.expect("store").expect("job"),
        (id, Outcome::Done)
    );
    assert_eq!(*sink.last_had_analysis.lock().expect("lock"), Some(false));
    assert_eq!(
        h.context.0.load(Ordering::SeqCst),
        0,
        "no context gathered for a resolution"
    );
}

#[tokio::test]
async fn a_job_crashing_the_worker_on_every_attempt_ends_dead() {
    let h = harness().await;
    let worker = h.worker(vec![Sink::new("stdout", 0, true)], config());
    let id = h.enqueue("target-down-single.json").await;
    for n in 0..3 {
        h.store
            .claim(&format!("crash-{n}"), Duration::from_secs(10))
            .await
            .expect("claim")
            .expect("job");
        h.clock.advance(Duration::from_secs(11));
    }
    let (_, outcome) = worker.process_one().await.expect("store").expect("job");
    assert!(
        matches!(&outcome, Outcome::Dead { error } if error.contains("abandoned")),
        "{outcome:?}"
    );
    assert_eq!(
        h.store.get(id).await.expect("get").expect("record").state,
        JobState::Dead
    );
}

#[tokio::test]
async fn shutdown_gives_an_unfinished_job_back_to_the_queue() {
    let h = harness().await;
    let mut hanging = Sink::new("stdout", 0, true);
    Arc::get_mut(&mut hanging).expect("unique").hang = true;
    let config = WorkerConfig {
        shutdown_grace_secs: 0,
        concurrency: 1,
        ..config()
    };
    let worker = Arc::new(h.worker(vec![hanging], config));
    let id = h.enqueue("target-down-single.json").await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.clone().run(async move {
        let _ = stop_rx.await;
    }));
    // Bounded wait until the worker holds the job.
    for _ in 0..200 {
        if h.store.get(id).await.expect("get").expect("record").state == JobState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.store.get(id).await.expect("get").expect("record").state,
        JobState::Running
    );
    stop_tx.send(()).expect("worker listens");
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops in time")
        .expect("no panic");
    let record = h.store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Queued, "released, not left leased");
    assert_eq!(record.attempts, 0, "a release does not count as an attempt");
}

/// The store, with its next `failures` attempt-recording writes (complete, fail, record_delivery)
/// failing as unavailable: a database restarting under the worker.
#[derive(Debug)]
struct Restarting {
    inner: Arc<SqliteStore>,
    failures: AtomicUsize,
}

impl Restarting {
    fn down(&self) -> Result<(), aiops_model::StoreError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(aiops_model::StoreError::Unavailable("restarting".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Restarting {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<aiops_model::EnqueueOutcome>, aiops_model::StoreError> {
        self.inner.enqueue(jobs).await
    }
    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<aiops_model::ClaimedJob>, aiops_model::StoreError> {
        self.inner.claim(owner, lease).await
    }
    async fn extend_lease(
        &self,
        id: JobId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), aiops_model::StoreError> {
        self.inner.extend_lease(id, owner, lease).await
    }
    async fn record_delivery(
        &self,
        id: JobId,
        d: &aiops_model::DeliveryRecord,
    ) -> Result<(), aiops_model::StoreError> {
        self.down()?;
        self.inner.record_delivery(id, d).await
    }
    async fn complete(
        &self,
        id: JobId,
        owner: &str,
        end: aiops_model::AttemptEnd<'_>,
    ) -> Result<(), aiops_model::StoreError> {
        self.down()?;
        self.inner.complete(id, owner, end).await
    }
    async fn fail(
        &self,
        id: JobId,
        owner: &str,
        error: &str,
        end: aiops_model::AttemptEnd<'_>,
        retry_at: Option<OffsetDateTime>,
    ) -> Result<(), aiops_model::StoreError> {
        self.down()?;
        self.inner.fail(id, owner, error, end, retry_at).await
    }
    async fn release(&self, id: JobId, owner: &str) -> Result<(), aiops_model::StoreError> {
        self.inner.release(id, owner).await
    }
    async fn get(
        &self,
        id: JobId,
    ) -> Result<Option<aiops_model::JobRecord>, aiops_model::StoreError> {
        self.inner.get(id).await
    }
    async fn counts(&self) -> Result<aiops_model::QueueCounts, aiops_model::StoreError> {
        self.inner.counts().await
    }
    async fn ping(&self) -> Result<(), aiops_model::StoreError> {
        self.inner.ping().await
    }
    async fn purge_expired(&self) -> Result<(), aiops_model::StoreError> {
        self.inner.purge_expired().await
    }
    async fn wait_for_work(&self, max: Duration) {
        self.inner.wait_for_work(max).await
    }
    async fn add_feedback(
        &self,
        id: aiops_model::JobId,
        feedback: &aiops_model::Feedback,
    ) -> Result<(), aiops_model::StoreError> {
        self.inner.add_feedback(id, feedback).await
    }
    async fn judged(&self, limit: u32) -> Result<Vec<aiops_model::JobId>, aiops_model::StoreError> {
        self.inner.judged(limit).await
    }
}

#[tokio::test]
async fn a_store_restarting_after_the_delivery_does_not_make_the_job_run_again() {
    let h = harness().await;
    let store = Arc::new(Restarting {
        inner: h.store.clone(),
        failures: AtomicUsize::new(3),
    });
    let first = Sink::new("stdout", 0, true);
    let second = Sink::new("webhook", 0, true);
    let stages = Stages {
        context: h.context.clone(),
        analyzer: Arc::new(aiops_rca::RulesAnalyzer::default()),
        notifiers: vec![first.clone() as Arc<dyn Notifier>, second.clone()],
    };
    let worker = Worker::new(
        store.clone(),
        stages,
        Arc::new(Metrics::new()),
        h.clock.clone(),
        config(),
    );
    let id = h.enqueue("target-down-single.json").await;
    // The first delivery's record and the completion meet the outage; the worker waits it out.
    let (_, outcome) = worker.process_one().await.expect("store").expect("job");
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(
        store.failures.load(Ordering::SeqCst),
        0,
        "the outage happened"
    );
    assert_eq!((first.delivered(), second.delivered()), (1, 1));
    let record = h.store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Done);
    assert_eq!(
        record.attempts, 1,
        "no second attempt, so no second delivery"
    );
    assert_eq!(record.deliveries.len(), 2);
}
