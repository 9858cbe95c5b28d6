//! Runs the real `aiops` binary as a child process on a free loopback port, and stops it when dropped.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Daemon {
    child: Child,
    pub url: String,
    pub stderr: PathBuf,
    client: reqwest::Client,
}

impl Daemon {
    /// Starts `aiops serve` with the given `AIOPS__…` settings, its store and logs in `dir`, and waits
    /// (bounded) until it is ready.
    pub async fn start(dir: &Path, env: &[(&str, String)]) -> Self {
        Self::start_on(dir, free_port(), env).await
    }

    /// [`Daemon::start`] on a given port (a restart on the same address).
    pub async fn start_on(dir: &Path, port: u16, env: &[(&str, String)]) -> Self {
        let stderr = dir.join(format!("aiops-{port}-{}.log", uuid_like()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_aiops"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AIOPS__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "AIOPS__STORE__URL",
                format!("sqlite://{}", dir.join("aiops.db").display()),
            )
            .env("AIOPS__LOG__LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("log file"));
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("the aiops binary starts");
        let daemon = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            stderr,
            client: reqwest::Client::new(),
        };
        daemon.wait_ready().await;
        daemon
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/ready", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("aiops did not become ready; its log:\n{}", self.log());
    }

    /// The daemon's resident memory, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded by `max`) for the process to exit; returns whether it exited 0.
    pub fn terminate(mut self, max: Duration) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "cannot signal {pid}");
        let deadline = std::time::Instant::now() + max;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "aiops did not stop within {max:?} of SIGTERM; its log:\n{}",
            self.log()
        );
    }

    /// `kill -9`: no shutdown code runs.
    /// A stand-in while a daemon is being replaced: a process that has already exited.
    pub fn placeholder() -> Self {
        let mut child = Command::new("true").spawn().expect("true runs");
        let _ = child.wait();
        Self {
            child,
            url: String::new(),
            stderr: PathBuf::new(),
            client: reqwest::Client::new(),
        }
    }

    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }

    /// POSTs a webhook body as Alertmanager does; returns the status and the JSON answer.
    pub async fn post_webhook(&self, body: String) -> (reqwest::StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/webhook/alerts", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the daemon answers");
        (
            response.status(),
            response.json().await.expect("a JSON body"),
        )
    }

    /// Like [`Daemon::post_webhook`], but a failed request (the daemon is down) is `None`, not a panic.
    pub async fn try_post_webhook(&self, body: String) -> (Option<reqwest::StatusCode>, Value) {
        let sent = self
            .client
            .post(format!("{}/webhook/alerts", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                (Some(status), response.json().await.unwrap_or_default())
            }
            Err(_) => (None, Value::Null),
        }
    }

    /// POSTs until the daemon acknowledges (2xx), every 250 ms as Alertmanager retries a failure,
    /// for at most `max`; the job id of the answer, `None` if it never came.
    pub async fn post_until_accepted(&self, body: String, max: Duration) -> Option<String> {
        for _ in 0..max.as_millis().div_ceil(250) {
            let (status, answer) = self.try_post_webhook(body.clone()).await;
            if status.is_some_and(|s| s.is_success()) {
                return answer["job_id"].as_str().map(str::to_owned);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("request");
        response.json().await.expect("json")
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("request");
        response.text().await.expect("text")
    }

    /// Waits (bounded by `max`) until nothing is queued or running; returns the last status.
    pub async fn drain(&self, max: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let status = self.get("/queue/status").await;
            if status["queued"] == 0 && status["running"] == 0 {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue not drained in {max:?}: {status}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../tests/fixtures/alertmanager/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The fixture with its first fingerprint replaced, so each call makes a distinct group.
pub fn distinct_payload(n: usize) -> String {
    let mut payload: Value =
        serde_json::from_str(&fixture("target-down-single.json")).expect("json");
    payload["alerts"][0]["fingerprint"] = Value::String(format!("crash-{n:05}"));
    payload.to_string()
}

/// Slack's `chat.update` on a fake Web API: ok, echoing the message's channel and ts (the edits aiops
/// makes: the first look completed, an incident marked resolved).
pub async fn mount_chat_update(slack: &wiremock::MockServer) {
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/api/chat.update"))
        .respond_with(|request: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "ok": true, "channel": body["channel"], "ts": body["ts"], "text": body["text"],
            }))
        })
        .mount(slack)
        .await;
}

