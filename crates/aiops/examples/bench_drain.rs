//! Drain rate and overhead per analysis (run by `scripts/bench/drain.sh`; not a test).
//!
//! Starts a real Prometheus (Debian `prometheus`, empty storage, scraping itself), instant fakes of
//! Loki, an OpenAI-compatible LLM and Slack's incoming webhook, and the release `aiops` binary with
//! its SQLite store. Then:
//! 1. overhead: `--sequential` groups one at a time; for each, the job's stage timings (context, rca,
//!    notify: everything but an LLM wait, which the instant fake makes zero) — p50, p90, p99;
//! 2. drain: `--jobs` distinct groups posted at once; analyses finished per second from the first
//!    post to the last job done.
//!
//! Usage: bench_drain [--jobs N] [--sequential N] [--concurrency N]

#[path = "support/loki.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn wait_ready(url: &str) {
    for _ in 0..200 {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not become ready");
}

fn group(n: usize, prom: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!(
        "{root}/../../tests/fixtures/alertmanager/high-error-rate-k8s.json"
    ))
    .expect("fixture");
    let mut v: Value = serde_json::from_str(&text).expect("json");
    let name = format!("Bench{n:06}");
    v["groupKey"] = Value::String(format!("{{}}:{{alertname=\"{name}\"}}"));
    v["commonLabels"]["alertname"] = Value::String(name.clone());
    v["alerts"][0]["labels"]["alertname"] = Value::String(name);
    v["alerts"][0]["fingerprint"] = Value::String(format!("bench-{n}"));
    v["alerts"][0]["startsAt"] = Value::String(
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats"),
    );
    v["alerts"][0]["generatorURL"] = Value::String(format!(
        "http://{prom}/graph?g0.expr=rate%28prometheus_http_requests_total%5B1m%5D%29+%3E+0&g0.tab=1"
    ));
    v.to_string()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let jobs = arg("--jobs", 2000);
    let sequential = arg("--sequential", 200);
    let concurrency = arg("--concurrency", 16);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));

    let prom_port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [\"127.0.0.1:{prom_port}\"]\n"),
    )
    .expect("config");
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (apt-get install prometheus)"),
    );
    let prom = format!("127.0.0.1:{prom_port}");
    wait_ready(&format!("http://{prom}/-/ready")).await;

    let loki = MockServer::start().await;
    support::mount_labels_without_values(&loki, &["namespace", "pod", "service_name"]).await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": {"resultType": "streams", "result": [], "stats": {}}})))
        .mount(&loki)
        .await;
    let llm = MockServer::start().await;
    let answer = json!({"summary": "s", "root_cause": "c", "confidence": 0.5, "category": "unknown",
        "impact": "i", "evidence": [], "remediation": ["r"], "next_queries": []});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
        })))
        .mount(&llm)
        .await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;

    let port = free_port();
    let aiops_url = format!("http://127.0.0.1:{port}");
    let mut daemon = Command::new(format!("{root}/target/release/aiops"));
    daemon
        .arg("serve")
        .env("AIOPS__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "AIOPS__STORE__URL",
            format!("sqlite://{}/aiops.db", dir.path().display()),
        )
        .env("AIOPS__STORE__MAX_QUEUED", "1000000")
        .env("AIOPS__PROMETHEUS__URL", format!("http://{prom}"))
        .env("AIOPS__LOKI__URL", loki.uri())
        .env("AIOPS__LLM__PROVIDER", "openai-compatible")
        .env("AIOPS__LLM__BASE_URL", format!("{}/v1", llm.uri()))
        .env("AIOPS__LLM__MODEL", "m")
        .env("AIOPS__LLM__CONCURRENCY", concurrency.to_string())
        .env("AIOPS__LLM__CACHE_TTL_SECS", "0")
        .env(
            "AIOPS__SLACK__WEBHOOK_URL",
            format!("{}/services/T/B/bench", slack.uri()),
        )
        .env("AIOPS__NOTIFY__STDOUT", "false")
        .env("AIOPS__WORKER__CONCURRENCY", concurrency.to_string())
        .env("AIOPS__WORKER__POLL_INTERVAL_MS", "100")
        .env("AIOPS__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let daemon = Killed(
        daemon
            .spawn()
            .expect("build it first: cargo build --release -p aiops"),
    );
    wait_ready(&format!("{aiops_url}/ready")).await;
    // Prometheus' first self-scrape comes a few seconds after it is ready: wait for data, then a
    // few more scrapes, so the rule's series has points.
    for _ in 0..300 {
        let answer: Value = reqwest::get(format!("http://{prom}/api/v1/query?query=up"))
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        if answer["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    let post = |n: usize| {
        client
            .post(format!("{aiops_url}/webhook/alerts"))
            .header("content-type", "application/json")
            .body(group(n, &prom))
            .send()
    };
    let status = || async {
        reqwest::get(format!("{aiops_url}/queue/status"))
            .await
            .expect("status")
            .json::<Value>()
            .await
            .expect("json")
    };

    // 1. Overhead per analysis, one group at a time.
    let mut overhead = Vec::new();
    for n in 0..sequential {
        let answer: Value = post(n).await.expect("post").json().await.expect("json");
        let id = answer["job_id"].as_str().expect("id").to_owned();
        loop {
            let record: Value = reqwest::get(format!("{aiops_url}/analyses/{id}"))
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            if record["state"] == "done" {
                let t = &record["timings"];
                let ms = ["context_ms", "rca_ms", "notify_ms"]
                    .iter()
                    .map(|k| t[k].as_u64().unwrap_or(0))
                    .sum::<u64>();
                overhead.push(ms);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    overhead.sort_unstable();
    println!(
        "overhead per analysis (context + rca + notify, instant LLM), {sequential} groups one at a time: p50 {} ms, p90 {} ms, p99 {} ms",
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.9),
        percentile(&overhead, 0.99)
    );

    // 2. Drain: post them all, then wait until every one is done.
    let before = status().await["done"].as_u64().unwrap_or(0);
    let started = Instant::now();
    use futures_util::StreamExt;
    let answers: Vec<_> = futures_util::stream::iter(0..jobs)
        .map(|n| post(sequential + n))
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().is_ok_and(|r| r.status().is_success())),
        "every group is accepted"
    );
    let posted = started.elapsed();
    loop {
        let s = status().await;
        if s["done"].as_u64().unwrap_or(0) >= before + jobs as u64 {
            break;
        }
        assert_eq!(s["dead"], 0, "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let rss = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .map(str::to_owned)
        .unwrap_or_default();
    println!(
        "drain: {jobs} groups (posted in {:.2} s) analyzed and delivered in {:.2} s: {:.0} analyses/s at worker and LLM concurrency {concurrency}; daemon {rss}",
        posted.as_secs_f64(),
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64()
    );
    let requests = llm.received_requests().await.unwrap_or_default();
    let with_series = requests
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("expr-1"))
        .count();
    println!(
        "LLM calls: {} ({with_series} with the rule's series from Prometheus as evidence), Slack posts: {}",
        requests.len(),
        slack.received_requests().await.map_or(0, |r| r.len())
    );
}
