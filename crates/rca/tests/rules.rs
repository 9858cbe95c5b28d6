//! The rule-based analyzer on a fixture context for each alert family: it names the right family and
//! cites the right evidence first.

use std::collections::BTreeMap;

use aiops_model::alertmanager::{Alert, AlertStatus, WebhookPayload, parse_webhook};
use aiops_model::{Category, Context, Evidence, EvidenceSource};
use aiops_rca::{RulesAnalyzer, RulesConfig, analyze_by_rules};
use time::OffsetDateTime;

fn group(alertname: &str, expr: &str, labels: &[(&str, &str)]) -> WebhookPayload {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    all.insert("alertname".into(), alertname.into());
    let query = serde_urlencoded::to_string([("g0.expr", expr)]).expect("encode");
    WebhookPayload {
        version: "4".into(),
        group_key: format!("{{}}:{{alertname=\"{alertname}\"}}"),
        truncated_alerts: 0,
        status: AlertStatus::Firing,
        receiver: "aiops".into(),
        group_labels: BTreeMap::new(),
        common_labels: all.clone(),
        common_annotations: BTreeMap::new(),
        external_url: String::new(),
        alerts: vec![Alert {
            status: AlertStatus::Firing,
            labels: all,
            annotations: BTreeMap::new(),
            starts_at: OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("time"),
            ends_at: None,
            generator_url: format!("http://prom:9090/graph?{query}"),
            fingerprint: "f".into(),
        }],
    }
}

fn evidence(id: &str, source: EvidenceSource, summary: &str) -> Evidence {
    Evidence {
        id: id.into(),
        source,
        title: format!("{id} title"),
        query: Some("q".into()),
        summary: summary.into(),
        excerpt: None,
    }
}

/// What the context stage makes of an incident: an unremarkable template graph first (as if the
/// stage had ranked it high), then the rule's graph, a new error template, a correlated alert.
fn context(new_error: Option<&str>, correlated: bool) -> Context {
    let mut items = vec![
        evidence(
            "tmpl-3",
            EvidenceSource::Prometheus,
            "#1 {instance=\"a\"}: peak 0.2 (1x baseline 0.2, z=0.1)",
        ),
        evidence(
            "expr-1",
            EvidenceSource::Prometheus,
            "#1 {instance=\"a\"}: peak 0.97 (4x baseline 0.24, z=31); crossed > 0.9",
        ),
        evidence(
            "rule-1",
            EvidenceSource::Alert,
            "1 of 1 alerts in the group are firing",
        ),
    ];
    if let Some(template) = new_error {
        items.push(evidence_logs(template));
    }
    if correlated {
        items.push(evidence(
            "alerts",
            EvidenceSource::Prometheus,
            "#1 {alertname=\"KubeNodeNotReady\"}: peak 1 (no baseline)",
        ));
    }
    Context {
        window_start: None,
        window_end: None,
        evidence: items,
        failures: Vec::new(),
    }
}

fn evidence_logs(template: &str) -> Evidence {
    evidence(
        "logs-errors",
        EvidenceSource::Loki,
        &format!(
            "52 error-like lines, 2 templates kept (1 new since the incident began):\n[40x after, 0x before, new] {template}\n[5x after, 20x before] GET /health <*>"
        ),
    )
}

/// Alert name, rule expression, labels, expected family and category, and a new log template.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a str,
    Category,
    Option<&'a str>,
);

