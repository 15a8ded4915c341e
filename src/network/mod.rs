//! The supply network as the service keeps it: the single writer path over
//! the store, and the reads beside it.
//!
//! Every write goes through the [`Network`] handle, which queues it for the
//! writer (`writer`): the writer takes every write waiting at once and
//! takes a turn at the store (nobody else commits meanwhile, on any
//! replica), catches its view up to the store's head through the change
//! feed, plans each write against the view the one before it left
//! (`plan`), and commits them all, each at a revision of its own, durably,
//! in one go. Only then is the new view published (`published`) for
//! readers, and each writer answered. On a replica, the `follower`
//! applies what the others commit.
//!
//! A store that fails to write is recovered (`recovery`); the licence log
//! is trimmed by `retention`; its newest entries are kept in memory for
//! the streams (`recent`).

mod follower;
mod plan;
mod published;
mod recent;
mod recovery;
mod retention;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::domain::audit::{Attribution, AuditEntry, AuditQuery};
use crate::domain::changelog::LicenseChange;
use crate::domain::record::{License, Record, RecordKey};
use crate::domain::write::{
    plan_decision, plan_delete, plan_upsert, Incoming, LicenseDecision, Revisions,
};
use crate::domain::{Error, Violation};
use crate::store::{Committed, Store};
use crate::view::{ListPage, ListQuery, View};

pub use plan::Apply;
use plan::{Plan, Read};
use published::Published;
use recent::RecentLog;
pub use recovery::Reopen;
use recovery::{Failure, Recovery};
pub use retention::Retention;
use writer::{Staged, Writer};

/// What a write did.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOutcome {
    /// The store revision after the write (unchanged when nothing changed).
    pub revision: u64,
    /// What was committed; `None` when nothing changed or nothing was to be stored.
    pub committed: Option<Committed>,
}

/// Records to create or replace, and how.
#[derive(Clone, Debug)]
pub struct Upsert {
    pub records: Vec<Incoming>,
    /// Violations found while decoding the request (an unparsable date):
    /// they count as malformed fields.
    pub malformed: Vec<Violation>,
    pub revisions: Revisions,
    pub apply: Apply,
}

impl Upsert {
    /// `records`, with their revisions as preconditions, committed.
    pub fn new(records: Vec<Incoming>) -> Upsert {
        Upsert {
            records,
            malformed: Vec::new(),
            revisions: Revisions::Preconditions,
            apply: Apply::Commit,
        }
    }
}

/// Licence log entries kept in memory for the streams.
const RECENT_ENTRIES: usize = 8192;

pub struct Network {
    /// Where records are kept; replaced by a [`crate::store::FailedStore`]
    /// while a failed store is opened again.
    store: parking_lot::RwLock<Arc<dyn Store>>,
    /// How to get over a store that failed to write (none: refuse writes).
    recovery: Option<Recovery>,
    /// The store's failure while it lasts: writes are refused meanwhile.
    failure: Arc<parking_lot::Mutex<Option<Failure>>>,
    /// The single writer path and the writes waiting for it.
    writer: Writer,
    /// What readers see: only ever newer, only ever durable.
    published: Published,
    /// The newest licence log entries, for the streams (filled before the
    /// durable head moves past them).
    recent: RecentLog,
}

impl Network {
    /// Wraps an open store, reading every record into the view.
    pub async fn open(store: Arc<dyn Store>) -> Result<Network, Error> {
        let started = std::time::Instant::now();
        let view = View::load(store.snapshot().await?, 0).await?;
        tracing::info!(
            records = view.record_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "records loaded into memory"
        );
        Ok(Network {
            published: Published::new(view.clone()),
            store: parking_lot::RwLock::new(store),
            recovery: None,
            failure: Arc::new(parking_lot::Mutex::new(None)),
            writer: Writer::new(view),
            recent: RecentLog::new(RECENT_ENTRIES),
        })
    }

    /// Lets the network recover from a store that failed to write, by
    /// opening it again with `reopen` once a probe file in `probe_dir` can
    /// be written.
    pub fn with_recovery(mut self, reopen: Reopen, probe_dir: PathBuf) -> Network {
        self.recovery = Some(Recovery { reopen, probe_dir });
        self
    }

    /// Every record at the current revision, as one consistent snapshot.
    pub fn view(&self) -> Arc<View> {
        self.published.view()
    }

    /// The store, for reads.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.read().clone()
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

