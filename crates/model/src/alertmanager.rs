//! The Alertmanager webhook payload (version 4), which Grafana's webhook contact point also sends with
//! extra fields. Unknown fields are accepted so that newer senders keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Label or annotation names mapped to values, sorted so that output is stable.
pub type Labels = BTreeMap<String, String>;

/// Whether an alert (or a whole group) is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One notification of an alert group, as Alertmanager posts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    #[serde(default)]
    pub version: String,
    /// Identifies the group across repeats and replicas.
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: AlertStatus,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: Labels,
    #[serde(default)]
    pub common_labels: Labels,
    #[serde(default)]
    pub common_annotations: Labels,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

/// One alert of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: AlertStatus,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// `0001-01-01T00:00:00Z` while the alert fires; see [`Alert::ended_at`].
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's hash of the label set. Filled from the labels when a sender leaves it out.
    #[serde(default)]
    pub fingerprint: String,
}

impl WebhookPayload {
    /// Checks what serde cannot: a group has alerts and a key, and no label set is absurd (see
    /// [`MAX_LABELS`], [`MAX_LABEL_VALUE`], [`MAX_ANNOTATION_VALUE`]). Returns a message for the
    /// client.
    pub fn validate(&self) -> Result<(), String> {
        if self.group_key.trim().is_empty() {
            return Err("`groupKey` must not be empty".into());
        }
        if self.alerts.is_empty() {
            return Err("`alerts` must contain at least one alert".into());
        }
        check_labels("groupLabels", &self.group_labels, MAX_LABEL_VALUE)?;
        check_labels("commonLabels", &self.common_labels, MAX_LABEL_VALUE)?;
        check_labels(
            "commonAnnotations",
            &self.common_annotations,
            MAX_ANNOTATION_VALUE,
        )?;
        for (i, alert) in self.alerts.iter().enumerate() {
            check_labels(
                &format!("alerts[{i}].labels"),
                &alert.labels,
                MAX_LABEL_VALUE,
            )?;
            check_labels(
                &format!("alerts[{i}].annotations"),
                &alert.annotations,
                MAX_ANNOTATION_VALUE,
            )?;
        }
        Ok(())
    }

    /// Fills what a lenient sender may leave out, so later stages can rely on it.
    pub fn normalize(&mut self) {
        for alert in &mut self.alerts {
            if alert.fingerprint.is_empty() {
                alert.fingerprint = label_fingerprint(&alert.labels);
            }
        }
    }

    /// The alert name of the group: the common label, else the first alert's.
    pub fn alertname(&self) -> &str {
        self.common_labels
            .get("alertname")
            .or_else(|| self.alerts.iter().find_map(|a| a.labels.get("alertname")))
            .map_or("", String::as_str)
    }

    /// A label the whole group shares, else the first alert's value of it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.common_labels
            .get(name)
            .or_else(|| self.alerts.iter().find_map(|a| a.labels.get(name)))
            .map(String::as_str)
    }

    /// The key that makes a resend of the same notification a duplicate: a hash of the group key, the
    /// group status, and each alert's fingerprint, start time and status, sorted. The per-alert status
    /// is included so that a partial resolution (one alert of a firing group resolved) is news.
    pub fn dedup_key(&self) -> String {
        let mut alerts: Vec<String> = self
            .alerts
            .iter()
            .map(|a| {
                let starts = a.starts_at.format(&Rfc3339).unwrap_or_default();
                format!("{}|{}|{}", a.fingerprint, starts, a.status.as_str())
            })
            .collect();
        alerts.sort_unstable();
        let mut hasher = Sha256::new();
        hasher.update(self.group_key.as_bytes());
        hasher.update([0]);
        hasher.update(self.status.as_str().as_bytes());
        for alert in &alerts {
            hasher.update([0]);
            hasher.update(alert.as_bytes());
        }
        // 128 bits: no collision in any realistic number of groups, and a compact index.
        hex(&hasher.finalize()[..16])
    }

    /// Splits a group into one payload per alert, for users who want one analysis per alert.
    pub fn split_per_alert(&self) -> Vec<WebhookPayload> {
        self.alerts
            .iter()
            .map(|alert| WebhookPayload {
                group_key: format!("{}/{}", self.group_key, alert.fingerprint),
                status: alert.status,
                common_labels: alert.labels.clone(),
                common_annotations: alert.annotations.clone(),
                alerts: vec![alert.clone()],
                truncated_alerts: 0,
                ..self.clone()
            })
            .collect()
    }

    /// The earliest start of the group's alerts: when the incident began.
    pub fn started_at(&self) -> Option<OffsetDateTime> {
        self.alerts.iter().map(|a| a.starts_at).min()
    }
}

