//! Benchmark of the context stage (run by `scripts/bench/context.sh`; not a test).
//!
//! Fakes of Prometheus and Loki (wiremock, speaking their HTTP APIs) answer with known delays and
//! data: 20 series for the rule's expression, one of them spiking, and 500 log lines, among them a
//! template that appears only at the alert. It prints:
//! - the plan's wall time against its slowest single query, cold (metadata not cached yet) and warm;
//! - the tokens of the compressed context against the raw series and lines the seed design sent,
//!   and whether the anomaly is still in the top evidence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiops_context::{ContextConfig, Gatherer, LokiConfig, PrometheusConfig};
use aiops_model::alertmanager::{Alert, AlertStatus, WebhookPayload};
use aiops_model::tokens;
use aiops_model::{ContextSource, ManualClock};
use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NOW: i64 = 1_790_000_000;
const STARTS_AT: i64 = NOW - 600;
const SERIES: usize = 20;
const LINES: usize = 500;
const SPIKING: usize = 13;
const RUNS: usize = 10;

/// Delays of the fakes: the rule's expression is the slowest query.
const SLOWEST: Duration = Duration::from_millis(400);
const QUERY: Duration = Duration::from_millis(250);
const LOGS: Duration = Duration::from_millis(300);
const METADATA: Duration = Duration::from_millis(30);

fn matrix() -> Value {
    let start = STARTS_AT - 1800;
    let step = 9;
    let result: Vec<Value> = (0..SERIES)
        .map(|n| {
            let values: Vec<Value> = (0..)
                .map(|i| start + i * step)
                .take_while(|t| *t <= STARTS_AT + 300)
                .map(|t| {
                    let v = if n == SPIKING && t >= STARTS_AT - 60 {
                        0.97
                    } else {
                        0.25 + 0.03 * ((t / step) as f64 / 5.0 + n as f64).sin()
                    };
                    json!([t, v.to_string()])
                })
                .collect();
            json!({"metric": {"instance": format!("host-{n}:9100"), "job": "node"}, "values": values})
        })
        .collect();
    json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
}

fn log_lines() -> Vec<(i64, String)> {
    let mut lines = Vec::with_capacity(LINES);
    for i in 0..LINES as i64 {
        // Spread over the window, from 30 minutes before the alert to 5 minutes after.
        let t = STARTS_AT - 1800 + i * 4;
        let line = match i % 5 {
            _ if t >= STARTS_AT - 120 && i % 2 == 0 => format!(
                "level=error msg=\"write failed\" err=\"no space left on device\" path=/var/lib/app/chunk-{i}.dat"
            ),
            0 => format!(
                "level=error msg=\"upstream timeout\" upstream=10.0.{}.{}:8080 after={}ms",
                i % 7,
                i % 200,
                200 + i
            ),
            1 => format!(
                "level=warn msg=\"slow query\" table=orders duration={}ms rows={}",
                300 + i,
                i * 3
            ),
            2 => format!(
                "level=error msg=\"retrying request\" attempt={} request_id={:08x}",
                i % 4,
                i * 7919
            ),
            3 => format!(
                "level=error msg=\"cache miss storm\" keys={} shard={}",
                i * 11,
                i % 16
            ),
            _ => format!(
                "level=error msg=\"connection reset by peer\" peer=10.1.{}.{}:5432",
                i % 9,
                i % 250
            ),
        };
        lines.push((t, line));
    }
    lines
}

fn streams(lines: &[(i64, String)]) -> Value {
    let values: Vec<Value> = lines
        .iter()
        .map(|(t, l)| json!([(t * 1_000_000_000).to_string(), l]))
        .collect();
    json!({"status": "success", "data": {"resultType": "streams",
        "result": [{"stream": {"app": "api", "namespace": "prod"}, "values": values}]}})
}

async fn fakes(lines: &[(i64, String)]) -> (MockServer, MockServer) {
    let prometheus = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/query_range"))
        .and(query_param("query", "node_cpu_busy"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(matrix())
                .set_delay(SLOWEST),
        )
        .with_priority(1)
        .mount(&prometheus)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/query_range"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"status": "success", "data": {"resultType": "matrix", "result": []}}),
                )
                .set_delay(QUERY),
        )
        .with_priority(2)
        .mount(&prometheus)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/labels"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"status": "success", "data": ["__name__", "instance", "job"]}),
                )
                .set_delay(METADATA),
        )
        .mount(&prometheus)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/label/__name__/values"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"status": "success", "data": ["node_cpu_busy", "node_load5"]}),
                )
                .set_delay(METADATA),
        )
        .mount(&prometheus)
        .await;
    let loki = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": ["app", "namespace"]}))
                .set_delay(METADATA),
        )
        .mount(&loki)
        .await;
    // Label values as Loki answers them: none here, so the stage maps labels by name.
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/loki/api/v1/label/[^/]+/values$",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": []}))
                .set_delay(METADATA),
        )
        .mount(&loki)
        .await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(streams(lines))
                .set_delay(LOGS),
        )
        .mount(&loki)
        .await;
    (prometheus, loki)
}

