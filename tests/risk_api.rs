//! RiskService through the real gRPC stack: the worked example of the risk
//! model, answer by answer, and the contract around it.

mod common;

use lodestone_test_macros::both_stores;

use common::{expect_error, fixture, metadata, spawn_app};
use lodestone::pb::{self, json};
use serde_json::Value;
use tonic::{Code, Status};

fn close(actual: f64, expected: f64, what: &str) {
    let scale = expected.abs().max(1e-12);
    assert!(
        ((actual - expected) / scale).abs() <= 1e-6 || (actual - expected).abs() <= 1e-9,
        "{what}: {actual} is not {expected} within a relative 1e-6"
    );
}

fn check_lines(actual: &[pb::LineRisk], expected: &[pb::LineRisk], case: &str) {
    let ids = |lines: &[pb::LineRisk]| lines.iter().map(|l| l.line_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(actual), ids(expected), "{case}: lines and their order");
    for (a, e) in actual.iter().zip(expected) {
        let what = format!("{case}: line {}", e.line_id);
        assert_eq!(a.plant, e.plant, "{what}");
        assert_eq!(a.at_risk, e.at_risk, "{what}");
        assert_eq!(a.days_to_stop, e.days_to_stop, "{what}");
        assert_eq!(a.stop_date, e.stop_date, "{what}");
        close(
            a.output_fraction,
            e.output_fraction,
            &format!("{what} output_fraction"),
        );
        close(a.units_lost, e.units_lost, &format!("{what} units_lost"));
        assert_eq!(
            a.bottleneck_component_id, e.bottleneck_component_id,
            "{what}"
        );
        assert_eq!(a.root_cause_path, e.root_cause_path, "{what}");
        assert_eq!(a.blocking_pools, e.blocking_pools, "{what}");
        assert_eq!(a.blocking_license_ids, e.blocking_license_ids, "{what}");
        assert_eq!(a.blocking_supplier_ids, e.blocking_supplier_ids, "{what}");
        close(
            a.shortfall_units,
            e.shortfall_units,
            &format!("{what} shortfall_units"),
        );
        assert_eq!(a.idled, e.idled, "{what} idled");
    }
}

fn check_impacts(actual: &[pb::SupplierImpact], expected: &[pb::SupplierImpact], case: &str) {
    let ids =
        |v: &[pb::SupplierImpact]| v.iter().map(|i| i.supplier_id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(actual),
        ids(expected),
        "{case}: suppliers and their order"
    );
    for (a, e) in actual.iter().zip(expected) {
        let what = format!("{case}: supplier {}", e.supplier_id);
        assert_eq!(a.country, e.country, "{what}");
        close(a.units_lost, e.units_lost, &format!("{what} units_lost"));
        assert_eq!(a.lines_hit, e.lines_hit, "{what} lines_hit");
        assert_eq!(
            a.time_to_survive_days, e.time_to_survive_days,
            "{what} time_to_survive_days"
        );
        assert_eq!(a.first_hit_line_id, e.first_hit_line_id, "{what}");
        assert_eq!(a.critical, e.critical, "{what} critical");
        close(
            a.risk_exposure_index,
            e.risk_exposure_index,
            &format!("{what} risk_exposure_index"),
        );
    }
}

fn check_stakes(actual: &[pb::LicenseStake], expected: &[pb::LicenseStake], case: &str) {
    let ids = |v: &[pb::LicenseStake]| v.iter().map(|s| s.license_id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(actual),
        ids(expected),
        "{case}: licences and their order"
    );
    for (a, e) in actual.iter().zip(expected) {
        let what = format!("{case}: licence {}", e.license_id);
        assert_eq!(
            (&a.supplier_id, &a.material, a.status),
            (&e.supplier_id, &e.material, e.status),
            "{what}"
        );
        assert_eq!(a.granted_on, e.granted_on, "{what} granted_on");
        close(
            a.units_at_stake,
            e.units_at_stake,
            &format!("{what} units_at_stake"),
        );
        assert_eq!(a.lines_at_stake, e.lines_at_stake, "{what} lines_at_stake");
        assert_eq!(a.stop_date_if_denied, e.stop_date_if_denied, "{what}");
        assert_eq!(a.stop_date_if_granted, e.stop_date_if_granted, "{what}");
    }
}

