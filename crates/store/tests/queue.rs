//! The store's behaviour, one suite run on both backends (a real SQLite file, and a database of its
//! own on a real PostgreSQL): commit, dedup, claiming, leases, retries, limits, history, threads.

use std::sync::Arc;
use std::time::Duration;

use aiops_model::alertmanager::AlertStatus;
use aiops_model::{
    AttemptEnd, Clock, DeliveryRecord, EnqueueOutcome, JobId, JobSource, JobState, Ledger,
    ManualClock, NewJob, StageTimings, Store, StoreError, Threads,
};
use aiops_store::{PgStore, SqliteStore, StoreConfig};
use sqlx::Connection;
use time::OffsetDateTime;

/// The backends every behaviour runs on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Where a harness's database lives.
enum Place {
    Sqlite(tempfile::TempDir),
    /// A database of its own on the test PostgreSQL, dropped with this (after the harness' store,
    /// which is declared before it).
    Postgres {
        admin: String,
        db: String,
    },
}

struct Harness {
    store: Arc<dyn Store>,
    threads: Arc<dyn Threads>,
    ledger: Arc<dyn Ledger>,
    clock: Arc<ManualClock>,
    config: StoreConfig,
    place: Place,
}

/// The test PostgreSQL's admin URL: `AIOPS_TEST_POSTGRES`, which scripts/test.sh sets.
fn postgres_admin() -> String {
    std::env::var("AIOPS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://aiops_test:aiops_test@127.0.0.1:5432/postgres".into())
}

fn database_url(admin: &str, db: &str) -> String {
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    format!("{base}/{db}")
}

async fn open(
    place: &Place,
    config: &StoreConfig,
    clock: Arc<ManualClock>,
) -> aiops_store::Backend {
    match place {
        Place::Sqlite(dir) => Arc::new(
            SqliteStore::open(&dir.path().join("aiops.db"), config, clock)
                .await
                .expect("opens"),
        )
        .into(),
        Place::Postgres { admin, db } => Arc::new(
            PgStore::open(&database_url(admin, db), config, clock)
                .await
                .expect("opens"),
        )
        .into(),
    }
}

