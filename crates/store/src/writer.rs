//! Group commit. Every write goes through one task, on a thread of its own, that takes all the
//! operations waiting at that moment and runs them in one transaction, so one fsync makes a whole batch
//! durable: webhooks from ingest as well as the workers' claims and updates. A reply is sent only after
//! the commit returned and its WAL frames were fsynced (see `wal_sync`), which is what lets ingest
//! answer 2xx for "committed".
//!
//! Each query is a round trip to the connection's thread (sqlx runs a SQLite connection on a thread of
//! its own), and on a small machine a round trip costs more than most statements. So a batch runs as few
//! queries as it can: all of its webhooks in one query (a multi-row upsert of their dedup keys, then a
//! multi-row insert of the jobs that got their key), `BEGIN` sent with the batch's first query and
//! `COMMIT` with its last. A batch of webhooks alone is one round trip. This relies on sqlx's SQLite
//! driver running every statement of a query string in order, binding each statement's parameters in
//! turn (`Cargo.lock` pins the driver; the store's tests would catch a change).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiops_model::{Clock, EnqueueOutcome, JobId, NewJob, StoreError};
use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Either, Execute, Executor, QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::plan::{Enqueue, admit, outcomes};
use crate::sqlite::{db_error, millis};
use crate::wal_sync::WalSync;

/// The backlog count is read from the database this often. In between, the writer keeps it exact: it
/// adds the jobs it creates and subtracts the jobs that end (done or dead). Counting reads every
/// queued job's index entry, which stalls the writer for milliseconds when the queue is long.
const BACKLOG_REFRESH: Duration = Duration::from_secs(60);

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
        /// A row changed by the last query is a job that ended (done or dead) and left the backlog.
        ends_job: bool,
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
    /// The only connection that writes; it runs every batch.
    pub conn: SqliteConnection,
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
        let (outcomes, answered, ended) = match self.write(&requests, statements).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, batch = size, "write transaction failed");
                // The transaction rolled back: nothing of this batch was written. The statements' reply
                // channels were dropped with them, which tells each requester the store failed.
                self.backlog = None;
                for reply in enqueue_replies {
                    let _ = reply.send(Err(db_error(&e)));
                }
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
            *count = (*count + created as u64).saturating_sub(ended);
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

    /// Runs the batch in one transaction: the enqueues first, then the other statements in order. A
    /// request that would overflow the queue gets `QueueFull` and writes nothing; the others go on. On
    /// an error the transaction is rolled back and the whole batch fails.
    async fn write(
        &mut self,
        requests: &[Vec<NewJob>],
        statements: Vec<Statement>,
    ) -> Result<(Vec<EnqueueReply>, Vec<Answered>, u64), sqlx::Error> {
        let backlog = match requests.is_empty() {
            true => 0,
            false => self.backlog().await?,
        };
        let (admitted, backlog) = admit(requests, backlog, self.max_queued);
        let jobs: Vec<&NewJob> = requests
            .iter()
            .zip(&admitted)
            .filter(|(_, ok)| **ok)
            .flat_map(|(jobs, _)| jobs)
            .collect();
        let now = millis(self.clock.now());
        let enqueue = Enqueue::plan(&jobs);
        let queries = enqueue.queries(now, now - self.dedup_ttl_ms)?;
        let total = queries.len() + statements.iter().map(Statement::len).sum::<usize>();
        let mut steps = Steps {
            conn: &mut self.conn,
            done: 0,
            total,
        };
        let result = steps.run_batch(enqueue, queries, statements).await;
        if result.is_err() && steps.done > 0 {
            // An error here only means no transaction was left open.
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
        }
        let (duplicates, answered, ended) = result?;
        let outcomes = outcomes(requests, &admitted, &duplicates, backlog);
        Ok((outcomes, answered, ended))
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
        .fetch_one(&mut self.conn)
        .await?;
        let count = u64::try_from(count).unwrap_or_default();
        self.backlog = Some((count, Instant::now()));
        Ok(count)
    }
}

impl Statement {
    /// How many queries it runs.
    fn len(&self) -> usize {
        match self {
            Self::Execute { queries, .. } => queries.len(),
            Self::FetchOptional { .. } => 1,
        }
    }
}

/// The queries of one batch, run in order in one transaction: `BEGIN` goes with the first and `COMMIT`
/// with the last, so neither costs a round trip of its own.
struct Steps<'c> {
    conn: &'c mut SqliteConnection,
    /// Queries sent so far.
    done: usize,
    total: usize,
}

/// What one query produced.
struct StepOutput {
    rows: Vec<SqliteRow>,
    /// Rows changed by the query's last statement.
    rows_affected: u64,
}

