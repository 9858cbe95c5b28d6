//! The LLM analyzer: any OpenAI-compatible chat-completions API.
//!
//! Requests are built with async-openai's types and sent with reqwest, so that retries are ours
//! (tokio-retry, honouring `Retry-After`) and the answer can be read leniently: async-openai's typed
//! response first, raw JSON when a provider's quirk (an unknown `finish_reason`, a missing field)
//! makes the typed parse fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aiops_model::redact::Redactor;
use aiops_model::{
    Analysis, Analyzer, AnalyzerInfo, Context, Evidence, Investigator, Ledger, RetryAfter,
    StageError, ToolCall, ToolCallRecord, WebhookPayload,
};
use async_openai::types::chat::{
    CreateChatCompletionRequest, CreateChatCompletionResponse, ResponseFormat,
    ResponseFormatJsonSchema,
};

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_retry::RetryIf;
use tokio_retry::strategy::{ExponentialBackoff, jitter};

use crate::config::{JsonMode, LlmConfig};
use crate::guard::{Cache, Limits};
use crate::output::parse;
use crate::prompt::{SYSTEM, fitted_user_message, schema};
use crate::rules::RulesAnalyzer;
use crate::spend::DailyBudget;
use aiops_model::tokens;

/// The LLM analyzer, with the rule-based analyzer as its fallback.
#[derive(Debug)]
pub struct LlmAnalyzer {
    config: LlmConfig,
    endpoint: String,
    json: JsonMode,
    http: reqwest::Client,
    limits: Limits,
    cache: Cache,
    redactor: Redactor,
    /// Answers when the LLM cannot.
    fallback: RulesAnalyzer,
    /// Runs the model's tool calls (`llm.tools = "auto"`); none: the single-shot prompt.
    investigator: Option<Arc<dyn Investigator>>,
    /// `llm.daily_budget_usd`, booked in memory or in the store's ledger.
    budget: DailyBudget,
    /// Set once the provider refused a request for its `tools`: single-shot from then on.
    tools_refused: AtomicBool,
}

/// What one analysis sent: HTTP requests (retries included), model turns answered and the tokens
/// they billed, whatever the outcome (a fallback pays for its requests too).
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU32,
    turns: AtomicU32,
    prompt_tokens: AtomicU32,
    completion_tokens: AtomicU32,
}

/// Why the LLM gave no usable answer.
#[derive(Debug)]
enum Failure {
    /// The provider or model refused the request because it offered tools (it cannot call
    /// them): the analysis starts over single-shot.
    ToolsRefused(String),
    /// A budget ran out (`tool_calls`, `rounds`, `prompt_tokens`, `deadline`, `daily_spend`).
    Exhausted {
        budget: &'static str,
        reason: String,
    },
    Failed(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

impl Failure {
    fn exhausted(budget: &'static str, why: impl std::fmt::Display) -> Self {
        Self::Exhausted {
            budget,
            reason: format!("LLM budget exhausted: {why}"),
        }
    }

    fn reason(&self) -> &str {
        match self {
            Self::ToolsRefused(m) | Self::Failed(m) | Self::Exhausted { reason: m, .. } => m,
        }
    }

    fn budget(&self) -> Option<&'static str> {
        match self {
            Self::Exhausted { budget, .. } => Some(budget),
            _ => None,
        }
    }
}

/// One completion: the text, the tools it calls, what it cost, why it stopped.
#[derive(Debug)]
struct Reply {
    content: String,
    tool_calls: Vec<AskedCall>,
    prompt_tokens: u32,
    completion_tokens: u32,
    finish_reason: String,
}

/// A tool call as the model sent it (OpenAI `tool_calls`).
#[derive(Debug, Clone)]
struct AskedCall {
    id: String,
    name: String,
    arguments: String,
}

/// Whether a request offers the tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// No tools in the request.
    None,
    /// `tools` and `tool_choice: auto`.
    Tools,
    /// `tools` with `tool_choice: none`: the model must answer now.
    Withdrawn,
}

#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) message: String,
    retriable: bool,
    /// The request offered tools and the provider's error is about them.
    tools_refused: bool,
}

