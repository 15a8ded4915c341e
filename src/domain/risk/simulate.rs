//! One evaluation of the model: the daily simulation over the horizon for a
//! first day and a scenario, and what it says of every line and pool.
//!
//! An evaluation also keeps its *history*: every value of a day that differs
//! from "everything available" (a component's `avail` and `cap`, a line's
//! `out`, a pool's uncovered days). A question that changes one supplier or
//! one licence changes only the components above it (its *cone*, see
//! [`super::cone`]); everything else is read back from the history instead
//! of simulated again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::structure::{Flat, LineNode, Structure, NO_SUPPLIER};
use super::{day_number, LicenseOverride, PendingAssumption, Scenario, EPS, REVIEW_DAYS};
use crate::domain::date::Date;
use crate::domain::record::{License, LicenseStatus, Shipment};

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
    /// On the stop day: the sources of the path's last component that are
    /// out, by supplier index.
    pub blocking_suppliers: Vec<u32>,
}

impl LineOutcome {
    /// A line taken off by the scenario: stopped from day 0, building
    /// nothing over the `horizon_days`, with no cause.
    pub fn idled(units_per_day: f64, horizon_days: u32) -> LineOutcome {
        LineOutcome {
            days_to_stop: Some(0),
            output_fraction: 0.0,
            units_lost: units_per_day * horizon_days as f64,
            ..LineOutcome::default()
        }
    }

    /// A line not short (yet).
    pub fn running() -> LineOutcome {
        LineOutcome {
            output_fraction: 1.0,
            ..LineOutcome::default()
        }
    }

    /// The outcome a line starts a run with.
    pub fn start(line: &LineNode, horizon_days: u32) -> LineOutcome {
        if line.idled {
            LineOutcome::idled(line.units_per_day, horizon_days)
        } else {
            LineOutcome::running()
        }
    }
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
    /// Every day's values that are not 1, for runs of a cone.
    pub history: History,
}

/// Values by row and day, kept as the days on which a row's value changes
/// (from 1 before day 0): most values stay the same for weeks, so this
/// holds a run of the whole network in a few MiB. Compressed sparse rows,
/// days ascending within a row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sparse {
    start: Vec<u32>,
    day: Vec<u16>,
    value: Vec<f64>,
}

impl Sparse {
    /// Builds rows `0..rows` from (row, day, new value) entries in day order.
    fn build(rows: usize, entries: &[(u32, u16, f64)]) -> Sparse {
        let mut day = vec![0u16; entries.len()];
        let mut value = vec![0.0; entries.len()];
        let start = by_row(rows, entries.iter().map(|e| e.0), |i, at| {
            (day[at], value[at]) = (entries[i].1, entries[i].2);
        });
        Sparse { start, day, value }
    }

    pub(super) fn row(&self, row: usize) -> (&[u16], &[f64]) {
        let range = self.start[row] as usize..self.start[row + 1] as usize;
        (&self.day[range.clone()], &self.value[range])
    }

    /// The value of `row` on day `t`.
    pub fn at(&self, row: usize, t: u32) -> f64 {
        let (days, values) = self.row(row);
        match days.partition_point(|&d| u32::from(d) <= t) {
            0 => 1.0,
            i => values[i - 1],
        }
    }

    /// Writes the value of `row` on every day into `out` (one per day).
    pub fn expand(&self, row: usize, out: &mut [f64]) {
        let (days, values) = self.row(row);
        let mut value = 1.0;
        let mut from = 0;
        for (&d, &v) in days.iter().zip(values) {
            out[from..d as usize].fill(value);
            (from, value) = (d as usize, v);
        }
        out[from..].fill(value);
    }

    fn bytes(&self) -> usize {
        self.start.len() * 4 + self.day.len() * 2 + self.value.len() * 8
    }

    /// These rows with some replaced: `replaced` holds (row, its changes in
    /// day order), by row ascending.
    pub fn with_rows(&self, replaced: &[(u32, Vec<(u16, f64)>)]) -> Sparse {
        let rows = self.start.len() - 1;
        let mut out = Sparse {
            start: Vec::with_capacity(rows + 1),
            day: Vec::with_capacity(self.day.len()),
            value: Vec::with_capacity(self.value.len()),
        };
        let mut next = replaced.iter().peekable();
        for row in 0..rows {
            out.start.push(out.day.len() as u32);
            match next.next_if(|(r, _)| *r as usize == row) {
                Some((_, changes)) => {
                    for &(d, v) in changes {
                        out.day.push(d);
                        out.value.push(v);
                    }
                }
                None => {
                    let (days, values) = self.row(row);
                    out.day.extend_from_slice(days);
                    out.value.extend_from_slice(values);
                }
            }
        }
        out.start.push(out.day.len() as u32);
        out
    }
}

