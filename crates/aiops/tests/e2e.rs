//! End to end with real components: node-exporter (Debian `prometheus-node-exporter`) exposes a
//! metric from a file, the real Prometheus (`prometheus`) scrapes it and fires a rule, the real
//! Alertmanager (`prometheus-alertmanager`, configured from the repo's `alertmanager/alertmanager.yml`)
//! posts the group to the real `aiops` binary with bearer auth, aiops queries the real Prometheus,
//! and fakes of Loki, the LLM (OpenAI-compatible) and Slack's Web API answer in their wire formats.
//! Flipping the metric back resolves the alert, and the resolution reaches Slack in the thread;
//! flipping it again makes the group flap: the same message and thread, "flapping ×2", no new LLM
//! call (the evidence did not change).

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Daemon, Proc, free_port, repo};
use regex::Regex;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "e2e-bearer-canary";
const LLM_KEY: &str = "sk-e2e-llm-canary";
const BOT_TOKEN: &str = "xoxb-e2e-bot-canary";
const EXPR: &str = "checkout_error_ratio > 0.1";
/// How long the fake LLM takes to answer.
const LLM_DELAY: Duration = Duration::from_secs(3);

/// Writes the metric node-exporter's textfile collector serves, atomically (rename).
fn set_ratio(dir: &Path, value: f64) {
    let tmp = dir.join("e2e.prom.tmp");
    std::fs::write(
        &tmp,
        format!("# HELP checkout_error_ratio Share of failing checkout requests.\n# TYPE checkout_error_ratio gauge\ncheckout_error_ratio {value}\n"),
    )
    .expect("write the metric");
    std::fs::rename(&tmp, dir.join("e2e.prom")).expect("rename");
}

/// The fake LLM: an OpenAI chat completion citing every evidence id the prompt offered.
#[derive(Clone, Default)]
struct FakeLlm {
    prompts: Arc<Mutex<Vec<String>>>,
}

impl Respond for FakeLlm {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let prompt: String = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let ids: Vec<String> = Regex::new(r#""id":"([^"]+)""#)
            .expect("regex")
            .captures_iter(&prompt)
            .map(|c| c[1].to_owned())
            .collect();
        self.prompts.lock().expect("lock").push(prompt);
        let answer = json!({
            "summary": "checkout fails 37% of its requests",
            "root_cause": "The payment gateway times out, and checkout fails the requests that need it.",
            "confidence": 0.8,
            "category": "dependency_failure",
            "impact": "Customers cannot pay.",
            "evidence": ids.iter().map(|id| json!({"id": id, "note": "supports the cause"})).collect::<Vec<_>>(),
            "remediation": ["Check the payment gateway's status and fail over to the secondary."],
            "next_queries": [EXPR],
        });
        // A model's pace: the first look is in Slack well before the answer.
        ResponseTemplate::new(200)
            .set_delay(LLM_DELAY)
            .set_body_json(json!({
                "id": "chatcmpl-e2e",
                "object": "chat.completion",
                "created": 1_790_000_000,
                "model": "e2e-model",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.to_string()},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": 1200, "completion_tokens": 200, "total_tokens": 1400},
            }))
    }
}

/// Fakes of Loki's label and range-query APIs: one error line for the checkout service.
async fn fake_loki() -> MockServer {
    let loki = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": ["job", "level", "service_name"],
        })))
        .mount(&loki)
        .await;
    let now_ns = time::OffsetDateTime::now_utc()
        .unix_timestamp_nanos()
        .to_string();
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": [{
                    "stream": {"service_name": "checkout", "level": "error"},
                    "values": [[now_ns, "level=error msg=\"payment gateway timeout\" upstream=pay.internal"]],
                }],
                "stats": {},
            },
        })))
        .mount(&loki)
        .await;
    common::loki_label_values(&loki, Duration::ZERO).await;
    loki
}

