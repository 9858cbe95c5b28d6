//! `aiops eval`: the scenario suite (crates/eval) with the stages this configuration builds, pointed
//! at each scenario's Prometheus and Loki.

use std::path::PathBuf;

use aiops_eval::{Options, Prices, Stages};
use anyhow::Context as _;

use crate::app;
use crate::config::Config;

/// What the command line asked for.
#[derive(Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub json: bool,
    pub scenarios: Vec<String>,
    pub check: bool,
    /// Keep each scenario's evidence in the JSON report.
    pub evidence: bool,
    pub min: Thresholds,
}

/// The exit code is non-zero below any of these.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub recall: f64,
    pub category: f64,
    pub culprit: f64,
}

pub async fn main(config: Config, run: Run) -> anyhow::Result<()> {
    aiops_eval::check_installed().map_err(anyhow::Error::msg)?;
    let mut scenarios = aiops_eval::load_all(&run.dir).map_err(anyhow::Error::msg)?;
    if !run.scenarios.is_empty() {
        for name in &run.scenarios {
            anyhow::ensure!(
                scenarios.iter().any(|s| &s.name == name),
                "no scenario {name:?} in {}",
                run.dir.display()
            );
        }
        scenarios.retain(|s| run.scenarios.contains(&s.name));
    }
    if run.check {
        return check(&scenarios, run.json).await;
    }
    let build = |prometheus: &str, loki: &str| -> Result<Stages, String> {
        let mut config = config.clone();
        config.prometheus.url = prometheus.to_owned();
        config.loki.url = loki.to_owned();
        let (context, analyzer) = app::analysis(&config, None).map_err(|e| format!("{e:#}"))?;
        Ok(Stages { context, analyzer })
    };
    let options = Options {
        prices: Prices {
            per_mtok_in: config.llm.price_per_mtok_in,
            per_mtok_out: config.llm.price_per_mtok_out,
        },
        evidence: run.evidence,
        max_prompt_tokens: config.llm.max_prompt_tokens,
    };
    let total = scenarios.len();
    let mut done = 0;
    let report = aiops_eval::run(&scenarios, build, options, |o| {
        done += 1;
        eprintln!(
            "[{done}/{total}] {}: facts {}/{}, category {} ({}), culprit {}{}",
            o.scenario,
            o.facts_found,
            o.facts_total,
            if o.category_right { "right" } else { "wrong" },
            o.category,
            if o.culprit_named { "named" } else { "missed" },
            o.error
                .as_ref()
                .map_or(String::new(), |e| format!(", FAILED: {e}"))
        );
    })
    .await;
    if run.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        print!("{}", report.missed());
    }
    let t = &report.totals;
    let mut below = Vec::new();
    for (name, got, min) in [
        ("recall", t.recall, run.min.recall),
        ("category", t.category, run.min.category),
        ("culprit", t.culprit, run.min.culprit),
    ] {
        if got < min {
            below.push(format!("{name} {got:.3} < {min}"));
        }
    }
    if t.errors > 0 {
        below.push(format!("{} scenario runs failed", t.errors));
    }
    anyhow::ensure!(
        below.is_empty(),
        "below the thresholds: {}",
        below.join(", ")
    );
    Ok(())
}

async fn check(scenarios: &[aiops_eval::Scenario], json: bool) -> anyhow::Result<()> {
    let found = aiops_eval::check(scenarios).await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&found).context("cannot print")?
        );
    }
    let bad: Vec<_> = found.iter().filter(|p| !p.problems.is_empty()).collect();
    for p in &bad {
        for problem in &p.problems {
            eprintln!("{}: {problem}", p.scenario);
        }
    }
    if !json {
        println!(
            "{} scenarios checked, {} with problems",
            found.len(),
            bad.len()
        );
    }
    anyhow::ensure!(bad.is_empty(), "{} scenarios have problems", bad.len());
    Ok(())
}
