//! A real Alertmanager (Debian package `prometheus-alertmanager`) posts to the real aiops binary with
//! bearer auth from a credentials file, as the README's snippet configures it: the firing group is
//! analyzed and delivered, and the resolution follows.

mod common;

use std::time::Duration;

use common::{Daemon, Proc};
use serde_json::Value;

fn start_alertmanager(
    dir: &std::path::Path,
    aiops_url: &str,
    token_file: &std::path::Path,
) -> (Proc, String) {
    let config = format!(
        "route:\n  receiver: aiops\n  group_by: [alertname, job]\n  group_wait: 1s\n  group_interval: 1s\n  \
         repeat_interval: 4h\nreceivers:\n  - name: aiops\n    webhook_configs:\n      - url: {aiops_url}/webhook/alerts\n        \
         send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            \
         credentials_file: {}\n",
        token_file.display()
    );
    common::alertmanager(dir, &config)
}

async fn post_alert(client: &reqwest::Client, am: &str, alert: Value) {
    // Bounded: Alertmanager needs a moment to start listening.
    for _ in 0..100 {
        if let Ok(r) = client
            .post(format!("{am}/api/v2/alerts"))
            .json(&[&alert])
            .send()
            .await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Alertmanager at {am} did not take the alert");
}

/// Waits (bounded) until the file sink holds `count` documents, and returns them.
async fn deliveries(file: &std::path::Path, count: usize) -> Vec<Value> {
    for _ in 0..300 {
        let docs: Vec<Value> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a whole document per line"))
            .collect();
        if docs.len() >= count {
            return docs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {count} deliveries in {}", file.display());
}

#[tokio::test]
async fn alertmanager_posts_with_bearer_auth_and_the_group_is_analyzed_then_resolved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-from-a-file\n").expect("token");
    let deliveries_file = dir.path().join("deliveries.jsonl");
    let env = [
        (
            "AIOPS__SERVER__AUTH__BEARER_TOKEN_FILE",
            token.display().to_string(),
        ),
        ("AIOPS__NOTIFY__FILE", deliveries_file.display().to_string()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let daemon = Daemon::start(dir.path(), &env).await;
    let (_am, am_url) = start_alertmanager(dir.path(), &daemon.url, &token);
    let client = reqwest::Client::new();
    let alert = serde_json::json!({
        "labels": {"alertname": "DiskFull", "job": "node", "instance": "n1:9100", "severity": "critical"},
        "annotations": {"summary": "Disk on n1 is 97% full"},
        "generatorURL": "http://prometheus:9090/graph?g0.expr=node_filesystem_avail_bytes+%3C+1e9&g0.tab=1"
    });
    post_alert(&client, &am_url, alert.clone()).await;

    let docs = deliveries(&deliveries_file, 1).await;
    let firing = &docs[0];
    assert_eq!(firing["kind"], "analysis", "{firing}");
    assert_eq!(firing["alertname"], "DiskFull");
    assert_eq!(
        firing["analysis"]["category"], "resource_saturation",
        "{firing}"
    );
    assert_eq!(
        firing["analysis"]["next_queries"][0],
        "node_filesystem_avail_bytes < 1e9"
    );

    let mut resolved = alert;
    resolved["endsAt"] = Value::String(time_now_rfc3339());
    post_alert(&client, &am_url, resolved).await;
    let docs = deliveries(&deliveries_file, 2).await;
    let resolution = docs
        .iter()
        .find(|d| d["kind"] == "resolved")
        .expect("a resolution");
    assert_eq!(resolution["alertname"], "DiskFull");
    assert!(resolution.get("analysis").is_none());

    let metrics = daemon.metrics().await;
    assert!(
        metrics.contains("aiops_webhook_requests_total{result=\"unauthorized\"} 0"),
        "Alertmanager's credentials were accepted:\n{metrics}"
    );
}

fn time_now_rfc3339() -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("formats")
}
