//! The Slack sink against fakes of Slack's incoming webhook and Web API (`chat.postMessage`) that
//! answer in Slack's wire format and reject what Slack rejects (too many blocks, texts over the
//! limits), and of Mattermost's Slack-compatible incoming webhook. The worker-level cases (a 500
//! storm, a crash between the delivery and the job's completion) run the real worker and store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aiops_model::alertmanager::parse_webhook;
use aiops_model::{
    Analysis, Context, ContextSource, EvidenceRef, JobId, JobSource, JobState, ManualClock,
    Metrics, NewJob, Notification, Notifier, StageError, Store, StoreError, Thread, Threads,
    WebhookPayload,
};
use aiops_notify::{Filter, Filtered, Links, Route, SlackNotifier};
use aiops_store::{SqliteStore, StoreConfig};
use aiops_worker::{Outcome, Stages, Worker, WorkerConfig};
use async_trait::async_trait;
use regex::Regex;
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const HOOK_PATH: &str = "/services/T0001/B0001/s3cretHookToken";
const BOT_TOKEN: &str = "xoxb-1111-s3cret-bot-token";
const FIRING: [&str; 5] = [
    "high-error-rate-k8s.json",
    "high-load-warning.json",
    "target-down-group-firing.json",
    "target-down-group-one-resolved.json",
    "target-down-single.json",
];

fn fixture(name: &str) -> WebhookPayload {
    let path = format!(
        "{}/../../tests/fixtures/alertmanager/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    parse_webhook(&std::fs::read(&path).expect("fixture")).expect("the fixture parses")
}

fn analysis(payload: &WebhookPayload) -> Analysis {
    aiops_rca::analyze_by_rules(payload, &aiops_context::alert_evidence(payload))
}

fn links() -> Links {
    Links {
        aiops_url: "https://aiops.example.com".into(),
        grafana_url: "https://grafana.example.com".into(),
        grafana_datasource: "prom-uid".into(),
        // The buttons are part of every message these tests make Slack's fake validate.
        interactive: true,
        signer: None,
    }
}

/// Every text a message's blocks hold (top level and attachments), in order.
fn block_texts(blocks: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for b in blocks {
        if let Some(t) = b["text"]["text"].as_str() {
            out.push(t.to_owned());
        }
        for key in ["fields", "elements"] {
            for item in b[key].as_array().into_iter().flatten() {
                if let Some(t) = item["text"].as_str() {
                    out.push(t.to_owned());
                }
            }
        }
    }
    out
}

fn all_blocks(body: &Value) -> Vec<Value> {
    let mut blocks: Vec<Value> = body["blocks"].as_array().cloned().unwrap_or_default();
    for a in body["attachments"].as_array().into_iter().flatten() {
        blocks.extend(a["blocks"].as_array().cloned().unwrap_or_default());
    }
    blocks
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// What Slack rejects (https://api.slack.com/reference/block-kit/blocks): the reason, as Slack's
/// `invalid_blocks`/`no_text` would say it, or nothing.
fn slack_violations(body: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let text = body["text"].as_str().unwrap_or("");
    let blocks = all_blocks(body);
    if text.is_empty() && blocks.is_empty() {
        bad.push("no_text".to_owned());
    }
    if chars(text) > 40_000 {
        bad.push(format!("text of {} characters", chars(text)));
    }
    if blocks.len() > 50 {
        bad.push(format!("{} blocks", blocks.len()));
    }
    for b in &blocks {
        match b["type"].as_str() {
            Some("header") => {
                let t = b["text"]["text"].as_str().unwrap_or("");
                if b["text"]["type"] != "plain_text" || t.is_empty() || chars(t) > 150 {
                    bad.push(format!("header {b}"));
                }
            }
            Some("section") => {
                let fields = b["fields"].as_array();
                match (b["text"]["text"].as_str(), fields) {
                    (Some(t), _) if t.is_empty() || chars(t) > 3000 => {
                        bad.push(format!("section text of {} characters", chars(t)))
                    }
                    (Some(_), _) => {}
                    (None, Some(f))
                        if f.len() > 10
                            || f.iter().any(|x| {
                                let t = x["text"].as_str().unwrap_or("");
                                t.is_empty() || chars(t) > 2000
                            }) =>
                    {
                        bad.push("section fields".to_owned())
                    }
                    (None, Some(_)) => {}
                    (None, None) => bad.push("a section without text or fields".to_owned()),
                }
            }
            Some("context") => {
                let elements = b["elements"].as_array().map_or(0, Vec::len);
                if elements == 0 || elements > 10 {
                    bad.push("context elements".to_owned());
                }
            }
            Some("divider") => {}
            // Slack's limits: at most 25 elements; a button's text plain_text of at most 75
            // characters, its action_id at most 255 and unique in the message, its value at
            // most 2,000.
            Some("actions") => {
                let elements = b["elements"].as_array().cloned().unwrap_or_default();
                let mut ids = std::collections::HashSet::new();
                if elements.is_empty() || elements.len() > 25 {
                    bad.push("actions elements".to_owned());
                }
                for e in &elements {
                    let text = e["text"]["text"].as_str().unwrap_or("");
                    let id = e["action_id"].as_str().unwrap_or("");
                    let value = e["value"].as_str().unwrap_or("");
                    if e["type"] != "button"
                        || e["text"]["type"] != "plain_text"
                        || text.is_empty()
                        || chars(text) > 75
                        || id.is_empty()
                        || chars(id) > 255
                        || !ids.insert(id.to_owned())
                        || chars(value) > 2000
                    {
                        bad.push(format!("button {e}"));
                    }
                }
            }
            // An image: an http(s) `image_url` of at most 3,000 characters and an `alt_text` of
            // 1 to 2,000 (Slack then downloads the image; a URL it cannot fetch is refused too,
            // which the daemon-level graph test checks by fetching it as Slack would).
            Some("image") => {
                let url = b["image_url"].as_str().unwrap_or("");
                let alt = b["alt_text"].as_str().unwrap_or("");
                if !(url.starts_with("https://") || url.starts_with("http://"))
                    || chars(url) > 3000
                    || alt.is_empty()
                    || chars(alt) > 2000
                {
                    bad.push(format!("image {b}"));
                }
            }
            other => bad.push(format!("unknown block type {other:?}")),
        }
    }
    let total: usize = block_texts(&blocks).iter().map(|t| chars(t)).sum();
    if total > 12_000 {
        bad.push(format!("{total} characters of block text"));
    }
    bad
}

/// A fake of Slack: the incoming webhook answers `ok` or a 400 with Slack's reason; the Web API's
/// `chat.postMessage` answers `{"ok":true,"channel","ts","message"}` or `{"ok":false,"error"}`.
/// The external upload as Slack runs it: `files.getUploadURLExternal` (form-encoded `filename` and
/// `length`) answers an `upload_url` on this server and a `file_id`; the upload URL takes exactly
/// `length` bytes; `files.completeUploadExternal` shares uploaded files only, in a channel (its
/// id) and a thread this fake posted.
#[derive(Debug, Clone, Default)]
struct FakeSlack {
    next_ts: Arc<AtomicU64>,
    files: Arc<std::sync::Mutex<std::collections::HashMap<String, Asked>>>,
    /// What `files.completeUploadExternal` accepted: (channel_id, thread_ts, file id).
    shared: Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

/// A file `files.getUploadURLExternal` handed out: the length asked for, the bytes uploaded.
type Asked = (usize, Option<Vec<u8>>);

impl FakeSlack {
    fn form(request: &Request) -> std::collections::HashMap<String, String> {
        serde_urlencoded::from_bytes(&request.body).unwrap_or_default()
    }

    fn posted(&self, ts: &str) -> bool {
        ts.strip_prefix("1700000000.")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 100 && n < 100 + self.next_ts.load(Ordering::SeqCst))
    }

    fn files(&self, request: &Request) -> Option<ResponseTemplate> {
        let path = request.url.path();
        let error =
            |e: &str| ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": e}));
        let mut files = self.files.lock().expect("lock");
        if let Some(id) = path.strip_prefix("/upload/v1/") {
            return Some(match files.get_mut(id) {
                Some((length, bytes @ None)) if *length == request.body.len() => {
                    *bytes = Some(request.body.clone());
                    ResponseTemplate::new(200).set_body_string(format!("OK - {length}"))
                }
                _ => ResponseTemplate::new(400).set_body_string("invalid upload"),
            });
        }
        let authed = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {BOT_TOKEN}"));
        if path.ends_with("/files.getUploadURLExternal") {
            let form = Self::form(request);
            let length = form.get("length").and_then(|l| l.parse::<usize>().ok());
            return Some(match (authed, form.get("filename"), length) {
                (false, ..) => error("invalid_auth"),
                (true, Some(name), Some(length)) if !name.is_empty() && length > 0 => {
                    let id = format!("F{:04}", files.len() + 1);
                    files.insert(id.clone(), (length, None));
                    let host = request
                        .headers
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default();
                    let url = format!("http://{host}/upload/v1/{id}");
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"ok": true, "upload_url": url, "file_id": id}))
                }
                _ => error("invalid_arguments"),
            });
        }
        if path.ends_with("/files.completeUploadExternal") {
            let form = Self::form(request);
            let listed: Vec<Value> = form
                .get("files")
                .and_then(|f| serde_json::from_str(f).ok())
                .unwrap_or_default();
            let uploaded = !listed.is_empty()
                && listed.iter().all(|f| {
                    f["id"]
                        .as_str()
                        .and_then(|id| files.get(id))
                        .is_some_and(|(_, b)| b.is_some())
                });
            let channel = form.get("channel_id").is_some_and(|c| c.starts_with('C'));
            let thread = form.get("thread_ts").is_none_or(|ts| self.posted(ts));
            return Some(match (authed, uploaded, channel && thread) {
                (false, ..) => error("invalid_auth"),
                (true, false, _) => error("file_not_found"),
                (true, true, false) => error("invalid_arguments"),
                (true, true, true) => {
                    let mut shared = self.shared.lock().expect("lock");
                    for f in &listed {
                        shared.push((
                            form.get("channel_id").cloned().unwrap_or_default(),
                            form.get("thread_ts").cloned().unwrap_or_default(),
                            f["id"].as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                    ResponseTemplate::new(200).set_body_json(json!({"ok": true, "files": listed}))
                }
            });
        }
        None
    }
}

impl Respond for FakeSlack {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(answer) = self.files(request) {
            return answer;
        }
        let update = request.url.path().ends_with("/chat.update");
        let api = request.url.path().ends_with("/chat.postMessage") || update;
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return match api {
                true => ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": false, "error": "invalid_json"})),
                false => ResponseTemplate::new(400).set_body_string("invalid_payload"),
            };
        };
        let violations = slack_violations(&body);
        if !api {
            return match violations.is_empty() {
                true => ResponseTemplate::new(200).set_body_string("ok"),
                false => ResponseTemplate::new(400).set_body_string("invalid_blocks"),
            };
        }
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let error = match () {
            _ if auth.is_none() => Some("not_authed"),
            _ if auth != Some(&format!("Bearer {BOT_TOKEN}")) => Some("invalid_auth"),
            _ if !violations.is_empty() => Some("invalid_blocks"),
            _ if body["channel"].as_str().is_none_or(str::is_empty) => Some("channel_not_found"),
            // chat.update takes the channel's id and the ts of a message this fake posted.
            _ if update
                && (!body["channel"].as_str().is_some_and(|c| c.starts_with('C'))
                    || !body["ts"].as_str().is_some_and(|ts| self.posted(ts))) =>
            {
                Some("message_not_found")
            }
            _ => None,
        };
        if let Some(error) = error {
            return ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": error}));
        }
        if update {
            return ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "channel": body["channel"], "ts": body["ts"], "text": body["text"],
            }));
        }
        // Slack answers with the channel's id, whatever name was posted to.
        let channel = body["channel"].as_str().unwrap_or("");
        let id = match channel.strip_prefix('#') {
            Some(name) => format!("C{}", name.to_uppercase().replace('-', "")),
            None => channel.to_owned(),
        };
        let n = self.next_ts.fetch_add(1, Ordering::SeqCst);
        let ts = format!("1700000000.{:06}", 100 + n);
        ResponseTemplate::new(200).set_body_json(json!({
            "ok": true,
            "channel": id,
            "ts": ts,
            "message": {"type": "message", "text": body["text"], "ts": ts},
        }))
    }
}

