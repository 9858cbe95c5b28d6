//! The SQLite backend. Every write goes through the group-commit writer on one connection (SQLite has
//! one writer anyway; it is driven in-thread with rusqlite, see `writer`); a small sqlx read pool
//! serves the API. The writer commits in WAL mode and a sync
//! thread fsyncs the WAL before any answer goes out, so every answered write is durable.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aiops_model::{
    AttemptEnd, ClaimedJob, Clock, DeliveryRecord, EnqueueOutcome, Feedback, JobId, JobRecord,
    JobState, Ledger, NewJob, QueueCounts, Resolution, Store, StoreError, Thread, Threads,
};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::StoreConfig;
use crate::dedup::DedupKeys;
use crate::health::{PROBE_SQL, WriteHealth};
use crate::rows::{
    JOB_COLUMNS, RECENT_DEAD_SQL, claimed_job, delivery, duration_ms, feedback, queue_counts,
    record, resolution, secs_to_ms, thread_of, to_json,
};
pub(crate) use crate::rows::{db_error, millis};
use crate::wal_sync::WalSync;
use crate::writer::{Op, Statement, WriteQuery, Writer};

/// Enqueue requests waiting for the writer beyond this make callers wait (backpressure).
const WRITER_CHANNEL: usize = 8192;
const READ_CONNECTIONS: u32 = 4;

