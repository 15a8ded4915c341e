//! The risk engine: evaluates the model on a view of the network, fast enough
//! for every screen refresh of an ERP.
//!
//! Three caches make that so. The structure (demand, pools, topological order)
//! is kept for as long as no material, supplier, component or line changes,
//! so a licence decision costs one simulation, not a rebuild. Whole answers
//! are kept per (revision, query) in a bounded LRU, so repeated queries and
//! the later pages of a listing cost a lookup. And each answer keeps the
//! reports built from it (the at-risk order, the exposures asked of it), since
//! an exposure of a whole plant or material is hundreds of lines to sort and
//! write.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use lru::LruCache;
use parking_lot::Mutex;

use crate::domain::date::Date;
use crate::domain::risk::report::{self, Exposure, Scope};
use crate::domain::risk::simulate::{evaluate_unless, Evaluation};
use crate::domain::risk::structure::Structure;
use crate::domain::risk::Scenario;
use crate::view::View;

/// What an evaluation depends on besides the network.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Query {
    pub as_of: Date,
    pub horizon_days: u32,
    pub scenario: Scenario,
}

/// An evaluation with the structure it ran on.
#[derive(Clone, Debug)]
pub struct Answer {
    pub revision: u64,
    pub structure: Arc<Structure>,
    pub evaluation: Arc<Evaluation>,
    reports: Arc<Reports>,
}

/// What has been built from one answer, kept as long as the answer is.
#[derive(Debug)]
struct Reports {
    /// Every line at risk, in the at-risk order.
    at_risk: OnceLock<Arc<Vec<u32>>>,
    exposures: Mutex<LruCache<Scope, Arc<Exposure>>>,
}

/// Exposures kept per answer.
const CACHED_EXPOSURES: usize = 64;

impl Answer {
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

    /// The exposure of `scope`, built once per answer.
    pub fn exposure(&self, scope: &Scope) -> Result<Arc<Exposure>, crate::domain::Error> {
        if let Some(exposure) = self.reports.exposures.lock().get(scope) {
            return Ok(exposure.clone());
        }
        let exposure = Arc::new(report::exposure(&self.structure, &self.evaluation, scope)?);
        self.reports
            .exposures
            .lock()
            .put(scope.clone(), exposure.clone());
        Ok(exposure)
    }
}

/// (store epoch, structure revision): what a structure was built from.
type BuiltFrom = (u64, u64);

pub struct RiskEngine {
    /// The structure of the network, with the structure revision it is of.
    structure: Mutex<Option<(BuiltFrom, Arc<Structure>)>>,
    answers: Mutex<LruCache<(u64, u64, Query), Answer>>,
    /// Evaluations running now.
    running: AtomicU64,
    /// Evaluations given up because their caller had gone.
    abandoned: AtomicU64,
}

/// Answers kept by default.
pub const DEFAULT_CACHED_ANSWERS: usize = 32;

impl RiskEngine {
    pub fn new(cached_answers: usize) -> RiskEngine {
        RiskEngine {
            structure: Mutex::new(None),
            answers: Mutex::new(LruCache::new(
                NonZeroUsize::new(cached_answers.max(1)).expect("at least one"),
            )),
            running: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        }
    }

    /// The answer to `query` on `view`, from the cache when it holds one.
    /// CPU-bound on a miss: call it from a blocking thread.
    pub fn answer(&self, view: &View, query: &Query) -> Answer {
        self.answer_unless(view, query, &AtomicBool::new(false))
            .expect("an evaluation nobody abandons ends")
    }

    /// `answer`, given up (`None`, nothing cached) once `abandoned` is set
    /// during the simulation. A structure being built is finished: it serves
    /// every later question until the network changes.
    pub fn answer_unless(
        &self,
        view: &View,
        query: &Query,
        abandoned: &AtomicBool,
    ) -> Option<Answer> {
        let key = (view.epoch, view.revision, query.clone());
        if let Some(answer) = self.answers.lock().get(&key) {
            return Some(answer.clone());
        }
        let structure = self.structure(view);
        let started = std::time::Instant::now();
        self.running.fetch_add(1, Ordering::Relaxed);
        let evaluation = evaluate_unless(
            &structure,
            view.licenses.values().map(|l| &**l),
            &query.scenario,
            query.as_of,
            query.horizon_days,
            abandoned,
        );
        self.running.fetch_sub(1, Ordering::Relaxed);
        let Some(evaluation) = evaluation else {
            self.abandoned.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("lodestone_evaluations_abandoned_total").increment(1);
            tracing::debug!(
                revision = view.revision,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "evaluation abandoned: its caller has gone"
            );
            return None;
        };
        tracing::debug!(
            revision = view.revision,
            horizon_days = query.horizon_days,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "evaluated"
        );
        let answer = Answer {
            revision: view.revision,
            structure,
            evaluation: Arc::new(evaluation),
            reports: Arc::new(Reports {
                at_risk: OnceLock::new(),
                exposures: Mutex::new(LruCache::new(
                    NonZeroUsize::new(CACHED_EXPOSURES).expect("not zero"),
                )),
            }),
        };
        self.answers.lock().put(key, answer.clone());
        Some(answer)
    }