/// Compressed rows `0..rows` of entries whose rows are `rows_of`, in
/// order: returns where each row starts (and where the last ends), and
/// calls `place(i, at)` to put entry `i` at `at`. A row keeps its entries'
/// order.
pub(super) fn by_row(
    rows: usize,
    rows_of: impl Iterator<Item = u32> + Clone,
    mut place: impl FnMut(usize, usize),
) -> Vec<u32> {
    let mut start = vec![0u32; rows + 1];
    for row in rows_of.clone() {
        start[row as usize + 1] += 1;
    }
    for r in 0..rows {
        start[r + 1] += start[r];
    }
    let mut next = start.clone();
    for (i, row) in rows_of.enumerate() {
        place(i, next[row as usize] as usize);
        next[row as usize] += 1;
    }
    start
}

/// What an evaluation saw day by day.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// `avail` of each component, by position.
    pub avail: Sparse,
    /// `cap` of each component, by position.
    pub cap: Sparse,
    /// `out` of each line.
    pub line_out: Sparse,
    /// The uncovered days of each pool: bit t of
    /// `uncovered[p * words..(p + 1) * words]`.
    pub(super) uncovered: Vec<u64>,
    pub(super) words: usize,
}

impl History {
    /// Whether pool `p` was uncovered on day `t` (an idle pool is not).
    pub fn uncovered(&self, p: usize, t: u32) -> bool {
        let word = self.uncovered[p * self.words + (t / 64) as usize];
        word >> (t % 64) & 1 == 1
    }

    /// Pool `p`'s uncovered days, as bits by day.
    pub fn uncovered_row(&self, p: usize) -> &[u64] {
        &self.uncovered[p * self.words..(p + 1) * self.words]
    }

    /// Replaces pool `p`'s uncovered days by `days`.
    pub fn set_uncovered(&mut self, p: usize, days: impl IntoIterator<Item = u32>) {
        let row = &mut self.uncovered[p * self.words..(p + 1) * self.words];
        row.fill(0);
        for t in days {
            row[(t / 64) as usize] |= 1 << (t % 64);
        }
    }

    /// Heap bytes held (for cache budgets).
    pub fn bytes(&self) -> usize {
        self.avail.bytes() + self.cap.bytes() + self.line_out.bytes() + self.uncovered.len() * 8
    }
}

/// A licence as the scenario makes it: usable over [from, until] while
/// something remains.
#[derive(Clone, Debug)]
pub struct Usable {
    from: i32,
    until: i32,
    remaining: f64,
    /// Shared: a run copies every usable licence before it draws on them.
    id: std::sync::Arc<str>,
}

impl Usable {
    /// Heap bytes of its id.
    pub fn id_bytes(&self) -> usize {
        self.id.len()
    }
}

/// What one licence record is under a scenario.
struct Assumed {
    /// Its status after the scenario's override.
    status: LicenseStatus,
    usable: Option<Usable>,
}

/// Looks at one licence under `scenario` and its override (if any).
fn assume(license: &License, overridden: Option<&LicenseOverride>, scenario: &Scenario) -> Assumed {
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
    Assumed {
        status,
        usable: window.map(|(from, until)| Usable {
            from,
            until,
            remaining: license.quantity_kg - license.used_kg,
            id: std::sync::Arc::from(license.id.as_str()),
        }),
    }
}

/// The licences of every pool as a scenario makes them, before day 0.
#[derive(Clone, Debug, Default)]
pub struct Licensing {
    /// By pool, in consumption order: the soonest to expire first
    /// (open-ended last), then by id.
    pub usable: Vec<Vec<Usable>>,
    /// Every licence record of each pool, in id order.
    pub pool_licenses: Vec<Vec<String>>,
    /// By pool: the remaining and pending kilograms; `covered_days` is the
    /// horizon until the simulation finds otherwise.
    pub pools: Vec<PoolOutcome>,
}

