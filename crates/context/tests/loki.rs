//! The context stage against a fake Loki (wiremock) that answers exactly as Loki's HTTP API does:
//! `/loki/api/v1/labels` and `/loki/api/v1/query_range` with `streams` results, and plain-text errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use aiops_context::{ContextConfig, Gatherer, LokiConfig, PrometheusConfig};
use aiops_model::alertmanager::{Alert, AlertStatus, WebhookPayload};
use aiops_model::{ContextSource, EvidenceSource, ManualClock};
use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path, query_param, query_param_contains};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NOW: i64 = 1_790_000_000;
/// The stage's line filter for error-like lines, as it quotes it in LogQL.
const ERROR_WORDS: &str = "(?i)(error|exception|fatal|panic|fail(ed|ure)?|timed? ?out|refused|denied|oom|killed|unavailable)";
const STARTS_AT: i64 = NOW - 600;

fn payload(labels: &[(&str, &str)]) -> WebhookPayload {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    WebhookPayload {
        version: "4".into(),
        group_key: "{}:{alertname=\"CartErrors\"}".into(),
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
            generator_url: String::new(),
            fingerprint: String::new(),
        }],
    }
}

fn gatherer(loki: LokiConfig, redact: Vec<String>) -> Gatherer {
    Gatherer::new(
        &ContextConfig {
            redact,
            ..ContextConfig::default()
        },
        &PrometheusConfig::default(),
        &loki,
        Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(NOW).expect("time"),
        )),
    )
    .expect("valid configuration")
}

fn loki_config(server: &MockServer) -> LokiConfig {
    LokiConfig {
        url: server.uri(),
        ..LokiConfig::default()
    }
}

/// Loki's answer to a log query: one stream, its values as [nanosecond string, line].
fn streams(stream: Value, lines: &[(i64, String)]) -> Value {
    let values: Vec<Value> = lines
        .iter()
        .map(|(t, l)| json!([(t * 1_000_000_000).to_string(), l]))
        .collect();
    json!({
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": [{"stream": stream, "values": values}],
            "stats": {"summary": {"bytesProcessedPerSecond": 0, "execTime": 0.001}}
        }
    })
}

/// Loki's label names and each label's values (`/loki/api/v1/labels`, `/label/<name>/values`).
async fn labels(server: &MockServer, labels: &[(&str, &[&str])]) {
    let names: Vec<&str> = labels.iter().map(|(n, _)| *n).collect();
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": names})),
        )
        .mount(server)
        .await;
    for (name, values) in labels {
        Mock::given(method("GET"))
            .and(path(format!("/loki/api/v1/label/{name}/values")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"status": "success", "data": values})),
            )
            .mount(server)
            .await;
    }
}