async fn harness(backend: Backend, config: StoreConfig) -> Harness {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let place = match backend {
        Backend::Sqlite => Place::Sqlite(tempfile::tempdir().expect("tempdir")),
        Backend::Postgres => {
            let admin = postgres_admin();
            let db = format!("aiops_t_{}", JobId::new().to_string().replace('-', ""));
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {} ({e}): scripts/test.sh installs (apt-get install postgresql) and starts it",
                    aiops_store::redact_url(&admin)
                )
            });
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&mut conn)
                .await
                .expect("create the test database");
            Place::Postgres { admin, db }
        }
    };
    let opened = open(&place, &config, clock.clone()).await;
    Harness {
        store: opened.store,
        threads: opened.threads,
        ledger: opened.ledger,
        clock,
        config,
        place,
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let Place::Postgres { admin, db } = self else {
            return;
        };
        // Drop the test's database, from a thread of its own (Drop cannot await).
        let (admin, db) = (admin.clone(), db.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

impl Harness {
    /// Claims the next due job, which the test expects to exist.
    async fn claim(&self, owner: &str) -> aiops_model::ClaimedJob {
        self.store
            .claim(owner, LEASE)
            .await
            .expect("claim")
            .expect("a due job")
    }

    /// Closes the store and opens the same database again.
    async fn reopen(self) -> Self {
        let Harness {
            store,
            threads,
            ledger,
            clock,
            config,
            place,
        } = self;
        drop((store, threads, ledger));
        // Let the closed store's tasks and connections go.
        tokio::task::yield_now().await;
        let opened = open(&place, &config, clock.clone()).await;
        Harness {
            store: opened.store,
            threads: opened.threads,
            ledger: opened.ledger,
            clock,
            config,
            place,
        }
    }

    /// A `SELECT COUNT(*) …` on the database itself.
    async fn count(&self, sql: &'static str) -> i64 {
        match &self.place {
            Place::Sqlite(dir) => {
                let db = dir.path().join("aiops.db");
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                    .await
                    .expect("open");
                sqlx::query_scalar(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("count")
            }
            Place::Postgres { admin, db } => {
                let mut conn = sqlx::PgConnection::connect(&database_url(admin, db))
                    .await
                    .expect("connect");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect("count")
            }
        }
    }
}

fn job(key: &str) -> NewJob {
    NewJob {
        id: JobId::new(),
        source: JobSource::Webhook,
        dedup_key: Some(key.to_owned()),
        group_key: format!("group-{key}"),
        status: AlertStatus::Firing,
        alertname: "TargetDown".into(),
        payload: format!("{{\"key\": \"{key}\"}}"),
    }
}

const LEASE: Duration = Duration::from_secs(30);

static NO_TIMINGS: StageTimings = StageTimings {
    context_ms: None,
    rca_ms: None,
    notify_ms: None,
};

fn end() -> AttemptEnd<'static> {
    AttemptEnd {
        timings: &NO_TIMINGS,
        analysis: None,
        delivery: None,
    }
}

async fn committed_job_survives_reopening_and_can_be_read_back(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let outcome = h.store.enqueue(vec![job("a")]).await.expect("enqueue");
    let id = outcome[0].job_id();
    assert_eq!(outcome[0], EnqueueOutcome::Created(id));
    let h = h.reopen().await;
    let record = h
        .store
        .get(id)
        .await
        .expect("get")
        .expect("job exists after reopening");
    assert_eq!(record.state, JobState::Queued);
    assert_eq!(record.group_key, "group-a");
    assert_eq!(record.payload["key"], "a");
    assert_eq!(h.store.counts().await.expect("counts").queued, 1);
}

async fn a_duplicate_within_the_ttl_makes_no_job_and_names_the_original(backend: Backend) {
    let h = harness(
        backend,
        StoreConfig {
            dedup_ttl_secs: 60,
            ..StoreConfig::default()
        },
    )
    .await;
    let first = h.store.enqueue(vec![job("k")]).await.expect("enqueue")[0];
    let again = h.store.enqueue(vec![job("k")]).await.expect("enqueue")[0];
    assert_eq!(again, EnqueueOutcome::Duplicate(first.job_id()));
    h.clock.advance(Duration::from_secs(61));
    let later = h.store.enqueue(vec![job("k")]).await.expect("enqueue")[0];
    assert!(
        matches!(later, EnqueueOutcome::Created(id) if id != first.job_id()),
        "{later:?}"
    );
    assert_eq!(h.store.counts().await.expect("counts").queued, 2);
}

/// SQLite keeps new dedup keys in memory and writes them into the table a generation at a time (one
/// freezes when it is full or a minute old); duplicates must be found wherever the key is.
async fn dedup_keys_hold_once_in_the_table_and_after_reopening(backend: Backend) {
    let config = StoreConfig {
        dedup_ttl_secs: 3600,
        ..StoreConfig::default()
    };
    let h = harness(backend, config).await;
    let a = h.store.enqueue(vec![job("a")]).await.expect("enqueue")[0].job_id();
    h.clock.advance(Duration::from_secs(61));
    let b = h.store.enqueue(vec![job("b")]).await.expect("enqueue")[0].job_id();
    let mut in_table = 0;
    for _ in 0..100 {
        in_table = h.count("SELECT COUNT(*) FROM dedup").await;
        if in_table == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_table, 2, "a minute-old generation goes into the table");
    let duplicates = |outcomes: Vec<EnqueueOutcome>| {
        outcomes
            .into_iter()
            .map(|o| match o {
                EnqueueOutcome::Duplicate(id) => Some(id),
                EnqueueOutcome::Created(_) => None,
            })
            .collect::<Vec<_>>()
    };
    let again = h.store.enqueue(vec![job("a"), job("b")]).await;
    assert_eq!(duplicates(again.expect("enqueue")), [Some(a), Some(b)]);

    let c = h.store.enqueue(vec![job("c")]).await.expect("enqueue")[0].job_id();
    let h = h.reopen().await;
    let again = h.store.enqueue(vec![job("a"), job("b"), job("c")]).await;
    assert_eq!(
        duplicates(again.expect("enqueue")),
        [Some(a), Some(b), Some(c)]
    );
    // a is 3,661 s old now, b and c 3,600 s: the TTL still covers them.
    h.clock.advance(Duration::from_secs(3600));
    let later = h.store.enqueue(vec![job("a"), job("b")]).await;
    assert_eq!(duplicates(later.expect("enqueue")), [None, Some(b)]);
}

async fn concurrent_duplicates_make_exactly_one_job(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let store = h.store.clone();
        tasks.spawn(async move { store.enqueue(vec![job("same")]).await.expect("enqueue")[0] });
    }
    let outcomes = tasks.join_all().await;
    let created: Vec<_> = outcomes.iter().filter(|o| !o.is_duplicate()).collect();
    assert_eq!(created.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.job_id() == created[0].job_id()));
    assert_eq!(h.store.counts().await.expect("counts").queued, 1);
}

