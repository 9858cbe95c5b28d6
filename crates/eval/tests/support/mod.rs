//! What the integration tests share: a scenario's data served (a real Prometheus on its blocks, the
//! scenario Loki) and the real context stage run on its alert group.

use std::path::Path;
use std::sync::Arc;

use aiops_context::{ContextConfig, Gatherer, LokiConfig, PrometheusConfig};
use aiops_eval::{Scenario, Served};
use aiops_model::{Context, ContextSource, SystemClock, WebhookPayload};

/// The alert group of the scenario in `dir`, its data served (it stops when dropped) and a context
/// stage with the default configuration pointed at it.
pub async fn stage(dir: &Path) -> (WebhookPayload, Served, Gatherer) {
    aiops_eval::check_installed().unwrap_or_else(|e| panic!("{e}"));
    let scenario = Scenario::load(dir).expect("the scenario loads");
    let now = aiops_eval::now();
    let payload = scenario.payload(now).expect("its alert group");
    let served = Served::start(&scenario, now).await.expect("served");
    let gatherer = Gatherer::new(
        &ContextConfig::default(),
        &PrometheusConfig {
            url: served.prometheus.url.clone(),
            ..PrometheusConfig::default()
        },
        &LokiConfig {
            url: served.loki.url.clone(),
            ..LokiConfig::default()
        },
        Arc::new(SystemClock),
    )
    .expect("valid configuration");
    (payload, served, gatherer)
}

/// The alert group of the scenario in `dir` and the context the stage gathers for it, with the
/// default configuration, on its served data (stopped before this returns).
#[allow(dead_code)] // each test binary uses what it needs
pub async fn gathered(dir: &Path) -> (WebhookPayload, Context) {
    let (payload, served, gatherer) = stage(dir).await;
    let context = gatherer.gather(&payload).await.expect("gathers");
    drop(served);
    (payload, context)
}
