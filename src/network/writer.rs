//! The single writer path: every write is queued here, and a drain takes
//! every write waiting at once through five steps: begin a turn at the
//! store and catch up, plan, commit, publish, answer.
//!
//! The invariants this file keeps, and nothing else can break (the staged
//! view and the queue are private to it):
//!
//! - **Revision order.** Writes commit in the order they are planned, each
//!   at the revision after the one before; the store must confirm exactly
//!   those revisions, or the batch is a storage failure.
//! - **The log head.** The licence log's head the view carries is the
//!   store's count after the commit, not the plan's guess.
//! - **Publish only after a durable commit.** Readers and streams see a
//!   write once its commit is on disk, and a caller hears of it only then.
//!
//! The staged view (the writer's, behind its lock) is every revision the
//! writer has seen committed: each turn catches it up to the store's head,
//! plans against it, and builds the next view from it, in commit order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};
use tracing::Instrument;

use super::plan::{plan_batch, with_changes, Apply, Job, Plan, Planned, Read, Reply};
use super::{recovery, Network, WriteOutcome};
use crate::domain::audit::Attribution;
use crate::domain::write::Lookup;
use crate::domain::Error;
use crate::store::{Committed, FeedEntry, Store, Turn};
use crate::view::View;

/// Most writes committed in one batch: enough for every connection's write
/// to share one sync, few enough that the first of them is answered soon.
const MAX_BATCH: usize = 256;

pub(super) struct Writer {
    /// Writes waiting for the writer, in arrival order.
    queue: parking_lot::Mutex<VecDeque<Job>>,
    /// The single writer path, held from a turn's start to its commit; its
    /// value is the staged view.
    staged: Arc<Mutex<Arc<View>>>,
}

/// The writer's turn: the staged view, which only its holder may replace.
pub(super) type Staged = OwnedMutexGuard<Arc<View>>;

impl Writer {
    pub(super) fn new(view: Arc<View>) -> Writer {
        Writer {
            queue: parking_lot::Mutex::new(VecDeque::new()),
            staged: Arc::new(Mutex::new(view)),
        }
    }

    /// Waits for the writer path and holds it.
    pub(super) async fn lock(&self) -> Staged {
        self.staged.clone().lock_owned().await
    }

    fn take_batch(&self) -> Vec<Job> {
        let mut queue = self.queue.lock();
        let n = queue.len().min(MAX_BATCH);
        queue.drain(..n).collect()
    }
}

/// A turn at the store, begun and caught up: the view to plan on and the
/// change feed that brings it to the turn's head.
struct Begun {
    turn: Box<dyn Turn>,
    from: Arc<View>,
    feed: Vec<FeedEntry>,
}

impl Network {
    /// Queues a write for the writer. `plan` runs on a blocking thread with
    /// the writer's view (every committed revision: exactly the store) and
    /// returns the changes to commit and what it read on its way.
    pub(super) async fn submit<F>(
        self: &Arc<Self>,
        apply: Apply,
        by: &Attribution,
        plan: F,
    ) -> Result<(WriteOutcome, Read), Error>
    where
        F: FnOnce(&dyn Lookup) -> Result<Plan, Error> + Send + 'static,
    {
        let (reply, replied) = oneshot::channel();
        self.writer.queue.lock().push_back(Job {
            apply,
            by: by.clone(),
            plan: Box::new(plan),
            reply,
            span: tracing::Span::current(),
        });
        // Every queued write starts a drain of its own, so none waits for a
        // later one; a drain that finds the queue empty (an earlier drain
        // took its write along) ends at once. Spawned: a caller that goes
        // away (a deadline, a cancelled call) must not leave its write, or a
        // commit of others, unannounced to readers and streams.
        tokio::spawn(self.clone().drain());
        replied
            .await
            .map_err(|_| Error::Internal("the writer dropped the write".into()))?
    }

