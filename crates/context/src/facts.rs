//! Building the typed facts (`aiops_model::facts`) from what the context stage computed: series
//! summaries, saturation shares, peers, log templates. Each builder reads structured data, never
//! rendered text; what it knows about names (which metric is a latency, which label names a peer,
//! which words in a line mean "connection refused") is in the tables below.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use aiops_model::{ChangeKind, Fact, Resource, Symptom};
use regex::Regex;

use crate::candidates::leads::hosts_in;
use crate::entities::host_of;
use crate::logs::TemplateSummary;
use crate::rank::{ANOMALOUS, Tier};
use crate::series::{INCIDENT_LEAD, Series, SeriesSummary};

/// Labels that name the entity a series is about, most specific first.
const ENTITY_LABELS: &[&str] = &[
    "pod",
    "horizontalpodautoscaler",
    "deployment",
    "statefulset",
    "replicaset",
    "owner_name",
    "daemonset",
    "consumergroup",
    "application",
    "service",
    "app",
    "container",
    "instance",
    "node",
    "host",
    "name",
    "job",
];
/// Labels that qualify an entity (which disk, which heap area, which database user).
const QUALIFIERS: &[&str] = &[
    "container",
    "mountpoint",
    "device",
    "area",
    "id",
    "datname",
    "db_name",
    "usename",
    "groupname",
    "topic",
    "queue",
    "state",
    "reason",
    "color",
    "cluster",
    "rcode",
    "code",
    "status",
    "to",
    "client_name",
    "uri",
    "name",
];
/// Labels whose value is another service or host: a series with one of them, anomalous, shows a
/// dependency failing.
const PEER_LABELS: &[&str] = &[
    "client_name",
    "upstream",
    "upstream_host",
    "to",
    "peer",
    "remote",
    "remote_host",
    "target_host",
    "destination",
    "destination_service",
    "backend",
    "server_name",
];
/// Series (stable ones) whose birth is a change: a new version, a new ReplicaSet.
const VERSION_SERIES: &[(&str, ChangeKind)] = &[
    ("kube_replicaset_owner", ChangeKind::Deploy),
    ("kube_pod_container_info", ChangeKind::Version),
    ("_build_info", ChangeKind::Version),
    ("_version_info", ChangeKind::Version),
];
/// Labels that say which version a series is of.
const VERSION_LABELS: &[&str] = &[
    "version",
    "image",
    "tag",
    "revision",
    "git_commit",
    "commit",
    "release",
    "owner_name",
    "replicaset",
];
/// A change this far from the alert's start is not about it.
const CHANGE_HORIZON: f64 = 3600.0;

/// Labels that name what a version or rollout belongs to, most telling first.
const WORKLOAD_LABELS: &[&str] = &[
    "deployment",
    "statefulset",
    "daemonset",
    "owner_name",
    "service",
    "application",
    "app",
    "container",
    "job",
];

/// What a change is of: the workload, else the entity.
fn changed(labels: &BTreeMap<String, String>) -> String {
    WORKLOAD_LABELS
        .iter()
        .find_map(|l| labels.get(*l).cloned())
        .unwrap_or_else(|| subject(labels))
}

/// The entity a label set is about, without qualifiers.
fn subject_entity(labels: &BTreeMap<String, String>) -> Option<&String> {
    ENTITY_LABELS.iter().find_map(|l| labels.get(*l))
}