impl Alert {
    /// When the alert ended, or `None` while it fires (Alertmanager sends year 1 then).
    pub fn ended_at(&self) -> Option<OffsetDateTime> {
        self.ends_at.filter(|t| t.year() > 1)
    }

    /// The rule's PromQL expression, form-decoded from `g0.expr` of the generator URL.
    pub fn rule_expr(&self) -> Option<String> {
        let (_, query) = self.generator_url.split_once('?')?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
        pairs
            .into_iter()
            .find(|(k, _)| k == "g0.expr")
            .map(|(_, v)| v)
            .filter(|v| !v.trim().is_empty())
    }
}

/// Why a request body is not a payload we can take: broken JSON (400) or the wrong shape (422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("malformed JSON: {0}")]
    Syntax(String),
    #[error("{0}")]
    Shape(String),
}

impl From<serde_json::Error> for InputError {
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => Self::Syntax(e.to_string()),
            Category::Data => Self::Shape(e.to_string()),
        }
    }
}

/// serde_json reports some wrong types (a number where an enum belongs) as syntax errors. Well-formed
/// JSON is never a syntax error to the client, so check it on this (rare) path.
fn classify(body: &[u8], e: serde_json::Error) -> InputError {
    let well_formed = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    match InputError::from(e) {
        InputError::Syntax(m) if well_formed => InputError::Shape(m),
        other => other,
    }
}

/// The deepest nesting of arrays and objects accepted anywhere in a body. A webhook nests 4 deep;
/// serde skips unknown fields without a depth limit, so a deeper body would be stored and then
/// break every later reader that parses it as a JSON value.
pub const MAX_DEPTH: usize = 64;

/// Refuses a body nested deeper than [`MAX_DEPTH`], in one pass over its bytes (strings skipped).
fn check_depth(body: &[u8]) -> Result<(), InputError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(InputError::Syntax(format!(
                        "nested deeper than {MAX_DEPTH} levels"
                    )));
                }
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses, validates and normalizes an Alertmanager (or Grafana) webhook body.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookPayload, InputError> {
    check_depth(body)?;
    let mut payload: WebhookPayload =
        serde_json::from_slice(body).map_err(|e| classify(body, e))?;
    payload.validate().map_err(InputError::Shape)?;
    payload.normalize();
    Ok(payload)
}

/// The most labels (or annotations) one set may have. Prometheus' own default `label_limit` is
/// unlimited, but real alerts carry tens; thousands mean a broken sender.
pub const MAX_LABELS: usize = 512;
/// The longest label name or value, in bytes.
pub const MAX_LABEL_VALUE: usize = 16 * 1024;
/// The longest annotation value (descriptions can be long), in bytes.
pub const MAX_ANNOTATION_VALUE: usize = 64 * 1024;

fn check_labels(what: &str, labels: &Labels, max_value: usize) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "`{what}` has {} entries; at most {MAX_LABELS} are accepted",
            labels.len()
        ));
    }
    for (name, value) in labels {
        if name.len() > MAX_LABEL_VALUE {
            return Err(format!(
                "`{what}` has a name longer than {MAX_LABEL_VALUE} bytes"
            ));
        }
        if value.len() > max_value {
            let shown: String = name.chars().take(64).collect();
            return Err(format!(
                "`{what}.{shown}` is {} bytes long; at most {max_value} are accepted",
                value.len()
            ));
        }
    }
    Ok(())
}