    /// Takes the writer path and every write waiting (up to [`MAX_BATCH`])
    /// through the five steps.
    async fn drain(self: Arc<Self>) {
        let mut staged = self.writer.lock().await;
        let batch = self.writer.take_batch();
        if batch.is_empty() {
            return;
        }
        let fail_all = |batch: Vec<Job>, error: &Error| {
            for job in batch {
                let _ = job.reply.send(Err(error.clone()));
            }
        };
        if let Err(error) = self.recover_if_failed(&mut staged).await {
            return fail_all(batch, &error);
        }
        let store = self.store();
        // 1. Begin the turn and catch up.
        let begun = match self.begin_turn(&*store, &staged).await {
            Ok(begun) => begun,
            Err(error) => {
                self.note_failure(&error);
                return fail_all(batch, &error);
            }
        };
        // The callers' spans: the commit is a child of the first and
        // follows from the others, whose writes it carries too.
        let callers: Vec<tracing::Span> = batch.iter().map(|job| job.span.clone()).collect();
        // 2. Plan.
        let Begun { turn, from, feed } = begun;
        let planned = tokio::task::spawn_blocking(move || plan_batch(from, feed, batch)).await;
        let Ok(mut planned) = planned else {
            // Planning panics are caught write by write; this is the view's
            // own code failing. Nothing was committed; the callers see the
            // writer go.
            tracing::error!("the writer failed while planning a batch");
            return;
        };
        // Caught up, whatever becomes of the batch.
        *staged = planned.base.clone();
        // 3. Commit.
        let newest = if planned.sets.is_empty() {
            planned.base.clone()
        } else {
            match self.commit(turn, &mut planned, &callers).await {
                Some(next) => next,
                // Committed but missing from the view: nothing is published.
                None => return answer(planned.replies),
            }
        };
        *staged = newest.clone();
        drop(staged);
        // 4. Publish, and only then 5. answer.
        self.published.publish(newest);
        answer(planned.replies)
    }

    /// Step 1: a turn at the store (nobody else commits meanwhile, on any
    /// replica), with the feed that catches the staged view up to its head.
    async fn begin_turn(&self, store: &dyn Store, staged: &Arc<View>) -> Result<Begun, Error> {
        let mut turn = store.begin().await?;
        let head = turn.head();
        if head < staged.revision {
            return Err(Error::Internal(format!(
                "the store is at revision {head}, behind the writer's view at {}",
                staged.revision
            )));
        }
        if head == staged.revision {
            return Ok(Begun {
                turn,
                from: staged.clone(),
                feed: Vec::new(),
            });
        }
        let feed = turn.catch_up(staged.revision).await?;
        if feed.first().map(|e| e.revision) == Some(staged.revision + 1) {
            return Ok(Begun {
                turn,
                from: staged.clone(),
                feed,
            });
        }
        // The feed no longer holds what this replica lacks: load every
        // record (nobody commits meanwhile).
        let from = self.reload(store, staged.epoch, staged.revision).await?;
        if from.revision != head {
            return Err(Error::Internal(format!(
                "reloaded revision {}, not the head {head}",
                from.revision
            )));
        }
        self.recent.clear();
        Ok(Begun {
            turn,
            from,
            feed: Vec::new(),
        })
    }

