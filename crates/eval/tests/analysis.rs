//! The contract between the context stage and the rule-based analyzer, on real data: scenarios of the
//! eval suite (a real Prometheus on their blocks, built by promtool from the Debian package
//! `prometheus`, and the scenario Loki) gathered by the real context stage, and analyzed by the real
//! rule-based analyzer. For one scenario per family, the facts the stage establishes must make the
//! analyzer name the category and the culprit, cite the fact's evidence first and fill the steps
//! with the names; the alert's shape alone would have answered otherwise.

mod support;

use std::path::PathBuf;

use aiops_model::{Category, Fact};
use aiops_rca::analyze_by_rules;

/// Runs scenario `name` and checks the analysis: `category`, a root cause that names `culprit`,
/// remediation steps that name `target`, and a first citation whose evidence carries a fact for
/// which `is_cause` holds.
async fn case(
    name: &str,
    category: Category,
    (culprit, target): (&str, &str),
    is_cause: fn(&Fact) -> bool,
) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../eval/scenarios")
        .join(name);
    let (payload, context) = support::gathered(&dir).await;
    let facts: Vec<String> = context
        .findings()
        .map(|f| format!("[{}] {}", f.evidence, f.fact.describe()))
        .collect();
    let facts = facts.join("\n");
    let analysis = analyze_by_rules(&payload, &context);
    assert_eq!(
        analysis.category, category,
        "{name}: {analysis:#?}\nfacts:\n{facts}"
    );
    assert!(
        analysis.root_cause.contains(culprit),
        "{name}: the root cause names {culprit:?}: {}\nfacts:\n{facts}",
        analysis.root_cause
    );
    let first = analysis.evidence.first().expect("cites evidence");
    let cited = context
        .evidence(&first.id)
        .expect("a cited id exists in the context");
    let cause = cited.facts.iter().find(|f| is_cause(f)).unwrap_or_else(|| {
        panic!(
            "{name}: the first citation {} shows the cause:\n{facts}",
            first.id
        )
    });
    assert_eq!(first.note, cause.describe(), "{name}");
    for e in &analysis.evidence {
        assert!(context.evidence(&e.id).is_some(), "{name}: {} exists", e.id);
    }
    assert!(
        analysis.remediation.iter().any(|s| s.contains(target)),
        "{name}: the steps name {target:?}: {:?}",
        analysis.remediation
    );
    assert!(
        analysis.confidence > 0.4,
        "{name}: the facts agree: {} {:?}",
        analysis.confidence,
        analysis.alternatives
    );
}

#[tokio::test]
async fn a_dependency_refusing_connections_beats_the_error_ratio() {
    case(
        "dependency-redis-refused",
        Category::DependencyFailure,
        ("redis-cart-master", "redis-cart-master"),
        |f| matches!(f, Fact::DependencyFailure { .. }),
    )
    .await;
}

#[tokio::test]
async fn the_rack_all_down_targets_share_beats_separate_targets_down() {
    case(
        "group-target-down-rack-switch",
        Category::Network,
        ("r12", "r12"),
        |f| matches!(f, Fact::LogTemplate { .. } | Fact::CommonFactor { .. }),
    )
    .await;
}

#[tokio::test]
async fn an_oom_kill_is_the_crash_and_names_its_container() {
    case(
        "k8s-crashloop-oomkilled",
        Category::CrashOom,
        ("OOMKilled", "checkout"),
        |f| matches!(f, Fact::Termination { reason, .. } if reason == "oom"),
    )
    .await;
}

#[tokio::test]
async fn a_new_version_just_before_the_onset_is_the_deploy() {
    case(
        "k8s-bad-deploy-missing-config",
        Category::BadDeploy,
        ("2.14.0", "invoice-api"),
        |f| matches!(f, Fact::Change { .. }),
    )
    .await;
}

#[tokio::test]
async fn an_autoscaler_at_its_maximum_is_capacity() {
    case(
        "capacity-hpa-at-max",
        Category::Capacity,
        ("maxReplicas", "storefront"),
        |f| {
            matches!(
                f,
                Fact::Saturation {
                    resource: aiops_model::Resource::Replicas,
                    ..
                }
            )
        },
    )
    .await;
}

#[tokio::test]
async fn throttling_beats_the_cpu_it_caps() {
    case(
        "k8s-cpu-throttling",
        Category::ResourceSaturation,
        ("throttl", "search-api"),
        |f| {
            matches!(
                f,
                Fact::Saturation {
                    resource: aiops_model::Resource::CpuThrottling,
                    ..
                }
            )
        },
    )
    .await;
}
