//! Metric discovery: the metric names whose series carry the group's entities (its pods, its hosts
//! under any exporter's port, its workloads in their namespaces), whatever a template would have
//! thought to ask. Each scope's metrics are fetched in one range query per kind, counters turned
//! into rates here, and every series scored; the scores decide which metrics reach the analyzer.

use crate::entities::Entities;
use crate::escape::{is_metric_name, quote};
use crate::series::Series;

/// Series labels that name a workload (kube-state-metrics, cAdvisor, exporters, applications).
const WORKLOAD_LABELS: &[&str] = &[
    "deployment",
    "statefulset",
    "daemonset",
    "horizontalpodautoscaler",
    "cronjob",
    "job_name",
    "owner_name",
    "service",
    "app",
    "application",
    "app_kubernetes_io_name",
    "container",
    "consumergroup",
    "ingress",
];

/// Series labels that name a resource of another system: a database, a schema, a topic, a queue, a
/// bucket, an index.
const RESOURCE_LABELS: &[&str] = &[
    "datname", "database", "db", "schema", "topic", "queue", "bucket", "index", "keyspace", "vhost",
];

/// Where an entity's series are: one or more sets of matchers, any of which selects them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Each alternative: `label=~"pattern"` matchers that all hold.
    pub alternatives: Vec<Vec<(String, String)>>,
    /// What the scope is, for titles: `app-03`, `shop/cart-7d9`.
    pub what: String,
    /// Set when the scope is not the group itself but something it leads to: the lead's name (a
    /// dependency), or empty for resources named after the group (their series' host names them).
    pub related: Option<String>,
}

impl Scope {
    fn of(label: &str, pattern: String, what: &str) -> Self {
        Self {
            alternatives: vec![vec![(label.to_owned(), pattern)]],
            what: what.to_owned(),
            related: None,
        }
    }

    /// One alternative as PromQL matchers.
    pub fn matchers(alternative: &[(String, String)]) -> String {
        alternative
            .iter()
            .map(|(l, p)| format!("{l}=~{}", quote(p)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The alternatives as `match[]` selectors, for listing the metric names.
    pub fn selectors(&self) -> Vec<prometheus_http_query::Selector<'_>> {
        self.alternatives
            .iter()
            .map(|alt| {
                alt.iter()
                    .fold(prometheus_http_query::Selector::new(), |s, (l, p)| {
                        s.regex_eq(l.as_str(), p.as_str())
                    })
            })
            .collect()
    }

    /// The alternative that selects `series` (its labels match), for showing its query.
    pub fn alternative_of(&self, series: &Series) -> &[(String, String)] {
        self.alternatives
            .iter()
            .find(|alt| {
                alt.iter().all(|(l, p)| {
                    series.labels.get(l).is_some_and(|v| {
                        regex::Regex::new(&format!("^(?:{p})$")).is_ok_and(|re| re.is_match(v))
                    })
                })
            })
            .or(self.alternatives.first())
            .map_or(&[], Vec::as_slice)
    }
}

/// The scopes of `entities`, most specific first: its pods, its hosts (as `instance` with any scheme,
/// port or path, and as `node`), its workloads under every label that names one (within their
/// namespaces), and its jobs when no host is known (a job's series on a host are the host's).
pub fn scopes(entities: &Entities) -> Vec<Scope> {
    let alternation = |values: &std::collections::BTreeSet<String>| {
        values
            .iter()
            .filter_map(|v| literal(v))
            .collect::<Vec<_>>()
            .join("|")
    };
    let names = |values: &std::collections::BTreeSet<String>| {
        let shown: Vec<&str> = values.iter().take(3).map(String::as_str).collect();
        match values.len() {
            n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
            _ => shown.join(", "),
        }
    };
    let mut scopes = Vec::new();
    if !entities.pods.is_empty() {
        let pods = alternation(&entities.pods);
        scopes.push(Scope::of(
            "pod",
            format!("({pods})"),
            &names(&entities.pods),
        ));
    }
    if !entities.hosts.is_empty() {
        let hosts = alternation(&entities.hosts);
        scopes.push(Scope {
            alternatives: vec![
                vec![(
                    "instance".into(),
                    format!("([a-z][a-z0-9+.-]*://)?({hosts})(:[0-9]+)?(/.*)?"),
                )],
                vec![("node".into(), format!("({hosts})"))],
            ],
            what: names(&entities.hosts),
            related: None,
        });
    }
    let namespaces = alternation(&entities.namespaces);
    let in_namespace = |alt: &mut Vec<(String, String)>| {
        if !namespaces.is_empty() {
            alt.push(("namespace".into(), format!("({namespaces})")));
        }
    };
    if !entities.workloads.is_empty() {
        let workloads = alternation(&entities.workloads);
        let alternatives = WORKLOAD_LABELS
            .iter()
            .map(|label| {
                let mut alt = vec![((*label).to_owned(), format!("({workloads})"))];
                in_namespace(&mut alt);
                alt
            })
            .collect();
        let what = match entities.namespaces.is_empty() {
            true => names(&entities.workloads),
            false => format!(
                "{} in {}",
                names(&entities.workloads),
                names(&entities.namespaces)
            ),
        };
        scopes.push(Scope {
            alternatives,
            what,
            related: None,
        });
    }
    // Resources named after the group (a database, a topic, a queue called like its namespace or
    // service): exporters of other systems record them under their own labels.
    let named: std::collections::BTreeSet<String> = entities
        .namespaces
        .iter()
        .chain(&entities.workloads)
        .filter(|n| n.chars().count() >= 4)
        .flat_map(|n| [n.clone(), n.replace('-', "_")])
        .collect();
    if !named.is_empty() {
        let pattern = format!("({})", alternation(&named));
        scopes.push(Scope {
            alternatives: RESOURCE_LABELS
                .iter()
                .map(|l| vec![((*l).to_owned(), pattern.clone())])
                .collect(),
            what: format!("resources named {}", names(&named)),
            related: Some(String::new()),
        });
    }
    if entities.hosts.is_empty() && !entities.jobs.is_empty() {
        let jobs = alternation(&entities.jobs);
        scopes.push(Scope::of(
            "job",
            format!("({jobs})"),
            &names(&entities.jobs),
        ));
    }
    scopes
}

/// `value` as a regex that matches it literally, with no backslash: a character class for each
/// metacharacter (`app.example` → `app[.]example`), so the pattern reads the same inside a PromQL
/// string literal and a `match[]` selector. `None` for a value no host or pod name can have.
pub fn literal(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' | ']' | '^' | '"' => return None,
            c if c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '/' | '@' | '%' | '=') => {
                out.push(c)
            }
            c => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
        }
    }
    Some(out)
}

