//! RecordService through the real gRPC stack, as an ERP integration uses it.

mod common;

use lodestone_test_macros::both_stores;

use common::{expect_error, metadata, record, seed_network, spawn_app, spawn_app_in};
use lodestone::pb;
use tonic::Code;

fn supplier(id: &str, country: &str) -> pb::Record {
    record(&format!(
        r#"{{"supplier": {{"id": "{id}", "name": "Supplier {id}", "country": "{country}", "tier": 1}}}}"#
    ))
}

fn component(id: &str, supplier: &str, inputs: &[&str]) -> pb::Record {
    let inputs: Vec<String> = inputs
        .iter()
        .map(|i| format!(r#"{{"component_id": "{i}", "quantity": 1}}"#))
        .collect();
    record(&format!(
        r#"{{"component": {{"id": "{id}", "sources": [{{"supplier_id": "{supplier}", "share": 1}}], "inputs": [{}]}}}}"#,
        inputs.join(",")
    ))
}

fn ref_to(kind: &str, id: &str) -> pb::RecordRef {
    use pb::record_ref::Ref;
    let r = match kind {
        "material" => Ref::Material(id.into()),
        "supplier" => Ref::Supplier(id.into()),
        "component" => Ref::Component(id.into()),
        "line" => Ref::Line(id.into()),
        _ => Ref::License(id.into()),
    };
    pb::RecordRef { r#ref: Some(r) }
}

#[both_stores]
#[tokio::test]
async fn upserted_records_are_served_back_with_their_revision() {
    let app = spawn_app().await;
    let seed = seed_network();
    let response = app.load_seed().await;
    assert_eq!(response.upserted_count as usize, seed.records.len());
    assert_eq!(response.revision, 1);

    let mut client = app.records.clone();
    let tm = client
        .get_component(pb::GetComponentRequest {
            id: "MAG-TM".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tm.sources.len(), 2);
    assert_eq!(tm.materials[0].material, "DY");
    assert_eq!(tm.on_hand_units, 3000.0);
    assert_eq!(tm.revision, 1);

    let dy = client
        .get_material(pb::GetMaterialRequest { id: "DY".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (dy.controlled_by.as_str(), dy.controlled_from.as_str()),
        ("CN", "2025-04-04")
    );
    let line = client
        .get_production_line(pb::GetProductionLineRequest {
            id: "ZW-EV1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(line.bom.len(), 5);
    let licence = client
        .get_license(pb::GetLicenseRequest {
            id: "LIC-NBM-TB-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(licence.status, pb::LicenseStatus::Pending as i32);
    assert_eq!(licence.expected_decision_on, "2025-06-27");
    assert_eq!(licence.valid_from, "");
    let nbm = client
        .get_supplier(pb::GetSupplierRequest { id: "NBM".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nbm.country, "CN");

    let missing = client
        .get_supplier(pb::GetSupplierRequest { id: "NOPE".into() })
        .await
        .unwrap_err();
    expect_error(&missing, Code::NotFound, "NOT_FOUND");
    assert_eq!(metadata(&missing)["id"], "NOPE");
    let malformed = client
        .get_license(pb::GetLicenseRequest {
            id: "no spaces".into(),
        })
        .await
        .unwrap_err();
    let violations = expect_error(&malformed, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations[0].0, "id");
}

#[both_stores]
#[tokio::test]
async fn upserting_the_same_records_again_changes_nothing() {
    let app = spawn_app().await;
    app.load_seed().await;
    let again = app.load_seed().await;
    assert_eq!(
        again.revision, 1,
        "an unchanged write does not move the revision"
    );

    // Changing one record moves the revision, and only that record's.
    let changed = supplier("NBM", "CN");
    let response = app.upsert(vec![changed]).await.unwrap();
    assert_eq!(response.revision, 2);
    let mut client = app.records.clone();
    let nbm = client
        .get_supplier(pb::GetSupplierRequest { id: "NBM".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((nbm.name.as_str(), nbm.revision), ("Supplier NBM", 2));
    let btm = client
        .get_supplier(pb::GetSupplierRequest { id: "BTM".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(btm.revision, 1);
}

#[both_stores]
#[tokio::test]
async fn an_invalid_request_lists_every_violation_and_stores_nothing_of_it() {
    let app = spawn_app().await;
    let records = vec![
        supplier("GOOD", "DE"),
        record(
            r#"{"component": {"id": "C1", "sources": [{"supplier_id": "GOOD", "share": 1.5}], "on_hand_units": -3}}"#,
        ),
        record(
            r#"{"license": {"id": "L1", "supplier_id": "GOOD", "material": "DY", "status": "LICENSE_STATUS_APPROVED", "quantity_kg": 10, "valid_from": "2025-02-30"}}"#,
        ),
        record(r#"{"line": {"id": "bad id", "plant": "P", "units_per_day": 0}}"#),
        pb::Record::default(),
        supplier("LOWER", "de"),
    ];
    let status = app.upsert(records).await.unwrap_err();
    let violations = expect_error(&status, Code::InvalidArgument, "INVALID_RECORD");
    let fields: Vec<&str> = violations.iter().map(|(f, _)| f.as_str()).collect();
    for expected in [
        "records[1].component.sources[0].share",
        "records[1].component.sources",
        "records[1].component.on_hand_units",
        "records[2].license.valid_from",
        "records[2].license.material",
        "records[3].line.id",
        "records[3].line.units_per_day",
        "records[4]",
        "records[5].supplier.country",
    ] {
        assert!(
            fields.contains(&expected),
            "{expected} missing from {fields:?}"
        );
    }
    // The material DY does not exist: also reported, though the reason stays INVALID_RECORD.
    assert!(violations
        .iter()
        .any(|(f, d)| f == "records[2].license.material" && d.contains("no material")));

    // Nothing was stored, not even the valid supplier.
    let err = app
        .records
        .clone()
        .get_supplier(pb::GetSupplierRequest { id: "GOOD".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(app.export().await, (0, vec![]));
}

#[both_stores]
#[tokio::test]
async fn references_must_name_records_that_exist_after_the_request() {
    let app = spawn_app().await;
    // Forward references within one request are fine.
    app.upsert(vec![component("C1", "S1", &[]), supplier("S1", "CN")])
        .await
        .unwrap();

    let status = app
        .upsert(vec![component("C2", "S-MISSING", &["C1", "C-MISSING"])])
        .await
        .unwrap_err();
    let violations = expect_error(&status, Code::InvalidArgument, "UNKNOWN_REFERENCE");
    let fields: Vec<&str> = violations.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "records[0].component.sources[0].supplier_id",
            "records[0].component.inputs[1].component_id"
        ]
    );
}

#[both_stores]
#[tokio::test]
async fn an_input_cycle_is_refused_and_named() {
    let app = spawn_app().await;
    app.upsert(vec![
        supplier("S", "DE"),
        component("C1", "S", &["C2"]),
        component("C2", "S", &["C3"]),
        component("C3", "S", &[]),
    ])
    .await
    .unwrap();
    let status = app
        .upsert(vec![component("C3", "S", &["C1"])])
        .await
        .unwrap_err();
    let violations = expect_error(&status, Code::InvalidArgument, "CYCLE_DETECTED");
    assert_eq!(metadata(&status)["cycle"], "C1 -> C2 -> C3 -> C1");
    assert!(
        status.message().contains("C1 -> C2 -> C3 -> C1"),
        "{}",
        status.message()
    );
    assert_eq!(
        violations[0].0,
        "records[0].component.inputs[0].component_id"
    );

    let status = app
        .upsert(vec![component("SELF", "S", &["SELF"])])
        .await
        .unwrap_err();
    // Its own input: a cycle of length 1.
    expect_error(&status, Code::InvalidArgument, "CYCLE_DETECTED");
    assert_eq!(metadata(&status)["cycle"], "SELF -> SELF");
}

#[both_stores]
#[tokio::test]
async fn one_request_holds_at_most_ten_thousand_records() {
    let app = spawn_app().await;
    let records: Vec<pb::Record> = (0..10_001)
        .map(|i| supplier(&format!("S{i}"), "DE"))
        .collect();
    let status = app.upsert(records).await.unwrap_err();
    expect_error(&status, Code::InvalidArgument, "TOO_MANY_RECORDS");
    assert_eq!(metadata(&status)["limit"], "10000");
}

#[both_stores]
#[tokio::test]
async fn revisions_are_preconditions() {
    let app = spawn_app().await;
    app.upsert(vec![supplier("S", "DE")]).await.unwrap();
    app.upsert(vec![supplier("T", "DE")]).await.unwrap();

    let mut stale = supplier("S", "FR");
    if let Some(pb::record::Record::Supplier(s)) = &mut stale.record {
        s.revision = 2;
    }
    let status = app.upsert(vec![stale.clone()]).await.unwrap_err();
    expect_error(&status, Code::Aborted, "REVISION_MISMATCH");
    assert_eq!(metadata(&status)["actualRevision"], "1");

    if let Some(pb::record::Record::Supplier(s)) = &mut stale.record {
        s.revision = 1;
    }
    assert_eq!(app.upsert(vec![stale]).await.unwrap().revision, 3);

    let mut absent = supplier("NEW", "DE");
    if let Some(pb::record::Record::Supplier(s)) = &mut absent.record {
        s.revision = 1;
    }
    let status = app.upsert(vec![absent]).await.unwrap_err();
    expect_error(&status, Code::Aborted, "REVISION_MISMATCH");
}

#[both_stores]
#[tokio::test]
async fn validate_only_checks_and_stores_nothing() {
    let app = spawn_app().await;
    let mut client = app.records.clone();
    let response = client
        .upsert_records(pb::UpsertRecordsRequest {
            records: seed_network().records,
            validate_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.revision, 0);
    assert_eq!(app.export().await.1.len(), 0);
    let status = client
        .upsert_records(pb::UpsertRecordsRequest {
            records: vec![component("C", "NOPE", &[])],
            validate_only: true,
        })
        .await
        .unwrap_err();
    expect_error(&status, Code::InvalidArgument, "UNKNOWN_REFERENCE");
}

#[both_stores]
#[tokio::test]
async fn deletes_are_atomic_and_keep_references_whole() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut client = app.records.clone();

    let status = client
        .delete_records(pb::DeleteRecordsRequest {
            refs: vec![ref_to("license", "LIC-SSM-DY-1"), ref_to("license", "NOPE")],
        })
        .await
        .unwrap_err();
    expect_error(&status, Code::NotFound, "NOT_FOUND");
    assert!(client
        .get_license(pb::GetLicenseRequest {
            id: "LIC-SSM-DY-1".into()
        })
        .await
        .is_ok());

    let status = client
        .delete_records(pb::DeleteRecordsRequest {
            refs: vec![ref_to("component", "MAG-EPS")],
        })
        .await
        .unwrap_err();
    expect_error(&status, Code::FailedPrecondition, "STILL_REFERENCED");
    assert_eq!(metadata(&status)["referrers"], "component EPS-UNIT");

    let status = client
        .delete_records(pb::DeleteRecordsRequest {
            refs: vec![ref_to("supplier", "SSM")],
        })
        .await
        .unwrap_err();
    expect_error(&status, Code::FailedPrecondition, "STILL_REFERENCED");
    assert_eq!(
        metadata(&status)["referrers"],
        "component SEAT-MOTOR, license LIC-SSM-DY-1, license LIC-SSM-DY-2"
    );

    // Deleting the referrers in the same request works.
    let response = client
        .delete_records(pb::DeleteRecordsRequest {
            refs: vec![
                ref_to("license", "LIC-SSM-DY-1"),
                ref_to("license", "LIC-SSM-DY-2"),
                ref_to("license", "LIC-SSM-DY-2"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.deleted_count, response.revision), (2, 2));
    let licences = app.all_licenses().await;
    assert!(licences.iter().all(|l| l.supplier_id != "SSM"));

    let status = client
        .delete_records(pb::DeleteRecordsRequest {
            refs: vec![pb::RecordRef::default(), ref_to("line", "bad id")],
        })
        .await
        .unwrap_err();
    let violations = expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(
        violations.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(),
        ["refs[0]", "refs[1].line"]
    );
}

#[both_stores]
#[tokio::test]
async fn lists_page_through_everything_in_id_order() {
    let app = spawn_app().await;
    let suppliers: Vec<pb::Record> = (0..23)
        .map(|i| supplier(&format!("S{i:02}"), if i % 3 == 0 { "CN" } else { "DE" }))
        .collect();
    app.upsert(suppliers).await.unwrap();
    let mut client = app.records.clone();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_suppliers(pb::ListSuppliersRequest {
                page_size: 5,
                page_token: token.clone(),
                country: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 23);
        assert_eq!(page.revision, 1);
        pages += 1;
        seen.extend(page.suppliers.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 5);
    let expected: Vec<String> = (0..23).map(|i| format!("S{i:02}")).collect();
    assert_eq!(seen, expected);

    // Filtered, across pages.
    let first = client
        .list_suppliers(pb::ListSuppliersRequest {
            page_size: 4,
            page_token: String::new(),
            country: "CN".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.total_size, 8);
    assert_eq!(
        first
            .suppliers
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["S00", "S03", "S06", "S09"]
    );
    let second = client
        .list_suppliers(pb::ListSuppliersRequest {
            page_size: 4,
            page_token: first.next_page_token.clone(),
            country: "CN".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second
            .suppliers
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["S12", "S15", "S18", "S21"]
    );
    assert!(second.next_page_token.is_empty());

    // A token is bound to its filters; garbage and negative sizes are refused.
    let status = client
        .list_suppliers(pb::ListSuppliersRequest {
            page_size: 4,
            page_token: first.next_page_token,
            country: "DE".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "page_token"
    );
    let status = client
        .list_suppliers(pb::ListSuppliersRequest {
            page_size: 4,
            page_token: "garbage!".into(),
            country: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "page_token"
    );
    let status = client
        .list_suppliers(pb::ListSuppliersRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "page_size"
    );
    let status = client
        .list_suppliers(pb::ListSuppliersRequest {
            country: "china".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "country"
    );
}

#[both_stores]
#[tokio::test]
async fn lists_filter_by_every_documented_field() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut client = app.records.clone();
    let ids = |v: Vec<String>| v.join(",");

    let by_supplier = client
        .list_components(pb::ListComponentsRequest {
            supplier_id: "NBM".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(by_supplier.components.into_iter().map(|c| c.id).collect()),
        "HO-SENSOR,MAG-TM"
    );
    assert_eq!(by_supplier.total_size, 2);
    let by_material = client
        .list_components(pb::ListComponentsRequest {
            material: "DY".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(by_material.components.into_iter().map(|c| c.id).collect()),
        "MAG-EPS,MAG-TM,SEAT-MOTOR"
    );
    let both = client
        .list_components(pb::ListComponentsRequest {
            supplier_id: "NBM".into(),
            material: "DY".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            ids(both.components.into_iter().map(|c| c.id).collect()).as_str(),
            both.total_size
        ),
        ("MAG-TM", 1)
    );

    let lines = client
        .list_production_lines(pb::ListProductionLinesRequest {
            plant: "WOLFSBURG".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(lines.lines.into_iter().map(|l| l.id).collect()),
        "WOB-HEV1,WOB-ICE1"
    );

    let pending = client
        .list_licenses(pb::ListLicensesRequest {
            status: pb::LicenseStatus::Pending as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(pending.licenses.into_iter().map(|l| l.id).collect()),
        "LIC-BTM-DY-1,LIC-NBM-TB-1,LIC-SSM-DY-2"
    );
    let nbm_approved = client
        .list_licenses(pb::ListLicensesRequest {
            supplier_id: "NBM".into(),
            status: pb::LicenseStatus::Approved as i32,
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nbm_approved.total_size, 3);
    assert_eq!(
        ids(nbm_approved.licenses.into_iter().map(|l| l.id).collect()),
        "LIC-NBM-DY-1,LIC-NBM-DY-2"
    );
    let next = client
        .list_licenses(pb::ListLicensesRequest {
            supplier_id: "NBM".into(),
            status: pb::LicenseStatus::Approved as i32,
            page_size: 2,
            page_token: nbm_approved.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(next.licenses.into_iter().map(|l| l.id).collect()),
        "LIC-NBM-TB-0"
    );
    let dy = client
        .list_licenses(pb::ListLicensesRequest {
            material: "DY".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dy.total_size, 5);
    let materials = client
        .list_materials(pb::ListMaterialsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(materials.materials.into_iter().map(|m| m.code).collect()),
        "CE,DY,HO,ND,TB"
    );

    let status = client
        .list_licenses(pb::ListLicensesRequest {
            status: 42,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "status"
    );
}

#[both_stores]
#[tokio::test]
async fn update_license_status_records_a_decision_and_keeps_the_rest() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut client = app.records.clone();
    let decided = client
        .update_license_status(pb::UpdateLicenseStatusRequest {
            id: "LIC-BTM-DY-1".into(),
            status: pb::LicenseStatus::Approved as i32,
            decided_on: "2025-06-20".into(),
            valid_from: "2025-06-21".into(),
            revision: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decided.status, pb::LicenseStatus::Approved as i32);
    assert_eq!(
        (decided.decided_on.as_str(), decided.valid_from.as_str()),
        ("2025-06-20", "2025-06-21")
    );
    assert_eq!(
        (decided.quantity_kg, decided.valid_until.as_str()),
        (500.0, "2026-05-05")
    );
    assert_eq!(decided.revision, 2);
    let stored = client
        .get_license(pb::GetLicenseRequest {
            id: "LIC-BTM-DY-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored, decided);

    // Stale revision, unknown licence, bad date, bad status, validity inverted.
    let stale = client
        .update_license_status(pb::UpdateLicenseStatusRequest {
            id: "LIC-BTM-DY-1".into(),
            status: pb::LicenseStatus::Revoked as i32,
            revision: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    expect_error(&stale, Code::Aborted, "REVISION_MISMATCH");
    let missing = client
        .update_license_status(pb::UpdateLicenseStatusRequest {
            id: "NOPE".into(),
            status: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    expect_error(&missing, Code::NotFound, "NOT_FOUND");
    let bad_date = client
        .update_license_status(pb::UpdateLicenseStatusRequest {
            id: "LIC-BTM-DY-1".into(),
            decided_on: "20.06.2025".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&bad_date, Code::InvalidArgument, "INVALID_RECORD")[0].0,
        "decided_on"
    );
    let bad_status = client
        .update_license_status(pb::UpdateLicenseStatusRequest {
            id: "LIC-BTM-DY-1".into(),
            status: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&bad_status, Code::InvalidArgument, "INVALID_ARGUMENT")[0].0,
        "status"
    );
    let inverted = client
        .update_license_status(pb::UpdateLicenseStatusRequest {
            id: "LIC-BTM-DY-1".into(),
            valid_until: "2025-01-01".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        expect_error(&inverted, Code::InvalidArgument, "INVALID_RECORD")[0].0,
        "valid_until"
    );
    let unchanged = client
        .get_license(pb::GetLicenseRequest {
            id: "LIC-BTM-DY-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged, decided, "refused decisions change nothing");
}

#[both_stores]
#[tokio::test]
async fn export_then_import_restores_the_network_exactly() {
    let source = spawn_app().await;
    source.load_seed().await;
    source.upsert(vec![supplier("EXTRA", "JP")]).await.unwrap();
    let (revision, exported) = source.export().await;
    assert_eq!(revision, 2);
    assert_eq!(exported.len(), seed_network().records.len() + 1);
    // Materials and suppliers come first.
    let first_other = exported
        .iter()
        .position(|r| {
            !matches!(
                r.record,
                Some(pb::record::Record::Material(_)) | Some(pb::record::Record::Supplier(_))
            )
        })
        .unwrap();
    assert!(exported[first_other..].iter().all(|r| !matches!(
        r.record,
        Some(pb::record::Record::Material(_)) | Some(pb::record::Record::Supplier(_))
    )));

    let target = spawn_app().await;
    // Send the export back in reverse, three records a message: references point forward.
    let mut reversed = exported.clone();
    reversed.reverse();
    let messages: Vec<pb::ImportRecordsRequest> = reversed
        .chunks(3)
        .map(|c| pb::ImportRecordsRequest {
            records: c.to_vec(),
        })
        .collect();
    let response = target
        .records
        .clone()
        .import_records(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.upserted_count as usize, exported.len());
    assert_eq!(response.revision, 1);
    let (_, restored) = target.export().await;
    let strip = |records: Vec<pb::Record>| -> Vec<pb::Record> {
        records
            .into_iter()
            .map(|mut r| {
                let mut violations = Vec::new();
                let mut d = lodestone::pb::record_from_pb(r.clone(), "", &mut violations).unwrap();
                d.set_revision(0);
                r = lodestone::pb::record_to_pb(&d);
                r
            })
            .collect()
    };
    assert_eq!(strip(restored), strip(exported));
}

#[both_stores]
#[tokio::test]
async fn an_import_is_validated_whole_and_refused_whole() {
    let app = spawn_app().await;
    let messages = vec![
        pb::ImportRecordsRequest {
            records: vec![supplier("S1", "CN"), supplier("S2", "CN")],
        },
        pb::ImportRecordsRequest {
            records: vec![component("C1", "S1", &[]), component("C2", "S-NOPE", &[])],
        },
    ];
    let status = app
        .records
        .clone()
        .import_records(tokio_stream::iter(messages))
        .await
        .unwrap_err();
    let violations = expect_error(&status, Code::InvalidArgument, "UNKNOWN_REFERENCE");
    // Paths count records across the whole stream.
    assert_eq!(
        violations[0].0,
        "records[3].component.sources[0].supplier_id"
    );
    assert_eq!(app.export().await, (0, vec![]));
}

#[both_stores]
#[tokio::test]
async fn data_survives_a_restart() {
    let app = spawn_app().await;
    app.load_seed().await;
    let (revision, before) = app.export().await;
    let dir = app.stop().await;

    let app = spawn_app_in(dir).await;
    let (revision_after, after) = app.export().await;
    assert_eq!((revision_after, after.len()), (revision, before.len()));
    assert_eq!(after, before);
    // Counters carry on where they stopped.
    assert_eq!(
        app.upsert(vec![supplier("NEW", "DE")])
            .await
            .unwrap()
            .revision,
        revision + 1
    );
    let total = app
        .records
        .clone()
        .list_suppliers(pb::ListSuppliersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .total_size;
    assert_eq!(total, 8);
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_all_get_their_answer() {
    // 32 clients writing at once once deadlocked sled's flush thread pool.
    let app = spawn_app().await;
    app.load_seed().await;
    let licences: Vec<String> = app.all_licenses().await.into_iter().map(|l| l.id).collect();
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let client = app.records.clone();
            let id = licences[w % licences.len()].clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    client
                        .clone()
                        .update_license_status(pb::UpdateLicenseStatusRequest {
                            id: id.clone(),
                            quantity_kg: 1000.0 + (w * 40 + i) as f64,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let all = async {
        for writer in writers {
            writer.await.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(300), all)
        .await
        .expect("every write is answered");
    assert_eq!(app.network.store().revision(), 1 + 32 * 40);
}

/// An export is one snapshot however many writes land while it streams: a
/// writer keeps two licences' quantities equal, write after write, and no
/// export ever holds them unequal or a record newer than its revision.
#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_one_snapshot_under_concurrent_writes() {
    let app = spawn_app().await;
    app.load_seed().await;
    let licences = app.all_licenses().await;
    let (a, b) = (licences[0].clone(), licences[1].clone());
    // Equal from here on.
    for l in [&a, &b] {
        app.set_quantity(&l.id, 1000.0).await.unwrap();
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (app_records, done) = (app.records.clone(), done.clone());
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let both = [&a, &b].map(|l| pb::Record {
                    record: Some(pb::record::Record::License(pb::License {
                        quantity_kg: 1000.0 + f64::from(n),
                        revision: 0,
                        ..(*l).clone()
                    })),
                });
                app_records
                    .clone()
                    .upsert_records(pb::UpsertRecordsRequest {
                        records: both.to_vec(),
                        validate_only: false,
                    })
                    .await
                    .unwrap();
            }
            n
        })
    };
    for _ in 0..20 {
        let (revision, records) = app.export().await;
        let quantity = |id: &str| {
            records
                .iter()
                .find_map(|r| match &r.record {
                    Some(pb::record::Record::License(l)) if l.id == id => Some(l.quantity_kg),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(quantity(&a.id), quantity(&b.id), "at revision {revision}");
        let newest = records
            .iter()
            .map(|r| {
                lodestone::pb::record_from_pb(r.clone(), "", &mut Vec::new())
                    .unwrap()
                    .revision()
            })
            .max()
            .unwrap();
        assert!(newest <= revision, "{newest} > {revision}");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let writes = writer.await.unwrap();
    assert!(writes > 1, "the writer wrote while exports ran ({writes})");
}
