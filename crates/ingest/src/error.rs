//! The API's errors. Each maps to one status, and every error body is `{"error": ..., "detail": ...}`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use aiops_model::{InputError, StoreError};
use serde::Serialize;

/// The body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidPayload(String),
    #[error("the body is larger than the limit of {limit} bytes (server.max_body_bytes)")]
    TooLarge { limit: usize },
    #[error("expected Content-Type: application/json, got {0:?}")]
    UnsupportedMediaType(String),
    #[error("missing or wrong credentials")]
    Unauthorized,
    #[error("invalid query string: {0}")]
    BadQuery(String),
    #[error("invalid path: {0}")]
    BadPath(String),
    #[error("the request body did not arrive completely: {0}")]
    BadBody(String),
    #[error("the request body did not arrive within {0} seconds")]
    Timeout(u64),
    #[error("{0}")]
    NotFound(String),
    #[error("the queue is full; retry later")]
    QueueFull,
    #[error("the store cannot accept or read jobs right now{}; retry later", cause_text(.0))]
    StoreUnavailable(Option<&'static str>),
}

impl ApiError {
    /// A short, stable name for the kind of error.
    fn kind(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidPayload(_) => "invalid_payload",
            Self::TooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unauthorized => "unauthorized",
            Self::BadBody(_) => "bad_request",
            Self::BadQuery(_) => "invalid_query",
            Self::BadPath(_) => "invalid_path",
            Self::Timeout(_) => "request_timeout",
            Self::NotFound(_) => "not_found",
            Self::QueueFull => "queue_full",
            Self::StoreUnavailable(_) => "store_unavailable",
        }
    }

    /// The `result` label of the webhook counter.
    pub fn metric_result(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::QueueFull | Self::StoreUnavailable(_) => "unavailable",
            _ => "rejected",
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Syntax(m) => Self::MalformedJson(m),
            InputError::Shape(m) => Self::InvalidPayload(m),
        }
    }
}

impl From<StoreError> for ApiError {
    /// The store logs a failing write once, when writes start to fail; a request only says what its
    /// client can act on (a full disk is named, other internals are not).
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::QueueFull(_) => Self::QueueFull,
            StoreError::DiskFull(_) => Self::StoreUnavailable(Some(DISK_FULL)),
            other => {
                tracing::debug!(error = %other, "store error while serving a request");
                Self::StoreUnavailable(None)
            }
        }
    }
}

/// How a full disk under the store is named in error bodies.
const DISK_FULL: &str = "the disk holding aiops' database is full";

fn cause_text(cause: &Option<&'static str>) -> String {
    cause.map(|c| format!(": {c}")).unwrap_or_default()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::BadBody(_) | Self::BadQuery(_) | Self::BadPath(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::InvalidPayload(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::QueueFull | Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer, Basic realm=\"aiops\""));
            }
            Self::QueueFull | Self::StoreUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: self.kind(),
            detail: self.to_string(),
        })
    }
}

/// Makes the extractors' own errors (query strings, paths, JSON bodies) answer like ours, with a
/// `{"error", "detail"}` body instead of actix's plain text.
pub fn extractor_errors(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web::{JsonConfig, PathConfig, QueryConfig};
    cfg.app_data(
        QueryConfig::default().error_handler(|e, _| ApiError::BadQuery(e.to_string()).into()),
    )
    .app_data(PathConfig::default().error_handler(|e, _| ApiError::BadPath(e.to_string()).into()))
    .app_data(
        JsonConfig::default().error_handler(|e, _| ApiError::MalformedJson(e.to_string()).into()),
    );
}

/// A JSON error response for errors that happen outside our handlers (unknown route, wrong method).
pub fn json_error(status: StatusCode, error: &str, detail: String) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody { error, detail })
}
