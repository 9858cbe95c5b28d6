//! Durability off the writer's critical path. The write connection runs with `synchronous = NORMAL`:
//! a commit writes its WAL frames and returns without fsync. The writer hands the batch's replies to
//! this thread, which fsyncs the WAL file and only then sends them. Every answered write is on disk, as
//! with `synchronous = FULL`, but the writer already runs the next batch while the disk syncs, and one
//! fsync covers every batch committed in the meantime.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use aiops_model::StoreError;
use tokio::sync::Notify;

use crate::health::io_error;

/// Sends a batch's replies: `Ok` once its WAL frames are on disk, `Err` if the sync failed.
pub(crate) type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

#[derive(Debug)]
pub(crate) struct WalSync {
    tx: mpsc::Sender<Deliver>,
}

impl WalSync {
    /// Starts the sync thread for the WAL at `wal_path`. It stops when the `WalSync` is dropped.
    pub fn start(wal_path: PathBuf, work: Arc<Notify>) -> std::io::Result<Self> {
        let file = File::open(&wal_path)?;
        let (tx, rx) = mpsc::channel::<Deliver>();
        std::thread::Builder::new()
            .name("aiops-wal-sync".into())
            .spawn(move || run(&wal_path, file, &rx, &work))?;
        Ok(Self { tx })
    }

    /// Runs `deliver` after the next fsync of the WAL that starts after this call.
    pub fn after_sync(&self, deliver: Deliver) {
        if let Err(mpsc::SendError(deliver)) = self.tx.send(deliver) {
            deliver(Err(StoreError::Unavailable(
                "the WAL sync thread has stopped".into(),
            )));
        }
    }
}

fn run(path: &Path, mut file: File, rx: &mpsc::Receiver<Deliver>, work: &Notify) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        // A failure reaches each batch's writers, and the store's health logs it once.
        let synced = sync(path, &mut file)
            .map_err(|e| io_error(&format!("cannot fsync {}", path.display()), &e));
        for deliver in group {
            deliver(synced.clone());
        }
        // New jobs, retries and released jobs may be due: wake idle workers.
        work.notify_waiters();
    }
}

fn sync(path: &Path, file: &mut File) -> std::io::Result<()> {
    // SQLite keeps its -wal file while a connection is open. Should it ever be recreated, the old
    // descriptor would sync a dead file, so check that the path still names the file we hold.
    let current = std::fs::metadata(path)?;
    let held = file.metadata()?;
    if (current.dev(), current.ino()) != (held.dev(), held.ino()) {
        *file = File::open(path)?;
    }
    file.sync_data()
}
