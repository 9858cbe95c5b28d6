//! The rule-based analyzer: the embedded default, and the LLM analyzer's fallback. Its rules are data
//! (`configs/rca-rules.toml`, built in, plus `rules.file`): alert patterns → cause, checks and
//! remediation. It matches a rule on the alert name and the metrics of the rule's expression, ranks
//! the context's evidence (the rule's most anomalous series, a new error template, correlated alerts,
//! down targets) and cites it.

use std::sync::LazyLock;
use std::time::Instant;

use aiops_model::{
    Analysis, Analyzer, AnalyzerInfo, Category, Context, Evidence, EvidenceRef, EvidenceSource,
    StageError, WebhookPayload,
};
use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// The built-in rules.
pub const BUILT_IN: &str = include_str!("../../../configs/rca-rules.toml");

/// The rules never claim more than this: a good LLM answer should be more sure than they are.
const MAX_CONFIDENCE: f32 = 0.6;
/// Evidence cited at most.
const CITED: usize = 6;

/// The `[rules]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// A TOML file of extra rules (same format as `configs/rca-rules.toml`). Empty: built-in only.
    pub file: String,
}

/// One rule; see the comments in `configs/rca-rules.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub family: String,
    pub category: String,
    pub confidence: f32,
    #[serde(default)]
    pub alertnames: Vec<String>,
    #[serde(default)]
    pub metrics: Vec<String>,
    #[serde(default)]
    pub expr: Vec<String>,
    pub cause: String,
    pub impact: String,
    #[serde(default)]
    pub checks: Vec<String>,
    pub remediation: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<Rule>,
}

fn category(name: &str) -> Option<Category> {
    Some(match name {
        "resource_saturation" => Category::ResourceSaturation,
        "crash_oom" => Category::CrashOom,
        "bad_deploy" => Category::BadDeploy,
        "dependency_failure" => Category::DependencyFailure,
        "network" => Category::Network,
        "capacity" => Category::Capacity,
        "unknown" => Category::Unknown,
        _ => return None,
    })
}

/// Parses and checks a rules file; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Rule>, String> {
    let file: File = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    for r in &file.rule {
        let problem = if category(&r.category).is_none() {
            Some(format!("category {:?} is not a known category", r.category))
        } else if !(0.0..=1.0).contains(&r.confidence) {
            Some("confidence must be between 0 and 1".to_owned())
        } else if r.remediation.is_empty() {
            Some("needs at least one remediation step".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(format!("{origin}: rule {:?}: {problem}", r.family));
        }
    }
    Ok(file.rule)
}

/// The built-in analyzer: deterministic, instant, and always available.
#[derive(Debug, Clone)]
pub struct RulesAnalyzer {
    rules: Vec<Rule>,
}

impl Default for RulesAnalyzer {
    fn default() -> Self {
        Self {
            rules: parse(BUILT_IN, "configs/rca-rules.toml (built in)")
                .unwrap_or_else(|e| unreachable!("the built-in rules are valid: {e}")),
        }
    }
}

impl RulesAnalyzer {
    /// The built-in rules with those of `config.file`: a rule of the same family replaces the
    /// built-in one; others are tried first.
    pub fn new(config: &RulesConfig) -> Result<Self, String> {
        let mut analyzer = Self::default();
        if config.file.is_empty() {
            return Ok(analyzer);
        }
        let text = std::fs::read_to_string(&config.file)
            .map_err(|e| format!("rules.file {}: {e}", config.file))?;
        let mine = parse(&text, &config.file)?;
        analyzer
            .rules
            .retain(|r| !mine.iter().any(|m| m.family == r.family));
        analyzer.rules.splice(0..0, mine);
        Ok(analyzer)
    }

