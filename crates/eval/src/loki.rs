//! The scenario's logs behind Loki's HTTP API, on loopback: `/loki/api/v1/labels`,
//! `/loki/api/v1/label/{name}/values` and `/loki/api/v1/query_range` for log queries, with Loki's
//! stream selector (`=`, `!=`, `=~`, `!~`, regexes anchored as Loki anchors them) and line filters
//! (`|=`, `!=`, `|~`, `!~`), `limit` and `direction`, answering in Loki's JSON and, for a query it
//! cannot parse, a 400 with a plain-text reason as Loki does. Parsers (`| json`, `| logfmt`) and
//! metric queries are not served: they answer 400 and name what is missing. The same server also
//! serves `/metrics`: the scenario's `# TYPE` lines, which Prometheus scrapes for its metadata.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use regex::Regex;
use serde::Deserialize;
use serde_json::json;

use crate::scenario::LogEntry;

/// What the server holds for one scenario.
#[derive(Debug)]
struct Data {
    logs: Vec<LogEntry>,
    exposition: String,
}

/// A running server; stopped when dropped.
#[derive(Debug)]
pub struct DataServer {
    pub url: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for DataServer {
    fn drop(&mut self) {
        // Stopping is asynchronous; the future need not be awaited for the server to stop.
        drop(self.handle.stop(false));
    }
}

impl DataServer {
    /// Serves `logs` and the metadata `exposition` on a free loopback port. Must run in a tokio
    /// runtime.
    pub fn start(logs: Vec<LogEntry>, exposition: String) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let data = web::Data::new(Arc::new(Data { logs, exposition }));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/loki/api/v1/labels", web::get().to(labels))
                .route("/loki/api/v1/label/{name}/values", web::get().to(values))
                .route("/loki/api/v1/query_range", web::get().to(query_range))
                .route("/metrics", web::get().to(metrics))
        })
        .listen(listener)?
        .workers(1)
        .disable_signals()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { url, handle })
    }
}

#[derive(Debug, Deserialize)]
struct Range {
    start: Option<String>,
    end: Option<String>,
    query: Option<String>,
    limit: Option<usize>,
    direction: Option<String>,
}

impl Range {
    /// `[start, end)` in nanoseconds; Loki's defaults are the last hour (queries) or six hours
    /// (labels), which the callers here always set.
    fn bounds(&self) -> Result<(i64, i64), String> {
        let start = self
            .start
            .as_deref()
            .map(timestamp)
            .transpose()?
            .unwrap_or(i64::MIN);
        let end = self
            .end
            .as_deref()
            .map(timestamp)
            .transpose()?
            .unwrap_or(i64::MAX);
        Ok((start, end))
    }
}

/// A Loki timestamp: nanoseconds, or seconds with a fraction, or RFC 3339.
fn timestamp(s: &str) -> Result<i64, String> {
    if let Ok(ns) = s.parse::<i64>() {
        // Loki reads integers as nanoseconds, or as seconds when they are that short.
        return Ok(if s.len() <= 10 {
            ns * 1_000_000_000
        } else {
            ns
        });
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX))
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

fn bad_request(reason: String) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain; charset=utf-8")
        .body(reason)
}

fn success(data: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "success", "data": data}))
}

/// The entries in `[start, end)` that `selector` (if any) selects.
fn selected<'a>(
    data: &'a Data,
    range: &Range,
) -> Result<impl Iterator<Item = &'a LogEntry>, String> {
    let (start, end) = range.bounds()?;
    let query = match range.query.as_deref() {
        Some(q) if !q.trim().is_empty() => Some(Query::parse(q)?),
        _ => None,
    };
    Ok(data
        .logs
        .iter()
        .filter(move |e| e.ts_ns >= start && e.ts_ns < end)
        .filter(move |e| query.as_ref().is_none_or(|q| q.selects(&e.labels)))
        .collect::<Vec<_>>()
        .into_iter())
}

async fn labels(data: web::Data<Arc<Data>>, range: web::Query<Range>) -> HttpResponse {
    match selected(&data, &range) {
        Ok(entries) => {
            let names: BTreeSet<&str> = entries
                .flat_map(|e| e.labels.keys().map(String::as_str))
                .collect();
            success(json!(names))
        }
        Err(e) => bad_request(e),
    }
}