async fn jobs_without_a_dedup_key_are_never_duplicates(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let mut manual = job("m");
    manual.dedup_key = None;
    let mut manual2 = manual.clone();
    manual2.id = JobId::new();
    let outcomes = h
        .store
        .enqueue(vec![manual, manual2])
        .await
        .expect("enqueue");
    assert!(outcomes.iter().all(|o| !o.is_duplicate()));
}

async fn a_full_queue_refuses_the_whole_request_and_writes_nothing(backend: Backend) {
    let h = harness(
        backend,
        StoreConfig {
            max_queued: 2,
            ..StoreConfig::default()
        },
    )
    .await;
    h.store.enqueue(vec![job("1")]).await.expect("first fits");
    let err = h
        .store
        .enqueue(vec![job("2"), job("3")])
        .await
        .expect_err("two more do not fit");
    assert!(matches!(err, StoreError::QueueFull(_)), "{err:?}");
    assert!(err.is_retriable());
    assert_eq!(
        h.store.counts().await.expect("counts").queued,
        1,
        "nothing of the refused request"
    );
    h.store
        .enqueue(vec![job("2")])
        .await
        .expect("one more fits");
}

async fn a_full_queue_makes_room_as_soon_as_jobs_end(backend: Backend) {
    let h = harness(
        backend,
        StoreConfig {
            max_queued: 2,
            ..StoreConfig::default()
        },
    )
    .await;
    h.store
        .enqueue(vec![job("1"), job("2")])
        .await
        .expect("two fit");
    let full =
        |r: Result<Vec<EnqueueOutcome>, StoreError>| matches!(r, Err(StoreError::QueueFull(_)));
    assert!(
        full(h.store.enqueue(vec![job("3")]).await),
        "the queue is full"
    );

    // A running job, a retry and a released job still count.
    let first = h.claim("w1").await;
    assert!(
        full(h.store.enqueue(vec![job("3")]).await),
        "running still counts"
    );
    let retry_at = h.clock.now() + time::Duration::seconds(5);
    h.store
        .fail(first.id, "w1", "boom", end(), Some(retry_at))
        .await
        .expect("fail");
    let second = h.claim("w1").await;
    h.store.release(second.id, "w1").await.expect("release");
    assert!(
        full(h.store.enqueue(vec![job("3")]).await),
        "retries and releases still count"
    );

    // A job that ends done, and one that ends dead, each make room at once.
    let second = h.claim("w1").await;
    h.store
        .complete(second.id, "w1", end())
        .await
        .expect("complete");
    h.store
        .enqueue(vec![job("3")])
        .await
        .expect("room after done");
    let next = h.claim("w1").await;
    h.store
        .fail(next.id, "w1", "boom again", end(), None)
        .await
        .expect("dead");
    h.store
        .enqueue(vec![job("4")])
        .await
        .expect("room after dead");
    assert!(full(h.store.enqueue(vec![job("5")]).await), "full again");
}

