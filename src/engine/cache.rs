//! What the engine keeps, and what it costs: answers in an LRU within a
//! count and a byte budget (`--risk-cache-mb`), and per answer the reports
//! built from it (the at-risk order, the exposures as the API wrote them,
//! within a byte budget of their own). Byte counts are estimates of the
//! heap each holds, kept close enough that the budget means what it says.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;

use super::Query;
use crate::domain::date::Date;
use crate::domain::risk::report::{self, Exposure, Scope};
use crate::domain::risk::simulate::{Evaluation, Licensing};
use crate::domain::risk::structure::Structure;

/// Answers kept by default.
pub const DEFAULT_CACHED_ANSWERS: usize = 32;
/// Bytes of answers (with their exposures) kept by default.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// An evaluation with the structure it ran on.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The store epoch and revision of the view it was computed on.
    pub epoch: u64,
    pub revision: u64,
    /// The day it answers for.
    pub as_of: Date,
    pub structure: Arc<Structure>,
    pub evaluation: Arc<Evaluation>,
    /// The pools' licences under the query's scenario, before day 0.
    pub licensing: Arc<Licensing>,
    reports: Arc<Reports>,
    /// Heap bytes of the evaluation (estimated).
    bytes: usize,
}

/// What has been built from one answer, kept as long as the answer is.
#[derive(Debug)]
struct Reports {
    /// Every line at risk, in the at-risk order.
    at_risk: OnceLock<Arc<Vec<u32>>>,
    exposures: Mutex<Exposures>,
}

/// The exposures written from one answer, the most recently used kept
/// within a count and a byte budget.
#[derive(Debug)]
struct Exposures {
    kept: LruCache<ExposureKey, Bytes>,
    bytes: usize,
    max_bytes: usize,
    /// Bytes now kept, shared with the answers cache's accounting.
    shared: Arc<AtomicUsize>,
}

/// An exposure's scope, and whether it was written with its lines.
type ExposureKey = (Scope, bool);

/// Exposures kept per answer, at most.
const CACHED_EXPOSURES: usize = 64;
/// Bytes of written exposures kept per answer, at most (one plant of the
/// large benchmark network is 0.1 MiB).
const EXPOSURE_BYTES: usize = 16 << 20;

/// Approximate heap bytes of values the caches keep, for their budgets.
fn string_bytes(s: &str) -> usize {
    std::mem::size_of::<String>() + s.len()
}

fn evaluation_bytes(evaluation: &Evaluation) -> usize {
    use std::mem::size_of_val;
    let lines: usize = evaluation
        .lines
        .iter()
        .map(|l| {
            size_of_val(l)
                + size_of_val(l.root_cause_path.as_slice())
                + size_of_val(l.blocking_pools.as_slice())
                + l.blocking_licenses
                    .iter()
                    .map(|s| string_bytes(s))
                    .sum::<usize>()
        })
        .sum();
    lines
        + size_of_val(evaluation.pools.as_slice())
        + evaluation.history.bytes()
        + std::mem::size_of::<Evaluation>()
}

fn licensing_bytes(licensing: &Licensing) -> usize {
    use std::mem::size_of_val;
    let usable: usize = licensing
        .usable
        .iter()
        .map(|list| size_of_val(list.as_slice()) + list.iter().map(|u| u.id_bytes()).sum::<usize>())
        .sum();
    let ids: usize = licensing
        .pool_licenses
        .iter()
        .map(|ids| ids.iter().map(|s| string_bytes(s)).sum::<usize>())
        .sum();
    usable + ids + size_of_val(licensing.pools.as_slice())
}

/// Heap bytes of a kept exposure: its key and its encoding.
fn exposure_bytes((scope, _): &ExposureKey, written: &Bytes) -> usize {
    let id = match scope {
        Scope::Network => "",
        Scope::Supplier(id)
        | Scope::Component(id)
        | Scope::Line(id)
        | Scope::Plant(id)
        | Scope::Material(id) => id,
    };
    std::mem::size_of::<ExposureKey>() + id.len() + written.len()
}

impl Exposures {
    fn new(shared: Arc<AtomicUsize>, max_bytes: usize) -> Exposures {
        Exposures {
            kept: LruCache::unbounded(),
            bytes: 0,
            max_bytes,
            shared,
        }
    }

    fn get(&mut self, key: &ExposureKey) -> Option<Bytes> {
        self.kept.get(key).cloned()
    }

    /// Keeps `written`, letting the least recently used go past the count
    /// or the byte budget. One larger than the whole budget is not kept.
    fn put(&mut self, key: ExposureKey, written: Bytes) {
        let bytes = exposure_bytes(&key, &written);
        if bytes > self.max_bytes {
            return;
        }
        if let Some((old_key, old)) = self.kept.push(key, written) {
            self.bytes -= exposure_bytes(&old_key, &old);
        }
        self.bytes += bytes;
        while self.bytes > self.max_bytes || self.kept.len() > CACHED_EXPOSURES {
            match self.kept.pop_lru() {
                Some((key, gone)) => self.bytes -= exposure_bytes(&key, &gone),
                None => break,
            }
        }
        self.shared.store(self.bytes, Ordering::Relaxed);
    }
}