fn check_exposure(actual: &pb::Exposure, expected: &pb::Exposure, case: &str) {
    assert_eq!(actual.as_of, expected.as_of, "{case}");
    assert_eq!(actual.horizon_days, expected.horizon_days, "{case}");
    assert_eq!(actual.lines_in_scope, expected.lines_in_scope, "{case}");
    assert_eq!(actual.lines_at_risk, expected.lines_at_risk, "{case}");
    close(
        actual.units_per_day,
        expected.units_per_day,
        &format!("{case}: units_per_day"),
    );
    close(
        actual.units_at_risk,
        expected.units_at_risk,
        &format!("{case}: units_at_risk"),
    );
    assert_eq!(
        actual.earliest_stop_date, expected.earliest_stop_date,
        "{case}"
    );
    check_lines(&actual.lines, &expected.lines, case);
    let keys = |pools: &[pb::PoolCoverage]| {
        pools
            .iter()
            .map(|p| (p.supplier_id.clone(), p.material.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&actual.pools),
        keys(&expected.pools),
        "{case}: pools and their order"
    );
    for (a, e) in actual.pools.iter().zip(&expected.pools) {
        let what = format!("{case}: pool {}/{}", e.supplier_id, e.material);
        close(
            a.required_kg_per_day,
            e.required_kg_per_day,
            &format!("{what} required_kg_per_day"),
        );
        close(
            a.approved_remaining_kg,
            e.approved_remaining_kg,
            &format!("{what} approved_remaining_kg"),
        );
        close(a.pending_kg, e.pending_kg, &format!("{what} pending_kg"));
        assert_eq!(a.covered_days, e.covered_days, "{what}");
        assert_eq!(a.first_uncovered_date, e.first_uncovered_date, "{what}");
    }
}

/// Asks every question of a fixture of the worked example and compares
/// each answer with the fixture's; returns how many cases it held.
async fn answers_as_the_fixture_says(app: &common::TestApp, name: &str) -> usize {
    let mut revision = app.load_seed().await.revision;
    let expected: Value = serde_json::from_str(&fixture(name)).unwrap();
    // Records the fixture adds to the seed network, upserted first.
    if let Some(records) = expected.get("records").and_then(Value::as_array) {
        let records: Vec<pb::Record> = records
            .iter()
            .map(|r| json::from_json("lodestone.v1.Record", &r.to_string()).unwrap())
            .collect();
        assert!(!records.is_empty(), "{name}: its records");
        revision = app.upsert(records).await.unwrap().revision;
    }
    let cases = expected["cases"].as_array().unwrap();
    let mut risk = app.risk.clone();
    for (i, case) in cases.iter().enumerate() {
        let rpc = case["rpc"].as_str().unwrap();
        let name = format!("case {i} ({rpc} {})", case["request"]);
        let request = case["request"].to_string();
        let response = case["response"].to_string();
        fn read<T: prost::Message + Default>(message: &str, text: &str) -> T {
            json::from_json(&format!("lodestone.v1.{message}"), text).unwrap()
        }
        // The case's call, answered, with the fixture's answer; a listing
        // must come whole on one page, at the revision the seed made.
        macro_rules! ask {
            ($method:ident, $request:ident, $response:ident) => {{
                let answer = risk
                    .$method(read::<pb::$request>(stringify!($request), &request))
                    .await
                    .unwrap()
                    .into_inner();
                let expected: pb::$response = read(stringify!($response), &response);
                assert_eq!(answer.revision, revision, "{name}");
                (answer, expected)
            }};
            (listing $method:ident, $request:ident, $response:ident) => {{
                let (answer, expected) = ask!($method, $request, $response);
                assert_eq!(answer.total_size, expected.total_size, "{name}");
                assert!(answer.next_page_token.is_empty(), "{name}");
                (answer, expected)
            }};
        }
        match rpc {
            "ListAtRiskLines" => {
                let (actual, expected) = ask!(listing list_at_risk_lines, ListAtRiskLinesRequest, ListAtRiskLinesResponse);
                check_lines(&actual.lines, &expected.lines, &name);
            }
            "GetExposure" => {
                let (actual, expected) = ask!(get_exposure, GetExposureRequest, Exposure);
                check_exposure(&actual, &expected, &name);
            }
            "ListSupplierImpacts" => {
                let (actual, expected) = ask!(listing list_supplier_impacts, ListSupplierImpactsRequest, ListSupplierImpactsResponse);
                assert_eq!(actual.recovery_days, expected.recovery_days, "{name}");
                check_impacts(&actual.impacts, &expected.impacts, &name);
            }
            "ListLicenseStakes" => {
                let (actual, expected) = ask!(listing list_license_stakes, ListLicenseStakesRequest, ListLicenseStakesResponse);
                check_stakes(&actual.stakes, &expected.stakes, &name);
            }
            "ListLineForecasts" => {
                let (actual, expected) = ask!(listing list_line_forecasts, ListLineForecastsRequest, ListLineForecastsResponse);
                assert_eq!(actual.samples, expected.samples, "{name}");
                check_forecasts(&actual, &expected, &name);
            }
            other => panic!("the fixture names an unknown rpc {other}"),
        }
    }
    cases.len()
}

fn check_forecasts(
    actual: &pb::ListLineForecastsResponse,
    expected: &pb::ListLineForecastsResponse,
    case: &str,
) {
    let ids = |v: &[pb::LineForecast]| v.iter().map(|f| f.line_id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&actual.forecasts),
        ids(&expected.forecasts),
        "{case}: lines and their order"
    );
    for (a, e) in actual.forecasts.iter().zip(&expected.forecasts) {
        let what = format!("{case}: line {}", e.line_id);
        assert_eq!(a.plant, e.plant, "{what}");
        close(
            a.stop_probability,
            e.stop_probability,
            &format!("{what} stop_probability"),
        );
        assert_eq!(
            (a.days_to_stop_p10, a.days_to_stop_p50, a.days_to_stop_p90),
            (e.days_to_stop_p10, e.days_to_stop_p50, e.days_to_stop_p90),
            "{what} percentiles"
        );
        close(
            a.expected_units_lost,
            e.expected_units_lost,
            &format!("{what} expected_units_lost"),
        );
    }
    assert_eq!(actual.approvals.len(), expected.approvals.len(), "{case}");
    for (a, e) in actual.approvals.iter().zip(&expected.approvals) {
        assert_eq!(
            (&a.material, a.approved, a.rejected),
            (&e.material, e.approved, e.rejected),
            "{case}"
        );
        close(
            a.probability,
            e.probability,
            &format!("{case}: {} odds", e.material),
        );
    }
}

