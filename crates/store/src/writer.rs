//! Group commit. Every write goes through one writer, on a thread of its own, that takes all the
//! operations waiting at that moment and runs them in one transaction, so one fsync makes a whole batch
//! durable: webhooks from ingest as well as the workers' claims and updates. A reply is sent only after
//! the commit returned and its WAL frames were fsynced (see `wal_sync`), which is what lets ingest
//! answer 2xx for "committed". The writer also owns the dedup keys it takes, which it writes into
//! the `dedup` table in key order, a slice per transaction (see `dedup`).
//!
//! The writer drives its connection with rusqlite, in its own thread, while sqlx serves migrations,
//! the readers and PostgreSQL. sqlx runs every SQLite connection on a thread of its own and hands
//! each query over to it and each result back: two thread wake-ups per query. The writer is the one
//! place where that cost decides the throughput (it is busy nearly all the time under load), and
//! measured on the 2-core machine a batch of 18 webhooks took 600 µs through sqlx with the whole
//! batch in one query, and 412 µs as direct calls, one prepared statement per row; every worker
//! statement saved a round trip more (docs/BENCHMARKS.md). Both crates link the same SQLite.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiops_model::{Clock, EnqueueOutcome, JobId, NewJob, StoreError};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use crate::dedup::{DedupKeys, Holder, Taken};
use crate::health::WriteHealth;
use crate::plan::{Enqueue, admit, outcomes};
use crate::rows::millis;
use crate::wal_sync::WalSync;

/// The backlog count is read from the database this often. In between, the writer keeps it exact: it
/// adds the jobs it creates and subtracts the jobs that end (done or dead). Counting reads every
/// queued job's index entry, which stalls the writer for milliseconds when the queue is long.
const BACKLOG_REFRESH: Duration = Duration::from_secs(60);

const INSERT_JOB: &str =
    "INSERT INTO jobs (id, source, state, group_key, status, alertname, payload,
                                       dedup_key, next_attempt_at, created_at, updated_at)
     VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?8, ?7, ?7, ?7)";

pub(crate) type EnqueueReply = Result<Vec<EnqueueOutcome>, StoreError>;

/// One SQL statement with its parameters in order (`?1` is the first), owned, so it can be handed to
/// the writer.
#[derive(Debug)]
pub(crate) struct WriteQuery {
    sql: &'static str,
    params: Vec<Value>,
}

impl WriteQuery {
    pub fn new(sql: &'static str) -> Self {
        Self {
            sql,
            params: Vec::new(),
        }
    }

    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.params.push(value.into());
        self
    }

    /// Runs it; the rows it changed.
    fn execute(&self, conn: &Connection) -> rusqlite::Result<u64> {
        let changed = conn
            .prepare_cached(self.sql)?
            .execute(params_from_iter(&self.params))?;
        Ok(changed as u64)
    }
}

/// The row of a claim's `UPDATE … RETURNING id, source, attempts, payload, analysis, timings`.
#[derive(Debug)]
pub(crate) struct ClaimRow {
    pub id: String,
    pub source: String,
    pub attempts: i64,
    pub payload: String,
    pub analysis: Option<String>,
    pub timings: String,
}

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
        queries: Vec<WriteQuery>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
        /// A row changed by the last query is a job that ended (done or dead) and left the backlog.
        ends_job: bool,
    },
    /// Answers the claimed job, if the claim's `UPDATE … RETURNING` changed a row.
    Claim {
        query: WriteQuery,
        reply: oneshot::Sender<Result<Option<ClaimRow>, StoreError>>,
    },
}

/// A statement of the batch, run and waiting for the commit before its answer is sent.
enum Answered {
    Rows(u64, oneshot::Sender<Result<u64, StoreError>>),
    Claim(
        Option<ClaimRow>,
        oneshot::Sender<Result<Option<ClaimRow>, StoreError>>,
    ),
}

impl Answered {
    fn send(self) {
        // A requester that went away (a client disconnected) does not undo the committed write.
        match self {
            Self::Rows(n, reply) => drop(reply.send(Ok(n))),
            Self::Claim(row, reply) => drop(reply.send(Ok(row))),
        }
    }
}