/// SQLite's WAL file for the database at `path`.
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// Ends a running attempt: the lease-guarded update of [`SqliteStore::end_attempt`].
const END_ATTEMPT: &str = "UPDATE jobs SET state = ?1, next_attempt_at = ?2, finished_at = ?3,
                     last_error = ?4, timings = ?5, analysis = COALESCE(?6, analysis),
                     lease_owner = NULL, lease_expires_at = NULL, updated_at = ?7
     WHERE id = ?8 AND lease_owner = ?9 AND state = 'running'";

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    read: SqlitePool,
    tx: mpsc::Sender<Op>,
    clock: Arc<dyn Clock>,
    work: Arc<Notify>,
    maintenance: Maintenance,
    /// Whether the writer's last write worked.
    health: Arc<WriteHealth>,
    /// Background tasks (maintenance), stopped with the store.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl SqliteStore {
    /// Opens (creating it if needed) and migrates the database at `path`.
    pub async fn open(
        path: &Path,
        config: &StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            // 2 MiB of page cache per connection (SQLite's default): the hot index pages of the queue
            // fit, ingest measured the same as with 8 MiB, and memory stays flat as the database grows.
            .pragma("cache_size", "-2048")
            // Statement journals of the multi-row upserts stay in memory instead of temp files that
            // would be created and unlinked on every batch.
            .pragma("temp_store", "memory");
        // The writer's connection, open before the migrations so that the WAL stays (SQLite removes
        // it when the last connection closes).
        let write = open_writer(path)?;
        let mut migrate = SqliteConnection::connect_with(&options).await?;
        crate::migrator().run(&mut migrate).await?;
        migrate.close().await?;
        // Reading the schema makes sure the WAL file exists for the sync thread to open.
        write.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            // Readers look up single jobs and count index ranges: 2 MiB of cache each is plenty, and
            // it bounds the process' memory as the database grows (page caches fill up to their size).
            .connect_with(options.read_only(true).pragma("cache_size", "-2048"))
            .await?;

        let keys = DedupKeys::load(&write)?;
        let work = Arc::new(Notify::new());
        let health = Arc::new(WriteHealth::default());
        let (tx, rx) = mpsc::channel(WRITER_CHANNEL);
        let writer = Writer {
            conn: write,
            rx,
            clock: clock.clone(),
            dedup_ttl_ms: secs_to_ms(config.dedup_ttl_secs),
            max_queued: config.max_queued,
            max_batch: config.max_batch,
            wal: WalSync::start(wal_path(path), work.clone())?,
            backlog: None,
            keys,
            health: health.clone(),
        };
        // The writer runs on a thread of its own, so that no pipeline stage busy on the shared runtime
        // ever delays a commit, and ingest's latency does not depend on what the workers are doing.
        std::thread::Builder::new()
            .name("aiops-writer".into())
            .spawn(move || writer.run())?;
        let maintenance = Maintenance {
            tx: tx.clone(),
            clock: clock.clone(),
            dedup_ttl_ms: secs_to_ms(config.dedup_ttl_secs),
            retention_ms: secs_to_ms(config.retention_days.saturating_mul(86_400)),
        };
        let tasks = vec![tokio::spawn({
            let maintenance = maintenance.clone();
            async move { crate::purge_every_minute(|| maintenance.purge()).await }
        })];
        Ok(Self {
            read,
            maintenance,
            tx,
            clock,
            work,
            health,
            tasks,
        })
    }

    fn now(&self) -> i64 {
        millis(self.clock.now())
    }

    /// Ends a running attempt in `state`: done, queued again (with the error and the next attempt's
    /// time) or dead (with the error). Keeps the attempt's analysis and records its last delivery.
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
        // The delivery the attempt's end carries is recorded in the same transaction, before the
        // lease-guarded update, whose row count decides; the delivery is recorded even when the lease
        // was lost: it happened.
        let mut queries: Vec<WriteQuery> = end
            .delivery
            .map(|d| insert_delivery(id, d))
            .into_iter()
            .collect();
        let update = WriteQuery::new(END_ATTEMPT)
            .bind(state.as_str().to_owned())
            .bind(next)
            .bind(finished)
            .bind(error)
            .bind(to_json(end.timings))
            .bind(end.analysis.map(to_json))
            .bind(now)
            .bind(id.to_string())
            .bind(owner.to_owned());
        queries.push(update);
        let ends_job = state != JobState::Queued;
        self.owned_update(id, queries, ends_job).await
    }

    /// Hands an operation to the writer and waits for its committed answer.
    async fn submit<T>(
        &self,
        op: Op,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let stopped =
            || StoreError::Unavailable("the write failed or the store's writer has stopped".into());
        self.tx.send(op).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs the statements in one transaction; answers the rows the last one affected. `ends_job`:
    /// a row changed by the last one is a job that ended (see [`Statement::Execute`]).
    async fn execute(&self, queries: Vec<WriteQuery>, ends_job: bool) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let statement = Statement::Execute {
            queries,
            reply,
            ends_job,
        };
        self.submit(Op::Statement(statement), answer).await
    }

    /// Runs a lease-guarded update, last (after the statements that go with it): no row changed
    /// means the owner lost the lease.
    async fn owned_update(
        &self,
        id: JobId,
        queries: Vec<WriteQuery>,
        ends_job: bool,
    ) -> Result<(), StoreError> {
        match self.execute(queries, ends_job).await? {
            0 => Err(StoreError::LeaseLost(id)),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Op::Enqueue { jobs, reply }, answer).await
    }

    async fn claim(&self, owner: &str, lease: Duration) -> Result<Option<ClaimedJob>, StoreError> {
        let now = self.now();
        // Two index searches, not one OR: an OR makes SQLite collect and sort every due job.
        // Abandoned jobs (expired leases) go first; then the queued job that has been due longest.
        let query = WriteQuery::new(
            "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_expires_at = ?2,
                             attempts = attempts + 1, updated_at = ?3
             WHERE id = COALESCE(
                 (SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at <= ?3 LIMIT 1),
                 (SELECT id FROM jobs WHERE state = 'queued' AND next_attempt_at <= ?3
                  ORDER BY next_attempt_at LIMIT 1))
             RETURNING id, source, attempts, payload, analysis, timings",
        )
        .bind(owner.to_owned())
        .bind(now + duration_ms(lease))
        .bind(now);
        let (reply, answer) = oneshot::channel();
        let row = self
            .submit(Op::Statement(Statement::Claim { query, reply }), answer)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: JobId = crate::rows::job_id(&row.id)?;
        let deliveries = self.deliveries(id).await?;
        claimed_job(
            id,
            &row.source,
            row.attempts,
            row.payload,
            row.analysis.as_deref(),
            &row.timings,
            deliveries,
        )
        .map(Some)
    }

    async fn extend_lease(
        &self,
        id: JobId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let until = self.now() + duration_ms(lease);
        let query = WriteQuery::new(
            "UPDATE jobs SET lease_expires_at = ?1 WHERE id = ?2 AND lease_owner = ?3 AND state = 'running'",
        )
        .bind(until)
        .bind(id.to_string())
        .bind(owner.to_owned());
        self.owned_update(id, vec![query], false).await
    }

    async fn record_delivery(
        &self,
        id: JobId,
        delivery: &DeliveryRecord,
    ) -> Result<(), StoreError> {
        // Not lease-guarded: the delivery happened, and recording it is what keeps the next owner from
        // posting again.
        self.execute(vec![insert_delivery(id, delivery)], false)
            .await
            .map(drop)
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
            .await
    }

    async fn release(&self, id: JobId, owner: &str) -> Result<(), StoreError> {
        let now = self.now();
        let query = WriteQuery::new(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, next_attempt_at = ?1,
                             lease_owner = NULL, lease_expires_at = NULL, updated_at = ?1
             WHERE id = ?2 AND lease_owner = ?3 AND state = 'running'",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(owner.to_owned());
        self.owned_update(id, vec![query], false).await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(|e| db_error(&e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut job = record(&row, self.deliveries(id).await?)?;
        let rows = sqlx::query(
            "SELECT verdict, user_name, at FROM feedback WHERE job_id = ?1 ORDER BY at, rowid",
        )
        .bind(id.to_string())
        .fetch_all(&self.read)
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
             FROM jobs r, (SELECT created_at FROM jobs WHERE id = ?2) u
             WHERE r.group_key = ?1 AND r.status = 'resolved' AND r.source = 'webhook'
               AND r.created_at < u.created_at
             ORDER BY r.created_at DESC LIMIT ?3",
        )
        .bind(group_key.to_owned())
        .bind(until.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
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
             WHERE group_key = ?1 AND status = 'firing' AND source = 'webhook'
               AND analysis IS NOT NULL
               AND created_at < (SELECT created_at FROM jobs WHERE id = ?2)
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(group_key.to_owned())
        .bind(until.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_error(&e))?;
        id.as_deref().map(crate::rows::job_id).transpose()
    }

    async fn judged(&self, limit: u32) -> Result<Vec<JobId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT job_id FROM feedback GROUP BY job_id ORDER BY MAX(at) DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_error(&e))?;
        ids.iter().map(|id| crate::rows::job_id(id)).collect()
    }

    async fn add_feedback(&self, id: JobId, given: &Feedback) -> Result<(), StoreError> {
        let insert = WriteQuery::new(
            "INSERT INTO feedback (job_id, verdict, user_name, at)
             SELECT id, ?2, ?3, ?4 FROM jobs WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(given.verdict.as_str().to_owned())
        .bind(given.user.clone())
        .bind(millis(given.at));
        match self.execute(vec![insert], false).await? {
            0 => Err(StoreError::NotFound(id)),
            _ => Ok(()),
        }
    }

    async fn counts(&self) -> Result<QueueCounts, StoreError> {
        let now = self.now();
        // One index search per figure; no scan of the history.
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'queued') AS queued,
                    (SELECT COUNT(*) FROM jobs WHERE state = 'running') AS running,
                    (SELECT COUNT(*) FROM jobs WHERE state = 'done' AND finished_at IS NOT NULL) AS done,
                    (SELECT COUNT(*) FROM jobs WHERE state = 'dead' AND finished_at IS NOT NULL) AS dead,
                    (SELECT MIN(created_at) FROM jobs WHERE state = 'queued') AS oldest,
                    (SELECT COUNT(*) FROM jobs WHERE state = 'done' AND finished_at >= ?1)
                  + (SELECT COUNT(*) FROM jobs WHERE state = 'dead' AND finished_at >= ?1) AS finished",
        )
        .bind(now - 60_000)
        .fetch_one(&self.read)
        .await
        .map_err(|e| db_error(&e))?;
        let dead = sqlx::query(RECENT_DEAD_SQL)
            .fetch_all(&self.read)
            .await
            .map_err(|e| db_error(&e))?;
        queue_counts(&row, now, &dead)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(|e| db_error(&e))?;
        if self.tx.is_closed() {
            return Err(StoreError::Unavailable(
                "the store's writer has stopped".into(),
            ));
        }
        // Writes failed lately (a full disk): a write of its own tells whether they work again.
        if self.health.failure().is_some() {
            let _ = self.execute(vec![WriteQuery::new(PROBE_SQL)], false).await;
        }
        self.health.failure().map_or(Ok(()), Err)
    }

    async fn purge_expired(&self) -> Result<(), StoreError> {
        self.maintenance.purge().await
    }

    async fn wait_for_work(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.work.notified()).await;
    }
}

