//! The rule-based analyzer: the embedded default, and the LLM analyzer's fallback. It reasons from
//! the context's typed facts (`aiops_model::facts`), never from its rendered text: each fact votes
//! for a category with a weight, the alert's shape (the best-matching rule) adds a prior, and the
//! strongest hypothesis answers, naming its culprit and citing the facts it rests on. Weights, the
//! hypotheses' wording and the rules are data (`configs/rca-rules.toml`, built in, plus
//! `rules.file`).

use std::sync::LazyLock;
use std::time::Instant;

use aiops_model::{
    Analysis, Analyzer, AnalyzerInfo, Category, Context, EvidenceRef, Fact, Finding, StageError,
    WebhookPayload,
};
use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// The built-in rules.
pub const BUILT_IN: &str = include_str!("../../../configs/rca-rules.toml");

/// The rules never claim more than this: a good LLM answer should be more sure than they are.
const MAX_CONFIDENCE: f32 = 0.8;
/// Evidence cited at most.
const CITED: usize = 6;
/// Facts that tell more of the story, named in the root cause, at most.
const SUPPORTING: usize = 2;
/// Remediation steps, at most.
const MAX_STEPS: usize = 6;
/// Next queries, at most.
const MAX_QUERIES: usize = 6;
/// Alternatives listed, at most.
const MAX_ALTERNATIVES: usize = 3;

/// The `[rules]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// A TOML file of extra rules, weights and hypotheses (same format as
    /// `configs/rca-rules.toml`). Empty: built-in only.
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

/// A fact's vote for a category: `[[weight]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weight {
    /// The fact's kind (`saturation`, `dependency_failure`, ...).
    pub fact: String,
    /// Qualifiers the fact must all carry (`symptom=refused`, `resource=cpu`, `related`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metric name patterns, one of which the fact's metric must match (when given).
    #[serde(default)]
    pub metrics: Vec<String>,
    pub category: String,
    pub weight: f64,
}

impl Weight {
    fn matches(&self, fact: &Fact) -> bool {
        if self.fact != fact.kind() {
            return false;
        }
        let tags = fact.tags();
        self.tags.iter().all(|t| tags.contains(t))
            && (self.metrics.is_empty()
                || fact
                    .metric()
                    .is_some_and(|m| self.metrics.iter().any(|p| metric_matches(p, m))))
    }

    /// How specific the weight is: a fact votes only through its most specific matching weights
    /// (`saturation` with `resource=replicas` overrides plain `saturation`).
    fn specificity(&self) -> usize {
        self.tags.len() + usize::from(!self.metrics.is_empty())
    }

    fn same(&self, other: &Self) -> bool {
        self.fact == other.fact
            && self.tags == other.tags
            && self.metrics == other.metrics
            && self.category == other.category
    }
}

/// How a category's answer reads: `[[hypothesis]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HypothesisText {
    pub category: String,
    pub cause: String,
    pub impact: String,
    pub remediation: Vec<String>,
}

/// `[scoring]`: how timing and the alert's shape count.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scoring {
    /// The points the best-matching rule's category gets from the alert's shape alone.
    pub rule_weight: f64,
    /// A fact that began before the incident (a cause comes first) counts this many times.
    pub precedes: f64,
    /// A fact that began more than `follows_after_secs` after the alert started counts this many
    /// times (it followed the incident).
    pub follows: f64,
    pub follows_after_secs: i64,
    /// A log template that is not new counts this many times.
    pub old_template: f64,
    /// The points from which a fact is a cause the answer names (below: a symptom).
    pub cause_from: f64,
    /// The winning score at which confidence nears its top (confidence grows as
    /// `1 - exp(-score / confident_at)`, times the winner's share of all scores).
    pub confident_at: f64,
}

impl Default for Scoring {
    fn default() -> Self {
        Self {
            rule_weight: 1.5,
            precedes: 1.2,
            follows: 0.5,
            follows_after_secs: 600,
            old_template: 0.6,
            cause_from: 1.0,
            confident_at: 5.0,
        }
    }
}

