//! The suite's result: a row per scenario and the totals, as a Markdown table or one JSON document.

use serde::Serialize;

use crate::Outcome;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenarios: Vec<Outcome>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub scenarios: usize,
    /// Facts found over facts expected, across the suite.
    pub recall: f64,
    /// Scenarios whose analysis named the expected category, over all.
    pub category: f64,
    /// Scenarios whose analysis named the culprit, over all.
    pub culprit: f64,
    /// Secrets leaked, summed.
    pub leaks: usize,
    /// Scenarios whose run failed.
    pub errors: usize,
    pub prompt_tokens_max: usize,
    pub prompt_tokens_mean: f64,
    pub llm_requests: u32,
    pub tool_calls: u32,
    pub llm_tokens_in: u32,
    pub llm_tokens_out: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub context_ms: u64,
    pub rca_ms: u64,
}

fn ratio(part: usize, whole: usize) -> f64 {
    match whole {
        0 => 0.0,
        _ => part as f64 / whole as f64,
    }
}

impl Report {
    pub fn new(scenarios: Vec<Outcome>) -> Self {
        let n = scenarios.len();
        let sum = |f: fn(&Outcome) -> usize| scenarios.iter().map(f).sum::<usize>();
        let costs: Vec<f64> = scenarios.iter().filter_map(|o| o.cost_usd).collect();
        let totals = Totals {
            scenarios: n,
            recall: ratio(sum(|o| o.facts_found), sum(|o| o.facts_total)),
            category: ratio(sum(|o| usize::from(o.category_right)), n),
            culprit: ratio(sum(|o| usize::from(o.culprit_named)), n),
            leaks: sum(|o| o.leaks.len()),
            errors: sum(|o| usize::from(o.error.is_some())),
            prompt_tokens_max: scenarios.iter().map(|o| o.prompt_tokens).max().unwrap_or(0),
            prompt_tokens_mean: ratio(sum(|o| o.prompt_tokens), n),
            llm_requests: scenarios.iter().map(|o| o.llm_requests).sum(),
            tool_calls: scenarios.iter().map(|o| o.tool_calls).sum(),
            llm_tokens_in: scenarios.iter().map(|o| o.llm_tokens_in).sum(),
            llm_tokens_out: scenarios.iter().map(|o| o.llm_tokens_out).sum(),
            cost_usd: (!costs.is_empty()).then(|| costs.iter().sum()),
            context_ms: scenarios.iter().map(|o| o.context_ms).sum(),
            rca_ms: scenarios.iter().map(|o| o.rca_ms).sum(),
        };
        Self { scenarios, totals }
    }

    /// A Markdown table: a row per scenario, then the totals.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| scenario | facts | category (expected → got) | culprit | leaks | prompt tokens | LLM requests | LLM tokens in/out | cost | context ms | rca ms |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        for o in &self.scenarios {
            let category = match o.category_right {
                true => format!("✓ {}", o.category),
                false => format!("✗ {} → {}", o.category_expected, o.category),
            };
            out.push_str(&format!(
                "| {}{} | {}/{} | {category} | {} | {} | {} | {} | {}/{} | {} | {} | {} |\n",
                o.scenario,
                o.error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (failed: {e})")),
                o.facts_found,
                o.facts_total,
                mark(o.culprit_named),
                o.leaks.len(),
                o.prompt_tokens,
                requests(o.llm_requests, o.tool_calls),
                o.llm_tokens_in,
                o.llm_tokens_out,
                o.cost_usd.map_or("-".into(), |c| format!("${c:.4}")),
                o.context_ms,
                o.rca_ms,
            ));
        }
        let t = &self.totals;
        out.push_str(&format!(
            "| **{} scenarios** | **recall {:.1}%** | **{:.1}% right** | **{:.1}% named** | **{}** | max {}, mean {:.0} | {} | {}/{} | {} | {} | {} |\n",
            t.scenarios,
            100.0 * t.recall,
            100.0 * t.category,
            100.0 * t.culprit,
            t.leaks,
            t.prompt_tokens_max,
            t.prompt_tokens_mean,
            requests(t.llm_requests, t.tool_calls),
            t.llm_tokens_in,
            t.llm_tokens_out,
            t.cost_usd.map_or("-".into(), |c| format!("${c:.4}")),
            t.context_ms,
            t.rca_ms,
        ));
        out
    }

    /// The facts each scenario missed, one line each (for the text output).
    pub fn missed(&self) -> String {
        self.scenarios
            .iter()
            .filter(|o| !o.facts_missed.is_empty())
            .map(|o| format!("{}: missed {}\n", o.scenario, o.facts_missed.join("; ")))
            .collect()
    }
}

/// LLM requests, with the tool calls when there were any: `3 (4 tool calls)`.
fn requests(requests: u32, tool_calls: u32) -> String {
    match tool_calls {
        0 => requests.to_string(),
        n => format!("{requests} ({n} tool calls)"),
    }
}
