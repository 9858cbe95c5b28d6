//! Canary secrets through the real binary: the LLM key, the Slack bot token, the webhook URL and its
//! auth header, the API's bearer token, and secrets planted in the log lines Loki returns. None may
//! appear in the daemon's log (at debug level), error bodies, `/metrics`, `/queue/status`,
//! `/analyses/{id}`, or anything sent to the LLM.

mod common;

use std::time::Duration;

use common::{Daemon, fixture};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const API_TOKEN: &str = "canary-api-token-4a1f";
const LLM_KEY: &str = "sk-canaryLLMkey0000000000000";
const BOT_TOKEN: &str = "xoxb-canary-bot-token-9999";
const HOOK_PATH: &str = "/hooks/canary-webhook-path-77";
const HOOK_AUTH: &str = "Bearer canary-webhook-auth-88";
const LINK_KEY: &str = "canary-link-key-66";
/// Secrets a service wrote into its own logs, which Loki returns.
const LOG_SECRETS: [&str; 3] = [
    "canary-db-password-55",
    "AKIACANARYKEY1234567",
    "eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOjF9.c2lnbmF0dXJlY2FuYXJ5",
];

fn all_canaries() -> Vec<&'static str> {
    let mut all = vec![
        API_TOKEN,
        LLM_KEY,
        BOT_TOKEN,
        "canary-webhook-path-77",
        "canary-webhook-auth-88",
        LINK_KEY,
    ];
    all.extend(LOG_SECRETS);
    all
}

fn assert_clean(what: &str, text: &str) {
    for canary in all_canaries() {
        assert!(
            !text.contains(canary),
            "{canary} leaked into {what}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_never_leave_where_they_belong() {
    let loki = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": ["service_name", "level"]})),
        )
        .mount(&loki)
        .await;
    common::loki_label_values(&loki, std::time::Duration::ZERO).await;
    let now_ns = time::OffsetDateTime::now_utc()
        .unix_timestamp_nanos()
        .to_string();
    let lines = [
        format!(
            "level=error msg=\"login to db failed\" password={}",
            LOG_SECRETS[0]
        ),
        format!(
            "level=error msg=\"s3 upload failed\" key={}",
            LOG_SECRETS[1]
        ),
        format!(
            "level=error msg=\"token rejected\" Authorization: Bearer {}",
            LOG_SECRETS[2]
        ),
    ];
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": [{
                    "stream": {"service_name": "checkout", "level": "error"},
                    "values": lines.iter().map(|l| json!([now_ns, l])).collect::<Vec<_>>(),
                }],
                "stats": {},
            },
        })))
        .mount(&loki)
        .await;
    let llm = MockServer::start().await;
    let answer = json!({
        "summary": "checkout cannot reach its database", "root_cause": "db credentials rejected",
        "confidence": 0.6, "category": "dependency_failure", "impact": "payments fail",
        "evidence": [{"id": "logs-errors", "note": "the errors"}],
        "remediation": ["rotate the db credentials"], "next_queries": [],
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        })))
        .mount(&llm)
        .await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"ok": true, "channel": "C1", "ts": "1700000000.000100", "message": {}}),
        ))
        .mount(&slack)
        .await;
    // The LLM is slow to Slack's eyes: a first look is posted, then updated with the analysis.
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"ok": true, "channel": "C1", "ts": "1700000000.000100", "text": ""}),
        ))
        .mount(&slack)
        .await;
    let hook = MockServer::start().await;
    // The webhook refuses once (its error must not carry the URL), then takes the document.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("no such hook yet"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("AIOPS__LOG__LEVEL", "debug".to_owned()),
        ("AIOPS__SERVER__AUTH__BEARER_TOKEN", API_TOKEN.to_owned()),
        ("AIOPS__LOKI__URL", loki.uri()),
        ("AIOPS__LLM__PROVIDER", "openai-compatible".to_owned()),
        ("AIOPS__LLM__BASE_URL", format!("{}/v1", llm.uri())),
        ("AIOPS__LLM__MODEL", "m".to_owned()),
        ("AIOPS__LLM__API_KEY", LLM_KEY.to_owned()),
        ("AIOPS__SLACK__BOT_TOKEN", BOT_TOKEN.to_owned()),
        ("AIOPS__SLACK__CHANNEL", "#alerts".to_owned()),
        ("AIOPS__SLACK__API_URL", format!("{}/api", slack.uri())),
        ("AIOPS__WEBHOOK__URL", format!("{}{HOOK_PATH}", hook.uri())),
        ("AIOPS__WEBHOOK__AUTHORIZATION", HOOK_AUTH.to_owned()),
        ("AIOPS__NOTIFY__LINK_KEY", LINK_KEY.to_owned()),
        ("AIOPS__WEBHOOK__MAX_RETRIES", "0".to_owned()),
        ("AIOPS__WORKER__BACKOFF_BASE_SECS", "1".to_owned()),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let daemon = Daemon::start(dir.path(), &env).await;
    let client = reqwest::Client::new();
    let post = |auth: Option<&str>| {
        let mut request = client
            .post(format!("{}/webhook/alerts", daemon.url))
            .header("content-type", "application/json")
            .body(fixture("high-error-rate-k8s.json"));
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        request.send()
    };
    // Error bodies: wrong credentials, including a prefix of the real token.
    for bad in [
        None,
        Some("Bearer wrong"),
        Some(&format!("Bearer {}", &API_TOKEN[..10])),
    ] {
        let response = post(bad).await.expect("answers");
        assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
        assert_clean("a 401 body", &response.text().await.expect("body"));
    }
    let response = post(Some(&format!("Bearer {API_TOKEN}")))
        .await
        .expect("answers");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let record = loop {
        let record: Value = client
            .get(format!("{}/analyses/{id}", daemon.url))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        if record["state"] == "done" || record["state"] == "dead" {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "{record}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    assert_eq!(record["state"], "done", "{record}");
    assert_eq!(
        record["attempts"], 2,
        "the webhook's refusal made a second attempt"
    );
    // The log lines reached the analysis, redacted.
    let evidence = record["analysis"]["evidence"].to_string();
    assert!(evidence.contains("login to db failed"), "{record}");
    assert!(evidence.contains("[REDACTED]"), "{record}");
    assert_clean("/analyses/{id}", &record.to_string());
    let requests = llm.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    let prompt = String::from_utf8_lossy(&requests[0].body).into_owned();
    assert!(
        prompt.contains("login to db failed"),
        "the log line is evidence"
    );
    assert_clean("the LLM request", &prompt);
    let status = daemon.get("/queue/status").await;
    assert_clean("/queue/status", &status.to_string());
    assert_clean("/metrics", &daemon.metrics().await);
    // The webhook's 404 was recorded as a delivery error: without its URL.
    assert!(
        daemon.log().contains("no such hook"),
        "the webhook failure is logged"
    );
    assert_clean("the log", &daemon.log());
    // What Slack and the webhook received is not checked for the planted secrets: the sinks get the
    // analysis (redacted already), and they must see their own credentials.
    let posted = slack.received_requests().await.expect("recorded");
    assert_eq!(posted.len(), 2, "the first look and its update");
    for request in &posted {
        let slack_body = String::from_utf8_lossy(&request.body);
        for secret in LOG_SECRETS {
            assert!(!slack_body.contains(secret), "{secret} reached Slack");
        }
    }
}