impl Scoring {
    /// What a fact counts for its timing against the alert's start: events before the incident
    /// (more than its lead of 5 minutes) count more, those long after less; states (a
    /// saturation, a shared label, down targets) count as they are.
    fn strength(&self, fact: &Fact, alert_at: Option<i64>) -> f64 {
        let event = matches!(
            fact,
            Fact::Change { .. }
                | Fact::LogTemplate { .. }
                | Fact::DependencyFailure { .. }
                | Fact::Anomaly { .. }
                | Fact::Termination { .. }
        );
        let mut strength = 1.0;
        if let Fact::LogTemplate { new: false, .. } = fact {
            strength *= self.old_template;
        }
        if let (true, Some(at), Some(alert)) = (event, fact.at(), alert_at) {
            if at < alert - 300 {
                strength *= self.precedes;
            } else if at > alert + self.follows_after_secs {
                strength *= self.follows;
            }
        }
        strength
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<Rule>,
    #[serde(default)]
    weight: Vec<Weight>,
    #[serde(default)]
    hypothesis: Vec<HypothesisText>,
    #[serde(default)]
    scoring: Option<Scoring>,
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

/// The fact kinds a weight can name.
const FACT_KINDS: &[&str] = &[
    "saturation",
    "change",
    "log_template",
    "dependency_failure",
    "anomaly",
    "peer_contrast",
    "common_factor",
    "target_down",
    "termination",
    "lag",
    "error_ratio",
    "latency_shift",
];

/// A parsed rules file.
#[derive(Debug, Clone, Default)]
pub struct RulesFile {
    pub rules: Vec<Rule>,
    pub weights: Vec<Weight>,
    pub hypotheses: Vec<HypothesisText>,
    pub scoring: Option<Scoring>,
}

/// Parses and checks a rules file; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<RulesFile, String> {
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
    for w in &file.weight {
        if !FACT_KINDS.contains(&w.fact.as_str()) {
            return Err(format!(
                "{origin}: weight: fact {:?} is not one of {}",
                w.fact,
                FACT_KINDS.join(", ")
            ));
        }
        if category(&w.category).is_none() {
            return Err(format!(
                "{origin}: weight for {:?}: category {:?} is not a known category",
                w.fact, w.category
            ));
        }
        if !w.weight.is_finite() || w.weight < 0.0 {
            return Err(format!(
                "{origin}: weight for {:?}: the weight must be a number from 0",
                w.fact
            ));
        }
    }
    for h in &file.hypothesis {
        if category(&h.category).is_none() || h.remediation.is_empty() {
            return Err(format!(
                "{origin}: hypothesis {:?}: needs a known category and at least one remediation step",
                h.category
            ));
        }
    }
    Ok(RulesFile {
        rules: file.rule,
        weights: file.weight,
        hypotheses: file.hypothesis,
        scoring: file.scoring,
    })
}

/// The built-in analyzer: deterministic, instant, and always available.
#[derive(Debug, Clone)]
pub struct RulesAnalyzer {
    rules: Vec<Rule>,
    weights: Vec<Weight>,
    hypothesis: Vec<HypothesisText>,
    scoring: Scoring,
}

impl Default for RulesAnalyzer {
    fn default() -> Self {
        let file = parse(BUILT_IN, "configs/rca-rules.toml (built in)")
            .unwrap_or_else(|e| unreachable!("the built-in rules are valid: {e}"));
        Self {
            rules: file.rules,
            weights: file.weights,
            hypothesis: file.hypotheses,
            scoring: file.scoring.unwrap_or_default(),
        }
    }
}

impl RulesAnalyzer {
    /// The built-in rules with those of `config.file`: a rule of the same family, a weight of the
    /// same fact, tags, metrics and category, a hypothesis of the same category replace the
    /// built-in one; other rules are tried first, other weights add; `[scoring]` replaces.
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
            .retain(|r| !mine.rules.iter().any(|m| m.family == r.family));
        analyzer.rules.splice(0..0, mine.rules);
        analyzer
            .weights
            .retain(|w| !mine.weights.iter().any(|m| m.same(w)));
        analyzer.weights.extend(mine.weights);
        analyzer
            .hypothesis
            .retain(|h| !mine.hypotheses.iter().any(|m| m.category == h.category));
        analyzer.hypothesis.extend(mine.hypotheses);
        if let Some(scoring) = mine.scoring {
            analyzer.scoring = scoring;
        }
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

