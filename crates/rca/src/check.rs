//! `aiops check-llm`: a short battery against the configured endpoint, before the first alert
//! depends on it. Reachable; JSON output (the strict schema, else a JSON object); tool calling in
//! the OpenAI wire format; a context as long as an investigation's largest request (a code word at
//! its start must come back: servers that cut the prompt silently, like Ollama at its default
//! `num_ctx`, fail here); two small canned analyses through the real analyzer (category, culprit,
//! citations); the answers' tokens per second. It ends with the mode it recommends and why.
//!
//! Every request goes out once (no retries) with the configured key and headers, so a failure is
//! the endpoint's as it is now.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aiops_model::{Analyzer, Context, RetryAfter, ToolCall, WebhookPayload, tokens};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{JsonMode, LlmConfig};
use crate::llm::LlmAnalyzer;
use crate::rules::RulesAnalyzer;

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub ms: u64,
}

/// The battery's outcome and what it recommends.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub checks: Vec<Check>,
    /// Whether aiops can use the model at all (reachable, answers in JSON).
    pub usable: bool,
    /// `auto` or `off`: the `llm.tools` to set.
    pub tools: &'static str,
    /// The `llm.response_format` to set, when it should change.
    pub response_format: Option<&'static str>,
    /// Why, a sentence each.
    pub why: Vec<String>,
}

impl CheckReport {
    /// The report as the command prints it.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  {mark} {:<18} {} ({} ms)", c.name, c.detail, c.ms);
        }
        match self.usable {
            true => {
                let _ = write!(out, "Recommended: llm.tools = \"{}\"", self.tools);
                if let Some(format) = self.response_format {
                    let _ = write!(out, ", llm.response_format = \"{format}\"");
                }
                out.push('\n');
            }
            false => out.push_str(
                "Recommended: do not use this endpoint as configured; the rule-based analyzer \
                 would answer every alert\n",
            ),
        }
        for why in &self.why {
            let _ = writeln!(out, "  - {why}");
        }
        out
    }
}

/// A canned incident: the alert group, what the context stage would have found, and the answer
/// a useful model must give.
#[derive(Debug, Deserialize)]
struct Canned {
    name: String,
    category: String,
    culprit: String,
    payload: WebhookPayload,
    context: Context,
}

const CANNED: &str = include_str!("check/canned.json");

/// What one probe request got back.
struct Probe {
    raw: Value,
    content: String,
    ms: u64,
}

