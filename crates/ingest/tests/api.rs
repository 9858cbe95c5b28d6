//! The HTTP API on a real listener (port 0) with a real SQLite store, driven by an HTTP client the way
//! Alertmanager and operators call it.

use std::sync::Arc;
use std::time::Duration;

use aiops_ingest::{AppState, ServerConfig};
use aiops_model::{AttemptEnd, JobId, JobState, Metrics, StageTimings, Store, SystemClock};
use aiops_store::{SqliteStore, StoreConfig};
use base64::Engine;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;

const TOKEN: &str = "s3cret-token";

struct App {
    url: String,
    store: Arc<SqliteStore>,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn spawn_app(configure: impl FnOnce(&mut ServerConfig, &mut StoreConfig)) -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = ServerConfig::default();
    let mut store_config = StoreConfig::default();
    configure(&mut server, &mut store_config);
    server.resolve().expect("valid server config");
    let store = Arc::new(
        SqliteStore::open(
            &dir.path().join("aiops.db"),
            &store_config,
            Arc::new(SystemClock),
        )
        .await
        .expect("store"),
    );
    let (url, stop) = serve(store.clone(), server);
    App {
        url,
        store,
        client: reqwest::Client::new(),
        _stop: stop,
        _dir: dir,
    }
}

/// Serves the API for `store` on a free loopback port until the returned sender is dropped.
fn serve(
    store: Arc<dyn Store>,
    server: ServerConfig,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let state = AppState {
        store,
        metrics: Arc::new(Metrics::new()),
        clock: Arc::new(SystemClock),
        auth: server.auth(),
        config: Arc::new(server),
        interactions: None,
        page: None,
        graphs: None,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(aiops_ingest::run(listener, state, async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../tests/fixtures/alertmanager/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

impl App {
    async fn post(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        self.send(
            self.client
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(format!("{}{path}", self.url)))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn jobs(&self) -> u64 {
        let c = self.store.counts().await.expect("counts");
        c.queued + c.running + c.done + c.dead
    }
}

fn assert_error(body: &Value, error: &str) {
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn an_accepted_webhook_is_committed_and_readable() {
    let app = spawn_app(|_, _| {}).await;
    let (status, body) = app
        .post("/webhook/alerts", fixture("target-down-group-firing.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["duplicate"], false);
    let id: JobId = body["job_id"]
        .as_str()
        .expect("job_id")
        .parse()
        .expect("uuid");
    let record = app
        .store
        .get(id)
        .await
        .expect("get")
        .expect("the job is in the store");
    assert_eq!(record.state, JobState::Queued);
    assert_eq!(record.alertname, "TargetDown");
    let (status, body) = app.get(&format!("/analyses/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "queued");
    assert_eq!(
        body["payload"]["groupKey"],
        "{}:{alertname=\"TargetDown\", job=\"api\"}"
    );
}

#[tokio::test]
async fn duplicates_sequential_and_concurrent_make_one_job() {
    let app = spawn_app(|_, _| {}).await;
    let (_, first) = app
        .post("/webhook/alerts", fixture("target-down-single.json"))
        .await;
    let (status, again) = app
        .post("/webhook/alerts", fixture("target-down-single.json"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["job_id"], first["job_id"]);

    let body = fixture("high-load-warning.json");
    let requests = (0..20).map(|_| app.post("/webhook/alerts", body.clone()));
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers.iter().all(|(s, _)| s.is_success()), "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|(_, b)| b["duplicate"] == false)
            .count(),
        1,
        "{answers:?}"
    );
    let ids: std::collections::HashSet<_> = answers
        .iter()
        .map(|(_, b)| b["job_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.jobs().await, 2);
}

#[tokio::test]
async fn a_partial_resolution_is_a_new_job() {
    let app = spawn_app(|_, _| {}).await;
    let (a, _) = app
        .post("/webhook/alerts", fixture("target-down-group-firing.json"))
        .await;
    let (b, body) = app
        .post(
            "/webhook/alerts",
            fixture("target-down-group-one-resolved.json"),
        )
        .await;
    let (c, _) = app
        .post(
            "/webhook/alerts",
            fixture("target-down-group-resolved.json"),
        )
        .await;
    assert_eq!(
        (a, b, c),
        (
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED
        ),
        "{body}"
    );
    assert_eq!(app.jobs().await, 3);
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_store_nothing() {
    let app = spawn_app(|server, _| server.max_body_bytes = 2048).await;
    let url = format!("{}/webhook/alerts", app.url);

    let (status, body) = app
        .post("/webhook/alerts", b"{\"groupKey\": ".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "malformed_json");

    let (status, body) = app
        .post(
            "/webhook/alerts",
            br#"{"groupKey":"k","status":"firing"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_payload");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("alerts"),
        "{body}"
    );

    let (status, body) = app
        .post(
            "/webhook/alerts",
            br#"{"groupKey":"k","status":"on fire","alerts":[]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_payload");

    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(4096)).into_bytes();
    let (status, body) = app.post("/webhook/alerts", big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large");
    // Without a Content-Length (chunked), the limit still holds.
    let stream = futures_util::stream::iter(
        big.chunks(512)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let request = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream));
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large");

    let request = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body(fixture("target-down-single.json"));
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&body, "unsupported_media_type");

    let (status, body) = app.get("/analyses/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body) = app.get(&format!("/analyses/{}", JobId::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body) = app.send(app.client.get(&url)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");

    assert_eq!(app.jobs().await, 0, "no rejected request wrote anything");
}

#[tokio::test]
async fn auth_accepts_the_bearer_token_or_basic_credentials_only() {
    let app = spawn_app(|server, _| {
        server.auth.bearer_token = Some(SecretString::from(TOKEN));
        server.auth.basic_username = "alertmanager".into();
        server.auth.basic_password = Some(SecretString::from("pw"));
    })
    .await;
    let url = format!("{}/webhook/alerts", app.url);
    let post = |auth: Option<String>| {
        let mut request = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(fixture("target-down-single.json"));
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        app.send(request)
    };
    let basic = |creds: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    };
    for bad in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(basic("alertmanager:nope")),
        Some("Token x".into()),
    ] {
        let (status, body) = post(bad.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_error(&body, "unauthorized");
        assert!(!body.to_string().contains(TOKEN));
    }
    let (status, body) = app.get(&format!("/analyses/{}", JobId::new())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(app.jobs().await, 0);

    let (status, _) = post(Some(format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post(Some(basic("alertmanager:pw"))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same payload again is a duplicate, but it got through auth"
    );
    // Probes and metrics stay open for the orchestrator and Prometheus.
    assert_eq!(app.get("/health").await.0, StatusCode::OK);
    assert_eq!(app.get("/ready").await.0, StatusCode::OK);
    let (status, metrics) = app.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!metrics.to_string().contains(TOKEN));
}

#[tokio::test]
async fn a_full_queue_answers_503_so_alertmanager_retries() {
    let app = spawn_app(|_, store| store.max_queued = 1).await;
    let (status, _) = app
        .post("/webhook/alerts", fixture("target-down-single.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let response = app
        .client
        .post(format!("{}/webhook/alerts", app.url))
        .header("content-type", "application/json")
        .body(fixture("high-load-warning.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_error(&body, "queue_full");
    assert_eq!(app.jobs().await, 1);
}

#[tokio::test]
async fn split_per_alert_makes_one_job_per_alert() {
    let app = spawn_app(|server, _| server.split_per_alert = true).await;
    let (status, body) = app
        .post("/webhook/alerts", fixture("target-down-group-firing.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["job_ids"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(app.jobs().await, 2);
}

#[tokio::test]
async fn analyze_takes_one_alert_and_can_wait_for_the_result() {
    let app = spawn_app(|server, _| server.analyze_wait_secs = 10).await;
    let alert = br#"{"labels": {"alertname": "HighLoad", "instance": "n1"}, "annotations": {"summary": "load 9"}}"#;
    let (status, body) = app.post("/analyze", alert.to_vec()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id: JobId = body["job_id"].as_str().expect("id").parse().expect("uuid");
    let (_, record) = app.get(&format!("/analyses/{id}")).await;
    assert_eq!(record["source"], "manual");
    assert_eq!(record["alertname"], "HighLoad");

    // A stand-in worker finishes every job shortly after it is queued.
    let store = app.store.clone();
    tokio::spawn(async move {
        for _ in 0..100 {
            if let Ok(Some(job)) = store.claim("test-worker", Duration::from_secs(30)).await {
                let timings = StageTimings::default();
                let end = AttemptEnd {
                    timings: &timings,
                    analysis: None,
                    delivery: None,
                };
                let _ = store.complete(job.id, "test-worker", end).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (status, record) = app.post("/analyze?wait=true", alert.to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["state"], "done");

    let (status, body) = app
        .post("/analyze", br#"{"labels": {"instance": "n1"}}"#.to_vec())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_payload");
}

#[tokio::test]
async fn status_and_metrics_describe_the_queue() {
    let app = spawn_app(|_, _| {}).await;
    app.post("/webhook/alerts", fixture("target-down-group-firing.json"))
        .await;
    app.post("/webhook/alerts", fixture("target-down-group-firing.json"))
        .await;
    app.post("/webhook/alerts", b"nope".to_vec()).await;
    let (status, body) = app.get("/queue/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["queued"], 1);
    assert_eq!(body["dead"], 0);
    assert!(body["oldest_queued_age_secs"].as_f64().is_some(), "{body}");
    assert!(
        body.get("workers_busy").is_some() && body.get("workers_total").is_some(),
        "{body}"
    );

    let response = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .contains("openmetrics")
    );
    let text = response.text().await.expect("text");
    for line in [
        "aiops_webhook_requests_total{result=\"accepted\"} 1",
        "aiops_webhook_requests_total{result=\"duplicate\"} 1",
        "aiops_webhook_requests_total{result=\"rejected\"} 1",
        "aiops_alerts_received_total 4",
        "aiops_webhook_duplicates_total 1",
        "aiops_queue_jobs{state=\"queued\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408_and_stores_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(|server, _| server.request_timeout_secs = 1).await;
    let addr = app.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = "POST /webhook/alerts HTTP/1.1\r\nHost: aiops\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{\"groupKey\":";
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server must answer on its own, not wait forever"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\":\"request_timeout\""), "{text}");
    assert_eq!(app.jobs().await, 0);
}

/// A store whose database cannot be reached: every call fails as SQLite or PostgreSQL would then.
#[derive(Debug)]
struct DownStore;

fn down<T>() -> Result<T, aiops_model::StoreError> {
    Err(aiops_model::StoreError::Unavailable(
        "disk I/O error".into(),
    ))
}

#[async_trait::async_trait]
impl Store for DownStore {
    async fn enqueue(
        &self,
        _: Vec<aiops_model::NewJob>,
    ) -> Result<Vec<aiops_model::EnqueueOutcome>, aiops_model::StoreError> {
        down()
    }
    async fn claim(
        &self,
        _: &str,
        _: Duration,
    ) -> Result<Option<aiops_model::ClaimedJob>, aiops_model::StoreError> {
        down()
    }
    async fn extend_lease(
        &self,
        _: JobId,
        _: &str,
        _: Duration,
    ) -> Result<(), aiops_model::StoreError> {
        down()
    }
    async fn record_delivery(
        &self,
        _: JobId,
        _: &aiops_model::DeliveryRecord,
    ) -> Result<(), aiops_model::StoreError> {
        down()
    }
    async fn complete(
        &self,
        _: JobId,
        _: &str,
        _: AttemptEnd<'_>,
    ) -> Result<(), aiops_model::StoreError> {
        down()
    }
    async fn fail(
        &self,
        _: JobId,
        _: &str,
        _: &str,
        _: AttemptEnd<'_>,
        _: Option<time::OffsetDateTime>,
    ) -> Result<(), aiops_model::StoreError> {
        down()
    }
    async fn release(&self, _: JobId, _: &str) -> Result<(), aiops_model::StoreError> {
        down()
    }
    async fn get(
        &self,
        _: JobId,
    ) -> Result<Option<aiops_model::JobRecord>, aiops_model::StoreError> {
        down()
    }
    async fn counts(&self) -> Result<aiops_model::QueueCounts, aiops_model::StoreError> {
        down()
    }
    async fn ping(&self) -> Result<(), aiops_model::StoreError> {
        down()
    }
    async fn purge_expired(&self) -> Result<(), aiops_model::StoreError> {
        down()
    }
    async fn wait_for_work(&self, max: Duration) {
        tokio::time::sleep(max).await;
    }
    async fn add_feedback(
        &self,
        _: aiops_model::JobId,
        _: &aiops_model::Feedback,
    ) -> Result<(), aiops_model::StoreError> {
        down()
    }
    async fn judged(&self, _: u32) -> Result<Vec<aiops_model::JobId>, aiops_model::StoreError> {
        down()
    }
}

#[tokio::test]
async fn a_broken_store_answers_503_so_alertmanager_retries_and_metrics_stay_up() {
    let (url, _stop) = serve(Arc::new(DownStore), ServerConfig::default());
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{url}/webhook/alerts"))
        .header("content-type", "application/json")
        .body(fixture("target-down-single.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_error(&body, "store_unavailable");
    assert!(
        !body.to_string().contains("disk I/O"),
        "internal errors stay in the log: {body}"
    );
    let ready = client
        .get(format!("{url}/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("aiops_webhook_requests_total{result=\"unavailable\"} 1"),
        "{text}"
    );
}

// Hostile input: every client mistake gets a clear 4xx and stores nothing; nothing gets a 5xx.

#[tokio::test]
async fn hostile_bodies_get_a_clear_4xx_and_store_nothing() {
    let app = spawn_app(|_, _| {}).await;
    let url = format!("{}/webhook/alerts", app.url);
    let valid: Value = serde_json::from_slice(&fixture("target-down-single.json")).expect("json");
    let with_alert = |f: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        f(&mut v["alerts"][0]);
        serde_json::to_vec(&v).expect("encode")
    };
    let nested = {
        let mut v = valid.clone();
        v["alerts"][0]["x"] = Value::Null;
        let text = serde_json::to_string(&v).expect("encode");
        let depth = 100_000;
        text.replacen(
            "null",
            &format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            1,
        )
        .into_bytes()
    };
    let many_labels = with_alert(&|a| {
        for i in 0..10_000 {
            a["labels"][format!("label_{i}")] = Value::String("v".into());
        }
    });
    let huge_value = with_alert(&|a| {
        a["labels"]["instance"] = Value::String("x".repeat(1024 * 1024));
    });
    let mut invalid_utf8 = fixture("target-down-single.json");
    let at = invalid_utf8
        .windows(7)
        .position(|w| w == b"api\",\n" || w == b"\"api\",")
        .unwrap_or(40);
    invalid_utf8[at + 1] = 0xff;
    invalid_utf8.insert(at + 2, 0xfe);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "deeply nested JSON",
            nested,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "10,000 labels",
            many_labels,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
        ),
        (
            "a 1 MiB label value",
            huge_value,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
        ),
        (
            "invalid UTF-8",
            invalid_utf8,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "an empty body",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "a JSON array",
            b"[]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
        ),
    ];
    for (what, body, expected, error) in cases {
        let (status, answer) = app.post("/webhook/alerts", body).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert_error(&answer, error);
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(
            !detail.is_empty() && detail.len() < 1000,
            "{what}: a short, clear detail: {detail}"
        );
    }
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
    ] {
        let mut request = app
            .client
            .post(&url)
            .body(fixture("target-down-single.json"));
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let (status, body) = app.send(request).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_error(&body, "unsupported_media_type");
    }
    assert_eq!(app.jobs().await, 0, "no hostile request wrote anything");
    assert_eq!(app.get("/health").await.0, StatusCode::OK);
}

#[tokio::test]
async fn auth_bypass_attempts_are_refused() {
    let app = spawn_app(|server, _| {
        server.auth.bearer_token = Some(SecretString::from(TOKEN));
        server.auth.basic_username = "alertmanager".into();
        server.auth.basic_password = Some(SecretString::from("pw"));
    })
    .await;
    let basic = |creds: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    };
    let prefix = &TOKEN[..TOKEN.len() - 1];
    for attempt in [
        None,
        Some(format!("Token {TOKEN}")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_owned()),
        Some(format!("Bearer {prefix}")),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {TOKEN} {TOKEN}")),
        Some("Bearer ".to_owned()),
        Some("Bearer".to_owned()),
        Some(basic("alertmanager:")),
        Some(basic("alertmanager")),
        Some(basic(":pw")),
        Some(basic("other:pw")),
        Some(basic("alertmanager:p")),
        Some("Basic !!!not-base64".to_owned()),
    ] {
        for path in ["/webhook/alerts", "/analyze"] {
            let mut request = app
                .client
                .post(format!("{}{path}", app.url))
                .header("content-type", "application/json")
                .body(fixture("target-down-single.json"));
            if let Some(value) = &attempt {
                request = request.header("authorization", value);
            }
            let (status, body) = app.send(request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {attempt:?}");
            assert!(!body.to_string().contains(TOKEN));
        }
    }
    assert_eq!(app.jobs().await, 0);
}

/// The fixtures, mutated: bytes flipped, inserted, removed or cut off, and JSON values replaced by
/// arbitrary ones. Strategies from proptest, driving the real app over HTTP.
fn mutated_bodies() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let fixtures: Vec<Vec<u8>> = [
        "high-error-rate-k8s.json",
        "high-load-warning.json",
        "target-down-group-firing.json",
        "target-down-group-one-resolved.json",
        "target-down-group-resolved.json",
        "target-down-single.json",
    ]
    .into_iter()
    .map(fixture)
    .collect();
    let json = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
    ]
    .prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let bytes = (
        0..fixtures.len(),
        prop::collection::vec((any::<usize>(), 0u8..4, any::<u8>()), 1..8),
    )
        .prop_map({
            let fixtures = fixtures.clone();
            move |(i, edits)| {
                let mut body = fixtures[i].clone();
                for (at, kind, byte) in edits {
                    if body.is_empty() {
                        break;
                    }
                    let at = at % body.len();
                    match kind {
                        0 => body[at] = byte,
                        1 => body.insert(at, byte),
                        2 => drop(body.remove(at)),
                        _ => body.truncate(at),
                    }
                }
                body
            }
        });
    let structural = (
        0..fixtures.len(),
        prop::collection::vec((any::<usize>(), json), 1..4),
    )
        .prop_map(move |(i, edits)| {
            let mut value: Value = serde_json::from_slice(&fixtures[i]).expect("fixture");
            for (pick, replacement) in edits {
                let mut paths = Vec::new();
                json_paths(&value, String::new(), 0, &mut paths);
                let path = &paths[pick % paths.len()];
                if let Some(node) = value.pointer_mut(path) {
                    *node = replacement;
                }
            }
            serde_json::to_vec(&value).expect("encode")
        });
    prop_oneof![bytes, structural]
}

/// JSON pointers to every node down to depth 4 (the root too).
fn json_paths(value: &Value, at: String, depth: usize, out: &mut Vec<String>) {
    out.push(at.clone());
    if depth == 4 {
        return;
    }
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                let key = k.replace('~', "~0").replace('/', "~1");
                json_paths(v, format!("{at}/{key}"), depth + 1, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                json_paths(v, format!("{at}/{i}"), depth + 1, out);
            }
        }
        _ => {}
    }
}

/// Query strings and path segments as a fuzzer or a confused client sends them: reserved and
/// percent characters, broken escapes, repeated keys and non-ASCII text.
fn mutated_urls() -> impl proptest::strategy::Strategy<Value = (String, String)> {
    use proptest::prelude::*;
    let query = prop_oneof![
        "[a-z]{0,6}=[a-zA-Z0-9%&=;+._~!$'()*,:@/?\\[\\]-]{0,24}",
        "(wait=(true|false|yes|1|%ZZ|%00|)&?){1,3}",
        ".{0,24}",
    ];
    let segment = prop_oneof![
        "[a-zA-Z0-9%._~!$'()*,;=:@-]{0,40}",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ".{0,16}",
    ];
    (query, segment)
}

/// A client error must be `{"error", "detail"}` JSON like every other.
fn assert_json_error(status: StatusCode, answer: &Value, what: &str) {
    assert!(status.as_u16() < 500, "{what} answered {status}: {answer}");
    if status.is_client_error() {
        assert!(
            answer["error"].is_string() && answer["detail"].is_string(),
            "{what} answered {status} without a JSON error body: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_payloads_never_get_a_5xx_and_never_break_the_server() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    // No worker runs here: a mutated `?wait=true` answers 202 at once instead of waiting.
    let app = spawn_app(|server, _| server.analyze_wait_secs = 0).await;
    let strategy = (mutated_bodies(), mutated_urls());
    // A fixed seed: the same 600 cases on every run (and in CI); a failure names its body.
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..600 {
        let (body, (query, segment)) = strategy.new_tree(&mut runner).expect("a case").current();
        for path in ["/webhook/alerts", "/analyze"] {
            let (status, answer) = app.post(path, body.clone()).await;
            assert_json_error(
                status,
                &answer,
                &format!("{path} with {:?}", String::from_utf8_lossy(&body)),
            );
            *seen.entry(status.as_u16()).or_insert(0) += 1;
        }
        // The same routes with a mutated query string, and the history with a mutated id.
        for path in [
            format!("/webhook/alerts?{query}"),
            format!("/analyze?{query}"),
            format!("/analyses/{segment}?{query}"),
        ] {
            let Ok(url) = reqwest::Url::parse(&format!("{}{path}", app.url)) else {
                continue;
            };
            let request = match path.starts_with("/analyses/") {
                true => app.client.get(url),
                false => app
                    .client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(fixture("target-down-single.json")),
            };
            let (status, answer) = app.send(request).await;
            assert_json_error(status, &answer, &path);
            *seen.entry(status.as_u16()).or_insert(0) += 1;
        }
    }
    assert!(
        seen.keys().any(|s| *s >= 400),
        "the mutations reach the error paths: {seen:?}"
    );
    assert!(
        seen.keys().any(|s| *s < 300),
        "and the accepting path: {seen:?}"
    );
    assert!(
        seen.contains_key(&404),
        "and the history's lookups: {seen:?}"
    );
    assert_eq!(app.get("/health").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_bad_query_string_gets_a_json_400_and_only_after_authentication() {
    let app = spawn_app(|server, _| {
        server.auth.bearer_token = Some(SecretString::from(TOKEN));
    })
    .await;
    let post = |query: &str, auth: bool| {
        let mut request = app
            .client
            .post(format!("{}/analyze?{query}", app.url))
            .header("content-type", "application/json")
            .body(fixture("target-down-single.json"));
        if auth {
            request = request.bearer_auth(TOKEN);
        }
        request
    };
    let (status, body) = app.send(post("wait=yes", false)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "unauthorized");
    let (status, body) = app.send(post("wait=yes", true)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "invalid_query");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("wait")),
        "{body}"
    );
    assert_eq!(app.jobs().await, 0, "nothing was queued");
    let (status, body) = app.get("/analyses/not-a-job").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}
