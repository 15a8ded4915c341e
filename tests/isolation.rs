//! No one sees half a write, and no one waits for one. A large import
//! commits in many steps on disk (through the undo journal); readers polling
//! meanwhile must see all of it or none of it, a large import that fails late
//! must never be seen at all, and health checks, reads and new subscriptions
//! must keep answering while it commits.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, limit_file_size, spawn_app, ServerProcess};
use lodestone::pb::{self, record_service_client::RecordServiceClient};
use tonic::transport::Channel;
use tonic::Code;

/// Suppliers in the large import: far past the 2,000 changes that one sled
/// transaction takes, so the import commits key by key through the journal.
const SUPPLIERS: usize = 40_000;

fn supplier_id(i: usize) -> String {
    format!("ISO-{i:06}")
}

/// The import's messages: `SUPPLIERS` suppliers, a thousand to a message.
fn import_messages() -> Vec<pb::ImportRecordsRequest> {
    (0..SUPPLIERS)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|chunk| pb::ImportRecordsRequest {
            records: chunk
                .iter()
                .map(|&i| pb::Record {
                    record: Some(pb::record::Record::Supplier(pb::Supplier {
                        id: supplier_id(i),
                        country: "CN".into(),
                        ..Default::default()
                    })),
                })
                .collect(),
        })
        .collect()
}

/// Whether the supplier `id` is there (`Err` for anything but found or not).
async fn present(records: &mut RecordServiceClient<Channel>, id: String) -> Result<bool, String> {
    match records.get_supplier(pb::GetSupplierRequest { id }).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == Code::NotFound => Ok(false),
        Err(status) => Err(format!("{status:?}")),
    }
}

