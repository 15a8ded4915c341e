//! The rerun policy: after licence and shipment changes, an answer is the
//! one before with the cones of the changed pools and of the components
//! whose shipments changed simulated again, when the earlier answer is
//! still kept, of the same structure, and the changes are few; else the
//! whole network is simulated.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Answer, Query, RiskEngine};
use crate::domain::risk::cone::{self, Base, Cone, Scratch};
use crate::domain::risk::simulate::{run, Evaluation, Licensing, Outages};
use crate::domain::risk::structure::Structure;
use crate::view::View;

use super::Abandon;

/// Most pools changed since an earlier answer that are simulated again
/// from it; beyond, the whole network is.
const MAX_RERUN_POOLS: usize = 64;
/// Most components whose shipments changed since an earlier answer that are
/// simulated again from it.
const MAX_RERUN_COMPONENTS: usize = 256;

/// What changed since an earlier answer, by index, ascending: the pools
/// whose licences changed, and the positions of the components whose
/// shipments did.
#[derive(Debug, Default)]
pub(super) struct Changed {
    pub(super) pools: Vec<u32>,
    pub(super) positions: Vec<u32>,
}

impl RiskEngine {
    /// The newest kept answer to `query` on an earlier revision of the same
    /// network structure, with what changed since, when the view still
    /// knows it all and it is little.
    pub(super) fn earlier(
        &self,
        view: &View,
        query: &Query,
        structure: &Arc<Structure>,
    ) -> Option<(Answer, Changed)> {
        let earlier = self
            .answers
            .lock()
            .kept
            .iter()
            .filter(|((epoch, revision, q), answer)| {
                *epoch == view.epoch
                    && *revision < view.revision
                    && q == query
                    && Arc::ptr_eq(&answer.structure, structure)
            })
            .max_by_key(|((_, revision, _), _)| *revision)
            .map(|(_, answer)| answer.clone())?;
        let mut pools: Vec<u32> = view
            .licence_touches_since(earlier.revision)?
            .into_iter()
            .filter_map(|(supplier, material)| structure.pool(supplier, material))
            .map(|p| p as u32)
            .collect();
        pools.sort_unstable();
        pools.dedup();
        let mut positions: Vec<u32> = view
            .shipment_touches_since(earlier.revision)?
            .into_iter()
            .filter_map(|c| structure.component_index.get(c))
            .map(|&c| structure.flat.position[c as usize])
            .collect();
        positions.sort_unstable();
        positions.dedup();
        let few = pools.len() <= MAX_RERUN_POOLS && positions.len() <= MAX_RERUN_COMPONENTS;
        few.then_some((earlier, Changed { pools, positions }))
    }

    /// The answer to `query` on `view` from an earlier answer: the cones of
    /// what changed since are simulated again (with `outages`' arrivals,
    /// which are the view's), the rest is the earlier answer's. A cone too
    /// large to gain from is simulated in full instead. `None` once
    /// `abandoned` is set.
    pub(super) fn rerun(
        &self,
        view: &View,
        query: &Query,
        earlier: &Answer,
        changed: &Changed,
        outages: &Outages,
        abandoned: &Abandon,
    ) -> Option<(Arc<Evaluation>, Arc<Licensing>, &'static str)> {
        let structure = &earlier.structure;
        let pools = changed.pools.as_slice();
        if pools.is_empty() && changed.positions.is_empty() {
            return Some((
                earlier.evaluation.clone(),
                earlier.licensing.clone(),
                "nothing: no pool or shipment changed",
            ));
        }
        // The licences of the changed pools, as they are now.
        let mut suppliers: Vec<&str> = pools
            .iter()
            .map(|&p| structure.pools[p as usize].supplier_id.as_str())
            .collect();
        suppliers.dedup();
        let mut licensing = (*earlier.licensing).clone();
        licensing.replace_pools(
            structure,
            suppliers.into_iter().flat_map(|s| view.licences_of(s)),
            &query.scenario,
            query.as_of,
            query.horizon_days,
            pools,
        );
        let mut scratch = Scratch::new(structure);
        let cone = Cone::of_changes(structure, pools, &changed.positions, &mut scratch);
        if cone.positions.len() > structure.components.len() / 4 {
            return run(
                structure,
                &licensing,
                outages,
                query.as_of,
                query.horizon_days,
                abandoned.flag(),
            )
            .map(|e| (Arc::new(e), Arc::new(licensing), "whole network"));
        }
        let base = Base {
            structure,
            evaluation: &earlier.evaluation,
            licensing: &earlier.licensing,
            outages,
        };
        let evaluation = cone::rerun(&base, &cone, &licensing, &mut scratch, abandoned.flag())?;
        self.reran.fetch_add(1, Ordering::Relaxed);
        Some((
            Arc::new(evaluation),
            Arc::new(licensing),
            "the changed cones",
        ))
    }
}
