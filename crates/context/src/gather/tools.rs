//! Tool calls of a bounded LLM investigation, run against the same Prometheus and Loki as the
//! gathered evidence and compressed, redacted and faceted the same way: series as ranked summaries
//! with their facts, lines as templates with theirs, lists as lists. A result is cut to its token
//! cap and says so.

use aiops_model::{Investigator, ToolCall};

use super::*;

/// Items of a list (names, label values, instant samples) shown, at most.
const LISTED: usize = 60;

#[async_trait]
impl Investigator for Gatherer {
    async fn run(
        &self,
        call: &ToolCall,
        alert_at: i64,
        id: &str,
        max_tokens: usize,
    ) -> Result<Evidence, String> {
        let (source, query, summary, facts) = self.answer(call, alert_at).await?;
        let mut evidence = Evidence {
            id: id.to_owned(),
            source,
            title: format!("Tool call {}", call.name()),
            query: query.map(|q| self.redactor.redact(&q).into_owned()),
            summary: self.redactor.redact(&summary).into_owned(),
            excerpt: None,
            facts,
        };
        let cap = max_tokens.saturating_mul(aiops_model::tokens::CHARS_PER_TOKEN);
        if evidence.summary.chars().count() > cap {
            let kept = crate::logs::truncate(&evidence.summary, cap.saturating_sub(80));
            evidence.summary =
                format!("{kept}\n(cut to the tool result cap of {max_tokens} tokens)");
        }
        Ok(evidence)
    }
}

/// What a call found: its source, the query to show, the text, the facts.
type Answer = (
    EvidenceSource,
    Option<String>,
    String,
    Vec<aiops_model::Fact>,
);

impl Gatherer {
    async fn answer(&self, call: &ToolCall, alert_at: i64) -> Result<Answer, String> {
        let clock = self.clock.now();
        let now = clock.unix_timestamp() + i64::from(clock.nanosecond() > 0);
        let span = |before: u32, after: u32| {
            let start = alert_at - i64::from(before) * 60;
            let end = (alert_at + i64::from(after) * 60).min(now).max(start + 60);
            (start, end)
        };
        let prom = || {
            self.prometheus
                .as_ref()
                .ok_or("Prometheus is not configured here (prometheus.url is empty)")
        };
        let loki = || {
            self.loki
                .as_ref()
                .ok_or("Loki is not configured here (loki.url is empty)")
        };
        let prometheus = EvidenceSource::Prometheus;
        match call {
            ToolCall::PromqlRange {
                query,
                minutes_before,
                minutes_after,
            } => {
                let (start, end) = span(*minutes_before, *minutes_after);
                let step = ((end - start) as f64 / f64::from(self.config.max_points))
                    .ceil()
                    .max(1.0);
                let series = prom()?.range(query, start, end, step).await?;
                let ranked = summarize(&series, alert_at as f64, None);
                if ranked.is_empty() {
                    return Ok((prometheus, Some(query.clone()), no_series(), Vec::new()));
                }
                let name = facts::metric_name(&series, query);
                let found = facts::Found {
                    metric: &name,
                    alert: alert_at as f64,
                    related: None,
                };
                let facts = facts::of_series(found, &ranked, &series);
                let text = self.series_lines(&ranked, None);
                Ok((prometheus, Some(query.clone()), text, facts))
            }
            ToolCall::PromqlInstant { query } => {
                let series = prom()?.instant(query, alert_at).await?;
                let mut samples: Vec<(String, f64)> = series
                    .iter()
                    .filter_map(|s| {
                        let v = s.points.last()?.1;
                        let labels: Vec<String> =
                            s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                        Some((format!("{{{}}}", labels.join(", ")), v))
                    })
                    .collect();
                samples.sort_by(|a, b| b.1.total_cmp(&a.1));
                let lines: Vec<String> = samples
                    .iter()
                    .map(|(l, v)| format!("{l}: {}", crate::series::num(*v)))
                    .collect();
                let text = listed(&lines, "series, largest first").unwrap_or_else(no_series);
                Ok((prometheus, Some(query.clone()), text, Vec::new()))
            }
            ToolCall::MetricNames { selector } => {
                let query = format!("count by (__name__) ({selector})");
                let text = self
                    .values_by(prom()?, &query, "__name__", alert_at)
                    .await?;
                Ok((prometheus, Some(query), text, Vec::new()))
            }
            ToolCall::LabelValues { label, selector } => {
                let query = format!("count by ({label}) ({selector})");
                let text = self.values_by(prom()?, &query, label, alert_at).await?;
                Ok((prometheus, Some(query), text, Vec::new()))
            }
            ToolCall::Logql {
                query,
                minutes_before,
                minutes_after,
            } => {
                let (start, end) = span(*minutes_before, *minutes_after);
                let mut lines = loki()?
                    .query_range(
                        query,
                        start * 1_000_000_000,
                        end * 1_000_000_000,
                        self.loki_config.limit,
                    )
                    .await?;
                // Before mining: a secret must not become part of a template or an example.
                for l in &mut lines {
                    self.redactor.redact_in_place(&mut l.line);
                }
                if lines.is_empty() {
                    let text = format!(
                        "No line matched between {} and {}.",
                        at(start as f64),
                        at(end as f64)
                    );
                    return Ok((EvidenceSource::Loki, Some(query.clone()), text, Vec::new()));
                }
                let templates = mine(&lines, alert_at as f64 - INCIDENT_LEAD, LOG_TEMPLATES);
                let mut text = format!(
                    "{} lines between {} and {}, {} templates kept:",
                    lines.len(),
                    at(start as f64),
                    at(end as f64),
                    templates.len()
                );
                for t in &templates {
                    text.push('\n');
                    text.push_str(&t.line());
                }
                let span = facts::LogSpan {
                    start: start as f64,
                    alert: alert_at as f64,
                    end: end as f64,
                };
                let facts = facts::of_templates(&templates, false, None, span);
                Ok((EvidenceSource::Loki, Some(query.clone()), text, facts))
            }
            ToolCall::LokiLabels => {
                let (start, end) = span(60, 5);
                let labels = loki()?
                    .labels(start * 1_000_000_000, end * 1_000_000_000)
                    .await?;
                let text =
                    listed(&labels, "label names").unwrap_or_else(|| "Loki knows no label.".into());
                Ok((EvidenceSource::Loki, None, text, Vec::new()))
            }
        }
    }

    /// The values of `label` in the answer of an instant `query` (a `count by`), sorted.
    async fn values_by(
        &self,
        prom: &crate::prom::Prometheus,
        query: &str,
        label: &str,
        alert_at: i64,
    ) -> Result<String, String> {
        let series = prom.instant(query, alert_at).await?;
        let mut values: Vec<String> = series
            .iter()
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        values.sort_unstable();
        values.dedup();
        Ok(listed(&values, "values").unwrap_or_else(no_series))
    }
}

fn no_series() -> String {
    "No series matched.".to_owned()
}

/// `items` one per line, at most [`LISTED`], with how many there are.
fn listed(items: &[String], what: &str) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let mut text = format!("{} {what}:", items.len());
    for item in items.iter().take(LISTED) {
        text.push('\n');
        text.push_str(item);
    }
    if items.len() > LISTED {
        text.push_str(&format!("\n({} more left out)", items.len() - LISTED));
    }
    Some(text)
}
