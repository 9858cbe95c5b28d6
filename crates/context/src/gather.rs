//! The context stage: plans queries from the alert group, runs them concurrently under a deadline,
//! compresses what comes back into ranked evidence, redacts it and fits it into the token budget.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aiops_model::{
    Clock, Context, ContextSource, Evidence, EvidenceSource, SourceFailure, StageError,
    WebhookPayload,
};
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::alert_evidence;
use crate::budget::fit;
use crate::candidates::leads::{self, Leads};
use crate::candidates::{logs, metrics, pairs};
use crate::config::{ContextConfig, LokiConfig, PrometheusConfig};
use crate::entities::Entities;
use crate::escape::{matcher, quote};
use crate::logs::mine;
use crate::loki::{LogLine, Loki};
use crate::prom::Prometheus;
use crate::promql::{Rule, read_rule};
use crate::rank::{self, Rank, Tier};
use crate::series::{
    Frame, INCIDENT_LEAD, Series, SeriesSummary, Threshold, at, summarize, summarize_in,
};
use crate::templates::{Template, deny_list, load};
use crate::{facts, peers};
use aiops_model::redact::Redactor;

mod discovery;
mod streams;
mod tools;

/// Alert labels that describe the alert rather than where it comes from; every other alert label
/// (instance, job, namespace, pod, container, service, …) narrows a query whose series carry it.
const DESCRIPTIVE: &[&str] = &["alertname", "severity", "alertstate", "team", "priority"];
/// Alert labels that name the entities (`entities`) or the scrape, rather than something they share.
const ENTITY_LABELS: &[&str] = &[
    "instance",
    "job",
    "namespace",
    "pod",
    "container",
    "node",
    "service",
    "app",
    "deployment",
];
/// Alert labels whose other alerts are neighbours.
const NEIGHBOURS: &[&str] = &["instance", "job", "namespace", "service"];
/// Loki workload labels, most specific first.
const WORKLOAD: &[&str] = &["pod", "container", "service", "app", "job", "instance"];
/// Lines that look like errors, where Loki has no level label.
pub(crate) const ERROR_LINES: &str = "(?i)(error|exception|fatal|panic|fail(ed|ure)?|timed? ?out|refused|denied|oom|killed|unavailable)";
/// Loki level values that mean trouble.
const ERROR_LEVELS: &str = "(?i)(error|err|fatal|critical|crit|panic|emerg|alert)";
/// Log templates kept.
const LOG_TEMPLATES: usize = 8;
/// Loki labels whose values are read to find the group's streams, at most.
const MAX_LOKI_LABELS: usize = 32;

/// The context stage backed by Prometheus and Loki (either may be absent).
#[derive(Debug)]
pub struct Gatherer {
    config: ContextConfig,
    loki_config: LokiConfig,
    prometheus: Option<Prometheus>,
    loki: Option<Loki>,
    templates: Vec<Template>,
    /// Metric names discovery leaves out (`[discovery] deny` of the templates files).
    deny: Vec<regex::Regex>,
    redactor: Redactor,
    clock: Arc<dyn Clock>,
}

/// What one query is for.
#[derive(Debug, Clone)]
enum Purpose {
    Rule {
        threshold: Option<Threshold>,
        /// The group's alerts' labels: which of the expression's series are theirs.
        alerts: Arc<Vec<BTreeMap<String, String>>>,
    },
    Component,
    Template,
    Up,
    Alerts,
    LogErrors,
    /// The workload's other lines (not error-like): a restart, a job that started, a config
    /// reload.
    LogOther,
    /// Lines anywhere that mention the group's entities; lines from streams labelled with one of
    /// `own` (the group's own streams) are left out.
    Mentions {
        own: Arc<BTreeSet<String>>,
    },
    /// All lines of a lead (a dependency the group's lines name), by the lead's name.
    LeadLines {
        lead: String,
    },
}

#[derive(Debug, Clone)]
struct Query {
    id: String,
    title: String,
    text: String,
    purpose: Purpose,
}

impl Query {
    fn source(&self) -> EvidenceSource {
        match self.purpose {
            Purpose::LogErrors
            | Purpose::LogOther
            | Purpose::Mentions { .. }
            | Purpose::LeadLines { .. } => EvidenceSource::Loki,
            _ => EvidenceSource::Prometheus,
        }
    }
}

enum Answer {
    Series(Vec<Series>),
    Lines(Vec<LogLine>),
}

/// What the queries produced so far: evidence with its rank, and failures.
#[derive(Debug, Default)]
struct Collected {
    evidence: Vec<(Rank, Evidence)>,
    failures: Vec<SourceFailure>,
    /// Error-like and mentioning lines, redacted, kept for their leads; `true` for mentions.
    lines: Vec<(bool, Vec<LogLine>)>,
    /// The label values that tell the anomalous discovered series apart (`usename="orders_worker"`),
    /// kept for the services they may name.
    values: BTreeSet<String>,
    /// The hosts (`instance`) of the anomalous discovered series: a dependency that changed.
    hosts: BTreeSet<String>,
    /// The metric names discovery fetched.
    fetched: BTreeSet<String>,
}

