//! Getting over a store that failed to write (a full disk, a file size
//! limit). The first storage failure is remembered, and writes are refused
//! at once from then on while reads go on from the view as it was. Each
//! refused write, at most once a second, probes whether the disk takes
//! writes again; when it does, the store is closed and opened again, which
//! recovers exactly what was made durable, and writes resume.
//!
//! Only an embedded store needs this: a database that does not answer
//! refuses each write with `DATABASE_UNAVAILABLE` and is asked again by the
//! next one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::domain::Error;
use crate::store::{FailedStore, Store};
use crate::view::View;

/// Opens the store again from disk (blocking).
pub type Reopen = Arc<dyn Fn() -> Result<Arc<dyn Store>, Error> + Send + Sync>;

/// How to get over a store that failed to write.
pub(super) struct Recovery {
    pub(super) reopen: Reopen,
    /// A directory on the store's file system, where a probe file tells
    /// whether writes can succeed again.
    pub(super) probe_dir: PathBuf,
}

/// A store that failed to write, and when it was last probed.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    pub(super) detail: String,
    pub(super) last_probe: Instant,
}

/// How often a refused write may probe the disk.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Bytes the probe writes and syncs.
const PROBE_BYTES: usize = 1 << 20;

/// Remembers the first storage failure: writes are refused from then on
/// until a probe finds the disk writable again.
pub(super) fn note_failure(failure: &Mutex<Option<Failure>>, error: &Error) {
    if let Error::Storage(detail) = error {
        let mut failure = failure.lock();
        if failure.is_none() {
            tracing::error!(%detail, "the store failed to write; writes are refused until the disk takes them again");
            *failure = Some(Failure {
                detail: detail.clone(),
                last_probe: Instant::now(),
            });
        }
    }
}

/// Whether the disk takes writes again: a probe file written, synced and
/// removed (blocking).
fn disk_takes_writes(dir: &Path) -> bool {
    use std::io::Write;
    let path = dir.join(".lodestone-write-probe");
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result.is_ok()
}

/// Probes the disk (at most once every [`PROBE_EVERY`]) and, when it takes
/// writes, closes the failed store in `slot` (once the reads in flight let
/// go of it), opens it again and reads it into a view of `epoch`. The
/// blocking parts run on the blocking pool. Refuses with `STORAGE_FAILED`
/// while the disk does not take writes.
pub(super) async fn reopen(
    recovery: Option<&Recovery>,
    noted: &Mutex<Option<Failure>>,
    failure: &Failure,
    slot: &RwLock<Arc<dyn Store>>,
    epoch: u64,
) -> Result<(Arc<dyn Store>, Arc<View>), Error> {
    let refused = || Error::StoreFailed {
        detail: failure.detail.clone(),
    };
    let Some(recovery) = recovery else {
        return Err(refused());
    };
    if failure.last_probe.elapsed() < PROBE_EVERY {
        return Err(refused());
    }
    if let Some(f) = noted.lock().as_mut() {
        f.last_probe = Instant::now();
    }
    let probe_dir = recovery.probe_dir.clone();
    let writable = tokio::task::spawn_blocking(move || disk_takes_writes(&probe_dir))
        .await
        .unwrap_or(false);
    if !writable {
        return Err(refused());
    }
    // Close the failed store (sled holds a lock on its files) once the
    // reads in flight are done with it, then open it again.
    let old = slot.read().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let closed = {
        let mut slot = slot.write();
        let failed: Arc<dyn Store> = Arc::new(FailedStore::new(
            old.revision(),
            old.log_bounds(),
            failure.detail.clone(),
        ));
        std::mem::replace(&mut *slot, failed)
    };
    drop(old);
    while Arc::strong_count(&closed) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(closed);
    let reopen = recovery.reopen.clone();
    let reopened = async {
        let store = tokio::task::spawn_blocking(move || reopen())
            .await
            .map_err(|e| Error::Internal(format!("reopening the store failed: {e}")))??;
        let view = View::load(store.snapshot().await?, epoch).await?;
        Ok::<_, Error>((store, view))
    };
    reopened.await.map_err(|error| {
        tracing::error!(%error, "the store could not be opened again; reads are refused until it can");
        refused()
    })
}
