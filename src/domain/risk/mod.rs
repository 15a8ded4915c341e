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

/// A what-if: the outcomes assumed for licences.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scenario {
    pub pending: PendingAssumption,
    pub decision_delay_days: u32,
    pub overrides: Vec<LicenseOverride>,
}

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
    let mut seen = std::collections::HashSet::new();
    for (i, o) in scenario.overrides.iter().enumerate() {
        let field = format!("scenario.overrides[{i}].license_id");
        if !seen.insert(o.license_id.as_str()) {
            violations.push(super::Violation::new(
                field,
                format!("licence {:?} is overridden more than once", o.license_id),
            ));
        } else if !exists(&o.license_id) {
            violations.push(super::Violation::new(
                field,
                format!("no licence {:?} exists", o.license_id),
            ));
        }
    }
}
