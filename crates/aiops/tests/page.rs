//! The analysis page (`GET /analyses/{id}` for a browser) in headless Chromium (Debian package
//! `chromium`): it renders the analysis, the evidence with its Explore link and the timeline, escapes
//! what the alert carries, and a screenshot is kept as a test artifact
//! (`target/tmp/analysis-page.png`). JSON stays the answer for API clients.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, fixture};
use serde_json::Value;

/// Runs headless Chromium with `args`, bounded to a minute; a missing Chromium fails with what to
/// install.
fn chromium(args: &[String]) -> std::process::Output {
    let out = Command::new("timeout")
        .arg("60")
        .arg("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .args(args)
        .output()
        .expect("timeout runs");
    assert_ne!(
        out.status.code(),
        Some(127),
        "chromium is missing: apt-get install chromium (scripts/test.sh does)"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analysis_page_renders_in_a_browser_and_escapes_the_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        (
            "AIOPS__GRAFANA__URL",
            "https://grafana.example.com".to_owned(),
        ),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let daemon = Daemon::start(dir.path(), &env).await;
    let mut payload: Value =
        serde_json::from_str(&fixture("high-error-rate-k8s.json")).expect("JSON");
    payload["alerts"][0]["annotations"]["summary"] =
        Value::String("<script>document.title='owned'</script>5xx at 12%".into());
    let (_, body) = daemon.post_webhook(payload.to_string()).await;
    let job = body["job_id"].as_str().expect("id").to_owned();
    daemon.drain(Duration::from_secs(30)).await;
    let url = format!("{}/analyses/{job}", daemon.url);

    // API clients keep getting JSON.
    let client = reqwest::Client::new();
    for accept in [
        "application/json",
        "*/*",
        "application/json, text/html;q=0.9",
    ] {
        let r = client
            .get(&url)
            .header("accept", accept)
            .send()
            .await
            .expect("answers");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .is_ok_and(|c| c.starts_with("application/json")),
            "{accept}"
        );
    }
    let record = daemon.get(&format!("/analyses/{job}")).await;
    let root_cause = record["analysis"]["root_cause"]
        .as_str()
        .expect("an analysis")
        .to_owned();

    let dom = chromium(&["--dump-dom".to_owned(), url.clone()]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<title>HighErrorRate · aiops</title>"),
        "{dom}"
    );
    assert!(dom.contains("Probable cause"), "{dom}");
    // The page escapes what it shows: the root cause as text, the alert's markup never run.
    let escaped = root_cause
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert!(dom.contains(&escaped), "{root_cause} in {dom}");
    assert!(
        dom.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;5xx at 12%")
            && !dom.contains("<script"),
        "the alert's markup is text, never run (the title above is still aiops'): {dom}"
    );
    assert!(dom.contains("received"), "the timeline: {dom}");
    assert!(dom.contains("delivered to stdout"), "{dom}");
    assert!(
        dom.contains("href=\"https://grafana.example.com/explore?"),
        "an Explore link per query: {dom}"
    );
    for evidence in record["analysis"]["evidence"].as_array().expect("evidence") {
        let id = evidence["id"].as_str().expect("id");
        assert!(dom.contains(&format!("<code>{id}</code>")), "{id}");
    }

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("analysis-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=412,1800".to_owned(),
        url,
    ]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(png.len() > 10_000, "{} bytes: a blank page?", png.len());
    assert!(daemon.terminate(Duration::from_secs(20)), "clean exit");
}