impl LlmAnalyzer {
    /// Runs the battery against the configured endpoint (see the module's documentation).
    pub async fn check(config: &LlmConfig, rules: RulesAnalyzer) -> Result<CheckReport, String> {
        // One attempt per request, no cache, no daily budget, the single-shot prompt: the battery
        // measures the endpoint, not aiops' budgets.
        let config = LlmConfig {
            max_retries: 0,
            cache_ttl_secs: 0,
            daily_budget_usd: 0.0,
            tools: "off".into(),
            ..config.clone()
        };
        let llm = LlmAnalyzer::new(&config, rules)?;
        let mut checks = Vec::new();
        let mut why = Vec::new();

        // 1. Reachable.
        let hello = json!({
            "model": config.model,
            "messages": [{"role": "user", "content": "Reply with the single word: ready"}],
            "max_completion_tokens": 16,
            "temperature": 0,
        });
        match llm.probe(&hello, false).await {
            Ok(p) => checks.push(Check {
                name: "reachable".into(),
                ok: true,
                detail: format!(
                    "HTTP 200, model {}",
                    p.raw["model"].as_str().unwrap_or(&config.model)
                ),
                ms: p.ms,
            }),
            Err((e, ms)) => {
                checks.push(Check {
                    name: "reachable".into(),
                    ok: false,
                    detail: e,
                    ms,
                });
                why.push(
                    "the endpoint does not answer a chat completion: check llm.base_url, \
                     llm.model and llm.api_key"
                        .into(),
                );
                return Ok(CheckReport {
                    checks,
                    usable: false,
                    tools: "off",
                    response_format: None,
                    why,
                });
            }
        }

        // 2. JSON output: the strict schema, else a JSON object.
        let (json_check, json_mode) = llm.check_json(&config).await;
        checks.push(json_check);
        let configured = config.json_mode()?;
        let response_format = match (json_mode, configured) {
            (Some(JsonMode::Object), JsonMode::Schema) => {
                why.push(
                    "the endpoint refuses or ignores a strict JSON schema but returns a JSON \
                     object: set llm.response_format = \"json_object\""
                        .into(),
                );
                Some("json_object")
            }
            _ => None,
        };
        if json_mode.is_none() {
            why.push(
                "the model does not answer in JSON: every analysis would fall back to the \
                 rule-based analyzer; use another model, or no LLM"
                    .into(),
            );
        }

        // 3. Tool calling.
        let tools = llm.check_tools(&config).await;
        let tools_ok = tools.ok;
        if !tools_ok {
            why.push(format!(
                "tool calling failed ({}): investigations are not possible",
                tools.detail
            ));
        }
        checks.push(tools);

        // 4. Context length: the largest request an investigation sends.
        let needed = config.max_prompt_tokens.saturating_add(
            config
                .max_tool_calls
                .saturating_mul(config.tool_result_max_tokens),
        ) + tokens::estimate_u32(&ToolCall::definitions().to_string());
        let context = llm.check_context("context length", &config, needed).await;
        let context_ok = context.ok;
        checks.push(context);
        if !context_ok {
            why.push(format!(
                "an investigation's largest request (about {needed} tokens) does not fit"
            ));
            // The single-shot prompt is smaller: does it fit?
            let single = config
                .max_prompt_tokens
                .saturating_add(config.max_completion_tokens);
            let fits = llm
                .check_context("context, one shot", &config, single)
                .await;
            if !fits.ok {
                why.push(format!(
                    "even the single-shot prompt (about {single} tokens) is cut: lower \
                     llm.max_prompt_tokens, or give the model a longer context (Ollama: num_ctx)"
                ));
            }
            checks.push(fits);
        }

        // 5. Two canned analyses, and the answers' speed.
        let mut right = 0;
        let mut completion = 0u32;
        let mut secs = 0.0f64;
        let cases: Vec<Canned> =
            serde_json::from_str(CANNED).map_err(|e| format!("the canned cases: {e}"))?;
        let n = cases.len();
        for (i, case) in cases.into_iter().enumerate() {
            let (check, ok, tokens, took) = llm.check_case(i + 1, case).await;
            right += usize::from(ok);
            completion += tokens;
            secs += took.as_secs_f64();
            checks.push(check);
        }
        if right < n {
            why.push(format!(
                "its analyses were right on {right} of {n} canned incidents: its answers may mislead"
            ));
        }
        let per_second = match secs > 0.0 {
            true => f64::from(completion) / secs,
            false => 0.0,
        };
        // An investigation makes up to max_rounds requests and a repair round in llm.deadline_secs.
        let per_round = secs / n.max(1) as f64;
        let rounds = f64::from(config.max_rounds + 1);
        let fast = config.deadline_secs == 0 || per_round * rounds <= config.deadline_secs as f64;
        checks.push(Check {
            name: "tokens per second".into(),
            ok: fast,
            detail: format!(
                "{per_second:.0} ({completion} completion tokens in {secs:.1} s; {per_round:.1} s \
                 an answer, {rounds:.0} rounds {} llm.deadline_secs {})",
                if fast { "fit" } else { "do not fit" },
                config.deadline_secs
            ),
            ms: (secs * 1000.0) as u64,
        });
        if !fast {
            why.push(format!(
                "at {per_round:.1} s an answer, {rounds:.0} rounds pass llm.deadline_secs ({}s)",
                config.deadline_secs
            ));
        }

        let usable = json_mode.is_some();
        let auto = usable && tools_ok && context_ok && fast;
        if auto {
            why.push(
                "it answers in JSON, calls tools in the OpenAI format, holds an investigation's \
                 context and answers in time: the model may ask for more evidence"
                    .into(),
            );
        } else if usable {
            why.push(
                "the single-shot prompt (the gathered evidence, one request) needs JSON only, \
                 which it answers"
                    .into(),
            );
        }
        Ok(CheckReport {
            checks,
            usable,
            tools: if auto { "auto" } else { "off" },
            response_format,
            why,
        })
    }