/// The entity a label set is about, with what qualifies it: `payments-api-6d9f (area="heap")`.
pub fn subject(labels: &BTreeMap<String, String>) -> String {
    let entity = ENTITY_LABELS.iter().find_map(|l| {
        labels
            .get(*l)
            .map(|v| match *l {
                "instance" => host_of(v).unwrap_or_else(|| v.clone()),
                _ => v.clone(),
            })
            .map(|v| (*l, v))
    });
    let qualifiers: Vec<String> = QUALIFIERS
        .iter()
        .filter(|q| entity.as_ref().is_none_or(|(l, _)| l != *q))
        .filter_map(|q| labels.get(*q).map(|v| format!("{q}={v:?}")))
        .take(3)
        .collect();
    match (entity, qualifiers.is_empty()) {
        (Some((_, e)), true) => e,
        (Some((_, e)), false) => format!("{e} ({})", qualifiers.join(", ")),
        (None, false) => qualifiers.join(", "),
        (None, true) => labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// What a rule's expression measures, read from its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Errors,
    Latency,
    Lag,
    Availability,
    Other,
}

impl Signal {
    pub fn of(expr: &str) -> Self {
        static ERRORS: LazyLock<Regex> =
            LazyLock::new(|| re(r#"(?i)(5\.\.|5xx|"5|error|fail|server_error|unavailable)"#));
        static LATENCY: LazyLock<Regex> =
            LazyLock::new(|| re(r"(?i)(histogram_quantile|duration|latency|_seconds_bucket)"));
        static LAG: LazyLock<Regex> =
            LazyLock::new(|| re(r"(?i)(lag|behind_master|backlog|replication_delay)"));
        static AVAILABILITY: LazyLock<Regex> =
            LazyLock::new(|| re(r"(^|[^a-z_:])(up|probe_success)([^a-z_:]|$)"));
        if ERRORS.is_match(expr) {
            Self::Errors
        } else if LATENCY.is_match(expr) {
            Self::Latency
        } else if LAG.is_match(expr) {
            Self::Lag
        } else if AVAILABILITY.is_match(expr) {
            Self::Availability
        } else {
            Self::Other
        }
    }
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("a valid built-in regex: {e}"))
}

fn secs(t: f64) -> i64 {
    t.round() as i64
}

/// The facts of the rule's own series: what the signal is (errors, latency, lag, targets down),
/// for the alerting series first.
pub fn of_rule(expr: &str, ranked: &[SeriesSummary]) -> Vec<Fact> {
    let Some(top) = ranked.first() else {
        return Vec::new();
    };
    let subject = subject(&top.labels);
    let at = top.onset.or(top.crossed_at).map(secs);
    match Signal::of(expr) {
        Signal::Errors => vec![Fact::ErrorRatio {
            subject,
            value: top.peak.1,
            baseline: top.baseline,
            at,
        }],
        Signal::Latency => vec![Fact::LatencyShift {
            subject,
            value: top.peak.1,
            baseline: top.baseline,
            at,
        }],
        Signal::Lag => vec![Fact::Lag {
            what: expr_metric(expr),
            subject,
            value: top.peak.1,
            at,
        }],
        Signal::Availability => down(ranked).into_iter().collect(),
        Signal::Other => Vec::new(),
    }
}

/// The first metric-looking word of an expression.
pub fn expr_metric(expr: &str) -> String {
    static NAME: LazyLock<Regex> = LazyLock::new(|| re(r"[a-zA-Z_:][a-zA-Z0-9_:]*_[a-zA-Z0-9_:]+"));
    NAME.find(expr)
        .map_or_else(|| "the rule's signal".to_owned(), |m| m.as_str().to_owned())
}

/// The targets whose series is 0 now (`up`, `probe_success`).
pub fn down(ranked: &[SeriesSummary]) -> Option<Fact> {
    let targets: Vec<String> = ranked
        .iter()
        .filter(|s| s.last == 0.0 && s.max > 0.0)
        .map(|s| subject(&s.labels))
        .collect();
    (!targets.is_empty()).then_some(Fact::TargetDown { targets })
}

/// The full label set of the series a summary is of (a summary keeps the labels that tell the
/// series apart).
pub fn full_labels(series: &[Series], summary: &SeriesSummary) -> BTreeMap<String, String> {
    series
        .iter()
        .find(|x| {
            summary
                .labels
                .iter()
                .all(|(k, v)| x.labels.get(k) == Some(v))
        })
        .map_or_else(|| summary.labels.clone(), |x| x.labels.clone())
}

/// The metric a query's series are of: their `__name__`, else the first metric-looking word of the
/// query (a `rate()` drops the name).
pub fn metric_name(series: &[Series], query: &str) -> String {
    series
        .iter()
        .find_map(|s| s.labels.get("__name__").cloned())
        .unwrap_or_else(|| expr_metric(query))
}

/// Where a series was found, for its facts.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub metric: &'a str,
    /// The alert's start, Unix seconds.
    pub alert: f64,
    /// The lead or resource the series was found through (a dependency), if not the group itself.
    pub related: Option<&'a str>,
}

/// The facts of one metric's series (discovered or planned): the anomalous ones, changes,
/// terminations, lags, and dependencies that broke; `series` are the query's own (for the labels a
/// summary leaves out).
pub fn of_series(found: Found<'_>, ranked: &[SeriesSummary], series: &[Series]) -> Vec<Fact> {
    let full = |s: &SeriesSummary| full_labels(series, s);
    let mut facts = Vec::new();
    let name = found.metric;
    if let Some(kind) = VERSION_SERIES
        .iter()
        .find(|(n, _)| name == *n || (n.starts_with('_') && name.ends_with(n)))
        .map(|(_, k)| *k)
    {
        let born = ranked.iter().filter_map(|s| {
            Some((
                s,
                s.born
                    .filter(|b| (b - found.alert).abs() <= CHANGE_HORIZON)?,
            ))
        });
        for (s, born) in born.take(3) {
            let labels = full(s);
            // What changed: the labels that differ from the series of the same entity that went
            // away (`authclient_version 1.8.2 -> 2.0.0`); else the labels that name a version.
            let entity = subject_entity(&labels);
            let before = ranked
                .iter()
                .filter(|g| g.gone.is_some())
                .map(full)
                .find(|g| subject_entity(g) == entity);
            let what: Vec<String> = match before {
                Some(old) => labels
                    .iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "__name__" | "container_id" | "image_id" | "uid")
                    })
                    .filter_map(|(k, v)| {
                        let was = old.get(k)?;
                        (was != v).then(|| format!("{k} {was} -> {v}"))
                    })
                    .collect(),
                None => labels
                    .iter()
                    .filter(|(k, _)| VERSION_LABELS.contains(&k.as_str()) || k.contains("version"))
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect(),
            };
            facts.push(Fact::Change {
                kind,
                subject: changed(&labels),
                what: match what.is_empty() {
                    true => format!("{name} appeared"),
                    false => format!("{name} {}", what.join(", ")),
                },
                at: secs(born),
            });
        }
        return facts;
    }
    if name.contains("terminated_reason") || name.ends_with("_status_reason") {
        for s in ranked.iter().filter(|s| s.last > 0.0).take(3) {
            let labels = full(s);
            let Some(reason) = labels.get("reason") else {
                continue;
            };
            facts.push(Fact::Termination {
                subject: subject(&labels),
                reason: match reason.as_str() {
                    "OOMKilled" => "oom".into(),
                    "Evicted" => "evicted".into(),
                    r => r.to_lowercase(),
                },
                shown_by: format!("{name}{{reason={reason:?}}}"),
                at: s.born.or(s.onset).map(secs),
            });
        }
        return facts;
    }
    let Some(top) = ranked.first() else {
        return facts;
    };
    let labels = full(top);
    let step = top.shift.unwrap_or(0.0);
    if (name.ends_with("_generation") || name.ends_with("_spec_replicas")) && step != 0.0 {
        let at = top.onset.unwrap_or(top.peak.0);
        if (at - found.alert).abs() <= CHANGE_HORIZON {
            facts.push(Fact::Change {
                kind: match name.ends_with("_spec_replicas") {
                    true => ChangeKind::Scale,
                    false => ChangeKind::Deploy,
                },
                subject: changed(&labels),
                what: format!(
                    "{name} from {} to {}",
                    crate::series::num(top.baseline.unwrap_or(top.min)),
                    crate::series::num(top.last)
                ),
                at: secs(at),
            });
        }
        return facts;
    }
    if Tier::of_score(top.score) < Tier::Anomalous && top.born.is_none() {
        return facts;
    }
    let rising = top.peak.1 >= top.baseline.unwrap_or(top.min);
    let at = top.onset.or(top.born).map(secs);
    // Only what moved with the incident: a series that left its baseline long after the alert
    // started, or was already away long before, is not its cause.
    if at.is_some_and(|t| (t as f64 - found.alert).abs() > CHANGE_HORIZON) {
        return facts;
    }
    let subject = subject(&labels);
    let latency = is_latency(name);
    // A resolver's series (CoreDNS, kube-dns) failing is name resolution failing.
    let dns = |what: &str| what.to_lowercase().contains("dns");
    if let Some(related) = found.related {
        let broke =
            !rising && top.last == 0.0 || rising && !latency && top.z.unwrap_or(0.0) >= ANOMALOUS;
        let slow = rising && latency;
        if broke || slow {
            facts.push(Fact::DependencyFailure {
                name: related.to_owned(),
                symptom: match (slow, dns(name) || dns(related)) {
                    (_, true) => Symptom::Dns,
                    (true, false) => Symptom::Slow,
                    (false, false) => Symptom::Unhealthy,
                },
                shown_by: format!("{name} of {subject}"),
                at,
            });
        }
    }
    if let Some((label, peer)) = PEER_LABELS
        .iter()
        .find_map(|l| labels.get(*l).map(|v| (*l, v)))
    {
        let symptom = match (rising, latency) {
            (true, true) => Some(Symptom::Slow),
            (false, _) if top.last == 0.0 && dns(name) => Some(Symptom::Dns),
            (false, _) if top.last == 0.0 => Some(Symptom::Unreachable),
            (true, false) if name.contains("error") || name.contains("fail") => {
                Some(Symptom::Unhealthy)
            }
            _ => None,
        };
        if let Some(symptom) = symptom {
            facts.push(Fact::DependencyFailure {
                name: host_of(peer).unwrap_or_else(|| peer.clone()),
                symptom,
                shown_by: format!("{name}{{{label}={peer:?}}}"),
                at,
            });
        }
    }
    static LAG: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)(_lag|behind|backlog)"));
    if rising && LAG.is_match(name) {
        facts.push(Fact::Lag {
            what: name.to_owned(),
            subject: subject.clone(),
            value: top.peak.1,
            at,
        });
    }
    facts.push(Fact::Anomaly {
        metric: name.to_owned(),
        subject,
        rising,
        ratio: top.ratio.filter(|r| r.is_finite() && *r > 0.0),
        at,
        related: found.related.is_some(),
        born: top.born.is_some(),
    });
    facts
}