    /// Step 3: commits the planned write sets durably and checks what the
    /// store confirms. Returns the view after them, which may be published:
    /// the staged view when the commit failed (nothing changed), `None` when
    /// it committed but its view could not be built (nothing may be
    /// published then). Every committing write's answer joins `replies`.
    async fn commit(
        &self,
        turn: Box<dyn Turn>,
        planned: &mut Planned,
        callers: &[tracing::Span],
    ) -> Option<Arc<View>> {
        let first = planned.base.revision + 1;
        let sets = std::mem::take(&mut planned.sets);
        let count = sets.len();
        let committing = std::mem::take(&mut planned.committing);
        let building = planned.deferred.take().map(|(revision, changes)| {
            let before = planned.next.clone();
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
            None => planned.next.clone(),
            Some(building) => match building.await {
                Ok(built) => built,
                Err(e) => {
                    self.lost_from_view(&format!("building the view failed: {e}"));
                    let error = Error::Internal(format!("building the view failed: {e}"));
                    fail(&mut planned.replies, committing, &error);
                    return None;
                }
            },
        };
        tracing::debug!(
            writes = count,
            commit_ms,
            // Beyond the commit, for a view built beside it.
            view_wait_ms = (started.elapsed().as_millis() as u64).saturating_sub(commit_ms),
            "committed"
        );
        match committed.and_then(|c| in_revision_order(c, first, count)) {
            Ok(committed) => {
                let next = with_store_log_head(next, &committed);
                self.recent.append(
                    committed
                        .iter()
                        .flat_map(|c| c.license_changes.iter().cloned()),
                );
                for ((reply, read), committed) in committing.into_iter().zip(committed) {
                    let outcome = WriteOutcome {
                        revision: committed.revision,
                        committed: Some(committed),
                    };
                    planned.replies.push((reply, Ok((outcome, read))));
                }
                Some(next)
            }
            Err(error) => {
                self.note_failure(&error);
                fail(&mut planned.replies, committing, &error);
                Some(planned.base.clone())
            }
        }
    }

    /// A batch committed but not in the view: a replica's next turn catches
    /// up from the feed; sled's store is opened again and read whole.
    fn lost_from_view(&self, why: &str) {
        tracing::error!(error = why, "a committed batch is missing from the view");
        self.note_failure(&Error::Storage(why.to_string()));
    }

    /// A storage failure of a store that can be opened again (sled's, whose
    /// disk may fill) refuses writes until a probe finds the disk writable.
    /// A store that cannot (PostgreSQL, whose transaction rolled back) fails
    /// only the batch: the next turn begins afresh and catches up from the
    /// feed, so nothing sticks that nothing would clear.
    fn note_failure(&self, error: &Error) {
        if self.recovery.is_some() {
            recovery::note_failure(&self.failure, error);
        }
    }
}

/// Revision order: the store committed exactly `first`, `first + 1`, … for
/// the `count` write sets, in order.
fn in_revision_order(
    committed: Vec<Committed>,
    first: u64,
    count: usize,
) -> Result<Vec<Committed>, Error> {
    let revisions: Vec<u64> = committed.iter().map(|c| c.revision).collect();
    if revisions != (first..first + count as u64).collect::<Vec<_>>() {
        return Err(Error::Storage(format!(
            "the store committed revisions {revisions:?}, not {first} to {}",
            first + count as u64 - 1
        )));
    }
    Ok(committed)
}

/// The log head: `next` with the licence log's head the store counted, which
/// is the truth where it differs from the plan's.
fn with_store_log_head(mut next: Arc<View>, committed: &[Committed]) -> Arc<View> {
    let appended = committed
        .iter()
        .filter_map(|c| c.license_changes.last())
        .map(|c| c.sequence)
        .max();
    if let Some(head) = appended.filter(|&h| h != next.log_head) {
        tracing::error!(
            predicted = next.log_head,
            head,
            "the licence log head differs from the plan's"
        );
        Arc::make_mut(&mut next).log_head = head;
    }
    next
}

/// Every committing write fails with `error`.
fn fail(
    replies: &mut Vec<(oneshot::Sender<Reply>, Reply)>,
    committing: Vec<(oneshot::Sender<Reply>, Read)>,
    error: &Error,
) {
    for (reply, _) in committing {
        replies.push((reply, Err(error.clone())));
    }
}

/// Step 5: each write's answer, once what it changed is published.
fn answer(replies: Vec<(oneshot::Sender<Reply>, Reply)>) {
    for (reply, answer) in replies {
        let _ = reply.send(answer);
    }
}
