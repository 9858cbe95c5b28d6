//! The Prometheus source: range queries, and which metrics and labels exist (cached).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_http_query::response::Data;
use prometheus_http_query::{Client, Selector};

use crate::escape::is_metric_name;
use crate::series::Series;

/// A Prometheus HTTP API client with a timeout per request and a cache of what exists.
pub struct Prometheus {
    client: Client,
    timeout: Duration,
    cache_ttl: Duration,
    /// Metric name → whether it had series lately.
    metrics: Mutex<HashMap<String, (Instant, bool)>>,
    /// Metric name → the label names its series carry.
    labels: Mutex<HashMap<String, (Instant, HashSet<String>)>>,
    /// Metric name → whether `/api/v1/metadata` calls it a counter.
    counters: Mutex<Option<(Instant, HashMap<String, bool>)>>,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.client.base_url().as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Prometheus {
    pub fn new(url: &str, timeout: Duration, cache_ttl: Duration) -> Result<Self, String> {
        // The per-query timeout is enforced around each request (with a clear message); the client's
        // own timeout is only a backstop.
        let http = reqwest::Client::builder()
            .timeout(timeout + Duration::from_secs(1))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let client = Client::from(http, url)
            .map_err(|e| format!("prometheus.url {url:?} is not a URL: {e}"))?;
        Ok(Self {
            client,
            timeout,
            cache_ttl,
            metrics: Mutex::default(),
            labels: Mutex::default(),
            counters: Mutex::default(),
        })
    }

    /// Runs a range query; `start`, `end` in Unix seconds, `step` in seconds.
    pub async fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: f64,
    ) -> Result<Vec<Series>, String> {
        self.range_by(query, (start, end, step), false).await
    }

    /// Runs a range query as a POST (a discovery batch names many metrics; a URL has limits).
    pub async fn range_post(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: f64,
    ) -> Result<Vec<Series>, String> {
        self.range_by(query, (start, end, step), true).await
    }

    async fn range_by(
        &self,
        query: &str,
        (start, end, step): (i64, i64, f64),
        post: bool,
    ) -> Result<Vec<Series>, String> {
        let builder = self
            .client
            .query_range(query, start, end, step)
            .timeout(self.timeout_ms());
        match post {
            true => self.answer(builder.post()).await,
            false => self.answer(builder.get()).await,
        }
    }

    /// Runs an instant query at `at` (Unix seconds): each series with its one point.
    pub async fn instant(&self, query: &str, at: i64) -> Result<Vec<Series>, String> {
        let request = self
            .client
            .query(query)
            .at(at)
            .timeout(self.timeout_ms())
            .post();
        self.answer(request).await
    }

    fn timeout_ms(&self) -> i64 {
        i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX)
    }

    /// A query's answer as series, within the timeout.
    async fn answer(
        &self,
        request: impl std::future::Future<
            Output = Result<
                prometheus_http_query::response::PromqlResult,
                prometheus_http_query::Error,
            >,
        >,
    ) -> Result<Vec<Series>, String> {
        let result = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| format!("no answer within {}s", self.timeout.as_secs()))?
            .map_err(describe)?;
        Ok(series_of(result.into_inner().0))
    }

    /// Which of `names` have series in the window. Answers are cached for the cache TTL.
    pub async fn existing(
        &self,
        names: &[String],
        start: i64,
        end: i64,
    ) -> Result<HashSet<String>, String> {
        let mut known = HashSet::new();
        let mut unknown = Vec::new();
        {
            let cache = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            for name in names.iter().filter(|n| is_metric_name(n)) {
                match cache.get(name) {
                    Some((at, exists)) if at.elapsed() < self.cache_ttl => {
                        if *exists {
                            known.insert(name.clone());
                        }
                    }
                    _ => unknown.push(name.clone()),
                }
            }
        }
        if unknown.is_empty() {
            return Ok(known);
        }
        // Metric names are checked above, so the alternation needs no escaping.
        let alternation = unknown.join("|");
        let selector = Selector::new().regex_eq("__name__", alternation.as_str());
        let request = self
            .client
            .label_values("__name__")
            .selectors([&selector])
            .start(start)
            .end(end)
            .get();
        let found: HashSet<String> = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| format!("no answer within {}s", self.timeout.as_secs()))?
            .map_err(describe)?
            .into_iter()
            .collect();
        let mut cache = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        for name in unknown {
            let exists = found.contains(&name);
            cache.insert(name.clone(), (Instant::now(), exists));
            if exists {
                known.insert(name);
            }
        }
        Ok(known)
    }

    /// The label names the series of `metric` carry in the window (cached).
    pub async fn label_names(
        &self,
        metric: &str,
        start: i64,
        end: i64,
    ) -> Result<HashSet<String>, String> {
        if !is_metric_name(metric) {
            return Ok(HashSet::new());
        }
        if let Some((at, names)) = self
            .labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(metric)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(names.clone());
        }
        let selector = Selector::new().metric(metric);
        let request = self
            .client
            .label_names()
            .selectors([&selector])
            .start(start)
            .end(end)
            .get();
        let names: HashSet<String> = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| format!("no answer within {}s", self.timeout.as_secs()))?
            .map_err(describe)?
            .into_iter()
            .collect();
        self.labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(metric.to_owned(), (Instant::now(), names.clone()));
        Ok(names)
    }
}