/// A latency-like metric: durations and seconds, not CPU seconds.
fn is_latency(name: &str) -> bool {
    (name.contains("duration") || name.contains("latency") || name.contains("seconds"))
        && !name.contains("cpu")
        && !name.contains("behind")
}

/// Whether a usage at `ratio` of its limit is saturated: throttling hurts from a quarter of the
/// periods, an autoscaler at its maximum, anything else from 80%.
pub fn saturated(resource: Resource, ratio: f64) -> bool {
    match resource {
        Resource::CpuThrottling => ratio >= 0.25,
        Resource::Replicas => ratio >= 1.0,
        _ => ratio >= 0.8,
    }
}

/// The fact of a saturation share: `resource` of `subject` at `ratio` of `limit`.
pub fn saturation(
    resource: Resource,
    labels: &BTreeMap<String, String>,
    used: f64,
    limit: f64,
    ratio: f64,
    at: f64,
) -> Fact {
    Fact::Saturation {
        resource,
        subject: subject(labels),
        used,
        limit,
        ratio,
        at: secs(at),
    }
}

/// How a line fails, by its words: the most specific first.
pub fn symptom(text: &str) -> Option<Symptom> {
    static TABLE: LazyLock<Vec<(Symptom, Regex)>> = LazyLock::new(|| {
        [
            (
                Symptom::Oom,
                r"(?i)(out of memory|oom[-_ ]?kill|oomkilled|outofmemoryerror|cannot allocate memory)",
            ),
            (Symptom::NoSpace, r"(?i)(no space left|enospc|disk (is )?full)"),
            (
                Symptom::LinkDown,
                r"(?i)(link (is )?down|link failure|carrier (lost|off)|if_down)",
            ),
            (
                Symptom::Unreachable,
                r"(?i)(handshake timeout|no route to host|network is unreachable|ehostunreach|connect(ion)? timed out|connect timeout)",
            ),
            (
                Symptom::RateLimited,
                r"(?i)(rate.?limit|too many requests|quota exceeded|\b429\b)",
            ),
            (
                Symptom::Tls,
                r"(?i)(certificate|x509|ssl routines|tls: bad|handshake failure)",
            ),
            (
                Symptom::Dns,
                r"(?i)(no such host|server misbehaving|servfail|nxdomain|name resolution|could not resolve|unknown host)",
            ),
            (Symptom::Refused, r"(?i)(connection refused|econnrefused)"),
            (Symptom::Timeout, r"(?i)(timed? ?out|deadline exceeded)"),
            (
                Symptom::Http5xx,
                r"(?i)(\b50[0234]\b|service unavailable|bad gateway|gateway timeout)",
            ),
            (
                Symptom::Unhealthy,
                r"(?i)(all shards failed|cluster_block_exception|no healthy upstream|read-only)",
            ),
        ]
        .into_iter()
        .map(|(s, p)| (s, re(p)))
        .collect()
    });
    TABLE
        .iter()
        .find(|(_, r)| r.is_match(text))
        .map(|(s, _)| *s)
}

