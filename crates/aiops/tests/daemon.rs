//! The real binary as a user runs it: configuration checks, the pipeline on stdout, and a job whose
//! sink stays down ending dead with its reason visible.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, fixture, free_port, json_bodies};

fn aiops(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aiops"));
    command.args(args).env_clear();
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("aiops runs")
}

/// `check-config` builds what `serve` builds: each of these used to pass it and fail only at start.
#[test]
fn check_config_fails_where_serve_would_and_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().expect("path");
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "").expect("write");
    let under_a_file = format!("{}/out.jsonl", a_file.display());
    for (key, value, named) in [
        ("AIOPS__PROMETHEUS__URL", "not a url", "prometheus.url"),
        ("AIOPS__LOKI__URL", "::loki", "loki.url"),
        (
            "AIOPS__CONTEXT__TEMPLATES_FILE",
            missing,
            "context.templates_file",
        ),
        ("AIOPS__RULES__FILE", missing, "rules.file"),
        ("AIOPS__NOTIFY__FILE", under_a_file.as_str(), "notify.file"),
    ] {
        let out = aiops(&["check-config"], &[(key, value)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}={value} passed check-config");
        assert!(
            err.contains(named),
            "{key}={value}: the error names {named}: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "nothing printed as if valid: {out:?}"
        );
    }
    // It creates nothing: no file sink's file, no database.
    let sink = dir.path().join("new/deliveries.jsonl");
    let out = aiops(
        &["check-config"],
        &[
            ("AIOPS__NOTIFY__FILE", sink.to_str().expect("path")),
            (
                "AIOPS__STORE__URL",
                &format!("sqlite://{}/aiops.db", dir.path().display()),
            ),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(!dir.path().join("new").exists() && !dir.path().join("aiops.db").exists());
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
    // Slack's bot mode needs a default channel; the error names the key, never the token.
    let out = aiops(
        &["check-config"],
        &[("AIOPS__SLACK__BOT_TOKEN", "xoxb-canary-123")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("slack.channel") && !err.contains("canary"),
        "{err}"
    );
    let out = aiops(
        &["check-config"],
        &[("AIOPS__NOTIFY__FILTER__ALERTNAME", "Node(")],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notify.filter.alertname"),
        "{out:?}"
    );
    let out = aiops(
        &["check-config"],
        &[
            (
                "AIOPS__WEBHOOK__URL",
                "https://hooks.example.com/canary-url",
            ),
            ("AIOPS__WEBHOOK__AUTHORIZATION", "Bearer canary-auth"),
            (
                "AIOPS__STORE__URL",
                "postgres://aiops:canary-pg@db:5432/aiops",
            ),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("canary"), "{text}");
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

    let out = aiops(&["analyze", "--slack", input.to_str().expect("path")], &[]);
    let message: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(message["blocks"][0]["type"], "header", "{message}");
    assert_eq!(message["attachments"][0]["color"], "#E01E5A", "{message}");

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
    // /queue/status names the dead job and why.
    assert_eq!(status["recent_dead"][0]["id"], id.as_str(), "{status}");
    assert!(
        status["recent_dead"][0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("notify: webhook: request failed")),
        "{status}"
    );
    let record = daemon.get(&format!("/analyses/{id}")).await;
    assert_eq!(record["state"], "dead", "{record}");
    assert_eq!(record["attempts"], 2);
    let error = record["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("notify: webhook: request failed"),
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
    // The container healthcheck: `aiops health` answers for a live daemon, fails for a dead one.
    let port = daemon.url.rsplit(':').next().expect("port").to_owned();
    let health = aiops(
        &["health"],
        &[("AIOPS__SERVER__LISTEN", &format!("0.0.0.0:{port}"))],
    );
    assert!(health.status.success(), "{health:?}");
    let dead = aiops(
        &[
            "health",
            "--url",
            &format!("http://127.0.0.1:{}", free_port()),
        ],
        &[],
    );
    assert!(!dead.status.success(), "{dead:?}");
    assert!(String::from_utf8_lossy(&dead.stderr).contains("does not answer"));
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

#[tokio::test]
async fn slack_bot_mode_threads_the_resolution_under_the_analysis_across_a_restart() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOKEN: &str = "xoxb-999-canary-bot-token";
    let slack = MockServer::start().await;
    // Slack's Web API answer: the channel's id and the message's ts.
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "ok": true, "channel": "C0ALERTS", "ts": "1700000000.000100",
            "message": {"type": "message", "ts": "1700000000.000100"},
        })))
        .mount(&slack)
        .await;
    common::mount_chat_update(&slack).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("AIOPS__SLACK__BOT_TOKEN", TOKEN.to_owned()),
        ("AIOPS__SLACK__CHANNEL", "#alerts".to_owned()),
        ("AIOPS__SLACK__API_URL", format!("{}/api", slack.uri())),
        (
            "AIOPS__NOTIFY__PUBLIC_URL",
            "https://aiops.example.com".to_owned(),
        ),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let daemon = Daemon::start(dir.path(), &env).await;
    let (status, body) = daemon
        .post_webhook(fixture("target-down-group-firing.json"))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    let firing = body["job_id"].as_str().expect("id").to_owned();
    daemon.drain(Duration::from_secs(30)).await;
    let record = daemon.get(&format!("/analyses/{firing}")).await;
    let deliveries = record["deliveries"].as_array().expect("deliveries");
    assert!(
        deliveries
            .iter()
            .any(|d| d["sink"] == "slack" && d["detail"] == "1700000000.000100"),
        "{record}"
    );
    assert!(
        daemon.terminate(Duration::from_secs(20)),
        "{}",
        "clean exit"
    );

    // The resolution arrives after a restart: it still replies in the incident's thread.
    let daemon = Daemon::start(dir.path(), &env).await;
    let (status, _) = daemon
        .post_webhook(fixture("target-down-group-resolved.json"))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    daemon.drain(Duration::from_secs(30)).await;

    let sent = json_bodies(&slack).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0]["channel"], "#alerts");
    assert!(sent[0].get("thread_ts").is_none());
    assert!(
        sent[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("https://aiops.example.com/analyses/{firing}"))),
        "{}",
        sent[0]["text"]
    );
    assert_eq!(sent[1]["channel"], "C0ALERTS", "the thread's channel");
    assert_eq!(sent[1]["thread_ts"], "1700000000.000100");
    assert!(
        sent[1]["blocks"][0]["text"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Resolved"))
    );
    // After the restart too, the incident's message itself is marked resolved (the store kept it).
    assert_eq!(
        (sent[2]["channel"].as_str(), sent[2]["ts"].as_str()),
        (Some("C0ALERTS"), Some("1700000000.000100"))
    );
    assert!(
        sent[2]["blocks"][0]["text"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("✅ TargetDown")),
        "{}",
        sent[2]
    );
    let log = daemon.log();
    let metrics = daemon.metrics().await;
    let status = daemon.get("/queue/status").await.to_string();
    for shown in [&log, &metrics, &status] {
        assert!(
            !shown.contains("canary-bot-token"),
            "the token leaked: {shown}"
        );
    }
}