/// The series that relate a workload to its pods, a pod to its node, a host to its other names.
const RESOLVERS: &[&str] = &[
    "kube_pod_owner",
    "kube_replicaset_owner",
    "kube_pod_info",
    "node_uname_info",
];
/// Metric names in one discovery batch, at most.
const BATCH_NAMES: usize = 100;

type Pending<'a> = Pin<Box<dyn Future<Output = (usize, Result<Answer, String>)> + Send + 'a>>;

/// When the whole plan must be done (`context.deadline_secs`); what has not finished by then is
/// reported, query by query, and the evidence gathered until then is kept.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    secs: u64,
}

impl Deadline {
    fn failure(&self, source: EvidenceSource, query: Option<String>, what: &str) -> SourceFailure {
        SourceFailure {
            source,
            query,
            error: format!(
                "{what} did not finish within the context deadline of {}s (context.deadline_secs)",
                self.secs
            ),
        }
    }
}

/// The time window of one group, in Unix seconds.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    /// When the alert started.
    alert: i64,
    end: i64,
    step: f64,
    /// Error and mention log queries read from here (`context.logs_before_secs` before the alert:
    /// a slow cause, a failed renewal or logrotate, starts long before the symptom)...
    logs_start: i64,
    /// ...to now: the newest errors count.
    logs_end: i64,
}

impl Gatherer {
    /// Builds the stage; fails on a configuration that cannot work (bad URL, template or regex).
    pub fn new(
        config: &ContextConfig,
        prometheus: &PrometheusConfig,
        loki: &LokiConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        config.validate()?;
        let cache = Duration::from_secs(config.metadata_cache_secs);
        let prometheus = match prometheus.url.is_empty() {
            true => None,
            false => Some(Prometheus::new(
                &prometheus.url,
                Duration::from_secs(prometheus.timeout_secs.max(1)),
                cache,
            )?),
        };
        let loki_client = match loki.url.is_empty() {
            true => None,
            false => Some(Loki::new(
                &loki.url,
                &loki.tenant,
                Duration::from_secs(loki.timeout_secs.max(1)),
                cache,
            )?),
        };
        Ok(Self {
            config: config.clone(),
            loki_config: loki.clone(),
            prometheus,
            loki: loki_client,
            templates: load(&config.templates_file)?,
            deny: deny_list(&config.templates_file)?,
            redactor: Redactor::new(&config.redact).map_err(|e| format!("context.redact: {e}"))?,
            clock,
        })
    }

    fn window(&self, payload: &WebhookPayload) -> Window {
        // Rounded up: a sample scraped in the current second is inside the window.
        let clock = self.clock.now();
        let now = clock.unix_timestamp() + i64::from(clock.nanosecond() > 0);
        let alert = payload
            .started_at()
            .map_or(now, |t| t.unix_timestamp())
            .min(now);
        let start = alert - i64::try_from(self.config.before_secs).unwrap_or(i64::MAX / 4);
        let end = (alert + i64::try_from(self.config.after_secs).unwrap_or(0))
            .min(now)
            .max(start + 60);
        let step = ((end - start) as f64 / f64::from(self.config.max_points))
            .ceil()
            .max(1.0);
        // Points fall on end, end - step, ...: the newest samples (a series that began with the
        // incident) are always seen, whatever the step.
        let points = ((end - start) as f64 / step).ceil();
        let start = end - (points * step) as i64;
        let logs_before = i64::try_from(self.config.logs_before_secs).unwrap_or(i64::MAX / 4);
        Window {
            start,
            alert,
            end,
            step,
            logs_start: (alert - logs_before).min(start),
            logs_end: now.max(end),
        }
    }
}

#[async_trait]
impl ContextSource for Gatherer {
    async fn gather(&self, payload: &WebhookPayload) -> Result<Context, StageError> {
        let deadline = Duration::from_secs(self.config.deadline_secs);
        let mut context = alert_evidence(payload);
        let window = self.window(payload);
        context.window_start = time::OffsetDateTime::from_unix_timestamp(window.start).ok();
        context.window_end = time::OffsetDateTime::from_unix_timestamp(window.end).ok();
        let mut collected = Collected::default();
        let deadline = Deadline {
            at: tokio::time::Instant::now() + deadline,
            secs: deadline.as_secs(),
        };
        self.run(payload, window, deadline, &mut collected).await;
        self.finish(&mut context, collected);
        Ok(context)
    }
}

