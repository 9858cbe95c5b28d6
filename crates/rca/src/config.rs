//! The `[llm]` section and the provider presets.

use std::collections::BTreeMap;

use aiops_model::secret::{MASK, serialize_masked};
use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

/// The `[llm]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// `openai`, `deepseek`, `ollama` or `openai-compatible` (vLLM, LM Studio, …). Empty: the
    /// rule-based analyzer answers.
    pub provider: String,
    /// The API's base URL, e.g. `https://api.openai.com/v1`. Empty: the provider's default.
    pub base_url: String,
    /// The API key. Never logged, shown or sent anywhere but the API.
    #[serde(serialize_with = "serialize_masked")]
    pub api_key: Option<SecretString>,
    /// A file holding the API key (Docker and Kubernetes secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// The model name, e.g. `gpt-4o-mini`, `deepseek-chat`, `llama3.1`.
    pub model: String,
    /// Extra HTTP headers for every request (e.g. an API gateway's). Values are treated as secrets.
    #[serde(serialize_with = "serialize_masked_map")]
    pub headers: BTreeMap<String, SecretString>,
    /// `auto` (the provider's best), `json_schema` or `json_object`.
    pub response_format: String,
    pub temperature: f32,
    /// Upper bound for the answer's tokens.
    pub max_completion_tokens: u32,
    /// The prompt (instructions, schema, alert group and evidence) is kept under about this many
    /// tokens: the lowest-ranked evidence is left out first.
    pub max_prompt_tokens: u32,
    /// Each request's timeout.
    pub timeout_secs: u64,
    /// Retries of a request that got 429, a 5xx or no answer in time.
    pub max_retries: u32,
    /// Analyses talking to the LLM at once, across all workers.
    pub concurrency: usize,
    /// HTTP requests per minute, retries and repair rounds included; 0 is unlimited.
    pub requests_per_minute: u32,
    /// Tokens per minute, each request booked with its own estimate (its text plus the completion
    /// bound); 0 is unlimited.
    pub tokens_per_minute: u32,
    /// The same group with the same context within this long reuses the analysis; 0 disables.
    pub cache_ttl_secs: u64,
    /// US dollars per million prompt tokens, for the cost `aiops eval` reports; 0: not reported.
    pub price_per_mtok_in: f64,
    /// US dollars per million completion tokens.
    pub price_per_mtok_out: f64,
    /// `off`: one request with the gathered evidence. `auto`: the model may also call tools
    /// (PromQL, LogQL, metric names, label values) within the budgets below; the request carries
    /// the tools in the OpenAI `tools` format; a provider refusing them gets the single-shot
    /// request from then on. The default is `auto`.
    pub tools: String,
    /// Tool calls per analysis, at most.
    pub max_tool_calls: u32,
    /// Requests that may offer tools per analysis; the last one withdraws them so the model must
    /// answer.
    pub max_rounds: u32,
    /// Tokens of one tool result, at most (cut and marked beyond).
    pub tool_result_max_tokens: u32,
    /// Prompt tokens of one investigation, all rounds together, at most (each request's text
    /// estimated before it is sent): tools are withdrawn when another round would not fit.
    pub max_total_prompt_tokens: u32,
    /// Wall-clock time of one analysis with the LLM, at most (all rounds and retries); then the
    /// rule-based analyzer answers. 0: no limit beyond each request's timeout.
    pub deadline_secs: u64,
    /// US dollars the LLM may cost per UTC day (by `price_per_mtok_in`/`_out`): each request's
    /// worst case is booked in the store's ledger before it is sent, so a request that could pass
    /// the budget is not sent and the rule-based analyzer answers. 0: no limit.
    pub daily_budget_usd: f64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: String::new(),
            base_url: String::new(),
            api_key: None,
            api_key_file: None,
            model: String::new(),
            headers: BTreeMap::new(),
            response_format: "auto".into(),
            temperature: 0.1,
            max_completion_tokens: 1500,
            max_prompt_tokens: 4000,
            timeout_secs: 60,
            max_retries: 3,
            concurrency: 2,
            requests_per_minute: 0,
            tokens_per_minute: 0,
            cache_ttl_secs: 3600,
            price_per_mtok_in: 0.0,
            price_per_mtok_out: 0.0,
            tools: "auto".into(),
            max_tool_calls: 6,
            max_rounds: 3,
            tool_result_max_tokens: 600,
            max_total_prompt_tokens: 20_000,
            deadline_secs: 180,
            daily_budget_usd: 0.0,
        }
    }
}

