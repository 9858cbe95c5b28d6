//! The scenario suite behind `aiops eval`: realistic incidents run through the real pipeline, against
//! a real Prometheus and a Loki API over each scenario's logs, and scored.
//!
//! # Layout
//! - `scenario`: a scenario on disk (`alert.json`, `metrics.om`, `logs.jsonl`, `expect.toml`), with
//!   every time relative to the run.
//! - `prometheus`: promtool's blocks and a real Prometheus per scenario.
//! - `loki`: the scenario's logs behind Loki's HTTP API, and the metadata exposition.
//! - `score`: facts in the evidence, category, culprit, leaks.
//! - [`run`], [`check`]: the suite, and the validation of the scenarios themselves (`--check`).
//! - `report`: the table and the JSON document.
#![forbid(unsafe_code)]

mod loki;
mod prometheus;
mod report;
pub mod scenario;
mod score;

use std::sync::Arc;
use std::time::Instant;

use aiops_model::redact::Redactor;
use aiops_model::{Analyzer, ContextSource, tokens};
use serde::Serialize;
use time::OffsetDateTime;

pub use prometheus::check_installed;
pub use report::{Report, Totals};
pub use scenario::{Scenario, load_all};

pub use crate::loki::DataServer;
pub use crate::prometheus::Prometheus;

/// The pipeline's stages for one scenario, built against its Prometheus and Loki URLs.
#[derive(Debug, Clone)]
pub struct Stages {
    pub context: Arc<dyn ContextSource>,
    pub analyzer: Arc<dyn Analyzer>,
}

/// Prices for the cost column: US dollars per million tokens (0: no cost).
#[derive(Debug, Clone, Copy, Default)]
pub struct Prices {
    pub per_mtok_in: f64,
    pub per_mtok_out: f64,
}

/// How to run the suite.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub prices: Prices,
    /// Keep each scenario's evidence text in its outcome, to see what the analyzer saw.
    pub evidence: bool,
    /// The LLM's prompt budget (`llm.max_prompt_tokens`): the prompt is built as the LLM analyzer
    /// builds it, the lowest-ranked evidence left out to fit.
    pub max_prompt_tokens: u32,
}

/// One scenario's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub facts_found: usize,
    pub facts_total: usize,
    /// The facts the evidence did not show, by what they are.
    pub facts_missed: Vec<String>,
    pub category_expected: String,
    pub category: String,
    pub category_right: bool,
    pub culprit_named: bool,
    /// Secrets that reached the context, the prompt or the analysis.
    pub leaks: Vec<String>,
    /// The prompt the LLM analyzer would build from this context (four characters a token).
    pub prompt_tokens: usize,
    pub analyzer: String,
    pub llm_requests: u32,
    /// Tool calls the model made (`llm.tools = "auto"`), answered or not.
    pub tool_calls: u32,
    pub llm_tokens_in: u32,
    pub llm_tokens_out: u32,
    /// With prices set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub context_ms: u64,
    pub rca_ms: u64,
    /// Sources that failed during the context stage.
    pub source_failures: usize,
    /// What each failure said.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// The evidence as the scorer reads it, when asked for (`Options::evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    pub root_cause: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The run itself failed (Prometheus would not start, …): every score above is zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs each scenario: its data served, the stages `build` makes for it, the score. `progress` hears
/// of each scenario as it ends.
pub async fn run(
    scenarios: &[Scenario],
    build: impl Fn(&str, &str) -> Result<Stages, String>,
    options: Options,
    mut progress: impl FnMut(&Outcome),
) -> Report {
    let mut outcomes = Vec::new();
    for scenario in scenarios {
        let outcome = match run_one(scenario, &build, options).await {
            Ok(outcome) => outcome,
            Err(error) => failed(scenario, error),
        };
        progress(&outcome);
        outcomes.push(outcome);
    }
    Report::new(outcomes)
}

/// A scenario's data, served: the Loki API and metadata exposition, and a real Prometheus on its
/// blocks. Both stop when it is dropped.
pub struct Served {
    pub loki: DataServer,
    pub prometheus: Prometheus,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("loki", &self.loki.url)
            .field("prometheus", &self.prometheus.url)
            .finish()
    }
}

