//! SQLite's dedup keys, written into the `dedup` table in key order, a generation at a time.
//!
//! The key is a hash, so a webhook that inserts its key into the table's unique index lands on a
//! random leaf page: a 4 KiB WAL frame of its own in every commit, fsynced and checkpointed. Under
//! a burst that page was the largest cost of a webhook (docs/BENCHMARKS.md: 25,000 webhooks/s
//! without it, 17,000–19,000 with it). Here the writer keeps the keys it takes in memory, in a
//! sorted map (the active generation). When that holds [`GENERATION_KEYS`] keys, or its first key
//! is [`GENERATION_AGE_MS`] old, it freezes, and its keys go into the table in key order, a slice per
//! transaction, so that consecutive keys share leaf pages: a generation costs at most one write of
//! each leaf page instead of one page per key.
//!
//! The table stays the truth for everything older; a lookup asks the active generation, then the
//! frozen one, then the table. Durability comes from the job rows: each job keeps its key
//! (`jobs.dedup_key`), and `store_meta.dedup_written_rowid` says up to which job (by rowid) every key
//! is in the table. It moves in the transaction that writes a generation's last key, and after a
//! crash the keys of the jobs after it are read back into memory. Only the writer thread touches a
//! `DedupKeys`, so it needs no lock, and exactly one job can take a key, as with the unique index
//! alone.

use std::collections::BTreeMap;

use aiops_model::JobId;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, params};

/// A generation freezes when it holds this many keys. Memory: about 110 bytes a key, and at most
/// one and a half generations are held (see [`DedupKeys::write_slice`]).
pub(crate) const GENERATION_KEYS: usize = 65_536;
/// A generation also freezes, at the next write, once its first key is this old (milliseconds), so
/// that the table keeps up when traffic is low and a restart reads few jobs back.
pub(crate) const GENERATION_AGE_MS: i64 = 60_000;
/// Keys written at the least in a transaction, while a generation is frozen.
const MIN_SLICE: usize = 64;

const WATERMARK: &str = "dedup_written_rowid";
/// Writes a key for its job. A key in memory is always newer than its row in the table (which it
/// replaces once the row expired), so the row takes the generation's values unconditionally.
const WRITE_KEY: &str =
    "INSERT INTO dedup (key, job_id, received_at, purge_at) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, received_at = excluded.received_at,
                                     purge_at = excluded.purge_at";
const READ_KEY: &str = "SELECT job_id, received_at FROM dedup WHERE key = ?1";

/// The job that took a key, and when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holder {
    pub job: JobId,
    pub received_at: i64,
}

#[derive(Debug, Default)]
struct Generation {
    keys: BTreeMap<Box<str>, Holder>,
    /// The receive time of its first and of its newest key.
    first_received: i64,
    newest_received: i64,
    /// The newest job (by rowid) whose key it holds: once the generation is in the table, every
    /// job up to it has its key there.
    through_rowid: i64,
}

impl Generation {
    fn add(&mut self, key: Box<str>, holder: Holder, rowid: i64) {
        if self.keys.is_empty() {
            self.first_received = holder.received_at;
        }
        self.newest_received = self.newest_received.max(holder.received_at);
        self.through_rowid = self.through_rowid.max(rowid);
        self.keys.insert(key, holder);
    }
}

/// A key a transaction took, applied to memory only once it committed.
#[derive(Debug)]
pub(crate) struct Taken {
    pub key: Box<str>,
    pub holder: Holder,
    pub rowid: i64,
}

#[derive(Debug)]
pub(crate) struct DedupKeys {
    active: Generation,
    frozen: Option<Generation>,
}

