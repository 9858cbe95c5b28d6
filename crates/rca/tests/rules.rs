//! The rule-based analyzer: the alert's shape names the family when no fact speaks; facts make the
//! answer (causes over symptoms), name the culprit and order the citations.

use std::collections::BTreeMap;

use aiops_model::alertmanager::{Alert, AlertStatus, WebhookPayload, parse_webhook};
use aiops_model::{
    Category, ChangeKind, Context, Evidence, EvidenceSource, Fact, Resource, Symptom,
};
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

fn evidence(id: &str, source: EvidenceSource, facts: Vec<Fact>) -> Evidence {
    Evidence {
        id: id.into(),
        source,
        title: format!("{id} title"),
        query: Some(format!("{id} query")),
        summary: format!("{id} summary"),
        excerpt: None,
        facts,
    }
}

fn saturation(resource: Resource, subject: &str, used: f64, limit: f64, at: i64) -> Fact {
    Fact::Saturation {
        resource,
        subject: subject.into(),
        used,
        limit,
        ratio: used / limit,
        at,
    }
}

/// The alerts start here (see `group`).
const START: i64 = 1_790_000_000;

fn context(items: Vec<Evidence>) -> Context {
    Context {
        evidence: items,
        ..Context::default()
    }
}

/// Alert name, rule expression, labels, expected family and category.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a str,
    Category,
);

#[test]
fn with_no_fact_the_alerts_shape_names_the_family() {
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
        ),
        (
            "NodeCpuBusy",
            "1 - avg(rate(node_cpu_seconds_total{mode=\"idle\"}[5m])) > 0.9",
            &node,
            "cpu_saturation",
            Category::ResourceSaturation,
        ),
        (
            "NodeMemoryLow",
            "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < 0.1",
            &node,
            "memory_pressure",
            Category::ResourceSaturation,
        ),
        (
            "KubePodCrashLooping",
            "increase(kube_pod_container_status_restarts_total[15m]) > 3",
            &pod,
            "crash_loop",
            Category::CrashOom,
        ),
        (
            "NodeFilesystemAlmostFull",
            "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.05",
            &node,
            "disk_full",
            Category::ResourceSaturation,
        ),
        (
            "HighErrorRate",
            "sum(rate(http_requests_total{status=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m])) > 0.05",
            &service,
            "error_ratio",
            Category::BadDeploy,
        ),
        (
            "HighLatency",
            "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m]))) > 0.5",
            &service,
            "latency",
            Category::ResourceSaturation,
        ),
        (
            "SSLCertExpiringSoon",
            "probe_ssl_earliest_cert_expiry - time() < 86400 * 7",
            &node,
            "cert_expiry",
            Category::Network,
        ),
        (
            "QueueBacklogGrowing",
            "sum(kafka_consumergroup_lag) > 1000",
            &service,
            "queue_backlog",
            Category::Capacity,
        ),
        ("Zzz", "foo_bar > 1", &node, "generic", Category::Unknown),
    ];
    // Evidence without facts: cited in the context's order, the answer from the alert's shape.
    let plain = context(vec![
        evidence("expr-1", EvidenceSource::Prometheus, Vec::new()),
        evidence("logs-errors", EvidenceSource::Loki, Vec::new()),
    ]);
    for (alertname, expr, labels, family, category) in cases {
        let a = analyze_by_rules(&group(alertname, expr, labels), &plain);
        assert_eq!(a.analyzer.rule.as_deref(), Some(family), "{alertname}");
        assert_eq!(a.category, category, "{alertname}");
        let cited: Vec<&str> = a.evidence.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(cited, ["expr-1", "logs-errors"], "{alertname}");
        assert!(
            a.confidence <= 0.5,
            "{alertname}: the shape alone is weak: {}",
            a.confidence
        );
        assert!(!a.remediation.is_empty());
        assert!(
            !a.remediation.iter().any(|s| s.contains('{')),
            "{alertname}: {:?}",
            a.remediation
        );
    }
}

