-- Portable SQL, like 0001. SQLite writes new dedup keys into `dedup` in key order, a generation at a
-- time (crates/store/src/dedup.rs), instead of one random index page per webhook; until then a key
-- lives in the writer's memory and in its job's row, from which it is rebuilt after a crash.

-- The job's dedup key (NULL for manual analyses).
ALTER TABLE jobs ADD COLUMN dedup_key TEXT;

-- What the purge goes by: the newest receive time of the keys written with this one (SQLite: its
-- generation; PostgreSQL: its own receive time). Indexed instead of received_at, whose values are
-- in random order within a generation written in key order.
ALTER TABLE dedup ADD COLUMN purge_at BIGINT NOT NULL DEFAULT 0;
UPDATE dedup SET purge_at = received_at;
DROP INDEX dedup_received;
CREATE INDEX dedup_purge ON dedup (purge_at);

-- Small facts the store keeps about itself. SQLite: `dedup_written_rowid`, the jobs (by rowid) whose
-- keys are all in `dedup`.
CREATE TABLE store_meta (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