impl DedupKeys {
    /// Reads the keys of the jobs after the watermark back into memory (a crash left them out of the
    /// table). A database without a watermark has every key in the table (an empty one, or one from
    /// before key-ordered writes): the watermark starts at its newest job.
    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        conn.execute(
            "INSERT INTO store_meta (name, value) SELECT ?1, COALESCE(MAX(rowid), 0) FROM jobs
             WHERE true ON CONFLICT (name) DO NOTHING",
            [WATERMARK],
        )?;
        let written: i64 = conn.query_row(
            "SELECT value FROM store_meta WHERE name = ?1",
            [WATERMARK],
            |row| row.get(0),
        )?;
        let mut active = Generation::default();
        let mut rows = conn.prepare(
            "SELECT rowid, dedup_key, id, created_at FROM jobs
             WHERE rowid > ?1 AND dedup_key IS NOT NULL ORDER BY rowid",
        )?;
        let mut rows = rows.query([written])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let key: String = row.get(1)?;
            let holder = Holder {
                job: job_id(&row.get::<_, String>(2)?)?,
                received_at: row.get(3)?,
            };
            // In rowid order: a later job with the same key took it after the earlier one expired.
            active.add(key.into_boxed_str(), holder, rowid);
        }
        Ok(Self {
            active,
            frozen: None,
        })
    }

    /// Keys held in memory.
    #[cfg(test)]
    pub fn in_memory(&self) -> usize {
        self.active.keys.len() + self.frozen.as_ref().map_or(0, |g| g.keys.len())
    }

    /// The job that holds `key`, if it took it at or after `cutoff`.
    pub fn holder(
        &self,
        conn: &Connection,
        key: &str,
        cutoff: i64,
    ) -> rusqlite::Result<Option<JobId>> {
        let in_memory = self
            .active
            .keys
            .get(key)
            .or_else(|| self.frozen.as_ref()?.keys.get(key))
            .copied();
        // A key in memory is newer than its row in the table, if any.
        let holder = match in_memory {
            Some(holder) => Some(holder),
            None => in_table(conn, key)?,
        };
        Ok(holder.filter(|h| h.received_at >= cutoff).map(|h| h.job))
    }

    /// Whether keys wait to be written.
    pub fn pending(&self) -> bool {
        self.frozen.is_some()
    }

    /// How many frozen keys a transaction that takes `taken` keys writes: at least twice as many, so
    /// that the frozen generation is written before the active one is half full, and memory stays
    /// within one and a half generations.
    pub fn slice_for(taken: usize) -> usize {
        MIN_SLICE.max(2 * taken)
    }

    /// In the open transaction: writes the frozen generation's next `len` keys, less those taken
    /// before `cutoff` (they hold nothing any more, and the purge may have run), and moves the
    /// watermark with its last key. Answers how many keys left memory.
    pub fn write_slice(
        &self,
        conn: &Connection,
        len: usize,
        cutoff: i64,
    ) -> rusqlite::Result<usize> {
        let Some(frozen) = &self.frozen else {
            return Ok(0);
        };
        let mut write = conn.prepare_cached(WRITE_KEY)?;
        let mut written = 0;
        for (key, holder) in frozen.keys.iter().take(len) {
            if holder.received_at >= cutoff {
                write.execute(params![
                    key,
                    holder.job.to_string(),
                    holder.received_at,
                    frozen.newest_received
                ])?;
            }
            written += 1;
        }
        if written == frozen.keys.len() {
            conn.prepare_cached("UPDATE store_meta SET value = ?2 WHERE name = ?1")?
                .execute(params![WATERMARK, frozen.through_rowid])?;
        }
        Ok(written)
    }

    /// After the transaction committed: the keys it took join the active generation, the keys it
    /// wrote leave the frozen one, and the active generation freezes when it is full or old (`now`).
    pub fn committed(&mut self, taken: Vec<Taken>, written: usize, now: i64) {
        for t in taken {
            self.active.add(t.key, t.holder, t.rowid);
        }
        if let Some(frozen) = &mut self.frozen {
            for _ in 0..written {
                frozen.keys.pop_first();
            }
            if frozen.keys.is_empty() {
                self.frozen = None;
            }
        }
        let active = &self.active;
        if active.keys.len() >= GENERATION_KEYS || now - active.first_received >= GENERATION_AGE_MS
        {
            self.freeze();
        }
    }

    /// Freezes the active generation, unless it is empty or another one is still frozen.
    pub fn freeze(&mut self) {
        if self.frozen.is_none() && !self.active.keys.is_empty() {
            self.frozen = Some(std::mem::take(&mut self.active));
        }
    }
}

