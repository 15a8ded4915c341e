//! `lodestone.v1.RiskService`: translates risk questions into queries of the
//! engine and answers back into messages.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::page::{decode_token, encode_token, page_size, PagePin};
use super::refuse_if_any;
use super::stream::{subscribe, StreamGauges, UpdateStream};
use super::watch::{WatchStream, WatchStreams};
use crate::domain::date::{format_optional_date, Date};
use crate::domain::record::LicenseStatus;
use crate::domain::risk::decide::{LicenseStake, SupplierImpact, DEFAULT_RECOVERY_DAYS};
use crate::domain::risk::forecast::{
    LineForecast, DEFAULT_SAMPLES, DEFAULT_SPREAD_DAYS, MAX_SAMPLES, MAX_SPREAD_DAYS,
};
use crate::domain::risk::report::{self, Exposure, LineRisk, PoolCoverage, Scope};
use crate::domain::risk::{
    check_outages, check_overrides, LicenseOverride, PendingAssumption, Scenario, SupplierOutage,
    DEFAULT_HORIZON_DAYS, MAX_DAYS, MAX_OUTAGE_DAYS,
};
use crate::domain::validate::identifier_problem;
use crate::domain::{Error, Violation};
use crate::engine::{Abandon, Answer, Decided, Decision, Decisions, Query, RiskEngine};
use crate::network::Network;
use crate::pb::{self, risk_service_server::RiskService, DateReader};
use crate::view::View;
use crate::watch::{self, Clock, Question, Watches};

pub struct RiskApi {
    network: Arc<Network>,
    engine: Arc<RiskEngine>,
    shutdown: CancellationToken,
    streams: Arc<StreamGauges>,
    watches: WatchStreams,
    /// What day "today" is, for a question without `as_of`.
    clock: Arc<dyn Clock>,
}

impl RiskApi {
    pub fn new(
        network: Arc<Network>,
        engine: Arc<RiskEngine>,
        shutdown: CancellationToken,
        streams: Arc<StreamGauges>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let watches = Watches::new(
            network.clone(),
            engine.clone(),
            clock.clone(),
            shutdown.clone(),
        );
        RiskApi {
            watches: WatchStreams::new(watches, shutdown.clone(), streams.clone()),
            network,
            engine,
            shutdown,
            streams,
            clock,
        }
    }

    /// The engine's answer on `view`, computed on a blocking thread. When
    /// this future is dropped (the call's deadline passed, or its client
    /// cancelled it), the evaluation is given up.
    async fn answer(&self, view: Arc<View>, query: Query) -> Result<Answer, Status> {
        // A cached answer costs a lookup: no need for a blocking thread.
        if let Some(answer) = self.engine.cached(view.epoch, view.revision, &query) {
            return Ok(answer);
        }
        let engine = self.engine.clone();
        let abandoned = AbandonOnDrop(Arc::new(Abandon::new()));
        let flag = abandoned.0.clone();
        // The call's span, so that the evaluation traces under it.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| engine.answer_unless(&view, &query, &flag))
        })
        .await
        .map_err(|e| Status::from(Error::Storage(format!("the evaluation task failed: {e}"))))?
        // Only a dropped call sets the flag, and then nobody reads this.
        .ok_or_else(|| Status::cancelled("the evaluation was abandoned"))
    }
}

impl RiskApi {
    /// The decision listing for a page: the one its first page read when
    /// pinned elsewhere, else computed on `view` on a blocking thread (given
    /// up when this future is dropped).
    async fn decide(
        &self,
        view: Arc<View>,
        query: Query,
        decision: Decision,
        paging: &Paging,
    ) -> Result<Decisions, Status> {
        if let Some(pin) = paging.pinned_elsewhere(&view) {
            return self
                .engine
                .cached_decision(pin.epoch, pin.revision, &query, &decision)
                .ok_or_else(|| {
                    Error::PageTokenExpired {
                        revision: pin.revision,
                    }
                    .into()
                });
        }
        if let Some(kept) =
            self.engine
                .cached_decision(view.epoch, view.revision, &query, &decision)
        {
            return Ok(kept);
        }
        let engine = self.engine.clone();
        let abandoned = AbandonOnDrop(Arc::new(Abandon::new()));
        let flag = abandoned.0.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| engine.decide_unless(&view, &query, &decision, &flag))
        })
        .await
        .map_err(|e| Status::from(Error::Storage(format!("the decision task failed: {e}"))))?
        .ok_or_else(|| Status::cancelled("the evaluation was abandoned"))
    }
}