impl Steps<'_> {
    async fn run_batch(
        &mut self,
        enqueue: Enqueue<'_>,
        queries: Vec<OwnedQuery>,
        statements: Vec<Statement>,
    ) -> Result<(HashMap<JobId, JobId>, Vec<Answered>, u64), sqlx::Error> {
        let mut inserted = 0;
        for query in queries {
            inserted += self.run(query).await?.rows_affected;
        }
        // Every job that was not inserted is a duplicate; only then ask which jobs hold their keys.
        let duplicates = match inserted < enqueue.jobs.len() as u64 {
            true => enqueue.duplicates(&self.holders(&enqueue).await?),
            false => enqueue.duplicates(&HashMap::new()),
        };
        let mut answered = Vec::with_capacity(statements.len());
        let mut ended = 0;
        for statement in statements {
            answered.push(match statement {
                Statement::Execute {
                    queries,
                    reply,
                    ends_job,
                } => {
                    let mut last = 0;
                    for query in queries {
                        last = self.run(query).await?.rows_affected;
                    }
                    ended += u64::from(ends_job && last > 0);
                    Answered::Rows(last, reply)
                }
                Statement::FetchOptional { query, reply } => {
                    let row = self.run(query).await?.rows.into_iter().next();
                    Answered::Row(row, reply)
                }
            });
        }
        Ok((duplicates, answered, ended))
    }

    /// The job that holds each dedup key of the batch's jobs.
    async fn holders(
        &mut self,
        enqueue: &Enqueue<'_>,
    ) -> Result<HashMap<String, JobId>, sqlx::Error> {
        let keys: Vec<&str> = enqueue
            .jobs
            .iter()
            .filter_map(|j| j.dedup_key.as_deref())
            .collect();
        let mut holders = HashMap::new();
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let mut select =
                QueryBuilder::<Sqlite>::new("SELECT key, job_id FROM dedup WHERE key IN (");
            let mut separated = select.separated(", ");
            for key in chunk {
                separated.push_bind((*key).to_owned());
            }
            select.push(")");
            for row in select.build().fetch_all(&mut *self.conn).await? {
                let holder: String = row.try_get(1)?;
                let holder = holder
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                holders.insert(row.try_get(0)?, holder);
            }
        }
        Ok(holders)
    }

    /// Runs one query of the batch, with `BEGIN` before it if it is the first and `COMMIT` after it if
    /// it is the last.
    async fn run(&mut self, mut query: OwnedQuery) -> Result<StepOutput, sqlx::Error> {
        let begin = self.done == 0;
        self.done += 1;
        let commit = self.done == self.total;
        if begin || commit {
            let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
            let sql = format!(
                "{}{}{}",
                if begin { "BEGIN IMMEDIATE;\n" } else { "" },
                query.sql().as_str(),
                if commit { ";\nCOMMIT" } else { "" }
            );
            query = sqlx::query_with(AssertSqlSafe(sql), arguments.unwrap_or_default());
        }
        let mut results = (&mut *self.conn).fetch_many(query);
        let mut rows = Vec::new();
        let mut affected = Vec::new();
        while let Some(result) = results.try_next().await? {
            match result {
                Either::Left(done) => affected.push(done.rows_affected()),
                Either::Right(row) => rows.push(row),
            }
        }
        // One result per statement; `BEGIN` and `COMMIT` report stale counts, so skip theirs.
        let own = &affected[usize::from(begin).min(affected.len())..];
        let own = &own[..own.len().saturating_sub(usize::from(commit))];
        Ok(StepOutput {
            rows,
            rows_affected: own.last().copied().unwrap_or_default(),
        })
    }
}

/// A built query as one that owns its SQL and arguments, so it can outlive its builder.
fn owned(
    mut query: sqlx::query::Query<'_, Sqlite, SqliteArguments>,
) -> Result<OwnedQuery, sqlx::Error> {
    let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
    Ok(sqlx::query_with(query.sql(), arguments.unwrap_or_default()))
}

/// Rows per multi-row statement; with at most 14 parameters a row this stays far below SQLite's limit
/// of 32,766 parameters.
const ROWS_PER_STATEMENT: usize = 1000;

/// The SQLite statements of an [`Enqueue`].
impl Enqueue<'_> {
    /// One query (two statements) per chunk of jobs. The first claims each job's dedup key: the unique
    /// key makes this race-free, a new key or one older than the TTL (`cutoff`) goes to the job, and a
    /// key that is still held keeps its job. The second inserts the jobs that hold their key (and those
    /// without one); the rows it inserts are the query's count.
    fn queries(&self, now: i64, cutoff: i64) -> Result<Vec<OwnedQuery>, sqlx::Error> {
        self.jobs
            .chunks(ROWS_PER_STATEMENT)
            .map(|chunk| {
                let mut query = QueryBuilder::<Sqlite>::new("");
                let keyed: Vec<(&str, JobId)> = chunk
                    .iter()
                    .filter_map(|j| Some((j.dedup_key.as_deref()?, j.id)))
                    .collect();
                if !keyed.is_empty() {
                    query.push("INSERT INTO dedup (key, job_id, received_at) ");
                    query.push_values(&keyed, |mut row, (key, id)| {
                        row.push_bind((*key).to_owned())
                            .push_bind(id.to_string())
                            .push_bind(now);
                    });
                    query.push(
                        " ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, \
                         received_at = excluded.received_at WHERE dedup.received_at < ",
                    );
                    query.push_bind(cutoff).push(";\n");
                }
                query.push(
                    "WITH incoming (id, source, group_key, status, alertname, payload, dedup_key) AS (",
                );
                query.push_values(chunk, |mut row, job| {
                    row.push_bind(job.id.to_string())
                        .push_bind(job.source.as_str())
                        .push_bind(job.group_key.clone())
                        .push_bind(job.status.as_str())
                        .push_bind(job.alertname.clone())
                        .push_bind(job.payload.clone())
                        .push_bind(job.dedup_key.clone());
                });
                query.push(
                    ") INSERT INTO jobs (id, source, state, group_key, status, alertname, payload, \
                     next_attempt_at, created_at, updated_at) \
                     SELECT id, source, 'queued', group_key, status, alertname, payload, ",
                );
                query
                    .push_bind(now)
                    .push(", ")
                    .push_bind(now)
                    .push(", ")
                    .push_bind(now)
                    .push(
                        " FROM incoming WHERE dedup_key IS NULL OR EXISTS \
                         (SELECT 1 FROM dedup WHERE dedup.key = incoming.dedup_key AND dedup.job_id = incoming.id)",
                    );
                owned(query.build())
            })
            .collect()
    }
}
