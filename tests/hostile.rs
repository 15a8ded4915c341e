//! Hostile input: a table of bad requests, each of which must get its own
//! code, reason and field and leave the store as it was; raw garbage and
//! truncated protobuf on the wire; and a property test (a fuzzer driven by
//! proptest) that throws arbitrary bytes and arbitrary records at the real
//! server. Through all of it the server stays up.
//!
//! `LODESTONE_LONG=1 cargo test --release --test hostile -- --nocapture`
//! runs the property tests with many more cases.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut};
use common::{expect_error, record, spawn_app, TestApp};
use lodestone::pb;
use proptest::prelude::*;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Request, Status};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

fn long() -> bool {
    std::env::var("LODESTONE_LONG").is_ok_and(|v| v == "1")
}

/// Sends bytes as they are, and takes the answer's bytes as they are.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut bytes = vec![0; buf.remaining()];
        buf.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// Calls a unary method with raw bytes for its request.
async fn raw_call(app: &TestApp, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(Request::new(body), PathAndQuery::from_static(path), Raw)
        .await
        .map(|r| r.into_inner())
}

async fn still_serving(app: &TestApp) {
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        HealthClient::new(app.channel.clone()).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("health answers")
    .expect("the server is up");
    assert_eq!(answer.into_inner().status, 1);
}

