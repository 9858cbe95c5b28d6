//! Building PromQL and LogQL from alert labels without letting a label value break or extend the
//! query. Both languages read double-quoted strings with Go's escaping rules, so a value is written
//! as a quoted literal with `\`, `"` and control characters escaped, and a set of values as an
//! escaped regular expression inside such a literal. Label and metric names cannot be quoted, so
//! they are checked instead.

/// `value` as a double-quoted PromQL/LogQL string literal.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A matcher for `name` that accepts exactly `values`: `name="v"` for one value, `name=~"v1|v2"` for
/// several. `None` when the name is not a label name or there is no value.
pub fn matcher(name: &str, values: &[&str]) -> Option<String> {
    if !is_label_name(name) {
        return None;
    }
    let mut values: Vec<&str> = values.to_vec();
    values.sort_unstable();
    values.dedup();
    match values.as_slice() {
        [] => None,
        [one] => Some(format!("{name}={}", quote(one))),
        many => {
            let alternatives: Vec<String> = many.iter().map(|v| regex::escape(v)).collect();
            Some(format!("{name}=~{}", quote(&alternatives.join("|"))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_escape_what_would_end_or_extend_the_string() {
        assert_eq!(quote("plain"), r#""plain""#);
        assert_eq!(quote(r#"a"b"#), r#""a\"b""#);
        assert_eq!(quote(r"a\b"), r#""a\\b""#);
        assert_eq!(quote("a\nb\r\t"), r#""a\nb\r\t""#);
        assert_eq!(quote("a\u{0}b"), r#""a\u0000b""#);
        // A value crafted to close the matcher and add a clause stays one string.
        let hostile = r#"x"} or vector(1) or up{a=""#;
        let quoted = quote(hostile);
        assert_eq!(quoted, r#""x\"} or vector(1) or up{a=\"""#);
        assert_eq!(
            quoted.matches('"').count() - quoted.matches("\\\"").count(),
            2
        );
    }

    #[test]
    fn hostile_values_parse_as_one_matcher() {
        for hostile in [
            r#"x"} or vector(1) or up{a=""#,
            "line\nbreak",
            r"back\slash\",
            r#"\"#,
        ] {
            let m = matcher("instance", &[hostile]).expect("matcher");
            let query = format!("up{{{m}}}");
            let parsed = promql_parser::parser::parse(&query)
                .unwrap_or_else(|e| panic!("{query:?} does not parse: {e}"));
            let promql_parser::parser::Expr::VectorSelector(vs) = parsed else {
                panic!("{query:?} is not a single selector");
            };
            let values: Vec<&str> = vs
                .matchers
                .matchers
                .iter()
                .filter(|m| m.name == "instance")
                .map(|m| m.value.as_str())
                .collect();
            assert_eq!(values, [hostile], "{query}");
        }
    }

    #[test]
    fn several_values_become_an_escaped_alternation() {
        let m = matcher("instance", &["a.b:9100", "c|d", "a.b:9100"]).expect("matcher");
        assert_eq!(m, r#"instance=~"a\\.b:9100|c\\|d""#);
        let re = regex::Regex::new(r"^(?:a\.b:9100|c\|d)$").expect("regex");
        assert!(re.is_match("c|d") && !re.is_match("c") && !re.is_match("aXb:9100"));
    }

    #[test]
    fn names_are_checked_not_quoted() {
        assert!(is_label_name("pod_name") && is_label_name("_x"));
        assert!(!is_label_name("") && !is_label_name("1a") && !is_label_name("a-b"));
        assert!(!is_label_name(r#"a="b"}"#));
        assert!(is_metric_name("job:rate5m") && !is_metric_name("a b"));
        assert_eq!(matcher("bad name", &["v"]), None);
        assert_eq!(matcher("ok", &[]), None);
    }
}
