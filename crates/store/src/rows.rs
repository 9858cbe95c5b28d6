//! Reading rows and converting values, the same for every backend: times are Unix milliseconds in
//! `BIGINT` columns, JSON is text, ids are UUID text.

use std::str::FromStr;
use std::time::Duration;

use aiops_model::alertmanager::AlertStatus;
use aiops_model::{
    ClaimedJob, DeliveryRecord, JobId, JobRecord, JobSource, JobState, QueueCounts, StoreError,
    Thread,
};
use sqlx::{ColumnIndex, Decode, Row, Type};
use time::OffsetDateTime;

pub(crate) fn db_error(e: &sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
            StoreError::Corrupt(e.to_string())
        }
        sqlx::Error::Io(io) => crate::health::io_error("database I/O", io),
        // PostgreSQL's disk_full; SQLite's SQLITE_FULL.
        sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("53100" | "13")) => {
            StoreError::DiskFull(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

pub(crate) fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Our own types serialize to JSON infallibly: no maps with non-string keys, no failing impls.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(crate) fn get<'r, R, T>(row: &'r R, column: &str) -> Result<T, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column).map_err(|e| db_error(&e))
}

pub(crate) fn parse_id<R>(row: &R) -> Result<JobId, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    job_id(&get::<R, String>(row, "id")?)
}

pub(crate) fn job_id(id: &str) -> Result<JobId, StoreError> {
    JobId::from_str(id).map_err(|e| StoreError::Corrupt(format!("job id {id:?}: {e}")))
}

fn parse_source<R>(row: &R) -> Result<JobSource, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    job_source(&get::<R, String>(row, "source")?)
}

fn job_source(source: &str) -> Result<JobSource, StoreError> {
    JobSource::parse(source)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown job source {source:?}")))
}

fn parse_json<R, T>(row: &R, column: &str) -> Result<T, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    T: serde::de::DeserializeOwned,
{
    json(column, &get::<R, String>(row, column)?)
}

fn json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn parse_json_opt<R, T>(row: &R, column: &str) -> Result<Option<T>, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    T: serde::de::DeserializeOwned,
{
    let text: Option<String> = get(row, column)?;
    text.map(|t| json(column, &t)).transpose()
}

/// A row of `UPDATE … RETURNING id, source, attempts, payload, analysis, timings` (`attempts` as
/// `BIGINT`) as the job a worker claimed.
pub(crate) fn claimed<R>(row: &R, deliveries: Vec<DeliveryRecord>) -> Result<ClaimedJob, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let analysis: Option<String> = get(row, "analysis")?;
    claimed_job(
        parse_id(row)?,
        &get::<R, String>(row, "source")?,
        get(row, "attempts")?,
        get(row, "payload")?,
        analysis.as_deref(),
        &get::<R, String>(row, "timings")?,
        deliveries,
    )
}

/// The job a worker claimed, from the columns of its claim's row.
pub(crate) fn claimed_job(
    id: JobId,
    source: &str,
    attempts: i64,
    payload: String,
    analysis: Option<&str>,
    timings: &str,
    deliveries: Vec<DeliveryRecord>,
) -> Result<ClaimedJob, StoreError> {
    Ok(ClaimedJob {
        id,
        source: job_source(source)?,
        attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
        payload,
        analysis: analysis.map(|a| json("analysis", a)).transpose()?,
        timings: json("timings", timings)?,
        deliveries,
    })
}