/// The store's error for a failed write: a value that does not decode is corruption, anything else
/// makes the store unavailable for now.
fn write_error(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            StoreError::DiskFull(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

pub(crate) struct Writer {
    /// The only connection that writes; it runs every batch.
    pub conn: Connection,
    pub rx: mpsc::Receiver<Op>,
    pub clock: Arc<dyn Clock>,
    pub dedup_ttl_ms: i64,
    pub max_queued: u64,
    pub max_batch: usize,
    pub wal: WalSync,
    pub backlog: Option<(u64, Instant)>,
    /// The dedup keys not yet in the `dedup` table.
    pub keys: DedupKeys,
    /// Whether writes work; logs each change once.
    pub health: Arc<WriteHealth>,
}

/// Transactions at shutdown that write the dedup keys still in memory, at most; each writes
/// [`SHUTDOWN_SLICE`] keys or all that are left.
const SHUTDOWN_ROUNDS: usize = 64;
const SHUTDOWN_SLICE: usize = 8192;

impl Writer {
    /// Runs until every sender is gone, then writes the dedup keys still in memory. Blocks its thread.
    pub fn run(mut self) {
        // Set when writing keys alone failed: wait for real work before trying again, not spin.
        let mut keys_failed = false;
        loop {
            let first = match self.rx.try_recv() {
                Ok(op) => op,
                // Nothing waits: write a slice of the frozen dedup keys meanwhile.
                Err(TryRecvError::Empty) if self.keys.pending() && !keys_failed => {
                    keys_failed = !self.commit(Vec::new(), 0);
                    continue;
                }
                Err(TryRecvError::Empty) => match self.rx.blocking_recv() {
                    Some(op) => op,
                    None => break,
                },
                Err(TryRecvError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            keys_failed = !self.commit(batch, 0);
        }
        self.write_all_keys();
    }

    /// At shutdown: the dedup keys in memory go into the table, so that the next start reads none back.
    /// Should this fail or be cut short, the next start reads them back from the jobs.
    fn write_all_keys(&mut self) {
        for _ in 0..SHUTDOWN_ROUNDS {
            self.keys.freeze();
            if !self.keys.pending() || !self.commit(Vec::new(), SHUTDOWN_SLICE) {
                break;
            }
        }
    }

    /// Commits the batch, with a slice of the frozen dedup keys: at least `slice` keys, and more
    /// when the batch takes keys. Answers whether it committed.
    fn commit(&mut self, batch: Vec<Op>, slice: usize) -> bool {
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
        let (outcomes, answered, ended) = match self.write(&requests, statements, slice) {
            Ok(done) => done,
            Err(e) => {
                // The transaction rolled back: nothing of this batch was written. The statements' reply
                // channels were dropped with them, which tells each requester the store failed.
                let error = write_error(&e);
                self.health.failed(&error);
                self.backlog = None;
                for reply in enqueue_replies {
                    let _ = reply.send(Err(error.clone()));
                }
                return false;
            }
        };
        if size == 0 {
            // Dedup keys alone: nobody waits for them, and the jobs they came from are durable.
            self.health.worked();
            return true;
        }
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
        let health = self.health.clone();
        self.wal.after_sync(Box::new(move |synced| match synced {
            Ok(()) => {
                health.worked();
                for (reply, outcome) in enqueue_replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                answered.into_iter().for_each(Answered::send);
            }
            Err(e) => {
                health.failed(&e);
                for reply in enqueue_replies {
                    let _ = reply.send(Err(e.clone()));
                }
                // Dropping the statements' reply channels tells each requester the store failed.
                drop(answered);
            }
        }));
        true
    }

    /// Runs the batch in one transaction: the enqueues first, then the other statements in order. A
    /// request that would overflow the queue gets `QueueFull` and writes nothing; the others go on. On
    /// an error the transaction is rolled back and the whole batch fails.
    fn write(
        &mut self,
        requests: &[Vec<NewJob>],
        statements: Vec<Statement>,
        slice: usize,
    ) -> rusqlite::Result<(Vec<EnqueueReply>, Vec<Answered>, u64)> {
        let backlog = match requests.is_empty() {
            true => 0,
            false => self.backlog()?,
        };
        let (admitted, jobs, backlog) = admit(requests, backlog, self.max_queued);
        let now = millis(self.clock.now());
        let enqueue = Enqueue::plan(&jobs);
        let (conn, keys) = (&self.conn, &self.keys);
        let cutoff = now - self.dedup_ttl_ms;
        let result = conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            let done = run_batch(conn, keys, &enqueue, now, cutoff, statements)?;
            let slice = slice.max(DedupKeys::slice_for(done.taken.len()));
            let written = keys.write_slice(conn, slice, cutoff)?;
            conn.execute_batch("COMMIT")?;
            Ok((done, written))
        });
        if result.is_err() && !self.conn.is_autocommit() {
            // An error here only means no transaction was left open.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let (done, written) = result?;
        self.keys.committed(done.taken, written, now);
        let outcomes = outcomes(requests, &admitted, &done.duplicates, backlog);
        let (answered, ended) = (done.answered, done.ended);
        Ok((outcomes, answered, ended))
    }

    /// Jobs queued or running, as of the last refresh plus what this writer created since.
    fn backlog(&mut self) -> rusqlite::Result<u64> {
        if let Some((count, at)) = self.backlog
            && at.elapsed() < BACKLOG_REFRESH
        {
            return Ok(count);
        }
        let count: i64 = self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'queued')
                  + (SELECT COUNT(*) FROM jobs WHERE state = 'running')",
            [],
            |row| row.get(0),
        )?;
        let count = u64::try_from(count).unwrap_or_default();
        self.backlog = Some((count, Instant::now()));
        Ok(count)
    }
}

/// What a batch's transaction did.
struct Done {
    /// Each job that was not inserted → the job holding its key.
    duplicates: HashMap<JobId, JobId>,
    /// The keys the inserted jobs took.
    taken: Vec<Taken>,
    answered: Vec<Answered>,
    /// How many jobs ended (done or dead).
    ended: u64,
}

/// The batch's statements, inside its transaction: each job is inserted unless a job took its dedup
/// key at or after `cutoff`; then the workers' statements in order.
fn run_batch(
    conn: &Connection,
    keys: &DedupKeys,
    enqueue: &Enqueue<'_>,
    now: i64,
    cutoff: i64,
    statements: Vec<Statement>,
) -> rusqlite::Result<Done> {
    let mut holders = HashMap::new();
    let mut taken = Vec::new();
    if !enqueue.jobs.is_empty() {
        let mut insert = conn.prepare_cached(INSERT_JOB)?;
        for job in &enqueue.jobs {
            let key = job.dedup_key.as_deref();
            if let Some(key) = key
                && let Some(holder) = keys.holder(conn, key, cutoff)?
            {
                holders.insert(key.to_owned(), holder);
                continue;
            }
            insert.execute(params![
                job.id.to_string(),
                job.source.as_str(),
                job.group_key,
                job.status.as_str(),
                job.alertname,
                job.payload,
                now,
                key,
            ])?;
            if let Some(key) = key {
                taken.push(Taken {
                    key: key.into(),
                    holder: Holder {
                        job: job.id,
                        received_at: now,
                    },
                    rowid: conn.last_insert_rowid(),
                });
            }
        }
    }
    let duplicates = enqueue.duplicates(&holders);
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
                for query in &queries {
                    last = query.execute(conn)?;
                }
                ended += u64::from(ends_job && last > 0);
                Answered::Rows(last, reply)
            }
            Statement::Claim { query, reply } => {
                let row = conn
                    .prepare_cached(query.sql)?
                    .query_row(params_from_iter(&query.params), |row| {
                        Ok(ClaimRow {
                            id: row.get("id")?,
                            source: row.get("source")?,
                            attempts: row.get("attempts")?,
                            payload: row.get("payload")?,
                            analysis: row.get("analysis")?,
                            timings: row.get("timings")?,
                        })
                    })
                    .optional()?;
                Answered::Claim(row, reply)
            }
        });
    }
    Ok(Done {
        duplicates,
        taken,
        answered,
        ended,
    })
}