    /// Up to `limit` licence log entries after `after`: from memory when it
    /// holds them, else from the store.
    pub async fn read_log(&self, after: u64, limit: usize) -> Result<Vec<LicenseChange>, Error> {
        match self.recent.read(after, limit) {
            Some(entries) => Ok(entries),
            None => self.store().read_log(after, limit).await,
        }
    }

    /// Up to `limit` audit entries that `query` admits, from the store.
    pub async fn read_audit(
        &self,
        query: AuditQuery,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        self.store().read_audit(query, limit).await
    }

    /// The oldest revision the audit trail holds (0: none).
    pub async fn oldest_audited(&self) -> Result<u64, Error> {
        self.store().oldest_audited().await
    }

    /// Follows the revision readers see.
    pub fn applied_revision(&self) -> watch::Receiver<u64> {
        self.published.applied()
    }

    /// Follows the newest durable licence log sequence.
    pub fn durable_head(&self) -> watch::Receiver<u64> {
        self.published.durable_head()
    }

    /// Creates or replaces records. `by` names the caller and the request in
    /// the licence log and the audit trail.
    pub async fn upsert(
        self: &Arc<Self>,
        upsert: Upsert,
        by: &Attribution,
    ) -> Result<WriteOutcome, Error> {
        let Upsert {
            records,
            malformed,
            revisions,
            apply,
        } = upsert;
        let (outcome, _) = self
            .submit(apply, by, move |lookup| {
                Ok(Plan {
                    changes: plan_upsert(lookup, records, malformed, revisions)?,
                    read: Read::Nothing,
                })
            })
            .await?;
        Ok(outcome)
    }

    /// Deletes records, all or none.
    pub async fn delete(
        self: &Arc<Self>,
        keys: Vec<RecordKey>,
        by: &Attribution,
    ) -> Result<WriteOutcome, Error> {
        let (outcome, _) = self
            .submit(Apply::Commit, by, move |lookup| {
                Ok(Plan {
                    changes: plan_delete(lookup, &keys)?,
                    read: Read::Nothing,
                })
            })
            .await?;
        Ok(outcome)
    }

    /// Records a decision on a licence and returns the licence as stored.
    pub async fn decide_license(
        self: &Arc<Self>,
        decision: LicenseDecision,
        malformed: Vec<Violation>,
        by: &Attribution,
    ) -> Result<License, Error> {
        let (outcome, read) = self
            .submit(Apply::Commit, by, move |lookup| {
                let (current, changes) = plan_decision(lookup, &decision, malformed)?;
                Ok(Plan {
                    changes,
                    read: Read::License(current),
                })
            })
            .await?;
        let changed = outcome
            .committed
            .and_then(|c| c.license_changes.into_iter().next())
            .map(|c| c.license);
        match (changed, read) {
            (Some(changed), _) => Ok(changed),
            (None, Read::License(current)) => Ok(current),
            (None, Read::Nothing) => Err(Error::Internal(
                "a licence decision planned without reading the licence".into(),
            )),
        }
    }

    /// Called under the writer path: while the store is failed, when the
    /// disk takes writes again (probed at most once a second), opens the
    /// store again and installs it with the view of what is on disk.
    async fn recover_if_failed(&self, staged: &mut Staged) -> Result<(), Error> {
        let Some(failure) = self.failure.lock().clone() else {
            return Ok(());
        };
        let epoch = self.published.view().epoch + 1;
        let (store, view) = recovery::reopen(
            self.recovery.as_ref(),
            &self.failure,
            &failure,
            &self.store,
            epoch,
        )
        .await?;
        let revision = view.revision;
        **staged = view.clone();
        self.recent.clear();
        // Of a newer epoch: it replaces what readers saw.
        self.published.publish(view);
        *self.store.write() = store;
        *self.failure.lock() = None;
        tracing::warn!(
            revision,
            "the store takes writes again; recovered what was on disk"
        );
        Ok(())
    }

    /// Removes the oldest licence log events that `retention` lets go, and
    /// only those, so that what is kept stays contiguous. Returns how many.
    pub async fn apply_retention(&self, retention: Retention) -> Result<u64, Error> {
        let store = self.store();
        let Some(through) = retention.through(&*store).await? else {
            return Ok(0);
        };
        let removed = store.compact_log(through).await?;
        self.recent.forget_through(through);
        Ok(removed)
    }

