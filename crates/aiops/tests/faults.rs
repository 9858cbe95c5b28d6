//! Dependency faults while alerts stream in, on the real binary: a real Prometheus (Debian
//! `prometheus`) that is down, slow (behind a delaying proxy) or answering `status: error`; fakes of
//! Loki (down, slow), of an OpenAI-compatible LLM (429, 500, timeout, garbage, empty body) and of
//! Slack's incoming webhook (500, 429, timeout, `invalid_blocks`, down for good). Every alert still
//! ends with a delivered notification, degraded or from the fallback; only a Slack that stays down
//! (or refuses the message) ends jobs dead, with the reason in `/queue/status` and `/analyses/{id}`.
//! Plus the canary secrets: none appears in logs, error bodies, `/metrics`, `/queue/status`,
//! `/analyses/{id}` or requests to the LLM.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Daemon, Proc, distinct_group, free_port};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ALERTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    PrometheusDown,
    PrometheusSlow,
    PrometheusError,
    LokiDown,
    LokiSlow,
    Llm429,
    Llm500,
    LlmTimeout,
    LlmGarbage,
    LlmEmpty,
    Slack500,
    Slack429,
    SlackTimeout,
    SlackInvalidBlocks,
    SlackDownForGood,
}

/// The fake LLM: a valid analysis citing nothing, or the fault; records every prompt.
#[derive(Clone)]
struct FakeLlm {
    fault: Option<Fault>,
    prompts: Arc<Mutex<Vec<String>>>,
}

impl Respond for FakeLlm {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.prompts
            .lock()
            .expect("lock")
            .push(String::from_utf8_lossy(&request.body).into_owned());
        match self.fault {
            Some(Fault::Llm429) => {
                return ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(
                        json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
                    );
            }
            Some(Fault::Llm500) => {
                return ResponseTemplate::new(500)
                    .set_body_json(json!({"error": {"message": "The server had an error"}}));
            }
            Some(Fault::LlmTimeout) => {
                return ResponseTemplate::new(200).set_delay(Duration::from_secs(30));
            }
            Some(Fault::LlmGarbage) => {
                return ResponseTemplate::new(200)
                    .insert_header("content-type", "text/html")
                    .set_body_string("<html><body>502 Bad Gateway</body></html>");
            }
            Some(Fault::LlmEmpty) => return ResponseTemplate::new(200),
            _ => {}
        }
        let answer = json!({
            "summary": "load is high", "root_cause": "a batch job", "confidence": 0.7,
            "category": "resource_saturation", "impact": "slow", "evidence": [{"id": "rule-1", "note": "the rule"}],
            "remediation": ["find the batch job"], "next_queries": [],
        });
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        }))
    }
}

/// A TCP proxy that waits `delay` before forwarding each connection: a slow network to a real server.
async fn slow_proxy(target: String, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn prometheus(dir: &std::path::Path, extra: &[&str]) -> (Proc, String) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"),
    )
    .expect("config");
    let mut args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    (
        Proc::spawn("prometheus", &args, dir, "prometheus"),
        format!("127.0.0.1:{port}"),
    )
}

struct Outcome {
    docs: Vec<Value>,
    status: Value,
    prompts: Vec<String>,
    slack_requests: usize,
    rss_before: u64,
    rss_after: u64,
    records: Vec<Value>,
}