impl Licensing {
    /// The pools' licences under `scenario` (valid: overrides name existing
    /// licences, at most once each).
    pub fn new<'a>(
        structure: &Structure,
        licenses: impl IntoIterator<Item = &'a License>,
        scenario: &Scenario,
        as_of: Date,
        horizon_days: u32,
    ) -> Licensing {
        let pool_count = structure.pools.len();
        let overrides: HashMap<&str, &LicenseOverride> = scenario
            .overrides
            .iter()
            .map(|o| (o.license_id.as_str(), o))
            .collect();
        let mut licensing = Licensing {
            usable: vec![Vec::new(); pool_count],
            pool_licenses: vec![Vec::new(); pool_count],
            pools: vec![
                PoolOutcome {
                    covered_days: horizon_days,
                    ..PoolOutcome::default()
                };
                pool_count
            ],
        };
        let start = day_number(as_of);
        for license in licenses {
            let Some(p) = structure.pool_of(license) else {
                continue;
            };
            let overridden = overrides.get(license.id.as_str()).copied();
            licensing.add(p, license, assume(license, overridden, scenario), start);
        }
        for (list, ids) in licensing
            .usable
            .iter_mut()
            .zip(&mut licensing.pool_licenses)
        {
            order(list);
            ids.sort();
        }
        licensing
    }

    /// Makes the licences of `pools` (ascending) those of `licenses` (every
    /// licence of those pools, and any others) under `scenario`, leaving
    /// every other pool as it is.
    pub fn replace_pools<'a>(
        &mut self,
        structure: &Structure,
        licenses: impl IntoIterator<Item = &'a License>,
        scenario: &Scenario,
        as_of: Date,
        horizon_days: u32,
        pools: &[u32],
    ) {
        for &p in pools {
            let p = p as usize;
            self.usable[p].clear();
            self.pool_licenses[p].clear();
            self.pools[p] = PoolOutcome {
                covered_days: horizon_days,
                ..PoolOutcome::default()
            };
        }
        let start = day_number(as_of);
        for license in licenses {
            let Some(p) = structure
                .pool_of(license)
                .filter(|&p| pools.binary_search(&(p as u32)).is_ok())
            else {
                continue;
            };
            let overridden = scenario
                .overrides
                .iter()
                .find(|o| o.license_id == license.id);
            self.add(p, license, assume(license, overridden, scenario), start);
        }
        for &p in pools {
            order(&mut self.usable[p as usize]);
            self.pool_licenses[p as usize].sort();
        }
    }

    fn add(&mut self, p: usize, license: &License, assumed: Assumed, start: i32) {
        self.pool_licenses[p].push(license.id.clone());
        if assumed.status == LicenseStatus::Pending {
            self.pools[p].pending_kg += license.quantity_kg;
        }
        if let Some(usable) = assumed.usable {
            if usable.until >= start {
                self.pools[p].approved_remaining_kg += usable.remaining;
            }
            self.usable[p].push(usable);
        }
    }
}

/// Puts usable licences in consumption order.
fn order(list: &mut [Usable]) {
    list.sort_by(|a, b| a.until.cmp(&b.until).then_with(|| a.id.cmp(&b.id)));
}

/// The licences of one pool (`members`, its licence records) under
/// `scenario` with `license_id`'s override replaced by `replacement`, in
/// consumption order.
pub fn pool_usable_with(
    members: &[&License],
    scenario: &Scenario,
    replacement: &LicenseOverride,
) -> Vec<Usable> {
    let mut list: Vec<Usable> = members
        .iter()
        .filter_map(|license| {
            let overridden = if license.id == replacement.license_id {
                Some(replacement)
            } else {
                scenario
                    .overrides
                    .iter()
                    .find(|o| o.license_id == license.id)
            };
            assume(license, overridden, scenario).usable
        })
        .collect();
    order(&mut list);
    list
}

/// A pool's usable licences (`list`, in consumption order) with `granted`
/// licences added, approved by their override.
pub fn with_grants<'a>(
    list: &[Usable],
    granted: impl IntoIterator<Item = (&'a License, &'a LicenseOverride)>,
    scenario: &Scenario,
) -> Vec<Usable> {
    let mut list = list.to_vec();
    list.extend(
        granted
            .into_iter()
            .filter_map(|(license, o)| assume(license, Some(o), scenario).usable),
    );
    order(&mut list);
    list
}