async fn fake_slack() -> MockServer {
    fake_slack_keeping(FakeSlack::default()).await
}

/// The fake, with `fake` kept by the caller to read what it accepted.
async fn fake_slack_keeping(fake: FakeSlack) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(fake)
        .mount(&server)
        .await;
    server
}

fn webhook_sink(server: &MockServer, retries: u32) -> SlackNotifier {
    let url = SecretString::from(format!("{}{HOOK_PATH}", server.uri()));
    SlackNotifier::webhook(url, links(), Duration::from_secs(5), retries).expect("a valid sink")
}

fn bot_sink(server: &MockServer, threads: Arc<dyn Threads>, routes: Vec<Route>) -> SlackNotifier {
    bot_sink_retrying(server, threads, routes, 1)
}

fn bot_sink_retrying(
    server: &MockServer,
    threads: Arc<dyn Threads>,
    routes: Vec<Route>,
    retries: u32,
) -> SlackNotifier {
    SlackNotifier::bot(
        SecretString::from(BOT_TOKEN),
        &format!("{}/api", server.uri()),
        "#alerts",
        routes,
        threads,
        links(),
        Duration::from_secs(5),
        retries,
    )
    .expect("a valid sink")
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect()
}

/// `<url|label>` links in mrkdwn, by label.
fn link<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let re = Regex::new(r"<([^|>]+)\|([^>]+)>").expect("regex");
    re.captures_iter(text)
        .find(|c| c.get(2).is_some_and(|l| l.as_str() == label))
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(&url.replace("&amp;", "&")).expect("a URL");
    let query = url
        .fragment()
        .and_then(|f| f.split_once('?').map(|(_, q)| q.to_owned()))
        .or_else(|| url.query().map(str::to_owned))?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(&query)
        .expect("form-encoded")
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Delivers an analysis; the body Slack accepted.
async fn post(
    sink: &SlackNotifier,
    server: &MockServer,
    job_id: JobId,
    payload: &WebhookPayload,
    analysis: &Analysis,
) -> Value {
    let notification = Notification {
        job_id,
        payload,
        analysis: Some(analysis),
        firings: 1,
    };
    if let Err(e) = sink.deliver(notification).await {
        panic!("{}: Slack rejected the message: {e}", payload.alertname());
    }
    let body = bodies(server).await.pop().expect("a request");
    assert_eq!(slack_violations(&body), Vec::<String>::new(), "{body}");
    body
}

