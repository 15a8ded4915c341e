//! What an evaluation reports: per line and per pool, for a scope, in the
//! model's orders.

use std::cmp::Ordering;

use super::date_of;
use super::simulate::{Evaluation, LineOutcome};
use super::structure::Structure;
use super::{day_number, Date, EPS};
use crate::domain::record::Kind;
use crate::domain::Error;

/// What an exposure reports on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Network,
    Supplier(String),
    Component(String),
    Line(String),
    Plant(String),
    Material(String),
}

/// When and why one line stops.
#[derive(Clone, Debug, PartialEq)]
pub struct LineRisk {
    pub line_id: String,
    pub plant: String,
    pub days_to_stop: Option<u32>,
    pub stop_date: Option<Date>,
    pub output_fraction: f64,
    pub units_lost: f64,
    pub bottleneck_component_id: String,
    pub root_cause_path: Vec<String>,
    /// (supplier id, material code)
    pub blocking_pools: Vec<(String, String)>,
    pub blocking_license_ids: Vec<String>,
    pub blocking_supplier_ids: Vec<String>,
    /// Units of the root cause's last component missing over the horizon.
    pub shortfall_units: f64,
    /// Taken off by the scenario's idled lines.
    pub idled: bool,
}

impl LineRisk {
    pub fn at_risk(&self) -> bool {
        self.days_to_stop.is_some()
    }

    /// A line that runs at its full rate over the horizon, as the model
    /// reports one that is not at risk.
    pub fn running(line_id: &str, plant: &str) -> LineRisk {
        LineRisk {
            line_id: line_id.to_string(),
            plant: plant.to_string(),
            days_to_stop: None,
            stop_date: None,
            output_fraction: 1.0,
            units_lost: 0.0,
            bottleneck_component_id: String::new(),
            root_cause_path: Vec::new(),
            blocking_pools: Vec::new(),
            blocking_license_ids: Vec::new(),
            blocking_supplier_ids: Vec::new(),
            shortfall_units: 0.0,
            idled: false,
        }
    }
}

/// How long one pool covers its requirement.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolCoverage {
    pub supplier_id: String,
    pub material: String,
    pub required_kg_per_day: f64,
    pub approved_remaining_kg: f64,
    pub pending_kg: f64,
    pub covered_days: u32,
    pub first_uncovered_date: Option<Date>,
}

/// The exposure of one scope.
#[derive(Clone, Debug, PartialEq)]
pub struct Exposure {
    pub as_of: Date,
    pub horizon_days: u32,
    pub lines_in_scope: usize,
    pub lines_at_risk: usize,
    pub units_per_day: f64,
    pub units_at_risk: f64,
    pub earliest_stop_date: Option<Date>,
    pub lines: Vec<LineRisk>,
    pub pools: Vec<PoolCoverage>,
}

/// The order of at-risk lines: soonest stop first, then the larger loss
/// (rounded to 3 decimals, so that summation order cannot reorder equal
/// losses), then id.
fn at_risk_order(a: &LineRisk, b: &LineRisk) -> Ordering {
    let rounded = |x: f64| (x * 1000.0).round();
    a.days_to_stop
        .cmp(&b.days_to_stop)
        .then_with(|| rounded(b.units_lost).total_cmp(&rounded(a.units_lost)))
        .then_with(|| a.line_id.cmp(&b.line_id))
}