impl LlmAnalyzer {
    /// The analyzer for `config`, with `fallback` answering whenever the LLM fails.
    pub fn new(config: &LlmConfig, fallback: RulesAnalyzer) -> Result<Self, String> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            endpoint: config.endpoint()?,
            json: config.json_mode()?,
            http,
            limits: Limits::new(
                config.concurrency,
                config.requests_per_minute,
                config.tokens_per_minute,
            ),
            cache: Cache::new(Duration::from_secs(config.cache_ttl_secs)),
            redactor: Redactor::default(),
            fallback,
            investigator: None,
            budget: DailyBudget::new(config),
            tools_refused: AtomicBool::new(false),
            config: config.clone(),
        })
    }

    /// The analyzer with the daily spend booked in `ledger` (the store: shared by replicas, kept
    /// across restarts) instead of in this process.
    #[must_use]
    pub fn with_ledger(mut self, ledger: Arc<dyn Ledger>) -> Self {
        self.budget = self.budget.with_ledger(ledger);
        self
    }

    /// The analyzer with `investigator` running the tools the model calls when `llm.tools` is
    /// `auto`.
    #[must_use]
    pub fn with_investigator(mut self, investigator: Arc<dyn Investigator>) -> Self {
        self.investigator = Some(investigator);
        self
    }

    /// Asks the model, with one repair round when the answer does not validate. With tools on, the
    /// model may call them first, within `llm.max_tool_calls` and `llm.max_rounds`; the last round
    /// withdraws them. Counts every HTTP request and every turn in `tally`, whatever the outcome.
    async fn ask(
        &self,
        payload: &WebhookPayload,
        context: &Context,
        tools: bool,
        tally: &Tally,
        called: &mut Vec<ToolCallRecord>,
    ) -> Result<Analysis, Failure> {
        let investigator = self.investigator.as_ref().filter(|_| tools);
        let mut user = self.fitted_message(payload, context);
        if investigator.is_some() {
            user.push_str(&format!(
                "\n\nYou may call the tools to query Prometheus and Loki around the alert's start \
                 (at most {} calls in all) when the data section misses what you need; each result \
                 has an id you can cite like the evidence's.",
                self.config.max_tool_calls
            ));
        }
        let _slot = self.limits.slot().await;
        let mut messages: Vec<Value> = vec![
            json!({"role": "system", "content": SYSTEM}),
            json!({"role": "user", "content": user}),
        ];
        let mut info = AnalyzerInfo {
            name: "llm".into(),
            model: Some(self.config.model.clone()),
            ..AnalyzerInfo::default()
        };
        let mut found = context.clone();
        let mut asked: Vec<ToolCall> = Vec::new();
        let alert_at = payload
            .alerts
            .iter()
            .map(|a| a.starts_at.unix_timestamp())
            .min()
            .unwrap_or(0);
        let mut round = 0;
        let budget = self.config.max_total_prompt_tokens;
        let mut prompt_spent: u32 = 0;
        let reply = loop {
            round += 1;
            let calls = u32::try_from(called.len()).unwrap_or(u32::MAX);
            // Only an investigation has a budget across rounds: the single-shot prompt is fitted
            // already, and is not serialized twice for it.
            let size = match investigator {
                Some(_) => messages
                    .iter()
                    .map(|m| tokens::estimate_u32(&m.to_string()))
                    .sum(),
                None => 0,
            };
            // Another round must fit too: this request, the next one with what the remaining
            // calls may add, within the budget across rounds.
            let next = size.saturating_add(
                (self.config.max_tool_calls.saturating_sub(calls))
                    .saturating_mul(self.config.tool_result_max_tokens),
            );
            let room = prompt_spent.saturating_add(size).saturating_add(next) <= budget;
            let offer = match (investigator, asked.is_empty() && calls == 0) {
                (None, _) => Offer::None,
                (Some(_), _)
                    if round < self.config.max_rounds
                        && calls < self.config.max_tool_calls
                        && room =>
                {
                    Offer::Tools
                }
                (Some(_), true) => Offer::None,
                (Some(_), false) => Offer::Withdrawn,
            };
            if investigator.is_some() && prompt_spent.saturating_add(size) > budget {
                return Err(Failure::exhausted(
                    "prompt_tokens",
                    format_args!(
                        "{} prompt tokens across rounds (llm.max_total_prompt_tokens {budget})",
                        prompt_spent.saturating_add(size)
                    ),
                ));
            }
            prompt_spent = prompt_spent.saturating_add(size);
            let reply = self.complete(&messages, offer, tally).await?;
            info.prompt_tokens += reply.prompt_tokens;
            info.completion_tokens += reply.completion_tokens;
            let Some(investigator) = investigator.filter(|_| !reply.tool_calls.is_empty()) else {
                break reply;
            };
            if offer != Offer::Tools && !reply.content.trim().is_empty() {
                // Tools withdrawn, and an answer beside the calls: the answer counts.
                break reply;
            }
            if offer != Offer::Tools {
                return Err(Failure::exhausted(
                    "rounds",
                    format_args!(
                        "{}/{} tool calls, {round}/{} rounds, and the model still asks for tools",
                        called.len(),
                        self.config.max_tool_calls,
                        self.config.max_rounds
                    ),
                ));
            }
            messages.push(json!({
                "role": "assistant",
                "content": (!reply.content.is_empty()).then_some(reply.content.as_str()),
                "tool_calls": reply.tool_calls.iter().map(|c| json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })).collect::<Vec<_>>(),
            }));
            for call in &reply.tool_calls {
                let (content, record, evidence) = self
                    .run_tool(
                        investigator.as_ref(),
                        call,
                        &mut asked,
                        called.len(),
                        alert_at,
                    )
                    .await;
                found.evidence.extend(evidence);
                called.push(record);
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": content}));
            }
        };
        info.tool_calls = called.clone();
        let problem = match parse(&reply.content, &found, info.clone()) {
            Ok(analysis) => return Ok(analysis),
            Err(problem) => problem,
        };
        tracing::warn!(%problem, finish_reason = %reply.finish_reason, "the LLM's answer is invalid; asking once more");
        messages.push(json!({"role": "assistant", "content": reply.content}));
        messages.push(json!({
            "role": "user",
            "content": format!(
                "Your answer cannot be used: {problem}. Reply again with only the JSON object that \
                 follows the schema, about the same data section."
            ),
        }));
        let offer = match called.is_empty() {
            true => Offer::None,
            false => Offer::Withdrawn,
        };
        let second = self.complete(&messages, offer, tally).await?;
        info.prompt_tokens += second.prompt_tokens;
        info.completion_tokens += second.completion_tokens;
        parse(&second.content, &found, info)
            .map_err(|e| format!("the LLM's answer was invalid twice; last: {e}").into())
    }

    /// Asks with the tools when `llm.tools` is `auto` and the provider has not refused them; when
    /// it refuses them now (a model or server without tool support answers 4xx/5xx about
    /// `tools`), remembers that and asks again single-shot.
    async fn ask_in_mode(
        &self,
        payload: &WebhookPayload,
        context: &Context,
        tally: &Tally,
        called: &mut Vec<ToolCallRecord>,
    ) -> Result<Analysis, Failure> {
        let tools = self.investigator.is_some()
            && self.config.tools_on().unwrap_or(false)
            && !self.tools_refused.load(Ordering::Relaxed);
        match self.ask(payload, context, tools, tally, called).await {
            Err(Failure::ToolsRefused(reason)) if tools => {
                if !self.tools_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %reason,
                        "the LLM refuses requests with tools; single-shot prompts from now on \
                         (llm.tools = \"off\" skips this probe)"
                    );
                }
                self.ask(payload, context, false, tally, called).await
            }
            other => other,
        }
    }

    /// Runs one tool call the model asked for: checked, refused when it repeats an earlier one or
    /// the call budget is spent, else run with its result capped. Returns what goes back to the
    /// model, the record, and the result as evidence.
    async fn run_tool(
        &self,
        investigator: &dyn Investigator,
        call: &AskedCall,
        asked: &mut Vec<ToolCall>,
        done: usize,
        alert_at: i64,
    ) -> (String, ToolCallRecord, Option<Evidence>) {
        let started = Instant::now();
        let n = done + 1;
        let outcome = match ToolCall::parse(&call.name, &call.arguments) {
            _ if n > self.config.max_tool_calls as usize => Err(format!(
                "refused: the budget of {} tool calls is spent; answer with what you have",
                self.config.max_tool_calls
            )),
            Err(e) => Err(e),
            Ok(parsed) if asked.iter().any(|a| parsed.repeats(a)) => Err(format!(
                "refused: {} was already called with these arguments (or a window that holds \
                 this one); its result is above",
                parsed.name()
            )),
            Ok(parsed) => {
                asked.push(parsed.clone());
                let id = format!("tool-{n}");
                investigator
                    .run(
                        &parsed,
                        alert_at,
                        &id,
                        self.config.tool_result_max_tokens as usize,
                    )
                    .await
            }
        };
        let (content, result_id, error, evidence) = match outcome {
            Ok(e) => {
                let facts: Vec<String> = e.facts.iter().map(|f| f.describe()).collect();
                let content = json!({
                    "id": e.id,
                    "query": e.query,
                    "summary": e.summary,
                    "findings": facts,
                });
                let mut content = content;
                self.redactor.redact_json(&mut content);
                (content.to_string(), Some(e.id.clone()), None, Some(e))
            }
            Err(error) => {
                let error = self.redactor.redact(&error).into_owned();
                (json!({"error": error}).to_string(), None, Some(error), None)
            }
        };
        let record = ToolCallRecord {
            tool: call.name.clone(),
            arguments: self.redactor.redact(&call.arguments).into_owned(),
            result_id,
            error,
            tokens: tokens::estimate_u32(&content),
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        (content, record, evidence)
    }

    /// The user message, with the lowest-ranked evidence left out until the whole prompt fits
    /// `llm.max_prompt_tokens` (the context arrives ranked, strongest first).
    fn fitted_message(&self, payload: &WebhookPayload, context: &Context) -> String {
        let (message, kept) = fitted_user_message(
            payload,
            context,
            &self.redactor,
            &self.fallback,
            self.config.max_prompt_tokens,
        );
        if kept < context.evidence.len() {
            tracing::debug!(
                kept,
                of = context.evidence.len(),
                "evidence trimmed to fit llm.max_prompt_tokens"
            );
        }
        message
    }

    fn request(&self, messages: &[Value], offer: Offer) -> Result<Value, String> {
        let response_format = match self.json {
            JsonMode::Schema => ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    name: "root_cause_analysis".into(),
                    description: Some("A root-cause analysis of one alert group".into()),
                    schema: schema(),
                    strict: Some(true),
                },
            },
            JsonMode::Object => ResponseFormat::JsonObject,
        };
        let typed = CreateChatCompletionRequest {
            model: self.config.model.clone(),
            temperature: Some(self.config.temperature),
            max_completion_tokens: Some(self.config.max_completion_tokens),
            response_format: Some(response_format),
            ..CreateChatCompletionRequest::default()
        };
        let mut body =
            serde_json::to_value(typed).map_err(|e| format!("cannot build the request: {e}"))?;
        body["messages"] = Value::Array(messages.to_vec());
        match offer {
            Offer::None => {}
            Offer::Tools => {
                body["tools"] = ToolCall::definitions();
                body["tool_choice"] = json!("auto");
            }
            Offer::Withdrawn => {
                body["tools"] = ToolCall::definitions();
                body["tool_choice"] = json!("none");
            }
        }
        Ok(body)
    }

    /// One completion, retried on 429, 5xx and timeouts with exponential backoff and jitter, never
    /// sooner than a `Retry-After` says. Every attempt is booked against `llm.requests_per_minute`
    /// and `llm.tokens_per_minute` with its own estimate: the request's text and the completion it
    /// may return.
    async fn complete(
        &self,
        messages: &[Value],
        offer: Offer,
        tally: &Tally,
    ) -> Result<Reply, Failure> {
        let body = self.request(messages, offer)?;
        let request_tokens = tokens::estimate_u32(&body.to_string());
        let estimate = request_tokens.saturating_add(self.config.max_completion_tokens);
        let booking = self
            .budget
            .reserve(request_tokens, self.config.max_completion_tokens)
            .await
            .map_err(|reason| Failure::Exhausted {
                budget: "daily_spend",
                reason,
            })?;
        let retry_after = RetryAfter::default();
        let backoff = ExponentialBackoff::from_millis(2)
            .factor(250)
            .max_delay(Duration::from_secs(20))
            .map(jitter);
        let strategy = retry_after
            .honoured_by(backoff)
            .take(self.config.max_retries as usize);
        let action = || async {
            self.limits.book(estimate).await;
            tally.sent.fetch_add(1, Ordering::Relaxed);
            self.send(&body, offer != Offer::None, &retry_after).await
        };
        let sent = RetryIf::start(strategy, action, |e: &CallError| {
            if e.retriable {
                tracing::warn!(error = %e.message, "LLM request failed; retrying");
            }
            e.retriable
        })
        .await;
        let text = match sent {
            Ok(text) => text,
            Err(e) => {
                self.budget.settle(booking, 0, 0).await;
                return Err(match e.tools_refused {
                    true => Failure::ToolsRefused(e.message),
                    false => Failure::Failed(e.message),
                });
            }
        };
        let reply = match read_reply(&text) {
            Ok(reply) => reply,
            Err(e) => {
                // An answer came: count the request, as the provider does.
                self.budget.settle(booking, request_tokens, 0).await;
                return Err(e.into());
            }
        };
        tally.turns.fetch_add(1, Ordering::Relaxed);
        tally
            .prompt_tokens
            .fetch_add(reply.prompt_tokens, Ordering::Relaxed);
        tally
            .completion_tokens
            .fetch_add(reply.completion_tokens, Ordering::Relaxed);
        // A provider that reports no usage is counted by the estimate.
        let (prompt, completion) = match (reply.prompt_tokens, reply.completion_tokens) {
            (0, 0) => (request_tokens, tokens::estimate_u32(&text)),
            usage => usage,
        };
        self.budget.settle(booking, prompt, completion).await;
        Ok(reply)
    }

    /// One HTTP request. `offers_tools`: the body has `tools`, so an error about them means the
    /// provider cannot call tools (Ollama: "… does not support tools"; vLLM: "\"auto\" tool
    /// choice requires --enable-auto-tool-choice …"; llama.cpp: "tools param requires --jinja").
    pub(crate) async fn send(
        &self,
        body: &Value,
        offers_tools: bool,
        retry_after: &RetryAfter,
    ) -> Result<String, CallError> {
        let mut request = self.http.post(&self.endpoint).json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        for (name, value) in &self.config.headers {
            request = request.header(name.as_str(), value.expose_secret());
        }
        let response = request.send().await.map_err(|e| CallError {
            tools_refused: false,
            retriable: e.is_timeout() || e.is_connect() || e.is_request(),
            message: match e.is_timeout() {
                true => format!("no answer within {}s", self.config.timeout_secs),
                false => format!("cannot reach the LLM API: {}", e.without_url()),
            },
        })?;
        let status = response.status();
        let asked = RetryAfter::parse(
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let text = response.text().await.map_err(|e| CallError {
            tools_refused: false,
            retriable: true,
            message: format!("the answer broke off: {}", e.without_url()),
        })?;
        if status.is_success() {
            return Ok(text);
        }
        retry_after.set(asked);
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(200).collect());
        let tools_refused = offers_tools
            && status != StatusCode::TOO_MANY_REQUESTS
            && (status.is_client_error() || status.is_server_error())
            && detail.to_lowercase().contains("tool");
        Err(CallError {
            tools_refused,
            retriable: !tools_refused
                && (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()),
            // Providers echo part of a wrong key in their message; redact it like any secret.
            message: self
                .redactor
                .redact(&format!("the LLM API answered {status}: {detail}"))
                .into_owned(),
        })
    }
}