async fn values(
    data: web::Data<Arc<Data>>,
    name: web::Path<String>,
    range: web::Query<Range>,
) -> HttpResponse {
    match selected(&data, &range) {
        Ok(entries) => {
            let values: BTreeSet<&str> = entries
                .filter_map(|e| e.labels.get(name.as_str()).map(String::as_str))
                .collect();
            success(json!(values))
        }
        Err(e) => bad_request(e),
    }
}

async fn query_range(data: web::Data<Arc<Data>>, range: web::Query<Range>) -> HttpResponse {
    let Some(text) = range.query.as_deref() else {
        return bad_request("query parameter is required".into());
    };
    let query = match Query::parse(text) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let (start, end) = match range.bounds() {
        Ok(b) => b,
        Err(e) => return bad_request(e),
    };
    let forward = match range
        .direction
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("backward") => false,
        Some("forward") => true,
        Some(other) => return bad_request(format!("invalid direction {other:?}")),
    };
    let limit = range.limit.unwrap_or(100);
    let mut hits: Vec<&LogEntry> = data
        .logs
        .iter()
        .filter(|e| e.ts_ns >= start && e.ts_ns < end && query.matches(e))
        .collect();
    // The `limit` entries nearest to where the direction starts, across streams.
    if !forward {
        hits.reverse();
    }
    hits.truncate(limit);
    let mut streams: BTreeMap<&BTreeMap<String, String>, Vec<(String, &str)>> = BTreeMap::new();
    for e in hits {
        streams
            .entry(&e.labels)
            .or_default()
            .push((e.ts_ns.to_string(), e.line.as_str()));
    }
    let result: Vec<serde_json::Value> = streams
        .into_iter()
        .map(|(stream, values)| json!({"stream": stream, "values": values}))
        .collect();
    success(json!({
        "resultType": "streams",
        "result": result,
        "stats": {"summary": {"bytesProcessedPerSecond": 0, "linesProcessedPerSecond": 0,
                               "totalBytesProcessed": 0, "totalLinesProcessed": 0, "execTime": 0.0}}
    }))
}

async fn metrics(data: web::Data<Arc<Data>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(data.exposition.clone())
}

/// A parsed log query: the stream selector and the line filters, in order.
#[derive(Debug)]
pub struct Query {
    matchers: Vec<(String, Op, String, Option<Regex>)>,
    filters: Vec<(Filter, String, Option<Regex>)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Re,
    Nre,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Filter {
    Contains,
    NotContains,
    Matches,
    NotMatches,
}

impl Query {
    /// Parses `{matchers} filters…`, or says why it cannot, as Loki's parse errors do.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = Parser { s: text, at: 0 };
        p.skip_space();
        p.expect('{')?;
        let mut matchers = Vec::new();
        loop {
            p.skip_space();
            if p.eat('}') {
                break;
            }
            if !matchers.is_empty() {
                p.expect(',')?;
                p.skip_space();
            }
            let name = p.ident()?;
            p.skip_space();
            let op = if p.eat_str("=~") {
                Op::Re
            } else if p.eat_str("!~") {
                Op::Nre
            } else if p.eat_str("!=") {
                Op::Ne
            } else if p.eat_str("=") {
                Op::Eq
            } else {
                return Err(p.error("expected a label matcher operator"));
            };
            p.skip_space();
            let value = p.string()?;
            let regex = match op {
                Op::Re | Op::Nre => Some(anchored(&value)?),
                _ => None,
            };
            matchers.push((name, op, value, regex));
        }
        if matchers.is_empty() {
            return Err("parse error : queries require at least one matcher".into());
        }
        // Loki refuses a selector that every stream matches.
        if matchers
            .iter()
            .all(|(_, op, value, regex)| matches_empty(*op, value, regex.as_ref()))
        {
            return Err("parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into());
        }
        let mut filters = Vec::new();
        loop {
            p.skip_space();
            if p.done() {
                break;
            }
            let filter = if p.eat_str("|=") {
                Filter::Contains
            } else if p.eat_str("|~") {
                Filter::Matches
            } else if p.eat_str("!=") {
                Filter::NotContains
            } else if p.eat_str("!~") {
                Filter::NotMatches
            } else if p.eat_str("|") {
                return Err(p.error(
                    "parsers and formatters (| json, | logfmt, | line_format, …) are not served by aiops eval's Loki",
                ));
            } else {
                return Err(p.error("expected a line filter"));
            };
            p.skip_space();
            let value = p.string()?;
            let regex = match filter {
                Filter::Matches | Filter::NotMatches => {
                    Some(Regex::new(&value).map_err(|e| format!("parse error : {e}"))?)
                }
                _ => None,
            };
            filters.push((filter, value, regex));
        }
        Ok(Self { matchers, filters })
    }

