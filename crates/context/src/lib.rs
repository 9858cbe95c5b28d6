//! Evidence gathering for aiops: what an analysis gets to see about an alert group.
//!
//! # Layout
//! - [`PrometheusConfig`], [`LokiConfig`]: the `[prometheus]` and `[loki]` sections.
//! - [`AlertContext`]: evidence read from the alerts themselves (rule expression, labels, annotations).
//!
//! This is the first stage implementation: it performs no queries yet. Querying Prometheus and Loki
//! around the firing time lands with the context-gathering issue and adds to the same [`Context`].
#![forbid(unsafe_code)]

use aiops_model::{Context, ContextSource, Evidence, EvidenceSource, StageError, WebhookPayload};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The `[prometheus]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus HTTP API, e.g. `http://127.0.0.1:9090`. Empty: no metric evidence.
    #[serde(default)]
    pub url: String,
}

/// The `[loki]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Base URL of Loki, e.g. `http://127.0.0.1:3100`. Empty: no log evidence.
    #[serde(default)]
    pub url: String,
}

/// Evidence from the alert group itself: each distinct rule expression, and the group's annotations.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlertContext;

#[async_trait]
impl ContextSource for AlertContext {
    async fn gather(&self, payload: &WebhookPayload) -> Result<Context, StageError> {
        Ok(alert_evidence(payload))
    }
}

/// Builds the evidence that needs no query.
pub fn alert_evidence(payload: &WebhookPayload) -> Context {
    let mut evidence = Vec::new();
    let mut exprs: Vec<String> = payload
        .alerts
        .iter()
        .filter_map(|a| a.rule_expr())
        .collect();
    exprs.dedup();
    for (i, expr) in exprs.into_iter().enumerate() {
        let firing = payload
            .alerts
            .iter()
            .filter(|a| a.status == aiops_model::AlertStatus::Firing)
            .count();
        evidence.push(Evidence {
            id: format!("rule-{}", i + 1),
            source: EvidenceSource::Alert,
            title: "Alerting rule expression".into(),
            query: Some(expr),
            summary: format!(
                "{firing} of {} alerts in the group are firing",
                payload.alerts.len()
            ),
        });
    }
    let described: Vec<String> = ["summary", "description"]
        .iter()
        .filter_map(|k| payload.alerts.first().and_then(|a| a.annotations.get(*k)))
        .cloned()
        .collect();
    if !described.is_empty() {
        evidence.push(Evidence {
            id: "annotations".into(),
            source: EvidenceSource::Alert,
            title: "What the rule says".into(),
            query: None,
            summary: described.join(" "),
        });
    }
    Context {
        window_start: payload.started_at(),
        window_end: None,
        evidence,
        failures: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_expression_becomes_evidence() {
        let body =
            include_bytes!("../../../tests/fixtures/alertmanager/target-down-group-firing.json");
        let payload = aiops_model::alertmanager::parse_webhook(body).expect("fixture parses");
        let context = alert_evidence(&payload);
        let rule = context.evidence("rule-1").expect("rule evidence");
        assert_eq!(rule.query.as_deref(), Some("up{job=\"api\"} == 0"));
        assert!(rule.summary.starts_with("2 of 2"), "{}", rule.summary);
        assert!(context.evidence("annotations").is_some());
    }
}
