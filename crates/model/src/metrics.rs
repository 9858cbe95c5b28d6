//! Every metric aiops exports, registered in one place. Names follow
//! `aiops_<name>_<unit>_total` and labels take a bounded set of values.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::job::{JobState, QueueCounts};

/// The outcome of a webhook request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

/// The metrics, shared by the HTTP API and the worker.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Webhook requests by result: accepted, duplicate, rejected, unauthorized, unavailable.
    pub webhooks: Family<ResultLabel, Counter>,
    pub alerts_received: Counter,
    pub duplicates: Counter,
    pub queue_jobs: Family<StateLabel, Gauge>,
    pub stage_duration: Family<StageLabel, Histogram>,
    pub stage_failures: Family<StageLabel, Counter>,
    pub workers_busy: Gauge,
    pub workers: Gauge,
    pub analyses: Family<AnalysisLabel, Counter>,
    pub llm_tokens: Family<KindLabel, Counter>,
    pub deliveries: Family<DeliveryLabel, Counter>,
    pub tool_calls: Family<ToolLabel, Counter>,
    pub budget_exhausted: Family<BudgetLabel, Counter>,
    /// Model turns (completions) per LLM analysis, the repair round included.
    pub llm_rounds: Histogram,
    pub feedback: Family<VerdictLabel, Counter>,
    pub interactions: Family<InteractionLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    /// `right` or `wrong`.
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InteractionLabel {
    /// `silence_1h`, `silence_4h`, `feedback_right`, `feedback_wrong`, `reanalyze`, or `refused`
    /// (a bad signature, a stale or replayed request).
    pub action: &'static str,
    /// `ok`, `failed` or `unauthorized`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabel {
    /// The tool's name as the model called it (one of the known tools, or `unknown`).
    pub tool: String,
    /// `ok`, `error` (an invalid call or a failed query) or `refused` (a repeat, a spent budget).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabel {
    /// `tool_calls`, `rounds`, `prompt_tokens`, `deadline` or `daily_spend`.
    pub budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    /// The sink: `stdout`, `file`, `webhook`, `slack`.
    pub sink: String,
    /// `ok`, `filtered` or `failed` (a failed delivery round, retries included).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnalysisLabel {
    /// `llm` or `rules`.
    pub analyzer: String,
    /// `ok`, `cached` (no LLM call) or `fallback` (the LLM failed and the rules answered).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `prompt` or `completion`.
    pub kind: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("aiops");
        let webhooks = Family::<ResultLabel, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook requests by result",
            webhooks.clone(),
        );
        let alerts_received = Counter::default();
        registry.register(
            "alerts_received",
            "Alerts received in accepted webhooks",
            alerts_received.clone(),
        );
        let duplicates = Counter::default();
        registry.register(
            "webhook_duplicates",
            "Webhooks acknowledged as duplicates, which created no job",
            duplicates.clone(),
        );
        let queue_jobs = Family::<StateLabel, Gauge>::default();
        registry.register(
            "queue_jobs",
            "Jobs in the store by state",
            queue_jobs.clone(),
        );
        let stage_duration = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register_with_unit(
            "stage_duration",
            "Time a pipeline stage took",
            prometheus_client::registry::Unit::Seconds,
            stage_duration.clone(),
        );
        let stage_failures = Family::<StageLabel, Counter>::default();
        registry.register(
            "stage_failures",
            "Failed stage attempts by stage",
            stage_failures.clone(),
        );
        let workers_busy = Gauge::default();
        registry.register(
            "workers_busy",
            "Workers processing a job now",
            workers_busy.clone(),
        );
        let workers = Gauge::default();
        registry.register("workers", "Configured worker concurrency", workers.clone());
        let analyses = Family::<AnalysisLabel, Counter>::default();
        registry.register(
            "analyses",
            "Analyses by analyzer and result (ok, cached, fallback)",
            analyses.clone(),
        );
        let llm_tokens = Family::<KindLabel, Counter>::default();
        registry.register(
            "llm_tokens",
            "LLM tokens spent, prompt and completion",
            llm_tokens.clone(),
        );
        let deliveries = Family::<DeliveryLabel, Counter>::default();
        registry.register(
            "deliveries",
            "Deliveries by sink and result (ok, filtered, failed)",
            deliveries.clone(),
        );
        let tool_calls = Family::<ToolLabel, Counter>::default();
        registry.register(
            "llm_tool_calls",
            "Tool calls of LLM investigations by tool and result (ok, error, refused)",
            tool_calls.clone(),
        );
        let budget_exhausted = Family::<BudgetLabel, Counter>::default();
        registry.register(
            "llm_budget_exhausted",
            "LLM analyses a budget ended, by budget",
            budget_exhausted.clone(),
        );
        let llm_rounds = Histogram::new([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        registry.register(
            "llm_rounds",
            "Model turns (completions) per LLM analysis, tool rounds and the repair round included",
            llm_rounds.clone(),
        );
        let feedback = Family::<VerdictLabel, Counter>::default();
        registry.register(
            "feedback",
            "Verdicts on analyses from Slack's Right / Wrong buttons",
            feedback.clone(),
        );
        let interactions = Family::<InteractionLabel, Counter>::default();
        registry.register(
            "slack_interactions",
            "Slack button presses by action and result (ok, failed, unauthorized)",
            interactions.clone(),
        );
        let metrics = Self {
            feedback,
            interactions,
            llm_rounds,
            registry,
            tool_calls,
            budget_exhausted,
            webhooks,
            alerts_received,
            duplicates,
            queue_jobs,
            stage_duration,
            stage_failures,
            workers_busy,
            workers,
            analyses,
            llm_tokens,
            deliveries,
        };
        metrics.initialize();
        metrics
    }

    /// Creates every series whose labels are known up front at zero: a dashboard then shows 0
    /// instead of no data, and `increase()` sees the first event of a series.
    fn initialize(&self) {
        for result in [
            "accepted",
            "duplicate",
            "rejected",
            "unauthorized",
            "unavailable",
        ] {
            let _ = self.webhooks.get_or_create(&ResultLabel { result });
        }
        for stage in ["context", "rca", "notify"] {
            let _ = self.stage_duration.get_or_create(&StageLabel { stage });
            let _ = self.stage_failures.get_or_create(&StageLabel { stage });
        }
        for (analyzer, result) in [
            ("rules", "ok"),
            ("llm", "ok"),
            ("llm", "cached"),
            ("llm", "fallback"),
        ] {
            let _ = self.analyses.get_or_create(&AnalysisLabel {
                analyzer: analyzer.to_owned(),
                result,
            });
        }
        for kind in ["prompt", "completion"] {
            let _ = self.llm_tokens.get_or_create(&KindLabel { kind });
        }
        for verdict in ["right", "wrong"] {
            let _ = self.feedback.get_or_create(&VerdictLabel { verdict });
        }
        for budget in [
            "tool_calls",
            "rounds",
            "prompt_tokens",
            "deadline",
            "daily_spend",
        ] {
            let _ = self.budget_exhausted.get_or_create(&BudgetLabel {
                budget: budget.to_owned(),
            });
        }
    }

    /// Creates a sink's delivery series at zero (see [`Metrics::initialize`]).
    pub fn initialize_sink(&self, sink: &str) {
        for result in ["ok", "filtered", "failed"] {
            let _ = self.deliveries.get_or_create(&DeliveryLabel {
                sink: sink.to_owned(),
                result,
            });
        }
    }

    /// Counts one sink's delivery round.
    pub fn delivery(&self, sink: &str, result: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabel {
                sink: sink.to_owned(),
                result,
            })
            .inc();
    }

    /// Counts a finished analysis and the tokens it spent.
    pub fn analysis(&self, info: &crate::AnalyzerInfo) {
        let result = match (info.fallback, info.cached, info.reused_from.is_some()) {
            (_, _, true) => "reused",
            (true, _, _) => "fallback",
            (false, true, _) => "cached",
            (false, false, _) => "ok",
        };
        let analyzer = match info.fallback {
            true => "llm".to_owned(),
            false => info.name.clone(),
        };
        self.analyses
            .get_or_create(&AnalysisLabel { analyzer, result })
            .inc();
        for (kind, n) in [
            ("prompt", info.prompt_tokens),
            ("completion", info.completion_tokens),
        ] {
            self.llm_tokens
                .get_or_create(&KindLabel { kind })
                .inc_by(u64::from(n));
        }
        if info.rounds > 0 {
            self.llm_rounds.observe(f64::from(info.rounds));
        }
        for call in &info.tool_calls {
            let tool = match crate::tools::TOOLS.contains(&call.tool.as_str()) {
                true => call.tool.clone(),
                false => "unknown".to_owned(),
            };
            let result = match &call.error {
                None => "ok",
                Some(e) if e.starts_with("refused") => "refused",
                Some(_) => "error",
            };
            self.tool_calls
                .get_or_create(&ToolLabel { tool, result })
                .inc();
        }
        if let Some(budget) = &info.budget_exhausted {
            self.budget_exhausted
                .get_or_create(&BudgetLabel {
                    budget: budget.clone(),
                })
                .inc();
        }
    }

    /// Counts a verdict from Slack.
    pub fn feedback(&self, verdict: crate::Verdict) {
        self.feedback
            .get_or_create(&VerdictLabel {
                verdict: verdict.as_str(),
            })
            .inc();
    }

    /// Counts a Slack button press.
    pub fn interaction(&self, action: &'static str, result: &'static str) {
        self.interactions
            .get_or_create(&InteractionLabel { action, result })
            .inc();
    }

    pub fn webhook(&self, result: &'static str) {
        self.webhooks.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn stage_finished(&self, stage: &'static str, seconds: f64, ok: bool) {
        self.stage_duration
            .get_or_create(&StageLabel { stage })
            .observe(seconds);
        if !ok {
            self.stage_failures
                .get_or_create(&StageLabel { stage })
                .inc();
        }
    }

    pub fn set_queue(&self, counts: &QueueCounts) {
        for state in JobState::ALL {
            let gauge = self.queue_jobs.get_or_create(&StateLabel {
                state: state.as_str(),
            });
            gauge.set(i64::try_from(counts.get(state)).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_names_with_units_and_total() {
        let m = Metrics::new();
        m.webhook("accepted");
        m.stage_finished("rca", 0.2, false);
        let text = m.encode();
        assert!(
            text.contains("aiops_webhook_requests_total{result=\"accepted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("aiops_stage_duration_seconds_bucket{le="),
            "{text}"
        );
        assert!(
            text.contains("aiops_stage_failures_total{stage=\"rca\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn tool_calls_count_by_tool_and_result_and_budgets_by_name() {
        let m = Metrics::new();
        let call = |tool: &str, error: Option<&str>| crate::ToolCallRecord {
            tool: tool.into(),
            error: error.map(str::to_owned),
            ..crate::ToolCallRecord::default()
        };
        m.analysis(&crate::AnalyzerInfo {
            name: "llm".into(),
            fallback: true,
            tool_calls: vec![
                call("promql_range", None),
                call("promql_range", Some("refused: already called")),
                call("rm_rf", Some("there is no tool")),
            ],
            budget_exhausted: Some("rounds".into()),
            rounds: 3,
            ..crate::AnalyzerInfo::default()
        });
        let text = m.encode();
        for line in [
            "aiops_llm_tool_calls_total{tool=\"promql_range\",result=\"ok\"} 1",
            "aiops_llm_tool_calls_total{tool=\"promql_range\",result=\"refused\"} 1",
            "aiops_llm_tool_calls_total{tool=\"unknown\",result=\"error\"} 1",
            "aiops_llm_budget_exhausted_total{budget=\"rounds\"} 1",
            "aiops_llm_budget_exhausted_total{budget=\"daily_spend\"} 0",
            "aiops_llm_rounds_count 1",
            "aiops_llm_rounds_sum 3.0",
            "aiops_llm_rounds_bucket{le=\"2.0\"} 0",
            "aiops_llm_rounds_bucket{le=\"3.0\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
