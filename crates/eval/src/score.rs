//! Scoring one run: which facts the evidence shows, whether the analysis names the category and the
//! culprit, and whether a secret left.

use aiops_model::{Analysis, Context, EvidenceSource};

use crate::scenario::Fact;

/// The text the analyzer was shown from Prometheus and Loki: what each evidence item is and found
/// (its title, summary and excerpt; a discovered metric is named in its title). The alert's own
/// evidence and the queries are left out: a fact must come from the data, not from the alert or from
/// a label value aiops put into a query (`--check` refuses a fact the alert itself states).
pub fn evidence_text(context: &Context) -> String {
    let mut text = String::new();
    for e in context
        .evidence
        .iter()
        .filter(|e| e.source != EvidenceSource::Alert)
    {
        text.push_str(&e.title);
        text.push('\n');
        text.push_str(&e.summary);
        text.push('\n');
        if let Some(x) = &e.excerpt {
            text.push_str(x);
            text.push('\n');
        }
    }
    text
}

/// Whether any alternative of `fact` is in `text`.
pub fn found(fact: &Fact, text: &str) -> bool {
    let lower = text.to_lowercase();
    fact.any.iter().any(|alt| mentions(&lower, alt))
}

/// `alternative` in `lower` (already lowercased): a number as a number at its written precision
/// (`0.93` matches `0.931` and `0.93`, not `10.93`), anything else as a case-insensitive substring.
pub fn mentions(lower: &str, alternative: &str) -> bool {
    match alternative.parse::<f64>() {
        Ok(wanted)
            if alternative
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-') =>
        {
            let decimals = alternative.split_once('.').map_or(0, |(_, d)| d.len());
            let tolerance = 0.5 * 10f64.powi(-(decimals as i32));
            numbers(lower).any(|n| (n - wanted).abs() < tolerance + 1e-12)
        }
        _ => lower.contains(&alternative.to_lowercase()),
    }
}

/// The numbers written in `text` (`-1.5`, `42`, `0.93`), read whole.
fn numbers(text: &str) -> impl Iterator<Item = f64> + '_ {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter_map(|t| t.trim_matches(|c| c == '.' || c == '-').parse().ok())
}

/// Whether the analysis names one of the culprit's names, in its root cause or summary.
pub fn names_culprit(analysis: &Analysis, culprit: &[String]) -> bool {
    let said = format!("{}\n{}", analysis.root_cause, analysis.summary).to_lowercase();
    culprit.iter().any(|c| said.contains(&c.to_lowercase()))
}

/// The secrets found in any of `texts`.
pub fn leaked<'a>(secrets: &'a [String], texts: &[&str]) -> Vec<&'a str> {
    secrets
        .iter()
        .filter(|s| texts.iter().any(|t| t.contains(s.as_str())))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_at_their_written_precision_and_words_case_insensitively() {
        let text = "memory at 0.931 of the limit; 512 fds; 10.93 s; OOMKilled".to_lowercase();
        assert!(mentions(&text, "0.93"));
        assert!(mentions(&text, "0.9"));
        assert!(!mentions(&text, "0.94"));
        assert!(mentions(&text, "512"));
        assert!(!mentions(&text, "51"));
        assert!(mentions(&text, "oomkilled"));
        assert!(mentions(&text, "10.93"));
        assert!(!mentions(&text, "93"));
    }
}