/// Whether pool `p` alone, from its licences `usable`, is uncovered on
/// other days than `uncovered` (bits by day, as [`History::uncovered_row`]
/// keeps them) says. Stops at the first day that differs.
pub fn covers_otherwise(
    structure: &Structure,
    p: usize,
    mut usable: Vec<Usable>,
    outages: &Outages,
    as_of: Date,
    horizon_days: u32,
    uncovered: &[u64],
) -> bool {
    let start = day_number(as_of);
    (0..horizon_days).any(|t| {
        let covered = cover_alone(structure, p, &mut usable, outages, start + t as i32);
        let was = uncovered[(t / 64) as usize] >> (t % 64) & 1 == 1;
        covered == was
    })
}

/// Step 1 for pool `p` alone on `day`: idle while its supplier is out
/// (drawing nothing), else [`cover`].
fn cover_alone(
    structure: &Structure,
    p: usize,
    usable: &mut [Usable],
    outages: &Outages,
    day: i32,
) -> bool {
    let pool = &structure.pools[p];
    let (first, end) = outages.window(pool.supplier);
    let idle = first <= day && day < end;
    idle || cover(usable, pool.required_kg_per_day, pool.controlled_from, day)
}

/// Step 1 for one pool on one day: whether it is covered, consuming its
/// requirement from its active licences when it is.
pub(super) fn cover(usable: &mut [Usable], required: f64, controlled_from: i32, day: i32) -> bool {
    if day < controlled_from || required < EPS {
        return true;
    }
    let active = |u: &&mut Usable| u.from <= day && day <= u.until && u.remaining > 0.0;
    let total: f64 = usable.iter_mut().filter(active).map(|u| u.remaining).sum();
    if total < required - EPS {
        return false;
    }
    let mut need = required;
    for u in usable.iter_mut().filter(active) {
        if need <= 0.0 {
            break;
        }
        let take = u.remaining.min(need);
        u.remaining -= take;
        need -= take;
    }
    true
}

/// What a scenario brings about over the horizon besides licences: the
/// suppliers out (by supplier index, the day numbers out, `[first, end)`),
/// and the arrivals of components, stored and the scenario's.
#[derive(Clone, Debug, Default)]
pub struct Outages {
    windows: Vec<(u32, i32, i32)>,
    /// (day t, position, units), by day; within a day the stored shipments
    /// in id order, then the scenario's in the order given.
    arrivals: Arc<Vec<(u32, u32, f64)>>,
}

impl Outages {
    /// The outages of `scenario` (valid: each names an existing supplier,
    /// at most once), and the arrivals of the stored `shipments` and the
    /// scenario's, for a simulation from `as_of`.
    pub fn new<'a>(
        structure: &Structure,
        shipments: impl IntoIterator<Item = &'a Shipment>,
        scenario: &Scenario,
        as_of: Date,
    ) -> Outages {
        let mut windows: Vec<(u32, i32, i32)> = scenario
            .outages
            .iter()
            .filter_map(|o| {
                let s = *structure.supplier_index.get(&o.supplier_id)?;
                let (first, end) = o.days_out(as_of);
                Some((s, first, end))
            })
            .collect();
        windows.sort_unstable();
        let start = day_number(as_of);
        let mut shipments: Vec<&Shipment> = shipments.into_iter().collect();
        shipments.sort_by(|a, b| a.id.cmp(&b.id));
        let stored = shipments.into_iter().filter_map(|s| {
            let c = *structure.component_index.get(&s.component_id)?;
            Some((c, s.units, day_number(s.arrives_on?)))
        });
        let what_if = scenario.shipments.iter().filter_map(|s| {
            let c = *structure.component_index.get(&s.component_id)?;
            Some((c, s.units, day_number(s.arrives_on)))
        });
        let mut arrivals: Vec<(u32, u32, f64)> = stored
            .chain(what_if)
            .map(|(c, units, day)| {
                let t = (day - start).max(0) as u32;
                (t, structure.flat.position[c as usize], units)
            })
            .collect();
        // Stable: the order within a day stays.
        arrivals.sort_by_key(|a| a.0);
        Outages {
            windows,
            arrivals: Arc::new(arrivals),
        }
    }

    /// Everything that arrives, by day: (day, position, units).
    pub fn arrivals(&self) -> &[(u32, u32, f64)] {
        &self.arrivals
    }

    /// What arrives on day `t`: (day, position, units).
    pub fn arriving(&self, t: u32) -> &[(u32, u32, f64)] {
        let from = self.arrivals.partition_point(|a| a.0 < t);
        let to = self.arrivals.partition_point(|a| a.0 <= t);
        &self.arrivals[from..to]
    }

    /// These outages with supplier `s`'s replaced by `[first, end)`.
    pub fn with(&self, s: u32, first: i32, end: i32) -> Outages {
        let mut windows: Vec<(u32, i32, i32)> =
            self.windows.iter().copied().filter(|w| w.0 != s).collect();
        windows.push((s, first, end));
        windows.sort_unstable();
        Outages {
            windows,
            arrivals: self.arrivals.clone(),
        }
    }

    /// The days supplier `s` is out, `[first, end)`; empty when never.
    pub fn window(&self, s: u32) -> (i32, i32) {
        match self.windows.binary_search_by_key(&s, |w| w.0) {
            Ok(i) => (self.windows[i].1, self.windows[i].2),
            Err(_) => (i32::MAX, i32::MAX),
        }
    }

    fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The suppliers with an outage.
    fn suppliers(&self) -> impl Iterator<Item = u32> + '_ {
        self.windows.iter().map(|w| w.0)
    }

    /// Marks in `out` (by supplier index) the suppliers out on `day`.
    fn mark(&self, day: i32, out: &mut [bool]) {
        for &(s, first, end) in &self.windows {
            out[s as usize] = first <= day && day < end;
        }
    }
}