/// The values every alert of a group of two or more carries for the same label, other than what
/// describes the alert or names an entity: a rack, a zone, a datacenter, a version. Words to look
/// for in the logs.
fn shared_values(alerts: &[BTreeMap<String, String>]) -> Vec<String> {
    let [first, rest @ ..] = alerts else {
        return Vec::new();
    };
    if rest.is_empty() {
        return Vec::new();
    }
    first
        .iter()
        .filter(|(k, _)| !DESCRIPTIVE.contains(&k.as_str()) && !ENTITY_LABELS.contains(&k.as_str()))
        .filter(|(k, v)| v.chars().count() >= 2 && rest.iter().all(|a| a.get(*k) == Some(*v)))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The values of `labels` (one anomalous series' distinguishing labels) that may name a service:
/// not the scrape's or the entity's own (`job`, `instance`, `namespace`, `pod`, …).
fn telling(labels: &BTreeMap<String, String>) -> impl Iterator<Item = String> + '_ {
    labels
        .iter()
        .filter(|(k, _)| !ENTITY_LABELS.contains(&k.as_str()) && !k.starts_with("__"))
        .map(|(_, v)| v.clone())
}

/// Per alert label, its distinct values across the group.
fn label_values(payload: &WebhookPayload) -> BTreeMap<String, Vec<String>> {
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for alert in &payload.alerts {
        for (k, v) in &alert.labels {
            let entry = values.entry(k.clone()).or_default();
            if !v.is_empty() && !entry.contains(v) {
                entry.push(v.clone());
            }
        }
    }
    values.retain(|_, v| !v.is_empty());
    values
}

fn values_of<'a>(labels: &'a BTreeMap<String, Vec<String>>, name: &str) -> Vec<&'a str> {
    labels
        .get(name)
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

impl Gatherer {
    /// Plans and runs everything, adding evidence and failures to `collected` as answers arrive, so
    /// that what finished before the deadline is kept and what did not is named. The planned
    /// queries and the discovery run side by side.
    async fn run(
        &self,
        payload: &WebhookPayload,
        window: Window,
        deadline: Deadline,
        context: &mut Collected,
    ) {
        let labels = label_values(payload);
        let entities = Entities::of(&labels);
        let rules = self.rules(payload, context);
        let alerts: Vec<BTreeMap<String, String>> =
            payload.alerts.iter().map(|a| a.labels.clone()).collect();
        let mut terms = entities.terms();
        terms.extend(shared_values(&alerts));
        // Hosts the alerts' own text names (the site a probe or an ingress serves).
        for alert in &payload.alerts {
            for text in alert.annotations.values() {
                for host in leads::hosts_in(text) {
                    if !terms.contains(&host) && !entities.hosts.contains(&host) {
                        terms.push(host);
                    }
                }
            }
        }
        let ((), found) = tokio::join!(
            self.run_planned(&rules, &labels, &alerts, window, deadline, context),
            self.investigate(&rules, &labels, entities, &terms, window, deadline)
        );
        context.evidence.extend(found.evidence);
        context.failures.extend(found.failures);
    }

    /// The rules of the group's alerts that parse; those that do not are failures.
    fn rules(&self, payload: &WebhookPayload, context: &mut Collected) -> Vec<Rule> {
        let rules: Vec<(String, Result<Rule, String>)> = {
            let mut exprs: Vec<String> = payload
                .alerts
                .iter()
                .filter_map(|a| a.rule_expr())
                .collect();
            exprs.sort_unstable();
            exprs.dedup();
            exprs
                .into_iter()
                .map(|e| (e.clone(), read_rule(&e)))
                .collect()
        };
        for (expr, rule) in &rules {
            if let Err(e) = rule {
                context.failures.push(SourceFailure {
                    source: EvidenceSource::Prometheus,
                    query: Some(expr.clone()),
                    error: format!("the rule expression does not parse: {e}"),
                });
            }
        }
        rules.into_iter().filter_map(|(_, r)| r.ok()).collect()
    }

    /// The rule's own queries and the planned ones (components, neighbours, templates).
    async fn run_planned(
        &self,
        rules: &[Rule],
        labels: &BTreeMap<String, Vec<String>>,
        alerts: &[BTreeMap<String, String>],
        window: Window,
        deadline: Deadline,
        context: &mut Collected,
    ) {
        let alerts: Arc<Vec<BTreeMap<String, String>>> = Arc::new(alerts.to_vec());
        let mut queries: Vec<Query> = Vec::new();
        // The rule's own expressions need no lookup: start them at once, alongside the lookups.
        for (i, rule) in rules.iter().enumerate() {
            queries.push(Query {
                id: format!("expr-{}", i + 1),
                title: match rule.threshold {
                    Some(_) => "The rule's expression, without its threshold".into(),
                    None => "The rule's expression".into(),
                },
                text: rule.signal.clone(),
                purpose: Purpose::Rule {
                    threshold: rule.threshold,
                    alerts: alerts.clone(),
                },
            });
        }
        let pending: FuturesUnordered<Pending<'_>> = FuturesUnordered::new();
        let mut started = 0;
        if self.prometheus.is_some() {
            for (i, q) in queries.iter().enumerate() {
                pending.push(self.execute(i, q.clone(), window));
            }
            started = queries.len();
        }
        // The rule's queries run meanwhile; their answers are read below.
        let planned =
            tokio::time::timeout_at(deadline.at, self.plan_prometheus(rules, labels, window))
                .await
                .unwrap_or_else(|_| {
                    let what =
                        "listing the metrics and label names that plan the Prometheus queries";
                    (
                        Vec::new(),
                        vec![deadline.failure(EvidenceSource::Prometheus, None, what)],
                    )
                });
        context.failures.extend(planned.1);
        let budget = self.config.max_queries.saturating_sub(queries.len());
        queries.extend(planned.0.into_iter().take(budget));
        for (i, q) in queries.iter().enumerate().skip(started) {
            pending.push(self.execute(i, q.clone(), window));
        }
        self.drain(&queries, pending, window, deadline, context)
            .await;
    }