#[both_stores]
#[tokio::test]
async fn the_worked_example_gives_every_expected_answer() {
    let app = spawn_app().await;
    let cases = answers_as_the_fixture_says(&app, "seed-network.expected.json").await;
    assert!(cases >= 10, "the fixture holds the whole worked example");
}

#[both_stores]
#[tokio::test]
async fn the_worked_example_forecasts_as_expected() {
    let app = spawn_app().await;
    let cases = answers_as_the_fixture_says(&app, "seed-network.forecasts.expected.json").await;
    assert_eq!(cases, 3);
}

#[both_stores]
#[tokio::test]
async fn the_worked_example_with_shipments_and_idled_lines_answers_as_expected() {
    let app = spawn_app().await;
    let cases = answers_as_the_fixture_says(&app, "seed-network.mitigations.expected.json").await;
    assert_eq!(
        cases, 7,
        "shipments, airfreight, idled lines and shortfalls"
    );
}

#[both_stores]
#[tokio::test]
async fn the_worked_example_answers_every_decision_as_expected() {
    let app = spawn_app().await;
    let cases = answers_as_the_fixture_says(&app, "seed-network.decisions.expected.json").await;
    assert_eq!(cases, 7, "outages, supplier impacts and licence stakes");
}

fn list_request(page_size: i32, page_token: String) -> pb::ListAtRiskLinesRequest {
    pb::ListAtRiskLinesRequest {
        as_of: "2025-06-02".into(),
        horizon_days: 90,
        page_size,
        page_token,
        ..Default::default()
    }
}

