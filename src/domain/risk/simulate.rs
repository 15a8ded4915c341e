//! One evaluation of the model: the daily simulation over the horizon for a
//! first day and a scenario, and what it says of every line and pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use super::structure::Structure;
use super::{day_number, PendingAssumption, Scenario, EPS, REVIEW_DAYS};
use crate::domain::date::Date;
use crate::domain::record::{License, LicenseStatus};

/// What the simulation found for one line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineOutcome {
    /// The first day on which the line is short; `None` when never.
    pub days_to_stop: Option<u32>,
    /// out(L) on the stop day (1 when never short).
    pub output_fraction: f64,
    /// Units not built over the horizon.
    pub units_lost: f64,
    /// On the stop day: the BOM component with the least supply.
    pub bottleneck: Option<u32>,
    /// From the bottleneck down to the component whose own licences fail.
    pub root_cause_path: Vec<u32>,
    /// On the stop day: the uncovered pools of the path's last component.
    pub blocking_pools: Vec<u32>,
    /// Every licence of the blocking pools, in id order.
    pub blocking_licenses: Vec<String>,
}

/// What the simulation found for one pool.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolOutcome {
    pub approved_remaining_kg: f64,
    pub pending_kg: f64,
    /// The first uncovered day; the horizon when always covered.
    pub covered_days: u32,
}

/// One run of the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub as_of: Date,
    pub horizon_days: u32,
    /// By line index.
    pub lines: Vec<LineOutcome>,
    /// By pool index.
    pub pools: Vec<PoolOutcome>,
}

/// A licence as the scenario makes it: usable over [from, until] while
/// something remains.
#[derive(Clone, Debug)]
struct Usable {
    from: i32,
    until: i32,
    remaining: f64,
    id: String,
}

/// Runs the model. `scenario` must already be valid (overrides name
/// existing licences, at most once each).
pub fn evaluate<'a>(
    structure: &Structure,
    licenses: impl IntoIterator<Item = &'a License>,
    scenario: &Scenario,
    as_of: Date,
    horizon_days: u32,
) -> Evaluation {
    let never = AtomicBool::new(false);
    evaluate_unless(structure, licenses, scenario, as_of, horizon_days, &never)
        .expect("an evaluation nobody abandons ends")
}

/// `evaluate`, given up (`None`) once `abandoned` is set: it is looked at
/// before every simulated day, so a caller that has gone (a passed deadline,
/// a cancelled call) stops costing CPU within a day's work.
pub fn evaluate_unless<'a>(
    structure: &Structure,
    licenses: impl IntoIterator<Item = &'a License>,
    scenario: &Scenario,
    as_of: Date,
    horizon_days: u32,
    abandoned: &AtomicBool,
) -> Option<Evaluation> {
    let start = day_number(as_of);
    let horizon = horizon_days as usize;
    let pool_count = structure.pools.len();
    let overrides: HashMap<&str, _> = scenario
        .overrides
        .iter()
        .map(|o| (o.license_id.as_str(), o))
        .collect();

    let mut pools = vec![
        PoolOutcome {
            covered_days: horizon_days,
            ..PoolOutcome::default()
        };
        pool_count
    ];
    let mut usable: Vec<Vec<Usable>> = vec![Vec::new(); pool_count];
    let mut pool_licenses: Vec<Vec<String>> = vec![Vec::new(); pool_count];
    for license in licenses {
        let Some(&p) = structure
            .pool_index
            .get(&(license.supplier_id.clone(), license.material.clone()))
        else {
            continue;
        };
        let p = p as usize;
        pool_licenses[p].push(license.id.clone());
        let overridden = overrides.get(license.id.as_str());
        let status = overridden.map_or(license.status, |o| o.status);
        let mut from = license.valid_from.map_or(i32::MIN, day_number);
        if let Some(o) = overridden {
            if o.status == LicenseStatus::Approved {
                if let Some(effective_on) = o.effective_on {
                    from = from.max(day_number(effective_on));
                }
            }
        }
        let until = license.valid_until.map_or(i32::MAX, day_number);
        if status == LicenseStatus::Pending {
            pools[p].pending_kg += license.quantity_kg;
        }
        let window = match status {
            LicenseStatus::Approved => Some((from, until)),
            LicenseStatus::Pending if scenario.pending == PendingAssumption::ApprovedAsExpected => {
                let expected = license.expected_decision_on.map(day_number).or_else(|| {
                    license
                        .submitted_on
                        .map(|d| day_number(d) + REVIEW_DAYS as i32)
                });
                expected.map(|e| (from.max(e + scenario.decision_delay_days as i32), until))
            }
            _ => None,
        };
        if let Some((from, until)) = window {
            let remaining = license.quantity_kg - license.used_kg;
            if until >= start {
                pools[p].approved_remaining_kg += remaining;
            }
            usable[p].push(Usable {
                from,
                until,
                remaining,
                id: license.id.clone(),
            });
        }
    }
    for (list, ids) in usable.iter_mut().zip(&mut pool_licenses) {
        // Consumption order: the soonest to expire first (open-ended last), then by id.
        list.sort_by(|a, b| a.until.cmp(&b.until).then_with(|| a.id.cmp(&b.id)));
        ids.sort();
    }

    let flat = &structure.flat;
    let n = structure.components.len();
    let mut covered = vec![true; pool_count];
    // By position (see `Flat`); a component that is never exposed keeps
    // everything it needs, so it keeps avail = cap = 1 and is never visited.
    let mut inventory = flat.on_hand_units.clone();
    let mut avail = vec![1.0f64; n];
    let mut cap = vec![1.0f64; n];
    let exposed: Vec<usize> = (0..n).filter(|&k| flat.exposed[k]).collect();
    let mut lines = vec![
        LineOutcome {
            output_fraction: 1.0,
            ..LineOutcome::default()
        };
        structure.lines.len()
    ];

    for t in 0..horizon {
        if abandoned.load(Ordering::Relaxed) {
            return None;
        }
        let day = start + t as i32;

        // Step 1: pools, in order. A pool is covered whole or not at all.
        for (p, pool) in structure.pools.iter().enumerate() {
            let required = pool.required_kg_per_day;
            if day < pool.controlled_from || required < EPS {
                covered[p] = true;
                continue;
            }
            let active = |u: &&mut Usable| u.from <= day && day <= u.until && u.remaining > 0.0;
            let total: f64 = usable[p]
                .iter_mut()
                .filter(active)
                .map(|u| u.remaining)
                .sum();
            if total >= required - EPS {
                covered[p] = true;
                let mut need = required;
                for u in usable[p].iter_mut().filter(active) {
                    if need <= 0.0 {
                        break;
                    }
                    let take = u.remaining.min(need);
                    u.remaining -= take;
                    need -= take;
                }
            } else {
                covered[p] = false;
                if pools[p].covered_days == horizon_days {
                    pools[p].covered_days = t as u32;
                }
            }
        }

        // Step 2: components, inputs first (positions are in that order).
        for &k in &exposed {
            let sources = flat.source_start[k] as usize..flat.source_start[k + 1] as usize;
            cap[k] = if sources.is_empty() {
                1.0
            } else {
                let mut sum = 0.0;
                for s in sources {
                    let pools = &flat.source_pools
                        [flat.pool_start[s] as usize..flat.pool_start[s + 1] as usize];
                    if pools.iter().all(|&p| covered[p as usize]) {
                        sum += flat.source_share[s];
                    }
                }
                sum
            };
            let demand = flat.demand[k];
            if demand == 0.0 {
                avail[k] = 1.0;
                continue;
            }
            let inputs = flat.inputs
                [flat.input_start[k] as usize..flat.input_start[k + 1] as usize]
                .iter()
                .map(|&i| avail[i as usize])
                .fold(1.0, f64::min);
            let supply = cap[k] * inputs * demand;
            let draw = (demand - supply).min(inventory[k]);
            inventory[k] -= draw;
            avail[k] = (supply + draw) / demand;
        }

        // Step 3: lines.
        for (l, line) in structure.lines.iter().enumerate() {
            let bom = &flat.bom[flat.bom_start[l] as usize..flat.bom_start[l + 1] as usize];
            let out = bom.iter().map(|&k| avail[k as usize]).fold(1.0, f64::min);
            if out >= 1.0 - EPS {
                continue;
            }
            let outcome = &mut lines[l];
            outcome.units_lost += line.units_per_day * (1.0 - out);
            if outcome.days_to_stop.is_none() {
                outcome.days_to_stop = Some(t as u32);
                outcome.output_fraction = out;
                let state = DayState {
                    avail: &avail,
                    cap: &cap,
                    covered: &covered,
                };
                explain_stop(structure, outcome, &line.bom, &state, &pool_licenses);
            }
        }
    }

    Some(Evaluation {
        as_of,
        horizon_days,
        lines,
        pools,
    })
}

