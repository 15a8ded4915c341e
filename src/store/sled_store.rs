//! The store on sled 0.34.
//!
//! Trees: one per record kind (id → record), `index` (secondary index entries,
//! see [`super::keys`]), `meta` (schema version, revision, log head, counts)
//! and `log` (sequence → licence change). A commit writes all of them in one
//! sled transaction; counters live in `meta` so that the revision and log
//! sequences stay contiguous across crashes (sled's `generate_id` jumps).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use parking_lot::RwLock;
use sled::transaction::{TransactionError, Transactional};
use sled::{Batch, Tree};

use super::codec::{decode_change, decode_record, encode_change, encode_record};
use super::keys;
use super::{BoxFuture, Committed, ListPage, ListQuery, LogBounds, Snapshot, Store};
use crate::domain::changelog::{ChangeKind, LicenseChange};
use crate::domain::record::{Kind, LicenseStatus, Record, RecordKey};
use crate::domain::write::{Change, Lookup};
use crate::domain::Error;

/// The layout this release reads and writes.
const SCHEMA_VERSION: u64 = 1;

const META_SCHEMA_VERSION: &[u8] = b"schema_version";
const META_REVISION: &[u8] = b"revision";
const META_LOG_HEAD: &[u8] = b"log_head";
const META_COUNT: &[u8] = b"count.";

/// How to open the store.
#[derive(Clone, Debug)]
pub struct SledConfig {
    /// Directory of the database; created when missing.
    pub path: PathBuf,
    /// Bytes of sled's page cache (resident memory can exceed it somewhat).
    pub cache_capacity_bytes: u64,
    /// How often sled's background flusher syncs to disk, in milliseconds.
    pub flush_every_ms: u64,
}

/// Counters that every commit moves, cached from `meta`.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    revision: u64,
    log_head: u64,
    log_oldest: u64,
    counts: [u64; 5],
}

