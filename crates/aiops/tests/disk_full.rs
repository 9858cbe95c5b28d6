//! A full disk, on the real binary: the database or the file sink on a small tmpfs this test mounts
//! (as root, as scripts/test.sh and CI run), filled to the last byte. While it is full, webhooks get
//! 503 naming the full disk, `/ready` answers 503 with the reason, the log says it once, and the
//! daemon stays up; once space is freed, everything acknowledged is delivered.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Daemon, distinct_payload};
use serde_json::Value;

/// A tmpfs of `mib` MiB mounted on a fresh folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs (Debian package mount)");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs: this test needs root, as scripts/test.sh and CI run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system has no byte left; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        for chunk in [1 << 20, 4096, 1] {
            let bytes = vec![0u8; chunk];
            // Bounded: the tmpfs holds at most a few MiB.
            for _ in 0..100_000 {
                if file.write_all(&bytes).is_err() {
                    break;
                }
            }
        }
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon killed a moment ago may still hold a file open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// `GET path`: the status and the JSON body.
async fn get(daemon: &Daemon, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{}{path}", daemon.url))
        .await
        .expect("the daemon answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Job id → how many lines of the file sink delivered it.
fn delivered(file: &Path) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        if let Ok(doc) = serde_json::from_str::<Value>(line)
            && let Some(id) = doc["job_id"].as_str()
        {
            *count.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    count
}

/// Waits (bounded) until every job of `ids` is in `file`; asserts each is there exactly once.
async fn assert_all_delivered_once(daemon: &Daemon, file: &Path, ids: &[String]) {
    for _ in 0..600 {
        let seen = delivered(file);
        if ids.iter().all(|id| seen.contains_key(id)) {
            for id in ids {
                assert_eq!(seen[id], 1, "{id} delivered more than once");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = delivered(file);
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    panic!(
        "{} of {} acknowledged jobs never delivered: {missing:?}\n{}",
        missing.len(),
        ids.len(),
        daemon.log()
    );
}

fn settings(store: &Path, file: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "AIOPS__STORE__URL",
            format!("sqlite://{}", store.join("aiops.db").display()),
        ),
        ("AIOPS__NOTIFY__STDOUT", "false".into()),
        ("AIOPS__NOTIFY__FILE", file.display().to_string()),
        ("AIOPS__WORKER__BACKOFF_BASE_SECS", "1".into()),
        ("AIOPS__WORKER__BACKOFF_MAX_SECS", "1".into()),
        ("AIOPS__WORKER__MAX_ATTEMPTS", "100".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_disk_answers_503_with_the_reason_and_loses_nothing() {
    let disk = Tmpfs::mount(8);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deliveries.jsonl");
    let daemon = Daemon::start(dir.path(), &settings(disk.path(), &file)).await;
    let mut acknowledged = Vec::new();
    let mut n = 0;
    for _ in 0..20 {
        n += 1;
        let (status, answer) = daemon.post_webhook(distinct_payload(n)).await;
        assert_eq!(status, 202, "{answer}");
        acknowledged.push(answer["job_id"].as_str().expect("job_id").to_owned());
    }

    let filler = disk.fill();
    // The WAL may still have room for a few; the disk runs out within a few hundred webhooks.
    let mut refused = None;
    for _ in 0..400 {
        n += 1;
        let (status, answer) = daemon.post_webhook(distinct_payload(n)).await;
        match status.as_u16() {
            202 => acknowledged.push(answer["job_id"].as_str().expect("job_id").to_owned()),
            503 => {
                refused = Some(answer);
                break;
            }
            other => panic!("a full disk answered {other}: {answer}"),
        }
    }
    let refused = refused.expect("the full disk refused a webhook");
    assert_eq!(refused["error"], "store_unavailable", "{refused}");
    let detail = refused["detail"].as_str().expect("detail");
    assert!(
        detail.contains("disk") && detail.contains("full"),
        "{detail}"
    );
    for _ in 0..50 {
        n += 1;
        let (status, answer) = daemon.post_webhook(distinct_payload(n)).await;
        assert_eq!(status, 503, "still full: {answer}");
    }
    let (status, ready) = get(&daemon, "/ready").await;
    assert_eq!(status, 503, "/ready while the disk is full: {ready}");
    let reason = ready["detail"].as_str().expect("detail");
    assert!(
        reason.contains("disk") && reason.contains("full"),
        "{ready}"
    );
    assert_eq!(get(&daemon, "/health").await.0, 200, "the daemon stays up");
    let log = daemon.log();
    assert_eq!(
        log.matches("the store cannot write").count(),
        1,
        "logged once, not per webhook:\n{log}"
    );

    std::fs::remove_file(filler).expect("free the space");
    let mut ready = false;
    for _ in 0..100 {
        if get(&daemon, "/ready").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "/ready recovers once space is freed:\n{}",
        daemon.log()
    );
    for _ in 0..20 {
        n += 1;
        let (status, answer) = daemon.post_webhook(distinct_payload(n)).await;
        assert_eq!(status, 202, "{answer}");
        acknowledged.push(answer["job_id"].as_str().expect("job_id").to_owned());
    }
    assert_all_delivered_once(&daemon, &file, &acknowledged).await;
    assert!(daemon.log().contains("the store writes again"));
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_file_sink_disk_names_the_cause_and_delivers_everything_once_freed() {
    let disk = Tmpfs::mount(4);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = disk.path().join("deliveries.jsonl");
    let daemon = Daemon::start(dir.path(), &settings(dir.path(), &file)).await;
    let filler = disk.fill();
    let mut acknowledged = Vec::new();
    for n in 0..30 {
        let (status, answer) = daemon.post_webhook(distinct_payload(n)).await;
        assert_eq!(status, 202, "the store is on another disk: {answer}");
        acknowledged.push(answer["job_id"].as_str().expect("job_id").to_owned());
    }
    let mut named = None;
    for _ in 0..100 {
        let (_, job) = get(&daemon, &format!("/analyses/{}", acknowledged[0])).await;
        if let Some(error) = job["last_error"].as_str() {
            named = Some(error.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = named.expect("the failed delivery is recorded");
    assert!(
        error.contains("disk") && error.contains("is full"),
        "{error}"
    );
    assert_eq!(get(&daemon, "/ready").await.0, 200, "ingest still works");
    assert!(delivered(&file).is_empty(), "no torn line was left");

    std::fs::remove_file(filler).expect("free the space");
    assert_all_delivered_once(&daemon, &file, &acknowledged).await;
    let log = daemon.log();
    assert_eq!(
        log.matches("the disk holding notify.file is full").count(),
        1,
        "logged once, not per delivery:\n{log}"
    );
    assert!(log.contains("notify.file takes deliveries again"), "{log}");
    drop(daemon);
}
