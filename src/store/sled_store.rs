//! The store on sled 0.34.
//!
//! Trees: one per record kind (id → record), `meta` (schema version, revision,
//! log head, counts)
//! `log` (sequence → licence change) and `audit` (revision → who wrote it,
//! how, and what it changed), plus `undo`, the journal of a large
//! commit under way. A commit writes all of them atomically: in one sled
//! transaction when small, through the undo journal when large (see
//! `commit_journaled`). Counters live in `meta` so that the revision and log
//! sequences stay contiguous across crashes (sled's `generate_id` jumps).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::RwLock;
use sled::transaction::{TransactionError, Transactional};
use sled::{Batch, Tree};

use super::codec::{
    decode_audit, decode_change, decode_record, encode_audit, encode_change, encode_record,
};
use super::durable::GroupSync;
use super::keys;
use super::{BoxFuture, Committed, FeedEntry, LogBounds, Snapshot, Store, Turn, WriteSet};
use crate::domain::audit::{micros, Attribution, AuditEntry, AuditQuery};
use crate::domain::changelog::{license_change, LicenseChange};
use crate::domain::record::{Kind, RecordKey};
use crate::domain::write::Change;
use crate::domain::Error;

/// The layout this release reads and writes. Version 1 also kept secondary
/// index entries in an `index` tree; since the writer plans against the
/// in-memory view, which holds those indexes, the store keeps only records,
/// counters and the log, and opening a version 1 store drops that tree.
const SCHEMA_VERSION: u64 = 2;

const META_SCHEMA_VERSION: &[u8] = b"schema_version";
const META_REVISION: &[u8] = b"revision";
const META_LOG_HEAD: &[u8] = b"log_head";
const META_COUNT: &[u8] = b"count.";
/// Present while a journaled commit is under way: the revision it makes.
const META_PENDING: &[u8] = b"pending_commit";

/// How often sled's background thread flushes and cleans segments.
const BACKGROUND_EVERY_MS: u64 = 500;

/// How to open the store.
#[derive(Clone, Debug)]
pub struct SledConfig {
    /// Directory of the database; created when missing.
    pub path: PathBuf,
    /// Bytes of sled's page cache (resident memory can exceed it somewhat).
    pub cache_capacity_bytes: u64,
}

/// Counters that every commit moves, cached from `meta`.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    revision: u64,
    log_head: u64,
    log_oldest: u64,
    counts: [u64; KINDS],
    /// When the newest audit entry was recorded: a commit is never recorded
    /// earlier, so that the trail's times rise with its revisions even when
    /// the clock steps back (and a time range is found by bisection).
    audited_at: Option<SystemTime>,
}

/// The sled store, shared with the writer's turns.
#[derive(Clone)]
pub struct SledStore(Arc<Sled>);

impl std::ops::Deref for SledStore {
    type Target = Sled;
    fn deref(&self) -> &Sled {
        &self.0
    }
}