/// Runs the model. `scenario` must already be valid (overrides name
/// existing licences, outages existing suppliers, at most once each).
pub fn evaluate<'a>(
    structure: &Structure,
    licenses: impl IntoIterator<Item = &'a License>,
    shipments: impl IntoIterator<Item = &'a Shipment>,
    scenario: &Scenario,
    as_of: Date,
    horizon_days: u32,
) -> Evaluation {
    let never = AtomicBool::new(false);
    let licensing = Licensing::new(structure, licenses, scenario, as_of, horizon_days);
    let outages = Outages::new(structure, shipments, scenario, as_of);
    run(structure, &licensing, &outages, as_of, horizon_days, &never)
        .expect("an evaluation nobody abandons ends")
}

/// The daily simulation of every pool, component and line, from the pools'
/// licences as `licensing` has them before day 0.
pub fn run(
    structure: &Structure,
    licensing: &Licensing,
    outages: &Outages,
    as_of: Date,
    horizon_days: u32,
    abandoned: &AtomicBool,
) -> Option<Evaluation> {
    run_replacing(
        structure,
        licensing,
        &[],
        outages,
        as_of,
        horizon_days,
        abandoned,
    )
}

/// `run`, with the usable licences of some pools replaced (pool, its
/// licences in consumption order). Their pools' `approved_remaining_kg`
/// and `pending_kg`, and the licence ids that explain a stop, are
/// `licensing`'s.
pub fn run_replacing(
    structure: &Structure,
    licensing: &Licensing,
    replaced: &[(u32, Vec<Usable>)],
    outages: &Outages,
    as_of: Date,
    horizon_days: u32,
    abandoned: &AtomicBool,
) -> Option<Evaluation> {
    let mut run = FullRun::new(structure, licensing, replaced, outages, as_of, horizon_days);
    for t in 0..horizon_days as usize {
        if abandoned.load(Ordering::Relaxed) {
            return None;
        }
        run.day(t);
    }
    Some(run.finish())
}

/// The state of a full run between two days. Only what can have changed
/// since yesterday is computed again: a component whose pools, suppliers
/// and inputs are as they were, and that drew no stock yesterday, does
/// exactly what it did.
struct FullRun<'a> {
    structure: &'a Structure,
    flat: &'a Flat,
    outages: &'a Outages,
    pool_licenses: &'a [Vec<String>],
    as_of: Date,
    start: i32,
    horizon_days: u32,
    usable: Vec<Vec<Usable>>,
    pools: Vec<PoolOutcome>,
    covered: Vec<bool>,
    /// By supplier index: out today, and yesterday.
    out: Vec<bool>,
    was_out: Vec<bool>,
    /// By position (see `Flat`); a component that is never exposed keeps
    /// everything it needs, so it keeps avail = cap = 1 and is never
    /// visited, unless a supplier of it is out.
    inventory: Vec<f64>,
    avail: Vec<f64>,
    cap: Vec<f64>,
    visit: Vec<usize>,
    dirty: Vec<bool>,
    /// The positions that drew stock yesterday.
    drawing: Vec<usize>,
    lines: Vec<LineOutcome>,
    line_out: Vec<f64>,
    line_dirty: Vec<bool>,
    /// The uncovered days of each pool, `words` 64-day words a pool.
    uncovered: Vec<u64>,
    words: usize,
    avail_seen: Vec<(u32, u16, f64)>,
    cap_seen: Vec<(u32, u16, f64)>,
    out_seen: Vec<(u32, u16, f64)>,
}