async fn an_expired_lease_lets_another_worker_claim_and_fences_the_first(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let id = h.store.enqueue(vec![job("a")]).await.expect("enqueue")[0].job_id();
    let first = h
        .store
        .claim("w1", LEASE)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!((first.id, first.attempt), (id, 1));
    assert!(
        h.store.claim("w2", LEASE).await.expect("claim").is_none(),
        "leased jobs are not handed out twice"
    );

    h.clock.advance(LEASE + Duration::from_secs(1));
    let second = h
        .store
        .claim("w2", LEASE)
        .await
        .expect("claim")
        .expect("the abandoned job");
    assert_eq!((second.id, second.attempt), (id, 2));
    let err = h
        .store
        .complete(id, "w1", end())
        .await
        .expect_err("w1 lost its lease");
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err:?}");
    h.store
        .complete(id, "w2", end())
        .await
        .expect("w2 completes");
    let record = h.store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Done);
    assert_eq!(record.attempts, 2);
    assert!(record.finished_at.is_some());
}

async fn a_renewed_lease_keeps_the_job(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let id = h.store.enqueue(vec![job("a")]).await.expect("enqueue")[0].job_id();
    h.claim("w1").await;
    h.clock.advance(LEASE - Duration::from_secs(1));
    h.store.extend_lease(id, "w1", LEASE).await.expect("renew");
    h.clock.advance(Duration::from_secs(2));
    assert!(h.store.claim("w2", LEASE).await.expect("claim").is_none());
}

async fn a_failed_attempt_waits_until_its_retry_time(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let id = h.store.enqueue(vec![job("a")]).await.expect("enqueue")[0].job_id();
    h.claim("w").await;
    let retry_at = h.clock.now() + Duration::from_secs(10);
    h.store
        .fail(id, "w", "rca: 503", end(), Some(retry_at))
        .await
        .expect("fail");
    let record = h.store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Queued);
    assert_eq!(record.last_error.as_deref(), Some("rca: 503"));
    assert!(
        h.store.claim("w", LEASE).await.expect("claim").is_none(),
        "not due yet"
    );
    h.clock.advance(Duration::from_secs(10));
    let again = h
        .store
        .claim("w", LEASE)
        .await
        .expect("claim")
        .expect("due now");
    assert_eq!(again.attempt, 2);
    h.store
        .fail(id, "w", "rca: 400", end(), None)
        .await
        .expect("dead");
    let record = h.store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Dead);
    assert_eq!(record.last_error.as_deref(), Some("rca: 400"));
    assert_eq!(h.store.counts().await.expect("counts").dead, 1);
}

async fn released_jobs_come_back_without_counting_the_attempt(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let id = h.store.enqueue(vec![job("a")]).await.expect("enqueue")[0].job_id();
    h.claim("w").await;
    h.store.release(id, "w").await.expect("release");
    let again = h
        .store
        .claim("w2", LEASE)
        .await
        .expect("claim")
        .expect("job is back");
    assert_eq!(again.attempt, 1);
}

async fn deliveries_and_analysis_are_kept_for_the_next_attempt(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let id = h.store.enqueue(vec![job("a")]).await.expect("enqueue")[0].job_id();
    h.claim("w").await;
    let delivery = DeliveryRecord {
        sink: "stdout".into(),
        delivered_at: h.clock.now(),
        detail: Some("ts".into()),
    };
    h.store
        .record_delivery(id, &delivery)
        .await
        .expect("record");
    h.store
        .record_delivery(id, &delivery)
        .await
        .expect("recording twice is harmless");
    h.clock.advance(LEASE * 2);
    let again = h
        .store
        .claim("w2", LEASE)
        .await
        .expect("claim")
        .expect("job");
    assert!(again.delivered_to("stdout"));
    assert_eq!(again.deliveries.len(), 1);
    assert_eq!(again.deliveries[0].detail.as_deref(), Some("ts"));

    // A failed attempt keeps the analysis it made; the next attempt gets it back.
    let analysis = aiops_rca::analyze_by_rules(&payload(), &aiops_model::Context::default());
    let failed = AttemptEnd {
        analysis: Some(&analysis),
        ..end()
    };
    h.store
        .fail(id, "w2", "notify: down", failed, Some(h.clock.now()))
        .await
        .expect("fail");
    let third = h
        .store
        .claim("w3", LEASE)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(third.analysis.as_ref(), Some(&analysis));
    // Completion records the delivery it carries in the same transaction.
    let webhook = DeliveryRecord {
        sink: "webhook".into(),
        delivered_at: h.clock.now(),
        detail: None,
    };
    h.store
        .complete(
            id,
            "w3",
            AttemptEnd {
                delivery: Some(&webhook),
                ..end()
            },
        )
        .await
        .expect("complete");
    let record = h.store.get(id).await.expect("get").expect("record");
    let sinks: Vec<&str> = record.deliveries.iter().map(|d| d.sink.as_str()).collect();
    assert_eq!(sinks, ["stdout", "webhook"]);
    assert_eq!(
        record.analysis,
        Some(analysis),
        "a completion without an analysis keeps the saved one"
    );
}

