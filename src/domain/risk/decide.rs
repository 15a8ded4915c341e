//! Decisions: where the network is most exposed to one supplier failing
//! (time-to-survive and the risk exposure index), and which licence
//! decisions are worth chasing first.
//!
//! Both compare runs that differ from the request's scenario in one
//! supplier or one licence. Each such run is a run of its cone against the
//! base run (see [`super::cone`]), and the candidates are spread over the
//! cores; the answer does not depend on how many ran it.

use std::cmp::Ordering as Order;
use std::sync::atomic::AtomicBool;

use rayon::prelude::*;

use super::cone::{self, Base, Change, Cone, ConeLine, Scratch};
use super::simulate::pool_usable_with;
use super::structure::NO_SUPPLIER;
use super::{date_of, day_number, LicenseOverride, Scenario, REVIEW_DAYS};
use crate::domain::date::Date;
use crate::domain::record::{License, LicenseStatus};

/// Recovery time when a request gives none, in days.
pub const DEFAULT_RECOVERY_DAYS: u32 = 30;

/// Differences of losses above this count a line as hit.
const LOSS_MARGIN: f64 = 1e-6;

/// What one supplier's outage costs the lines in scope.
#[derive(Clone, Debug, PartialEq)]
pub struct SupplierImpact {
    pub supplier_id: String,
    pub country: String,
    /// Units lost with the supplier out for the recovery time, beyond the
    /// base scenario's loss (negative when the outage saves licence stock
    /// that lasts longer afterwards).
    pub units_lost: f64,
    pub lines_hit: u32,
    /// The first day some line builds less with the supplier out for good.
    pub time_to_survive_days: Option<u32>,
    pub first_hit_line_id: String,
    /// Time-to-survive is shorter than the recovery time.
    pub critical: bool,
    /// `units_lost` relative to the largest among all candidates.
    pub risk_exposure_index: f64,
}

/// What one licence's decision is worth to the lines in scope.
#[derive(Clone, Debug, PartialEq)]
pub struct LicenseStake {
    pub license_id: String,
    pub supplier_id: String,
    pub material: String,
    /// After the scenario's overrides.
    pub status: LicenseStatus,
    pub granted_on: Date,
    pub units_at_stake: f64,
    pub lines_at_stake: u32,
    pub stop_date_if_denied: Option<Date>,
    pub stop_date_if_granted: Option<Date>,
}

/// The lines a decision listing weighs, with what the base run says of them.
struct Weighing<'a> {
    base: Base<'a>,
    /// Line indices in scope, ascending (= id order).
    scope: Vec<u32>,
    in_scope: Vec<bool>,
}

impl<'a> Weighing<'a> {
    fn new(base: Base<'a>, plant: Option<&str>) -> Weighing<'a> {
        let lines = &base.structure.lines;
        let in_scope: Vec<bool> = lines
            .iter()
            .map(|l| plant.is_none_or(|p| l.plant == p))
            .collect();
        let scope = (0..lines.len() as u32)
            .filter(|&l| in_scope[l as usize])
            .collect();
        Weighing {
            base,
            scope,
            in_scope,
        }
    }

    /// Every component in `comps(L)` of some line in scope, by index.
    fn components_in_scope(&self) -> Vec<bool> {
        let structure = self.base.structure;
        let mut marked = vec![false; structure.components.len()];
        for &l in &self.scope {
            for &c in &structure.line_components[l as usize] {
                marked[c as usize] = true;
            }
        }
        marked
    }

    /// Each line in scope, in id order, with its outcome under a change:
    /// the cone's where the cone has the line, the base run's elsewhere.
    fn each<'b>(
        &'b self,
        cone: &'b [ConeLine],
    ) -> impl Iterator<Item = (u32, f64, Option<u32>)> + 'b {
        let base = &self.base.evaluation.lines;
        let mut j = 0;
        self.scope.iter().map(move |&l| {
            while j < cone.len() && cone[j].line < l {
                j += 1;
            }
            match cone.get(j).filter(|c| c.line == l) {
                Some(c) => (l, c.units_lost, c.days_to_stop),
                None => {
                    let b = &base[l as usize];
                    (l, b.units_lost, b.days_to_stop)
                }
            }
        })
    }

    /// Σ of the losses of the lines in scope, in line id order.
    fn total(&self, cone: &[ConeLine]) -> f64 {
        self.each(cone).map(|(_, loss, _)| loss).sum()
    }

    /// The earliest stop dates under `denied` and under `granted` (runs of
    /// one cone) among the lines at stake: in scope, not idled, losing more
    /// under `denied` than under `granted` by more than the margin.
    fn stops_at_stake(
        &self,
        denied: &[ConeLine],
        granted: &[ConeLine],
    ) -> (Option<Date>, Option<Date>) {
        let structure = self.base.structure;
        let at_stake = denied.iter().zip(granted).filter(|(d, g)| {
            let l = d.line as usize;
            self.in_scope[l]
                && !structure.lines[l].idled
                && d.units_lost > g.units_lost + LOSS_MARGIN
        });
        let (mut if_denied, mut if_granted) = (None::<u32>, None::<u32>);
        for (d, g) in at_stake {
            if let Some(t) = d.days_to_stop {
                if_denied = Some(if_denied.map_or(t, |e| e.min(t)));
            }
            if let Some(t) = g.days_to_stop {
                if_granted = Some(if_granted.map_or(t, |e| e.min(t)));
            }
        }
        let start = day_number(self.base.evaluation.as_of);
        let date = |t: Option<u32>| t.map(|t| date_of(start + t as i32));
        (date(if_denied), date(if_granted))
    }

    /// The cone lines in scope whose loss under `a` exceeds `b`'s (the base
    /// run's when `b` is `None`) by more than the margin.
    fn lines_worse(&self, a: &[ConeLine], b: Option<&[ConeLine]>) -> u32 {
        let base = &self.base.evaluation.lines;
        a.iter()
            .enumerate()
            .filter(|(i, c)| {
                let other = match b {
                    Some(b) => b[*i].units_lost,
                    None => base[c.line as usize].units_lost,
                };
                self.in_scope[c.line as usize] && c.units_lost > other + LOSS_MARGIN
            })
            .count() as u32
    }

    /// The runs of `cone` under `a` and under `b`.
    fn run_both(
        &self,
        cone: &Cone,
        [a, b]: [Change; 2],
        scratch: &mut Scratch,
        abandoned: &AtomicBool,
    ) -> Option<(Vec<ConeLine>, Vec<ConeLine>)> {
        let mut runs = cone::run_each(&self.base, cone, &[a, b], scratch, abandoned)?;
        let b = runs.pop()?;
        Some((runs.pop()?, b))
    }
}

