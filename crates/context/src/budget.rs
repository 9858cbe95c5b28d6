//! Fitting the context into `context.max_tokens`: the lowest-ranked evidence goes first.

use aiops_model::Evidence;
use aiops_model::tokens;

use crate::logs::truncate;

/// Drops evidence from the end (the lowest-ranked, since `evidence` is ranked) until the estimate is
/// within `max_tokens`. The top item always stays; if it alone is too large, its excerpt and then its
/// summary are shortened.
pub fn fit(evidence: &mut Vec<Evidence>, max_tokens: usize) {
    while evidence.len() > 1 && tokens::of_all(evidence) > max_tokens {
        evidence.pop();
    }
    if let Some(top) = evidence.first_mut()
        && tokens::of_evidence(top) > max_tokens
    {
        top.excerpt = None;
        let over = tokens::of_evidence(top).saturating_sub(max_tokens) * 4;
        let keep = top.summary.chars().count().saturating_sub(over + 1);
        top.summary = truncate(&top.summary, keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_model::EvidenceSource;

    fn item(id: &str, size: usize) -> Evidence {
        Evidence {
            id: id.into(),
            source: EvidenceSource::Prometheus,
            title: "t".into(),
            query: Some("q".into()),
            summary: "x".repeat(size),
            excerpt: None,
            facts: Vec::new(),
        }
    }

    #[test]
    fn drops_the_lowest_ranked_first_and_keeps_the_top() {
        let mut evidence = vec![item("anomaly", 400), item("b", 4000), item("c", 4000)];
        fit(&mut evidence, 1200);
        let ids: Vec<&str> = evidence.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["anomaly", "b"]);
        assert!(tokens::of_all(&evidence) <= 1200);

        let mut alone = vec![item("huge", 40_000)];
        fit(&mut alone, 1000);
        assert_eq!(alone[0].id, "huge");
        assert!(tokens::of_all(&alone) <= 1000, "{}", tokens::of_all(&alone));
    }
}
