//! The LLM analyzer: any OpenAI-compatible chat-completions API.
//!
//! Requests are built with async-openai's types and sent with reqwest, so that retries are ours
//! (tokio-retry, honouring `Retry-After`) and the answer can be read leniently: async-openai's typed
//! response first, raw JSON when a provider's quirk (an unknown `finish_reason`, a missing field)
//! makes the typed parse fail.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aiops_model::redact::Redactor;
use aiops_model::{
    Analysis, Analyzer, AnalyzerInfo, Context, RetryAfter, StageError, WebhookPayload,
};
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, CreateChatCompletionResponse, ResponseFormat,
    ResponseFormatJsonSchema,
};

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio_retry::RetryIf;
use tokio_retry::strategy::{ExponentialBackoff, jitter};

use crate::config::{JsonMode, LlmConfig};
use crate::guard::{Cache, Limits};
use crate::output::parse;
use crate::prompt::{SYSTEM, fitted_user_message, schema};
use crate::rules::RulesAnalyzer;
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
}

/// One completion: the text, what it cost, why it stopped.
#[derive(Debug)]
struct Reply {
    content: String,
    prompt_tokens: u32,
    completion_tokens: u32,
    finish_reason: String,
}

#[derive(Debug)]
struct CallError {
    message: String,
    retriable: bool,
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
            config: config.clone(),
        })
    }

    /// Asks the model, with one repair round when the answer does not validate. Counts every HTTP
    /// request in `sent`, whatever the outcome.
    async fn ask(
        &self,
        payload: &WebhookPayload,
        context: &Context,
        sent: &AtomicU32,
    ) -> Result<Analysis, String> {
        let user = self.fitted_message(payload, context);
        let _slot = self.limits.slot().await;
        let mut messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestSystemMessage::from(SYSTEM).into(),
            ChatCompletionRequestUserMessage::from(user).into(),
        ];
        let first = self.complete(&messages, sent).await?;
        let mut info = AnalyzerInfo {
            name: "llm".into(),
            model: Some(self.config.model.clone()),
            prompt_tokens: first.prompt_tokens,
            completion_tokens: first.completion_tokens,
            ..AnalyzerInfo::default()
        };
        let problem = match parse(&first.content, context, info.clone()) {
            Ok(analysis) => return Ok(analysis),
            Err(problem) => problem,
        };
        tracing::warn!(%problem, finish_reason = %first.finish_reason, "the LLM's answer is invalid; asking once more");
        messages.push(ChatCompletionRequestAssistantMessage::from(first.content.as_str()).into());
        messages.push(
            ChatCompletionRequestUserMessage::from(format!(
                "Your answer cannot be used: {problem}. Reply again with only the JSON object that \
                 follows the schema, about the same data section."
            ))
            .into(),
        );
        let second = self.complete(&messages, sent).await?;
        info.prompt_tokens += second.prompt_tokens;
        info.completion_tokens += second.completion_tokens;
        parse(&second.content, context, info)
            .map_err(|e| format!("the LLM's answer was invalid twice; last: {e}"))
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

    fn request(&self, messages: &[ChatCompletionRequestMessage]) -> CreateChatCompletionRequest {
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
        CreateChatCompletionRequest {
            model: self.config.model.clone(),
            messages: messages.to_vec(),
            temperature: Some(self.config.temperature),
            max_completion_tokens: Some(self.config.max_completion_tokens),
            response_format: Some(response_format),
            ..CreateChatCompletionRequest::default()
        }
    }

    /// One completion, retried on 429, 5xx and timeouts with exponential backoff and jitter, never
    /// sooner than a `Retry-After` says. Every attempt is booked against `llm.requests_per_minute`
    /// and `llm.tokens_per_minute` with its own estimate: the request's text and the completion it
    /// may return.
    async fn complete(
        &self,
        messages: &[ChatCompletionRequestMessage],
        sent: &AtomicU32,
    ) -> Result<Reply, String> {
        let body = serde_json::to_value(self.request(messages))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let estimate = tokens::estimate_u32(&body.to_string())
            .saturating_add(self.config.max_completion_tokens);
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
            sent.fetch_add(1, Ordering::Relaxed);
            self.send(&body, &retry_after).await
        };
        let text = RetryIf::start(strategy, action, |e: &CallError| {
            if e.retriable {
                tracing::warn!(error = %e.message, "LLM request failed; retrying");
            }
            e.retriable
        })
        .await
        .map_err(|e| e.message)?;
        read_reply(&text)
    }

    async fn send(&self, body: &Value, retry_after: &RetryAfter) -> Result<String, CallError> {
        let mut request = self.http.post(&self.endpoint).json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        for (name, value) in &self.config.headers {
            request = request.header(name.as_str(), value.expose_secret());
        }
        let response = request.send().await.map_err(|e| CallError {
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
        Err(CallError {
            retriable: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
            // Providers echo part of a wrong key in their message; redact it like any secret.
            message: self
                .redactor
                .redact(&format!("the LLM API answered {status}: {detail}"))
                .into_owned(),
        })
    }
}

/// The completion's text and usage: typed when async-openai can read the answer, else from raw JSON.
fn read_reply(text: &str) -> Result<Reply, String> {
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
            prompt_tokens: usage.as_ref().map_or(0, |u| u.prompt_tokens),
            completion_tokens: usage.as_ref().map_or(0, |u| u.completion_tokens),
        });
    }
    let raw: Value =
        serde_json::from_str(text).map_err(|e| format!("the LLM API's answer is not JSON: {e}"))?;
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
        finish_reason: choice["finish_reason"].as_str().unwrap_or("").to_owned(),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
    })
}

#[async_trait]
impl Analyzer for LlmAnalyzer {
    async fn analyze(
        &self,
        payload: &WebhookPayload,
        context: &Context,
    ) -> Result<Analysis, StageError> {
        let key = Cache::key(payload, context);
        if let Some(mut cached) = self.cache.get(&key) {
            cached.analyzer.cached = true;
            cached.analyzer.prompt_tokens = 0;
            cached.analyzer.completion_tokens = 0;
            cached.analyzer.latency_ms = 0;
            cached.analyzer.llm_requests = 0;
            return Ok(cached);
        }
        let started = Instant::now();
        let sent = AtomicU32::new(0);
        let result = self.ask(payload, context, &sent).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let llm_requests = sent.load(Ordering::Relaxed);
        match result {
            Ok(mut analysis) => {
                analysis.analyzer.latency_ms = latency_ms;
                analysis.analyzer.llm_requests = llm_requests;
                self.cache.put(key, &analysis);
                Ok(analysis)
            }
            Err(reason) => {
                // The notification always goes out: the rules answer, and say why.
                tracing::warn!(%reason, "the LLM analysis failed; the rule-based analyzer answers");
                let mut analysis = self.fallback.analyze_now(payload, context);
                analysis.analyzer.fallback = true;
                analysis.analyzer.fallback_reason = Some(reason);
                analysis.analyzer.model = Some(self.config.model.clone());
                analysis.analyzer.latency_ms = latency_ms;
                analysis.analyzer.llm_requests = llm_requests;
                Ok(analysis)
            }
        }
    }
}