#[tokio::test]
async fn every_fixture_makes_a_block_kit_message_slack_accepts_with_the_right_links() {
    let server = fake_slack().await;
    let sink = webhook_sink(&server, 0);
    for name in FIRING {
        let payload = fixture(name);
        let mut analysis = analysis(&payload);
        // An investigation's calls: counted in the context line.
        if name.contains("error-rate") {
            let call = |error: Option<&str>| aiops_model::ToolCallRecord {
                tool: "promql_range".into(),
                error: error.map(str::to_owned),
                ..aiops_model::ToolCallRecord::default()
            };
            analysis.analyzer.tool_calls =
                vec![call(None), call(Some("refused: a repeat")), call(None)];
        }
        let job_id = JobId::new();
        let body = post(&sink, &server, job_id, &payload, &analysis).await;

        // The header: status emoji, alert name, severity, how many alerts.
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header", "{name}");
        let header = blocks[0]["text"]["text"].as_str().expect("header text");
        let severity = payload.common_labels["severity"].as_str();
        let count = payload.alerts.len();
        assert!(header.contains(payload.alertname()), "{name}: {header}");
        assert!(header.contains(severity), "{name}: {header}");
        assert!(
            header.contains(&format!("{count} alert")),
            "{name}: {header}"
        );
        assert!(header.starts_with(['🔥', '⚠']), "{name}: {header}");

        // The identifying labels as fields, one per label the group carries.
        let fields = blocks[1]["fields"].as_array().expect("a fields section");
        let expected: Vec<&str> = ["cluster", "namespace", "service", "instance", "job"]
            .into_iter()
            .filter(|l| payload.alerts.iter().any(|a| a.labels.contains_key(*l)))
            .collect();
        assert_eq!(fields.len(), expected.len(), "{name}: {fields:?}");
        for (field, label) in fields.iter().zip(&expected) {
            let text = field["text"].as_str().expect("field text");
            assert!(text.starts_with(&format!("*{label}*\n")), "{name}: {text}");
            for alert in &payload.alerts {
                assert!(text.contains(&alert.labels[*label]), "{name}: {text}");
            }
        }

        // The summary, then the probable cause with its confidence.
        let texts = block_texts(blocks);
        assert!(
            texts[1..]
                .iter()
                .any(|t| unescape(t).contains(&analysis.summary)),
            "{name}: {texts:?}"
        );
        let cause = texts
            .iter()
            .find(|t| t.starts_with("*Probable root cause*"))
            .expect("a cause section");
        let percent = format!("{:.0}% confident", analysis.confidence * 100.0);
        assert!(cause.contains(&percent), "{name}: {cause}");
        assert!(unescape(cause).contains(&analysis.root_cause), "{name}");

        // The colour bar by severity, then evidence, remediation, links and the context line.
        let attachment = &body["attachments"][0];
        let color = match severity {
            "critical" => "#E01E5A",
            _ => "#ECB22E",
        };
        assert_eq!(attachment["color"], color, "{name}");
        let detail = block_texts(attachment["blocks"].as_array().expect("attachment blocks"));
        let with_query: Vec<&EvidenceRef> = analysis
            .evidence
            .iter()
            .filter(|e| e.query.is_some())
            .collect();
        assert!(
            !with_query.is_empty(),
            "{name}: the rule expression is evidence"
        );
        let evidence = detail
            .iter()
            .find(|t| t.starts_with("*Evidence*"))
            .expect("an evidence section");
        let graph = link(evidence, "graph").expect("a graph link");
        let generator = reqwest::Url::parse(&payload.alerts[0].generator_url).expect("URL");
        let graph_url = reqwest::Url::parse(&graph.replace("&amp;", "&")).expect("URL");
        assert_eq!(
            (graph_url.host_str(), graph_url.path()),
            (generator.host_str(), generator.path()),
            "{name}"
        );
        let first_query = with_query[0].query.as_deref().expect("query");
        assert_eq!(query_param(graph, "g0.expr").as_deref(), Some(first_query));
        assert!(
            unescape(evidence).contains(first_query),
            "{name}: {evidence}"
        );

        let remediation = detail
            .iter()
            .find(|t| t.starts_with("*Remediation*"))
            .expect("a remediation section");
        for (i, step) in analysis.remediation.iter().enumerate() {
            assert!(
                unescape(remediation).contains(&format!("{}. {step}", i + 1)),
                "{name}: step {i} in {remediation}"
            );
        }

        let links_line = detail
            .iter()
            .find(|t| t.contains("|Silence>"))
            .expect("a links line");
        let silence = link(links_line, "Silence").expect("silence");
        assert!(
            silence.starts_with(&format!("{}/#/silences/new?", payload.external_url)),
            "{silence}"
        );
        let filter = query_param(silence, "filter").expect("a filter");
        for (k, v) in &payload.group_labels {
            assert!(filter.contains(&format!("{k}=\"{v}\"")), "{name}: {filter}");
        }
        let explore = link(links_line, "Grafana Explore").expect("explore");
        assert!(explore.starts_with("https://grafana.example.com/explore?"));
        let left: Value =
            serde_json::from_str(&query_param(explore, "left").expect("left")).expect("JSON");
        assert_eq!(left["queries"][0]["expr"], first_query, "{name}");
        assert_eq!(left["queries"][0]["datasource"]["uid"], "prom-uid");
        let runbook = payload.alerts[0].annotations.get("runbook_url");
        assert_eq!(
            link(links_line, "Runbook"),
            runbook.map(String::as_str),
            "{name}"
        );
        assert_eq!(
            link(links_line, "Full analysis"),
            Some(format!("https://aiops.example.com/analyses/{job_id}").as_str())
        );
        let context = detail.last().expect("a context line");
        assert!(context.contains("analyzer *rules*"), "{name}: {context}");
        assert!(context.contains(" ms"), "{name}: {context}");
        assert_eq!(
            context.contains("3 tool calls (2 answered)"),
            !analysis.analyzer.tool_calls.is_empty(),
            "{name}: {context}"
        );

        // The top-level text is the notification (and Mattermost's message).
        let text = body["text"].as_str().expect("text");
        assert!(
            text.contains(payload.alertname()) && text.contains("|Silence>"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn an_analysis_far_too_long_still_makes_a_message_within_every_limit() {
    let server = fake_slack().await;
    let sink = webhook_sink(&server, 0);
    let mut payload = fixture("target-down-group-firing.json");
    for (i, alert) in payload.alerts.iter_mut().enumerate() {
        alert
            .labels
            .insert("instance".into(), format!("{i}-{}", "h".repeat(5000)));
    }
    payload
        .common_labels
        .insert("service".into(), "s".repeat(9000));
    let mut analysis = analysis(&payload);
    analysis.summary = "The database is <down> & ".repeat(800);
    analysis.root_cause = "x".repeat(20_000);
    analysis.remediation = (0..200)
        .map(|i| format!("step {i} {}", "y".repeat(500)))
        .collect();
    analysis.evidence = (0..60)
        .map(|i| EvidenceRef {
            id: format!("ev-{i}"),
            note: "n".repeat(3000),
            finding: Some("f".repeat(2000)),
            query: Some(format!(
                "rate(http_requests_total{{code=~\"5..\"}}[5m]) > {i}"
            )),
        })
        .collect();
    analysis.analyzer.fallback = true;
    analysis.analyzer.fallback_reason = Some("r".repeat(5000));
    let job_id = JobId::new();
    let body = post(&sink, &server, job_id, &payload, &analysis).await;
    let texts = block_texts(&all_blocks(&body));
    let see = format!("/analyses/{job_id}");
    let cut: Vec<&String> = texts.iter().filter(|t| t.contains('…')).collect();
    assert!(!cut.is_empty(), "long parts are shortened: {texts:?}");
    for t in &cut {
        assert!(
            t.contains(&see) || t.starts_with('*') && !t.contains('\n'),
            "a shortened part points to the full analysis: {t}"
        );
    }
    assert!(chars(body["text"].as_str().expect("text")) <= 3000);
    assert!(
        !texts.iter().any(|t| t.contains("<down>")),
        "mrkdwn control characters are escaped"
    );
}

fn temp_store_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

async fn open_store(dir: &tempfile::TempDir, clock: Arc<ManualClock>) -> Arc<SqliteStore> {
    Arc::new(
        SqliteStore::open(&dir.path().join("aiops.db"), &StoreConfig::default(), clock)
            .await
            .expect("the store opens"),
    )
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(OffsetDateTime::now_utc()))
}

async fn deliver(
    sink: &dyn Notifier,
    payload: &WebhookPayload,
) -> Result<Option<String>, StageError> {
    deliver_firing(sink, payload, 1).await
}

#[tokio::test]
async fn bot_mode_threads_repeats_and_the_resolution_under_the_first_message() {
    let server = fake_slack().await;
    let dir = temp_store_dir();
    let store = open_store(&dir, clock()).await;
    let routes = vec![Route {
        labels: [("cluster".to_owned(), "demo".to_owned())].into(),
        channel: "#demo-oncall".into(),
    }];
    let sink = bot_sink(&server, store.clone(), routes);
    let firing = fixture("target-down-group-firing.json");
    let partial = fixture("target-down-group-one-resolved.json");
    let resolved = fixture("target-down-group-resolved.json");
    assert_eq!(firing.group_key, resolved.group_key);

    let first = deliver(&sink, &firing).await.expect("posted");
    deliver(&sink, &firing).await.expect("the repeat");
    deliver(&sink, &partial)
        .await
        .expect("the partial resolution");
    deliver(&sink, &resolved).await.expect("the resolution");
    // Another group routes to the default channel, in a thread of its own.
    deliver(&sink, &fixture("target-down-single.json"))
        .await
        .expect("another group");
    // The group firing again after its resolution is a new incident.
    deliver(&sink, &firing).await.expect("a new incident");

    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 7);
    let ts = first.expect("the message's ts");
    assert_eq!(
        sent[0]["channel"], "#demo-oncall",
        "routed by the cluster label"
    );
    assert!(
        sent[0].get("thread_ts").is_none(),
        "the first message starts the thread"
    );
    for (i, body) in sent[1..4].iter().enumerate() {
        assert_eq!(
            body["thread_ts"],
            ts.as_str(),
            "notification {} replies in the thread",
            i + 2
        );
        assert_eq!(
            body["channel"], "CDEMOONCALL",
            "in the thread's channel (its id)"
        );
    }
    let resolution = block_texts(sent[3]["blocks"].as_array().expect("blocks"));
    assert!(resolution[0].contains("Resolved"), "{resolution:?}");
    assert!(
        resolution[1].contains("1 of 1 alert resolved after"),
        "{resolution:?}"
    );
    // The resolution also edits the incident's message in place: resolved, green, no buttons.
    let edited = &sent[4];
    assert_eq!(
        (edited["channel"].as_str(), edited["ts"].as_str()),
        (Some("CDEMOONCALL"), Some(ts.as_str())),
        "chat.update of the first message: {edited}"
    );
    let texts = block_texts(&all_blocks(edited));
    assert!(
        texts[0].starts_with("✅ TargetDown"),
        "the header turns: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("✅ Resolved after ")),
        "{texts:?}"
    );
    assert!(
        all_blocks(edited).iter().all(|b| b["type"] != "actions"),
        "no buttons on a resolved incident"
    );
    assert_eq!(edited["attachments"][0]["color"], "#2EB67D");
    assert!(
        block_texts(&all_blocks(&sent[0]))
            .iter()
            .all(|t| !t.starts_with("✅")),
        "the first post was the firing"
    );
    assert_eq!(
        sent[5]["channel"], "#alerts",
        "no route matches: the default channel"
    );
    assert!(sent[5].get("thread_ts").is_none());
    assert!(
        sent[6].get("thread_ts").is_none(),
        "a new incident after the resolution: {}",
        sent[6]
    );
    assert_eq!(sent[6]["channel"], "#demo-oncall");
    for body in &sent {
        assert!(slack_violations(body).is_empty(), "{body}");
    }
}

#[tokio::test]
async fn webhook_mode_posts_the_resolution_as_a_message_of_its_own() {
    let server = fake_slack().await;
    let sink = webhook_sink(&server, 0);
    let resolved = fixture("target-down-group-resolved.json");
    assert_eq!(deliver(&sink, &resolved).await.expect("posted"), None);
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 1);
    let body = &sent[0];
    assert!(body.get("thread_ts").is_none() && body.get("channel").is_none());
    let texts = block_texts(&all_blocks(body));
    assert_eq!(texts[0], "✅ Resolved: TargetDown");
    // The fixture's alert fired from 10:00:00 to 10:12:30.
    assert!(texts[1].contains("resolved after"), "{texts:?}");
    assert_eq!(body["attachments"][0]["color"], "#2EB67D");
    assert!(body["text"].as_str().expect("text").contains("Resolved"));
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_string("rate_limited"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(FakeSlack::default())
        .mount(&server)
        .await;
    let sink = webhook_sink(&server, 2);
    let started = Instant::now();
    deliver(&sink, &fixture("target-down-single.json"))
        .await
        .expect("delivered on the retry");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(bodies(&server).await.len(), 2);
}

/// Answers each request with the next response of a fixed sequence (the last one repeats), and keeps
/// when each request arrived.
#[derive(Clone)]
struct Sequence {
    responses: Vec<ResponseTemplate>,
    arrivals: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut arrivals = self.arrivals.lock().expect("lock");
        arrivals.push(Instant::now());
        let i = (arrivals.len() - 1).min(self.responses.len() - 1);
        self.responses[i].clone()
    }
}

async fn slack_answering(responses: Vec<ResponseTemplate>) -> (MockServer, Sequence) {
    let server = MockServer::start().await;
    let sequence = Sequence {
        responses,
        arrivals: Arc::default(),
    };
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(sequence.clone())
        .mount(&server)
        .await;
    (server, sequence)
}

fn ratelimited(retry_after: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("Retry-After", retry_after)
        .set_body_json(json!({"ok": false, "error": "ratelimited"}))
}

#[tokio::test]
async fn ok_false_ratelimited_waits_for_the_retry_after_slack_sends() {
    let posted = json!({"ok": true, "channel": "C1", "ts": "1700000000.000100"});
    let (server, sequence) = slack_answering(vec![
        ratelimited("2"),
        ResponseTemplate::new(200).set_body_json(posted),
    ])
    .await;
    let sink = bot_sink_retrying(&server, Arc::new(MemoryThreads::default()), Vec::new(), 1);
    let ts = deliver(&sink, &fixture("high-load-warning.json"))
        .await
        .expect("posted on the retry");
    assert_eq!(ts.as_deref(), Some("1700000000.000100"));
    let arrivals = sequence.arrivals.lock().expect("lock").clone();
    assert_eq!(arrivals.len(), 2);
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_secs(2),
        "the retry came {:?} after the ratelimited answer, before its Retry-After of 2 s",
        arrivals[1] - arrivals[0]
    );
}