/// The state of one simulated day; `avail` and `cap` by position.
struct DayState<'a> {
    avail: &'a [f64],
    cap: &'a [f64],
    covered: &'a [bool],
}

impl DayState<'_> {
    fn avail(&self, structure: &Structure, c: u32) -> f64 {
        self.avail[structure.flat.position[c as usize] as usize]
    }

    fn cap(&self, structure: &Structure, c: u32) -> f64 {
        self.cap[structure.flat.position[c as usize] as usize]
    }

    /// The component of `candidates` (indices, in index order) with the
    /// smallest `avail`; ties go to the smallest index, which is the
    /// smallest id.
    fn least_available(&self, structure: &Structure, candidates: &[u32]) -> Option<u32> {
        let mut best: Option<u32> = None;
        for &c in candidates {
            if best.is_none_or(|b| self.avail(structure, c) < self.avail(structure, b)) {
                best = Some(c);
            }
        }
        best
    }
}

/// Fills in why a line stops, from the state of its stop day.
fn explain_stop(
    structure: &Structure,
    outcome: &mut LineOutcome,
    bom: &[u32],
    day: &DayState<'_>,
    pool_licenses: &[Vec<String>],
) {
    let Some(bottleneck) = day.least_available(structure, bom) else {
        return;
    };
    outcome.bottleneck = Some(bottleneck);
    let mut current = bottleneck;
    outcome.root_cause_path.push(current);
    // The input graph is acyclic, so a path is never longer than the network.
    while outcome.root_cause_path.len() <= structure.components.len() {
        let node = &structure.components[current as usize];
        if day.cap(structure, current) < 1.0 - EPS || node.inputs.is_empty() {
            break;
        }
        match day.least_available(structure, &node.inputs) {
            Some(next) => {
                current = next;
                outcome.root_cause_path.push(current);
            }
            None => break,
        }
    }
    outcome.blocking_pools = structure.components[current as usize]
        .pools
        .iter()
        .copied()
        .filter(|&p| !day.covered[p as usize])
        .collect();
    let mut licenses: Vec<String> = outcome
        .blocking_pools
        .iter()
        .flat_map(|&p| pool_licenses[p as usize].iter().cloned())
        .collect();
    licenses.sort();
    outcome.blocking_licenses = licenses;
}
