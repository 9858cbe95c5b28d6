//! Measures the LLM analyzer's cost per alert group (run by `scripts/bench/rca.sh`; not a test).
//!
//! For each firing fixture in `tests/fixtures/alertmanager`, the context stage runs with the default
//! configuration against fakes of Prometheus (every range query answers 20 series over the window,
//! every template's metrics exist) and Loki (500 error lines), a worst case for the prompt's size.
//! Then the LLM analyzer runs twice on the same group and context against a fake OpenAI-compatible
//! API that counts the calls and reports the prompt's tokens (4 characters each) as its usage.

#[path = "support/loki.rs"]
mod support;

use std::sync::Arc;

use aiops_context::{ContextConfig, Gatherer, LokiConfig, PrometheusConfig};
use aiops_model::alertmanager::{AlertStatus, parse_webhook};
use aiops_model::{Analyzer, ContextSource, SystemClock};
use aiops_rca::{LlmAnalyzer, LlmConfig, RulesAnalyzer};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn matrix() -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let result: Vec<Value> = (0..20)
        .map(|n| {
            let values: Vec<Value> = (0..234i32)
                .map(|i| json!([now - 2100 + i64::from(i) * 9, (0.25 + 0.01 * f64::from(n) + 0.02 * (f64::from(i) / 5.0).sin()).to_string()]))
                .collect();
            json!({"metric": {"instance": format!("host-{n}:9100"), "job": "node"}, "values": values})
        })
        .collect();
    json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
}

fn lines() -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let values: Vec<Value> = (0..500)
        .map(|i| {
            let line = match i % 4 {
                0 => format!(
                    "level=error msg=\"upstream timeout\" upstream=10.0.{}.{}:8080",
                    i % 7,
                    i % 200
                ),
                1 => format!(
                    "level=error msg=\"retrying request\" attempt={} id={:08x}",
                    i % 4,
                    i * 7919
                ),
                2 => format!(
                    "level=error msg=\"write failed\" err=\"no space left on device\" chunk={i}"
                ),
                _ => format!(
                    "level=error msg=\"connection reset by peer\" peer=10.1.{}.{}:5432",
                    i % 9,
                    i % 250
                ),
            };
            json!([((now - 2000 + i * 4) * 1_000_000_000).to_string(), line])
        })
        .collect();
    json!({"status": "success", "data": {"resultType": "streams",
        "result": [{"stream": {"app": "api"}, "values": values}]}})
}

/// Answers a valid analysis, with the prompt's size as its usage.
struct Llm;

impl Respond for Llm {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let chars: usize = body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["content"].as_str().map_or(0, |c| c.chars().count()))
                    .sum()
            })
            .unwrap_or(0);
        let content = json!({
            "summary": "s", "root_cause": "r", "confidence": 0.7, "category": "capacity",
            "impact": "i", "evidence": [{"id": "expr-1", "note": "n"}],
            "remediation": ["step"], "next_queries": []
        })
        .to_string();
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": chars.div_ceil(4), "completion_tokens": 60, "total_tokens": chars.div_ceil(4) + 60}
        }))
    }
}

#[tokio::main]
async fn main() {
    let prometheus = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(matrix()))
        .mount(&prometheus)
        .await;
    let templates = aiops_context::templates::load("").expect("templates");
    let mut names: Vec<String> = templates.iter().flat_map(|t| t.metrics.clone()).collect();
    names.extend(["up", "ALERTS"].map(String::from));
    Mock::given(method("GET"))
        .and(path("/api/v1/label/__name__/values"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": names})),
        )
        .mount(&prometheus)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/labels"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success",
            "data": ["__name__", "instance", "job", "namespace", "pod", "container", "service"]})),
        )
        .mount(&prometheus)
        .await;
    let loki = MockServer::start().await;
    support::mount_labels_without_values(&loki, &["app", "namespace", "job", "instance"]).await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(lines()))
        .mount(&loki)
        .await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Llm)
        .mount(&llm)
        .await;

    let gatherer = Gatherer::new(
        &ContextConfig::default(),
        &PrometheusConfig {
            url: prometheus.uri(),
            ..PrometheusConfig::default()
        },
        &LokiConfig {
            url: loki.uri(),
            ..LokiConfig::default()
        },
        Arc::new(SystemClock),
    )
    .expect("context");
    let analyzer = LlmAnalyzer::new(
        &LlmConfig {
            provider: "openai-compatible".into(),
            base_url: format!("{}/v1", llm.uri()),
            model: "fake".into(),
            ..LlmConfig::default()
        },
        RulesAnalyzer::default(),
    )
    .expect("llm");

    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/alertmanager"
    );
    let mut fixtures: Vec<_> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    fixtures.sort();
    println!(
        "| fixture | evidence in the context | context tokens | prompt tokens | LLM calls (first / again) | evidence the rule-based analysis cites |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let rules = RulesAnalyzer::default();
    let mut worst = 0;
    for file in fixtures {
        let payload = parse_webhook(&std::fs::read(&file).expect("read")).expect("parses");
        if payload.status == AlertStatus::Resolved {
            continue;
        }
        let context = gatherer.gather(&payload).await.expect("context");
        let before = llm.received_requests().await.unwrap_or_default().len();
        let first = analyzer
            .analyze(&payload, &context)
            .await
            .expect("analysis");
        let middle = llm.received_requests().await.unwrap_or_default().len();
        let again = analyzer
            .analyze(&payload, &context)
            .await
            .expect("analysis");
        let after = llm.received_requests().await.unwrap_or_default().len();
        assert!(
            !first.analyzer.fallback,
            "{:?}",
            first.analyzer.fallback_reason
        );
        assert!(again.analyzer.cached);
        worst = worst.max(first.analyzer.prompt_tokens);
        let cited: Vec<String> = rules
            .analyze(&payload, &context)
            .await
            .expect("rules")
            .evidence
            .into_iter()
            .map(|e| e.id)
            .collect();
        println!(
            "| {} | {} | {} | {} | {} / {} | {} |",
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            context.evidence.len(),
            aiops_model::tokens::of_all(&context.evidence),
            first.analyzer.prompt_tokens,
            middle - before,
            after - middle,
            cited.join(", ")
        );
    }
    println!("\nlargest prompt: {worst} tokens (target <= 4000)");
    if worst > 4000 {
        std::process::exit(1);
    }
}