impl<'a> FullRun<'a> {
    fn new(
        structure: &'a Structure,
        licensing: &'a Licensing,
        replaced: &[(u32, Vec<Usable>)],
        outages: &'a Outages,
        as_of: Date,
        horizon_days: u32,
    ) -> FullRun<'a> {
        let mut usable = licensing.usable.clone();
        for (p, list) in replaced {
            usable[*p as usize].clone_from(list);
        }
        let flat = &structure.flat;
        let n = structure.components.len();
        let visited = if outages.is_empty() {
            flat.exposed.clone()
        } else {
            exposed_with_outages(structure, outages)
        };
        let words = (horizon_days as usize).div_ceil(64);
        let out = vec![false; structure.supplier_ids.len()];
        FullRun {
            structure,
            flat,
            outages,
            pool_licenses: &licensing.pool_licenses,
            as_of,
            start: day_number(as_of),
            horizon_days,
            usable,
            pools: licensing.pools.clone(),
            covered: vec![true; structure.pools.len()],
            was_out: out.clone(),
            out,
            inventory: flat.on_hand_units.clone(),
            avail: vec![1.0f64; n],
            cap: vec![1.0f64; n],
            visit: (0..n).filter(|&k| visited[k]).collect(),
            dirty: visited,
            drawing: Vec::new(),
            lines: structure
                .lines
                .iter()
                .map(|l| LineOutcome::start(l, horizon_days))
                .collect(),
            line_out: vec![1.0f64; structure.lines.len()],
            line_dirty: vec![true; structure.lines.len()],
            uncovered: vec![0u64; structure.pools.len() * words],
            words,
            avail_seen: Vec::new(),
            cap_seen: Vec::new(),
            out_seen: Vec::new(),
        }
    }

    /// Day `t` after `as_of`: suppliers, then the model's three steps.
    fn day(&mut self, t: usize) {
        let day = self.start + t as i32;
        self.suppliers(day);
        self.receive(t);
        self.cover_pools(t, day);
        self.supply_components(t);
        self.run_lines(t);
    }

    /// Marks the component at position `k`, and its lines, to be computed
    /// again.
    fn mark(&mut self, k: u32) {
        self.dirty[k as usize] = true;
        for &l in self.flat.lines_of(k as usize) {
            self.line_dirty[l as usize] = true;
        }
    }

    /// Who is out today; what drew stock yesterday, and what a supplier
    /// coming or going touches, is looked at again.
    fn suppliers(&mut self, day: i32) {
        self.outages.mark(day, &mut self.out);
        for &k in &self.drawing {
            self.dirty[k] = true;
        }
        self.drawing.clear();
        let (structure, flat) = (self.structure, self.flat);
        for s in self.outages.suppliers() {
            if self.out[s as usize] != self.was_out[s as usize] {
                self.was_out[s as usize] = self.out[s as usize];
                for &c in structure.sourced_by(s) {
                    self.mark(flat.position[c as usize]);
                }
            }
        }
    }

    /// The shipments that arrive on day `t` join their components' stock.
    fn receive(&mut self, t: usize) {
        let outages = self.outages;
        for &(_, k, units) in outages.arriving(t as u32) {
            self.inventory[k as usize] += units;
            self.dirty[k as usize] = true;
        }
    }

    /// Step 1: pools, in order. A pool is covered whole or not at all; a
    /// pool whose supplier is out is idle (neither).
    fn cover_pools(&mut self, t: usize, day: i32) {
        let (structure, flat, words) = (self.structure, self.flat, self.words);
        for (p, pool) in structure.pools.iter().enumerate() {
            let now = pool.supplier != NO_SUPPLIER && self.out[pool.supplier as usize]
                || cover(
                    &mut self.usable[p],
                    pool.required_kg_per_day,
                    pool.controlled_from,
                    day,
                );
            if now != self.covered[p] {
                self.covered[p] = now;
                for &k in flat.users_of_pool(p) {
                    self.mark(k);
                }
            }
            if !self.covered[p] {
                self.uncovered[p * words + t / 64] |= 1 << (t % 64);
                if self.pools[p].covered_days == self.horizon_days {
                    self.pools[p].covered_days = t as u32;
                }
            }
        }
    }

    /// Step 2: components, inputs first (positions are in that order).
    fn supply_components(&mut self, t: usize) {
        let (structure, flat) = (self.structure, self.flat);
        for &k in &self.visit {
            if !self.dirty[k] {
                continue;
            }
            self.dirty[k] = false;
            let (yesterday_avail, yesterday_cap) = (self.avail[k], self.cap[k]);
            let (covered, out) = (&self.covered, &self.out);
            self.cap[k] = capacity(
                structure,
                k,
                |p| covered[p as usize],
                |s| s != NO_SUPPLIER && out[s as usize],
            );
            let avail = &self.avail;
            let inputs = || {
                flat.inputs_of(k)
                    .iter()
                    .map(|&i| avail[i as usize])
                    .fold(1.0, f64::min)
            };
            let drew;
            (self.avail[k], drew) =
                supply(flat.demand[k], self.cap[k], inputs, &mut self.inventory[k]);
            if drew {
                // Less stock tomorrow: look again.
                self.drawing.push(k);
            }
            // Yesterday's values are still in place: keep the changes.
            if self.avail[k] != yesterday_avail {
                self.avail_seen.push((k as u32, t as u16, self.avail[k]));
                for &u in flat.users_of(k) {
                    self.dirty[u as usize] = true;
                }
                for &l in flat.lines_of(k) {
                    self.line_dirty[l as usize] = true;
                }
            }
            if self.cap[k] != yesterday_cap {
                self.cap_seen.push((k as u32, t as u16, self.cap[k]));
            }
        }
    }

    /// Step 3: lines.
    fn run_lines(&mut self, t: usize) {
        let (structure, flat) = (self.structure, self.flat);
        for l in 0..structure.lines.len() {
            if structure.lines[l].idled {
                continue;
            }
            if self.line_dirty[l] {
                self.line_dirty[l] = false;
                let out_l = flat
                    .bom_of(l)
                    .iter()
                    .map(|&k| self.avail[k as usize])
                    .fold(1.0, f64::min);
                if out_l != self.line_out[l] {
                    self.out_seen.push((l as u32, t as u16, out_l));
                    self.line_out[l] = out_l;
                }
            }
            let out_l = self.line_out[l];
            if out_l >= 1.0 - EPS {
                continue;
            }
            let state = DayState {
                structure,
                avail: &self.avail,
                cap: &self.cap,
                covered: &self.covered,
                out: &self.out,
            };
            let outcome = &mut self.lines[l];
            short_day(
                structure,
                l as u32,
                outcome,
                t,
                out_l,
                &state,
                self.pool_licenses,
            );
        }
    }

    fn finish(self) -> Evaluation {
        let n = self.structure.components.len();
        Evaluation {
            as_of: self.as_of,
            horizon_days: self.horizon_days,
            lines: self.lines,
            pools: self.pools,
            history: History {
                avail: Sparse::build(n, &self.avail_seen),
                cap: Sparse::build(n, &self.cap_seen),
                line_out: Sparse::build(self.structure.lines.len(), &self.out_seen),
                uncovered: self.uncovered,
                words: self.words,
            },
        }
    }
}