#[both_stores]
#[tokio::test]
async fn every_page_of_a_listing_comes_from_the_revision_its_first_page_read() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let first = risk
        .list_at_risk_lines(list_request(2, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.lines.len(), 2);
    assert_eq!(first.total_size, 3);
    assert_eq!(first.lines[0].line_id, "ZW-EV1");

    // A decision that stops WOB-ICE1 much later lands between the pages.
    app.decide("LIC-BTM-DY-1", pb::LicenseStatus::Approved)
        .await
        .unwrap();
    let second = risk
        .list_at_risk_lines(list_request(2, first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second.revision, first.revision,
        "the token pins the revision"
    );
    assert_eq!(second.lines.len(), 1);
    assert_eq!(second.lines[0].line_id, "WOB-ICE1");
    assert_eq!(
        second.lines[0].days_to_stop,
        Some(17),
        "as of the first page's revision"
    );
    assert!(second.next_page_token.is_empty());

    // A fresh listing sees the decision.
    let fresh = risk
        .list_at_risk_lines(list_request(50, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(fresh.revision > first.revision);
    let ice = fresh
        .lines
        .iter()
        .find(|l| l.line_id == "WOB-ICE1")
        .unwrap();
    assert_ne!(ice.days_to_stop, Some(17));

    // Other filters, garbage, and a negative size are refused.
    let mut other = list_request(2, first.next_page_token.clone());
    other.plant = "ZWICKAU".into();
    let status = risk.list_at_risk_lines(other).await.unwrap_err();
    assert_eq!(
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "page_token"
    );
    let status = risk
        .list_at_risk_lines(list_request(2, "nope".into()))
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "page_token"
    );
    let status = risk
        .list_at_risk_lines(list_request(-5, String::new()))
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "page_size"
    );
}

#[both_stores]
#[tokio::test]
async fn a_token_whose_answer_is_no_longer_held_has_expired() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let first = risk
        .list_at_risk_lines(list_request(1, String::new()))
        .await
        .unwrap()
        .into_inner();
    // Push the listing's answer out of the engine's bounded cache: many
    // writes, each answered once.
    for i in 0..40 {
        app.records
            .clone()
            .update_license_status(pb::UpdateLicenseStatusRequest {
                id: "LIC-NBM-DY-1".into(),
                quantity_kg: 400.0 + f64::from(i + 1),
                ..Default::default()
            })
            .await
            .unwrap();
        risk.list_at_risk_lines(list_request(1, String::new()))
            .await
            .unwrap();
    }
    let status = risk
        .list_at_risk_lines(list_request(1, first.next_page_token))
        .await
        .unwrap_err();
    expect_error(&status, Code::FailedPrecondition, "PAGE_TOKEN_EXPIRED");
    assert_eq!(metadata(&status)["revision"], first.revision.to_string());
}