    /// The best-matching rule: alert name 3 points, a metric 2, an expression word 1.
    fn best(&self, alertname: &str, exprs: &[String]) -> Option<&Rule> {
        let alertname = alertname.to_lowercase();
        let metrics: Vec<&str> = exprs.iter().flat_map(|e| identifiers(e)).collect();
        let text = exprs.join(" ").to_lowercase();
        let mut best: Option<(u32, &Rule)> = None;
        for rule in &self.rules {
            let mut score = 0;
            if rule
                .alertnames
                .iter()
                .any(|a| alertname.contains(&a.to_lowercase()))
            {
                score += 3;
            }
            if rule
                .metrics
                .iter()
                .any(|m| metrics.iter().any(|x| metric_matches(m, x)))
            {
                score += 2;
            }
            if rule.expr.iter().any(|w| text.contains(&w.to_lowercase())) {
                score += 1;
            }
            if score > 0 && best.is_none_or(|(s, _)| score > s) {
                best = Some((score, rule));
            }
        }
        best.map(|(_, r)| r)
            .or_else(|| self.rules.iter().find(|r| r.family == "generic"))
    }

    /// Classifies the group and answers with the matching rule, citing the ranked evidence.
    pub fn analyze_now(&self, payload: &WebhookPayload, context: &Context) -> Analysis {
        let started = Instant::now();
        let alertname = payload.alertname().to_owned();
        let mut exprs: Vec<String> = payload
            .alerts
            .iter()
            .filter_map(|a| a.rule_expr())
            .collect();
        exprs.sort_unstable();
        exprs.dedup();
        let rule = self.best(&alertname, &exprs);
        let fill = |text: &str| fill(text, payload, &alertname);

        let ranked = rank(context);
        let mut cause = rule.map_or_else(|| format!("{alertname} is firing."), |r| fill(&r.cause));
        let mut confidence = rule.map_or(0.1, |r| r.confidence);
        for (e, why) in &ranked {
            match why {
                Why::Anomaly => confidence += 0.1,
                Why::NewError => {
                    confidence += 0.1;
                    if let Some(t) = e.summary.lines().nth(1) {
                        cause.push_str(&format!(" A new error appeared with the incident: {t}"));
                    }
                }
                Why::Correlated => {
                    confidence += 0.05;
                    cause.push_str(" Other alerts fire on the same targets (see the evidence).");
                }
                Why::TargetDown | Why::Other => {}
            }
        }
        let evidence: Vec<EvidenceRef> = ranked
            .iter()
            .take(CITED)
            .map(|(e, why)| EvidenceRef {
                id: e.id.clone(),
                note: note(e, *why),
                query: e.query.clone(),
                finding: Some(e.summary.clone()),
            })
            .collect();

        let firing: Vec<&str> = payload
            .alerts
            .iter()
            .filter(|a| a.status == aiops_model::AlertStatus::Firing)
            .filter_map(|a| {
                a.labels
                    .get("instance")
                    .or_else(|| a.labels.get("pod"))
                    .map(String::as_str)
            })
            .collect();
        let scope = match payload.label("service").or_else(|| payload.label("job")) {
            Some(service) => format!(" on {service}"),
            None => String::new(),
        };
        let headline = payload
            .alerts
            .first()
            .and_then(|a| a.annotations.get("summary"))
            .cloned()
            .unwrap_or_else(|| format!("{alertname} is firing{scope}"));
        let summary = match firing.len() > 1 {
            true => format!(
                "{headline} ({} alerts firing: {})",
                firing.len(),
                firing.join(", ")
            ),
            false => headline,
        };
        let mut next_queries = exprs.clone();
        if let Some(r) = rule {
            next_queries.extend(r.checks.iter().map(|c| fill(c)));
        }
        next_queries.dedup();
        Analysis {
            summary,
            root_cause: cause,
            confidence: confidence.min(MAX_CONFIDENCE),
            category: rule
                .and_then(|r| category(&r.category))
                .unwrap_or(Category::Unknown),
            impact: rule.map_or_else(|| "Unknown.".to_owned(), |r| fill(&r.impact)),
            evidence,
            remediation: rule
                .map(|r| r.remediation.iter().map(|s| fill(s)).collect())
                .unwrap_or_default(),
            next_queries,
            analyzer: AnalyzerInfo {
                name: "rules".into(),
                rule: rule.map(|r| r.family.clone()),
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                ..AnalyzerInfo::default()
            },
        }
    }
}

