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
mod postgres;
mod sled_store;

use crate::domain::audit::{Attribution, AuditEntry, AuditQuery};
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
pub use postgres::{is_postgres_url, PostgresConfig, PostgresStore};
pub use sled_store::{SledConfig, SledStore};

/// One write of a batch, as its plan left it.
#[derive(Clone, Debug)]
pub struct WriteSet {
    /// New records stamped with the revision the write commits at.
    pub changes: Vec<Change>,
    /// Who asked, by which request: the licence log names the caller, the
    /// audit trail both.
    pub by: Attribution,
}

/// What a commit did.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The store revision after the commit.
    pub revision: u64,
    /// The licence log entries the commit appended, in order.
    pub license_changes: Vec<LicenseChange>,
}

/// One committed revision, as the change feed carries it to a replica's
/// view: the records it stored, and the records it removed (as they were).
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    pub revision: u64,
    pub changes: Vec<Change>,
    /// The licence log's head once this revision committed.
    pub log_head: u64,
}

/// Every record at one revision, in export order (materials, suppliers,
/// components, lines, licences; each kind by id).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub revision: u64,
    pub records: Vec<Record>,
    /// The licence log's head at that revision.
    pub log_head: u64,
}

/// The oldest and newest sequence the licence log holds; `oldest` is
/// `head + 1` when it is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    pub oldest: u64,
    pub head: u64,
}

/// What the store's methods return: a boxed future, so that the trait
/// stays object-safe.
pub use futures_util::future::BoxFuture;

/// The storage engine behind the service: sled in one process, or a
/// database that several replicas share.
///
/// Writes go through [`Store::begin`]: the writer's turn at the store,
/// during which no one else commits (sled: this process is the only
/// writer; PostgreSQL: the turn's transaction holds the head row). The
/// writer catches its view up to the turn's head through the change feed,
/// plans against it, and commits every write of its batch at once.
pub trait Store: Send + Sync + 'static {
    /// The newest revision this process knows committed (0 for an empty
    /// store).
    fn revision(&self) -> u64;

    /// The licence log's bounds as this process last knew them.
    fn log_bounds(&self) -> LogBounds;

    /// Wakes whoever follows the change feed when another process may have
    /// committed; `None` when no other process writes.
    fn changed(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Whether the store answers, as it changes (`None`: an embedded store,
    /// which always does). While it does not, writes are refused at once
    /// and the server reports `NOT_SERVING`.
    fn reachable(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }

    /// The newest revision and licence log sequence committed, as the store
    /// says now: another process may have committed past what this one
    /// knows.
    fn latest(&self) -> BoxFuture<'_, Result<(u64, u64), Error>>;

    /// Takes the writer's turn: while it is held, nobody else commits.
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Turn>, Error>>;

    /// Every record at one revision.
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, Error>>;

    /// The change feed: up to `limit` committed revisions after `after`, in
    /// revision order. A store that only this process writes has nothing
    /// for it, and answers none.
    fn feed(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<FeedEntry>, Error>>;

    /// Up to `limit` licence log entries with a sequence above `after`.
    fn read_log(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LicenseChange>, Error>>;

    /// Up to `limit` audit entries that `query` admits, in revision order.
    fn read_audit(
        &self,
        query: AuditQuery,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditEntry>, Error>>;

    /// The oldest revision the audit trail holds (0: none).
    fn oldest_audited(&self) -> BoxFuture<'_, Result<u64, Error>>;

    /// Removes the licence log's entries up to `through` (never past the
    /// head), so that what is kept stays contiguous, and the audit trail's
    /// entries up to the revision of the last entry removed: the trail is
    /// kept as long as the log. Returns how many log entries went.
    fn compact_log(&self, through: u64) -> BoxFuture<'_, Result<u64, Error>>;

    /// Makes every commit so far durable (at shutdown; commits are durable
    /// when [`Turn::commit`] returns already).
    fn flush(&self) -> BoxFuture<'_, Result<(), Error>>;
}

/// The writer's turn at the store (see [`Store::begin`]).
pub trait Turn: Send {
    /// The newest revision committed at the store when the turn began.
    fn head(&self) -> u64;

    /// The committed revisions after `after`, up to the turn's head: what
    /// the writer's view lacks.
    fn catch_up(&mut self, after: u64) -> BoxFuture<'_, Result<Vec<FeedEntry>, Error>>;

    /// Commits `sets` at the revisions after the head, in order, and makes
    /// them durable (against a power cut as well as a crash) before it
    /// returns. On an error none of them may be acknowledged.
    fn commit(
        self: Box<Self>,
        sets: Vec<WriteSet>,
    ) -> BoxFuture<'static, Result<Vec<Committed>, Error>>;
}
