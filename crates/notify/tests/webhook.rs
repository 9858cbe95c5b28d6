//! The generic webhook sink against a fake receiver: what it sends, and how it classifies failures.

use std::time::Duration;

use aiops_model::alertmanager::parse_webhook;
use aiops_model::{JobId, Notification, Notifier};
use aiops_notify::{Document, WebhookNotifier};
use secrecy::SecretString;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn payload() -> aiops_model::WebhookPayload {
    let path = format!(
        "{}/../../tests/fixtures/alertmanager/target-down-group-resolved.json",
        env!("CARGO_MANIFEST_DIR")
    );
    parse_webhook(&std::fs::read(path).expect("fixture")).expect("parses")
}

async fn sink(server: &MockServer, status: u16) -> WebhookNotifier {
    Mock::given(method("POST"))
        .and(path("/hook/s3cret-token"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(status))
        .mount(server)
        .await;
    let url = SecretString::from(format!("{}/hook/s3cret-token", server.uri()));
    WebhookNotifier::new(url, Duration::from_secs(2)).expect("valid URL")
}

#[tokio::test]
async fn posts_the_document_as_json() {
    let server = MockServer::start().await;
    let notifier = sink(&server, 204).await;
    let payload = payload();
    let job_id = JobId::new();
    notifier
        .deliver(Notification {
            job_id,
            payload: &payload,
            analysis: None,
            firings: 1,
        })
        .await
        .expect("2xx");
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]
            .headers
            .get("idempotency-key")
            .map(|v| v.as_bytes()),
        Some(job_id.to_string().as_bytes()),
        "a receiver can drop a repeat of the same job"
    );
    let doc: Document = serde_json::from_slice(&requests[0].body).expect("a document");
    assert_eq!(
        (doc.job_id, doc.kind.as_str(), doc.alerts_resolved),
        (job_id, "resolved", 1)
    );
}

#[tokio::test]
async fn server_errors_are_retriable_client_errors_are_not_and_the_url_never_leaks() {
    let payload = payload();
    let n = Notification {
        job_id: JobId::new(),
        payload: &payload,
        analysis: None,
        firings: 1,
    };
    for (status, retriable) in [
        (500, true),
        (503, true),
        (429, true),
        (400, false),
        (404, false),
    ] {
        let server = MockServer::start().await;
        let err = sink(&server, status)
            .await
            .deliver(n)
            .await
            .expect_err("a failure");
        assert_eq!(err.retriable, retriable, "{status}: {err}");
        assert!(!err.message.contains("s3cret"), "{err}");
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = SecretString::from(format!("http://{closed}/hook/s3cret-token"));
    let err = WebhookNotifier::new(url, Duration::from_secs(2))
        .expect("valid")
        .deliver(n)
        .await;
    let err = err.expect_err("nothing listens");
    assert!(err.retriable, "{err}");
    assert!(!err.message.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn sends_the_authorization_header_and_retries_a_503_within_the_delivery() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer hook-s3cret"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let notifier = WebhookNotifier::with_auth(
        SecretString::from(format!("{}/hook", server.uri())),
        Some(SecretString::from("Bearer hook-s3cret")),
        Duration::from_secs(2),
        1,
    )
    .expect("valid");
    let payload = payload();
    notifier
        .deliver(Notification {
            job_id: JobId::new(),
            payload: &payload,
            analysis: None,
            firings: 1,
        })
        .await
        .expect("delivered on the retry");
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| {
        r.headers
            .get("authorization")
            .is_some_and(|v| v == "Bearer hook-s3cret")
    }));
    assert!(!format!("{notifier:?}").contains("s3cret"));
}
