//! StreamLicenseUpdates: every change, in order, exactly once.

mod common;

use lodestone_test_macros::both_stores;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{expect_error, metadata, next_event, next_update, spawn_app};
use lodestone::network::Retention;
use lodestone::pb::{self, stream_license_updates_response::Event};
use tonic::Code;

/// The seed network holds 7 licences: its load logs sequences 1 to 7.
const SEED_LICENCES: u64 = 7;

fn from(after_sequence: u64) -> pb::StreamLicenseUpdatesRequest {
    pb::StreamLicenseUpdatesRequest {
        after_sequence,
        ..Default::default()
    }
}

#[both_stores]
#[tokio::test]
async fn a_stream_replays_the_log_then_goes_live_without_a_gap() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut stream = app.subscribe(from(0)).await.unwrap();
    let Event::Heartbeat(first) = next_event(&mut stream).await else {
        panic!("a heartbeat comes first")
    };
    assert_eq!(first.head_sequence, SEED_LICENCES);

    // Writes land while the stream is still replaying.
    let writer = {
        let app_records = app.records.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                let mut client = app_records.clone();
                client
                    .update_license_status(pb::UpdateLicenseStatusRequest {
                        id: "LIC-NBM-DY-1".into(),
                        quantity_kg: 400.0 + f64::from(i + 1),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < (SEED_LICENCES + 50) as usize {
        seen.push(next_update(&mut stream).await);
    }
    writer.await.unwrap();
    let sequences: Vec<u64> = seen.iter().map(|u| u.sequence).collect();
    assert_eq!(sequences, (1..=SEED_LICENCES + 50).collect::<Vec<_>>());
    assert!(seen[..SEED_LICENCES as usize]
        .iter()
        .all(|u| u.kind == pb::ChangeKind::Created as i32));
    let quantities: Vec<f64> = seen[SEED_LICENCES as usize..]
        .iter()
        .map(|u| u.license.as_ref().unwrap().quantity_kg)
        .collect();
    assert_eq!(
        quantities,
        (1..=50).map(|i| 400.0 + f64::from(i)).collect::<Vec<_>>()
    );
    let updated = &seen[SEED_LICENCES as usize];
    assert_eq!(updated.kind, pb::ChangeKind::Updated as i32);
    assert_eq!(updated.previous_status, pb::LicenseStatus::Approved as i32);
    assert!(updated.recorded_at.is_some());
}

#[both_stores]
#[tokio::test]
async fn thousands_of_concurrent_writes_arrive_contiguous_and_in_order() {
    let app = spawn_app().await;
    app.load_seed().await;
    let licences: Vec<String> = app.all_licenses().await.into_iter().map(|l| l.id).collect();
    let mut stream = app
        .subscribe(pb::StreamLicenseUpdatesRequest {
            from_now: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let writers = 8;
    let per_writer = 250;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = app.records.clone();
        let id = licences[w % licences.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..per_writer {
                let quantity = 10_000.0 + (w * per_writer + i) as f64;
                let licence = client
                    .clone()
                    .update_license_status(pb::UpdateLicenseStatusRequest {
                        id: id.clone(),
                        quantity_kg: quantity,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                acked.push((licence.revision, quantity));
            }
            acked
        }));
    }
    let mut acked: Vec<(u64, f64)> = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    let total = (writers * per_writer) as u64;
    let mut seen = Vec::new();
    while seen.len() < total as usize {
        seen.push(next_update(&mut stream).await);
    }
    let sequences: Vec<u64> = seen.iter().map(|u| u.sequence).collect();
    assert_eq!(
        sequences,
        (SEED_LICENCES + 1..=SEED_LICENCES + total).collect::<Vec<_>>()
    );
    // Every acknowledged write is there, at the revision it was acknowledged with.
    let by_revision: HashMap<u64, f64> = seen
        .iter()
        .map(|u| (u.revision, u.license.as_ref().unwrap().quantity_kg))
        .collect();
    for (revision, quantity) in acked {
        assert_eq!(by_revision.get(&revision), Some(&quantity));
    }
    assert!(seen.windows(2).all(|w| w[0].revision < w[1].revision));
}

#[both_stores]
#[tokio::test]
async fn a_stream_resumes_after_any_sequence_and_filters() {
    let app = spawn_app().await;
    app.load_seed().await;
    for after in [0, 3, SEED_LICENCES - 1] {
        let mut stream = app.subscribe(from(after)).await.unwrap();
        assert_eq!(next_update(&mut stream).await.sequence, after + 1);
    }
    let mut at_head = app.subscribe(from(SEED_LICENCES)).await.unwrap();
    app.set_quantity("LIC-SSM-DY-2", 41.0).await.unwrap();
    assert_eq!(next_update(&mut at_head).await.sequence, SEED_LICENCES + 1);

    // Only TB licences of NBM; only pending ones.
    let mut tb = app
        .subscribe(pb::StreamLicenseUpdatesRequest {
            materials: vec!["TB".into()],
            supplier_ids: vec!["NBM".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<String> = vec![next_update(&mut tb).await, next_update(&mut tb).await]
        .into_iter()
        .map(|u| u.license.unwrap().id)
        .collect();
    assert_eq!(ids, ["LIC-NBM-TB-1", "LIC-NBM-TB-0"], "in log order");
    let mut pending = app
        .subscribe(pb::StreamLicenseUpdatesRequest {
            statuses: vec![pb::LicenseStatus::Pending as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut pending_ids = Vec::new();
    for _ in 0..4 {
        pending_ids.push(next_update(&mut pending).await.license.unwrap().id);
    }
    assert_eq!(
        pending_ids,
        [
            "LIC-NBM-TB-1",
            "LIC-BTM-DY-1",
            "LIC-SSM-DY-2",
            "LIC-SSM-DY-2"
        ]
    );
    // The status filter looks at the status after the change.
    app.decide("LIC-BTM-DY-1", pb::LicenseStatus::Rejected)
        .await
        .unwrap();
    app.set_quantity("LIC-NBM-TB-1", 61.0).await.unwrap();
    assert_eq!(
        next_update(&mut pending).await.license.unwrap().id,
        "LIC-NBM-TB-1"
    );
}

#[both_stores]
#[tokio::test]
async fn a_sequence_beyond_the_head_or_before_the_oldest_is_out_of_range() {
    let app = spawn_app().await;
    app.load_seed().await;
    let status = app.subscribe(from(SEED_LICENCES + 1)).await.unwrap_err();
    expect_error(&status, Code::OutOfRange, "SEQUENCE_AHEAD");
    assert_eq!(metadata(&status)["headSequence"], SEED_LICENCES.to_string());

    let removed = app
        .network
        .apply_retention(Retention {
            max_events: Some(3),
            max_age: None,
        })
        .await
        .unwrap();
    assert_eq!(removed, SEED_LICENCES - 3);
    let status = app.subscribe(from(2)).await.unwrap_err();
    expect_error(&status, Code::OutOfRange, "SEQUENCE_COMPACTED");
    assert_eq!(
        metadata(&status)["oldestSequence"],
        (SEED_LICENCES - 2).to_string()
    );
    // What is kept is contiguous and still served.
    let mut stream = app.subscribe(from(SEED_LICENCES - 3)).await.unwrap();
    assert_eq!(next_update(&mut stream).await.sequence, SEED_LICENCES - 2);

    let status = app
        .subscribe(pb::StreamLicenseUpdatesRequest {
            statuses: vec![0],
            heartbeat_seconds: 3601,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let fields: Vec<String> = expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT")
        .into_iter()
        .map(|v| v.0)
        .collect();
    assert_eq!(fields, ["statuses[0]", "heartbeat_seconds"]);
}

#[both_stores]
#[tokio::test]
async fn an_idle_stream_sends_heartbeats_with_the_head() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut stream = app
        .subscribe(pb::StreamLicenseUpdatesRequest {
            from_now: true,
            heartbeat_seconds: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let Event::Heartbeat(first) = next_event(&mut stream).await else {
        panic!()
    };
    assert_eq!(first.head_sequence, SEED_LICENCES);
    let started = Instant::now();
    let Event::Heartbeat(second) = next_event(&mut stream).await else {
        panic!("nothing else happened")
    };
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    assert_eq!(second.head_sequence, SEED_LICENCES);
    app.set_quantity("LIC-NBM-DY-1", 401.0).await.unwrap();
    assert_eq!(next_update(&mut stream).await.sequence, SEED_LICENCES + 1);
    let Event::Heartbeat(after) = next_event(&mut stream).await else {
        panic!()
    };
    assert_eq!(
        after.head_sequence,
        SEED_LICENCES + 1,
        "a heartbeat is a checkpoint"
    );
}

#[both_stores]
#[tokio::test]
async fn a_stalled_subscriber_holds_bounded_memory_and_loses_nothing() {
    let app = spawn_app().await;
    app.load_seed().await;
    // Subscribe and then read nothing.
    let mut stalled = app
        .subscribe(pb::StreamLicenseUpdatesRequest {
            from_now: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let writes = 2_000u64;
    for i in 0..writes {
        app.set_quantity("LIC-NBM-DY-1", 1000.0 + i as f64)
            .await
            .unwrap();
    }
    // Give the stream task every chance to buffer what it would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued = app.streams.queued.load(Ordering::Relaxed);
    assert!(
        queued <= lodestone::api::STREAM_QUEUE as i64,
        "{queued} messages queued"
    );
    // Nothing was lost: the client reads it all now.
    let mut last = 0;
    for _ in 0..writes {
        let update = next_update(&mut stalled).await;
        assert_eq!(update.sequence, last.max(SEED_LICENCES) + 1);
        last = update.sequence;
    }
    assert_eq!(last, SEED_LICENCES + writes);
    drop(stalled);
    // A vanished client's task ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.streams.open.load(Ordering::Relaxed) > 0 {
        assert!(Instant::now() < deadline, "the stream task did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[both_stores]
#[tokio::test]
async fn a_thousand_subscribers_all_receive_everything() {
    let app = spawn_app().await;
    app.load_seed().await;
    // Subscribers are separate clients: twenty connections of fifty streams.
    let mut readers = Vec::new();
    for _ in 0..20 {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect()
            .await
            .unwrap();
        for _ in 0..50 {
            let mut client = pb::risk_service_client::RiskServiceClient::new(channel.clone());
            let mut stream = client
                .stream_license_updates(pb::StreamLicenseUpdatesRequest {
                    from_now: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let Event::Heartbeat(_) = next_event(&mut stream).await else {
                panic!()
            };
            readers.push(tokio::spawn(async move {
                let mut sequences = Vec::new();
                for _ in 0..20 {
                    sequences.push(next_update(&mut stream).await.sequence);
                }
                sequences
            }));
        }
    }
    assert_eq!(app.streams.open.load(Ordering::Relaxed), 1000);
    for i in 0..20 {
        app.set_quantity("LIC-NBM-DY-2", 200.0 + f64::from(i))
            .await
            .unwrap();
    }
    let expected: Vec<u64> = (SEED_LICENCES + 1..=SEED_LICENCES + 20).collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
}

#[both_stores]
#[tokio::test]
async fn streams_end_unavailable_at_shutdown() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut stream = app.subscribe(from(0)).await.unwrap();
    let Event::Heartbeat(_) = next_event(&mut stream).await else {
        panic!()
    };
    let stopping = tokio::spawn(app.stop());
    let mut updates = 0;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(message)) => {
                if let Some(Event::Update(_)) = message.event {
                    updates += 1;
                }
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert_eq!(updates, SEED_LICENCES, "what was durable was sent first");
    stopping.await.unwrap();
}

/// A licence write whose caller gives up (a deadline passing at any moment)
/// has either not happened or reaches the streams, without waiting for
/// another write to carry it.
#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_caller_gave_up_is_absent_or_announced() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut stream = app.subscribe(from(SEED_LICENCES)).await.unwrap();
    let mut records = app.records.clone();
    let mut announced = SEED_LICENCES;
    let mut acknowledged = Vec::new();
    let mut delivered = HashMap::new();
    let mut deadline = Duration::from_micros(250);
    for attempt in 0..48 {
        let mut request = tonic::Request::new(pb::UpdateLicenseStatusRequest {
            id: "LIC-NBM-DY-1".into(),
            quantity_kg: 500.0 + f64::from(attempt),
            ..Default::default()
        });
        request.set_timeout(deadline);
        match records.update_license_status(request).await {
            Ok(licence) => acknowledged.push(licence.into_inner().revision),
            Err(status) => assert!(
                matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
                "{status:?}"
            ),
        }
        // A dry run waits for the writer path: whatever has reached it is
        // committed now. (The client gives up on its own clock, so a call
        // it abandoned can still reach the server, and commit, later.)
        records
            .upsert_records(pb::UpsertRecordsRequest {
                validate_only: true,
                ..Default::default()
            })
            .await
            .unwrap();
        // Everything committed is sent, in order, with no other write.
        let head = app.network.store().log_bounds().head;
        while announced < head {
            let update = next_update(&mut stream).await;
            assert_eq!(update.sequence, announced + 1);
            announced = update.sequence;
            delivered.insert(update.revision, update);
        }
        // From a quarter of a millisecond up to about 32 ms, six times over.
        deadline = if deadline >= Duration::from_millis(32) {
            Duration::from_micros(250)
        } else {
            deadline * 2
        };
    }
    assert!(!acknowledged.is_empty(), "some writes were answered");
    for revision in acknowledged {
        assert!(
            delivered.contains_key(&revision),
            "the acknowledged write of revision {revision} was sent"
        );
    }
}

/// A subscriber that reads nothing holds its stream's task in a full queue;
/// shutdown must still end it (within the grace period, not by it), and
/// every stream's messages, its last status included, must leave the queue
/// gauge where it started.
#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_stream_whose_client_reads_nothing() {
    let app = common::spawn_app_with(
        std::sync::Arc::new(tempfile::tempdir().unwrap()),
        |config| config.shutdown_grace_seconds = 120,
    )
    .await;
    // Thousands of licences in one import: thousands of log events, more
    // than the queue and the transport's windows hold together.
    let licences = 12_000;
    common::import_seed_with_bulk_licences(&app, licences).await;
    let streams = app.streams.clone();

    // One subscriber reads everything to its end; one reads nothing.
    let mut reader = app
        .subscribe(pb::StreamLicenseUpdatesRequest {
            from_now: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let Event::Heartbeat(_) = next_event(&mut reader).await else {
        panic!("a heartbeat comes first")
    };
    // Small HTTP/2 windows, so that the transport buffers little of it.
    let small = common::small_window_channel(app.address).await;
    let stalled = pb::risk_service_client::RiskServiceClient::new(small)
        .stream_license_updates(from(0))
        .await
        .unwrap()
        .into_inner();
    common::eventually(Duration::from_secs(60), || {
        let queued = streams.queued.load(Ordering::Relaxed);
        async move { (queued >= lodestone::api::STREAM_QUEUE as i64).then_some(()) }
    })
    .await;

    let started = Instant::now();
    let stopping = tokio::spawn(app.stop());
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(60), reader.message())
            .await
            .expect("the reading stream ends")
        {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    // The stalled stream's task ends at once, not after the grace period.
    common::eventually(Duration::from_secs(30), || {
        let open = streams.open.load(Ordering::Relaxed);
        async move { (open == 0).then_some(()) }
    })
    .await;
    drop(stalled);
    tokio::time::timeout(Duration::from_secs(60), stopping)
        .await
        .expect("the server stops well within its grace period")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(
        streams.queued.load(Ordering::Relaxed),
        0,
        "every queued message was taken or dropped, the final statuses too"
    );
}

/// A licence deleted reaches the stream as a DELETED update, with the
/// licence as it was.
#[both_stores]
#[tokio::test]
async fn a_licence_delete_reaches_the_stream() {
    let app = spawn_app().await;
    app.load_seed().await;
    let mut stream = app
        .subscribe(pb::StreamLicenseUpdatesRequest {
            from_now: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let Event::Heartbeat(_) = next_event(&mut stream).await else {
        panic!("a heartbeat comes first")
    };
    app.records
        .clone()
        .delete_records(pb::DeleteRecordsRequest {
            refs: vec![pb::RecordRef {
                r#ref: Some(pb::record_ref::Ref::License("LIC-NBM-TB-1".into())),
            }],
        })
        .await
        .unwrap();
    let update = next_update(&mut stream).await;
    assert_eq!(update.sequence, SEED_LICENCES + 1);
    assert_eq!(update.kind, pb::ChangeKind::Deleted as i32);
    assert_eq!(update.license.unwrap().id, "LIC-NBM-TB-1");
}

/// Retention by age keeps the events younger than it, contiguous.
#[both_stores]
#[tokio::test]
async fn retention_by_age_drops_only_older_events() {
    let app = spawn_app().await;
    app.load_seed().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    for i in 0..3 {
        app.set_quantity("LIC-NBM-DY-1", 500.0 + f64::from(i))
            .await
            .unwrap();
    }
    let removed = app
        .network
        .apply_retention(Retention {
            max_events: None,
            max_age: Some(Duration::from_millis(300)),
        })
        .await
        .unwrap();
    assert_eq!(removed, SEED_LICENCES, "the seed's events were older");
    let status = app.subscribe(from(0)).await.unwrap_err();
    expect_error(&status, Code::OutOfRange, "SEQUENCE_COMPACTED");
    assert_eq!(
        metadata(&status)["oldestSequence"],
        (SEED_LICENCES + 1).to_string()
    );
}

/// A subscriber that falls behind while retention removes what it has not
/// read yet is told mid-stream: OUT_OF_RANGE / SEQUENCE_COMPACTED, after
/// every event it could still be sent, in order.
#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_overtaken_by_retention_is_told_mid_stream() {
    let app = spawn_app().await;
    common::import_seed_with_bulk_licences(&app, 12_000).await;
    // A reader with small windows, so that little is in flight for it.
    let small = common::small_window_channel(app.address).await;
    let mut stream = pb::risk_service_client::RiskServiceClient::new(small)
        .stream_license_updates(from(0))
        .await
        .unwrap()
        .into_inner();
    let Event::Heartbeat(_) = next_event(&mut stream).await else {
        panic!("a heartbeat comes first")
    };
    assert_eq!(next_update(&mut stream).await.sequence, 1);
    app.network
        .apply_retention(Retention {
            max_events: Some(10),
            max_age: None,
        })
        .await
        .unwrap();
    let mut last = 1;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("the stream goes on")
        {
            Ok(Some(message)) => {
                if let Some(Event::Update(update)) = message.event {
                    assert_eq!(update.sequence, last + 1, "in order, no gap");
                    last = update.sequence;
                }
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    expect_error(&status, Code::OutOfRange, "SEQUENCE_COMPACTED");
    assert!(last < 12_000, "it fell behind the retention: {last}");
    assert_eq!(
        metadata(&status)["afterSequence"].parse::<u64>().ok(),
        Some(last),
        "{status:?}"
    );
}