/// A row of the `jobs` columns [`JOB_COLUMNS`] selects as the job's record.
pub(crate) fn record<R>(row: &R, deliveries: Vec<DeliveryRecord>) -> Result<JobRecord, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    let id = parse_id(row)?;
    let state = JobState::parse(&get::<R, String>(row, "state")?)
        .ok_or_else(|| StoreError::Corrupt(format!("job {id}: unknown state")))?;
    let status = match get::<R, String>(row, "status")?.as_str() {
        "resolved" => AlertStatus::Resolved,
        _ => AlertStatus::Firing,
    };
    let payload: String = get(row, "payload")?;
    Ok(JobRecord {
        id,
        source: parse_source(row)?,
        state,
        group_key: get(row, "group_key")?,
        status,
        alertname: get(row, "alertname")?,
        attempts: u32::try_from(get::<R, i64>(row, "attempts")?).unwrap_or_default(),
        last_error: get(row, "last_error")?,
        timings: parse_json(row, "timings")?,
        analysis: parse_json_opt(row, "analysis")?,
        deliveries,
        feedback: Vec::new(),
        created_at: from_millis(get(row, "created_at")?),
        updated_at: from_millis(get(row, "updated_at")?),
        next_attempt_at: (state == JobState::Queued)
            .then(|| get(row, "next_attempt_at").map(from_millis))
            .transpose()?,
        finished_at: get::<R, Option<i64>>(row, "finished_at")?.map(from_millis),
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("job {id}: payload: {e}")))?,
    })
}

/// The columns [`record`] reads, `attempts` as `BIGINT` on every backend.
pub(crate) const JOB_COLUMNS: &str = "id, source, state, group_key, status, alertname, payload, \
     CAST(attempts AS BIGINT) AS attempts, next_attempt_at, last_error, timings, analysis, \
     created_at, updated_at, finished_at";

/// The last dead jobs, newest first (the `jobs_finished` index serves it).
pub(crate) const RECENT_DEAD_SQL: &str = "SELECT id, alertname, last_error, finished_at FROM jobs \
     WHERE state = 'dead' AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 5";

/// A row of [`RECENT_DEAD_SQL`].
pub(crate) fn dead_job<R>(row: &R) -> Result<aiops_model::DeadJob, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(aiops_model::DeadJob {
        id: parse_id(row)?,
        alertname: get(row, "alertname")?,
        error: get(row, "last_error")?,
        finished_at: from_millis(get(row, "finished_at")?),
    })
}

/// The queue's figures from a row of counts (columns `queued`, `running`, `done`, `dead`, `oldest`,
/// `finished`) taken at `now`, and the rows of [`RECENT_DEAD_SQL`].
pub(crate) fn queue_counts<R>(row: &R, now: i64, dead: &[R]) -> Result<QueueCounts, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    let count =
        |column: &str| get::<R, i64>(row, column).map(|n| u64::try_from(n).unwrap_or_default());
    let oldest: Option<i64> = get(row, "oldest")?;
    Ok(QueueCounts {
        queued: count("queued")?,
        running: count("running")?,
        done: count("done")?,
        dead: count("dead")?,
        oldest_queued_age_secs: oldest.map(|t| (now - t).max(0) as f64 / 1000.0),
        finished_last_minute: count("finished")?,
        recent_dead: dead.iter().map(dead_job).collect::<Result<_, _>>()?,
    })
}

/// A row of `threads` (channel, ts).
pub(crate) fn thread_of<R>(row: &R) -> Result<Thread, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Thread {
        channel: get(row, "channel")?,
        ts: get(row, "ts")?,
        resolved: get::<R, Option<i64>>(row, "resolved_at")?.is_some(),
    })
}

/// A row of the resolutions query (resolved_at, refired_at).
pub(crate) fn resolution<R>(row: &R) -> Result<aiops_model::Resolution, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(aiops_model::Resolution {
        resolved_at: from_millis(get(row, "resolved_at")?),
        refired_at: get::<R, Option<i64>>(row, "refired_at")?.map(from_millis),
    })
}

/// A row of `feedback` (verdict, user_name, at).
pub(crate) fn feedback<R>(row: &R) -> Result<aiops_model::Feedback, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let verdict: String = get(row, "verdict")?;
    Ok(aiops_model::Feedback {
        verdict: aiops_model::Verdict::parse(&verdict)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown verdict {verdict:?}")))?,
        user: get(row, "user_name")?,
        at: from_millis(get(row, "at")?),
    })
}

/// A row of `deliveries` (sink, delivered_at, detail).
pub(crate) fn delivery<R>(row: &R) -> Result<DeliveryRecord, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(DeliveryRecord {
        sink: get(row, "sink")?,
        delivered_at: from_millis(get(row, "delivered_at")?),
        detail: get(row, "detail")?,
    })
}