/// `n` components in one input cycle: C0 ← C1 ← … ← C(n-1) ← C0.
fn cycle(n: usize) -> Vec<pb::Record> {
    (0..n)
        .map(|i| {
            record(&format!(
                r#"{{"component": {{"id": "CY{i}", "inputs": [{{"component_id": "CY{}", "quantity": 1}}]}}}}"#,
                (i + 1) % n
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_record_is_refused_with_its_reason_and_changes_nothing() {
    let app = spawn_app().await;
    app.load_seed().await;
    let long_id = "A".repeat(129);
    let max_id = "A".repeat(128);
    let long_name = "n".repeat(257);
    // (what, records, reason, a field path the refusal must name)
    let cases: Vec<(&str, Vec<pb::Record>, &str, &str)> = vec![
        (
            "empty id",
            vec![record(r#"{"supplier": {"id": ""}}"#)],
            "INVALID_RECORD",
            "records[0].supplier.id",
        ),
        (
            "id past the limit",
            vec![record(&format!(r#"{{"supplier": {{"id": "{long_id}"}}}}"#))],
            "INVALID_RECORD",
            "records[0].supplier.id",
        ),
        (
            "id with a space",
            vec![record(r#"{"supplier": {"id": "A B"}}"#)],
            "INVALID_RECORD",
            "records[0].supplier.id",
        ),
        (
            "id starting with a dash",
            vec![record(r#"{"supplier": {"id": "-A"}}"#)],
            "INVALID_RECORD",
            "records[0].supplier.id",
        ),
        (
            "name past the limit",
            vec![record(&format!(
                r#"{{"supplier": {{"id": "S9", "name": "{long_name}"}}}}"#
            ))],
            "INVALID_RECORD",
            "records[0].supplier.name",
        ),
        (
            "country not ISO",
            vec![record(
                r#"{"supplier": {"id": "S9", "country": "germany"}}"#,
            )],
            "INVALID_RECORD",
            "records[0].supplier.country",
        ),
        (
            "negative tier",
            vec![record(r#"{"supplier": {"id": "S9", "tier": -1}}"#)],
            "INVALID_RECORD",
            "records[0].supplier.tier",
        ),
        (
            "no record in the oneof",
            vec![pb::Record { record: None }],
            "INVALID_RECORD",
            "records[0]",
        ),
        (
            "shares not summing to 1",
            vec![record(
                r#"{"component": {"id": "C9", "sources": [{"supplier_id": "NBM", "share": 0.5}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.sources",
        ),
        (
            "share of zero",
            vec![record(
                r#"{"component": {"id": "C9", "sources": [{"supplier_id": "NBM", "share": 0}, {"supplier_id": "BTM", "share": 1}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.sources[0].share",
        ),
        (
            "NaN share",
            vec![record(
                r#"{"component": {"id": "C9", "sources": [{"supplier_id": "NBM", "share": "NaN"}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.sources[0].share",
        ),
        (
            "infinite grams",
            vec![record(
                r#"{"component": {"id": "C9", "materials": [{"material": "DY", "grams_per_unit": "Infinity"}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.materials[0].grams_per_unit",
        ),
        (
            "negative stock",
            vec![record(
                r#"{"component": {"id": "C9", "on_hand_units": -1}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.on_hand_units",
        ),
        (
            "a part twice in one input list",
            vec![record(
                r#"{"component": {"id": "C9", "inputs": [{"component_id": "MAG-TM", "quantity": 1}, {"component_id": "MAG-TM", "quantity": 2}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.inputs[1].component_id",
        ),
        (
            "unknown supplier",
            vec![record(
                r#"{"component": {"id": "C9", "sources": [{"supplier_id": "NOBODY", "share": 1}]}}"#,
            )],
            "UNKNOWN_REFERENCE",
            "records[0].component.sources[0].supplier_id",
        ),
        (
            "unknown material",
            vec![record(
                r#"{"component": {"id": "C9", "materials": [{"material": "XX", "grams_per_unit": 1}]}}"#,
            )],
            "UNKNOWN_REFERENCE",
            "records[0].component.materials[0].material",
        ),
        (
            "cycle of length 1",
            cycle(1),
            "CYCLE_DETECTED",
            "records[0].component.inputs[0].component_id",
        ),
        ("cycle of length 2", cycle(2), "CYCLE_DETECTED", "records["),
        (
            "cycle of length 1,000",
            cycle(1000),
            "CYCLE_DETECTED",
            "records[",
        ),
        (
            "line without a plant",
            vec![record(r#"{"line": {"id": "L9", "units_per_day": 1}}"#)],
            "INVALID_RECORD",
            "records[0].line.plant",
        ),
        (
            "line rate of zero",
            vec![record(
                r#"{"line": {"id": "L9", "plant": "P", "units_per_day": 0}}"#,
            )],
            "INVALID_RECORD",
            "records[0].line.units_per_day",
        ),
        (
            "licence without status",
            vec![record(
                r#"{"license": {"id": "L9", "supplier_id": "NBM", "material": "DY", "quantity_kg": 1}}"#,
            )],
            "INVALID_RECORD",
            "records[0].license.status",
        ),
        (
            "licence with an unknown status number",
            vec![record(
                r#"{"license": {"id": "L9", "supplier_id": "NBM", "material": "DY", "status": 42, "quantity_kg": 1}}"#,
            )],
            "INVALID_RECORD",
            "records[0].license.status",
        ),
        (
            "more used than granted",
            vec![record(
                r#"{"license": {"id": "L9", "supplier_id": "NBM", "material": "DY", "status": "LICENSE_STATUS_APPROVED", "quantity_kg": 1, "used_kg": 2}}"#,
            )],
            "INVALID_RECORD",
            "records[0].license.used_kg",
        ),
        (
            "a day that does not exist",
            vec![record(
                r#"{"license": {"id": "L9", "supplier_id": "NBM", "material": "DY", "status": "LICENSE_STATUS_PENDING", "quantity_kg": 1, "submitted_on": "2025-02-30"}}"#,
            )],
            "INVALID_RECORD",
            "records[0].license.submitted_on",
        ),
        (
            "a loose date",
            vec![record(
                r#"{"license": {"id": "L9", "supplier_id": "NBM", "material": "DY", "status": "LICENSE_STATUS_PENDING", "quantity_kg": 1, "valid_until": "2025-6-1"}}"#,
            )],
            "INVALID_RECORD",
            "records[0].license.valid_until",
        ),
        (
            "controlling country lower-case",
            vec![record(
                r#"{"material": {"code": "QQ", "controlled_by": "cn"}}"#,
            )],
            "INVALID_RECORD",
            "records[0].material.controlled_by",
        ),
        (
            "a supplier twice in one component",
            vec![record(
                r#"{"component": {"id": "C9", "sources": [{"supplier_id": "NBM", "share": 0.5}, {"supplier_id": "NBM", "share": 0.5}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.sources",
        ),
        (
            "negative grams",
            vec![record(
                r#"{"component": {"id": "C9", "materials": [{"material": "DY", "grams_per_unit": -1}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.materials[0].grams_per_unit",
        ),
        (
            "a material twice in one component",
            vec![record(
                r#"{"component": {"id": "C9", "materials": [{"material": "DY", "grams_per_unit": 1}, {"material": "DY", "grams_per_unit": 2}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.materials",
        ),
        (
            "an input quantity of zero",
            vec![record(
                r#"{"component": {"id": "C9", "inputs": [{"component_id": "MAG-TM", "quantity": 0}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].component.inputs[0].quantity",
        ),
        (
            "a BOM quantity of zero",
            vec![record(
                r#"{"line": {"id": "L9", "plant": "P", "units_per_day": 1, "bom": [{"component_id": "MAG-TM", "quantity": 0}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].line.bom[0].quantity",
        ),
        (
            "a part twice in one BOM",
            vec![record(
                r#"{"line": {"id": "L9", "plant": "P", "units_per_day": 1, "bom": [{"component_id": "MAG-TM", "quantity": 1}, {"component_id": "MAG-TM", "quantity": 1}]}}"#,
            )],
            "INVALID_RECORD",
            "records[0].line.bom",
        ),
        (
            "an unknown part in a BOM",
            vec![record(
                r#"{"line": {"id": "L9", "plant": "P", "units_per_day": 1, "bom": [{"component_id": "NO-PART", "quantity": 1}]}}"#,
            )],
            "UNKNOWN_REFERENCE",
            "records[0].line.bom[0].component_id",
        ),
        (
            "plant past the limit",
            vec![record(&format!(
                r#"{{"line": {{"id": "L9", "plant": "{}", "units_per_day": 1}}}}"#,
                "P".repeat(129)
            ))],
            "INVALID_RECORD",
            "records[0].line.plant",
        ),
        (
            "plant with a control character",
            vec![record(
                r#"{"line": {"id": "L9", "plant": "P\u0007", "units_per_day": 1}}"#,
            )],
            "INVALID_RECORD",
            "records[0].line.plant",
        ),
        (
            "licence quantity of zero",
            vec![record(
                r#"{"license": {"id": "L9", "supplier_id": "NBM", "material": "DY", "status": "LICENSE_STATUS_PENDING", "quantity_kg": 0}}"#,
            )],
            "INVALID_RECORD",
            "records[0].license.quantity_kg",
        ),
        (
            "negative used quantity",
            vec![record(
                r#"{"license": {"id": "L9", "supplier_id": "NBM", "material": "DY", "status": "LICENSE_STATUS_PENDING", "quantity_kg": 1, "used_kg": -1}}"#,
            )],
            "INVALID_RECORD",
            "records[0].license.used_kg",
        ),
        (
            "valid until before valid from",
            vec![record(
                r#"{"license": {"id": "L9", "supplier_id": "NBM", "material": "DY", "status": "LICENSE_STATUS_APPROVED", "quantity_kg": 1, "valid_from": "2025-06-02", "valid_until": "2025-06-01"}}"#,
            )],
            "INVALID_RECORD",
            "records[0].license.valid_",
        ),
        (
            "licence of an unknown supplier",
            vec![record(
                r#"{"license": {"id": "L9", "supplier_id": "NOBODY", "material": "DY", "status": "LICENSE_STATUS_PENDING", "quantity_kg": 1}}"#,
            )],
            "UNKNOWN_REFERENCE",
            "records[0].license.supplier_id",
        ),
    ];
    let mut records = app.records.clone();
    let before = app.export().await;
    for (what, batch, reason, field) in cases {
        let status = app.upsert(batch).await.expect_err(what);
        let violations = expect_error(&status, Code::InvalidArgument, reason);
        assert!(
            violations.iter().any(|(f, _)| f.starts_with(field)),
            "{what}: no violation at {field} in {violations:?}"
        );
    }
    // Too many records in one request.
    let many = (0..10_001)
        .map(|i| record(&format!(r#"{{"supplier": {{"id": "MANY{i}"}}}}"#)))
        .collect();
    let status = app.upsert(many).await.unwrap_err();
    expect_error(&status, Code::InvalidArgument, "TOO_MANY_RECORDS");
    assert_eq!(
        app.export().await,
        before,
        "every refused write changed nothing"
    );

    // At the limits is fine.
    app.upsert(vec![record(&format!(
        r#"{{"supplier": {{"id": "{max_id}"}}}}"#
    ))])
    .await
    .expect("an id of exactly 128 characters");

    // Bad arguments to the other RPCs (garbage page tokens and negative
    // page sizes are in records_api.rs, lists_page_through_everything_in_id_order).
    let status = records
        .get_license(pb::GetLicenseRequest { id: String::new() })
        .await
        .unwrap_err();
    expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
    let status = records
        .delete_records(pb::DeleteRecordsRequest {
            refs: vec![pb::RecordRef { r#ref: None }],
        })
        .await
        .unwrap_err();
    expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
    let status = records
        .update_license_status(pb::UpdateLicenseStatusRequest {
            id: "LIC-BTM-DY-1".into(),
            status: 42,
            ..Default::default()
        })
        .await
        .unwrap_err();
    expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
    let mut risk = app.risk.clone();
    for (horizon, as_of) in [
        (731, "2025-06-02"),
        (-1, "2025-06-02"),
        (i32::MAX, "2025-06-02"),
        (90, "yesterday"),
    ] {
        let status = risk
            .list_at_risk_lines(pb::ListAtRiskLinesRequest {
                as_of: as_of.into(),
                horizon_days: horizon,
                ..Default::default()
            })
            .await
            .unwrap_err();
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
    }
    let status = risk
        .get_exposure(pb::GetExposureRequest {
            scope: Some(pb::get_exposure_request::Scope::SupplierId("NBM".into())),
            scenario: Some(pb::Scenario {
                overrides: vec![pb::LicenseOverride {
                    license_id: "NO-SUCH-LICENCE".into(),
                    status: pb::LicenseStatus::Approved as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
    let status = app
        .subscribe(pb::StreamLicenseUpdatesRequest {
            heartbeat_seconds: 3601,
            ..Default::default()
        })
        .await
        .unwrap_err();
    expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_protobuf_are_refused_and_the_server_stays_up() {
    let app = spawn_app().await;
    app.load_seed().await;
    let revision = app.network.view().revision;
    let good = common::seed_network().encode_to_vec();
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff; 64],
        good[..good.len() / 2].to_vec(),
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        b"{\"records\": []}".to_vec(),
    ];
    for body in garbage {
        let status = raw_call(&app, "/lodestone.v1.RecordService/UpsertRecords", body)
            .await
            .unwrap_err();
        // gRPC's own table: a request that does not parse is INTERNAL.
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(status.message().contains("decode"), "{status:?}");
    }
    let status = raw_call(&app, "/lodestone.v1.NoSuchService/Nothing", vec![])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(app.network.view().revision, revision);
    still_serving(&app).await;
}

/// The codes a well-formed refusal may carry; never UNKNOWN or UNAVAILABLE.
fn refusal(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::Internal
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::OutOfRange
    )
}

const UNARY: &[&str] = &[
    "/lodestone.v1.RecordService/UpsertRecords",
    "/lodestone.v1.RecordService/DeleteRecords",
    "/lodestone.v1.RecordService/UpdateLicenseStatus",
    "/lodestone.v1.RecordService/GetComponent",
    "/lodestone.v1.RecordService/ListLicenses",
    "/lodestone.v1.RiskService/GetExposure",
    "/lodestone.v1.RiskService/ListAtRiskLines",
];

/// Arbitrary records: ids from a small alphabet (often colliding, sometimes
/// invalid), any doubles (NaN, infinities, negatives), any enum numbers.
fn any_record() -> impl Strategy<Value = pb::Record> {
    let id = prop_oneof![
        "[A-C][0-3]",
        Just(String::new()),
        "[ -~]{0,5}",
        Just("NBM".to_string()),
        Just("DY".to_string()),
        Just("MAG-TM".to_string()),
    ];
    let number = prop_oneof![
        Just(0.0),
        Just(1.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        -10.0..10.0f64,
        any::<f64>(),
    ];
    let source = (id.clone(), number.clone())
        .prop_map(|(supplier_id, share)| pb::Source { supplier_id, share });
    let input =
        (id.clone(), number.clone()).prop_map(|(component_id, quantity)| pb::ComponentInput {
            component_id,
            quantity,
        });
    prop_oneof![
        (id.clone(), id.clone(), any::<i32>()).prop_map(|(id, country, tier)| pb::Record {
            record: Some(pb::record::Record::Supplier(pb::Supplier {
                id,
                country,
                tier,
                ..Default::default()
            })),
        }),
        (
            id.clone(),
            prop::collection::vec(source, 0..3),
            prop::collection::vec(input, 0..3),
            number.clone()
        )
            .prop_map(|(id, sources, inputs, on_hand_units)| pb::Record {
                record: Some(pb::record::Record::Component(pb::Component {
                    id,
                    sources,
                    inputs,
                    on_hand_units,
                    ..Default::default()
                })),
            }),
        (
            id.clone(),
            id,
            any::<i32>(),
            number.clone(),
            number,
            "[0-9-]{0,10}"
        )
            .prop_map(
                |(id, supplier_id, status, quantity_kg, used_kg, date)| pb::Record {
                    record: Some(pb::record::Record::License(pb::License {
                        id,
                        supplier_id,
                        material: "DY".into(),
                        status,
                        quantity_kg,
                        used_kg,
                        valid_until: date,
                        ..Default::default()
                    })),
                }
            ),
    ]
}

#[test]
fn arbitrary_bytes_and_records_never_break_the_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async {
        let app = spawn_app().await;
        app.load_seed().await;
        app
    });
    let cases = if long() { 5_000 } else { 128 };
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let (accepted, refused) = (AtomicU64::new(0), AtomicU64::new(0));

    proptest!(config.clone(), |(method in 0..UNARY.len(), body in prop::collection::vec(any::<u8>(), 0..512))| {
        let before = app.network.view().revision;
        let result = runtime.block_on(raw_call(&app, UNARY[method], body));
        match result {
            Ok(_) => { accepted.fetch_add(1, Ordering::Relaxed); }
            Err(status) => {
                prop_assert!(refusal(status.code()), "{}: {status:?}", UNARY[method]);
                prop_assert_eq!(app.network.view().revision, before, "a refusal changed the store");
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    proptest!(config, |(batch in prop::collection::vec(any_record(), 1..6))| {
        let before = runtime.block_on(app.export());
        match runtime.block_on(app.upsert(batch)) {
            Ok(_) => { accepted.fetch_add(1, Ordering::Relaxed); }
            Err(status) => {
                prop_assert_eq!(status.code(), Code::InvalidArgument, "{:?}", status);
                prop_assert_eq!(runtime.block_on(app.export()), before, "a refusal changed the store");
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    runtime.block_on(still_serving(&app));
    println!(
        "hostile input: {} accepted, {} refused, server up",
        accepted.into_inner(),
        refused.into_inner()
    );
}
