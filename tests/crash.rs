//! The crash harness: the real binary, driven by concurrent writers (licence
//! decisions, new records, and writes that must be refused) and by licence
//! stream subscribers, is killed with SIGKILL at random moments and restarted
//! on the same directory, round after round. After every restart:
//!
//! - every acknowledged write is there, in the records and in the log;
//! - no refused write is there;
//! - the licence log is contiguous, and each licence's record matches the
//!   log entry of its revision;
//! - subscribers resume from their checkpoint without a gap or a duplicate.
//!
//! `LODESTONE_LONG=1 cargo test --release --test crash -- --nocapture` runs
//! 50 rounds instead of 8; both print the figures.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{free_port, ServerProcess as Server};
use lodestone::pb::{
    self, record_service_client::RecordServiceClient, risk_service_client::RiskServiceClient,
    stream_license_updates_response::Event,
};
use tonic::transport::Channel;
use tonic::Code;

fn rounds() -> usize {
    if std::env::var("LODESTONE_LONG").is_ok_and(|v| v == "1") {
        50
    } else {
        8
    }
}

/// A small deterministic generator, seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const LICENCES: [&str; 4] = [
    "LIC-NBM-DY-1",
    "LIC-NBM-DY-2",
    "LIC-BTM-DY-1",
    "LIC-SSM-DY-2",
];

/// What the clients were told.
#[derive(Clone, Default)]
struct Ledger {
    /// Acknowledged decisions: revision → (licence, quantity).
    decisions: HashMap<u64, (String, f64)>,
    /// Per licence, the highest quantity ever sent (acknowledged or not).
    attempted: HashMap<String, f64>,
    /// Suppliers whose creation was acknowledged.
    created: Vec<String>,
    /// Suppliers sent only in requests that had to be refused.
    refused: Vec<String>,
    /// Refusals that were in fact accepted (must stay 0).
    wrongly_accepted: usize,
}

/// What the log held when last read: sequence → (revision, licence, quantity).
type Log = BTreeMap<u64, (u64, String, f64)>;