    /// Makes everything committed durable (used at shutdown).
    pub async fn flush(&self) -> Result<(), Error> {
        self.store().flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::domain::record::Supplier;
    use crate::domain::write::{Lookup, Origin};
    use crate::domain::Kind;
    use crate::store::FeedEntry;
    use crate::store::{SledConfig, SledStore};

    fn anonymous() -> Attribution {
        Attribution::anonymous(crate::domain::audit::Request::UpsertRecords)
    }

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
        let network = Arc::new(Network::open(open(dir.path())).await.unwrap());
        let failed = network
            .submit(
                Apply::Commit,
                &anonymous(),
                |_: &dyn Lookup| -> Result<Plan, Error> { panic!("a bug in the planner") },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&failed, Error::Internal(m) if m.contains("a bug in the planner")),
            "{failed:?}"
        );
        assert!(network.failure.lock().is_none(), "the store is not failed");
        let outcome = network
            .upsert(Upsert::new(supplier("S1")), &anonymous())
            .await
            .expect("the next write goes through");
        assert_eq!(outcome.revision, 1);
        assert_eq!(network.view().revision, 1);
    }

    /// A store that counts the writer's turns (each commits and syncs once).
    struct CountingTurns {
        inner: Arc<dyn Store>,
        turns: std::sync::atomic::AtomicUsize,
    }

    impl Store for CountingTurns {
        fn revision(&self) -> u64 {
            self.inner.revision()
        }
        fn log_bounds(&self) -> crate::store::LogBounds {
            self.inner.log_bounds()
        }
        fn latest(&self) -> crate::store::BoxFuture<'_, Result<(u64, u64), Error>> {
            self.inner.latest()
        }
        fn begin(&self) -> crate::store::BoxFuture<'_, Result<Box<dyn crate::store::Turn>, Error>> {
            self.turns
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.begin()
        }
        fn snapshot(&self) -> crate::store::BoxFuture<'_, Result<crate::store::Snapshot, Error>> {
            self.inner.snapshot()
        }
        fn feed(
            &self,
            after: u64,
            limit: usize,
        ) -> crate::store::BoxFuture<'_, Result<Vec<FeedEntry>, Error>> {
            self.inner.feed(after, limit)
        }
        fn read_log(
            &self,
            after: u64,
            limit: usize,
        ) -> crate::store::BoxFuture<'_, Result<Vec<crate::domain::changelog::LicenseChange>, Error>>
        {
            self.inner.read_log(after, limit)
        }
        fn read_audit(
            &self,
            query: AuditQuery,
            limit: usize,
        ) -> crate::store::BoxFuture<'_, Result<Vec<AuditEntry>, Error>> {
            self.inner.read_audit(query, limit)
        }
        fn oldest_audited(&self) -> crate::store::BoxFuture<'_, Result<u64, Error>> {
            self.inner.oldest_audited()
        }
        fn compact_log(&self, through: u64) -> crate::store::BoxFuture<'_, Result<u64, Error>> {
            self.inner.compact_log(through)
        }
        fn flush(&self) -> crate::store::BoxFuture<'_, Result<(), Error>> {
            self.inner.flush()
        }
    }

    /// Writes that arrive together are planned one after another, each
    /// against what the one before it left, committed at revisions of their
    /// own, and made durable by one sync; a write that fails (a missing
    /// record, a planner's panic) fails alone.
    #[tokio::test]
    async fn writes_that_arrive_together_share_a_sync_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CountingTurns {
            inner: open(dir.path()),
            turns: Default::default(),
        });
        let network = Arc::new(Network::open(store.clone()).await.unwrap());
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..48 {
            let network = network.clone();
            writes.spawn(async move {
                let result = match i % 4 {
                    3 => {
                        let missing = RecordKey::new(Kind::Supplier, format!("missing-{i}"));
                        network.delete(vec![missing], &anonymous()).await
                    }
                    2 if i == 6 => network
                        .submit(
                            Apply::Commit,
                            &anonymous(),
                            |_: &dyn Lookup| -> Result<Plan, Error> {
                                panic!("a bug in the planner")
                            },
                        )
                        .await
                        .map(|(outcome, _)| outcome),
                    _ => {
                        network
                            .upsert(Upsert::new(supplier(&format!("S{i:02}"))), &anonymous())
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
        let turns = store.turns.load(std::sync::atomic::Ordering::Relaxed);
        assert!(turns < 12, "48 writes arriving together took {turns} turns");
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
            Network::open(store)
                .await
                .unwrap()
                .with_recovery(reopen, dir.path().to_path_buf()),
        );
        *network.failure.lock() = Some(Failure {
            detail: "a full disk".into(),
            last_probe: Instant::now() - 2 * recovery::PROBE_EVERY,
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
            .upsert(Upsert::new(supplier("S1")), &anonymous())
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