#[test]
fn each_family_is_named_and_its_evidence_cited_first() {
    let node = [("instance", "node-1:9100"), ("job", "node")];
    let pod = [
        ("namespace", "shop"),
        ("pod", "cart-7d9"),
        ("container", "cart"),
    ];
    let service = [
        ("namespace", "shop"),
        ("service", "checkout"),
        ("job", "checkout"),
    ];
    let cases: Vec<Case> = vec![
        (
            "TargetDown",
            "up{job=\"api\"} == 0",
            &node,
            "target_down",
            Category::DependencyFailure,
            None,
        ),
        (
            "NodeCpuBusy",
            "1 - avg(rate(node_cpu_seconds_total{mode=\"idle\"}[5m])) > 0.9",
            &node,
            "cpu_saturation",
            Category::ResourceSaturation,
            None,
        ),
        (
            "NodeMemoryLow",
            "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < 0.1",
            &node,
            "memory_pressure",
            Category::ResourceSaturation,
            None,
        ),
        (
            "KubePodCrashLooping",
            "increase(kube_pod_container_status_restarts_total[15m]) > 3",
            &pod,
            "crash_loop",
            Category::CrashOom,
            Some("panic: runtime error: invalid memory address"),
        ),
        (
            "NodeFilesystemAlmostFull",
            "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.05",
            &node,
            "disk_full",
            Category::Capacity,
            Some("write failed: no space left on device"),
        ),
        (
            "HighErrorRate",
            "sum(rate(http_requests_total{status=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m])) > 0.05",
            &service,
            "error_ratio",
            Category::BadDeploy,
            Some("payment client: connection refused"),
        ),
        (
            "HighLatency",
            "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m]))) > 0.5",
            &service,
            "latency",
            Category::ResourceSaturation,
            None,
        ),
        (
            "SSLCertExpiringSoon",
            "probe_ssl_earliest_cert_expiry - time() < 86400 * 7",
            &node,
            "cert_expiry",
            Category::Network,
            None,
        ),
        (
            "QueueBacklogGrowing",
            "sum(kafka_consumergroup_lag) > 1000",
            &service,
            "queue_backlog",
            Category::Capacity,
            None,
        ),
        (
            "Zzz",
            "foo_bar > 1",
            &node,
            "generic",
            Category::Unknown,
            None,
        ),
    ];
    for (alertname, expr, labels, family, category, new_error) in cases {
        let payload = group(alertname, expr, labels);
        let a = analyze_by_rules(&payload, &context(new_error, true));
        assert_eq!(a.analyzer.rule.as_deref(), Some(family), "{alertname}");
        assert_eq!(a.category, category, "{alertname}");
        let cited: Vec<&str> = a.evidence.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            cited[0], "expr-1",
            "{alertname}: the rule's anomaly first: {cited:?}"
        );
        match new_error {
            Some(template) => {
                assert_eq!(cited[1], "logs-errors", "{alertname}: {cited:?}");
                assert!(
                    a.root_cause.contains(template),
                    "{alertname}: {}",
                    a.root_cause
                );
                assert!(a.evidence[1].note.contains(template));
            }
            None => assert_eq!(cited[1], "alerts", "{alertname}: {cited:?}"),
        }
        assert!(a.confidence <= 0.6, "{alertname}: the rules stay modest");
        assert!(!a.remediation.is_empty());
        assert!(
            !a.remediation.iter().any(|s| s.contains('{')),
            "{alertname}: {:?}",
            a.remediation
        );
    }
}

#[test]
fn remediation_names_the_alerts_own_targets() {
    let payload = group(
        "KubePodCrashLooping",
        "increase(kube_pod_container_status_restarts_total[15m]) > 3",
        &[
            ("namespace", "shop"),
            ("pod", "cart-7d9"),
            ("container", "cart"),
        ],
    );
    let a = analyze_by_rules(&payload, &Context::default());
    assert!(
        a.remediation
            .iter()
            .any(|s| s.contains("kubectl -n shop logs cart-7d9 -c cart --previous")),
        "{:?}",
        a.remediation
    );
    // No evidence: a lower confidence than with it.
    let with = analyze_by_rules(&payload, &context(Some("panic: boom"), true));
    assert!(a.confidence < with.confidence);
}

#[test]
fn the_fixtures_classify_as_before() {
    let fixture = |name: &str| {
        let path = format!(
            "{}/../../tests/fixtures/alertmanager/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse_webhook(&std::fs::read(path).expect("fixture")).expect("parses")
    };
    let down = analyze_by_rules(
        &fixture("target-down-group-firing.json"),
        &Context::default(),
    );
    assert_eq!(down.analyzer.rule.as_deref(), Some("target_down"));
    assert!(down.summary.contains("2 alerts firing"), "{}", down.summary);
    assert_eq!(down.next_queries[0], "up{job=\"api\"} == 0");
    let load = analyze_by_rules(&fixture("high-load-warning.json"), &Context::default());
    assert_eq!(load.category, Category::ResourceSaturation);
}

#[test]
fn a_users_rules_file_adds_and_replaces_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        r#"
[[rule]]
family = "payments_gateway"
category = "dependency_failure"
confidence = 0.5
alertnames = ["payment"]
cause = "The payment gateway {service} is failing."
impact = "Orders cannot be paid."
remediation = ["Check the gateway's status page."]

[[rule]]
family = "generic"
category = "unknown"
confidence = 0.1
cause = "Ours: nothing matches {alertname}."
impact = "Unknown."
remediation = ["Page the owning team."]
"#,
    )
    .expect("write");
    let rules = RulesAnalyzer::new(&RulesConfig {
        file: file.display().to_string(),
    })
    .expect("valid rules");
    let paid = rules.analyze_now(
        &group("PaymentErrors", "x > 1", &[("service", "pgw")]),
        &Context::default(),
    );
    assert_eq!(paid.analyzer.rule.as_deref(), Some("payments_gateway"));
    assert_eq!(paid.root_cause, "The payment gateway pgw is failing.");
    let other = rules.analyze_now(&group("Zzz", "x > 1", &[]), &Context::default());
    assert_eq!(other.root_cause, "Ours: nothing matches Zzz.");
    let missing = RulesAnalyzer::new(&RulesConfig {
        file: dir.path().join("nope.toml").display().to_string(),
    });
    assert!(missing.is_err());
}
