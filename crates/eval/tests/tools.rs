//! The tools of a bounded LLM investigation, run by the context stage against a real Prometheus
//! (Debian package `prometheus`, a scenario's blocks) and the scenario Loki: each answers compressed,
//! faceted and redacted as gathered evidence, within its token cap; a wrong query or a missing
//! source is an error the model can read, not a crash.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use aiops_context::{ContextConfig, Gatherer, LokiConfig, PrometheusConfig};
use aiops_model::{Fact, Investigator, SystemClock, ToolCall};

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../eval/scenarios")
        .join(name)
}

#[tokio::test]
async fn each_tool_answers_from_the_real_sources_compressed_and_redacted() {
    let (payload, served, stage) = support::stage(&scenario("dependency-redis-refused")).await;
    let alert_at = payload.started_at().expect("a start").unix_timestamp();
    let call = |name: &str, arguments: &str| ToolCall::parse(name, arguments).expect("valid");

    // A range query: summarized per series, with the facts the stage establishes from it.
    let range = stage
        .run(
            &call(
                "promql_range",
                r#"{"query": "redis_up", "minutes_before": 30}"#,
            ),
            alert_at,
            "tool-1",
            1000,
        )
        .await
        .expect("answers");
    assert_eq!(range.id, "tool-1");
    assert!(range.summary.starts_with("#1 {"), "{}", range.summary);
    assert!(
        range.summary.contains("left its baseline at"),
        "{}",
        range.summary
    );
    assert!(
        range
            .facts
            .iter()
            .any(|f| matches!(f, Fact::Anomaly { rising: false, .. })),
        "redis_up fell: {:?}",
        range.facts
    );

    // Names and values through a selector.
    let names = stage
        .run(
            &call("metric_names", r#"{"selector": "{job=\"redis\"}"}"#),
            alert_at,
            "tool-2",
            1000,
        )
        .await
        .expect("answers");
    assert!(
        names.summary.contains("redis_memory_used_bytes"),
        "{}",
        names.summary
    );
    let values = stage
        .run(
            &call(
                "label_values",
                r#"{"label": "instance", "selector": "redis_up"}"#,
            ),
            alert_at,
            "tool-3",
            1000,
        )
        .await
        .expect("answers");
    assert!(
        values
            .summary
            .contains("redis://redis-cart-master.shop.svc:6379"),
        "{}",
        values.summary
    );
    let instant = stage
        .run(
            &call("promql_instant", r#"{"query": "redis_memory_max_bytes"}"#),
            alert_at,
            "tool-4",
            1000,
        )
        .await
        .expect("answers");
    // At the alert's start the cart's Redis is down (its series gone); the sessions' one answers.
    assert!(
        instant
            .summary
            .contains("redis-sessions-master.shop.svc:6379\", job=\"redis\"}: 1073741824"),
        "{}",
        instant.summary
    );

    // Lines as templates, the secret gone before mining.
    let logs = stage
        .run(
            &call("logql", r#"{"query": "{app=\"cart\"} |= \"refused\"", "minutes_before": 60, "minutes_after": 10}"#),
            alert_at,
            "tool-5",
            1000,
        )
        .await
        .expect("answers");
    assert!(
        logs.summary.contains("connection refused"),
        "{}",
        logs.summary
    );
    assert!(
        !logs.summary.contains("Gx8v2LkQp9"),
        "redacted: {}",
        logs.summary
    );
    assert!(
        logs.facts
            .iter()
            .any(|f| matches!(f, Fact::DependencyFailure { .. })),
        "{:?}",
        logs.facts
    );
    let labels = stage
        .run(&call("loki_labels", ""), alert_at, "tool-6", 1000)
        .await
        .expect("answers");
    assert!(labels.summary.contains("namespace"), "{}", labels.summary);

    // The cap holds, and says so.
    let capped = stage
        .run(
            &call("logql", r#"{"query": "{namespace=\"shop\"}"}"#),
            alert_at,
            "tool-7",
            40,
        )
        .await
        .expect("answers");
    assert!(
        capped.summary.chars().count() <= 40 * 4,
        "{}",
        capped.summary
    );
    assert!(
        capped
            .summary
            .ends_with("(cut to the tool result cap of 40 tokens)")
    );

    // A query Prometheus refuses comes back as its error, for the model to read.
    let bad = stage
        .run(
            &call("promql_instant", r#"{"query": "sum(rate(x[5m]"}"#),
            alert_at,
            "tool-8",
            1000,
        )
        .await
        .expect_err("a parse error");
    assert!(
        bad.contains("parse error") || bad.contains("unclosed"),
        "{bad}"
    );
    // A source that is not configured is said so.
    let no_loki = Gatherer::new(
        &ContextConfig::default(),
        &PrometheusConfig {
            url: served.prometheus.url.clone(),
            ..PrometheusConfig::default()
        },
        &LokiConfig::default(),
        Arc::new(SystemClock),
    )
    .expect("valid configuration");
    let missing = no_loki
        .run(&call("loki_labels", ""), alert_at, "tool-9", 1000)
        .await
        .expect_err("no Loki");
    assert!(missing.contains("loki.url"), "{missing}");
    drop(served);
}
