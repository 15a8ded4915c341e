//! One evaluation of the model: the daily simulation over the horizon for a
//! first day and a scenario, and what it says of every line and pool.

use std::collections::HashMap;

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

    let n = structure.components.len();
    let mut covered = vec![true; pool_count];
    let mut inventory: Vec<f64> = structure
        .components
        .iter()
        .map(|c| c.on_hand_units)
        .collect();
    let mut avail = vec![1.0f64; n];
    let mut cap = vec![1.0f64; n];
    let mut lines = vec![
        LineOutcome {
            output_fraction: 1.0,
            ..LineOutcome::default()
        };
        structure.lines.len()
    ];

    for t in 0..horizon {
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

        // Step 2: components, inputs first.
        for &c in &structure.topological {
            let c = c as usize;
            let node = &structure.components[c];
            cap[c] = if node.sources.is_empty() {
                1.0
            } else {
                node.sources
                    .iter()
                    .map(|s| {
                        if s.pools.iter().all(|&p| covered[p as usize]) {
                            s.share
                        } else {
                            0.0
                        }
                    })
                    .sum()
            };
            let demand = structure.demand[c];
            if demand == 0.0 {
                avail[c] = 1.0;
                continue;
            }
            let inputs = node
                .inputs
                .iter()
                .map(|&i| avail[i as usize])
                .fold(1.0, f64::min);
            let supply = cap[c] * inputs * demand;
            let draw = (demand - supply).min(inventory[c]);
            inventory[c] -= draw;
            avail[c] = (supply + draw) / demand;
        }

        // Step 3: lines.
        for (l, line) in structure.lines.iter().enumerate() {
            let out = line
                .bom
                .iter()
                .map(|&c| avail[c as usize])
                .fold(1.0, f64::min);
            if out >= 1.0 - EPS {
                continue;
            }
            let outcome = &mut lines[l];
            outcome.units_lost += line.units_per_day * (1.0 - out);
            if outcome.days_to_stop.is_none() {
                outcome.days_to_stop = Some(t as u32);
                outcome.output_fraction = out;
                explain_stop(
                    structure,
                    outcome,
                    line.bom.as_slice(),
                    &avail,
                    &cap,
                    &covered,
                    &pool_licenses,
                );
            }
        }
    }

    Evaluation {
        as_of,
        horizon_days,
        lines,
        pools,
    }
}

/// The component of `candidates` with the smallest `avail`; ties go to the
/// smallest index (= smallest id), since candidates are in index order.
fn least_available(candidates: &[u32], avail: &[f64]) -> Option<u32> {
    let mut best: Option<u32> = None;
    for &c in candidates {
        if best.is_none_or(|b| avail[c as usize] < avail[b as usize]) {
            best = Some(c);
        }
    }
    best
}

/// Fills in why a line stops, from the state of its stop day.
fn explain_stop(
    structure: &Structure,
    outcome: &mut LineOutcome,
    bom: &[u32],
    avail: &[f64],
    cap: &[f64],
    covered: &[bool],
    pool_licenses: &[Vec<String>],
) {
    let Some(bottleneck) = least_available(bom, avail) else {
        return;
    };
    outcome.bottleneck = Some(bottleneck);
    let mut current = bottleneck;
    outcome.root_cause_path.push(current);
    // The input graph is acyclic, so a path is never longer than the network.
    while outcome.root_cause_path.len() <= structure.components.len() {
        let node = &structure.components[current as usize];
        if cap[current as usize] < 1.0 - EPS || node.inputs.is_empty() {
            break;
        }
        match least_available(&node.inputs, avail) {
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
        .filter(|&p| !covered[p as usize])
        .collect();
    let mut licenses: Vec<String> = outcome
        .blocking_pools
        .iter()
        .flat_map(|&p| pool_licenses[p as usize].iter().cloned())
        .collect();
    licenses.sort();
    outcome.blocking_licenses = licenses;
}
