//! The supply network as the service keeps it: the single writer path over
//! the store, and the reads beside it.
//!
//! Every write goes through `Network::write`, which queues it for the
//! writer. The writer takes every write waiting at once, under the writer
//! lock plans each against the view the one before it left (so that what a
//! plan read stays true) and commits it at a revision of its own, lets the
//! lock go, and then syncs once for the whole batch: many small durable
//! writes share one sync, and writers that commit while it runs share it
//! too. A write is never acknowledged, nor seen by a reader, before the sync
//! that made it durable returns.
//!
//! When the store fails to write (a full disk, a file size limit), the
//! network stops taking writes and refuses them at once, while reads go on
//! from the store as it was. Each refused write, at most once a second,
//! probes whether the disk takes writes again; when it does, the store is
//! closed and opened again, which recovers exactly what was made durable,
//! and writes resume.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::any::Any;
use std::collections::VecDeque;

use tokio::sync::{oneshot, watch, Mutex, OwnedMutexGuard};

use crate::domain::date::Date;
use crate::domain::record::{License, LicenseStatus, Record, RecordKey};
use crate::domain::write::{plan_delete, plan_upsert, Change, Incoming, Lookup, Origin};
use crate::domain::{Error, Kind, Violation};
use crate::store::{Committed, Store};
use crate::view::{ListPage, ListQuery, View};

/// What a write did.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOutcome {
    /// The store revision after the write (unchanged when nothing changed).
    pub revision: u64,
    /// What was committed; `None` when nothing changed or nothing was to be stored.
    pub committed: Option<Committed>,
}

/// A decision on a licence: every `None` keeps the stored value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LicenseDecision {
    pub id: String,
    pub status: Option<LicenseStatus>,
    pub decided_on: Option<Date>,
    pub quantity_kg: Option<f64>,
    pub valid_from: Option<Date>,
    pub valid_until: Option<Date>,
    /// When non-zero, the licence's current revision.
    pub revision: u64,
}

impl LicenseDecision {
    fn apply(&self, mut license: License) -> License {
        license.status = self.status.unwrap_or(license.status);
        license.decided_on = self.decided_on.or(license.decided_on);
        license.quantity_kg = self.quantity_kg.unwrap_or(license.quantity_kg);
        license.valid_from = self.valid_from.or(license.valid_from);
        license.valid_until = self.valid_until.or(license.valid_until);
        license.revision = self.revision;
        license
    }
}

/// How much of the licence log to keep; `None` keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep only the newest this many events.
    pub max_events: Option<u64>,
    /// Keep only events younger than this.
    pub max_age: Option<std::time::Duration>,
}

impl Retention {
    pub fn is_set(&self) -> bool {
        self.max_events.is_some() || self.max_age.is_some()
    }
}

/// Opens the store again from disk (after a write failure).
pub type Reopen = Arc<dyn Fn() -> Result<Arc<dyn Store>, Error> + Send + Sync>;

/// How the network gets over a store that failed to write.
struct Recovery {
    reopen: Reopen,
    /// A directory on the store's file system, where a probe file tells
    /// whether writes can succeed again.
    probe_dir: PathBuf,
}

/// A store that failed to write, and since when.
#[derive(Clone, Debug)]
struct Failure {
    detail: String,
    last_probe: Instant,
}

/// How often a refused write may probe the disk.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Bytes the probe writes and syncs.
const PROBE_BYTES: usize = 1 << 20;

pub struct Network {
    store: parking_lot::RwLock<Arc<dyn Store>>,
    recovery: Option<Recovery>,
    failure: Arc<parking_lot::Mutex<Option<Failure>>>,
    /// Writes waiting for the writer, in arrival order.
    queue: parking_lot::Mutex<VecDeque<Job>>,
    /// The single writer path: held from planning to commit. Its value is
    /// the view of everything committed, durable or not yet: the writer
    /// builds the next view from it, in commit order.
    writer: Arc<Mutex<Arc<View>>>,
    /// Every record at the newest revision known to be durable: what every
    /// read is answered from. Replaced whole, and only by a newer revision,
    /// once a commit's flush has returned, so that a reader never sees part
    /// of a write nor a write a crash could take back.
    view: Arc<parking_lot::RwLock<Arc<View>>>,
    /// The newest licence log sequence known to be on disk. Raised after each
    /// flush; streams wait on it so that they never send what a crash could
    /// take back.
    durable_head: watch::Sender<u64>,
}