impl Answer {
    /// An answer of `evaluation` on the view of (`epoch`, `revision`), with
    /// nothing built from it yet.
    pub(super) fn new(
        (epoch, revision): (u64, u64),
        as_of: Date,
        structure: Arc<Structure>,
        evaluation: Arc<Evaluation>,
        licensing: Arc<Licensing>,
    ) -> Answer {
        Answer {
            epoch,
            revision,
            as_of,
            structure,
            bytes: evaluation_bytes(&evaluation) + licensing_bytes(&licensing),
            evaluation,
            licensing,
            reports: Arc::new(Reports {
                at_risk: OnceLock::new(),
                exposures: Mutex::new(Exposures::new(
                    Arc::new(AtomicUsize::new(0)),
                    EXPOSURE_BYTES,
                )),
            }),
        }
    }

    /// The lines at risk in the at-risk order, restricted to `plant` if given.
    pub fn at_risk_order(&self, plant: Option<&str>) -> Arc<Vec<u32>> {
        let all = self
            .reports
            .at_risk
            .get_or_init(|| {
                Arc::new(report::at_risk_order_of(
                    &self.structure,
                    &self.evaluation,
                    None,
                ))
            })
            .clone();
        match plant {
            None => all,
            Some(plant) => Arc::new(
                all.iter()
                    .copied()
                    .filter(|&l| self.structure.lines[l as usize].plant == plant)
                    .collect(),
            ),
        }
    }

    /// The exposure of `scope`.
    pub fn exposure(&self, scope: &Scope) -> Result<Exposure, crate::domain::Error> {
        report::exposure(&self.structure, &self.evaluation, scope)
    }

    /// The exposure of `scope` as `write` writes it (with its lines or
    /// without), kept as long as the answer is and the exposures' budget
    /// allows: a warm exposure is a lookup. It is written outside the lock,
    /// so two first asks at once may each write it (the same bytes).
    pub fn written_exposure(
        &self,
        scope: &Scope,
        with_lines: bool,
        write: impl FnOnce(&Exposure) -> Bytes,
    ) -> Result<Bytes, crate::domain::Error> {
        let key = (scope.clone(), with_lines);
        if let Some(written) = self.reports.exposures.lock().get(&key) {
            return Ok(written);
        }
        let written = write(&self.exposure(scope)?);
        self.reports.exposures.lock().put(key, written.clone());
        Ok(written)
    }

    /// Bytes this answer holds now: its evaluation and its kept exposures.
    pub(super) fn held_bytes(&self) -> usize {
        self.bytes + self.reports.exposures.lock().shared.load(Ordering::Relaxed)
    }
}

/// The cache key of an answer: store epoch, revision, question.
pub(super) type Key = (u64, u64, Query);

/// Answers kept, the most recently used, within a count and a byte budget.
pub(super) struct Answers {
    pub(super) kept: LruCache<Key, Answer>,
    max_bytes: usize,
}

impl Answers {
    pub(super) fn new(count: usize, max_bytes: usize) -> Answers {
        Answers {
            kept: LruCache::new(NonZeroUsize::new(count.max(1)).expect("at least one")),
            max_bytes,
        }
    }

    /// Bytes the kept answers hold now.
    pub(super) fn bytes(&self) -> usize {
        self.kept.iter().map(|(_, a)| a.held_bytes()).sum()
    }

    pub(super) fn put(&mut self, key: Key, answer: Answer) {
        self.kept.put(key, answer);
        // Exposures grow after an answer is kept: count them now.
        let mut bytes = self.bytes();
        while bytes > self.max_bytes && self.kept.len() > 1 {
            match self.kept.pop_lru() {
                Some((_, gone)) => bytes -= gone.held_bytes(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::medium;
    use super::super::RiskEngine;
    use super::*;

    /// An answer's exposures are kept within their own byte budget.
    #[test]
    fn exposures_are_kept_within_a_byte_budget() {
        let (view, query) = medium();
        let engine = RiskEngine::new(4, DEFAULT_CACHE_BYTES);
        let answer = engine.answer(&view, &query);
        let plants: Vec<String> = answer
            .structure
            .lines
            .iter()
            .map(|l| l.plant.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let written: Vec<Bytes> = plants
            .iter()
            .map(|p| {
                let scope = Scope::Plant(p.clone());
                answer
                    .written_exposure(&scope, true, |e| Bytes::from(format!("{e:?}")))
                    .unwrap()
            })
            .collect();
        let key = |plant: &String| (Scope::Plant(plant.clone()), true);
        let largest = plants
            .iter()
            .zip(&written)
            .map(|(p, w)| exposure_bytes(&key(p), w))
            .max()
            .unwrap();
        let shared = Arc::new(AtomicUsize::new(0));
        let mut kept = Exposures::new(shared.clone(), largest * 2);
        for (plant, written) in plants.iter().zip(&written) {
            kept.put(key(plant), written.clone());
            assert!(kept.bytes <= largest * 2);
            assert_eq!(shared.load(Ordering::Relaxed), kept.bytes);
        }
        assert!(kept.kept.len() < plants.len(), "{} plants", plants.len());
        assert!(
            kept.get(&key(plants.last().unwrap())).is_some(),
            "the newest is kept"
        );
    }
}