    /// One request as `body` says, once; the answer or the error, with the time it took.
    async fn probe(&self, body: &Value, offers_tools: bool) -> Result<Probe, (String, u64)> {
        let started = Instant::now();
        let ms = |s: Instant| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX);
        let text = self
            .send(body, offers_tools, &RetryAfter::default())
            .await
            .map_err(|e| (e.message, ms(started)))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| (format!("the answer is not JSON: {e}"), ms(started)))?;
        let content = raw["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        Ok(Probe {
            raw,
            content,
            ms: ms(started),
        })
    }

    async fn check_json(&self, config: &LlmConfig) -> (Check, Option<JsonMode>) {
        let schema = json!({
            "type": "object",
            "properties": {
                "service": {"type": "string"},
                "healthy": {"type": "boolean"},
            },
            "required": ["service", "healthy"],
            "additionalProperties": false,
        });
        let ask = |format: Value| {
            json!({
                "model": config.model,
                "messages": [{"role": "user", "content":
                    "The cart service returns 503 to every request. Answer in JSON with the \
                     service's name (\"service\") and whether it is healthy (\"healthy\")."}],
                "max_completion_tokens": 100,
                "temperature": 0,
                "response_format": format,
            })
        };
        let valid = |content: &str| {
            serde_json::from_str::<Value>(content).is_ok_and(|v| {
                v["service"].as_str().is_some_and(|s| s.contains("cart"))
                    && v["healthy"] == Value::Bool(false)
            })
        };
        let strict = ask(json!({"type": "json_schema", "json_schema": {
            "name": "probe", "schema": schema, "strict": true}}));
        let mut ms = 0;
        let mut tried = Vec::new();
        match self.probe(&strict, false).await {
            Ok(p) if valid(&p.content) => {
                return (
                    Check {
                        name: "JSON output".into(),
                        ok: true,
                        detail: "a strict JSON schema (json_schema) followed".into(),
                        ms: p.ms,
                    },
                    Some(JsonMode::Schema),
                );
            }
            Ok(p) => {
                ms += p.ms;
                tried.push(format!("json_schema answered {}", excerpt(&p.content)));
            }
            Err((e, t)) => {
                ms += t;
                tried.push(format!("json_schema refused: {e}"));
            }
        }
        match self
            .probe(&ask(json!({"type": "json_object"})), false)
            .await
        {
            Ok(p) if valid(&p.content) => (
                Check {
                    name: "JSON output".into(),
                    ok: true,
                    detail: format!("a JSON object (json_object); {}", tried.join("; ")),
                    ms: ms + p.ms,
                },
                Some(JsonMode::Object),
            ),
            Ok(p) => {
                tried.push(format!("json_object answered {}", excerpt(&p.content)));
                (json_failed(tried, ms + p.ms), None)
            }
            Err((e, t)) => {
                tried.push(format!("json_object refused: {e}"));
                (json_failed(tried, ms + t), None)
            }
        }
    }

    async fn check_tools(&self, config: &LlmConfig) -> Check {
        let body = json!({
            "model": config.model,
            "messages": [
                {"role": "system", "content": "You investigate alerts with the tools given; \
                    call them to look at data before you answer."},
                {"role": "user", "content": "The alert HostHighCpuLoad fired for instance \
                    web-1:9100 at 2026-11-21T10:00:00Z. Query Prometheus for that instance's \
                    CPU usage around then before you answer."},
            ],
            "max_completion_tokens": 300,
            "temperature": 0,
            "tools": ToolCall::definitions(),
            "tool_choice": "auto",
        });
        let name = "tool calling".to_owned();
        let p = match self.probe(&body, true).await {
            Ok(p) => p,
            Err((e, ms)) => {
                return Check {
                    name,
                    ok: false,
                    detail: format!("the request with tools was refused: {e}"),
                    ms,
                };
            }
        };
        let calls = p.raw["choices"][0]["message"]["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(call) = calls.first() else {
            return Check {
                name,
                ok: false,
                detail: format!(
                    "the model answered in text instead of calling a tool: {}",
                    excerpt(&p.content)
                ),
                ms: p.ms,
            };
        };
        let tool = call["function"]["name"].as_str().unwrap_or("");
        let arguments = match &call["function"]["arguments"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match ToolCall::parse(tool, &arguments) {
            Ok(_) => Check {
                name,
                ok: true,
                detail: format!("called {tool} {}", excerpt(&arguments)),
                ms: p.ms,
            },
            Err(e) => Check {
                name,
                ok: false,
                detail: format!("the call {tool} {} is invalid: {e}", excerpt(&arguments)),
                ms: p.ms,
            },
        }
    }

    async fn check_context(&self, name: &str, config: &LlmConfig, needed: u32) -> Check {
        let word = format!("harbor-{}", 1000 + rand::random::<u16>() % 9000);
        let mut text = format!(
            "Remember this code word, you will be asked for it at the end: {word}.\n\
             Here are the service's recent log lines:\n"
        );
        let target = needed as usize * tokens::CHARS_PER_TOKEN;
        let mut i = 0usize;
        while text.len() < target {
            let _ = writeln!(
                text,
                "2026-11-21T10:{:02}:{:02}Z level=info msg=\"request served\" path=/cart/{i} status=200 duration_ms={}",
                (i / 60) % 60,
                i % 60,
                i % 97
            );
            i += 1;
        }
        text.push_str(
            "\nWhat was the code word at the very start? Answer with the code word only.",
        );
        let body = json!({
            "model": config.model,
            "messages": [{"role": "user", "content": text}],
            "max_completion_tokens": 30,
            "temperature": 0,
        });
        let name = name.to_owned();
        match self.probe(&body, false).await {
            Ok(p) => {
                let counted = p.raw["usage"]["prompt_tokens"].as_u64();
                let counted_text =
                    counted.map_or(String::new(), |c| format!("; the server counted {c}"));
                let kept = p.content.contains(&word);
                Check {
                    name,
                    ok: kept,
                    detail: match kept {
                        true => format!("about {needed} tokens held{counted_text}"),
                        false => format!(
                            "about {needed} tokens sent, and the code word at their start did not \
                             come back{counted_text}: the server cuts long prompts (Ollama: raise \
                             num_ctx)"
                        ),
                    },
                    ms: p.ms,
                }
            }
            Err((e, ms)) => Check {
                name,
                ok: false,
                detail: format!("about {needed} tokens refused: {e}"),
                ms,
            },
        }
    }

    /// A canned incident through the analyzer itself: the answer, scored.
    async fn check_case(&self, n: usize, case: Canned) -> (Check, bool, u32, Duration) {
        let started = Instant::now();
        let analysis = self.analyze(&case.payload, &case.context).await;
        let took = started.elapsed();
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let check = |ok: bool, detail: String| Check {
            name: format!("canned analysis {n}"),
            ok,
            detail: format!("{}: {detail}", case.name),
            ms,
        };
        let analysis = match analysis {
            Ok(a) if !a.analyzer.fallback => a,
            Ok(a) => {
                let reason = a.analyzer.fallback_reason.clone().unwrap_or_default();
                let detail = format!("no usable answer ({reason})");
                return (
                    check(false, detail),
                    false,
                    a.analyzer.completion_tokens,
                    took,
                );
            }
            Err(e) => return (check(false, format!("no answer ({e})")), false, 0, took),
        };
        let category = analysis.category.as_str();
        let text = format!("{} {}", analysis.summary, analysis.root_cause).to_lowercase();
        let named = text.contains(&case.culprit.to_lowercase());
        let right = category == case.category;
        let cited: Vec<&str> = analysis.evidence.iter().map(|e| e.id.as_str()).collect();
        let expected = match right {
            true => String::new(),
            false => format!(" (expected {})", case.category),
        };
        let names = if named { "names" } else { "does not name" };
        let detail = format!(
            "{category}{expected}, {names} {}, cites {}",
            case.culprit,
            cited.join(", ")
        );
        let ok = right && named;
        (
            check(ok, detail),
            ok,
            analysis.analyzer.completion_tokens,
            took,
        )
    }
}

fn json_failed(tried: Vec<String>, ms: u64) -> Check {
    Check {
        name: "JSON output".into(),
        ok: false,
        detail: tried.join("; "),
        ms,
    }
}

/// The start of a text, on one line, for a report.
fn excerpt(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.chars().count() > 120 {
        true => format!("{}…", line.chars().take(120).collect::<String>()),
        false => line,
    }
}