/// The last labels of names a line may give bare (without a scheme or a port): `max.poll.interval.ms`
/// is a setting, `shop.example.com` a host.
const SUFFIXES: &[&str] = &[
    "com", "net", "org", "io", "dev", "app", "cloud", "example", "local", "internal", "svc", "lan",
    "corp", "intra", "test", "co", "ai", "uk", "de", "fr", "nl", "eu", "us",
];

/// The service or host a failing line names: a URL's or `host:port`'s host (a name before an
/// address), or the word after "upstream".
pub fn dependency_in(text: &str) -> Option<String> {
    static UPSTREAM: LazyLock<Regex> = LazyLock::new(|| {
        re(r#"(?i)\b(?:upstream|backend|dependency)\s+"?([a-z0-9][a-z0-9._-]*[a-z0-9])"#)
    });
    // A bare dotted word (`ecs.version`, `c.e.c.search`) is a host only with three labels of
    // two characters or more and a known suffix; in a URL or before a port it is one anyway.
    let hosts: Vec<String> = hosts_in(text)
        .into_iter()
        .filter(|h| {
            h.parse::<std::net::Ipv4Addr>().is_ok()
                || text.contains(&format!("://{h}"))
                || text.contains(&format!("@{h}"))
                || text.contains(&format!("{h}:"))
                || {
                    let labels: Vec<&str> = h.split('.').collect();
                    labels.len() >= 3
                        && labels.iter().all(|l| l.len() >= 2)
                        && labels.last().is_some_and(|l| SUFFIXES.contains(l))
                }
        })
        .collect();
    let named = hosts
        .iter()
        .find(|h| h.parse::<std::net::Ipv4Addr>().is_err())
        .or(hosts.first())
        .cloned();
    named.or_else(|| {
        UPSTREAM
            .captures(text)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_owned())
            .filter(|w| !matches!(w.to_lowercase().as_str(), "server" | "service" | "returned"))
    })
}

