//! The analysis page: `GET /analyses/{id}` with `Accept: text/html`, what the Slack message's "full
//! analysis" link opens. Server-rendered with maud (every value escaped), one small inline style
//! sheet, no JavaScript; readable on a phone. It shows the incident's state and timeline (received,
//! each delivery, each verdict, finished), the analysis (summary, probable cause, confidence,
//! impact, remediation, the causes ranked lower), each cited evidence item with its query (a link
//! into Grafana Explore when `grafana.url` is set) and finding, the analyzer (model, tokens, tool
//! calls, a fallback's reason), the group's graph (a signed `graph.png` link, when aiops draws
//! graphs), and the alerts with their labels.

use aiops_model::{AlertStatus, AnalysisPage, JobRecord, Notification, WebhookPayload};
use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Document;
use crate::slack::{Links, blocks::explore_url};

const STYLE: &str = "body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;max-width:52rem;\
padding:1rem;color:#1d1c1d}h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin-top:1.6rem;\
border-bottom:1px solid #ddd}pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;white-space:pre-wrap;\
word-break:break-all}.badge{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;color:#fff;\
font-size:.85rem}.firing{background:#e01e5a}.resolved{background:#2eb67d}.muted{color:#666;\
font-size:.9rem}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.2rem .4rem;\
border-bottom:1px solid #eee;vertical-align:top;overflow-wrap:anywhere}h3{font-size:1rem;\
overflow-wrap:anywhere}td:first-child{white-space:nowrap}.cause{font-size:1.1rem;background:#fff8e6;\
padding:.6rem;border-left:4px solid #ecb22e}";

/// Renders the page with the message's links (Grafana Explore).
#[derive(Debug, Clone)]
pub struct HtmlPage {
    links: Links,
}

impl HtmlPage {
    pub fn new(links: Links) -> Self {
        Self { links }
    }
}

impl AnalysisPage for HtmlPage {
    fn render(&self, job: &JobRecord) -> String {
        page(job, &self.links).into_string()
    }
}

/// A time as a person reads it, in UTC: `2026-12-07 12:00:50 UTC`.
fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let iso = t.format(&Rfc3339).unwrap_or_default();
    match iso.get(..19) {
        Some(s) => format!("{} UTC", s.replace('T', " ")),
        None => iso,
    }
}

/// The graph's signed path, relative to the page (`/analyses/{id}`), for a firing group whose
/// alerts carry a rule expression, when aiops draws graphs.
fn graph_src(job: &JobRecord, payload: Option<&WebhookPayload>, links: &Links) -> Option<String> {
    let signer = links.signer.as_ref()?;
    let drawable = job.status == AlertStatus::Firing
        && payload.is_some_and(|p| p.alerts.iter().any(|a| a.rule_expr().is_some()));
    drawable.then(|| format!("./{}/graph.png?sig={}", job.id, signer.graph(job.id)))
}

fn page(job: &JobRecord, links: &Links) -> Markup {
    let payload: Option<WebhookPayload> = serde_json::from_value(job.payload.clone()).ok();
    let doc = payload.as_ref().map(|p| {
        Document::new(&Notification {
            job_id: job.id,
            payload: p,
            analysis: job.analysis.as_ref(),
            firings: 1,
        })
    });
    let status = match job.status {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (job.alertname) " · aiops" }
                style { (STYLE) }
            }
            body {
                p.muted { "aiops analysis " code { (job.id) } }
                h1 { (job.alertname) " " span.badge.(status) { (status) } }
                p.muted { "Group " code { (job.group_key) } " · job " (job.state.as_str())
                    " · " (job.attempts) " attempt(s)" }
                @if let Some(e) = &job.last_error { p { "Last error: " (e) } }
                h2 { "Timeline" }
                table {
                    tr { td { (when(job.created_at)) } td { "received" } }
                    @for d in &job.deliveries {
                        tr { td { (when(d.delivered_at)) } td { "delivered to " (d.sink)
                            @if let Some(detail) = &d.detail { " (" (detail) ")" } } }
                    }
                    @for f in &job.feedback {
                        tr { td { (when(f.at)) } td { (f.user) " judged the analysis " strong { (f.verdict.as_str()) } } }
                    }
                    @if let Some(t) = job.finished_at { tr { td { (when(t)) } td { "finished" } } }
                }
                @match &job.analysis {
                    None => { h2 { "Analysis" } p { "No analysis (yet): the job is " (job.state.as_str()) "." } }
                    Some(a) => {
                        h2 { "Analysis" }
                        p { (a.summary) }
                        p.cause { strong { "Probable cause: " } (a.root_cause) }
                        p.muted { "Category " (a.category.as_str()) " · confidence "
                            (format!("{:.0}%", a.confidence * 100.0)) }
                        @if !a.impact.is_empty() { p { strong { "Impact: " } (a.impact) } }
                        @if !a.remediation.is_empty() {
                            h2 { "Remediation" }
                            ol { @for step in &a.remediation { li { (step) } } }
                        }
                        @if !a.alternatives.is_empty() {
                            h2 { "Ranked lower" }
                            ul { @for alt in &a.alternatives { li { (alt) } } }
                        }
                        @if let Some(src) = graph_src(job, payload.as_ref(), links) {
                            h2 { "Graph" }
                            img src=(src) width="960" height="540" style="max-width:100%;height:auto"
                                alt="The rule's expression around the time the group started";
                        }
                        h2 { "Evidence" }
                        @for e in &a.evidence {
                            section {
                                h3 { code { (e.id) } @if !e.note.is_empty() { " · " (e.note) } }
                                @if let Some(q) = &e.query {
                                    pre { (q) }
                                    @if let Some(url) = doc.as_ref().and_then(|d| explore_url(links, q, d)) {
                                        p { a href=(url) { "Open in Grafana Explore" } }
                                    }
                                }
                                @if let Some(f) = &e.finding { p { (f) } }
                            }
                        }
                        @if !a.next_queries.is_empty() {
                            h2 { "Next queries" }
                            @for q in &a.next_queries { pre { (q) } }
                        }
                        h2 { "Analyzer" }
                        p.muted {
                            (a.analyzer.name)
                            @if let Some(m) = &a.analyzer.model { " · " (m) }
                            " · " (a.analyzer.prompt_tokens) " / " (a.analyzer.completion_tokens) " tokens · "
                            (a.analyzer.latency_ms) " ms"
                            @if a.analyzer.cached { " · cached" }
                            @if let Some(j) = a.analyzer.reused_from { " · reused from job " (j) " (the group flaps, same evidence)" }
                        }
                        @if let Some(reason) = &a.analyzer.fallback_reason {
                            p { "The rule-based analyzer answered: " (reason) }
                        }
                        @if !a.analyzer.tool_calls.is_empty() {
                            table {
                                tr { th { "tool" } th { "arguments" } th { "result" } th { "ms" } }
                                @for c in &a.analyzer.tool_calls {
                                    tr { td { (c.tool) } td { code { (c.arguments) } }
                                        td { (c.result_id.clone().or(c.error.clone()).unwrap_or_default()) }
                                        td { (c.ms) } }
                                }
                            }
                        }
                    }
                }
                @if let Some(p) = &payload {
                    h2 { "Alerts" }
                    @for alert in &p.alerts {
                        table {
                            @for (k, v) in &alert.labels { tr { th { (k) } td { (v) } } }
                        }
                        p.muted { (format!("{:?}", alert.status).to_lowercase()) " since " (when(alert.starts_at)) }
                    }
                }
            }
        }
    }
}