    /// Whether the stream `labels` is selected.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|(name, op, value, regex)| {
            let v = labels.get(name).map_or("", String::as_str);
            match (op, regex) {
                (Op::Eq, _) => v == value,
                (Op::Ne, _) => v != value,
                (Op::Re, Some(re)) => re.is_match(v),
                (Op::Nre, Some(re)) => !re.is_match(v),
                _ => false,
            }
        })
    }

    /// Whether the entry is selected and passes every line filter.
    pub fn matches(&self, entry: &LogEntry) -> bool {
        self.selects(&entry.labels)
            && self.filters.iter().all(|(filter, value, regex)| {
                let line = entry.line.as_str();
                match (filter, regex) {
                    (Filter::Contains, _) => line.contains(value.as_str()),
                    (Filter::NotContains, _) => !line.contains(value.as_str()),
                    (Filter::Matches, Some(re)) => re.is_match(line),
                    (Filter::NotMatches, Some(re)) => !re.is_match(line),
                    _ => false,
                }
            })
    }
}

/// A label matcher's regex, anchored at both ends as Prometheus and Loki anchor them.
fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("parse error : {e}"))
}

fn matches_empty(op: Op, value: &str, regex: Option<&Regex>) -> bool {
    match (op, regex) {
        (Op::Eq, _) => value.is_empty(),
        (Op::Ne, _) => !value.is_empty(),
        (Op::Re, Some(re)) => re.is_match(""),
        (Op::Nre, Some(re)) => !re.is_match(""),
        _ => true,
    }
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.at..]
    }
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }
    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.s.len() - trimmed.len();
    }
    fn eat(&mut self, c: char) -> bool {
        self.eat_str(c.encode_utf8(&mut [0; 4]))
    }
    fn eat_str(&mut self, token: &str) -> bool {
        let found = self.rest().starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }
    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.eat(c) {
            true => Ok(()),
            false => Err(self.error(&format!("expected {c:?}"))),
        }
    }
    fn error(&self, what: &str) -> String {
        format!(
            "parse error at line 1, col {}: syntax error: {what}",
            self.at + 1
        )
    }
    fn ident(&mut self) -> Result<String, String> {
        let len = self
            .rest()
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_alphanumeric() || *c == '_') || (*i == 0 && c.is_ascii_digit())
            })
            .map_or(self.rest().len(), |(i, _)| i);
        if len == 0 {
            return Err(self.error("expected a label name"));
        }
        let name = self.rest()[..len].to_owned();
        self.at += len;
        Ok(name)
    }
    /// A double-quoted string with Go's escapes, or a backquoted raw string.
    fn string(&mut self) -> Result<String, String> {
        if self.eat('`') {
            let end = self
                .rest()
                .find('`')
                .ok_or_else(|| self.error("unterminated raw string"))?;
            let value = self.rest()[..end].to_owned();
            self.at += end + 1;
            return Ok(value);
        }
        self.expect('"')?;
        let mut value = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, 'u')) => {
                        let hex: String = (0..4)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| self.error("invalid \\u escape"))?;
                        value.push(code);
                    }
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(labels: &[(&str, &str)], line: &str) -> LogEntry {
        LogEntry {
            ts_ns: 0,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            line: line.into(),
        }
    }

    #[test]
    fn selectors_and_line_filters_follow_loki() {
        let q = Query::parse(
            r#"{host="app-07", job=~"varlogs|syslog"} |= "error" != "debug" |~ "(?i)refused""#,
        )
        .expect("parses");
        assert!(q.matches(&entry(
            &[("host", "app-07"), ("job", "varlogs")],
            "error: connection Refused"
        )));
        assert!(!q.matches(&entry(
            &[("host", "app-07"), ("job", "varlogs")],
            "error debug refused"
        )));
        assert!(!q.matches(&entry(
            &[("host", "app-070"), ("job", "varlogs")],
            "error refused"
        )));
        // Regex matchers are anchored; a missing label is the empty string.
        assert!(
            !q.selects(
                &[
                    ("host".to_owned(), "app-07".to_owned()),
                    ("job".to_owned(), "varlogs2".to_owned())
                ]
                .into()
            )
        );
        let q = Query::parse(r#"{app!="", namespace="shop"} !~ "health""#).expect("parses");
        assert!(q.matches(&entry(
            &[("app", "cart"), ("namespace", "shop")],
            "GET /cart 500"
        )));
        assert!(!q.matches(&entry(&[("namespace", "shop")], "GET /cart 500")));
        let q = Query::parse(r#"{app="a\"b\\c"}"#).expect("escapes");
        assert!(q.selects(&[("app".to_owned(), "a\"b\\c".to_owned())].into()));
    }

    #[test]
    fn what_loki_refuses_is_refused_with_a_reason() {
        for bad in [
            r#"{app=~".*"}"#,
            r#"{}"#,
            r#"app="x""#,
            r#"{app="x"} | json"#,
            r#"rate({app="x"}[5m])"#,
            r#"{app="x""#,
            r#"{app="x"} |= "unterminated"#,
        ] {
            let err = Query::parse(bad).expect_err(bad);
            assert!(err.starts_with("parse error"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn the_http_api_answers_in_lokis_format() {
        let logs = vec![
            LogEntry {
                ts_ns: 1_000,
                ..entry(&[("host", "a"), ("job", "varlogs")], "old error")
            },
            LogEntry {
                ts_ns: 2_000,
                ..entry(&[("host", "a"), ("job", "varlogs")], "new error")
            },
            LogEntry {
                ts_ns: 3_000,
                ..entry(&[("host", "b"), ("job", "varlogs")], "error on b")
            },
            LogEntry {
                ts_ns: 4_000,
                ..entry(&[("host", "b"), ("job", "varlogs")], "fine")
            },
        ];
        let server = DataServer::start(logs, "# TYPE up gauge\n".into()).expect("serves");
        let get = |path: &str| {
            let url = format!("{}{path}", server.url);
            async move {
                let r = reqwest::get(url).await.expect("answers");
                (r.status().as_u16(), r.text().await.expect("body"))
            }
        };
        let (status, body) = get("/loki/api/v1/query_range?query=%7Bjob%3D%22varlogs%22%7D%20%7C%3D%20%22error%22&start=0&end=10000&limit=2").await;
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(answer["status"], "success");
        assert_eq!(answer["data"]["resultType"], "streams");
        // Backward by default: the two newest matching lines, each stream with its own values.
        let mut lines: Vec<(String, String)> = answer["data"]["result"]
            .as_array()
            .expect("streams")
            .iter()
            .flat_map(|s| {
                let host = s["stream"]["host"].as_str().unwrap_or("").to_owned();
                s["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |v| {
                        (
                            host.clone(),
                            format!(
                                "{}={}",
                                v[0].as_str().unwrap_or(""),
                                v[1].as_str().unwrap_or("")
                            ),
                        )
                    })
            })
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                ("a".into(), "2000=new error".into()),
                ("b".into(), "3000=error on b".into())
            ]
        );
        let (status, body) =
            get("/loki/api/v1/query_range?query=%7Bjob%3D~%22.*%22%7D&start=0&end=10000").await;
        assert_eq!(status, 400);
        assert!(body.starts_with("parse error"), "{body}");
        let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("json");
        let (_, body) = get("/loki/api/v1/labels?start=0&end=10000").await;
        assert_eq!(
            json(&body),
            json!({"status": "success", "data": ["host", "job"]})
        );
        let (_, body) = get("/loki/api/v1/label/host/values?start=0.0000025&end=10000").await;
        assert_eq!(json(&body), json!({"status": "success", "data": ["b"]}));
        let (_, body) = get("/metrics").await;
        assert_eq!(body, "# TYPE up gauge\n");
    }
}