#[tokio::test]
async fn one_retry_policy_bounds_the_posts_of_a_delivery() {
    // HTTP 429 and ok:false ratelimited, alternating: every post fails in one way or the other.
    let http_429 = ResponseTemplate::new(429).insert_header("Retry-After", "0");
    let mut responses = Vec::new();
    for _ in 0..10 {
        responses.push(http_429.clone());
        responses.push(ratelimited("0"));
    }
    let (server, sequence) = slack_answering(responses).await;
    let sink = bot_sink_retrying(&server, Arc::new(MemoryThreads::default()), Vec::new(), 2);
    let err = deliver(&sink, &fixture("high-load-warning.json"))
        .await
        .expect_err("Slack never took it");
    assert!(err.retriable, "{err}");
    assert_eq!(
        sequence.arrivals.lock().expect("lock").len(),
        3,
        "slack.max_retries = 2: one post and two retries, whatever way each failed"
    );
}

/// Incident threads in memory: the Slack sink needs this port only, not the job store.
#[derive(Debug, Default)]
struct MemoryThreads(std::sync::Mutex<std::collections::HashMap<(String, String), Thread>>);

#[async_trait]
impl Threads for MemoryThreads {
    async fn thread(&self, group: &str, sink: &str) -> Result<Option<Thread>, StoreError> {
        let threads = self.0.lock().expect("lock");
        Ok(threads.get(&(group.to_owned(), sink.to_owned())).cloned())
    }
    async fn save_thread(&self, group: &str, sink: &str, t: &Thread) -> Result<Thread, StoreError> {
        let mut threads = self.0.lock().expect("lock");
        let key = (group.to_owned(), sink.to_owned());
        Ok(threads.entry(key).or_insert_with(|| t.clone()).clone())
    }
    async fn close_thread(&self, group: &str, sink: &str) -> Result<(), StoreError> {
        let mut threads = self.0.lock().expect("lock");
        threads.remove(&(group.to_owned(), sink.to_owned()));
        Ok(())
    }
    async fn set_resolved(
        &self,
        group: &str,
        sink: &str,
        resolved: bool,
    ) -> Result<(), StoreError> {
        let mut threads = self.0.lock().expect("lock");
        if let Some(t) = threads.get_mut(&(group.to_owned(), sink.to_owned())) {
            t.resolved = resolved;
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_bot_sink_keeps_its_threads_through_the_threads_port_alone() {
    let server = fake_slack().await;
    let threads = Arc::new(MemoryThreads::default());
    let sink = bot_sink(&server, threads.clone(), Vec::new());
    let firing = fixture("target-down-group-firing.json");
    let ts = deliver(&sink, &firing).await.expect("posted").expect("ts");
    let group = firing.group_key.as_str();
    let open = threads.thread(group, "slack").await.expect("read");
    assert_eq!(
        open.map(|t| t.ts),
        Some(ts.clone()),
        "the first message is the thread"
    );
    deliver(&sink, &firing).await.expect("the repeat");
    deliver(&sink, &fixture("target-down-group-resolved.json"))
        .await
        .expect("the resolution");
    let sent = bodies(&server).await;
    assert_eq!(sent[1]["thread_ts"], ts.as_str());
    assert_eq!(sent[2]["thread_ts"], ts.as_str());
    assert_eq!(
        threads.thread(group, "slack").await.expect("read"),
        Some(Thread {
            channel: "CALERTS".into(),
            ts: ts.clone(),
            resolved: true,
        }),
        "resolved, and kept in case the group flaps"
    );
}

/// Delivers `payload` as the worker does for the `firings`-th firing of its incident.
async fn deliver_firing(
    sink: &dyn Notifier,
    payload: &WebhookPayload,
    firings: u32,
) -> Result<Option<String>, StageError> {
    let analysis = (payload.status == aiops_model::AlertStatus::Firing).then(|| analysis(payload));
    sink.deliver(Notification {
        job_id: JobId::new(),
        payload,
        analysis: analysis.as_ref(),
        firings,
    })
    .await
}

#[tokio::test]
async fn a_flapping_group_goes_on_in_its_message_and_thread() {
    let server = fake_slack().await;
    let dir = temp_store_dir();
    let store = open_store(&dir, clock()).await;
    let sink = bot_sink(&server, store.clone(), Vec::new());
    let firing = fixture("target-down-group-firing.json");
    let resolved = fixture("target-down-group-resolved.json");
    let group = firing.group_key.as_str();
    let ts = deliver_firing(&sink, &firing, 1)
        .await
        .expect("posted")
        .expect("ts");
    deliver_firing(&sink, &resolved, 1).await.expect("resolved");
    // Fired again within the window (the worker counts the second firing), then resolved again.
    deliver_firing(&sink, &firing, 2)
        .await
        .expect("fired again");
    deliver_firing(&sink, &resolved, 2)
        .await
        .expect("resolved again");
    let sent: Vec<(String, Value)> = server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| {
            let method = r.url.path().rsplit('/').next().unwrap_or("").to_owned();
            (method, serde_json::from_slice(&r.body).expect("JSON"))
        })
        .collect();
    let calls: Vec<&str> = sent.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        calls,
        [
            "chat.postMessage", // the incident's message
            "chat.postMessage", // the resolution, in its thread
            "chat.update",      // the message: resolved
            "chat.postMessage", // fired again, in the same thread
            "chat.update",      // the message follows: firing, flapping ×2
            "chat.postMessage", // resolved again, in the thread
            "chat.update",      // the message: resolved, flapping ×2
        ]
    );
    for (i, (method, body)) in sent.iter().enumerate() {
        match method.as_str() {
            "chat.update" => assert_eq!(body["ts"], ts.as_str(), "request {i} edits the message"),
            _ if i == 0 => assert!(body.get("thread_ts").is_none()),
            _ => assert_eq!(
                body["thread_ts"],
                ts.as_str(),
                "request {i} replies in the thread"
            ),
        }
    }
    let text = |i: usize| block_texts(&all_blocks(&sent[i].1)).join("\n");
    assert!(!text(2).contains("Flapping"), "{}", text(2));
    for i in [3, 4, 5, 6] {
        assert!(text(i).contains("Flapping ×2"), "request {i}: {}", text(i));
    }
    let header = |i: usize| {
        sent[i].1["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert!(!header(4).starts_with('✅'), "firing again: {}", header(4));
    assert!(header(6).starts_with('✅'), "resolved again: {}", header(6));
    assert!(
        all_blocks(&sent[4].1)
            .iter()
            .any(|b| b["type"] == "actions"),
        "firing again, the buttons are back"
    );

    // Firing again after the window (the worker counts a first firing): a new incident, a new
    // message, a new thread.
    let next = deliver_firing(&sink, &firing, 1)
        .await
        .expect("a new incident")
        .expect("ts");
    assert_ne!(next, ts);
    let last = bodies(&server).await.pop().expect("a request");
    assert!(last.get("thread_ts").is_none(), "{last}");
    assert_eq!(
        store
            .thread(group, "slack")
            .await
            .expect("read")
            .map(|t| t.ts),
        Some(next)
    );
}

#[tokio::test]
async fn web_api_errors_are_final_unless_slack_says_they_are_transient() {
    for (error, retriable) in [
        ("invalid_blocks", false),
        ("channel_not_found", false),
        ("ratelimited", true),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/chat.postMessage"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": error})),
            )
            .mount(&server)
            .await;
        let dir = temp_store_dir();
        let store = open_store(&dir, clock()).await;
        let err = deliver(
            &bot_sink(&server, store, Vec::new()),
            &fixture("high-load-warning.json"),
        )
        .await
        .expect_err("Slack said no");
        assert_eq!(err.retriable, retriable, "{error}: {err}");
        assert!(err.message.contains(error), "{err}");
        assert!(!err.message.contains("s3cret"), "{err}");
    }
}

