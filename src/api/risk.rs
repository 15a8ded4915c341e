//! `lodestone.v1.RiskService`: translates risk questions into queries of the
//! engine and answers back into messages.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::page::Paging;
use super::status;
use super::stream::{subscribe, StreamGauges, UpdateStream};
use super::watch::{WatchStream, WatchStreams};
use super::{plant_for, refuse_if_any};
use crate::domain::risk::report;
use crate::domain::risk::{check_idled_lines, check_outages, check_overrides, check_shipments};
use crate::domain::validate::identifier_problem;
use crate::domain::{Error, Violation};
use crate::engine::{Abandon, Answer, Decided, Decision, Decisions, Query, RiskEngine};
use crate::network::Network;
use crate::pb::{self, risk_service_server::RiskService};
use crate::transport::auth::{caller, PlantRefusal};
use crate::view::View;
use crate::watch::{Clock, Question, Watches};

pub(crate) struct RiskApi {
    network: Arc<Network>,
    engine: Arc<RiskEngine>,
    shutdown: CancellationToken,
    streams: Arc<StreamGauges>,
    watches: WatchStreams,
    /// What day "today" is, for a question without `as_of`.
    clock: Arc<dyn Clock>,
}

impl RiskApi {
    pub(crate) fn new(
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

impl RiskApi {
    /// The question a request asks: its date (empty: the clock's today),
    /// horizon and scenario, every problem reported in `violations`, the
    /// scenario's ids checked against `view`.
    fn question(
        &self,
        as_of: &str,
        horizon_days: i32,
        scenario: Option<pb::Scenario>,
        view: &View,
        violations: &mut Vec<Violation>,
    ) -> Query {
        let query = pb::query_from_pb(
            as_of,
            self.clock.today(),
            horizon_days,
            scenario,
            violations,
        );
        check_scenario_ids(&query, view, violations);
        query
    }
}

/// A plant named (not empty) must have a line in `view`: a mistyped plant
/// must never read as "nothing at risk".
fn check_plant(plant: &str, view: &View) -> Result<(), Status> {
    if plant.is_empty() || view.has_plant(plant) {
        Ok(())
    } else {
        Err(Error::NoSuchPlant {
            plant: plant.to_string(),
        }
        .into())
    }
}

/// Every id a scenario names must name a record of `view` (an id that is
/// malformed was reported already).
fn check_scenario_ids(query: &Query, view: &View, violations: &mut Vec<Violation>) {
    check_overrides(
        &query.scenario,
        |id| identifier_problem(id).is_some() || view.licenses.contains_key(id),
        violations,
    );
    check_outages(
        &query.scenario,
        |id| identifier_problem(id).is_some() || view.suppliers.contains_key(id),
        violations,
    );
    check_shipments(
        &query.scenario,
        |id| identifier_problem(id).is_some() || view.components.contains_key(id),
        violations,
    );
    check_idled_lines(
        &query.scenario,
        |id| identifier_problem(id).is_some() || view.lines.contains_key(id),
        violations,
    );
}

/// Abandons when dropped: the call it belongs to has gone.
struct AbandonOnDrop(Arc<Abandon>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

#[tonic::async_trait]
impl RiskService for RiskApi {
    async fn get_exposure(
        &self,
        request: Request<pb::GetExposureRequest>,
    ) -> Result<Response<pb::Encoded<pb::Exposure>>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        let view = self.network.view();
        let mut violations = Vec::new();
        let scope = pb::scope_from_pb(r.scope, &mut violations);
        let query = self.question(&r.as_of, r.horizon_days, r.scenario, &view, &mut violations);
        let lines = pb::with_lines_from_pb(r.view, &mut violations);
        refuse_if_any(violations)?;
        let answer = self.answer(view, query).await?;
        if let Some(client) = caller.as_ref().filter(|c| c.limited_to().is_some()) {
            // Whatever the scope names, it must reach no line of another plant.
            let exposure = answer.exposure(&scope)?;
            if let Some(line) = exposure.lines.iter().find(|l| !client.sees(&l.plant)) {
                let refusal = PlantRefusal::Other(line.plant.clone());
                return Err(status::plant_refused(client, &refusal));
            }
        }
        let revision = answer.revision;
        let written = answer.written_exposure(&scope, lines, |exposure| {
            prost::Message::encode_to_vec(&pb::exposure_to_pb(exposure, revision, lines)).into()
        })?;
        Ok(Response::new(pb::Encoded::from_bytes(written)))
    }

    async fn list_at_risk_lines(
        &self,
        request: Request<pb::ListAtRiskLinesRequest>,
    ) -> Result<Response<pb::ListAtRiskLinesResponse>, Status> {
        let caller = caller(&request);
        let mut r = request.into_inner();
        r.plant = plant_for(caller.as_ref(), &r.plant)?;
        let view = self.network.view();
        let mut violations = Vec::new();
        let mut query = self.question(&r.as_of, r.horizon_days, r.scenario, &view, &mut violations);
        refuse_if_any(violations)?;
        check_plant(&r.plant, &view)?;
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
                    pb::line_risk_to_pb(report::line_report(
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
        let caller = caller(&request);
        let mut r = request.into_inner();
        r.plant = plant_for(caller.as_ref(), &r.plant)?;
        let view = self.network.view();
        let mut violations = Vec::new();
        let mut query = self.question(&r.as_of, r.horizon_days, r.scenario, &view, &mut violations);
        let recovery_days = pb::recovery_days_from_pb(r.recovery_days, &mut violations);
        refuse_if_any(violations)?;
        check_plant(&r.plant, &view)?;
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
            impacts: impacts[page]
                .iter()
                .map(pb::supplier_impact_to_pb)
                .collect(),
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
        let caller = caller(&request);
        let mut r = request.into_inner();
        r.plant = plant_for(caller.as_ref(), &r.plant)?;
        let view = self.network.view();
        let mut violations = Vec::new();
        let mut query = self.question(&r.as_of, r.horizon_days, r.scenario, &view, &mut violations);
        let statuses = pb::stake_statuses_from_pb(&r.statuses, &mut violations);
        refuse_if_any(violations)?;
        check_plant(&r.plant, &view)?;
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
            stakes: stakes[page].iter().map(pb::license_stake_to_pb).collect(),
            next_page_token,
            total_size: stakes.len() as i32,
            revision: decisions.revision,
        }))
    }

    async fn list_line_forecasts(
        &self,
        request: Request<pb::ListLineForecastsRequest>,
    ) -> Result<Response<pb::ListLineForecastsResponse>, Status> {
        let caller = caller(&request);
        let mut r = request.into_inner();
        r.plant = plant_for(caller.as_ref(), &r.plant)?;
        let view = self.network.view();
        let mut violations = Vec::new();
        let mut query = self.question(&r.as_of, r.horizon_days, r.scenario, &view, &mut violations);
        let asked = pb::forecast_parameters_from_pb(
            r.samples,
            r.approval_probability,
            r.decision_spread_days,
            &mut violations,
        );
        refuse_if_any(violations)?;
        check_plant(&r.plant, &view)?;
        let listing = format!(
            "line-forecasts as_of={:?} horizon={} {:?} plant={:?} samples={} seed={} p={:?} spread={}",
            r.as_of,
            query.horizon_days,
            query.scenario,
            r.plant,
            asked.samples,
            r.seed,
            asked.approval_probability,
            asked.spread_days
        );
        let paging = Paging::read(listing, r.page_size, &r.page_token, &mut query)?;
        let decision = Decision::LineForecasts {
            plant: (!r.plant.is_empty()).then_some(r.plant),
            samples: asked.samples,
            seed: r.seed,
            approval_probability: asked.approval_probability.to_bits(),
            spread_days: asked.spread_days,
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
            forecasts: forecast.lines[page]
                .iter()
                .map(pb::line_forecast_to_pb)
                .collect(),
            next_page_token,
            total_size: forecast.lines.len() as i32,
            revision: decisions.revision,
            samples: asked.samples as i32,
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
        let caller = caller(&request);
        let mut r = request.into_inner();
        r.plant = plant_for(caller.as_ref(), &r.plant)?;
        let view = self.network.view();
        let mut violations = Vec::new();
        let query = self.question(&r.as_of, r.horizon_days, r.scenario, &view, &mut violations);
        let heartbeat = pb::heartbeat_from_pb(r.heartbeat_seconds, &mut violations);
        refuse_if_any(violations)?;
        check_plant(&r.plant, &view)?;
        let question = Question::asked(&query, !r.as_of.is_empty(), r.plant);
        Ok(Response::new(self.watches.watch(question, heartbeat)?))
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
