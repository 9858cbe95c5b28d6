//! A bounded LLM investigation: a fake OpenAI-compatible server scripts the model's turns in the
//! real wire format (`tools`, `tool_calls`, `role: tool`), and the calls run against a real
//! Prometheus (Debian package `prometheus`, a scenario's blocks) and the scenario Loki through the
//! context stage. The budgets hold whatever the model does, and the answer may cite tool results.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aiops_model::{Analyzer, Context, WebhookPayload};
use aiops_rca::{LlmAnalyzer, LlmConfig, RulesAnalyzer};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The model's turns, in order; the last repeats.
struct Script {
    turns: Vec<Value>,
    next: AtomicUsize,
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self
            .next
            .fetch_add(1, Ordering::SeqCst)
            .min(self.turns.len() - 1);
        ResponseTemplate::new(200).set_body_json(&self.turns[i])
    }
}

fn completion(message: Value, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050},
    })
}

/// A turn that calls tools: `(name, arguments)` each.
fn calls(calls: &[(&str, &str)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, arguments))| {
            json!({"id": format!("call_{i}"), "type": "function",
                   "function": {"name": name, "arguments": arguments}})
        })
        .collect();
    completion(
        json!({"role": "assistant", "content": null, "tool_calls": calls}),
        "tool_calls",
    )
}

/// A turn that answers, citing `cited`.
fn answer(cited: &str) -> Value {
    let analysis = json!({
        "summary": "cart fails: its Redis is down",
        "root_cause": "redis-cart-master is down (redis_up 0), so cart's connections are refused",
        "confidence": 0.8, "category": "dependency_failure", "impact": "carts fail",
        "evidence": [{"id": cited, "note": "redis_up fell to 0"}],
        "remediation": ["Restart redis-cart-master and raise its maxmemory"],
        "next_queries": ["redis_up"],
    });
    completion(
        json!({"role": "assistant", "content": analysis.to_string()}),
        "stop",
    )
}

struct Run {
    analysis: aiops_model::Analysis,
    /// The analyses before the last, when asked for more than one.
    earlier: Vec<aiops_model::Analysis>,
    requests: Vec<Value>,
    context: Context,
}

/// Analyzes the redis scenario with tools on and the model's `turns`.
async fn investigate(turns: Vec<Value>, config: LlmConfig) -> Run {
    investigate_times(turns, config, 1).await
}

/// The same, `times` times with one analyzer.
async fn investigate_times(turns: Vec<Value>, config: LlmConfig, times: usize) -> Run {
    let script = Script {
        turns,
        next: AtomicUsize::new(0),
    };
    investigate_with(script, config, times).await
}

/// The same with `model` answering the requests.
async fn investigate_with(model: impl Respond + 'static, config: LlmConfig, times: usize) -> Run {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../eval/scenarios/dependency-redis-refused");
    let (payload, served, stage): (WebhookPayload, _, _) = support::stage(&dir).await;
    let stage = Arc::new(stage);
    let context = aiops_model::ContextSource::gather(stage.as_ref(), &payload)
        .await
        .expect("gathers");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(model)
        .mount(&server)
        .await;
    let analyzer = LlmAnalyzer::new(
        &LlmConfig {
            provider: "openai-compatible".into(),
            base_url: format!("{}/v1", server.uri()),
            model: "scripted".into(),
            tools: "auto".into(),
            max_retries: 0,
            ..config
        },
        RulesAnalyzer::default(),
    )
    .expect("valid")
    .with_investigator(stage.clone());
    let mut earlier = Vec::new();
    for _ in 1..times {
        earlier.push(
            analyzer
                .analyze(&payload, &context)
                .await
                .expect("an analysis"),
        );
    }
    let analysis = analyzer
        .analyze(&payload, &context)
        .await
        .expect("an analysis");
    let requests = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect();
    drop(served);
    Run {
        analysis,
        earlier,
        requests,
        context,
    }
}

fn tool_messages(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().expect("content").to_owned())
        .collect()
}

