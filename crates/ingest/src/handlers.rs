//! One function per route.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aiops_model::alertmanager::{compact_json, parse_analyze_input, parse_webhook};
use aiops_model::{JobId, JobSource, JobState, NewJob};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{ApiError, AppState};

/// How often `/analyze?wait=true` looks at the job while it waits.
const WAIT_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
struct Accepted {
    job_id: JobId,
    /// Every job the request made, when `server.split_per_alert` splits a group.
    #[serde(skip_serializing_if = "Option::is_none")]
    job_ids: Option<Vec<JobId>>,
    duplicate: bool,
}

/// `POST /webhook/alerts`: commit the group, then answer. 202 for a new job, 200 for a duplicate.
pub async fn webhook(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = accept_webhook(&req, body, &state).await;
    match &result {
        Ok((_, true)) => {
            state.metrics.webhook("duplicate");
            state.metrics.duplicates.inc();
        }
        Ok((_, false)) => state.metrics.webhook("accepted"),
        Err(e) => {
            state.metrics.webhook(e.metric_result());
            // A store that cannot take webhooks is logged by the store, once; not once per webhook.
            match e {
                ApiError::QueueFull | ApiError::StoreUnavailable(_) => {
                    tracing::debug!(error = %e, "webhook not taken")
                }
                _ => tracing::warn!(error = %e, "webhook rejected"),
            }
        }
    }
    let (accepted, duplicate) = result?;
    let mut response = if duplicate {
        HttpResponse::Ok()
    } else {
        HttpResponse::Accepted()
    };
    Ok(response.json(accepted))
}

async fn accept_webhook(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
) -> Result<(Accepted, bool), ApiError> {
    authorize(req, state)?;
    let body = read_json_body(req, body, state).await?;
    let payload = parse_webhook(&body)?;
    state
        .metrics
        .alerts_received
        .inc_by(payload.alerts.len() as u64);
    let jobs: Vec<NewJob> = if state.config.split_per_alert {
        payload
            .split_per_alert()
            .iter()
            .map(|p| NewJob::for_payload(p, None, JobSource::Webhook))
            .collect()
    } else {
        // The body is valid UTF-8 JSON (serde_json checked). The history keeps it as sent, less any
        // indentation: a smaller row is a cheaper commit.
        let raw = compact_json(&String::from_utf8_lossy(&body));
        vec![NewJob::for_payload(&payload, Some(raw), JobSource::Webhook)]
    };
    let outcomes = state.store.enqueue(jobs).await?;
    let duplicate = outcomes.iter().all(|o| o.is_duplicate());
    let ids: Vec<JobId> = outcomes.iter().map(|o| o.job_id()).collect();
    let accepted = Accepted {
        job_id: ids[0],
        job_ids: (ids.len() > 1).then_some(ids),
        duplicate,
    };
    Ok((accepted, duplicate))
}

#[derive(Debug, Deserialize)]
pub struct AnalyzeQuery {
    #[serde(default)]
    wait: bool,
}

/// `POST /analyze`: one alert or a whole payload. 202 with the id, or with `?wait=true` the finished
/// job (200) if it finishes within `server.analyze_wait_secs`.
pub async fn analyze(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Credentials first: an unauthenticated caller learns nothing about its query string.
    authorize(&req, &state)?;
    let query = web::Query::<AnalyzeQuery>::from_query(req.query_string()).map_err(|e| {
        ApiError::BadQuery(format!("{e}; /analyze takes ?wait=true or ?wait=false"))
    })?;
    let body = read_json_body(&req, body, &state).await?;
    let payload = parse_analyze_input(&body, state.clock.now())?;
    // A manual request is never a duplicate: asking again means wanting a fresh analysis.
    let job = NewJob::for_payload(&payload, None, JobSource::Manual);
    let id = job.id;
    state.store.enqueue(vec![job]).await?;
    tracing::info!(job_id = %id, alertname = payload.alertname(), "manual analysis queued");
    if query.wait {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(state.config.analyze_wait_secs);
        while tokio::time::Instant::now() < deadline {
            if let Some(record) = state.store.get(id).await?
                && matches!(record.state, JobState::Done | JobState::Dead)
            {
                return Ok(HttpResponse::Ok().json(record));
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
    Ok(HttpResponse::Accepted().json(Accepted {
        job_id: id,
        job_ids: None,
        duplicate: false,
    }))
}

/// `GET /analyses/{id}`: the job's state, attempts, error, timings, analysis and deliveries.
pub async fn analysis(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let id = req.match_info().get("id").unwrap_or_default();
    let not_found = || ApiError::NotFound(format!("no analysis with id {id:?}"));
    let job_id: JobId = id.parse().map_err(|_| not_found())?;
    let record = state.store.get(job_id).await?.ok_or_else(not_found)?;
    if let Some(page) = state.page.as_ref().filter(|_| wants_html(&req)) {
        return Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(page.render(&record)));
    }
    Ok(HttpResponse::Ok().json(record))
}

/// Whether the client prefers HTML: `text/html` is in `Accept` before any JSON type (browsers);
/// `*/*` alone (curl) and `application/json` get JSON.
fn wants_html(req: &HttpRequest) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    match (accept.find("text/html"), accept.find("json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

#[derive(Debug, Serialize)]
struct QueueStatus {
    #[serde(flatten)]
    counts: aiops_model::QueueCounts,
    workers_busy: i64,
    workers_total: i64,
}

/// `GET /queue/status`.
pub async fn queue_status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts = state.store.counts().await?;
    state.metrics.set_queue(&counts);
    Ok(HttpResponse::Ok().json(QueueStatus {
        counts,
        workers_busy: state.metrics.workers_busy.get(),
        workers_total: state.metrics.workers.get(),
    }))
}

/// `GET /health`: the process serves HTTP.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /ready`: the store answers, so webhooks can be committed.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

/// `GET /metrics`: Prometheus (OpenMetrics) text. The queue gauges are read from the store now; if it
/// does not answer, the other metrics are still served.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match state.store.counts().await {
        Ok(counts) => state.metrics.set_queue(&counts),
        Err(e) => tracing::warn!(error = %e, "cannot read queue counts for /metrics"),
    }
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(state.metrics.encode())
}

fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if state.auth.allows(req) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Checks the content type, then reads the body up to `server.max_body_bytes` within
/// `server.request_timeout_secs`. Nothing is read when a check fails. Callers authorize first.
async fn read_json_body(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(content_type.to_owned()));
    }
    read_body(req, body, state).await
}

/// The request's body, within `server.max_body_bytes` and `server.request_timeout_secs`.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut body: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let timeout = state.config.request_timeout_secs;
    let read = async {
        let mut buf = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadBody(e.to_string()))?;
            if buf.len() + chunk.len() > limit {
                return Err(ApiError::TooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(Duration::from_secs(timeout), read)
        .await
        .map_err(|_| ApiError::Timeout(timeout))?
}
