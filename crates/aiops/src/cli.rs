//! The command line.

use std::io::Read;
use std::path::PathBuf;

use aiops_model::{Clock, Notification, SystemClock};
use aiops_notify::Document;
use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::{app, eval, telemetry};

/// aiops turns Alertmanager alerts into root-cause analyses.
#[derive(Debug, Parser)]
#[command(name = "aiops", version, about)]
struct Cli {
    /// A TOML file layered over the built-in defaults (configs/default.toml).
    #[arg(long, short, global = true, env = "AIOPS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Run the pipeline once on a webhook payload or a single alert (JSON) and print the analysis.
    Analyze {
        /// The JSON file, or - for standard input.
        input: String,
        /// Print the analysis as JSON instead of text.
        #[arg(long, conflicts_with = "slack")]
        json: bool,
        /// Print the Slack message (Block Kit JSON) that would be posted, e.g. for Slack's Block Kit
        /// Builder.
        #[arg(long)]
        slack: bool,
    },
    /// Print the effective configuration with secrets masked, or say what is wrong with it.
    CheckConfig,
    /// Run the scenario suite (eval/scenarios) through the real pipeline with the configured analyzer
    /// and score it: facts found in the evidence, category, culprit, leaks, tokens, time and cost.
    Eval {
        /// The folder of scenarios, one sub-folder each.
        #[arg(default_value = "eval/scenarios")]
        dir: PathBuf,
        /// Print the report as one JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Run only this scenario (repeat for several).
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Validate the scenarios instead of scoring aiops: the alert's expression holds at startsAt
        /// and not long before, every fact is in the data, every secret is in the logs.
        #[arg(long)]
        check: bool,
        /// Include each scenario's evidence and source failures in the JSON report: what the
        /// analyzer saw.
        #[arg(long)]
        evidence: bool,
        /// Exit non-zero when the facts found over the facts expected fall below this (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        min_recall: f64,
        /// Exit non-zero when the share of right categories falls below this (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        min_category: f64,
        /// Exit non-zero when the share of analyses naming the culprit falls below this (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        min_culprit: f64,
        /// Instead of running the suite, write every analysis an on-call judged (Slack's Right /
        /// Wrong) from the configured store into this folder as a scenario skeleton.
        #[arg(long, value_name = "DIR")]
        export_feedback: Option<PathBuf>,
    },
    /// Test the configured LLM endpoint before alerts depend on it: reachable, JSON output, tool
    /// calling, context length, two canned analyses, tokens per second; print which `llm.tools`
    /// mode to use and why. Exits 1 when the endpoint cannot be used as configured.
    CheckLlm,
    /// Exit 0 if the daemon's /health answers 200 (a container healthcheck without curl).
    Health {
        /// The daemon's base URL; default: `server.listen` on loopback.
        #[arg(long)]
        url: Option<String>,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            app::check(&config)?;
            print!("{}", config.to_masked_toml()?);
            Ok(())
        }
        Command::Health { url } => {
            let url = url.unwrap_or_else(|| local_url(&config.server.listen));
            runtime()?.block_on(health(&url))
        }
        Command::CheckLlm => {
            // The battery's lines are the output; the analyzer's warnings only at `error`.
            let log = crate::config::LogConfig {
                level: "error".into(),
                ..config.log.clone()
            };
            telemetry::init(&log)?;
            runtime()?.block_on(check_llm(&config))
        }
        Command::Serve => {
            telemetry::init(&config.log)?;
            runtime()?.block_on(app::serve(config))
        }
        Command::Eval {
            dir,
            json,
            scenarios,
            check,
            evidence,
            min_recall,
            min_category,
            min_culprit,
            export_feedback,
        } => {
            if let Some(out) = export_feedback {
                telemetry::init(&crate::config::LogConfig {
                    level: "error".into(),
                    ..config.log.clone()
                })?;
                return runtime()?.block_on(crate::export::export_feedback(&config, &out));
            }
            // The suite's own lines are the output; the stages' logs only at `error` unless asked.
            let log = crate::config::LogConfig {
                level: "error".into(),
                ..config.log.clone()
            };
            telemetry::init(&log)?;
            let run = eval::Run {
                dir,
                json,
                scenarios,
                check,
                evidence,
                min: eval::Thresholds {
                    recall: min_recall,
                    category: min_category,
                    culprit: min_culprit,
                },
            };
            runtime()?.block_on(eval::main(config, run))
        }
        Command::Analyze { input, json, slack } => {
            telemetry::init(&config.log)?;
            let format = match (json, slack) {
                (true, _) => Output::Json,
                (_, true) => Output::Slack,
                _ => Output::Text,
            };
            runtime()?.block_on(analyze_once(config, &input, format))
        }
    }
}

async fn check_llm(config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.llm.is_enabled(),
        "no LLM is configured (llm.provider is empty): the rule-based analyzer answers, and there \
         is nothing to check"
    );
    let rules = aiops_rca::RulesAnalyzer::new(&config.rules)
        .map_err(anyhow::Error::msg)
        .context("invalid rules")?;
    println!(
        "aiops check-llm: provider {}, model {}",
        config.llm.provider, config.llm.model
    );
    let report = aiops_rca::LlmAnalyzer::check(&config.llm, rules)
        .await
        .map_err(anyhow::Error::msg)
        .context("invalid LLM configuration")?;
    print!("{}", report.render());
    anyhow::ensure!(
        report.usable,
        "the LLM endpoint cannot be used as configured"
    );
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `server.listen` as a client reaches it from the same host.
fn local_url(listen: &str) -> String {
    let port = listen.rsplit(':').next().unwrap_or("8080");
    let host = match listen.rsplit_once(':').map(|(h, _)| h) {
        Some("0.0.0.0" | "" | "[::]") | None => "127.0.0.1",
        Some(h) => h,
    };
    format!("http://{host}:{port}")
}

async fn health(base: &str) -> anyhow::Result<()> {
    let url = format!("{}/health", base.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}",
        response.status()
    );
    println!("ok");
    Ok(())
}

/// How `aiops analyze` prints.
#[derive(Debug, Clone, Copy)]
enum Output {
    Text,
    Json,
    Slack,
}

async fn analyze_once(config: Config, input: &str, format: Output) -> anyhow::Result<()> {
    let body = if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
        buf
    } else {
        std::fs::read(input).with_context(|| format!("cannot read {input}"))?
    };
    let payload = aiops_model::alertmanager::parse_analyze_input(&body, SystemClock.now())
        .with_context(|| {
            format!("{input} is neither an Alertmanager webhook payload nor an alert")
        })?;
    // Only the analysis: `aiops analyze` prints, it never notifies.
    let (context, analyzer) = app::analysis(&config, None)?;
    let analysis = match payload.status {
        aiops_model::AlertStatus::Resolved => None,
        aiops_model::AlertStatus::Firing => {
            let context = context
                .gather(&payload)
                .await
                .context("gathering context failed")?;
            Some(
                analyzer
                    .analyze(&payload, &context)
                    .await
                    .context("the analysis failed")?,
            )
        }
    };
    let notification = Notification {
        job_id: aiops_model::JobId::new(),
        payload: &payload,
        analysis: analysis.as_ref(),
        firings: 1,
    };
    match format {
        Output::Text => print!("{}", Document::new(&notification).to_text()),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&Document::new(&notification))?
        ),
        Output::Slack => {
            let links = app::links(&config);
            let message = aiops_notify::slack::blocks::message(&notification, &links);
            println!("{}", serde_json::to_string_pretty(&message)?);
        }
    }
    Ok(())
}