#[async_trait]
impl Analyzer for RulesAnalyzer {
    async fn analyze(
        &self,
        payload: &WebhookPayload,
        context: &Context,
    ) -> Result<Analysis, StageError> {
        Ok(self.analyze_now(payload, context))
    }
}

/// The built-in rules' analysis of a group.
pub fn analyze_by_rules(payload: &WebhookPayload, context: &Context) -> Analysis {
    static DEFAULT: LazyLock<RulesAnalyzer> = LazyLock::new(RulesAnalyzer::default);
    DEFAULT.analyze_now(payload, context)
}

/// Why a piece of evidence matters, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    /// The rule's own graph, whose top series is the anomaly.
    Anomaly,
    /// A log template that appeared with the incident.
    NewError,
    /// Other alerts firing on the same targets.
    Correlated,
    /// A target of the alert is down.
    TargetDown,
    Other,
}

/// The context's evidence, strongest first. The context stage already ranked it; this lifts the
/// kinds of finding that point at a cause.
fn rank(context: &Context) -> Vec<(&Evidence, Why)> {
    let mut ranked: Vec<(&Evidence, Why)> = context
        .evidence
        .iter()
        .map(|e| {
            let why = if e.id.starts_with("expr-") && e.summary.starts_with("#1 ") {
                Why::Anomaly
            } else if e.source == EvidenceSource::Loki && e.summary.contains(", new]") {
                Why::NewError
            } else if e.id == "alerts" && e.summary.starts_with("#1 ") {
                Why::Correlated
            } else if e.id == "up" && e.summary.contains("min 0 ") {
                Why::TargetDown
            } else {
                Why::Other
            };
            (e, why)
        })
        .collect();
    // Stable: within a kind, the context stage's order stands.
    ranked.sort_by_key(|(_, why)| *why);
    ranked
}

fn note(e: &Evidence, why: Why) -> String {
    let first = match why {
        // For log templates the first line is a header; the finding is the top template.
        Why::NewError => e.summary.lines().nth(1),
        _ => e.summary.lines().next(),
    };
    let lead = match why {
        Why::Anomaly => "the most anomalous series of the rule",
        Why::NewError => "a log template new with the incident",
        Why::Correlated => "another alert firing on the same targets",
        Why::TargetDown => "a target is down",
        Why::Other => e.title.as_str(),
    };
    match first {
        Some(line) if !line.is_empty() => format!("{lead}: {line}"),
        _ => lead.to_owned(),
    }
}

/// Identifiers of a PromQL expression: metric names among them.
fn identifiers(expr: &str) -> Vec<&str> {
    static IDENT: LazyLock<Regex> = LazyLock::new(|| {
        // Strings and range selectors (`[5m]`) are skipped; what is left are identifiers.
        Regex::new(r#""[^"]*"|\[[^\]]*\]|([a-zA-Z_:][a-zA-Z0-9_:]*)"#)
            .unwrap_or_else(|e| unreachable!("valid regex: {e}"))
    });
    IDENT
        .captures_iter(expr)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect()
}

fn metric_matches(pattern: &str, name: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(suffix), _) if suffix.ends_with('*') => name.contains(&suffix[..suffix.len() - 1]),
        (Some(suffix), _) => name.ends_with(suffix),
        (None, Some(prefix)) => name.starts_with(prefix),
        (None, None) => name == pattern,
    }
}

/// The labels `{label}` placeholders name.
const PLACEHOLDERS: [&str; 6] = [
    "instance",
    "pod",
    "namespace",
    "service",
    "job",
    "container",
];

