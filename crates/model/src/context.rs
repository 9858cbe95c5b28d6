//! The evidence the context stage gathers for one alert group.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::facts::{Fact, Finding};

/// Everything gathered for one group. A source that failed leaves a [`SourceFailure`] and the rest
/// stays usable: a partial context is better than none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub window_start: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub window_end: Option<OffsetDateTime>,
    pub evidence: Vec<Evidence>,
    #[serde(default)]
    pub failures: Vec<SourceFailure>,
}

impl Context {
    pub fn evidence(&self, id: &str) -> Option<&Evidence> {
        self.evidence.iter().find(|e| e.id == id)
    }

    /// A digest of what the context established: the identities ([`Fact::identity`]) of its facts
    /// that name a cause ([`Fact::names_a_cause`]) and the sources that failed, without values,
    /// times or evidence ids. A group firing again with the same digest rests on the same evidence,
    /// so its earlier analysis still holds (a flapping group is not analyzed again unless the
    /// evidence changed).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut parts: Vec<String> = self
            .findings()
            .filter(|f| f.fact.names_a_cause())
            .map(|f| f.fact.identity())
            .collect();
        parts.extend(self.failures.iter().map(|f| {
            let source = serde_json::to_string(&f.source).unwrap_or_default();
            format!("failed:{source}|{}", f.query.as_deref().unwrap_or(""))
        }));
        parts.sort_unstable();
        parts.dedup();
        let mut hasher = Sha256::new();
        for p in &parts {
            hasher.update(p.as_bytes());
            hasher.update([0]);
        }
        hasher
            .finalize()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where a piece of evidence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceSource {
    /// The alert itself: its rule, labels and annotations.
    Alert,
    Prometheus,
    Loki,
}

/// One piece of evidence, addressed by `id` so an analysis can cite it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub id: String,
    pub source: EvidenceSource,
    pub title: String,
    /// The PromQL or LogQL that produced it, so a human can run it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The compressed, redacted finding.
    pub summary: String,
    /// A few raw lines behind the finding (log lines, for instance), redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    /// What the context stage established from this evidence's data (see [`crate::facts`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<Fact>,
}

impl Context {
    /// Every fact of the context, with the id of the evidence it rests on, in evidence order.
    pub fn findings(&self) -> impl Iterator<Item = Finding<'_>> {
        self.evidence.iter().flat_map(|e| {
            e.facts.iter().map(|fact| Finding {
                evidence: &e.id,
                fact,
            })
        })
    }
}

/// A source or query that could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFailure {
    pub source: EvidenceSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{ChangeKind, Resource};

    fn item(id: &str, facts: Vec<Fact>) -> Evidence {
        Evidence {
            id: id.into(),
            source: EvidenceSource::Prometheus,
            title: "t".into(),
            query: None,
            summary: String::new(),
            excerpt: None,
            facts,
        }
    }

    fn saturation(used: f64, at: i64) -> Fact {
        Fact::Saturation {
            resource: Resource::Disk,
            subject: "node-1:/var".into(),
            used,
            limit: 100.0,
            ratio: used / 100.0,
            at,
        }
    }

    fn anomaly() -> Fact {
        Fact::Anomaly {
            metric: "node_disk_io_time_seconds_total".into(),
            subject: "node-1".into(),
            rising: true,
            ratio: Some(4.0),
            at: Some(10),
            related: false,
            born: false,
        }
    }

    fn context(evidence: Vec<Evidence>) -> Context {
        Context {
            evidence,
            ..Context::default()
        }
    }

    #[test]
    fn the_same_cause_seen_again_has_the_same_digest() {
        let first = context(vec![item("prom-1", vec![saturation(97.0, 100), anomaly()])]);
        // An hour later: other values and times, other ids, the anomaly gone (its baseline moved).
        let again = context(vec![
            item("alert", vec![]),
            item("prom-4", vec![saturation(99.5, 3700)]),
        ]);
        assert_eq!(first.digest(), again.digest());
    }

    #[test]
    fn a_new_cause_or_a_failed_source_changes_the_digest() {
        let first = context(vec![item("prom-1", vec![saturation(97.0, 100)])]);
        let deployed = context(vec![item(
            "prom-1",
            vec![
                saturation(97.0, 100),
                Fact::Change {
                    kind: ChangeKind::Deploy,
                    subject: "api".into(),
                    what: "api:v2".into(),
                    at: 90,
                },
            ],
        )]);
        assert_ne!(first.digest(), deployed.digest());
        let mut blind = first.clone();
        blind.failures.push(SourceFailure {
            source: EvidenceSource::Loki,
            query: None,
            error: "timeout".into(),
        });
        assert_ne!(first.digest(), blind.digest());
        assert_ne!(first.digest(), Context::default().digest());
    }
}
