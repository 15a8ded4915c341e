//! How much of the licence log to keep (`--log-retain-events`,
//! `--log-retain-days`), and which events that lets go.

use crate::domain::Error;
use crate::store::Store;

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

    /// The newest sequence this retention lets go in `store`'s log, so that
    /// what is kept stays contiguous; `None` when it lets nothing go.
    pub async fn through(&self, store: &dyn Store) -> Result<Option<u64>, Error> {
        let bounds = store.log_bounds();
        let mut through = 0;
        if let Some(keep) = self.max_events {
            through = bounds.head.saturating_sub(keep);
        }
        if let Some(age) = self.max_age {
            let cutoff = std::time::SystemTime::now() - age;
            let mut after = bounds.oldest.saturating_sub(1);
            'scan: loop {
                let batch = store.read_log(after, 1024).await?;
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
        Ok((through >= bounds.oldest).then_some(through))
    }
}