    /// Runs `queries`, all at once, until the deadline.
    async fn answer_all(
        &self,
        queries: &[Query],
        window: Window,
        deadline: Deadline,
        context: &mut Collected,
    ) {
        let pending: FuturesUnordered<Pending<'_>> = queries
            .iter()
            .enumerate()
            .map(|(i, q)| self.execute(i, q.clone(), window))
            .collect();
        self.drain(queries, pending, window, deadline, context)
            .await;
    }

    /// Absorbs the answers of `pending` (indexes into `queries`) as they come, until the deadline;
    /// each query unanswered by then is reported.
    async fn drain<'a>(
        &'a self,
        queries: &[Query],
        mut pending: FuturesUnordered<Pending<'a>>,
        window: Window,
        deadline: Deadline,
        context: &mut Collected,
    ) {
        let mut unanswered = vec![true; queries.len()];
        loop {
            match tokio::time::timeout_at(deadline.at, pending.next()).await {
                Ok(Some((i, answer))) => {
                    unanswered[i] = false;
                    self.absorb(&queries[i], answer, window, context);
                }
                Ok(None) => break,
                Err(_) => {
                    for (q, _) in queries.iter().zip(&unanswered).filter(|(_, u)| **u) {
                        let failure =
                            deadline.failure(q.source(), Some(q.text.clone()), "the query");
                        context.failures.push(failure);
                    }
                    break;
                }
            }
        }
    }

    /// Where the rule and the templates stop: the group's entities widened through the series that
    /// relate them, their logs (their errors, and lines anywhere that mention them), the leads those
    /// lines give (a dependency an error names, a pod that mentions the group), then discovery over
    /// the entities and the leads, and the leads' own errors.
    async fn investigate(
        &self,
        rules: &[Rule],
        labels: &BTreeMap<String, Vec<String>>,
        entities: Entities,
        terms: &[String],
        window: Window,
        deadline: Deadline,
    ) -> Collected {
        let mut out = Collected::default();
        let entities = self.resolve(entities, window, deadline, &mut out).await;
        let streams = match &self.loki {
            Some(loki) => self.loki_streams(loki, window, deadline, &mut out).await,
            None => None,
        };
        let mut leads = Leads::default();
        let mut known = BTreeSet::new();
        if let (Some(loki), Some((known_labels, values))) = (&self.loki, &streams) {
            let known_labels: &[String] = known_labels;
            let mut planning = Collected::default();
            let planned = tokio::time::timeout_at(
                deadline.at,
                self.log_queries(
                    loki,
                    labels,
                    &entities,
                    terms,
                    known_labels,
                    values,
                    window,
                    &mut planning,
                ),
            )
            .await;
            out.failures.append(&mut planning.failures);
            let queries = planned.unwrap_or_else(|_| {
                let what =
                    "reading the level labels of the log streams, which plans the log queries";
                out.failures
                    .push(deadline.failure(EvidenceSource::Loki, None, what));
                Vec::new()
            });
            self.answer_all(&queries, window, deadline, &mut out).await;
            let mut lines: Vec<LogLine> = Vec::new();
            let mut mentioning: Vec<LogLine> = Vec::new();
            for (mention, l) in out.lines.drain(..) {
                match mention {
                    true => mentioning.extend(l),
                    false => lines.extend(l),
                }
            }
            let named = leads::leads(&lines, &entities, false);
            let mentioned = leads::leads(&mentioning, &entities, true);
            leads.hosts = named.hosts;
            for h in mentioned.hosts {
                if !leads.hosts.contains(&h) {
                    leads.hosts.push(h);
                }
            }
            leads.pods = mentioned.pods;
            known = self.service_names(values, window, deadline, &mut out).await;
            leads.names = leads::named(&lines, &known, &entities);
        }
        let followed: Vec<(String, Entities)> = [
            (
                leads
                    .hosts
                    .iter()
                    .chain(&leads.pods)
                    .take(4)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
                    + " (named in the group's lines)",
                leads.entities(),
            ),
            (
                leads.names.join(", ") + " (named in the group's errors)",
                leads.named(),
            ),
        ]
        .into_iter()
        .filter(|(_, e)| !e.is_empty())
        .collect();
        let mut lead_logs = Collected::default();
        let lead_queries = match &streams {
            Some((_, values)) => self.lead_queries(&followed, values),
            None => Vec::new(),
        };
        let leads_of = followed
            .iter()
            .map(|(what, e)| (what.as_str(), e))
            .collect::<Vec<_>>();
        let nothing = BTreeSet::new();
        let (found, ()) = tokio::join!(
            self.discover(rules, &entities, &leads_of, &nothing, window, deadline),
            self.answer_all(&lead_queries, window, deadline, &mut lead_logs)
        );
        // A second hop: a service an anomalous series names by a label value (`usename=
        // "orders_worker"` for `orders-worker`), its metrics and its lines.
        let by_form: BTreeMap<String, &String> = known
            .iter()
            .map(|k| (k.to_lowercase().replace('_', "-"), k))
            .collect();
        let followed_names: BTreeSet<&String> = leads.names.iter().collect();
        let mut second = Leads::default();
        for v in &found.values {
            if let Some(name) = by_form.get(&v.to_lowercase().replace('_', "-"))
                && leads::followable(name)
                && !followed_names.contains(name)
                && !entities.workloads.contains(*name)
                && !entities.jobs.contains(*name)
                && second.names.len() < 4
                && !second.names.contains(*name)
            {
                second.names.push((*name).clone());
            }
        }
        // And the hosts of the anomalous series found, where they are not the group's own.
        for h in &found.hosts {
            let short = h.split('.').next().unwrap_or(h);
            if !entities.hosts.contains(h)
                && !entities.hosts.contains(short)
                && !leads.hosts.contains(h)
                && second.hosts.len() < 4
            {
                second.hosts.push(h.clone());
            }
        }
        let mut hop = Collected::default();
        if !second.names.is_empty() || !second.hosts.is_empty() {
            let mut named = second.named();
            let by_host = second.entities();
            named.hosts.extend(by_host.hosts);
            named.workloads.extend(by_host.workloads);
            let what: Vec<String> = second.names.iter().chain(&second.hosts).cloned().collect();
            let what = format!("{} (where an anomalous series points)", what.join(", "));
            let queries = match &streams {
                Some((_, values)) => self.lead_queries(&[(what.clone(), named.clone())], values),
                None => Vec::new(),
            };
            let (none, leads_of) = (Entities::default(), [(what.as_str(), &named)]);
            let (more, ()) = tokio::join!(
                self.discover(rules, &none, &leads_of, &found.fetched, window, deadline),
                self.answer_all(&queries, window, deadline, &mut hop)
            );
            hop.evidence.extend(more.evidence);
            hop.failures.extend(more.failures);
        }
        for c in [found, lead_logs, hop] {
            out.evidence.extend(c.evidence);
            out.failures.extend(c.failures);
        }
        out.lines.clear();
        out
    }

    fn execute(&self, i: usize, q: Query, window: Window) -> Pending<'_> {
        Box::pin(async move {
            let answer = match q.purpose {
                Purpose::LogErrors
                | Purpose::LogOther
                | Purpose::Mentions { .. }
                | Purpose::LeadLines { .. } => {
                    match &self.loki {
                        Some(loki) => {
                            // The newest lines first: a limit keeps the incident, not the baseline.
                            let (start, end, limit) =
                                (window.logs_start, window.logs_end, self.loki_config.limit);
                            loki.query_range(
                                &q.text,
                                start * 1_000_000_000,
                                end * 1_000_000_000,
                                limit,
                            )
                            .await
                            .map(Answer::Lines)
                        }
                        None => Err("Loki is not configured".into()),
                    }
                }
                _ => match &self.prometheus {
                    Some(prom) => prom
                        .range(&q.text, window.start, window.end, window.step)
                        .await
                        .map(Answer::Series),
                    None => Err("Prometheus is not configured".into()),
                },
            };
            (i, answer)
        })
    }

    /// Component, template and neighbour queries; they need to know which metrics and labels exist.
    async fn plan_prometheus(
        &self,
        rules: &[Rule],
        labels: &BTreeMap<String, Vec<String>>,
        window: Window,
    ) -> (Vec<Query>, Vec<SourceFailure>) {
        let Some(prom) = &self.prometheus else {
            return (Vec::new(), Vec::new());
        };
        let mut queries = Vec::new();
        let mut failures = Vec::new();
        // Which metrics the templates need, and which label names the metrics carry: all at once.
        let applicable: Vec<&Template> = self
            .templates
            .iter()
            .filter(|t| t.labels.iter().all(|l| labels.contains_key(l)))
            .collect();
        let mut wanted: Vec<String> = applicable.iter().flat_map(|t| t.metrics.clone()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut described: Vec<String> = rules
            .iter()
            .flat_map(|r| r.selectors.iter().map(|s| s.metric.clone()))
            .chain(applicable.iter().map(|t| t.metrics[0].clone()))
            .collect();
        described.sort_unstable();
        described.dedup();
        let lookups = described
            .iter()
            .map(|m| prom.label_names(m, window.start, window.end));
        let (existing, carried, counters) = tokio::join!(
            prom.existing(&wanted, window.start, window.end),
            futures_util::future::join_all(lookups),
            prom.counters()
        );
        // Without metadata the names decide; discovery reports the failure to read it.
        let counters = counters.unwrap_or_default();
        let existing = existing.unwrap_or_else(|e| {
            failures.push(SourceFailure {
                source: EvidenceSource::Prometheus,
                query: None,
                error: format!("cannot list the metrics that exist: {e}"),
            });
            HashSet::new()
        });
        // A metric whose label names cannot be read plans nothing; the failure says which and why.
        let mut known: BTreeMap<&str, HashSet<String>> = BTreeMap::new();
        for (metric, names) in described.iter().zip(carried) {
            match names {
                Ok(names) => drop(known.insert(metric, names)),
                Err(e) => failures.push(SourceFailure {
                    source: EvidenceSource::Prometheus,
                    query: Some(metric.clone()),
                    error: format!(
                        "cannot list the label names of {metric}, so its queries were not planned: {e}"
                    ),
                }),
            }
        }
        let carried = known;

        // 2. What the expressions are made of, narrowed to the alerts' labels the series carry.
        let mut seen = HashSet::new();
        for part in rules.iter().flat_map(|r| &r.selectors) {
            let Some(names) = carried.get(part.metric.as_str()) else {
                continue;
            };
            if names.is_empty() || part.metric.ends_with("_bucket") || !seen.insert(&part.metric) {
                // No series in the window: querying would only return nothing.
                continue;
            }
            let mut matchers = part.matchers.clone();
            for (label, values) in labels {
                if DESCRIPTIVE.contains(&label.as_str())
                    || part.constrained.contains(label)
                    || !names.contains(label)
                {
                    continue;
                }
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                matchers.extend(matcher(label, &values));
            }
            let selector = format!("{}{{{}}}", part.metric, matchers.join(", "));
            // What the targets declare, else the naming conventions.
            let counter = counters.get(&part.metric).copied().unwrap_or_else(|| {
                ["_total", "_count", "_sum"]
                    .iter()
                    .any(|s| part.metric.ends_with(s))
            });
            let (text, title) = match counter {
                true => (
                    format!("rate({selector}[5m])"),
                    format!(
                        "Per-second rate of {}, for the alerting targets",
                        part.metric
                    ),
                ),
                false => (
                    selector,
                    format!("{}, for the alerting targets", part.metric),
                ),
            };
            queries.push(Query {
                id: format!("series-{}", queries.len() + 1),
                title,
                text,
                purpose: Purpose::Component,
            });
        }

        // 4. Neighbours: the targets' health and the other alerts firing on them.
        let up: Vec<String> = ["instance", "job"]
            .iter()
            .filter_map(|l| matcher(l, &values_of(labels, l)))
            .collect();
        if !up.is_empty() {
            queries.push(Query {
                id: "up".into(),
                title: "Target health (up)".into(),
                text: format!("up{{{}}}", up.join(", ")),
                purpose: Purpose::Up,
            });
        }
        let alertnames: Vec<&str> = values_of(labels, "alertname");
        let own = match alertnames.as_slice() {
            [] => String::new(),
            names => format!(
                ", alertname!~{}",
                quote(
                    &names
                        .iter()
                        .map(|n| regex::escape(n))
                        .collect::<Vec<_>>()
                        .join("|")
                )
            ),
        };
        let related: Vec<String> = NEIGHBOURS
            .iter()
            .filter_map(|l| matcher(l, &values_of(labels, l)))
            .map(|m| format!("ALERTS{{alertstate=\"firing\"{own}, {m}}}"))
            .collect();
        if !related.is_empty() {
            queries.push(Query {
                id: "alerts".into(),
                title: "Other alerts firing on the same instance, job, namespace or service".into(),
                text: related.join(" or "),
                purpose: Purpose::Alerts,
            });
        }

        // 3. Label-driven templates whose metrics exist.
        for t in applicable {
            if !t.metrics.iter().all(|m| existing.contains(m)) {
                continue;
            }
            let Some(names) = carried.get(t.metrics[0].as_str()) else {
                continue;
            };
            if let Some(text) = t.render(labels, names) {
                queries.push(Query {
                    id: format!("tmpl-{}", queries.len() + 1),
                    title: t.name.clone(),
                    text,
                    purpose: Purpose::Template,
                });
            }
        }
        (queries, failures)
    }
}