async fn a_delivery_is_recorded_even_when_the_lease_was_lost(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let id = h.store.enqueue(vec![job("a")]).await.expect("enqueue")[0].job_id();
    h.claim("w1").await;
    h.clock.advance(LEASE * 2);
    h.claim("w2").await;
    let delivery = DeliveryRecord {
        sink: "stdout".into(),
        delivered_at: h.clock.now(),
        detail: None,
    };
    let err = h
        .store
        .complete(
            id,
            "w1",
            AttemptEnd {
                delivery: Some(&delivery),
                ..end()
            },
        )
        .await;
    assert!(matches!(err, Err(StoreError::LeaseLost(_))), "{err:?}");
    let record = h.store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Running, "w2 still owns it");
    assert_eq!(
        record.deliveries.len(),
        1,
        "w2 will not deliver to stdout again"
    );
}

fn payload() -> aiops_model::WebhookPayload {
    let path = format!(
        "{}/../../tests/fixtures/alertmanager/target-down-single.json",
        env!("CARGO_MANIFEST_DIR")
    );
    aiops_model::alertmanager::parse_webhook(&std::fs::read(path).expect("fixture"))
        .expect("parses")
}

async fn counts_report_age_and_recent_finishes(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let id = h.store.enqueue(vec![job("a")]).await.expect("enqueue")[0].job_id();
    h.store.enqueue(vec![job("b")]).await.expect("enqueue");
    h.clock.advance(Duration::from_secs(5));
    h.claim("w").await;
    h.store.complete(id, "w", end()).await.expect("complete");
    let counts = h.store.counts().await.expect("counts");
    assert_eq!((counts.queued, counts.running, counts.done), (1, 0, 1));
    assert_eq!(counts.finished_last_minute, 1);
    let age = counts.oldest_queued_age_secs.expect("an age");
    assert!((5.0..6.0).contains(&age), "{age}");
}

async fn purging_removes_expired_dedup_keys_and_old_history_only(backend: Backend) {
    let config = StoreConfig {
        dedup_ttl_secs: 3600,
        retention_days: 1,
        ..StoreConfig::default()
    };
    let h = harness(backend, config).await;
    let old = h.store.enqueue(vec![job("old")]).await.expect("enqueue")[0].job_id();
    h.claim("w").await;
    let delivery = DeliveryRecord {
        sink: "stdout".into(),
        delivered_at: h.clock.now(),
        detail: None,
    };
    let done = AttemptEnd {
        delivery: Some(&delivery),
        ..end()
    };
    h.store.complete(old, "w", done).await.expect("complete");
    let judged = aiops_model::Feedback {
        verdict: aiops_model::Verdict::Right,
        user: "alice".into(),
        at: h.clock.now(),
    };
    h.store.add_feedback(old, &judged).await.expect("feedback");
    let waiting = h
        .store
        .enqueue(vec![job("waiting")])
        .await
        .expect("enqueue")[0]
        .job_id();

    h.clock.advance(Duration::from_secs(2 * 86_400));
    h.store.purge_expired().await.expect("purge");
    assert!(
        h.store.get(old).await.expect("get").is_none(),
        "finished before retention: gone"
    );
    assert!(
        h.store.get(waiting).await.expect("get").is_some(),
        "unfinished jobs are never purged"
    );
    // Look at the tables themselves: nothing of the purged job is left behind.
    for (sql, expected) in [
        ("SELECT COUNT(*) FROM deliveries", 0),
        ("SELECT COUNT(*) FROM feedback", 0),
        ("SELECT COUNT(*) FROM dedup", 0),
        ("SELECT COUNT(*) FROM jobs", 1),
    ] {
        assert_eq!(h.count(sql).await, expected, "{sql}");
    }
}

