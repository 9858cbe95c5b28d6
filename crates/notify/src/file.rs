//! The file sink: one JSON line per job, at most once per job even across crashes.
//!
//! The worker records a delivery in the store after the sink returns, so a crash between the two would
//! deliver again on retry. This sink closes that gap for itself: it reads the job ids already in the
//! file when it opens, and skips them.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use aiops_model::{JobId, Notification, Notifier, StageError};
use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::Document;

#[derive(Debug)]
pub struct FileNotifier {
    path: PathBuf,
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    file: std::fs::File,
    written: HashSet<JobId>,
    /// The last write failed for want of space (logged once, when it began).
    disk_full: bool,
}

impl FileNotifier {
    /// Checks that [`FileNotifier::open`] would work, creating nothing: an existing file must open for
    /// appending; otherwise the nearest existing folder on its path must be a writable folder.
    pub fn check(path: &Path) -> std::io::Result<()> {
        if path.exists() {
            return std::fs::OpenOptions::new()
                .append(true)
                .read(true)
                .open(path)
                .map(drop);
        }
        let folder = path
            .ancestors()
            .skip(1)
            .map(|d| {
                if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                }
            })
            .find(|d| d.exists())
            .unwrap_or(Path::new("."));
        let meta = std::fs::metadata(folder)?;
        if !meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a folder", folder.display()),
            ));
        }
        if meta.permissions().readonly() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{} is read-only", folder.display()),
            ));
        }
        Ok(())
    }

    /// Opens (or creates) the file for appending and reads which jobs it already holds.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let mut written = HashSet::new();
        for line in BufReader::new(&file).lines() {
            // A torn last line (a crash mid-write) has no complete document and is not a delivery.
            if let Ok(doc) = serde_json::from_str::<Document>(&line?) {
                written.insert(doc.job_id);
            }
        }
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new(FileState {
                file,
                written,
                disk_full: false,
            }),
        })
    }
}

#[async_trait]
impl Notifier for FileNotifier {
    fn name(&self) -> &str {
        "file"
    }

    async fn deliver(&self, notification: Notification<'_>) -> Result<Option<String>, StageError> {
        let mut state = self.state.lock().await;
        if state.written.contains(&notification.job_id) {
            return Ok(None);
        }
        let mut line = serde_json::to_vec(&Document::new(&notification))
            .map_err(|e| StageError::permanent(format!("cannot encode the document: {e}")))?;
        line.push(b'\n');
        // One write call per line, then fsync: the line is whole and durable before we report success.
        // A failed write is cut off again, so that no torn line sits before the next one.
        let before = state.file.metadata().map(|m| m.len());
        let written = state
            .file
            .write_all(&line)
            .and_then(|()| state.file.sync_data());
        if let Err(e) = written {
            if let Ok(len) = before {
                // Best effort: the sink's reader skips a torn line anyway.
                let _ = state.file.set_len(len);
            }
            return Err(self.failed(&mut state, &e));
        }
        if std::mem::take(&mut state.disk_full) {
            tracing::info!(path = %self.path.display(), "notify.file takes deliveries again");
        }
        state.written.insert(notification.job_id);
        Ok(None)
    }
}

/// `ENOSPC`: a write on a full file system.
const NO_SPACE: i32 = 28;

impl FileNotifier {
    /// The delivery's error for a failed write; a full disk is named, and logged once when it begins.
    fn failed(&self, state: &mut FileState, e: &std::io::Error) -> StageError {
        let path = self.path.display();
        if e.raw_os_error() != Some(NO_SPACE) {
            return StageError::retriable(format!("cannot write {path}: {e}"));
        }
        if !std::mem::replace(&mut state.disk_full, true) {
            tracing::error!(%path, "the disk holding notify.file is full: deliveries to it wait until space is freed");
        }
        StageError::retriable(format!(
            "the disk holding {path} is full; the delivery is retried ({e})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_model::alertmanager::parse_webhook;

    #[tokio::test]
    async fn a_job_is_written_once_even_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out/deliveries.jsonl");
        let body = include_bytes!("../../../tests/fixtures/alertmanager/target-down-single.json");
        let payload = parse_webhook(body).expect("parses");
        let n = Notification {
            job_id: JobId::new(),
            payload: &payload,
            analysis: None,
            firings: 1,
        };
        let sink = FileNotifier::open(&path).expect("opens");
        sink.deliver(n).await.expect("delivers");
        sink.deliver(n).await.expect("delivers again");
        drop(sink);
        let reopened = FileNotifier::open(&path).expect("reopens");
        reopened.deliver(n).await.expect("delivers after restart");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1, "{text}");
        let doc: Document = serde_json::from_str(text.trim()).expect("a document");
        assert_eq!(doc.job_id, n.job_id);
    }
}