/// How many suppliers in China a list counts.
async fn suppliers_in_china(records: &mut RecordServiceClient<Channel>) -> i32 {
    records
        .list_suppliers(pb::ListSuppliersRequest {
            country: "CN".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .total_size
}

/// What the readers saw while an import ran.
#[derive(Debug, Default)]
struct Seen {
    probes: usize,
    first_without_last: usize,
    partial_totals: Vec<i32>,
    first_seen: usize,
}

/// Polls, until `done`, the first and then the last supplier of the import.
async fn poll_records(channel: Channel, done: Arc<AtomicBool>) -> Seen {
    let mut records = RecordServiceClient::new(channel);
    let mut seen = Seen::default();
    while !done.load(Ordering::SeqCst) {
        let first = present(&mut records, supplier_id(0)).await.unwrap();
        let last = present(&mut records, supplier_id(SUPPLIERS - 1))
            .await
            .unwrap();
        seen.probes += 1;
        // Read first, then last: once the first is seen, the import is
        // there, so the last must be too.
        if first && !last {
            seen.first_without_last += 1;
        }
        if first {
            seen.first_seen += 1;
        }
    }
    seen
}

/// Polls, until `done`, how many suppliers in China a list counts.
async fn poll_totals(channel: Channel, done: Arc<AtomicBool>, baseline: i32) -> Seen {
    let mut records = RecordServiceClient::new(channel);
    let mut seen = Seen::default();
    while !done.load(Ordering::SeqCst) {
        let total = suppliers_in_china(&mut records).await;
        seen.probes += 1;
        if total != baseline && total != baseline + SUPPLIERS as i32 {
            seen.partial_totals.push(total);
        }
        if total != baseline {
            seen.first_seen += 1;
        }
    }
    seen
}

/// Two record pollers and a list poller.
fn start_polling(
    channel: &Channel,
    done: &Arc<AtomicBool>,
    baseline: i32,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    vec![
        tokio::spawn(poll_records(channel.clone(), done.clone())),
        tokio::spawn(poll_records(channel.clone(), done.clone())),
        tokio::spawn(poll_totals(channel.clone(), done.clone(), baseline)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_a_large_import_whole_or_not_at_all() {
    let app = spawn_app().await;
    let done = Arc::new(AtomicBool::new(false));
    let readers = start_polling(&app.channel, &done, 0);
    let imported = app
        .records
        .clone()
        .import_records(tokio_stream::iter(import_messages()))
        .await
        .expect("the import succeeds")
        .into_inner();
    assert_eq!(imported.upserted_count as usize, SUPPLIERS);
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        let seen = reader.await.unwrap();
        assert!(seen.probes > 0, "{seen:?}");
        assert_eq!(seen.first_without_last, 0, "{seen:?}");
        assert!(seen.partial_totals.is_empty(), "{seen:?}");
    }
    // And afterwards, all of it.
    let mut records = app.records.clone();
    assert!(present(&mut records, supplier_id(SUPPLIERS - 1))
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_import_that_fails_late_is_never_seen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    // The server's log, read at the end: a full disk is an error it must
    // report, so it is checked here rather than printed among passing tests.
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = ServerProcess::start_logging_to(&data, port, &[], log.into());
    let channel = server.connect_with_deadline(Duration::from_secs(120)).await;
    let mut records = RecordServiceClient::new(channel.clone());
    records
        .upsert_records(common::seed_network())
        .await
        .unwrap();
    let baseline = suppliers_in_china(&mut records).await;

    // The disk fills up a little way into the import's commit: its first
    // records are written, its last never are.
    let db_size = std::fs::metadata(data.join("db")).unwrap().len();
    limit_file_size(server.child.id(), Some(db_size + (1 << 20)));
    let done = Arc::new(AtomicBool::new(false));
    let readers = start_polling(&channel, &done, baseline);
    let refused = records
        .import_records(tokio_stream::iter(import_messages()))
        .await
        .expect_err("the import cannot fit");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // Readers go on a while after the failure, as the store stays failed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        let seen = reader.await.unwrap();
        assert!(seen.probes > 0, "{seen:?}");
        assert_eq!(seen.first_seen, 0, "never seen: {seen:?}");
        assert!(seen.partial_totals.is_empty(), "{seen:?}");
    }

    // Room again: the store recovers (rolling the import back) and the
    // import is still absent, after a restart too.
    limit_file_size(server.child.id(), None);
    let recovered = common::eventually(Duration::from_secs(60), || {
        let mut records = records.clone();
        async move {
            records
                .update_license_status(pb::UpdateLicenseStatusRequest {
                    id: "LIC-NBM-DY-1".into(),
                    quantity_kg: 1234.0,
                    ..Default::default()
                })
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(recovered.into_inner().quantity_kg, 1234.0);
    assert!(!present(&mut records, supplier_id(0)).await.unwrap());
    server.kill_9();
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let said = |what: &str| logged.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        said("the store failed to write; writes are refused until the disk takes them again"),
        1,
        "the failure is reported once: {logged}"
    );
    assert_eq!(
        said("the store takes writes again"),
        1,
        "and the recovery: {logged}"
    );
    let port = free_port();
    let server = ServerProcess::start(&data, port, &[]);
    let mut records =
        RecordServiceClient::new(server.connect_with_deadline(Duration::from_secs(120)).await);
    assert!(!present(&mut records, supplier_id(0)).await.unwrap());
    let license = records
        .get_license(pb::GetLicenseRequest {
            id: "LIC-NBM-DY-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        license.quantity_kg, 1234.0,
        "the acknowledged write survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reads_and_subscriptions_answer_while_a_large_import_commits() {
    let app = spawn_app().await;
    app.load_seed().await;
    let done = Arc::new(AtomicBool::new(false));
    let slowest = Arc::new(parking_lot::Mutex::new(Duration::ZERO));
    let answered = Arc::new(AtomicUsize::new(0));
    // Subscribers arriving all the time, and a prober asking the health
    // service, a record and a new subscription in turn, timing each.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (app_channel, done) = (app.channel.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut risk = pb::risk_service_client::RiskServiceClient::new(app_channel);
            while !done.load(Ordering::SeqCst) {
                let stream = risk
                    .stream_license_updates(pb::StreamLicenseUpdatesRequest::default())
                    .await;
                assert!(stream.is_ok(), "{stream:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    {
        let (channel, done, slowest, answered) = (
            app.channel.clone(),
            done.clone(),
            slowest.clone(),
            answered.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let mut records = RecordServiceClient::new(channel.clone());
            let mut risk = pb::risk_service_client::RiskServiceClient::new(channel);
            // Each round's time includes its pause: a runtime worker blocked
            // by the store delays whatever runs next, a pause's wake-up too.
            let mut started = Instant::now();
            while !done.load(Ordering::SeqCst) {
                health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .unwrap();
                records
                    .get_license(pb::GetLicenseRequest {
                        id: "LIC-NBM-DY-1".into(),
                    })
                    .await
                    .unwrap();
                let mut stream = risk
                    .stream_license_updates(pb::StreamLicenseUpdatesRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                common::next_event(&mut stream).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let took = started.elapsed();
                started = Instant::now();
                {
                    let mut slowest = slowest.lock();
                    *slowest = (*slowest).max(took);
                }
                answered.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let started = Instant::now();
    app.records
        .clone()
        .import_records(tokio_stream::iter(import_messages()))
        .await
        .expect("the import succeeds");
    let import_took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let slowest = *slowest.lock();
    let answered = answered.load(Ordering::SeqCst);
    eprintln!("import {import_took:?}; {answered} probe rounds, slowest {slowest:?}");
    assert!(answered > 0);
    // A runtime worker blocked for the commit would hold a probe for most of
    // it; a bound of a quarter of the import (at least a second, on a slow
    // shared machine) tells the two apart.
    let bound = (import_took / 4).max(Duration::from_secs(1));
    assert!(
        slowest < bound,
        "a probe round took {slowest:?} while the import took {import_took:?}"
    );
}

/// A large import killed (`SIGKILL`) while its commit is under way is, after
/// a restart, there whole or not at all: the commit writes its chunks on two
/// threads, and opening the store rolls back whatever of it sled recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_import_killed_while_it_commits_is_whole_or_absent_after_a_restart() {
    const ROUNDS: usize = 3;
    let mut interrupted = 0;
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = ServerProcess::start(&data, free_port(), &[]);
        let channel = server.connect_with_deadline(Duration::from_secs(120)).await;
        let db = data.join("db");
        let before = std::fs::metadata(&db).unwrap().len();
        let import = tokio::spawn({
            let mut records = RecordServiceClient::new(channel.clone());
            async move {
                records
                    .import_records(tokio_stream::iter(import_messages()))
                    .await
            }
        });
        // The commit is under way once sled's file has grown by a few MiB
        // (receiving and planning write nothing); kill the server then.
        let deadline = Instant::now() + Duration::from_secs(300);
        while !import.is_finished() && Instant::now() < deadline {
            let grown = std::fs::metadata(&db).unwrap().len().saturating_sub(before);
            if grown > 2 << 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let answered = import.is_finished();
        server.kill_9();
        let acknowledged = match import.await.unwrap() {
            Ok(response) => {
                assert_eq!(response.into_inner().upserted_count as usize, SUPPLIERS);
                true
            }
            Err(_) => false,
        };

        let log_path = dir.path().join("restart.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let server = ServerProcess::start_logging_to(&data, free_port(), &[], log.into());
        let mut records =
            RecordServiceClient::new(server.connect_with_deadline(Duration::from_secs(120)).await);
        let total = suppliers_in_china(&mut records).await;
        let first = present(&mut records, supplier_id(0)).await.unwrap();
        let last = present(&mut records, supplier_id(SUPPLIERS - 1))
            .await
            .unwrap();
        assert!(
            (total, first, last) == (0, false, false)
                || (total, first, last) == (SUPPLIERS as i32, true, true),
            "round {round}: {total} suppliers, first {first}, last {last}"
        );
        if acknowledged {
            assert_eq!(
                total, SUPPLIERS as i32,
                "round {round}: acknowledged, then lost"
            );
        }
        if !answered && !acknowledged {
            let log = std::fs::read_to_string(&log_path).unwrap();
            if log.contains("rolled back a commit that a crash interrupted") {
                assert_eq!(total, 0, "round {round}: rolled back, yet there: {log}");
                interrupted += 1;
            }
        }
        server.kill_9();
        eprintln!("round {round}: answered {answered} acknowledged {acknowledged} total {total}");
    }
    eprintln!("interrupted {interrupted}");
    assert!(
        interrupted > 0,
        "no round killed the server in the middle of the commit"
    );
}
