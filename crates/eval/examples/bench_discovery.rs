//! The context stage on a large Prometheus (scripts/bench/context.sh, the large case): 50,000 series
//! (eval/gen/large.py: node_exporter on 30 hosts, kube-state-metrics and cAdvisor for 500 pods, three
//! applications) in a real Prometheus, an alert on one host and one on one pod. For each: the wall
//! time of the whole context stage (a fresh stage, then warm runs that reuse its metadata cache),
//! the HTTP requests Prometheus served for it (its own `prometheus_http_requests_total`), and
//! whether the evidence names the culprit.
//!
//! Usage: python3 eval/gen/large.py DIR && cargo run --release -p aiops-eval --example
//! bench_discovery -- DIR [RUNS]

use std::sync::Arc;
use std::time::Instant;

use aiops_context::{ContextConfig, Gatherer, LokiConfig, PrometheusConfig};
use aiops_eval::{Scenario, Served};
use aiops_model::{ContextSource, SystemClock};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let root = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/aiops-large".into()));
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(10);
    // BENCH_SHOW=1 prints each context's evidence (use with RUNS 0).
    let show = std::env::var_os("BENCH_SHOW").is_some();
    aiops_eval::check_installed().unwrap_or_else(|e| panic!("{e}"));
    let host = Scenario::load(&root.join("host")).expect("the host case");
    let pod = Scenario::load(&root.join("pod")).expect("the pod case");
    let now = aiops_eval::now();
    let started = Instant::now();
    let served = Served::start(&host, now)
        .await
        .expect("Prometheus on the blocks");
    println!(
        "blocks built and Prometheus ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::new();
    let series: serde_json::Value = client
        .get(format!(
            "{}/api/v1/query?query=count(%7B__name__%3D~%22.%2B%22%7D)",
            served.prometheus.url
        ))
        .send()
        .await
        .expect("a query")
        .json()
        .await
        .expect("JSON");
    println!(
        "series in Prometheus: {}",
        series["data"]["result"][0]["value"][1]
    );
    for (name, scenario, culprit) in [("host", &host, "batch-report"), ("pod", &pod, "805306368")] {
        let payload = scenario.payload(now).expect("the alert group");
        let gatherer = Gatherer::new(
            &ContextConfig::default(),
            &PrometheusConfig {
                url: served.prometheus.url.clone(),
                ..PrometheusConfig::default()
            },
            &LokiConfig::default(),
            Arc::new(SystemClock),
        )
        .expect("valid configuration");
        let mut times = Vec::new();
        let mut requests = Vec::new();
        let mut right = 0;
        let mut tokens = 0;
        for _ in 0..=runs {
            let before = served.prometheus.served_requests().await.expect("a count");
            let t = Instant::now();
            let context = gatherer.gather(&payload).await.expect("gathers");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            requests.push(served.prometheus.served_requests().await.expect("a count") - before);
            let text: String = context
                .evidence
                .iter()
                .map(|e| format!("{}\n{}\n", e.title, e.summary))
                .collect();
            right += usize::from(text.contains(culprit));
            if show {
                println!("{text}");
            }
            tokens = aiops_model::tokens::of_all(&context.evidence);
            if !context.failures.is_empty() {
                println!("  failures: {:?}", context.failures);
            }
        }
        let cold = times.remove(0);
        let cold_requests = requests.remove(0);
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: cold {cold:.0} ms ({cold_requests} requests); warm p50 {:.0} ms, max {:.0} ms over {runs} runs; requests per group {} to {}; culprit {culprit:?} named in {right} of {} contexts; evidence {tokens} tokens",
            percentile(&times, 0.5),
            percentile(&times, 1.0),
            requests.iter().copied().fold(f64::INFINITY, f64::min),
            requests.iter().copied().fold(0.0, f64::max),
            runs + 1
        );
    }
    drop(served);
}
