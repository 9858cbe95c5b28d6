//! The JSON document that describes one delivery.

use aiops_model::alertmanager::{AlertStatus, Labels};
use aiops_model::{Analysis, JobId, Notification};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Evidence items shown in the text rendering; JSON carries them all.
const TEXT_EVIDENCE: usize = 5;

/// One delivery: a firing group with its analysis, or a resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub job_id: JobId,
    /// `analysis` or `resolved`.
    pub kind: String,
    pub group_key: String,
    pub status: AlertStatus,
    pub alertname: String,
    pub alerts_firing: usize,
    pub alerts_resolved: usize,
    pub labels: Labels,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// For a resolution: how long the group fired, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_for_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// How many times the group fired in this incident; over 1 it flaps (it fired again within
    /// `notify.flap_window_secs` of resolving).
    #[serde(default = "one")]
    pub firings: u32,
}

fn one() -> u32 {
    1
}

impl Document {
    pub fn new(n: &Notification<'_>) -> Self {
        let payload = n.payload;
        let firing = payload
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count();
        let started_at = payload.started_at();
        let ended_at = payload.alerts.iter().filter_map(|a| a.ended_at()).max();
        let fired_for_secs = match (payload.status, started_at, ended_at) {
            (AlertStatus::Resolved, Some(start), Some(end)) => Some((end - start).whole_seconds()),
            _ => None,
        };
        Self {
            job_id: n.job_id,
            kind: if n.analysis.is_some() {
                "analysis"
            } else {
                "resolved"
            }
            .into(),
            group_key: payload.group_key.clone(),
            status: payload.status,
            alertname: payload.alertname().to_owned(),
            alerts_firing: firing,
            alerts_resolved: payload.alerts.len() - firing,
            labels: payload.common_labels.clone(),
            started_at,
            fired_for_secs,
            analysis: n.analysis.cloned(),
            firings: n.firings.max(1),
        }
    }

    /// A text block for a terminal.
    pub fn to_text(&self) -> String {
        let severity = self
            .labels
            .get("severity")
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let flapping = match self.firings {
            0 | 1 => String::new(),
            n => format!(" [flapping ×{n}]"),
        };
        let mut out = match &self.analysis {
            None => {
                let fired = self
                    .fired_for_secs
                    .map(|s| format!(" after {}", human_duration(s)))
                    .unwrap_or_default();
                format!(
                    "[RESOLVED] {}{severity} resolved{fired}{flapping} (job {})\n",
                    self.alertname, self.job_id
                )
            }
            Some(a) => {
                let mut out = format!(
                    "[FIRING] {}{severity}: {} firing, {} resolved{flapping} (job {})\n",
                    self.alertname, self.alerts_firing, self.alerts_resolved, self.job_id
                );
                out.push_str(&format!("Summary: {}\n", a.summary));
                out.push_str(&format!(
                    "Root cause ({:.0}% confident, {}): {}\n",
                    a.confidence * 100.0,
                    a.category.as_str(),
                    a.root_cause
                ));
                out.push_str(&format!("Impact: {}\n", a.impact));
                out.push_str("Remediation:\n");
                for (i, step) in a.remediation.iter().enumerate() {
                    out.push_str(&format!("  {}. {step}\n", i + 1));
                }
                if !a.evidence.is_empty() {
                    out.push_str("Evidence:\n");
                    for e in a.evidence.iter().take(TEXT_EVIDENCE) {
                        out.push_str(&format!("  - [{}] {}\n", e.id, e.note));
                    }
                }
                if !a.alternatives.is_empty() {
                    out.push_str("Ranked lower:\n");
                    for alt in &a.alternatives {
                        out.push_str(&format!("  - {alt}\n"));
                    }
                }
                if !a.next_queries.is_empty() {
                    out.push_str("Next queries:\n");
                    for q in &a.next_queries {
                        out.push_str(&format!("  - {q}\n"));
                    }
                }
                let model = a
                    .analyzer
                    .model
                    .as_deref()
                    .map(|m| format!(" {m}"))
                    .unwrap_or_default();
                let fallback = match (&a.analyzer.fallback, &a.analyzer.fallback_reason) {
                    (true, Some(why)) => format!(", fallback ({why})"),
                    (true, None) => ", fallback".to_owned(),
                    (false, _) => String::new(),
                };
                let reused = a
                    .analyzer
                    .reused_from
                    .map(|j| format!(", reused from job {j} (same evidence)"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "Analyzer: {}{model}{fallback}{reused}\n",
                    a.analyzer.name
                ));
                out
            }
        };
        out.push('\n');
        out
    }
}

pub(crate) fn human_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_model::alertmanager::parse_webhook;

    #[test]
    fn resolution_reports_how_long_the_group_fired() {
        let path = format!(
            "{}/../../tests/fixtures/alertmanager/target-down-group-resolved.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload = parse_webhook(&std::fs::read(path).expect("fixture")).expect("parses");
        let doc = Document::new(&Notification {
            job_id: JobId::new(),
            payload: &payload,
            analysis: None,
            firings: 1,
        });
        assert_eq!(doc.kind, "resolved");
        let fired = doc.fired_for_secs.expect("duration");
        assert!(fired > 0, "{fired}");
        assert!(
            doc.to_text()
                .starts_with("[RESOLVED] TargetDown (critical) resolved after"),
            "{}",
            doc.to_text()
        );
    }
}