impl Prometheus {
    /// The values of `label` across all series in the window.
    pub async fn values_of(
        &self,
        label: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, String> {
        let request = self.client.label_values(label).start(start).end(end).get();
        tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| format!("no answer within {}s", self.timeout.as_secs()))?
            .map_err(describe)
    }

    /// The metric names with series that any of `selectors` selects in the window.
    pub async fn names_of(
        &self,
        selectors: &[Selector<'_>],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, String> {
        let request = self
            .client
            .label_values("__name__")
            .selectors(selectors)
            .start(start)
            .end(end)
            .get();
        tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| format!("no answer within {}s", self.timeout.as_secs()))?
            .map_err(describe)
    }

    /// Metric name → whether it is a counter, from `/api/v1/metadata` (cached): what the scraped
    /// targets declare, so a counter without `_total` is still read as one.
    pub async fn counters(&self) -> Result<HashMap<String, bool>, String> {
        if let Some((at, counters)) = &*self.counters.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < self.cache_ttl
        {
            return Ok(counters.clone());
        }
        let request = self.client.metric_metadata().limit_per_metric(1).get();
        let counters: HashMap<String, bool> = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| format!("no answer within {}s", self.timeout.as_secs()))?
            .map_err(describe)?
            .into_iter()
            .map(|(name, m)| {
                let counter = m.first().is_some_and(|m| {
                    m.metric_type() == prometheus_http_query::response::MetricType::Counter
                });
                (name, counter)
            })
            .collect();
        *self.counters.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), counters.clone()));
        Ok(counters)
    }
}

/// An answer's series: a matrix's, or a vector's with their one point each.
fn series_of(data: Data) -> Vec<Series> {
    match data {
        Data::Matrix(matrix) => matrix
            .into_iter()
            .map(|rv| {
                let (labels, samples) = rv.into_inner();
                Series {
                    labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                    points: samples
                        .iter()
                        .map(|s| (s.timestamp(), s.value()))
                        .filter(|p| p.1.is_finite())
                        .collect(),
                }
            })
            .collect(),
        Data::Vector(vector) => vector
            .into_iter()
            .map(|iv| {
                let (labels, sample) = iv.into_inner();
                Series {
                    labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                    points: vec![(sample.timestamp(), sample.value())],
                }
            })
            .collect(),
        Data::Scalar(_) => Vec::new(),
    }
}

/// The client's error as one line. Prometheus' own errors carry its message (`bad_data: …`).
fn describe(e: prometheus_http_query::Error) -> String {
    match e {
        prometheus_http_query::Error::Prometheus(p) => format!("Prometheus answered an error: {p}"),
        prometheus_http_query::Error::Client(c) => {
            let mut message = c.to_string();
            let mut source = std::error::Error::source(&c);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            message
        }
        other => other.to_string(),
    }
}