async fn run(fault: Fault) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();

    // Prometheus: real, behind a slow proxy, answering errors, or absent.
    let (prom, prom_url) = match fault {
        Fault::PrometheusDown => (None, format!("http://127.0.0.1:{}", free_port())),
        Fault::PrometheusError => {
            // Every query that touches a sample exceeds the limit: Prometheus answers status "error".
            let (p, addr) = prometheus(dir, &["--query.max-samples=0"]);
            (Some((p, addr.clone())), format!("http://{addr}"))
        }
        _ => {
            let (p, addr) = prometheus(dir, &[]);
            (Some((p, addr.clone())), format!("http://{addr}"))
        }
    };
    if let Some((p, addr)) = &prom {
        p.wait_ready(&format!("http://{addr}/-/ready"), Duration::from_secs(20))
            .await;
        // Wait (bounded) for the first self-scrape, a few seconds after Prometheus is ready: from
        // then on `up` has data (or, with no samples allowed, answers status "error").
        let url = format!("http://{addr}/api/v1/query?query=up");
        for _ in 0..150 {
            let answer: Value = reqwest::get(&url)
                .await
                .expect("query")
                .json()
                .await
                .unwrap_or_default();
            let has_data = answer["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            if answer["status"] == "error" || has_data {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let prom_url = match (fault, &prom) {
        (Fault::PrometheusSlow, Some((_, addr))) => {
            slow_proxy(addr.clone(), Duration::from_secs(5)).await
        }
        _ => prom_url,
    };

    let loki = MockServer::start().await;
    let loki_delay = match fault {
        Fault::LokiSlow => Duration::from_secs(5),
        _ => Duration::ZERO,
    };
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": ["job", "instance"]}))
                .set_delay(loki_delay),
        )
        .mount(&loki)
        .await;
    common::loki_label_values(&loki, loki_delay).await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": {"resultType": "streams", "result": [], "stats": {}}}))
                .set_delay(loki_delay),
        )
        .mount(&loki)
        .await;
    let loki_url = match fault {
        Fault::LokiDown => format!("http://127.0.0.1:{}", free_port()),
        _ => loki.uri(),
    };

    let llm = MockServer::start().await;
    let fake_llm = FakeLlm {
        fault: Some(fault),
        prompts: Arc::default(),
    };
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(fake_llm.clone())
        .mount(&llm)
        .await;

    let slack = MockServer::start().await;
    let failing = match fault {
        Fault::Slack500 => Some((
            ResponseTemplate::new(500).set_body_string("internal_error"),
            3,
        )),
        Fault::Slack429 => Some((
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_string("rate_limited"),
            3,
        )),
        Fault::SlackTimeout => Some((
            ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
            3,
        )),
        Fault::SlackInvalidBlocks => Some((
            ResponseTemplate::new(400).set_body_string("invalid_blocks"),
            u64::MAX,
        )),
        Fault::SlackDownForGood => Some((
            ResponseTemplate::new(500).set_body_string("internal_error"),
            u64::MAX,
        )),
        _ => None,
    };
    if let Some((template, times)) = failing {
        let mock = Mock::given(method("POST"))
            .respond_with(template)
            .with_priority(1);
        let mock = match times {
            u64::MAX => mock,
            n => mock.up_to_n_times(n),
        };
        mock.mount(&slack).await;
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;

    let file = dir.join("deliveries.jsonl");
    let env = [
        ("AIOPS__PROMETHEUS__URL", prom_url),
        ("AIOPS__PROMETHEUS__TIMEOUT_SECS", "1".to_owned()),
        ("AIOPS__LOKI__URL", loki_url),
        ("AIOPS__LOKI__TIMEOUT_SECS", "1".to_owned()),
        ("AIOPS__CONTEXT__DEADLINE_SECS", "3".to_owned()),
        ("AIOPS__LLM__PROVIDER", "openai-compatible".to_owned()),
        ("AIOPS__LLM__BASE_URL", format!("{}/v1", llm.uri())),
        ("AIOPS__LLM__MODEL", "m".to_owned()),
        ("AIOPS__LLM__API_KEY", "sk-faults".to_owned()),
        ("AIOPS__LLM__TIMEOUT_SECS", "2".to_owned()),
        ("AIOPS__LLM__MAX_RETRIES", "1".to_owned()),
        ("AIOPS__LLM__CONCURRENCY", "4".to_owned()),
        ("AIOPS__LLM__CACHE_TTL_SECS", "0".to_owned()),
        (
            "AIOPS__SLACK__WEBHOOK_URL",
            format!("{}/services/T/B/faults", slack.uri()),
        ),
        ("AIOPS__SLACK__TIMEOUT_SECS", "2".to_owned()),
        ("AIOPS__SLACK__MAX_RETRIES", "1".to_owned()),
        ("AIOPS__NOTIFY__STDOUT", "false".to_owned()),
        ("AIOPS__NOTIFY__FILE", file.display().to_string()),
        ("AIOPS__WORKER__MAX_ATTEMPTS", "3".to_owned()),
        ("AIOPS__WORKER__BACKOFF_BASE_SECS", "1".to_owned()),
        ("AIOPS__WORKER__BACKOFF_MAX_SECS", "2".to_owned()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let daemon = Daemon::start(dir, &env).await;
    let rss_before = daemon.rss_kib();
    let mut ids = Vec::new();
    for n in 0..ALERTS {
        let mut group: Value = serde_json::from_str(&distinct_group(n)).expect("json");
        // A rule over a series this Prometheus has (it scrapes itself).
        group["alerts"][0]["generatorURL"] =
            Value::String("http://prometheus/graph?g0.expr=up+%3D%3D+1&g0.tab=1".into());
        // Firing since now, so the evidence window holds this Prometheus' samples.
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats");
        group["alerts"][0]["startsAt"] = Value::String(now);
        // The alert is about the series this Prometheus scrapes from itself.
        if let Some((_, addr)) = &prom {
            for pointer in ["/alerts/0/labels", "/commonLabels"] {
                if let Some(labels) = group.pointer_mut(pointer) {
                    labels["instance"] = Value::String(addr.clone());
                    labels["job"] = Value::String("self".into());
                }
            }
        }
        let (status, body) = daemon.post_webhook(group.to_string()).await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{fault:?}: {body}");
        ids.push(body["job_id"].as_str().expect("id").to_owned());
    }
    let status = daemon.drain(Duration::from_secs(90)).await;
    let rss_after = daemon.rss_kib();
    let docs: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a document"))
        .collect();
    let mut records = Vec::new();
    for id in &ids {
        records.push(daemon.get(&format!("/analyses/{id}")).await);
    }
    let prompts = fake_llm.prompts.lock().expect("lock").clone();
    let slack_requests = slack.received_requests().await.expect("recorded").len();
    Outcome {
        docs,
        status,
        prompts,
        slack_requests,
        rss_before,
        rss_after,
        records,
    }
}

/// Every alert was analyzed and delivered: a document per job in the file, each job done.
fn all_delivered(fault: Fault, o: &Outcome) {
    assert_eq!(o.docs.len(), ALERTS, "{fault:?}: {}", o.status);
    assert_eq!(o.status["done"], ALERTS as u64, "{fault:?}: {}", o.status);
    assert_eq!(o.status["dead"], 0, "{fault:?}: {}", o.status);
    for doc in &o.docs {
        assert!(doc["analysis"]["summary"].is_string(), "{fault:?}: {doc}");
    }
}

fn degraded_context(fault: Fault, source: &str) -> Outcome {
    let o = tokio_run(fault);
    all_delivered(fault, &o);
    for doc in &o.docs {
        assert_eq!(
            doc["analysis"]["analyzer"]["fallback"], false,
            "{fault:?}: the LLM still answers"
        );
    }
    assert!(
        o.prompts
            .iter()
            .all(|p| p.contains("unavailable_sources") && p.contains(source)),
        "{fault:?}: the prompt says which source failed: {:?}",
        o.prompts.first()
    );
    o
}

fn fallback(fault: Fault) -> Outcome {
    let o = tokio_run(fault);
    all_delivered(fault, &o);
    for doc in &o.docs {
        let analyzer = &doc["analysis"]["analyzer"];
        assert_eq!(analyzer["fallback"], true, "{fault:?}: {doc}");
        assert!(
            analyzer["fallback_reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{fault:?}: {doc}"
        );
        assert_eq!(
            analyzer["name"], "rules",
            "{fault:?}: the rule-based analyzer answered"
        );
    }
    assert!(
        o.slack_requests >= ALERTS,
        "{fault:?}: Slack got every fallback analysis"
    );
    o
}

fn slack_recovers(fault: Fault) {
    let o = tokio_run(fault);
    all_delivered(fault, &o);
    assert!(
        o.slack_requests > ALERTS,
        "{fault:?}: failed requests were retried"
    );
    for record in &o.records {
        let sinks: Vec<&str> = record["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .filter_map(|d| d["sink"].as_str())
            .collect();
        assert!(
            sinks.contains(&"slack") && sinks.contains(&"file"),
            "{fault:?}: {record}"
        );
    }
}

fn slack_dead(fault: Fault, reason: &str) {
    let o = tokio_run(fault);
    assert_eq!(
        o.docs.len(),
        ALERTS,
        "{fault:?}: the file sink still got every analysis"
    );
    assert_eq!(o.status["dead"], ALERTS as u64, "{fault:?}: {}", o.status);
    let recent = o.status["recent_dead"].as_array().expect("recent_dead");
    assert!(!recent.is_empty());
    for dead in recent {
        assert!(
            dead["error"]
                .as_str()
                .is_some_and(|e| e.contains("slack") && e.contains(reason)),
            "{fault:?}: /queue/status says why: {dead}"
        );
    }
    for record in &o.records {
        assert_eq!(record["state"], "dead", "{fault:?}");
        assert!(
            record["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(reason)),
            "{fault:?}: /analyses/{{id}} says why: {record}"
        );
    }
}

/// Each scenario on a runtime of its own: the tests stay plain functions (and run in parallel).
fn tokio_run(fault: Fault) -> Outcome {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(fault))
}

#[test]
fn prometheus_down() {
    degraded_context(Fault::PrometheusDown, "prometheus");
}

#[test]
fn prometheus_slow() {
    degraded_context(Fault::PrometheusSlow, "prometheus");
}

#[test]
fn prometheus_answering_status_error() {
    let o = degraded_context(Fault::PrometheusError, "prometheus");
    assert!(
        o.prompts[0].contains("Prometheus answered an error"),
        "the failure says why: {}",
        o.prompts[0]
    );
}

#[test]
fn loki_down() {
    degraded_context(Fault::LokiDown, "loki");
}

#[test]
fn loki_slow() {
    degraded_context(Fault::LokiSlow, "loki");
}

#[test]
fn llm_429() {
    fallback(Fault::Llm429);
}

#[test]
fn llm_500() {
    fallback(Fault::Llm500);
}

#[test]
fn llm_timeout_with_memory_bounded() {
    let o = fallback(Fault::LlmTimeout);
    assert!(
        o.rss_after < o.rss_before + 64 * 1024,
        "RSS grew from {} KiB to {} KiB while the LLM hung",
        o.rss_before,
        o.rss_after
    );
}

#[test]
fn llm_garbage() {
    fallback(Fault::LlmGarbage);
}

#[test]
fn llm_empty_body() {
    fallback(Fault::LlmEmpty);
}

#[test]
fn slack_500_then_recovers() {
    slack_recovers(Fault::Slack500);
}

#[test]
fn slack_429_then_recovers() {
    slack_recovers(Fault::Slack429);
}

#[test]
fn slack_timeout_then_recovers() {
    slack_recovers(Fault::SlackTimeout);
}

#[test]
fn slack_invalid_blocks_ends_dead_with_the_reason() {
    slack_dead(Fault::SlackInvalidBlocks, "invalid_blocks");
}

#[test]
fn slack_down_past_max_attempts_ends_dead_with_the_reason() {
    slack_dead(Fault::SlackDownForGood, "500");
}