impl Network {
    /// Wraps an open store, reading every record into the view (blocking).
    pub fn new(store: Arc<dyn Store>) -> Result<Network, Error> {
        let started = std::time::Instant::now();
        let snapshot = store.snapshot()?;
        let view = View::new(snapshot.revision, snapshot.records);
        tracing::info!(
            records = view.record_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "records loaded into memory"
        );
        let head = store.log_bounds().head;
        let view = Arc::new(view);
        Ok(Network {
            view: Arc::new(parking_lot::RwLock::new(view.clone())),
            store: parking_lot::RwLock::new(store),
            recovery: None,
            failure: Arc::new(parking_lot::Mutex::new(None)),
            queue: parking_lot::Mutex::new(VecDeque::new()),
            writer: Arc::new(Mutex::new(view)),
            durable_head: watch::channel(head).0,
        })
    }

    /// Every record at the current revision, as one consistent snapshot.
    pub fn view(&self) -> Arc<View> {
        self.view.read().clone()
    }

    /// Lets the network recover from a store that failed to write, by
    /// opening it again with `reopen` once a probe file in `probe_dir` can
    /// be written.
    pub fn with_recovery(mut self, reopen: Reopen, probe_dir: PathBuf) -> Network {
        self.recovery = Some(Recovery { reopen, probe_dir });
        self
    }