#[both_stores]
#[tokio::test]
async fn bad_questions_get_clear_answers() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    use pb::get_exposure_request::Scope;

    for (scope, field) in [
        (Scope::SupplierId("NOPE".into()), "supplier"),
        (Scope::ComponentId("NOPE".into()), "component"),
        (Scope::LineId("NOPE".into()), "line"),
        (Scope::Material("NOPE".into()), "material"),
        (Scope::Plant("NOWHERE".into()), "plant"),
    ] {
        let status = risk
            .get_exposure(pb::GetExposureRequest {
                scope: Some(scope),
                as_of: "2025-06-02".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        expect_error(&status, Code::NotFound, "NOT_FOUND");
        assert!(
            status.message().contains(field) || status.message().contains("NOWHERE"),
            "{}",
            status.message()
        );
    }

    let status = risk
        .get_exposure(pb::GetExposureRequest {
            as_of: "2025-13-01".into(),
            horizon_days: 731,
            scenario: Some(pb::Scenario {
                pending: 7,
                decision_delay_days: -1,
                overrides: vec![
                    pb::LicenseOverride {
                        license_id: "LIC-NBM-TB-1".into(),
                        status: 2,
                        effective_on: String::new(),
                    },
                    pb::LicenseOverride {
                        license_id: "LIC-NBM-TB-1".into(),
                        status: 2,
                        effective_on: String::new(),
                    },
                    pb::LicenseOverride {
                        license_id: "NO-SUCH".into(),
                        status: 0,
                        effective_on: "soon".into(),
                    },
                ],
                outages: vec![
                    pb::SupplierOutage {
                        supplier_id: "NBM".into(),
                        starts_on: String::new(),
                        days: -1,
                    },
                    pb::SupplierOutage {
                        supplier_id: "NBM".into(),
                        starts_on: "2025-06-10".into(),
                        days: 5,
                    },
                    pb::SupplierOutage {
                        supplier_id: "NO-SUCH-SUPPLIER".into(),
                        starts_on: "later".into(),
                        days: 731,
                    },
                ],
                shipments: vec![
                    pb::ScenarioShipment {
                        component_id: "MAG-TM".into(),
                        units: 5000.0,
                        arrives_on: "2025-06-16".into(),
                    },
                    pb::ScenarioShipment {
                        component_id: "NO-SUCH-PART".into(),
                        units: 0.0,
                        arrives_on: "2025-06-16".into(),
                    },
                    pb::ScenarioShipment {
                        component_id: "MAG-TM".into(),
                        units: f64::NAN,
                        arrives_on: String::new(),
                    },
                    pb::ScenarioShipment {
                        component_id: "MAG-TM".into(),
                        units: -3.0,
                        arrives_on: "the 16th".into(),
                    },
                ],
                idled_lines: vec!["WOB-HEV1".into(), "WOB-HEV1".into(), "NO-SUCH-LINE".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let fields: Vec<String> = expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")
        .into_iter()
        .map(|v| v.0)
        .collect();
    for expected in [
        "as_of",
        "horizon_days",
        "scenario.pending",
        "scenario.decision_delay_days",
        "scenario.overrides[1].license_id",
        "scenario.overrides[2].license_id",
        "scenario.overrides[2].status",
        "scenario.overrides[2].effective_on",
        "scenario.outages[0].days",
        "scenario.outages[1].supplier_id",
        "scenario.outages[2].supplier_id",
        "scenario.outages[2].starts_on",
        "scenario.shipments[1].component_id",
        "scenario.shipments[1].units",
        "scenario.shipments[2].units",
        "scenario.shipments[2].arrives_on",
        "scenario.shipments[3].units",
        "scenario.shipments[3].arrives_on",
        "scenario.idled_lines[1]",
        "scenario.idled_lines[2]",
        "scenario.outages[2].days",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} missing from {fields:?}"
        );
    }
}

#[both_stores]
#[tokio::test]
async fn an_empty_as_of_means_today_and_an_empty_network_is_not_at_risk() {
    let app = spawn_app().await;
    let exposure = app
        .risk
        .clone()
        .get_exposure(pb::GetExposureRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        exposure.as_of,
        chrono::Utc::now()
            .date_naive()
            .format("%Y-%m-%d")
            .to_string()
    );
    assert_eq!(exposure.horizon_days, 90);
    assert_eq!((exposure.lines_in_scope, exposure.lines_at_risk), (0, 0));
    assert!(exposure.earliest_stop_date.is_empty());
}

/// The page token's layout, as a client that forges one would write it.
#[derive(Clone, PartialEq, prost::Message)]
struct ForgedToken {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(string, tag = "2")]
    listing: String,
    #[prost(string, tag = "3")]
    after: String,
    #[prost(uint64, tag = "4")]
    revision: u64,
    #[prost(uint64, tag = "5")]
    epoch: u64,
    #[prost(string, tag = "6")]
    as_of: String,
}

fn read_token(token: &str) -> ForgedToken {
    use base64::Engine;
    use prost::Message;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .unwrap();
    ForgedToken::decode(bytes.as_slice()).unwrap()
}

fn write_token(token: &ForgedToken) -> String {
    use base64::Engine;
    use prost::Message;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.encode_to_vec())
}

#[both_stores]
#[tokio::test]
async fn a_forged_page_position_is_refused_not_wrapped_around() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let first = risk
        .list_at_risk_lines(list_request(1, String::new()))
        .await
        .unwrap()
        .into_inner();
    let mut token = read_token(&first.next_page_token);
    for after in [
        usize::MAX.to_string(),
        (usize::MAX - 1).to_string(),
        "4".into(),
    ] {
        token.after = after.clone();
        let status = risk
            .list_at_risk_lines(list_request(1000, write_token(&token)))
            .await
            .unwrap_err();
        assert_eq!(
            expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
            "page_token",
            "{after}"
        );
    }
    // The last position is a real one: an empty last page.
    token.after = "3".into();
    let last = risk
        .list_at_risk_lines(list_request(1000, write_token(&token)))
        .await
        .unwrap()
        .into_inner();
    assert!(last.lines.is_empty() && last.next_page_token.is_empty());
}

#[both_stores]
#[tokio::test]
async fn a_token_of_another_store_epoch_does_not_continue_on_this_network() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let first = risk
        .list_at_risk_lines(list_request(1, String::new()))
        .await
        .unwrap()
        .into_inner();
    // The same revision, but of the store before it was opened again.
    let mut token = read_token(&first.next_page_token);
    assert_eq!(token.revision, first.revision);
    token.epoch += 1;
    let status = risk
        .list_at_risk_lines(list_request(1, write_token(&token)))
        .await
        .unwrap_err();
    expect_error(&status, Code::FailedPrecondition, "PAGE_TOKEN_EXPIRED");
}

