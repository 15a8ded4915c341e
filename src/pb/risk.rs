//! Risk questions and answers between protobuf and the domain: what a
//! request asks (its date, horizon, scenario, scope and parameters, each
//! checked as far as the request alone can tell, every problem reported
//! with its field path) and what the model answers, as messages.
//!
//! Whether a scenario's ids name records that exist is the api's to check
//! against the view it answers from.

use crate::domain::date::{format_date, format_optional_date, Date};
use crate::domain::record::LicenseStatus;
use crate::domain::risk::decide::{LicenseStake, SupplierImpact, DEFAULT_RECOVERY_DAYS};
use crate::domain::risk::forecast::{
    LineForecast, DEFAULT_SAMPLES, DEFAULT_SPREAD_DAYS, MAX_SAMPLES, MAX_SPREAD_DAYS,
};
use crate::domain::risk::report::{Exposure, LineRisk, PoolCoverage, Scope};
use crate::domain::risk::{
    LicenseOverride, PendingAssumption, Query, Scenario, ScenarioShipment, SupplierOutage,
    DEFAULT_HORIZON_DAYS, MAX_DAYS, MAX_OUTAGE_DAYS,
};
use crate::domain::validate::identifier_problem;
use crate::domain::Violation;

use super::convert::DateReader;
use super::generated as pb;

/// The question every risk request shares: `as_of` (empty: `today`), the
/// horizon and the scenario.
pub fn query_from_pb(
    as_of: &str,
    today: Date,
    horizon_days: i32,
    scenario: Option<pb::Scenario>,
    violations: &mut Vec<Violation>,
) -> Query {
    let as_of = DateReader {
        path: String::new(),
        violations,
    }
    .read("as_of", as_of)
    .unwrap_or(today);
    let horizon_days = horizon_from_pb(horizon_days, violations);
    Query {
        as_of,
        horizon_days,
        scenario: scenario_from_pb(scenario.unwrap_or_default(), violations),
    }
}

fn horizon_from_pb(horizon_days: i32, violations: &mut Vec<Violation>) -> u32 {
    match horizon_days {
        0 => DEFAULT_HORIZON_DAYS,
        h if (1..=MAX_DAYS as i32).contains(&h) => h as u32,
        h => {
            violations.push(Violation::new(
                "horizon_days",
                format!("must be 1 to {MAX_DAYS} days (0 means {DEFAULT_HORIZON_DAYS}), not {h}"),
            ));
            DEFAULT_HORIZON_DAYS
        }
    }
}

/// A scenario as the request gives it; its ids are checked for form only.
pub fn scenario_from_pb(scenario: pb::Scenario, violations: &mut Vec<Violation>) -> Scenario {
    let pending = match pb::PendingAssumption::try_from(scenario.pending) {
        Ok(pb::PendingAssumption::ApprovedAsExpected) => PendingAssumption::ApprovedAsExpected,
        Ok(_) => PendingAssumption::Denied,
        Err(_) => {
            violations.push(Violation::new(
                "scenario.pending",
                format!("{} is not a PendingAssumption", scenario.pending),
            ));
            PendingAssumption::Denied
        }
    };
    let delay = scenario.decision_delay_days;
    if !(0..=MAX_DAYS as i32).contains(&delay) {
        violations.push(Violation::new(
            "scenario.decision_delay_days",
            format!("must be 0 to {MAX_DAYS} days, not {delay}"),
        ));
    }
    Scenario {
        pending,
        decision_delay_days: delay.clamp(0, MAX_DAYS as i32) as u32,
        overrides: overrides_from_pb(scenario.overrides, violations),
        outages: outages_from_pb(scenario.outages, violations),
        shipments: shipments_from_pb(scenario.shipments, violations),
        idled_lines: idled_lines_from_pb(scenario.idled_lines, violations),
    }
}

/// The scenario's arrivals; one without a valid date is reported and left
/// out (the request is refused).
fn shipments_from_pb(
    shipments: Vec<pb::ScenarioShipment>,
    violations: &mut Vec<Violation>,
) -> Vec<ScenarioShipment> {
    let mut read = Vec::with_capacity(shipments.len());
    for (i, s) in shipments.into_iter().enumerate() {
        let path = format!("scenario.shipments[{i}]");
        if let Some(problem) = identifier_problem(&s.component_id) {
            violations.push(Violation::new(format!("{path}.component_id"), problem));
        }
        if s.arrives_on.is_empty() {
            violations.push(Violation::new(
                format!("{path}.arrives_on"),
                "must be a date (YYYY-MM-DD)",
            ));
        }
        if !(s.units.is_finite() && s.units > 0.0) {
            violations.push(Violation::new(
                format!("{path}.units"),
                format!("must be a finite number > 0, not {}", s.units),
            ));
        }
        let arrives_on = DateReader { path, violations }.read("arrives_on", &s.arrives_on);
        if let Some(arrives_on) = arrives_on {
            read.push(ScenarioShipment {
                component_id: s.component_id,
                units: s.units,
                arrives_on,
            });
        }
    }
    read
}

