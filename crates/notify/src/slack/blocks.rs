//! The Slack message: Block Kit for an analysis or a resolution, always within Slack's limits.
//!
//! Layout, for an on-call engineer reading on a phone: a header (status, alert, severity, how many
//! alerts), the identifying labels as fields, the summary, the probable cause with its confidence;
//! then, next to a colour bar by severity, the top evidence with its query and a graph link, the
//! numbered remediation, the links (silence, Grafana Explore, runbook, the full analysis) and a
//! context line (analyzer, model, tokens, tool calls, latency, fallback). The top-level `text` is the
//! notification's fallback, and what Mattermost (which ignores blocks) shows.

use aiops_model::{Analysis, Context, Notification, WebhookPayload};
use serde_json::{Value, json};

use crate::Document;

/// Slack's limits (https://api.slack.com/reference/block-kit/blocks).
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_FIELDS: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2000;
/// Slack rejects messages whose blocks hold far less than the per-block limits add up to; stay well
/// under its 12,000 characters.
pub const MAX_TOTAL_TEXT: usize = 10_000;
/// The top-level `text` (also Mattermost's message): Slack truncates at 40,000, Mattermost rejects
/// above 16,383; keep it short.
pub const MAX_FALLBACK_TEXT: usize = 3000;

/// Evidence items shown, and the characters of each one's finding.
const EVIDENCE_SHOWN: usize = 4;
const FINDING_SHOWN: usize = 200;
/// Labels shown as fields, in this order.
const FIELD_LABELS: [&str; 5] = ["cluster", "namespace", "service", "instance", "job"];

/// Where the message's links point.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// aiops' own URL as people reach it, for "see the full analysis". Empty: a path only.
    pub aiops_url: String,
    /// Grafana's URL for Explore links. Empty: no Explore link.
    pub grafana_url: String,
    /// The uid of Grafana's Prometheus datasource.
    pub grafana_datasource: String,
    /// Slack's interactivity is set up (`slack.signing_secret`): an analysis gets the buttons
    /// (Silence 1h / 4h, Right, Wrong, Re-analyze) that `POST /slack/interactions` acts on.
    pub interactive: bool,
    /// Signs graph links (`/analyses/{id}/graph.png?sig=…`), when aiops draws graphs.
    pub signer: Option<aiops_model::LinkSigner>,
}

/// Adds `block` first among the message's detail blocks (next to the evidence), if the message
/// has room for it.
pub fn add_detail(message: &mut Value, block: Value) {
    let top = message["blocks"].as_array().map_or(0, Vec::len);
    if let Some(detail) = message["attachments"][0]["blocks"].as_array_mut()
        && top + detail.len() < MAX_BLOCKS
    {
        detail.insert(0, block);
    }
}

