//! Following other replicas: what they commit reaches this replica's view
//! through the store's change feed, under the writer path (so that the
//! staged view stays every revision committed, in order).

use std::sync::Arc;
use std::time::Duration;

use super::plan::catch_up;
use super::Network;
use crate::domain::Error;
use crate::store::Store;
use crate::view::View;

/// Most revisions the follower applies at once.
const FOLLOW_BATCH: usize = 256;

impl Network {
    /// Applies what other replicas committed since the writer's view, up to
    /// `limit` revisions, and publishes it. Returns how many revisions it
    /// applied (0: the view is current).
    pub async fn follow(&self, limit: usize) -> Result<usize, Error> {
        let mut staged = self.writer.lock().await;
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
            self.published.publish(view);
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
        if appended > 0 && appended <= super::RECENT_ENTRIES {
            if let Ok(entries) = store.read_log(from, appended).await {
                self.recent.append(entries);
            }
        }
        *staged = next.clone();
        drop(staged);
        self.published.publish(next);
        Ok(count)
    }

    /// Every record as the store holds them now, as a view of `epoch`: for a
    /// replica whose next revision (after `applied`) the change feed no
    /// longer holds.
    pub(super) async fn reload(
        &self,
        store: &dyn Store,
        epoch: u64,
        applied: u64,
    ) -> Result<Arc<View>, Error> {
        tracing::warn!(
            applied,
            "this replica fell behind what the change feed keeps; loading every record again"
        );
        View::load(store.snapshot().await?, epoch).await
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
}
