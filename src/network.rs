//! The supply network as the service keeps it: the single writer path over
//! the store, and the reads beside it.
//!
//! Every write goes through `Network::write`, which queues it for the
//! writer. The writer takes every write waiting at once and takes a turn at
//! the store (nobody else commits meanwhile, on any replica): it catches its
//! view up to the store's head through the change feed, plans each write
//! against the view the one before it left (so that what a plan read stays
//! true), and commits them all, each at a revision of its own, durably, in
//! one go. Only then does a reader see them, or a writer get its answer.
//! On a replica, [`Network::follow_changes`] applies what the others commit.
//!
//! A store that fails to write is recovered by [`crate::recovery`]; the
//! licence log is trimmed by [`crate::retention`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use std::any::Any;
use std::collections::VecDeque;

use tokio::sync::{oneshot, watch, Mutex};

use crate::domain::date::Date;
use crate::domain::record::{License, LicenseStatus, Record, RecordKey};
use crate::domain::write::{plan_delete, plan_upsert, Change, Incoming, Lookup, Origin};
use crate::domain::{Error, Kind, Violation};
use crate::recent::RecentLog;
pub use crate::recovery::Reopen;
use crate::recovery::{self, Failure, Recovery};
pub use crate::retention::Retention;
use crate::store::{Committed, FeedEntry, Store, WriteSet};
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

pub struct Network {
    /// Where records are kept; replaced by a [`crate::store::FailedStore`]
    /// while a failed store is opened again.
    store: parking_lot::RwLock<Arc<dyn Store>>,
    /// How to get over a store that failed to write (none: refuse writes).
    recovery: Option<Recovery>,
    /// The store's failure while it lasts: writes are refused meanwhile.
    failure: Arc<parking_lot::Mutex<Option<Failure>>>,
    /// Writes waiting for the writer, in arrival order.
    queue: parking_lot::Mutex<VecDeque<Job>>,
    /// The single writer path, held from a turn's start to its commit. Its
    /// value is the view of every revision the writer has seen committed:
    /// each turn catches it up to the store's head, plans against it, and
    /// builds the next view from it, in commit order.
    writer: Arc<Mutex<Arc<View>>>,
    /// Every record at the newest revision known to be durable: what every
    /// read is answered from. Replaced whole, and only by a newer revision,
    /// once a commit is durable, so that a reader never sees part of a
    /// write nor a write a crash could take back.
    view: Arc<parking_lot::RwLock<Arc<View>>>,
    /// The newest licence log sequence known to be durable. Raised with the
    /// view; streams wait on it so that they never send what a crash could
    /// take back.
    durable_head: watch::Sender<u64>,
    /// The revision of the published view, for calls that wait to see a
    /// revision (`x-lodestone-min-revision`).
    applied: watch::Sender<u64>,
    /// The newest licence log entries, for the streams (filled before the
    /// durable head moves past them).
    recent: RecentLog,
}