/// Step 2 for one component of daily `demand`: with `cap`, the least
/// `avail` of its inputs and its stock, its `avail` today, and whether it
/// drew stock (and will have less tomorrow).
#[inline]
pub(super) fn supply(
    demand: f64,
    cap: f64,
    inputs: impl FnOnce() -> f64,
    inventory: &mut f64,
) -> (f64, bool) {
    if demand == 0.0 {
        return (1.0, false);
    }
    let supply = cap * inputs() * demand;
    let draw = (demand - supply).min(*inventory);
    *inventory -= draw;
    ((supply + draw) / demand, draw != 0.0)
}

/// `cap` of the component at position k: the shares of its sources that
/// are not out and have every pool covered.
pub(super) fn capacity(
    structure: &Structure,
    k: usize,
    covered: impl Fn(u32) -> bool,
    out: impl Fn(u32) -> bool,
) -> f64 {
    let flat = &structure.flat;
    let sources = flat.sources(k);
    if sources.is_empty() {
        return 1.0;
    }
    let mut sum = 0.0;
    for s in sources {
        if !out(flat.source_supplier[s]) && flat.pools_of_source(s).iter().all(|&p| covered(p)) {
            sum += flat.source_share[s];
        }
    }
    sum
}

/// The positions that can fall short under `outages`: the exposed ones,
/// those with a source that is out at some time, and everything above them.
fn exposed_with_outages(structure: &Structure, outages: &Outages) -> Vec<bool> {
    let flat = &structure.flat;
    let mut visited = flat.exposed.clone();
    for k in 0..visited.len() {
        if visited[k] {
            continue;
        }
        let sourced_by_out = flat
            .sources(k)
            .any(|s| outages.window(flat.source_supplier[s]).0 != i32::MAX);
        let input_visited = flat.inputs_of(k).iter().any(|&i| visited[i as usize]);
        visited[k] = sourced_by_out || input_visited;
    }
    visited
}

