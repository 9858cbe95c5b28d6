//! Group commit. Every write goes through one task that takes all operations waiting at that moment
//! and runs them in one transaction, so one fsync makes a whole batch durable: webhooks from ingest as
//! well as the workers' claims and updates. A reply is sent only after the commit returned and its WAL
//! frames were fsynced (see `wal_sync`), which is what lets ingest answer 2xx for "committed".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiops_model::{Clock, EnqueueOutcome, JobId, NewJob, StoreError};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::sqlite::{db_error, millis};
use crate::wal_sync::WalSync;

/// The backlog count is read from the database at most this often; in between, the writer adds the
/// jobs it created itself. Workers only shrink the backlog, so the estimate errs on the safe side.
const BACKLOG_REFRESH: Duration = Duration::from_millis(500);

pub(crate) type EnqueueReply = Result<Vec<EnqueueOutcome>, StoreError>;
/// A statement whose parameters are all owned, so it can be handed to the writer task.
pub(crate) type OwnedQuery = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

/// One write, with the channel its result goes back on once the batch committed. A requester whose
/// channel is dropped without an answer learns that the store failed.
pub(crate) enum Op {
    Enqueue {
        jobs: Vec<NewJob>,
        reply: oneshot::Sender<EnqueueReply>,
    },
    Statement(Statement),
}