/// The fake of Slack's Web API: `chat.postMessage` answers ok with the channel's id and a new ts;
/// `chat.update` answers ok for a message it posted (by channel id and ts), else
/// `message_not_found`.
async fn fake_slack() -> MockServer {
    let slack = MockServer::start().await;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(100));
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(move |_: &Request| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let ts = format!("1700000000.{n:06}");
            ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "channel": "C0E2E", "ts": ts,
                "message": {"type": "message", "ts": ts},
            }))
        })
        .mount(&slack)
        .await;
    // The external upload of the graph: an upload URL on this fake, the bytes, the share into a
    // thread this fake posted.
    let uri = slack.uri();
    Mock::given(method("POST"))
        .and(path("/api/files.getUploadURLExternal"))
        .respond_with(move |request: &Request| {
            let form: std::collections::HashMap<String, String> =
                serde_urlencoded::from_bytes(&request.body).unwrap_or_default();
            let ok = form.get("filename").is_some_and(|f| !f.is_empty())
                && form.get("length").and_then(|l| l.parse::<u64>().ok()).is_some_and(|l| l > 0);
            ResponseTemplate::new(200).set_body_json(match ok {
                true => json!({"ok": true, "upload_url": format!("{uri}/upload/v1/F1"), "file_id": "F1"}),
                false => json!({"ok": false, "error": "invalid_arguments"}),
            })
        })
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/upload/v1/F1"))
        .respond_with(|request: &Request| {
            ResponseTemplate::new(200).set_body_string(format!("OK - {}", request.body.len()))
        })
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/files.completeUploadExternal"))
        .respond_with(|request: &Request| {
            let form: std::collections::HashMap<String, String> =
                serde_urlencoded::from_bytes(&request.body).unwrap_or_default();
            let ok = form.get("channel_id").is_some_and(|c| c == "C0E2E")
                && form
                    .get("thread_ts")
                    .is_some_and(|t| t.starts_with("1700000000."))
                && form.get("files").is_some_and(|f| f.contains("\"F1\""));
            ResponseTemplate::new(200).set_body_json(match ok {
                true => json!({"ok": true, "files": [{"id": "F1"}]}),
                false => json!({"ok": false, "error": "invalid_arguments"}),
            })
        })
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let posted = body["channel"] == "C0E2E"
                && body["ts"]
                    .as_str()
                    .is_some_and(|ts| ts.starts_with("1700000000."));
            ResponseTemplate::new(200).set_body_json(match posted {
                true => json!({"ok": true, "channel": body["channel"], "ts": body["ts"],
                               "text": body["text"]}),
                false => json!({"ok": false, "error": "message_not_found"}),
            })
        })
        .mount(&slack)
        .await;
    slack
}

/// What the fake Slack got through `chat.postMessage` and `chat.update`, in order.
async fn messages(slack: &MockServer) -> Vec<Value> {
    slack
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path().starts_with("/api/chat."))
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect()
}

/// The graphs shared into threads (`files.completeUploadExternal`), as their forms.
async fn shared_graphs(slack: &MockServer) -> Vec<std::collections::HashMap<String, String>> {
    slack
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path() == "/api/files.completeUploadExternal")
        .map(|r| serde_urlencoded::from_bytes(&r.body).expect("a form"))
        .collect()
}

