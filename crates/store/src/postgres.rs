//! The PostgreSQL backend, for several aiops replicas on one database. The database does the
//! coordination: claims take `FOR UPDATE SKIP LOCKED` with leases, dedup is a unique key that
//! concurrent inserts from any replica settle, and threads and delivery records are rows every
//! replica reads.
//!
//! Webhooks are committed in groups: a batcher task takes every enqueue waiting at that moment and
//! runs them in one transaction (a multi-row upsert of their dedup keys, then a multi-row insert of the
//! jobs that got their key), so one commit (one WAL flush) answers many requests. Workers' updates go
//! straight to the pool; each is a transaction of its own. Keys are written in sorted order, so two
//! replicas' batches lock them in the same order and never deadlock each other; a batch that meets a
//! deadlock or a serialization failure anyway is run again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aiops_model::{
    AttemptEnd, ClaimedJob, Clock, DeliveryRecord, EnqueueOutcome, Feedback, JobId, JobRecord,
    JobState, Ledger, NewJob, QueueCounts, Resolution, Store, StoreError, Thread, Threads,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::StoreConfig;
use crate::health::{PROBE_SQL, WriteHealth};
use crate::plan::{Enqueue, admit, outcomes};
use crate::rows::{
    JOB_COLUMNS, RECENT_DEAD_SQL, claimed, db_error, delivery, duration_ms, feedback, millis,
    queue_counts, record, resolution, secs_to_ms, thread_of, to_json,
};

/// Enqueue requests waiting for the batcher beyond this make callers wait (backpressure).
const BATCH_CHANNEL: usize = 8192;
/// Rows deleted per maintenance statement, so that no purge holds locks for long.
const PURGE_SLICE: u64 = 5000;
/// Times a batch is run again after a deadlock or a serialization failure.
const BATCH_RETRIES: usize = 3;
/// Batches in flight at once: while one commits, the next one collects and runs.
const BATCHERS: usize = 2;
/// The backlog is counted in the database this often; in between, each batch adds the jobs it
/// created and this replica's workers subtract the jobs they end. Counting reads every queued job's
/// index entry, far too slow to do per batch with a long queue. Jobs other replicas end meanwhile are
/// not subtracted, so near `max_queued` the check errs towards 503 (which Alertmanager retries) for
/// at most this long.
const BACKLOG_REFRESH: Duration = Duration::from_secs(5);

type EnqueueReply = Result<Vec<EnqueueOutcome>, StoreError>;
/// Jobs queued or running as last counted, adjusted since, and when it was counted.
type Backlog = Arc<std::sync::Mutex<Option<(u64, std::time::Instant)>>>;

fn lock(backlog: &Backlog) -> std::sync::MutexGuard<'_, Option<(u64, std::time::Instant)>> {
    backlog
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Request {
    jobs: Vec<NewJob>,
    reply: oneshot::Sender<EnqueueReply>,
}