    /// The store, for reads.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.read().clone()
    }

    /// Whether the disk takes writes again: a probe file written, synced
    /// and removed.
    fn disk_takes_writes(dir: &std::path::Path) -> bool {
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

    /// Called under the writer lock while the store is failed: probes the
    /// disk (at most once a second) and, when it takes writes, opens the
    /// store again and rebuilds the view from what is on disk. Blocking.
    fn try_recover(&self, staged: &mut Arc<View>) -> Result<(), Error> {
        let Some(failure) = self.failure.lock().clone() else {
            return Ok(());
        };
        let refused = || Error::StoreFailed {
            detail: failure.detail.clone(),
        };
        let Some(recovery) = &self.recovery else {
            return Err(refused());
        };
        if failure.last_probe.elapsed() < PROBE_EVERY {
            return Err(refused());
        }
        if let Some(f) = self.failure.lock().as_mut() {
            f.last_probe = Instant::now();
        }
        if !Self::disk_takes_writes(&recovery.probe_dir) {
            return Err(refused());
        }
        // Close the failed store (sled holds a lock on its files) once the
        // reads in flight are done with it, then open it again.
        let old = self.store.read().clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        let closed = {
            let mut slot = self.store.write();
            let failed: Arc<dyn Store> = Arc::new(crate::store::FailedStore::new(
                old.revision(),
                old.log_bounds(),
                failure.detail.clone(),
            ));
            std::mem::replace(&mut *slot, failed)
        };
        drop(old);
        while Arc::strong_count(&closed) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(closed);
        match (recovery.reopen)().and_then(|store| Ok((store.snapshot()?, store))) {
            Ok((snapshot, store)) => {
                let head = store.log_bounds().head;
                let mut view = View::new(snapshot.revision, snapshot.records);
                view.epoch = self.view.read().epoch + 1;
                let view = Arc::new(view);
                *staged = view.clone();
                *self.view.write() = view;
                *self.store.write() = store;
                *self.failure.lock() = None;
                self.durable_head.send_modify(|h| *h = head);
                tracing::warn!(
                    revision = snapshot.revision,
                    "the store takes writes again; recovered what was on disk"
                );
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "the store could not be opened again; reads are refused until it can");
                Err(refused())
            }
        }
    }

    /// Follows the newest durable licence log sequence.
    pub fn durable_head(&self) -> watch::Receiver<u64> {
        self.durable_head.subscribe()
    }

    /// Creates or replaces records. With `check_revisions`, non-zero record
    /// revisions are preconditions; with `dry_run`, nothing is stored.
    /// `client` names the caller in the licence log (empty: anonymous).
    pub async fn upsert(
        self: &Arc<Self>,
        incoming: Vec<Incoming>,
        malformed: Vec<Violation>,
        check_revisions: bool,
        dry_run: bool,
        client: &str,
    ) -> Result<WriteOutcome, Error> {
        let (outcome, ()) = self
            .write(dry_run, client, move |store| {
                Ok((
                    plan_upsert(store, incoming, malformed, check_revisions)?,
                    (),
                ))
            })
            .await?;
        Ok(outcome)
    }

    /// Deletes records, all or none.
    pub async fn delete(
        self: &Arc<Self>,
        keys: Vec<RecordKey>,
        client: &str,
    ) -> Result<WriteOutcome, Error> {
        let (outcome, ()) = self
            .write(false, client, move |store| {
                Ok((plan_delete(store, &keys)?, ()))
            })
            .await?;
        Ok(outcome)
    }

    /// Records a decision on a licence and returns the licence as stored.
    pub async fn decide_license(
        self: &Arc<Self>,
        decision: LicenseDecision,
        malformed: Vec<Violation>,
        client: &str,
    ) -> Result<License, Error> {
        let (outcome, current) = self
            .write(false, client, move |store| {
                let key = RecordKey::new(Kind::License, decision.id.clone());
                let Some(Record::License(current)) = store.get(&key)? else {
                    return Err(Error::NotFound { missing: vec![key] });
                };
                let updated = decision.apply(current.clone());
                let plan = plan_upsert(
                    store,
                    vec![Incoming {
                        origin: Origin::Root,
                        record: Record::License(updated),
                    }],
                    malformed,
                    true,
                )?;
                Ok((plan, current))
            })
            .await?;
        let changed = outcome
            .committed
            .and_then(|c| c.license_changes.into_iter().next())
            .map(|c| c.license);
        Ok(changed.unwrap_or(current))
    }

    /// The single writer path. `plan` runs on a blocking thread with the
    /// writer's view (everything committed: exactly the store) and returns
    /// the changes to commit, and anything the caller wants back from what
    /// it read. The write is queued for the writer, which takes every write
    /// waiting at once (see [`Network::drain`]).
    async fn write<T, F>(
        self: &Arc<Self>,
        dry_run: bool,
        client: &str,
        plan: F,
    ) -> Result<(WriteOutcome, T), Error>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Lookup) -> Result<(Vec<Change>, T), Error> + Send + 'static,
    {
        let (reply, replied) = oneshot::channel();
        self.queue.lock().push_back(Job {
            dry_run,
            client: client.to_string(),
            plan: Box::new(move |lookup| {
                plan(lookup).map(|(changes, value)| (changes, Box::new(value) as Value))
            }),
            reply,
            span: tracing::Span::current(),
        });
        // Every queued write starts a drain of its own, so none waits for a
        // later one; a drain that finds the queue empty (an earlier drain
        // took its write along) ends at once. Spawned: a caller that goes
        // away (a deadline, a cancelled call) must not leave its write, or a
        // commit of others, unflushed or unannounced to the streams.
        tokio::spawn(self.clone().drain());
        let (outcome, value) = replied
            .await
            .map_err(|_| Error::Internal("the writer dropped the write".into()))??;
        let value = value
            .downcast::<T>()
            .map_err(|_| Error::Internal("the write returned another type".into()))?;
        Ok((outcome, *value))
    }

    /// Takes the writer lock and every write waiting (up to [`MAX_BATCH`]),
    /// and runs them on a blocking thread: each is planned against the view
    /// the one before it left, and committed at its own revision; then one
    /// sync makes the whole batch durable, after the writer lock has gone
    /// (writers that commit meanwhile share the sync too). Only then is the
    /// newest view published and each write answered.
    async fn drain(self: Arc<Self>) {
        let mut guard = self.writer.clone().lock_owned().await;
        let batch: Vec<Job> = {
            let mut queue = self.queue.lock();
            let n = queue.len().min(MAX_BATCH);
            queue.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        if self.failure.lock().is_some() {
            // A probe file, waiting for readers, opening the store: blocking
            // work, on the blocking pool, holding the writer lock as
            // recovery must.
            let network = self.clone();
            let recovered = tokio::task::spawn_blocking(move || {
                network.try_recover(&mut guard).map(|()| guard)
            })
            .await
            .map_err(|e| Error::Internal(format!("the recovery task failed: {e}")))
            .and_then(|result| result);
            match recovered {
                Ok(g) => guard = g,
                Err(error) => {
                    for job in batch {
                        let _ = job.reply.send(Err(repeat(&error)));
                    }
                    return;
                }
            }
        }
        let committing = self.store();
        let ran = tokio::task::spawn_blocking(move || run_batch(guard, batch, &*committing)).await;
        let Ok(ran) = ran else {
            // A panic while committing: the store may hold part of a batch
            // nobody was told of. Fail it, so that reopening recovers what
            // is on disk; the writes' callers see the writer go.
            note_failure(
                &self.failure,
                &Error::Storage("the writer panicked while committing".into()),
            );
            return;
        };
        if let Some(error) = &ran.failed {
            note_failure(&self.failure, error);
        }
        if let Some(next) = ran.durable {
            // Durable: readers may see it now. A later batch whose sync
            // returned first published a view that holds this one already.
            {
                let mut published = self.view.write();
                if (next.epoch, next.revision) > (published.epoch, published.revision) {
                    *published = next;
                }
            }
            if let Some(last) = ran.log_head {
                self.durable_head.send_if_modified(|head| {
                    let raised = last > *head;
                    *head = (*head).max(last);
                    raised
                });
            }
        }
        for (reply, answer) in ran.replies {
            let _ = reply.send(answer);
        }
    }

    /// The record at `key`, from the view: never part of a write, never
    /// waiting for one.
    pub fn get(&self, key: &RecordKey) -> Result<Record, Error> {
        self.view()
            .get(key)
            .ok_or_else(|| Error::not_found(key.kind, key.id.clone()))
    }

    /// One page of `query`, from the view (see [`View::list`]).
    pub fn list(&self, query: &ListQuery, after: Option<&str>, limit: usize) -> ListPage {
        self.view().list(query, after, limit)
    }

    /// Removes the oldest licence log events that `retention` lets go, and
    /// only those, so that what is kept stays contiguous. Returns how many.
    pub async fn apply_retention(&self, retention: Retention) -> Result<u64, Error> {
        let store = self.store();
        tokio::task::spawn_blocking(move || {
            let bounds = store.log_bounds();
            let mut through = 0;
            if let Some(keep) = retention.max_events {
                through = bounds.head.saturating_sub(keep);
            }
            if let Some(age) = retention.max_age {
                let cutoff = std::time::SystemTime::now() - age;
                let mut after = bounds.oldest.saturating_sub(1);
                'scan: loop {
                    let batch = store.read_log(after, 1024)?;
                    if batch.is_empty() {
                        break;
                    }
                    for change in batch {
                        if change.recorded_at >= cutoff {
                            break 'scan;
                        }
                        after = change.sequence;
                    }
                }
                through = through.max(after);
            }
            if through < bounds.oldest {
                return Ok(0);
            }
            store.compact_log(through)
        })
        .await
        .map_err(|e| Error::Storage(format!("the compaction task failed: {e}")))?
    }

    /// Makes everything committed durable (used at shutdown).
    pub async fn flush(&self) -> Result<(), Error> {
        self.store().flush().await
    }
}

