//! Several servers on one PostgreSQL database: each serves every call,
//! writes at any of them are serialised by the database, every replica
//! converges to the same records, a client reads its writes anywhere with
//! `x-lodestone-min-revision`, and a licence stream resumes on another
//! replica with no gap and no duplicate.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{expect_error, metadata, spawn_app_with, TestApp};
use lodestone::pb;
use lodestone::pb::stream_license_updates_response::Event;
use tonic::Code;

/// `count` replicas on a fresh database of the binary's cluster; `None`
/// where PostgreSQL is missing (the test skips, saying so).
async fn replicas(database: &str, count: usize) -> Option<Vec<TestApp>> {
    let cluster = common::postgres::cluster()?;
    let url = common::postgres::database(cluster, database).await;
    let mut apps = Vec::new();
    for _ in 0..count {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let url = url.clone();
        apps.push(spawn_app_with(dir, move |c| c.store = Some(url)).await);
    }
    Some(apps)
}

/// A request that must see `revision` at least.
fn at_least<T>(message: T, revision: u64) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "x-lodestone-min-revision",
        revision.to_string().parse().unwrap(),
    );
    request
}

/// Every licence's quantity, by id, as a replica answers.
async fn quantities(app: &TestApp, revision: u64) -> Vec<(String, f64)> {
    app.records
        .clone()
        .list_licenses(at_least(
            pb::ListLicensesRequest {
                page_size: 1000,
                ..Default::default()
            },
            revision,
        ))
        .await
        .expect("the listing answers")
        .into_inner()
        .licenses
        .into_iter()
        .map(|l| (l.id, l.quantity_kg))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_at_every_replica_are_serialised_and_every_replica_converges() {
    let Some(apps) = replicas("replicas_converge", 3).await else {
        return;
    };
    let seeded = apps[0].load_seed().await;
    // Read-your-writes on another replica: it waits to apply the revision.
    let read = apps[1]
        .records
        .clone()
        .get_license(at_least(
            pb::GetLicenseRequest {
                id: "LIC-NBM-DY-1".into(),
            },
            seeded.revision,
        ))
        .await
        .expect("replica B answers once it has the seed")
        .into_inner();
    assert_eq!(read.id, "LIC-NBM-DY-1");
    let ids: Vec<String> = apps[0]
        .all_licenses()
        .await
        .into_iter()
        .map(|l| l.id)
        .collect();

    // Writers on every replica at once, each on licences of its own.
    let rounds = 15;
    let mut writers = tokio::task::JoinSet::new();
    for (r, app) in apps.iter().enumerate() {
        let client = app.records.clone();
        let mine: Vec<String> = ids.iter().skip(r).step_by(3).cloned().collect();
        writers.spawn(async move {
            let mut revisions = Vec::new();
            for round in 0..rounds {
                for id in &mine {
                    let updated = client
                        .clone()
                        .update_license_status(pb::UpdateLicenseStatusRequest {
                            id: id.clone(),
                            quantity_kg: 1000.0 + (round * 10 + r) as f64,
                            ..Default::default()
                        })
                        .await
                        .expect("every write is acknowledged")
                        .into_inner();
                    revisions.push(updated.revision);
                }
            }
            revisions
        });
    }
    let mut revisions = Vec::new();
    while let Some(done) = writers.join_next().await {
        revisions.extend(done.unwrap());
    }
    // Each write has a revision of its own, and together they follow the
    // seed without a gap: the database serialised them.
    revisions.sort_unstable();
    let first = seeded.revision + 1;
    let expected: Vec<u64> = (first..first + revisions.len() as u64).collect();
    assert_eq!(revisions, expected);
    let last = *revisions.last().unwrap();

    // Every replica answers the same at the last revision.
    let reference = quantities(&apps[0], last).await;
    for app in &apps[1..] {
        assert_eq!(quantities(app, last).await, reference);
    }
    for app in &apps {
        let (revision, records) = common::eventually(Duration::from_secs(60), || async {
            let (revision, records) = app.export().await;
            (revision == last).then_some((revision, records))
        })
        .await;
        assert_eq!(revision, last);
        assert_eq!(records, apps[0].export().await.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_on_another_replica_without_gap_or_duplicate() {
    let Some(apps) = replicas("replicas_stream", 2).await else {
        return;
    };
    apps[0].load_seed().await;
    let ids: Vec<String> = apps[0]
        .all_licenses()
        .await
        .into_iter()
        .map(|l| l.id)
        .collect();
    // Writes go to replica A; the subscriber reads from B.
    let writes = 40;
    for i in 0..writes {
        apps[0]
            .set_quantity(&ids[i % ids.len()], 500.0 + i as f64)
            .await
            .unwrap();
    }
    let (_, head) = apps[0].network.store().latest().await.unwrap();
    let mut seen = Vec::new();
    let mut stream = apps[1]
        .subscribe(pb::StreamLicenseUpdatesRequest::default())
        .await
        .expect("replica B streams");
    while seen.len() < (head / 2) as usize {
        if let Event::Update(u) = common::next_event(&mut stream).await {
            seen.push(u.sequence);
        }
    }
    drop(stream);
    // More writes, then the subscriber moves to A from its last sequence.
    for i in 0..writes {
        apps[1]
            .set_quantity(&ids[i % ids.len()], 900.0 + i as f64)
            .await
            .unwrap();
    }
    let (_, head) = apps[1].network.store().latest().await.unwrap();
    let mut stream = apps[0]
        .subscribe(pb::StreamLicenseUpdatesRequest {
            after_sequence: *seen.last().unwrap(),
            ..Default::default()
        })
        .await
        .expect("replica A resumes the stream");
    while *seen.last().unwrap() < head {
        if let Event::Update(u) = common::next_event(&mut stream).await {
            seen.push(u.sequence);
        }
    }
    let expected: Vec<u64> = (1..=head).collect();
    assert_eq!(seen, expected, "every event once, in order");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_a_replica_has_not_applied_is_waited_for_within_the_deadline() {
    let Some(apps) = replicas("replicas_min_revision", 1).await else {
        return;
    };
    let seeded = apps[0].load_seed().await;
    let mut request = at_least(
        pb::GetLicenseRequest {
            id: "LIC-NBM-DY-1".into(),
        },
        seeded.revision + 1000,
    );
    request.set_timeout(Duration::from_secs(2));
    let status = apps[0]
        .records
        .clone()
        .get_license(request)
        .await
        .expect_err("no replica has that revision");
    expect_error(&status, Code::Unavailable, "REVISION_NOT_APPLIED");
    assert_eq!(
        metadata(&status)["appliedRevision"],
        seeded.revision.to_string()
    );
    let mut bad = tonic::Request::new(pb::GetLicenseRequest {
        id: "LIC-NBM-DY-1".into(),
    });
    bad.metadata_mut()
        .insert("x-lodestone-min-revision", "soon".parse().unwrap());
    let status = apps[0].records.clone().get_license(bad).await.unwrap_err();
    expect_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
}

fn supplier(i: usize) -> Vec<lodestone::domain::write::Incoming> {
    use lodestone::domain::record::{Record, Supplier};
    use lodestone::domain::write::{Incoming, Origin};
    vec![Incoming {
        origin: Origin::Root,
        record: Record::Supplier(Supplier {
            id: format!("S{i:03}"),
            country: "CN".into(),
            ..Default::default()
        }),
    }]
}

/// The change feed keeps recent revisions only. A replica that was away
/// longer finds the gap, following or writing, and loads every record
/// again instead of missing what was pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_pruned_change_feed_loads_every_record_again() {
    use lodestone::network::{Network, Upsert};
    use lodestone::store::{PostgresConfig, PostgresStore};
    let Some(cluster) = common::postgres::cluster() else {
        return;
    };
    let url = common::postgres::database(cluster, "replicas_pruned").await;
    let store_a = PostgresStore::connect(&PostgresConfig::new(&url))
        .await
        .unwrap();
    let store_b = PostgresStore::connect(&PostgresConfig::new(&url))
        .await
        .unwrap();
    let a = Arc::new(Network::open(Arc::new(store_a.clone())).await.unwrap());
    let b = Arc::new(Network::open(Arc::new(store_b)).await.unwrap());
    // A writes; B does not follow meanwhile (no follower runs here).
    for i in 0..30 {
        a.upsert(Upsert::new(supplier(i)), &common::anonymous())
            .await
            .unwrap();
    }
    let removed = store_a.prune_feed(5, Duration::ZERO).await.unwrap();
    assert_eq!(removed, 25, "all but the newest five revisions");
    assert_eq!(b.follow(256).await.unwrap(), 1, "one reload");
    assert_eq!(b.view().revision, 30);
    let records = |n: &Network| n.view().records().collect::<Vec<_>>();
    assert_eq!(records(&b), records(&a));

    // Behind again, B writes: its turn finds the gap and reloads first.
    for i in 30..40 {
        a.upsert(Upsert::new(supplier(i)), &common::anonymous())
            .await
            .unwrap();
    }
    store_a.prune_feed(2, Duration::ZERO).await.unwrap();
    let written = b
        .upsert(Upsert::new(supplier(100)), &common::anonymous())
        .await
        .unwrap();
    assert_eq!(written.revision, 41);
    assert_eq!(b.view().suppliers.len(), 41);
    assert_eq!(
        a.follow(256).await.unwrap(),
        1,
        "A applies B's write from the feed"
    );
    assert_eq!(records(&a), records(&b));
}

fn at_risk_page(page_token: String) -> pb::ListAtRiskLinesRequest {
    pb::ListAtRiskLinesRequest {
        as_of: "2025-06-02".into(),
        horizon_days: 90,
        page_size: 2,
        page_token,
        ..Default::default()
    }
}

/// A page token names a revision. Another replica at that revision
/// continues the listing; one whose view has moved on, and that does not
/// hold the answer, says PAGE_TOKEN_EXPIRED (start again), as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_token_continues_on_another_replica_at_its_revision() {
    let Some(apps) = replicas("replicas_page_tokens", 3).await else {
        return;
    };
    let seeded = apps[0].load_seed().await;
    let first = apps[0]
        .risk
        .clone()
        .list_at_risk_lines(at_risk_page(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.revision, seeded.revision);
    assert!(!first.next_page_token.is_empty());
    let alone = apps[0]
        .risk
        .clone()
        .list_at_risk_lines(at_risk_page(first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    // Replica B, at the same revision, gives the same second page.
    let on_b = apps[1]
        .risk
        .clone()
        .list_at_risk_lines(at_least(
            at_risk_page(first.next_page_token.clone()),
            seeded.revision,
        ))
        .await
        .expect("B continues the listing")
        .into_inner();
    assert_eq!(on_b, alone);

    // A write moves every view on; C never answered that revision.
    let moved = apps[0]
        .set_quantity("LIC-NBM-DY-1", 1234.0)
        .await
        .unwrap()
        .revision;
    let status = apps[2]
        .risk
        .clone()
        .list_at_risk_lines(at_least(at_risk_page(first.next_page_token), moved))
        .await
        .expect_err("C no longer has that revision");
    expect_error(&status, Code::FailedPrecondition, "PAGE_TOKEN_EXPIRED");
}
