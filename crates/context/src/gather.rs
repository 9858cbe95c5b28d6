//! The context stage: plans queries from the alert group, runs them concurrently under a deadline,
//! compresses what comes back into ranked evidence, redacts it and fits it into the token budget.

use std::collections::{BTreeMap, HashMap, HashSet};
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
use crate::candidates::{logs, metrics, pairs};
use crate::config::{ContextConfig, LokiConfig, PrometheusConfig};
use crate::entities::Entities;
use crate::escape::{matcher, quote};
use crate::logs::{mine, truncate};
use crate::loki::{Direction, LogLine, Loki};
use crate::prom::Prometheus;
use crate::promql::{Rule, read_rule};
use crate::rank::{self, Rank, Tier};
use crate::series::{
    Frame, INCIDENT_LEAD, Series, SeriesSummary, Threshold, summarize, summarize_in,
};
use crate::templates::{Template, load};
use aiops_model::redact::Redactor;

/// Alert labels that describe the alert rather than where it comes from; every other alert label
/// (instance, job, namespace, pod, container, service, …) narrows a query whose series carry it.
const DESCRIPTIVE: &[&str] = &["alertname", "severity", "alertstate", "team", "priority"];
/// Alert labels whose other alerts are neighbours.
const NEIGHBOURS: &[&str] = &["instance", "job", "namespace", "service"];
/// Loki workload labels, most specific first.
const WORKLOAD: &[&str] = &["pod", "container", "service", "app", "job", "instance"];
/// Lines that look like errors, where Loki has no level label.
const ERROR_LINES: &str = "(?i)(error|exception|fatal|panic|fail(ed|ure)?|timed? ?out|refused|denied|oom|killed|unavailable)";
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
    redactor: Redactor,
    clock: Arc<dyn Clock>,
}