fn payload() -> WebhookPayload {
    let labels: BTreeMap<String, String> = [
        ("alertname", "NodeCpuBusy"),
        ("instance", "host-13:9100"),
        ("job", "node"),
        ("namespace", "prod"),
        ("app", "api"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    WebhookPayload {
        version: "4".into(),
        group_key: "{}:{alertname=\"NodeCpuBusy\"}".into(),
        truncated_alerts: 0,
        status: AlertStatus::Firing,
        receiver: "aiops".into(),
        group_labels: BTreeMap::new(),
        common_labels: labels.clone(),
        common_annotations: BTreeMap::new(),
        external_url: String::new(),
        alerts: vec![Alert {
            status: AlertStatus::Firing,
            labels,
            annotations: BTreeMap::new(),
            starts_at: OffsetDateTime::from_unix_timestamp(STARTS_AT).expect("time"),
            ends_at: None,
            generator_url: "http://prometheus:9090/graph?g0.expr=node_cpu_busy+%3E+0.9&g0.tab=1"
                .into(),
            fingerprint: String::new(),
        }],
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let lines = log_lines();
    let (prometheus, loki) = fakes(&lines).await;
    let payload = payload();
    let clock = Arc::new(ManualClock::new(
        OffsetDateTime::from_unix_timestamp(NOW).expect("time"),
    ));
    let make = || {
        Gatherer::new(
            &ContextConfig::default(),
            &PrometheusConfig {
                url: prometheus.uri(),
                ..PrometheusConfig::default()
            },
            &LokiConfig {
                url: loki.uri(),
                ..LokiConfig::default()
            },
            clock.clone(),
        )
        .expect("valid configuration")
    };

    println!(
        "== plan wall time (slowest single query: {} ms)",
        SLOWEST.as_millis()
    );
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut context = None;
    for _ in 0..RUNS {
        let gatherer = make();
        let t = Instant::now();
        gatherer.gather(&payload).await.expect("gathers");
        cold.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        context = Some(gatherer.gather(&payload).await.expect("gathers"));
        warm.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let slowest = SLOWEST.as_secs_f64() * 1000.0;
    for (name, runs) in [
        ("cold (metadata looked up)", &mut cold),
        ("warm (metadata cached)", &mut warm),
    ] {
        runs.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.0} ms, max {:.0} ms over {RUNS} runs = {:.2}x / {:.2}x the slowest query",
            percentile(runs, 0.5),
            runs[runs.len() - 1],
            percentile(runs, 0.5) / slowest,
            runs[runs.len() - 1] / slowest
        );
    }
    let received = prometheus
        .received_requests()
        .await
        .unwrap_or_default()
        .len()
        + loki.received_requests().await.unwrap_or_default().len();
    println!("requests answered by the fakes: {received}");

    let context = context.expect("a context");
    let raw_series = serde_json::to_string(&matrix()["data"]["result"]).expect("json");
    let raw_lines: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let raw_tokens = (raw_series.len() + raw_lines.len()).div_ceil(4);
    let tokens = tokens::of_all(&context.evidence);
    println!("\n== compression ({SERIES} series, {LINES} log lines)");
    println!(
        "raw, as the seed design sent it: {raw_tokens} tokens ({} chars of series JSON, {} of lines)",
        raw_series.len(),
        raw_lines.len()
    );
    println!(
        "compressed context: {tokens} tokens in {} evidence items = {:.1}x smaller",
        context.evidence.len(),
        raw_tokens as f64 / tokens as f64
    );
    let top = &context.evidence[0];
    let anomaly_first = top
        .summary
        .lines()
        .next()
        .is_some_and(|l| l.starts_with(&format!("#1 {{instance=\"host-{SPIKING}:9100\"}}")));
    let logs = context
        .evidence("logs-errors")
        .map(|e| e.summary.clone())
        .unwrap_or_default();
    let new_template_first = logs
        .lines()
        .nth(1)
        .is_some_and(|l| l.contains("no space left on device") && l.contains("new]"));
    println!("top evidence: {} ({})", top.id, top.title);
    println!("anomalous series ranked #1 in the top evidence: {anomaly_first}");
    println!(
        "the template new at the alert ranked first among log templates: {new_template_first}"
    );
    println!("\n--- the compressed context ---");
    for e in &context.evidence {
        println!(
            "[{}] {}\n  query: {}\n  {}",
            e.id,
            e.title,
            e.query.as_deref().unwrap_or("-"),
            e.summary.replace('\n', "\n  ")
        );
        if let Some(x) = &e.excerpt {
            println!("  excerpt:\n    {}", x.replace('\n', "\n    "));
        }
    }
    if !(anomaly_first && new_template_first) {
        std::process::exit(1);
    }
}
