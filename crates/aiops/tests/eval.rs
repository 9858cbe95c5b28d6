//! `aiops eval` as a user runs it: the whole scenario suite through the real pipeline (real
//! Prometheus from the Debian package, the Loki API over each scenario's logs) with the rule-based
//! analyzer, held to a regression floor; two scenarios with a fake OpenAI-compatible LLM, whose
//! requests, tokens and cost the report must show; the scenarios themselves valid (`--check`).

mod common;

use std::process::{Command, Output};

use common::repo;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The figures measured last (docs/EVAL.md: 80 of 83 facts, 24 of 25 categories, 24 of 25 culprits);
/// raise them whenever the figures rise. Counted, not compared as ratios: the suite is
/// deterministic, and a count says exactly what regressed.
const FLOOR_FACTS: u64 = 80;
const FLOOR_CATEGORY: u64 = 24;
const FLOOR_CULPRIT: u64 = 24;
const SCENARIOS: usize = 25;

fn eval(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aiops"));
    command
        .arg("eval")
        .arg(repo().join("eval/scenarios"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("aiops runs")
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn the_whole_suite_with_the_rule_based_analyzer_holds_its_floor_and_leaks_nothing() {
    let out = eval(&["--json"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report = report(&out);
    let totals = &report["totals"];
    assert_eq!(totals["scenarios"], SCENARIOS, "{totals}");
    assert_eq!(totals["errors"], 0, "no scenario run failed: {stderr}");
    assert_eq!(totals["leaks"], 0, "no secret left: {report}");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let count = |f: &dyn Fn(&Value) -> u64| scenarios.iter().map(f).sum::<u64>();
    let facts = count(&|s| s["facts_found"].as_u64().unwrap_or(0));
    let categories = count(&|s| u64::from(s["category_right"] == true));
    let culprits = count(&|s| u64::from(s["culprit_named"] == true));
    let rows = table(&report);
    assert!(
        facts >= FLOOR_FACTS,
        "facts found {facts} < {FLOOR_FACTS}:{rows}"
    );
    assert!(
        categories >= FLOOR_CATEGORY,
        "categories {categories} < {FLOOR_CATEGORY}:{rows}"
    );
    assert!(
        culprits >= FLOOR_CULPRIT,
        "culprits {culprits} < {FLOOR_CULPRIT}:{rows}"
    );
    assert!(
        totals["prompt_tokens_max"].as_u64().expect("tokens") <= 4000,
        "{totals}"
    );
    // A progress line per scenario on stderr, and the analyzer that answered.
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with('[')).count(),
        SCENARIOS,
        "{stderr}"
    );
    for s in scenarios {
        assert_eq!(s["analyzer"], "rules", "{s}");
        assert_eq!(s["llm_requests"], 0, "{s}");
    }
}

/// One line per scenario, for a failure message that says what moved.
fn table(report: &Value) -> String {
    report["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "\n{}: facts {}/{}, category {} ({}), culprit {}",
                s["scenario"],
                s["facts_found"],
                s["facts_total"],
                s["category_right"],
                s["category"],
                s["culprit_named"]
            )
        })
        .collect()
}

#[test]
fn every_scenario_is_valid_data() {
    let out = eval(&["--check"], &[]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{SCENARIOS} scenarios checked, 0 with problems")),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_llm_the_report_counts_requests_tokens_and_cost() {
    let llm = MockServer::start().await;
    let answer = json!({
        "summary": "orders-worker holds most connections", "root_cause": "orders-worker scaled out",
        "confidence": 0.7, "category": "resource_saturation", "impact": "orders-api cannot connect",
        "evidence": [{"id": "rule-1", "note": "the rule"}], "remediation": ["scale orders-worker down"], "next_queries": []
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-eval", "object": "chat.completion", "created": 1_790_000_000, "model": "eval-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}
        })))
        .mount(&llm)
        .await;
    let env = [
        ("AIOPS__LLM__PROVIDER", "openai-compatible".to_owned()),
        ("AIOPS__LLM__BASE_URL", format!("{}/v1", llm.uri())),
        ("AIOPS__LLM__MODEL", "eval-model".to_owned()),
        ("AIOPS__LLM__PRICE_PER_MTOK_IN", "0.5".to_owned()),
        ("AIOPS__LLM__PRICE_PER_MTOK_OUT", "2".to_owned()),
    ];
    let args = [
        "--json",
        "--scenario",
        "postgres-too-many-connections",
        "--scenario",
        "dependency-redis-refused",
    ];
    let out = tokio::task::spawn_blocking(move || eval(&args, &env))
        .await
        .expect("joined");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = report(&out);
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 2);
    for s in scenarios {
        assert_eq!(s["analyzer"], "llm", "{s}");
        assert_eq!(s["llm_requests"], 1, "{s}");
        assert_eq!(
            (s["llm_tokens_in"].clone(), s["llm_tokens_out"].clone()),
            (json!(1000), json!(200)),
            "{s}"
        );
        // 1000 × $0.5 + 200 × $2 per million tokens.
        let cost = s["cost_usd"].as_f64().expect("cost");
        assert!((cost - 0.0009).abs() < 1e-12, "{s}");
        assert_eq!(s["leaks"], json!([]), "{s}");
    }
    let totals = &report["totals"];
    assert_eq!(totals["llm_requests"], 2);
    assert!(
        (totals["cost_usd"].as_f64().expect("cost") - 0.0018).abs() < 1e-12,
        "{totals}"
    );
    let requests = llm.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2, "one request per scenario");
    for r in &requests {
        let body = String::from_utf8_lossy(&r.body);
        for secret in ["Xr7-kP2q!vLm", "Gx8v2LkQp9"] {
            assert!(!body.contains(secret), "{secret} reached the LLM");
        }
    }
}

