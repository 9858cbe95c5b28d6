//! Wiring: the one place that builds the concrete store, stages and sinks.

use std::sync::Arc;
use std::time::Duration;

use aiops_context::{Gatherer, PromGraph};
use aiops_ingest::{AppState, Graphs, Interactions};
use aiops_model::{
    Analyzer, Clock, ContextSource, Grapher, Ledger, LinkSigner, Metrics, Notifier, Silencer,
    StoreError, SystemClock, Thread, Threads,
};
use aiops_notify::{
    AlertmanagerClient, FileNotifier, Filtered, HtmlPage, Links, SlackNotifier, StdoutNotifier,
    WebhookNotifier,
};
use aiops_rca::{LlmAnalyzer, RulesAnalyzer};
use aiops_worker::{Stages, Worker};
use anyhow::Context as _;
use tokio::sync::watch;

use crate::config::Config;

/// Builds the pipeline's stages from the configuration; Slack's bot mode keeps its threads in
/// `threads`, the LLM its daily spend in `ledger`.
pub fn stages(
    config: &Config,
    threads: Arc<dyn Threads>,
    ledger: Arc<dyn Ledger>,
) -> anyhow::Result<Stages> {
    let (context, analyzer) = analysis(config, Some(ledger))?;
    Ok(Stages {
        context,
        analyzer,
        notifiers: notifiers(config, threads)?,
    })
}

/// `aiops check-config`: builds every component the way `serve` does, so a bad URL, file or pattern
/// fails here and names its key, without opening the store for writing, binding the port or
/// creating the file sink's file.
pub fn check(config: &Config) -> anyhow::Result<()> {
    if !config.notify.file.is_empty() {
        FileNotifier::check(config.notify.file.as_ref())
            .with_context(|| format!("notify.file: cannot open {}", config.notify.file))?;
    }
    let config = Config {
        notify: aiops_notify::NotifyConfig {
            file: String::new(),
            ..config.notify.clone()
        },
        ..config.clone()
    };
    interactions(&config).context("invalid [alertmanager] or slack.signing_secret")?;
    stages(&config, Arc::new(Unopened), Arc::new(Unopened)).map(drop)
}

/// The threads of a store that `check-config` does not open; the sinks built there never deliver.
#[derive(Debug)]
struct Unopened;

#[async_trait::async_trait]
impl Threads for Unopened {
    async fn thread(&self, _: &str, _: &str) -> Result<Option<Thread>, StoreError> {
        Err(StoreError::Unavailable(
            "check-config opens no store".into(),
        ))
    }
    async fn save_thread(&self, _: &str, _: &str, _: &Thread) -> Result<Thread, StoreError> {
        Err(StoreError::Unavailable(
            "check-config opens no store".into(),
        ))
    }
    async fn close_thread(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "check-config opens no store".into(),
        ))
    }
    async fn set_resolved(&self, _: &str, _: &str, _: bool) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "check-config opens no store".into(),
        ))
    }
}

#[async_trait::async_trait]
impl Ledger for Unopened {
    async fn book(&self, _: i64, _: f64) -> Result<f64, StoreError> {
        Err(StoreError::Unavailable(
            "check-config opens no store".into(),
        ))
    }
}

/// The stages that produce an analysis: context and rca. The LLM's daily spend is booked in
/// `ledger` (the store's), else in memory.
pub fn analysis(
    config: &Config,
    ledger: Option<Arc<dyn Ledger>>,
) -> anyhow::Result<(Arc<dyn ContextSource>, Arc<dyn Analyzer>)> {
    if config.prometheus.url.is_empty() && config.loki.url.is_empty() {
        tracing::info!(
            "prometheus.url and loki.url are empty: evidence comes from the alerts themselves only"
        );
    }
    let context = Arc::new(
        Gatherer::new(
            &config.context,
            &config.prometheus,
            &config.loki,
            Arc::new(SystemClock),
        )
        .map_err(anyhow::Error::msg)
        .context("invalid context configuration")?,
    );
    let rules = RulesAnalyzer::new(&config.rules)
        .map_err(anyhow::Error::msg)
        .context("invalid rules")?;
    let analyzer: Arc<dyn Analyzer> = match config.llm.is_enabled() {
        true => {
            let llm = LlmAnalyzer::new(&config.llm, rules)
                .map_err(anyhow::Error::msg)
                .context("invalid LLM configuration")?
                .with_investigator(context.clone());
            Arc::new(match ledger {
                Some(ledger) => llm.with_ledger(ledger),
                None => llm,
            })
        }
        false => {
            tracing::info!("no LLM configured: the rule-based analyzer answers");
            Arc::new(rules)
        }
    };
    Ok((context, analyzer))
}