/// The stream a line came from, by its most specific label.
fn source(stream: &BTreeMap<String, String>) -> String {
    const LABELS: &[&str] = &[
        "app",
        "container",
        "service_name",
        "service",
        "unit",
        "pod",
        "host",
        "hostname",
        "node_name",
        "instance",
        "namespace",
        "job",
    ];
    LABELS
        .iter()
        .find_map(|l| stream.get(*l))
        .cloned()
        .unwrap_or_else(|| "a log stream".into())
}

/// What was killed, as an OOM killer's or systemd's line names it.
fn killed_in(text: &str) -> Option<String> {
    static KILLED: LazyLock<Vec<Regex>> = LazyLock::new(|| {
        [
            r"Killed process \S+ \(([^)]+)\)",
            r"(\S+) invoked oom-killer",
            r"(\S+)\.service: .*(?i:oom)",
        ]
        .into_iter()
        .map(re)
        .collect()
    });
    KILLED
        .iter()
        .find_map(|r| r.captures(text).and_then(|c| c.get(1)))
        .map(|m| m.as_str().to_owned())
}

/// The log window's split, for rates: seconds before the incident began and after.
#[derive(Debug, Clone, Copy)]
pub struct LogSpan {
    pub start: f64,
    pub alert: f64,
    pub end: f64,
}