/// The model's turns, in a cycle: a tool call, then an answer.
struct Scripted {
    turns: Vec<Value>,
    next: std::sync::atomic::AtomicUsize,
}

impl wiremock::Respond for Scripted {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json(&self.turns[i % self.turns.len()])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tools_on_the_report_counts_the_models_tool_calls() {
    let llm = MockServer::start().await;
    let turn = |message: Value| {
        json!({
            "id": "chatcmpl-eval", "object": "chat.completion", "created": 1_790_000_000, "model": "eval-model",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050}
        })
    };
    let answer = json!({
        "summary": "cart's Redis is down", "root_cause": "redis-cart-master is down",
        "confidence": 0.8, "category": "dependency_failure", "impact": "carts fail",
        "evidence": [{"id": "tool-1", "note": "redis_up"}], "remediation": ["restart it"], "next_queries": []
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Scripted {
            turns: vec![
                turn(json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function",
                     "function": {"name": "promql_range", "arguments": "{\"query\": \"redis_up\"}"}}
                ]})),
                turn(json!({"role": "assistant", "content": answer.to_string()})),
            ],
            next: std::sync::atomic::AtomicUsize::new(0),
        })
        .mount(&llm)
        .await;
    let env = [
        ("AIOPS__LLM__PROVIDER", "openai-compatible".to_owned()),
        ("AIOPS__LLM__BASE_URL", format!("{}/v1", llm.uri())),
        ("AIOPS__LLM__MODEL", "eval-model".to_owned()),
        ("AIOPS__LLM__TOOLS", "auto".to_owned()),
    ];
    let args = ["--json", "--scenario", "dependency-redis-refused"];
    let out = tokio::task::spawn_blocking(move || eval(&args, &env))
        .await
        .expect("joined");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = report(&out);
    let s = &report["scenarios"][0];
    assert_eq!(s["analyzer"], "llm", "{s}");
    assert_eq!(
        (s["llm_requests"].clone(), s["tool_calls"].clone()),
        (json!(2), json!(1)),
        "{s}"
    );
    assert_eq!(
        (s["llm_tokens_in"].clone(), s["llm_tokens_out"].clone()),
        (json!(2000), json!(100)),
        "{s}"
    );
    assert_eq!(report["totals"]["tool_calls"], 1);
    let requests = llm.received_requests().await.expect("recorded");
    let second: Value = serde_json::from_slice(&requests[1].body).expect("JSON");
    let result = second["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the tool's result went back");
    assert!(
        result["content"]
            .as_str()
            .is_some_and(|c| c.contains("tool-1") && c.contains("redis")),
        "{result}"
    );
}

#[test]
fn thresholds_and_a_missing_prometheus_fail_with_a_clear_message() {
    let out = eval(
        &[
            "--scenario",
            "node-cpu-batch-process",
            "--min-recall",
            "1.01",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("below the thresholds: recall"), "{err}");

    let mut command = Command::new(env!("CARGO_BIN_EXE_aiops"));
    let out = command
        .args(["eval", "--check"])
        .arg(repo().join("eval/scenarios"))
        .env_clear()
        .env("PATH", "/nonexistent")
        .output()
        .expect("aiops runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt-get install prometheus"), "{err}");

    let out = eval(&["--scenario", "no-such-incident"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scenario \"no-such-incident\""));
}
