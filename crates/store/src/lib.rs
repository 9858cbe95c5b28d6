//! The durable job queue and analysis history of aiops, on sqlx (the SQLite writer's one connection
//! is driven with rusqlite, in its own thread; see `writer`).
//!
//! # Layout
//! - [`StoreConfig`]: the `[store]` configuration section.
//! - [`open`]: builds the backend that `store.url` names: SQLite (embedded, the default) or
//!   PostgreSQL (several replicas on one database).
//! - `sqlite`: the SQLite backend: WAL, a single writer connection, and group commit.
//! - `writer`: SQLite's group-commit thread that runs every write waiting at a moment in one transaction.
//! - `wal_sync`: the thread that fsyncs SQLite's WAL and only then releases a batch's answers.
//! - `dedup`: SQLite's dedup keys, held by the writer and written into the table in key order.
//! - `health`: whether writes work, logged once per change; a full disk named as such.
//! - `postgres`: the PostgreSQL backend: a pool, `FOR UPDATE SKIP LOCKED` claims, group-committed
//!   webhooks.
//! - `plan`: what a batch of webhooks becomes (dedup within the batch, outcomes), for both.
//! - `rows`: reading rows and converting values, for both.
//!
//! Both backends run the same migrations: the SQL is portable (no backend-only functions in them;
//! times are Unix milliseconds in `BIGINT`).
#![forbid(unsafe_code)]

mod dedup;
mod health;
mod plan;
mod postgres;
mod rows;
mod sqlite;
mod wal_sync;
mod writer;

use std::sync::Arc;

use aiops_model::{Clock, Ledger, Store, Threads};
use serde::{Deserialize, Serialize};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The `[store]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Where jobs live: `sqlite://PATH` (the parent folder is created), or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` for several replicas on one database. Printed with
    /// its password masked.
    #[serde(default = "default_url", serialize_with = "serialize_redacted")]
    pub url: String,
    /// A webhook equal to one received this many seconds ago or less is a duplicate. The default
    /// covers Alertmanager's default `repeat_interval` (4h), so a group that keeps firing is analyzed
    /// once, not again every repeat.
    #[serde(default = "default_dedup_ttl_secs")]
    pub dedup_ttl_secs: u64,
    /// Jobs waiting or running beyond which webhooks get 503 (Alertmanager retries them later).
    #[serde(default = "default_max_queued")]
    pub max_queued: u64,
    /// Finished jobs older than this many days are deleted from the history. 0 keeps them forever.
    #[serde(default = "default_retention_days")]
    pub retention_days: u64,
    /// The most enqueue requests committed in one transaction.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// PostgreSQL: connections per replica (workers, the API and the batcher share them).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
}

fn default_pool_size() -> u32 {
    10
}

fn default_url() -> String {
    "sqlite://data/aiops.db".into()
}
fn default_dedup_ttl_secs() -> u64 {
    6 * 3600
}
fn default_max_queued() -> u64 {
    10_000
}
fn default_retention_days() -> u64 {
    30
}
fn default_max_batch() -> usize {
    512
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            dedup_ttl_secs: default_dedup_ttl_secs(),
            max_queued: default_max_queued(),
            retention_days: default_retention_days(),
            max_batch: default_max_batch(),
            pool_size: default_pool_size(),
        }
    }
}

impl StoreConfig {
    /// Checks the section before anything opens: a bad value names its key.
    pub fn validate(&self) -> Result<(), String> {
        if sqlite_path(&self.url).is_none() && !is_postgres(&self.url) {
            return Err(format!(
                "store.url: unsupported URL scheme in {:?}; use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
                redact_url(&self.url)
            ));
        }
        if self.pool_size == 0 {
            return Err("store.pool_size must be at least 1".into());
        }
        if self.max_queued == 0 {
            return Err("store.max_queued must be at least 1".into());
        }
        if self.max_batch == 0 {
            return Err("store.max_batch must be at least 1".into());
        }
        Ok(())
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("cannot open the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot open the database for writing: {0}")]
    Writer(#[from] rusqlite::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the database folder: {0}")]
    Io(#[from] std::io::Error),
}

/// One open backend, seen through its three ports: the job queue, the sinks' threads and the LLM's
/// daily spend.
#[derive(Debug, Clone)]
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub threads: Arc<dyn Threads>,
    pub ledger: Arc<dyn Ledger>,
}

impl<T: Store + Threads + Ledger + 'static> From<Arc<T>> for Backend {
    fn from(backend: Arc<T>) -> Self {
        Self {
            store: backend.clone(),
            threads: backend.clone(),
            ledger: backend,
        }
    }
}

/// Opens the store `config.url` names and runs its migrations. Must run inside a tokio runtime: the
/// store spawns its writer task there.
pub async fn open(config: &StoreConfig, clock: Arc<dyn Clock>) -> Result<Backend, OpenError> {
    config.validate().map_err(OpenError::Config)?;
    if is_postgres(&config.url) {
        return Ok(Arc::new(PgStore::open(&config.url, config, clock).await?).into());
    }
    let path = sqlite_path(&config.url).ok_or_else(|| OpenError::Config("store.url".into()))?;
    Ok(Arc::new(SqliteStore::open(path.as_ref(), config, clock).await?).into())
}

/// Runs a backend's maintenance (`purge`) once a minute, for as long as the store lives.
async fn purge_every_minute<F, Fut>(purge: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), aiops_model::StoreError>>,
{
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        if let Err(e) = purge().await {
            tracing::warn!(error = %e, "store maintenance failed; it runs again in a minute");
        }
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The migrations, embedded; both backends run the same ones.
pub(crate) fn migrator() -> Migrator {
    let migration = |version, name: &'static str, sql: &'static str| {
        Migration::new(
            version,
            name.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(1, "init", include_str!("../migrations/0001_init.sql")),
        migration(2, "threads", include_str!("../migrations/0002_threads.sql")),
        migration(
            3,
            "dedup_in_key_order",
            include_str!("../migrations/0003_dedup_in_key_order.sql"),
        ),
        migration(
            4,
            "llm_spend",
            include_str!("../migrations/0004_llm_spend.sql"),
        ),
        migration(
            5,
            "feedback",
            include_str!("../migrations/0005_feedback.sql"),
        ),
        migration(
            6,
            "thread_root",
            include_str!("../migrations/0006_thread_root.sql"),
        ),
        migration(
            7,
            "flapping",
            include_str!("../migrations/0007_flapping.sql"),
        ),
    ])
}

/// The file path of a `sqlite://PATH` or `sqlite:PATH` URL.
fn sqlite_path(url: &str) -> Option<&str> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    (!path.is_empty()).then_some(path)
}

fn serialize_redacted<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// A URL as it may be shown: without a password.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}:****{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_give_paths() {
        assert_eq!(sqlite_path("sqlite://data/aiops.db"), Some("data/aiops.db"));
        assert_eq!(
            sqlite_path("sqlite:///var/lib/aiops.db"),
            Some("/var/lib/aiops.db")
        );
        assert_eq!(sqlite_path("postgres://x"), None);
        assert_eq!(sqlite_path("sqlite://"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:****@h/db");
        assert_eq!(redact_url("sqlite://data/a.db"), "sqlite://data/a.db");
    }
}
