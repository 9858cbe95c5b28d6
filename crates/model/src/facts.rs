//! Facts: what the context stage established from data, typed, attached to the evidence item they
//! rest on. The analyzers reason from these, never from the evidence's rendered text.
//!
//! The set is small on purpose; each fact says one thing an engineer would say about an incident:
//!
//! | fact | established from |
//! | --- | --- |
//! | [`Fact::Saturation`] | a usage series against its limit (a saturation pair) |
//! | [`Fact::Change`] | a version or rollout series born near the onset, a generation or replica step |
//! | [`Fact::LogTemplate`] | a log template that is new, grew, or names a failure ([`Symptom`]) |
//! | [`Fact::DependencyFailure`] | a line naming another service with a failure, or a followed dependency's series that broke |
//! | [`Fact::Anomaly`] | a series that left its baseline (the group's own, or a related one's) |
//! | [`Fact::PeerContrast`] | the rule's alerting series against its other series |
//! | [`Fact::CommonFactor`] | a label all alerting series share and the others mostly do not |
//! | [`Fact::TargetDown`] | targets whose `up` (or probe) is 0 |
//! | [`Fact::Termination`] | a container or process killed (OOM, evicted) by a series or a line |
//! | [`Fact::Lag`] | a lag or backlog that grew |
//! | [`Fact::ErrorRatio`], [`Fact::LatencyShift`] | the rule's own signal, when it is errors or latency |
//!
//! Times are Unix seconds.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One fact; see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    /// `subject` used `ratio` of its `limit` of `resource` at its worst (`at`).
    Saturation {
        resource: Resource,
        subject: String,
        used: f64,
        limit: f64,
        ratio: f64,
        at: i64,
    },
    /// Something about `subject` changed at `at`: `what` names the new state (an image, a version).
    Change {
        kind: ChangeKind,
        subject: String,
        what: String,
        at: i64,
    },
    /// A log template of `source` (the stream's workload or host): counts before and after the
    /// incident began, whether it is new, error-like, and what failure it names.
    LogTemplate {
        text: String,
        source: String,
        error: bool,
        before: u32,
        after: u32,
        new: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        symptom: Option<Symptom>,
        /// When it was first seen in the window.
        at: i64,
    },
    /// Another service or host, `name`, fails in the way `symptom` says.
    DependencyFailure {
        name: String,
        symptom: Symptom,
        /// What shows it: a line's template or a series.
        shown_by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
    /// `metric` of `subject` left its baseline (`ratio` times it), rising or falling, from `at`.
    /// `related` when the series belongs to something the group's lines or series lead to (a
    /// dependency, a database named after it), not to the group itself; `born` when the series
    /// itself appeared in the window (a new process, a new label value).
    Anomaly {
        metric: String,
        subject: String,
        rising: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ratio: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
        related: bool,
        born: bool,
    },
    /// Of the rule's series, `alerting` are the alerts' own; of the `peers`, `peers_crossed`
    /// crossed the threshold too.
    PeerContrast {
        metric: String,
        alerting: u32,
        peers: u32,
        peers_crossed: u32,
    },
    /// `label="value"` is on all `firing` alerting series and on `others_with` of the `others`.
    CommonFactor {
        label: String,
        value: String,
        firing: u32,
        others_with: u32,
        others: u32,
    },
    /// These targets do not answer (`up` or a probe is 0).
    TargetDown { targets: Vec<String> },
    /// `subject` was terminated for `reason` (`oom`, `evicted`, `error`, ...).
    Termination {
        subject: String,
        reason: String,
        shown_by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
    /// A lag or backlog (`what`) of `subject` grew to `value`.
    Lag {
        what: String,
        subject: String,
        value: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
    /// The rule's own signal is an error ratio: `value` against `baseline`.
    ErrorRatio {
        subject: String,
        value: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
    /// The rule's own signal is a latency: `value` against `baseline`.
    LatencyShift {
        subject: String,
        value: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
}

/// What a saturation runs out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Cpu,
    /// CFS periods throttled against all periods: the CPU limit, not the host, is the ceiling.
    CpuThrottling,
    Memory,
    Disk,
    FileDescriptors,
    Connections,
    Threads,
    /// An autoscaler's replicas against its maximum.
    Replicas,
    Conntrack,
    Other,
}

/// What kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new ReplicaSet, a generation step: a rollout.
    Deploy,
    /// A new version or image of a running thing (`*_build_info`, `kube_pod_container_info`).
    Version,
    Config,
    Restart,
    /// Replicas scaled.
    Scale,
}

/// How something fails, as lines and series say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Symptom {
    Refused,
    Timeout,
    /// No route, a connect or handshake that never completes: the path, not the peer.
    Unreachable,
    Dns,
    Tls,
    Http5xx,
    RateLimited,
    Slow,
    /// The dependency's own health series broke (down, red, unassigned).
    Unhealthy,
    Oom,
    NoSpace,
    LinkDown,
}

impl Symptom {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Http5xx => "http_5xx",
            Self::RateLimited => "rate_limited",
            Self::Slow => "slow",
            Self::Unhealthy => "unhealthy",
            Self::Oom => "oom",
            Self::NoSpace => "no_space",
            Self::LinkDown => "link_down",
        }
    }

    /// A failure a caller sees of its dependency (as opposed to one of its own host).
    pub fn of_dependency(self) -> bool {
        !matches!(self, Self::Oom | Self::NoSpace | Self::LinkDown)
    }

    fn phrase(self) -> &'static str {
        match self {
            Self::Refused => "refuses connections",
            Self::Timeout => "times out",
            Self::Unreachable => "cannot be reached (connect or handshake never completes)",
            Self::Dns => "fails name resolution (DNS)",
            Self::Tls => "fails TLS (certificate verification)",
            Self::Http5xx => "answers with server errors (5xx)",
            Self::RateLimited => "is refused by a rate limit or quota",
            Self::Slow => "answers slowly",
            Self::Unhealthy => "is unhealthy",
            Self::Oom => "ran out of memory",
            Self::NoSpace => "ran out of disk space",
            Self::LinkDown => "lost its network link",
        }
    }
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::CpuThrottling => "cpu_throttling",
            Self::Memory => "memory",
            Self::Disk => "disk",
            Self::FileDescriptors => "file_descriptors",
            Self::Connections => "connections",
            Self::Threads => "threads",
            Self::Replicas => "replicas",
            Self::Conntrack => "conntrack",
            Self::Other => "other",
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            Self::Cpu => "CPU",
            Self::CpuThrottling => "CPU throttling (CFS periods throttled by its CPU limit)",
            Self::Memory => "memory",
            Self::Disk => "disk space",
            Self::FileDescriptors => "file descriptors",
            Self::Connections => "connections",
            Self::Threads => "threads",
            Self::Replicas => "the autoscaler's replicas (its maxReplicas is the limit)",
            Self::Conntrack => "conntrack entries",
            Self::Other => "a usage",
        }
    }
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Version => "version",
            Self::Config => "config",
            Self::Restart => "restart",
            Self::Scale => "scale",
        }
    }
}