#[async_trait]
impl Threads for SqliteStore {
    async fn thread(&self, group_key: &str, sink: &str) -> Result<Option<Thread>, StoreError> {
        let row = sqlx::query("SELECT channel, ts, resolved_at FROM threads WHERE group_key = ?1 AND sink = ?2 AND closed_at IS NULL")
            .bind(group_key.to_owned())
            .bind(sink.to_owned())
            .fetch_optional(&self.read)
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
        let insert = WriteQuery::new(
            "INSERT INTO threads (group_key, sink, channel, ts, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (group_key, sink) WHERE closed_at IS NULL DO NOTHING",
        )
        .bind(group_key.to_owned())
        .bind(sink.to_owned())
        .bind(thread.channel.clone())
        .bind(thread.ts.clone())
        .bind(self.now());
        self.execute(vec![insert], false).await?;
        // Committed (and fsynced) before the answer: the reader sees whichever record won.
        self.thread(group_key, sink)
            .await?
            .ok_or_else(|| StoreError::Unavailable("the thread record vanished".into()))
    }

    async fn save_root(&self, group_key: &str, sink: &str, body: &str) -> Result<(), StoreError> {
        let save = WriteQuery::new(
            "UPDATE threads SET root = ?3 WHERE group_key = ?1 AND sink = ?2 AND closed_at IS NULL",
        )
        .bind(group_key.to_owned())
        .bind(sink.to_owned())
        .bind(body.to_owned());
        self.execute(vec![save], false).await.map(drop)
    }

