//! A real Prometheus (Debian package `prometheus`) holding one scenario's metrics: TSDB blocks built
//! with `promtool tsdb create-blocks-from openmetrics`, served on a free loopback port, scraping the
//! scenario's `# TYPE` lines so that `/api/v1/metadata` answers as on a live server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running Prometheus; killed and its data removed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    pub url: String,
    /// Holds the blocks, the config and the log.
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Says which package to install when `program` is missing.
fn missing(program: &str, e: &std::io::Error) -> String {
    format!(
        "cannot run {program} ({e}): install the Debian package `prometheus` (apt-get install prometheus)"
    )
}

/// Fails with a message naming the package when `prometheus` or `promtool` is not installed.
pub fn check_installed() -> Result<(), String> {
    for program in ["prometheus", "promtool"] {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| missing(program, &e))?;
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

impl Prometheus {
    /// Builds blocks from `openmetrics` (absolute timestamps) and starts Prometheus on them, scraping
    /// `metadata_target` (`host:port`, path `/metrics`) every second. Waits, bounded, until it is
    /// ready and, when `wait_metadata`, until its first scrape has filled `/api/v1/metadata`.
    pub async fn start(
        openmetrics: &str,
        metadata_target: &str,
        wait_metadata: bool,
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp folder: {e}"))?;
        let input = dir.path().join("metrics.om");
        let data = dir.path().join("data");
        std::fs::write(&input, openmetrics)
            .map_err(|e| format!("cannot write the metrics: {e}"))?;
        let built = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .map_err(|e| missing("promtool", &e))?;
        if !built.status.success() {
            return Err(format!(
                "promtool could not build blocks from metrics.om: {}{}",
                String::from_utf8_lossy(&built.stdout),
                String::from_utf8_lossy(&built.stderr)
            ));
        }
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: aiops_eval_metadata\n    static_configs:\n      - targets: ['{metadata_target}']\n"
            ),
        )
        .map_err(|e| format!("cannot write the config: {e}"))?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .map_err(|e| format!("cannot create the log: {e}"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=30d")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| missing("prometheus", &e))?;
        let prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        prometheus.wait_until("/-/ready", |_| true).await?;
        if wait_metadata {
            prometheus
                .wait_until("/api/v1/metadata", |body| {
                    body["data"].as_object().is_some_and(|m| !m.is_empty())
                })
                .await?;
        }
        Ok(prometheus)
    }

    /// Polls `path` every 100 ms, for at most 30 s, until it answers 200 with a body `done` accepts.
    async fn wait_until(
        &self,
        path: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(), String> {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{}{path}", self.url)).send().await
                && r.status().is_success()
            {
                let body = r.json().await.unwrap_or(serde_json::Value::Null);
                if done(&body) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "Prometheus did not answer {path} in time; its log:\n{}",
            self.log()
        ))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The HTTP requests this Prometheus has served, by its own `prometheus_http_requests_total`,
    /// not counting the reads of `/metrics` that take this figure.
    pub async fn served_requests(&self) -> Result<f64, String> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("Prometheus did not answer /metrics: {e}"))?
            .text()
            .await
            .map_err(|e| format!("Prometheus' /metrics: {e}"))?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("prometheus_http_requests_total{"))
            .filter(|l| !l.contains("handler=\"/metrics\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// An instant query at `at` (Unix seconds): the number of series it returns.
    pub async fn count_at(&self, query: &str, at: i64) -> Result<usize, String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            [("query", query), ("time", &at.to_string())],
        )
        .map_err(|e| e.to_string())?;
        let answer: serde_json::Value = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .map_err(|e| format!("Prometheus: {e}"))?
            .json()
            .await
            .map_err(|e| format!("Prometheus: {e}"))?;
        if answer["status"] != "success" {
            return Err(format!("Prometheus refused {query:?}: {}", answer["error"]));
        }
        Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
    }
}