/// What the explanation of a stop reads of its day.
pub(super) trait Day {
    /// `avail` of component `c` (by index).
    fn avail(&self, c: u32) -> f64;
    /// `cap` of component `c` (by index).
    fn cap(&self, c: u32) -> f64;
    fn covered(&self, pool: u32) -> bool;
    fn out(&self, supplier: u32) -> bool;

    /// The component of `candidates` (indices, in index order) with the
    /// smallest `avail`; ties go to the smallest index, which is the
    /// smallest id.
    fn least_available(&self, candidates: &[u32]) -> Option<u32> {
        let mut best: Option<(u32, f64)> = None;
        for &c in candidates {
            let avail = self.avail(c);
            if best.is_none_or(|(_, b)| avail < b) {
                best = Some((c, avail));
            }
        }
        best.map(|(c, _)| c)
    }
}

/// The state of one simulated day of a full run; `avail` and `cap` by
/// position.
struct DayState<'a> {
    structure: &'a Structure,
    avail: &'a [f64],
    cap: &'a [f64],
    covered: &'a [bool],
    /// By supplier index.
    out: &'a [bool],
}

impl Day for DayState<'_> {
    fn avail(&self, c: u32) -> f64 {
        self.avail[self.structure.flat.position[c as usize] as usize]
    }

    fn cap(&self, c: u32) -> f64 {
        self.cap[self.structure.flat.position[c as usize] as usize]
    }

    fn covered(&self, pool: u32) -> bool {
        self.covered[pool as usize]
    }

    fn out(&self, supplier: u32) -> bool {
        supplier != NO_SUPPLIER && self.out[supplier as usize]
    }
}

/// Fills in why a line stops, from the state of its stop day.
/// Line `l` on day `t` at `out` of its output (less than all): its units
/// lost, and on the first such day, when it stops and why.
pub(super) fn short_day(
    structure: &Structure,
    l: u32,
    outcome: &mut LineOutcome,
    t: usize,
    out: f64,
    day: &impl Day,
    pool_licenses: &[Vec<String>],
) {
    let line = &structure.lines[l as usize];
    outcome.units_lost += line.units_per_day * (1.0 - out);
    if outcome.days_to_stop.is_none() {
        outcome.days_to_stop = Some(t as u32);
        outcome.output_fraction = out;
        explain_stop(structure, outcome, &line.bom, day, pool_licenses);
    }
}

pub(super) fn explain_stop(
    structure: &Structure,
    outcome: &mut LineOutcome,
    bom: &[u32],
    day: &impl Day,
    pool_licenses: &[Vec<String>],
) {
    let Some(bottleneck) = day.least_available(bom) else {
        return;
    };
    outcome.bottleneck = Some(bottleneck);
    let mut current = bottleneck;
    outcome.root_cause_path.push(current);
    // The input graph is acyclic, so a path is never longer than the network.
    while outcome.root_cause_path.len() <= structure.components.len() {
        let node = &structure.components[current as usize];
        if day.cap(current) < 1.0 - EPS || node.inputs.is_empty() {
            break;
        }
        match day.least_available(&node.inputs) {
            Some(next) => {
                current = next;
                outcome.root_cause_path.push(current);
            }
            None => break,
        }
    }
    let last = &structure.components[current as usize];
    outcome.blocking_pools = last
        .pools
        .iter()
        .copied()
        .filter(|&p| !day.covered(p))
        .collect();
    outcome.blocking_suppliers = last
        .sources
        .iter()
        .map(|s| s.supplier)
        .filter(|&s| day.out(s))
        .collect();
    let mut licenses: Vec<String> = outcome
        .blocking_pools
        .iter()
        .flat_map(|&p| pool_licenses[p as usize].iter().cloned())
        .collect();
    licenses.sort();
    outcome.blocking_licenses = licenses;
}
