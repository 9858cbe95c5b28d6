//! Evidence gathering for aiops: what an analysis gets to see about an alert group.
//!
//! # Layout
//! - [`config`]: the `[context]`, `[prometheus]` and `[loki]` sections.
//! - [`Gatherer`] (`gather`): plans queries from the alerts, runs them concurrently under a deadline,
//!   and compresses, redacts and budgets the result. A source that fails leaves a `SourceFailure`.
//! - [`promql`]: reading a rule expression (signal, threshold, selectors); [`templates`]: USE/RED
//!   query templates; [`escape`]: label values as PromQL/LogQL literals that cannot inject.
//! - `prom`, `loki`: the Prometheus (prometheus-http-query) and Loki (reqwest) clients.
//! - [`series`], [`logs`], [`drain`]: compression of series (statistics, anomaly rank) and of log
//!   lines (Drain templates); [`redact`]: secrets out; [`budget`]: the token budget.
//! - [`alert_evidence`]: evidence read from the alerts alone (rule expression, annotations).
//! - [`facts`]: the typed facts built from the series, shares, peers and templates.
//! - [`entities`]: what the group is about (hosts, pods, namespaces, workloads), as values.
//! - `candidates`: where its evidence may be, found by those values (`candidates::logs`: the Loki
//!   labels that hold them).
#![forbid(unsafe_code)]

pub mod budget;
mod candidates;
pub mod config;
pub mod drain;
pub mod entities;
pub mod escape;
pub mod facts;
mod gather;
pub mod graph;
pub mod logs;
mod loki;
mod peers;
mod prom;
pub mod promql;
mod rank;
pub mod series;
pub mod templates;

pub use aiops_model::redact;
pub use config::{ContextConfig, LokiConfig, PrometheusConfig};
pub use gather::Gatherer;
pub use graph::PromGraph;
pub use loki::LogLine;

use aiops_model::{Context, Evidence, EvidenceSource, WebhookPayload};

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
            excerpt: None,
            facts: Vec::new(),
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
            excerpt: None,
            facts: Vec::new(),
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
