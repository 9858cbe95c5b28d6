//! The context stage against a real Prometheus (Debian package `prometheus`) that holds known data:
//! TSDB blocks built with `promtool tsdb create-blocks-from openmetrics` from a generated file, in
//! which one instance of four spikes at a known time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aiops_context::{ContextConfig, Gatherer, LokiConfig, PrometheusConfig};
use aiops_model::alertmanager::{Alert, AlertStatus, WebhookPayload};
use aiops_model::tokens;
use aiops_model::{ContextSource, EvidenceSource, SystemClock};
use time::OffsetDateTime;

/// Samples every 15 s over the last two hours.
const SCRAPE: i64 = 15;
const INSTANCES: [&str; 4] = ["host-1", "host-2", "host-3", "host-4"];
const SPIKING: &str = "host-3";

struct Prometheus {
    child: Child,
    url: String,
    query_log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn run(command: &mut Command, install: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?} ({e}): apt-get install {install}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The known data: `demo_cpu_usage` around 0.2 for every instance, and 0.95 on host-3 from
/// `spike_at` on. Returns the OpenMetrics text.
fn openmetrics(now: i64, spike_at: i64) -> String {
    let mut text = String::from(
        "# HELP demo_cpu_usage Share of CPU time busy.\n# TYPE demo_cpu_usage gauge\n",
    );
    let from = now - 2 * 3600;
    for (n, instance) in INSTANCES.iter().enumerate() {
        let mut t = from - from % SCRAPE;
        let mut i = 0u32;
        while t <= now - 60 {
            // A small deterministic wobble, different per instance.
            let wobble = 0.02 * (f64::from(i) / 7.0 + n as f64).sin();
            let v = if *instance == SPIKING && t >= spike_at {
                0.95
            } else {
                0.2 + wobble
            };
            text.push_str(&format!(
                "demo_cpu_usage{{instance=\"{instance}\",job=\"node\"}} {v} {t}\n"
            ));
            t += SCRAPE;
            i += 1;
        }
    }
    // process-exporter on every host (port 9256): on host-3 a batch job takes the CPU from the spike
    // on; on host-1 a backup does too, on a host that is not alerting (the red herring).
    text.push_str(
        "# HELP namedprocess_namegroup_cpu_seconds_total Cpu user usage in seconds\n# TYPE namedprocess_namegroup_cpu_seconds_total counter\n",
    );
    for instance in INSTANCES {
        for group in ["nginx", "batch-report", "backup"] {
            let busy = |t: i64| match (instance, group) {
                (SPIKING, "batch-report") | ("host-1", "backup") if t >= spike_at => 1.8,
                (_, "nginx") => 0.1,
                _ => 0.001,
            };
            let mut value = 1000.0;
            let mut t = from - from % SCRAPE;
            while t <= now - 60 {
                value += busy(t) * SCRAPE as f64;
                text.push_str(&format!(
                    "namedprocess_namegroup_cpu_seconds_total{{groupname=\"{group}\",instance=\"{instance}:9256\",job=\"process-exporter\",mode=\"user\"}} {value} {t}\n"
                ));
                t += SCRAPE;
            }
        }
    }
    text.push_str("# EOF\n");
    text
}

fn start_prometheus(dir: &Path, now: i64, spike_at: i64) -> Prometheus {
    let data = dir.join("data");
    let input = dir.join("demo.om");
    std::fs::write(&input, openmetrics(now, spike_at)).expect("write openmetrics");
    run(
        Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data),
        "prometheus",
    );
    let query_log = dir.join("queries.log");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  query_log_file: {}\n", query_log.display()),
    )
    .expect("write config");
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=30d")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start prometheus ({e}): apt-get install prometheus"));
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        query_log,
    }
}

async fn wait_ready(prometheus: &Prometheus, dir: &Path) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("{}/-/ready", prometheus.url))
            .send()
            .await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "Prometheus did not become ready; its log:\n{}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
}