/// The configured sinks, in delivery order.
fn notifiers(config: &Config, threads: Arc<dyn Threads>) -> anyhow::Result<Vec<Arc<dyn Notifier>>> {
    let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
    if config.notify.stdout {
        notifiers.push(Arc::new(StdoutNotifier::new(config.notify.stdout_format)));
    }
    if !config.notify.file.is_empty() {
        let sink = FileNotifier::open(config.notify.file.as_ref())
            .with_context(|| format!("notify.file: cannot open {}", config.notify.file))?;
        notifiers.push(Arc::new(sink));
    }
    let filter = &config.notify.filter;
    if let Some(url) = &config.webhook.url {
        let hook = &config.webhook;
        let sink = WebhookNotifier::with_auth(
            url.clone(),
            hook.authorization.clone(),
            Duration::from_secs(hook.timeout_secs),
            hook.max_retries,
        )
        .map_err(anyhow::Error::msg)?;
        notifiers.push(Arc::new(
            Filtered::new(sink, filter).map_err(anyhow::Error::msg)?,
        ));
    }
    if let Some(sink) = slack(config, threads)? {
        notifiers.push(Arc::new(
            Filtered::new(sink, filter).map_err(anyhow::Error::msg)?,
        ));
    }
    Ok(notifiers)
}

/// Where Slack messages link to.
pub fn links(config: &Config) -> Links {
    Links {
        aiops_url: config.notify.public_url.clone(),
        grafana_url: config.grafana.url.clone(),
        grafana_datasource: config.grafana.prometheus_datasource.clone(),
        interactive: config.slack.signing_secret.is_some(),
        signer: signer(config),
    }
}

/// Signs graph links, when aiops draws graphs (`prometheus.url` is set): with `notify.link_key`,
/// else with a key of this process's own (the same for every caller in it).
fn signer(config: &Config) -> Option<LinkSigner> {
    static RANDOM: std::sync::OnceLock<LinkSigner> = std::sync::OnceLock::new();
    if config.prometheus.url.is_empty() {
        return None;
    }
    Some(match &config.notify.link_key {
        Some(key) => LinkSigner::new(key.clone()),
        None => RANDOM.get_or_init(LinkSigner::random).clone(),
    })
}

/// Draws groups' graphs from `prometheus.url`, when it is set.
fn grapher(config: &Config) -> anyhow::Result<Option<Arc<dyn Grapher>>> {
    if config.prometheus.url.is_empty() {
        return Ok(None);
    }
    let graph = PromGraph::new(&config.prometheus).map_err(anyhow::Error::msg)?;
    Ok(Some(Arc::new(graph)))
}

/// The Slack sink: bot-token mode (threads) when a token is set, else incoming-webhook mode.
fn slack(config: &Config, threads: Arc<dyn Threads>) -> anyhow::Result<Option<SlackNotifier>> {
    let slack = &config.slack;
    let links = links(config);
    let timeout = Duration::from_secs(slack.timeout_secs);
    let sink = match (&slack.bot_token, &slack.webhook_url) {
        (Some(token), _) => SlackNotifier::bot(
            token.clone(),
            &slack.api_url,
            &slack.channel,
            slack.routes.clone(),
            threads,
            links,
            timeout,
            slack.max_retries,
        ),
        (None, Some(url)) => SlackNotifier::webhook(url.clone(), links, timeout, slack.max_retries),
        (None, None) => return Ok(None),
    };
    let mut sink = sink.map_err(anyhow::Error::msg)?;
    if let Some(graphs) = grapher(config)? {
        sink = sink.with_graphs(graphs);
    }
    if slack.bot_token.is_some() && slack.webhook_url.is_some() {
        tracing::info!(
            "slack.bot_token and slack.webhook_url are both set: posting with the bot token"
        );
    }
    Ok(Some(sink))
}

/// Slack's interactivity endpoint, when `slack.signing_secret` is set; silences go to
/// `alertmanager.url`.
fn interactions(config: &Config) -> anyhow::Result<Option<Arc<Interactions>>> {
    let silencer = AlertmanagerClient::new(&config.alertmanager)
        .map_err(anyhow::Error::msg)?
        .map(|c| Arc::new(c) as Arc<dyn Silencer>);
    let Some(secret) = &config.slack.signing_secret else {
        return Ok(None);
    };
    if silencer.is_none() {
        tracing::info!("alertmanager.url is empty: the Silence buttons will say so");
    }
    let interactions = Interactions::new(secret.clone(), silencer, &config.notify.public_url)
        .map_err(anyhow::Error::msg)?;
    Ok(Some(Arc::new(interactions)))
}

/// Opens the configured store (and runs its migrations).
pub async fn open_store(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<aiops_store::Backend> {
    aiops_store::open(&config.store, clock)
        .await
        .with_context(|| {
            format!(
                "cannot open the store at {}",
                aiops_store::redact_url(&config.store.url)
            )
        })
}

/// Runs the daemon until SIGTERM or Ctrl-C: the API stops accepting, then running jobs get the grace
/// period.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    let backend = open_store(&config, clock.clone()).await?;
    let stages = stages(&config, backend.threads, backend.ledger)?;
    let store = backend.store;
    let worker = Arc::new(
        Worker::new(
            store.clone(),
            stages,
            metrics.clone(),
            clock.clone(),
            config.worker.clone(),
        )
        .with_flap_window(Duration::from_secs(config.notify.flap_window_secs)),
    );
    let listener = std::net::TcpListener::bind(&config.server.listen)
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let state = AppState {
        store,
        metrics,
        clock,
        auth: config.server.auth(),
        config: Arc::new(config.server.clone()),
        interactions: interactions(&config)?,
        page: Some(Arc::new(HtmlPage::new(links(&config)))),
        graphs: grapher(&config)?
            .zip(signer(&config))
            .map(|(grapher, signer)| Graphs { grapher, signer }),
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
