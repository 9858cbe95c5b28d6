//! Slack's buttons against the real binary and a real Alertmanager (Debian package
//! `prometheus-alertmanager`): a correctly signed "Silence 1h" creates the silence (read back from
//! `/api/v2/silences`) and amends the message through `response_url`; a replayed request, a wrong
//! signature, an old timestamp and a missing signature get 401 and create nothing; feedback is
//! stored on the job and counted; "Re-analyze" queues a new analysis of the group.

mod common;

use std::time::Duration;

use common::{Daemon, Proc, fixture};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn start_alertmanager(dir: &std::path::Path) -> (Proc, String) {
    common::alertmanager(
        dir,
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
}

/// A `block_actions` payload as Slack sends it when `action` is pressed on aiops' message.
fn press(action: &str, job: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0ONCALL", "username": "alice", "name": "alice", "team_id": "T0ACME"},
        "api_app_id": "A0AIOPS", "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0ALERTS",
                      "is_ephemeral": false},
        "trigger_id": "1700000001.1.abc", "team": {"id": "T0ACME", "domain": "acme"},
        "channel": {"id": "C0ALERTS", "name": "alerts"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "TargetDown · 2 alerts",
                    "blocks": [{"type": "section", "block_id": "top",
                                "text": {"type": "mrkdwn", "text": "*TargetDown* · 2 alerts"}}]},
        "response_url": response_url,
        "actions": [{"action_id": action, "block_id": "aiops_actions", "value": job, "type": "button",
                     "text": {"type": "plain_text", "text": action, "emoji": true},
                     "action_ts": "1700000001.000200"}],
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form")
}

