//! The rule-based analyzer: the embedded default, and the LLM analyzer's fallback. It classifies the
//! alert by what its name, rule expression and labels say, and answers with the matching playbook.

use std::time::Instant;

use aiops_model::{
    Analysis, Analyzer, AnalyzerInfo, Category, Context, EvidenceRef, StageError, WebhookPayload,
};
use async_trait::async_trait;

/// A playbook: what a class of alert usually means and what to do first.
struct Playbook {
    /// Matched case-insensitively against the alertname and the rule expression.
    keywords: &'static [&'static str],
    category: Category,
    cause: &'static str,
    impact: &'static str,
    steps: &'static [&'static str],
}

const PLAYBOOKS: &[Playbook] = &[
    Playbook {
        keywords: &["oom", "crashloop", "restart", "killed"],
        category: Category::CrashOom,
        cause: "The process is crashing or being killed, most often for exceeding its memory limit.",
        impact: "Requests fail while the process restarts; repeated restarts back off and lengthen outages.",
        steps: &[
            "Check restarts and the last termination reason: `kubectl describe pod <pod>` (look for OOMKilled).",
            "Read the logs of the previous run: `kubectl logs <pod> --previous`.",
            "If it was OOMKilled, compare memory usage with the limit and raise the limit or fix the leak.",
        ],
    },
    Playbook {
        keywords: &[
            "up ==",
            "up{",
            "targetdown",
            "instancedown",
            "down",
            "unreachable",
            "absent",
        ],
        category: Category::DependencyFailure,
        cause: "The target stopped answering scrapes: the process is down, the host is down, or the network \
                path to it is broken.",
        impact: "The service behind the target is likely unavailable, and its metrics are missing.",
        steps: &[
            "Check whether the process runs on the instance (`systemctl status <unit>` or `kubectl get pods`).",
            "Open Prometheus' Targets page to read the last scrape error.",
            "Test the scrape endpoint from the Prometheus host: `curl -sS http://<instance>/metrics | head`.",
            "If the process is down, read its logs from just before the alert started, then restart it.",
        ],
    },
    Playbook {
        keywords: &["disk", "filesystem", "volume", "inode", "storage"],
        category: Category::Capacity,
        cause: "A filesystem is filling up or running out of inodes.",
        impact: "Writes will fail once it is full: databases stop, logs are lost, services crash.",
        steps: &[
            "Find what grows: `df -h` and `du -xh / --max-depth=2 | sort -h | tail`.",
            "Remove or rotate old logs and artifacts, or expand the volume.",
            "Check the growth rate with `predict_linear(node_filesystem_avail_bytes[6h], 24*3600)`.",
        ],
    },
    Playbook {
        keywords: &["memory", "mem_", "swap"],
        category: Category::ResourceSaturation,
        cause: "Memory is nearly exhausted on the host or in the container.",
        impact: "The kernel may kill processes (OOM) and performance degrades as it reclaims memory.",
        steps: &[
            "Find the largest consumers: `ps aux --sort=-rss | head` or `kubectl top pods`.",
            "Check for a leak: memory that grows steadily since the last deploy.",
            "Restart or scale the offender, and set memory limits that match its real working set.",
        ],
    },
    Playbook {
        keywords: &["cpu", "load", "throttl", "saturat"],
        category: Category::ResourceSaturation,
        cause: "CPU demand exceeds what the host or container has.",
        impact: "Latency rises for everything on the host; timeouts may follow.",
        steps: &[
            "Find the busiest processes: `top -o %CPU` or `kubectl top pods`.",
            "Check whether traffic rose (a capacity problem) or work per request rose (a regression).",
            "Scale out or raise CPU limits; roll back a recent deploy if it regressed.",
        ],
    },
    Playbook {
        keywords: &["error", "5xx", "fail", "exception"],
        category: Category::BadDeploy,
        cause: "The service returns errors at an elevated rate; a recent deploy or configuration change, or a \
                failing dependency, is the usual cause.",
        impact: "A share of user requests fail.",
        steps: &[
            "Check for a deploy or config change just before the alert started, and roll it back if there is one.",
            "Read the service's error logs from the alert window for the dominant exception.",
            "Check the service's dependencies (databases, downstream APIs) for errors or latency.",
        ],
    },
    Playbook {
        keywords: &["latency", "slow", "duration", "timeout"],
        category: Category::ResourceSaturation,
        cause: "Requests are slower than their objective: saturation of the service or of a dependency.",
        impact: "Users see slow responses and some requests time out.",
        steps: &[
            "Compare latency with traffic and saturation (CPU, connection pools) over the alert window.",
            "Check the latency of the service's dependencies.",
            "Scale out if saturated; roll back if a deploy made requests slower.",
        ],
    },
    Playbook {
        keywords: &[
            "network",
            "packet",
            "dns",
            "connection",
            "tcp",
            "certificate",
            "ssl",
            "tls",
        ],
        category: Category::Network,
        cause: "Network connectivity, name resolution or TLS between components is failing.",
        impact: "Calls between services fail or time out.",
        steps: &[
            "Test the path from the affected host: `curl -v` the dependency, `dig` its name.",
            "Check certificate expiry: `openssl s_client -connect <host>:443 | openssl x509 -noout -dates`.",
            "Check recent network policy, firewall or DNS changes.",
        ],
    },
];

