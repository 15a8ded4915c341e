//! The risk engine: evaluates the model on a view of the network, fast enough
//! for every screen refresh of an ERP.
//!
//! Three caches make that so. The structure (demand, pools, topological order)
//! is kept for as long as no material, supplier, component or line changes,
//! so a licence decision costs one simulation, not a rebuild. Whole answers
//! are kept per (revision, query) in an LRU bounded by count and by bytes, so
//! repeated queries and the later pages of a listing cost a lookup. And each
//! answer keeps the reports built from it (the at-risk order, and the
//! exposures asked of it as the API wrote them, within a byte budget of their
//! own), since an exposure of a whole plant or material is hundreds of lines
//! and thousands of pools to sort and write.
//!
//! Identical cold questions arriving together share one evaluation: the first
//! evaluates, the others wait for its answer (and evaluate themselves only if
//! its caller went away and it gave up).
//!
//! The rooms: this file is the engine's face (questions, answers, decision
//! listings); `cache` keeps answers and their reports within their byte
//! budgets; `flight` runs identical computations once; `rerun` decides
//! when an earlier answer can be patched rather than computed afresh.

mod cache;
mod flight;
mod rerun;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::domain::date::Date;
use crate::domain::record::LicenseStatus;
use crate::domain::risk::cone::Base;
use crate::domain::risk::decide::{self, LicenseStake, SupplierImpact};
use crate::domain::risk::forecast::{self, Forecast};
use crate::domain::risk::simulate::{run, Licensing, Outages};
use crate::domain::risk::structure::Structure;
pub use crate::domain::risk::Query;
use crate::view::View;

pub use cache::{Answer, DEFAULT_CACHED_ANSWERS, DEFAULT_CACHE_BYTES};
use cache::{Answers, Key};
pub use flight::Abandon;
use flight::{shared, Flights, Gone};

/// A decision listing asked of an answer: its own parameters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    SupplierImpacts {
        plant: Option<String>,
        recovery_days: u32,
    },
    LicenseStakes {
        plant: Option<String>,
        /// Sorted, without repeats.
        statuses: Vec<LicenseStatus>,
    },
    LineForecasts {
        plant: Option<String>,
        samples: u32,
        seed: u64,
        /// The bits of the asked approval probability (0 for each
        /// material's own).
        approval_probability: u64,
        spread_days: u32,
    },
}

/// A decision listing, in its order.
#[derive(Clone, Debug)]
pub enum Decided {
    SupplierImpacts(Arc<Vec<SupplierImpact>>),
    LicenseStakes(Arc<Vec<LicenseStake>>),
    LineForecasts(Arc<Forecast>),
}

/// A decision listing with the answer it weighed candidates against.
#[derive(Clone, Debug)]
pub struct Decisions {
    pub epoch: u64,
    pub revision: u64,
    pub as_of: Date,
    pub decided: Decided,
}

/// Decision listings kept, the most recently used (each is at most a few
/// MiB: one entry per supplier, licence or line of the network).
const CACHED_DECISIONS: usize = 16;

/// (store epoch, structure revision): what a structure was built from.
type BuiltFrom = (u64, u64);

pub struct RiskEngine {
    /// The structure of the network, with the structure revision it is of.
    structure: Mutex<Option<(BuiltFrom, Arc<Structure>)>>,
    answers: Mutex<Answers>,
    /// Decision listings, by answer and listing.
    decisions: Mutex<LruCache<(Key, Decision), Decisions>>,
    /// Evaluations under way, by question, for callers to share.
    flights: Flights<Key, Answer>,
    /// Decision listings under way, likewise.
    deciding: Flights<(Key, Decision), Decisions>,
    /// Evaluations running now.
    running: AtomicU64,
    /// Evaluations run to their end, since start.
    evaluated: AtomicU64,
    /// Evaluations given up because their caller had gone.
    abandoned: AtomicU64,
    /// Evaluations that simulated only the cones of changed pools.
    reran: AtomicU64,
    /// Decision listings computed to their end.
    decided: AtomicU64,
}