async fn feedback_is_kept_with_its_job_in_order_and_refused_for_an_unknown_one(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let id = h.store.enqueue(vec![job("judged")]).await.expect("enqueue")[0].job_id();
    let start = h.clock.now();
    let given = |verdict, user: &str, secs: u64| aiops_model::Feedback {
        verdict,
        user: user.into(),
        at: start + Duration::from_secs(secs),
    };
    let wrong = given(aiops_model::Verdict::Wrong, "alice", 0);
    let right = given(aiops_model::Verdict::Right, "bob", 60);
    // Feedback may come while the job still waits or runs: not lease-guarded.
    h.store.add_feedback(id, &wrong).await.expect("feedback");
    h.store.add_feedback(id, &right).await.expect("feedback");
    let unknown = JobId::new();
    assert!(matches!(
        h.store.add_feedback(unknown, &wrong).await,
        Err(StoreError::NotFound(x)) if x == unknown
    ));
    let h = h.reopen().await;
    let record = h.store.get(id).await.expect("get").expect("the job");
    assert_eq!(record.feedback.len(), 2);
    assert_eq!(
        record
            .feedback
            .iter()
            .map(|f| (f.verdict, f.user.as_str()))
            .collect::<Vec<_>>(),
        [
            (aiops_model::Verdict::Wrong, "alice"),
            (aiops_model::Verdict::Right, "bob")
        ]
    );
    assert_eq!(
        record.feedback[0].at.unix_timestamp(),
        wrong.at.unix_timestamp()
    );
    let other = h.store.enqueue(vec![job("other")]).await.expect("enqueue")[0].job_id();
    assert_eq!(h.store.judged(10).await.expect("judged"), [id]);
    let later = given(aiops_model::Verdict::Right, "carol", 120);
    h.store.add_feedback(other, &later).await.expect("feedback");
    assert_eq!(h.store.judged(10).await.expect("judged"), [other, id]);
    assert_eq!(h.store.judged(1).await.expect("judged"), [other]);
}

