//! Wiring: the one place that builds the concrete store, stages and sinks.

use std::sync::Arc;
use std::time::Duration;

use aiops_context::Gatherer;
use aiops_ingest::AppState;
use aiops_model::{Analyzer, Clock, ContextSource, Metrics, Notifier, SystemClock};
use aiops_notify::{FileNotifier, StdoutNotifier, WebhookNotifier};
use aiops_rca::{LlmAnalyzer, RulesAnalyzer};
use aiops_worker::{Stages, Worker};
use anyhow::Context as _;
use tokio::sync::watch;

use crate::config::Config;

/// Builds the pipeline's stages from the configuration.
pub fn stages(config: &Config) -> anyhow::Result<Stages> {
    let (context, analyzer) = analysis(config)?;
    Ok(Stages {
        context,
        analyzer,
        notifiers: notifiers(config)?,
    })
}

/// The stages that produce an analysis: context and rca.
pub fn analysis(config: &Config) -> anyhow::Result<(Arc<dyn ContextSource>, Arc<dyn Analyzer>)> {
    if config.prometheus.url.is_empty() && config.loki.url.is_empty() {
        tracing::info!(
            "prometheus.url and loki.url are empty: evidence comes from the alerts themselves only"
        );
    }
    let context = Gatherer::new(
        &config.context,
        &config.prometheus,
        &config.loki,
        Arc::new(SystemClock),
    )
    .map_err(anyhow::Error::msg)
    .context("invalid context configuration")?;
    let rules = RulesAnalyzer::new(&config.rules)
        .map_err(anyhow::Error::msg)
        .context("invalid rules")?;
    let analyzer: Arc<dyn Analyzer> = match config.llm.is_enabled() {
        true => Arc::new(
            LlmAnalyzer::new(&config.llm, rules)
                .map_err(anyhow::Error::msg)
                .context("invalid LLM configuration")?,
        ),
        false => {
            tracing::info!("no LLM configured: the rule-based analyzer answers");
            Arc::new(rules)
        }
    };
    Ok((Arc::new(context), analyzer))
}

/// The configured sinks, in delivery order.
fn notifiers(config: &Config) -> anyhow::Result<Vec<Arc<dyn Notifier>>> {
    if config.slack.is_enabled() {
        tracing::warn!(
            "Slack delivery is not available yet; use notify.stdout, notify.file or webhook.url"
        );
    }
    let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
    if config.notify.stdout {
        notifiers.push(Arc::new(StdoutNotifier::new(config.notify.stdout_format)));
    }
    if !config.notify.file.is_empty() {
        let sink = FileNotifier::open(config.notify.file.as_ref())
            .with_context(|| format!("notify.file: cannot open {}", config.notify.file))?;
        notifiers.push(Arc::new(sink));
    }
    if let Some(url) = &config.webhook.url {
        let sink = WebhookNotifier::new(
            url.clone(),
            Duration::from_secs(config.webhook.timeout_secs),
        )
        .map_err(anyhow::Error::msg)?;
        notifiers.push(Arc::new(sink));
    }
    Ok(notifiers)
}

/// Runs the daemon until SIGTERM or Ctrl-C: the API stops accepting, then running jobs get the grace
/// period.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    let store = aiops_store::open(&config.store, clock.clone())
        .await
        .with_context(|| {
            format!(
                "cannot open the store at {}",
                aiops_store::redact_url(&config.store.url)
            )
        })?;
    let stages = stages(&config)?;
    let worker = Arc::new(Worker::new(
        store.clone(),
        stages,
        metrics.clone(),
        clock.clone(),
        config.worker.clone(),
    ));
    let listener = std::net::TcpListener::bind(&config.server.listen)
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let state = AppState {
        store,
        metrics,
        clock,
        auth: config.server.auth(),
        config: Arc::new(config.server.clone()),
    };
    tracing::info!(%addr, auth = state.auth.is_enabled(), "listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new requests; running jobs get the grace period");
        let _ = stop_tx.send(true);
    });
    let (served, ()) = tokio::join!(
        aiops_ingest::run(listener, state, stopped(stop_rx.clone())),
        worker.run(stopped(stop_rx)),
    );
    served.context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the daemon")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
