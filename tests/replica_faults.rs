//! Replicas on PostgreSQL when things fail: the database stopped under
//! writers and started again, and one replica cut off from the database
//! while the others go on. Short here; `LODESTONE_LONG=1` runs more rounds.
//! Each prints a table of what it saw.

mod common;
mod history;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, spawn_app_with, TestApp};
use history::{Logged, Outcome, Recorder, What};
use lodestone::pb;
use lodestone::pb::record_service_client::RecordServiceClient;
use lodestone::pb::stream_license_updates_response::Event;
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The tests of this file take the cluster down in turn, never together.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn long() -> bool {
    std::env::var("LODESTONE_LONG").is_ok_and(|v| v == "1")
}

async fn replica(url: &str) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = url.to_string();
    spawn_app_with(dir, move |c| c.store = Some(url)).await
}

async fn health(app: &TestApp) -> Option<ServingStatus> {
    health_of(app, "").await
}

async fn health_of(app: &TestApp, service: &str) -> Option<ServingStatus> {
    let answer = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(answer.into_inner().status).ok()
}

async fn becomes(app: &TestApp, wanted: ServingStatus) -> Duration {
    let started = Instant::now();
    eventually(Duration::from_secs(60), || async {
        (health(app).await == Some(wanted)).then_some(())
    })
    .await;
    started.elapsed()
}

fn licence(id: &str) -> pb::Record {
    common::record(&format!(
        r#"{{"license": {{"id": "{id}", "supplier_id": "NBM", "material": "DY",
            "status": "LICENSE_STATUS_PENDING", "quantity_kg": 10}}}}"#
    ))
}

/// What a writer saw.
#[derive(Default)]
struct Writes {
    /// Licences whose creation was acknowledged, and the revision of each.
    acknowledged: Vec<(String, u64)>,
    /// Refusals, by code and by reason, and the longest any call took.
    refused: Vec<Code>,
    reasons: BTreeSet<String>,
    longest: Duration,
    /// Every write, read and event, for the history checker.
    history: Arc<Recorder>,
}

