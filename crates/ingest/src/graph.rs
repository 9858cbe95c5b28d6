//! `GET /analyses/{id}/graph.png?sig=…`: the group's graph as a PNG. Slack fetches the image of a
//! webhook-mode message without credentials, so this route is not behind `server.auth`: the `sig`
//! parameter is its credential, an HMAC of the job id that only aiops can make (`notify.link_key`).
//! A missing or altered signature is 403 before anything is read.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use aiops_model::{Grapher, JobId, LinkSigner, WebhookPayload};
use std::sync::Arc;

use crate::AppState;
use crate::error::{ApiError, json_error};

/// What the route draws with and checks links with.
#[derive(Debug, Clone)]
pub struct Graphs {
    pub grapher: Arc<dyn Grapher>,
    pub signer: LinkSigner,
}

#[derive(serde::Deserialize)]
struct Signed {
    #[serde(default)]
    sig: String,
}

/// `GET /analyses/{id}/graph.png`.
pub async fn graph(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(graphs) = &state.graphs else {
        return Ok(json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "aiops draws no graphs: prometheus.url is not set".into(),
        ));
    };
    let id = req.match_info().get("id").unwrap_or_default();
    let sig = serde_urlencoded::from_str::<Signed>(req.query_string())
        .map(|s| s.sig)
        .unwrap_or_default();
    let Some(job_id) = id
        .parse::<JobId>()
        .ok()
        .filter(|j| graphs.signer.verify_graph(*j, &sig))
    else {
        return Ok(json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the graph's link is missing its signature or was altered (sig)".into(),
        ));
    };
    let record = state
        .store
        .get(job_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no analysis with id {id:?}")))?;
    let Ok(payload) = serde_json::from_value::<WebhookPayload>(record.payload) else {
        return Ok(nothing_to_draw());
    };
    Ok(match graphs.grapher.graph(&payload).await {
        Ok(Some(png)) => HttpResponse::Ok()
            .content_type("image/png")
            .insert_header((header::CACHE_CONTROL, "private, max-age=300"))
            .body(png),
        Ok(None) => nothing_to_draw(),
        Err(e) => json_error(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            format!("cannot draw the graph: {e}"),
        ),
    })
}

fn nothing_to_draw() -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "nothing to draw: the alerts carry no rule expression, or Prometheus has no series for it"
            .into(),
    )
}