impl Network {
    /// Wraps an open store, reading every record into the view.
    pub async fn open(store: Arc<dyn Store>) -> Result<Network, Error> {
        let started = std::time::Instant::now();
        let view = view_of(store.snapshot().await?, 0).await?;
        let (revision, log_head) = (view.revision, view.log_head);
        tracing::info!(
            records = view.record_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "records loaded into memory"
        );
        Ok(Network {
            view: Arc::new(parking_lot::RwLock::new(view.clone())),
            store: parking_lot::RwLock::new(store),
            recovery: None,
            failure: Arc::new(parking_lot::Mutex::new(None)),
            queue: parking_lot::Mutex::new(VecDeque::new()),
            writer: Arc::new(Mutex::new(view)),
            durable_head: watch::channel(log_head).0,
            applied: watch::channel(revision).0,
            recent: RecentLog::new(RECENT_ENTRIES),
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

    /// Called under the writer lock while the store is failed: when the
    /// disk takes writes again (probed at most once a second), opens the
    /// store again and installs it with the view of what is on disk.
    async fn try_recover(&self, staged: &mut Arc<View>) -> Result<(), Error> {
        let Some(failure) = self.failure.lock().clone() else {
            return Ok(());
        };
        let epoch = self.view.read().epoch + 1;
        let (store, view) = recovery::reopen(
            self.recovery.as_ref(),
            &self.failure,
            &failure,
            &self.store,
            epoch,
        )
        .await?;
        let (revision, log_head) = (view.revision, view.log_head);
        *staged = view.clone();
        self.recent.clear();
        *self.view.write() = view;
        self.applied.send_replace(revision);
        *self.store.write() = store;
        *self.failure.lock() = None;
        self.durable_head.send_modify(|h| *h = log_head);
        tracing::warn!(
            revision,
            "the store takes writes again; recovered what was on disk"
        );
        Ok(())
    }

    /// Up to `limit` licence log entries after `after`: from memory when it
    /// holds them, else from the store.
    pub async fn read_log(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::domain::changelog::LicenseChange>, Error> {
        match self.recent.read(after, limit) {
            Some(entries) => Ok(entries),
            None => self.store().read_log(after, limit).await,
        }
    }

    /// Follows the revision readers see.
    pub fn applied_revision(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
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
    /// writer's view (every committed revision: exactly the store) and
    /// returns the changes to commit, and anything the caller wants back
    /// from what it read. The write is queued for the writer, which takes
    /// every write waiting at once (see [`Network::drain`]).
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
        // commit of others, unannounced to readers and streams.
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
    /// and takes a turn at the store: catches the writer's view up to the
    /// store's head, plans each write (on a blocking thread) against the
    /// view the one before it left, and commits them all at once, each at a
    /// revision of its own, durably. Only then is the newest view published
    /// and each write answered.
    async fn drain(self: Arc<Self>) {
        let mut staged = self.writer.clone().lock_owned().await;
        let batch: Vec<Job> = {
            let mut queue = self.queue.lock();
            let n = queue.len().min(MAX_BATCH);
            queue.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        let fail_all = |batch: Vec<Job>, error: &Error| {
            for job in batch {
                let _ = job.reply.send(Err(error.clone()));
            }
        };
        if self.failure.lock().is_some() {
            if let Err(error) = self.try_recover(&mut staged).await {
                return fail_all(batch, &error);
            }
        }
        let store = self.store();
        let turn = async {
            let mut turn = store.begin().await?;
            let mut from = staged.clone();
            let feed = match turn.head().cmp(&staged.revision) {
                std::cmp::Ordering::Equal => Vec::new(),
                std::cmp::Ordering::Greater => {
                    let feed = turn.catch_up(staged.revision).await?;
                    if feed.first().map(|e| e.revision) != Some(staged.revision + 1) {
                        // The feed no longer holds what this replica lacks:
                        // load every record (nobody commits meanwhile).
                        from = self.reload(&*store, staged.epoch, staged.revision).await?;
                        if from.revision != turn.head() {
                            return Err(Error::Internal(format!(
                                "reloaded revision {}, not the head {}",
                                from.revision,
                                turn.head()
                            )));
                        }
                        self.recent.clear();
                        Vec::new()
                    } else {
                        feed
                    }
                }
                std::cmp::Ordering::Less => {
                    return Err(Error::Internal(format!(
                        "the store is at revision {}, behind the writer's view at {}",
                        turn.head(),
                        staged.revision
                    )))
                }
            };
            Ok((turn, from, feed))
        };
        let (turn, from, feed) = match turn.await {
            Ok(begun) => begun,
            Err(error) => {
                recovery::note_failure(&self.failure, &error);
                return fail_all(batch, &error);
            }
        };
        // The callers' spans: the commit is a child of the first and
        // follows from the others, whose writes it carries too.
        let callers: Vec<tracing::Span> = batch.iter().map(|job| job.span.clone()).collect();
        let planned = tokio::task::spawn_blocking(move || plan_batch(from, feed, batch)).await;
        let Ok(planned) = planned else {
            // Planning panics are caught write by write; this is the view's
            // own code failing. Nothing was committed; the callers see the
            // writer go.
            tracing::error!("the writer failed while planning a batch");
            return;
        };
        let Planned {
            base,
            next,
            deferred,
            sets,
            committing,
            mut replies,
        } = planned;
        // Caught up, whatever becomes of the batch.
        *staged = base.clone();
        let mut newest = base;
        if !sets.is_empty() {
            let first = staged.revision + 1;
            let count = sets.len();
            let building = deferred.map(|(revision, changes)| {
                let before = next.clone();
                tokio::task::spawn_blocking(move || with_changes(&before, revision, changes))
            });
            let span = tracing::info_span!(
                parent: callers.first().and_then(|c| c.id()),
                "store commit",
                writes = count,
                first_revision = first,
            );
            for caller in callers.iter().skip(1) {
                span.follows_from(caller);
            }
            let started = Instant::now();
            let committed = span
                .in_scope(|| turn.commit(sets))
                .instrument(span.clone())
                .await;
            let commit_ms = started.elapsed().as_millis() as u64;
            let next = match building {
                Some(building) => match building.await {
                    Ok(built) => built,
                    Err(e) => {
                        // Committed, but not in the view: a replica's next
                        // turn catches up from the feed; sled's store is
                        // opened again and read whole.
                        let error = Error::Internal(format!("building the view failed: {e}"));
                        tracing::error!(%error, "a committed batch is missing from the view");
                        if self.recovery.is_some() {
                            recovery::note_failure(
                                &self.failure,
                                &Error::Storage(error.to_string()),
                            );
                        }
                        for (reply, _) in committing {
                            replies.push((reply, Err(error.clone())));
                        }
                        for (reply, answer) in replies {
                            let _ = reply.send(answer);
                        }
                        return;
                    }
                },
                None => next,
            };
            tracing::debug!(
                writes = count,
                commit_ms,
                // Beyond the commit, for a view built beside it.
                view_wait_ms = (started.elapsed().as_millis() as u64).saturating_sub(commit_ms),
                "committed"
            );
            let committed = committed.and_then(|committed| {
                let revisions: Vec<u64> = committed.iter().map(|c| c.revision).collect();
                if revisions != (first..first + count as u64).collect::<Vec<_>>() {
                    return Err(Error::Storage(format!(
                        "the store committed revisions {revisions:?}, not {first} to {}",
                        first + count as u64 - 1
                    )));
                }
                Ok(committed)
            });
            match committed {
                Ok(committed) => {
                    let appended = committed
                        .iter()
                        .filter_map(|c| c.license_changes.last())
                        .map(|c| c.sequence)
                        .max();
                    let mut next = next;
                    if let Some(head) = appended.filter(|&h| h != next.log_head) {
                        // The store's count is the truth.
                        tracing::error!(
                            predicted = next.log_head,
                            head,
                            "the licence log head differs from the plan's"
                        );
                        Arc::make_mut(&mut next).log_head = head;
                    }
                    *staged = next.clone();
                    newest = next;
                    self.recent.append(
                        committed
                            .iter()
                            .flat_map(|c| c.license_changes.iter().cloned()),
                    );
                    for ((reply, value), committed) in committing.into_iter().zip(committed) {
                        let outcome = WriteOutcome {
                            revision: committed.revision,
                            committed: Some(committed),
                        };
                        replies.push((reply, Ok((outcome, value))));
                    }
                }
                Err(error) => {
                    recovery::note_failure(&self.failure, &error);
                    for (reply, _) in committing {
                        replies.push((reply, Err(error.clone())));
                    }
                }
            }
        }
        let log_head = newest.log_head;
        drop(staged);
        self.publish(newest, log_head);
        for (reply, answer) in replies {
            let _ = reply.send(answer);
        }
    }

    /// Lets readers see `view` (durable, with the licence log at `log_head`)
    /// unless they see a newer one already.
    fn publish(&self, view: Arc<View>, log_head: u64) {
        {
            let mut published = self.view.write();
            if (view.epoch, view.revision) > (published.epoch, published.revision) {
                self.applied.send_replace(view.revision);
                *published = view;
            }
        }
        self.durable_head.send_if_modified(|head| {
            let raised = log_head > *head;
            *head = (*head).max(log_head);
            raised
        });
    }

    /// Applies what other replicas committed since the writer's view, up to
    /// `limit` revisions, and publishes it. Returns how many revisions it
    /// applied (0: the view is current).
    pub async fn follow(&self, limit: usize) -> Result<usize, Error> {
        let mut staged = self.writer.clone().lock_owned().await;
        let store = self.store();
        let feed = store.feed(staged.revision, limit).await?;
        let Some(first) = feed.first() else {
            return Ok(0);
        };
        if first.revision != staged.revision + 1 {
            let view = self.reload(&*store, staged.epoch, staged.revision).await?;
            *staged = view.clone();
            drop(staged);
            self.recent.clear();
            let log_head = view.log_head;
            self.publish(view, log_head);
            return Ok(1);
        }
        let count = feed.len();
        let from = staged.clone();
        let next = tokio::task::spawn_blocking(move || catch_up(from, feed))
            .await
            .map_err(|e| Error::Internal(format!("applying the change feed failed: {e}")))??;
        // The streams of this replica read the new log entries from memory:
        // one query here, not one per stream.
        let from = staged.log_head;
        let appended = next.log_head.saturating_sub(from) as usize;
        if appended > 0 && appended <= RECENT_ENTRIES {
            if let Ok(entries) = store.read_log(from, appended).await {
                self.recent.append(entries);
            }
        }
        *staged = next.clone();
        drop(staged);
        let log_head = next.log_head;
        self.publish(next, log_head);
        Ok(count)
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

    /// Every record as the store holds them now, as a view of `epoch`: for a
    /// replica whose next revision (after `applied`) the change feed no
    /// longer holds.
    async fn reload(
        &self,
        store: &dyn Store,
        epoch: u64,
        applied: u64,
    ) -> Result<Arc<View>, Error> {
        tracing::warn!(
            applied,
            "this replica fell behind what the change feed keeps; loading every record again"
        );
        view_of(store.snapshot().await?, epoch).await
    }

    /// Keeps the view current with what other replicas commit, until
    /// `stop`: woken by the store, and every `poll` in case a wake-up was
    /// lost.
    pub async fn follow_changes(
        self: Arc<Self>,
        changed: Arc<tokio::sync::Notify>,
        poll: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = changed.notified() => {}
                () = tokio::time::sleep(poll) => {}
                () = stop.cancelled() => return,
            }
            loop {
                match self.follow(FOLLOW_BATCH).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the change feed; trying again");
                        break;
                    }
                }
            }
        }
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

/// The view of every record of `snapshot`, of store epoch `epoch` (built on
/// the blocking pool: a large store takes a while).
pub(crate) async fn view_of(
    snapshot: crate::store::Snapshot,
    epoch: u64,
) -> Result<Arc<View>, Error> {
    tokio::task::spawn_blocking(move || {
        let mut view = View::new(snapshot.revision, snapshot.records);
        view.epoch = epoch;
        view.log_head = snapshot.log_head;
        Arc::new(view)
    })
    .await
    .map_err(|e| Error::Internal(format!("loading the view failed: {e}")))
}

/// Licence log entries kept in memory for the streams.
const RECENT_ENTRIES: usize = 8192;

/// Most revisions the follower applies at once.
const FOLLOW_BATCH: usize = 256;

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

/// A batch, planned against the writer's view caught up to the turn's head.
struct Planned {
    /// The view caught up to the turn's head.
    base: Arc<View>,
    /// The view after every write of the batch commits, but for `deferred`.
    next: Arc<View>,
    /// The last write's revision and changes, when they are many: applied
    /// to `next` while the store commits, rather than before.
    deferred: Option<(u64, Vec<Change>)>,
    /// What to commit, a write set per revision.
    sets: Vec<WriteSet>,
    /// The writes that commit, in the order of `sets`.
    committing: Vec<(oneshot::Sender<Reply>, Value)>,
    /// The writes answered without a commit: refused, a dry run, or nothing
    /// to change.
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
}

/// `view` with the change feed's revisions applied, in order; they must
/// follow on from it.
fn catch_up(view: Arc<View>, feed: Vec<FeedEntry>) -> Result<Arc<View>, Error> {
    if feed.is_empty() {
        return Ok(view);
    }
    let mut next = View::clone(&view);
    for entry in feed {
        if entry.revision != next.revision + 1 {
            return Err(Error::Storage(format!(
                "the change feed skips from revision {} to {}",
                next.revision, entry.revision
            )));
        }
        next.apply(entry.revision, entry.changes);
        next.log_head = next.log_head.max(entry.log_head);
    }
    Ok(Arc::new(next))
}

/// Plans a batch of writes in order, each against the view the one before
/// it left, on `view` caught up with `feed` (blocking).
fn plan_batch(view: Arc<View>, feed: Vec<FeedEntry>, batch: Vec<Job>) -> Planned {
    let mut replies = Vec::with_capacity(batch.len());
    let base = match catch_up(view, feed) {
        Ok(base) => base,
        Err(error) => {
            let view = Arc::new(View::default());
            for job in batch {
                replies.push((job.reply, Err(error.clone())));
            }
            return Planned {
                base: view.clone(),
                next: view,
                deferred: None,
                sets: Vec::new(),
                committing: Vec::new(),
                replies,
            };
        }
    };
    let mut next = base.clone();
    let mut deferred = None;
    let mut sets = Vec::new();
    let mut committing = Vec::new();
    let last = batch.len().saturating_sub(1);
    for (at, job) in batch.into_iter().enumerate() {
        let Job {
            dry_run,
            client,
            plan,
            reply,
            span,
        } = job;
        let _entered = span.enter();
        let _planning = tracing::info_span!("validate and plan").entered();
        let started = Instant::now();
        // A panic while planning is a bug confined to this request: nothing
        // was written, so it fails alone (INTERNAL) and the writer goes on.
        let (mut changes, value) =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan(&*next))) {
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
                revision: next.revision,
                committed: None,
            };
            replies.push((reply, Ok((outcome, value))));
            continue;
        }
        let planned = started.elapsed();
        let revision = next.revision + 1;
        for record in changes.iter_mut().filter_map(|c| c.new.as_mut()) {
            record.set_revision(revision);
        }
        if at == last && changes.len() >= DEFER_VIEW_FROM {
            // Nothing plans against it: build it beside the commit.
            deferred = Some((revision, changes.clone()));
        } else {
            next = with_changes(&next, revision, changes.clone());
        }
        tracing::debug!(
            changes = changes.len(),
            plan_ms = planned.as_millis() as u64,
            view_ms = (started.elapsed() - planned).as_millis() as u64,
            revision,
            "planned"
        );
        sets.push(WriteSet { changes, client });
        committing.push((reply, value));
    }
    Planned {
        base,
        next,
        deferred,
        sets,
        committing,
        replies,
    }
}

/// Changes from which the last write's view is built while the store
/// commits, on another core, rather than before: a large import's view
/// takes about as long as its commit.
const DEFER_VIEW_FROM: usize = 1_000;

/// `view` after `changes` committed at `revision`.
fn with_changes(view: &View, revision: u64, changes: Vec<Change>) -> Arc<View> {
    let licences = changes
        .iter()
        .filter(|c| c.key().kind == Kind::License)
        .count() as u64;
    let mut next = View::clone(view);
    next.apply(revision, changes);
    next.log_head += licences;
    Arc::new(next)
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
        let network = Arc::new(Network::open(open(dir.path())).await.unwrap());
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
                        network.delete(vec![missing], "").await
                    }
                    2 if i == 6 => network
                        .write(
                            false,
                            "",
                            |_: &dyn Lookup| -> Result<(Vec<Change>, ()), Error> {
                                panic!("a bug in the planner")
                            },
                        )
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
            last_probe: Instant::now() - 2 * crate::recovery::PROBE_EVERY,
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