#[tokio::test]
async fn secrets_never_appear_in_errors_or_debug_output() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(404).set_body_string("no_service"))
        .mount(&server)
        .await;
    let payload = fixture("target-down-single.json");
    let sink = webhook_sink(&server, 0);
    let err = deliver(&sink, &payload).await.expect_err("404");
    assert!(!err.retriable, "a 404 is final: {err}");
    assert!(
        err.message.contains("no_service"),
        "the reason is kept: {err}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let unreachable = SlackNotifier::webhook(
        SecretString::from(format!("http://{closed}{HOOK_PATH}")),
        links(),
        Duration::from_secs(2),
        0,
    )
    .expect("valid");
    let refused = deliver(&unreachable, &payload).await.expect_err("refused");
    assert!(refused.retriable, "{refused}");

    let dir = temp_store_dir();
    let store = open_store(&dir, clock()).await;
    // Held to the end: a MockServer dropped goes back to wiremock's pool, and another test's
    // server would then get this test's request.
    let slack = fake_slack().await;
    let bot = SlackNotifier::bot(
        SecretString::from("xoxb-wrong-s3cret"),
        &format!("{}/api", slack.uri()),
        "#alerts",
        Vec::new(),
        store,
        links(),
        Duration::from_secs(2),
        0,
    )
    .expect("valid");
    let denied = deliver(&bot, &payload).await.expect_err("invalid_auth");
    assert!(denied.message.contains("invalid_auth"), "{denied}");

    for shown in [
        err.to_string(),
        refused.to_string(),
        denied.to_string(),
        format!("{sink:?}"),
        format!("{unreachable:?}"),
        format!("{bot:?}"),
    ] {
        assert!(!shown.contains("s3cret"), "a secret leaked: {shown}");
    }
}