fn idled_lines_from_pb(lines: Vec<String>, violations: &mut Vec<Violation>) -> Vec<String> {
    for (i, id) in lines.iter().enumerate() {
        if let Some(problem) = identifier_problem(id) {
            violations.push(Violation::new(
                format!("scenario.idled_lines[{i}]"),
                problem,
            ));
        }
    }
    lines
}

fn overrides_from_pb(
    overrides: Vec<pb::LicenseOverride>,
    violations: &mut Vec<Violation>,
) -> Vec<LicenseOverride> {
    let mut read = Vec::with_capacity(overrides.len());
    for (i, o) in overrides.into_iter().enumerate() {
        let path = format!("scenario.overrides[{i}]");
        if let Some(problem) = identifier_problem(&o.license_id) {
            violations.push(Violation::new(format!("{path}.license_id"), problem));
        }
        let status = LicenseStatus::from_number(o.status);
        if status == LicenseStatus::Unspecified {
            violations.push(Violation::new(
                format!("{path}.status"),
                "must be LICENSE_STATUS_PENDING, LICENSE_STATUS_APPROVED, LICENSE_STATUS_REJECTED or LICENSE_STATUS_REVOKED",
            ));
        }
        let effective_on = DateReader { path, violations }.read("effective_on", &o.effective_on);
        read.push(LicenseOverride {
            license_id: o.license_id,
            status,
            effective_on,
        });
    }
    read
}

fn outages_from_pb(
    outages: Vec<pb::SupplierOutage>,
    violations: &mut Vec<Violation>,
) -> Vec<SupplierOutage> {
    let mut read = Vec::with_capacity(outages.len());
    for (i, o) in outages.into_iter().enumerate() {
        let path = format!("scenario.outages[{i}]");
        if let Some(problem) = identifier_problem(&o.supplier_id) {
            violations.push(Violation::new(format!("{path}.supplier_id"), problem));
        }
        if o.days < 0 {
            violations.push(Violation::new(
                format!("{path}.days"),
                format!(
                    "must be 0 to {MAX_OUTAGE_DAYS} days (0 means to the end of the horizon), not {}",
                    o.days
                ),
            ));
        }
        let starts_on = DateReader { path, violations }.read("starts_on", &o.starts_on);
        read.push(SupplierOutage {
            supplier_id: o.supplier_id,
            starts_on,
            days: o.days.max(0) as u32,
        });
    }
    read
}

/// What an exposure is of.
pub fn scope_from_pb(
    scope: Option<pb::get_exposure_request::Scope>,
    violations: &mut Vec<Violation>,
) -> Scope {
    use pb::get_exposure_request::Scope as S;
    let (field, scope) = match scope {
        None => return Scope::Network,
        Some(S::SupplierId(id)) => ("supplier_id", Scope::Supplier(id)),
        Some(S::ComponentId(id)) => ("component_id", Scope::Component(id)),
        Some(S::LineId(id)) => ("line_id", Scope::Line(id)),
        Some(S::Material(code)) => ("material", Scope::Material(code)),
        Some(S::Plant(plant)) => {
            if plant.is_empty() {
                violations.push(Violation::new("plant", "must name a plant"));
            }
            return Scope::Plant(plant);
        }
    };
    if let Scope::Supplier(id) | Scope::Component(id) | Scope::Line(id) | Scope::Material(id) =
        &scope
    {
        if let Some(problem) = identifier_problem(id) {
            violations.push(Violation::new(field, problem));
        }
    }
    scope
}