/// One alert given by hand to `/analyze` or `aiops analyze`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManualAlert {
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub starts_at: Option<OffsetDateTime>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
}

impl ManualAlert {
    /// Wraps the alert into a one-alert firing group, so the pipeline sees one shape only.
    pub fn into_payload(self, now: OffsetDateTime) -> WebhookPayload {
        let fingerprint = label_fingerprint(&self.labels);
        let alertname = self.labels.get("alertname").cloned().unwrap_or_default();
        let alert = Alert {
            status: AlertStatus::Firing,
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at: self.starts_at.unwrap_or(now),
            ends_at: None,
            generator_url: self.generator_url,
            fingerprint: fingerprint.clone(),
        };
        WebhookPayload {
            version: "4".into(),
            group_key: format!("manual:{{alertname={alertname:?}}}/{fingerprint}"),
            truncated_alerts: 0,
            status: AlertStatus::Firing,
            receiver: "manual".into(),
            group_labels: Labels::from([("alertname".into(), alertname)]),
            common_labels: self.labels,
            common_annotations: self.annotations,
            external_url: String::new(),
            alerts: vec![alert],
        }
    }
}

/// `json` without the whitespace between its tokens; everything else (key order, unknown fields, number
/// spelling, escapes) stays byte for byte. Alertmanager sends compact JSON, but a person with `curl`
/// often posts an indented file, and the stored history need not keep the indentation. `json` must be
/// well-formed JSON (parse it first); anything else comes back unchanged.
pub fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            (in_string, escaped) = match (escaped, c) {
                (true, _) => (true, false),
                (false, '\\') => (true, true),
                (false, '"') => (false, false),
                _ => (true, false),
            };
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        } else {
            in_string = c == '"';
        }
        out.push(c);
    }
    out
}

/// Parses what `/analyze` takes: a whole webhook payload (it has `alerts`) or a single alert.
pub fn parse_analyze_input(body: &[u8], now: OffsetDateTime) -> Result<WebhookPayload, InputError> {
    check_depth(body)?;
    let value: serde_json::Value = serde_json::from_slice(body)?;
    if value.get("alerts").is_some() {
        return parse_webhook(body);
    }
    let alert = ManualAlert::deserialize(value).map_err(|e| InputError::Shape(e.to_string()))?;
    if alert
        .labels
        .get("alertname")
        .is_none_or(|n| n.trim().is_empty())
    {
        return Err(InputError::Shape("`labels.alertname` is required".into()));
    }
    let payload = alert.into_payload(now);
    payload.validate().map_err(InputError::Shape)?;
    Ok(payload)
}

