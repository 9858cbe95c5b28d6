//! The aiops HTTP API: webhook intake, manual analysis, history, queue status, health and metrics.
//!
//! # Layout
//! - [`ServerConfig`], [`AuthConfig`]: the `[server]` section.
//! - [`run`]: serves the API on an already-bound listener until a shutdown future resolves.
//! - `handlers`: one function per route.
//! - `auth`: bearer and basic auth for the routes that write or expose alert data.
//! - `error`: [`ApiError`], mapped to a status and a `{"error", "detail"}` body.
//! - `slack`: `POST /slack/interactions`, Slack's signed button presses ([`Interactions`]).
#![forbid(unsafe_code)]

mod auth;
mod error;
mod graph;
mod handlers;
mod slack;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpServer, web};
use aiops_model::secret::serialize_masked;
use aiops_model::{AnalysisPage, Clock, Metrics, Store};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use auth::Auth;
pub use error::{ApiError, ErrorBody};
pub use graph::Graphs;
pub use slack::Interactions;

/// The `[server]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The largest request body accepted; larger ones get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Seconds a client may take to send its request head and body.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Make one job per alert instead of one per group.
    #[serde(default)]
    pub split_per_alert: bool,
    /// The longest `/analyze?wait=true` waits for the analysis before answering 202.
    #[serde(default = "default_analyze_wait_secs")]
    pub analyze_wait_secs: u64,
    /// HTTP worker threads; 0 means one per CPU core.
    #[serde(default)]
    pub http_workers: usize,
    #[serde(default)]
    pub auth: AuthConfig,
}

/// `[server.auth]`: credentials for the write endpoints and `/analyses/{id}`. When both a bearer
/// token and basic credentials are set, either one is accepted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default, serialize_with = "serialize_masked")]
    pub bearer_token: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_username: String,
    #[serde(default, serialize_with = "serialize_masked")]
    pub basic_password: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_password_file: Option<PathBuf>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_request_timeout_secs() -> u64 {
    10
}
fn default_analyze_wait_secs() -> u64 {
    60
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            request_timeout_secs: default_request_timeout_secs(),
            split_per_alert: false,
            analyze_wait_secs: default_analyze_wait_secs(),
            http_workers: 0,
            auth: AuthConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Checks values and resolves `*_file` secrets. Call once, before [`ServerConfig::auth`].
    pub fn resolve(&mut self) -> Result<(), String> {
        use aiops_model::secret::{non_empty, resolve_file};
        let auth = &mut self.auth;
        auth.bearer_token = non_empty(auth.bearer_token.take());
        auth.basic_password = non_empty(auth.basic_password.take());
        resolve_file(
            "server.auth.bearer_token",
            &mut auth.bearer_token,
            auth.bearer_token_file.as_deref(),
        )?;
        resolve_file(
            "server.auth.basic_password",
            &mut auth.basic_password,
            auth.basic_password_file.as_deref(),
        )?;
        if auth.basic_username.is_empty() != auth.basic_password.is_none() {
            return Err(
                "server.auth: set both basic_username and basic_password, or neither".into(),
            );
        }
        if self.max_body_bytes < 1024 {
            return Err("server.max_body_bytes must be at least 1024".into());
        }
        if self.request_timeout_secs == 0 {
            return Err("server.request_timeout_secs must be at least 1".into());
        }
        Ok(())
    }

    pub fn auth(&self) -> Auth {
        let basic = self
            .auth
            .basic_password
            .clone()
            .map(|p| (self.auth.basic_username.clone(), p));
        Auth::new(self.auth.bearer_token.clone(), basic)
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub auth: Auth,
    pub config: Arc<ServerConfig>,
    /// `POST /slack/interactions`, when `slack.signing_secret` is set.
    pub interactions: Option<Arc<Interactions>>,
    /// The HTML page of `GET /analyses/{id}` for a browser; none: JSON only.
    pub page: Option<Arc<dyn AnalysisPage>>,
    /// `GET /analyses/{id}/graph.png?sig=…`, when aiops draws graphs (`prometheus.url`).
    pub graphs: Option<Graphs>,
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting and lets requests in
/// flight finish (up to `request_timeout_secs`).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let workers = match state.config.http_workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .workers(workers)
    .disable_signals()
    .client_request_timeout(timeout)
    .client_disconnect_timeout(Duration::from_secs(1))
    .shutdown_timeout(timeout.as_secs())
    .run();
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = shutdown => {
            // The server future must keep being polled while it stops, or stop() never completes.
            let ((), result) = tokio::join!(handle.stop(true), server);
            result
        }
    }
}

/// The routes, for [`run`] and for tests that build the app in memory.
pub fn routes(cfg: &mut web::ServiceConfig) {
    error::extractor_errors(cfg);
    cfg.service(resource("/webhook/alerts").post(handlers::webhook))
        .service(resource("/analyze").post(handlers::analyze))
        .service(resource("/analyses/{id}").get(handlers::analysis))
        .service(resource("/analyses/{id}/graph.png").get(graph::graph))
        .service(resource("/slack/interactions").post(slack::interactions))
        .service(resource("/queue/status").get(handlers::queue_status))
        .service(resource("/health").get(handlers::health))
        .service(resource("/ready").get(handlers::ready))
        .service(resource("/metrics").get(handlers::metrics));
}

/// A resource that answers a wrong method with 405 and a JSON error body.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|req: actix_web::HttpRequest| async move {
        let detail = format!("{} does not take {}", req.path(), req.method());
        error::json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", detail)
    }))
}

async fn not_found(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    error::json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    )
}