/// The key's row in the table.
fn in_table(conn: &Connection, key: &str) -> rusqlite::Result<Option<Holder>> {
    let row = conn
        .prepare_cached(READ_KEY)?
        .query_row([key], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))
        .optional()?;
    let Some((job, received_at)) = row else {
        return Ok(None);
    };
    Ok(Some(Holder {
        job: job_id(&job)?,
        received_at,
    }))
}

fn job_id(text: &str) -> rusqlite::Result<JobId> {
    text.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUTOFF: i64 = 0;

    fn schema() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        for sql in [
            include_str!("../migrations/0001_init.sql"),
            include_str!("../migrations/0002_threads.sql"),
            include_str!("../migrations/0003_dedup_in_key_order.sql"),
        ] {
            conn.execute_batch(sql).expect("migrate");
        }
        conn
    }

    /// Inserts a job with `key` as the writer does, committed.
    fn take(conn: &Connection, keys: &mut DedupKeys, key: &str, at: i64) -> JobId {
        let job = JobId::new();
        conn.execute(
            "INSERT INTO jobs (id, source, state, group_key, status, alertname, payload, dedup_key,
                               next_attempt_at, created_at, updated_at)
             VALUES (?1, 'webhook', 'queued', 'g', 'firing', 'A', '{}', ?2, ?3, ?3, ?3)",
            params![job.to_string(), key, at],
        )
        .expect("insert");
        let taken = Taken {
            key: key.into(),
            holder: Holder {
                job,
                received_at: at,
            },
            rowid: conn.last_insert_rowid(),
        };
        keys.committed(vec![taken], 0, at);
        job
    }

    /// Writes slices until nothing is frozen; answers the transactions it took.
    fn write_frozen(conn: &Connection, keys: &mut DedupKeys, now: i64) -> usize {
        let mut rounds = 0;
        while keys.pending() && rounds < 10_000 {
            let written = keys
                .write_slice(conn, DedupKeys::slice_for(0), CUTOFF)
                .expect("write");
            keys.committed(Vec::new(), written, now);
            rounds += 1;
        }
        rounds
    }

    fn table(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |row| row.get(0)).expect("query")
    }

    #[test]
    fn a_full_generation_goes_into_the_table_in_slices_and_moves_the_watermark() {
        let conn = schema();
        let mut keys = DedupKeys::load(&conn).expect("load");
        let first = take(&conn, &mut keys, "k-0", 1);
        for i in 1..GENERATION_KEYS {
            take(&conn, &mut keys, &format!("k-{i}"), 1);
        }
        assert!(keys.pending(), "a full generation freezes");
        assert_eq!(table(&conn, "SELECT COUNT(*) FROM dedup"), 0);
        assert_eq!(
            keys.holder(&conn, "k-0", CUTOFF).expect("read"),
            Some(first)
        );

        let rounds = write_frozen(&conn, &mut keys, 2);
        assert_eq!(rounds, GENERATION_KEYS.div_ceil(MIN_SLICE));
        assert_eq!(keys.in_memory(), 0);
        assert_eq!(
            table(&conn, "SELECT COUNT(*) FROM dedup"),
            GENERATION_KEYS as i64
        );
        assert_eq!(
            table(
                &conn,
                "SELECT value FROM store_meta WHERE name = 'dedup_written_rowid'"
            ),
            table(&conn, "SELECT MAX(rowid) FROM jobs")
        );
        // From the table now.
        assert_eq!(
            keys.holder(&conn, "k-0", CUTOFF).expect("read"),
            Some(first)
        );
        assert_eq!(keys.holder(&conn, "k-0", 2).expect("read"), None, "expired");
        assert_eq!(keys.holder(&conn, "other", CUTOFF).expect("read"), None);
    }

    #[test]
    fn keys_not_yet_in_the_table_are_read_back_from_the_jobs() {
        let conn = schema();
        let mut keys = DedupKeys::load(&conn).expect("load");
        let old = take(&conn, &mut keys, "a", 1_000);
        // Expired and taken again by a later job: the later one holds it after a restart.
        let new = take(&conn, &mut keys, "a", 2_000);
        let b = take(&conn, &mut keys, "b", 2_000);
        assert_ne!(old, new);
        let reloaded = DedupKeys::load(&conn).expect("load");
        assert_eq!(reloaded.in_memory(), 2);
        assert_eq!(
            reloaded.holder(&conn, "a", CUTOFF).expect("read"),
            Some(new)
        );
        assert_eq!(reloaded.holder(&conn, "b", CUTOFF).expect("read"), Some(b));
    }

    #[test]
    fn an_old_generation_freezes_at_the_next_write_and_a_restart_reads_nothing_back() {
        let conn = schema();
        let mut keys = DedupKeys::load(&conn).expect("load");
        let a = take(&conn, &mut keys, "a", 0);
        assert!(!keys.pending());
        take(&conn, &mut keys, "b", GENERATION_AGE_MS);
        assert!(keys.pending(), "frozen by age");
        write_frozen(&conn, &mut keys, GENERATION_AGE_MS);
        let reloaded = DedupKeys::load(&conn).expect("load");
        assert_eq!(reloaded.in_memory(), 0);
        assert_eq!(reloaded.holder(&conn, "a", CUTOFF).expect("read"), Some(a));
        assert_eq!(
            table(&conn, "SELECT MIN(purge_at) FROM dedup"),
            GENERATION_AGE_MS,
            "the purge goes by the generation's newest key"
        );
    }

    #[test]
    fn memory_stays_within_one_and_a_half_generations() {
        let conn = schema();
        let mut keys = DedupKeys::load(&conn).expect("load");
        let mut most = 0;
        // Every transaction takes 5 keys and writes its slice, as the writer does.
        for batch in 0..(4 * GENERATION_KEYS / 5) {
            let mut taken = Vec::new();
            for i in 0..5 {
                let job = JobId::new();
                taken.push(Taken {
                    key: format!("{batch}-{i}").into(),
                    holder: Holder {
                        job,
                        received_at: 1,
                    },
                    rowid: (5 * batch + i) as i64,
                });
            }
            let written = keys
                .write_slice(&conn, DedupKeys::slice_for(taken.len()), CUTOFF)
                .expect("write");
            keys.committed(taken, written, 1);
            most = most.max(keys.in_memory());
        }
        assert!(most <= GENERATION_KEYS * 3 / 2 + 5, "{most}");
    }

    #[test]
    fn expired_keys_leave_memory_without_going_into_the_table() {
        let conn = schema();
        let mut keys = DedupKeys::load(&conn).expect("load");
        take(&conn, &mut keys, "old", 0);
        take(&conn, &mut keys, "new", GENERATION_AGE_MS);
        let written = keys
            .write_slice(&conn, DedupKeys::slice_for(0), 1)
            .expect("write");
        keys.committed(Vec::new(), written, GENERATION_AGE_MS);
        assert_eq!(keys.in_memory(), 0);
        let rows: Vec<String> = conn
            .prepare("SELECT key FROM dedup")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(rows, ["new"]);
    }

    #[test]
    fn a_database_from_before_has_its_keys_in_the_table() {
        let conn = schema();
        conn.execute_batch(
            "INSERT INTO jobs (id, source, state, group_key, status, alertname, payload,
                               next_attempt_at, created_at, updated_at)
             VALUES ('0190a000-0000-7000-8000-000000000000', 'webhook', 'queued', 'g', 'firing',
                     'A', '{}', 1, 1, 1)",
        )
        .expect("old job");
        let keys = DedupKeys::load(&conn).expect("load");
        assert_eq!(keys.in_memory(), 0);
        assert_eq!(
            table(
                &conn,
                "SELECT value FROM store_meta WHERE name = 'dedup_written_rowid'"
            ),
            1
        );
    }
}