/// The built-in analyzer: deterministic, instant, and always available.
#[derive(Debug, Clone, Copy, Default)]
pub struct RulesAnalyzer;

#[async_trait]
impl Analyzer for RulesAnalyzer {
    async fn analyze(
        &self,
        payload: &WebhookPayload,
        context: &Context,
    ) -> Result<Analysis, StageError> {
        Ok(analyze_by_rules(payload, context))
    }
}

/// Classifies the group by its alertname and rule expression, and answers with the matching playbook.
pub fn analyze_by_rules(payload: &WebhookPayload, context: &Context) -> Analysis {
    let started = Instant::now();
    let alertname = payload.alertname();
    let exprs: Vec<String> = payload
        .alerts
        .iter()
        .filter_map(|a| a.rule_expr())
        .collect();
    let haystack = format!("{alertname} {}", exprs.join(" ")).to_lowercase();
    let playbook = PLAYBOOKS
        .iter()
        .find(|p| p.keywords.iter().any(|k| haystack.contains(k)));

    let firing: Vec<&str> = payload
        .alerts
        .iter()
        .filter(|a| a.status == aiops_model::AlertStatus::Firing)
        .filter_map(|a| {
            a.labels
                .get("instance")
                .or_else(|| a.labels.get("pod"))
                .map(String::as_str)
        })
        .collect();
    let scope = match payload.label("service").or_else(|| payload.label("job")) {
        Some(service) => format!(" on {service}"),
        None => String::new(),
    };
    let headline = payload
        .alerts
        .first()
        .and_then(|a| a.annotations.get("summary"))
        .cloned()
        .unwrap_or_else(|| format!("{alertname} is firing{scope}"));
    let summary = if firing.len() > 1 {
        format!(
            "{headline} ({} alerts firing: {})",
            firing.len(),
            firing.join(", ")
        )
    } else {
        headline
    };

    let mut next_queries: Vec<String> = exprs.clone();
    next_queries.dedup();
    let evidence = context
        .evidence
        .iter()
        .map(|e| EvidenceRef {
            id: e.id.clone(),
            // The title and the finding's first line: for a graph, its most anomalous series.
            note: match e.summary.lines().next() {
                Some(first) if !first.is_empty() => format!("{}: {}", e.title, first),
                _ => e.title.clone(),
            },
        })
        .collect();
    let (category, root_cause, impact, remediation, confidence) = match playbook {
        Some(p) => (
            p.category,
            p.cause.to_owned(),
            p.impact.to_owned(),
            p.steps.iter().map(|s| (*s).to_owned()).collect(),
            0.4,
        ),
        None => (
            Category::Unknown,
            format!("No built-in playbook matches {alertname}; the rule's own expression is the best lead."),
            "Unknown; see the alert's description.".to_owned(),
            vec![
                "Run the rule's expression in Prometheus over the last hour to see when and where it changed.".into(),
                "Check recent deploys and configuration changes to the affected service.".into(),
            ],
            0.1,
        ),
    };
    Analysis {
        summary,
        root_cause,
        confidence,
        category,
        impact,
        evidence,
        remediation,
        next_queries,
        analyzer: AnalyzerInfo {
            name: "rules".into(),
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..AnalyzerInfo::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_model::alertmanager::parse_webhook;

    fn fixture(name: &str) -> WebhookPayload {
        let path = format!(
            "{}/../../tests/fixtures/alertmanager/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse_webhook(&std::fs::read(path).expect("fixture")).expect("parses")
    }

    #[test]
    fn target_down_is_a_dependency_failure_naming_both_targets() {
        let payload = fixture("target-down-group-firing.json");
        let analysis = analyze_by_rules(&payload, &Context::default());
        assert_eq!(analysis.category, Category::DependencyFailure);
        assert!(
            analysis.summary.contains("2 alerts firing"),
            "{}",
            analysis.summary
        );
        assert_eq!(
            analysis.next_queries,
            vec!["up{job=\"api\"} == 0".to_owned()]
        );
        assert!(!analysis.remediation.is_empty());
    }

    #[test]
    fn load_alert_is_saturation_and_unknown_alert_says_so() {
        let analysis = analyze_by_rules(&fixture("high-load-warning.json"), &Context::default());
        assert_eq!(analysis.category, Category::ResourceSaturation);
        let mut odd = fixture("high-load-warning.json");
        odd.common_labels.insert("alertname".into(), "Zzz".into());
        for a in &mut odd.alerts {
            a.generator_url.clear();
        }
        let analysis = analyze_by_rules(&odd, &Context::default());
        assert_eq!(analysis.category, Category::Unknown);
        assert!(analysis.confidence < 0.2);
    }
}