async fn the_first_thread_of_a_group_wins_and_survives_reopening(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let group = "{}:{alertname=\"TargetDown\"}";
    assert_eq!(h.threads.thread(group, "slack").await.expect("read"), None);
    let first = aiops_model::Thread {
        channel: "C1".into(),
        ts: "1700000000.000100".into(),
        resolved: false,
    };
    let second = aiops_model::Thread {
        channel: "C1".into(),
        ts: "1700000001.000200".into(),
        resolved: false,
    };
    let (a, b) = tokio::join!(
        h.threads.save_thread(group, "slack", &first),
        h.threads.save_thread(group, "slack", &second)
    );
    let (a, b) = (a.expect("save"), b.expect("save"));
    assert_eq!(a, b, "both deliveries learn the one thread that is stored");
    assert!(a == first || a == second);
    assert_eq!(
        h.threads.thread(group, "other-sink").await.expect("read"),
        None
    );
    let h = h.reopen().await;
    assert_eq!(
        h.threads.thread(group, "slack").await.expect("read"),
        Some(a.clone())
    );

    // The incident's message as it reads, kept for the resolution's edit.
    assert_eq!(h.threads.root(group, "slack").await.expect("read"), None);
    h.threads
        .save_root(group, "slack", "{\"text\":\"first look\"}")
        .await
        .expect("save");
    h.threads
        .save_root(group, "slack", "{\"text\":\"the analysis\"}")
        .await
        .expect("save");
    let h = h.reopen().await;
    assert_eq!(
        h.threads
            .root(group, "slack")
            .await
            .expect("read")
            .as_deref(),
        Some("{\"text\":\"the analysis\"}")
    );

    // The resolution marks it resolved and keeps it (the group may flap); firing again soon
    // after reopens it.
    h.threads
        .set_resolved(group, "slack", true)
        .await
        .expect("resolve");
    let h = h.reopen().await;
    let resolved = h.threads.thread(group, "slack").await.expect("read");
    assert_eq!(
        resolved,
        Some(aiops_model::Thread {
            resolved: true,
            ..a.clone()
        })
    );
    assert!(
        h.threads
            .root(group, "slack")
            .await
            .expect("read")
            .is_some()
    );
    h.threads
        .set_resolved(group, "slack", false)
        .await
        .expect("reopen");
    assert_eq!(
        h.threads.thread(group, "slack").await.expect("read"),
        Some(a.clone())
    );

    // Closed (the group fired again after the flap window): firing again starts a new thread.
    h.threads.close_thread(group, "slack").await.expect("close");
    assert_eq!(h.threads.root(group, "slack").await.expect("read"), None);
    assert_eq!(h.threads.thread(group, "slack").await.expect("read"), None);
    let next = aiops_model::Thread {
        channel: "C1".into(),
        ts: "1700009999.000300".into(),
        resolved: false,
    };
    let stored = h
        .threads
        .save_thread(group, "slack", &next)
        .await
        .expect("save");
    assert_eq!(
        stored, next,
        "a closed thread does not block the next incident"
    );
    assert_ne!(stored, a);
}

async fn a_groups_resolutions_come_with_its_next_firing_newest_first(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let in_group = |key: &str, status: AlertStatus, source: JobSource| NewJob {
        group_key: "flapping".into(),
        status,
        source,
        ..job(key)
    };
    // Minute 0 fired (analyzed), 1 resolved, 2 a manual analysis, 3 fired again, 4 resolved,
    // 5 fired again (the job asked about), 6 resolved after it; and another group.
    let steps = [
        ("f1", AlertStatus::Firing, JobSource::Webhook),
        ("r1", AlertStatus::Resolved, JobSource::Webhook),
        ("m1", AlertStatus::Firing, JobSource::Manual),
        ("f2", AlertStatus::Firing, JobSource::Webhook),
        ("r2", AlertStatus::Resolved, JobSource::Webhook),
        ("f3", AlertStatus::Firing, JobSource::Webhook),
        ("r3", AlertStatus::Resolved, JobSource::Webhook),
    ];
    let start = h.clock.now();
    let mut ids = Vec::new();
    for (i, (key, status, source)) in steps.into_iter().enumerate() {
        if i > 0 {
            h.clock.advance(Duration::from_secs(60));
        }
        let id = h
            .store
            .enqueue(vec![in_group(key, status, source)])
            .await
            .expect("enqueue")[0]
            .job_id();
        ids.push(id);
    }
    h.store.enqueue(vec![job("other")]).await.expect("enqueue");
    let minute = |m: i64| start + time::Duration::minutes(m);
    let ms = |t: OffsetDateTime| t.unix_timestamp_nanos() / 1_000_000;
    let seen = |r: &[aiops_model::Resolution]| -> Vec<(i128, Option<i128>)> {
        r.iter()
            .map(|r| (ms(r.resolved_at), r.refired_at.map(ms)))
            .collect()
    };
    let f3 = ids[5];
    let resolutions = h
        .store
        .resolutions("flapping", f3, 10)
        .await
        .expect("resolutions");
    assert_eq!(
        seen(&resolutions),
        [
            (ms(minute(4)), Some(ms(minute(5)))),
            (ms(minute(1)), Some(ms(minute(3)))),
        ],
        "the resolutions before f3, newest first, each with the next webhook firing (not the manual one)"
    );
    assert_eq!(
        h.store
            .resolutions("flapping", f3, 1)
            .await
            .expect("resolutions")
            .len(),
        1
    );
    // For the resolution r2, the firing after r1 is f2; nothing fired after r2 up to r2 itself.
    let r2 = ids[4];
    assert_eq!(
        seen(
            &h.store
                .resolutions("flapping", r2, 10)
                .await
                .expect("resolutions")
        ),
        [(ms(minute(1)), Some(ms(minute(3))))]
    );
    assert!(
        h.store
            .resolutions("flapping", ids[0], 10)
            .await
            .expect("resolutions")
            .is_empty()
    );

    // The latest firing with an analysis before a job.
    assert_eq!(
        h.store.last_analyzed("flapping", f3).await.expect("read"),
        None
    );
    let f1 = h.claim("w").await;
    assert_eq!(f1.id, ids[0]);
    let analysis = aiops_rca::analyze_by_rules(&payload(), &aiops_model::Context::default());
    let analyzed = AttemptEnd {
        analysis: Some(&analysis),
        ..end()
    };
    h.store
        .complete(f1.id, "w", analyzed)
        .await
        .expect("complete");
    assert_eq!(
        h.store.last_analyzed("flapping", f3).await.expect("read"),
        Some(ids[0])
    );
    assert_eq!(
        h.store
            .last_analyzed("flapping", ids[0])
            .await
            .expect("read"),
        None,
        "only jobs before the one asking"
    );
}