/// Waits (bounded) until Slack got `count` messages.
async fn wait_for_messages(
    slack: &MockServer,
    count: usize,
    max: Duration,
    logs: &[&Path],
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + max;
    loop {
        let sent = messages(slack).await;
        if sent.len() >= count {
            return sent;
        }
        if tokio::time::Instant::now() >= deadline {
            let logs: Vec<String> = logs
                .iter()
                .map(|p| {
                    format!(
                        "== {}\n{}",
                        p.display(),
                        std::fs::read_to_string(p).unwrap_or_default()
                    )
                })
                .collect();
            panic!(
                "Slack got {} of {count} messages in {max:?}\n{}",
                sent.len(),
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The repo's Alertmanager config with the aiops URL, the token file and second-scale timings.
fn alertmanager_config(aiops: &str, token_file: &Path) -> String {
    let shipped = std::fs::read_to_string(repo().join("alertmanager/alertmanager.yml"))
        .expect("alertmanager/alertmanager.yml");
    let mut config = shipped;
    for (from, to) in [
        ("http://aiops:8080", aiops.to_owned()),
        (
            "/alertmanager/aiops-token",
            token_file.display().to_string(),
        ),
        ("group_wait: 30s", "group_wait: 1s".to_owned()),
        ("group_interval: 5m", "group_interval: 1s".to_owned()),
    ] {
        assert!(
            config.contains(from),
            "alertmanager.yml no longer has {from:?}"
        );
        config = config.replace(from, &to);
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alert_becomes_an_rca_in_slack_and_its_resolution_follows_in_the_thread() {
    tokio::time::timeout(Duration::from_secs(150), run())
        .await
        .expect("the end-to-end run takes at most 150 s");
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let textfiles = dir.join("textfiles");
    std::fs::create_dir(&textfiles).expect("mkdir");
    set_ratio(&textfiles, 0.37);
    let token_file = dir.join("aiops-token");
    std::fs::write(&token_file, TOKEN).expect("token");

    let loki = fake_loki().await;
    let slack = fake_slack().await;
    let llm = MockServer::start().await;
    let fake_llm = FakeLlm::default();
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(fake_llm.clone())
        .mount(&llm)
        .await;

    // Ports first: each config names the others.
    let (prom_port, am_port, ne_port) = (free_port(), free_port(), free_port());
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let am_url = format!("http://127.0.0.1:{am_port}");

    let env = [
        ("AIOPS__SERVER__AUTH__BEARER_TOKEN", TOKEN.to_owned()),
        ("AIOPS__PROMETHEUS__URL", prom_url.clone()),
        ("AIOPS__LOKI__URL", loki.uri()),
        ("AIOPS__LLM__PROVIDER", "openai-compatible".to_owned()),
        ("AIOPS__LLM__BASE_URL", format!("{}/v1", llm.uri())),
        ("AIOPS__LLM__MODEL", "e2e-model".to_owned()),
        ("AIOPS__LLM__API_KEY", LLM_KEY.to_owned()),
        ("AIOPS__SLACK__BOT_TOKEN", BOT_TOKEN.to_owned()),
        ("AIOPS__SLACK__CHANNEL", "#incidents".to_owned()),
        ("AIOPS__SLACK__API_URL", format!("{}/api", slack.uri())),
        ("AIOPS__NOTIFY__PUBLIC_URL", "http://aiops.e2e".to_owned()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let aiops = Daemon::start(dir, &env).await;

    // Alertmanager before Prometheus: Prometheus drops alerts it cannot deliver.
    let am_config = dir.join("alertmanager.yml");
    std::fs::write(&am_config, alertmanager_config(&aiops.url, &token_file)).expect("write");
    let am = Proc::spawn(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", am_config.display()),
            format!("--storage.path={}", dir.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            format!("--web.external-url={am_url}"),
            "--cluster.listen-address=".to_owned(),
        ],
        dir,
        "prometheus-alertmanager",
    );
    am.wait_ready(&format!("{am_url}/-/ready"), Duration::from_secs(20))
        .await;

    let node_exporter = Proc::spawn(
        "prometheus-node-exporter",
        &[
            format!("--web.listen-address=127.0.0.1:{ne_port}"),
            "--collector.disable-defaults".to_owned(),
            "--collector.textfile".to_owned(),
            format!("--collector.textfile.directory={}", textfiles.display()),
        ],
        dir,
        "prometheus-node-exporter",
    );
    node_exporter
        .wait_ready(
            &format!("http://127.0.0.1:{ne_port}/metrics"),
            Duration::from_secs(20),
        )
        .await;

    let rules = dir.join("e2e_rules.yml");
    std::fs::write(
        &rules,
        format!(
            "groups:\n  - name: e2e\n    rules:\n      - alert: CheckoutErrorRatioHigh\n        expr: {EXPR}\n        \
             labels:\n          severity: critical\n        annotations:\n          summary: \"checkout fails {{{{ $value }}}} of its requests\"\n"
        ),
    )
    .expect("write rules");
    let prom_config = dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am_port}\"]\n\
             rule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: checkout\n    static_configs:\n      - targets: [\"127.0.0.1:{ne_port}\"]\n        labels:\n          service: checkout\n",
            rules.display(),
            repo().join("prometheus/alert_rules.yml").display(),
        ),
    )
    .expect("write config");
    let prometheus = Proc::spawn(
        "prometheus",
        &[
            format!("--config.file={}", prom_config.display()),
            format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            format!("--web.external-url={prom_url}"),
            "--rules.alert.resend-delay=1s".to_owned(),
        ],
        dir,
        "prometheus",
    );
    prometheus
        .wait_ready(&format!("{prom_url}/-/ready"), Duration::from_secs(20))
        .await;
    let logs = [
        prometheus.log.as_path(),
        am.log.as_path(),
        aiops.stderr.as_path(),
    ];

    // The rule fires, Alertmanager posts; aiops posts a first look as soon as the evidence is in,
    // then the analysis replaces it in place.
    let sent = wait_for_messages(&slack, 2, Duration::from_secs(40), &logs).await;
    let first_look = &sent[0];
    assert_eq!(first_look["channel"], "#incidents");
    assert!(first_look.get("thread_ts").is_none(), "{first_look}");
    assert!(
        first_look["text"]
            .as_str()
            .is_some_and(|t| t.contains("the analysis is running")),
        "{first_look}"
    );
    let firing = &sent[1];
    assert_eq!(
        (firing["channel"].as_str(), firing["ts"].as_str()),
        (Some("C0E2E"), Some("1700000000.000100")),
        "chat.update of the first look: {firing}"
    );
    for message in [first_look, firing] {
        let header = message["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            header.contains("CheckoutErrorRatioHigh") && header.contains("critical"),
            "{header}"
        );
    }

    // The LLM saw the rule's own expression and the real series' value from Prometheus, and the
    // log line from Loki; never a secret.
    let prompts = fake_llm.prompts.lock().expect("lock").clone();
    assert_eq!(prompts.len(), 1, "one LLM call for the group");
    let prompt = &prompts[0];
    assert!(
        prompt.contains(EXPR),
        "the rule's expression is in the prompt: {prompt}"
    );
    assert!(
        prompt.contains("0.37"),
        "the real value is in the prompt: {prompt}"
    );
    assert!(
        prompt.contains("payment gateway timeout"),
        "Loki's line is in the prompt: {prompt}"
    );
    for secret in [TOKEN, LLM_KEY, BOT_TOKEN] {
        assert!(!prompt.contains(secret), "{secret} leaked into the prompt");
    }

    // The stored analysis cites evidence that holds the real series values.
    let text = firing["text"].as_str().unwrap_or_default();
    let id = Regex::new(r"/analyses/([0-9a-f-]{36})")
        .expect("regex")
        .captures(text)
        .map(|c| c[1].to_owned())
        .unwrap_or_else(|| panic!("a link to the analysis in {text}"));
    // The job ends after its last delivery step (the graph's upload into the thread): wait for it.
    let mut record = Value::Null;
    for _ in 0..100 {
        record = reqwest::Client::new()
            .get(format!("{}/analyses/{id}", aiops.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        if record["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let analysis = &record["analysis"];
    assert_eq!(analysis["analyzer"]["name"], "llm", "{record}");
    assert_eq!(analysis["analyzer"]["model"], "e2e-model");
    assert_eq!(analysis["analyzer"]["fallback"], false, "{record}");
    let evidence = analysis["evidence"].as_array().expect("evidence");
    assert!(
        evidence.iter().any(|e| e["query"]
            .as_str()
            .is_some_and(|q| q.contains("checkout_error_ratio"))
            && e["finding"].as_str().is_some_and(|f| f.contains("0.37"))),
        "a cited item holds the series and its value: {evidence:?}\n{prompt}"
    );

    // The condition clears: the resolution arrives in the incident's thread.
    set_ratio(&textfiles, 0.01);
    let sent = wait_for_messages(&slack, 4, Duration::from_secs(30), &logs).await;
    let resolution = &sent[2];
    let edited = &sent[3];
    assert_eq!(
        (edited["channel"].as_str(), edited["ts"].as_str()),
        (Some("C0E2E"), Some("1700000000.000100")),
        "the incident's message is marked resolved: {edited}"
    );
    assert!(
        edited["blocks"][0]["text"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("✅ CheckoutErrorRatioHigh")),
        "{edited}"
    );
    assert_eq!(resolution["thread_ts"], "1700000000.000100", "{resolution}");
    assert_eq!(resolution["channel"], "C0E2E");
    let header = resolution["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        header.contains("Resolved: CheckoutErrorRatioHigh"),
        "{header}"
    );
    assert_eq!(
        fake_llm.prompts.lock().expect("lock").len(),
        1,
        "no LLM call for a resolution"
    );

    // The group flaps: it fires again within notify.flap_window_secs of its resolution, then
    // resolves again. The same message and thread go on, "flapping ×2", and the evidence has not
    // changed, so the analysis is reused: no first look, no new LLM call.
    set_ratio(&textfiles, 0.37);
    let sent = wait_for_messages(&slack, 6, Duration::from_secs(30), &logs).await;
    let (again, followed) = (&sent[4], &sent[5]);
    assert_eq!(again["thread_ts"], "1700000000.000100", "{again}");
    let again_text = again["blocks"].to_string() + &again["attachments"].to_string();
    assert!(again_text.contains("Flapping ×2"), "{again}");
    assert!(
        again_text.contains("reused: same evidence"),
        "the earlier analysis, reused: {again}"
    );
    assert_eq!(
        (followed["channel"].as_str(), followed["ts"].as_str()),
        (Some("C0E2E"), Some("1700000000.000100")),
        "the incident's message follows the incident: {followed}"
    );
    let header = followed["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        header.contains("CheckoutErrorRatioHigh") && !header.starts_with('✅'),
        "firing again: {header}"
    );
    set_ratio(&textfiles, 0.01);
    let sent = wait_for_messages(&slack, 8, Duration::from_secs(30), &logs).await;
    let (resolved_again, edited_again) = (&sent[6], &sent[7]);
    assert_eq!(resolved_again["thread_ts"], "1700000000.000100");
    assert_eq!(edited_again["ts"], "1700000000.000100");
    let edited_text = edited_again["blocks"].to_string();
    assert!(
        edited_again["blocks"][0]["text"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("✅ CheckoutErrorRatioHigh"))
            && edited_text.contains("Flapping ×2"),
        "{edited_again}"
    );
    assert_eq!(
        fake_llm.prompts.lock().expect("lock").len(),
        1,
        "one LLM call for the whole flapping incident"
    );

    // Nothing more for the group: one message (the first look, its analysis, resolved, firing
    // again, resolved again) and its thread.
    let status = aiops.drain(Duration::from_secs(10)).await;
    assert_eq!(status["dead"], 0, "{status}");
    let all = messages(&slack).await;
    assert_eq!(all.len(), 8);
    // The graph of each firing (drawn from the real Prometheus) went into the incident's thread.
    let graphs = shared_graphs(&slack).await;
    assert_eq!(graphs.len(), 2, "{graphs:?}");
    for g in &graphs {
        assert_eq!(
            (g["channel_id"].as_str(), g["thread_ts"].as_str()),
            ("C0E2E", "1700000000.000100")
        );
    }
    let new_messages: Vec<&Value> = all
        .iter()
        .filter(|b| b.get("thread_ts").is_none() && b.get("ts").is_none())
        .collect();
    assert_eq!(new_messages.len(), 1, "one message: {new_messages:?}");
    let metrics = aiops.metrics().await;
    assert!(
        metrics.contains("aiops_webhook_requests_total{result=\"accepted\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aiops_analyses_total{analyzer=\"llm\",result=\"reused\"} 1"),
        "{metrics}"
    );
    for secret in [TOKEN, LLM_KEY, BOT_TOKEN] {
        assert!(
            !aiops.log().contains(secret) && !metrics.contains(secret),
            "{secret} leaked"
        );
    }
}