/// Most writes committed in one batch: enough for every connection's write
/// to share one sync, few enough that the first of them is answered soon.
const MAX_BATCH: usize = 256;

/// What a plan returns to its caller beside the changes.
type Value = Box<dyn Any + Send>;
type Plan = Box<dyn FnOnce(&dyn Lookup) -> Result<(Vec<Change>, Value), Error> + Send>;
type Reply = Result<(WriteOutcome, Value), Error>;

/// A write waiting for the writer.
struct Job {
    dry_run: bool,
    client: String,
    plan: Plan,
    reply: oneshot::Sender<Reply>,
    /// The caller's span, for what the writer logs of this write.
    span: tracing::Span,
}

/// What a batch did.
struct Ran {
    /// The view after the batch, now durable; `None` when nothing was
    /// committed, or the sync failed.
    durable: Option<Arc<View>>,
    /// The newest licence log sequence the batch made durable.
    log_head: Option<u64>,
    /// The storage failure the batch met, if any.
    failed: Option<Error>,
    /// Each write's answer, in the order they were planned.
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
}

/// Plans and commits a batch of writes in order, each against the view the
/// one before it left, under the writer lock (`staged`); lets the lock go;
/// then syncs once for all of them (blocking).
fn run_batch(mut staged: OwnedMutexGuard<Arc<View>>, batch: Vec<Job>, store: &dyn Store) -> Ran {
    let mut replies = Vec::with_capacity(batch.len());
    // Committed, waiting for the sync.
    let mut pending: Vec<(oneshot::Sender<Reply>, Committed, Value)> = Vec::new();
    let mut failed: Option<Error> = None;
    for job in batch {
        let Job {
            dry_run,
            client,
            plan,
            reply,
            span,
        } = job;
        let _entered = span.enter();
        if let Some(error) = &failed {
            replies.push((reply, Err(repeat(error))));
            continue;
        }
        let started = Instant::now();
        // A panic while planning is a bug confined to this request: nothing
        // was written, so it fails alone (INTERNAL) and the writer goes on.
        // (A panic while committing is not caught here: it fails the store,
        // whose reopening recovers what is on disk.)
        let (changes, value) =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan(&**staged))) {
                Ok(Ok(planned)) => planned,
                Ok(Err(error)) => {
                    replies.push((reply, Err(error)));
                    continue;
                }
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let error = Error::Internal(format!("planning the write failed: {what}"));
                    replies.push((reply, Err(error)));
                    continue;
                }
            };
        if dry_run || changes.is_empty() {
            let outcome = WriteOutcome {
                revision: staged.revision,
                committed: None,
            };
            replies.push((reply, Ok((outcome, value))));
            continue;
        }
        let planned = started.elapsed();
        let count = changes.len();
        match store.commit(changes, &client) {
            Ok(mut committed) => {
                let stored = started.elapsed();
                let mut next = View::clone(&staged);
                next.apply(committed.revision, std::mem::take(&mut committed.changes));
                *staged = Arc::new(next);
                tracing::debug!(
                    changes = count,
                    plan_ms = planned.as_millis() as u64,
                    commit_ms = (stored - planned).as_millis() as u64,
                    view_ms = (started.elapsed() - stored).as_millis() as u64,
                    revision = committed.revision,
                    "committed"
                );
                pending.push((reply, committed, value));
            }
            Err(error) => {
                // The failed commit left nothing behind; those before it in
                // the batch are still synced and answered below.
                replies.push((reply, Err(repeat(&error))));
                failed = Some(error);
            }
        }
    }
    let newest = staged.clone();
    drop(staged);
    if pending.is_empty() {
        return Ran {
            durable: None,
            log_head: None,
            failed,
            replies,
        };
    }
    match store.sync() {
        Ok(()) => {
            let log_head = pending
                .iter()
                .filter_map(|(_, c, _)| c.license_changes.last())
                .map(|c| c.sequence)
                .max();
            for (reply, committed, value) in pending {
                let outcome = WriteOutcome {
                    revision: committed.revision,
                    committed: Some(committed),
                };
                replies.push((reply, Ok((outcome, value))));
            }
            Ran {
                durable: Some(newest),
                log_head,
                failed,
                replies,
            }
        }
        Err(error) => {
            for (reply, _, _) in pending {
                replies.push((reply, Err(repeat(&error))));
            }
            Ran {
                durable: None,
                log_head: None,
                failed: failed.or(Some(error)),
                replies,
            }
        }
    }
}