fn alert(instance: &str, expr: &str, starts_at: OffsetDateTime) -> Alert {
    let labels: BTreeMap<String, String> = [
        ("alertname", "HighCpu"),
        ("instance", instance),
        ("job", "node"),
        ("severity", "page"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let query: String =
        serde_urlencoded::to_string([("g0.expr", expr), ("g0.tab", "1")]).expect("encode");
    Alert {
        status: AlertStatus::Firing,
        labels,
        annotations: [("summary".to_owned(), "CPU busy above 90%".to_owned())].into(),
        starts_at,
        ends_at: None,
        generator_url: format!("http://prometheus.example:9090/graph?{query}"),
        fingerprint: String::new(),
    }
}

fn payload(alerts: Vec<Alert>) -> WebhookPayload {
    WebhookPayload {
        version: "4".into(),
        group_key: "{}:{alertname=\"HighCpu\"}".into(),
        truncated_alerts: 0,
        status: AlertStatus::Firing,
        receiver: "aiops".into(),
        group_labels: BTreeMap::new(),
        common_labels: BTreeMap::new(),
        common_annotations: BTreeMap::new(),
        external_url: "http://alertmanager.example:9093".into(),
        alerts,
    }
}

fn gatherer(url: &str, max_tokens: usize) -> Gatherer {
    Gatherer::new(
        &ContextConfig {
            max_tokens,
            ..ContextConfig::default()
        },
        &PrometheusConfig {
            url: url.to_owned(),
            ..PrometheusConfig::default()
        },
        &LokiConfig::default(),
        Arc::new(SystemClock),
    )
    .expect("valid configuration")
}

#[tokio::test]
async fn the_rules_expression_finds_the_spike_and_ranks_it_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let spike_at = now - 20 * 60 - (now % SCRAPE);
    let prometheus = start_prometheus(dir.path(), now, spike_at);
    wait_ready(&prometheus, dir.path()).await;

    let starts_at = OffsetDateTime::from_unix_timestamp(spike_at + 60).expect("time");
    // A second alert of the group comes from a rule whose metric does not exist at all.
    let group = payload(vec![
        alert(SPIKING, "demo_cpu_usage > 0.9", starts_at),
        alert(SPIKING, "demo_queue_depth > 100", starts_at),
    ]);
    let context = gatherer(&prometheus.url, 4000)
        .gather(&group)
        .await
        .expect("gathers");
    assert!(context.failures.is_empty(), "{:#?}", context.failures);

    // 1. The rule's own expression, graphed without its threshold, finds the spiking series...
    let metric_evidence: Vec<_> = context
        .evidence
        .iter()
        .filter(|e| e.source == EvidenceSource::Prometheus)
        .collect();
    let top = metric_evidence.first().expect("metric evidence");
    assert_eq!(top.query.as_deref(), Some("demo_cpu_usage"), "{top:#?}");
    let first_line = top.summary.lines().next().expect("a line per series");
    // ... at rank 1, with the right size and time.
    assert!(
        first_line.starts_with(&format!("#1 {{instance=\"{SPIKING}\"}}: peak 0.95 at ")),
        "{first_line}"
    );
    let number_after = |marker: &str, end: char| -> f64 {
        first_line
            .split(marker)
            .nth(1)
            .and_then(|s| s.split(end).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no number after {marker:?} in {first_line}"))
    };
    let ratio = number_after(" (", 'x');
    let baseline = number_after("x baseline median ", ',');
    assert!((0.18..=0.22).contains(&baseline), "{first_line}");
    assert!((0.95 / 0.22..=0.95 / 0.18).contains(&ratio), "{first_line}");
    let peak_at = first_line
        .split("peak 0.95 at ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("peak time");
    let peak_at = OffsetDateTime::parse(peak_at, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
        .unix_timestamp();
    let crossed = first_line
        .split("crossed > 0.9 at ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("no crossing in {first_line}"));
    let crossed = OffsetDateTime::parse(crossed, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
        .unix_timestamp();
    let window = context.window_end.expect("end").unix_timestamp()
        - context.window_start.expect("start").unix_timestamp();
    let step = (window as f64 / 250.0).ceil() as i64;
    assert!(
        (spike_at..=spike_at + step).contains(&crossed),
        "crossed at {crossed}, the spike began at {spike_at} (step {step})"
    );
    // The peak is the plateau's first point in the incident (which begins 5 minutes before the
    // alert, after the spike here): never before the spike.
    assert!(
        peak_at >= spike_at && peak_at <= spike_at + 60 + step,
        "{first_line}"
    );
    for (rank, line) in top.summary.lines().enumerate().skip(1).take(3) {
        assert!(!line.contains(SPIKING), "rank {}: {line}", rank + 1);
    }

    // 2. The raw series, narrowed to the alert's labels that the series carry.
    let narrowed = context
        .evidence
        .iter()
        .find(|e| e.id.starts_with("series-"))
        .expect("component evidence");
    assert_eq!(
        narrowed.query.as_deref(),
        Some("demo_cpu_usage{instance=\"host-3\", job=\"node\"}")
    );

    // 3. No query names a metric that does not exist, and none is empty: Prometheus' own query log.
    let log = std::fs::read_to_string(&prometheus.query_log).expect("query log");
    let queries: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["params"]["query"].as_str().map(str::to_owned))
        .collect();
    assert!(queries.len() >= 3, "{queries:#?}");
    for q in &queries {
        assert!(
            !q.trim().is_empty() && !q.contains("{}"),
            "empty query in {queries:#?}"
        );
        assert!(
            !q.contains("node_"),
            "a template ran without its metrics: {q}"
        );
        if q.contains("demo_queue_depth") {
            assert_eq!(q, "demo_queue_depth", "only the rule's own expression: {q}");
        }
    }
    drop(prometheus);
}

/// The known data in a real Prometheus, and an alert on the spiking host that started a minute after
/// its spike, as the rule `demo_cpu_usage > 0.9` would fire.
async fn spiking_host_alert(dir: &Path) -> (Prometheus, WebhookPayload) {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let spike_at = now - 20 * 60 - (now % SCRAPE);
    let prometheus = start_prometheus(dir, now, spike_at);
    wait_ready(&prometheus, dir).await;
    let starts_at = OffsetDateTime::from_unix_timestamp(spike_at + 60).expect("time");
    let group = payload(vec![alert(SPIKING, "demo_cpu_usage > 0.9", starts_at)]);
    (prometheus, group)
}

#[tokio::test]
async fn an_oversized_context_is_trimmed_and_keeps_the_anomaly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (prometheus, group) = spiking_host_alert(dir.path()).await;

    let full = gatherer(&prometheus.url, 100_000)
        .gather(&group)
        .await
        .expect("gathers");
    let small = gatherer(&prometheus.url, 250)
        .gather(&group)
        .await
        .expect("gathers");
    assert!(
        tokens::of_all(&full.evidence) > 250,
        "the full context must not fit already"
    );
    assert!(
        tokens::of_all(&small.evidence) <= 250,
        "{:#?}",
        small.evidence
    );
    assert!(small.evidence.len() < full.evidence.len());
    let kept = &small.evidence[0];
    assert_eq!(kept.query.as_deref(), Some("demo_cpu_usage"));
    assert!(kept.summary.contains(SPIKING), "{}", kept.summary);
    drop(prometheus);
}

#[tokio::test]
async fn discovery_finds_the_process_on_the_alerting_host_and_not_a_busy_neighbour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (prometheus, group) = spiking_host_alert(dir.path()).await;
    let context = gatherer(&prometheus.url, 4000)
        .gather(&group)
        .await
        .expect("gathers");
    let found = context
        .evidence
        .iter()
        .find(|e| e.title.contains("namedprocess_namegroup_cpu_seconds_total"))
        .unwrap_or_else(|| panic!("no discovered process evidence: {:#?}", context.evidence));
    assert!(found.title.contains(SPIKING), "{}", found.title);
    let top = found.summary.lines().next().unwrap_or_default();
    assert!(
        top.contains("batch-report"),
        "the culprit ranks first: {}",
        found.summary
    );
    // host-3 runs an idle backup group too; host-1's busy one is not this host's.
    let backup = found
        .summary
        .lines()
        .find(|l| l.contains("\"backup\""))
        .unwrap_or_default();
    assert!(
        backup.contains("flat"),
        "only this host's idle backup: {}",
        found.summary
    );
    for e in context
        .evidence
        .iter()
        .filter(|e| e.id.starts_with("found-"))
    {
        assert!(!e.title.contains("host-1"), "the neighbour: {}", e.title);
    }
    assert!(context.failures.is_empty(), "{:#?}", context.failures);
    drop(prometheus);
}

#[tokio::test]
async fn prometheus_down_gives_a_partial_context_that_says_why() {
    // A port nothing listens on.
    let url = format!("http://127.0.0.1:{}", free_port());
    let starts_at = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let group = payload(vec![alert(SPIKING, "demo_cpu_usage > 0.9", starts_at)]);
    let context = gatherer(&url, 4000)
        .gather(&group)
        .await
        .expect("never fails");
    // The alert's own evidence stays; every Prometheus query is a named failure.
    assert!(context.evidence("rule-1").is_some() && context.evidence("annotations").is_some());
    assert!(
        context
            .evidence
            .iter()
            .all(|e| e.source == EvidenceSource::Alert)
    );
    assert!(!context.failures.is_empty());
    for failure in &context.failures {
        assert_eq!(failure.source, EvidenceSource::Prometheus);
        assert!(!failure.error.is_empty());
    }
    assert!(
        context
            .failures
            .iter()
            .any(|f| f.query.as_deref() == Some("demo_cpu_usage")),
        "{:#?}",
        context.failures
    );
    assert!(
        context.failures.iter().any(|f| f
            .error
            .contains("cannot list the label names of demo_cpu_usage")),
        "the failed label-name lookup is named, not dropped: {:#?}",
        context.failures
    );
}
