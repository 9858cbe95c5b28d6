//! Crash safety of the real binary: every webhook that got a 2xx survives `kill -9`, is analyzed after
//! the restart, and is delivered exactly once; and the same under a storm of 5,000 webhooks with five
//! `kill -9`s at pseudo-random moments, with slow remote sinks.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Daemon, distinct_payload, free_port};
use futures_util::StreamExt;

const WEBHOOKS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_webhooks_survive_kill_9_and_are_delivered_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deliveries = dir.path().join("deliveries.jsonl");
    let env = [
        ("AIOPS__NOTIFY__STDOUT", "false".to_owned()),
        ("AIOPS__NOTIFY__FILE", deliveries.display().to_string()),
        ("AIOPS__WORKER__CONCURRENCY", "2".to_owned()),
        ("AIOPS__WORKER__LEASE_SECS", "3".to_owned()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let daemon = Daemon::start(dir.path(), &env).await;

    let answers = post_all(&daemon).await;
    let accepted: Vec<String> = answers
        .iter()
        .filter(|(_, status, _)| *status == reqwest::StatusCode::ACCEPTED)
        .map(|(_, _, body)| body["job_id"].as_str().expect("job_id").to_owned())
        .collect();
    assert_eq!(
        accepted.len(),
        WEBHOOKS,
        "every distinct webhook is accepted"
    );

    let before = daemon.get("/queue/status").await;
    assert!(
        before["queued"].as_u64().unwrap_or(0) > 0,
        "the kill must find queued jobs: {before}"
    );
    daemon.kill();

    let daemon = Daemon::start(dir.path(), &env).await;
    // Their dedup keys were still in the killed daemon's memory only (a generation is written to the
    // dedup table once it is full or a minute old): the restart reads them back from the jobs, so
    // Alertmanager's resends are duplicates of the original jobs, not new ones.
    let job_of: HashMap<usize, &serde_json::Value> = answers
        .iter()
        .map(|(n, _, body)| (*n, &body["job_id"]))
        .collect();
    for (n, status, body) in post_all(&daemon).await {
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        assert_eq!(body["duplicate"], true, "{body}");
        assert_eq!(
            &body["job_id"], job_of[&n],
            "a resend names the original job"
        );
    }
    let status = daemon.drain(Duration::from_secs(120)).await;
    assert_eq!(status["dead"], 0, "{status}");
    assert_eq!(status["done"].as_u64(), Some(WEBHOOKS as u64), "{status}");
    for id in &accepted {
        let record = daemon.get(&format!("/analyses/{id}")).await;
        assert_eq!(record["state"], "done", "{record}");
        assert!(record["analysis"]["summary"].is_string(), "{record}");
    }

    let text = std::fs::read_to_string(&deliveries).expect("deliveries file");
    let mut per_job: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let doc: serde_json::Value =
            serde_json::from_str(line).expect("each line is a whole document");
        *per_job
            .entry(doc["job_id"].as_str().expect("job_id").to_owned())
            .or_default() += 1;
    }
    let missing = accepted
        .iter()
        .filter(|id| !per_job.contains_key(*id))
        .count();
    let twice = per_job.values().filter(|n| **n > 1).count();
    assert_eq!((missing, twice), (0, 0), "every job delivered exactly once");
    assert_eq!(per_job.len(), WEBHOOKS);
}

