//! Several aiops replicas on one PostgreSQL database (Debian `postgresql`, started by
//! scripts/test.sh), as real processes: the HA pair's two copies of a group make one job, each job is
//! processed once and reaches Slack once, a replica killed with -9 leaves nothing behind, and an
//! incident's thread is shared.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Daemon, PgDb, distinct_group, fixture, json_bodies, start_replicas};
use futures_util::StreamExt;
use regex::Regex;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn replica_env(
    db: &PgDb,
    slack: &str,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AIOPS__STORE__URL", db.url.clone()),
        ("AIOPS__STORE__POOL_SIZE", "6".to_owned()),
        ("AIOPS__NOTIFY__STDOUT", "false".to_owned()),
        ("AIOPS__NOTIFY__PUBLIC_URL", "http://aiops.test".to_owned()),
        (
            "AIOPS__SLACK__WEBHOOK_URL",
            format!("{slack}/services/T/B/replicas"),
        ),
        ("AIOPS__WORKER__CONCURRENCY", "4".to_owned()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

/// A fake Slack incoming webhook that answers `ok` after `delay`.
async fn fake_slack(delay: Duration) -> MockServer {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("ok")
                .set_delay(delay),
        )
        .mount(&slack)
        .await;
    slack
}

/// How many Slack messages each job got, by the job id in the "full analysis" link.
async fn messages_per_job(slack: &MockServer) -> HashMap<String, usize> {
    let link = Regex::new(r"aiops\.test/analyses/([0-9a-f-]{36})").expect("regex");
    let mut per_job = HashMap::new();
    for body in json_bodies(slack).await {
        let text = body["text"].as_str().unwrap_or_default();
        let id = link
            .captures(text)
            .map(|c| c[1].to_owned())
            .expect("a job link");
        *per_job.entry(id).or_default() += 1;
    }
    per_job
}

/// Waits (bounded) until Slack has messages for `count` jobs.
async fn wait_for_jobs(slack: &MockServer, count: usize, max: Duration) -> HashMap<String, usize> {
    let deadline = tokio::time::Instant::now() + max;
    loop {
        let per_job = messages_per_job(slack).await;
        if per_job.len() >= count || tokio::time::Instant::now() >= deadline {
            return per_job;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Posts groups `0..groups` to both replicas, each group to both at once as an HA Alertmanager pair
/// does (16 groups in flight); Alertmanager retries a 503 (bounded here). Answers, per group, the job
/// id each replica acknowledged (None: never acknowledged).
async fn post_groups_to_both(a: &Daemon, b: &Daemon, groups: usize) -> Vec<[Option<String>; 2]> {
    futures_util::stream::iter(0..groups)
        .map(|n| async move {
            let body = distinct_group(n);
            let (x, y) = tokio::join!(
                a.post_until_accepted(body.clone(), Duration::from_secs(10)),
                b.post_until_accepted(body, Duration::from_secs(10))
            );
            [x, y]
        })
        .buffer_unordered(16)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_sending_1000_groups_to_two_replicas_makes_1000_jobs_each_delivered_once() {
    const GROUPS: usize = 1000;
    let db = PgDb::create().await;
    let slack = fake_slack(Duration::ZERO).await;
    let env = replica_env(&db, &slack.uri(), &[]);
    let (_dirs, a, b) = start_replicas(&env).await;

    let answers = post_groups_to_both(&a, &b, GROUPS).await;
    for [x, y] in &answers {
        assert!(x.is_some() && y.is_some(), "both copies acknowledged");
        assert_eq!(x, y, "both replicas name the one job of the group");
    }

    let per_job = wait_for_jobs(&slack, GROUPS, Duration::from_secs(120)).await;
    let status = a.drain(Duration::from_secs(60)).await;
    assert_eq!(per_job.len(), GROUPS, "every group reached Slack");
    assert!(per_job.values().all(|n| *n == 1), "each exactly once");
    assert_eq!(status["done"], GROUPS as u64, "{status}");
    assert_eq!(status["dead"], 0, "{status}");
    // Both replicas did work.
    for replica in [&a, &b] {
        let metrics = replica.metrics().await;
        let delivered: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("aiops_deliveries_total{sink=\"slack\",result=\"ok\"} "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_default();
        assert!(delivered > 0, "each replica delivered some:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_leaves_its_jobs_to_the_other_and_nothing_is_lost() {
    const GROUPS: usize = 200;
    let db = PgDb::create().await;
    // Slow deliveries, so the kill finds jobs running.
    let slack = fake_slack(Duration::from_millis(300)).await;
    let env = replica_env(&db, &slack.uri(), &[("AIOPS__WORKER__LEASE_SECS", "3")]);
    let (_dirs, a, b) = start_replicas(&env).await;

    let answers = post_groups_to_both(&a, &b, GROUPS).await;
    let accepted: Vec<String> = answers.iter().filter_map(|[x, _]| x.clone()).collect();
    assert_eq!(accepted.len(), GROUPS);
    let running = b.get("/queue/status").await;
    assert!(
        running["queued"].as_u64().unwrap_or(0) > 0,
        "work is left: {running}"
    );
    a.kill();

    let per_job = wait_for_jobs(&slack, GROUPS, Duration::from_secs(120)).await;
    let status = b.drain(Duration::from_secs(60)).await;
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !per_job.contains_key(*id))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert_eq!(status["done"], GROUPS as u64, "{status}");
    assert_eq!(status["running"], 0, "nothing stuck: {status}");
    let twice = per_job.values().filter(|n| **n > 1).count();
    // A delivery the killed replica made but had not recorded yet is made again: at most the jobs it
    // had in flight (its worker concurrency).
    assert!(twice <= 4, "{twice} jobs delivered twice");
    eprintln!("kill -9 of a replica: lost 0, delivered twice {twice}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_received_by_the_other_replica_lands_in_the_incidents_thread() {
    const TOKEN: &str = "xoxb-replicas-canary";
    let db = PgDb::create().await;
    let slack = MockServer::start().await;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(100));
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(move |_: &Request| {
            let ts = format!(
                "1700000000.{:06}",
                next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            );
            ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "channel": "C0REPL", "ts": ts, "message": {"ts": ts},
            }))
        })
        .mount(&slack)
        .await;
    common::mount_chat_update(&slack).await;
    let api = format!("{}/api", slack.uri());
    let env = replica_env(
        &db,
        &slack.uri(),
        &[
            ("AIOPS__SLACK__BOT_TOKEN", TOKEN),
            ("AIOPS__SLACK__CHANNEL", "#alerts"),
            ("AIOPS__SLACK__API_URL", &api),
        ],
    );
    let (_dirs, a, b) = start_replicas(&env).await;

    let (status, _) = a
        .post_webhook(fixture("target-down-group-firing.json"))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    a.drain(Duration::from_secs(30)).await;
    let (status, _) = b
        .post_webhook(fixture("target-down-group-resolved.json"))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    b.drain(Duration::from_secs(30)).await;

    let sent = json_bodies(&slack).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent[0].get("thread_ts").is_none());
    assert_eq!(sent[1]["thread_ts"], "1700000000.000100", "{}", sent[1]);
    assert_eq!(sent[1]["channel"], "C0REPL");
    assert!(
        sent[1]["blocks"][0]["text"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Resolved"))
    );
    // The other replica edits the incident's message too: the store shares it.
    assert_eq!(
        (sent[2]["channel"].as_str(), sent[2]["ts"].as_str()),
        (Some("C0REPL"), Some("1700000000.000100")),
        "{}",
        sent[2]
    );
    assert!(
        sent[2]["blocks"][0]["text"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("✅ TargetDown")),
        "{}",
        sent[2]
    );
}