    /// Classifies the group: a hypothesis per category scored from the context's facts (the weights
    /// of the rules file) plus the alert's shape (the best rule), and answers with the strongest,
    /// naming its culprit and citing the facts it rests on.
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
        let rule_category = rule.and_then(|r| category(&r.category));
        let alert_at = payload
            .alerts
            .iter()
            .map(|a| a.starts_at.unix_timestamp())
            .min();
        let hypotheses = self.hypotheses(context, rule_category, alert_at);
        let winner = hypotheses.first();
        let chosen = winner.map_or(rule_category.unwrap_or(Category::Unknown), |h| h.category);
        // A symptom (an error ratio, a latency) is no cause to name: then the alert's shape speaks.
        let primary = winner
            .and_then(|h| h.facts.first())
            .filter(|p| p.points >= self.scoring.cause_from);
        let supporting = supporting(context, primary, chosen, self, alert_at);
        let hypothesis = self
            .hypothesis
            .iter()
            .find(|h| category(&h.category) == Some(chosen));
        let culprit = primary
            .and_then(|p| p.finding.fact.culprit())
            .unwrap_or_else(|| alertname.clone());
        let fill = |text: &str| {
            let text = match primary {
                Some(p) => text
                    .replace("{fact}", &p.finding.fact.describe())
                    .replace("{culprit}", &culprit),
                None => text.to_owned(),
            };
            fill(&text, payload, &alertname)
        };

        let mut cause = match (primary, hypothesis) {
            (Some(_), Some(h)) => fill(&h.cause),
            _ => rule.map_or_else(|| format!("{alertname} is firing."), |r| fill(&r.cause)),
        };
        if primary.is_none() && supporting.is_empty() {
            // The absence of a fact is said, not left to be guessed.
            cause = format!(
                "{} No fact established from the evidence points at a cause beyond the alert's own signal.",
                cause.trim_end_matches('.').to_owned() + "."
            );
        }
        if !supporting.is_empty() {
            let with: Vec<String> = supporting.iter().map(|f| f.fact.describe()).collect();
            cause = format!(
                "{} With it: {}.",
                cause.trim_end_matches('.').to_owned() + ".",
                with.join("; ")
            );
        }
        let rule_agrees = rule_category == Some(chosen);
        let impact = match (primary, hypothesis) {
            (Some(_), Some(h)) if !rule_agrees => fill(&h.impact),
            _ => rule.map_or_else(|| "Unknown.".to_owned(), |r| fill(&r.impact)),
        };
        let mut remediation: Vec<String> = match (primary, hypothesis) {
            (Some(_), Some(h)) => h.remediation.iter().map(|s| fill(s)).collect(),
            _ => Vec::new(),
        };
        if rule_agrees || remediation.is_empty() {
            remediation.extend(
                rule.iter()
                    .flat_map(|r| r.remediation.iter().map(|s| fill(s))),
            );
        }
        remediation.dedup();
        remediation.truncate(MAX_STEPS);

        let evidence = cite(context, winner, &supporting);
        let mut next_queries = exprs.clone();
        if let Some(r) = rule.filter(|_| rule_agrees) {
            next_queries.extend(r.checks.iter().map(|c| fill(c)));
        }
        for e in &evidence {
            if let Some(q) = &e.query
                && !next_queries.contains(q)
                && next_queries.len() < MAX_QUERIES
            {
                next_queries.push(q.clone());
            }
        }
        let total: f64 = hypotheses.iter().map(|h| h.score).sum();
        // With no fact behind the answer, the rule's own confidence; with facts, how strong the
        // winner is and how much of the case it holds.
        let shape_only = winner.is_none_or(|w| w.facts.is_empty());
        let confidence = match (shape_only, winner) {
            (false, Some(w)) => {
                let agree = w.score / total.max(f64::EPSILON);
                0.15 + 0.75 * agree * (1.0 - (-w.score / self.scoring.confident_at).exp())
            }
            _ => rule.map_or(0.1, |r| f64::from(r.confidence)),
        };
        let alternatives = hypotheses
            .iter()
            .skip(1)
            .take(MAX_ALTERNATIVES)
            .map(|h| {
                let why = h.facts.first().map_or_else(
                    || "the alert's shape alone".to_owned(),
                    |f| f.finding.fact.describe(),
                );
                format!(
                    "{}: scored {} against {} — {why}",
                    h.category.as_str(),
                    round(h.score),
                    round(winner.map_or(0.0, |w| w.score)),
                )
            })
            .collect();
        Analysis {
            summary: summary(payload, &alertname),
            root_cause: cause,
            confidence: (confidence as f32).clamp(0.05, MAX_CONFIDENCE),
            category: chosen,
            impact,
            evidence,
            remediation,
            next_queries,
            alternatives,
            analyzer: AnalyzerInfo {
                name: "rules".into(),
                rule: rule.map(|r| r.family.clone()),
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                ..AnalyzerInfo::default()
            },
            evidence_digest: None,
        }
    }

