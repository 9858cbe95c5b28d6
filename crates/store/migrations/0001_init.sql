-- Portable SQL: it runs on SQLite and PostgreSQL. Times are Unix milliseconds.
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    source           TEXT NOT NULL,
    state            TEXT NOT NULL,
    group_key        TEXT NOT NULL,
    status           TEXT NOT NULL,
    alertname        TEXT NOT NULL,
    payload          TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    timings          TEXT NOT NULL DEFAULT '{}',
    analysis         TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);

-- Partial indexes: each covers one state only, so every index write of the hot path (a new job, a
-- claim, a completion) lands at the end of a small or time-ordered range, and finished history does
-- not weigh on claiming.
-- Claiming the queued job that has been due longest, the backlog count, and the oldest queued job.
CREATE INDEX jobs_queued ON jobs (next_attempt_at) WHERE state = 'queued';
-- Claiming jobs whose worker died (expired leases).
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE state = 'running';
-- Counts of finished jobs, jobs finished in the last minute, and retention.
CREATE INDEX jobs_finished ON jobs (state, finished_at) WHERE finished_at IS NOT NULL;

-- One row per dedup key; a row older than the dedup TTL no longer makes a duplicate.
CREATE TABLE dedup (
    key         TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX dedup_received ON dedup (received_at);

-- Each sink's delivery of a job, so a retry or a restart never posts twice.
CREATE TABLE deliveries (
    job_id       TEXT NOT NULL,
    sink         TEXT NOT NULL,
    delivered_at BIGINT NOT NULL,
    detail       TEXT,
    PRIMARY KEY (job_id, sink)
);