impl Served {
    /// Serves `scenario` as of `now` (its relative times made absolute); its alert group is
    /// `scenario.payload(now)`.
    pub async fn start(scenario: &Scenario, now: OffsetDateTime) -> Result<Self, String> {
        let (loki, prometheus) = serve(scenario, now).await?;
        Ok(Self { loki, prometheus })
    }
}

/// The data of `scenario` served at `now`: its Loki API and metadata, and Prometheus on its blocks.
async fn serve(
    scenario: &Scenario,
    now: OffsetDateTime,
) -> Result<(DataServer, Prometheus), String> {
    let server = DataServer::start(scenario.log_entries(now)?, scenario.metadata_exposition())
        .map_err(|e| format!("cannot serve the scenario's logs: {e}"))?;
    let target = server.url.trim_start_matches("http://").to_owned();
    let has_types = scenario.metadata_exposition().contains("# TYPE");
    let prometheus = Prometheus::start(&scenario.openmetrics(now)?, &target, has_types).await?;
    Ok((server, prometheus))
}

/// Now, to the second: sample times and the alert are written against it.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

async fn run_one(
    scenario: &Scenario,
    build: &impl Fn(&str, &str) -> Result<Stages, String>,
    options: Options,
) -> Result<Outcome, String> {
    let prices = options.prices;
    let now = now();
    let payload = scenario.payload(now)?;
    let (server, prometheus) = serve(scenario, now).await?;
    let stages = build(&prometheus.url, &server.url)?;
    let started = Instant::now();
    let context = stages
        .context
        .gather(&payload)
        .await
        .map_err(|e| format!("the context stage failed: {e}"))?;
    let context_ms = millis(started);
    let started = Instant::now();
    let analysis = stages
        .analyzer
        .analyze(&payload, &context)
        .await
        .map_err(|e| format!("the analysis failed: {e}"))?;
    let rca_ms = millis(started);
    drop((server, prometheus));

    let expect = &scenario.expect;
    let evidence = score::evidence_text(&context);
    let missed: Vec<String> = expect
        .facts
        .iter()
        .filter(|f| !score::found(f, &evidence))
        .map(|f| f.what.clone())
        .collect();
    let (message, _) = aiops_rca::prompt::fitted_user_message(
        &payload,
        &context,
        &Redactor::default(),
        &aiops_rca::RulesAnalyzer::default(),
        options.max_prompt_tokens,
    );
    let prompt = format!("{}\n{message}", aiops_rca::prompt::SYSTEM);
    let context_json = serde_json::to_string(&context).unwrap_or_default();
    let analysis_json = serde_json::to_string(&analysis).unwrap_or_default();
    let info = &analysis.analyzer;
    let cost = (prices.per_mtok_in > 0.0 || prices.per_mtok_out > 0.0).then(|| {
        (f64::from(info.prompt_tokens) * prices.per_mtok_in
            + f64::from(info.completion_tokens) * prices.per_mtok_out)
            / 1e6
    });
    Ok(Outcome {
        scenario: scenario.name.clone(),
        facts_found: expect.facts.len() - missed.len(),
        facts_total: expect.facts.len(),
        facts_missed: missed,
        category_expected: expect.category.clone(),
        category: analysis.category.as_str().to_owned(),
        category_right: analysis.category.as_str() == expect.category,
        culprit_named: score::names_culprit(&analysis, &expect.culprit),
        leaks: score::leaked(&expect.secrets, &[&context_json, &prompt, &analysis_json])
            .into_iter()
            .map(str::to_owned)
            .collect(),
        prompt_tokens: tokens::estimate(&prompt),
        analyzer: info.name.clone(),
        llm_requests: info.llm_requests,
        tool_calls: u32::try_from(info.tool_calls.len()).unwrap_or(u32::MAX),
        llm_tokens_in: info.prompt_tokens,
        llm_tokens_out: info.completion_tokens,
        cost_usd: cost,
        context_ms,
        rca_ms,
        source_failures: context.failures.len(),
        failures: context
            .failures
            .iter()
            .map(|f| match &f.query {
                Some(q) => format!("{:?}: {} ({q})", f.source, f.error),
                None => format!("{:?}: {}", f.source, f.error),
            })
            .collect(),
        // With the facts the analyzer reasoned from, by the evidence they rest on.
        evidence: options.evidence.then(|| {
            let facts: Vec<String> = context
                .findings()
                .map(|f| format!("[{}] {}: {}", f.evidence, f.fact.kind(), f.fact.describe()))
                .collect();
            format!("{evidence}\n\nFacts:\n{}", facts.join("\n"))
        }),
        root_cause: analysis.root_cause.clone(),
        fallback_reason: info.fallback_reason.clone(),
        error: None,
    })
}

