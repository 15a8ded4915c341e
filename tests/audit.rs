//! The audit trail: every committed write names who made it, when, by which
//! request and which records it changed; refused and validate-only writes
//! leave nothing; only admins list it (over gRPC and JSON); it pages by
//! revision and by time, survives a restart, and goes with the licence log.

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use common::{expect_error, spawn_app_in, spawn_app_with, with_token, TestApp};
use lodestone::network::Retention;
use lodestone::pb;
use lodestone::transport::auth::{new_token, Role};
use lodestone_test_macros::both_stores;
use tonic::Code;

/// The token file's clients: two writers, an admin and a reader.
struct Clients {
    erp: String,
    planner: String,
    admin: String,
    reader: String,
}

async fn serve(dir: Arc<tempfile::TempDir>) -> (TestApp, Clients) {
    let tokens = dir.path().join("tokens");
    let clients = if tokens.exists() {
        serde_json::from_str::<Vec<String>>(
            &std::fs::read_to_string(dir.path().join("tokens.json")).unwrap(),
        )
        .unwrap()
    } else {
        let mut lines = Vec::new();
        let mut secrets = Vec::new();
        for (name, role) in [
            ("erp-sap", Role::Writer),
            ("planner", Role::Writer),
            ("ops", Role::Admin),
            ("planning-ui", Role::Reader),
        ] {
            let (token, line) = new_token(name, role).unwrap();
            lines.push(line);
            secrets.push(token);
        }
        std::fs::write(&tokens, lines.join("\n") + "\n").unwrap();
        std::fs::write(
            dir.path().join("tokens.json"),
            serde_json::to_string(&secrets).unwrap(),
        )
        .unwrap();
        secrets
    };
    let app = spawn_app_with(dir, |c| c.auth_tokens = Some(tokens)).await;
    let [erp, planner, admin, reader] = <[String; 4]>::try_from(clients).unwrap();
    (
        app,
        Clients {
            erp,
            planner,
            admin,
            reader,
        },
    )
}

fn list(page_size: i32) -> pb::ListAuditEntriesRequest {
    pb::ListAuditEntriesRequest {
        page_size,
        ..Default::default()
    }
}

async fn entries(
    app: &TestApp,
    token: &str,
    request: pb::ListAuditEntriesRequest,
) -> Result<pb::ListAuditEntriesResponse, tonic::Status> {
    app.records
        .clone()
        .list_audit_entries(with_token(request, token))
        .await
        .map(|r| r.into_inner())
}

fn refs(kind: fn(String) -> pb::record_ref::Ref, ids: &[&str]) -> Vec<pb::RecordRef> {
    ids.iter()
        .map(|id| pb::RecordRef {
            r#ref: Some(kind(id.to_string())),
        })
        .collect()
}

fn author(entry: &pb::AuditEntry) -> &str {
    &entry.author.as_ref().unwrap().name
}

