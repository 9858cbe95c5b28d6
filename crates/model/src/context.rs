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
