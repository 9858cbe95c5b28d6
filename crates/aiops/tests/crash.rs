//! Crash safety of the real binary: every webhook that got a 2xx survives `kill -9`, is analyzed after
//! the restart, and is delivered exactly once.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Daemon, distinct_payload};
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

    let answers: Vec<(reqwest::StatusCode, serde_json::Value)> =
        futures_util::stream::iter(0..WEBHOOKS)
            .map(|n| daemon.post_webhook(distinct_payload(n)))
            .buffer_unordered(16)
            .collect()
            .await;
    let accepted: Vec<String> = answers
        .iter()
        .filter(|(status, _)| *status == reqwest::StatusCode::ACCEPTED)
        .map(|(_, body)| body["job_id"].as_str().expect("job_id").to_owned())
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