impl RiskEngine {
    /// An engine keeping at most `cached_answers` answers, in at most
    /// `cache_bytes` bytes (the newest answer is kept whatever its size).
    pub fn new(cached_answers: usize, cache_bytes: usize) -> RiskEngine {
        RiskEngine {
            structure: Mutex::new(None),
            answers: Mutex::new(Answers::new(cached_answers, cache_bytes)),
            decisions: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHED_DECISIONS).expect("at least one"),
            )),
            flights: Mutex::new(HashMap::new()),
            deciding: Mutex::new(HashMap::new()),
            running: AtomicU64::new(0),
            evaluated: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            reran: AtomicU64::new(0),
            decided: AtomicU64::new(0),
        }
    }

    /// The answer to `query` on `view`, from the cache when it holds one.
    /// CPU-bound on a miss: call it from a blocking thread.
    pub fn answer(&self, view: &View, query: &Query) -> Answer {
        self.answer_unless(view, query, &Abandon::new())
            .expect("an evaluation nobody abandons ends")
    }

    /// `answer`, given up (`None`, nothing cached) once `abandoned` is set
    /// during the simulation. A structure being built is finished: it serves
    /// every later question until the network changes.
    pub fn answer_unless(&self, view: &View, query: &Query, abandoned: &Abandon) -> Option<Answer> {
        let key = (view.epoch, view.revision, query.clone());
        let kept = || self.answers.lock().kept.get(&key).cloned();
        let compute = || {
            let answer = self.evaluate(view, query, abandoned)?;
            self.answers.lock().put(key.clone(), answer.clone());
            Some(answer)
        };
        self.gone_unless(shared(&self.flights, &key, kept, compute, abandoned))
    }

    /// The result, or `None` counted as abandoned when its caller waited
    /// for another's computation and went away (one it gave up itself was
    /// counted where it stopped).
    fn gone_unless<T>(&self, result: Result<T, Gone>) -> Option<T> {
        match result {
            Ok(result) => Some(result),
            Err(Gone::Computing) => None,
            Err(Gone::Waiting) => {
                self.count_abandoned();
                None
            }
        }
    }

    /// One evaluation of `query` on `view`, given up (`None`) once
    /// `abandoned` is set.
    fn evaluate(&self, view: &View, query: &Query, abandoned: &Abandon) -> Option<Answer> {
        let span = tracing::info_span!(
            "risk evaluation",
            lines = view.lines.len(),
            components = view.components.len(),
            suppliers = view.suppliers.len(),
            licences = view.licenses.len(),
            horizon_days = query.horizon_days,
            revision = view.revision,
            simulated = tracing::field::Empty,
        );
        let _entered = span.enter();
        let structure = self.structure_for(view, &query.scenario.idled_lines);
        let started = std::time::Instant::now();
        self.running.fetch_add(1, Ordering::Relaxed);
        let outages = Outages::new(
            &structure,
            view.shipments.values().map(|s| &**s),
            &query.scenario,
            query.as_of,
        );
        let evaluated = match self.earlier(view, query, &structure) {
            Some((earlier, changed)) => {
                self.rerun(view, query, &earlier, &changed, &outages, abandoned)
            }
            None => {
                let licensing = Licensing::new(
                    &structure,
                    view.licenses.values().map(|l| &**l),
                    &query.scenario,
                    query.as_of,
                    query.horizon_days,
                );
                run(
                    &structure,
                    &licensing,
                    &outages,
                    query.as_of,
                    query.horizon_days,
                    abandoned.flag(),
                )
                .map(|e| (Arc::new(e), Arc::new(licensing), "whole network"))
            }
        };
        self.running.fetch_sub(1, Ordering::Relaxed);
        let Some((evaluation, licensing, how)) = evaluated else {
            self.count_abandoned();
            tracing::debug!(
                revision = view.revision,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "evaluation abandoned: its caller has gone"
            );
            return None;
        };
        span.record("simulated", how);
        tracing::debug!(
            revision = view.revision,
            horizon_days = query.horizon_days,
            simulated = how,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "evaluated"
        );
        self.evaluated.fetch_add(1, Ordering::Relaxed);
        Some(Answer::new(
            (view.epoch, view.revision),
            query.as_of,
            structure,
            evaluation,
            licensing,
        ))
    }

    /// The decision listing `decision` for `query` on `view`, from the cache
    /// when it holds one; `None` (nothing kept) once `abandoned` is set.
    /// CPU-bound on a miss, on every core: call it from a blocking thread.
    pub fn decide_unless(
        &self,
        view: &View,
        query: &Query,
        decision: &Decision,
        abandoned: &Abandon,
    ) -> Option<Decisions> {
        let key = ((view.epoch, view.revision, query.clone()), decision.clone());
        let kept = || self.decisions.lock().get(&key).cloned();
        let compute = || {
            let decisions = self.decide(view, query, decision, abandoned)?;
            self.decisions.lock().put(key.clone(), decisions.clone());
            Some(decisions)
        };
        self.gone_unless(shared(&self.deciding, &key, kept, compute, abandoned))
    }

    /// One decision listing of `decision` for `query` on `view`, given up
    /// (`None`) once `abandoned` is set.
    fn decide(
        &self,
        view: &View,
        query: &Query,
        decision: &Decision,
        abandoned: &Abandon,
    ) -> Option<Decisions> {
        // A forecast weighs its samples against the scenario with every
        // sampled licence denied; the other listings against the question's.
        let base_query = match decision {
            Decision::LineForecasts { .. } => {
                let licenses = view.licenses.values().map(|l| &**l);
                let sampled = forecast::sampled_licences(licenses, &query.scenario);
                Query {
                    scenario: forecast::base_scenario(&query.scenario, &sampled),
                    ..query.clone()
                }
            }
            _ => query.clone(),
        };
        let answer = self.answer_unless(view, &base_query, abandoned)?;
        let started = std::time::Instant::now();
        let structure = &answer.structure;
        let outages = Outages::new(
            structure,
            view.shipments.values().map(|s| &**s),
            &query.scenario,
            query.as_of,
        );
        let base = Base {
            structure,
            evaluation: &answer.evaluation,
            licensing: &answer.licensing,
            outages: &outages,
        };
        self.running.fetch_add(1, Ordering::Relaxed);
        let decided = match decision {
            Decision::SupplierImpacts {
                plant,
                recovery_days,
            } => decide::supplier_impacts(base, plant.as_deref(), *recovery_days, abandoned.flag())
                .map(|d| Decided::SupplierImpacts(Arc::new(d))),
            Decision::LicenseStakes { plant, statuses } => decide::license_stakes(
                base,
                view.licenses.values().map(|l| &**l),
                &query.scenario,
                plant.as_deref(),
                statuses,
                abandoned.flag(),
            )
            .map(|d| Decided::LicenseStakes(Arc::new(d))),
            Decision::LineForecasts {
                plant,
                samples,
                seed,
                approval_probability,
                spread_days,
            } => forecast::forecast(
                base,
                &view.licenses.values().map(|l| &**l).collect::<Vec<_>>(),
                &query.scenario,
                &forecast::Question {
                    samples: *samples,
                    seed: *seed,
                    approval_probability: f64::from_bits(*approval_probability),
                    spread_days: *spread_days,
                    plant: plant.clone(),
                },
                abandoned.flag(),
            )
            .map(|d| Decided::LineForecasts(Arc::new(d))),
        };
        self.running.fetch_sub(1, Ordering::Relaxed);
        let Some(decided) = decided else {
            self.count_abandoned();
            return None;
        };
        tracing::debug!(
            revision = view.revision,
            ?decision,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "decided"
        );
        self.decided.fetch_add(1, Ordering::Relaxed);
        Some(Decisions {
            epoch: answer.epoch,
            revision: answer.revision,
            as_of: answer.as_of,
            decided,
        })
    }

    /// A kept decision listing for a revision (of the store's `epoch`).
    pub fn cached_decision(
        &self,
        epoch: u64,
        revision: u64,
        query: &Query,
        decision: &Decision,
    ) -> Option<Decisions> {
        self.decisions
            .lock()
            .get(&((epoch, revision, query.clone()), decision.clone()))
            .cloned()
    }

    /// Counts a computation given up because its caller had gone.
    fn count_abandoned(&self) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("lodestone_evaluations_abandoned_total").increment(1);
    }

    /// How many evaluations ran to their end since the engine started.
    pub fn evaluations(&self) -> u64 {
        self.evaluated.load(Ordering::Relaxed)
    }

    /// How many evaluations simulated only the cones of the pools changed
    /// since an earlier answer.
    pub fn reruns(&self) -> u64 {
        self.reran.load(Ordering::Relaxed)
    }

    /// The answers kept now, and the bytes they hold (their evaluations
    /// and the exposures built from them), which `--risk-cache-mb` bounds.
    pub fn kept_answers(&self) -> (usize, usize) {
        let answers = self.answers.lock();
        (answers.kept.len(), answers.bytes())
    }

    /// How many decision listings were computed to their end.
    pub fn decisions_computed(&self) -> u64 {
        self.decided.load(Ordering::Relaxed)
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
            .kept
            .get(&(epoch, revision, query.clone()))
            .cloned()
    }

    /// The structure with the lines `idled` taken off: the network's,
    /// kept, when none is; built for the question otherwise (their demand is
    /// gone, and with it what the pools must give).
    fn structure_for(&self, view: &View, idled: &[String]) -> Arc<Structure> {
        if idled.is_empty() {
            return self.structure(view);
        }
        Arc::new(Structure::build_with(
            view.materials.values().map(|m| &**m),
            view.suppliers.values().map(|s| &**s),
            view.components.values().map(|c| &**c),
            view.lines.values().map(|l| &**l),
            idled,
        ))
    }

    fn structure(&self, view: &View) -> Arc<Structure> {
        let at = (view.epoch, view.structure_revision);
        if let Some((built_at, structure)) = &*self.structure.lock() {
            if *built_at == at {
                return structure.clone();
            }
        }
        let started = std::time::Instant::now();
        let structure = Arc::new(Structure::build_with(
            view.materials.values().map(|m| &**m),
            view.suppliers.values().map(|s| &**s),
            view.components.values().map(|c| &**c),
            view.lines.values().map(|l| &**l),
            &[],
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
    use std::time::Duration;

    use bytes::Bytes;

    use super::flight::Flight;
    use super::*;
    use crate::domain::date::parse_date;
    use crate::domain::risk::report::{self, Exposure, Scope};
    use crate::domain::risk::Scenario;
    use crate::tools::generate::{network, Size};

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
        let engine = RiskEngine::new(4, DEFAULT_CACHE_BYTES);
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
            assert_eq!(answer.exposure(&scope).unwrap(), fresh);
            // Written once, then kept: the second answer does not write.
            let written = |e: &Exposure| Bytes::from(format!("{e:?}"));
            assert_eq!(
                answer.written_exposure(&scope, true, written).unwrap(),
                written(&fresh)
            );
            let again = engine.answer(&view, &query);
            assert_eq!(
                again
                    .written_exposure(&scope, true, |_| panic!("written again"))
                    .unwrap(),
                written(&fresh)
            );
            // Without its lines it is another writing.
            assert_eq!(
                again
                    .written_exposure(&scope, false, |e| Bytes::from(e.pools.len().to_string()))
                    .unwrap(),
                fresh.pools.len().to_string()
            );
        }
        let nowhere = Scope::Line("NOWHERE".into());
        assert!(answer.exposure(&nowhere).is_err());
        assert!(answer
            .written_exposure(&nowhere, true, |_| panic!("nothing to write"))
            .is_err());
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
        let engine = RiskEngine::new(4, DEFAULT_CACHE_BYTES);
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

    pub(super) fn medium() -> (View, Query) {
        let size = Size {
            suppliers: 200,
            components: 1_000,
            lines: 40,
            licenses: 400,
        };
        let query = Query {
            as_of: parse_date("2025-06-02").unwrap(),
            horizon_days: 365,
            scenario: Scenario::default(),
        };
        (View::new(9, network(size, 11)), query)
    }

    /// Callers asking the same cold question together share one evaluation.
    #[test]
    fn identical_cold_questions_arriving_together_share_one_evaluation() {
        let (view, query) = medium();
        let engine = RiskEngine::new(4, DEFAULT_CACHE_BYTES);
        let barrier = std::sync::Barrier::new(8);
        let answers: Vec<Answer> = std::thread::scope(|scope| {
            let callers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        engine.answer(&view, &query)
                    })
                })
                .collect();
            callers.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert_eq!(engine.evaluations(), 1);
        for answer in &answers {
            assert!(Arc::ptr_eq(&answer.evaluation, &answers[0].evaluation));
        }
        assert!(engine.flights.lock().is_empty());
    }

    /// A caller that waits for another's evaluation and goes away stops
    /// waiting; when the evaluating caller goes away, a waiter evaluates.
    #[test]
    fn a_shared_evaluation_given_up_is_taken_over_by_a_waiter() {
        let (view, query) = medium();
        let engine = RiskEngine::new(4, DEFAULT_CACHE_BYTES);
        let key = (view.epoch, view.revision, query.clone());
        let flight = Arc::new(Flight::default());
        engine.flights.lock().insert(key.clone(), flight.clone());
        // A waiter whose caller has gone returns at once with nothing.
        assert!(engine
            .answer_unless(&view, &query, &Abandon::already())
            .is_none());
        // A waiter that stays gets its own answer once the flight is given up.
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| engine.answer(&view, &query));
            std::thread::sleep(Duration::from_millis(50));
            engine.flights.lock().remove(&key);
            flight.end(None);
            let answer = waiter.join().unwrap();
            assert_eq!(answer.revision, view.revision);
        });
        assert_eq!(engine.evaluations(), 1);
    }

    /// The answers kept fit their byte budget; the newest is always kept.
    #[test]
    fn answers_are_kept_within_a_byte_budget() {
        let (view, query) = medium();
        let one = RiskEngine::new(32, DEFAULT_CACHE_BYTES)
            .answer(&view, &query)
            .held_bytes();
        assert!(one > 1_000, "an answer of 40 lines is not nothing: {one}");
        let engine = RiskEngine::new(32, one + one / 2);
        let longer = Query {
            horizon_days: 366,
            ..query.clone()
        };
        engine.answer(&view, &query);
        engine.answer(&view, &longer);
        assert!(engine.cached(view.epoch, view.revision, &longer).is_some());
        assert!(
            engine.cached(view.epoch, view.revision, &query).is_none(),
            "the older answer went to make room"
        );
        let tiny = RiskEngine::new(32, 1);
        tiny.answer(&view, &query);
        assert!(tiny.cached(view.epoch, view.revision, &query).is_some());
    }

    /// After licence changes, an answer is built from the one before by
    /// simulating only the changed pools' cones, and it is the answer a
    /// full evaluation gives; changes beyond any pool reuse it whole.
    #[test]
    fn an_answer_after_licence_changes_simulates_only_their_cones() {
        use crate::domain::record::{LicenseStatus, Record};
        use crate::domain::risk::simulate::evaluate;
        use crate::domain::write::Change;
        let (mut view, query) = medium();
        let engine = RiskEngine::new(8, DEFAULT_CACHE_BYTES);
        let first = engine.answer(&view, &query);
        let mut ids: Vec<String> = view.licenses.keys().cloned().collect();
        ids.sort();
        for (step, id) in ids.iter().step_by(37).take(6).enumerate() {
            let mut license = (*view.licenses[id]).clone();
            license.status = match license.status {
                LicenseStatus::Approved => LicenseStatus::Revoked,
                _ => LicenseStatus::Approved,
            };
            license.quantity_kg *= 1.5;
            let old = Some(Record::License((*view.licenses[id]).clone()));
            let changes = vec![Change {
                old,
                new: Some(Record::License(license)),
            }];
            view.apply(view.revision + 1, changes);
            let answer = engine.answer(&view, &query);
            let full = evaluate(
                &answer.structure,
                view.licenses.values().map(|l| &**l),
                view.shipments.values().map(|s| &**s),
                &query.scenario,
                query.as_of,
                query.horizon_days,
            );
            assert_eq!(*answer.evaluation, full, "after change {step}");
            assert_eq!(engine.reruns(), step as u64 + 1, "after change {step}");
        }
        assert!(Arc::ptr_eq(
            &first.structure,
            &engine.answer(&view, &query).structure
        ));
        // A change to a licence of no pool leaves the answer as it was.
        let mut stray = (*view.licenses[&ids[0]]).clone();
        stray.id = "LIC-NO-POOL".into();
        stray.material = "NONE".into();
        let before = engine.answer(&view, &query);
        view.apply(
            view.revision + 1,
            vec![Change {
                old: None,
                new: Some(Record::License(stray)),
            }],
        );
        let after = engine.answer(&view, &query);
        assert_eq!(after.revision, view.revision);
        assert!(Arc::ptr_eq(&before.evaluation, &after.evaluation));
    }

    /// A shipment written, changed or deleted re-simulates only its
    /// component's cone, on the same structure, as a licence decision does.
    #[test]
    fn an_answer_after_shipment_changes_simulates_only_their_cones() {
        use crate::domain::record::{Record, Shipment};
        use crate::domain::risk::simulate::evaluate;
        use crate::domain::write::Change;
        let (mut view, query) = medium();
        let engine = RiskEngine::new(8, DEFAULT_CACHE_BYTES);
        let first = engine.answer(&view, &query);
        let at_risk = first.at_risk_order(None);
        assert!(!at_risk.is_empty());
        // Magnets for the first lines at risk: their root causes.
        let causes: Vec<String> = at_risk
            .iter()
            .take(4)
            .filter_map(|&l| {
                first.evaluation.lines[l as usize]
                    .root_cause_path
                    .last()
                    .copied()
            })
            .map(|c| first.structure.components[c as usize].id.clone())
            .collect();
        let mut reruns = 0;
        for (step, component) in causes.iter().enumerate() {
            let id = format!("SH-TEST-{step}");
            let shipment = Shipment {
                id: id.clone(),
                component_id: component.clone(),
                units: 50_000.0,
                arrives_on: Some(query.as_of + chrono::TimeDelta::days(3 + step as i64)),
                ..Shipment::default()
            };
            let old = view
                .shipments
                .get(&id)
                .map(|s| Record::Shipment((**s).clone()));
            for new in [Some(Record::Shipment(shipment.clone())), None] {
                let old = match &new {
                    Some(_) => old.clone(),
                    None => Some(Record::Shipment(shipment.clone())),
                };
                view.apply(view.revision + 1, vec![Change { old, new }]);
                let answer = engine.answer(&view, &query);
                let full = evaluate(
                    &answer.structure,
                    view.licenses.values().map(|l| &**l),
                    view.shipments.values().map(|s| &**s),
                    &query.scenario,
                    query.as_of,
                    query.horizon_days,
                );
                assert_eq!(*answer.evaluation, full, "after change {step}");
                // The arrival counts; gone again, the answer is the first.
                let added = view.shipments.contains_key(&id);
                assert_eq!(added, *answer.evaluation != *first.evaluation, "{step}");
                assert!(Arc::ptr_eq(&first.structure, &answer.structure));
                reruns += 1;
                assert_eq!(engine.reruns(), reruns, "after change {step}");
            }
        }
        assert!(reruns >= 2);
    }

    /// A decision listing whose caller has gone stops its candidates' runs
    /// and keeps nothing; asked again, it is answered in full.
    #[test]
    fn a_decision_whose_caller_has_gone_stops_and_is_not_kept() {
        let (view, query) = medium();
        let engine = RiskEngine::new(4, DEFAULT_CACHE_BYTES);
        // The base answer is there: only the candidates' runs can stop.
        engine.answer(&view, &query);
        let decision = Decision::SupplierImpacts {
            plant: None,
            recovery_days: 30,
        };
        let gone = Abandon::already();
        assert!(engine
            .decide_unless(&view, &query, &decision, &gone)
            .is_none());
        assert_eq!(engine.abandoned_evaluations(), 1);
        assert_eq!(engine.running_evaluations(), 0);
        assert!(engine
            .cached_decision(view.epoch, view.revision, &query, &decision)
            .is_none());
        let decided = engine
            .decide_unless(&view, &query, &decision, &Abandon::new())
            .unwrap();
        match decided.decided {
            Decided::SupplierImpacts(impacts) => assert!(!impacts.is_empty()),
            other => panic!("asked for suppliers: {other:?}"),
        }
        assert!(engine
            .cached_decision(view.epoch, view.revision, &query, &decision)
            .is_some());
    }

    /// Callers asking the same cold decision listing together share one
    /// computation.
    #[test]
    fn identical_cold_decisions_arriving_together_share_one_listing() {
        let (view, query) = medium();
        let engine = RiskEngine::new(4, DEFAULT_CACHE_BYTES);
        let decision = Decision::LicenseStakes {
            plant: None,
            statuses: vec![crate::domain::record::LicenseStatus::Pending],
        };
        let barrier = std::sync::Barrier::new(4);
        let listings: Vec<Decisions> = std::thread::scope(|scope| {
            let callers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        let stay = Abandon::new();
                        engine
                            .decide_unless(&view, &query, &decision, &stay)
                            .unwrap()
                    })
                })
                .collect();
            callers.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert_eq!(engine.decisions_computed(), 1);
        let Decided::LicenseStakes(first) = &listings[0].decided else {
            panic!("asked for licences")
        };
        for listing in &listings {
            let Decided::LicenseStakes(stakes) = &listing.decided else {
                panic!("asked for licences")
            };
            assert!(Arc::ptr_eq(stakes, first));
        }
        assert!(engine.deciding.lock().is_empty());
    }

    /// A forecast whose caller has gone stops its samples and keeps nothing.
    #[test]
    fn a_forecast_whose_caller_has_gone_stops_and_is_not_kept() {
        let (view, query) = medium();
        let engine = RiskEngine::new(4, DEFAULT_CACHE_BYTES);
        let forecast = |samples| Decision::LineForecasts {
            plant: None,
            samples,
            seed: 3,
            approval_probability: 0.5f64.to_bits(),
            spread_days: 30,
        };
        // One sample evaluates the base (every sampled licence denied).
        let stay = Abandon::new();
        assert!(engine
            .decide_unless(&view, &query, &forecast(1), &stay)
            .is_some());
        let evaluated = engine.evaluations();
        let gone = Abandon::already();
        assert!(engine
            .decide_unless(&view, &query, &forecast(500), &gone)
            .is_none());
        assert_eq!(
            engine.evaluations(),
            evaluated,
            "the base came from the cache"
        );
        assert_eq!(engine.abandoned_evaluations(), 1);
        assert!(engine
            .cached_decision(view.epoch, view.revision, &query, &forecast(500))
            .is_none());
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
        let engine = RiskEngine::new(4, DEFAULT_CACHE_BYTES);
        assert!(engine
            .answer_unless(&view, &query, &Abandon::already())
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
