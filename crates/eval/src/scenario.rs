//! A scenario on disk: `alert.json`, `metrics.om`, `logs.jsonl` and `expect.toml` in a folder of
//! its own, with every time written relative to the run, so the data is always fresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aiops_model::WebhookPayload;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One incident, as loaded.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub dir: PathBuf,
    alert: Value,
    metrics: String,
    logs: Vec<LogRecord>,
    pub expect: Expect,
}

/// `expect.toml`: what an on-call engineer needs to see, and what the analysis should conclude.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// One or two sentences: what happened, as a postmortem would say.
    pub description: String,
    /// The expected `category` of the analysis.
    pub category: String,
    /// The component, process, dependency or change that caused it: alternative names, any of which
    /// the analysis' root cause or summary must name.
    pub culprit: Vec<String>,
    /// Facts the evidence must show, each a list of alternatives.
    #[serde(default, rename = "fact")]
    pub facts: Vec<Fact>,
    /// Strings that occur in the data and must never leave aiops.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Free-form tags: `red_herring`, `group`, `recording_rule`, `secrets`, a family, …
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A fact: found when any of `any` is in the evidence. Case-insensitive; an alternative that is a
/// number matches a number in the evidence equal to it at its written precision.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fact {
    /// What the fact is, for the report.
    pub what: String,
    pub any: Vec<String>,
}

/// A line of `logs.jsonl`: `{"ts": "-12m30s", "labels": {...}, "line": "..."}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogRecord {
    ts: String,
    labels: BTreeMap<String, String>,
    line: String,
}

/// A log line at an absolute time.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub ts_ns: i64,
    pub labels: BTreeMap<String, String>,
    pub line: String,
}

/// Loads every scenario under `dir` (one folder each), in name order.
pub fn load_all(dir: &Path) -> Result<Vec<Scenario>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("expect.toml").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(format!(
            "no scenario under {} (a folder with expect.toml)",
            dir.display()
        ));
    }
    dirs.iter().map(|d| Scenario::load(d)).collect()
}