/// The report of line `l` (a line index, e.g. from [`at_risk_order_of`]).
pub fn line_report(structure: &Structure, evaluation: &Evaluation, l: u32) -> LineRisk {
    let l = l as usize;
    let line = &structure.lines[l];
    let outcome: &LineOutcome = &evaluation.lines[l];
    let id = |c: u32| structure.components[c as usize].id.clone();
    LineRisk {
        line_id: line.id.clone(),
        plant: line.plant.clone(),
        days_to_stop: outcome.days_to_stop,
        stop_date: outcome
            .days_to_stop
            .map(|d| date_of(day_number(evaluation.as_of) + d as i32)),
        output_fraction: outcome.output_fraction,
        units_lost: outcome.units_lost,
        bottleneck_component_id: outcome.bottleneck.map(id).unwrap_or_default(),
        root_cause_path: outcome.root_cause_path.iter().map(|&c| id(c)).collect(),
        blocking_pools: outcome
            .blocking_pools
            .iter()
            .map(|&p| {
                let pool = &structure.pools[p as usize];
                (pool.supplier_id.clone(), pool.material.clone())
            })
            .collect(),
        blocking_license_ids: outcome.blocking_licenses.clone(),
        blocking_supplier_ids: outcome
            .blocking_suppliers
            .iter()
            .map(|&s| structure.supplier_ids[s as usize].clone())
            .collect(),
        shortfall_units: match outcome.root_cause_path.last() {
            Some(&c) if !line.idled => shortfall(structure, evaluation, c),
            _ => 0.0,
        },
        idled: line.idled,
    }
}

/// Σ over the days on which component `c` (by index) is short, in day
/// order, of D(c) × (1 - avail(c)): what stock on hand on day 0 would have
/// kept it fully available throughout.
fn shortfall(structure: &Structure, evaluation: &Evaluation, c: u32) -> f64 {
    let k = structure.flat.position[c as usize] as usize;
    let demand = structure.flat.demand[k];
    let mut avail = vec![1.0; evaluation.horizon_days as usize];
    evaluation.history.avail.expand(k, &mut avail);
    avail
        .iter()
        .filter(|&&a| a < 1.0 - EPS)
        .map(|a| demand * (1.0 - a))
        .sum()
}

fn pool_coverage(structure: &Structure, evaluation: &Evaluation, p: usize) -> PoolCoverage {
    let pool = &structure.pools[p];
    let outcome = &evaluation.pools[p];
    PoolCoverage {
        supplier_id: pool.supplier_id.clone(),
        material: pool.material.clone(),
        required_kg_per_day: pool.required_kg_per_day,
        approved_remaining_kg: outcome.approved_remaining_kg,
        pending_kg: outcome.pending_kg,
        covered_days: outcome.covered_days,
        first_uncovered_date: (outcome.covered_days < evaluation.horizon_days)
            .then(|| date_of(day_number(evaluation.as_of) + outcome.covered_days as i32)),
    }
}

/// The lines at risk, restricted to `plant` when given, in the at-risk order,
/// as line indices: reports are built only for the page a caller serves.
pub fn at_risk_order_of(
    structure: &Structure,
    evaluation: &Evaluation,
    plant: Option<&str>,
) -> Vec<u32> {
    let rounded = |l: usize| (evaluation.lines[l].units_lost * 1000.0).round();
    let mut lines: Vec<u32> = (0..structure.lines.len() as u32)
        .filter(|&l| evaluation.lines[l as usize].days_to_stop.is_some())
        .filter(|&l| plant.is_none_or(|p| structure.lines[l as usize].plant == p))
        .collect();
    // Line indices follow id order, so the index breaks the last tie.
    lines.sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        evaluation.lines[a]
            .days_to_stop
            .cmp(&evaluation.lines[b].days_to_stop)
            .then_with(|| rounded(b).total_cmp(&rounded(a)))
            .then_with(|| a.cmp(&b))
    });
    lines
}