#[both_stores]
#[tokio::test]
async fn a_listing_for_today_keeps_its_day_past_midnight() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let today = |page_token: String| pb::ListAtRiskLinesRequest {
        horizon_days: 90,
        page_size: 1,
        page_token,
        ..Default::default()
    };
    let first = risk
        .list_at_risk_lines(today(String::new()))
        .await
        .unwrap()
        .into_inner();
    // The seed's licences all end in 2025 or 2026: today, lines stop.
    assert!(first.total_size >= 2, "{first:?}");
    let token = read_token(&first.next_page_token);
    let today_utc = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        token.as_of, today_utc,
        "the token keeps the first page's day"
    );

    // As if the first page had been asked yesterday: the token's day is
    // 2 June 2025, and the next page continues that listing (the same
    // filters, an empty as_of) for that day, not for today.
    let mut yesterday = token.clone();
    yesterday.as_of = "2025-06-02".into();
    let second = risk
        .list_at_risk_lines(today(write_token(&yesterday)))
        .await
        .expect("a listing's later pages are not refused after midnight")
        .into_inner();
    let dated = risk
        .list_at_risk_lines(pb::ListAtRiskLinesRequest {
            as_of: "2025-06-02".into(),
            horizon_days: 90,
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.lines[0].line_id, dated.lines[1].line_id);
    assert_eq!(second.lines[0].stop_date, dated.lines[1].stop_date);
}

#[both_stores]
#[tokio::test]
async fn a_basic_exposure_is_the_full_one_without_its_lines() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let ask = |view: pb::ExposureView| pb::GetExposureRequest {
        scope: Some(pb::get_exposure_request::Scope::Material("DY".into())),
        as_of: "2025-06-02".into(),
        view: view as i32,
        ..Default::default()
    };
    let full = risk
        .get_exposure(ask(pb::ExposureView::Full))
        .await
        .unwrap()
        .into_inner();
    let unspecified = risk
        .get_exposure(ask(pb::ExposureView::Unspecified))
        .await
        .unwrap()
        .into_inner();
    let basic = risk
        .get_exposure(ask(pb::ExposureView::Basic))
        .await
        .unwrap()
        .into_inner();
    assert!(!full.lines.is_empty());
    assert_eq!(unspecified, full, "unspecified answers everything");
    assert!(basic.lines.is_empty());
    assert_eq!(
        pb::Exposure {
            lines: Vec::new(),
            ..full.clone()
        },
        basic,
        "the totals and pools are the full answer's"
    );
    assert!(basic.lines_in_scope > 0 && !basic.pools.is_empty());

    let mut bad = ask(pb::ExposureView::Basic);
    bad.view = 7;
    let status = risk.get_exposure(bad).await.unwrap_err();
    assert_eq!(
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "view"
    );
}