async fn the_llm_spend_adds_up_per_day_across_bookings_and_reopening(backend: Backend) {
    let h = harness(backend, StoreConfig::default()).await;
    let day = 20_429;
    // Concurrent bookings (workers, replicas) each read back a total that holds their own.
    let bookings: Vec<_> = (0..8)
        .map(|_| {
            let ledger = h.ledger.clone();
            tokio::spawn(async move { ledger.book(day, 0.25).await })
        })
        .collect();
    let mut totals = Vec::new();
    for booking in bookings {
        totals.push(booking.await.expect("joined").expect("book"));
    }
    totals.sort_by(f64::total_cmp);
    assert!((totals[7] - 2.0).abs() < 1e-9, "{totals:?}");
    assert!(totals.iter().all(|t| *t >= 0.25 - 1e-9), "{totals:?}");
    // A refusal gives its booking back; the next day starts at nothing.
    assert!((h.ledger.book(day, -0.5).await.expect("book") - 1.5).abs() < 1e-9);
    assert!((h.ledger.book(day + 1, 0.1).await.expect("book") - 0.1).abs() < 1e-9);
    let h = h.reopen().await;
    assert!(
        (h.ledger.book(day, 0.0).await.expect("read") - 1.5).abs() < 1e-9,
        "a restart does not reset the day's spend"
    );
}

/// Runs each behaviour on both backends.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
    };
}

on_every_backend!(
    committed_job_survives_reopening_and_can_be_read_back,
    a_duplicate_within_the_ttl_makes_no_job_and_names_the_original,
    dedup_keys_hold_once_in_the_table_and_after_reopening,
    concurrent_duplicates_make_exactly_one_job,
    jobs_without_a_dedup_key_are_never_duplicates,
    a_full_queue_refuses_the_whole_request_and_writes_nothing,
    a_full_queue_makes_room_as_soon_as_jobs_end,
    an_expired_lease_lets_another_worker_claim_and_fences_the_first,
    a_renewed_lease_keeps_the_job,
    a_failed_attempt_waits_until_its_retry_time,
    released_jobs_come_back_without_counting_the_attempt,
    deliveries_and_analysis_are_kept_for_the_next_attempt,
    a_delivery_is_recorded_even_when_the_lease_was_lost,
    counts_report_age_and_recent_finishes,
    purging_removes_expired_dedup_keys_and_old_history_only,
    the_first_thread_of_a_group_wins_and_survives_reopening,
    the_llm_spend_adds_up_per_day_across_bookings_and_reopening,
    a_groups_resolutions_come_with_its_next_firing_newest_first,
    feedback_is_kept_with_its_job_in_order_and_refused_for_an_unknown_one,
);