    async fn root(&self, group_key: &str, sink: &str) -> Result<Option<String>, StoreError> {
        let root: Option<Option<String>> = sqlx::query_scalar(
            "SELECT root FROM threads WHERE group_key = ?1 AND sink = ?2 AND closed_at IS NULL",
        )
        .bind(group_key.to_owned())
        .bind(sink.to_owned())
        .fetch_optional(&self.read)
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
        let set = WriteQuery::new(
            "UPDATE threads SET resolved_at = ?3 WHERE group_key = ?1 AND sink = ?2 AND closed_at IS NULL",
        )
        .bind(group_key.to_owned())
        .bind(sink.to_owned())
        .bind(resolved.then(|| self.now()));
        self.execute(vec![set], false).await.map(drop)
    }

    async fn close_thread(&self, group_key: &str, sink: &str) -> Result<(), StoreError> {
        let close = WriteQuery::new(
            "UPDATE threads SET closed_at = ?3 WHERE group_key = ?1 AND sink = ?2 AND closed_at IS NULL",
        )
        .bind(group_key.to_owned())
        .bind(sink.to_owned())
        .bind(self.now());
        self.execute(vec![close], false).await.map(drop)
    }
}

impl SqliteStore {
    async fn deliveries(&self, id: JobId) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query("SELECT sink, delivered_at, detail FROM deliveries WHERE job_id = ?1 ORDER BY delivered_at")
            .bind(id.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(|e| db_error(&e))?;
        rows.iter().map(delivery).collect()
    }
}