/// A worker's update (or the store's maintenance): statements run in the batch's transaction.
pub(crate) enum Statement {
    /// Runs the statements in order and answers the number of rows the last one affected.
    Execute {
        queries: Vec<OwnedQuery>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Answers the first row, for `UPDATE … RETURNING`.
    FetchOptional {
        query: OwnedQuery,
        reply: oneshot::Sender<Result<Option<SqliteRow>, StoreError>>,
    },
}

/// A statement of the batch, run and waiting for the commit before its answer is sent.
enum Answered {
    Rows(u64, oneshot::Sender<Result<u64, StoreError>>),
    Row(
        Option<SqliteRow>,
        oneshot::Sender<Result<Option<SqliteRow>, StoreError>>,
    ),
}

impl Answered {
    fn send(self) {
        // A requester that went away (a client disconnected) does not undo the committed write.
        match self {
            Self::Rows(n, reply) => drop(reply.send(Ok(n))),
            Self::Row(row, reply) => drop(reply.send(Ok(row))),
        }
    }
}

pub(crate) struct Writer {
    pub pool: SqlitePool,
    pub rx: mpsc::Receiver<Op>,
    pub clock: Arc<dyn Clock>,
    pub dedup_ttl_ms: i64,
    pub max_queued: u64,
    pub max_batch: usize,
    pub wal: WalSync,
    pub backlog: Option<(u64, Instant)>,
}

impl Writer {
    /// Runs until every sender is gone.
    pub async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.commit(batch).await;
        }
    }

    async fn commit(&mut self, batch: Vec<Op>) {
        let mut requests = Vec::new();
        let mut enqueue_replies = Vec::new();
        let mut statements = Vec::new();
        for op in batch {
            match op {
                Op::Enqueue { jobs, reply } => {
                    requests.push(jobs);
                    enqueue_replies.push(reply);
                }
                Op::Statement(statement) => statements.push(statement),
            }
        }
        let size = requests.len() + statements.len();
        let (outcomes, answered) = match self.write(&requests, statements).await {
            Ok(done) => done,
            Err((e, statements)) => {
                tracing::error!(error = %e, batch = size, "write transaction failed");
                // The transaction rolled back: nothing of this batch was written.
                self.backlog = None;
                for reply in enqueue_replies {
                    let _ = reply.send(Err(db_error(&e)));
                }
                // Dropping the statements' reply channels tells each requester the store failed.
                drop(statements);
                return;
            }
        };
        let created = outcomes
            .iter()
            .flatten()
            .flatten()
            .filter(|o| matches!(o, EnqueueOutcome::Created(_)))
            .count();
        if let Some((count, _)) = &mut self.backlog {
            *count += created as u64;
        }
        // The commit returned before its fsync; the answers go out once the WAL is on disk.
        self.wal.after_sync(Box::new(move |synced| match synced {
            Ok(()) => {
                for (reply, outcome) in enqueue_replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                answered.into_iter().for_each(Answered::send);
            }
            Err(e) => {
                for reply in enqueue_replies {
                    let _ = reply.send(Err(StoreError::Unavailable(e.clone())));
                }
                // Dropping the statements' reply channels tells each requester the store failed.
                drop(answered);
            }
        }));
    }

    /// Runs the batch in one transaction: the enqueues with a few multi-row statements (each statement
    /// is a round trip to SQLite's thread), then the other statements in order. A request that would
    /// overflow the queue gets `QueueFull` and writes nothing; the others go on.
    async fn write(
        &mut self,
        requests: &[Vec<NewJob>],
        statements: Vec<Statement>,
    ) -> Result<(Vec<EnqueueReply>, Vec<Answered>), (sqlx::Error, Vec<Statement>)> {
        let mut backlog = match requests.is_empty() {
            true => 0,
            false => self.backlog().await.map_err(|e| (e, Vec::new()))?,
        };
        let mut admitted = Vec::with_capacity(requests.len());
        for jobs in requests {
            let fits = backlog + jobs.len() as u64 <= self.max_queued;
            if fits {
                backlog += jobs.len() as u64;
            }
            admitted.push(fits);
        }
        let jobs: Vec<&NewJob> = requests
            .iter()
            .zip(&admitted)
            .filter(|(_, ok)| **ok)
            .flat_map(|(jobs, _)| jobs)
            .collect();
        let now = millis(self.clock.now());
        let mut tx = self.pool.begin().await.map_err(|e| (e, Vec::new()))?;
        let duplicates = match self.insert(&mut tx, &jobs, now).await {
            Ok(duplicates) => duplicates,
            Err(e) => return Err((e, statements)),
        };
        let mut answered = Vec::with_capacity(statements.len());
        let mut pending = statements.into_iter();
        while let Some(statement) = pending.next() {
            let result = match statement {
                Statement::Execute { queries, reply } => execute_all(&mut tx, queries)
                    .await
                    .map(|rows| Answered::Rows(rows, reply)),
                Statement::FetchOptional { query, reply } => query
                    .fetch_optional(&mut *tx)
                    .await
                    .map(|row| Answered::Row(row, reply)),
            };
            match result {
                Ok(a) => answered.push(a),
                Err(e) => return Err((e, pending.collect())),
            }
        }
        tx.commit().await.map_err(|e| (e, Vec::new()))?;
        let outcomes = requests
            .iter()
            .zip(admitted)
            .map(|(jobs, ok)| match ok {
                false => Err(StoreError::QueueFull(backlog)),
                true => Ok(jobs
                    .iter()
                    .map(|j| match duplicates.get(&j.id) {
                        Some(original) => EnqueueOutcome::Duplicate(*original),
                        None => EnqueueOutcome::Created(j.id),
                    })
                    .collect()),
            })
            .collect();
        Ok((outcomes, answered))
    }

    /// Inserts the jobs that are not duplicates; returns the duplicates with the ids they duplicate.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        jobs: &[&NewJob],
        now: i64,
    ) -> Result<HashMap<JobId, JobId>, sqlx::Error> {
        let duplicates = claim_dedup_keys(tx, jobs, now, now - self.dedup_ttl_ms).await?;
        let created: Vec<&NewJob> = jobs
            .iter()
            .copied()
            .filter(|j| !duplicates.contains_key(&j.id))
            .collect();
        for chunk in created.chunks(ROWS_PER_STATEMENT) {
            insert_jobs(tx, chunk, now).await?;
        }
        Ok(duplicates)
    }

    /// Jobs queued or running, as of the last refresh plus what this writer created since.
    async fn backlog(&mut self) -> Result<u64, sqlx::Error> {
        if let Some((count, at)) = self.backlog
            && at.elapsed() < BACKLOG_REFRESH
        {
            return Ok(count);
        }
        let count: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'queued')
                  + (SELECT COUNT(*) FROM jobs WHERE state = 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        let count = u64::try_from(count).unwrap_or_default();
        self.backlog = Some((count, Instant::now()));
        Ok(count)
    }
}

