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
    by_row, cover, short_day, supply, Day, Evaluation, History, Licensing, LineOutcome, Outages,
    Usable,
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

/// Dense numbers, from 0, for the members of one set (positions, pools or
/// suppliers) that a run meets; forgotten all at once by a new generation.
struct Slots {
    /// `mark[key] == generation` when `key` has a slot this run.
    mark: Vec<u32>,
    slot: Vec<u32>,
    generation: u32,
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            mark: vec![0; n],
            slot: vec![0; n],
            generation: 0,
        }
    }

    fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.mark.fill(0);
            self.generation = 1;
        }
    }

    fn contains(&self, key: u32) -> bool {
        self.mark[key as usize] == self.generation
    }

    fn insert(&mut self, key: u32, slot: u32) {
        self.mark[key as usize] = self.generation;
        self.slot[key as usize] = slot;
    }

    /// `key`'s slot, if it has one.
    fn slot_of_member(&self, key: u32) -> Option<u32> {
        self.contains(key).then(|| self.slot[key as usize])
    }

    /// `key`'s slot; a key met for the first time is pushed to `members`
    /// and numbered `offset + ` its place there.
    fn slot_of(&mut self, key: u32, members: &mut Vec<u32>, offset: usize) -> u32 {
        if !self.contains(key) {
            self.insert(key, (offset + members.len()) as u32);
            members.push(key);
        }
        self.slot[key as usize]
    }
}

/// Working memory of cone runs, reused from one to the next on a thread.
pub struct Scratch {
    positions: Slots,
    pools: Slots,
    suppliers: Slots,
    stack: Vec<u32>,
}