fn recorded_at(entry: &pb::AuditEntry) -> SystemTime {
    SystemTime::try_from(entry.recorded_at.unwrap()).unwrap()
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_traced_to_its_author_and_only_admins_read_the_trail() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (app, who) = serve(dir.clone()).await;
    let mut records = app.records.clone();
    let seed = common::seed_network();
    let seeded = seed.records.len() as u64;

    // 1. The ERP loads the network.
    records
        .upsert_records(with_token(seed.clone(), &who.erp))
        .await
        .unwrap();
    // Neither a refused write nor a validate-only one leaves an entry.
    let broken = pb::UpsertRecordsRequest {
        records: vec![common::record(
            r#"{"component": {"id": "C-X", "sources": [{"supplier_id": "NOBODY", "share": 1}]}}"#,
        )],
        validate_only: false,
    };
    let refused = records
        .upsert_records(with_token(broken, &who.erp))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let checked = pb::UpsertRecordsRequest {
        validate_only: true,
        ..seed.clone()
    };
    records
        .upsert_records(with_token(checked, &who.erp))
        .await
        .unwrap();
    // Nor does a write that changes nothing.
    records
        .upsert_records(with_token(seed.clone(), &who.erp))
        .await
        .unwrap();
    // 2. A planner records a decision.
    records
        .update_license_status(with_token(
            pb::UpdateLicenseStatusRequest {
                id: "LIC-BTM-DY-1".into(),
                status: pb::LicenseStatus::Rejected as i32,
                ..Default::default()
            },
            &who.planner,
        ))
        .await
        .unwrap();
    // 3. The admin adds a supplier and a licence by import...
    let import = pb::ImportRecordsRequest {
        records: vec![
            common::record(r#"{"supplier": {"id": "S-NEW", "country": "CN"}}"#),
            common::record(
                r#"{"license": {"id": "LIC-NEW", "supplier_id": "S-NEW", "material": "DY",
                    "status": "LICENSE_STATUS_PENDING", "quantity_kg": 5}}"#,
            ),
        ],
    };
    records
        .import_records(with_token(tokio_stream::iter(vec![import]), &who.admin))
        .await
        .unwrap();
    // 4. ...and the ERP deletes them again.
    records
        .delete_records(with_token(
            pb::DeleteRecordsRequest {
                refs: [
                    refs(pb::record_ref::Ref::License, &["LIC-NEW"]),
                    refs(pb::record_ref::Ref::Supplier, &["S-NEW"]),
                ]
                .concat(),
            },
            &who.erp,
        ))
        .await
        .unwrap();

    // Readers and writers may not read the trail.
    for token in [&who.reader, &who.planner] {
        let status = entries(&app, token, list(0)).await.unwrap_err();
        expect_error(&status, Code::PermissionDenied, "PERMISSION_DENIED");
        assert!(
            status.message().contains("ListAuditEntries"),
            "{}",
            status.message()
        );
    }

    let trail = entries(&app, &who.admin, list(0)).await.unwrap();
    assert_eq!(trail.next_page_token, "");
    assert_eq!(trail.oldest_revision, 1);
    let all = trail.entries;
    let summary: Vec<(u64, &str, &str, u64, u64, u64)> = all
        .iter()
        .map(|e| {
            (
                e.revision,
                author(e),
                e.request.as_str(),
                e.created_count,
                e.updated_count,
                e.deleted_count,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "erp-sap", "UpsertRecords", seeded, 0, 0),
            (2, "planner", "UpdateLicenseStatus", 0, 1, 0),
            (3, "ops", "ImportRecords", 2, 0, 0),
            (4, "erp-sap", "DeleteRecords", 0, 0, 2),
        ]
    );
    assert_eq!(all[0].created.len() as u64, seeded, "every record is named");
    assert_eq!(
        all[1].updated,
        refs(pb::record_ref::Ref::License, &["LIC-BTM-DY-1"])
    );
    assert_eq!(
        all[2].created,
        [
            refs(pb::record_ref::Ref::Supplier, &["S-NEW"]),
            refs(pb::record_ref::Ref::License, &["LIC-NEW"]),
        ]
        .concat()
    );
    assert_eq!(
        all[3].deleted,
        [
            refs(pb::record_ref::Ref::License, &["LIC-NEW"]),
            refs(pb::record_ref::Ref::Supplier, &["S-NEW"]),
        ]
        .concat()
    );
    let author = all[0].author.as_ref().unwrap();
    assert_eq!(
        (author.subject.as_str(), author.client_id.as_str()),
        ("", ""),
        "a token file's caller has a name only"
    );
    let times: Vec<SystemTime> = all.iter().map(recorded_at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // Pages of two, in revision order; a token is for its own filters.
    let first = entries(&app, &who.admin, list(2)).await.unwrap();
    assert_eq!(first.entries, all[..2]);
    assert!(!first.next_page_token.is_empty());
    let second = entries(
        &app,
        &who.admin,
        pb::ListAuditEntriesRequest {
            page_token: first.next_page_token.clone(),
            ..list(2)
        },
    )
    .await
    .unwrap();
    assert_eq!(second.entries, all[2..]);
    assert_eq!(second.next_page_token, "");
    let status = entries(
        &app,
        &who.admin,
        pb::ListAuditEntriesRequest {
            page_token: first.next_page_token,
            after_revision: 1,
            ..list(2)
        },
    )
    .await
    .unwrap_err();
    expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");

    // After a revision, and within a time range (from included, before not).
    let after = entries(
        &app,
        &who.admin,
        pb::ListAuditEntriesRequest {
            after_revision: 3,
            ..list(0)
        },
    )
    .await
    .unwrap();
    assert_eq!(after.entries, all[3..]);
    let ranged = entries(
        &app,
        &who.admin,
        pb::ListAuditEntriesRequest {
            recorded_from: all[1].recorded_at,
            recorded_before: all[3].recorded_at,
            ..list(0)
        },
    )
    .await
    .unwrap();
    let expected: Vec<_> = all
        .iter()
        .filter(|e| recorded_at(e) >= times[1] && recorded_at(e) < times[3])
        .cloned()
        .collect();
    assert_eq!(ranged.entries, expected);
    assert!(ranged.entries.contains(&all[1]));
    assert!(!ranged.entries.contains(&all[3]));
    let future = entries(
        &app,
        &who.admin,
        pb::ListAuditEntriesRequest {
            recorded_from: Some(prost_types::Timestamp::from(
                SystemTime::now() + std::time::Duration::from_secs(3600),
            )),
            ..list(0)
        },
    )
    .await
    .unwrap();
    assert!(future.entries.is_empty());
    // A range that ends before it starts, a malformed time, a negative page.
    let status = entries(
        &app,
        &who.admin,
        pb::ListAuditEntriesRequest {
            recorded_from: all[3].recorded_at,
            recorded_before: all[1].recorded_at,
            page_size: -1,
            ..list(0)
        },
    )
    .await
    .unwrap_err();
    let violations = expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
    let fields: Vec<&str> = violations.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["recorded_before", "page_size"], "{violations:?}");
    let status = entries(
        &app,
        &who.admin,
        pb::ListAuditEntriesRequest {
            recorded_from: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..list(0)
        },
    )
    .await
    .unwrap_err();
    expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");

    // JSON over HTTP, for the admin only.
    let http = lodestone::transport::oidc::http_client().unwrap();
    let url = format!(
        "http://{}/lodestone.v1.RecordService/ListAuditEntries",
        app.address
    );
    let answer = http
        .post(&url)
        .bearer_auth(&who.admin)
        .json(&serde_json::json!({"afterRevision": "1", "pageSize": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["entries"][0]["revision"], "2", "{body}");
    assert_eq!(body["entries"][0]["author"]["name"], "planner", "{body}");
    assert_eq!(body["entries"][0]["request"], "UpdateLicenseStatus");
    assert_eq!(
        body["entries"][0]["updated"][0]["license"], "LIC-BTM-DY-1",
        "{body}"
    );
    assert!(body["nextPageToken"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    let refused = http
        .post(&url)
        .bearer_auth(&who.reader)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // `lodestone audit` pages through it as JSON Lines, for an admin only.
    let audit = |token: String, extra: Vec<String>| {
        let server = format!("http://{}", app.address);
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_lodestone"))
                .args(["audit", "--server", &server, "--token", &token])
                .args(extra)
                .output()
                .expect("the binary runs")
        })
    };
    let since = prost_types::Timestamp::from(times[1]).to_string();
    let listed = audit(who.admin.clone(), vec!["--from".into(), since])
        .await
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let lines: Vec<pb::AuditEntry> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|l| lodestone::pb::json::from_json("lodestone.v1.AuditEntry", l).unwrap())
        .collect();
    let expected: Vec<_> = all
        .iter()
        .filter(|e| recorded_at(e) >= times[1])
        .cloned()
        .collect();
    assert_eq!(lines, expected);
    let refused = audit(who.reader.clone(), Vec::new()).await.unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("may not call"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let wrong = audit(who.admin.clone(), vec!["--from".into(), "yesterday".into()])
        .await
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("RFC 3339"));

    // The trail survives a restart as it was.
    drop(records);
    let dir = app.stop().await;
    let (app, who) = serve(dir).await;
    let again = entries(&app, &who.admin, list(0)).await.unwrap();
    assert_eq!(again.entries, all);

    // It is kept as long as the licence log: keeping the newest event only
    // (the import's licence deleted, revision 4) lets revisions up to 3 go.
    let removed = app
        .network
        .apply_retention(Retention {
            max_events: Some(1),
            max_age: None,
        })
        .await
        .unwrap();
    assert!(removed > 0);
    let kept = entries(&app, &who.admin, list(0)).await.unwrap();
    assert_eq!(kept.entries, all[3..]);
    assert_eq!(kept.oldest_revision, 4);
    app.stop().await;
}