/// The engine keeps the network's structure while only licences change; a
/// component or a line that changes must rebuild it, and the answer follow.
#[both_stores]
#[tokio::test]
async fn a_component_or_line_change_rebuilds_the_structure() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let mut records = app.records.clone();
    let first = risk
        .list_at_risk_lines(list_request(50, String::new()))
        .await
        .unwrap()
        .into_inner();
    let line = first.lines[0].clone();
    assert!(line.at_risk);
    // Stock enough of the part that runs out for the whole horizon.
    let mut part = records
        .get_component(pb::GetComponentRequest {
            id: line.bottleneck_component_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    part.on_hand_units = 1e9;
    app.upsert(vec![pb::Record {
        record: Some(pb::record::Record::Component(part)),
    }])
    .await
    .unwrap();
    let after = risk
        .list_at_risk_lines(list_request(50, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(after.revision > first.revision);
    let moved = after.lines.iter().find(|l| l.line_id == line.line_id);
    assert!(
        moved.is_none_or(|l| l.stop_date != line.stop_date),
        "{} no longer stops on {} for want of {}: {moved:?}",
        line.line_id,
        line.stop_date,
        line.bottleneck_component_id
    );

    // A line moved to another plant is exposed there.
    let mut production = records
        .get_production_line(pb::GetProductionLineRequest {
            id: first.lines[1].line_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    production.plant = "NEW-PLANT".into();
    app.upsert(vec![pb::Record {
        record: Some(pb::record::Record::Line(production.clone())),
    }])
    .await
    .unwrap();
    let exposure = risk
        .get_exposure(pb::GetExposureRequest {
            scope: Some(pb::get_exposure_request::Scope::Plant("NEW-PLANT".into())),
            as_of: "2025-06-02".into(),
            horizon_days: 90,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exposure.lines_in_scope, 1);
    assert_eq!(exposure.lines[0].line_id, production.id);
}

fn impacts_request(page_size: i32, page_token: String) -> pb::ListSupplierImpactsRequest {
    pb::ListSupplierImpactsRequest {
        as_of: "2025-06-02".into(),
        horizon_days: 90,
        page_size,
        page_token,
        ..Default::default()
    }
}

fn stakes_request(page_size: i32, page_token: String) -> pb::ListLicenseStakesRequest {
    pb::ListLicenseStakesRequest {
        as_of: "2025-06-02".into(),
        horizon_days: 120,
        statuses: vec![
            pb::LicenseStatus::Pending as i32,
            pb::LicenseStatus::Rejected as i32,
        ],
        scenario: Some(pb::Scenario {
            pending: pb::PendingAssumption::ApprovedAsExpected as i32,
            ..Default::default()
        }),
        page_size,
        page_token,
        ..Default::default()
    }
}

/// Every page size pages through the same decision listings, and every
/// page of one listing comes from the revision its first page read.
#[both_stores]
#[tokio::test]
async fn decision_listings_page_alike_whatever_the_page_size_from_one_revision() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let whole = risk
        .list_supplier_impacts(impacts_request(0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.impacts.len(), 7);
    let all_stakes = risk
        .list_license_stakes(stakes_request(0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all_stakes.stakes.len(), 4);
    for size in 1..=4 {
        let (mut impacts, mut token) = (Vec::new(), String::new());
        loop {
            let page = risk
                .list_supplier_impacts(impacts_request(size, token))
                .await
                .unwrap()
                .into_inner();
            assert!(page.impacts.len() <= size as usize);
            assert_eq!(page.total_size, 7);
            impacts.extend(page.impacts);
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(impacts, whole.impacts, "page size {size}");
        let (mut stakes, mut token) = (Vec::new(), String::new());
        loop {
            let page = risk
                .list_license_stakes(stakes_request(size, token))
                .await
                .unwrap()
                .into_inner();
            stakes.extend(page.stakes);
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(stakes, all_stakes.stakes, "page size {size}");
    }

    // A decision lands between the first page and the second.
    let first = risk
        .list_license_stakes(stakes_request(2, String::new()))
        .await
        .unwrap()
        .into_inner();
    let impacts_first = risk
        .list_supplier_impacts(impacts_request(3, String::new()))
        .await
        .unwrap()
        .into_inner();
    app.decide("LIC-BTM-DY-1", pb::LicenseStatus::Approved)
        .await
        .unwrap();
    let second = risk
        .list_license_stakes(stakes_request(2, first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second.revision, first.revision,
        "the token pins the revision"
    );
    assert_eq!(second.stakes, all_stakes.stakes[2..]);
    let impacts_second = risk
        .list_supplier_impacts(impacts_request(3, impacts_first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(impacts_second.revision, impacts_first.revision);
    assert_eq!(impacts_second.impacts, whole.impacts[3..6]);
    // A fresh listing sees the decision: the granted licence is no longer
    // pending, so it is no longer at stake.
    let fresh = risk
        .list_license_stakes(stakes_request(50, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(fresh.revision > first.revision);
    assert!(fresh.stakes.iter().all(|s| s.license_id != "LIC-BTM-DY-1"));
    assert_eq!(fresh.total_size, 3);

    // A token is for its own listing only.
    let status = risk
        .list_license_stakes(pb::ListLicenseStakesRequest {
            plant: "WOLFSBURG".into(),
            ..stakes_request(2, first.next_page_token)
        })
        .await
        .unwrap_err();
    expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
}

#[both_stores]
#[tokio::test]
async fn bad_decision_questions_are_refused_and_a_plant_without_lines_is_not_found() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    for days in [-1, 731] {
        let status = risk
            .list_supplier_impacts(pb::ListSupplierImpactsRequest {
                recovery_days: days,
                ..impacts_request(0, String::new())
            })
            .await
            .unwrap_err();
        let fields = expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(fields[0].0, "recovery_days", "{fields:?}");
    }
    for status in [pb::LicenseStatus::Approved, pb::LicenseStatus::Unspecified] {
        let refused = risk
            .list_license_stakes(pb::ListLicenseStakesRequest {
                statuses: vec![pb::LicenseStatus::Pending as i32, status as i32],
                ..stakes_request(0, String::new())
            })
            .await
            .unwrap_err();
        let fields = expect_error(&refused, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(fields[0].0, "statuses[1]", "{fields:?}");
    }
    let status = risk
        .list_supplier_impacts(pb::ListSupplierImpactsRequest {
            scenario: Some(pb::Scenario {
                outages: vec![pb::SupplierOutage {
                    supplier_id: "NOBODY".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..impacts_request(0, String::new())
        })
        .await
        .unwrap_err();
    let fields = expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(fields[0].0, "scenario.outages[0].supplier_id");

    // A plant with no line is not found, never "nothing at risk".
    let unknown = risk
        .list_supplier_impacts(pb::ListSupplierImpactsRequest {
            plant: "NOWHERE".into(),
            ..impacts_request(0, String::new())
        })
        .await
        .unwrap_err();
    expect_no_such_plant(&unknown, "NOWHERE");
    let unknown = risk
        .list_license_stakes(pb::ListLicenseStakesRequest {
            plant: "NOWHERE".into(),
            ..stakes_request(0, String::new())
        })
        .await
        .unwrap_err();
    expect_no_such_plant(&unknown, "NOWHERE");
}

/// `status` is NOT_FOUND naming `plant`.
fn expect_no_such_plant(status: &Status, plant: &str) {
    expect_error(status, Code::NotFound, "NOT_FOUND");
    let info = tonic_types::StatusExt::get_error_details(status)
        .error_info()
        .cloned()
        .unwrap();
    assert_eq!(info.metadata.get("plant").map(String::as_str), Some(plant));
    assert!(status.message().contains(plant), "{status:?}");
}

fn forecasts_request(page_size: i32, page_token: String) -> pb::ListLineForecastsRequest {
    pb::ListLineForecastsRequest {
        as_of: "2025-06-02".into(),
        horizon_days: 120,
        samples: 50,
        seed: 11,
        approval_probability: 0.9,
        decision_spread_days: Some(0),
        page_size,
        page_token,
        ..Default::default()
    }
}

#[both_stores]
#[tokio::test]
async fn forecasts_page_from_one_revision_and_refuse_bad_questions() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let whole = risk
        .list_line_forecasts(forecasts_request(0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((whole.total_size, whole.samples), (3, 50));
    let first = risk
        .list_line_forecasts(forecasts_request(2, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.forecasts, whole.forecasts[..2]);
    // A decision lands between the pages: the second still reads the first's.
    app.decide("LIC-BTM-DY-1", pb::LicenseStatus::Approved)
        .await
        .unwrap();
    let second = risk
        .list_line_forecasts(forecasts_request(2, first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.revision, first.revision);
    assert_eq!(second.forecasts, whole.forecasts[2..]);
    assert_eq!(second.approvals, whole.approvals);
    let fresh = risk
        .list_line_forecasts(forecasts_request(0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(fresh.revision > first.revision);
    assert_ne!(
        fresh.approvals, whole.approvals,
        "one more approved dysprosium licence moves the record behind the odds"
    );

    let bad = [
        (
            pb::ListLineForecastsRequest {
                samples: 10_001,
                ..forecasts_request(0, String::new())
            },
            "samples",
        ),
        (
            pb::ListLineForecastsRequest {
                samples: -1,
                ..forecasts_request(0, String::new())
            },
            "samples",
        ),
        (
            pb::ListLineForecastsRequest {
                approval_probability: 1.5,
                ..forecasts_request(0, String::new())
            },
            "approval_probability",
        ),
        (
            pb::ListLineForecastsRequest {
                approval_probability: f64::NAN,
                ..forecasts_request(0, String::new())
            },
            "approval_probability",
        ),
        (
            pb::ListLineForecastsRequest {
                decision_spread_days: Some(366),
                ..forecasts_request(0, String::new())
            },
            "decision_spread_days",
        ),
        (
            pb::ListLineForecastsRequest {
                decision_spread_days: Some(-1),
                ..forecasts_request(0, String::new())
            },
            "decision_spread_days",
        ),
    ];
    for (request, field) in bad {
        let status = risk.list_line_forecasts(request).await.unwrap_err();
        let fields = expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(fields[0].0, field, "{fields:?}");
    }
    let unknown = risk
        .list_line_forecasts(pb::ListLineForecastsRequest {
            plant: "NOWHERE".into(),
            ..forecasts_request(0, String::new())
        })
        .await
        .unwrap_err();
    expect_no_such_plant(&unknown, "NOWHERE");
    // A mistyped plant, in the listing and the watch alike.
    let unknown = risk
        .list_at_risk_lines(pb::ListAtRiskLinesRequest {
            plant: "EMDN".into(),
            ..list_request(0, String::new())
        })
        .await
        .unwrap_err();
    expect_no_such_plant(&unknown, "EMDN");
    let unknown = risk
        .watch_at_risk_lines(pb::WatchAtRiskLinesRequest {
            plant: "Emden".into(),
            as_of: "2025-06-02".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    expect_no_such_plant(&unknown, "Emden");
}
