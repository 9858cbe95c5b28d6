//! The analysis page (`GET /analyses/{id}` for a browser) in headless Chromium (Debian package
//! `chromium`): it renders the analysis, the evidence with its Explore link, the timeline and the
//! group's graph (drawn from a real Prometheus, Debian `prometheus`), escapes what the alert
//! carries, and a screenshot is kept as a test artifact (`target/tmp/analysis-page.png`). JSON
//! stays the answer for API clients. The graph's link, which Slack (webhook mode, faked) fetches
//! without credentials, answers only when signed.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, Proc, fixture, free_port};
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An id of no job.
fn uuid_like_job() -> String {
    "0190c0de-0000-7000-8000-000000000000".to_owned()
}

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

/// A real Prometheus scraping itself every second, with a few samples of `up` in it.
async fn prometheus(dir: &Path) -> (Proc, String, u16) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    \
             static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        ),
    )
    .expect("config");
    let prometheus = Proc::spawn(
        "prometheus",
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        dir,
        "prometheus",
    );
    prometheus
        .wait_ready(&format!("{url}/-/ready"), Duration::from_secs(20))
        .await;
    let client = reqwest::Client::new();
    for _ in 0..80 {
        let answer: Value = client
            .get(format!("{url}/api/v1/query?query=count_over_time(up[1m])"))
            .send()
            .await
            .expect("Prometheus answers")
            .json()
            .await
            .expect("JSON");
        let samples = answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if samples >= 3.0 {
            return (prometheus, url, port);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("Prometheus scraped nothing in 20 s");
}

/// Pixels of the graph's alerting series' red in an RGB(A) PNG.
fn red_pixels(png_bytes: &[u8]) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let red = buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| {
            p.len() >= 3
                && (i16::from(p[0]) - 214).abs() < 24
                && (i16::from(p[1]) - 39).abs() < 24
                && (i16::from(p[2]) - 40).abs() < 24
        })
        .count();
    (info.width, info.height, red)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analysis_page_renders_in_a_browser_with_its_graph_and_escapes_the_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_prometheus, prom_url, prom_port) = prometheus(dir.path()).await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let env = [
        (
            "AIOPS__GRAFANA__URL",
            "https://grafana.example.com".to_owned(),
        ),
        ("AIOPS__WORKER__POLL_INTERVAL_MS", "100".to_owned()),
        ("AIOPS__PROMETHEUS__URL", prom_url.clone()),
        (
            "AIOPS__SLACK__WEBHOOK_URL",
            format!("{}/services/T1/B1/hook", slack.uri()),
        ),
        ("AIOPS__NOTIFY__PUBLIC_URL", public.clone()),
        ("AIOPS__NOTIFY__LINK_KEY", "page-test-link-key".to_owned()),
    ];
    let daemon = Daemon::start_on(dir.path(), port, &env).await;
    let mut payload: Value =
        serde_json::from_str(&fixture("high-error-rate-k8s.json")).expect("JSON");
    payload["alerts"][0]["annotations"]["summary"] =
        Value::String("<script>document.title='owned'</script>5xx at 12%".into());
    // The rule is on a series the real Prometheus has: its own `up`, which this alert is about.
    let alert = &mut payload["alerts"][0];
    alert["generatorURL"] = Value::String(format!("{prom_url}/graph?g0.expr=up+%3D%3D+1&g0.tab=1"));
    alert["labels"]["job"] = Value::String("prometheus".into());
    alert["labels"]["instance"] = Value::String(format!("127.0.0.1:{prom_port}"));
    alert["startsAt"] = Value::String(
        (time::OffsetDateTime::now_utc() - time::Duration::seconds(3))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a time"),
    );
    let (_, body) = daemon.post_webhook(payload.to_string()).await;
    let job = body["job_id"].as_str().expect("id").to_owned();
    daemon.drain(Duration::from_secs(30)).await;
    let url = format!("{}/analyses/{job}", daemon.url);

    // Slack (webhook mode) got an image block; Slack fetches it without credentials, so the signed
    // link answers the PNG; without its signature, or altered, it answers 403.
    let posted = common::json_bodies(&slack).await;
    assert_eq!(posted.len(), 1, "{posted:?}");
    let image_url = posted[0]["attachments"][0]["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["type"] == "image")
        .and_then(|b| b["image_url"].as_str())
        .unwrap_or_else(|| panic!("an image block: {}", posted[0]))
        .to_owned();
    assert!(
        image_url.starts_with(&format!("{public}/analyses/{job}/graph.png?sig=")),
        "{image_url}"
    );
    let client = reqwest::Client::new();
    let graph = client.get(&image_url).send().await.expect("answers");
    assert_eq!(graph.status(), 200, "{}", daemon.log());
    assert_eq!(graph.headers()["content-type"], "image/png");
    let graph = graph.bytes().await.expect("a body");
    let (width, height, red) = red_pixels(&graph);
    assert_eq!((width, height), (960, 540));
    assert!(
        red > 100,
        "the alerting series is drawn in red: {red} pixels"
    );
    let sig = image_url
        .rsplit_once("sig=")
        .map(|(_, s)| s.to_owned())
        .expect("sig");
    let altered = format!(
        "{}{}",
        &sig[..sig.len() - 1],
        if sig.ends_with('0') { '1' } else { '0' }
    );
    let other_job = uuid_like_job();
    for forbidden in [
        format!("{url}/graph.png"),
        format!("{url}/graph.png?sig="),
        format!("{url}/graph.png?sig={altered}"),
        format!("{}/analyses/{other_job}/graph.png?sig={sig}", daemon.url),
    ] {
        let r = client.get(&forbidden).send().await.expect("answers");
        assert_eq!(r.status(), 403, "{forbidden}");
    }

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
    let img = format!("<img src=\"./{job}/graph.png?sig={sig}\"");
    assert!(dom.contains(&img), "the graph, by its signed link: {dom}");
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
        "--window-size=412,2600".to_owned(),
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
    let (_, _, red) = red_pixels(&png);
    assert!(red > 50, "the browser shows the graph: {red} red pixels");
    assert!(daemon.terminate(Duration::from_secs(20)), "clean exit");
}