/// Mattermost's Slack-compatible incoming webhook: it reads `text` and `attachments` (ignoring Slack's
/// blocks), rejects a message over 16,383 characters, and answers `ok`.
#[derive(Debug, Clone)]
struct FakeMattermost;

impl Respond for FakeMattermost {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let invalid = |message: &str| {
            ResponseTemplate::new(400).set_body_json(json!({
                "id": "web.incoming_webhook.invalid.app_error",
                "message": message,
                "status_code": 400,
            }))
        };
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return invalid("Unable to parse the incoming data.");
        };
        let text = body["text"].as_str().unwrap_or("");
        let attachments = body["attachments"].as_array().map_or(0, Vec::len);
        if text.is_empty() && attachments == 0 {
            return invalid("No text specified.");
        }
        if chars(text) > 16_383 {
            return invalid("Message is too long.");
        }
        let bad_attachment = body["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| !a.is_object() || a["fallback"].as_str().is_none_or(str::is_empty));
        if bad_attachment {
            return invalid("Attachments need a fallback.");
        }
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/plain")
            .set_body_string("ok")
    }
}

#[tokio::test]
async fn mattermost_takes_the_same_payload_and_its_text_says_what_matters() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(FakeMattermost)
        .mount(&server)
        .await;
    let sink = webhook_sink(&server, 0);
    for name in FIRING
        .into_iter()
        .chain(["target-down-group-resolved.json"])
    {
        deliver(&sink, &fixture(name))
            .await
            .unwrap_or_else(|e| panic!("{name}: Mattermost rejected it: {e}"));
    }
    let sent = bodies(&server).await;
    let text = sent[0]["text"].as_str().expect("text");
    let payload = fixture(FIRING[0]);
    let analysis = analysis(&payload);
    assert!(unescape(text).contains(&analysis.summary), "{text}");
    assert!(text.contains("*Probable root cause*"), "{text}");
    assert!(text.contains("1. "), "the first remediation steps: {text}");
    assert!(link(text, "Silence").is_some(), "{text}");
}

#[tokio::test]
async fn the_filter_keeps_what_does_not_match_out_of_slack() {
    let server = fake_slack().await;
    let filter = Filter {
        severities: vec!["critical".into()],
        alertname: "Target.*|HighErrorRate".into(),
        labels: [("job".to_owned(), "api|node".to_owned())].into(),
    };
    let sink = Filtered::new(webhook_sink(&server, 0), &filter).expect("valid filter");
    let cases = [
        ("high-load-warning.json", false),   // severity warning
        ("high-error-rate-k8s.json", false), // no job label
        ("target-down-single.json", true),   // critical, TargetDown, job=api
        ("target-down-group-firing.json", true),
    ];
    for (name, notified) in cases {
        let detail = deliver(&sink, &fixture(name)).await.expect("no error");
        assert_eq!(detail.as_deref() == Some("filtered"), !notified, "{name}");
    }
    let sent = bodies(&server).await;
    assert_eq!(
        sent.len(),
        2,
        "{:#?}",
        sent.iter().map(|b| &b["text"]).collect::<Vec<_>>()
    );
    let bad = Filter {
        alertname: "Node(".into(),
        ..Filter::default()
    };
    let err = bad.validate().expect_err("an invalid regex");
    assert!(err.contains("notify.filter.alertname"), "{err}");
}

// The worker with the real store and the Slack sink.

#[derive(Debug)]
struct AlertsOnly;

#[async_trait]
impl ContextSource for AlertsOnly {
    async fn gather(&self, payload: &WebhookPayload) -> Result<Context, StageError> {
        Ok(aiops_context::alert_evidence(payload))
    }
}

/// A sink that hangs (the process dies during its delivery) or answers at once.
#[derive(Debug)]
struct Other {
    hang: bool,
}

#[async_trait]
impl Notifier for Other {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn deliver(&self, _: Notification<'_>) -> Result<Option<String>, StageError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        Ok(None)
    }
}

fn worker(
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    sinks: Vec<Arc<dyn Notifier>>,
) -> Worker {
    let stages = Stages {
        context: Arc::new(AlertsOnly),
        analyzer: Arc::new(aiops_rca::RulesAnalyzer::default()),
        notifiers: sinks,
    };
    let config = WorkerConfig {
        max_attempts: 3,
        lease_secs: 30,
        ..WorkerConfig::default()
    };
    Worker::new(store, stages, Arc::new(Metrics::new()), clock, config)
}

