//! The store in place of one that failed to write, while it is closed and
//! opened again: it remembers where the failed store stood and refuses
//! everything else.

use super::{BoxFuture, Committed, LogBounds, Snapshot, Store};
use crate::domain::changelog::LicenseChange;
use crate::domain::write::Change;
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

    fn commit(&self, _: Vec<Change>, _: &str) -> Result<Committed, Error> {
        Err(self.refused())
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn sync(&self) -> Result<(), Error> {
        Err(self.refused())
    }

    fn snapshot(&self) -> Result<Snapshot, Error> {
        Err(self.refused())
    }

    fn log_bounds(&self) -> LogBounds {
        self.bounds
    }

    fn read_log(&self, _: u64, _: usize) -> Result<Vec<LicenseChange>, Error> {
        Err(self.refused())
    }

    fn compact_log(&self, _: u64) -> Result<u64, Error> {
        Err(self.refused())
    }
}