/// Runs the statements in order; answers the rows affected by the last.
async fn execute_all(
    tx: &mut Transaction<'_, Sqlite>,
    queries: Vec<OwnedQuery>,
) -> Result<u64, sqlx::Error> {
    let mut last = 0;
    for query in queries {
        last = query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(last)
}

/// Rows per multi-row statement; with at most 10 parameters a row this stays far below SQLite's limit of
/// 32,766 parameters.
const ROWS_PER_STATEMENT: usize = 1000;

/// Takes the dedup key of every job that has one. Returns, for each job that is a duplicate, the id of
/// the job that holds its key: a job received within the TTL, or an earlier job of this same batch.
async fn claim_dedup_keys(
    tx: &mut Transaction<'_, Sqlite>,
    jobs: &[&NewJob],
    now: i64,
    cutoff: i64,
) -> Result<HashMap<JobId, JobId>, sqlx::Error> {
    let mut duplicates = HashMap::new();
    let mut first_with_key: HashMap<&str, JobId> = HashMap::new();
    let mut candidates: Vec<(&str, JobId)> = Vec::new();
    for job in jobs {
        let Some(key) = job.dedup_key.as_deref() else {
            continue;
        };
        match first_with_key.get(key) {
            Some(first) => {
                duplicates.insert(job.id, *first);
            }
            None => {
                first_with_key.insert(key, job.id);
                candidates.push((key, job.id));
            }
        }
    }
    let mut claimed: HashSet<String> = HashSet::new();
    for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
        // The unique key makes this race-free: of concurrent equal payloads one inserts (or replaces
        // an expired row), and for the others the WHERE clause turns the conflict into no row.
        let mut insert =
            QueryBuilder::<Sqlite>::new("INSERT INTO dedup (key, job_id, received_at) ");
        insert.push_values(chunk, |mut row, (key, id)| {
            row.push_bind((*key).to_owned())
                .push_bind(id.to_string())
                .push_bind(now);
        });
        insert.push(
            " ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, received_at = excluded.received_at \
             WHERE dedup.received_at < ",
        );
        insert.push_bind(cutoff).push(" RETURNING key");
        for row in insert.build().fetch_all(&mut **tx).await? {
            claimed.insert(row.try_get(0)?);
        }
    }
    let taken: Vec<&str> = candidates
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !claimed.contains(*k))
        .collect();
    let mut holders: HashMap<String, JobId> = HashMap::new();
    for chunk in taken.chunks(ROWS_PER_STATEMENT) {
        let mut select =
            QueryBuilder::<Sqlite>::new("SELECT key, job_id FROM dedup WHERE key IN (");
        let mut keys = select.separated(", ");
        for key in chunk {
            keys.push_bind((*key).to_owned());
        }
        select.push(")");
        for row in select.build().fetch_all(&mut **tx).await? {
            let holder: String = row.try_get(1)?;
            let holder: JobId = holder
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            holders.insert(row.try_get(0)?, holder);
        }
    }
    for (key, id) in candidates {
        if let Some(holder) = holders.get(key) {
            duplicates.insert(id, *holder);
        }
    }
    // A later job of the batch with the key of a duplicate is a duplicate of the same holder.
    for job in jobs {
        if let Some(first) = duplicates.get(&job.id).copied()
            && let Some(holder) = duplicates.get(&first).copied()
        {
            duplicates.insert(job.id, holder);
        }
    }
    Ok(duplicates)
}

async fn insert_jobs(
    tx: &mut Transaction<'_, Sqlite>,
    jobs: &[&NewJob],
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO jobs (id, source, state, group_key, status, alertname, payload, next_attempt_at, \
         created_at, updated_at) ",
    );
    insert.push_values(jobs, |mut row, job| {
        row.push_bind(job.id.to_string())
            .push_bind(job.source.as_str())
            .push_bind("queued")
            .push_bind(job.group_key.clone())
            .push_bind(job.status.as_str())
            .push_bind(job.alertname.clone())
            .push_bind(job.payload.clone())
            .push_bind(now)
            .push_bind(now)
            .push_bind(now);
    });
    insert.build().execute(&mut **tx).await?;
    Ok(())
}
