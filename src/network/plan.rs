//! Planning a batch of writes: each against the view the one before it
//! left, so that what a plan read stays true when the batch commits. Runs
//! on a blocking thread, under the writer's turn.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::domain::audit::Attribution;
use crate::domain::record::License;
use crate::domain::write::{Change, Lookup};
use crate::domain::{Error, Kind};
use crate::store::{FeedEntry, WriteSet};
use crate::view::View;

use super::WriteOutcome;

/// What a plan read on its way, for its caller.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Read {
    Nothing,
    /// The licence as stored before a decision.
    License(License),
}

/// What a plan makes of the writer's view: the changes to commit (none:
/// nothing to change), and what it read.
pub(super) struct Plan {
    pub changes: Vec<Change>,
    pub read: Read,
}

/// Whether a write is stored, or only checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    Commit,
    /// `validate_only`: planned and answered, nothing stored.
    ValidateOnly,
}

pub(super) type Planner = Box<dyn FnOnce(&dyn Lookup) -> Result<Plan, Error> + Send>;
pub(super) type Reply = Result<(WriteOutcome, Read), Error>;

/// A write waiting for the writer.
pub(super) struct Job {
    pub apply: Apply,
    /// Who asks, by which request.
    pub by: Attribution,
    pub plan: Planner,
    pub reply: oneshot::Sender<Reply>,
    /// The caller's span, for what the writer logs of this write.
    pub span: tracing::Span,
}

/// A batch, planned against the writer's view caught up to the turn's head.
pub(super) struct Planned {
    /// The view caught up to the turn's head.
    pub base: Arc<View>,
    /// The view after every write of the batch commits, but for `deferred`.
    pub next: Arc<View>,
    /// The last write's revision and changes, when they are many: applied
    /// to `next` while the store commits, rather than before.
    pub deferred: Option<(u64, Vec<Change>)>,
    /// What to commit, a write set per revision.
    pub sets: Vec<WriteSet>,
    /// The writes that commit, in the order of `sets`.
    pub committing: Vec<(oneshot::Sender<Reply>, Read)>,
    /// The writes answered without a commit: refused, validated only, or
    /// nothing to change.
    pub replies: Vec<(oneshot::Sender<Reply>, Reply)>,
}

/// Changes from which the last write's view is built while the store
/// commits, on another core, rather than before: a large import's view
/// takes about as long as its commit.
const DEFER_VIEW_FROM: usize = 1_000;

/// `view` with the change feed's revisions applied, in order; they must
/// follow on from it.
pub(super) fn catch_up(view: Arc<View>, feed: Vec<FeedEntry>) -> Result<Arc<View>, Error> {
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
pub(super) fn plan_batch(view: Arc<View>, feed: Vec<FeedEntry>, batch: Vec<Job>) -> Planned {
    let base = match catch_up(view, feed) {
        Ok(base) => base,
        Err(error) => {
            let view = Arc::new(View::default());
            return Planned {
                base: view.clone(),
                next: view,
                deferred: None,
                sets: Vec::new(),
                committing: Vec::new(),
                replies: batch
                    .into_iter()
                    .map(|job| (job.reply, Err(error.clone())))
                    .collect(),
            };
        }
    };
    let mut planned = Planned {
        next: base.clone(),
        base,
        deferred: None,
        sets: Vec::new(),
        committing: Vec::new(),
        replies: Vec::with_capacity(batch.len()),
    };
    let last = batch.len().saturating_sub(1);
    for (at, job) in batch.into_iter().enumerate() {
        planned.add(job, at == last);
    }
    planned
}

impl Planned {
    /// Plans `job` against the view the writes before it left.
    fn add(&mut self, job: Job, last: bool) {
        let Job {
            apply,
            by,
            plan,
            reply,
            span,
        } = job;
        let _entered = span.enter();
        let _planning = tracing::info_span!("validate and plan").entered();
        let started = Instant::now();
        let Plan { mut changes, read } = match plan_caught(plan, &*self.next) {
            Ok(plan) => plan,
            Err(error) => return self.replies.push((reply, Err(error))),
        };
        if apply == Apply::ValidateOnly || changes.is_empty() {
            let outcome = WriteOutcome {
                revision: self.next.revision,
                committed: None,
            };
            return self.replies.push((reply, Ok((outcome, read))));
        }
        let planned = started.elapsed();
        let revision = self.next.revision + 1;
        for record in changes.iter_mut().filter_map(|c| c.new.as_mut()) {
            record.set_revision(revision);
        }
        if last && changes.len() >= DEFER_VIEW_FROM {
            // Nothing plans against it: build it beside the commit.
            self.deferred = Some((revision, changes.clone()));
        } else {
            self.next = with_changes(&self.next, revision, changes.clone());
        }
        tracing::debug!(
            changes = changes.len(),
            plan_ms = planned.as_millis() as u64,
            view_ms = (started.elapsed() - planned).as_millis() as u64,
            revision,
            "planned"
        );
        self.sets.push(WriteSet { changes, by });
        self.committing.push((reply, read));
    }
}

/// Runs `plan`; a panic while planning is a bug confined to this request:
/// nothing was written, so it fails alone (INTERNAL) and the writer goes on.
fn plan_caught(plan: Planner, lookup: &dyn Lookup) -> Result<Plan, Error> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan(lookup))) {
        Ok(planned) => planned,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::Internal(format!(
                "planning the write failed: {what}"
            )))
        }
    }
}

/// `view` after `changes` committed at `revision`.
pub(super) fn with_changes(view: &View, revision: u64, changes: Vec<Change>) -> Arc<View> {
    let licences = changes
        .iter()
        .filter(|c| c.key().kind == Kind::License)
        .count() as u64;
    let mut next = View::clone(view);
    next.apply(revision, changes);
    next.log_head += licences;
    Arc::new(next)
}