impl Gatherer {
    /// Turns one answer into evidence (or a failure) in `context`.
    fn absorb(
        &self,
        q: &Query,
        answer: Result<Answer, String>,
        window: Window,
        context: &mut Collected,
    ) {
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                context.failures.push(SourceFailure {
                    source: q.source(),
                    query: Some(q.text.clone()),
                    error: e,
                });
                return;
            }
        };
        let evidence = match answer {
            Answer::Series(series) => self.series_evidence(q, &series, window),
            Answer::Lines(mut lines) => {
                if let Purpose::Mentions { own } = &q.purpose {
                    lines.retain(|l| !l.stream.values().any(|v| own.contains(v)));
                }
                // Before mining: a secret must not become part of a template or an example.
                for l in &mut lines {
                    self.redactor.redact_in_place(&mut l.line);
                }
                let evidence = logs_evidence(q, &lines, window, &self.loki_config);
                match q.purpose {
                    Purpose::LogErrors => context.lines.push((false, lines)),
                    Purpose::Mentions { .. } => context.lines.push((true, lines)),
                    _ => {}
                }
                evidence
            }
        };
        context.evidence.extend(evidence);
    }

    fn series_evidence(
        &self,
        q: &Query,
        series: &[Series],
        window: Window,
    ) -> Option<(Rank, Evidence)> {
        let threshold = match q.purpose {
            Purpose::Rule { threshold, .. } => threshold,
            _ => None,
        };
        let ranked = summarize(series, window.alert as f64, threshold);
        let top = ranked.first()?.score;
        let mut lines = self.series_lines(&ranked, threshold);
        let mut facts = match q.purpose {
            Purpose::Rule { .. } => facts::of_rule(&q.text, &ranked),
            Purpose::Up => facts::down(&ranked).into_iter().collect(),
            Purpose::Alerts => Vec::new(),
            _ => {
                let name = facts::metric_name(series, &q.text);
                let found = facts::Found {
                    metric: &name,
                    alert: window.alert as f64,
                    related: None,
                };
                facts::of_series(found, &ranked, series)
            }
        };
        if let Purpose::Rule { alerts, .. } = &q.purpose
            && let Some((contrast, peer_facts)) =
                peers::contrast(series, alerts, threshold, window.alert as f64)
        {
            lines.push('\n');
            lines.push_str(&contrast);
            facts.extend(peer_facts);
        }
        let tier = match q.purpose {
            Purpose::Rule { .. } => Tier::Rule,
            Purpose::Alerts => Tier::Correlated,
            Purpose::Up if ranked.iter().any(|s| s.min == 0.0) => Tier::Correlated,
            _ => Tier::of_score(top),
        };
        let (rank, mut evidence) = ranked_evidence(
            q,
            EvidenceSource::Prometheus,
            lines,
            None,
            Rank::new(tier, top),
        );
        evidence.facts = facts;
        Some((rank, evidence))
    }

    /// The most anomalous series, a line each, and how many were left out.
    fn series_lines(&self, ranked: &[SeriesSummary], threshold: Option<Threshold>) -> String {
        let mut lines: Vec<String> = ranked
            .iter()
            .take(self.config.top_series)
            .enumerate()
            .map(|(i, s)| format!("#{} {}", i + 1, s.line(threshold)))
            .collect();
        if ranked.len() > self.config.top_series {
            lines.push(format!(
                "({} more series, less anomalous, left out)",
                ranked.len() - self.config.top_series
            ));
        }
        lines.join("\n")
    }

    /// Ranks the evidence (the alert's own first), redacts everything and fits it into the token
    /// budget.
    fn finish(&self, context: &mut Context, collected: Collected) {
        let mut scored: Vec<(Rank, Evidence)> = context
            .evidence
            .drain(..)
            .map(|e| (Rank::new(Tier::Alert, 0.0), e))
            .chain(collected.evidence)
            .collect();
        // Stable: equal ranks keep the order the queries were planned in.
        scored.sort_by(|a, b| Rank::descending(&a.0, &b.0));
        context.evidence = scored.into_iter().map(|(_, e)| e).collect();
        context.failures.extend(collected.failures);
        for e in &mut context.evidence {
            self.redactor.redact_in_place(&mut e.title);
            self.redactor.redact_in_place(&mut e.summary);
            if let Some(q) = &mut e.query {
                self.redactor.redact_in_place(q);
            }
            if let Some(x) = &mut e.excerpt {
                self.redactor.redact_in_place(x);
            }
        }
        for f in &mut context.failures {
            self.redactor.redact_in_place(&mut f.error);
            if let Some(q) = &mut f.query {
                self.redactor.redact_in_place(q);
            }
            // Logged here, once: the failure also travels with the context to the analyzer.
            tracing::warn!(source = ?f.source, query = f.query.as_deref().unwrap_or(""), error = %f.error, "an evidence source failed; the context is partial");
        }
        fit(&mut context.evidence, self.config.max_tokens);
    }
}