#[tokio::test]
async fn error_lines_are_queried_with_the_mapped_selector_and_mined_into_templates() {
    let server = MockServer::start().await;
    labels(
        &server,
        &[
            ("namespace", &["shop", "db"]),
            ("app", &["cart", "checkout"]),
            ("level", &["error", "info"]),
            ("job", &["shop/cart", "db/postgres"]),
        ],
    )
    .await;
    let errors = r#"{namespace="shop", app="cart", level=~"(?i)(error|err|fatal|critical|crit|panic|emerg|alert)"}"#;
    let mut lines = Vec::new();
    for i in 0..40 {
        lines.push((
            STARTS_AT - 1500 + i * 30,
            format!("GET /cart/{i} upstream timeout after {}ms", 100 + i),
        ));
    }
    for i in 0..12 {
        lines.push((
            STARTS_AT - 120 + i * 10,
            format!("payment client: connection refused to 10.0.3.{i}:8443"),
        ));
    }
    lines.sort();
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param("query", errors))
        .and(query_param("direction", "backward"))
        .and(query_param("limit", "500"))
        .and(header("X-Scope-OrgID", "team-a"))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(
            json!({"namespace": "shop", "app": "cart", "level": "error"}),
            &lines,
        )))
        .expect(1)
        .mount(&server)
        .await;
    // The other lines, read to now (the clock), newest first.
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param(
            "query",
            format!(r#"{{namespace="shop", app="cart"}} !~ "{ERROR_WORDS}""#),
        ))
        .and(query_param("direction", "backward"))
        .and(query_param("end", (NOW * 1_000_000_000).to_string()))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(
            json!({"namespace": "shop", "app": "cart"}),
            &[(
                STARTS_AT - 5,
                "cart checkout started for order 77".to_owned(),
            )],
        )))
        .expect(1)
        .mount(&server)
        .await;

    // Lines elsewhere that mention the group: none.
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param_contains("query", "(shop/)"))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(json!({"app": "x"}), &[])))
        .expect(3)
        .mount(&server)
        .await;
    let config = LokiConfig {
        tenant: "team-a".into(),
        ..loki_config(&server)
    };
    let group = payload(&[
        ("alertname", "CartErrors"),
        ("namespace", "shop"),
        ("service", "cart"),
    ]);
    let context = gatherer(config, Vec::new())
        .gather(&group)
        .await
        .expect("gathers");
    assert!(context.failures.is_empty(), "{:#?}", context.failures);

    let logs = context.evidence("logs-errors").expect("error templates");
    assert_eq!(logs.source, EvidenceSource::Loki);
    let mut summary = logs.summary.lines();
    let header = summary.next().expect("header");
    assert!(
        header.starts_with("52 error-like lines between ")
            && header.contains(", 2 templates kept (1 new"),
        "{header}"
    );
    let first = summary.next().expect("first template");
    assert!(
        first.starts_with("[12x after, 0x before, new] payment client: connection refused to <*>"),
        "{first}"
    );
    let second = summary.next().expect("second template");
    assert!(
        second.starts_with("[0x after, 40x before] GET /cart/<*> upstream timeout after <*>"),
        "{second}"
    );
    let other = context.evidence("logs-other").expect("the other lines");
    assert!(
        other.summary.contains("cart checkout started for order 77"),
        "{}",
        other.summary
    );
    // "cart" alone is too common a word to look for in every stream; objects of the namespace
    // (`shop/…`, as Kubernetes' components name them) are looked for, and none was found.
    assert!(context.evidence("logs-mentions-1").is_none());
    // The queries run concurrently: they reach Loki in any order.
    let mut mentions = log_queries(&server)
        .await
        .into_iter()
        .filter(|q| q.contains("|~"))
        .collect::<Vec<_>>();
    mentions.sort();
    assert_eq!(
        mentions,
        [
            r#"{namespace="", job="", app=~".+"} |~ "(?i)\\b(shop/)\\b""#,
            r#"{namespace="", job=~".+"} |~ "(?i)\\b(shop/)\\b""#,
            r#"{namespace=~".+"} |~ "(?i)\\b(shop/)\\b""#,
        ]
    );
    server.verify().await;
}