/// Abandons when dropped: the call it belongs to has gone.
struct AbandonOnDrop(Arc<Abandon>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Reads the parameters every risk question shares, reporting what is wrong.
fn decode_query(
    as_of: &str,
    today: Date,
    horizon_days: i32,
    scenario: Option<pb::Scenario>,
    view: &View,
    violations: &mut Vec<Violation>,
) -> Query {
    let mut dates = DateReader {
        path: String::new(),
        violations,
    };
    let as_of: Date = dates.read("as_of", as_of).unwrap_or(today);
    let horizon_days = match horizon_days {
        0 => DEFAULT_HORIZON_DAYS,
        h if (1..=MAX_DAYS as i32).contains(&h) => h as u32,
        h => {
            violations.push(Violation::new(
                "horizon_days",
                format!("must be 1 to {MAX_DAYS} days (0 means {DEFAULT_HORIZON_DAYS}), not {h}"),
            ));
            DEFAULT_HORIZON_DAYS
        }
    };
    let scenario = scenario.unwrap_or_default();
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
    let mut overrides = Vec::with_capacity(scenario.overrides.len());
    for (i, o) in scenario.overrides.into_iter().enumerate() {
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
        let effective_on = DateReader {
            path: path.clone(),
            violations,
        }
        .read("effective_on", &o.effective_on);
        overrides.push(LicenseOverride {
            license_id: o.license_id,
            status,
            effective_on,
        });
    }
    let mut outages = Vec::with_capacity(scenario.outages.len());
    for (i, o) in scenario.outages.into_iter().enumerate() {
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
        let starts_on = DateReader {
            path: path.clone(),
            violations,
        }
        .read("starts_on", &o.starts_on);
        outages.push(SupplierOutage {
            supplier_id: o.supplier_id,
            starts_on,
            days: o.days.max(0) as u32,
        });
    }
    let scenario = Scenario {
        pending,
        decision_delay_days: delay.clamp(0, MAX_DAYS as i32) as u32,
        overrides,
        outages,
    };
    check_overrides(
        &scenario,
        |id| identifier_problem(id).is_some() || view.licenses.contains_key(id),
        violations,
    );
    check_outages(
        &scenario,
        |id| identifier_problem(id).is_some() || view.suppliers.contains_key(id),
        violations,
    );
    Query {
        as_of,
        horizon_days,
        scenario,
    }
}

fn scope_from(
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

pub(super) fn line_to_pb(line: LineRisk) -> pb::LineRisk {
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
    }
}

fn impact_to_pb(impact: &SupplierImpact) -> pb::SupplierImpact {
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

fn forecast_to_pb(line: &LineForecast) -> pb::LineForecast {
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

fn stake_to_pb(stake: &LicenseStake) -> pb::LicenseStake {
    pb::LicenseStake {
        license_id: stake.license_id.clone(),
        supplier_id: stake.supplier_id.clone(),
        material: stake.material.clone(),
        status: stake.status as i32,
        granted_on: crate::domain::date::format_date(stake.granted_on),
        units_at_stake: stake.units_at_stake,
        lines_at_stake: stake.lines_at_stake as i32,
        stop_date_if_denied: format_optional_date(stake.stop_date_if_denied),
        stop_date_if_granted: format_optional_date(stake.stop_date_if_granted),
    }
}

/// The statuses a licence-stakes listing weighs: PENDING when none is
/// given; APPROVED and UNSPECIFIED are refused.
fn stake_statuses(statuses: &[i32], violations: &mut Vec<Violation>) -> Vec<LicenseStatus> {
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

/// Where a pinned listing's page starts, and the query its answer is for.
struct Paging {
    listing: String,
    offset: usize,
    size: usize,
    /// Set for a later page: the answer its first page read.
    pin: Option<PagePin>,
}

fn forged_token() -> Error {
    Error::invalid_argument("page_token", "is not a page token this service issued")
}

impl Paging {
    /// Reads `page_size` and `page_token` of `listing`; a later page
    /// answers for the day its first page answered for.
    fn read(
        listing: String,
        page_size_asked: i32,
        token: &str,
        query: &mut Query,
    ) -> Result<Paging, Status> {
        let size = page_size(page_size_asked)?;
        let cursor = decode_token(token, &listing)?;
        let offset = match &cursor.after {
            Some(after) => after.parse::<usize>().map_err(|_| forged_token())?,
            None => 0,
        };
        let pin = match cursor.after {
            Some(_) => {
                query.as_of =
                    crate::domain::date::parse_date(&cursor.pin.as_of).ok_or_else(forged_token)?;
                Some(cursor.pin)
            }
            None => None,
        };
        Ok(Paging {
            listing,
            offset,
            size,
            pin,
        })
    }

    /// Whether a later page reads another revision than `view`'s.
    fn pinned_elsewhere(&self, view: &View) -> Option<&PagePin> {
        self.pin
            .as_ref()
            .filter(|pin| (pin.epoch, pin.revision) != (view.epoch, view.revision))
    }

    /// The positions of this page in a listing of `total`, and the token
    /// of the next page of the answer (`epoch`, `revision`, `as_of`).
    fn page(
        &self,
        total: usize,
        epoch: u64,
        revision: u64,
        as_of: Date,
    ) -> Result<(std::ops::Range<usize>, String), Status> {
        // Tokens are only issued for a position inside their answer.
        if self.offset > total {
            return Err(forged_token().into());
        }
        let end = self.offset.saturating_add(self.size).min(total);
        let next = if end < total {
            let pin = PagePin {
                epoch,
                revision,
                as_of: crate::domain::date::format_date(as_of),
            };
            encode_token(&self.listing, &end.to_string(), &pin)
        } else {
            String::new()
        };
        Ok((self.offset..end, next))
    }
}

fn pool_to_pb(pool: &PoolCoverage) -> pb::PoolCoverage {
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
fn exposure_to_pb(exposure: &Exposure, revision: u64, lines: bool) -> pb::Exposure {
    pb::Exposure {
        as_of: crate::domain::date::format_date(exposure.as_of),
        horizon_days: exposure.horizon_days as i32,
        revision,
        lines_in_scope: exposure.lines_in_scope as i32,
        lines_at_risk: exposure.lines_at_risk as i32,
        units_per_day: exposure.units_per_day,
        units_at_risk: exposure.units_at_risk,
        earliest_stop_date: format_optional_date(exposure.earliest_stop_date),
        lines: if lines {
            exposure.lines.iter().cloned().map(line_to_pb).collect()
        } else {
            Vec::new()
        },
        pools: exposure.pools.iter().map(pool_to_pb).collect(),
    }
}

#[tonic::async_trait]
impl RiskService for RiskApi {
    async fn get_exposure(
        &self,
        request: Request<pb::GetExposureRequest>,
    ) -> Result<Response<pb::Encoded<pb::Exposure>>, Status> {
        let r = request.into_inner();
        let view = self.network.view();
        let mut violations = Vec::new();
        let scope = scope_from(r.scope, &mut violations);
        let query = decode_query(
            &r.as_of,
            self.clock.today(),
            r.horizon_days,
            r.scenario,
            &view,
            &mut violations,
        );
        let lines = match pb::ExposureView::try_from(r.view) {
            Ok(pb::ExposureView::Basic) => false,
            Ok(pb::ExposureView::Full | pb::ExposureView::Unspecified) => true,
            Err(_) => {
                violations.push(Violation::new(
                    "view",
                    format!(
                        "{} is not an ExposureView (EXPOSURE_VIEW_BASIC or EXPOSURE_VIEW_FULL)",
                        r.view
                    ),
                ));
                true
            }
        };
        refuse_if_any(violations)?;
        let answer = self.answer(view, query).await?;
        let revision = answer.revision;
        let written = answer.written_exposure(&scope, lines, |exposure| {
            prost::Message::encode_to_vec(&exposure_to_pb(exposure, revision, lines)).into()
        })?;
        Ok(Response::new(pb::Encoded::from_bytes(written)))
    }

    async fn list_at_risk_lines(
        &self,
        request: Request<pb::ListAtRiskLinesRequest>,
    ) -> Result<Response<pb::ListAtRiskLinesResponse>, Status> {
        let r = request.into_inner();
        let view = self.network.view();
        let mut violations = Vec::new();
        let mut query = decode_query(
            &r.as_of,
            self.clock.today(),
            r.horizon_days,
            r.scenario,
            &view,
            &mut violations,
        );
        refuse_if_any(violations)?;
        // The listing as asked: an empty `as_of` stays empty here, so that a
        // listing's later pages still match after midnight.
        let listing = format!(
            "at-risk as_of={:?} horizon={} {:?} plant={:?}",
            r.as_of, query.horizon_days, query.scenario, r.plant
        );
        let paging = Paging::read(listing, r.page_size, &r.page_token, &mut query)?;
        // Every page of a listing comes from the answer its first page read,
        // pinned by store epoch and revision.
        let answer = match paging.pinned_elsewhere(&view) {
            Some(pin) => self.engine.cached(pin.epoch, pin.revision, &query).ok_or(
                Error::PageTokenExpired {
                    revision: pin.revision,
                },
            )?,
            None => self.answer(view, query).await?,
        };
        let plant = (!r.plant.is_empty()).then_some(r.plant.as_str());
        let lines = answer.at_risk_order(plant);
        let total = lines.len();
        let (page, next_page_token) =
            paging.page(total, answer.epoch, answer.revision, answer.as_of)?;
        Ok(Response::new(pb::ListAtRiskLinesResponse {
            lines: lines[page]
                .iter()
                .map(|&l| {
                    line_to_pb(report::line_report(
                        &answer.structure,
                        &answer.evaluation,
                        l,
                    ))
                })
                .collect(),
            next_page_token,
            total_size: total as i32,
            revision: answer.revision,
        }))
    }

    async fn list_supplier_impacts(
        &self,
        request: Request<pb::ListSupplierImpactsRequest>,
    ) -> Result<Response<pb::ListSupplierImpactsResponse>, Status> {
        let r = request.into_inner();
        let view = self.network.view();
        let mut violations = Vec::new();
        let mut query = decode_query(
            &r.as_of,
            self.clock.today(),
            r.horizon_days,
            r.scenario,
            &view,
            &mut violations,
        );
        let recovery_days = match r.recovery_days {
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
        };
        refuse_if_any(violations)?;
        let listing = format!(
            "supplier-impacts as_of={:?} horizon={} {:?} plant={:?} recovery={recovery_days}",
            r.as_of, query.horizon_days, query.scenario, r.plant
        );
        let paging = Paging::read(listing, r.page_size, &r.page_token, &mut query)?;
        let decision = Decision::SupplierImpacts {
            plant: (!r.plant.is_empty()).then_some(r.plant),
            recovery_days,
        };
        let decisions = self.decide(view, query, decision, &paging).await?;
        let Decided::SupplierImpacts(impacts) = &decisions.decided else {
            return Err(Error::Storage("a supplier listing answered with licences".into()).into());
        };
        let (page, next_page_token) = paging.page(
            impacts.len(),
            decisions.epoch,
            decisions.revision,
            decisions.as_of,
        )?;
        Ok(Response::new(pb::ListSupplierImpactsResponse {
            impacts: impacts[page].iter().map(impact_to_pb).collect(),
            next_page_token,
            total_size: impacts.len() as i32,
            revision: decisions.revision,
            recovery_days: recovery_days as i32,
        }))
    }

    async fn list_license_stakes(
        &self,
        request: Request<pb::ListLicenseStakesRequest>,
    ) -> Result<Response<pb::ListLicenseStakesResponse>, Status> {
        let r = request.into_inner();
        let view = self.network.view();
        let mut violations = Vec::new();
        let mut query = decode_query(
            &r.as_of,
            self.clock.today(),
            r.horizon_days,
            r.scenario,
            &view,
            &mut violations,
        );
        let statuses = stake_statuses(&r.statuses, &mut violations);
        refuse_if_any(violations)?;
        let listing = format!(
            "license-stakes as_of={:?} horizon={} {:?} plant={:?} statuses={statuses:?}",
            r.as_of, query.horizon_days, query.scenario, r.plant
        );
        let paging = Paging::read(listing, r.page_size, &r.page_token, &mut query)?;
        let decision = Decision::LicenseStakes {
            plant: (!r.plant.is_empty()).then_some(r.plant),
            statuses,
        };
        let decisions = self.decide(view, query, decision, &paging).await?;
        let Decided::LicenseStakes(stakes) = &decisions.decided else {
            return Err(Error::Storage("a licence listing answered with suppliers".into()).into());
        };
        let (page, next_page_token) = paging.page(
            stakes.len(),
            decisions.epoch,
            decisions.revision,
            decisions.as_of,
        )?;
        Ok(Response::new(pb::ListLicenseStakesResponse {
            stakes: stakes[page].iter().map(stake_to_pb).collect(),
            next_page_token,
            total_size: stakes.len() as i32,
            revision: decisions.revision,
        }))
    }

    async fn list_line_forecasts(
        &self,
        request: Request<pb::ListLineForecastsRequest>,
    ) -> Result<Response<pb::ListLineForecastsResponse>, Status> {
        let r = request.into_inner();
        let view = self.network.view();
        let mut violations = Vec::new();
        let mut query = decode_query(
            &r.as_of,
            self.clock.today(),
            r.horizon_days,
            r.scenario,
            &view,
            &mut violations,
        );
        let samples = match r.samples {
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
        let probability = r.approval_probability;
        if !(0.0..=1.0).contains(&probability) {
            violations.push(Violation::new(
                "approval_probability",
                format!("must be 0 to 1 (0 means each material's own odds), not {probability}"),
            ));
        }
        let spread_days = match r.decision_spread_days {
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
        refuse_if_any(violations)?;
        let listing = format!(
            "line-forecasts as_of={:?} horizon={} {:?} plant={:?} samples={samples} seed={} p={probability:?} spread={spread_days}",
            r.as_of, query.horizon_days, query.scenario, r.plant, r.seed
        );
        let paging = Paging::read(listing, r.page_size, &r.page_token, &mut query)?;
        let decision = Decision::LineForecasts {
            plant: (!r.plant.is_empty()).then_some(r.plant),
            samples,
            seed: r.seed,
            // -0.0 and 0.0 ask the same.
            approval_probability: (probability + 0.0).to_bits(),
            spread_days,
        };
        let decisions = self.decide(view, query, decision, &paging).await?;
        let Decided::LineForecasts(forecast) = &decisions.decided else {
            return Err(Error::Storage("a forecast answered with another listing".into()).into());
        };
        let (page, next_page_token) = paging.page(
            forecast.lines.len(),
            decisions.epoch,
            decisions.revision,
            decisions.as_of,
        )?;
        Ok(Response::new(pb::ListLineForecastsResponse {
            forecasts: forecast.lines[page].iter().map(forecast_to_pb).collect(),
            next_page_token,
            total_size: forecast.lines.len() as i32,
            revision: decisions.revision,
            samples: samples as i32,
            approvals: forecast
                .approvals
                .iter()
                .map(|a| pb::MaterialApproval {
                    material: a.material.clone(),
                    probability: a.probability,
                    approved: a.approved as i32,
                    rejected: a.rejected as i32,
                })
                .collect(),
        }))
    }

    type WatchAtRiskLinesStream = WatchStream;

    async fn watch_at_risk_lines(
        &self,
        request: Request<pb::WatchAtRiskLinesRequest>,
    ) -> Result<Response<Self::WatchAtRiskLinesStream>, Status> {
        let r = request.into_inner();
        let view = self.network.view();
        let mut violations = Vec::new();
        let query = decode_query(
            &r.as_of,
            self.clock.today(),
            r.horizon_days,
            r.scenario,
            &view,
            &mut violations,
        );
        let heartbeat = match r.heartbeat_seconds {
            0 => watch::DEFAULT_HEARTBEAT_SECONDS,
            s if s <= watch::MAX_HEARTBEAT_SECONDS => s,
            s => {
                violations.push(Violation::new(
                    "heartbeat_seconds",
                    format!(
                        "must be 1 to {} (0 means {}), not {s}",
                        watch::MAX_HEARTBEAT_SECONDS,
                        watch::DEFAULT_HEARTBEAT_SECONDS
                    ),
                ));
                watch::DEFAULT_HEARTBEAT_SECONDS
            }
        };
        refuse_if_any(violations)?;
        let question = Question::asked(&query, !r.as_of.is_empty(), r.plant);
        let stream = self.watches.watch(
            question,
            std::time::Duration::from_secs(u64::from(heartbeat)),
        )?;
        Ok(Response::new(stream))
    }

    type StreamLicenseUpdatesStream = UpdateStream;

    async fn stream_license_updates(
        &self,
        request: Request<pb::StreamLicenseUpdatesRequest>,
    ) -> Result<Response<Self::StreamLicenseUpdatesStream>, Status> {
        let stream = subscribe(
            self.network.clone(),
            request.into_inner(),
            self.shutdown.clone(),
            self.streams.clone(),
        )
        .await?;
        Ok(Response::new(stream))
    }
}