impl Scratch {
    pub fn new(structure: &Structure) -> Scratch {
        Scratch {
            positions: Slots::new(structure.components.len()),
            pools: Slots::new(structure.pools.len()),
            suppliers: Slots::new(structure.supplier_ids.len()),
            stack: Vec::new(),
        }
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
        scratch.positions.clear();
        scratch.stack.clear();
        scratch.stack.extend(seeds);
        let mut positions = Vec::new();
        while let Some(k) = scratch.stack.pop() {
            if scratch.positions.contains(k) {
                continue;
            }
            scratch.positions.insert(k, 0);
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

/// Compressed rows: row `r` is `items[start[r]..start[r + 1]]`.
#[derive(Clone, Default)]
struct Rows {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Rows {
    /// Rows `0..rows` from (row, item) pairs; each row keeps its items in
    /// the pairs' order.
    fn from_pairs(rows: usize, pairs: &[(u32, u32)]) -> Rows {
        let triples: Vec<(u32, u32, ())> = pairs.iter().map(|&(r, item)| (r, item, ())).collect();
        Rows::from_triples(rows, &triples).0
    }

    /// Rows `0..rows` from (row, item, value) triples, each row keeping its
    /// items in the triples' order, and the values in the items' order.
    fn from_triples<T: Copy + Default>(rows: usize, triples: &[(u32, u32, T)]) -> (Rows, Vec<T>) {
        let mut items = vec![0u32; triples.len()];
        let mut values = vec![T::default(); triples.len()];
        let start = by_row(rows, triples.iter().map(|t| t.0), |i, at| {
            (items[at], values[at]) = (triples[i].1, triples[i].2);
        });
        (Rows { start, items }, values)
    }

    /// Rows pushed one by one with [`Rows::push`] and closed by [`Rows::end`].
    fn with_capacity(rows: usize) -> Rows {
        let mut start = Vec::with_capacity(rows + 1);
        start.push(0);
        Rows {
            start,
            items: Vec::new(),
        }
    }

    fn push(&mut self, item: u32) {
        self.items.push(item);
    }

    fn end(&mut self) {
        self.start.push(self.items.len() as u32);
    }

    fn range(&self, r: usize) -> std::ops::Range<usize> {
        self.start[r] as usize..self.start[r + 1] as usize
    }

    fn row(&self, r: usize) -> &[u32] {
        &self.items[self.range(r)]
    }
}

/// Slot of a source without a supplier: never out.
const NO_SLOT: u32 = u32::MAX;

/// A run of a cone, one day at a time: the cone's pools and components
/// simulated, everything else read from the base run. As in a full run,
/// only what can have changed since yesterday is computed again: a cone
/// component whose suppliers, pools and inputs are as they were, that
/// receives nothing and drew no stock yesterday, does what it did.
///
/// Local numbers: the cone's components are `0..size` (in position order,
/// so inputs before their users), the components outside it that it reads
/// (its frontier) follow. The suppliers and pools its components' sources
/// name have slots of their own, the cone's pools first.
struct Sim<'a> {
    base: &'a Base<'a>,
    cone: &'a Cone,
    horizon: usize,
    start: i32,
    /// Local input indices of each cone component.
    inputs: Rows,
    /// Local BOM indices of each cone line.
    bom: Rows,
    /// The cone components that read each local index, and the cone lines.
    users: Rows,
    readers: Rows,
    /// The sources of each cone component: its supplier's slot (or
    /// `NO_SLOT`), share, and pool slots.
    sources: Rows,
    source_supplier: Vec<u32>,
    source_share: Vec<f64>,
    source_pools: Rows,
    /// By supplier slot: the supplier's index, the day numbers it is out
    /// (`[first, end)`), whether out today, and the cone components it is
    /// a source of.
    suppliers: Vec<u32>,
    windows: Vec<(i32, i32)>,
    out: Vec<bool>,
    supplier_users: Rows,
    /// By pool slot: the pool's index, whether covered today, and the cone
    /// components with a source that needs it. The first `cone.pools.len()`
    /// slots are the cone's pools, simulated; the others are read from the
    /// base run.
    pools: Vec<u32>,
    covered: Vec<bool>,
    pool_users: Rows,
    /// The changes of the base run's `avail` of the positions outside the
    /// cone that it reads (its frontier), by day: row t holds the local
    /// indices whose value changes on day t, `frontier_values` the values.
    frontier_changes: Rows,
    frontier_values: Vec<f64>,
    /// Supplier `outage.0` out over `[outage.1, outage.2)` instead of as
    /// the base scenario has it.
    outage: Option<(u32, i32, i32)>,
    /// What arrives at the cone's components, by day: (day t, cone index,
    /// units), and how many have arrived.
    arrivals: Vec<(u32, u32, f64)>,
    arrived: usize,
    /// The cone's pools' licences.
    usable: Vec<Vec<Usable>>,
    /// `avail` of the cone's components, then of its frontier, today.
    values: Vec<f64>,
    /// `cap` of the cone's components today.
    caps: Vec<f64>,
    inventory: Vec<f64>,
    dirty: Vec<bool>,
    /// The cone components that drew stock on the day simulated last.
    drawing: Vec<u32>,
    /// The cone components computed on the day simulated last.
    computed: Vec<u32>,
    /// `out` of each cone line today.
    line_out: Vec<f64>,
    line_dirty: Vec<bool>,
    /// The day simulated last.
    t: usize,
}

/// The local numbers of a cone's components (`0..size`, in position
/// order, left in `scratch.positions`), the local input indices of each
/// and the local BOM indices of each cone line, and the positions outside
/// the cone that these read (its frontier, numbered from `size` on).
fn wiring(structure: &Structure, cone: &Cone, scratch: &mut Scratch) -> (Rows, Rows, Vec<u32>) {
    let flat = &structure.flat;
    let size = cone.positions.len();
    scratch.positions.clear();
    for (i, &k) in cone.positions.iter().enumerate() {
        scratch.positions.insert(k, i as u32);
    }
    let mut frontier: Vec<u32> = Vec::new();
    let mut inputs = Rows::with_capacity(size);
    for &k in &cone.positions {
        for &i in flat.inputs_of(k as usize) {
            inputs.push(scratch.positions.slot_of(i, &mut frontier, size));
        }
        inputs.end();
    }
    let mut bom = Rows::with_capacity(cone.lines.len());
    for &l in &cone.lines {
        for &k in flat.bom_of(l as usize) {
            bom.push(scratch.positions.slot_of(k, &mut frontier, size));
        }
        bom.end();
    }
    (inputs, bom, frontier)
}

/// The base run's changes of `avail` of the `frontier` positions (local
/// indices from `size` on), by day over the horizon: the local indices
/// that change on each day, and their new values.
fn frontier_changes(base: &Base<'_>, frontier: &[u32], size: usize) -> (Rows, Vec<f64>) {
    let horizon = base.evaluation.horizon_days as usize;
    let mut changes: Vec<(u32, u32, f64)> = Vec::new();
    for (f, &k) in frontier.iter().enumerate() {
        let (days, values) = base.evaluation.history.avail.row(k as usize);
        for (&d, &v) in days.iter().zip(values) {
            if (d as usize) < horizon {
                changes.push((d as u32, (size + f) as u32, v));
            }
        }
    }
    Rows::from_triples(horizon, &changes)
}

impl<'a> Sim<'a> {
    /// The layout of runs of `cone`; [`Sim::start`] starts each.
    fn new(base: &'a Base<'a>, cone: &'a Cone, scratch: &mut Scratch) -> Sim<'a> {
        let structure = base.structure;
        let flat = &structure.flat;
        let size = cone.positions.len();
        let (inputs, bom, frontier) = wiring(structure, cone, scratch);
        let locals = size + frontier.len();
        let pairs = |rows: &Rows| -> Vec<(u32, u32)> {
            (0..rows.start.len() - 1)
                .flat_map(|r| rows.row(r).iter().map(move |&j| (j, r as u32)))
                .collect()
        };
        let users = Rows::from_pairs(locals, &pairs(&inputs));
        let readers = Rows::from_pairs(locals, &pairs(&bom));

        scratch.pools.clear();
        scratch.suppliers.clear();
        let mut pools = cone.pools.clone();
        for (i, &p) in cone.pools.iter().enumerate() {
            scratch.pools.insert(p, i as u32);
        }
        let mut suppliers: Vec<u32> = Vec::new();
        let mut sources = Rows::with_capacity(size);
        let mut source_supplier = Vec::new();
        let mut source_share = Vec::new();
        let mut source_pools = Rows::with_capacity(0);
        let (mut supplier_pairs, mut pool_pairs) = (Vec::new(), Vec::new());
        for (i, &k) in cone.positions.iter().enumerate() {
            for s in flat.sources(k as usize) {
                let supplier = flat.source_supplier[s];
                let slot = if supplier == NO_SUPPLIER {
                    NO_SLOT
                } else {
                    let slot = scratch.suppliers.slot_of(supplier, &mut suppliers, 0);
                    supplier_pairs.push((slot, i as u32));
                    slot
                };
                sources.push(source_supplier.len() as u32);
                source_supplier.push(slot);
                source_share.push(flat.source_share[s]);
                for &p in flat.pools_of_source(s) {
                    let slot = scratch.pools.slot_of(p, &mut pools, 0);
                    source_pools.push(slot);
                    pool_pairs.push((slot, i as u32));
                }
                source_pools.end();
            }
            sources.end();
        }
        let horizon = base.evaluation.horizon_days as usize;
        let (frontier_changes, frontier_values) = frontier_changes(base, &frontier, size);
        let arrivals = base
            .outages
            .arrivals()
            .iter()
            .filter(|&&(t, ..)| (t as usize) < horizon)
            .filter_map(|&(t, k, units)| {
                let cone_index = scratch.positions.slot_of_member(k)?;
                (cone_index < size as u32).then_some((t, cone_index, units))
            })
            .collect();
        Sim {
            base,
            cone,
            horizon,
            start: day_number(base.evaluation.as_of),
            inputs,
            bom,
            users,
            readers,
            sources,
            source_supplier,
            source_share,
            source_pools,
            out: vec![false; suppliers.len()],
            supplier_users: Rows::from_pairs(suppliers.len(), &supplier_pairs),
            windows: Vec::with_capacity(suppliers.len()),
            suppliers,
            arrivals,
            arrived: 0,
            covered: vec![true; pools.len()],
            pool_users: Rows::from_pairs(pools.len(), &pool_pairs),
            pools,
            frontier_changes,
            frontier_values,
            outage: None,
            usable: Vec::new(),
            values: vec![1.0; locals],
            caps: vec![1.0; size],
            inventory: Vec::with_capacity(size),
            dirty: vec![true; size],
            drawing: Vec::new(),
            computed: Vec::with_capacity(size),
            line_out: vec![1.0; cone.lines.len()],
            line_dirty: vec![true; cone.lines.len()],
            t: 0,
        }
    }

    /// Starts a run from day 0 under `outage`, the cone's pools
    /// (`cone.pools`) starting from `usable`.
    fn start(&mut self, outage: Option<(u32, i32, i32)>, usable: Vec<Vec<Usable>>) {
        let base = self.base;
        let flat = &base.structure.flat;
        self.outage = outage;
        self.windows = self.suppliers.iter().map(|&s| self.window(s)).collect();
        self.out.fill(false);
        self.covered.fill(true);
        self.arrived = 0;
        self.usable = usable;
        self.values.fill(1.0);
        self.caps.fill(1.0);
        self.inventory.clear();
        self.inventory.extend(
            self.cone
                .positions
                .iter()
                .map(|&k| flat.on_hand_units[k as usize]),
        );
        // Day 0 computes everything.
        self.dirty.fill(true);
        self.drawing.clear();
        self.computed.clear();
        self.line_out.fill(1.0);
        self.line_dirty.fill(true);
        self.t = 0;
    }

    fn is_out(&self, s: u32, day: i32) -> bool {
        if s == NO_SUPPLIER {
            return false;
        }
        let (first, end) = self.window(s);
        first <= day && day < end
    }

    /// The day numbers supplier `s` is out, `[first, end)`: the change's
    /// outage, or the base scenario's.
    fn window(&self, s: u32) -> (i32, i32) {
        match self.outage {
            Some((supplier, first, end)) if supplier == s => (first, end),
            _ => self.base.outages.window(s),
        }
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

    /// Marks local index `j` changed: its users and lines are computed again.
    fn changed(&mut self, j: usize) {
        for &u in self.users.row(j) {
            self.dirty[u as usize] = true;
        }
        for &l in self.readers.row(j) {
            self.line_dirty[l as usize] = true;
        }
    }

    /// `cap` of cone component `i` today: the shares of its sources that
    /// are not out and have every pool covered (as `capacity` reckons it).
    fn capacity(&self, i: usize) -> f64 {
        let sources = self.sources.row(i);
        if sources.is_empty() {
            return 1.0;
        }
        let mut sum = 0.0;
        for &s in sources {
            let supplier = self.source_supplier[s as usize];
            let out = supplier != NO_SLOT && self.out[supplier as usize];
            let covered = || {
                self.source_pools
                    .row(s as usize)
                    .iter()
                    .all(|&q| self.covered[q as usize])
            };
            if !out && covered() {
                sum += self.source_share[s as usize];
            }
        }
        sum
    }

    /// Who is out and which pools are covered on day `t` (day number
    /// `day`): the cone components whose sources that changes are computed
    /// again.
    fn suppliers_and_pools(&mut self, t: usize, day: i32) {
        let structure = self.base.structure;
        let history = &self.base.evaluation.history;
        for w in 0..self.windows.len() {
            let (first, end) = self.windows[w];
            let now = first <= day && day < end;
            if now != self.out[w] {
                self.out[w] = now;
                for &i in self.supplier_users.row(w) {
                    self.dirty[i as usize] = true;
                }
            }
        }
        for w in 0..self.pools.len() {
            let p = self.pools[w] as usize;
            let now = if w < self.cone.pools.len() {
                let pool = &structure.pools[p];
                self.is_out(pool.supplier, day)
                    || cover(
                        &mut self.usable[w],
                        pool.required_kg_per_day,
                        pool.controlled_from,
                        day,
                    )
            } else {
                !history.uncovered(p, t as u32)
            };
            if now != self.covered[w] {
                self.covered[w] = now;
                for &i in self.pool_users.row(w) {
                    self.dirty[i as usize] = true;
                }
            }
        }
    }

    /// Simulates day `t` (days in order from 0): suppliers, pools, then
    /// components and lines.
    fn step(&mut self, t: usize) {
        let structure = self.base.structure;
        let flat = &structure.flat;
        self.t = t;
        let day = self.start + t as i32;
        let size = self.cone.positions.len();
        for i in std::mem::take(&mut self.drawing) {
            self.dirty[i as usize] = true;
        }
        self.suppliers_and_pools(t, day);
        while let Some(&(day, i, units)) = self.arrivals.get(self.arrived) {
            if day as usize > t {
                break;
            }
            self.inventory[i as usize] += units;
            self.dirty[i as usize] = true;
            self.arrived += 1;
        }
        let events =
            self.frontier_changes.start[t] as usize..self.frontier_changes.start[t + 1] as usize;
        for e in events {
            let j = self.frontier_changes.items[e] as usize;
            self.values[j] = self.frontier_values[e];
            self.changed(j);
        }
        self.computed.clear();
        for i in 0..size {
            if !self.dirty[i] {
                continue;
            }
            self.dirty[i] = false;
            self.computed.push(i as u32);
            let yesterday = self.values[i];
            self.caps[i] = self.capacity(i);
            let k = self.cone.positions[i] as usize;
            let (values, inputs) = (&self.values, &self.inputs);
            let supply_in = || {
                inputs
                    .row(i)
                    .iter()
                    .map(|&j| values[j as usize])
                    .fold(1.0, f64::min)
            };
            let drew;
            (self.values[i], drew) = supply(
                flat.demand[k],
                self.caps[i],
                supply_in,
                &mut self.inventory[i],
            );
            if drew {
                // Less stock tomorrow: look again.
                self.drawing.push(i as u32);
            }
            if self.values[i] != yesterday {
                self.changed(i);
            }
        }
        for l in 0..self.line_out.len() {
            if self.line_dirty[l] {
                self.line_dirty[l] = false;
                self.line_out[l] = self
                    .bom
                    .row(l)
                    .iter()
                    .map(|&j| self.values[j as usize])
                    .fold(1.0, f64::min);
            }
        }
    }

    /// `out` of the `i`th cone line on the day simulated last.
    fn line_out(&self, i: usize) -> f64 {
        self.line_out[i]
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
    Sim::new(base, cone, scratch).run(change, abandoned)
}

/// [`run`] under each of `changes`, one after the other on one layout of
/// the cone.
pub fn run_each(
    base: &Base<'_>,
    cone: &Cone,
    changes: &[Change],
    scratch: &mut Scratch,
    abandoned: &AtomicBool,
) -> Option<Vec<Vec<ConeLine>>> {
    let mut sim = Sim::new(base, cone, scratch);
    changes
        .iter()
        .map(|change| sim.run(change, abandoned))
        .collect()
}

impl Sim<'_> {
    /// A run from day 0 under `change`.
    fn run(&mut self, change: &Change, abandoned: &AtomicBool) -> Option<Vec<ConeLine>> {
        let (base, cone) = (self.base, self.cone);
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
        self.start(outage, usable);
        let sim = self;
        let horizon = sim.horizon;
        // The base run's `out` of each cone line today, and how far its row
        // has been read.
        let mut base_out = vec![1.0; cone.lines.len()];
        let mut base_read = vec![0usize; cone.lines.len()];
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
                if outcome.first_worse.is_none() {
                    let (days, values) = history.line_out.row(outcome.line as usize);
                    while base_read[i] < days.len() && days[base_read[i]] as usize <= t {
                        base_out[i] = values[base_read[i]];
                        base_read[i] += 1;
                    }
                    if out < base_out[i] - EPS {
                        outcome.first_worse = Some(t as u32);
                    }
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
    let mut sim = Sim::new(base, cone, scratch);
    sim.start(None, usable);
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

    /// Only what was computed today can have changed.
    fn components(&mut self, t: usize, sim: &Sim<'_>) {
        for &i in &sim.computed {
            let i = i as usize;
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
