//! The risk model: a daily flow simulation of the supply network that says
//! which production lines fall short, from which day, and why.
//!
//! The model is exact and deterministic so that independent implementations
//! agree to within floating-point rounding; every rule here follows the
//! project's risk model document, including its orders and tie-breaks.
//!
//! - [`structure`]: what does not depend on licences or dates (demand, pools,
//!   the topological order), built once per network revision.
//! - [`simulate`]: one evaluation for a date, a horizon and a scenario.
//! - [`report`]: the scopes of an exposure and the orders of its lists.
//! - [`cone`]: the simulation again for one changed supplier or licence,
//!   over the components it can touch, against a base run.
//! - [`decide`]: supplier impacts and licence stakes, from cone runs.
//! - [`forecast`]: stop probabilities and dates over sampled licence
//!   decisions, from cone runs.

pub mod cone;
pub mod decide;
pub mod forecast;
pub mod report;
pub mod simulate;
pub mod structure;

#[cfg(test)]
mod tests;

use super::date::Date;
use super::record::LicenseStatus;

/// Comparisons against thresholds absorb rounding within this margin.
pub const EPS: f64 = 1e-9;

/// Days after submission that stand in for a missing expected decision date
/// (about the statutory review period).
pub const REVIEW_DAYS: i64 = 45;

/// The horizon when a request gives none, in days.
pub const DEFAULT_HORIZON_DAYS: u32 = 90;
/// The longest horizon and the longest decision delay, in days.
pub const MAX_DAYS: u32 = 730;

/// What to assume of licences whose outcome is not known yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PendingAssumption {
    /// Pending licences are never granted.
    #[default]
    Denied,
    /// Pending licences are granted on their expected decision date (or
    /// submission + 45 days) plus the scenario's delay.
    ApprovedAsExpected,
}

/// One licence's assumed outcome.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LicenseOverride {
    pub license_id: String,
    pub status: LicenseStatus,
    /// For an approval: the first day it may be used.
    pub effective_on: Option<Date>,
}

/// One supplier out of action for a while: a fire, a flood, a sanction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SupplierOutage {
    pub supplier_id: String,
    /// The first day out; `None` means the first simulated day.
    pub starts_on: Option<Date>,
    /// Calendar days out; 0 means to the end of the horizon.
    pub days: u32,
}

impl SupplierOutage {
    /// The day numbers out, `[first, end)`, for a simulation from `as_of`.
    pub fn days_out(&self, as_of: Date) -> (i32, i32) {
        let first = day_number(self.starts_on.unwrap_or(as_of));
        let end = match self.days {
            0 => i32::MAX,
            days => first.saturating_add(days as i32),
        };
        (first, end)
    }
}

/// A what-if arrival of a component (an airfreighted batch, a spot
/// purchase), added to the stored shipments.
#[derive(Clone, Debug)]
pub struct ScenarioShipment {
    pub component_id: String,
    /// Finite and positive (the request is refused otherwise).
    pub units: f64,
    pub arrives_on: Date,
}

// A scenario is a cache key: its units compare and hash by their bits.
impl PartialEq for ScenarioShipment {
    fn eq(&self, other: &Self) -> bool {
        self.component_id == other.component_id
            && self.units.to_bits() == other.units.to_bits()
            && self.arrives_on == other.arrives_on
    }
}

impl Eq for ScenarioShipment {}

impl std::hash::Hash for ScenarioShipment {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.component_id.hash(state);
        self.units.to_bits().hash(state);
        self.arrives_on.hash(state);
    }
}

/// A what-if: the outcomes assumed for licences, the suppliers out, the
/// arrivals added, and the lines taken off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scenario {
    pub pending: PendingAssumption,
    pub decision_delay_days: u32,
    pub overrides: Vec<LicenseOverride>,
    pub outages: Vec<SupplierOutage>,
    /// Arrivals on top of the stored shipments, in the order given.
    pub shipments: Vec<ScenarioShipment>,
    /// Lines taken off for the whole horizon, each at most once.
    pub idled_lines: Vec<String>,
}

