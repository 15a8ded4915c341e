//! The real binary, killed with SIGKILL in the middle of writes, loses no
//! acknowledged change and no place in the licence change log.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{free_port, next_event, next_update, seed_network, ServerProcess as Server};
use lodestone::pb::{
    self, record_service_client::RecordServiceClient, risk_service_client::RiskServiceClient,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_kill_9_and_the_stream_resumes_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), port, &[]);
    let channel = server.connect().await;
    RecordServiceClient::new(channel.clone())
        .upsert_records(pb::UpsertRecordsRequest {
            records: seed_network().records,
            validate_only: false,
        })
        .await
        .unwrap();
    const LICENCES: [&str; 4] = [
        "LIC-NBM-DY-1",
        "LIC-NBM-DY-2",
        "LIC-BTM-DY-1",
        "LIC-SSM-DY-2",
    ];

    // Four writers record decisions as fast as they can; each remembers what
    // was acknowledged.
    let mut writers = Vec::new();
    for (w, id) in LICENCES.iter().enumerate() {
        let mut client = RecordServiceClient::new(channel.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 1.. {
                let quantity = 10_000.0 * (w + 1) as f64 + f64::from(i);
                let request = pb::UpdateLicenseStatusRequest {
                    id: id.to_string(),
                    quantity_kg: quantity,
                    ..Default::default()
                };
                match client.update_license_status(request).await {
                    Ok(response) => acked.push((response.into_inner().revision, quantity)),
                    Err(_) => break, // the server is gone
                }
            }
            acked
        }));
    }
    // Kill it mid-write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill_9();
    let mut acked: HashMap<u64, f64> = HashMap::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    assert!(
        acked.len() > 20,
        "writes were acknowledged before the kill ({})",
        acked.len()
    );

    // Restart on the same directory and replay the whole log.
    let server = Server::start(dir.path(), port, &[]);
    let channel = server.connect().await;
    let mut stream = RiskServiceClient::new(channel.clone())
        .stream_license_updates(pb::StreamLicenseUpdatesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let pb::stream_license_updates_response::Event::Heartbeat(head) = next_event(&mut stream).await
    else {
        panic!("a heartbeat comes first")
    };
    let mut by_revision = HashMap::new();
    for expected in 1..=head.head_sequence {
        let update = next_update(&mut stream).await;
        assert_eq!(update.sequence, expected, "the log is contiguous");
        by_revision.insert(update.revision, update.license.unwrap().quantity_kg);
    }
    for (revision, quantity) in &acked {
        assert_eq!(
            by_revision.get(revision),
            Some(quantity),
            "acknowledged change at revision {revision} is in the log"
        );
    }
    // The records agree with the log's last word on each licence.
    let mut records = RecordServiceClient::new(channel.clone());
    for id in LICENCES {
        let stored = records
            .get_license(pb::GetLicenseRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_revision.get(&stored.revision), Some(&stored.quantity_kg));
    }
    // Writes carry on from where the log stopped.
    let next = records
        .update_license_status(pb::UpdateLicenseStatusRequest {
            id: "LIC-NBM-TB-1".into(),
            quantity_kg: 61.0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next_update(&mut stream).await.sequence,
        head.head_sequence + 1
    );
    assert!(next.revision > *acked.keys().max().unwrap());
    println!(
        "kill -9 survived: {} acknowledged writes, 0 lost, log head {}",
        acked.len(),
        head.head_sequence
    );
    server.kill_9();
}