/// The whole message body (without `channel` and `thread_ts`).
pub fn message(n: &Notification<'_>, links: &Links) -> Value {
    let doc = Document::new(n);
    let analysis_link = format!(
        "{}/analyses/{}",
        links.aiops_url.trim_end_matches('/'),
        n.job_id
    );
    let see = match links.aiops_url.is_empty() {
        true => format!(" (see {analysis_link})"),
        false => format!(" (see <{analysis_link}|the full analysis>)"),
    };
    let (top, detail, fallback) = match n.analysis {
        Some(a) => analysis_blocks(n.payload, &doc, a, links, &analysis_link),
        None => resolution_blocks(&doc),
    };
    let mut top = top;
    if let Some(line) = flapping(n.firings) {
        top.insert(1, line);
    }
    let mut detail = detail;
    fit(&mut top, &mut detail, &see);
    if links.interactive && n.analysis.is_some() {
        top.push(buttons(&n.job_id.to_string()));
    }
    json!({
        "text": truncate(&fallback, MAX_FALLBACK_TEXT, &see),
        "blocks": top,
        "attachments": [{
            "color": color(n.payload, n.analysis.is_some()),
            "fallback": truncate(&fallback.lines().next().unwrap_or("").replace('*', ""), 300, ""),
            "blocks": detail,
        }],
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// "Flapping ×N" for a group that fired again soon after it resolved (one incident, one message).
fn flapping(firings: u32) -> Option<Value> {
    (firings > 1).then(|| {
        context(&format!(
            "🔁 *Flapping ×{firings}*: the group fired again soon after it resolved"
        ))
    })
}

/// The actions an on-call takes from the message; each button carries the job's id.
fn buttons(job_id: &str) -> Value {
    let elements: Vec<Value> = aiops_model::SlackAction::ALL
        .iter()
        .map(|a| {
            json!({"type": "button", "action_id": a.action_id(), "value": job_id,
                   "text": {"type": "plain_text", "text": a.label(), "emoji": true}})
        })
        .collect();
    json!({"type": "actions", "block_id": "aiops_actions", "elements": elements})
}

fn severity(payload: &WebhookPayload) -> String {
    payload.label("severity").unwrap_or("").to_lowercase()
}

fn color(payload: &WebhookPayload, firing: bool) -> &'static str {
    if !firing {
        return "#2EB67D";
    }
    match severity(payload).as_str() {
        "critical" | "page" | "error" | "high" => "#E01E5A",
        "warning" | "warn" | "medium" => "#ECB22E",
        "info" | "low" | "none" => "#36C5F0",
        _ => "#808080",
    }
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": text, "emoji": true}})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
}

/// Escapes what Slack's mrkdwn treats as control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A `<url|label>` link; `|` and `>` cannot appear in the URL.
fn link(url: &str, label: &str) -> String {
    format!(
        "<{}|{}>",
        url.replace('|', "%7C").replace('>', "%3E"),
        escape(label)
    )
}

/// `{emoji} Alert · severity · N alerts (M resolved)`.
fn title(emoji: &str, payload: &WebhookPayload, doc: &Document) -> String {
    let sev = severity(payload);
    let count = payload.alerts.len();
    format!(
        "{emoji} {}{} · {} alert{}{}",
        doc.alertname,
        if sev.is_empty() {
            String::new()
        } else {
            format!(" · {sev}")
        },
        count,
        if count == 1 { "" } else { "s" },
        if doc.alerts_resolved > 0 {
            format!(" ({} resolved)", doc.alerts_resolved)
        } else {
            String::new()
        }
    )
}

/// The identifying labels as a section of fields, if the group has any of them.
fn label_fields(payload: &WebhookPayload) -> Option<Value> {
    let fields: Vec<Value> = FIELD_LABELS
        .iter()
        .filter_map(|l| label_values(payload, l).map(|v| (l, v)))
        .map(|(l, v)| json!({"type": "mrkdwn", "text": format!("*{l}*\n{}", escape(&v))}))
        .take(MAX_FIELDS)
        .collect();
    (!fields.is_empty()).then(|| json!({"type": "section", "fields": fields}))
}

/// Findings and evidence items a first look shows.
const FIRST_LOOK_SHOWN: usize = 3;

/// The first look (bot mode, a slow analyzer): the alert, the top findings and evidence the
/// context stage found, and "analysis running"; the analysis replaces it in place.
pub fn first_look(n: &Notification<'_>, ctx: &Context, links: &Links) -> Value {
    let (job_id, payload) = (n.job_id, n.payload);
    let doc = Document::new(n);
    let mut blocks = vec![header(&title("⏳", payload, &doc))];
    blocks.extend(flapping(n.firings));
    blocks.extend(label_fields(payload));
    let sources = ctx.evidence.len();
    let failed = ctx.failures.len();
    blocks.push(section(&format!(
        "*Analysis running…* The evidence is in: {sources} item{} from the alert, Prometheus and \
         Loki{}.",
        if sources == 1 { "" } else { "s" },
        match failed {
            0 => String::new(),
            n => format!("; {n} source{} failed", if n == 1 { "" } else { "s" }),
        }
    )));
    let findings: Vec<String> = ctx
        .findings()
        .take(FIRST_LOOK_SHOWN)
        .map(|f| {
            format!(
                "• {} (`{}`)",
                escape(&f.fact.describe()),
                escape(f.evidence)
            )
        })
        .collect();
    if !findings.is_empty() {
        blocks.push(section(&format!("*Top findings*\n{}", findings.join("\n"))));
    }
    let evidence: Vec<String> = ctx
        .evidence
        .iter()
        .take(FIRST_LOOK_SHOWN)
        .map(|e| {
            format!(
                "• *{}* {}",
                escape(&e.title),
                escape(&truncate(&e.summary, FINDING_SHOWN, ""))
            )
        })
        .collect();
    if !evidence.is_empty() {
        blocks.push(section(&format!("*Top evidence*\n{}", evidence.join("\n"))));
    }
    let analysis_link = format!(
        "{}/analyses/{job_id}",
        links.aiops_url.trim_end_matches('/')
    );
    if !links.aiops_url.is_empty() {
        blocks.push(context(&link(&analysis_link, "Full analysis (when ready)")));
    }
    let text = format!(
        "⏳ {}: the evidence is in, the analysis is running",
        doc.alertname
    );
    json!({
        "text": text,
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

fn analysis_blocks(
    payload: &WebhookPayload,
    doc: &Document,
    a: &Analysis,
    links: &Links,
    analysis_link: &str,
) -> (Vec<Value>, Vec<Value>, String) {
    let sev = severity(payload);
    let emoji = match sev.as_str() {
        "critical" | "page" | "error" | "high" => "🔥",
        "warning" | "warn" | "medium" => "⚠️",
        _ => "🔔",
    };
    let title = title(emoji, payload, doc);
    let mut top = vec![header(&title)];
    top.extend(label_fields(payload));
    top.push(section(&format!("*Summary*\n{}", escape(&a.summary))));
    top.push(section(&format!(
        "*Probable root cause* ({:.0}% confident · {})\n{}",
        a.confidence * 100.0,
        a.category.as_str().replace('_', " "),
        escape(&a.root_cause)
    )));

    let mut detail = Vec::new();
    let shown: Vec<String> = a
        .evidence
        .iter()
        .take(EVIDENCE_SHOWN)
        .map(|e| {
            let mut line = format!("• *{}* {}", escape(&e.id), escape(&e.note));
            if let Some(f) = e.finding.as_deref().filter(|f| !e.note.contains(*f)) {
                line.push_str(&format!("\n   {}", escape(&truncate(f, FINDING_SHOWN, ""))));
            }
            if let Some(q) = &e.query {
                line.push_str(&format!("\n   `{}`", escape(q).replace('`', "'")));
                if let Some(url) = graph_url(payload, q) {
                    line.push_str(&format!(" {}", link(&url, "graph")));
                }
                if let Some(url) = explore_url(links, q, doc) {
                    line.push_str(&format!(" {}", link(&url, "explore")));
                }
            }
            line
        })
        .collect();
    if !shown.is_empty() {
        detail.push(section(&format!("*Evidence*\n{}", shown.join("\n"))));
    }
    let steps: Vec<String> = a
        .remediation
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {}", i + 1, escape(s)))
        .collect();
    detail.push(section(&format!("*Remediation*\n{}", steps.join("\n"))));
    let mut link_line = Vec::new();
    if let Some(url) = silence_url(payload) {
        link_line.push(link(&url, "Silence"));
    }
    if let Some(url) = a
        .evidence
        .iter()
        .find_map(|e| e.query.as_deref())
        .and_then(|q| explore_url(links, q, doc))
    {
        link_line.push(link(&url, "Grafana Explore"));
    }
    if let Some(url) = payload
        .alerts
        .iter()
        .find_map(|al| al.annotations.get("runbook_url"))
        .filter(|u| u.starts_with("http"))
    {
        link_line.push(link(url, "Runbook"));
    }
    match links.aiops_url.is_empty() {
        true => link_line.push(format!("Full analysis: `{analysis_link}`")),
        false => link_line.push(link(analysis_link, "Full analysis")),
    }
    detail.push(section(&link_line.join(" · ")));
    let info = &a.analyzer;
    let mut ctx = vec![format!("analyzer *{}*", escape(&info.name))];
    if let Some(m) = &info.model {
        ctx.push(format!("model {}", escape(m)));
    }
    if info.prompt_tokens + info.completion_tokens > 0 {
        ctx.push(format!(
            "tokens {} in / {} out",
            info.prompt_tokens, info.completion_tokens
        ));
    }
    if !info.tool_calls.is_empty() {
        let answered = info.tool_calls.iter().filter(|c| c.error.is_none()).count();
        ctx.push(format!(
            "{} tool call{} ({answered} answered)",
            info.tool_calls.len(),
            if info.tool_calls.len() == 1 { "" } else { "s" }
        ));
    }
    ctx.push(format!("{} ms", info.latency_ms));
    if info.cached {
        ctx.push("cached".into());
    }
    if info.reused_from.is_some() {
        ctx.push("analysis of the earlier firing, reused: same evidence, no new analysis".into());
    }
    if info.fallback {
        ctx.push(match &info.fallback_reason {
            Some(r) => format!("*fallback*: {}", escape(r)),
            None => "*fallback*".into(),
        });
    }
    detail.push(context(&ctx.join(" · ")));
    // The top-level text: Slack's notification text, and the whole message in Mattermost (which
    // ignores blocks but renders mrkdwn links).
    let first_steps: Vec<&str> = steps.iter().take(3).map(String::as_str).collect();
    let fallback = format!(
        "*{}*\n*Summary:* {}\n*Probable root cause* ({:.0}%): {}\n*First steps:*\n{}\n{}",
        escape(&title),
        escape(&a.summary),
        a.confidence * 100.0,
        escape(&a.root_cause),
        first_steps.join("\n"),
        link_line.join(" · ")
    );
    (top, detail, fallback)
}

/// A label's value for the group: the common one, else the alerts' distinct values (a few, then how
/// many more).
pub fn label_values(payload: &WebhookPayload, name: &str) -> Option<String> {
    if let Some(v) = payload.common_labels.get(name) {
        return Some(v.clone());
    }
    let mut values: Vec<&str> = payload
        .alerts
        .iter()
        .filter_map(|a| a.labels.get(name).map(String::as_str))
        .collect();
    values.sort_unstable();
    values.dedup();
    const SHOWN: usize = 3;
    match values.len() {
        0 => None,
        n if n <= SHOWN => Some(values.join(", ")),
        n => Some(format!(
            "{} +{} more",
            values[..SHOWN].join(", "),
            n - SHOWN
        )),
    }
}

/// The incident's message, as it read (`root`), edited for the resolution `n`: a "Resolved"
/// header, no buttons, green, and a line with how long the group fired.
pub fn resolved_root(root: &Value, n: &Notification<'_>) -> Value {
    let doc = Document::new(n);
    let fired = doc
        .fired_for_secs
        .map(|s| format!(" after {}", crate::document::human_duration(s)))
        .unwrap_or_default();
    let mut message = root.clone();
    let line = format!("✅ Resolved{fired}");
    if let Some(blocks) = message["blocks"].as_array_mut() {
        blocks.retain(|b| b["type"] != "actions");
        if let Some(text) = blocks
            .first()
            .filter(|b| b["type"] == "header")
            .and_then(|b| b["text"]["text"].as_str().map(str::to_owned))
        {
            // The header's leading emoji (🔥, ⚠️, 🔔, ⏳) gives way to ✅.
            let rest = text.split_once(' ').map_or(text.as_str(), |(_, r)| r);
            blocks[0]["text"]["text"] = Value::String(truncate(&format!("✅ {rest}"), 150, ""));
        }
        blocks.push(context(&escape(&format!("{line}."))));
    }
    if let Some(attachments) = message["attachments"].as_array_mut() {
        for a in attachments {
            a["color"] = Value::String("#2EB67D".into());
        }
    }
    let text = message["text"].as_str().unwrap_or("").to_owned();
    message["text"] = Value::String(truncate(&format!("{line}: {text}"), MAX_FALLBACK_TEXT, ""));
    message
}

fn resolution_blocks(doc: &Document) -> (Vec<Value>, Vec<Value>, String) {
    let fired = doc
        .fired_for_secs
        .map(|s| format!(" after {}", crate::document::human_duration(s)))
        .unwrap_or_default();
    let line = format!(
        "{} of {} alert{} resolved{fired}.",
        doc.alerts_resolved,
        doc.alerts_resolved + doc.alerts_firing,
        if doc.alerts_resolved + doc.alerts_firing == 1 {
            ""
        } else {
            "s"
        },
    );
    let top = vec![
        header(&format!("✅ Resolved: {}", doc.alertname)),
        section(&escape(&line)),
    ];
    let detail = vec![context(&format!("job {}", doc.job_id))];
    (
        top,
        detail,
        format!(
            "*✅ Resolved: {}* — {}",
            escape(&doc.alertname),
            escape(&line)
        ),
    )
}

/// The Prometheus graph of `query`: the alert's `generatorURL` with its expression replaced, or
/// `externalURL` plus the query.
pub fn graph_url(payload: &WebhookPayload, query: &str) -> Option<String> {
    let base = payload
        .alerts
        .iter()
        .map(|a| a.generator_url.as_str())
        .find(|u| u.starts_with("http"))
        .and_then(|u| {
            u.split_once('?')
                .map(|(b, _)| b.to_owned())
                .or(Some(u.to_owned()))
        })
        .or_else(|| {
            (!payload.external_url.is_empty())
                .then(|| format!("{}/graph", payload.external_url.trim_end_matches('/')))
        })?;
    let params = serde_urlencoded::to_string([("g0.expr", query), ("g0.tab", "0")]).ok()?;
    Some(format!("{base}?{params}"))
}

/// Alertmanager's "new silence" page, prefilled with the group's labels.
pub fn silence_url(payload: &WebhookPayload) -> Option<String> {
    if payload.external_url.is_empty() {
        return None;
    }
    let labels = match payload.group_labels.is_empty() {
        true => &payload.common_labels,
        false => &payload.group_labels,
    };
    if labels.is_empty() {
        return None;
    }
    let matchers: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let filter =
        serde_urlencoded::to_string([("filter", format!("{{{}}}", matchers.join(",")))]).ok()?;
    Some(format!(
        "{}/#/silences/new?{filter}",
        payload.external_url.trim_end_matches('/')
    ))
}

/// Grafana Explore on `query` over the incident's window, if Grafana is configured.
pub fn explore_url(links: &Links, query: &str, doc: &Document) -> Option<String> {
    if links.grafana_url.is_empty() {
        return None;
    }
    let from = doc
        .started_at
        .map(|t| (t.unix_timestamp() - 1800) * 1000)
        .map_or_else(|| "now-1h".to_owned(), |ms| ms.to_string());
    let left = json!({
        "datasource": links.grafana_datasource,
        "queries": [{"refId": "A", "expr": query, "datasource": {"type": "prometheus", "uid": links.grafana_datasource}}],
        "range": {"from": from, "to": "now"},
    });
    let params =
        serde_urlencoded::to_string([("orgId", "1".to_owned()), ("left", left.to_string())])
            .ok()?;
    Some(format!(
        "{}/explore?{params}",
        links.grafana_url.trim_end_matches('/')
    ))
}

/// `text` cut to `max` characters with an ellipsis and `see` when it is longer. The cut never
/// splits a `<url|label>` link.
pub fn truncate(text: &str, max: usize, see: &str) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(see.chars().count() + 1);
    let mut cut: String = text.chars().take(keep).collect();
    if let Some(open) = cut.rfind('<')
        && cut[open..].find('>').is_none()
    {
        cut.truncate(open);
    }
    format!("{}…{see}", cut.trim_end())
}

fn texts(block: &mut Value) -> Vec<&mut Value> {
    let key = ["text", "fields", "elements"]
        .into_iter()
        .find(|k| block.get(k).is_some());
    match (key, block) {
        (Some("text"), Value::Object(map)) => map
            .get_mut("text")
            .and_then(|t| t.get_mut("text"))
            .into_iter()
            .collect(),
        (Some(k), Value::Object(map)) => map
            .get_mut(k)
            .and_then(Value::as_array_mut)
            .map(|items| items.iter_mut().filter_map(|i| i.get_mut("text")).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn total(blocks: &mut [Value]) -> usize {
    blocks
        .iter_mut()
        .flat_map(texts)
        .map(|t| t.as_str().map_or(0, |s| s.chars().count()))
        .sum()
}

/// Enforces every limit: per-block sizes first, then the total, shortening the longest section.
fn fit(top: &mut Vec<Value>, detail: &mut Vec<Value>, see: &str) {
    top.truncate(MAX_BLOCKS / 2);
    detail.truncate(MAX_BLOCKS / 2);
    for block in top.iter_mut().chain(detail.iter_mut()) {
        let limit = match block["type"].as_str() {
            Some("header") => MAX_HEADER_TEXT,
            _ if block.get("fields").is_some() => MAX_FIELD_TEXT,
            _ => MAX_SECTION_TEXT,
        };
        let see = if block["type"] == "header" { "" } else { see };
        for text in texts(block) {
            if let Some(s) = text.as_str()
                && s.chars().count() > limit
            {
                *text = Value::String(truncate(s, limit, see));
            }
        }
    }
    // Bounded: each round shortens the longest text by at least a quarter.
    for _ in 0..64 {
        let size = total(top) + total(detail);
        if size <= MAX_TOTAL_TEXT {
            return;
        }
        let mut longest: Option<&mut Value> = None;
        for block in top.iter_mut().chain(detail.iter_mut()) {
            if block["type"] == "header" {
                continue;
            }
            for text in texts(block) {
                let len = text.as_str().map_or(0, |s| s.chars().count());
                if longest
                    .as_ref()
                    .is_none_or(|l| l.as_str().map_or(0, |s| s.chars().count()) < len)
                {
                    longest = Some(text);
                }
            }
        }
        let Some(text) = longest else { return };
        let s = text.as_str().unwrap_or("").to_owned();
        let len = s.chars().count();
        let target = len
            .saturating_sub((size - MAX_TOTAL_TEXT).max(len / 4))
            .max(see.len() + 20);
        *text = Value::String(truncate(&s, target, see));
    }
}