pub struct SledStore {
    db: sled::Db,
    /// One tree per kind, in `Kind::ALL` order.
    records: [Tree; 5],
    index: Tree,
    meta: Tree,
    log: Tree,
    /// Held for writing while a commit applies, and for reading by reads that
    /// span several keys, so that they see whole commits only.
    counters: RwLock<Counters>,
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

fn slot(kind: Kind) -> usize {
    kind as usize - 1
}

impl SledStore {
    pub fn open(config: &SledConfig) -> Result<SledStore, Error> {
        let started = Instant::now();
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity_bytes)
            .flush_every_ms(Some(config.flush_every_ms))
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| {
                Error::Storage(format!(
                    "cannot open the store at {}: {e}",
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
        ];
        let store = SledStore {
            index: tree("index")?,
            meta: tree("meta")?,
            log: tree("log")?,
            records,
            db,
            counters: RwLock::new(Counters::default()),
        };
        store.check_schema()?;
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

    fn check_schema(&self) -> Result<(), Error> {
        match self.meta.get(META_SCHEMA_VERSION).map_err(storage)? {
            Some(v) if keys::u64_value(&v) == Some(SCHEMA_VERSION) => Ok(()),
            Some(v) => Err(Error::Storage(format!(
                "the store has schema version {:?}; this release reads version {SCHEMA_VERSION}",
                keys::u64_value(&v)
            ))),
            None => {
                self.meta
                    .insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(storage)?;
                self.db.flush().map_err(storage)?;
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
        Ok(counters)
    }

    fn tree(&self, kind: Kind) -> &Tree {
        &self.records[slot(kind)]
    }

    /// The ids under `prefix` in the index, after `after`, in order.
    fn index_ids<'a>(
        &'a self,
        prefix: Vec<u8>,
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<String, Error>> + 'a {
        let start = match after {
            Some(id) => {
                let mut k = prefix.clone();
                k.extend_from_slice(id.as_bytes());
                // The smallest key after `prefix + id`.
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let len = prefix.len();
        self.index
            .range(start..)
            .take_while(move |entry| match entry {
                Ok((k, _)) => k.starts_with(&prefix),
                Err(_) => true,
            })
            .map(move |entry| {
                let (k, _) = entry.map_err(storage)?;
                String::from_utf8(k[len..].to_vec())
                    .map_err(|_| Error::Storage("an index key is not UTF-8".into()))
            })
    }

    /// The record ids `query` scans, after `after`, and whether every one of
    /// them matches (so that counting them needs no record reads).
    fn candidates<'a>(
        &'a self,
        query: &ListQuery,
        after: Option<&str>,
    ) -> (Box<dyn Iterator<Item = Result<String, Error>> + 'a>, bool) {
        let by_index = |prefix: Vec<u8>, exact: bool| {
            (
                Box::new(self.index_ids(prefix, after))
                    as Box<dyn Iterator<Item = Result<String, Error>>>,
                exact,
            )
        };
        let refs = |kind: Kind, id: &str, of: Kind| {
            keys::referrers_prefix(&RecordKey::new(kind, id), Some(of))
        };
        match query {
            ListQuery::Suppliers { country } if !country.is_empty() => {
                by_index(keys::country_prefix(country), true)
            }
            ListQuery::Components {
                supplier_id,
                material,
            } if !supplier_id.is_empty() => by_index(
                refs(Kind::Supplier, supplier_id, Kind::Component),
                material.is_empty(),
            ),
            ListQuery::Components { material, .. } if !material.is_empty() => {
                by_index(refs(Kind::Material, material, Kind::Component), true)
            }
            ListQuery::Lines { plant } if !plant.is_empty() => {
                by_index(keys::plant_prefix(plant), true)
            }
            ListQuery::Licenses {
                supplier_id,
                material,
                status,
            } if !supplier_id.is_empty() => by_index(
                refs(Kind::Supplier, supplier_id, Kind::License),
                material.is_empty() && *status == LicenseStatus::Unspecified,
            ),
            ListQuery::Licenses {
                material, status, ..
            } if !material.is_empty() => by_index(
                refs(Kind::Material, material, Kind::License),
                *status == LicenseStatus::Unspecified,
            ),
            ListQuery::Licenses { status, .. } if *status != LicenseStatus::Unspecified => {
                by_index(keys::status_prefix(*status), true)
            }
            _ => {
                let tree = self.tree(query.kind());
                let iter = match after {
                    Some(id) => tree.range::<&[u8], _>((
                        std::ops::Bound::Excluded(id.as_bytes()),
                        std::ops::Bound::Unbounded,
                    )),
                    None => tree.iter(),
                };
                (
                    Box::new(iter.keys().map(|k| {
                        let k = k.map_err(storage)?;
                        String::from_utf8(k.to_vec())
                            .map_err(|_| Error::Storage("a record key is not UTF-8".into()))
                    })),
                    true,
                )
            }
        }
    }

    /// How many records match `query`, over all pages.
    fn count_matches(&self, query: &ListQuery) -> Result<u64, Error> {
        let (ids, exact) = self.candidates(query, None);
        let mut total = 0;
        for id in ids {
            let id = id?;
            total += u64::from(
                exact
                    || self
                        .load(query.kind(), &id)?
                        .is_some_and(|r| query.matches(&r)),
            );
        }
        Ok(total)
    }

    fn load(&self, kind: Kind, id: &str) -> Result<Option<Record>, Error> {
        match self.tree(kind).get(id.as_bytes()).map_err(storage)? {
            Some(bytes) => decode_record(&bytes).map(Some),
            None => Ok(None),
        }
    }
}

fn count_key(kind: Kind) -> Vec<u8> {
    let mut key = META_COUNT.to_vec();
    key.push(kind as u8);
    key
}

impl Lookup for SledStore {
    fn get(&self, key: &RecordKey) -> Result<Option<Record>, Error> {
        self.load(key.kind, &key.id)
    }

    fn contains(&self, key: &RecordKey) -> Result<bool, Error> {
        self.tree(key.kind)
            .contains_key(key.id.as_bytes())
            .map_err(storage)
    }

    fn referrers(&self, key: &RecordKey) -> Result<Vec<RecordKey>, Error> {
        let prefix = keys::referrers_prefix(key, None);
        self.index
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k.map_err(storage)?;
                keys::referrer_of(&k, prefix.len())
                    .ok_or_else(|| Error::Storage("a reference index key is malformed".into()))
            })
            .collect()
    }
}

impl Store for SledStore {
    fn revision(&self) -> u64 {
        self.counters.read().revision
    }

    fn list(
        &self,
        query: &ListQuery,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, Error> {
        let counters = self.counters.read();
        let kind = query.kind();
        let (ids, _) = self.candidates(query, after);
        let mut records = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for id in ids {
            let id = id?;
            let Some(record) = self.load(kind, &id)? else {
                return Err(Error::Storage(format!(
                    "the index names {kind} {id:?}, which is not stored"
                )));
            };
            if !query.matches(&record) {
                continue;
            }
            if records.len() == limit {
                more = true;
                break;
            }
            records.push(record);
        }
        let total = if *query == unfiltered(kind) {
            counters.counts[slot(kind)]
        } else {
            self.count_matches(query)?
        };
        Ok(ListPage {
            records,
            total,
            more,
            revision: counters.revision,
        })
    }

    fn commit(&self, changes: Vec<Change>) -> Result<Committed, Error> {
        let mut counters = self.counters.write();
        let revision = counters.revision + 1;
        let recorded_at = SystemTime::now();
        let mut record_batches: [Batch; 5] = Default::default();
        let mut index = Batch::default();
        let mut meta = Batch::default();
        let mut log = Batch::default();
        let mut counts = counters.counts;
        let mut log_head = counters.log_head;
        let mut license_changes = Vec::new();

        for Change { old, new } in changes {
            let new = new.map(|mut r| {
                r.set_revision(revision);
                r
            });
            let old_entries: HashSet<Vec<u8>> = old.iter().flat_map(keys::index_entries).collect();
            let new_entries: HashSet<Vec<u8>> = new.iter().flat_map(keys::index_entries).collect();
            for gone in old_entries.difference(&new_entries) {
                index.remove(gone.as_slice());
            }
            for added in new_entries.difference(&old_entries) {
                index.insert(added.as_slice(), &[]);
            }
            let (kind, id) = match (&old, &new) {
                (_, Some(r)) | (Some(r), None) => (r.kind(), r.id().to_string()),
                (None, None) => continue,
            };
            match &new {
                Some(record) => {
                    record_batches[slot(kind)].insert(id.as_bytes(), encode_record(record));
                    if old.is_none() {
                        counts[slot(kind)] += 1;
                    }
                }
                None => {
                    record_batches[slot(kind)].remove(id.as_bytes());
                    counts[slot(kind)] -= 1;
                }
            }
            let license_change = match (old, new) {
                (None, Some(Record::License(l))) => {
                    Some((ChangeKind::Created, l, LicenseStatus::Unspecified))
                }
                (Some(Record::License(o)), Some(Record::License(l))) => {
                    Some((ChangeKind::Updated, l, o.status))
                }
                (Some(Record::License(o)), None) => {
                    let status = o.status;
                    Some((ChangeKind::Deleted, o, status))
                }
                _ => None,
            };
            if let Some((kind, license, previous_status)) = license_change {
                log_head += 1;
                let change = LicenseChange {
                    sequence: log_head,
                    revision,
                    kind,
                    license,
                    previous_status,
                    recorded_at,
                };
                log.insert(&keys::sequence(log_head), encode_change(&change));
                license_changes.push(change);
            }
        }
        meta.insert(META_REVISION, &revision.to_be_bytes());
        meta.insert(META_LOG_HEAD, &log_head.to_be_bytes());
        for kind in Kind::ALL {
            if counts[slot(kind)] != counters.counts[slot(kind)] {
                meta.insert(count_key(kind), &counts[slot(kind)].to_be_bytes());
            }
        }

        let trees: [&Tree; 8] = [
            &self.records[0],
            &self.records[1],
            &self.records[2],
            &self.records[3],
            &self.records[4],
            &self.index,
            &self.meta,
            &self.log,
        ];
        let batches = [
            &record_batches[0],
            &record_batches[1],
            &record_batches[2],
            &record_batches[3],
            &record_batches[4],
            &index,
            &meta,
            &log,
        ];
        trees[..]
            .transaction(|tx| {
                for (tree, batch) in tx.iter().zip(batches) {
                    tree.apply_batch(batch)?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| storage(format!("{e:?}")))?;

        counters.revision = revision;
        counters.counts = counts;
        counters.log_head = log_head;
        Ok(Committed {
            revision,
            license_changes,
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.db.flush_async().await.map_err(storage)?;
            Ok(())
        })
    }

    fn snapshot(&self) -> Result<Snapshot, Error> {
        let counters = self.counters.read();
        let mut records = Vec::with_capacity(counters.counts.iter().sum::<u64>() as usize);
        for kind in Kind::ALL {
            for value in self.tree(kind).iter().values() {
                records.push(decode_record(&value.map_err(storage)?)?);
            }
        }
        Ok(Snapshot {
            revision: counters.revision,
            records,
        })
    }

    fn log_bounds(&self) -> LogBounds {
        let counters = self.counters.read();
        LogBounds {
            oldest: counters.log_oldest,
            head: counters.log_head,
        }
    }

    fn read_log(&self, after: u64, limit: usize) -> Result<Vec<LicenseChange>, Error> {
        self.log
            .range(keys::sequence(after.saturating_add(1))..)
            .values()
            .take(limit)
            .map(|v| decode_change(&v.map_err(storage)?))
            .collect()
    }

    fn size_on_disk(&self) -> Result<u64, Error> {
        self.db.size_on_disk().map_err(storage)
    }
}

fn unfiltered(kind: Kind) -> ListQuery {
    match kind {
        Kind::Material => ListQuery::Materials,
        Kind::Supplier => ListQuery::Suppliers {
            country: String::new(),
        },
        Kind::Component => ListQuery::Components {
            supplier_id: String::new(),
            material: String::new(),
        },
        Kind::Line => ListQuery::Lines {
            plant: String::new(),
        },
        Kind::License => ListQuery::Licenses {
            supplier_id: String::new(),
            material: String::new(),
            status: LicenseStatus::Unspecified,
        },
    }
}