/// Whether an exposure is written with its lines (`EXPOSURE_VIEW_BASIC`
/// leaves them out).
pub fn with_lines_from_pb(view: i32, violations: &mut Vec<Violation>) -> bool {
    match pb::ExposureView::try_from(view) {
        Ok(pb::ExposureView::Basic) => false,
        Ok(pb::ExposureView::Full | pb::ExposureView::Unspecified) => true,
        Err(_) => {
            violations.push(Violation::new(
                "view",
                format!(
                    "{view} is not an ExposureView (EXPOSURE_VIEW_BASIC or EXPOSURE_VIEW_FULL)"
                ),
            ));
            true
        }
    }
}

/// `recovery_days` of a supplier listing (0: the default).
pub fn recovery_days_from_pb(days: i32, violations: &mut Vec<Violation>) -> u32 {
    match days {
        0 => DEFAULT_RECOVERY_DAYS,
        d if (1..=MAX_OUTAGE_DAYS as i32).contains(&d) => d as u32,
        d => {
            violations.push(Violation::new(
                "recovery_days",
                format!(
                    "must be 1 to {MAX_OUTAGE_DAYS} days (0 means {DEFAULT_RECOVERY_DAYS}), not {d}"
                ),
            ));
            DEFAULT_RECOVERY_DAYS
        }
    }
}

/// The statuses a licence-stakes listing weighs: PENDING when none is
/// given; APPROVED and UNSPECIFIED are refused.
pub fn stake_statuses_from_pb(
    statuses: &[i32],
    violations: &mut Vec<Violation>,
) -> Vec<LicenseStatus> {
    let mut read = Vec::with_capacity(statuses.len());
    for (i, &n) in statuses.iter().enumerate() {
        match LicenseStatus::from_number(n) {
            status @ (LicenseStatus::Pending | LicenseStatus::Rejected | LicenseStatus::Revoked) => {
                read.push(status)
            }
            _ => violations.push(Violation::new(
                format!("statuses[{i}]"),
                format!(
                    "{n} is not a status to weigh: LICENSE_STATUS_PENDING, LICENSE_STATUS_REJECTED or LICENSE_STATUS_REVOKED (an approved licence has no decision left)"
                ),
            )),
        }
    }
    if read.is_empty() {
        read.push(LicenseStatus::Pending);
    }
    read.sort_unstable();
    read.dedup();
    read
}

/// A forecast's own parameters, as read from its request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForecastParameters {
    pub samples: u32,
    /// 0: each material's own odds.
    pub approval_probability: f64,
    pub spread_days: u32,
}

pub fn forecast_parameters_from_pb(
    samples: i32,
    approval_probability: f64,
    spread_days: Option<i32>,
    violations: &mut Vec<Violation>,
) -> ForecastParameters {
    let samples = match samples {
        0 => DEFAULT_SAMPLES,
        n if (1..=MAX_SAMPLES as i32).contains(&n) => n as u32,
        n => {
            violations.push(Violation::new(
                "samples",
                format!("must be 1 to {MAX_SAMPLES} (0 means {DEFAULT_SAMPLES}), not {n}"),
            ));
            DEFAULT_SAMPLES
        }
    };
    if !(0.0..=1.0).contains(&approval_probability) {
        violations.push(Violation::new(
            "approval_probability",
            format!(
                "must be 0 to 1 (0 means each material's own odds), not {approval_probability}"
            ),
        ));
    }
    let spread_days = match spread_days {
        None => DEFAULT_SPREAD_DAYS,
        Some(d) if (0..=MAX_SPREAD_DAYS as i32).contains(&d) => d as u32,
        Some(d) => {
            violations.push(Violation::new(
                "decision_spread_days",
                format!(
                    "must be 0 to {MAX_SPREAD_DAYS} days (unset means {DEFAULT_SPREAD_DAYS}), not {d}"
                ),
            ));
            DEFAULT_SPREAD_DAYS
        }
    };
    ForecastParameters {
        samples,
        // -0.0 and 0.0 ask the same.
        approval_probability: approval_probability + 0.0,
        spread_days,
    }
}

/// Seconds of silence before a stream's heartbeat when the client asks
/// for none, and the most it may ask.
pub const DEFAULT_HEARTBEAT_SECONDS: u32 = 15;
pub const MAX_HEARTBEAT_SECONDS: u32 = 3600;

/// `heartbeat_seconds` of a stream (licence updates or a watch).
pub fn heartbeat_from_pb(seconds: u32, violations: &mut Vec<Violation>) -> std::time::Duration {
    let seconds = match seconds {
        0 => DEFAULT_HEARTBEAT_SECONDS,
        s if s <= MAX_HEARTBEAT_SECONDS => s,
        s => {
            violations.push(Violation::new(
                "heartbeat_seconds",
                format!(
                    "must be 1 to {MAX_HEARTBEAT_SECONDS} (0 means {DEFAULT_HEARTBEAT_SECONDS}), not {s}"
                ),
            ));
            DEFAULT_HEARTBEAT_SECONDS
        }
    };
    std::time::Duration::from_secs(u64::from(seconds))
}