async fn enqueue(store: &SqliteStore, name: &str) -> JobId {
    let path = format!(
        "{}/../../tests/fixtures/alertmanager/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read_to_string(path).expect("fixture");
    let parsed = parse_webhook(raw.as_bytes()).expect("parses");
    let job = NewJob::for_payload(&parsed, Some(raw), JobSource::Webhook);
    store.enqueue(vec![job]).await.expect("enqueue")[0].job_id()
}

#[tokio::test]
async fn a_500_storm_ends_in_a_dead_job_with_its_reason_recorded() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal_error"))
        .mount(&server)
        .await;
    let dir = temp_store_dir();
    let clock = clock();
    let store = open_store(&dir, clock.clone()).await;
    let slack: Arc<dyn Notifier> = Arc::new(webhook_sink(&server, 1));
    let worker = worker(
        store.clone(),
        clock.clone(),
        vec![Arc::new(Other { hang: false }), slack],
    );
    let id = enqueue(&store, "target-down-single.json").await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(worker.process_one().await.expect("store").expect("due").1);
        clock.advance(Duration::from_secs(3600));
    }
    assert!(
        matches!(outcomes[0], Outcome::Retrying { .. }),
        "{outcomes:?}"
    );
    assert!(matches!(outcomes[2], Outcome::Dead { .. }), "{outcomes:?}");
    assert_eq!(bodies(&server).await.len(), 6, "3 attempts of 2 requests");
    let record = store.get(id).await.expect("get").expect("record");
    assert_eq!(record.state, JobState::Dead);
    let error = record.last_error.expect("the reason");
    assert!(
        error.contains("slack") && error.contains("500") && error.contains("internal_error"),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");
    let sinks: Vec<&str> = record.deliveries.iter().map(|d| d.sink.as_str()).collect();
    assert_eq!(
        sinks,
        ["webhook"],
        "the healthy sink got it once; Slack never did"
    );
}

#[tokio::test]
async fn a_crash_after_slack_got_the_message_does_not_post_it_twice() {
    let server = fake_slack().await;
    let dir = temp_store_dir();
    let clock = clock();
    let store = open_store(&dir, clock.clone()).await;
    let id = enqueue(&store, "target-down-group-firing.json").await;

    // The first process posts to Slack, then dies while the next sink is still delivering.
    let slack: Arc<dyn Notifier> = Arc::new(webhook_sink(&server, 0));
    let doomed = worker(
        store.clone(),
        clock.clone(),
        vec![slack.clone(), Arc::new(Other { hang: true })],
    );
    let crashed = tokio::time::timeout(Duration::from_secs(2), doomed.process_one()).await;
    assert!(crashed.is_err(), "the first attempt never finished");
    drop(doomed);
    assert_eq!(bodies(&server).await.len(), 1, "Slack got the message once");

    // After the lease, another process claims the job and finishes it.
    let next = worker(
        store.clone(),
        clock.clone(),
        vec![slack, Arc::new(Other { hang: false })],
    );
    assert!(
        next.process_one().await.expect("store").is_none(),
        "still leased"
    );
    clock.advance(Duration::from_secs(31));
    let (job, outcome) = next.process_one().await.expect("store").expect("reclaimed");
    assert_eq!((job, outcome), (id, Outcome::Done));
    assert_eq!(
        bodies(&server).await.len(),
        1,
        "Slack was not posted to again"
    );
    let record = store.get(id).await.expect("get").expect("record");
    assert_eq!(record.attempts, 2);
    let mut sinks: Vec<&str> = record.deliveries.iter().map(|d| d.sink.as_str()).collect();
    sinks.sort_unstable();
    assert_eq!(sinks, ["slack", "webhook"]);
}

