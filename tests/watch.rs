//! WatchAtRiskLines through the real gRPC stack: refusals before the stream,
//! the snapshot as ListAtRiskLines answers it, a change after a decision
//! and after a shipment, and the stream limit.

mod common;

use std::sync::Arc;
use std::time::Duration;

use lodestone_test_macros::both_stores;

use common::{expect_error, spawn_app, spawn_app_with};
use lodestone::pb::{self, watch_at_risk_lines_response::Event};
use tonic::Code;

fn question() -> pb::WatchAtRiskLinesRequest {
    pb::WatchAtRiskLinesRequest {
        as_of: "2025-06-02".into(),
        horizon_days: 90,
        heartbeat_seconds: 1,
        ..Default::default()
    }
}

/// The watched question asked as a listing, unpaged.
async fn listing(
    risk: &mut pb::risk_service_client::RiskServiceClient<tonic::transport::Channel>,
) -> pb::ListAtRiskLinesResponse {
    risk.list_at_risk_lines(pb::ListAtRiskLinesRequest {
        as_of: "2025-06-02".into(),
        horizon_days: 90,
        page_size: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

async fn next(stream: &mut tonic::Streaming<pb::WatchAtRiskLinesResponse>) -> Event {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("a message within a minute")
        .expect("no error")
        .expect("the watch goes on")
        .event
        .expect("an event")
}

#[both_stores]
#[tokio::test]
async fn a_watch_starts_with_the_listing_and_follows_a_decision() {
    let app = spawn_app().await;
    let loaded = app.load_seed().await;
    let mut risk = app.risk.clone();
    let mut stream = risk
        .watch_at_risk_lines(question())
        .await
        .unwrap()
        .into_inner();
    let Event::Snapshot(snapshot) = next(&mut stream).await else {
        panic!("a snapshot first")
    };
    let listed = listing(&mut risk).await;
    assert_eq!(snapshot.revision, loaded.revision);
    assert_eq!(snapshot.as_of, "2025-06-02");
    assert_eq!(
        snapshot.lines, listed.lines,
        "the snapshot is the listing, unpaged"
    );

    // Approved, Baotou's dysprosium moves WOB-ICE1's stop later.
    let decided = app
        .decide("LIC-BTM-DY-1", pb::LicenseStatus::Approved)
        .await
        .unwrap();
    let change = loop {
        match next(&mut stream).await {
            Event::Change(change) => break change,
            Event::Heartbeat(beat) => assert!(beat.revision < decided.revision),
            Event::Snapshot(_) => panic!("one snapshot"),
        }
    };
    assert_eq!(
        (change.from_revision, change.revision),
        (snapshot.revision, decided.revision)
    );
    let after = listing(&mut risk).await;
    let ice = change
        .changed
        .iter()
        .find(|l| l.line_id == "WOB-ICE1")
        .expect("WOB-ICE1 changed");
    let listed_ice = after.lines.iter().find(|l| l.line_id == "WOB-ICE1");
    assert_eq!(Some(ice), listed_ice);
    assert_eq!(change.total_size, after.total_size);
    assert_eq!(change.license_sequences.len(), 1, "the one decision");
    // Then quiet: a heartbeat says how far it has looked.
    match next(&mut stream).await {
        Event::Heartbeat(beat) => assert!(beat.revision >= decided.revision),
        other => panic!("nothing else changed: {other:?}"),
    }
}

#[both_stores]
#[tokio::test]
async fn a_watch_follows_a_shipment_as_it_follows_a_decision() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let mut stream = risk
        .watch_at_risk_lines(question())
        .await
        .unwrap()
        .into_inner();
    let Event::Snapshot(snapshot) = next(&mut stream).await else {
        panic!("a snapshot first")
    };
    // Plenty of the first line's root cause, landing tomorrow.
    let first = snapshot.lines.first().expect("a line at risk").clone();
    let cause = first.root_cause_path.last().expect("a root cause").clone();
    let written = app
        .upsert(vec![pb::Record {
            record: Some(pb::record::Record::Shipment(pb::Shipment {
                id: "SH-WATCHED".into(),
                component_id: cause.clone(),
                units: 1.0e7,
                arrives_on: "2025-06-03".into(),
                reference: "airfreight".into(),
                revision: 0,
            })),
        }])
        .await
        .unwrap();
    let change = loop {
        match next(&mut stream).await {
            Event::Change(change) => break change,
            Event::Heartbeat(beat) => assert!(beat.revision < written.revision),
            Event::Snapshot(_) => panic!("one snapshot"),
        }
    };
    assert_eq!(
        (change.from_revision, change.revision),
        (snapshot.revision, written.revision)
    );
    assert!(change.license_sequences.is_empty(), "no licence changed");
    let after = listing(&mut risk).await;
    let changed = change
        .changed
        .iter()
        .find(|l| l.line_id == first.line_id)
        .unwrap_or_else(|| panic!("{} changed: {change:?}", first.line_id));
    match after.lines.iter().find(|l| l.line_id == first.line_id) {
        Some(listed) => assert_eq!(changed, listed),
        None => assert!(!changed.at_risk, "{changed:?}"),
    }
    assert_ne!(
        after.lines.iter().find(|l| l.line_id == first.line_id),
        Some(&first),
        "{cause} on hand changes {}",
        first.line_id
    );
    assert_eq!(change.total_size, after.total_size);
}

#[both_stores]
#[tokio::test]
async fn bad_watches_are_refused_before_the_stream_starts() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    for (request, field) in [
        (
            pb::WatchAtRiskLinesRequest {
                heartbeat_seconds: 3601,
                ..question()
            },
            "heartbeat_seconds",
        ),
        (
            pb::WatchAtRiskLinesRequest {
                horizon_days: 731,
                ..question()
            },
            "horizon_days",
        ),
        (
            pb::WatchAtRiskLinesRequest {
                scenario: Some(pb::Scenario {
                    outages: vec![pb::SupplierOutage {
                        supplier_id: "NOBODY".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..question()
            },
            "scenario.outages[0].supplier_id",
        ),
    ] {
        let status = risk.watch_at_risk_lines(request).await.unwrap_err();
        let fields = expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(fields[0].0, field, "{fields:?}");
    }
}

#[both_stores]
#[tokio::test]
async fn watches_count_towards_the_stream_limit() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_with(dir, |config| config.max_streams = 2).await;
    app.load_seed().await;
    let mut risk = app.risk.clone();
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = risk
            .watch_at_risk_lines(question())
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(next(&mut stream).await, Event::Snapshot(_)));
        open.push(stream);
    }
    let status = risk.watch_at_risk_lines(question()).await.unwrap_err();
    expect_error(&status, Code::ResourceExhausted, "TOO_MANY_STREAMS");
}