impl Scenario {
    pub fn load(dir: &Path) -> Result<Self, String> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .map_err(|e| format!("{name}: cannot read {file}: {e}"))
        };
        let alert: Value = serde_json::from_str(&read("alert.json")?)
            .map_err(|e| format!("{name}: alert.json: {e}"))?;
        let expect: Expect = toml::from_str(&read("expect.toml")?)
            .map_err(|e| format!("{name}: expect.toml: {e}"))?;
        let logs = match dir.join("logs.jsonl").is_file() {
            true => read("logs.jsonl")?
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    serde_json::from_str(l)
                        .map_err(|e| format!("{name}: logs.jsonl line {}: {e}", i + 1))
                })
                .collect::<Result<_, _>>()?,
            false => Vec::new(),
        };
        let scenario = Self {
            metrics: read("metrics.om")?,
            name,
            dir: dir.to_owned(),
            alert,
            logs,
            expect,
        };
        // Fail at load, not halfway through a run.
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        scenario.payload(now)?;
        scenario.openmetrics(now)?;
        scenario.log_entries(now)?;
        Ok(scenario)
    }

    /// The webhook, its relative `startsAt`/`endsAt` made absolute against `now`.
    pub fn payload(&self, now: OffsetDateTime) -> Result<WebhookPayload, String> {
        let mut alert = self.alert.clone();
        absolute_times(&mut alert, now).map_err(|e| format!("{}: alert.json: {e}", self.name))?;
        let body = serde_json::to_vec(&alert).map_err(|e| e.to_string())?;
        aiops_model::alertmanager::parse_webhook(&body)
            .map_err(|e| format!("{}: alert.json: {e}", self.name))
    }

    /// `metrics.om` with each sample's relative timestamp (seconds, `-7200`) made absolute.
    pub fn openmetrics(&self, now: OffsetDateTime) -> Result<String, String> {
        let now = now.unix_timestamp();
        let mut out = String::with_capacity(self.metrics.len() + self.metrics.len() / 4);
        for (i, line) in self.metrics.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                out.push_str(line);
            } else {
                let (sample, offset) = line.rsplit_once(' ').ok_or_else(|| {
                    format!("{}: metrics.om line {}: no timestamp", self.name, i + 1)
                })?;
                let offset: f64 = offset.parse().map_err(|_| {
                    format!(
                        "{}: metrics.om line {}: the timestamp {offset:?} is not a number of seconds relative to the run",
                        self.name,
                        i + 1
                    )
                })?;
                out.push_str(sample);
                out.push(' ');
                out.push_str(&format!("{}", now as f64 + offset));
            }
            out.push('\n');
        }
        if !out.trim_end().ends_with("# EOF") {
            out.push_str("# EOF\n");
        }
        Ok(out)
    }

    /// The `# TYPE` and `# HELP` lines of `metrics.om`: an exposition with no samples, for Prometheus
    /// to scrape so that `/api/v1/metadata` answers as on a live server.
    pub fn metadata_exposition(&self) -> String {
        self.metrics
            .lines()
            .filter(|l| l.starts_with("# TYPE ") || l.starts_with("# HELP "))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The log lines at absolute times, oldest first.
    pub fn log_entries(&self, now: OffsetDateTime) -> Result<Vec<LogEntry>, String> {
        let mut entries = self
            .logs
            .iter()
            .map(|r| {
                let at =
                    relative(&r.ts, now).map_err(|e| format!("{}: logs.jsonl: {e}", self.name))?;
                Ok(LogEntry {
                    ts_ns: i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX),
                    labels: r.labels.clone(),
                    line: r.line.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        entries.sort_by_key(|e| e.ts_ns);
        Ok(entries)
    }

    /// Every text of the scenario's data (metrics and logs), for `--check`.
    pub fn raw_data(&self) -> String {
        let mut text = self.metrics.clone();
        for r in &self.logs {
            text.push('\n');
            text.push_str(&r.line);
            for (k, v) in &r.labels {
                text.push_str(&format!(" {k}={v}"));
            }
        }
        text
    }

    /// The alert payload as written, for `--check`.
    pub fn alert_text(&self) -> String {
        self.alert.to_string()
    }

    /// The log lines alone, for `--check`.
    pub fn log_text(&self) -> String {
        self.logs.iter().map(|r| format!("{}\n", r.line)).collect()
    }
}

/// Replaces relative `startsAt` and `endsAt` values (`-10m`, `now`) anywhere in the payload.
fn absolute_times(value: &mut Value, now: OffsetDateTime) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), &*v) {
                    ("startsAt" | "endsAt", Value::String(s)) if is_relative(s) => {
                        let at = relative(s, now)?;
                        *v = Value::String(at.format(&Rfc3339).map_err(|e| e.to_string())?);
                    }
                    _ => absolute_times(v, now)?,
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                absolute_times(v, now)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn is_relative(s: &str) -> bool {
    s == "now" || s.starts_with('-') || s.starts_with('+')
}

/// `now` moved by `offset`: `now`, or a sign and `h`/`m`/`s` parts (`-1h30m`, `-12m30s`, `+90s`).
pub fn relative(offset: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if offset == "now" {
        return Ok(now);
    }
    let bad = || format!("{offset:?} is not a time relative to the run (like -10m or -1h30m)");
    let (sign, rest) = match offset.split_at_checked(1) {
        Some(("-", rest)) => (-1.0, rest),
        Some(("+", rest)) => (1.0, rest),
        _ => return Err(bad()),
    };
    let mut seconds = 0.0;
    let mut number = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' => {
                let n: f64 = number.parse().map_err(|_| bad())?;
                seconds += n * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                number.clear();
            }
            _ => return Err(bad()),
        }
    }
    if !number.is_empty() || rest.is_empty() {
        return Err(bad());
    }
    Ok(now + time::Duration::seconds_f64(sign * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_hours_minutes_and_seconds() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::hours(10);
        let at = |s: &str| relative(s, now).map(|t| (t - now).whole_seconds());
        assert_eq!(at("-10m"), Ok(-600));
        assert_eq!(at("-12m30s"), Ok(-750));
        assert_eq!(at("+1h"), Ok(3600));
        assert_eq!(at("now"), Ok(0));
        assert!(at("10m").is_err() && at("-10").is_err() && at("-").is_err() && at("-5d").is_err());
    }

    #[test]
    fn sample_timestamps_become_absolute_and_the_file_ends_with_eof() {
        let scenario = Scenario {
            name: "t".into(),
            dir: PathBuf::new(),
            alert: Value::Null,
            metrics: "# TYPE up gauge\nup{instance=\"a b\"} 1 -60\nup{instance=\"a b\"} 0 -30.5\n"
                .into(),
            logs: Vec::new(),
            expect: toml::from_str("description='d'\ncategory='network'\nculprit=['x']")
                .expect("expect"),
        };
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).expect("time");
        let om = scenario.openmetrics(now).expect("rewritten");
        assert_eq!(
            om,
            "# TYPE up gauge\nup{instance=\"a b\"} 1 999940\nup{instance=\"a b\"} 0 999969.5\n# EOF\n"
        );
        assert_eq!(scenario.metadata_exposition(), "# TYPE up gauge\n");
    }
}
