//! The context stage's discovery, one mechanism per case (issue 17, points 1 to 7), on a real
//! Prometheus (Debian package `prometheus`, blocks built by promtool) and the scenario Loki. Each case
//! (crates/eval/tests/cases, written by eval/gen/cases.py) holds the culprit and an obvious candidate
//! that is a red herring: the test checks that the first is found and the second left out or ranked
//! below it.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use aiops_context::{ContextConfig, Gatherer, LokiConfig, PrometheusConfig};
use aiops_eval::{Scenario, Served};
use aiops_model::{Context, ContextSource, Evidence, SystemClock};

fn case_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cases")
        .join(name)
}

/// The context the stage gathers for case `name`, on its served data.
async fn context_of(name: &str) -> Context {
    support::gathered(&case_dir(name)).await.1
}

/// The evidence whose title contains `title`, and where it ranks.
fn find<'a>(context: &'a Context, title: &str) -> (usize, &'a Evidence) {
    context
        .evidence
        .iter()
        .enumerate()
        .find(|(_, e)| e.title.contains(title))
        .unwrap_or_else(|| panic!("no evidence titled {title:?}:\n{}", dump(context)))
}

fn dump(context: &Context) -> String {
    let mut out = String::new();
    for e in &context.evidence {
        out.push_str(&format!("## {} [{}]\n{}\n", e.title, e.id, e.summary));
    }
    out.push_str(&format!("failures: {:#?}", context.failures));
    out
}

#[tokio::test]
async fn point_1_a_services_pods_lead_to_their_node_and_not_to_another_busy_node() {
    let context = context_of("entities-pod-node").await;
    let (_, pressure) = find(&context, "node_pressure_memory_waiting_seconds_total");
    assert!(
        pressure.summary.contains("ip-10-0-1-5:9100"),
        "{}",
        pressure.summary
    );
    assert!(
        !dump(&context).contains("ip-10-0-9-9"),
        "the busy node without checkout pods: {}",
        dump(&context)
    );
}

#[tokio::test]
async fn point_2_an_error_names_its_dependency_and_its_lines_and_metrics_follow() {
    let context = context_of("dependency-hop").await;
    let (_, lines) = find(&context, "The lines of redis-cart-master");
    assert!(
        lines.summary.contains("Out Of Memory allocating"),
        "{}",
        lines.summary
    );
    let (_, up) = find(&context, "redis_up");
    assert!(up.summary.contains("redis-cart-master"), "{}", up.summary);
    assert!(
        !dump(&context).contains("redis-sessions"),
        "a failing redis nobody named: {}",
        dump(&context)
    );
}