fn failed(scenario: &Scenario, error: String) -> Outcome {
    Outcome {
        scenario: scenario.name.clone(),
        facts_found: 0,
        facts_total: scenario.expect.facts.len(),
        facts_missed: scenario
            .expect
            .facts
            .iter()
            .map(|f| f.what.clone())
            .collect(),
        category_expected: scenario.expect.category.clone(),
        category: String::new(),
        category_right: false,
        culprit_named: false,
        leaks: Vec::new(),
        prompt_tokens: 0,
        analyzer: String::new(),
        llm_requests: 0,
        tool_calls: 0,
        llm_tokens_in: 0,
        llm_tokens_out: 0,
        cost_usd: None,
        context_ms: 0,
        rca_ms: 0,
        source_failures: 0,
        failures: Vec::new(),
        evidence: None,
        root_cause: String::new(),
        fallback_reason: None,
        error: Some(error),
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What `--check` found wrong with one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Problems {
    pub scenario: String,
    pub problems: Vec<String>,
}

/// Validates the scenarios themselves: the alert's own expression returns its series at `startsAt`
/// on the scenario's data and not long before it; every fact is somewhere in the data and no word of
/// it is in the alert itself; every secret occurs in the logs.
pub async fn check(scenarios: &[Scenario]) -> Vec<Problems> {
    let mut all = Vec::new();
    for scenario in scenarios {
        let problems = match check_one(scenario).await {
            Ok(problems) => problems,
            Err(e) => vec![e],
        };
        all.push(Problems {
            scenario: scenario.name.clone(),
            problems,
        });
    }
    all
}

/// How long before `startsAt` the rule must not have held yet: it fired because something changed.
const QUIET_BEFORE_SECS: i64 = 20 * 60;

async fn check_one(scenario: &Scenario) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let now = now();
    let payload = scenario.payload(now)?;
    let (_server, prometheus) = serve(scenario, now).await?;
    for alert in &payload.alerts {
        let Some(expr) = alert.rule_expr() else {
            problems.push("an alert has no expression in its generatorURL".into());
            continue;
        };
        let at = alert.starts_at.unix_timestamp();
        if prometheus.count_at(&expr, at).await? == 0 {
            problems.push(format!("{expr} returns nothing at startsAt"));
        }
        if prometheus.count_at(&expr, at - QUIET_BEFORE_SECS).await? > 0 {
            problems.push(format!(
                "{expr} already returns series {} minutes before startsAt",
                QUIET_BEFORE_SECS / 60
            ));
        }
    }
    let data = scenario.raw_data().to_lowercase();
    let alert = scenario.alert_text().to_lowercase();
    for fact in &scenario.expect.facts {
        if !fact.any.iter().any(|alt| score::mentions(&data, alt)) {
            problems.push(format!(
                "fact {:?}: none of {:?} is in the data",
                fact.what, fact.any
            ));
        }
        // A fact the alert already says is no finding of the evidence.
        for alt in fact.any.iter().filter(|a| a.parse::<f64>().is_err()) {
            if alert.contains(&alt.to_lowercase()) {
                problems.push(format!(
                    "fact {:?}: {alt:?} is in the alert itself",
                    fact.what
                ));
            }
        }
    }
    let logs = scenario.log_text();
    for secret in &scenario.expect.secrets {
        if !logs.contains(secret.as_str()) {
            problems.push(format!("secret {secret:?} does not occur in the logs"));
        }
    }
    if scenario.expect.culprit.is_empty() {
        problems.push("expect.toml names no culprit".into());
    }
    Ok(problems)
}