#[tokio::test]
async fn an_injected_label_value_stays_inside_its_matcher() {
    let server = MockServer::start().await;
    labels(&server, &[("app", &["cart"])]).await;
    let hostile = "cart\"} |= \"\" or {app=~\".+";
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param(
            "query",
            r#"{app="cart\"} |= \"\" or {app=~\".+"} |~ "(?i)(error|exception|fatal|panic|fail(ed|ure)?|timed? ?out|refused|denied|oom|killed|unavailable)""#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(json!({"app": "x"}), &[])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param(
            "query",
            format!(r#"{{app="cart\"}} |= \"\" or {{app=~\".+"}} !~ "{ERROR_WORDS}""#),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(json!({"app": "x"}), &[])))
        .expect(1)
        .mount(&server)
        .await;
    // The value is a word looked for in every stream: inside the regex, inside the literal.
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param(
            "query",
            r#"{app=~".+"} |~ "(?i)\\b(cart\"\\} \\|= \"\" or \\{app=\\~\"\\.\\+)\\b""#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(json!({"app": "x"}), &[])))
        .expect(1)
        .mount(&server)
        .await;
    let group = payload(&[("alertname", "CartErrors"), ("service", hostile)]);
    let context = gatherer(loki_config(&server), Vec::new())
        .gather(&group)
        .await
        .expect("gathers");
    assert!(context.failures.is_empty(), "{:#?}", context.failures);
    server.verify().await;
}

#[tokio::test]
async fn a_loki_outage_or_error_gives_a_partial_context() {
    // Nothing listens: connection refused. (Not a dropped MockServer: wiremock pools its servers,
    // so a dropped one keeps listening and another test may mount mocks on it.)
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
        format!("http://{}", listener.local_addr().expect("has an address"))
    };
    let group = payload(&[("alertname", "CartErrors"), ("service", "cart")]);
    let config = LokiConfig {
        url: gone,
        ..LokiConfig::default()
    };
    let context = gatherer(config, Vec::new())
        .gather(&group)
        .await
        .expect("never fails");
    assert_eq!(context.failures.len(), 1, "{:#?}", context.failures);
    assert_eq!(context.failures[0].source, EvidenceSource::Loki);
    assert!(
        context.failures[0]
            .error
            .contains("cannot list Loki's labels"),
        "{:?}",
        context.failures[0]
    );

    // Loki answers a query with its plain-text error.
    let server = MockServer::start().await;
    labels(&server, &[("app", &["cart"])]).await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(
                "parse error at line 1, col 8: syntax error: unexpected IDENTIFIER\n",
            ),
        )
        .mount(&server)
        .await;
    let context = gatherer(loki_config(&server), Vec::new())
        .gather(&group)
        .await
        .expect("never fails");
    assert_eq!(context.failures.len(), 2, "{:#?}", context.failures);
    for failure in &context.failures {
        assert_eq!(failure.source, EvidenceSource::Loki);
        assert!(failure.query.is_some());
        assert!(
            failure.error.contains("400") && failure.error.contains("parse error at line 1, col 8"),
            "{failure:?}"
        );
    }
}

/// One canary of every kind of secret the redactor knows, as it might appear in a log line.
const CANARIES: &[(&str, &str)] = &[
    ("Authorization: Bearer ", "c4n4ryB3arerT0ken.abcdefgh"),
    ("curl -H 'authorization: Basic ", "dXNlcjpjYW5hcnlwYXNz"),
    ("connecting to postgres://app:", "canaryUrlPassw0rd"),
    ("config password=", "canaryKvPassw0rd"),
    ("{\"api_key\": \"", "canaryJsonApiKey123"),
    ("client_secret: ", "canaryClientSecret9"),
    ("token=", "canaryTokenValue42"),
    (
        "jwt ",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5",
    ),
    ("aws key ", "AKIACANARY0000000042"),
    ("gcp key ", "AIzaSyCanary000000000000000000000000042"),
    ("slack ", "xoxb-000000000042-canarycanary"),
    (
        "hook https://hooks.slack.com/services/",
        "T000CANARY/B000CANARY/xyzCanary",
    ),
    ("github ", "ghp_canary0000000000000000000000000000042"),
    ("openai ", "sk-canaryOpenAiKey000000000042"),
    ("custom ", "cust-424242"),
];

const PEM: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nMIIcanaryPemBody42\n-----END RSA PRIVATE KEY-----";

#[tokio::test]
async fn no_canary_secret_survives_into_the_context() {
    let server = MockServer::start().await;
    labels(&server, &[("app", &["cart"])]).await;
    let mut lines: Vec<(i64, String)> = CANARIES
        .iter()
        .enumerate()
        .map(|(i, (prefix, secret))| {
            // A password in a URL is followed by the host.
            let host = if prefix.contains("://") {
                "@db:5432/app"
            } else {
                ""
            };
            (
                STARTS_AT - 60 + i as i64,
                format!("error: {prefix}{secret}{host}"),
            )
        })
        .collect();
    lines.push((STARTS_AT - 1, format!("error: key material {PEM}")));
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(streams(json!({"app": "cart"}), &lines)),
        )
        .mount(&server)
        .await;
    // A secret in a label value travels into queries and evidence too.
    let group = payload(&[
        ("alertname", "CartErrors"),
        ("service", "cart"),
        ("dsn", "mysql://root:canaryLabelPassw0rd@db:3306"),
    ]);
    let context = gatherer(loki_config(&server), vec![r"cust-[0-9]{6}".into()])
        .gather(&group)
        .await
        .expect("gathers");
    let text = serde_json::to_string(&context).expect("serializes");
    assert!(
        text.contains("[REDACTED"),
        "the lines were not kept at all: {text}"
    );
    for (_, secret) in CANARIES {
        assert!(!text.contains(secret), "{secret} survived:\n{text}");
    }
    for leak in ["MIIcanaryPemBody42", "canaryLabelPassw0rd"] {
        assert!(!text.contains(leak), "{leak} survived:\n{text}");
    }
}