    /// The category a fact suggests most, with its points (its best weight times its timing).
    pub fn best_category(&self, fact: &Fact, alert_at: Option<i64>) -> Option<(Category, f64)> {
        self.votes(fact, alert_at)
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The categories a fact votes for, each with its points: through its most specific matching
    /// weights, the best per category, times its timing.
    fn votes(&self, fact: &Fact, alert_at: Option<i64>) -> Vec<(Category, f64)> {
        let strength = self.scoring.strength(fact, alert_at);
        let matching: Vec<&Weight> = self.weights.iter().filter(|w| w.matches(fact)).collect();
        let most = matching.iter().map(|w| w.specificity()).max().unwrap_or(0);
        let mut votes: Vec<(Category, f64)> = Vec::new();
        for w in matching.into_iter().filter(|w| w.specificity() == most) {
            let Some(c) = category(&w.category) else {
                continue;
            };
            let points = w.weight * strength;
            match votes.iter_mut().find(|(vc, _)| *vc == c) {
                Some(v) => v.1 = v.1.max(points),
                None => votes.push((c, points)),
            }
        }
        votes.retain(|(_, p)| *p > 0.0);
        votes
    }

    /// The hypotheses, strongest first: for each category, the points of the facts that vote for
    /// it (a fact's best weight for the category, times its timing) and the alert shape's prior.
    pub fn hypotheses<'a>(
        &self,
        context: &'a Context,
        rule_category: Option<Category>,
        alert_at: Option<i64>,
    ) -> Vec<Hypothesis<'a>> {
        let mut by_category: Vec<Hypothesis<'a>> = Vec::new();
        for finding in context.findings() {
            for (c, points) in self.votes(finding.fact, alert_at) {
                let h = match by_category.iter_mut().position(|h| h.category == c) {
                    Some(i) => &mut by_category[i],
                    None => {
                        by_category.push(Hypothesis {
                            category: c,
                            score: 0.0,
                            facts: Vec::new(),
                        });
                        let last = by_category.len() - 1;
                        &mut by_category[last]
                    }
                };
                h.score += points;
                h.facts.push(Scored { finding, points });
            }
        }
        if let Some(c) = rule_category.filter(|c| *c != Category::Unknown) {
            match by_category.iter_mut().find(|h| h.category == c) {
                Some(h) => h.score += self.scoring.rule_weight,
                None => by_category.push(Hypothesis {
                    category: c,
                    score: self.scoring.rule_weight,
                    facts: Vec::new(),
                }),
            }
        }
        for h in &mut by_category {
            // The strongest fact first; on a tie, the earlier one (causes come first).
            // Then by evidence id and name: answers arrive in any order, the analysis must not
            // depend on it.
            h.facts.sort_by(|a, b| {
                b.points
                    .total_cmp(&a.points)
                    .then_with(|| a.finding.fact.at().cmp(&b.finding.fact.at()))
                    .then_with(|| a.finding.evidence.cmp(b.finding.evidence))
                    .then_with(|| a.finding.fact.culprit().cmp(&b.finding.fact.culprit()))
            });
            // A culprit counts once, with its strongest fact; by its entity (`invoice-processor`
            // and `invoice-processor (topic="orders")` are one).
            let mut seen: Vec<Option<String>> = Vec::new();
            let prior = h.score - h.facts.iter().map(|f| f.points).sum::<f64>();
            h.score = prior;
            for f in &h.facts {
                let culprit = f
                    .finding
                    .fact
                    .culprit()
                    .map(|c| c.split(" (").next().unwrap_or(&c).to_owned());
                if !seen.contains(&culprit) {
                    h.score += f.points;
                    seen.push(culprit);
                }
            }
        }
        // On a tie, the alert's shape decides.
        by_category.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| {
                    (Some(b.category) == rule_category).cmp(&(Some(a.category) == rule_category))
                })
                .then_with(|| a.category.as_str().cmp(b.category.as_str()))
        });
        by_category
    }
}

/// One category's case: its score and the facts that make it, strongest first.
#[derive(Debug, Clone)]
pub struct Hypothesis<'a> {
    pub category: Category,
    pub score: f64,
    pub facts: Vec<Scored<'a>>,
}

/// A fact and what it adds to a hypothesis.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    pub finding: Finding<'a>,
    pub points: f64,
}

fn round(v: f64) -> String {
    format!("{:.1}", (v * 10.0).round() / 10.0)
}

