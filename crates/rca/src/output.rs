//! What the model says, made into an [`Analysis`]: strip `<think>` blocks and code fences, parse the
//! JSON object, validate it against the schema's rules, and check that it cites evidence that exists
//! (an answer that cites none, or an unknown id, is an invalid answer: it gets the repair round).

use aiops_model::{Analysis, AnalyzerInfo, Category, Context, EvidenceRef};
use serde::Deserialize;

/// The answer as the schema describes it; optional parts may be missing.
#[derive(Debug, Deserialize)]
struct Draft {
    summary: String,
    root_cause: String,
    confidence: f64,
    category: String,
    #[serde(default)]
    impact: String,
    #[serde(default)]
    evidence: Vec<DraftRef>,
    remediation: Vec<String>,
    #[serde(default)]
    next_queries: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DraftRef {
    Full {
        id: String,
        #[serde(default)]
        note: String,
    },
    Id(String),
}

/// The text without reasoning blocks and code fences: what should be the JSON object.
pub fn clean(content: &str) -> &str {
    let mut text = content.trim();
    // Reasoning models (DeepSeek R1, QwQ) put their thoughts first.
    while let Some(rest) = text.strip_prefix("<think>") {
        text = match rest.find("</think>") {
            Some(end) => rest[end + "</think>".len()..].trim_start(),
            None => "",
        };
    }
    if let Some(end) = text.find("</think>") {
        // An opening tag the server already stripped.
        text = text[end + "</think>".len()..].trim_start();
    }
    if let Some(rest) = text.strip_prefix("```") {
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
        text = rest.trim().strip_suffix("```").unwrap_or(rest).trim();
    }
    // Prose around the object: keep from the first `{` to the last `}`.
    match (text.find('{'), text.rfind('}')) {
        (Some(a), Some(b)) if a < b => &text[a..=b],
        _ => text,
    }
}

/// Parses and validates `content`. The error says what is wrong, for the repair round.
pub fn parse(content: &str, context: &Context, info: AnalyzerInfo) -> Result<Analysis, String> {
    let text = clean(content);
    if text.is_empty() {
        return Err("the answer was empty".into());
    }
    let draft: Draft = serde_json::from_str(text)
        .map_err(|e| format!("the answer is not the JSON object the schema describes: {e}"))?;
    if draft.summary.trim().is_empty() || draft.root_cause.trim().is_empty() {
        return Err("summary and root_cause must not be empty".into());
    }
    if !(0.0..=1.0).contains(&draft.confidence) || !draft.confidence.is_finite() {
        return Err(format!(
            "confidence must be between 0 and 1, not {}",
            draft.confidence
        ));
    }
    let category = category(&draft.category).ok_or_else(|| {
        format!(
            "category {:?} is not one of {}",
            draft.category,
            crate::prompt::CATEGORIES.join(", ")
        )
    })?;
    let remediation: Vec<String> = draft
        .remediation
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if remediation.is_empty() {
        return Err("remediation must list at least one step".into());
    }
    // Grounding: the cause must rest on evidence that exists. An answer that cites none, or an id
    // that is not in the data section (or a tool result), is sent back once to be fixed.
    let mut evidence: Vec<EvidenceRef> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for r in draft.evidence {
        let (id, note) = match r {
            DraftRef::Full { id, note } => (id, note),
            DraftRef::Id(id) => (id, String::new()),
        };
        match context.evidence(&id) {
            Some(found) if !evidence.iter().any(|e| e.id == id) => evidence.push(EvidenceRef {
                id,
                note,
                query: found.query.clone(),
                finding: Some(found.summary.clone()),
            }),
            Some(_) => {}
            None => unknown.push(id),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "the evidence cites ids that are not in the data section: {}; cite only the ids given \
             (the evidence items' and the tool results')",
            unknown.join(", ")
        ));
    }
    if evidence.is_empty() {
        return Err(
            "the evidence cites no id: cite the evidence items (by the ids in the data section) \
             that the root cause rests on"
                .into(),
        );
    }
    Ok(Analysis {
        alternatives: Vec::new(),
        summary: draft.summary.trim().to_owned(),
        root_cause: draft.root_cause.trim().to_owned(),
        confidence: draft.confidence as f32,
        category,
        impact: draft.impact.trim().to_owned(),
        evidence,
        remediation,
        next_queries: draft.next_queries,
        analyzer: info,
        evidence_digest: None,
    })
}

fn category(name: &str) -> Option<Category> {
    let normalized = name
        .trim()
        .to_ascii_lowercase()
        .replace([' ', '-', '/'], "_");
    Some(match normalized.as_str() {
        "resource_saturation" | "saturation" => Category::ResourceSaturation,
        "crash_oom" | "crash" | "oom" => Category::CrashOom,
        "bad_deploy" | "deploy" | "bad_deploy_or_config_change" | "config_change" => {
            Category::BadDeploy
        }
        "dependency_failure" | "dependency" => Category::DependencyFailure,
        "network" => Category::Network,
        "capacity" => Category::Capacity,
        "unknown" => Category::Unknown,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_fences_thoughts_and_prose() {
        assert_eq!(clean("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(
            clean("<think>hmm { not this }</think>\n{\"a\":1}"),
            "{\"a\":1}"
        );
        assert_eq!(clean("reasoning...</think>{\"a\":1}"), "{\"a\":1}");
        assert_eq!(clean("Here it is: {\"a\":1} Hope it helps."), "{\"a\":1}");
        assert_eq!(clean("<think>never finished"), "");
    }
}