#[test]
fn with_interactivity_an_analysis_carries_the_buttons_with_its_job_id() {
    let payload = fixture("target-down-group-firing.json");
    let analysis = analysis(&payload);
    let job_id = JobId::new();
    let message = |interactive: bool, analysis: Option<&Analysis>| {
        aiops_notify::slack::blocks::message(
            &Notification {
                job_id,
                payload: &payload,
                analysis,
                firings: 1,
            },
            &Links {
                interactive,
                ..links()
            },
        )
    };
    let actions = |body: &Value| -> Vec<Value> {
        all_blocks(body)
            .into_iter()
            .filter(|b| b["type"] == "actions")
            .collect()
    };
    let with = message(true, Some(&analysis));
    assert_eq!(slack_violations(&with), Vec::<String>::new());
    let found = actions(&with);
    assert_eq!(found.len(), 1, "{with}");
    let buttons: Vec<(&str, &str)> = found[0]["elements"]
        .as_array()
        .expect("elements")
        .iter()
        .map(|b| {
            (
                b["action_id"].as_str().unwrap_or(""),
                b["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let id = job_id.to_string();
    assert_eq!(
        buttons,
        [
            "silence_1h",
            "silence_4h",
            "feedback_right",
            "feedback_wrong",
            "reanalyze"
        ]
        .map(|a| (a, id.as_str()))
    );
    assert!(actions(&message(false, Some(&analysis))).is_empty());
    assert!(
        actions(&message(true, None)).is_empty(),
        "a resolution has nothing to act on"
    );
}

/// The rule-based answer after `delay`: a model's pace.
#[derive(Debug)]
struct Slow {
    delay: Duration,
}

#[async_trait]
impl aiops_model::Analyzer for Slow {
    async fn analyze(
        &self,
        payload: &WebhookPayload,
        context: &aiops_model::Context,
    ) -> Result<Analysis, StageError> {
        tokio::time::sleep(self.delay).await;
        Ok(aiops_rca::RulesAnalyzer::default().analyze_now(payload, context))
    }
    fn is_slow(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn bot_mode_posts_a_first_look_then_the_analysis_in_place() {
    let server = fake_slack().await;
    let dir = temp_store_dir();
    let clock = clock();
    let store = open_store(&dir, clock.clone()).await;
    let threads: Arc<dyn Threads> = store.clone();
    let slack: Arc<dyn Notifier> = Arc::new(bot_sink(&server, threads.clone(), vec![]));
    let stages = Stages {
        context: Arc::new(AlertsOnly),
        analyzer: Arc::new(Slow {
            delay: Duration::from_secs(3),
        }),
        notifiers: vec![slack],
    };
    let worker = Worker::new(
        store.clone(),
        stages,
        Arc::new(Metrics::new()),
        clock.clone(),
        WorkerConfig::default(),
    );
    let id = enqueue(&store, "target-down-group-firing.json").await;
    let started = Instant::now();
    let run = tokio::spawn(async move { worker.process_one().await });
    // The first look is in Slack while the analysis still runs (bounded wait).
    let mut first = Vec::new();
    while first.is_empty() && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        first = server.received_requests().await.unwrap_or_default();
    }
    assert_eq!(first.len(), 1, "one post before the analysis");
    assert!(!run.is_finished(), "the analysis is still running");
    assert!(first[0].url.path().ends_with("/chat.postMessage"));
    let card: Value = serde_json::from_slice(&first[0].body).expect("JSON");
    assert_eq!(slack_violations(&card), Vec::<String>::new());
    let texts = block_texts(card["blocks"].as_array().expect("blocks")).join("\n");
    assert!(texts.contains("Analysis running"), "{texts}");
    assert!(texts.contains("Top evidence"), "{texts}");

    let (job, outcome) = run.await.expect("joined").expect("store").expect("a job");
    assert_eq!((job, outcome), (id, Outcome::Done));
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2, "the post, then its update");
    assert!(requests[1].url.path().ends_with("/chat.update"));
    let update: Value = serde_json::from_slice(&requests[1].body).expect("JSON");
    assert_eq!(
        (update["channel"].as_str(), update["ts"].as_str()),
        (Some("CALERTS"), Some("1700000000.000100")),
        "the first look's message, by channel id and ts"
    );
    assert!(
        block_texts(&all_blocks(&update))
            .join("\n")
            .contains("Probable root cause"),
        "{update}"
    );
    let record = store.get(id).await.expect("get").expect("record");
    let mut sinks: Vec<(&str, Option<&str>)> = record
        .deliveries
        .iter()
        .map(|d| (d.sink.as_str(), d.detail.as_deref()))
        .collect();
    sinks.sort();
    assert_eq!(
        sinks,
        [
            ("slack", Some("1700000000.000100")),
            ("slack#first-look", Some("CALERTS 1700000000.000100"))
        ]
    );
    let group = &parse_webhook(
        std::fs::read_to_string(format!(
            "{}/../../tests/fixtures/alertmanager/target-down-group-firing.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
        .as_bytes(),
    )
    .expect("parses")
    .group_key;
    assert_eq!(
        threads.thread(group, "slack").await.expect("read"),
        Some(aiops_model::Thread {
            channel: "CALERTS".into(),
            ts: "1700000000.000100".into(),
            resolved: false,
        }),
        "the first look is the incident's message: later notifications reply to it"
    );

    // An incoming webhook cannot edit: with the same slow analyzer it posts once, the analysis.
    let hook = fake_slack().await;
    let stages = Stages {
        context: Arc::new(AlertsOnly),
        analyzer: Arc::new(Slow {
            delay: Duration::from_millis(10),
        }),
        notifiers: vec![Arc::new(webhook_sink(&hook, 0))],
    };
    let worker = Worker::new(
        store.clone(),
        stages,
        Arc::new(Metrics::new()),
        clock.clone(),
        WorkerConfig::default(),
    );
    enqueue(&store, "high-error-rate-k8s.json").await;
    worker.process_one().await.expect("store").expect("a job");
    let posted = bodies(&hook).await;
    assert_eq!(posted.len(), 1);
    assert!(
        block_texts(&all_blocks(&posted[0]))
            .join("\n")
            .contains("Probable root cause")
    );
}

/// A graph that is always the same picture (or none: nothing to draw).
#[derive(Debug)]
struct FixedGraph(Option<Vec<u8>>);

#[async_trait]
impl aiops_model::Grapher for FixedGraph {
    async fn graph(&self, _: &WebhookPayload) -> Result<Option<Vec<u8>>, StageError> {
        Ok(self.0.clone())
    }
}

fn a_png() -> Vec<u8> {
    let chart = aiops_context::graph::Chart {
        title: "TargetDown: up".into(),
        firing: Vec::new(),
        others: Vec::new(),
        threshold: None,
        started: 1_700_000_000.0,
        from: 1_699_996_400.0,
        to: 1_700_001_800.0,
    };
    aiops_context::graph::render(&chart).expect("renders")
}

#[tokio::test]
async fn bot_mode_uploads_the_graph_into_the_incidents_thread() {
    let fake = FakeSlack::default();
    let server = fake_slack_keeping(fake.clone()).await;
    let png = a_png();
    let sink = bot_sink(&server, Arc::new(MemoryThreads::default()), Vec::new())
        .with_graphs(Arc::new(FixedGraph(Some(png.clone()))));
    let firing = fixture("target-down-group-firing.json");
    let ts = deliver(&sink, &firing).await.expect("posted").expect("ts");
    let requests = server.received_requests().await.expect("recorded");
    let paths: Vec<&str> = requests.iter().map(|r| r.url.path()).collect();
    assert_eq!(
        paths,
        [
            "/api/chat.postMessage",
            "/api/files.getUploadURLExternal",
            "/upload/v1/F0001",
            "/api/files.completeUploadExternal",
        ]
    );
    assert_eq!(requests[2].body, png, "the PNG, byte for byte");
    let complete: std::collections::HashMap<String, String> =
        serde_urlencoded::from_bytes(&requests[3].body).expect("a form");
    assert_eq!(complete["channel_id"], "CALERTS");
    assert_eq!(complete["thread_ts"], ts, "into the incident's thread");
    // Slack accepted every step: the fake refuses what Slack refuses (a length that is not the
    // upload's, a file never uploaded, a thread it never posted), and shared the file.
    assert_eq!(
        *fake.shared.lock().expect("lock"),
        [("CALERTS".to_owned(), ts.clone(), "F0001".to_owned())]
    );

    // The resolution has no graph; nothing to draw, nothing uploaded.
    deliver(&sink, &fixture("target-down-group-resolved.json"))
        .await
        .expect("resolved");
    let none = bot_sink(&server, Arc::new(MemoryThreads::default()), Vec::new())
        .with_graphs(Arc::new(FixedGraph(None)));
    deliver(&none, &fixture("high-load-warning.json"))
        .await
        .expect("posted");
    let uploads = server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path().contains("files.getUploadURLExternal"))
        .count();
    assert_eq!(uploads, 1);
}

#[tokio::test]
async fn webhook_mode_shows_the_graph_by_a_signed_link() {
    let hook = fake_slack().await;
    let signer = aiops_model::LinkSigner::new(SecretString::from("link-key"));
    let links = Links {
        signer: Some(signer.clone()),
        ..links()
    };
    let url = SecretString::from(format!("{}{HOOK_PATH}", hook.uri()));
    let sink = SlackNotifier::webhook(url.clone(), links.clone(), Duration::from_secs(5), 0)
        .expect("a valid sink")
        .with_graphs(Arc::new(FixedGraph(Some(a_png()))));
    let firing = fixture("high-error-rate-k8s.json");
    let id = JobId::new();
    let analysis = analysis(&firing);
    sink.deliver(Notification {
        job_id: id,
        payload: &firing,
        analysis: Some(&analysis),
        firings: 1,
    })
    .await
    .expect("posted");
    let posted = bodies(&hook).await;
    let images: Vec<Value> = all_blocks(&posted[0])
        .into_iter()
        .filter(|b| b["type"] == "image")
        .collect();
    assert_eq!(images.len(), 1, "{}", posted[0]);
    let expected = format!(
        "https://aiops.example.com/analyses/{id}/graph.png?sig={}",
        signer.graph(id)
    );
    assert_eq!(images[0]["image_url"], expected.as_str());
    assert!(
        images[0]["alt_text"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    // Nothing to draw, or no public URL for Slack to fetch from: no image block.
    for sink in [
        SlackNotifier::webhook(url.clone(), links.clone(), Duration::from_secs(5), 0)
            .expect("a valid sink")
            .with_graphs(Arc::new(FixedGraph(None))),
        SlackNotifier::webhook(
            url.clone(),
            Links {
                aiops_url: String::new(),
                ..links.clone()
            },
            Duration::from_secs(5),
            0,
        )
        .expect("a valid sink")
        .with_graphs(Arc::new(FixedGraph(Some(a_png())))),
    ] {
        deliver(&sink, &firing).await.expect("posted");
        let last = bodies(&hook).await.pop().expect("a post");
        assert!(
            !all_blocks(&last).iter().any(|b| b["type"] == "image"),
            "{last}"
        );
    }
}
