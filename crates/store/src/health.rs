//! Whether the store can write, as its last write found. A full disk or a database that refuses
//! writes makes every webhook fail alike; this is where that is logged, once when writes start to
//! fail (or fail for another reason) and once when they work again, instead of once per request.
//! `/ready` reads it: while it holds a failure, a probe write decides.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aiops_model::StoreError;

/// How long writes must go without a failure before the store counts as writing again. A nearly
/// full disk fails large batches while small writes still fit, and would flap otherwise.
const RECOVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(crate) struct WriteHealth(Mutex<Option<Failing>>);

#[derive(Debug)]
struct Failing {
    error: StoreError,
    last: Instant,
}

impl WriteHealth {
    /// A write failed with `error`.
    pub fn failed(&self, error: &StoreError) {
        let mut failing = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let known = failing.as_ref().map(|f| f.error.to_string());
        if known != Some(error.to_string()) {
            tracing::error!(
                %error,
                "the store cannot write: webhooks get 503 and /ready says why until writes work again"
            );
        }
        *failing = Some(Failing {
            error: error.clone(),
            last: Instant::now(),
        });
    }

    /// A write committed. The store writes again once no write failed for [`RECOVERY`].
    pub fn worked(&self) {
        let mut failing = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if failing
            .as_ref()
            .is_some_and(|f| f.last.elapsed() >= RECOVERY)
        {
            *failing = None;
            tracing::info!("the store writes again");
        }
    }

    /// Why writes fail, while they do.
    pub fn failure(&self) -> Option<StoreError> {
        let failing = self.0.lock().unwrap_or_else(|e| e.into_inner());
        failing.as_ref().map(|f| f.error.clone())
    }
}

/// The write `/ready` makes while the last write failed: a row of `store_meta`, changed each time
/// (portable SQL: both backends run it as it is).
pub(crate) const PROBE_SQL: &str = "INSERT INTO store_meta (name, value) VALUES ('ready_probe', 0) \
     ON CONFLICT (name) DO UPDATE SET value = store_meta.value + 1";

/// `ENOSPC`: what a write or an fsync on a full file system fails with.
const NO_SPACE: i32 = 28;

/// The store's error for an I/O error of its own files: a full disk is named as such.
pub(crate) fn io_error(what: &str, e: &std::io::Error) -> StoreError {
    match e.raw_os_error() {
        Some(NO_SPACE) => StoreError::DiskFull(format!("{what}: {e}")),
        _ => StoreError::Unavailable(format!("{what}: {e}")),
    }
}