/// The same failure, for another write of the batch it ended.
fn repeat(error: &Error) -> Error {
    match error {
        Error::Storage(detail) => Error::Storage(detail.clone()),
        Error::StoreFailed { detail } => Error::StoreFailed {
            detail: detail.clone(),
        },
        other => Error::Internal(other.to_string()),
    }
}

/// Remembers the first storage failure: writes are refused from then on
/// until a probe finds the disk writable again.
fn note_failure(failure: &parking_lot::Mutex<Option<Failure>>, error: &Error) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::Supplier;
    use crate::store::{SledConfig, SledStore};

    fn open(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(
            SledStore::open(&SledConfig {
                path: dir.join("data"),
                cache_capacity_bytes: 8 << 20,
            })
            .unwrap(),
        )
    }

    fn supplier(id: &str) -> Vec<Incoming> {
        vec![Incoming {
            origin: Origin::Root,
            record: Record::Supplier(Supplier {
                id: id.into(),
                country: "CN".into(),
                ..Default::default()
            }),
        }]
    }

    /// A bug in planning fails its own request with INTERNAL; the writer
    /// path is not taken for a failed store, and the next write succeeds.
    #[tokio::test]
    async fn a_panic_while_planning_fails_that_write_alone() {
        let dir = tempfile::tempdir().unwrap();
        let network = Arc::new(Network::new(open(dir.path())).unwrap());
        let failed = network
            .write(
                false,
                "",
                |_: &dyn Lookup| -> Result<(Vec<Change>, ()), Error> {
                    panic!("a bug in the planner")
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&failed, Error::Internal(m) if m.contains("a bug in the planner")),
            "{failed:?}"
        );
        assert!(network.failure.lock().is_none(), "the store is not failed");
        let outcome = network
            .upsert(supplier("S1"), vec![], true, false, "")
            .await
            .expect("the next write goes through");
        assert_eq!(outcome.revision, 1);
        assert_eq!(network.view().revision, 1);
    }

    /// A store that counts its syncs.
    struct CountingSyncs {
        inner: Arc<dyn Store>,
        syncs: std::sync::atomic::AtomicUsize,
    }

    impl Store for CountingSyncs {
        fn revision(&self) -> u64 {
            self.inner.revision()
        }
        fn commit(&self, changes: Vec<Change>, client: &str) -> Result<Committed, Error> {
            self.inner.commit(changes, client)
        }
        fn flush(&self) -> crate::store::BoxFuture<'_, Result<(), Error>> {
            self.inner.flush()
        }
        fn sync(&self) -> Result<(), Error> {
            self.syncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.sync()
        }
        fn snapshot(&self) -> Result<crate::store::Snapshot, Error> {
            self.inner.snapshot()
        }
        fn log_bounds(&self) -> crate::store::LogBounds {
            self.inner.log_bounds()
        }
        fn read_log(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<crate::domain::changelog::LicenseChange>, Error> {
            self.inner.read_log(after, limit)
        }
        fn compact_log(&self, through: u64) -> Result<u64, Error> {
            self.inner.compact_log(through)
        }
    }

    /// Writes that arrive together are planned one after another, each
    /// against what the one before it left, committed at revisions of their
    /// own, and made durable by one sync; a write that fails (a missing
    /// record, a planner's panic) fails alone.
    #[tokio::test]
    async fn writes_that_arrive_together_share_a_sync_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CountingSyncs {
            inner: open(dir.path()),
            syncs: Default::default(),
        });
        let network = Arc::new(Network::new(store.clone()).unwrap());
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..48 {
            let network = network.clone();
            writes.spawn(async move {
                let result = match i % 4 {
                    3 => {
                        let missing = RecordKey::new(Kind::Supplier, format!("missing-{i}"));
                        network.delete(vec![missing], "").await
                    }
                    2 if i == 6 => network
                        .write(false, "", |_: &dyn Lookup| -> Result<(Vec<Change>, ()), Error> {
                            panic!("a bug in the planner")
                        })
                        .await
                        .map(|(outcome, ())| outcome),
                    _ => {
                        network
                            .upsert(supplier(&format!("S{i:02}")), vec![], true, false, "")
                            .await
                    }
                };
                (i, result.map(|outcome| outcome.revision))
            });
        }
        let mut revisions = Vec::new();
        while let Some(done) = writes.join_next().await {
            let (i, result) = done.unwrap();
            match (i % 4, result) {
                (3, Err(Error::NotFound { .. })) => {}
                (2, Err(Error::Internal(m))) if i == 6 => assert!(m.contains("a bug")),
                (_, Ok(revision)) if i % 4 != 3 && i != 6 => revisions.push(revision),
                (_, other) => panic!("write {i} ended {other:?}"),
            }
        }
        revisions.sort_unstable();
        assert_eq!(revisions, (1..=35).collect::<Vec<u64>>());
        let view = network.view();
        assert_eq!(view.revision, 35);
        assert_eq!(view.record_count(), 35);
        let syncs = store.syncs.load(std::sync::atomic::Ordering::Relaxed);
        assert!(syncs < 12, "48 writes arriving together took {syncs} syncs");
    }

    /// Recovering a failed store (a probe file, opening the store again)
    /// runs on the blocking pool: the runtime's one worker keeps running
    /// other tasks meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn recovery_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let store = open(&path);
        let reopen: Reopen = Arc::new(move || {
            // Slow, as opening a large store is.
            std::thread::sleep(Duration::from_millis(600));
            Ok(open(&path))
        });
        let network = Arc::new(
            Network::new(store)
                .unwrap()
                .with_recovery(reopen, dir.path().to_path_buf()),
        );
        *network.failure.lock() = Some(Failure {
            detail: "a full disk".into(),
            last_probe: Instant::now() - 2 * PROBE_EVERY,
        });
        // A ticker on the same (only) worker notes its longest pause.
        let ticker = tokio::spawn(async {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            longest
        });
        tokio::task::yield_now().await;
        network
            .upsert(supplier("S1"), vec![], true, false, "")
            .await
            .expect("the store recovers and takes the write");
        assert!(network.failure.lock().is_none());
        let longest = ticker.await.unwrap();
        assert!(
            longest < Duration::from_millis(500),
            "the worker was held for {longest:?}"
        );
    }
}