/// The facts of a query's log templates: those new since the incident, those that grew, those that
/// name a failure; a failure of another service that a line names; a process killed.
pub fn of_templates(
    templates: &[TemplateSummary],
    error_lines: bool,
    related: Option<&str>,
    span: LogSpan,
) -> Vec<Fact> {
    static KILL: LazyLock<Regex> =
        LazyLock::new(|| re(r"(?i)(oom[-_ ]?kill|killed process|oomkilled)"));
    static ERROR: LazyLock<Regex> = LazyLock::new(|| re(crate::gather::ERROR_LINES));
    let since = span.alert - INCIDENT_LEAD;
    let before_secs = (since - span.start).max(60.0);
    let after_secs = (span.end - since).max(60.0);
    let mut facts = Vec::new();
    for t in templates {
        let text = &t.template;
        let error = error_lines || ERROR.is_match(text);
        let symptom = symptom(text);
        let grew = t.after >= 3
            && t.after as f64 / after_secs >= 3.0 * (t.before as f64 + 1.0) / before_secs;
        // Steady lines say nothing; errors and failures that are here now, new or grown, do.
        let telling = t.is_new() || grew || (symptom.is_some() && t.after + t.before > 0);
        if !telling {
            continue;
        }
        let source = source(&t.stream);
        let at = secs(t.first_seen);
        facts.push(Fact::LogTemplate {
            text: text.clone(),
            source: source.clone(),
            error,
            before: u32::try_from(t.before).unwrap_or(u32::MAX),
            after: u32::try_from(t.after).unwrap_or(u32::MAX),
            new: t.is_new(),
            symptom,
            at,
        });
        match (symptom, related) {
            // The lines of a dependency: its failure is the dependency failing, by its name.
            (Some(s), Some(lead)) if error => facts.push(Fact::DependencyFailure {
                name: lead.to_owned(),
                symptom: s,
                shown_by: text.clone(),
                at: Some(at),
            }),
            (Some(Symptom::Oom), None) if KILL.is_match(text) => facts.push(Fact::Termination {
                subject: killed_in(text).unwrap_or(source),
                reason: "oom".into(),
                shown_by: text.clone(),
                at: Some(at),
            }),
            (Some(s), None) if s.of_dependency() => {
                if let Some(name) = dependency_in(&t.example).or_else(|| dependency_in(text)) {
                    facts.push(Fact::DependencyFailure {
                        name,
                        symptom: s,
                        shown_by: text.clone(),
                        at: Some(at),
                    });
                }
            }
            _ => {}
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_subject_is_its_entity_with_what_qualifies_it() {
        assert_eq!(
            subject(&labels(&[
                ("instance", "edge-01:9100"),
                ("mountpoint", "/var"),
                ("device", "/dev/nvme1n1")
            ])),
            r#"edge-01 (mountpoint="/var", device="/dev/nvme1n1")"#
        );
        assert_eq!(
            subject(&labels(&[("usename", "analytics_etl")])),
            r#"usename="analytics_etl""#
        );
    }

    #[test]
    fn lines_name_their_failure_and_the_dependency() {
        let cases = [
            (
                r#"{"error":"dial tcp 10.96.113.40:6379: connect: connection refused","redis":"redis://:x@redis-cart-master.shop.svc:6379/0"}"#,
                Symptom::Refused,
                Some("redis-cart-master.shop.svc"),
            ),
            (
                "POST https://api.payments-provider.example/v1/charges failed: net/http: TLS handshake timeout",
                Symptom::Unreachable,
                Some("api.payments-provider.example"),
            ),
            (
                "[error] upstream auth-service returned 503 Service Unavailable for GET /oauth/userinfo",
                Symptom::Http5xx,
                Some("auth-service"),
            ),
            (
                r#"err="Post \"https://api.partner-bank.example/v2/s\": dial tcp: lookup api.partner-bank.example on 10.96.0.10:53: server misbehaving""#,
                Symptom::Dns,
                Some("api.partner-bank.example"),
            ),
            (
                "kernel: Out of memory: Killed process 4242 (java) total-vm:41842316kB",
                Symptom::Oom,
                None,
            ),
        ];
        for (line, want, name) in cases {
            assert_eq!(symptom(line), Some(want), "{line}");
            if let Some(name) = name {
                assert_eq!(dependency_in(line).as_deref(), Some(name), "{line}");
            }
        }
        assert_eq!(symptom("GET /deals 200 0.003"), None);
        assert_eq!(
            killed_in("kernel: [<*>] Out of memory: Killed process <*> (java) total-vm"),
            Some("java".into())
        );
    }

    #[test]
    fn the_rule_says_what_it_measures() {
        assert_eq!(
            Signal::of(
                r#"sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m])) > 0.05"#
            ),
            Signal::Errors
        );
        assert_eq!(
            Signal::of("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 1"),
            Signal::Latency
        );
        assert_eq!(Signal::of("up == 0"), Signal::Availability);
        assert_eq!(Signal::of("probe_success == 0"), Signal::Availability);
        assert_eq!(
            Signal::of("sum(kafka_consumergroup_lag) by (consumergroup) > 5000"),
            Signal::Lag
        );
        assert_eq!(Signal::of("node_load1 > 4"), Signal::Other);
    }
}