pub struct Sled {
    db: sled::Db,
    /// One tree per kind, in `Kind::ALL` order.
    records: [Tree; KINDS],
    meta: Tree,
    log: Tree,
    audit: Tree,
    /// The undo journal of a large commit under way (see `commit_journaled`).
    undo: Tree,
    /// The counters as of the last finished commit. A commit works on a
    /// copy and stores it back only once it has applied, under the lock for
    /// a moment: no reader of the counters ever waits for a commit.
    counters: RwLock<Counters>,
    /// Serialises commits (and compactions), which the writer path does
    /// anyway; held for a commit's whole duration.
    committing: parking_lot::Mutex<()>,
    /// Flushes and `fsync`s, one for each group of concurrent writers.
    durable: Arc<GroupSync>,
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

/// How many kinds of record there are: a tree and a count each.
const KINDS: usize = Kind::ALL.len();

fn slot(kind: Kind) -> usize {
    kind as usize - 1
}

impl SledStore {
    pub fn open(config: &SledConfig) -> Result<SledStore, Error> {
        Sled::open(config).map(|sled| SledStore(Arc::new(sled)))
    }
}

impl Sled {
    fn open(config: &SledConfig) -> Result<Sled, Error> {
        let started = Instant::now();
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity_bytes)
            // Not for durability (every write is flushed and synced before
            // it is acknowledged, see `GroupSync`): sled's background thread
            // also cleans segments (rewriting live pages so that old
            // segments can be reused), without which the file only grows.
            .flush_every_ms(Some(BACKGROUND_EVERY_MS))
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| {
                Error::Storage(format!(
                    "cannot open the store at {}: {e}",
                    config.path.display()
                ))
            })?;
        let flushing = db.clone();
        let durable = GroupSync::new(
            &config.path,
            Box::new(move || flushing.flush().map(drop).map_err(std::io::Error::other)),
        )
        .map_err(|e| {
            Error::Storage(format!(
                "cannot sync the store's files at {}: {e}",
                config.path.display()
            ))
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let records = [
            tree("materials")?,
            tree("suppliers")?,
            tree("components")?,
            tree("lines")?,
            tree("licenses")?,
            tree("shipments")?,
        ];
        let store = Sled {
            meta: tree("meta")?,
            log: tree("log")?,
            audit: tree("audit")?,
            undo: tree("undo")?,
            records,
            db,
            counters: RwLock::new(Counters::default()),
            committing: parking_lot::Mutex::new(()),
            durable,
        };
        store.check_schema()?;
        store.roll_back()?;
        let counters = store.read_counters()?;
        *store.counters.write() = counters;
        tracing::info!(
            path = %config.path.display(),
            revision = counters.revision,
            log_head = counters.log_head,
            records = counters.counts.iter().sum::<u64>(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        Ok(store)
    }

    /// Makes everything written so far durable against a power cut
    /// (blocking; concurrent callers share the work).
    fn make_durable(&self) -> Result<(), Error> {
        self.durable.sync().map_err(storage)
    }

    fn check_schema(&self) -> Result<(), Error> {
        match self.meta.get(META_SCHEMA_VERSION).map_err(storage)? {
            Some(v) if keys::u64_value(&v) == Some(SCHEMA_VERSION) => Ok(()),
            Some(v) if keys::u64_value(&v) == Some(1) => {
                // Version 1 kept an index nothing reads any more.
                self.db.drop_tree("index").map_err(storage)?;
                self.meta
                    .insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(storage)?;
                self.make_durable()?;
                tracing::info!("upgraded the store from schema version 1 to {SCHEMA_VERSION}");
                Ok(())
            }
            Some(v) => Err(Error::Storage(format!(
                "the store has schema version {:?}; this release reads version {SCHEMA_VERSION}",
                keys::u64_value(&v)
            ))),
            None => {
                self.meta
                    .insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(storage)?;
                self.make_durable()?;
                Ok(())
            }
        }
    }

    fn read_counters(&self) -> Result<Counters, Error> {
        let read = |key: &[u8]| -> Result<u64, Error> {
            Ok(self
                .meta
                .get(key)
                .map_err(storage)?
                .and_then(|v| keys::u64_value(&v))
                .unwrap_or(0))
        };
        let mut counters = Counters {
            revision: read(META_REVISION)?,
            log_head: read(META_LOG_HEAD)?,
            ..Counters::default()
        };
        for kind in Kind::ALL {
            counters.counts[slot(kind)] = read(&count_key(kind))?;
        }
        counters.log_oldest = match self.log.first().map_err(storage)? {
            Some((key, _)) => keys::u64_value(&key)
                .ok_or_else(|| Error::Storage("a licence log key is malformed".into()))?,
            None => counters.log_head + 1,
        };
        counters.audited_at = match self.audit.last().map_err(storage)? {
            Some((_, value)) => Some(decode_audit(&value)?.recorded_at),
            None => None,
        };
        Ok(counters)
    }

    /// The trees a commit writes, in slot order.
    fn trees(&self) -> [&Tree; TREES] {
        [
            &self.records[0],
            &self.records[1],
            &self.records[2],
            &self.records[3],
            &self.records[4],
            &self.records[5],
            &self.meta,
            &self.log,
            &self.audit,
        ]
    }

    /// Applies one write set in one sled transaction.
    fn apply(&self, writes: &KeyWrites) -> Result<(), Error> {
        let trees = self.trees();
        trees[..]
            .transaction(|tx| {
                for (tree, writes) in tx.iter().zip(&writes.writes) {
                    for (key, value) in writes {
                        match value {
                            Some(value) => tree.insert(key.as_slice(), value.as_slice())?,
                            None => tree.remove(key.as_slice())?,
                        };
                    }
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| storage(format!("{e:?}")))
    }

    /// Commits a large change set without one giant transaction, atomically
    /// all the same:
    ///
    /// 1. a durable marker names the revision being written;
    /// 2. chunk by chunk (`write_chunk`), the old records go to the undo
    ///    journal, then the new records (stamped with the revision) or their
    ///    removal, then their log entries; then the commit's audit entry;
    /// 3. one last atomic batch moves the counters and removes the marker.
    ///
    /// sled recovers a prefix of its log, so after a crash anything written
    /// in step 2 is found either by its revision or in the journal, and
    /// opening the store rolls it back (see [`Sled::roll_back`]).
    fn commit_journaled(
        &self,
        changes: &[Change],
        state: &mut CommitState,
        before: &Counters,
    ) -> Result<(), Error> {
        self.meta
            .insert(META_PENDING, &state.revision.to_be_bytes())
            .map_err(storage)?;
        self.make_durable()?;
        let result = (|| {
            for chunk in changes.chunks(MAX_CHANGES_PER_TRANSACTION) {
                self.write_chunk(chunk, state)?;
            }
            let (key, value) = state.audit_write(changes);
            self.audit.insert(key, value).map_err(storage)?;
            let mut writes = KeyWrites::default();
            writes.meta(state, before);
            let mut meta = Batch::default();
            for (key, value) in std::mem::take(&mut writes.writes[META_SLOT]) {
                meta.insert(key, value.unwrap_or_default());
            }
            meta.remove(META_PENDING);
            self.meta.apply_batch(meta).map_err(storage)
        })();
        if let Err(error) = result {
            // Leave the store as it was; if even that fails, the marker stays
            // and the next open finishes the roll-back.
            if let Err(undo) = self.roll_back() {
                tracing::error!(%undo, "rolling back a failed commit failed; the next start will retry");
            }
            return Err(error);
        }
        self.undo.clear().map_err(storage)
    }

    /// Writes one chunk of a journaled commit, its two halves on two
    /// threads (sled's inserts are most of a large import's time, and a
    /// tree takes concurrent writers). Each half is written in the order
    /// that [`Sled::roll_back`] relies on: the old records to the undo
    /// journal, the new records (stamped with the revision) or their removal,
    /// then the log entries; a thread's writes reach sled's log in the order
    /// it makes them, so a recovered prefix still finds every record either
    /// by its revision or in the journal. Key by key, not in batches: a sled
    /// batch pins one epoch too, and holds on to memory as a transaction does
    /// (2.2 GB more for a million records, against 0.1 GB this way).
    fn write_chunk(&self, changes: &[Change], state: &mut CommitState) -> Result<(), Error> {
        let (first, second) = changes.split_at(changes.len() / 2);
        // Encoded in the changes' order: log sequences follow it.
        let [mut first_writes, mut second_writes] = [KeyWrites::default(), KeyWrites::default()];
        for change in first {
            first_writes.add(change, state);
        }
        for change in second {
            second_writes.add(change, state);
        }
        std::thread::scope(|scope| {
            let other = scope.spawn(|| self.write_part(second, second_writes));
            let mine = self.write_part(first, first_writes);
            let other = other
                .join()
                .unwrap_or_else(|_| Err(storage("a commit's writer thread panicked")));
            mine.and(other)
        })
    }

    /// Writes part of a journaled commit's chunk: the undo journal of
    /// `changes`, then `writes` (their records and log entries).
    fn write_part(&self, changes: &[Change], mut writes: KeyWrites) -> Result<(), Error> {
        for old in changes.iter().filter_map(|c| c.old.as_ref()) {
            self.undo
                .insert(journal_key(&old.key()), encode_record(old))
                .map_err(storage)?;
        }
        let trees = self.trees();
        for slot in (0..KINDS).chain([LOG_SLOT]) {
            for (key, value) in std::mem::take(&mut writes.writes[slot]) {
                match value {
                    Some(value) => trees[slot].insert(key, value).map(drop),
                    None => trees[slot].remove(key).map(drop),
                }
                .map_err(storage)?;
            }
        }
        Ok(())
    }

    /// Undoes a journaled commit that a crash interrupted, if there is one:
    /// every record stamped with its revision goes; every journaled record
    /// comes back; log entries past the stored head and audit entries past
    /// the stored revision go.
    fn roll_back(&self) -> Result<(), Error> {
        let Some(pending) = self.meta.get(META_PENDING).map_err(storage)? else {
            // A finished commit may leave its journal behind: it is garbage.
            return self.undo.clear().map_err(storage);
        };
        let pending = keys::u64_value(&pending)
            .ok_or_else(|| Error::Storage("the pending commit marker is malformed".into()))?;
        let mut removed = 0u64;
        for kind in Kind::ALL {
            for entry in self.tree(kind).iter() {
                let (id, value) = entry.map_err(storage)?;
                let record = decode_record(&value)?;
                if record.revision() == pending {
                    self.tree(kind).remove(id).map_err(storage)?;
                    removed += 1;
                }
            }
        }
        let mut restored = 0u64;
        for entry in self.undo.iter() {
            let (key, value) = entry.map_err(storage)?;
            let kind = key
                .first()
                .and_then(|&k| Kind::from_byte(k))
                .ok_or_else(|| Error::Storage("an undo journal key is malformed".into()))?;
            decode_record(&value)?;
            self.tree(kind).insert(&key[1..], value).map_err(storage)?;
            restored += 1;
        }
        let head = self
            .meta
            .get(META_LOG_HEAD)
            .map_err(storage)?
            .and_then(|v| keys::u64_value(&v))
            .unwrap_or(0);
        for entry in self.log.range(keys::sequence(head + 1)..).keys() {
            self.log.remove(entry.map_err(storage)?).map_err(storage)?;
        }
        let revision = self
            .meta
            .get(META_REVISION)
            .map_err(storage)?
            .and_then(|v| keys::u64_value(&v))
            .unwrap_or(0);
        for entry in self.audit.range(keys::sequence(revision + 1)..).keys() {
            self.audit
                .remove(entry.map_err(storage)?)
                .map_err(storage)?;
        }
        self.meta.remove(META_PENDING).map_err(storage)?;
        self.make_durable()?;
        self.undo.clear().map_err(storage)?;
        tracing::warn!(
            revision = pending,
            removed,
            restored,
            "rolled back a commit that a crash interrupted"
        );
        Ok(())
    }

    fn tree(&self, kind: Kind) -> &Tree {
        &self.records[slot(kind)]
    }
}

fn count_key(kind: Kind) -> Vec<u8> {
    let mut key = META_COUNT.to_vec();
    key.push(kind as u8);
    key
}

impl Sled {
    /// The record at `key` as stored (tests read the store directly).
    #[cfg(test)]
    fn get(&self, key: &RecordKey) -> Result<Option<crate::domain::record::Record>, Error> {
        match self
            .tree(key.kind)
            .get(key.id.as_bytes())
            .map_err(storage)?
        {
            Some(bytes) => decode_record(&bytes).map(Some),
            None => Ok(None),
        }
    }
}

impl Sled {
    /// Commits one write set at the next revision (not yet durable).
    fn commit_set(&self, mut changes: Vec<Change>, by: &Attribution) -> Result<Committed, Error> {
        let _committing = self.committing.lock();
        let counters = *self.counters.read();
        let revision = counters.revision + 1;
        for record in changes.iter_mut().filter_map(|c| c.new.as_mut()) {
            record.set_revision(revision);
        }
        let now = micros(SystemTime::now());
        let mut state = CommitState {
            revision,
            recorded_at: counters.audited_at.map_or(now, |at| at.max(now)),
            by: by.clone(),
            counts: counters.counts,
            log_head: counters.log_head,
            license_changes: Vec::new(),
        };
        if changes.len() <= MAX_CHANGES_PER_TRANSACTION {
            let mut writes = KeyWrites::default();
            for change in &changes {
                writes.add(change, &mut state);
            }
            writes.meta(&state, &counters);
            let (key, value) = state.audit_write(&changes);
            writes.writes[AUDIT_SLOT].push((key, Some(value)));
            self.apply(&writes)?;
        } else {
            self.commit_journaled(&changes, &mut state, &counters)?;
        }
        let mut published = self.counters.write();
        published.revision = revision;
        published.counts = state.counts;
        published.log_head = state.log_head;
        published.audited_at = Some(state.recorded_at);
        drop(published);
        Ok(Committed {
            revision,
            license_changes: state.license_changes,
        })
    }

    fn snapshot_now(&self) -> Result<Snapshot, Error> {
        let _committing = self.committing.lock();
        let counters = *self.counters.read();
        let mut records = Vec::with_capacity(counters.counts.iter().sum::<u64>() as usize);
        for kind in Kind::ALL {
            for value in self.tree(kind).iter().values() {
                records.push(decode_record(&value.map_err(storage)?)?);
            }
        }
        Ok(Snapshot {
            revision: counters.revision,
            records,
            log_head: counters.log_head,
        })
    }

    fn read_log_now(&self, after: u64, limit: usize) -> Result<Vec<LicenseChange>, Error> {
        self.log
            .range(keys::sequence(after.saturating_add(1))..)
            .values()
            .take(limit)
            .map(|v| decode_change(&v.map_err(storage)?))
            .collect()
    }

    fn compact_log_now(&self, through: u64) -> Result<u64, Error> {
        let committing = self.committing.lock();
        let through = through.min(self.counters.read().log_head);
        // The trail goes up to the revision of the newest event that goes.
        let audited_through = match self.log.range(..=keys::sequence(through)).next_back() {
            Some(entry) => Some(decode_change(&entry.map_err(storage)?.1)?.revision),
            None => None,
        };
        let mut removed = 0;
        for key in self.log.range(..=keys::sequence(through)).keys() {
            self.log.remove(key.map_err(storage)?).map_err(storage)?;
            removed += 1;
        }
        if let Some(revision) = audited_through {
            for key in self.audit.range(..=keys::sequence(revision)).keys() {
                self.audit.remove(key.map_err(storage)?).map_err(storage)?;
            }
        }
        {
            let mut counters = self.counters.write();
            counters.log_oldest = counters.log_oldest.max(through + 1);
        }
        drop(committing);
        // Removed from the oldest up, so a cut part-way leaves a shorter log
        // that is still contiguous; synced, so a compaction reported done is.
        self.make_durable()?;
        Ok(removed)
    }

    fn read_audit_now(&self, query: AuditQuery, limit: usize) -> Result<Vec<AuditEntry>, Error> {
        let mut start = query.after_revision.saturating_add(1);
        if let Some(from) = query.from {
            start = start.max(self.first_audited_at_or_after(from)?);
        }
        let mut entries = Vec::new();
        for value in self.audit.range(keys::sequence(start)..).values() {
            let entry = decode_audit(&value.map_err(storage)?)?;
            if query
                .before
                .is_some_and(|before| entry.recorded_at >= before)
            {
                // Times rise with revisions: nothing later is earlier.
                break;
            }
            if query.admits(&entry) {
                entries.push(entry);
                if entries.len() == limit {
                    break;
                }
            }
        }
        Ok(entries)
    }

    /// The first revision recorded at or after `from` (past the newest when
    /// none is): a bisection over the trail's revisions, which are
    /// contiguous, and whose times rise with them.
    fn first_audited_at_or_after(&self, from: SystemTime) -> Result<u64, Error> {
        let revision_of = |entry: Option<(sled::IVec, sled::IVec)>| -> Result<Option<u64>, Error> {
            entry
                .map(|(key, _)| {
                    keys::u64_value(&key)
                        .ok_or_else(|| Error::Storage("an audit key is malformed".into()))
                })
                .transpose()
        };
        let (Some(mut low), Some(last)) = (
            revision_of(self.audit.first().map_err(storage)?)?,
            revision_of(self.audit.last().map_err(storage)?)?,
        ) else {
            return Ok(0);
        };
        // The answer lies in low..=high (high: past the newest).
        let mut high = last + 1;
        while low < high {
            let middle = low + (high - low) / 2;
            let at = match self.audit.get(keys::sequence(middle)).map_err(storage)? {
                Some(value) => decode_audit(&value)?.recorded_at,
                None => {
                    return Err(Error::Storage(format!(
                        "the audit trail lacks revision {middle}"
                    )))
                }
            };
            if at >= from {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        Ok(low)
    }

    fn oldest_audited_now(&self) -> Result<u64, Error> {
        match self.audit.first().map_err(storage)? {
            Some((key, _)) => keys::u64_value(&key)
                .ok_or_else(|| Error::Storage("an audit key is malformed".into())),
            None => Ok(0),
        }
    }

    fn revision(&self) -> u64 {
        self.counters.read().revision
    }

    fn log_bounds(&self) -> LogBounds {
        let counters = self.counters.read();
        LogBounds {
            oldest: counters.log_oldest,
            head: counters.log_head,
        }
    }
}

/// Runs `work` on the blocking pool: sled's calls block on its I/O.
fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> BoxFuture<'static, Result<T, Error>> {
    Box::pin(async move {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::Storage(format!("a store task failed: {e}")))?
    })
}

impl Store for SledStore {
    fn revision(&self) -> u64 {
        self.0.revision()
    }

    fn log_bounds(&self) -> LogBounds {
        self.0.log_bounds()
    }

    fn latest(&self) -> BoxFuture<'_, Result<(u64, u64), Error>> {
        let counters = *self.0.counters.read();
        Box::pin(async move { Ok((counters.revision, counters.log_head)) })
    }

    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Turn>, Error>> {
        // This process is the store's only writer (the data directory's
        // lock sees to it), and its writer path takes one turn at a time.
        let turn = SledTurn {
            store: self.0.clone(),
            head: self.0.revision(),
        };
        Box::pin(async move { Ok(Box::new(turn) as Box<dyn Turn>) })
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, Error>> {
        let sled = self.0.clone();
        blocking(move || sled.snapshot_now())
    }

    fn feed(&self, _after: u64, _limit: usize) -> BoxFuture<'_, Result<Vec<FeedEntry>, Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn read_log(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LicenseChange>, Error>> {
        // Reads of a few entries from sled's page cache: not worth a thread.
        let read = self.0.read_log_now(after, limit);
        Box::pin(async move { read })
    }

    fn read_audit(
        &self,
        query: AuditQuery,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditEntry>, Error>> {
        let sled = self.0.clone();
        blocking(move || sled.read_audit_now(query, limit))
    }

    fn oldest_audited(&self) -> BoxFuture<'_, Result<u64, Error>> {
        let sled = self.0.clone();
        blocking(move || sled.oldest_audited_now())
    }

    fn compact_log(&self, through: u64) -> BoxFuture<'_, Result<u64, Error>> {
        let sled = self.0.clone();
        blocking(move || sled.compact_log_now(through))
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), Error>> {
        // Not `flush_async`: it runs on sled's own small I/O thread pool, and
        // a few dozen concurrent calls fill that pool with flushes waiting for
        // I/O that only the same pool can do: a deadlock (sled #1308; seen
        // here with 32 concurrent writers). A blocking flush on tokio's
        // blocking pool waits on the same stability point without starving
        // sled, and concurrent flushes still share the work.
        let sled = self.0.clone();
        blocking(move || sled.make_durable())
    }
}

/// The writer's turn at the sled store.
struct SledTurn {
    store: Arc<Sled>,
    head: u64,
}

impl Turn for SledTurn {
    fn head(&self) -> u64 {
        self.head
    }

    fn catch_up(&mut self, after: u64) -> BoxFuture<'_, Result<Vec<FeedEntry>, Error>> {
        // Only this process writes: its view cannot lag the store.
        let lagging = after != self.head;
        let head = self.head;
        Box::pin(async move {
            if lagging {
                return Err(Error::Internal(format!(
                    "the writer's view is at revision {after}, the store at {head}"
                )));
            }
            Ok(Vec::new())
        })
    }

    fn commit(
        self: Box<Self>,
        sets: Vec<WriteSet>,
    ) -> BoxFuture<'static, Result<Vec<Committed>, Error>> {
        let store = self.store;
        // The caller's span (the writer's commit), into the blocking thread.
        let span = tracing::Span::current();
        blocking(move || {
            let _entered = span.enter();
            let mut committed = Vec::with_capacity(sets.len());
            for set in sets {
                committed.push(store.commit_set(set.changes, &set.by)?);
            }
            // One sync for the whole batch; turns that commit while it runs
            // share it too.
            tracing::info_span!("sync", store = "sled").in_scope(|| store.make_durable())?;
            Ok(committed)
        })
    }
}

/// Most changes applied in one sled transaction. sled pins one epoch for a
/// whole transaction, so nothing it replaces can be freed until it ends: a
/// transaction of a million records grew memory by 19 GiB. Larger commits
/// go through the undo journal instead (`commit_journaled`).
const MAX_CHANGES_PER_TRANSACTION: usize = 2_000;

/// The counters a commit moves, and the log entries it appends.
struct CommitState {
    revision: u64,
    recorded_at: SystemTime,
    by: Attribution,
    counts: [u64; KINDS],
    log_head: u64,
    license_changes: Vec<LicenseChange>,
}

/// One key's new value, or its removal (`None`).
type KeyWrite = (Vec<u8>, Option<Vec<u8>>);

/// The writes of one commit, per tree (in `Sled::trees` order).
#[derive(Default)]
struct KeyWrites {
    writes: [Vec<KeyWrite>; TREES],
}

/// Slots of the trees a commit writes, in `Sled::trees` order.
const TREES: usize = KINDS + 3;
const META_SLOT: usize = KINDS;
const LOG_SLOT: usize = KINDS + 1;
const AUDIT_SLOT: usize = KINDS + 2;

impl CommitState {
    /// The audit entry of the commit of `changes`, as its key and value.
    fn audit_write(&self, changes: &[Change]) -> (Vec<u8>, Vec<u8>) {
        let entry = AuditEntry::of(changes, self.revision, self.recorded_at, &self.by);
        (keys::sequence(self.revision).to_vec(), encode_audit(&entry))
    }
}

/// The undo journal's key for a record: its kind, then its id.
fn journal_key(key: &RecordKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.id.len() + 1);
    k.push(key.kind as u8);
    k.extend_from_slice(key.id.as_bytes());
    k
}

