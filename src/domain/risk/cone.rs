//! The model run again for one change, over its cone only.
//!
//! A supplier's outage or a licence's decision changes only the pools it
//! touches and the components above them: the components it feeds, their
//! parents, and the lines whose BOM holds any of them (its *cone*). Every
//! other component does exactly what it did in the base run, so its `avail`
//! is read back from the base run's [`History`] instead of simulated, and a
//! question about one candidate costs its cone, not the network.

use std::sync::atomic::{AtomicBool, Ordering};

use super::simulate::{
    capacity, cover, short_day, Day, Evaluation, History, Licensing, LineOutcome, Outages, Usable,
};
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
    /// Some pools' licences as given (in consumption order, by pool)
    /// instead of as the base scenario makes them.
    Licences(Vec<(u32, Vec<Usable>)>),
}

/// What a change can touch.
#[derive(Clone, Debug, Default)]
pub struct Cone {
    /// Component positions, ascending (inputs before their users).
    pub positions: Vec<u32>,
    /// Line indices, ascending: the lines whose BOM holds a cone component.
    pub lines: Vec<u32>,
    /// The pools simulated afresh, ascending.
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
        Cone::of_pools(structure, &[p], scratch)
    }

    /// The cone of pools `pools` (ascending): the union of theirs.
    pub fn of_pools(structure: &Structure, pools: &[u32], scratch: &mut Scratch) -> Cone {
        let seeds = pools.iter().flat_map(|&p| {
            structure
                .sourced_by(structure.pools[p as usize].supplier)
                .iter()
                .filter(move |&&c| structure.components[c as usize].pools.contains(&p))
                .map(|&c| structure.flat.position[c as usize])
        });
        let seeds: Vec<u32> = seeds.collect();
        Cone::above(structure, seeds.into_iter(), pools.to_vec(), scratch)
    }

    /// The cone of pools `pools` (ascending) and of the components at
    /// `positions` (whose stock changed): everything above any of them;
    /// the pools are simulated afresh.
    pub fn of_changes(
        structure: &Structure,
        pools: &[u32],
        positions: &[u32],
        scratch: &mut Scratch,
    ) -> Cone {
        let mut cone = Cone::of_pools(structure, pools, scratch);
        if positions.is_empty() {
            return cone;
        }
        let seeds = cone
            .positions
            .iter()
            .chain(positions)
            .copied()
            .collect::<Vec<_>>();
        cone = Cone::above(structure, seeds.into_iter(), cone.pools, scratch);
        cone
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

/// A run of a cone, one day at a time: the cone's pools and components
/// simulated, everything else read from the base run.
struct Sim<'a> {
    base: &'a Base<'a>,
    cone: &'a Cone,
    horizon: usize,
    start: i32,
    /// Local input indices of each cone component (compressed rows).
    input_start: Vec<u32>,
    inputs: Vec<u32>,
    /// Local BOM indices of each cone line (compressed rows).
    bom_start: Vec<u32>,
    bom: Vec<u32>,
    /// Positions outside the cone that it reads, and their `avail` in the
    /// base run by day (`frontier.len() × horizon`).
    frontier: Vec<u32>,
    frontier_avail: Vec<f64>,
    /// Supplier `outage.0` out over `[outage.1, outage.2)` instead of as
    /// the base scenario has it.
    outage: Option<(u32, i32, i32)>,
    /// The cone's pools: their licences, and whether covered today.
    usable: Vec<Vec<Usable>>,
    covered: Vec<bool>,
    /// `avail` of the cone's components, then of its frontier, today.
    values: Vec<f64>,
    /// `cap` of the cone's components today.
    caps: Vec<f64>,
    inventory: Vec<f64>,
    /// The day simulated last.
    t: usize,
}