/// The completion's text and usage: typed when async-openai can read the answer, else from raw JSON;
/// the tool calls from the raw JSON (their wire format is plain).
fn read_reply(text: &str) -> Result<Reply, String> {
    let raw: Value =
        serde_json::from_str(text).map_err(|e| format!("the LLM API's answer is not JSON: {e}"))?;
    let tool_calls = raw["choices"][0]["message"]["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| AskedCall {
                    id: c["id"].as_str().unwrap_or("").to_owned(),
                    name: c["function"]["name"].as_str().unwrap_or("").to_owned(),
                    arguments: match &c["function"]["arguments"] {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    if let Ok(typed) = serde_json::from_str::<CreateChatCompletionResponse>(text) {
        let choice = typed.choices.into_iter().next();
        let usage = typed.usage;
        return Ok(Reply {
            finish_reason: choice
                .as_ref()
                .and_then(|c| c.finish_reason)
                .map(|r| format!("{r:?}").to_lowercase())
                .unwrap_or_default(),
            content: choice.and_then(|c| c.message.content).unwrap_or_default(),
            tool_calls,
            prompt_tokens: usage.as_ref().map_or(0, |u| u.prompt_tokens),
            completion_tokens: usage.as_ref().map_or(0, |u| u.completion_tokens),
        });
    }
    let choice = &raw["choices"][0];
    if choice.is_null() {
        return Err("the LLM API's answer has no choices".into());
    }
    let tokens =
        |key: &str| u32::try_from(raw["usage"][key].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
    Ok(Reply {
        content: choice["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        tool_calls,
        finish_reason: choice["finish_reason"].as_str().unwrap_or("").to_owned(),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
    })
}

#[async_trait]
impl Analyzer for LlmAnalyzer {
    fn is_slow(&self) -> bool {
        true
    }

    async fn analyze(
        &self,
        payload: &WebhookPayload,
        context: &Context,
    ) -> Result<Analysis, StageError> {
        let key = Cache::key(payload, context);
        if let Some(mut cached) = self.cache.get(&key) {
            cached.analyzer.cached = true;
            cached.analyzer.clear_cost();
            return Ok(cached);
        }
        let started = Instant::now();
        let tally = Tally::default();
        let mut called = Vec::new();
        let result = match self.config.deadline_secs {
            0 => {
                self.ask_in_mode(payload, context, &tally, &mut called)
                    .await
            }
            secs => tokio::time::timeout(
                Duration::from_secs(secs),
                self.ask_in_mode(payload, context, &tally, &mut called),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Failure::exhausted(
                    "deadline",
                    format_args!("the analysis deadline of {secs}s (llm.deadline_secs)"),
                ))
            }),
        };
        // Calls past `llm.max_tool_calls` were refused for that budget (see `run_tool`).
        let refused_for_budget = called.len() > self.config.max_tool_calls as usize;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let llm_requests = tally.sent.load(Ordering::Relaxed);
        let rounds = tally.turns.load(Ordering::Relaxed);
        match result {
            Ok(mut analysis) => {
                analysis.analyzer.latency_ms = latency_ms;
                analysis.analyzer.llm_requests = llm_requests;
                analysis.analyzer.rounds = rounds;
                analysis.analyzer.budget_exhausted =
                    refused_for_budget.then(|| "tool_calls".to_owned());
                self.cache.put(key, &analysis);
                Ok(analysis)
            }
            Err(failure) => {
                // The notification always goes out: the rules answer, and say why.
                let reason = failure.reason();
                tracing::warn!(%reason, "the LLM analysis failed; the rule-based analyzer answers");
                let mut analysis = self.fallback.analyze_now(payload, context);
                analysis.analyzer.fallback = true;
                analysis.analyzer.budget_exhausted = failure
                    .budget()
                    .or(refused_for_budget.then_some("tool_calls"))
                    .map(str::to_owned);
                analysis.analyzer.fallback_reason = Some(reason.to_owned());
                analysis.analyzer.tool_calls = called;
                analysis.analyzer.model = Some(self.config.model.clone());
                analysis.analyzer.latency_ms = latency_ms;
                analysis.analyzer.llm_requests = llm_requests;
                analysis.analyzer.rounds = rounds;
                analysis.analyzer.prompt_tokens = tally.prompt_tokens.load(Ordering::Relaxed);
                analysis.analyzer.completion_tokens =
                    tally.completion_tokens.load(Ordering::Relaxed);
                Ok(analysis)
            }
        }
    }
}