/// Prometheus evidence that no planned query produced (discovery, saturation).
fn evidence(id: String, title: String, query: String, summary: String) -> Evidence {
    Evidence {
        id,
        source: EvidenceSource::Prometheus,
        title,
        query: Some(query),
        summary,
        excerpt: None,
        facts: Vec::new(),
    }
}

/// Evidence from query `q`, with its rank.
fn ranked_evidence(
    q: &Query,
    source: EvidenceSource,
    summary: String,
    excerpt: Option<String>,
    rank: Rank,
) -> (Rank, Evidence) {
    let evidence = Evidence {
        id: q.id.clone(),
        source,
        title: q.title.clone(),
        query: Some(q.text.clone()),
        summary,
        excerpt,
        facts: Vec::new(),
    };
    (rank, evidence)
}

fn logs_evidence(
    q: &Query,
    lines: &[LogLine],
    window: Window,
    config: &LokiConfig,
) -> Option<(Rank, Evidence)> {
    let span = format!(
        "between {} and {}",
        at(window.logs_start as f64),
        at(window.logs_end as f64)
    );
    match q.purpose {
        // Lines elsewhere that mention nothing of the group say nothing: no evidence.
        Purpose::Mentions { .. } if lines.is_empty() => None,
        // No error line is a fact too: the analyzer must not read silence as "not looked".
        _ if lines.is_empty() => Some(ranked_evidence(
            q,
            EvidenceSource::Loki,
            format!("No line matched {span}."),
            None,
            Rank::new(Tier::Background, 0.0),
        )),
        _ => {
            let new_since = window.alert as f64 - INCIDENT_LEAD;
            let templates = mine(lines, new_since, LOG_TEMPLATES);
            // Newest first under a limit: when even the oldest line kept is from the incident, no
            // template can be told new.
            let oldest = lines.first().map_or(f64::MAX, |l| l.ts_ns as f64 / 1e9);
            let truncated = lines.len() >= config.limit as usize && oldest >= new_since;
            let new = match truncated {
                true => 0,
                false => templates.iter().filter(|t| t.is_new()).count(),
            };
            let what = match q.purpose {
                Purpose::Mentions { .. } | Purpose::LeadLines { .. } => "lines",
                Purpose::LogOther => "other lines",
                _ => "error-like lines",
            };
            let mut summary = format!(
                "{} {what} {span}, {} templates kept ({}):",
                lines.len(),
                templates.len(),
                match truncated {
                    true => format!(
                        "the limit of {} lines reached within the incident: none can be told new",
                        config.limit
                    ),
                    false => format!("{new} new since the incident began"),
                }
            );
            for t in &templates {
                summary.push('\n');
                summary.push_str(&t.line());
            }
            // New templates rank by how many; old ones by how many lines. Lines that are not
            // error-like change the picture less.
            let rank = match (new, &q.purpose) {
                (0, Purpose::LogOther) => Rank::new(Tier::Background, lines.len() as f64),
                (0, _) => Rank::new(Tier::Changed, lines.len() as f64),
                (n, Purpose::LogOther) => Rank::new(Tier::Changed, rank::NEW_TEMPLATE * n as f64),
                (n, _) => Rank::new(Tier::Anomalous, rank::NEW_TEMPLATE * n as f64),
            };
            let span = facts::LogSpan {
                start: window.logs_start as f64,
                alert: window.alert as f64,
                end: window.logs_end as f64,
            };
            let (rank, mut evidence) =
                ranked_evidence(q, EvidenceSource::Loki, summary, None, rank);
            let related = match &q.purpose {
                Purpose::LeadLines { lead } => Some(lead.as_str()),
                _ => None,
            };
            evidence.facts = facts::of_templates(
                &templates,
                matches!(q.purpose, Purpose::LogErrors),
                related,
                span,
            );
            Some((rank, evidence))
        }
    }
}