impl<'a> Sim<'a> {
    /// A run of `cone` from day 0, its pools (`cone.pools`) starting from
    /// `usable`.
    fn new(
        base: &'a Base<'a>,
        cone: &'a Cone,
        outage: Option<(u32, i32, i32)>,
        usable: Vec<Vec<Usable>>,
        scratch: &mut Scratch,
    ) -> Sim<'a> {
        let structure = base.structure;
        let flat = &structure.flat;
        let horizon = base.evaluation.horizon_days as usize;
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
        let mut frontier_avail = vec![1.0; frontier.len() * horizon];
        for (f, &k) in frontier.iter().enumerate() {
            base.evaluation.history.avail.expand(
                k as usize,
                &mut frontier_avail[f * horizon..(f + 1) * horizon],
            );
        }
        Sim {
            base,
            cone,
            horizon,
            start: day_number(base.evaluation.as_of),
            input_start,
            inputs,
            bom_start,
            bom,
            values: vec![1.0; cone.positions.len() + frontier.len()],
            frontier,
            frontier_avail,
            outage,
            covered: vec![true; cone.pools.len()],
            usable,
            caps: vec![1.0; cone.positions.len()],
            inventory: cone
                .positions
                .iter()
                .map(|&k| flat.on_hand_units[k as usize])
                .collect(),
            t: 0,
        }
    }

    fn is_out(&self, s: u32, day: i32) -> bool {
        if s == NO_SUPPLIER {
            return false;
        }
        let (first, end) = match self.outage {
            Some((supplier, first, end)) if supplier == s => (first, end),
            _ => self.base.outages.window(s),
        };
        first <= day && day < end
    }

    /// Whether pool `p` is covered on the day simulated last.
    fn pool_covered(&self, p: u32) -> bool {
        match self.cone.pools.iter().position(|&q| q == p) {
            Some(i) => self.covered[i],
            None => !self
                .base
                .evaluation
                .history
                .uncovered(p as usize, self.t as u32),
        }
    }

    /// Simulates day `t` (days in order from 0): pools, then components.
    fn step(&mut self, t: usize) {
        let structure = self.base.structure;
        let flat = &structure.flat;
        self.t = t;
        let day = self.start + t as i32;
        for i in 0..self.cone.pools.len() {
            let pool = &structure.pools[self.cone.pools[i] as usize];
            self.covered[i] = self.is_out(pool.supplier, day)
                || cover(
                    &mut self.usable[i],
                    pool.required_kg_per_day,
                    pool.controlled_from,
                    day,
                );
        }
        let size = self.cone.positions.len();
        for &(_, k, units) in self.base.outages.arriving(t as u32) {
            if let Ok(i) = self.cone.positions.binary_search(&k) {
                self.inventory[i] += units;
            }
        }
        for f in 0..self.frontier.len() {
            self.values[size + f] = self.frontier_avail[f * self.horizon + t];
        }
        for i in 0..size {
            let k = self.cone.positions[i] as usize;
            self.caps[i] = capacity(
                structure,
                k,
                |p| self.pool_covered(p),
                |s| self.is_out(s, day),
            );
            let demand = flat.demand[k];
            if demand == 0.0 {
                self.values[i] = 1.0;
                continue;
            }
            let supply_in = self.inputs
                [self.input_start[i] as usize..self.input_start[i + 1] as usize]
                .iter()
                .map(|&j| self.values[j as usize])
                .fold(1.0, f64::min);
            let supply = self.caps[i] * supply_in * demand;
            let draw = (demand - supply).min(self.inventory[i]);
            self.inventory[i] -= draw;
            self.values[i] = (supply + draw) / demand;
        }
    }

    /// `out` of the `i`th cone line on the day simulated last.
    fn line_out(&self, i: usize) -> f64 {
        self.bom[self.bom_start[i] as usize..self.bom_start[i + 1] as usize]
            .iter()
            .map(|&j| self.values[j as usize])
            .fold(1.0, f64::min)
    }

    /// Component `c` (by index): its cone index, or its position when it
    /// is outside the cone.
    fn locate(&self, c: u32) -> Result<usize, usize> {
        let k = self.base.structure.flat.position[c as usize];
        self.cone
            .positions
            .binary_search(&k)
            .map_err(|_| k as usize)
    }
}