#[tokio::test]
async fn two_queries_in_one_turn_reach_prometheus_and_the_answer_cites_a_result() {
    let run = investigate(
        vec![
            calls(&[
                ("promql_range", r#"{"query": "redis_up"}"#),
                (
                    "logql",
                    r#"{"query": "{container=\"redis\"}", "minutes_before": 60}"#,
                ),
            ]),
            answer("tool-1"),
        ],
        LlmConfig::default(),
    )
    .await;
    let a = &run.analysis;
    assert!(!a.analyzer.fallback, "{:?}", a.analyzer.fallback_reason);
    assert_eq!(run.requests.len(), 2);
    assert_eq!(run.requests[0]["tool_choice"], "auto");
    assert_eq!(run.requests[0]["tools"].as_array().map(Vec::len), Some(6));
    let results = tool_messages(&run.requests[1]);
    assert_eq!(results.len(), 2, "both results go back in the next request");
    assert!(
        results[0].contains("\"id\":\"tool-1\"") && results[0].contains("left its baseline"),
        "{}",
        results[0]
    );
    assert!(
        results[1].contains("Out Of Memory"),
        "the real lines, mined: {}",
        results[1]
    );
    assert_eq!(a.analyzer.tool_calls.len(), 2);
    assert_eq!(
        a.analyzer.tool_calls[0].result_id.as_deref(),
        Some("tool-1")
    );
    assert!(
        a.analyzer
            .tool_calls
            .iter()
            .all(|c| c.tokens > 0 && c.error.is_none())
    );
    assert_eq!(a.evidence[0].id, "tool-1", "a tool result can be cited");
    assert_eq!(a.evidence[0].query.as_deref(), Some("redis_up"));
    assert_eq!(a.analyzer.prompt_tokens, 2000);
    assert_eq!(a.analyzer.rounds, 2, "the calls' turn and the answer's");
    assert!(
        run.context.evidence("tool-1").is_none(),
        "the gathered context is not changed"
    );
}

#[tokio::test]
async fn malformed_arguments_and_repeats_come_back_as_errors_the_model_reads() {
    let run = investigate(
        vec![
            calls(&[
                ("promql_range", r#"{"query": "redis_up""#),
                ("promql_instant", r#"{"query": "redis_up"}"#),
                ("promql_instant", r#"{"query":  "redis_up" }"#),
                ("drop_table", "{}"),
                (
                    "logql",
                    r#"{"query": "{container=\"redis\"}", "minutes_before": 60}"#,
                ),
                (
                    "logql",
                    r#"{"query": "{container=\"redis\"}", "minutes_before": 20, "minutes_after": 0}"#,
                ),
            ]),
            answer("tool-2"),
        ],
        LlmConfig::default(),
    )
    .await;
    let results = tool_messages(&run.requests[1]);
    assert!(
        results[0].contains("\"error\"") && results[0].contains("not valid"),
        "{}",
        results[0]
    );
    assert!(results[1].contains("\"id\":\"tool-2\""), "{}", results[1]);
    assert!(results[2].contains("already called"), "{}", results[2]);
    assert!(results[3].contains("there is no tool"), "{}", results[3]);
    assert!(results[4].contains("\"id\":\"tool-5\""), "{}", results[4]);
    assert!(
        results[5].contains("already called") && results[5].contains("a window that holds"),
        "a narrower window asks nothing new: {}",
        results[5]
    );
    let errors = run
        .analysis
        .analyzer
        .tool_calls
        .iter()
        .filter(|c| c.error.is_some())
        .count();
    assert_eq!(errors, 4);
    assert!(!run.analysis.analyzer.fallback);
}

#[tokio::test]
async fn a_model_that_never_stops_calling_is_cut_at_the_budget_and_the_rules_answer() {
    let endless = calls(&[
        ("promql_instant", r#"{"query": "up"}"#),
        ("loki_labels", ""),
    ]);
    let run = investigate(
        vec![endless],
        LlmConfig {
            max_tool_calls: 3,
            max_rounds: 3,
            ..LlmConfig::default()
        },
    )
    .await;
    let a = &run.analysis;
    assert!(a.analyzer.fallback, "the rules answer");
    let reason = a.analyzer.fallback_reason.as_deref().unwrap_or("");
    assert!(reason.starts_with("LLM budget exhausted"), "{reason}");
    assert_eq!(a.analyzer.budget_exhausted.as_deref(), Some("rounds"));
    assert!(run.requests.len() <= 3, "{} requests", run.requests.len());
    assert!(a.analyzer.tool_calls.len() <= 4);
    let last = run.requests.last().expect("a request");
    assert_eq!(
        last["tool_choice"], "none",
        "the last round withdraws the tools"
    );
    let refused = a
        .analyzer
        .tool_calls
        .iter()
        .filter(|c| c.error.as_deref().is_some_and(|e| e.contains("budget")))
        .count();
    assert!(refused >= 1, "{:?}", a.analyzer.tool_calls);
    // The fallback still shows what the model's turns cost.
    let turns = run.requests.len() as u32;
    assert_eq!(a.analyzer.rounds, turns);
    assert_eq!(
        (a.analyzer.prompt_tokens, a.analyzer.completion_tokens),
        (1000 * turns, 50 * turns)
    );
}

#[tokio::test]
async fn a_model_that_ignores_the_tools_answers_in_one_request() {
    let run = investigate(vec![answer("logs-errors")], LlmConfig::default()).await;
    assert_eq!(run.requests.len(), 1);
    assert!(run.analysis.analyzer.tool_calls.is_empty());
    assert!(!run.analysis.analyzer.fallback);
}

#[tokio::test]
async fn a_result_over_its_cap_is_cut_and_says_so() {
    let run = investigate(
        vec![
            calls(&[(
                "logql",
                r#"{"query": "{namespace=\"shop\"}", "minutes_before": 120}"#,
            )]),
            answer("tool-1"),
        ],
        LlmConfig {
            tool_result_max_tokens: 50,
            ..LlmConfig::default()
        },
    )
    .await;
    let results = tool_messages(&run.requests[1]);
    assert!(
        results[0].contains("cut to the tool result cap of 50 tokens"),
        "{}",
        results[0]
    );
}

#[tokio::test]
async fn once_the_daily_budget_is_spent_no_request_is_sent_and_the_rules_answer() {
    // The first request may cost ~$0.01 at worst (its ~6,000 tokens and 1,500 to answer at $1 per
    // million each way), within $0.05; the provider bills 50,000 + 50 tokens: $0.05005, so the
    // second may not be sent.
    let mut costly = answer("logs-errors");
    costly["usage"] =
        json!({"prompt_tokens": 50_000, "completion_tokens": 50, "total_tokens": 50_050});
    let run = investigate_times(
        vec![costly],
        LlmConfig {
            daily_budget_usd: 0.05,
            price_per_mtok_in: 1.0,
            price_per_mtok_out: 1.0,
            cache_ttl_secs: 0,
            ..LlmConfig::default()
        },
        2,
    )
    .await;
    assert!(
        !run.earlier[0].analyzer.fallback,
        "the first is the model's"
    );
    assert_eq!(run.requests.len(), 1, "the second sends nothing");
    let a = &run.analysis;
    assert!(a.analyzer.fallback);
    assert_eq!(a.analyzer.llm_requests, 0);
    assert_eq!(a.analyzer.budget_exhausted.as_deref(), Some("daily_spend"));
    assert!(
        a.analyzer.fallback_reason.as_deref().is_some_and(
            |r| r.starts_with("LLM budget exhausted: daily spend $0.050050 of $0.050000")
        ),
        "{:?}",
        a.analyzer.fallback_reason
    );
}

#[tokio::test]
async fn the_prompt_budget_across_rounds_withdraws_the_tools_before_it_is_exceeded() {
    let endless = calls(&[("promql_instant", r#"{"query": "up"}"#)]);
    let budget = 12_000;
    let run = investigate(
        vec![endless, answer("tool-1")],
        LlmConfig {
            max_rounds: 5,
            max_total_prompt_tokens: budget,
            ..LlmConfig::default()
        },
    )
    .await;
    assert_eq!(run.requests[0]["tool_choice"], "auto");
    assert_eq!(
        run.requests[1]["tool_choice"], "none",
        "a third round would not fit: the second must answer"
    );
    let sent: usize = run
        .requests
        .iter()
        .map(|r| aiops_model::tokens::estimate(&r["messages"].to_string()))
        .sum();
    assert!(sent <= budget as usize, "{sent} prompt tokens sent");
    assert!(
        !run.analysis.analyzer.fallback,
        "{:?}",
        run.analysis.analyzer.fallback_reason
    );
    assert_eq!(run.analysis.evidence[0].id, "tool-1");
}

/// Ollama with a model whose template declares no tools: a request with `tools` gets its 400,
/// byte for byte; one without gets the answer.
struct NoToolSupport;

impl Respond for NoToolSupport {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).expect("JSON");
        match body.get("tools") {
            Some(_) => ResponseTemplate::new(400).set_body_raw(
                r#"{"error":{"message":"registry.ollama.ai/library/gemma3:4b does not support tools","type":"api_error","param":null,"code":null}}"#,
                "application/json",
            ),
            None => ResponseTemplate::new(200).set_body_json(answer("logs-errors")),
        }
    }
}

#[tokio::test]
async fn a_provider_that_refuses_tools_gets_the_single_shot_prompt_from_then_on() {
    let run = investigate_with(
        NoToolSupport,
        LlmConfig {
            cache_ttl_secs: 0,
            max_retries: 3,
            ..LlmConfig::default()
        },
        2,
    )
    .await;
    let first = &run.earlier[0];
    assert!(
        !first.analyzer.fallback,
        "{:?}",
        first.analyzer.fallback_reason
    );
    assert_eq!(
        first.analyzer.llm_requests, 2,
        "the refused request (not retried), then the single-shot one"
    );
    assert_eq!(first.analyzer.rounds, 1);
    assert!(run.requests[0].get("tools").is_some());
    assert!(run.requests[1].get("tools").is_none());
    let user = run.requests[1]["messages"][1]["content"]
        .as_str()
        .expect("user");
    assert!(!user.contains("You may call the tools"), "{user}");
    assert_eq!(run.requests.len(), 3);
    assert!(
        run.requests[2].get("tools").is_none(),
        "the next analysis does not offer them again"
    );
    assert_eq!(run.analysis.analyzer.llm_requests, 1);
    assert!(!run.analysis.analyzer.fallback);
}
