//! `aiops check-llm` as a user runs it, against fake OpenAI-compatible servers in the real wire
//! format: a capable model (JSON schema, tool calls, a long context, right answers), a small local
//! model behind Ollama (it refuses `tools` with Ollama's own 400 and cuts long prompts), and an
//! endpoint that is not there. The command must say which mode to use, and why.

use std::process::{Command, Output};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "sk-check-Zq81LmVx0Pw";

fn check_llm(base_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aiops"))
        .arg("check-llm")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIOPS__LLM__PROVIDER", "openai-compatible")
        .env("AIOPS__LLM__BASE_URL", base_url)
        .env("AIOPS__LLM__MODEL", "probe-model")
        .env("AIOPS__LLM__API_KEY", KEY)
        .output()
        .expect("aiops runs")
}

fn completion(message: Value, prompt_tokens: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-check", "object": "chat.completion", "created": 1_790_000_000,
        "model": "probe-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 40,
                  "total_tokens": prompt_tokens + 40},
    }))
}

fn text(content: &str, prompt_tokens: u64) -> ResponseTemplate {
    completion(
        json!({"role": "assistant", "content": content}),
        prompt_tokens,
    )
}

/// The model's answer to a canned incident: right when `right`.
fn analysis(user: &str, right: bool) -> String {
    let (category, cause, cited) = match (user.contains("redis-cart-master"), right) {
        (true, true) => (
            "dependency_failure",
            "redis-cart-master ran out of memory and refuses connections",
            "logs-errors",
        ),
        (false, true) => (
            "crash_oom",
            "payments is OOMKilled at its 512 MiB limit",
            "expr-1",
        ),
        (_, false) => ("network", "the network is flaky", "rule-1"),
    };
    json!({
        "summary": cause, "root_cause": cause, "confidence": 0.7, "category": category,
        "impact": "requests fail", "evidence": [{"id": cited, "note": "shows it"}],
        "remediation": ["fix it"], "next_queries": []
    })
    .to_string()
}

/// What a model does with each of the battery's requests.
struct Model {
    calls_tools: bool,
    keeps_long_context: bool,
    right: bool,
}

impl Respond for Model {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).expect("JSON");
        let user = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_owned();
        let prompt = (body.to_string().len() / 4) as u64;
        if body.get("tools").is_some() && !self.calls_tools {
            // Ollama's answer for a model whose template declares no tools, byte for byte.
            return ResponseTemplate::new(400).set_body_raw(
                r#"{"error":{"message":"registry.ollama.ai/library/gemma3:4b does not support tools","type":"api_error","param":null,"code":null}}"#,
                "application/json",
            );
        }
        if body.get("tools").is_some() {
            return completion(
                json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_1", "type": "function", "function": {
                    "name": "promql_range",
                    "arguments": "{\"query\": \"1 - avg(rate(node_cpu_seconds_total{instance=\\\"web-1:9100\\\", mode=\\\"idle\\\"}[5m]))\", \"minutes_before\": 30}"
                }}]}),
                prompt,
            );
        }
        if body["response_format"]["json_schema"]["name"] == "probe" {
            return text(r#"{"service": "cart", "healthy": false}"#, prompt);
        }
        if user.contains("code word") {
            return match self.keeps_long_context {
                true => {
                    let word = user
                        .split_whitespace()
                        .find(|w| w.starts_with("harbor-"))
                        .map(|w| w.trim_end_matches('.'))
                        .unwrap_or("");
                    text(word, prompt)
                }
                // Ollama at num_ctx 2048 keeps the end of the prompt only.
                false => text("I don't know the code word.", 2048),
            };
        }
        if user.contains("BEGIN (untrusted") {
            return text(&analysis(&user, self.right), prompt);
        }
        text("ready", prompt)
    }
}

async fn serve(model: Model) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(model)
        .mount(&server)
        .await;
    server
}

async fn run(base_url: String) -> (Output, String) {
    let out = tokio::task::spawn_blocking(move || check_llm(&base_url))
        .await
        .expect("joined");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(KEY), "the key is never printed: {all}");
    (out, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capable_model_passes_every_check_and_gets_tools_on() {
    let server = serve(Model {
        calls_tools: true,
        keeps_long_context: true,
        right: true,
    })
    .await;
    let (out, all) = run(format!("{}/v1", server.uri())).await;
    assert!(out.status.success(), "{all}");
    for line in [
        "ok   reachable",
        "ok   JSON output        a strict JSON schema (json_schema) followed",
        "ok   tool calling       called promql_range",
        "ok   context length",
        "ok   canned analysis 1  cart's Redis refuses connections: dependency_failure, names redis, cites logs-errors",
        "ok   canned analysis 2  a pod OOMKilled in a crash loop: crash_oom, names payments, cites expr-1",
        "ok   tokens per second",
        "Recommended: llm.tools = \"auto\"\n",
    ] {
        assert!(all.contains(line), "{line:?} in:\n{all}");
    }
    let requests = server.received_requests().await.expect("recorded");
    // hello, JSON, tools, context, two analyses: one request each, no retries.
    assert_eq!(requests.len(), 6, "{all}");
    for r in &requests {
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
    let long = requests
        .iter()
        .map(|r| r.body.len())
        .max()
        .expect("requests");
    // The context probe is as long as an investigation's largest request: 4,000 prompt tokens,
    // 6 results of 600 and the tools' definitions, four characters a token.
    assert!(long > 7_600 * 4, "{long} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_local_model_gets_the_single_shot_prompt_and_the_reasons() {
    let server = serve(Model {
        calls_tools: false,
        keeps_long_context: false,
        right: false,
    })
    .await;
    let (out, all) = run(format!("{}/v1", server.uri())).await;
    assert!(out.status.success(), "usable single-shot: {all}");
    for line in [
        "FAIL tool calling       the request with tools was refused: the LLM API answered 400 Bad Request: registry.ollama.ai/library/gemma3:4b does not support tools",
        "FAIL context length",
        "FAIL context, one shot",
        "even the single-shot prompt (about 5500 tokens) is cut",
        "the server counted 2048",
        "Ollama: raise num_ctx",
        "FAIL canned analysis 1  cart's Redis refuses connections: network (expected dependency_failure), does not name redis",
        "Recommended: llm.tools = \"off\"\n",
        "tool calling failed",
        "its analyses were right on 0 of 2 canned incidents",
    ] {
        assert!(all.contains(line), "{line:?} in:\n{all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_not_there_fails_with_what_to_check() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let (out, all) = run(format!("http://127.0.0.1:{port}/v1")).await;
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("FAIL reachable"), "{all}");
    assert!(
        all.contains("check llm.base_url, llm.model and llm.api_key"),
        "{all}"
    );
    assert!(
        all.contains("error: the LLM endpoint cannot be used as configured"),
        "{all}"
    );
}