impl Day for Sim<'_> {
    fn avail(&self, c: u32) -> f64 {
        match self.locate(c) {
            Ok(i) => self.values[i],
            Err(k) => self.base.evaluation.history.avail.at(k, self.t as u32),
        }
    }

    fn cap(&self, c: u32) -> f64 {
        match self.locate(c) {
            Ok(i) => self.caps[i],
            Err(k) => self.base.evaluation.history.cap.at(k, self.t as u32),
        }
    }

    fn covered(&self, pool: u32) -> bool {
        self.pool_covered(pool)
    }

    fn out(&self, supplier: u32) -> bool {
        self.is_out(supplier, self.start + self.t as i32)
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
    let history = &base.evaluation.history;
    let usable = cone
        .pools
        .iter()
        .map(|&p| {
            let given = match change {
                Change::Licences(pools) => pools.iter().find(|(q, _)| *q == p),
                Change::Outage { .. } => None,
            };
            match given {
                Some((_, usable)) => usable.clone(),
                None => base.licensing.usable[p as usize].clone(),
            }
        })
        .collect();
    let outage = match change {
        Change::Outage {
            supplier,
            first,
            end,
        } => Some((*supplier, *first, *end)),
        Change::Licences(_) => None,
    };
    let mut sim = Sim::new(base, cone, outage, usable, scratch);
    let horizon = sim.horizon;
    let mut base_out = vec![1.0; cone.lines.len() * horizon];
    for (i, &l) in cone.lines.iter().enumerate() {
        history
            .line_out
            .expand(l as usize, &mut base_out[i * horizon..(i + 1) * horizon]);
    }
    let mut outcomes: Vec<ConeLine> = cone
        .lines
        .iter()
        .map(|&line| {
            // An idled line stops on day 0 whatever the change.
            let start = LineOutcome::start(
                &structure.lines[line as usize],
                base.evaluation.horizon_days,
            );
            ConeLine {
                line,
                units_lost: start.units_lost,
                days_to_stop: start.days_to_stop,
                first_worse: None,
            }
        })
        .collect();
    for t in 0..horizon {
        if abandoned.load(Ordering::Relaxed) {
            return None;
        }
        sim.step(t);
        for (i, outcome) in outcomes.iter_mut().enumerate() {
            if structure.lines[outcome.line as usize].idled {
                continue;
            }
            let out = sim.line_out(i);
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

/// The whole evaluation again after the licences of `cone.pools` changed to
/// `licensing`'s (which holds every pool's licences under the base
/// scenario, the changed ones as they are now): the cone simulated, every
/// line, pool and day outside it as in the base run. Exactly what a full
/// run on `licensing` gives. `None` once `abandoned` is set.
pub fn rerun(
    base: &Base<'_>,
    cone: &Cone,
    licensing: &Licensing,
    scratch: &mut Scratch,
    abandoned: &AtomicBool,
) -> Option<Evaluation> {
    let structure = base.structure;
    let evaluation = base.evaluation;
    let usable = cone
        .pools
        .iter()
        .map(|&p| licensing.usable[p as usize].clone())
        .collect();
    let mut sim = Sim::new(base, cone, None, usable, scratch);
    let horizon = sim.horizon;
    let mut lines = evaluation.lines.clone();
    for &l in &cone.lines {
        lines[l as usize] =
            LineOutcome::start(&structure.lines[l as usize], evaluation.horizon_days);
    }
    let mut pools = evaluation.pools.clone();
    for &p in &cone.pools {
        pools[p as usize] = licensing.pools[p as usize].clone();
    }
    let mut changes = ConeChanges::new(cone);
    for t in 0..horizon {
        if abandoned.load(Ordering::Relaxed) {
            return None;
        }
        sim.step(t);
        for (i, &p) in cone.pools.iter().enumerate() {
            if !sim.covered[i] {
                changes.uncovered[i].push(t as u32);
                let pool = &mut pools[p as usize];
                if pool.covered_days == evaluation.horizon_days {
                    pool.covered_days = t as u32;
                }
            }
        }
        changes.components(t, &sim);
        for (i, &l) in cone.lines.iter().enumerate() {
            if structure.lines[l as usize].idled {
                continue;
            }
            let out = sim.line_out(i);
            changes.line(t, i, out);
            if out < 1.0 - EPS {
                let outcome = &mut lines[l as usize];
                short_day(
                    structure,
                    l,
                    outcome,
                    t,
                    out,
                    &sim,
                    &licensing.pool_licenses,
                );
            }
        }
    }
    Some(Evaluation {
        as_of: evaluation.as_of,
        horizon_days: evaluation.horizon_days,
        lines,
        pools,
        history: changes.history(evaluation, cone),
    })
}

/// The changes of every value a cone simulates, as the history keeps
/// them, and the values of yesterday.
struct ConeChanges {
    avail: Vec<Vec<(u16, f64)>>,
    caps: Vec<Vec<(u16, f64)>>,
    outs: Vec<Vec<(u16, f64)>>,
    uncovered: Vec<Vec<u32>>,
    last_avail: Vec<f64>,
    last_cap: Vec<f64>,
    last_out: Vec<f64>,
}

impl ConeChanges {
    fn new(cone: &Cone) -> ConeChanges {
        ConeChanges {
            avail: vec![Vec::new(); cone.positions.len()],
            caps: vec![Vec::new(); cone.positions.len()],
            outs: vec![Vec::new(); cone.lines.len()],
            uncovered: vec![Vec::new(); cone.pools.len()],
            last_avail: vec![1.0; cone.positions.len()],
            last_cap: vec![1.0; cone.positions.len()],
            last_out: vec![1.0; cone.lines.len()],
        }
    }

    fn components(&mut self, t: usize, sim: &Sim<'_>) {
        for i in 0..self.avail.len() {
            let cap = sim.caps[i];
            if sim.values[i] != self.last_avail[i] {
                self.last_avail[i] = sim.values[i];
                self.avail[i].push((t as u16, sim.values[i]));
            }
            if cap != self.last_cap[i] {
                self.last_cap[i] = cap;
                self.caps[i].push((t as u16, cap));
            }
        }
    }

    fn line(&mut self, t: usize, i: usize, out: f64) {
        if out != self.last_out[i] {
            self.last_out[i] = out;
            self.outs[i].push((t as u16, out));
        }
    }

    /// The base run's history with the cone's rows replaced.
    fn history(self, evaluation: &Evaluation, cone: &Cone) -> History {
        let rows = |list: &[u32], changes: Vec<Vec<(u16, f64)>>| -> Vec<(u32, Vec<(u16, f64)>)> {
            list.iter().copied().zip(changes).collect()
        };
        let base = &evaluation.history;
        let mut history = History {
            avail: base.avail.with_rows(&rows(&cone.positions, self.avail)),
            cap: base.cap.with_rows(&rows(&cone.positions, self.caps)),
            line_out: base.line_out.with_rows(&rows(&cone.lines, self.outs)),
            uncovered: base.uncovered.clone(),
            words: base.words,
        };
        for (&p, days) in cone.pools.iter().zip(self.uncovered) {
            history.set_uncovered(p as usize, days);
        }
        history
    }
}
