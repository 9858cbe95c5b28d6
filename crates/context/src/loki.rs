//! The Loki source: `/loki/api/v1/labels` (cached) and `/loki/api/v1/query_range` for log lines.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One log line with its stream's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Unix time in nanoseconds.
    pub ts_ns: i64,
    pub stream: BTreeMap<String, String>,
    pub line: String,
}

/// A Loki HTTP API client.
#[derive(Debug)]
pub struct Loki {
    http: reqwest::Client,
    base: String,
    tenant: Option<String>,
    timeout: Duration,
    cache_ttl: Duration,
    labels: Mutex<Option<(Instant, Vec<String>)>>,
    /// Values per label name, as `/label/<name>/values` answered for all streams.
    values: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

#[derive(Deserialize)]
struct LabelsAnswer {
    status: String,
    #[serde(default)]
    data: Vec<String>,
}

#[derive(Deserialize)]
struct QueryAnswer {
    status: String,
    data: QueryData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    #[serde(default)]
    result: Vec<Stream>,
}

#[derive(Deserialize)]
struct Stream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(String, String)>,
}

impl Loki {
    pub fn new(
        url: &str,
        tenant: &str,
        timeout: Duration,
        cache_ttl: Duration,
    ) -> Result<Self, String> {
        reqwest::Url::parse(url).map_err(|e| format!("loki.url {url:?} is not a URL: {e}"))?;
        // The per-query timeout is enforced around each request (with a clear message); the client's
        // own timeout is only a backstop.
        let http = reqwest::Client::builder()
            .timeout(timeout + Duration::from_secs(1))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: url.trim_end_matches('/').to_owned(),
            tenant: (!tenant.is_empty()).then(|| tenant.to_owned()),
            timeout,
            cache_ttl,
            labels: Mutex::new(None),
            values: Mutex::new(HashMap::new()),
        })
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<String, String> {
        let mut request = self.http.get(format!("{}{path}", self.base)).query(params);
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let send = async {
            let response = request
                .send()
                .await
                .map_err(|e| error_chain(&e.without_url()))?;
            let status = response.status();
            let body = response
                .text()
                .await
                .map_err(|e| error_chain(&e.without_url()))?;
            match status.is_success() {
                true => Ok(body),
                // Loki answers errors as plain text, e.g. "parse error at line 1, col 2: …".
                false => Err(format!("Loki answered {status}: {}", first_line(&body))),
            }
        };
        tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| format!("no answer within {}s", self.timeout.as_secs()))?
    }

    /// The label names Loki knows in the window (cached).
    pub async fn labels(&self, start_ns: i64, end_ns: i64) -> Result<Vec<String>, String> {
        if let Some((at, labels)) = &*self.labels.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < self.cache_ttl
        {
            return Ok(labels.clone());
        }
        let params = [("start", start_ns.to_string()), ("end", end_ns.to_string())];
        let body = self.get("/loki/api/v1/labels", &params).await?;
        let answer: LabelsAnswer = serde_json::from_str(&body)
            .map_err(|e| format!("Loki's /labels answer is not what its API documents: {e}"))?;
        if answer.status != "success" {
            return Err(format!("Loki answered status {:?}", answer.status));
        }
        *self.labels.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), answer.data.clone()));
        Ok(answer.data)
    }

    /// The values of label `name` in the window: of every stream (cached), or of the streams
    /// `selector` selects.
    pub async fn label_values(
        &self,
        name: &str,
        start_ns: i64,
        end_ns: i64,
        selector: Option<&str>,
    ) -> Result<Vec<String>, String> {
        if selector.is_none()
            && let Some((at, values)) = self
                .values
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(values.clone());
        }
        let mut params = vec![("start", start_ns.to_string()), ("end", end_ns.to_string())];
        if let Some(selector) = selector {
            params.push(("query", selector.to_owned()));
        }
        // The name is a label name Loki listed: `[a-zA-Z_][a-zA-Z0-9_]*`, safe in a path.
        let path = format!("/loki/api/v1/label/{name}/values");
        let body = self.get(&path, &params).await?;
        let answer: LabelsAnswer = serde_json::from_str(&body).map_err(|e| {
            format!("Loki's /label/{name}/values answer is not what its API documents: {e}")
        })?;
        if answer.status != "success" {
            return Err(format!("Loki answered status {:?}", answer.status));
        }
        if selector.is_none() {
            self.values
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_owned(), (Instant::now(), answer.data.clone()));
        }
        Ok(answer.data)
    }

    /// Log lines of a LogQL log query, read newest first (a limit keeps the newest), returned
    /// oldest first.
    pub async fn query_range(
        &self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        limit: u32,
    ) -> Result<Vec<LogLine>, String> {
        let params = [
            ("query", query.to_owned()),
            ("start", start_ns.to_string()),
            ("end", end_ns.to_string()),
            ("limit", limit.to_string()),
            ("direction", "backward".to_owned()),
        ];
        let body = self.get("/loki/api/v1/query_range", &params).await?;
        let answer: QueryAnswer = serde_json::from_str(&body).map_err(|e| {
            format!("Loki's /query_range answer is not what its API documents: {e}")
        })?;
        if answer.status != "success" {
            return Err(format!("Loki answered status {:?}", answer.status));
        }
        if answer.data.result_type != "streams" {
            return Err(format!(
                "expected log streams, Loki answered {:?}",
                answer.data.result_type
            ));
        }
        let mut lines: Vec<LogLine> = answer
            .data
            .result
            .into_iter()
            .flat_map(|s| {
                let stream = s.stream;
                s.values.into_iter().filter_map(move |(ts, line)| {
                    Some(LogLine {
                        ts_ns: ts.parse().ok()?,
                        stream: stream.clone(),
                        line,
                    })
                })
            })
            .collect();
        lines.sort_by_key(|l| l.ts_ns);
        Ok(lines)
    }
}

fn first_line(body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}