/// How a metric is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A counter: its per-second rate.
    Counter,
    /// A gauge (an `_info` series too): as it is.
    Gauge,
    /// A histogram (its `_bucket` series): its 99th percentile, one query per histogram.
    Histogram,
}

/// Histograms graphed as quantiles per group, at most: each costs a query of its own.
pub const MAX_HISTOGRAMS: usize = 4;

/// The histogram `metric` is a bucket of (`http_request_duration_seconds_bucket` →
/// `http_request_duration_seconds`).
pub fn histogram_of(metric: &str) -> Option<&str> {
    metric
        .strip_suffix("_bucket")
        .filter(|base| is_metric_name(base) && !base.is_empty())
}

/// The 99th percentile of histogram `base` in `scope`, per series of its buckets but `le`.
pub fn quantile(base: &str, scope: &Scope) -> String {
    scope
        .alternatives
        .iter()
        .map(|alt| {
            format!(
                "histogram_quantile(0.99, rate({base}_bucket{{{}}}[{RATE_SECS}s]))",
                Scope::matchers(alt)
            )
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// How `metric` is read, or `None` for what describes the scrape or an alert, or the parts of a
/// histogram or summary, rather than the entity. `counter` says what `/api/v1/metadata` declared
/// (a histogram's parts are declared under its base name, so a declared `pg_stat_activity_count`
/// is a metric of its own); without it, the name decides (`_total`; `_count`, `_sum`, `_bucket`
/// are a histogram's parts).
pub fn kind(metric: &str, counter: Option<bool>) -> Option<Kind> {
    const PREFIXES: &[&str] = &["scrape_", "ALERTS", "promhttp_"];
    const SUFFIXES: &[&str] = &["_bucket", "_sum", "_count", "_created"];
    let noise = metric == "up"
        || PREFIXES.iter().any(|p| metric.starts_with(p))
        || (counter.is_none() && SUFFIXES.iter().any(|s| metric.ends_with(s)));
    if !is_metric_name(metric) || noise {
        return None;
    }
    Some(match counter.unwrap_or(metric.ends_with("_total")) {
        true => Kind::Counter,
        false => Kind::Gauge,
    })
}

/// One range query for all of `names` (checked metric names) in `scope`, raw: a counter's rate is
/// taken from the points by [`rates`].
pub fn batch(names: &[&str], scope: &Scope) -> String {
    let alternation = names.join("|");
    scope
        .alternatives
        .iter()
        .map(|alt| format!("{{__name__=~\"{alternation}\", {}}}", Scope::matchers(alt)))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The query that shows `metric` in one alternative of a scope, and its title.
pub fn shown(
    metric: &str,
    alternative: &[(String, String)],
    kind: Kind,
    what: &str,
) -> (String, String) {
    let selector = format!("{metric}{{{}}}", Scope::matchers(alternative));
    match kind {
        Kind::Counter => (
            format!("rate({selector}[{RATE_SECS}s])"),
            format!("Per-second rate of {metric} on {what}"),
        ),
        Kind::Gauge => (selector, format!("{metric} on {what}")),
        Kind::Histogram => {
            let base = histogram_of(metric).unwrap_or(metric);
            (
                format!(
                    "histogram_quantile(0.99, rate({base}_bucket{{{}}}[{RATE_SECS}s]))",
                    Scope::matchers(alternative)
                ),
                format!("99th percentile of {base} on {what}"),
            )
        }
    }
}

/// The span a rate is taken over, as `rate(…[5m])` would.
pub const RATE_SECS: u32 = 300;

/// Counter series as per-second rates over [`RATE_SECS`], at the points from `from` on (fetch
/// [`RATE_SECS`] earlier, so that the first has a whole span behind it). A range query repeats a
/// sample at every step until the next scrape, so the samples are where the value changed; the rate
/// is the increase between the first and the last of them in the span over the time between them
/// (a reset counts from zero, as in PromQL), and 0 when nothing changed over a whole span.
pub fn rates(series: Vec<Series>, from: f64) -> Vec<Series> {
    let span = f64::from(RATE_SECS);
    series
        .into_iter()
        .filter_map(|s| {
            let p = &s.points;
            let first = p.first()?.0;
            // The samples: the first point, and every point whose value changed.
            let samples: Vec<(f64, f64)> = p
                .iter()
                .enumerate()
                .filter(|(i, q)| *i == 0 || q.1 != p[i - 1].1)
                .map(|(_, q)| *q)
                .collect();
            // The increase up to each sample, resets counted from zero.
            let mut total = vec![0.0; samples.len()];
            for i in 1..samples.len() {
                let delta = samples[i].1 - samples[i - 1].1;
                total[i] = total[i - 1] + if delta >= 0.0 { delta } else { samples[i].1 };
            }
            let mut out = Vec::new();
            let (mut lo, mut hi) = (0, 0);
            for &(t, _) in p.iter().filter(|q| q.0 >= from) {
                while hi < samples.len() && samples[hi].0 <= t {
                    hi += 1;
                }
                while lo < hi && samples[lo].0 <= t - span {
                    lo += 1;
                }
                match hi - lo {
                    n if n >= 2 => {
                        let (a, b) = (lo, hi - 1);
                        out.push((t, (total[b] - total[a]) / (samples[b].0 - samples[a].0)));
                    }
                    // Nothing changed over a whole span: no increase.
                    0 if t - first >= span => out.push((t, 0.0)),
                    _ => {}
                }
            }
            (!out.is_empty()).then_some(Series {
                labels: s.labels,
                points: out,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entities(hosts: &[&str], pods: &[&str]) -> Entities {
        Entities {
            hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
            pods: pods.iter().map(|s| (*s).to_owned()).collect(),
            ..Entities::default()
        }
    }

    #[test]
    fn a_host_is_every_exporter_on_it_and_a_pod_its_containers() {
        let s = scopes(&entities(&["app-03", "10.0.0.7"], &["cart-1"]));
        assert_eq!(Scope::matchers(&s[0].alternatives[0]), r#"pod=~"(cart-1)""#);
        let host = &s[1].alternatives;
        assert_eq!(
            Scope::matchers(&host[1]),
            r#"node=~"(10[.]0[.]0[.]7|app-03)""#
        );
        let re = regex::Regex::new(&format!("^(?:{})$", host[0][0].1)).expect("regex");
        for yes in [
            "app-03:9256",
            "app-03",
            "redis://app-03:6379",
            "https://app-03/health",
        ] {
            assert!(re.is_match(yes), "{yes}");
        }
        assert!(!re.is_match("app-030:9100"));
    }

    #[test]
    fn a_workload_is_looked_for_under_every_label_that_names_one_in_its_namespace() {
        let e = Entities {
            workloads: ["cart".to_owned()].into(),
            namespaces: ["shop".to_owned()].into(),
            ..Entities::default()
        };
        let s = scopes(&e);
        assert_eq!(s.len(), 2, "the workload, and resources named after it");
        assert!(s[0].alternatives.iter().all(|alt| alt.len() == 2));
        assert_eq!(
            Scope::matchers(&s[1].alternatives[0]),
            r#"datname=~"(cart|shop)""#
        );
        let query = batch(&["kube_deployment_spec_replicas"], &s[0]);
        assert!(
            query.starts_with(
                r#"{__name__=~"kube_deployment_spec_replicas", deployment=~"(cart)", namespace=~"(shop)"} or "#
            ),
            "{query}"
        );
    }

    #[test]
    fn counters_are_rates_and_noise_is_left_out() {
        assert_eq!(
            kind("namedprocess_namegroup_cpu_seconds_total", None),
            Some(Kind::Counter)
        );
        assert_eq!(
            kind("node_vmstat_oom_kill", Some(true)),
            Some(Kind::Counter)
        );
        assert_eq!(kind("node_load1", Some(false)), Some(Kind::Gauge));
        assert_eq!(kind("app_build_info", None), Some(Kind::Gauge));
        assert_eq!(
            kind("pg_stat_activity_count", Some(false)),
            Some(Kind::Gauge)
        );
        assert_eq!(
            kind("pg_stat_activity_count", None),
            None,
            "a histogram's part by its name"
        );
        for noise in [
            "up",
            "scrape_duration_seconds",
            "http_request_duration_seconds_bucket",
        ] {
            assert_eq!(kind(noise, None), None, "{noise}");
        }
    }

    #[test]
    fn a_histogram_is_read_as_its_99th_percentile() {
        let scope = &scopes(&entities(&[], &["cart-1"]))[0];
        assert_eq!(
            histogram_of("http_request_duration_seconds_bucket"),
            Some("http_request_duration_seconds")
        );
        assert_eq!(histogram_of("node_load1"), None);
        assert_eq!(
            quantile("http_request_duration_seconds", scope),
            r#"histogram_quantile(0.99, rate(http_request_duration_seconds_bucket{pod=~"(cart-1)"}[300s]))"#
        );
        promql_parser::parser::parse(&quantile("x", scope)).expect("valid PromQL");
    }

    #[test]
    fn a_rate_is_taken_from_the_scrapes_and_survives_a_reset() {
        // Scraped every 60 s, seen every 10 s: each sample repeats until the next one. 2/s, reset to
        // 0 at 1200 s; a second counter that never moves.
        let stepped = |f: &dyn Fn(f64) -> f64| Series {
            labels: Default::default(),
            points: (0..200)
                .map(|i| {
                    let t = f64::from(i) * 10.0;
                    (t, f(t - t % 60.0))
                })
                .collect(),
        };
        let moving = stepped(&|t| {
            if t < 1200.0 {
                2.0 * t
            } else {
                2.0 * (t - 1200.0)
            }
        });
        let still = stepped(&|_| 7.0);
        let rated = rates(vec![moving, still], 300.0);
        assert_eq!(
            rated[0].points.first().map(|p| p.0),
            Some(300.0),
            "from `from` on"
        );
        for p in &rated[0].points {
            match p.0 {
                // The spans across the reset lose what was counted before it, as PromQL's do.
                t if (1200.0..1500.0).contains(&t) => assert!(p.1 >= 1.4 && p.1 <= 2.0, "{p:?}"),
                _ => assert!((p.1 - 2.0).abs() < 0.01, "{p:?}"),
            }
        }
        assert!(rated[1].points.iter().all(|p| p.1 == 0.0) && rated[1].points.len() == 170);
    }
}