/// Posts the distinct webhooks `0..WEBHOOKS`, 16 at a time: each one's number, status and body.
async fn post_all(daemon: &Daemon) -> Vec<(usize, reqwest::StatusCode, serde_json::Value)> {
    futures_util::stream::iter(0..WEBHOOKS)
        .map(|n| async move {
            let (status, body) = daemon.post_webhook(distinct_payload(n)).await;
            (n, status, body)
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// A fake sink that answers after `delay`: the generic webhook or Slack's incoming webhook.
async fn slow_sink(delay: Duration, body: &str) -> wiremock::MockServer {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(body)
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

/// Deliveries per job id a sink received, by a pattern that finds the id in each request body.
async fn per_job(server: &wiremock::MockServer, id: &regex::Regex) -> HashMap<String, usize> {
    let mut per_job = HashMap::new();
    for request in server.received_requests().await.expect("recorded") {
        let body = String::from_utf8_lossy(&request.body);
        let job = id
            .captures(&body)
            .map(|c| c[1].to_owned())
            .expect("a job id");
        *per_job.entry(job).or_default() += 1;
    }
    per_job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_kill_9s_under_sustained_load_lose_nothing() {
    const STORM: usize = 5000;
    const KILLS: usize = 5;
    let dir = tempfile::tempdir().expect("tempdir");
    let deliveries = dir.path().join("deliveries.jsonl");
    let hook = slow_sink(Duration::from_millis(5), "").await;
    let slack = slow_sink(Duration::from_millis(5), "ok").await;
    let env = [
        ("AIOPS__NOTIFY__STDOUT", "false".to_owned()),
        ("AIOPS__NOTIFY__FILE", deliveries.display().to_string()),
        ("AIOPS__NOTIFY__PUBLIC_URL", "http://aiops.test".to_owned()),
        ("AIOPS__WEBHOOK__URL", format!("{}/hook", hook.uri())),
        (
            "AIOPS__SLACK__WEBHOOK_URL",
            format!("{}/services/T/B/storm", slack.uri()),
        ),
        ("AIOPS__WORKER__CONCURRENCY", "4".to_owned()),
        ("AIOPS__WORKER__LEASE_SECS", "3".to_owned()),
        ("AIOPS__WORKER__MAX_ATTEMPTS", "20".to_owned()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/webhook/alerts");
    let mut daemon = Daemon::start_on(dir.path(), port, &env).await;

    // The load: distinct webhooks, each sent until acknowledged, as Alertmanager retries.
    let client = reqwest::Client::new();
    let send = futures_util::stream::iter(0..STORM)
        .map(|n| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let body = distinct_payload(100_000 + n);
                for _ in 0..300 {
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    // Any 2xx acknowledges, as for Alertmanager: a webhook whose reply a kill cut
                    // off was committed, and sending it again gets 200, a duplicate of that job.
                    if let Ok(r) = sent
                        && r.status().is_success()
                    {
                        let answer: serde_json::Value = r.json().await.expect("json");
                        return answer["job_id"].as_str().map(str::to_owned);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<Option<String>>>();
    // The kills: at pseudo-random moments (a fixed seed), restarting on the same port each time.
    let kill = async {
        let mut seed: u64 = 0x5eed;
        let mut kills = Vec::new();
        for _ in 0..KILLS {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let wait = Duration::from_millis(400 + (seed >> 33) % 900);
            tokio::time::sleep(wait).await;
            let status = daemon.get("/queue/status").await;
            kills.push(status);
            std::mem::replace(&mut daemon, Daemon::placeholder()).kill();
            // The store opens cleanly after every kill.
            daemon = Daemon::start_on(dir.path(), port, &env).await;
        }
        kills
    };
    let (accepted, kills) = tokio::join!(send, kill);
    let accepted: Vec<String> = accepted
        .into_iter()
        .map(|id| id.expect("every webhook is acknowledged eventually"))
        .collect();
    assert_eq!(accepted.len(), STORM);
    assert!(
        kills
            .iter()
            .any(|s| s["queued"].as_u64().unwrap_or(0) + s["running"].as_u64().unwrap_or(0) > 0),
        "the kills hit a daemon with work in flight: {kills:?}"
    );

    // After the last restart everything drains: nothing stuck once the leases expire.
    let status = daemon.drain(Duration::from_secs(180)).await;
    assert_eq!(status["dead"], 0, "{status}");
    assert_eq!(status["done"], STORM as u64, "{status}");

    let file: HashMap<String, usize> = {
        let mut per_job = HashMap::new();
        for line in std::fs::read_to_string(&deliveries).expect("file").lines() {
            let doc: serde_json::Value = serde_json::from_str(line).expect("whole lines only");
            *per_job
                .entry(doc["job_id"].as_str().expect("id").to_owned())
                .or_default() += 1;
        }
        per_job
    };
    let webhook = per_job(
        &hook,
        &regex::Regex::new(r#""job_id":"([0-9a-f-]{36})""#).expect("re"),
    )
    .await;
    let slack = per_job(
        &slack,
        &regex::Regex::new(r"aiops\.test/analyses/([0-9a-f-]{36})").expect("re"),
    )
    .await;
    let mut report = Vec::new();
    for (sink, delivered) in [("file", &file), ("webhook", &webhook), ("slack", &slack)] {
        let lost = accepted
            .iter()
            .filter(|id| !delivered.contains_key(*id))
            .count();
        let twice = delivered.values().filter(|n| **n > 1).count();
        assert_eq!(lost, 0, "{sink}: acknowledged webhooks lost");
        report.push(format!("{sink}: lost 0, delivered twice {twice}"));
    }
    assert!(
        file.values().all(|n| *n == 1),
        "the file sink dedupes by job id across crashes"
    );
    eprintln!("{STORM} webhooks, {KILLS} kill -9s: {}", report.join("; "));
}
