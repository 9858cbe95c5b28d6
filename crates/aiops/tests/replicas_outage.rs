//! Two replicas on PostgreSQL while PostgreSQL restarts (stopped, then started, with pg_ctlcluster):
//! webhooks get 503 during the outage and Alertmanager's retries land afterwards; no acknowledged
//! webhook is lost and nothing is left stuck, with no restart of aiops. A test binary of its own:
//! cargo runs test binaries one at a time, so the restart disturbs no other test.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::{PgDb, distinct_group, start_replicas};
use futures_util::StreamExt;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// `pg_ctlcluster VERSION CLUSTER ACTION`, for the cluster scripts/test.sh started.
fn pg_ctl(action: &str) {
    let cluster = std::env::var("AIOPS_TEST_PG_CLUSTER").unwrap_or_else(|_| {
        let out = Command::new("pg_lsclusters")
            .arg("--no-header")
            .output()
            .expect("pg_lsclusters runs (apt-get install postgresql)");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        format!(
            "{} {}",
            fields.next().expect("a cluster"),
            fields.next().expect("a cluster")
        )
    });
    let mut args: Vec<&str> = cluster.split_whitespace().collect();
    args.push(action);
    if action == "stop" {
        args.extend(["-m", "fast"]);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let status = match root {
        true => Command::new("pg_ctlcluster").args(&args).status(),
        false => Command::new("sudo")
            .arg("pg_ctlcluster")
            .args(&args)
            .status(),
    }
    .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_no_acknowledged_webhook_and_leaves_nothing_stuck() {
    const GROUPS: usize = 300;
    let db = PgDb::create().await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("ok")
                .set_delay(Duration::from_millis(50)),
        )
        .mount(&slack)
        .await;
    let env = [
        ("AIOPS__STORE__URL", db.url.clone()),
        ("AIOPS__STORE__POOL_SIZE", "6".to_owned()),
        ("AIOPS__NOTIFY__STDOUT", "false".to_owned()),
        (
            "AIOPS__SLACK__WEBHOOK_URL",
            format!("{}/services/T/B/outage", slack.uri()),
        ),
        ("AIOPS__WORKER__LEASE_SECS", "3".to_owned()),
        ("AIOPS__WORKER__BACKOFF_BASE_SECS", "1".to_owned()),
        ("AIOPS__WORKER__MAX_ATTEMPTS", "10".to_owned()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let (_dirs, a, b) = start_replicas(&env).await;

    let send = async {
        futures_util::stream::iter(0..GROUPS)
            .map(|n| {
                let replica = if n % 2 == 0 { &a } else { &b };
                async move {
                    let body = distinct_group(n);
                    let id = replica
                        .post_until_accepted(body, Duration::from_secs(60))
                        .await;
                    // Pace the stream, so the outage falls in its middle.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    id
                }
            })
            .buffer_unordered(4)
            .collect::<Vec<Option<String>>>()
            .await
    };
    let outage = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        pg_ctl("stop");
        let during = a.try_post_webhook(distinct_group(GROUPS + 1)).await.0;
        tokio::time::sleep(Duration::from_secs(2)).await;
        pg_ctl("start");
        during
    };
    let (accepted, during) = tokio::join!(send, outage);
    assert_eq!(
        during,
        Some(reqwest::StatusCode::SERVICE_UNAVAILABLE),
        "a webhook during the outage gets 503, which Alertmanager retries"
    );
    let accepted: HashSet<String> = accepted
        .into_iter()
        .map(|id| id.expect("acknowledged after the restart"))
        .collect();
    assert_eq!(accepted.len(), GROUPS);

    // Everything acknowledged ends done, with no restart of aiops.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        let status = b.get("/queue/status").await;
        if status["done"] == GROUPS as u64 && status["running"] == 0 && status["queued"] == 0 {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished: {status}\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status["dead"], 0, "{status}");
    let delivered = slack.received_requests().await.expect("recorded").len();
    assert!(
        delivered >= GROUPS,
        "{delivered} deliveries for {GROUPS} groups"
    );
    eprintln!(
        "PostgreSQL restart: {GROUPS} acknowledged, lost 0, {} extra deliveries",
        delivered - GROUPS
    );
}