/// The summary: the rule's own headline and the firing targets.
fn summary(payload: &WebhookPayload, alertname: &str) -> String {
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
    match firing.len() > 1 {
        true => format!(
            "{headline} ({} alerts firing: {})",
            firing.len(),
            firing.join(", ")
        ),
        false => headline,
    }
}

/// Facts that name more of the story than the primary one: what else votes for the chosen
/// category under another name, a change, a series born with the incident or a related one that
/// moved, a log template that grew. At most [`SUPPORTING`].
fn supporting<'a>(
    context: &'a Context,
    primary: Option<&Scored<'a>>,
    chosen: Category,
    rules: &RulesAnalyzer,
    alert_at: Option<i64>,
) -> Vec<Finding<'a>> {
    let primary_name = primary.and_then(|p| p.finding.fact.culprit());
    let mut candidates: Vec<(f64, Finding<'a>)> = context
        .findings()
        .filter(|f| primary.is_none_or(|p| !std::ptr::eq(p.finding.fact, f.fact)))
        .filter(|f| f.fact.culprit().is_some() && f.fact.culprit() != primary_name)
        .filter_map(|f| {
            let timing = rules.scoring.strength(f.fact, alert_at);
            let vote = rules
                .votes(f.fact, alert_at)
                .into_iter()
                .find(|(c, _)| *c == chosen)
                .map_or(0.0, |(_, p)| p / timing);
            let telling = match f.fact {
                Fact::Change { .. } => 1.0,
                Fact::Saturation { .. }
                | Fact::Termination { .. }
                | Fact::DependencyFailure { .. } => 0.7,
                Fact::Anomaly { born: true, .. } => 0.8,
                Fact::Anomaly { related: true, .. } => 0.6,
                Fact::LogTemplate { new: false, .. } => 0.5,
                Fact::LogTemplate { new: true, .. } => 0.3,
                _ => 0.0,
            };
            let score = (vote + telling) * timing;
            (score > 0.0).then_some((score, f))
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.evidence.cmp(b.1.evidence))
            .then_with(|| a.1.fact.culprit().cmp(&b.1.fact.culprit()))
    });
    let mut out: Vec<Finding<'a>> = Vec::new();
    for (_, f) in candidates {
        if out.len() == SUPPORTING {
            break;
        }
        // One fact per culprit, one per kind of fact of one evidence item (three pods of one
        // rollout are one change), and one per event (one line two leads found is one fact).
        let same = |o: &Finding<'_>| {
            o.fact.culprit() == f.fact.culprit()
                || (o.fact.kind() == f.fact.kind()
                    && (o.evidence == f.evidence
                        || (o.fact.at().is_some()
                            && o.fact.at() == f.fact.at()
                            && o.fact.tags() == f.fact.tags())))
        };
        if !out.iter().any(same) && primary.is_none_or(|p| !same(&p.finding)) {
            out.push(f);
        }
    }
    out
}

/// The evidence cited: the winning hypothesis' facts' items, the supporting ones', then the
/// context's own ranking; each with the fact it shows.
fn cite(
    context: &Context,
    winner: Option<&Hypothesis<'_>>,
    supporting: &[Finding<'_>],
) -> Vec<EvidenceRef> {
    let mut order: Vec<(&str, Option<&Fact>)> = Vec::new();
    let facts = winner
        .into_iter()
        .flat_map(|h| h.facts.iter().map(|s| s.finding))
        .take(1)
        .chain(supporting.iter().copied())
        .chain(
            winner
                .into_iter()
                .flat_map(|h| h.facts.iter().skip(1).map(|s| s.finding)),
        );
    for f in facts {
        if !order.iter().any(|(id, _)| *id == f.evidence) {
            order.push((f.evidence, Some(f.fact)));
        }
    }
    for e in &context.evidence {
        if !order.iter().any(|(id, _)| *id == e.id) {
            order.push((&e.id, e.facts.first()));
        }
    }
    order
        .into_iter()
        .take(CITED)
        .filter_map(|(id, fact)| {
            let e = context.evidence(id)?;
            let note = match fact {
                Some(f) => f.describe(),
                None => match e.summary.lines().next() {
                    Some(line) if !line.is_empty() => format!("{}: {line}", e.title),
                    _ => e.title.clone(),
                },
            };
            Some(EvidenceRef {
                id: e.id.clone(),
                note,
                query: e.query.clone(),
                finding: Some(e.summary.clone()),
            })
        })
        .collect()
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
        let rules = RulesAnalyzer::default();
        assert!(rules.rules.len() >= 10 && rules.weights.len() >= 20);
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
