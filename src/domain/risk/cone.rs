//! The model run again for one change, over its cone only.
//!
//! A supplier's outage or a licence's decision changes only the pools it
//! touches and the components above them: the components it feeds, their
//! parents, and the lines whose BOM holds any of them (its *cone*). Every
//! other component does exactly what it did in the base run, so its `avail`
//! is read back from the base run's [`History`] instead of simulated, and a
//! question about one candidate costs its cone, not the network.

use std::sync::atomic::{AtomicBool, Ordering};

use super::simulate::{capacity, cover, Evaluation, Licensing, Outages, Usable};
use super::structure::{Structure, NO_SUPPLIER};
use super::{day_number, EPS};

/// The base run a cone is evaluated against.
pub struct Base<'a> {
    pub structure: &'a Structure,
    pub evaluation: &'a Evaluation,
    /// The pools' licences under the base scenario, before day 0.
    pub licensing: &'a Licensing,
    /// The suppliers out under the base scenario.
    pub outages: &'a Outages,
}

/// One change to the base scenario.
#[derive(Clone, Debug)]
pub enum Change {
    /// Supplier `supplier` (by index) out over the day numbers
    /// `[first, end)` instead of as the base scenario has it.
    Outage { supplier: u32, first: i32, end: i32 },
    /// Pool `pool`'s licences as given (in consumption order) instead of as
    /// the base scenario makes them.
    Licences { pool: u32, usable: Vec<Usable> },
}

/// What a change can touch.
#[derive(Clone, Debug, Default)]
pub struct Cone {
    /// Component positions, ascending (inputs before their users).
    pub positions: Vec<u32>,
    /// Line indices, ascending: the lines whose BOM holds a cone component.
    pub lines: Vec<u32>,
    /// The pools simulated afresh.
    pub pools: Vec<u32>,
}

/// What one line of a cone does under a change.
#[derive(Clone, Debug, PartialEq)]
pub struct ConeLine {
    pub line: u32,
    pub units_lost: f64,
    pub days_to_stop: Option<u32>,
    /// The first day the line builds less than in the base run (by more
    /// than `EPS`).
    pub first_worse: Option<u32>,
}

/// Working memory of cone runs, reused from one to the next on a thread.
pub struct Scratch {
    /// `mark[k] == generation` when position k has a local index this run.
    mark: Vec<u32>,
    generation: u32,
    local: Vec<u32>,
    stack: Vec<u32>,
}

impl Scratch {
    pub fn new(structure: &Structure) -> Scratch {
        let n = structure.components.len();
        Scratch {
            mark: vec![0; n],
            generation: 0,
            local: vec![0; n],
            stack: Vec::new(),
        }
    }

    fn next_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.mark.fill(0);
            self.generation = 1;
        }
    }

    fn marked(&self, k: u32) -> bool {
        self.mark[k as usize] == self.generation
    }
}

impl Cone {
    /// The cone of supplier `s` (by index): the components it is a source
    /// of and everything above them; its pools are simulated afresh.
    pub fn of_supplier(structure: &Structure, s: u32, scratch: &mut Scratch) -> Cone {
        let seeds = structure
            .sourced_by(s)
            .iter()
            .map(|&c| structure.flat.position[c as usize]);
        let pools = structure.pools_of_supplier(s).map(|p| p as u32).collect();
        Cone::above(structure, seeds, pools, scratch)
    }

    /// The cone of pool `p`: the components with a source that needs it and
    /// everything above them.
    pub fn of_pool(structure: &Structure, p: u32, scratch: &mut Scratch) -> Cone {
        let pool = &structure.pools[p as usize];
        let seeds = structure
            .sourced_by(pool.supplier)
            .iter()
            .filter(|&&c| structure.components[c as usize].pools.contains(&p))
            .map(|&c| structure.flat.position[c as usize]);
        Cone::above(structure, seeds, vec![p], scratch)
    }

    fn above(
        structure: &Structure,
        seeds: impl Iterator<Item = u32>,
        pools: Vec<u32>,
        scratch: &mut Scratch,
    ) -> Cone {
        let flat = &structure.flat;
        scratch.next_generation();
        scratch.stack.clear();
        scratch.stack.extend(seeds);
        let mut positions = Vec::new();
        while let Some(k) = scratch.stack.pop() {
            if scratch.marked(k) {
                continue;
            }
            scratch.mark[k as usize] = scratch.generation;
            positions.push(k);
            scratch.stack.extend_from_slice(flat.users_of(k as usize));
        }
        positions.sort_unstable();
        let mut lines: Vec<u32> = positions
            .iter()
            .flat_map(|&k| flat.lines_of(k as usize).iter().copied())
            .collect();
        lines.sort_unstable();
        lines.dedup();
        Cone {
            positions,
            lines,
            pools,
        }
    }
}

