//! The cost of an analysis with tools off and on (scripts/bench/rca.sh): a scenario's data in a real
//! Prometheus (dependency-redis-refused, blocks built by promtool) and the scenario Loki, and a fake
//! OpenAI-compatible model that answers at once, so the time measured is aiops' own: the requests,
//! the tool calls against Prometheus and Loki, the compression. With tools on, the model calls two
//! tools (a PromQL range query and a LogQL query) in its first turn and answers in its second.
//!
//! Usage: cargo run --release -p aiops-eval --example bench_investigation -- [RUNS]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aiops_model::{Analyzer, ContextSource};
use aiops_rca::{LlmAnalyzer, LlmConfig, RulesAnalyzer};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

// The tests' helper: a scenario served and the context stage pointed at it.
#[path = "../tests/support/mod.rs"]
mod support;

struct Script {
    turns: Vec<Value>,
    next: AtomicUsize,
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json(&self.turns[i % self.turns.len()])
    }
}

fn turn(message: Value) -> Value {
    json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    })
}

fn answer() -> Value {
    let analysis = json!({
        "summary": "cart's Redis is down", "root_cause": "redis-cart-master is down",
        "confidence": 0.8, "category": "dependency_failure", "impact": "carts fail",
        "evidence": [{"id": "logs-errors", "note": "connection refused"}],
        "remediation": ["restart redis-cart-master"], "next_queries": [],
    });
    turn(json!({"role": "assistant", "content": analysis.to_string()}))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../eval/scenarios/dependency-redis-refused");
    let (payload, served, stage) = support::stage(&dir).await;
    let stage = Arc::new(stage);
    let context = stage.gather(&payload).await.expect("gathers");
    println!(
        "| tools | LLM requests | tool calls | request tokens sent (all requests, tools and schema included) | analysis p50 / max (ms) | per round p50 (ms) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for tools in ["off", "on"] {
        let server = MockServer::start().await;
        let turns = match tools {
            "on" => vec![
                turn(json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": "promql_range",
                        "arguments": "{\"query\": \"redis_up\", \"minutes_before\": 60}"}},
                    {"id": "call_1", "type": "function", "function": {"name": "logql",
                        "arguments": "{\"query\": \"{container=\\\"redis\\\"}\", \"minutes_before\": 60}"}},
                ]})),
                answer(),
            ],
            _ => vec![answer()],
        };
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Script {
                turns,
                next: AtomicUsize::new(0),
            })
            .mount(&server)
            .await;
        let analyzer = LlmAnalyzer::new(
            &LlmConfig {
                provider: "openai-compatible".into(),
                base_url: format!("{}/v1", server.uri()),
                model: "scripted".into(),
                tools: if tools == "on" { "auto" } else { "off" }.into(),
                cache_ttl_secs: 0,
                ..LlmConfig::default()
            },
            RulesAnalyzer::default(),
        )
        .expect("valid")
        .with_investigator(stage.clone());
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            let a = analyzer
                .analyze(&payload, &context)
                .await
                .expect("analysis");
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert!(!a.analyzer.fallback, "{:?}", a.analyzer.fallback_reason);
            last = Some(a);
        }
        let a = last.expect("one run");
        let requests = server.received_requests().await.unwrap_or_default();
        let per_analysis = requests.len() / runs.max(1);
        let sent: usize = requests
            .iter()
            .take(per_analysis)
            .map(|r| aiops_model::tokens::estimate(&String::from_utf8_lossy(&r.body)))
            .sum();
        times.sort_by(f64::total_cmp);
        let p50 = percentile(&times, 0.5);
        println!(
            "| {tools} | {} | {} | {sent} | {:.1} / {:.1} | {:.1} |",
            a.analyzer.llm_requests,
            a.analyzer.tool_calls.len(),
            p50,
            times.last().copied().unwrap_or(f64::NAN),
            p50 / f64::from(a.analyzer.llm_requests.max(1)),
        );
    }
    drop(served);
}