impl KeyWrites {
    /// Adds one record change: the record, and a log entry when it is a
    /// licence.
    fn add(&mut self, change: &Change, state: &mut CommitState) {
        let Change { old, new } = change;
        let (kind, id) = match (old, new) {
            (_, Some(r)) | (Some(r), None) => (r.kind(), r.id().to_string()),
            (None, None) => return,
        };
        let records = &mut self.writes[slot(kind)];
        match new {
            Some(record) => {
                records.push((id.into_bytes(), Some(encode_record(record))));
                if old.is_none() {
                    state.counts[slot(kind)] += 1;
                }
            }
            None => {
                records.push((id.into_bytes(), None));
                state.counts[slot(kind)] -= 1;
            }
        }
        let logged = license_change(
            change,
            state.log_head + 1,
            state.revision,
            state.recorded_at,
            &state.by.author.name,
        );
        if let Some(change) = logged {
            state.log_head = change.sequence;
            self.writes[LOG_SLOT].push((
                keys::sequence(state.log_head).to_vec(),
                Some(encode_change(&change)),
            ));
            state.license_changes.push(change);
        }
    }

    /// Adds the counters that move with the commit.
    fn meta(&mut self, state: &CommitState, before: &Counters) {
        let meta = &mut self.writes[META_SLOT];
        meta.push((
            META_REVISION.to_vec(),
            Some(state.revision.to_be_bytes().to_vec()),
        ));
        meta.push((
            META_LOG_HEAD.to_vec(),
            Some(state.log_head.to_be_bytes().to_vec()),
        ));
        for kind in Kind::ALL {
            if state.counts[slot(kind)] != before.counts[slot(kind)] {
                meta.push((
                    count_key(kind),
                    Some(state.counts[slot(kind)].to_be_bytes().to_vec()),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::{Component, License, LicenseStatus, Record, Source, Supplier};

    /// Opens the store at `dir`. sled's background flusher of a store just
    /// dropped may hold the directory's lock for a moment: wait for it.
    fn open(dir: &std::path::Path) -> SledStore {
        let config = SledConfig {
            path: dir.to_path_buf(),
            cache_capacity_bytes: 8 << 20,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match SledStore::open(&config) {
                Ok(store) => return store,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn anyone() -> Attribution {
        Attribution::anonymous(crate::domain::audit::Request::UpsertRecords)
    }

    fn supplier(id: &str) -> Record {
        Record::Supplier(Supplier {
            id: id.into(),
            country: "CN".into(),
            ..Default::default()
        })
    }

    fn component(id: &str, supplier: &str) -> Record {
        Record::Component(Component {
            id: id.into(),
            sources: vec![Source {
                supplier_id: supplier.into(),
                share: 1.0,
            }],
            ..Default::default()
        })
    }

    fn license(id: &str, supplier: &str) -> Record {
        Record::License(License {
            id: id.into(),
            supplier_id: supplier.into(),
            material: "DY".into(),
            status: LicenseStatus::Pending,
            quantity_kg: 1.0,
            ..Default::default()
        })
    }

    /// As `commit` leaves a record of the pending revision 2.
    fn stamped(mut record: Record) -> Record {
        record.set_revision(2);
        record
    }

    fn create(records: Vec<Record>) -> Vec<Change> {
        records
            .into_iter()
            .map(|r| Change {
                old: None,
                new: Some(r),
            })
            .collect()
    }

    /// The suppliers the stored component `id` is sourced from (None when
    /// it is not stored).
    fn suppliers_of(store: &SledStore, id: &str) -> Option<Vec<String>> {
        match store.get(&RecordKey::new(Kind::Component, id)).unwrap()? {
            Record::Component(c) => Some(c.sources.into_iter().map(|s| s.supplier_id).collect()),
            other => panic!("{other:?}"),
        }
    }

    /// A version 1 store (with its index tree) opens as version 2, without
    /// the tree, its records and log as they were.
    #[test]
    fn a_version_1_store_is_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store
                .commit_set(create(vec![supplier("S")]), &anyone())
                .unwrap();
            store
                .meta
                .insert(META_SCHEMA_VERSION, &1u64.to_be_bytes())
                .unwrap();
            store
                .db
                .open_tree("index")
                .unwrap()
                .insert(b"r\x02S\x00", &[])
                .unwrap();
            store.make_durable().unwrap();
        }
        let store = open(dir.path());
        let version = store.meta.get(META_SCHEMA_VERSION).unwrap().unwrap();
        assert_eq!(keys::u64_value(&version), Some(SCHEMA_VERSION));
        assert!(!store.db.tree_names().iter().any(|n| n.as_ref() == b"index"));
        assert!(store
            .get(&RecordKey::new(Kind::Supplier, "S"))
            .unwrap()
            .is_some());
        assert_eq!(store.revision(), 1);
    }

    #[test]
    fn a_large_commit_is_atomic_and_matches_a_small_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let n = MAX_CHANGES_PER_TRANSACTION * 2 + 7;
        let mut records = vec![supplier("S")];
        records.extend((0..n).map(|i| component(&format!("C{i:05}"), "S")));
        let committed = store.commit_set(create(records), &anyone()).unwrap();
        assert_eq!(committed.revision, 1);
        assert_eq!(suppliers_of(&store, "C00000").unwrap(), ["S"]);
        assert_eq!(store.undo.len(), 0, "the journal is cleared");
        assert!(store.meta.get(META_PENDING).unwrap().is_none());
        assert_eq!(
            store.counters.read().counts[slot(Kind::Component)],
            n as u64
        );
        assert_eq!(store.tree(Kind::Component).len(), n);
    }

    /// Every kind of record, shipments too, reaches the store through the
    /// journal, and is there after the store is opened again.
    #[test]
    fn a_large_commit_stores_every_kind_of_record() {
        use crate::domain::record::Shipment;
        let dir = tempfile::tempdir().unwrap();
        let n = MAX_CHANGES_PER_TRANSACTION + 1;
        let mut records = vec![supplier("S"), component("C", "S")];
        records.extend((0..n).map(|i| {
            Record::Shipment(Shipment {
                id: format!("SH{i:05}"),
                component_id: "C".into(),
                units: 10.0,
                ..Default::default()
            })
        }));
        open(dir.path())
            .commit_set(create(records), &anyone())
            .unwrap();
        let store = open(dir.path());
        assert_eq!(store.tree(Kind::Shipment).len(), n);
        assert!(store
            .get(&RecordKey::new(Kind::Shipment, "SH00000"))
            .unwrap()
            .is_some());
        assert_eq!(store.counters.read().counts[slot(Kind::Shipment)], n as u64);
    }

    #[test]
    fn an_interrupted_large_commit_is_rolled_back_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store
                .commit_set(
                    create(vec![
                        supplier("S"),
                        supplier("T"),
                        component("KEEP", "S"),
                        license("L1", "S"),
                    ]),
                    &anyone(),
                )
                .unwrap();
            // A journaled commit at revision 2 that moves KEEP to T, deletes
            // L1, adds NEW and a licence, and dies before its last step.
            let old_keep = store.get(&RecordKey::new(Kind::Component, "KEEP")).unwrap();
            let old_l1 = store.get(&RecordKey::new(Kind::License, "L1")).unwrap();
            let mut state = CommitState {
                revision: 2,
                recorded_at: SystemTime::now(),
                by: anyone(),
                counts: store.counters.read().counts,
                log_head: 1,
                license_changes: Vec::new(),
            };
            store
                .meta
                .insert(META_PENDING, &2u64.to_be_bytes())
                .unwrap();
            store
                .write_chunk(
                    &[
                        Change {
                            old: old_keep,
                            new: Some(stamped(component("KEEP", "T"))),
                        },
                        Change {
                            old: old_l1,
                            new: None,
                        },
                        Change {
                            old: None,
                            new: Some(stamped(component("NEW", "T"))),
                        },
                        Change {
                            old: None,
                            new: Some(stamped(license("L2", "T"))),
                        },
                    ],
                    &mut state,
                )
                .unwrap();
            let (key, value) = state.audit_write(&[]);
            store.audit.insert(key, value).unwrap();
            assert_eq!(suppliers_of(&store, "KEEP").unwrap(), ["T"]);
            assert!(suppliers_of(&store, "NEW").is_some());
            store.db.flush().unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.revision(), 1);
        assert_eq!(suppliers_of(&store, "KEEP").unwrap(), ["S"]);
        assert!(suppliers_of(&store, "NEW").is_none());
        assert!(store
            .get(&RecordKey::new(Kind::Component, "NEW"))
            .unwrap()
            .is_none());
        assert!(store
            .get(&RecordKey::new(Kind::License, "L2"))
            .unwrap()
            .is_none());
        assert!(store
            .get(&RecordKey::new(Kind::License, "L1"))
            .unwrap()
            .is_some());
        assert_eq!(store.log_bounds().head, 1);
        assert_eq!(store.read_log_now(0, 10).unwrap().len(), 1);
        let audited: Vec<u64> = store
            .read_audit_now(AuditQuery::default(), 10)
            .unwrap()
            .iter()
            .map(|e| e.revision)
            .collect();
        assert_eq!(audited, [1], "the interrupted commit's entry goes");
        // The store goes on from where it was.
        assert_eq!(
            store
                .commit_set(create(vec![supplier("U")]), &anyone())
                .unwrap()
                .revision,
            2
        );
    }

    /// Times in the trail never fall, even when the clock steps back, so a
    /// time range is found by bisection; and compacting the licence log lets
    /// the trail go up to the revision of the newest event removed.
    #[test]
    fn the_trail_rises_in_time_and_goes_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let at = |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        // Revisions 1 to 6: licences at 1, 3 and 5, suppliers between.
        for i in 1..=6u64 {
            let record = if i % 2 == 1 {
                license(&format!("L{i}"), "S")
            } else {
                supplier(&format!("S{i}"))
            };
            let records = if i == 1 {
                vec![supplier("S"), record]
            } else {
                vec![record]
            };
            store.commit_set(create(records), &anyone()).unwrap();
        }
        // Make the stored times 100, 200, ... as if written then.
        for revision in 1..=6u64 {
            let key = keys::sequence(revision);
            let mut entry = decode_audit(&store.audit.get(key).unwrap().unwrap()).unwrap();
            entry.recorded_at = at(100 * revision);
            store.audit.insert(key, encode_audit(&entry)).unwrap();
        }
        let revisions = |query| -> Vec<u64> {
            store
                .read_audit_now(query, 100)
                .unwrap()
                .iter()
                .map(|e| e.revision)
                .collect()
        };
        let range = |from, before| AuditQuery {
            after_revision: 0,
            from: Some(at(from)),
            before: Some(at(before)),
        };
        assert_eq!(revisions(range(200, 400)), [2, 3]);
        assert_eq!(revisions(range(150, 401)), [2, 3, 4]);
        assert_eq!(revisions(range(0, 101)), [1]);
        assert_eq!(revisions(range(601, 700)), Vec::<u64>::new());
        assert_eq!(
            revisions(AuditQuery {
                after_revision: 4,
                from: Some(at(200)),
                before: None
            }),
            [5, 6]
        );
        // A commit after a clock stepped back is recorded at the last time.
        store.counters.write().audited_at =
            Some(SystemTime::now() + std::time::Duration::from_secs(3600));
        let later = store
            .commit_set(create(vec![supplier("S7")]), &anyone())
            .unwrap();
        let entry = store
            .read_audit_now(
                AuditQuery {
                    after_revision: later.revision - 1,
                    ..AuditQuery::default()
                },
                1,
            )
            .unwrap();
        assert!(entry[0].recorded_at > SystemTime::now());
        // Events 1..=2 are at revisions 1 and 3: compacting them lets
        // revisions up to 3 go, and 4 on stay.
        assert_eq!(store.compact_log_now(2).unwrap(), 2);
        assert_eq!(revisions(AuditQuery::default()), [4, 5, 6, 7]);
        assert_eq!(store.oldest_audited_now().unwrap(), 4);
    }
}