fn serialize_masked_map<S: Serializer>(
    map: &BTreeMap<String, SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(map.keys().map(|k| (k, MASK)))
}

/// How the answer's shape is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonMode {
    /// `response_format: json_schema` with the schema (strict).
    Schema,
    /// `response_format: json_object`; the prompt carries the schema and says "JSON".
    Object,
}

/// A provider's defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Preset {
    pub base_url: &'static str,
    pub needs_key: bool,
    pub json: JsonMode,
}

impl LlmConfig {
    /// Whether an LLM is configured at all.
    pub fn is_enabled(&self) -> bool {
        !self.provider.is_empty() || !self.base_url.is_empty()
    }

    pub(crate) fn preset(&self) -> Result<Preset, String> {
        let preset = match self.provider.as_str() {
            "openai" => Preset {
                base_url: "https://api.openai.com/v1",
                needs_key: true,
                json: JsonMode::Schema,
            },
            // DeepSeek documents `json_object` only, and wants the word "json" in the prompt.
            "deepseek" => Preset {
                base_url: "https://api.deepseek.com/v1",
                needs_key: true,
                json: JsonMode::Object,
            },
            "ollama" => Preset {
                base_url: "http://localhost:11434/v1",
                needs_key: false,
                json: JsonMode::Schema,
            },
            "openai-compatible" | "" => Preset {
                base_url: "",
                needs_key: false,
                json: JsonMode::Object,
            },
            other => {
                return Err(format!(
                    "llm.provider {other:?} is not one of openai, deepseek, ollama, openai-compatible"
                ));
            }
        };
        Ok(preset)
    }

    /// The JSON mode: the configured one, or the provider's.
    pub(crate) fn json_mode(&self) -> Result<JsonMode, String> {
        match self.response_format.as_str() {
            "auto" | "" => Ok(self.preset()?.json),
            "json_schema" => Ok(JsonMode::Schema),
            "json_object" => Ok(JsonMode::Object),
            other => Err(format!(
                "llm.response_format {other:?} is not one of auto, json_schema, json_object"
            )),
        }
    }

    /// The base URL: the configured one, or the provider's.
    pub(crate) fn endpoint(&self) -> Result<String, String> {
        let base = match self.base_url.is_empty() {
            true => self.preset()?.base_url,
            false => self.base_url.as_str(),
        };
        if base.is_empty() {
            return Err("llm.base_url is required for an openai-compatible provider".into());
        }
        reqwest::Url::parse(base).map_err(|e| format!("llm.base_url {base:?}: {e}"))?;
        Ok(format!("{}/chat/completions", base.trim_end_matches('/')))
    }

    /// Checks what serde cannot; called when the configuration is loaded.
    pub fn validate(&self) -> Result<(), String> {
        if !self.is_enabled() {
            return Ok(());
        }
        let preset = self.preset()?;
        self.json_mode()?;
        self.endpoint()?;
        if self.model.trim().is_empty() {
            return Err("llm.model is required when an LLM is configured".into());
        }
        if preset.needs_key && self.api_key.is_none() {
            return Err(format!(
                "llm.api_key (or llm.api_key_file) is required for provider {:?}",
                self.provider
            ));
        }
        if self.concurrency == 0 || self.timeout_secs == 0 {
            return Err("llm.concurrency and llm.timeout_secs must be above 0".into());
        }
        for name in self.headers.keys() {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("llm.headers: {name:?} is not a header name"))?;
        }
        self.tools_on()?;
        if self.daily_budget_usd < 0.0 || !self.daily_budget_usd.is_finite() {
            return Err("llm.daily_budget_usd must be 0 (no limit) or more".into());
        }
        if self.daily_budget_usd > 0.0
            && self.price_per_mtok_in <= 0.0
            && self.price_per_mtok_out <= 0.0
        {
            return Err(
                "llm.daily_budget_usd needs llm.price_per_mtok_in and llm.price_per_mtok_out to count the spend"
                    .into(),
            );
        }
        if self.max_rounds == 0 || self.tool_result_max_tokens == 0 {
            return Err("llm.max_rounds and llm.tool_result_max_tokens must be above 0".into());
        }
        Ok(())
    }

    /// Whether the model may call tools (`llm.tools`).
    pub fn tools_on(&self) -> Result<bool, String> {
        match self.tools.as_str() {
            "auto" => Ok(true),
            "off" => Ok(false),
            other => Err(format!(
                "llm.tools must be \"auto\" or \"off\", not {other:?}"
            )),
        }
    }
}