/// Rounded to 3 decimal places for ordering, so that summation order
/// cannot reorder equal amounts.
fn rounded(x: f64) -> f64 {
    (x * 1000.0).round()
}

/// `ListSupplierImpacts`: every supplier of a component that a line in
/// scope (of `plant`, or all) needs, with what its outage of
/// `recovery_days` costs, in the model's order. `None` once `abandoned` is
/// set.
pub fn supplier_impacts(
    base: Base<'_>,
    plant: Option<&str>,
    recovery_days: u32,
    abandoned: &AtomicBool,
) -> Option<Vec<SupplierImpact>> {
    let structure = base.structure;
    let start = day_number(base.evaluation.as_of);
    let weighing = Weighing::new(base, plant);
    let base_total = weighing.total(&[]);
    let mut candidates: Vec<u32> = Vec::new();
    for (c, in_scope) in weighing.components_in_scope().into_iter().enumerate() {
        if in_scope {
            candidates.extend(
                structure.components[c]
                    .sources
                    .iter()
                    .map(|s| s.supplier)
                    .filter(|&s| s != NO_SUPPLIER),
            );
        }
    }
    candidates.sort_unstable();
    candidates.dedup();

    let measured: Option<Vec<SupplierImpact>> = candidates
        .par_iter()
        .map_init(
            || Scratch::new(structure),
            |scratch, &s| {
                let cone = Cone::of_supplier(structure, s, scratch);
                let recovering = Change::Outage {
                    supplier: s,
                    first: start,
                    end: start.saturating_add(recovery_days as i32),
                };
                let for_good = Change::Outage {
                    supplier: s,
                    first: start,
                    end: i32::MAX,
                };
                let (hit, lasting) =
                    weighing.run_both(&cone, [recovering, for_good], scratch, abandoned)?;
                // The first day, and the first line of that day.
                let survive = lasting
                    .iter()
                    .filter(|c| weighing.in_scope[c.line as usize])
                    .filter_map(|c| c.first_worse.map(|t| (t, c.line)))
                    .min();
                Some(SupplierImpact {
                    supplier_id: structure.supplier_ids[s as usize].clone(),
                    country: structure.supplier_countries[s as usize].clone(),
                    units_lost: weighing.total(&hit) - base_total,
                    lines_hit: weighing.lines_worse(&hit, None),
                    time_to_survive_days: survive.map(|(t, _)| t),
                    first_hit_line_id: survive
                        .map(|(_, l)| structure.lines[l as usize].id.clone())
                        .unwrap_or_default(),
                    critical: survive.is_some_and(|(t, _)| t < recovery_days),
                    risk_exposure_index: 0.0,
                })
            },
        )
        .collect();
    let mut impacts = measured?;
    let largest = impacts
        .iter()
        .map(|i| i.units_lost)
        .fold(f64::NEG_INFINITY, f64::max);
    if largest > LOSS_MARGIN {
        for impact in &mut impacts {
            impact.risk_exposure_index = impact.units_lost / largest;
        }
    }
    impacts.sort_by(|a, b| {
        rounded(b.units_lost)
            .total_cmp(&rounded(a.units_lost))
            .then_with(|| match (a.time_to_survive_days, b.time_to_survive_days) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Order::Less,
                (None, Some(_)) => Order::Greater,
                (None, None) => Order::Equal,
            })
            .then_with(|| a.supplier_id.cmp(&b.supplier_id))
    });
    Some(impacts)
}