/// Runs the model over `cone` under `change`, reading everything outside
/// it from the base run; `None` once `abandoned` is set.
pub fn run(
    base: &Base<'_>,
    cone: &Cone,
    change: &Change,
    scratch: &mut Scratch,
    abandoned: &AtomicBool,
) -> Option<Vec<ConeLine>> {
    let structure = base.structure;
    let flat = &structure.flat;
    let history = &base.evaluation.history;
    let horizon = base.evaluation.horizon_days as usize;
    let start = day_number(base.evaluation.as_of);

    // Local indices: the cone's components first, then the components
    // outside it that the cone reads (its frontier).
    scratch.next_generation();
    for (i, &k) in cone.positions.iter().enumerate() {
        scratch.mark[k as usize] = scratch.generation;
        scratch.local[k as usize] = i as u32;
    }
    let mut frontier: Vec<u32> = Vec::new();
    let mut local_of = |k: u32, scratch: &mut Scratch| -> u32 {
        if !scratch.marked(k) {
            scratch.mark[k as usize] = scratch.generation;
            scratch.local[k as usize] = (cone.positions.len() + frontier.len()) as u32;
            frontier.push(k);
        }
        scratch.local[k as usize]
    };
    let mut input_start = Vec::with_capacity(cone.positions.len() + 1);
    let mut inputs = Vec::new();
    for &k in &cone.positions {
        input_start.push(inputs.len() as u32);
        for &i in flat.inputs_of(k as usize) {
            inputs.push(local_of(i, scratch));
        }
    }
    input_start.push(inputs.len() as u32);
    let mut bom_start = Vec::with_capacity(cone.lines.len() + 1);
    let mut bom = Vec::new();
    for &l in &cone.lines {
        bom_start.push(bom.len() as u32);
        for &k in flat.bom_of(l as usize) {
            bom.push(local_of(k, scratch));
        }
    }
    bom_start.push(bom.len() as u32);

    // The frontier's avail and the cone lines' out in the base run, by day.
    let size = cone.positions.len() + frontier.len();
    let mut frontier_avail = vec![1.0; frontier.len() * horizon];
    for (f, &k) in frontier.iter().enumerate() {
        history.avail.expand(
            k as usize,
            &mut frontier_avail[f * horizon..(f + 1) * horizon],
        );
    }
    let mut base_out = vec![1.0; cone.lines.len() * horizon];
    for (i, &l) in cone.lines.iter().enumerate() {
        history
            .line_out
            .expand(l as usize, &mut base_out[i * horizon..(i + 1) * horizon]);
    }

    let window = |s: u32| -> (i32, i32) {
        match change {
            Change::Outage {
                supplier,
                first,
                end,
            } if *supplier == s => (*first, *end),
            _ => base.outages.window(s),
        }
    };
    let is_out = |s: u32, day: i32| {
        if s == NO_SUPPLIER {
            return false;
        }
        let (first, end) = window(s);
        first <= day && day < end
    };
    let mut usable: Vec<Vec<Usable>> = cone
        .pools
        .iter()
        .map(|&p| match change {
            Change::Licences { pool, usable } if *pool == p => usable.clone(),
            _ => base.licensing.usable[p as usize].clone(),
        })
        .collect();
    let mut covered_fresh = vec![true; cone.pools.len()];
    let mut values = vec![1.0f64; size];
    let mut inventory: Vec<f64> = cone
        .positions
        .iter()
        .map(|&k| flat.on_hand_units[k as usize])
        .collect();
    let mut outcomes: Vec<ConeLine> = cone
        .lines
        .iter()
        .map(|&line| ConeLine {
            line,
            units_lost: 0.0,
            days_to_stop: None,
            first_worse: None,
        })
        .collect();

    for t in 0..horizon {
        if abandoned.load(Ordering::Relaxed) {
            return None;
        }
        let day = start + t as i32;
        for (i, &p) in cone.pools.iter().enumerate() {
            let pool = &structure.pools[p as usize];
            covered_fresh[i] = is_out(pool.supplier, day)
                || cover(
                    &mut usable[i],
                    pool.required_kg_per_day,
                    pool.controlled_from,
                    day,
                );
        }
        for f in 0..frontier.len() {
            values[cone.positions.len() + f] = frontier_avail[f * horizon + t];
        }
        let covered = |p: u32| match cone.pools.iter().position(|&q| q == p) {
            Some(i) => covered_fresh[i],
            None => !history.uncovered(p as usize, t as u32),
        };
        for (i, &k) in cone.positions.iter().enumerate() {
            let k = k as usize;
            let demand = flat.demand[k];
            if demand == 0.0 {
                values[i] = 1.0;
                continue;
            }
            let cap = capacity(structure, k, covered, |s| is_out(s, day));
            let supply_in = inputs[input_start[i] as usize..input_start[i + 1] as usize]
                .iter()
                .map(|&j| values[j as usize])
                .fold(1.0, f64::min);
            let supply = cap * supply_in * demand;
            let draw = (demand - supply).min(inventory[i]);
            inventory[i] -= draw;
            values[i] = (supply + draw) / demand;
        }
        for (i, outcome) in outcomes.iter_mut().enumerate() {
            let out = bom[bom_start[i] as usize..bom_start[i + 1] as usize]
                .iter()
                .map(|&j| values[j as usize])
                .fold(1.0, f64::min);
            if outcome.first_worse.is_none() && out < base_out[i * horizon + t] - EPS {
                outcome.first_worse = Some(t as u32);
            }
            if out < 1.0 - EPS {
                let line = &structure.lines[outcome.line as usize];
                outcome.units_lost += line.units_per_day * (1.0 - out);
                outcome.days_to_stop.get_or_insert(t as u32);
            }
        }
    }
    Some(outcomes)
}
