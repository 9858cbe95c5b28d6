//! The `[context]`, `[prometheus]` and `[loki]` sections.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[context]` section: how much evidence to gather and how much of it to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextConfig {
    /// How far before the alert started the window reaches.
    pub before_secs: u64,
    /// How far after the alert started the window reaches (never past now).
    pub after_secs: u64,
    /// How far before the alert started the error and mention log queries reach (they end now).
    pub logs_before_secs: u64,
    /// At most this many points per series: the step of a range query follows from it.
    pub max_points: u32,
    /// The assembled context is trimmed to about this many tokens, lowest-ranked evidence first.
    pub max_tokens: usize,
    /// At most this many queries per alert group.
    pub max_queries: usize,
    /// At most this many metrics found by discovery (the series that carry the group's pods, hosts
    /// and workloads, and the dependencies its errors name) become evidence, the highest scored.
    pub max_candidates: usize,
    /// Series kept per query, the most anomalous first.
    pub top_series: usize,
    /// The whole plan's deadline; queries still running then are reported as failed.
    pub deadline_secs: u64,
    /// A TOML file of query templates added to the built-in ones (same format as
    /// `configs/context-templates.toml`). Empty: only the built-in templates.
    pub templates_file: String,
    /// Extra regular expressions whose matches are redacted from the evidence.
    pub redact: Vec<String>,
    /// How long the answer to "which metrics and labels exist" is cached.
    pub metadata_cache_secs: u64,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            before_secs: 1800,
            after_secs: 300,
            logs_before_secs: 7200,
            max_points: 250,
            max_tokens: 4000,
            max_queries: 40,
            max_candidates: 16,
            top_series: 5,
            deadline_secs: 20,
            templates_file: String::new(),
            redact: Vec::new(),
            metadata_cache_secs: 600,
        }
    }
}

impl ContextConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_points < 10 {
            return Err("context.max_points must be at least 10".into());
        }
        if self.max_queries == 0 || self.top_series == 0 || self.deadline_secs == 0 {
            return Err(
                "context.max_queries, context.top_series and context.deadline_secs must be above 0"
                    .into(),
            );
        }
        for pattern in &self.redact {
            regex::Regex::new(pattern)
                .map_err(|e| format!("context.redact: {pattern:?} is not a regex: {e}"))?;
        }
        Ok(())
    }
}

/// The `[prometheus]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus HTTP API, e.g. `http://127.0.0.1:9090`. Empty: no metric evidence.
    pub url: String,
    /// Each query's timeout.
    pub timeout_secs: u64,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_secs: 10,
        }
    }
}

/// The `[loki]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LokiConfig {
    /// Base URL of Loki, e.g. `http://127.0.0.1:3100`. Empty: no log evidence.
    pub url: String,
    /// Sent as `X-Scope-OrgID` to a multi-tenant Loki. Empty: no header.
    pub tenant: String,
    /// Each query's timeout.
    pub timeout_secs: u64,
    /// At most this many lines per query.
    pub limit: u32,
    /// Lines kept verbatim from just before the alert started.
    pub sample_lines: u32,
    /// Alert label → the Loki label names that may carry the same value, tried in order. The
    /// selector takes `namespace` and the most specific workload label found (pod, container,
    /// service, app, job, instance, then any other label named here).
    pub labels: BTreeMap<String, Vec<String>>,
    /// Loki labels that hold a log level; the first that exists narrows to error-like levels.
    pub level_labels: Vec<String>,
}

impl Default for LokiConfig {
    fn default() -> Self {
        let labels = [
            ("namespace", &["namespace"][..]),
            ("pod", &["pod"]),
            ("container", &["container"]),
            ("service", &["service_name", "service", "app"]),
            ("app", &["app", "service_name"]),
            ("job", &["job"]),
            ("instance", &["instance", "host"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
        .collect();
        Self {
            url: String::new(),
            tenant: String::new(),
            timeout_secs: 10,
            limit: 500,
            sample_lines: 10,
            labels,
            level_labels: vec!["level".into(), "detected_level".into(), "severity".into()],
        }
    }
}