/// A risk question: what an evaluation depends on besides the network.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Query {
    pub as_of: Date,
    pub horizon_days: u32,
    pub scenario: Scenario,
}

/// The longest supplier outage, in days.
pub const MAX_OUTAGE_DAYS: u32 = 730;

/// The day number of a date, for arithmetic in the simulation.
pub fn day_number(date: Date) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce()
}

/// The date of a day number.
pub fn date_of(day: i32) -> Date {
    Date::from_num_days_from_ce_opt(day).unwrap_or(Date::MAX)
}

/// Appends a violation for every override that names no licence (by
/// `exists`) or names one a second time. Field paths are under `scenario`.
pub fn check_overrides(
    scenario: &Scenario,
    exists: impl Fn(&str) -> bool,
    violations: &mut Vec<super::Violation>,
) {
    let ids = scenario.overrides.iter().map(|o| o.license_id.as_str());
    check_named_once(
        ids,
        "overrides",
        "license_id",
        "licence",
        "overridden",
        exists,
        violations,
    );
}

/// Appends a violation for every outage that names no supplier (by
/// `exists`), names one a second time, or lasts longer than
/// [`MAX_OUTAGE_DAYS`]. Field paths are under `scenario`.
pub fn check_outages(
    scenario: &Scenario,
    exists: impl Fn(&str) -> bool,
    violations: &mut Vec<super::Violation>,
) {
    let ids = scenario.outages.iter().map(|o| o.supplier_id.as_str());
    check_named_once(
        ids,
        "outages",
        "supplier_id",
        "supplier",
        "out",
        exists,
        violations,
    );
    for (i, o) in scenario.outages.iter().enumerate() {
        if o.days > MAX_OUTAGE_DAYS {
            violations.push(super::Violation::new(
                format!("scenario.outages[{i}].days"),
                format!(
                    "must be 0 to {MAX_OUTAGE_DAYS} days (0 means to the end of the horizon), not {}",
                    o.days
                ),
            ));
        }
    }
}

/// Appends a violation for every idled line that names no line (by
/// `exists`) or names one a second time. Field paths are under `scenario`.
pub fn check_idled_lines(
    scenario: &Scenario,
    exists: impl Fn(&str) -> bool,
    violations: &mut Vec<super::Violation>,
) {
    let mut seen = std::collections::HashSet::new();
    for (i, id) in scenario.idled_lines.iter().enumerate() {
        let path = format!("scenario.idled_lines[{i}]");
        if !seen.insert(id.as_str()) {
            violations.push(super::Violation::new(
                path,
                format!("line {id:?} is idled more than once"),
            ));
        } else if !exists(id) {
            violations.push(super::Violation::new(
                path,
                format!("no line {id:?} exists"),
            ));
        }
    }
}

/// Appends a violation for every scenario shipment whose component does
/// not exist (by `exists`). (Its units and date were checked as it was
/// read.)
pub fn check_shipments(
    scenario: &Scenario,
    exists: impl Fn(&str) -> bool,
    violations: &mut Vec<super::Violation>,
) {
    for (i, s) in scenario.shipments.iter().enumerate() {
        if !exists(&s.component_id) {
            violations.push(super::Violation::new(
                format!("scenario.shipments[{i}].component_id"),
                format!("no component {:?} exists", s.component_id),
            ));
        }
    }
}

/// Appends a violation for every entry of `scenario.{list}` whose `field`
/// names no `kind` (by `exists`) or names one a second time.
fn check_named_once<'a>(
    ids: impl Iterator<Item = &'a str>,
    list: &str,
    field: &str,
    kind: &str,
    verb: &str,
    exists: impl Fn(&str) -> bool,
    violations: &mut Vec<super::Violation>,
) {
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.enumerate() {
        let path = format!("scenario.{list}[{i}].{field}");
        if !seen.insert(id) {
            violations.push(super::Violation::new(
                path,
                format!("{kind} {id:?} is {verb} more than once"),
            ));
        } else if !exists(id) {
            violations.push(super::Violation::new(
                path,
                format!("no {kind} {id:?} exists"),
            ));
        }
    }
}