pub fn line_risk_to_pb(line: LineRisk) -> pb::LineRisk {
    pb::LineRisk {
        at_risk: line.at_risk(),
        days_to_stop: line.days_to_stop.map(|d| d as i32),
        stop_date: format_optional_date(line.stop_date),
        line_id: line.line_id,
        plant: line.plant,
        output_fraction: line.output_fraction,
        units_lost: line.units_lost,
        bottleneck_component_id: line.bottleneck_component_id,
        root_cause_path: line.root_cause_path,
        blocking_pools: line
            .blocking_pools
            .into_iter()
            .map(|(supplier_id, material)| pb::PoolRef {
                supplier_id,
                material,
            })
            .collect(),
        blocking_license_ids: line.blocking_license_ids,
        blocking_supplier_ids: line.blocking_supplier_ids,
        shortfall_units: line.shortfall_units,
        idled: line.idled,
    }
}

pub fn supplier_impact_to_pb(impact: &SupplierImpact) -> pb::SupplierImpact {
    pb::SupplierImpact {
        supplier_id: impact.supplier_id.clone(),
        country: impact.country.clone(),
        units_lost: impact.units_lost,
        lines_hit: impact.lines_hit as i32,
        time_to_survive_days: impact.time_to_survive_days.map(|d| d as i32),
        first_hit_line_id: impact.first_hit_line_id.clone(),
        critical: impact.critical,
        risk_exposure_index: impact.risk_exposure_index,
    }
}

pub fn line_forecast_to_pb(line: &LineForecast) -> pb::LineForecast {
    pb::LineForecast {
        line_id: line.line_id.clone(),
        plant: line.plant.clone(),
        stop_probability: line.stop_probability,
        days_to_stop_p10: line.days_to_stop_p10.map(|d| d as i32),
        days_to_stop_p50: line.days_to_stop_p50.map(|d| d as i32),
        days_to_stop_p90: line.days_to_stop_p90.map(|d| d as i32),
        expected_units_lost: line.expected_units_lost,
    }
}

pub fn license_stake_to_pb(stake: &LicenseStake) -> pb::LicenseStake {
    pb::LicenseStake {
        license_id: stake.license_id.clone(),
        supplier_id: stake.supplier_id.clone(),
        material: stake.material.clone(),
        status: stake.status as i32,
        granted_on: format_date(stake.granted_on),
        units_at_stake: stake.units_at_stake,
        lines_at_stake: stake.lines_at_stake as i32,
        stop_date_if_denied: format_optional_date(stake.stop_date_if_denied),
        stop_date_if_granted: format_optional_date(stake.stop_date_if_granted),
    }
}

pub fn pool_coverage_to_pb(pool: &PoolCoverage) -> pb::PoolCoverage {
    pb::PoolCoverage {
        supplier_id: pool.supplier_id.clone(),
        material: pool.material.clone(),
        required_kg_per_day: pool.required_kg_per_day,
        approved_remaining_kg: pool.approved_remaining_kg,
        pending_kg: pool.pending_kg,
        covered_days: pool.covered_days as i32,
        first_uncovered_date: format_optional_date(pool.first_uncovered_date),
    }
}

/// The exposure as protobuf; with `lines` false, without its lines
/// (`EXPOSURE_VIEW_BASIC`).
pub fn exposure_to_pb(exposure: &Exposure, revision: u64, lines: bool) -> pb::Exposure {
    pb::Exposure {
        as_of: format_date(exposure.as_of),
        horizon_days: exposure.horizon_days as i32,
        revision,
        lines_in_scope: exposure.lines_in_scope as i32,
        lines_at_risk: exposure.lines_at_risk as i32,
        units_per_day: exposure.units_per_day,
        units_at_risk: exposure.units_at_risk,
        earliest_stop_date: format_optional_date(exposure.earliest_stop_date),
        lines: if lines {
            exposure
                .lines
                .iter()
                .cloned()
                .map(line_risk_to_pb)
                .collect()
        } else {
            Vec::new()
        },
        pools: exposure.pools.iter().map(pool_coverage_to_pb).collect(),
    }
}