/// A Loki that lists its labels at once and answers log queries after `secs` seconds.
async fn slow_loki(secs: u64) -> MockServer {
    let server = MockServer::start().await;
    labels(&server, &[("app", &["cart"])]).await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(streams(json!({"app": "cart"}), &[]))
                .set_delay(std::time::Duration::from_secs(secs)),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_slow_loki_is_cut_off_by_its_timeout_and_named_in_the_failures() {
    let server = slow_loki(5).await;
    let config = LokiConfig {
        timeout_secs: 1,
        ..loki_config(&server)
    };
    let group = payload(&[("alertname", "CartErrors"), ("service", "cart")]);
    let started = std::time::Instant::now();
    let context = gatherer(config, Vec::new())
        .gather(&group)
        .await
        .expect("never fails");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(context.failures.len(), 2, "{:#?}", context.failures);
    for failure in &context.failures {
        assert_eq!(failure.source, EvidenceSource::Loki);
        assert!(failure.error.contains("within 1s"), "{failure:?}");
    }
}

#[tokio::test]
async fn the_deadline_names_every_query_it_cut_off() {
    // Loki lists its labels at once and then takes its time; Prometheus accepts connections and
    // never answers (a listener nobody serves).
    let server = slow_loki(20).await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let prometheus = PrometheusConfig {
        url: format!("http://{}", silent.local_addr().expect("addr")),
        timeout_secs: 30,
    };
    let loki = LokiConfig {
        timeout_secs: 30,
        ..loki_config(&server)
    };
    let gatherer = Gatherer::new(
        &ContextConfig {
            deadline_secs: 2,
            ..ContextConfig::default()
        },
        &prometheus,
        &loki,
        Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(NOW).expect("time"),
        )),
    )
    .expect("valid configuration");
    let mut group = payload(&[("alertname", "CartErrors"), ("service", "cart")]);
    group.alerts[0].generator_url =
        "http://prometheus:9090/graph?g0.expr=rate%28http_errors_total%5B5m%5D%29+%3E+1&g0.tab=1"
            .into();
    let context = tokio::time::timeout(std::time::Duration::from_secs(10), gatherer.gather(&group))
        .await
        .expect("the deadline holds")
        .expect("never fails");
    let cut: Vec<_> = context
        .failures
        .iter()
        .filter(|f| f.error.contains("context deadline of 2s"))
        .collect();
    let named = |source: EvidenceSource, text: &str| {
        cut.iter()
            .any(|f| f.source == source && f.query.as_deref() == Some(text))
    };
    assert!(
        named(EvidenceSource::Prometheus, "rate(http_errors_total[5m])"),
        "the rule's query is named: {:#?}",
        context.failures
    );
    assert!(
        named(
            EvidenceSource::Loki,
            &format!(r#"{{app="cart"}} !~ "{ERROR_WORDS}""#)
        ),
        "the other lines' query is named: {:#?}",
        context.failures
    );
    assert!(
        cut.iter().any(|f| f.source == EvidenceSource::Loki
            && f.query.as_deref().is_some_and(|q| q.contains("|~"))),
        "the error lines' query is named: {:#?}",
        context.failures
    );
    assert!(
        cut.iter()
            .any(|f| f.source == EvidenceSource::Prometheus && f.query.is_none()),
        "the unfinished planning lookups are named: {:#?}",
        context.failures
    );
    assert!(
        context
            .failures
            .iter()
            .all(|f| f.source != EvidenceSource::Alert),
        "no generic failure: {:#?}",
        context.failures
    );
    drop(silent);
}

/// Answers every log query with `lines` of `stream`, unless a more specific mock answers first.
async fn any_query_answers(server: &MockServer, stream: Value, lines: &[(i64, String)]) {
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(stream, lines)))
        .with_priority(10)
        .mount(server)
        .await;
}

/// Answers the log query `query` (exactly) with `lines` of `stream`, before any catch-all.
async fn query_answers(server: &MockServer, query: String, stream: Value, lines: &[(i64, String)]) {
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param("query", query))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(stream, lines)))
        .with_priority(1)
        .mount(server)
        .await;
}