/// A model that answers at once, citing the data section's first evidence, and bills 58,000 prompt
/// tokens per request.
struct Costly;

impl wiremock::Respond for Costly {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON");
        let user = body["messages"][1]["content"].as_str().unwrap_or("");
        let cited = user
            .split_once("\"evidence\":[{\"id\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or("none", |(id, _)| id);
        let answer = serde_json::json!({
            "summary": "targets are down", "root_cause": "the rack switch failed",
            "confidence": 0.6, "category": "network", "impact": "scrapes fail",
            "evidence": [{"id": cited, "note": "the alert"}], "remediation": ["check the switch"],
            "next_queries": []
        });
        wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1_790_000_000, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer.to_string()}}],
            "usage": {"prompt_tokens": 58_000, "completion_tokens": 50, "total_tokens": 58_050}
        }))
    }
}

/// `llm.daily_budget_usd` is kept in the store: a restart does not give the day's money back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_llm_budget_holds_across_a_restart() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer};

    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Costly)
        .mount(&llm)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    // $1 per million tokens each way: the first request may cost a few thousandths at worst (its
    // prompt and 1,500 completion tokens) and is billed $0.05805, within $0.06; after it, no
    // request fits, its 1,500 completion tokens alone being $0.0015.
    let env = [
        ("AIOPS__LLM__PROVIDER", "openai-compatible".to_owned()),
        ("AIOPS__LLM__BASE_URL", format!("{}/v1", llm.uri())),
        ("AIOPS__LLM__MODEL", "m".to_owned()),
        ("AIOPS__LLM__PRICE_PER_MTOK_IN", "1".to_owned()),
        ("AIOPS__LLM__PRICE_PER_MTOK_OUT", "1".to_owned()),
        ("AIOPS__LLM__DAILY_BUDGET_USD", "0.06".to_owned()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let daemon = Daemon::start(dir.path(), &env).await;
    let (_, body) = daemon
        .post_webhook(fixture("target-down-group-firing.json"))
        .await;
    let first = body["job_id"].as_str().expect("id").to_owned();
    daemon.drain(Duration::from_secs(30)).await;
    let record = daemon.get(&format!("/analyses/{first}")).await;
    let analyzer = &record["analysis"]["analyzer"];
    assert_eq!(analyzer["fallback"], false, "{record}");
    assert!(daemon.terminate(Duration::from_secs(20)), "clean exit");

    let daemon = Daemon::start(dir.path(), &env).await;
    let (_, body) = daemon
        .post_webhook(fixture("high-error-rate-k8s.json"))
        .await;
    let second = body["job_id"].as_str().expect("id").to_owned();
    daemon.drain(Duration::from_secs(30)).await;
    let record = daemon.get(&format!("/analyses/{second}")).await;
    let analyzer = &record["analysis"]["analyzer"];
    assert_eq!(
        (
            analyzer["fallback"].clone(),
            analyzer["budget_exhausted"].clone()
        ),
        (serde_json::json!(true), serde_json::json!("daily_spend")),
        "{record}"
    );
    assert!(
        analyzer["fallback_reason"].as_str().is_some_and(
            |r| r.starts_with("LLM budget exhausted: daily spend $0.058050 of $0.060000")
        ),
        "{record}"
    );
    assert_eq!(analyzer["llm_requests"], 0, "{record}");
    let metrics = daemon.metrics().await;
    assert!(
        metrics.contains("aiops_llm_budget_exhausted_total{budget=\"daily_spend\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        llm.received_requests().await.expect("recorded").len(),
        1,
        "the second daemon sent nothing"
    );
    assert!(daemon.terminate(Duration::from_secs(20)), "clean exit");
}