/// A real Alertmanager (Debian package `prometheus-alertmanager`) with `config` (YAML), its data in
/// `dir`, on a free loopback port, clustering off; and its URL.
pub fn alertmanager(dir: &Path, config: &str) -> (Proc, String) {
    let config_file = dir.join("alertmanager.yml");
    std::fs::write(&config_file, config).expect("write config");
    let port = free_port();
    let args = vec![
        format!("--config.file={}", config_file.display()),
        format!("--storage.path={}", dir.join("am-data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".to_owned(),
    ];
    let am = Proc::spawn(
        "prometheus-alertmanager",
        &args,
        dir,
        "prometheus-alertmanager",
    );
    (am, format!("http://127.0.0.1:{port}"))
}

/// A child process (Prometheus, Alertmanager, node-exporter), killed when dropped.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`, its output in `dir/<program>.log`. A missing program fails the
    /// test with the Debian package to install.
    pub fn spawn(program: &str, args: &[String], dir: &Path, package: &str) -> Self {
        let log = dir.join(format!("{program}.log"));
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {program} ({e}): apt-get install {package} (scripts/test.sh does)"
                )
            });
        Self { child, log }
    }

    /// Waits (bounded by `max`) until `url` answers 2xx.
    pub async fn wait_ready(&self, url: &str, max: Duration) {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + max;
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = client.get(url).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{url} not ready in {max:?}; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository's root (for the shipped configs).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A database of its own on the test PostgreSQL (`AIOPS_TEST_POSTGRES`, which scripts/test.sh sets
/// up), dropped when this is.
pub struct PgDb {
    admin: String,
    name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin = std::env::var("AIOPS_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://aiops_test:aiops_test@127.0.0.1:5432/postgres".into());
        let name = format!("aiops_t_{}", uuid_like());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable ({e}): scripts/test.sh installs (apt-get install postgresql) and starts it")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Self { admin, name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            use sqlx::Connection;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{nanos:x}{:x}{n}", std::process::id())
}

/// The JSON bodies a fake (Slack, a webhook, an LLM) received, in order.
pub async fn json_bodies(server: &wiremock::MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect()
}

/// Two replicas started with the same environment, each in a folder of its own; keep the folders
/// until the replicas are gone (bind them first).
pub async fn start_replicas(env: &[(&str, String)]) -> ([tempfile::TempDir; 2], Daemon, Daemon) {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let a = Daemon::start(dirs[0].path(), env).await;
    let b = Daemon::start(dirs[1].path(), env).await;
    (dirs, a, b)
}

/// A webhook payload of a group of its own (alert name `Load{n}`), as an HA pair would send it.
pub fn distinct_group(n: usize) -> String {
    let mut payload: Value =
        serde_json::from_str(&fixture("high-load-warning.json")).expect("json");
    let name = format!("Load{n:05}");
    payload["groupKey"] = Value::String(format!("{{}}:{{alertname=\"{name}\"}}"));
    payload["groupLabels"]["alertname"] = Value::String(name.clone());
    payload["commonLabels"]["alertname"] = Value::String(name.clone());
    payload["alerts"][0]["labels"]["alertname"] = Value::String(name);
    payload["alerts"][0]["fingerprint"] = Value::String(format!("ha-{n:05}"));
    payload.to_string()
}

/// Loki's `/loki/api/v1/label/<name>/values` on a fake Loki: no value for any label (the stage then
/// maps the alert's labels to Loki's by name), after `delay`.
pub async fn loki_label_values(loki: &wiremock::MockServer, delay: Duration) {
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/loki/api/v1/label/[^/]+/values$",
        ))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"status": "success", "data": []}))
                .set_delay(delay),
        )
        .mount(loki)
        .await;
}