#[tokio::test]
async fn point_3_the_workloads_metrics_are_found_by_its_namespace_and_name_only() {
    let context = context_of("workload-scope").await;
    let (_, wants) = find(
        &context,
        "Saturation: the replicas the autoscaler wants against its maximum",
    );
    assert!(
        wants
            .summary
            .contains(r#"horizontalpodautoscaler="storefront""#)
            && wants.summary.contains("at 250% of the limit 12"),
        "{}",
        wants.summary
    );
    assert!(
        !dump(&context).contains(r#"horizontalpodautoscaler="search""#),
        "another namespace's autoscaler: {}",
        dump(&context)
    );
}

#[tokio::test]
async fn point_4_what_changed_with_the_alert_ranks_above_what_was_always_high() {
    let context = context_of("scoring").await;
    let (io_rank, io) = find(&context, "node_disk_io_time_seconds_total");
    assert!(
        io.summary.contains("left its baseline at"),
        "{}",
        io.summary
    );
    let (load_rank, load) = find(&context, "node_load15");
    assert!(
        io_rank < load_rank,
        "the change ranks first:\n{}",
        dump(&context)
    );
    assert!(
        !load.summary.contains("left its baseline"),
        "high all along is no change: {}",
        load.summary
    );
    // A histogram is read as its 99th percentile, scored like any series.
    let (db_rank, db) = find(&context, "99th percentile of app_db_query_duration_seconds");
    assert!(
        db.summary.contains("left its baseline at") && db_rank < load_rank,
        "{}",
        dump(&context)
    );
}

#[tokio::test]
async fn point_5_a_usage_is_shown_against_its_limit_and_bytes_alone_mislead() {
    let context = context_of("saturation").await;
    let (_, memory) = find(&context, "Saturation: container memory against its limit");
    let mut lines = memory.summary.lines();
    let first = lines.next().expect("a share");
    assert!(
        first.contains(r#"container="checkout""#) && first.contains("of the limit 805306368"),
        "the container at its limit first: {}",
        memory.summary
    );
    let share: f64 = first
        .split("at ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .expect("a share in percent");
    assert!(share > 98.0, "{first}");
    let cache = lines
        .find(|l| l.contains(r#"container="cache""#))
        .expect("the sidecar's share");
    assert!(cache.contains("at 25."), "2 GiB of 8 GiB: {cache}");
}

#[tokio::test]
async fn point_6_the_alerting_targets_share_their_rack_not_the_datacenter() {
    let context = context_of("peers-factors").await;
    let rule = &context
        .evidence
        .iter()
        .find(|e| e.query.as_deref() == Some(r#"up{job="node"}"#))
        .unwrap_or_else(|| panic!("the rule's evidence:\n{}", dump(&context)));
    assert!(
        rule.summary
            .contains("Peers: 3 of the expression's 7 series are the alerts' own."),
        "{}",
        rule.summary
    );
    assert!(
        rule.summary.contains(
            r#"Common to the alerting series: rack="r12" (all 3 alerting; 1 of 4 others)"#
        ),
        "{}",
        rule.summary
    );
    assert!(
        !rule.summary.contains("datacenter=\"fra1\" (all"),
        "shared by the healthy ones too: {}",
        rule.summary
    );
}

#[tokio::test]
async fn point_7_a_new_version_near_the_alert_is_a_change_and_an_old_one_is_not() {
    let context = context_of("changes").await;
    let (_, build) = find(&context, "app_build_info");
    // The old version's series is gone and the new one appeared: both ranked first, with their
    // times. (Blocks built by promtool carry no staleness markers, so the old series lingers the
    // five minutes of Prometheus' lookback; scraped live, it ends at once.)
    let top: Vec<&str> = build.summary.lines().take(2).collect();
    assert!(
        top.iter()
            .any(|l| l.contains(r#"version="3.4.2""#) && l.contains("appeared at"))
            && top
                .iter()
                .any(|l| l.contains(r#"version="3.4.1""#) && l.contains("gone since")),
        "the change, with its time: {}",
        build.summary
    );
    assert!(
        !dump(&context).contains("notifications"),
        "another service's change long before: {}",
        dump(&context)
    );
}

/// The query cap of issue 17: at most this many Prometheus requests per alert group.
const MAX_REQUESTS: f64 = 300.0;

#[tokio::test]
async fn point_8_on_fifty_thousand_series_the_requests_stay_capped_and_the_deadline_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generator = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../eval/gen/large.py");
    let made = std::process::Command::new("python3")
        .arg(&generator)
        .arg(dir.path())
        .arg("42")
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): apt-get install python3"));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    aiops_eval::check_installed().unwrap_or_else(|e| panic!("{e}"));
    let host = Scenario::load(&dir.path().join("host")).expect("the host case");
    let now = aiops_eval::now();
    let served = Served::start(&host, now).await.expect("served");
    let url = served.prometheus.url.clone();
    let gatherer = |deadline_secs: u64| {
        Gatherer::new(
            &ContextConfig {
                deadline_secs,
                ..ContextConfig::default()
            },
            &PrometheusConfig {
                url: url.clone(),
                ..PrometheusConfig::default()
            },
            &LokiConfig::default(),
            Arc::new(SystemClock),
        )
        .expect("valid configuration")
    };
    let payload = host.payload(now).expect("the alert group");
    let before = served.prometheus.served_requests().await.expect("a count");
    let context = gatherer(20).gather(&payload).await.expect("gathers");
    let requests = served.prometheus.served_requests().await.expect("a count") - before;
    assert!(
        requests <= MAX_REQUESTS,
        "{requests} Prometheus requests for one group"
    );
    let (_, process) = find(&context, "namedprocess_namegroup_cpu_seconds_total");
    assert!(
        process
            .summary
            .lines()
            .next()
            .unwrap_or_default()
            .contains("batch-report"),
        "the culprit among 50,000 series: {}",
        process.summary
    );
    // A deadline of one second is kept, whatever it cuts off: what is cut is named.
    let bounded = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        gatherer(1).gather(&payload),
    )
    .await
    .expect("the deadline holds")
    .expect("gathers");
    for f in bounded
        .failures
        .iter()
        .filter(|f| f.error.contains("deadline"))
    {
        assert!(
            f.query.is_some() || f.error.contains("listing") || f.error.contains("resolving"),
            "{f:?}"
        );
    }
    drop(served);
}