/// The exposure of `scope`. A scope naming nothing is `NotFound`.
pub fn exposure(
    structure: &Structure,
    evaluation: &Evaluation,
    scope: &Scope,
) -> Result<Exposure, Error> {
    let (line_ids, pool_ids) = select(structure, scope)?;
    let mut lines: Vec<LineRisk> = line_ids
        .iter()
        .map(|&l| line_report(structure, evaluation, l))
        .collect();
    lines.sort_by(|a, b| match (a.at_risk(), b.at_risk()) {
        (true, true) => at_risk_order(a, b),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.line_id.cmp(&b.line_id),
    });
    let mut pools: Vec<PoolCoverage> = pool_ids
        .iter()
        .map(|&p| pool_coverage(structure, evaluation, p as usize))
        .collect();
    pools.sort_by(|a, b| {
        a.covered_days
            .cmp(&b.covered_days)
            .then_with(|| a.supplier_id.cmp(&b.supplier_id))
            .then_with(|| a.material.cmp(&b.material))
    });
    let at_risk: Vec<&LineRisk> = lines.iter().filter(|l| l.at_risk()).collect();
    Ok(Exposure {
        as_of: evaluation.as_of,
        horizon_days: evaluation.horizon_days,
        lines_in_scope: lines.len(),
        lines_at_risk: at_risk.len(),
        units_per_day: line_ids
            .iter()
            .map(|&l| structure.lines[l as usize].units_per_day)
            .sum(),
        units_at_risk: lines.iter().map(|l| l.units_lost).sum(),
        earliest_stop_date: at_risk
            .iter()
            .filter(|l| !l.idled)
            .filter_map(|l| l.stop_date)
            .min(),
        lines,
        pools,
    })
}

/// The lines (by index) and pools (by index) a scope selects.
fn select(structure: &Structure, scope: &Scope) -> Result<(Vec<u32>, Vec<u32>), Error> {
    let line_count = structure.lines.len() as u32;
    let pools_of = |components: &mut dyn Iterator<Item = u32>| {
        let mut pools: Vec<u32> = components
            .flat_map(|c| structure.components[c as usize].pools.iter().copied())
            .collect();
        pools.sort_unstable();
        pools.dedup();
        pools
    };
    // The lines whose comps(L) meet `components`.
    let lines_using = |components: &[u32]| -> Vec<u32> {
        let mut marked = vec![false; structure.components.len()];
        for &c in components {
            marked[c as usize] = true;
        }
        (0..line_count)
            .filter(|&l| {
                structure.line_components[l as usize]
                    .iter()
                    .any(|&c| marked[c as usize])
            })
            .collect()
    };
    let pools_where = |keep: &dyn Fn(&super::structure::PoolNode) -> bool| -> Vec<u32> {
        (0..structure.pools.len() as u32)
            .filter(|&p| keep(&structure.pools[p as usize]))
            .collect()
    };
    Ok(match scope {
        Scope::Network => (
            (0..line_count).collect(),
            (0..structure.pools.len() as u32).collect(),
        ),
        Scope::Supplier(s) => {
            if !structure.suppliers.contains(s) {
                return Err(Error::not_found(Kind::Supplier, s));
            }
            let sourced = structure
                .components_by_supplier
                .get(s)
                .map_or(&[][..], Vec::as_slice);
            (lines_using(sourced), pools_where(&|p| p.supplier_id == *s))
        }
        Scope::Component(id) => {
            let &c = structure
                .component_index
                .get(id)
                .ok_or_else(|| Error::not_found(Kind::Component, id))?;
            let reach = structure.reachable([c]);
            (lines_using(&[c]), pools_of(&mut reach.into_iter()))
        }
        Scope::Line(id) => {
            let &l = structure
                .line_index
                .get(id)
                .ok_or_else(|| Error::not_found(Kind::Line, id))?;
            let comps = structure.line_components[l as usize].iter().copied();
            (vec![l], pools_of(&mut comps.into_iter()))
        }
        Scope::Plant(plant) => {
            let lines: Vec<u32> = (0..line_count)
                .filter(|&l| structure.lines[l as usize].plant == *plant)
                .collect();
            if lines.is_empty() {
                return Err(Error::NoSuchPlant {
                    plant: plant.clone(),
                });
            }
            let mut comps = lines
                .iter()
                .flat_map(|&l| structure.line_components[l as usize].iter().copied());
            let pools = pools_of(&mut comps);
            (lines, pools)
        }
        Scope::Material(m) => {
            if !structure.materials.contains(m) {
                return Err(Error::not_found(Kind::Material, m));
            }
            let containing = structure
                .components_by_material
                .get(m)
                .map_or(&[][..], Vec::as_slice);
            (lines_using(containing), pools_where(&|p| p.material == *m))
        }
    })
}