/// Creates licences through `app`, one at a time, each with a 10 s
/// deadline, until `stop` is set; after each acknowledgement, reads the
/// licence back through `reader` (another replica) at the acknowledged
/// revision.
async fn write_until(
    records: RecordServiceClient<Channel>,
    reader: Option<RecordServiceClient<Channel>>,
    name: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
    writes: Arc<Mutex<Writes>>,
) {
    let history = writes.lock().await.history.clone();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        n += 1;
        let id = format!("W-{name}-{n:05}");
        let mut request = tonic::Request::new(pb::UpsertRecordsRequest {
            records: vec![licence(&id)],
            validate_only: false,
        });
        request.set_timeout(Duration::from_secs(10));
        let started = Instant::now();
        let began = history.now();
        let result = records.clone().upsert_records(request).await;
        let took = started.elapsed();
        let outcome = match &result {
            Ok(r) => Outcome::Ok(r.get_ref().revision),
            Err(status) if matches!(status.code(), Code::InvalidArgument | Code::Aborted) => {
                Outcome::Refused
            }
            Err(_) => Outcome::Unknown,
        };
        history.record(
            name,
            began,
            What::Write {
                key: id.clone(),
                value: 10.0,
                precondition: None,
                outcome,
            },
        );
        if let (Outcome::Ok(revision), Some(reader)) = (outcome, &reader) {
            read_back(reader.clone(), &history, name, &id, revision).await;
        }
        let mut w = writes.lock().await;
        w.longest = w.longest.max(took);
        match result {
            Ok(r) => w.acknowledged.push((id, r.into_inner().revision)),
            Err(status) => {
                w.refused.push(status.code());
                w.reasons.insert(common::error_reason(&status));
                drop(w);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads licence `id` at `revision` at least through `reader`, into the
/// history (nothing is recorded when the read gets no answer).
async fn read_back(
    mut reader: RecordServiceClient<Channel>,
    history: &Recorder,
    who: &str,
    id: &str,
    revision: u64,
) {
    let began = history.now();
    let mut request = tonic::Request::new(pb::GetLicenseRequest { id: id.into() });
    request.metadata_mut().insert(
        "x-lodestone-min-revision",
        revision.to_string().parse().unwrap(),
    );
    request.set_timeout(Duration::from_secs(10));
    if let Ok(licence) = reader.get_license(request).await {
        let licence = licence.into_inner();
        history.record(
            &format!("{who} reading elsewhere"),
            began,
            What::Read {
                key: id.into(),
                min_revision: revision,
                seen: Some((licence.revision, licence.quantity_kg)),
            },
        );
    }
}

/// The whole licence log, read through `channel` up to `head`.
async fn whole_log(channel: Channel, head: u64) -> Vec<Logged> {
    let mut stream = pb::risk_service_client::RiskServiceClient::new(channel)
        .stream_license_updates(pb::StreamLicenseUpdatesRequest::default())
        .await
        .expect("the log is read")
        .into_inner();
    let mut log = Vec::new();
    while log.last().map_or(0, |l: &Logged| l.sequence) < head {
        if let Event::Update(u) = common::next_event(&mut stream).await {
            let licence = u.license.unwrap_or_default();
            log.push(Logged {
                sequence: u.sequence,
                revision: u.revision,
                key: licence.id,
                value: licence.quantity_kg,
            });
        }
    }
    log
}

/// Runs the history checker over a run's operations against the whole log.
async fn check_history(history: &Recorder, channel: Channel, head: u64) {
    let log = whole_log(channel, head).await;
    history.verify(
        &log,
        "reads on another replica at the acknowledged revision",
    );
}

/// Every licence id a replica holds, at `revision` at least.
async fn licence_ids(app: &TestApp, revision: u64) -> BTreeSet<String> {
    licence_ids_on(app.channel.clone(), revision).await
}

/// The same, of the replica at the other end of `channel`.
async fn licence_ids_on(channel: Channel, revision: u64) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut token = String::new();
    loop {
        let mut request = tonic::Request::new(pb::ListLicensesRequest {
            page_size: 1000,
            page_token: token.clone(),
            ..Default::default()
        });
        request.metadata_mut().insert(
            "x-lodestone-min-revision",
            revision.to_string().parse().unwrap(),
        );
        let page = RecordServiceClient::new(channel.clone())
            .list_licenses(request)
            .await
            .expect("the replica lists")
            .into_inner();
        ids.extend(page.licenses.into_iter().map(|l| l.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

/// Reads the stream until `head`, returning every sequence seen.
async fn read_stream_to(
    stream: &mut tonic::Streaming<pb::StreamLicenseUpdatesResponse>,
    seen: &mut Vec<u64>,
    head: u64,
) {
    while seen.last().copied().unwrap_or(0) < head {
        if let Event::Update(u) = common::next_event(stream).await {
            seen.push(u.sequence);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopping_and_starting_again_loses_nothing_acknowledged() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = common::postgres::cluster() else {
        return;
    };
    let url = common::postgres::database(cluster, "faults_restart").await;
    let apps = [replica(&url).await, replica(&url).await];
    apps[0].load_seed().await;
    let mut stream = apps[1]
        .subscribe(pb::StreamLicenseUpdatesRequest::default())
        .await
        .unwrap();
    let rounds = if long() { 5 } else { 1 };
    println!("\n| round | NOT_SERVING after | SERVING again after | acknowledged | refused (all UNAVAILABLE) | longest call | reads failed |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut seen = Vec::new();
    let history = Arc::new(Recorder::default());
    for round in 1..=rounds {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writes = Arc::new(Mutex::new(Writes {
            history: history.clone(),
            ..Writes::default()
        }));
        let reads_failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, app) in apps.iter().enumerate() {
            let (stop, writes) = (stop.clone(), writes.clone());
            let records = app.records.clone();
            let name = format!("{round}-{i}");
            tasks.spawn(async move { write_until(records, None, &name, stop, writes).await });
        }
        {
            let (stop, failed) = (stop.clone(), reads_failed.clone());
            let records = apps[0].records.clone();
            tasks.spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let read = records
                        .clone()
                        .get_license(pb::GetLicenseRequest {
                            id: "LIC-NBM-DY-1".into(),
                        })
                        .await;
                    if read.is_err() {
                        failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.stop("immediate");
        let down = becomes(&apps[0], ServingStatus::NotServing).await;
        becomes(&apps[1], ServingStatus::NotServing).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.start_again().expect("PostgreSQL starts again");
        let up = becomes(&apps[0], ServingStatus::Serving).await;
        becomes(&apps[1], ServingStatus::Serving).await;
        // Writes go through again.
        eventually(Duration::from_secs(60), || async {
            let before = writes.lock().await.acknowledged.len();
            tokio::time::sleep(Duration::from_millis(200)).await;
            (writes.lock().await.acknowledged.len() > before).then_some(())
        })
        .await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        while tasks.join_next().await.is_some() {}

        let w = writes.lock().await;
        let newest = w.acknowledged.iter().map(|(_, r)| *r).max().unwrap_or(0);
        let acknowledged: BTreeSet<String> =
            w.acknowledged.iter().map(|(id, _)| id.clone()).collect();
        for app in &apps {
            let held = licence_ids(app, newest).await;
            let lost: Vec<_> = acknowledged.difference(&held).collect();
            assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        }
        let reads = reads_failed.load(std::sync::atomic::Ordering::SeqCst);
        println!(
            "| {round} | {down:.1?} | {up:.1?} | {} | {} | {:.1?} | {reads} |",
            w.acknowledged.len(),
            w.refused.len(),
            w.longest
        );
        assert!(
            w.refused.iter().all(|c| *c == Code::Unavailable),
            "writes during the outage are refused as UNAVAILABLE: {:?}",
            w.refused
        );
        assert!(
            w.longest < Duration::from_secs(10),
            "no write waited out its deadline: {:?}",
            w.longest
        );
        assert_eq!(reads, 0, "reads are served from the view throughout");
        // The subscriber of replica B saw every event once, in order.
        let (_, head) = apps[0].network.store().latest().await.unwrap();
        read_stream_to(&mut stream, &mut seen, head).await;
        assert_eq!(seen, (1..=head).collect::<Vec<u64>>());
    }
    let (_, head) = apps[0].network.store().latest().await.unwrap();
    check_history(&history, apps[0].channel.clone(), head).await;
}

/// Waits until every replica of `apps` acknowledges a write begun now (a
/// licence `{prefix}-{i}` for replica i), each tried with a 10 s deadline.
async fn writes_again(apps: &[TestApp], prefix: &str, limit: Duration) {
    for (i, app) in apps.iter().enumerate() {
        eventually(limit, || async {
            let mut request = tonic::Request::new(pb::UpsertRecordsRequest {
                records: vec![licence(&format!("{prefix}-{i}"))],
                validate_only: false,
            });
            request.set_timeout(Duration::from_secs(10));
            let written = app.records.clone().upsert_records(request).await;
            if written.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            written.ok()
        })
        .await;
    }
}

/// Ends every connection the replicas hold to database `name`, as the
/// database does when its postmaster dies or an operator terminates them
/// (SQLSTATE 57P01); the number ended.
async fn terminate_connections(url: &str, name: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .unwrap();
    row.get(0)
}

/// A connection the database ends (57P01, as when an operator terminates
/// it or the postmaster dies before a failover) makes the database
/// unavailable for a moment: the writes it catches are refused with
/// `UNAVAILABLE` and `DATABASE_UNAVAILABLE`, and the next ones go through on
/// a new connection. Never the sticky `STORAGE_FAILED` of a full local disk,
/// which on PostgreSQL nothing would clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_leave_the_replicas_writing_again() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = common::postgres::cluster() else {
        return;
    };
    let name = "faults_terminated";
    let url = common::postgres::database(cluster, name).await;
    let apps = [replica(&url).await, replica(&url).await];
    apps[0].load_seed().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes: Arc<Mutex<Writes>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, app) in apps.iter().enumerate() {
        for writer in 0..2 {
            let (stop, writes) = (stop.clone(), writes.clone());
            let records = app.records.clone();
            let reader = apps[(i + 1) % apps.len()].records.clone();
            let name = format!("T{i}-{writer}");
            tasks.spawn(
                async move { write_until(records, Some(reader), &name, stop, writes).await },
            );
        }
    }
    let rounds = if long() { 10 } else { 3 };
    println!("\n| round | connections ended | writes again after |");
    println!("|---:|---:|---:|");
    for round in 1..=rounds {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ended = terminate_connections(&cluster.url("postgres"), name).await;
        let at = Instant::now();
        // Each replica acknowledges a write begun after the connections ended.
        writes_again(&apps, &format!("AFTER-{round}"), Duration::from_secs(60)).await;
        println!("| {round} | {ended} | {:.1?} |", at.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}
    let w = writes.lock().await;
    println!(
        "{} writes acknowledged, {} refused ({:?}), the longest call {:.1?}",
        w.acknowledged.len(),
        w.refused.len(),
        w.reasons,
        w.longest
    );
    assert!(
        w.reasons.iter().all(|r| r == "DATABASE_UNAVAILABLE"),
        "an ended connection is the database unavailable, not a failed store: {:?}",
        w.reasons
    );
    assert!(
        w.refused.iter().all(|c| *c == Code::Unavailable),
        "{:?}",
        w.refused
    );
    let newest = w.acknowledged.iter().map(|(_, r)| *r).max().unwrap_or(0);
    let acknowledged: BTreeSet<String> = w.acknowledged.iter().map(|(id, _)| id.clone()).collect();
    for app in &apps {
        let held = licence_ids(app, newest).await;
        let lost: Vec<_> = acknowledged.difference(&held).collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    }
    let (_, head) = apps[0].network.store().latest().await.unwrap();
    check_history(&w.history, apps[0].channel.clone(), head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_database_stops_serving_and_catches_up() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = common::postgres::cluster() else {
        return;
    };
    let url = common::postgres::database(cluster, "faults_cut_off").await;
    let proxy =
        common::proxy::Proxy::start(format!("127.0.0.1:{}", cluster.port).parse().unwrap()).await;
    let behind_proxy = url.replace(
        &format!("127.0.0.1:{}", cluster.port),
        &format!("127.0.0.1:{}", proxy.port),
    );
    let a = replica(&url).await;
    let c = replica(&behind_proxy).await;
    let seeded = a.load_seed().await;
    licence_ids(&c, seeded.revision).await;
    let mut stream = c
        .subscribe(pb::StreamLicenseUpdatesRequest::default())
        .await
        .unwrap();

    proxy.cut();
    let down = becomes(&c, ServingStatus::NotServing).await;
    assert_eq!(
        health(&a).await,
        Some(ServingStatus::Serving),
        "the others go on"
    );
    // Cut off, C refuses writes at once and still answers reads.
    let started = Instant::now();
    let refused = c.upsert(vec![licence("W-CUT-OFF")]).await.unwrap_err();
    common::expect_error(&refused, Code::Unavailable, "DATABASE_UNAVAILABLE");
    let refused_in = started.elapsed();
    assert!(
        refused_in < Duration::from_secs(5),
        "refused at once, not after {refused_in:?}"
    );
    c.records
        .clone()
        .get_license(pb::GetLicenseRequest {
            id: "LIC-NBM-DY-1".into(),
        })
        .await
        .expect("reads go on from the view");
    // Meanwhile A writes.
    let mut last = seeded.revision;
    for i in 0..20 {
        last = a
            .upsert(vec![licence(&format!("W-A-{i:02}"))])
            .await
            .unwrap()
            .revision;
    }

    proxy.restore();
    let up = becomes(&c, ServingStatus::Serving).await;
    let held = licence_ids(&c, last).await;
    assert!((0..20).all(|i| held.contains(&format!("W-A-{i:02}"))));
    assert!(
        !held.contains("W-CUT-OFF"),
        "the refused write was not made"
    );
    let (_, head) = a.network.store().latest().await.unwrap();
    let mut seen = Vec::new();
    read_stream_to(&mut stream, &mut seen, head).await;
    assert_eq!(
        seen,
        (1..=head).collect::<Vec<u64>>(),
        "caught up without a gap"
    );
    println!("\n| cut off: NOT_SERVING after | write refused in | SERVING again after | events caught up |");
    println!("|---:|---:|---:|---:|");
    println!("| {down:.1?} | {refused_in:.1?} | {up:.1?} | {head} |");
}

/// A subscriber that follows one replica through its deaths: it resumes
/// from the last sequence it saw whenever the stream breaks.
async fn follow_through_kills(
    port: u16,
    seen: Arc<Mutex<Vec<u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    history: Arc<Recorder>,
) {
    let who = format!("subscriber on :{port}");
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let after = seen.lock().await.last().copied().unwrap_or(0);
        let channel =
            match tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                .unwrap()
                .connect()
                .await
            {
                Ok(channel) => channel,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
        let stream = pb::risk_service_client::RiskServiceClient::new(channel)
            .stream_license_updates(pb::StreamLicenseUpdatesRequest {
                after_sequence: after,
                heartbeat_seconds: 1,
                ..Default::default()
            })
            .await;
        let Ok(stream) = stream else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
                Ok(Ok(Some(message))) => {
                    if let Some(Event::Update(u)) = message.event {
                        seen.lock().await.push(u.sequence);
                        history.event(&who, &u);
                    }
                }
                Ok(_) => break,
                Err(_) => {} // quiet: check whether to stop
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_at_random_lose_nothing_and_converge() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = common::postgres::cluster() else {
        return;
    };
    let url = common::postgres::database(cluster, "faults_kill").await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let start =
        |i: usize| common::ServerProcess::start(dirs[i].path(), ports[i], &["--store", &url]);
    let mut servers: Vec<Option<common::ServerProcess>> = (0..3).map(|i| Some(start(i))).collect();
    let mut clients = Vec::new();
    for server in servers.iter().flatten() {
        clients.push(RecordServiceClient::new(server.connect().await));
    }
    clients[0]
        .clone()
        .upsert_records(common::seed_network())
        .await
        .expect("the seed loads");

    let stop_following = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut followers = tokio::task::JoinSet::new();
    let seen: Vec<Arc<Mutex<Vec<u64>>>> = (0..3).map(|_| Arc::default()).collect();
    let history = Arc::new(Recorder::default());
    for (i, seen) in seen.iter().enumerate() {
        followers.spawn(follow_through_kills(
            ports[i],
            seen.clone(),
            stop_following.clone(),
            history.clone(),
        ));
    }

    let rounds = if long() { 10 } else { 2 };
    // A fixed sequence of "random" moments, so that a failure repeats.
    let mut random = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |bound: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % bound
    };
    println!("\n| round | killed | after | acknowledged | refused or lost in flight | acknowledged lost |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut acknowledged: Vec<(String, u64)> = Vec::new();
    for round in 1..=rounds {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writes = Arc::new(Mutex::new(Writes {
            history: history.clone(),
            ..Writes::default()
        }));
        let mut writers = tokio::task::JoinSet::new();
        for (i, client) in clients.iter().enumerate() {
            let (client, stop, writes) = (client.clone(), stop.clone(), writes.clone());
            let reader = clients[(i + 1) % clients.len()].clone();
            let name = format!("K{round}-{i}");
            writers
                .spawn(async move { write_until(client, Some(reader), &name, stop, writes).await });
        }
        let victim = next(3) as usize;
        let after = Duration::from_millis(100 + next(600));
        tokio::time::sleep(after).await;
        servers[victim].take().expect("running").kill_9();
        tokio::time::sleep(Duration::from_millis(200)).await;
        servers[victim] = Some(start(victim));
        servers[victim].as_ref().unwrap().connect().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        while writers.join_next().await.is_some() {}
        let w = writes.lock().await;
        acknowledged.extend(w.acknowledged.iter().cloned());
        let newest = acknowledged.iter().map(|(_, r)| *r).max().unwrap_or(0);
        let mut lost = 0;
        for server in servers.iter().flatten() {
            let app_ids = licence_ids_at(server.port, newest).await;
            lost += acknowledged
                .iter()
                .filter(|(id, _)| !app_ids.contains(id))
                .count();
        }
        println!(
            "| {round} | {victim} | {after:.0?} | {} | {} | {lost} |",
            w.acknowledged.len(),
            w.refused.len()
        );
        assert_eq!(lost, 0, "acknowledged writes lost");
    }

    // Every replica converges to the same revision and the same records,
    // and every subscriber saw every event once, in order.
    let mut exports = Vec::new();
    for server in servers.iter().flatten() {
        let channel = server.connect().await;
        exports.push(export_at_head(channel, &url).await);
    }
    assert!(
        exports.windows(2).all(|w| w[0] == w[1]),
        "the replicas converge"
    );
    let (head_revision, log_head) = latest(&url).await;
    assert_eq!(exports[0].0, head_revision);
    for seen in &seen {
        common::eventually(Duration::from_secs(60), || async {
            (seen.lock().await.last().copied().unwrap_or(0) >= log_head).then_some(())
        })
        .await;
    }
    stop_following.store(true, std::sync::atomic::Ordering::SeqCst);
    while followers.join_next().await.is_some() {}
    for (i, seen) in seen.iter().enumerate() {
        let seen = seen.lock().await;
        assert_eq!(
            *seen,
            (1..=log_head).collect::<Vec<u64>>(),
            "the subscriber of replica {i} saw every event once, in order"
        );
    }
    let channel = servers[0].as_ref().unwrap().connect().await;
    check_history(&history, channel, log_head).await;
}

/// The licence ids a replica (by port) holds at `revision` at least.
async fn licence_ids_at(port: u16, revision: u64) -> BTreeSet<String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .expect("the replica answers");
    licence_ids_on(channel, revision).await
}

/// The database's head: revision and licence log sequence.
async fn latest(url: &str) -> (u64, u64) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT revision, log_head FROM lodestone_head", &[])
        .await
        .unwrap();
    (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64)
}

/// A replica's export once it has applied the database's head.
async fn export_at_head(channel: Channel, url: &str) -> (u64, Vec<pb::Record>) {
    let (head, _) = latest(url).await;
    let mut request = tonic::Request::new(pb::ExportRecordsRequest::default());
    request.metadata_mut().insert(
        "x-lodestone-min-revision",
        head.to_string().parse().unwrap(),
    );
    let mut stream = RecordServiceClient::new(channel)
        .export_records(request)
        .await
        .expect("the replica exports")
        .into_inner();
    let mut revision = 0;
    let mut records = Vec::new();
    while let Some(page) = stream.message().await.expect("the export streams") {
        revision = revision.max(page.revision);
        records.extend(page.records);
    }
    (revision, records)
}

/// A failover as a platform team runs one: a primary and a synchronous
/// streaming standby; three replicas on a store URL that names both and
/// asks for the writable one (`target_session_attrs=read-write`), with
/// writers and a subscriber on each. Each round the primary's postmaster is
/// killed (`SIGKILL`), the standby promoted (`pg_ctl promote`), the
/// replicas find the new primary by themselves, and the old primary is
/// rebuilt as the new one's synchronous standby, so the next round fails
/// back. Nothing acknowledged is lost, every stream is contiguous, the
/// writes in the gap are refused within their deadline, and the replicas
/// converge to one revision and one export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_the_synchronous_standby_loses_nothing_acknowledged() {
    let _alone = ONE_AT_A_TIME.lock().await;
    if common::postgres::cluster().is_none() {
        return;
    }
    let name = "failover";
    let mut primary = common::postgres::Cluster::start(false).expect("a primary starts");
    primary.database(name).await.expect("the database is made");
    let mut standby =
        common::postgres::Cluster::standby_of(&primary).expect("a streaming standby starts");
    primary
        .synchronous(true)
        .await
        .expect("commits wait for the standby");
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{name}?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let apps = [
        replica(&url).await,
        replica(&url).await,
        replica(&url).await,
    ];
    apps[0].load_seed().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let history = Arc::new(Recorder::default());
    let writes = Arc::new(Mutex::new(Writes {
        history: history.clone(),
        ..Writes::default()
    }));
    let mut tasks = tokio::task::JoinSet::new();
    let mut seen: Vec<Arc<Mutex<Vec<u64>>>> = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let (stopped, writes) = (stop.clone(), writes.clone());
        let records = app.records.clone();
        let reader = apps[(i + 1) % apps.len()].records.clone();
        tasks.spawn(async move {
            write_until(records, Some(reader), &format!("F{i}"), stopped, writes).await
        });
        let followed: Arc<Mutex<Vec<u64>>> = Arc::default();
        seen.push(followed.clone());
        let (port, stopped, history) = (app.address.port(), stop.clone(), history.clone());
        tasks.spawn(async move { follow_through_kills(port, followed, stopped, history).await });
    }
    let rounds = if long() { 6 } else { 2 };
    println!("\n| round | from → to | promoted after the kill | writes again on every replica after the kill |");
    println!("|---:|---|---:|---:|");
    let mut recovered = Vec::new();
    for round in 1..=rounds {
        eventually(Duration::from_secs(60), || async {
            (primary.synchronous_standbys().await.ok()? == 1).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let killed = Instant::now();
        primary.kill_postmaster().expect("the primary is killed");
        standby.promote().expect("the standby is promoted");
        let promoted = killed.elapsed();
        writes_again(&apps, &format!("PROMOTED-{round}"), Duration::from_secs(90)).await;
        let again = killed.elapsed();
        recovered.push(again);
        println!(
            "| {round} | :{} → :{} | {promoted:.1?} | {again:.1?} |",
            primary.port, standby.port
        );
        // The old primary follows the new one, synchronously.
        primary
            .rebuild_as_standby_of(&standby)
            .expect("the old primary is rebuilt as the standby");
        standby
            .synchronous(true)
            .await
            .expect("commits wait for the new standby");
        std::mem::swap(&mut primary, &mut standby);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}

    let w = writes.lock().await;
    println!(
        "{} writes acknowledged, {} refused ({:?}), the longest call {:.1?}",
        w.acknowledged.len(),
        w.refused.len(),
        w.reasons,
        w.longest
    );
    assert!(!w.acknowledged.is_empty());
    assert!(
        w.refused.iter().all(|c| *c == Code::Unavailable),
        "writes in the gap are refused as UNAVAILABLE: {:?} {:?}",
        w.refused,
        w.reasons
    );
    assert!(
        w.longest < Duration::from_secs(10),
        "no write waited out its deadline: {:?}",
        w.longest
    );
    let newest = w.acknowledged.iter().map(|(_, r)| *r).max().unwrap_or(0);
    let acknowledged: BTreeSet<String> = w.acknowledged.iter().map(|(id, _)| id.clone()).collect();
    let (_, log_head) = latest(&url).await;
    let mut exports = Vec::new();
    for (app, followed) in apps.iter().zip(&seen) {
        let held = licence_ids(app, newest).await;
        let lost: Vec<_> = acknowledged.difference(&held).collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        exports.push(export_at_head(app.channel.clone(), &url).await);
        // Every event once, in order, through the failovers (the subscriber
        // resumes from the last it saw when its stream breaks).
        let mut followed = followed.lock().await.clone();
        let tail = apps[0]
            .subscribe(pb::StreamLicenseUpdatesRequest {
                after_sequence: followed.last().copied().unwrap_or(0),
                ..Default::default()
            })
            .await;
        let mut tail = tail.unwrap();
        read_stream_to(&mut tail, &mut followed, log_head).await;
        assert_eq!(
            followed,
            (1..=log_head).collect::<Vec<u64>>(),
            "the stream has no gap or repeat"
        );
    }
    assert!(
        exports.windows(2).all(|e| e[0] == e[1]),
        "the replicas converge to one revision and one export"
    );
    check_history(&history, apps[0].channel.clone(), log_head).await;
    println!(
        "replicas writing again {:.1?} to {:.1?} after the kill; {} events on every stream",
        recovered.iter().min().unwrap(),
        recovered.iter().max().unwrap(),
        log_head
    );
}