/// A fact as the analyzer reads it: the id of the evidence it rests on, and the fact.
#[derive(Debug, Clone, Copy)]
pub struct Finding<'a> {
    pub evidence: &'a str,
    pub fact: &'a Fact,
}

impl Fact {
    /// What the fact says without its measurements or times: the same cause seen again (the group
    /// firing again an hour later, values a little different) has the same identity. Two contexts
    /// whose facts have the same identities rest on the same evidence ([`crate::Context::digest`]).
    pub fn identity(&self) -> String {
        let subject = match self {
            Self::Saturation {
                resource, subject, ..
            } => format!("{}|{subject}", resource.as_str()),
            Self::Change {
                kind,
                subject,
                what,
                ..
            } => format!("{}|{subject}|{what}", kind.as_str()),
            Self::LogTemplate {
                text,
                source,
                symptom,
                ..
            } => format!("{source}|{text}|{}", symptom.map_or("", Symptom::as_str)),
            Self::DependencyFailure { name, symptom, .. } => {
                format!("{name}|{}", symptom.as_str())
            }
            Self::Anomaly {
                metric, subject, ..
            } => format!("{metric}|{subject}"),
            Self::PeerContrast { metric, .. } => metric.clone(),
            Self::CommonFactor { label, value, .. } => format!("{label}={value}"),
            Self::TargetDown { targets } => {
                let mut t = targets.clone();
                t.sort_unstable();
                t.join(",")
            }
            Self::Termination {
                subject, reason, ..
            } => format!("{subject}|{reason}"),
            Self::Lag { what, subject, .. } => format!("{what}|{subject}"),
            Self::ErrorRatio { subject, .. } | Self::LatencyShift { subject, .. } => {
                subject.clone()
            }
        };
        format!("{}:{subject}", self.kind())
    }