/// The issue's cases: a cause outranks the symptom the alert's shape suggests, the answer names the
/// culprit, cites the fact's evidence first, fills the remediation with the names, and lists the
/// symptom's category as an alternative.
#[test]
fn causes_outrank_symptoms_and_the_answer_names_the_culprit() {
    let errors = group(
        "HighErrorRate",
        "sum(rate(http_requests_total{code=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m])) > 0.05",
        &[("namespace", "shop"), ("service", "cart")],
    );
    let ratio = Fact::ErrorRatio {
        subject: "cart".into(),
        value: 0.62,
        baseline: Some(0.003),
        at: Some(START - 120),
    };
    let refused = Fact::DependencyFailure {
        name: "redis-cart-master.shop.svc".into(),
        symptom: Symptom::Refused,
        shown_by: "dial tcp <*>: connect: connection refused".into(),
        at: Some(START - 60),
    };
    let a = analyze_by_rules(
        &errors,
        &context(vec![
            evidence("expr-1", EvidenceSource::Prometheus, vec![ratio.clone()]),
            evidence("logs-errors", EvidenceSource::Loki, vec![refused]),
        ]),
    );
    assert_eq!(a.category, Category::DependencyFailure, "{a:?}");
    assert!(
        a.root_cause
            .contains("redis-cart-master.shop.svc refuses connections"),
        "{}",
        a.root_cause
    );
    assert_eq!(a.evidence[0].id, "logs-errors");
    assert!(a.evidence[0].note.contains("refuses connections"));
    assert!(
        a.remediation[0].contains("redis-cart-master.shop.svc"),
        "{:?}",
        a.remediation
    );
    assert!(
        a.alternatives.iter().any(|l| l.starts_with("bad_deploy:")),
        "the shape's category is an alternative: {:?}",
        a.alternatives
    );
    // The same alert with only its symptom: the shape answers, less sure.
    let alone = analyze_by_rules(
        &errors,
        &context(vec![evidence(
            "expr-1",
            EvidenceSource::Prometheus,
            vec![ratio],
        )]),
    );
    assert_eq!(alone.category, Category::BadDeploy);
    assert!(
        alone.root_cause.ends_with(
            "No fact established from the evidence points at a cause beyond the alert's own signal."
        ),
        "{}",
        alone.root_cause
    );
    assert!(
        alone.confidence < a.confidence,
        "{} < {}",
        alone.confidence,
        a.confidence
    );

    // A change just before the onset beats a saturation that followed it.
    let cpu = group(
        "HighCpu",
        "rate(container_cpu_usage_seconds_total[5m]) > 0.9",
        &[
            ("namespace", "shop"),
            ("pod", "cart-7d9"),
            ("container", "cart"),
        ],
    );
    let a = analyze_by_rules(
        &cpu,
        &context(vec![
            evidence(
                "limit-1",
                EvidenceSource::Prometheus,
                vec![saturation(
                    Resource::Cpu,
                    "cart-7d9",
                    0.99,
                    1.0,
                    START + 300,
                )],
            ),
            evidence(
                "found-1",
                EvidenceSource::Prometheus,
                vec![Fact::Change {
                    kind: ChangeKind::Version,
                    subject: "cart".into(),
                    what: "image registry/cart:2.4.0".into(),
                    at: START - 900,
                }],
            ),
        ]),
    );
    assert_eq!(a.category, Category::BadDeploy, "{a:?}");
    assert!(a.root_cause.contains("cart:2.4.0"), "{}", a.root_cause);
    assert!(
        a.root_cause.contains("cart-7d9"),
        "the saturation is told too: {}",
        a.root_cause
    );

    // A common factor across a group beats N separate targets down.
    let down = group("TargetDown", "up == 0", &[("job", "node")]);
    let a = analyze_by_rules(
        &down,
        &context(vec![evidence(
            "expr-1",
            EvidenceSource::Prometheus,
            vec![
                Fact::TargetDown {
                    targets: vec!["db-21".into(), "db-22".into(), "db-23".into()],
                },
                Fact::CommonFactor {
                    label: "rack".into(),
                    value: "r12".into(),
                    firing: 3,
                    others_with: 0,
                    others: 5,
                },
            ],
        )]),
    );
    assert_eq!(a.category, Category::Network, "{a:?}");
    assert!(a.root_cause.contains("rack=\"r12\""), "{}", a.root_cause);

    // Throttling beats host CPU.
    let a = analyze_by_rules(
        &cpu,
        &context(vec![
            evidence(
                "limit-1",
                EvidenceSource::Prometheus,
                vec![saturation(Resource::Cpu, "node-7", 0.3, 0.35, START)],
            ),
            evidence(
                "limit-2",
                EvidenceSource::Prometheus,
                vec![saturation(
                    Resource::CpuThrottling,
                    "cart-7d9",
                    7.1,
                    10.0,
                    START,
                )],
            ),
        ]),
    );
    assert_eq!(a.category, Category::ResourceSaturation);
    assert!(a.root_cause.contains("CPU throttling"), "{}", a.root_cause);
    assert_eq!(a.evidence[0].id, "limit-2");
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
    // With the kill established, the answer is surer and says what killed it.
    let killed = Fact::Termination {
        subject: "cart-7d9".into(),
        reason: "oom".into(),
        shown_by: "kube_pod_container_status_last_terminated_reason{reason=\"OOMKilled\"}".into(),
        at: Some(START - 30),
    };
    let with = analyze_by_rules(
        &payload,
        &context(vec![evidence(
            "found-1",
            EvidenceSource::Prometheus,
            vec![killed],
        )]),
    );
    assert!(a.confidence < with.confidence);
    assert!(
        with.root_cause.contains("terminated (oom)"),
        "{}",
        with.root_cause
    );
    assert!(
        with.remediation
            .iter()
            .any(|s| s.contains("kubectl -n shop logs cart-7d9")),
        "the rule's steps follow when it agrees: {:?}",
        with.remediation
    );
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

[[weight]]
fact = "error_ratio"
category = "capacity"
weight = 9.0

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
    assert!(
        paid.root_cause
            .starts_with("The payment gateway pgw is failing. "),
        "{}",
        paid.root_cause
    );
    let other = rules.analyze_now(&group("Zzz", "x > 1", &[]), &Context::default());
    assert!(other.root_cause.starts_with("Ours: nothing matches Zzz. "));
    // Our weight: an error ratio now says capacity.
    let ratio = Fact::ErrorRatio {
        subject: "pgw".into(),
        value: 0.2,
        baseline: None,
        at: None,
    };
    let weighed = rules.analyze_now(
        &group("PaymentErrors", "x > 1", &[("service", "pgw")]),
        &context(vec![evidence(
            "expr-1",
            EvidenceSource::Prometheus,
            vec![ratio],
        )]),
    );
    assert_eq!(weighed.category, Category::Capacity);
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[weight]]\nfact = \"vibes\"\ncategory = \"network\"\nweight = 1.0\n",
    )
    .expect("write");
    let err = RulesAnalyzer::new(&RulesConfig {
        file: bad.display().to_string(),
    })
    .expect_err("an unknown fact");
    assert!(err.contains("\"vibes\" is not one of"), "{err}");
    let missing = RulesAnalyzer::new(&RulesConfig {
        file: dir.path().join("nope.toml").display().to_string(),
    });
    assert!(missing.is_err());
}