/// What one query is for.
#[derive(Debug, Clone)]
enum Purpose {
    Rule { threshold: Option<Threshold> },
    Component,
    Template,
    Up,
    Alerts,
    LogErrors,
    LogRecent,
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
            Purpose::LogErrors | Purpose::LogRecent => EvidenceSource::Loki,
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
        Window {
            start,
            alert,
            end,
            step,
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
        let ((), discovered) = tokio::join!(
            self.run_planned(&rules, &labels, &entities, window, deadline, context),
            self.discover(&rules, &entities, window, deadline)
        );
        context.evidence.extend(discovered.evidence);
        context.failures.extend(discovered.failures);
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

    /// The rule's own queries, the planned ones (components, neighbours, templates) and the logs.
    async fn run_planned(
        &self,
        rules: &[Rule],
        labels: &BTreeMap<String, Vec<String>>,
        entities: &Entities,
        window: Window,
        deadline: Deadline,
        context: &mut Collected,
    ) {
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
                },
            });
        }
        let mut pending: FuturesUnordered<Pending<'_>> = FuturesUnordered::new();
        let mut started = 0;
        if self.prometheus.is_some() {
            for (i, q) in queries.iter().enumerate() {
                pending.push(self.execute(i, q.clone(), window));
            }
            started = queries.len();
        }
        // The rule's queries run meanwhile; their answers are read below.
        let (prom_plan, loki_plan) = tokio::join!(
            tokio::time::timeout_at(deadline.at, self.plan_prometheus(rules, labels, window)),
            tokio::time::timeout_at(deadline.at, self.plan_loki(labels, entities, window)),
        );
        let prom_plan = prom_plan.unwrap_or_else(|_| {
            let what = "listing the metrics and label names that plan the Prometheus queries";
            (
                Vec::new(),
                vec![deadline.failure(EvidenceSource::Prometheus, None, what)],
            )
        });
        let loki_plan = loki_plan.unwrap_or_else(|_| {
            let what = "listing Loki's labels, which plans the log queries";
            (
                Vec::new(),
                vec![deadline.failure(EvidenceSource::Loki, None, what)],
            )
        });
        context
            .failures
            .extend(prom_plan.1.into_iter().chain(loki_plan.1));
        let budget = self.config.max_queries.saturating_sub(queries.len());
        let planned = prom_plan.0.into_iter().chain(loki_plan.0);
        queries.extend(planned.take(budget));
        for (i, q) in queries.iter().enumerate().skip(started) {
            pending.push(self.execute(i, q.clone(), window));
        }
        // Collect as they come, until the deadline. Every planned query is running now.
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

    fn execute(&self, i: usize, q: Query, window: Window) -> Pending<'_> {
        Box::pin(async move {
            let answer = match q.purpose {
                Purpose::LogErrors | Purpose::LogRecent => match &self.loki {
                    Some(loki) => {
                        let (end, limit, direction) = match q.purpose {
                            Purpose::LogRecent => (
                                window.alert,
                                self.loki_config.sample_lines,
                                Direction::Backward,
                            ),
                            _ => (window.end, self.loki_config.limit, Direction::Forward),
                        };
                        loki.query_range(
                            &q.text,
                            window.start * 1_000_000_000,
                            end * 1_000_000_000,
                            limit,
                            direction,
                        )
                        .await
                        .map(Answer::Lines)
                    }
                    None => Err("Loki is not configured".into()),
                },
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
        let (existing, carried) = tokio::join!(
            prom.existing(&wanted, window.start, window.end),
            futures_util::future::join_all(lookups)
        );
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
            let counter = ["_total", "_count", "_sum"]
                .iter()
                .any(|s| part.metric.ends_with(s));
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

    /// Discovery (`candidates::metrics`): the group's entities widened through the series that
    /// relate them (a workload's pods, a pod's node, a host's other names), every metric whose
    /// series carry them fetched in a batch per scope and kind, every series scored; the best
    /// `context.max_candidates` metrics become evidence, and each usage found next to its limit
    /// (`candidates::pairs`) becomes a share.
    async fn discover(
        &self,
        rules: &[Rule],
        entities: &Entities,
        window: Window,
        deadline: Deadline,
    ) -> Collected {
        let mut out = Collected::default();
        let Some(prom) = &self.prometheus else {
            return out;
        };
        let failure = |query: Option<String>, error: String| SourceFailure {
            source: EvidenceSource::Prometheus,
            query,
            error,
        };
        // 1. Entities through series: owners before pods' nodes, which need the pods.
        let mut entities = entities.clone();
        let range = format!("{}s", (window.end - window.start).max(60));
        let resolvers: Vec<String> = RESOLVERS.iter().map(|m| (*m).to_owned()).collect();
        let exists = match tokio::time::timeout_at(
            deadline.at,
            prom.existing(&resolvers, window.start, window.end),
        )
        .await
        {
            Ok(Ok(exists)) => exists,
            Ok(Err(e)) => {
                out.failures.push(failure(None, format!("cannot tell whether the series that relate pods, workloads and hosts exist, so the entities were not widened: {e}")));
                HashSet::new()
            }
            Err(_) => {
                let what = "listing the series that relate pods, workloads and hosts";
                out.failures
                    .push(deadline.failure(EvidenceSource::Prometheus, None, what));
                return out;
            }
        };
        let exists = |m: &str| exists.contains(m);
        for step in 0..2 {
            let (query, what) = match step {
                0 => (
                    entities.owners_query(&range, exists),
                    "the workloads' pods (kube_pod_owner)",
                ),
                _ => (
                    entities.hosts_query(&range, exists),
                    "the pods' nodes and the hosts' names (kube_pod_info, node_uname_info)",
                ),
            };
            let Some(query) = query else { continue };
            match tokio::time::timeout_at(deadline.at, prom.instant(&query, window.end)).await {
                Ok(Ok(series)) => {
                    for s in &series {
                        entities.absorb(&s.labels);
                    }
                }
                Ok(Err(e)) => out
                    .failures
                    .push(failure(Some(query), format!("cannot resolve {what}: {e}"))),
                Err(_) => {
                    let what = format!("resolving {what}");
                    out.failures.push(deadline.failure(
                        EvidenceSource::Prometheus,
                        Some(query),
                        &what,
                    ));
                    return out;
                }
            }
        }
        // 2. The metric names of each scope, and which are counters.
        let scopes = metrics::scopes(&entities);
        if scopes.is_empty() {
            return out;
        }
        let lookups = scopes.iter().map(|scope| async move {
            prom.names_of(&scope.selectors(), window.start, window.end)
                .await
        });
        let listed = tokio::time::timeout_at(
            deadline.at,
            futures_util::future::join(futures_util::future::join_all(lookups), prom.counters()),
        )
        .await;
        let Ok((names, counters)) = listed else {
            let what = "listing the metrics of the group's pods, hosts and workloads";
            out.failures
                .push(deadline.failure(EvidenceSource::Prometheus, None, what));
            return out;
        };
        let counters = counters.unwrap_or_else(|e| {
            out.failures.push(failure(None, format!("cannot read the metrics' types (/api/v1/metadata); counters are told by their _total suffix: {e}")));
            HashMap::new()
        });
        // 3. Each name in the first (most specific) scope that has it, batched by kind.
        let mut seen = HashSet::new();
        let mut batches: Vec<(usize, metrics::Kind, Vec<String>)> = Vec::new();
        for (i, (scope, names)) in scopes.iter().zip(names).enumerate() {
            let names = match names {
                Ok(names) => names,
                Err(e) => {
                    out.failures.push(failure(
                        None,
                        format!("cannot list the metrics of {}: {e}", scope.what),
                    ));
                    continue;
                }
            };
            let mut by_kind: BTreeMap<metrics::Kind, Vec<String>> = BTreeMap::new();
            for name in names {
                if let Some(kind) = metrics::kind(&name, counters.get(&name).copied())
                    && seen.insert(name.clone())
                {
                    by_kind.entry(kind).or_default().push(name);
                }
            }
            for (kind, names) in by_kind {
                for chunk in names.chunks(BATCH_NAMES) {
                    batches.push((i, kind, chunk.to_vec()));
                }
            }
        }
        // 4. The batches, concurrently, until the deadline.
        let mut pending: FuturesUnordered<_> = batches
            .iter()
            .enumerate()
            .map(|(b, (scope, _, names))| {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let query = metrics::batch(&names, &scopes[*scope]);
                // A counter's rate needs a span behind the window's first point.
                let from = match batches[b].1 {
                    metrics::Kind::Counter => window.start - i64::from(metrics::RATE_SECS),
                    metrics::Kind::Gauge => window.start,
                };
                async move {
                    let answer = prom.range_post(&query, from, window.end, window.step).await;
                    (b, answer)
                }
            })
            .collect();
        let mut fetched: Vec<(usize, metrics::Kind, Vec<Series>)> = Vec::new();
        let mut unanswered = vec![true; batches.len()];
        loop {
            match tokio::time::timeout_at(deadline.at, pending.next()).await {
                Ok(Some((b, answer))) => {
                    unanswered[b] = false;
                    let (scope, kind, names) = &batches[b];
                    match answer {
                        Ok(series) => fetched.push((
                            *scope,
                            *kind,
                            match kind {
                                metrics::Kind::Counter => {
                                    metrics::rates(series, window.start as f64)
                                }
                                metrics::Kind::Gauge => series,
                            },
                        )),
                        Err(e) => out.failures.push(failure(
                            Some(names.join(", ")),
                            format!("cannot fetch these metrics of {}: {e}", scopes[*scope].what),
                        )),
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    for (b, _) in unanswered.iter().enumerate().filter(|(_, u)| **u) {
                        let (scope, _, names) = &batches[b];
                        let what = format!("fetching these metrics of {}", scopes[*scope].what);
                        out.failures.push(deadline.failure(
                            EvidenceSource::Prometheus,
                            Some(names.join(", ")),
                            &what,
                        ));
                    }
                    break;
                }
            }
        }
        // 5. Every metric scored; the best become evidence, the pairs shares.
        let own: HashSet<&str> = rules
            .iter()
            .flat_map(|r| r.selectors.iter().map(|s| s.metric.as_str()))
            .collect();
        let frame = Frame {
            start: window.start as f64,
            alert: window.alert as f64,
            end: window.end as f64,
            step: window.step,
        };
        let mut by_name: BTreeMap<String, (usize, metrics::Kind, Vec<Series>)> = BTreeMap::new();
        for (scope, kind, series) in fetched {
            for s in series {
                let Some(name) = s.labels.get("__name__").cloned() else {
                    continue;
                };
                by_name
                    .entry(name)
                    .or_insert_with(|| (scope, kind, Vec::new()))
                    .2
                    .push(s);
            }
        }
        let mut found: Vec<(Rank, Evidence)> = Vec::new();
        for (name, (scope, kind, series)) in &by_name {
            if own.contains(name.as_str()) {
                continue;
            }
            let ranked = summarize_in(series, frame, None);
            let Some(top) = ranked.first() else { continue };
            let alternative = series
                .iter()
                .find(|s| {
                    s.labels
                        .iter()
                        .all(|(k, v)| top.labels.get(k).is_none_or(|t| t == v))
                })
                .map_or(&[][..], |s| scopes[*scope].alternative_of(s));
            let (text, title) = metrics::shown(name, alternative, *kind, &scopes[*scope].what);
            let summary = self.series_lines(&ranked, None);
            let rank = Rank::new(Tier::of_score(top.score), top.score);
            found.push((
                rank,
                evidence(format!("found-{}", found.len() + 1), title, text, summary),
            ));
        }
        found.sort_by(|a, b| Rank::descending(&a.0, &b.0));
        found.truncate(self.config.max_candidates);
        out.evidence.extend(found);
        let series_by_name: HashMap<String, Vec<Series>> = by_name
            .into_iter()
            .map(|(name, (_, _, series))| (name, series))
            .collect();
        let names: Vec<&str> = series_by_name.keys().map(String::as_str).collect();
        for (n, pair) in pairs::pairs_among(&names).iter().enumerate() {
            let shares = pairs::shares(pair, &series_by_name);
            let Some(worst) = shares.first() else {
                continue;
            };
            let severity = pairs::severity(worst, pair);
            let available = pair.usage.contains("_avail");
            let mut lines: Vec<String> = shares
                .iter()
                .take(self.config.top_series)
                .map(|s| s.line(available))
                .collect();
            if shares.len() > self.config.top_series {
                lines.push(format!(
                    "({} more, less saturated, left out)",
                    shares.len() - self.config.top_series
                ));
            }
            let filter: Vec<String> = pair
                .limit_filter
                .iter()
                .map(|(k, v)| format!("{k}={}", quote(v)))
                .collect();
            let text = format!("{} / {}{{{}}}", pair.usage, pair.limit, filter.join(", "));
            let title = format!(
                "Saturation: {} ({} / {})",
                pair.what, pair.usage, pair.limit
            );
            out.evidence.push((
                Rank::new(Tier::of_share(severity), severity),
                evidence(format!("limit-{}", n + 1), title, text, lines.join("\n")),
            ));
        }
        out
    }

    /// Error-like lines over the window and a sample of lines just before the alert, from the
    /// streams whose label values name the group's workload or host (`candidates::logs`), else from
    /// the labels `loki.labels` maps by name; and the host's own error-like lines when the workload
    /// and the host are both known.
    async fn plan_loki(
        &self,
        labels: &BTreeMap<String, Vec<String>>,
        entities: &Entities,
        window: Window,
    ) -> (Vec<Query>, Vec<SourceFailure>) {
        let Some(loki) = &self.loki else {
            return (Vec::new(), Vec::new());
        };
        let (start, end) = (window.start * 1_000_000_000, window.end * 1_000_000_000);
        let failure = |error: String| SourceFailure {
            source: EvidenceSource::Loki,
            query: None,
            error,
        };
        let known = match loki.labels(start, end).await {
            Ok(known) => known,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![failure(format!("cannot list Loki's labels: {e}"))],
                );
            }
        };
        let mut failures = Vec::new();
        let names: Vec<&String> = known
            .iter()
            .filter(|n| !n.starts_with("__"))
            .take(MAX_LOKI_LABELS)
            .collect();
        let lookups = names.iter().map(|n| loki.label_values(n, start, end, None));
        let mut values = BTreeMap::new();
        for (name, answer) in names
            .iter()
            .zip(futures_util::future::join_all(lookups).await)
        {
            match answer {
                Ok(v) => drop(values.insert((*name).clone(), v.into_iter().collect())),
                Err(e) => failures.push(failure(format!(
                    "cannot list the values of Loki's label {name}, so its streams were not matched: {e}"
                ))),
            }
        }
        let found = logs::selectors(entities, &values);
        let by_name = || loki_selector(&self.loki_config, labels, &known);
        let Some(primary) = found
            .workload
            .clone()
            .or(found.host.clone())
            .or_else(by_name)
        else {
            failures.push(failure(
                "no Loki label holds a value of the alerts' hosts, pods or workloads, and none maps by name (loki.labels)".into(),
            ));
            return (Vec::new(), failures);
        };
        let mut queries = vec![
            Query {
                id: "logs-errors".into(),
                title: "Error-like log lines, as templates".into(),
                text: self
                    .errors_query(loki, &known, &primary, (start, end), &mut failures)
                    .await,
                purpose: Purpose::LogErrors,
            },
            Query {
                id: "logs-recent".into(),
                title: "The last log lines before the alert started".into(),
                text: primary.clone(),
                purpose: Purpose::LogRecent,
            },
        ];
        if let Some(host) = found.host.filter(|h| *h != primary) {
            queries.push(Query {
                id: "logs-host".into(),
                title: "Error-like lines of the host (kernel, system services), as templates"
                    .into(),
                text: self
                    .errors_query(loki, &known, &host, (start, end), &mut failures)
                    .await,
                purpose: Purpose::LogErrors,
            });
        }
        (queries, failures)
    }

    /// Error-like lines of `selector`'s streams: by their level label when those streams carry an
    /// error-like level, else by a case-insensitive regex over the line (also when the levels cannot
    /// be read, which `failures` records).
    async fn errors_query(
        &self,
        loki: &Loki,
        known: &[String],
        selector: &str,
        window: (i64, i64),
        failures: &mut Vec<SourceFailure>,
    ) -> String {
        let error_level = regex::Regex::new(&format!("^{ERROR_LEVELS}$")).ok();
        for level in self
            .loki_config
            .level_labels
            .iter()
            .filter(|l| known.contains(l))
        {
            let levels = match loki
                .label_values(level, window.0, window.1, Some(selector))
                .await
            {
                Ok(levels) => levels,
                Err(e) => {
                    failures.push(SourceFailure {
                        source: EvidenceSource::Loki,
                        query: Some(selector.to_owned()),
                        error: format!(
                            "cannot read the {level} values of these streams; error lines are matched by their text: {e}"
                        ),
                    });
                    continue;
                }
            };
            if levels
                .iter()
                .any(|v| error_level.as_ref().is_some_and(|re| re.is_match(v)))
            {
                return format!(
                    "{{{}, {level}=~{}}}",
                    &selector[1..selector.len() - 1],
                    quote(ERROR_LEVELS)
                );
            }
        }
        format!("{selector} |~ {}", quote(ERROR_LINES))
    }

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
                // Before mining: a secret must not become part of a template or an example.
                for l in &mut lines {
                    self.redactor.redact_in_place(&mut l.line);
                }
                logs_evidence(q, &lines, window, self.loki_config.sample_lines as usize)
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
            Purpose::Rule { threshold } => threshold,
            _ => None,
        };
        let ranked = summarize(series, window.alert as f64, threshold);
        let top = ranked.first()?.score;
        let tier = match q.purpose {
            Purpose::Rule { .. } => Tier::Rule,
            Purpose::Alerts => Tier::Correlated,
            Purpose::Up if ranked.iter().any(|s| s.min == 0.0) => Tier::Correlated,
            _ => Tier::of_score(top),
        };
        Some(ranked_evidence(
            q,
            EvidenceSource::Prometheus,
            self.series_lines(&ranked, threshold),
            None,
            Rank::new(tier, top),
        ))
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
    };
    (rank, evidence)
}