fn sign(timestamp: i64, body: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    format!(
        "v0={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn post(
    daemon: &Daemon,
    body: &str,
    timestamp: Option<i64>,
    signature: Option<String>,
) -> reqwest::StatusCode {
    let mut request = reqwest::Client::new()
        .post(format!("{}/slack/interactions", daemon.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(ts) = timestamp {
        request = request.header("x-slack-request-timestamp", ts.to_string());
    }
    if let Some(sig) = signature {
        request = request.header("x-slack-signature", sig);
    }
    request.send().await.expect("aiops answers").status()
}

async fn silences(am: &str) -> Vec<Value> {
    reqwest::get(format!("{am}/api/v2/silences"))
        .await
        .expect("Alertmanager answers")
        .json::<Vec<Value>>()
        .await
        .expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_buttons_act_and_unsigned_stale_or_replayed_ones_do_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (am_proc, am) = start_alertmanager(dir.path());
    am_proc
        .wait_ready(&format!("{am}/-/ready"), Duration::from_secs(20))
        .await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/actions/T0ACME/1/xyz"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&slack)
        .await;
    let response_url = format!("{}/actions/T0ACME/1/xyz", slack.uri());
    let env = [
        ("AIOPS__SLACK__SIGNING_SECRET", SECRET.to_owned()),
        ("AIOPS__ALERTMANAGER__URL", am.clone()),
        (
            "AIOPS__NOTIFY__PUBLIC_URL",
            "https://aiops.example.com".to_owned(),
        ),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let daemon = Daemon::start(dir.path(), &env).await;
    let (_, body) = daemon
        .post_webhook(fixture("target-down-group-firing.json"))
        .await;
    let job = body["job_id"].as_str().expect("id").to_owned();
    daemon.drain(Duration::from_secs(30)).await;

    // Silence 1h, signed as Slack signs it.
    let silence = press("silence_1h", &job, &response_url);
    let ts = now();
    let status = post(
        &daemon,
        &silence,
        Some(ts),
        Some(sign(ts, &silence, SECRET)),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{}", daemon.log());
    let made = silences(&am).await;
    assert_eq!(made.len(), 1, "{made:?}");
    let s = &made[0];
    let mut matchers: Vec<(String, String, bool, bool)> = s["matchers"]
        .as_array()
        .expect("matchers")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_owned(),
                m["value"].as_str().unwrap_or("").to_owned(),
                m["isRegex"] == true,
                m["isEqual"] != false,
            )
        })
        .collect();
    matchers.sort();
    let expected: Vec<(String, String, bool, bool)> = [
        ("alertname", "TargetDown"),
        ("cluster", "demo"),
        ("job", "api"),
        ("severity", "critical"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned(), false, true))
    .collect();
    assert_eq!(matchers, expected, "the group's common labels: {s}");
    assert_eq!(s["createdBy"], "alice (Slack)", "{s}");
    assert_eq!(s["status"]["state"], "active", "{s}");
    assert!(
        s["comment"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("https://aiops.example.com/analyses/{job}"))),
        "{s}"
    );
    let ends = time::OffsetDateTime::parse(
        s["endsAt"].as_str().expect("endsAt"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("a time")
    .unix_timestamp();
    assert!((ends - (ts + 3600)).abs() <= 60, "an hour: {s}");

    // The message says who silenced it and until when (bounded wait: the update is in the
    // background).
    let mut amended = None;
    for _ in 0..50 {
        let bodies = common::json_bodies(&slack).await;
        if let Some(b) = bodies.first() {
            amended = Some(b.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let amended = amended.expect("the message was amended through response_url");
    assert_eq!(amended["replace_original"], true, "{amended}");
    let blocks = amended["blocks"].as_array().expect("blocks");
    assert_eq!(
        blocks[0]["block_id"], "top",
        "the original blocks first: {amended}"
    );
    let line = blocks[1]["elements"][0]["text"].as_str().unwrap_or("");
    assert!(
        line.starts_with("🔕 Silenced for 1h by <@U0ONCALL>, until "),
        "{line}"
    );

    // Replayed, badly signed, stale, unsigned: 401, and nothing more is made.
    let replay = post(
        &daemon,
        &silence,
        Some(ts),
        Some(sign(ts, &silence, SECRET)),
    )
    .await;
    let other = press("silence_4h", &job, &response_url);
    let t = now();
    let wrong = post(
        &daemon,
        &other,
        Some(t),
        Some(sign(t, &other, "not-the-secret")),
    )
    .await;
    let old = t - 400;
    let stale = post(&daemon, &other, Some(old), Some(sign(old, &other, SECRET))).await;
    let unsigned = post(&daemon, &other, Some(t), None).await;
    assert_eq!(
        [replay, wrong, stale, unsigned],
        [reqwest::StatusCode::UNAUTHORIZED; 4]
    );
    assert_eq!(silences(&am).await.len(), 1, "nothing more was silenced");

    // Signed but not Slack's form: 400 for JSON that is not JSON, 422 for a form without it.
    let t = now();
    for (garbage, expected) in [("payload=%7Bnot-json", 400), ("nothing=here", 422)] {
        let status = post(&daemon, garbage, Some(t), Some(sign(t, garbage, SECRET))).await;
        assert_eq!(status.as_u16(), expected, "{garbage}");
    }

    // Feedback: stored on the job with the user, counted.
    let wrong_answer = press("feedback_wrong", &job, &response_url);
    let t = now();
    let status = post(
        &daemon,
        &wrong_answer,
        Some(t),
        Some(sign(t, &wrong_answer, SECRET)),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let record = daemon.get(&format!("/analyses/{job}")).await;
    let feedback = record["feedback"].as_array().expect("feedback");
    assert_eq!(feedback.len(), 1, "{record}");
    assert_eq!(
        (
            feedback[0]["verdict"].as_str(),
            feedback[0]["user"].as_str()
        ),
        (Some("wrong"), Some("alice"))
    );

    // The judged analysis becomes a scenario skeleton (`aiops eval --export-feedback`).
    let out = dir.path().join("exported");
    let export = std::process::Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(["eval", "--export-feedback"])
        .arg(&out)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "AIOPS__STORE__URL",
            format!("sqlite://{}", dir.path().join("aiops.db").display()),
        )
        .output()
        .expect("aiops runs");
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let folder = out.join(format!("feedback-target-down-{}", &job[..8]));
    let alert: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join("alert.json")).expect("alert.json"),
    )
    .expect("JSON");
    assert_eq!(
        alert["groupKey"], "{}:{alertname=\"TargetDown\", job=\"api\"}",
        "{alert}"
    );
    assert_eq!(alert["alerts"][0]["startsAt"], "-15m");
    let expect = std::fs::read_to_string(folder.join("expect.toml")).expect("expect.toml");
    assert!(expect.contains("# alice judged it wrong at "), "{expect}");
    assert!(expect.contains("category = \"unknown\""), "{expect}");
    let evidence = std::fs::read_to_string(folder.join("evidence.md")).expect("evidence.md");
    assert!(
        evidence.starts_with("# What aiops saw: TargetDown"),
        "{evidence}"
    );

    // Re-analyze: a new job for the same group.
    let again = press("reanalyze", &job, &response_url);
    let t = now();
    let status = post(&daemon, &again, Some(t), Some(sign(t, &again, SECRET))).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let queue = daemon.drain(Duration::from_secs(30)).await;
    assert_eq!(queue["done"], 2, "{queue}");

    let metrics = daemon.metrics().await;
    for line in [
        "aiops_feedback_total{verdict=\"wrong\"} 1",
        "aiops_feedback_total{verdict=\"right\"} 0",
        "aiops_slack_interactions_total{action=\"silence_1h\",result=\"ok\"} 1",
        "aiops_slack_interactions_total{action=\"refused\",result=\"unauthorized\"} 4",
        "aiops_slack_interactions_total{action=\"reanalyze\",result=\"ok\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    let log = daemon.log();
    for shown in [&log, &metrics] {
        assert!(!shown.contains(SECRET), "the signing secret leaked");
    }
    assert!(daemon.terminate(Duration::from_secs(20)), "clean exit");
}