/// The PostgreSQL store.
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    tx: mpsc::Sender<Request>,
    clock: Arc<dyn Clock>,
    work: Arc<Notify>,
    dedup_ttl_ms: i64,
    retention_ms: i64,
    backlog: Backlog,
    /// Whether the batchers' last write worked.
    health: Arc<WriteHealth>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host/db`) with a pool of `config.pool_size`
    /// connections and runs the migrations (concurrent replicas take turns on sqlx's advisory lock).
    pub async fn open(
        url: &str,
        config: &StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::OpenError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        crate::migrator().run(&pool).await?;
        let work = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel(BATCH_CHANNEL);
        let backlog = Backlog::default();
        let health = Arc::new(WriteHealth::default());
        let batcher = Arc::new(Batcher {
            pool: pool.clone(),
            rx: tokio::sync::Mutex::new(rx),
            clock: clock.clone(),
            work: work.clone(),
            dedup_ttl_ms: secs_to_ms(config.dedup_ttl_secs),
            max_queued: config.max_queued,
            max_batch: config.max_batch,
            backlog: backlog.clone(),
            recounting: std::sync::atomic::AtomicBool::new(false),
            health: health.clone(),
        });
        let mut store = Self {
            pool,
            tx,
            clock,
            work,
            dedup_ttl_ms: secs_to_ms(config.dedup_ttl_secs),
            retention_ms: secs_to_ms(config.retention_days.saturating_mul(86_400)),
            backlog,
            health,
            tasks: Vec::new(),
        };
        for _ in 0..BATCHERS {
            store.tasks.push(tokio::spawn(batcher.clone().run()));
        }
        let maintenance = Maintenance {
            pool: store.pool.clone(),
            clock: store.clock.clone(),
            dedup_ttl_ms: store.dedup_ttl_ms,
            retention_ms: store.retention_ms,
        };
        store.tasks.push(tokio::spawn(async move {
            crate::purge_every_minute(|| maintenance.purge()).await
        }));
        Ok(store)
    }

    fn now(&self) -> i64 {
        millis(self.clock.now())
    }

    async fn deliveries(&self, id: JobId) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT sink, delivered_at, detail FROM deliveries WHERE job_id = $1 ORDER BY delivered_at",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        rows.iter().map(delivery).collect()
    }

    /// Ends a running attempt in `state` (see the SQLite backend): the delivery it carries first,
    /// recorded even when the lease was lost, then the lease-guarded update, in one transaction.
    async fn end_attempt(
        &self,
        id: JobId,
        owner: &str,
        state: JobState,
        failure: Option<(&str, i64)>,
        end: AttemptEnd<'_>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let finished = (state != JobState::Queued).then_some(now);
        let (error, next) = failure.map_or((None, now), |(e, next)| (Some(e.to_owned()), next));
        let mut tx = self.begin().await?;
        if let Some(d) = end.delivery {
            insert_delivery(&mut tx, id, d).await?;
        }
        let updated = sqlx::query(
            "UPDATE jobs SET state = $1, next_attempt_at = $2, finished_at = $3, last_error = $4,
                             timings = $5, analysis = COALESCE($6, analysis), lease_owner = NULL,
                             lease_expires_at = NULL, updated_at = $7
             WHERE id = $8 AND lease_owner = $9 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(next)
        .bind(finished)
        .bind(error)
        .bind(to_json(end.timings))
        .bind(end.analysis.map(to_json))
        .bind(now)
        .bind(id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(&e))?
        .rows_affected();
        tx.commit().await.map_err(|e| db_error(&e))?;
        if updated == 0 {
            return Err(StoreError::LeaseLost(id));
        }
        if state != JobState::Queued
            && let Some((count, _)) = lock(&self.backlog).as_mut()
        {
            *count = count.saturating_sub(1);
        }
        Ok(())
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(|e| db_error(&e))
    }

    /// Runs a lease-guarded update: no row changed means the owner lost the lease.
    async fn owned_update(
        &self,
        id: JobId,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<(), StoreError> {
        let n = query
            .execute(&self.pool)
            .await
            .map_err(|e| db_error(&e))?
            .rows_affected();
        match n {
            0 => Err(StoreError::LeaseLost(id)),
            _ => Ok(()),
        }
    }

    /// Claims the first job `picker` selects (locked, skipping rows other replicas hold).
    async fn claim_where(
        &self,
        picker: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let now = self.now();
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = $2,
                             attempts = attempts + 1, updated_at = $3
             WHERE id = ({picker} LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING id, source, CAST(attempts AS BIGINT) AS attempts, payload, analysis, timings"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(now + duration_ms(lease))
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error(&e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id = crate::rows::parse_id(&row)?;
        claimed(&row, self.deliveries(id).await?).map(Some)
    }
}

async fn insert_delivery(
    tx: &mut Transaction<'static, Postgres>,
    id: JobId,
    d: &DeliveryRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO deliveries (job_id, sink, delivered_at, detail) VALUES ($1, $2, $3, $4)
         ON CONFLICT (job_id, sink) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(&d.sink)
    .bind(millis(d.delivered_at))
    .bind(&d.detail)
    .execute(&mut **tx)
    .await
    .map_err(|e| db_error(&e))
    .map(drop)
}

#[async_trait]
impl Store for PgStore {
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>, StoreError> {
        let stopped = || StoreError::Unavailable("the store's batcher has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { jobs, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn claim(&self, owner: &str, lease: Duration) -> Result<Option<ClaimedJob>, StoreError> {
        // Abandoned jobs (expired leases) first, then the queued job that has been due longest. The
        // placeholder $3 is "now".
        let expired = "SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at <= $3 ORDER BY lease_expires_at";
        if let Some(job) = self.claim_where(expired, owner, lease).await? {
            return Ok(Some(job));
        }
        let due = "SELECT id FROM jobs WHERE state = 'queued' AND next_attempt_at <= $3 ORDER BY next_attempt_at";
        self.claim_where(due, owner, lease).await
    }

    async fn extend_lease(
        &self,
        id: JobId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
        )
        .bind(self.now() + duration_ms(lease))
        .bind(id.to_string())
        .bind(owner.to_owned());
        self.owned_update(id, query).await
    }

    async fn record_delivery(
        &self,
        id: JobId,
        delivery: &DeliveryRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_delivery(&mut tx, id, delivery).await?;
        tx.commit().await.map_err(|e| db_error(&e))
    }

    async fn complete(
        &self,
        id: JobId,
        owner: &str,
        end: AttemptEnd<'_>,
    ) -> Result<(), StoreError> {
        self.end_attempt(id, owner, JobState::Done, None, end).await
    }

    async fn fail(
        &self,
        id: JobId,
        owner: &str,
        error: &str,
        end: AttemptEnd<'_>,
        retry_at: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let (state, next) = match retry_at {
            Some(at) => (JobState::Queued, millis(at)),
            None => (JobState::Dead, self.now()),
        };
        self.end_attempt(id, owner, state, Some((error, next)), end)
            .await?;
        if state == JobState::Queued {
            self.work.notify_one();
        }
        Ok(())
    }

    async fn release(&self, id: JobId, owner: &str) -> Result<(), StoreError> {
        let now = self.now();
        let query = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, next_attempt_at = $1,
                             lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(owner.to_owned());
        self.owned_update(id, query).await?;
        self.work.notify_one();
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error(&e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut job = record(&row, self.deliveries(id).await?)?;
        let rows = sqlx::query(
            "SELECT verdict, user_name, at FROM feedback WHERE job_id = $1 ORDER BY at, ctid",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        job.feedback = rows.iter().map(feedback).collect::<Result<_, _>>()?;
        Ok(Some(job))
    }

    async fn resolutions(
        &self,
        group_key: &str,
        until: JobId,
        limit: u32,
    ) -> Result<Vec<Resolution>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.created_at AS resolved_at,
               (SELECT MIN(f.created_at) FROM jobs f
                 WHERE f.group_key = r.group_key AND f.status = 'firing' AND f.source = 'webhook'
                   AND f.created_at > r.created_at AND f.created_at <= u.created_at) AS refired_at
             FROM jobs r, (SELECT created_at FROM jobs WHERE id = $2) u
             WHERE r.group_key = $1 AND r.status = 'resolved' AND r.source = 'webhook'
               AND r.created_at < u.created_at
             ORDER BY r.created_at DESC LIMIT $3",
        )
        .bind(group_key)
        .bind(until.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        rows.iter().map(resolution).collect()
    }

    async fn last_analyzed(
        &self,
        group_key: &str,
        until: JobId,
    ) -> Result<Option<JobId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM jobs
             WHERE group_key = $1 AND status = 'firing' AND source = 'webhook'
               AND analysis IS NOT NULL
               AND created_at < (SELECT created_at FROM jobs WHERE id = $2)
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(group_key)
        .bind(until.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        id.as_deref().map(crate::rows::job_id).transpose()
    }

    async fn judged(&self, limit: u32) -> Result<Vec<JobId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT job_id FROM feedback GROUP BY job_id ORDER BY MAX(at) DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        ids.iter().map(|id| crate::rows::job_id(id)).collect()
    }

    async fn add_feedback(&self, id: JobId, given: &Feedback) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO feedback (job_id, verdict, user_name, at)
             SELECT id, $2, $3, $4 FROM jobs WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(given.verdict.as_str())
        .bind(&given.user)
        .bind(millis(given.at))
        .execute(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        match inserted.rows_affected() {
            0 => Err(StoreError::NotFound(id)),
            _ => Ok(()),
        }
    }

    async fn counts(&self) -> Result<QueueCounts, StoreError> {
        let now = self.now();
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'queued') AS queued,
                    (SELECT COUNT(*) FROM jobs WHERE state = 'running') AS running,
                    (SELECT COUNT(*) FROM jobs WHERE state = 'done' AND finished_at IS NOT NULL) AS done,
                    (SELECT COUNT(*) FROM jobs WHERE state = 'dead' AND finished_at IS NOT NULL) AS dead,
                    (SELECT MIN(created_at) FROM jobs WHERE state = 'queued') AS oldest,
                    (SELECT COUNT(*) FROM jobs WHERE state IN ('done', 'dead') AND finished_at >= $1) AS finished",
        )
        .bind(now - 60_000)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        let dead = sqlx::query(RECENT_DEAD_SQL)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error(&e))?;
        queue_counts(&row, now, &dead)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| db_error(&e))?;
        if self.tx.is_closed() {
            return Err(StoreError::Unavailable(
                "the store's batcher has stopped".into(),
            ));
        }
        // Writes failed lately (a full disk): a write of its own tells whether they work again.
        if self.health.failure().is_some() {
            match sqlx::query(PROBE_SQL).execute(&self.pool).await {
                Ok(_) => self.health.worked(),
                Err(e) => self.health.failed(&db_error(&e)),
            }
        }
        self.health.failure().map_or(Ok(()), Err)
    }

    async fn purge_expired(&self) -> Result<(), StoreError> {
        Maintenance {
            pool: self.pool.clone(),
            clock: self.clock.clone(),
            dedup_ttl_ms: self.dedup_ttl_ms,
            retention_ms: self.retention_ms,
        }
        .purge()
        .await
    }

    async fn wait_for_work(&self, max: Duration) {
        // Jobs another replica enqueued are found by the next poll.
        let _ = tokio::time::timeout(max, self.work.notified()).await;
    }
}

#[async_trait]
impl Threads for PgStore {
    async fn thread(&self, group_key: &str, sink: &str) -> Result<Option<Thread>, StoreError> {
        let row = sqlx::query(
            "SELECT channel, ts, resolved_at FROM threads WHERE group_key = $1 AND sink = $2 AND closed_at IS NULL",
        )
        .bind(group_key)
        .bind(sink)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        row.as_ref().map(thread_of).transpose()
    }

    async fn save_thread(
        &self,
        group_key: &str,
        sink: &str,
        thread: &Thread,
    ) -> Result<Thread, StoreError> {
        sqlx::query(
            "INSERT INTO threads (group_key, sink, channel, ts, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (group_key, sink) WHERE closed_at IS NULL DO NOTHING",
        )
        .bind(group_key)
        .bind(sink)
        .bind(&thread.channel)
        .bind(&thread.ts)
        .bind(self.now())
        .execute(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        // Committed: whichever record won (this one, or another replica's) is the one to read.
        self.thread(group_key, sink)
            .await?
            .ok_or_else(|| StoreError::Unavailable("the thread record vanished".into()))
    }

    async fn save_root(&self, group_key: &str, sink: &str, body: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE threads SET root = $3 WHERE group_key = $1 AND sink = $2 AND closed_at IS NULL",
        )
        .bind(group_key)
        .bind(sink)
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error(&e))
        .map(drop)
    }

    async fn root(&self, group_key: &str, sink: &str) -> Result<Option<String>, StoreError> {
        let root: Option<Option<String>> = sqlx::query_scalar(
            "SELECT root FROM threads WHERE group_key = $1 AND sink = $2 AND closed_at IS NULL",
        )
        .bind(group_key)
        .bind(sink)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error(&e))?;
        Ok(root.flatten())
    }

    async fn set_resolved(
        &self,
        group_key: &str,
        sink: &str,
        resolved: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE threads SET resolved_at = $3 WHERE group_key = $1 AND sink = $2 AND closed_at IS NULL",
        )
        .bind(group_key)
        .bind(sink)
        .bind(resolved.then(|| self.now()))
        .execute(&self.pool)
        .await
        .map_err(|e| db_error(&e))
        .map(drop)
    }

    async fn close_thread(&self, group_key: &str, sink: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE threads SET closed_at = $3 WHERE group_key = $1 AND sink = $2 AND closed_at IS NULL",
        )
        .bind(group_key)
        .bind(sink)
        .bind(self.now())
        .execute(&self.pool)
        .await
        .map_err(|e| db_error(&e))
        .map(drop)
    }
}

#[async_trait]
impl Ledger for PgStore {
    async fn book(&self, day: i64, usd: f64) -> Result<f64, StoreError> {
        // One statement: replicas booking at once each read back a total that holds their own.
        sqlx::query_scalar::<_, f64>(
            "INSERT INTO llm_spend (day, usd) VALUES ($1, $2)
             ON CONFLICT (day) DO UPDATE SET usd = llm_spend.usd + EXCLUDED.usd
             RETURNING usd",
        )
        .bind(day)
        .bind(usd)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error(&e))
    }
}

/// Group commit of webhooks: one transaction for every enqueue waiting at that moment.
struct Batcher {
    pool: PgPool,
    /// Shared by the batchers: one collects a batch while another writes its own.
    rx: tokio::sync::Mutex<mpsc::Receiver<Request>>,
    clock: Arc<dyn Clock>,
    work: Arc<Notify>,
    dedup_ttl_ms: i64,
    max_queued: u64,
    max_batch: usize,
    backlog: Backlog,
    /// A background recount is under way.
    recounting: std::sync::atomic::AtomicBool,
    health: Arc<WriteHealth>,
}

impl Batcher {
    async fn run(self: Arc<Self>) {
        loop {
            let batch = {
                let mut rx = self.rx.lock().await;
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < self.max_batch {
                    match rx.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                batch
            };
            let (jobs, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|r| (r.jobs, r.reply)).unzip();
            let mut result = self.write(&jobs).await;
            for _ in 0..BATCH_RETRIES {
                match &result {
                    Err(e) if retry_batch(e) => result = self.write(&jobs).await,
                    _ => break,
                }
            }
            match result {
                Ok(outcomes) => {
                    self.health.worked();
                    let created = outcomes
                        .iter()
                        .flatten()
                        .flatten()
                        .filter(|o| matches!(o, EnqueueOutcome::Created(_)))
                        .count() as u64;
                    if created > 0 {
                        if let Some((count, _)) = self.lock_backlog().as_mut() {
                            *count += created;
                        }
                        self.work.notify_waiters();
                    }
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Err(e) => {
                    *self.lock_backlog() = None;
                    let error = db_error(&e);
                    self.health.failed(&error);
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// The batch in one transaction: the backlog check, the dedup keys, the jobs.
    async fn write(
        self: &Arc<Self>,
        requests: &[Vec<NewJob>],
    ) -> Result<Vec<EnqueueReply>, sqlx::Error> {
        let backlog = self.backlog().await?;
        let mut tx = self.pool.begin().await?;
        let (admitted, jobs, backlog) = admit(requests, backlog, self.max_queued);
        let mut plan = Enqueue::plan(&jobs);
        // Sorted by key: every replica locks keys in the same order.
        plan.jobs.sort_by(|a, b| a.dedup_key.cmp(&b.dedup_key));
        let now = millis(self.clock.now());
        let (keys, key_ids): (Vec<&str>, Vec<String>) = plan
            .jobs
            .iter()
            .filter_map(|j| Some((j.dedup_key.as_deref()?, j.id.to_string())))
            .unzip();
        // The keys this batch took: new, or their row had expired. The statement answers them, so
        // that inserting the jobs needs no look-up of `dedup` (as a subquery, PostgreSQL planned it
        // as a scan of the whole table while the table had no statistics yet, for a fresh database's
        // first minute).
        let mut taken = HashSet::new();
        if !keys.is_empty() {
            taken = sqlx::query_scalar::<_, String>(
                "INSERT INTO dedup (key, job_id, received_at, purge_at)
                 SELECT k, j, $3, $3 FROM UNNEST($1::text[], $2::text[]) AS t(k, j)
                 ON CONFLICT (key) DO UPDATE SET job_id = EXCLUDED.job_id, received_at = EXCLUDED.received_at,
                                                 purge_at = EXCLUDED.purge_at
                 WHERE dedup.received_at < $4
                 RETURNING key",
            )
            .bind(&keys)
            .bind(&key_ids)
            .bind(now)
            .bind(now - self.dedup_ttl_ms)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        }
        let (new, held): (Vec<&NewJob>, Vec<&NewJob>) = plan
            .jobs
            .iter()
            .partition(|j| j.dedup_key.as_ref().is_none_or(|k| taken.contains(k)));
        if !new.is_empty() {
            let column = |f: fn(&NewJob) -> String| new.iter().map(|j| f(j)).collect::<Vec<_>>();
            sqlx::query(
                "INSERT INTO jobs (id, source, state, group_key, status, alertname, payload,
                                   dedup_key, next_attempt_at, created_at, updated_at)
                 SELECT id, source, 'queued', group_key, status, alertname, payload, dedup_key, $8, $8, $8
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                      AS incoming(id, source, group_key, status, alertname, payload, dedup_key)",
            )
            .bind(column(|j| j.id.to_string()))
            .bind(column(|j| j.source.as_str().to_owned()))
            .bind(column(|j| j.group_key.clone()))
            .bind(column(|j| j.status.as_str().to_owned()))
            .bind(column(|j| j.alertname.clone()))
            .bind(column(|j| j.payload.clone()))
            .bind(new.iter().map(|j| j.dedup_key.clone()).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // The jobs whose key is held: which jobs hold them (a statement of its own, so that it sees a
        // key another replica committed meanwhile).
        let mut holders = HashMap::new();
        if !held.is_empty() {
            let held_keys: Vec<&str> = held.iter().filter_map(|j| j.dedup_key.as_deref()).collect();
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT key, job_id FROM dedup WHERE key = ANY($1)")
                    .bind(&held_keys)
                    .fetch_all(&mut *tx)
                    .await?;
            for (key, holder) in rows {
                let holder = holder
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                holders.insert(key, holder);
            }
            // A key held a moment ago whose row is gone (expired and purged in between): the batch
            // fails as a whole (503), and the sender's retry takes the key.
            if held_keys.iter().any(|k| !holders.contains_key(*k)) {
                return Err(sqlx::Error::RowNotFound);
            }
        }
        tx.commit().await?;
        Ok(outcomes(
            requests,
            &admitted,
            &plan.duplicates(&holders),
            backlog,
        ))
    }
}

impl Batcher {
    fn lock_backlog(&self) -> std::sync::MutexGuard<'_, Option<(u64, std::time::Instant)>> {
        lock(&self.backlog)
    }

    /// Jobs queued or running (see [`BACKLOG_REFRESH`]). A stale count is recounted in the
    /// background, so no batch waits for the count; only the first batch does.
    async fn backlog(self: &Arc<Self>) -> Result<u64, sqlx::Error> {
        let cached = *self.lock_backlog();
        match cached {
            Some((count, at)) if at.elapsed() < BACKLOG_REFRESH => Ok(count),
            Some((count, _)) => {
                if !self
                    .recounting
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.recount().await {
                            tracing::warn!(error = %e, "cannot count the backlog");
                        }
                        me.recounting
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                    });
                }
                Ok(count)
            }
            None => self.recount().await,
        }
    }

    async fn recount(&self) -> Result<u64, sqlx::Error> {
        let counted_at = std::time::Instant::now();
        let count: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'queued')
                  + (SELECT COUNT(*) FROM jobs WHERE state = 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        let count = u64::try_from(count).unwrap_or_default();
        *self.lock_backlog() = Some((count, counted_at));
        Ok(count)
    }
}

/// A deadlock or a serialization failure: the transaction rolled back and can simply run again.
fn retry_batch(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Deletes expired dedup keys, finished jobs past retention and old threads, in slices.
struct Maintenance {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    dedup_ttl_ms: i64,
    retention_ms: i64,
}

impl Maintenance {
    async fn purge(&self) -> Result<(), StoreError> {
        let now = millis(self.clock.now());
        self.in_slices(
            "DELETE FROM dedup WHERE key IN (SELECT key FROM dedup WHERE purge_at < $1 LIMIT 5000)",
            now - self.dedup_ttl_ms,
        )
        .await?;
        if self.retention_ms > 0 {
            let before = now - self.retention_ms;
            self.in_slices(
                "WITH old AS (SELECT id FROM jobs WHERE state IN ('done', 'dead') AND finished_at < $1
                              ORDER BY finished_at LIMIT 5000),
                      gone AS (DELETE FROM deliveries WHERE job_id IN (SELECT id FROM old)),
                      judged AS (DELETE FROM feedback WHERE job_id IN (SELECT id FROM old))
                 DELETE FROM jobs WHERE id IN (SELECT id FROM old)",
                before,
            )
            .await?;
            self.in_slices(
                "DELETE FROM threads WHERE ctid IN (SELECT ctid FROM threads WHERE created_at < $1 LIMIT 5000)",
                before,
            )
            .await?;
        }
        Ok(())
    }

    /// Runs the statement again while it deletes a whole slice; at most 100 times.
    async fn in_slices(&self, sql: &'static str, before: i64) -> Result<(), StoreError> {
        for _ in 0..100 {
            let n = sqlx::query(sql)
                .bind(before)
                .execute(&self.pool)
                .await
                .map_err(|e| db_error(&e))?
                .rows_affected();
            if n < PURGE_SLICE {
                break;
            }
        }
        Ok(())
    }
}