/// A write of more than the thousand records an entry names is counted
/// whole, and named by its first thousand.
#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_import_is_counted_whole_and_named_in_part() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_in(dir).await;
    let suppliers: Vec<pb::Record> = (0..2_500)
        .map(|i| common::record(&format!(r#"{{"supplier": {{"id": "S{i:05}"}}}}"#)))
        .collect();
    app.records
        .clone()
        .import_records(tokio_stream::iter(
            suppliers
                .chunks(1000)
                .map(|c| pb::ImportRecordsRequest {
                    records: c.to_vec(),
                })
                .collect::<Vec<_>>(),
        ))
        .await
        .unwrap();
    // Without authentication everyone may read it, and no one is named.
    let trail = app
        .records
        .clone()
        .list_audit_entries(list(0))
        .await
        .unwrap()
        .into_inner();
    let [entry] = &trail.entries[..] else {
        panic!("{:?}", trail.entries.len());
    };
    assert_eq!(entry.created_count, 2_500);
    assert_eq!(entry.created.len(), 1_000);
    assert_eq!(
        entry.created[0],
        refs(pb::record_ref::Ref::Supplier, &["S00000"])[0]
    );
    assert_eq!(author(entry), "");
    assert_eq!(entry.request, "ImportRecords");
    app.stop().await;
}
