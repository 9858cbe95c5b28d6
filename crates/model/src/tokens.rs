//! The one token estimate every budget uses (the context's `max_tokens`, the LLM's prompt budget and
//! its tokens per minute): about four characters per token for English text, JSON and PromQL. Close
//! enough to budget with, and free of any tokenizer dependency.

use crate::context::Evidence;

/// Characters per token, as every estimate counts them.
pub const CHARS_PER_TOKEN: usize = 4;

/// Tokens `text` costs, about.
pub fn estimate(text: &str) -> usize {
    text.chars().count().div_ceil(CHARS_PER_TOKEN)
}

/// [`estimate`], as the `u32` the LLM's usage figures use.
pub fn estimate_u32(text: &str) -> u32 {
    u32::try_from(estimate(text)).unwrap_or(u32::MAX)
}

/// Tokens an evidence item costs in a prompt: its texts plus its framing (keys, quotes, source).
pub fn of_evidence(e: &Evidence) -> usize {
    let text = |s: &str| estimate(s);
    text(&e.id)
        + text(&e.title)
        + text(&e.summary)
        + e.query.as_deref().map_or(0, text)
        + e.excerpt.as_deref().map_or(0, text)
        + FRAMING
}

/// Tokens a list of evidence costs in a prompt.
pub fn of_all(evidence: &[Evidence]) -> usize {
    evidence.iter().map(of_evidence).sum()
}

/// What an item's JSON keys and punctuation cost, about.
const FRAMING: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_characters_a_token_rounded_up() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("abcd"), 1);
        assert_eq!(estimate("abcde"), 2);
        assert_eq!(estimate("ééééé"), 2, "characters, not bytes");
    }
}