/// Reads the log from `after` up to `head`, checking contiguity.
async fn read_log(channel: &Channel, after: u64, log: &mut Log) -> u64 {
    let mut stream = RiskServiceClient::new(channel.clone())
        .stream_license_updates(pb::StreamLicenseUpdatesRequest {
            after_sequence: after,
            heartbeat_seconds: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Heartbeat(first)) = common::next_event_opt(&mut stream).await else {
        panic!("a stream starts with a heartbeat");
    };
    let mut last = after;
    while last < first.head_sequence {
        match common::next_event_opt(&mut stream).await {
            Some(Event::Update(u)) => {
                assert_eq!(
                    u.sequence,
                    last + 1,
                    "the log skips or repeats after {last}"
                );
                let licence = u.license.unwrap();
                log.insert(u.sequence, (u.revision, licence.id, licence.quantity_kg));
                last = u.sequence;
            }
            Some(Event::Heartbeat(_)) => {}
            None => panic!("the stream ended at {last} of {}", first.head_sequence),
        }
    }
    last
}

/// One round's writers until the server dies.
async fn write_until_killed(channel: Channel, round: usize, ledger: Arc<Mutex<Ledger>>) {
    let mut tasks = Vec::new();
    for (w, id) in LICENCES.iter().enumerate() {
        let (mut client, ledger) = (RecordServiceClient::new(channel.clone()), ledger.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                // Quantities only grow, so a stored one is placed among them.
                let quantity = (round * 1_000_000 + w * 100_000 + i) as f64 + 1.0;
                ledger
                    .lock()
                    .unwrap()
                    .attempted
                    .insert(id.to_string(), quantity);
                let request = pb::UpdateLicenseStatusRequest {
                    id: id.to_string(),
                    quantity_kg: quantity,
                    ..Default::default()
                };
                match client.update_license_status(request).await {
                    Ok(r) => {
                        let revision = r.into_inner().revision;
                        ledger
                            .lock()
                            .unwrap()
                            .decisions
                            .insert(revision, (id.to_string(), quantity));
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // New records, and requests that must be refused.
    let (mut client, ledger_) = (RecordServiceClient::new(channel.clone()), ledger.clone());
    tasks.push(tokio::spawn(async move {
        for i in 0.. {
            let good = format!("CR-{round}-{i}");
            let bad = format!("BAD-{round}-{i}");
            let records = vec![
                common::record(&format!(r#"{{"supplier": {{"id": "{good}", "country": "DE"}}}}"#)),
                common::record(&format!(
                    r#"{{"component": {{"id": "CC-{round}-{i}", "sources": [{{"supplier_id": "{good}", "share": 1}}]}}}}"#
                )),
            ];
            match client
                .upsert_records(pb::UpsertRecordsRequest { records, validate_only: false })
                .await
            {
                Ok(_) => ledger_.lock().unwrap().created.push(good),
                Err(_) => return,
            }
            // A supplier with a component whose source names nobody.
            ledger_.lock().unwrap().refused.push(bad.clone());
            let records = vec![
                common::record(&format!(r#"{{"supplier": {{"id": "{bad}", "country": "DE"}}}}"#)),
                common::record(&format!(
                    r#"{{"component": {{"id": "BC-{round}-{i}", "sources": [{{"supplier_id": "NOBODY", "share": 1}}]}}}}"#
                )),
            ];
            match client
                .upsert_records(pb::UpsertRecordsRequest { records, validate_only: false })
                .await
            {
                Ok(_) => ledger_.lock().unwrap().wrongly_accepted += 1,
                Err(status) if status.code() == Code::InvalidArgument => {}
                Err(_) => return,
            }
        }
    }));
    for task in tasks {
        task.await.unwrap();
    }
}

/// A subscriber that follows the live stream from its checkpoint, checking
/// every step, until the server dies; returns its new checkpoint.
async fn follow(channel: Channel, checkpoint: u64) -> u64 {
    let Ok(response) = RiskServiceClient::new(channel)
        .stream_license_updates(pb::StreamLicenseUpdatesRequest {
            after_sequence: checkpoint,
            heartbeat_seconds: 1,
            ..Default::default()
        })
        .await
    else {
        return checkpoint;
    };
    let mut stream = response.into_inner();
    let mut last = checkpoint;
    while let Ok(Some(message)) = stream.message().await {
        if let Some(Event::Update(u)) = message.event {
            assert_eq!(u.sequence, last + 1, "a subscriber saw a gap or a repeat");
            last = u.sequence;
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_many_kill_9s_and_subscribers_resume_without_gaps() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), port, &[]);
    let channel = server.connect().await;
    RecordServiceClient::new(channel.clone())
        .upsert_records(common::seed_network())
        .await
        .unwrap();
    let mut server = Some(server);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut log = Log::new();
    let mut checkpoints = [0u64; 2];
    let mut log_read = 0;

    for round in 0..rounds() {
        let running = server.take().unwrap();
        let channel = running.connect().await;
        let subscribers: Vec<_> = checkpoints
            .iter()
            .map(|&c| tokio::spawn(follow(channel.clone(), c)))
            .collect();
        let writers = tokio::spawn(write_until_killed(channel.clone(), round, ledger.clone()));
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1300))).await;
        running.kill_9();
        writers.await.unwrap();
        for (checkpoint, subscriber) in checkpoints.iter_mut().zip(subscribers) {
            *checkpoint = subscriber.await.unwrap();
        }

        // Restart on the same directory and check everything.
        let restarted = Server::start(dir.path(), port, &[]);
        let channel = restarted.connect().await;
        log_read = read_log(&channel, log_read, &mut log).await;
        let ledger = ledger.lock().unwrap().clone();
        // One write can change several licences: a revision and a licence
        // name one log entry.
        let logged: HashMap<(u64, &str), f64> = log
            .values()
            .map(|(r, id, q)| ((*r, id.as_str()), *q))
            .collect();
        for (revision, (id, quantity)) in &ledger.decisions {
            assert_eq!(
                logged.get(&(*revision, id.as_str())),
                Some(quantity),
                "round {round}: the acknowledged decision at revision {revision} is logged"
            );
        }
        let mut records = RecordServiceClient::new(channel.clone());
        for id in LICENCES {
            let stored = records
                .get_license(pb::GetLicenseRequest { id: id.into() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                logged.get(&(stored.revision, id)),
                Some(&stored.quantity_kg),
                "round {round}: {id} matches the log entry of its revision"
            );
            let acked = ledger
                .decisions
                .values()
                .filter(|(i, _)| i == id)
                .map(|(_, q)| *q)
                .fold(0.0, f64::max);
            let attempted = ledger.attempted.get(id).copied().unwrap_or(0.0);
            // Before its first acknowledgement a licence may still hold the
            // seed's quantity; after it, the last acknowledged one or a later
            // one whose answer the kill cut off.
            assert!(
                acked == 0.0 || (stored.quantity_kg >= acked && stored.quantity_kg <= attempted),
                "round {round}: {id} holds {} (acknowledged {acked}, sent up to {attempted})",
                stored.quantity_kg
            );
        }
        for id in ledger.created.iter().rev().take(20) {
            records
                .get_supplier(pb::GetSupplierRequest { id: id.clone() })
                .await
                .unwrap_or_else(|s| panic!("round {round}: acknowledged {id} is gone: {s:?}"));
        }
        for id in ledger.refused.iter().rev().take(20) {
            let status = records
                .get_supplier(pb::GetSupplierRequest { id: id.clone() })
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                Code::NotFound,
                "round {round}: refused {id} is there"
            );
        }
        assert_eq!(ledger.wrongly_accepted, 0);
        server = Some(restarted);
    }

    // Every acknowledged supplier, not just the recent ones, and the
    // subscribers' checkpoints are positions the log holds.
    let channel = server.as_ref().unwrap().connect().await;
    let mut records = RecordServiceClient::new(channel.clone());
    let ledger = ledger.lock().unwrap().clone();
    for id in &ledger.created {
        records
            .get_supplier(pb::GetSupplierRequest { id: id.clone() })
            .await
            .unwrap_or_else(|s| panic!("acknowledged {id} is gone: {s:?}"));
    }
    for checkpoint in checkpoints {
        assert!(checkpoint <= log_read);
    }
    let acknowledged = ledger.decisions.len() + 2 * ledger.created.len();
    println!("crash harness (seed {seed}):");
    println!("| kills survived | writes acknowledged | writes lost | refused writes found | log events checked | subscriber gaps or repeats |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {acknowledged} | 0 | 0 | {} | 0 |",
        rounds(),
        log.len()
    );
    assert!(
        ledger.decisions.len() > rounds(),
        "writes were acknowledged"
    );
    drop(server);
}