/// `{ns="…", workload="…"}` from the alert labels that map to labels Loki has.
pub(crate) fn loki_selector(
    config: &LokiConfig,
    labels: &BTreeMap<String, Vec<String>>,
    known: &[String],
) -> Option<String> {
    let lookup = |alert_label: &str| -> Option<String> {
        let values: Vec<&str> = values_of(labels, alert_label);
        if values.is_empty() {
            return None;
        }
        let candidates = config.labels.get(alert_label)?;
        let loki_label = candidates.iter().find(|c| known.contains(c))?;
        matcher(loki_label, &values)
    };
    let others = config
        .labels
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "namespace" && !WORKLOAD.contains(k));
    let workload = WORKLOAD.iter().copied().chain(others).find_map(lookup);
    let mut matchers: Vec<String> = lookup("namespace").into_iter().collect();
    matchers.extend(workload);
    if matchers.is_empty() {
        return None;
    }
    Some(format!("{{{}}}", matchers.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
            .collect()
    }

    #[test]
    fn the_window_ends_on_a_point_so_a_series_born_with_the_incident_is_seen() {
        let alert = time::macros::datetime!(2026-11-24 18:00:00.7 UTC);
        let clock = Arc::new(aiops_model::ManualClock::new(
            alert + time::Duration::seconds(2),
        ));
        let gatherer = Gatherer::new(
            &ContextConfig::default(),
            &PrometheusConfig::default(),
            &LokiConfig::default(),
            clock,
        )
        .expect("defaults are valid");
        let raw = r#"{"groupKey":"g","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"X"},"startsAt":"2026-11-24T18:00:00.7Z"}]}"#;
        let payload = aiops_model::alertmanager::parse_webhook(raw.as_bytes()).expect("parses");
        let w = gatherer.window(&payload);
        assert_eq!(w.end, alert.unix_timestamp() + 3, "up to now, rounded up");
        assert!(
            w.start <= alert.unix_timestamp() - 1800,
            "30 minutes before"
        );
        let points = (w.end - w.start) as f64 / w.step;
        assert_eq!(points.fract(), 0.0, "the last point is the window's end");
        assert!(points <= f64::from(ContextConfig::default().max_points) + 1.0);
    }

    #[test]
    fn the_loki_selector_takes_namespace_and_the_most_specific_workload() {
        let config = LokiConfig::default();
        let known: Vec<String> = ["namespace", "app", "pod", "job"].map(String::from).into();
        let l = labels(&[
            ("namespace", "shop"),
            ("service", "cart"),
            ("job", "cart-svc"),
        ]);
        assert_eq!(
            loki_selector(&config, &l, &known).as_deref(),
            Some(r#"{namespace="shop", app="cart"}"#)
        );
        let l = labels(&[("pod", "cart-7d9"), ("service", "cart")]);
        assert_eq!(
            loki_selector(&config, &l, &known).as_deref(),
            Some(r#"{pod="cart-7d9"}"#)
        );
        assert_eq!(
            loki_selector(&config, &labels(&[("severity", "page")]), &known),
            None
        );
    }

    #[test]
    fn a_hostile_label_value_stays_inside_its_loki_matcher() {
        let config = LokiConfig::default();
        let known: Vec<String> = ["app"].map(String::from).into();
        let l = labels(&[("service", "x\"} |= \"\" or {app=~\".+")]);
        let selector = loki_selector(&config, &l, &known).expect("selector");
        assert_eq!(selector, r#"{app="x\"} |= \"\" or {app=~\".+"}"#);
    }
}
