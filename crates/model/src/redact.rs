//! Secrets never leave the process: every string of the context, and the LLM prompt, passes through
//! the [`Redactor`] first, whatever source it came from.

use std::borrow::Cow;

use regex::Regex;

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The built-in rules: a pattern and its replacement (`$n` keeps a captured group).
const RULES: &[(&str, &str)] = &[
    // PEM blocks: private keys and anything else armoured.
    (
        r"-----BEGIN [A-Z0-9 ]+-----[\s\S]*?-----END [A-Z0-9 ]+-----",
        "[REDACTED PEM]",
    ),
    // JSON Web Tokens.
    (
        r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
        REDACTED,
    ),
    // Credentials in URLs: scheme://user:password@host.
    (
        r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@",
        "${1}[REDACTED]@",
    ),
    // Authorization headers and bearer tokens.
    (
        r"(?i)\b(authorization\s*[:=]\s*(?:bearer|basic|token)?\s*)[^\s,;]+",
        "${1}[REDACTED]",
    ),
    (
        r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*",
        "${1}[REDACTED]",
    ),
    // Well-known token shapes.
    (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", REDACTED),
    (r"\bAIza[0-9A-Za-z_-]{35}\b", REDACTED),
    (r"\bxox[abposre]-[A-Za-z0-9-]{10,}", REDACTED),
    (
        r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
        REDACTED,
    ),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", REDACTED),
    (r"\bsk-[A-Za-z0-9_-]{20,}", REDACTED),
    // key=value and "key": "value" pairs whose key names a secret.
    (
        r#"(?i)\b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|account[_-]?key|private[_-]?key|credentials?)(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)[^\s"'\\&,;}]+"#,
        "${1}[REDACTED]",
    ),
];

/// Replaces secrets in text: the built-in rules, then the user's own patterns.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<(Regex, String)>,
}

impl Redactor {
    /// The built-in rules plus `extra` patterns (whole matches are replaced). Fails on a pattern that
    /// is not a regular expression.
    pub fn new(extra: &[String]) -> Result<Self, regex::Error> {
        let mut rules = Vec::with_capacity(RULES.len() + extra.len());
        for (pattern, replacement) in RULES {
            rules.push((Regex::new(pattern)?, (*replacement).to_owned()));
        }
        for pattern in extra {
            rules.push((Regex::new(pattern)?, REDACTED.to_owned()));
        }
        Ok(Self { rules })
    }

    /// `text` with every secret replaced.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (re, replacement) in &self.rules {
            if let Cow::Owned(changed) = re.replace_all(&out, replacement.as_str()) {
                out = Cow::Owned(changed);
            }
        }
        out
    }

    /// Redacts `text` in place.
    pub fn redact_in_place(&self, text: &mut String) {
        if let Cow::Owned(changed) = self.redact(text) {
            *text = changed;
        }
    }

    /// Redacts every string in `value` before it is serialized: a pattern run over serialized JSON
    /// could swallow an escape or a closing quote and break the document. A string under a key that
    /// names a secret (`"password": "…"`) is judged as the pair `key=value`, as a log line would
    /// carry it.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => self.redact_in_place(text),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        Value::String(text) => self.redact_pair(key, text),
                        other => self.redact_json(other),
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Redacts `value` as the pair `key=value`; the key itself stays as it is.
    fn redact_pair(&self, key: &str, value: &mut String) {
        let pair = format!("{key}={value}");
        match self.redact(&pair) {
            Cow::Borrowed(_) => {}
            Cow::Owned(redacted) => match redacted.strip_prefix(&pair[..=key.len()]) {
                Some(rest) => *value = rest.to_owned(),
                None => self.redact_in_place(value),
            },
        }
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(&[]).unwrap_or_else(|e| unreachable!("the built-in rules are valid: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ordinary_text() {
        let r = Redactor::default();
        let line =
            "GET /api/v1/users 500 in 1.2s: connection refused by db-1:5432 (token bucket empty)";
        assert_eq!(r.redact(line), line);
    }

    #[test]
    fn json_strings_are_redacted_one_by_one_and_secret_keys_hide_their_values() {
        let r = Redactor::default();
        let mut value = serde_json::json!({
            "labels": {"password": "hunter2", "instance": "db-1:5432"},
            "lines": ["Authorization: Bearer abc.def", "next line \"quoted\""],
        });
        r.redact_json(&mut value);
        assert_eq!(value["labels"]["password"], "[REDACTED]");
        assert_eq!(value["labels"]["instance"], "db-1:5432");
        assert_eq!(value["lines"][0], "Authorization: Bearer [REDACTED]");
        assert_eq!(value["lines"][1], "next line \"quoted\"");
    }

    #[test]
    fn user_patterns_are_applied_too() {
        let r = Redactor::new(&[r"cust-[0-9]{6}".into()]).expect("valid");
        assert_eq!(
            r.redact("order for cust-123456 failed"),
            "order for [REDACTED] failed"
        );
        assert!(Redactor::new(&["(".into()]).is_err());
    }
}