    /// Whether the fact says what is wrong or where (a saturation, a change, a termination, a
    /// failing dependency or target, a lag, a shared label, a log line naming a failure, the rule's
    /// own signal), rather than measuring against a baseline (anomalies, peer contrasts, log
    /// templates that name no failure): a flapping group's second firing sees a baseline its first
    /// firing moved, so those come and go while the cause stays the same.
    pub fn names_a_cause(&self) -> bool {
        match self {
            Self::Anomaly { .. } | Self::PeerContrast { .. } => false,
            Self::LogTemplate { symptom, .. } => symptom.is_some(),
            _ => true,
        }
    }

    /// The fact's kind, as the rules file names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Saturation { .. } => "saturation",
            Self::Change { .. } => "change",
            Self::LogTemplate { .. } => "log_template",
            Self::DependencyFailure { .. } => "dependency_failure",
            Self::Anomaly { .. } => "anomaly",
            Self::PeerContrast { .. } => "peer_contrast",
            Self::CommonFactor { .. } => "common_factor",
            Self::TargetDown { .. } => "target_down",
            Self::Termination { .. } => "termination",
            Self::Lag { .. } => "lag",
            Self::ErrorRatio { .. } => "error_ratio",
            Self::LatencyShift { .. } => "latency_shift",
        }
    }

    /// Qualifiers a rule can require, `key=value` or a bare word: `resource=cpu`, `change=version`,
    /// `symptom=refused`, `reason=oom`, `error`, `new`, `related`, `born`, `rising`, `falling`,
    /// `label=rack`.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = Vec::new();
        match self {
            Self::Saturation { resource, .. } => {
                tags.push(format!("resource={}", resource.as_str()))
            }
            Self::Change { kind, .. } => tags.push(format!("change={}", kind.as_str())),
            Self::LogTemplate {
                error,
                new,
                symptom,
                ..
            } => {
                if *error {
                    tags.push("error".into());
                }
                if *new {
                    tags.push("new".into());
                }
                if let Some(s) = symptom {
                    tags.push(format!("symptom={}", s.as_str()));
                }
            }
            Self::DependencyFailure { symptom, .. } => {
                tags.push(format!("symptom={}", symptom.as_str()));
            }
            Self::Anomaly {
                rising,
                related,
                born,
                ..
            } => {
                tags.push(if *rising { "rising" } else { "falling" }.into());
                if *related {
                    tags.push("related".into());
                }
                if *born {
                    tags.push("born".into());
                }
            }
            Self::CommonFactor { label, .. } => tags.push(format!("label={label}")),
            Self::Termination { reason, .. } => tags.push(format!("reason={reason}")),
            Self::PeerContrast { peers_crossed, .. } => {
                if *peers_crossed == 0 {
                    tags.push("alone".into());
                }
            }
            Self::TargetDown { .. }
            | Self::Lag { .. }
            | Self::ErrorRatio { .. }
            | Self::LatencyShift { .. } => {}
        }
        tags
    }

    /// The metric a fact is about, when it is about one (rules can match it by name).
    pub fn metric(&self) -> Option<&str> {
        match self {
            Self::Anomaly { metric, .. } | Self::PeerContrast { metric, .. } => Some(metric),
            Self::Lag { what, .. } => Some(what),
            _ => None,
        }
    }

    /// When it happened or began, if known.
    pub fn at(&self) -> Option<i64> {
        match self {
            Self::Saturation { at, .. }
            | Self::Change { at, .. }
            | Self::LogTemplate { at, .. } => Some(*at),
            Self::DependencyFailure { at, .. }
            | Self::Anomaly { at, .. }
            | Self::Termination { at, .. }
            | Self::Lag { at, .. }
            | Self::ErrorRatio { at, .. }
            | Self::LatencyShift { at, .. } => *at,
            Self::PeerContrast { .. } | Self::CommonFactor { .. } | Self::TargetDown { .. } => None,
        }
    }

    /// The names a fact gives to a culprit: the dependency, the subject, the shared value.
    pub fn culprit(&self) -> Option<String> {
        match self {
            Self::Saturation { subject, .. }
            | Self::Change { subject, .. }
            | Self::Anomaly { subject, .. }
            | Self::Termination { subject, .. }
            | Self::Lag { subject, .. } => Some(subject.clone()),
            Self::DependencyFailure { name, .. } => Some(name.clone()),
            Self::CommonFactor { label, value, .. } => Some(format!("{label}={value:?}")),
            Self::LogTemplate { source, .. } => Some(source.clone()),
            Self::TargetDown { targets } => Some(targets.join(", ")),
            Self::PeerContrast { .. } | Self::ErrorRatio { .. } | Self::LatencyShift { .. } => None,
        }
    }

    /// One line an engineer reads: the fact with its names and figures.
    pub fn describe(&self) -> String {
        let since = |at: &Option<i64>| {
            at.map(|t| format!(" since {}", clock(t)))
                .unwrap_or_default()
        };
        match self {
            Self::Saturation {
                resource,
                subject,
                used,
                limit,
                ratio,
                at,
            } => format!(
                "{subject}: {} at {}% of the limit ({} of {}, worst at {})",
                resource.phrase(),
                num(ratio * 100.0),
                num(*used),
                num(*limit),
                clock(*at)
            ),
            Self::Change {
                kind,
                subject,
                what,
                at,
            } => format!(
                "{} of {subject} at {}: {what}",
                match kind {
                    ChangeKind::Deploy => "a rollout",
                    ChangeKind::Version => "a new version",
                    ChangeKind::Config => "a configuration change",
                    ChangeKind::Restart => "a restart",
                    ChangeKind::Scale => "a scale change",
                },
                clock(*at)
            ),
            Self::LogTemplate {
                text,
                source,
                error,
                before,
                after,
                new,
                ..
            } => format!(
                "{} line of {source} ({after}x since the incident, {before}x before): {}",
                match (new, error) {
                    (true, true) => "a new error-like",
                    (true, false) => "a new log",
                    (false, true) => "an error-like",
                    (false, false) => "a log",
                },
                truncate(text, 160)
            ),
            Self::DependencyFailure {
                name,
                symptom,
                shown_by,
                at,
            } => format!(
                "{name} {}{} ({})",
                symptom.phrase(),
                since(at),
                truncate(shown_by, 160)
            ),
            Self::Anomaly {
                metric,
                subject,
                rising,
                ratio,
                at,
                related,
                born,
            } => {
                let mut s = format!("{metric} of {subject}");
                match (born, ratio) {
                    (true, _) => s.push_str(" appeared"),
                    (false, Some(r)) => {
                        let _ = write!(
                            s,
                            " {} to {}x its baseline",
                            if *rising { "rose" } else { "fell" },
                            num(*r)
                        );
                    }
                    (false, None) => s.push_str(if *rising { " rose" } else { " fell" }),
                }
                s.push_str(&since(at));
                if *related {
                    s.push_str(" (a related service or resource)");
                }
                s
            }
            Self::PeerContrast {
                metric,
                alerting,
                peers,
                peers_crossed,
            } => format!(
                "{alerting} of the rule's series alert on {metric}; {peers_crossed} of its {peers} others crossed the threshold"
            ),
            Self::CommonFactor {
                label,
                value,
                firing,
                others_with,
                others,
            } => format!(
                "all {firing} alerting series share {label}={value:?}; {others_with} of {others} healthy ones do"
            ),
            Self::TargetDown { targets } => format!(
                "{} target(s) down: {}",
                targets.len(),
                truncate(&targets.join(", "), 200)
            ),
            Self::Termination {
                subject,
                reason,
                shown_by,
                at,
            } => format!(
                "{subject} was terminated ({reason}){} ({})",
                since(at),
                truncate(shown_by, 160)
            ),
            Self::Lag {
                what,
                subject,
                value,
                at,
            } => format!("{what} of {subject} grew to {}{}", num(*value), since(at)),
            Self::ErrorRatio {
                subject,
                value,
                baseline,
                at,
            } => signal("errors", subject, *value, *baseline, at),
            Self::LatencyShift {
                subject,
                value,
                baseline,
                at,
            } => signal("latency", subject, *value, *baseline, at),
        }
    }
}