fn logs_evidence(
    q: &Query,
    lines: &[LogLine],
    window: Window,
    sample: usize,
) -> Option<(Rank, Evidence)> {
    if lines.is_empty() {
        return None;
    }
    match q.purpose {
        Purpose::LogRecent => {
            // Loki honours the limit; a proxy or an old version may not.
            let lines = &lines[lines.len().saturating_sub(sample)..];
            let excerpt: Vec<String> = lines.iter().map(|l| truncate(&l.line, 300)).collect();
            Some(ranked_evidence(
                q,
                EvidenceSource::Loki,
                format!("{} lines from just before the alert started", lines.len()),
                Some(excerpt.join("\n")),
                Rank::new(Tier::Background, lines.len() as f64),
            ))
        }
        _ => {
            let new_since = window.alert as f64 - INCIDENT_LEAD;
            let templates = mine(lines, new_since, LOG_TEMPLATES);
            let new = templates.iter().filter(|t| t.is_new()).count();
            let mut summary = format!(
                "{} error-like lines, {} templates kept ({new} new since the incident began):",
                lines.len(),
                templates.len()
            );
            for t in &templates {
                summary.push('\n');
                summary.push_str(&t.line());
            }
            // New templates rank by how many; old ones by how many lines.
            let rank = match new {
                0 => Rank::new(Tier::Changed, lines.len() as f64),
                n => Rank::new(Tier::Anomalous, rank::NEW_TEMPLATE * n as f64),
            };
            Some(ranked_evidence(
                q,
                EvidenceSource::Loki,
                summary,
                None,
                rank,
            ))
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
