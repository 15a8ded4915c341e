//! Where records live: the [`Store`] interface, and its sled implementation.
//!
//! The store applies plans; it never decides whether a write is allowed (that
//! is the domain's job, under the single writer path of [`crate::network`]).
//! It must never acknowledge a write it has not made durable: callers commit,
//! then `flush`, then answer.

mod codec;
mod durable;
mod failed;
mod keys;
mod lock;
mod sled_store;

use std::future::Future;
use std::pin::Pin;

use crate::domain::changelog::LicenseChange;
use crate::domain::record::Record;
use crate::domain::write::Change;
use crate::domain::Error;

pub use failed::FailedStore;
pub use lock::DataDirLock;

/// Bytes of the files under `path` (a data directory), 0 where unreadable.
pub fn size_on_disk(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size_on_disk(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
pub use sled_store::{SledConfig, SledStore};

/// What a commit did.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The store revision after the commit.
    pub revision: u64,
    /// The licence log entries the commit appended, in order.
    pub license_changes: Vec<LicenseChange>,
    /// The changes as committed, new records stamped with the revision.
    pub changes: Vec<Change>,
}

/// Every record at one revision, in export order (materials, suppliers,
/// components, lines, licences; each kind by id).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub revision: u64,
    pub records: Vec<Record>,
}

/// The oldest and newest sequence the licence log holds; `oldest` is
/// `head + 1` when it is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    pub oldest: u64,
    pub head: u64,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The storage engine behind the service. Reads may run concurrently with
/// each other and with a commit; a caller serialises commits itself.
pub trait Store: Send + Sync + 'static {
    /// The current store revision (0 for an empty store).
    fn revision(&self) -> u64;

    /// Applies `changes` atomically at the next revision: the records, their
    /// index entries, the revision and a licence log entry for each licence
    /// change, which names `client` (the authenticated caller, or empty).
    /// Does not make them durable: see [`Store::flush`].
    fn commit(&self, changes: Vec<Change>, client: &str) -> Result<Committed, Error>;

    /// Makes every commit so far durable, against a power cut as well as a
    /// crash (on disk, synced). Concurrent calls share the work.
    fn flush(&self) -> BoxFuture<'_, Result<(), Error>>;

    /// [`Store::flush`], on the calling thread (blocking): for the writer
    /// path, which is on a blocking thread already.
    fn sync(&self) -> Result<(), Error>;

    /// Every record at one revision.
    fn snapshot(&self) -> Result<Snapshot, Error>;

    fn log_bounds(&self) -> LogBounds;

    /// Up to `limit` licence log entries with a sequence above `after`.
    fn read_log(&self, after: u64, limit: usize) -> Result<Vec<LicenseChange>, Error>;

    /// Removes the licence log's entries up to `through` (never past the
    /// head), so that what is kept stays contiguous. Returns how many went.
    fn compact_log(&self, through: u64) -> Result<u64, Error>;
}