/// The rule's own signal in words: `errors of cart at 0.62 (baseline 0.003) since 10:41:07Z`.
fn signal(
    what: &str,
    subject: &str,
    value: f64,
    baseline: Option<f64>,
    at: &Option<i64>,
) -> String {
    format!(
        "{what} of {subject} at {}{}{}",
        num(value),
        baseline
            .map(|b| format!(" (baseline {})", num(b)))
            .unwrap_or_default(),
        at.map(|t| format!(" since {}", clock(t)))
            .unwrap_or_default()
    )
}

/// `HH:MM:SSZ` of a Unix time (the day is the incident's).
fn clock(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// A number in at most 4 significant digits, without trailing zeros; a whole number (a byte count,
/// a limit, a version's build number) exactly, up to 10^15.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        return format!("{v:.3e}");
    }
    let digits = (3 - v.abs().max(1e-3).log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    match s.contains('.') {
        true => s.trim_end_matches('0').trim_end_matches('.').to_owned(),
        false => s,
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_round_trip_as_tagged_json_and_read_as_a_sentence() {
        let fact = Fact::DependencyFailure {
            name: "redis-cart-master.shop.svc".into(),
            symptom: Symptom::Refused,
            shown_by: "dial tcp <*>: connect: connection refused".into(),
            at: Some(1_733_000_000 - 1_733_000_000 % 86_400 + 3600 + 62),
        };
        let json = serde_json::to_value(&fact).expect("serializes");
        assert_eq!(json["fact"], "dependency_failure");
        assert_eq!(json["symptom"], "refused");
        assert_eq!(serde_json::from_value::<Fact>(json).expect("parses"), fact);
        assert_eq!(
            fact.describe(),
            "redis-cart-master.shop.svc refuses connections since 01:01:02Z (dial tcp <*>: connect: connection refused)"
        );
        assert_eq!(fact.tags(), ["symptom=refused"]);
        let sat = Fact::Saturation {
            resource: Resource::FileDescriptors,
            subject: "payments-api-6d9f7c8b5-8rvzt".into(),
            used: 1024.0,
            limit: 1024.0,
            ratio: 1.0,
            at: 0,
        };
        assert!(
            sat.describe().starts_with(
                "payments-api-6d9f7c8b5-8rvzt: file descriptors at 100% of the limit (1024 of 1024"
            ),
            "{}",
            sat.describe()
        );
        assert_eq!(num(0.9713), "0.9713");
        assert_eq!(num(97.126), "97.13");
    }
}