/// The LogQL queries the stage sent.
async fn log_queries(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/loki/api/v1/query_range")
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "query")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

#[tokio::test]
async fn an_instance_alert_finds_its_hosts_logs_under_another_label_and_not_a_louder_neighbour() {
    let server = MockServer::start().await;
    labels(
        &server,
        &[
            ("job", &["varlogs"]),
            ("host", &["app-06", "app-07", "app-070"]),
            ("filename", &["/var/log/kern.log", "/var/log/syslog"]),
        ],
    )
    .await;
    // The neighbour app-06 is loud: every query that is not about app-07 gets its errors.
    let noise: Vec<(i64, String)> = (0..30)
        .map(|i| {
            (
                STARTS_AT - 900 + i * 20,
                format!("disk error on sdb sector {i}"),
            )
        })
        .collect();
    any_query_answers(&server, json!({"job": "varlogs", "host": "app-06"}), &noise).await;
    let oom = (
        STARTS_AT - 30,
        "kernel: Out of memory: Killed process 4242 (java)".to_owned(),
    );
    query_answers(
        &server,
        format!(r#"{{host="app-07"}} |~ "{}""#, ERROR_WORDS),
        json!({"job": "varlogs", "host": "app-07", "filename": "/var/log/kern.log"}),
        &[oom],
    )
    .await;
    let group = payload(&[
        ("alertname", "HostOutOfMemory"),
        ("instance", "app-07:9100"),
        ("job", "node"),
    ]);
    let context = gatherer(loki_config(&server), Vec::new())
        .gather(&group)
        .await
        .expect("gathers");
    let errors = context
        .evidence("logs-errors")
        .expect("the host's error lines");
    assert!(
        errors.summary.contains("Killed process"),
        "{}",
        errors.summary
    );
    assert!(
        !errors.summary.contains("sdb"),
        "the neighbour's lines: {}",
        errors.summary
    );
    let queries = log_queries(&server).await;
    assert!(!queries.is_empty());
    for q in &queries {
        // Its own streams, or any stream's lines that name it as a whole word.
        assert!(
            q.starts_with(r#"{host="app-07"}"#) || q.ends_with(r#"|~ "(?i)\\b(app\\-07)\\b""#),
            "only app-07, never app-070 or app-06: {q}"
        );
    }
    assert!(context.failures.is_empty(), "{:#?}", context.failures);
}

#[tokio::test]
async fn a_workload_is_found_under_the_label_its_pipeline_uses() {
    let server = MockServer::start().await;
    labels(
        &server,
        &[
            ("service_name", &["report-web", "billing"]),
            ("service_namespace", &["reports", "finance"]),
            ("level", &["INFO", "WARN"]),
        ],
    )
    .await;
    any_query_answers(
        &server,
        json!({"service_name": "billing"}),
        &[(STARTS_AT - 60, "ERROR billing ledger locked".to_owned())],
    )
    .await;
    query_answers(
        &server,
        format!(
            r#"{{service_namespace="reports", service_name="report-web"}} |~ "{}""#,
            ERROR_WORDS
        ),
        json!({"service_name": "report-web", "level": "WARN"}),
        &[(
            STARTS_AT - 200,
            "export failed: request timed out after 60000 ms".to_owned(),
        )],
    )
    .await;
    // The namespace is found by value too; the level label holds no error-like value here, so the
    // lines are matched by their words.
    let group = payload(&[
        ("alertname", "ReportWebSlow"),
        ("application", "report-web"),
        ("namespace", "reports"),
    ]);
    let context = gatherer(loki_config(&server), Vec::new())
        .gather(&group)
        .await
        .expect("gathers");
    let errors = context
        .evidence("logs-errors")
        .expect("the workload's error lines");
    assert!(
        errors.summary.contains("export failed"),
        "{}\n{:?}",
        errors.summary,
        log_queries(&server).await
    );
    assert!(!errors.summary.contains("ledger"), "{}", errors.summary);
    assert_eq!(
        errors.query.as_deref(),
        Some(
            format!(
                r#"{{service_namespace="reports", service_name="report-web"}} |~ "{}""#,
                ERROR_WORDS
            )
            .as_str()
        )
    );
}