fn insert_delivery(id: JobId, delivery: &DeliveryRecord) -> WriteQuery {
    WriteQuery::new(
        "INSERT INTO deliveries (job_id, sink, delivered_at, detail) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (job_id, sink) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(delivery.sink.clone())
    .bind(millis(delivery.delivered_at))
    .bind(delivery.detail.clone())
}

/// Rows deleted per maintenance statement, so that no purge holds the write lock for long.
const PURGE_SLICE: u64 = 5000;

/// Deletes expired dedup keys and finished jobs past retention, through the writer, in slices of
/// [`PURGE_SLICE`] rows, so that no purge holds the write lock for long.
#[derive(Debug, Clone)]
struct Maintenance {
    tx: mpsc::Sender<Op>,
    clock: Arc<dyn Clock>,
    dedup_ttl_ms: i64,
    /// 0 keeps finished jobs forever.
    retention_ms: i64,
}

impl Maintenance {
    /// Purges once: expired dedup keys, then finished jobs and threads past retention.
    async fn purge(&self) -> Result<(), StoreError> {
        let now = millis(self.clock.now());
        let dedup_before = now - self.dedup_ttl_ms;
        self.in_slices(|| {
            vec![
                WriteQuery::new(
                    "DELETE FROM dedup WHERE key IN
                     (SELECT key FROM dedup WHERE purge_at < ?1 LIMIT 5000)",
                )
                .bind(dedup_before),
            ]
        })
        .await?;
        if self.retention_ms > 0 {
            let before = now - self.retention_ms;
            for state in ["done", "dead"] {
                // The same slice of jobs (the oldest, in index order) loses its deliveries, then
                // itself; the second statement's count decides whether another slice follows.
                self.in_slices(|| {
                    vec![
                        WriteQuery::new(
                            "DELETE FROM deliveries WHERE job_id IN (SELECT id FROM jobs
                             WHERE state = ?1 AND finished_at < ?2 ORDER BY finished_at LIMIT 5000)",
                        )
                        .bind(state.to_owned())
                        .bind(before),
                        WriteQuery::new(
                            "DELETE FROM feedback WHERE job_id IN (SELECT id FROM jobs
                             WHERE state = ?1 AND finished_at < ?2 ORDER BY finished_at LIMIT 5000)",
                        )
                        .bind(state.to_owned())
                        .bind(before),
                        WriteQuery::new(
                            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
                             WHERE state = ?1 AND finished_at < ?2 ORDER BY finished_at LIMIT 5000)",
                        )
                        .bind(state.to_owned())
                        .bind(before),
                    ]
                })
                .await?;
            }
            // Incident threads older than the history: a group firing again starts a new one.
            self.in_slices(|| {
                vec![
                    WriteQuery::new(
                        "DELETE FROM threads WHERE rowid IN
                         (SELECT rowid FROM threads WHERE created_at < ?1 LIMIT 5000)",
                    )
                    .bind(before),
                ]
            })
            .await?;
        }
        Ok(())
    }

    /// Runs the statements again while their last one deletes a whole slice; at most 100 times.
    async fn in_slices(&self, statements: impl Fn() -> Vec<WriteQuery>) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("the store's writer has stopped".into());
        for _ in 0..100 {
            let (reply, answer) = oneshot::channel();
            let op = Op::Statement(Statement::Execute {
                queries: statements(),
                reply,
                ends_job: false,
            });
            self.tx.send(op).await.map_err(|_| stopped())?;
            if answer.await.map_err(|_| stopped())?? < PURGE_SLICE {
                break;
            }
        }
        Ok(())
    }
}

/// Opens the writer's connection: WAL, commits without fsync (the sync thread fsyncs the WAL before
/// any answer goes out), and the same cache and temp settings as the readers.
fn open_writer(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -2048;
         PRAGMA temp_store = memory;",
    )?;
    // Every statement the writer runs stays prepared.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[async_trait]
impl Ledger for SqliteStore {
    async fn book(&self, day: i64, usd: f64) -> Result<f64, StoreError> {
        let upsert = WriteQuery::new(
            "INSERT INTO llm_spend (day, usd) VALUES (?1, ?2)
             ON CONFLICT (day) DO UPDATE SET usd = llm_spend.usd + excluded.usd",
        )
        .bind(day)
        .bind(usd);
        self.execute(vec![upsert], false).await?;
        // One process writes this database, through the one writer: the total read after the
        // commit holds this booking and any that committed with or after it.
        sqlx::query_scalar::<_, f64>("SELECT usd FROM llm_spend WHERE day = ?1")
            .bind(day)
            .fetch_one(&self.read)
            .await
            .map_err(|e| db_error(&e))
    }
}