/// The group's distinct values of a label (or `<label>` when it has none).
fn label_values(payload: &WebhookPayload, label: &str) -> Vec<String> {
    let mut values: Vec<&str> = payload
        .alerts
        .iter()
        .filter_map(|a| a.labels.get(label).map(String::as_str))
        .collect();
    values.sort_unstable();
    values.dedup();
    match (values.is_empty(), label) {
        // A service is often only named by its job.
        (true, "service") => vec![payload.label("job").unwrap_or("<service>").to_owned()],
        (true, _) => vec![format!("<{label}>")],
        (false, _) => values.into_iter().map(str::to_owned).collect(),
    }
}

/// `{label}` placeholders filled with the group's label values. With several values (a group of
/// alerts), a PromQL matcher `label="{label}"` becomes `label=~"a|b"`, a command in backticks gets
/// the first value (a command line runs on one host), and prose lists them all.
fn fill(text: &str, payload: &WebhookPayload, alertname: &str) -> String {
    let mut out = text.to_owned();
    for label in PLACEHOLDERS {
        let placeholder = format!("{{{label}}}");
        if !out.contains(&placeholder) {
            continue;
        }
        let values = label_values(payload, label);
        if values.len() > 1 {
            let alternatives = values
                .iter()
                .map(|v| v.replace('\\', "\\\\").replace('"', "\\\""))
                .collect::<Vec<_>>()
                .join("|");
            out = out.replace(
                &format!("{label}=\"{placeholder}\""),
                &format!("{label}=~\"{alternatives}\""),
            );
        }
        out = out
            .split('`')
            .enumerate()
            .map(|(i, part)| match i % 2 {
                1 => part.replace(&placeholder, &values[0]),
                _ => part.replace(&placeholder, &values.join(", ")),
            })
            .collect::<Vec<_>>()
            .join("`");
    }
    out.replace("{alertname}", alertname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_patterns() {
        assert!(metric_matches("up", "up") && !metric_matches("up", "upstream"));
        assert!(metric_matches("node_load*", "node_load5"));
        assert!(metric_matches("*_errors_total", "api_errors_total"));
        assert!(metric_matches("*_queue_*", "jobs_queue_depth"));
        assert_eq!(
            identifiers(r#"sum(rate(x_total{status=~"5.."}[5m])) by (job) > 0.05"#),
            ["sum", "rate", "x_total", "status", "by", "job"]
        );
    }

    #[test]
    fn the_built_in_rules_parse_and_a_bad_one_is_named() {
        let rules = RulesAnalyzer::default().rules;
        assert!(rules.len() >= 10);
        let err = parse(
            "[[rule]]\nfamily = \"x\"\ncategory = \"nope\"\nconfidence = 0.3\ncause = \"c\"\nimpact = \"i\"\nremediation = [\"r\"]\n",
            "mine.toml",
        )
        .expect_err("bad category");
        assert!(err.contains("mine.toml") && err.contains("\"x\""), "{err}");
    }
    #[test]
    fn a_group_of_alerts_fills_queries_commands_and_prose_each_in_its_way() {
        let raw =
            include_str!("../../../tests/fixtures/alertmanager/target-down-group-firing.json");
        let payload = aiops_model::alertmanager::parse_webhook(raw.as_bytes()).expect("parses");
        assert_eq!(
            fill(r#"up{instance="{instance}"}"#, &payload, "TargetDown"),
            r#"up{instance=~"127.0.0.1:19997|127.0.0.1:19998"}"#
        );
        assert_eq!(
            fill(
                "Run `curl http://{instance}/metrics` on {instance} ({job}).",
                &payload,
                "x"
            ),
            "Run `curl http://127.0.0.1:19997/metrics` on 127.0.0.1:19997, 127.0.0.1:19998 (api)."
        );
        assert_eq!(
            fill("{pod} {alertname}", &payload, "TargetDown"),
            "<pod> TargetDown"
        );
    }
}
