//! What readers see: the view of the newest revision known to be durable,
//! and the two numbers streams and waiting calls follow (its revision and
//! the licence log's durable head).
//!
//! The invariant kept here: what is published only ever moves forward. A
//! view replaces the published one only when it is of a newer (epoch,
//! revision); the durable head only rises. Whoever publishes (the writer
//! after a durable commit, the follower after another replica's, recovery
//! after the store is opened again) cannot move readers back.

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::view::View;

pub(super) struct Published {
    /// Every record at the newest revision known to be durable. Replaced
    /// whole, so that a reader never sees part of a write.
    view: RwLock<Arc<View>>,
    /// The published view's revision, for calls that wait to see a
    /// revision (`x-lodestone-min-revision`).
    applied: watch::Sender<u64>,
    /// The newest licence log sequence known to be durable. Streams wait on
    /// it, so that they never send what a crash could take back.
    durable_head: watch::Sender<u64>,
}

impl Published {
    pub(super) fn new(view: Arc<View>) -> Published {
        Published {
            applied: watch::channel(view.revision).0,
            durable_head: watch::channel(view.log_head).0,
            view: RwLock::new(view),
        }
    }

    pub(super) fn view(&self) -> Arc<View> {
        self.view.read().clone()
    }

    pub(super) fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub(super) fn durable_head(&self) -> watch::Receiver<u64> {
        self.durable_head.subscribe()
    }

    /// Lets readers see `view` (durable, with the licence log at its
    /// `log_head`) unless they see a newer one already.
    pub(super) fn publish(&self, view: Arc<View>) {
        let log_head = view.log_head;
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
}
