//! The real binary as a user runs it: configuration checks, the pipeline on stdout, and a job whose
//! sink stays down ending dead with its reason visible.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, fixture, free_port};

fn aiops(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aiops"));
    command.args(args).env_clear();
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("aiops runs")
}

#[test]
fn check_config_masks_secrets_and_names_unknown_keys() {
    let out = aiops(
        &["check-config"],
        &[
            ("AIOPS__SERVER__AUTH__BEARER_TOKEN", "tok-123"),
            ("AIOPS__LLM__API_KEY", "sk-secret"),
            ("AIOPS__SERVER__LISTEN", "0.0.0.0:9999"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"0.0.0.0:9999\""), "{text}");
    assert!(text.contains("bearer_token = \"********\""), "{text}");
    assert!(
        !text.contains("tok-123") && !text.contains("sk-secret"),
        "{text}"
    );

    let out = aiops(&["check-config"], &[("AIOPS__SERVER__LISTN", "x")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field `listn`") && err.contains("server"),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("aiops.toml");
    std::fs::write(&file, "[worker]\nconcurrency = 0\n").expect("write");
    let out = aiops(
        &["--config", file.to_str().expect("path"), "check-config"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("worker.concurrency"),
        "{out:?}"
    );

    let secret = dir.path().join("token");
    std::fs::write(&secret, "from-a-file\n").expect("write");
    let out = aiops(
        &["check-config"],
        &[(
            "AIOPS__SERVER__AUTH__BEARER_TOKEN_FILE",
            secret.to_str().expect("path"),
        )],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("from-a-file"));
}

#[test]
fn analyze_runs_the_pipeline_once_without_a_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("alert.json");
    std::fs::write(&input, fixture("target-down-group-firing.json")).expect("write");
    let out = aiops(&["analyze", input.to_str().expect("path")], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("[FIRING] TargetDown (critical)"), "{text}");
    assert!(
        text.contains("Remediation:") && text.contains("up{job=\"api\"} == 0"),
        "{text}"
    );

    let out = aiops(&["analyze", "--json", input.to_str().expect("path")], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["analysis"]["category"], "dependency_failure");

    std::fs::write(&input, "{\"nope\": 1}").expect("write");
    let out = aiops(&["analyze", input.to_str().expect("path")], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neither"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_job_whose_sink_stays_down_ends_dead_with_its_reason_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = format!("http://127.0.0.1:{}/hook", free_port());
    let env = [
        ("AIOPS__WEBHOOK__URL", closed),
        ("AIOPS__WEBHOOK__TIMEOUT_SECS", "2".to_owned()),
        ("AIOPS__WORKER__MAX_ATTEMPTS", "2".to_owned()),
        ("AIOPS__WORKER__BACKOFF_BASE_SECS", "1".to_owned()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let daemon = Daemon::start(dir.path(), &env).await;
    let (status, body) = daemon
        .post_webhook(fixture("high-error-rate-k8s.json"))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    let id = body["job_id"].as_str().expect("id").to_owned();
    let status = daemon.drain(Duration::from_secs(30)).await;
    assert_eq!(status["dead"], 1, "{status}");
    let record = daemon.get(&format!("/analyses/{id}")).await;
    assert_eq!(record["state"], "dead", "{record}");
    assert_eq!(record["attempts"], 2);
    let error = record["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("notify: webhook: webhook request failed"),
        "{record}"
    );
    // The stdout sink delivered on the first attempt and was not repeated.
    assert_eq!(
        record["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{record}"
    );
    let metrics = daemon.metrics().await;
    assert!(
        metrics.contains("aiops_stage_failures_total{stage=\"notify\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aiops_queue_jobs{state=\"dead\"} 1"),
        "{metrics}"
    );
    // One analysis: the retry reused the stored one instead of asking again.
    assert!(
        metrics.contains("aiops_analyses_total{analyzer=\"rules\",result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aiops_llm_tokens_total{kind=\"prompt\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn sigterm_stops_the_daemon_cleanly_and_keeps_accepted_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path(), &[]).await;
    let (status, _) = daemon
        .post_webhook(fixture("target-down-single.json"))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    let log_path = daemon.stderr.clone();
    assert!(
        daemon.terminate(Duration::from_secs(30)),
        "exit status 0 after SIGTERM"
    );
    let log = std::fs::read_to_string(log_path).expect("log");
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
    // The same store, started again, still has the job.
    let daemon = Daemon::start(dir.path(), &[]).await;
    let status = daemon.drain(Duration::from_secs(30)).await;
    assert_eq!(status["done"], 1, "{status}");
}
