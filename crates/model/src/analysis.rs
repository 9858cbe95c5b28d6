//! The typed root-cause analysis the rca stage produces.

use serde::{Deserialize, Serialize};

/// A root-cause analysis of one alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// One or two sentences: what is happening.
    pub summary: String,
    pub root_cause: String,
    /// 0 to 1.
    pub confidence: f32,
    pub category: Category,
    pub impact: String,
    /// Evidence that supports the analysis, by [`crate::Evidence`] id.
    #[serde(default)]
    pub evidence: Vec<EvidenceRef>,
    /// Ordered steps, with concrete commands or queries where possible.
    pub remediation: Vec<String>,
    /// Queries a human should run next.
    #[serde(default)]
    pub next_queries: Vec<String>,
    /// Other causes considered and why they rank lower, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<String>,
    pub analyzer: AnalyzerInfo,
    /// [`crate::Context::digest`] of the evidence the analysis rests on (set by the worker): a
    /// flapping group firing again with the same digest gets this analysis again, not a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_digest: Option<String>,
}

/// What kind of failure the analysis points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    ResourceSaturation,
    CrashOom,
    BadDeploy,
    DependencyFailure,
    Network,
    Capacity,
    Unknown,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResourceSaturation => "resource_saturation",
            Self::CrashOom => "crash_oom",
            Self::BadDeploy => "bad_deploy",
            Self::DependencyFailure => "dependency_failure",
            Self::Network => "network",
            Self::Capacity => "capacity",
            Self::Unknown => "unknown",
        }
    }
}

/// A citation of one piece of evidence, with why it matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRef {
    pub id: String,
    #[serde(default)]
    pub note: String,
    /// The evidence's query, copied from the context, so a notification can link to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// What the evidence found (the context's compressed, redacted summary: values, trend, log
    /// templates), copied from the context, so the reader sees the facts next to the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
}

/// Who wrote the analysis and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalyzerInfo {
    /// `rules` or `llm`.
    pub name: String,
    /// The rule-based analyzer's matched rule (its family), e.g. `disk_full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
    /// HTTP requests sent to the LLM for this analysis: retries and the repair round included.
    #[serde(default)]
    pub llm_requests: u32,
    /// Model turns answered (completions): one single-shot, more with tool rounds or the repair
    /// round. Retries of a failed request are not turns.
    #[serde(default)]
    pub rounds: u32,
    #[serde(default)]
    pub latency_ms: u64,
    /// True when the configured analyzer failed and the rule-based one answered instead.
    #[serde(default)]
    pub fallback: bool,
    /// Why the configured analyzer failed, when `fallback` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// True when the analysis was reused from the cache (same group, same context): no LLM call.
    #[serde(default)]
    pub cached: bool,
    /// The tools the model called, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallRecord>,
    /// The budget that ended the LLM's work, if one did: `tool_calls`, `rounds`, `prompt_tokens`,
    /// `deadline`, `daily_spend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_exhausted: Option<String>,
    /// The job whose analysis this is, reused: the group fired again soon after it resolved (it
    /// flaps) on the same evidence, so no analyzer ran (and no LLM was paid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<crate::JobId>,
}

impl AnalyzerInfo {
    /// Forgets what producing the analysis cost, for an analysis given again without running the
    /// analyzer (the LLM's cache, a flapping group's earlier analysis): no tokens, requests,
    /// rounds or time.
    pub fn clear_cost(&mut self) {
        self.prompt_tokens = 0;
        self.completion_tokens = 0;
        self.llm_requests = 0;
        self.rounds = 0;
        self.latency_ms = 0;
    }
}

/// One tool call of an investigation: what was asked, what came back, what it cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub tool: String,
    /// The arguments as the model sent them (redacted).
    pub arguments: String,
    /// The evidence id of the result, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_id: Option<String>,
    /// Why it did not answer: an invalid call, a failed query, a refused repeat, a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tokens of what went back to the model.
    pub tokens: u32,
    pub ms: u64,
}