/// The day licence `license` would be granted on under `scenario`, for a
/// simulation from `as_of`: its expected decision date (or submission + 45
/// days, or `as_of`), plus the scenario's delay, never before `as_of`.
pub fn grant_date(license: &License, scenario: &Scenario, as_of: Date) -> Date {
    let expected = license
        .expected_decision_on
        .map(day_number)
        .or_else(|| {
            license
                .submitted_on
                .map(|d| day_number(d) + REVIEW_DAYS as i32)
        })
        .unwrap_or(day_number(as_of));
    date_of((expected + scenario.decision_delay_days as i32).max(day_number(as_of)))
}

/// `ListLicenseStakes`: every licence whose status after the scenario's
/// overrides is one of `statuses`, of a pool that a line in scope needs,
/// with what its denial costs against its grant, in the model's order.
/// `None` once `abandoned` is set.
pub fn license_stakes<'a>(
    base: Base<'_>,
    licenses: impl IntoIterator<Item = &'a License>,
    scenario: &Scenario,
    plant: Option<&str>,
    statuses: &[LicenseStatus],
    abandoned: &AtomicBool,
) -> Option<Vec<LicenseStake>> {
    let structure = base.structure;
    let as_of = base.evaluation.as_of;
    let weighing = Weighing::new(base, plant);
    let mut pool_in_scope = vec![false; structure.pools.len()];
    for (c, in_scope) in weighing.components_in_scope().into_iter().enumerate() {
        if in_scope {
            for &p in &structure.components[c].pools {
                pool_in_scope[p as usize] = true;
            }
        }
    }
    let mut members: Vec<Vec<&License>> = vec![Vec::new(); structure.pools.len()];
    let mut candidates: Vec<(&License, usize, LicenseStatus)> = Vec::new();
    for license in licenses {
        let Some(p) = structure.pool_of(license) else {
            continue;
        };
        if !pool_in_scope[p] {
            continue;
        }
        members[p].push(license);
        let status = scenario
            .overrides
            .iter()
            .find(|o| o.license_id == license.id)
            .map_or(license.status, |o| o.status);
        if statuses.contains(&status) {
            candidates.push((license, p, status));
        }
    }
    candidates.sort_by(|a, b| a.0.id.cmp(&b.0.id));

    let measured: Option<Vec<LicenseStake>> = candidates
        .par_iter()
        .map_init(
            || Scratch::new(structure),
            |scratch, &(license, p, status)| {
                let cone = Cone::of_pool(structure, p as u32, scratch);
                let granted_on = grant_date(license, scenario, as_of);
                let as_decided = |status, effective_on| {
                    Change::Licences(vec![(
                        p as u32,
                        pool_usable_with(
                            &members[p],
                            scenario,
                            &LicenseOverride {
                                license_id: license.id.clone(),
                                status,
                                effective_on,
                            },
                        ),
                    )])
                };
                let denied = as_decided(LicenseStatus::Rejected, None);
                let granted = as_decided(LicenseStatus::Approved, Some(granted_on));
                let (denied, granted) =
                    weighing.run_both(&cone, [denied, granted], scratch, abandoned)?;
                let (stop_date_if_denied, stop_date_if_granted) =
                    weighing.stops_at_stake(&denied, &granted);
                Some(LicenseStake {
                    license_id: license.id.clone(),
                    supplier_id: license.supplier_id.clone(),
                    material: license.material.clone(),
                    status,
                    granted_on,
                    units_at_stake: weighing.total(&denied) - weighing.total(&granted),
                    lines_at_stake: weighing.lines_worse(&denied, Some(&granted)),
                    stop_date_if_denied,
                    stop_date_if_granted,
                })
            },
        )
        .collect();
    let mut stakes = measured?;
    stakes.sort_by(|a, b| {
        rounded(b.units_at_stake)
            .total_cmp(&rounded(a.units_at_stake))
            .then_with(|| a.license_id.cmp(&b.license_id))
    });
    Some(stakes)
}