/// A stable hash of a label set, used when a sender gives no fingerprint.
pub fn label_fingerprint(labels: &Labels) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in labels {
        hasher.update(k.as_bytes());
        hasher.update([0xff]);
        hasher.update(v.as_bytes());
        hasher.update([0xfe]);
    }
    hex(&hasher.finalize()[..8])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn depth_counts_arrays_and_objects_but_not_brackets_in_strings() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(check_depth(deep.as_bytes()).is_err());
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(check_depth(ok.as_bytes()).is_ok());
        let text = format!("{{\"a\": \"\\\"{}\"}}", "[".repeat(100));
        assert!(check_depth(text.as_bytes()).is_ok(), "{text}");
    }

    #[test]
    fn compact_json_drops_only_the_whitespace_between_tokens() {
        let pretty = "{\n  \"a\" : [ 1 ,\t2.50 ],\r\n  \"s\": \"two  words \\\" and \\\\\",\n  \"t\": \"\\\\\" , \"u\": { } }";
        let compact = compact_json(pretty);
        assert_eq!(
            compact,
            "{\"a\":[1,2.50],\"s\":\"two  words \\\" and \\\\\",\"t\":\"\\\\\",\"u\":{}}"
        );
        let before: serde_json::Value = serde_json::from_str(pretty).expect("valid");
        let after: serde_json::Value = serde_json::from_str(&compact).expect("still valid");
        assert_eq!(before, after);
    }

    use super::*;

    fn alert(fp: &str, status: AlertStatus) -> Alert {
        Alert {
            status,
            labels: Labels::from([("alertname".into(), "X".into())]),
            annotations: Labels::new(),
            starts_at: OffsetDateTime::UNIX_EPOCH,
            ends_at: None,
            generator_url: String::new(),
            fingerprint: fp.into(),
        }
    }

    fn payload(alerts: Vec<Alert>) -> WebhookPayload {
        WebhookPayload {
            version: "4".into(),
            group_key: "{}:{alertname=\"X\"}".into(),
            truncated_alerts: 0,
            status: AlertStatus::Firing,
            receiver: "aiops".into(),
            group_labels: Labels::new(),
            common_labels: Labels::new(),
            common_annotations: Labels::new(),
            external_url: String::new(),
            alerts,
        }
    }

    #[test]
    fn dedup_key_ignores_alert_order_but_not_alert_status() {
        let a = payload(vec![
            alert("a", AlertStatus::Firing),
            alert("b", AlertStatus::Firing),
        ]);
        let b = payload(vec![
            alert("b", AlertStatus::Firing),
            alert("a", AlertStatus::Firing),
        ]);
        assert_eq!(a.dedup_key(), b.dedup_key());
        let partly = payload(vec![
            alert("a", AlertStatus::Firing),
            alert("b", AlertStatus::Resolved),
        ]);
        assert_ne!(a.dedup_key(), partly.dedup_key());
    }

    #[test]
    fn rule_expr_is_form_decoded() {
        let mut a = alert("a", AlertStatus::Firing);
        a.generator_url =
            "http://p:9090/graph?g0.expr=up%7Bjob%3D%22api%22%7D+%3D%3D+0&g0.tab=1".into();
        assert_eq!(a.rule_expr().as_deref(), Some("up{job=\"api\"} == 0"));
        a.generator_url = "http://p:9090/graph".into();
        assert_eq!(a.rule_expr(), None);
    }

    #[test]
    fn missing_fingerprint_is_filled_from_labels() {
        let mut p = payload(vec![alert("", AlertStatus::Firing)]);
        p.normalize();
        assert_eq!(p.alerts[0].fingerprint.len(), 16);
        assert_eq!(
            p.alerts[0].fingerprint,
            label_fingerprint(&p.alerts[0].labels)
        );
    }

    #[test]
    fn split_gives_one_group_per_alert() {
        let p = payload(vec![
            alert("a", AlertStatus::Firing),
            alert("b", AlertStatus::Resolved),
        ]);
        let parts = p.split_per_alert();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].status, AlertStatus::Resolved);
        assert_ne!(parts[0].dedup_key(), parts[1].dedup_key());
    }

    #[test]
    fn body_errors_are_classified() {
        assert!(matches!(
            parse_webhook(b"{not json"),
            Err(InputError::Syntax(_))
        ));
        let shape = parse_webhook(b"{\"status\": 3}");
        assert!(matches!(shape, Err(InputError::Shape(_))), "{shape:?}");
        let empty = br#"{"groupKey":"k","status":"firing","alerts":[]}"#;
        assert!(matches!(parse_webhook(empty), Err(InputError::Shape(m)) if m.contains("alerts")));
    }

    #[test]
    fn analyze_takes_a_single_alert() {
        let body = br#"{"labels":{"alertname":"HighLoad","instance":"n1"}}"#;
        let p = parse_analyze_input(body, OffsetDateTime::UNIX_EPOCH).expect("parses");
        assert_eq!(p.alertname(), "HighLoad");
        assert_eq!(p.alerts.len(), 1);
        assert_eq!(p.alerts[0].starts_at, OffsetDateTime::UNIX_EPOCH);
        let nameless = br#"{"labels":{"instance":"n1"}}"#;
        assert!(matches!(
            parse_analyze_input(nameless, OffsetDateTime::UNIX_EPOCH),
            Err(InputError::Shape(_))
        ));
    }
}
