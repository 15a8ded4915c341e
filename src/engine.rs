//! The risk engine: evaluates the model on a view of the network, fast enough
//! for every screen refresh of an ERP.
//!
//! Two caches make that so. The structure (demand, pools, topological order)
//! is kept for as long as no material, supplier, component or line changes,
//! so a licence decision costs one simulation, not a rebuild. Whole answers
//! are kept per (revision, query) in a bounded LRU, so repeated queries and
//! the later pages of a listing cost a lookup.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::domain::date::Date;
use crate::domain::risk::simulate::{evaluate, Evaluation};
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
}

pub struct RiskEngine {
    /// The structure of the network, with the structure revision it is of.
    structure: Mutex<Option<(u64, Arc<Structure>)>>,
    answers: Mutex<LruCache<(u64, Query), Answer>>,
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
        }
    }

    /// The answer to `query` on `view`, from the cache when it holds one.
    /// CPU-bound on a miss: call it from a blocking thread.
    pub fn answer(&self, view: &View, query: &Query) -> Answer {
        let key = (view.revision, query.clone());
        if let Some(answer) = self.answers.lock().get(&key) {
            return answer.clone();
        }
        let structure = self.structure(view);
        let started = std::time::Instant::now();
        let evaluation = evaluate(
            &structure,
            view.licenses.values().map(|l| &**l),
            &query.scenario,
            query.as_of,
            query.horizon_days,
        );
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
        };
        self.answers.lock().put(key, answer.clone());
        answer
    }

    /// A cached answer for an earlier revision, if it is still held.
    pub fn cached(&self, revision: u64, query: &Query) -> Option<Answer> {
        self.answers.lock().get(&(revision, query.clone())).cloned()
    }

    fn structure(&self, view: &View) -> Arc<Structure> {
        if let Some((revision, structure)) = &*self.structure.lock() {
            if *revision == view.structure_revision {
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
        if slot
            .as_ref()
            .is_none_or(|(r, _)| *r <= view.structure_revision)
        {
            *slot = Some((view.structure_revision, structure.clone()));
        }
        structure
    }
}