    /// How many evaluations are running now.
    pub fn running_evaluations(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    /// How many evaluations were given up because their caller had gone.
    pub fn abandoned_evaluations(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// A cached answer for a revision (of the store's `epoch`), if it is
    /// still held.
    pub fn cached(&self, epoch: u64, revision: u64, query: &Query) -> Option<Answer> {
        self.answers
            .lock()
            .get(&(epoch, revision, query.clone()))
            .cloned()
    }

    fn structure(&self, view: &View) -> Arc<Structure> {
        let at = (view.epoch, view.structure_revision);
        if let Some((built_at, structure)) = &*self.structure.lock() {
            if *built_at == at {
                return structure.clone();
            }
        }
        let started = std::time::Instant::now();
        let structure = Arc::new(Structure::build(
            view.materials.values().map(|m| &**m),
            view.suppliers.values().map(|s| &**s),
            view.components.values().map(|c| &**c),
            view.lines.values().map(|l| &**l),
        ));
        tracing::debug!(
            revision = view.structure_revision,
            components = structure.components.len(),
            pools = structure.pools.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "built the network structure"
        );
        let mut slot = self.structure.lock();
        // Keep the newer of two structures built at the same time.
        if slot.as_ref().is_none_or(|(built_at, _)| *built_at <= at) {
            *slot = Some((at, structure.clone()));
        }
        structure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::parse_date;
    use crate::generate::{network, Size};

    /// What the engine keeps per answer is what the model computes afresh.
    #[test]
    fn kept_reports_equal_fresh_ones() {
        let size = Size {
            suppliers: 60,
            components: 300,
            lines: 24,
            licenses: 120,
        };
        let view = View::new(1, network(size, 7));
        let engine = RiskEngine::new(4);
        let query = Query {
            as_of: parse_date("2025-06-02").unwrap(),
            horizon_days: 120,
            scenario: Scenario::default(),
        };
        let answer = engine.answer(&view, &query);
        let (structure, evaluation) = (&answer.structure, &answer.evaluation);
        let mut plants: Vec<&str> = structure.lines.iter().map(|l| l.plant.as_str()).collect();
        plants.sort();
        plants.dedup();
        assert!(plants.len() > 1);
        assert_eq!(
            *answer.at_risk_order(None),
            report::at_risk_order_of(structure, evaluation, None)
        );
        for plant in plants {
            let fresh = report::at_risk_order_of(structure, evaluation, Some(plant));
            assert_eq!(*answer.at_risk_order(Some(plant)), fresh, "{plant}");
            let scope = Scope::Plant(plant.to_string());
            let fresh = report::exposure(structure, evaluation, &scope).unwrap();
            // Twice: built, then kept.
            assert_eq!(*answer.exposure(&scope).unwrap(), fresh);
            assert_eq!(
                *engine.answer(&view, &query).exposure(&scope).unwrap(),
                fresh
            );
        }
        let nowhere = Scope::Line("NOWHERE".into());
        assert!(answer.exposure(&nowhere).is_err());
    }

    /// After the store is opened again, a revision can name other records:
    /// nothing cached under the old epoch answers for the new one.
    #[test]
    fn a_revision_of_another_epoch_is_another_network() {
        let size = Size {
            suppliers: 20,
            components: 60,
            lines: 6,
            licenses: 30,
        };
        let query = Query {
            as_of: parse_date("2025-06-02").unwrap(),
            horizon_days: 120,
            scenario: Scenario::default(),
        };
        let engine = RiskEngine::new(4);
        let before = View::new(5, network(size, 1));
        let mut after = View::new(5, network(size, 2));
        after.epoch = 1;
        let a = engine.answer(&before, &query);
        let b = engine.answer(&after, &query);
        assert!(!Arc::ptr_eq(&a.structure, &b.structure));
        let rates = |answer: &Answer| -> Vec<f64> {
            answer
                .structure
                .lines
                .iter()
                .map(|l| l.units_per_day)
                .collect()
        };
        assert_ne!(rates(&a), rates(&b), "each answer is of its own network");
        assert!(engine.cached(1, 5, &query).is_some());
        assert!(engine.cached(2, 5, &query).is_none());
    }

    /// An evaluation whose caller has gone stops, keeps nothing, and says so;
    /// the same question asked again is answered in full.
    #[test]
    fn an_abandoned_evaluation_stops_and_is_not_kept() {
        let size = Size {
            suppliers: 20,
            components: 60,
            lines: 6,
            licenses: 30,
        };
        let view = View::new(3, network(size, 5));
        let query = Query {
            as_of: parse_date("2025-06-02").unwrap(),
            horizon_days: 120,
            scenario: Scenario::default(),
        };
        let engine = RiskEngine::new(4);
        assert!(engine
            .answer_unless(&view, &query, &AtomicBool::new(true))
            .is_none());
        assert_eq!(engine.abandoned_evaluations(), 1);
        assert_eq!(engine.running_evaluations(), 0);
        assert!(engine.cached(view.epoch, view.revision, &query).is_none());
        let answer = engine.answer(&view, &query);
        assert_eq!(answer.evaluation.lines.len(), answer.structure.lines.len());
        assert!(engine.cached(view.epoch, view.revision, &query).is_some());
        assert_eq!(engine.abandoned_evaluations(), 1);
    }
}
