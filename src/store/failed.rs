//! The store in place of one that failed to write, while it is closed and
//! opened again: it remembers where the failed store stood and refuses
//! everything else.

use super::{BoxFuture, FeedEntry, LogBounds, Snapshot, Store, Turn};
use crate::domain::audit::{AuditEntry, AuditQuery};
use crate::domain::changelog::LicenseChange;
use crate::domain::Error;

pub struct FailedStore {
    revision: u64,
    bounds: LogBounds,
    detail: String,
}

impl FailedStore {
    pub fn new(revision: u64, bounds: LogBounds, detail: String) -> FailedStore {
        FailedStore {
            revision,
            bounds,
            detail,
        }
    }

    fn refused(&self) -> Error {
        Error::StoreFailed {
            detail: self.detail.clone(),
        }
    }
}

impl Store for FailedStore {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn log_bounds(&self) -> LogBounds {
        self.bounds
    }

    fn latest(&self) -> BoxFuture<'_, Result<(u64, u64), Error>> {
        let known = (self.revision, self.bounds.head);
        Box::pin(async move { Ok(known) })
    }

    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Turn>, Error>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn feed(&self, _: u64, _: usize) -> BoxFuture<'_, Result<Vec<FeedEntry>, Error>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn read_log(&self, _: u64, _: usize) -> BoxFuture<'_, Result<Vec<LicenseChange>, Error>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn read_audit(&self, _: AuditQuery, _: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, Error>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn oldest_audited(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn compact_log(&self, _: u64) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Err(self.refused()) })
    }
}
