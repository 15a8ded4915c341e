//! The project's benchmark: generates a network, starts the real `lodestone`
//! binary on a temporary directory, loads the network through ImportRecords,
//! and measures every main job over gRPC with many concurrent connections,
//! beside the ceiling of the stack (the health check) in the same run.
//!
//! `cargo run --release --bin lodestone-bench -- --scale large`
//!
//! With `--store postgres` it starts a throwaway PostgreSQL cluster of its
//! own (with `fsync` on) and serves from it; `--replicas 3` starts three
//! servers on that one database, measures every job on the first, and adds
//! the replication lag: from a write's acknowledgement by one replica until
//! another serves it, and until a subscriber of the other receives it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::future::BoxFuture;
use lodestone::domain::record::Record;
use lodestone::pb::{
    self, get_exposure_request::Scope, record_service_client::RecordServiceClient,
    risk_service_client::RiskServiceClient,
};
use lodestone::tools::generate::{network, Size};
use lodestone::tools::throwaway::PostgresCluster;
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

// The client decodes large answers on the same two cores as the server: give
// it the server's allocator, so that its cost is not charged to the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// sled in a temporary directory.
    Sled,
    /// A throwaway PostgreSQL cluster (with fsync on).
    Postgres,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scale {
    Medium,
    Large,
    Xlarge,
    Huge,
}

/// Measure Lodestone's main jobs over the real gRPC stack.
#[derive(Parser)]
struct Args {
    /// Network size: medium (10k components), large (50k), xlarge (200k),
    /// huge (500k: ten times large).
    #[arg(long, value_enum, default_value = "large")]
    scale: Scale,
    /// Seed of the generated network.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Concurrent client connections for throughput runs.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds each throughput run lasts.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Subscribers in the stream fan-out run.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Where the servers keep the records.
    #[arg(long, value_enum, default_value = "sled")]
    store: StoreKind,
    /// Servers on the one database (with --store postgres).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Samples per forecast; by default 1,000 on the medium network and
    /// 200 on the others.
    #[arg(long)]
    samples: Option<i32>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Run only the jobs whose names contain this (any case), besides the
    /// import, the health check's ceiling and the first risk query, which
    /// the others stand on: `--only GetExposure`.
    #[arg(long)]
    only: Option<String>,
}

impl Args {
    /// Whether the job named `job` runs.
    fn wants(&self, job: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| job.to_lowercase().contains(&only.to_lowercase()))
    }
}

/// The n-th scope of a run.
type ScopeOf = Arc<dyn Fn(u64) -> Scope + Send + Sync>;

/// One row of the results.
struct Row {
    job: String,
    rate: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    note: String,
}

impl Row {
    /// Throughput against the health check's, for runs at the same concurrency.
    fn ratio(&self, ceiling: f64) -> Option<f64> {
        let comparable = self.job != "ImportRecords" && !self.job.ends_with("one connection");
        self.rate.filter(|_| comparable).map(|rate| rate / ceiling)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn row(job: &str, mut latencies: Vec<Duration>, elapsed: Option<Duration>, note: String) -> Row {
    latencies.sort();
    Row {
        job: job.to_string(),
        rate: elapsed.map(|e| latencies.len() as f64 / e.as_secs_f64()),
        p50_ms: Some(percentile(&latencies, 0.5)),
        p99_ms: Some(percentile(&latencies, 0.99)),
        note,
    }
}

struct Server {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(store: Option<&str>) -> anyhow::Result<Server> {
        let binary = std::env::current_exe()?.with_file_name("lodestone");
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: build it with cargo build --release",
            binary.display()
        );
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let address = format!("127.0.0.1:{port}");
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", &address, "--data-dir"])
            .arg(dir.path().join("data"));
        if let Some(url) = store {
            command.args(["--store", url]);
        }
        let child = command
            .env("LODESTONE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Server {
            child,
            address,
            dir,
        })
    }

    /// Peak resident memory of the server, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        self.memory_mib("VmHWM:")
    }

    /// Resident memory of the server now, in MiB.
    fn rss_mib(&self) -> f64 {
        self.memory_mib("VmRSS:")
    }

    /// A gauge of the server's `/metrics`.
    async fn gauge(&self, name: &str) -> anyhow::Result<f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(&self.address).await?;
        socket
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        socket.read_to_string(&mut text).await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("the server's metrics hold no {name}"))
    }

    /// A line of the server's `/proc/<pid>/status` in kB, as MiB.
    fn memory_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(address: &str) -> anyhow::Result<Channel> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match Endpoint::from_shared(format!("http://{address}"))?
            .connect()
            .await
        {
            Ok(channel) => return Ok(channel),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs `call` on `connections` connections for `seconds`; returns the
/// latencies of the calls that succeeded and how long the run took.
async fn throughput<F, Fut>(
    channels: &[Channel],
    seconds: u64,
    call: F,
) -> (Vec<Duration>, Duration, usize)
where
    F: Fn(Channel, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        let call = call.clone();
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            let mut n = i as u64 * 1_000_003;
            while Instant::now() < until {
                n += 1;
                let t = Instant::now();
                if call(channel.clone(), n).await {
                    latencies.push(t.elapsed());
                } else {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut all = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (latencies, f) = task.await.expect("a worker does not panic");
        all.extend(latencies);
        failures += f;
    }
    (all, started.elapsed(), failures)
}

/// The benchmark's jobs, in the order they run, after the import, the
/// health check's ceiling and the first risk query, which the others stand
/// on. A job with a name runs when `--only` picks that name; a job without
/// one picks its runs itself, each of which has its own name.
const JOBS: &[(Option<&str>, Job)] = &[
    (Some("GetLicense"), get_license),
    (Some("ListLicenses"), list_licenses),
    (None, exposures),
    (Some("ListAtRiskLines warm"), at_risk_lines_warm),
    (Some("ListAtRiskLines cold"), at_risk_lines_cold),
    (Some("after a shipment"), at_risk_lines_after_shipment),
    (None, decision_listings),
    (Some("UpdateLicenseStatus"), update_license_status),
    (Some("stream fan-out"), stream_fan_out),
    (Some("watchers of"), watchers),
    (Some("watchers that do not read"), idle_watcher_rows),
    (Some("replication lag"), replication),
];

type Job = for<'a> fn(&'a mut Bench) -> BoxFuture<'a, anyhow::Result<()>>;

/// What every job measures against: the network's ids, the servers, the
/// connections, and the rows so far.
struct Bench {
    args: Args,
    licences: Arc<Vec<String>>,
    suppliers: Arc<Vec<String>>,
    components: Arc<Vec<String>>,
    lines: Arc<Vec<String>>,
    plants: Arc<Vec<String>>,
    servers: Vec<Server>,
    /// One connection to the first server, for calls one at a time.
    channel: Channel,
    /// `--connections` connections to the first server.
    channels: Vec<Channel>,
    as_of: String,
    rows: Vec<Row>,
    /// The server's peak RSS before the first watcher row, in MiB.
    peak_before_watchers: Option<f64>,
}

impl Bench {
    fn server(&self) -> &Server {
        &self.servers[0]
    }

    /// The at-risk question the benchmark asks: everything, 180 days.
    fn at_risk(&self) -> pb::ListAtRiskLinesRequest {
        at_risk_request(self.as_of.clone())
    }

    /// Decides licence `i` of the network, as of 1 June: a new revision.
    async fn decide(&self, i: usize) -> anyhow::Result<()> {
        RecordServiceClient::new(self.channel.clone())
            .update_license_status(pb::UpdateLicenseStatusRequest {
                id: self.licences[i % self.licences.len()].clone(),
                decided_on: "2025-06-01".into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

fn at_risk_request(as_of: String) -> pb::ListAtRiskLinesRequest {
    pb::ListAtRiskLinesRequest {
        as_of,
        horizon_days: 180,
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // As the server does: the client shares its two cores.
    lodestone::startup::without_transparent_huge_pages();
    let (network, messages) = generated(&args);
    anyhow::ensure!(
        args.replicas >= 1 && (args.replicas == 1 || args.store == StoreKind::Postgres),
        "--replicas needs --store postgres (sled serves one process)"
    );
    let (cluster, url) = database(args.store).await?;
    let mut servers = Vec::new();
    for _ in 0..args.replicas {
        servers.push(Server::start(url.as_deref())?);
        // One at a time: each migrates or finds the schema in place.
        connect(&servers.last().expect("just started").address).await?;
    }
    let channel = connect(&servers[0].address).await?;
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        channels.push(connect(&servers[0].address).await?);
    }
    let total = network.total;
    let mut bench = Bench {
        args,
        licences: network.licences,
        suppliers: network.suppliers,
        components: network.components,
        lines: network.lines,
        plants: network.plants,
        servers,
        channel,
        channels,
        as_of: "2025-06-02".to_string(),
        rows: Vec::new(),
        peak_before_watchers: None,
    };
    import(&mut bench, total, messages).await?;
    let ceiling = health_ceiling(&mut bench).await;
    first_at_risk_listing(&mut bench).await?;
    for (name, job) in JOBS {
        if name.is_none_or(|name| bench.args.wants(name)) {
            if name.is_some_and(|name| name.contains("watchers")) {
                let peak = bench.server().peak_rss_mib();
                bench.peak_before_watchers.get_or_insert(peak);
            }
            job(&mut bench).await?;
        }
    }
    let disk = match &url {
        Some(url) => database_size(url).await? as f64 / (1 << 20) as f64,
        None => lodestone::store::size_on_disk(bench.server().dir.path()) as f64 / (1 << 20) as f64,
    };
    report(&bench, total, ceiling, cluster.is_some(), disk)
}

/// The generated network's ids, and its records as import messages.
struct Generated {
    total: usize,
    licences: Arc<Vec<String>>,
    suppliers: Arc<Vec<String>>,
    components: Arc<Vec<String>>,
    lines: Arc<Vec<String>>,
    plants: Arc<Vec<String>>,
}

fn generated(args: &Args) -> (Generated, Vec<pb::ImportRecordsRequest>) {
    let size = match args.scale {
        Scale::Medium => Size::MEDIUM,
        Scale::Large => Size::LARGE,
        Scale::Xlarge => Size::XLARGE,
        Scale::Huge => Size::HUGE,
    };
    eprintln!(
        "generating the {:?} network ({size:?}, seed {})",
        args.scale, args.seed
    );
    let records = network(size, args.seed);
    let ids = |f: fn(&Record) -> Option<String>| -> Arc<Vec<String>> {
        Arc::new(records.iter().filter_map(f).collect())
    };
    let mut plants: Vec<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::Line(l) => Some(l.plant.clone()),
            _ => None,
        })
        .collect();
    plants.sort();
    plants.dedup();
    let generated = Generated {
        total: records.len(),
        licences: ids(|r| matches!(r, Record::License(_)).then(|| r.id().to_string())),
        suppliers: ids(|r| matches!(r, Record::Supplier(_)).then(|| r.id().to_string())),
        components: ids(|r| matches!(r, Record::Component(_)).then(|| r.id().to_string())),
        lines: ids(|r| matches!(r, Record::Line(_)).then(|| r.id().to_string())),
        plants: Arc::new(plants),
    };
    let messages = records
        .chunks(1000)
        .map(|chunk| pb::ImportRecordsRequest {
            records: chunk.iter().map(pb::record_to_pb).collect(),
        })
        .collect();
    (generated, messages)
}

/// The throwaway PostgreSQL cluster and its database's address, for
/// `--store postgres`.
async fn database(store: StoreKind) -> anyhow::Result<(Option<PostgresCluster>, Option<String>)> {
    match store {
        StoreKind::Sled => Ok((None, None)),
        StoreKind::Postgres => {
            anyhow::ensure!(
                PostgresCluster::available(),
                "--store postgres needs PostgreSQL's programs (initdb, pg_ctl) on the PATH"
            );
            eprintln!("starting a throwaway PostgreSQL cluster (fsync on)");
            let cluster = PostgresCluster::start(true)?;
            let url = cluster.database("lodestone").await?;
            Ok((Some(cluster), Some(url)))
        }
    }
}

async fn import(
    bench: &mut Bench,
    total: usize,
    messages: Vec<pb::ImportRecordsRequest>,
) -> anyhow::Result<()> {
    eprintln!("importing {total} records");
    let started = Instant::now();
    let imported = RecordServiceClient::new(bench.channel.clone())
        .max_encoding_message_size(usize::MAX)
        .import_records(tokio_stream::iter(messages))
        .await?
        .into_inner();
    let elapsed = started.elapsed();
    anyhow::ensure!(
        imported.upserted_count as usize == total,
        "the import was incomplete"
    );
    bench.rows.push(Row {
        job: "ImportRecords".into(),
        rate: Some(total as f64 / elapsed.as_secs_f64()),
        p50_ms: None,
        p99_ms: None,
        note: format!("{total} records in {:.2} s", elapsed.as_secs_f64()),
    });
    Ok(())
}

/// The health check's throughput: the ceiling of the stack.
async fn health_ceiling(bench: &mut Bench) -> f64 {
    eprintln!("health check ceiling");
    let (lat, took, _) = throughput(&bench.channels, bench.args.seconds, |ch, _| async move {
        HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
    })
    .await;
    let ceiling = lat.len() as f64 / took.as_secs_f64();
    bench.rows.push(row(
        "Health/Check (ceiling)",
        lat,
        Some(took),
        String::new(),
    ));
    ceiling
}

/// The first risk query builds the structure and evaluates: the coldest case.
async fn first_at_risk_listing(bench: &mut Bench) -> anyhow::Result<()> {
    let t = Instant::now();
    let first = RiskServiceClient::new(bench.channel.clone())
        .list_at_risk_lines(bench.at_risk())
        .await?
        .into_inner();
    let first_ms = t.elapsed().as_secs_f64() * 1000.0;
    bench.rows.push(Row {
        job: "ListAtRiskLines first ever (structure + evaluation)".into(),
        rate: None,
        p50_ms: Some(first_ms),
        p99_ms: None,
        note: format!("{} lines at risk", first.total_size),
    });
    Ok(())
}

fn get_license(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        eprintln!("GetLicense");
        let ids = bench.licences.clone();
        let (lat, took, _) = throughput(&bench.channels, bench.args.seconds, move |ch, n| {
            let id = ids[(n as usize * 7919) % ids.len()].clone();
            async move {
                RecordServiceClient::new(ch)
                    .get_license(pb::GetLicenseRequest { id })
                    .await
                    .is_ok()
            }
        })
        .await;
        bench
            .rows
            .push(row("GetLicense", lat, Some(took), String::new()));
        Ok(())
    })
}

fn list_licenses(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        eprintln!("ListLicenses");
        let suppliers = bench.suppliers.clone();
        let (lat, took, _) = throughput(&bench.channels, bench.args.seconds, move |ch, n| {
            let supplier_id = if n % 2 == 0 {
                suppliers[(n as usize * 31) % suppliers.len()].clone()
            } else {
                String::new()
            };
            async move {
                RecordServiceClient::new(ch)
                    .list_licenses(pb::ListLicensesRequest {
                        supplier_id,
                        page_size: 50,
                        ..Default::default()
                    })
                    .await
                    .is_ok()
            }
        })
        .await;
        bench.rows.push(row(
            "ListLicenses (page of 50)",
            lat,
            Some(took),
            String::new(),
        ));
        Ok(())
    })
}

/// One run per kind of scope: a material or a plant spans much of the
/// network, a line or a component little of it.
fn scopes(bench: &Bench) -> [(&'static str, ScopeOf); 5] {
    [
        ("supplier", {
            let s = bench.suppliers.clone();
            Arc::new(move |n| Scope::SupplierId(s[(n as usize * 13) % s.len()].clone()))
        }),
        ("component", {
            let c = bench.components.clone();
            Arc::new(move |n| Scope::ComponentId(c[(n as usize * 17) % c.len()].clone()))
        }),
        ("line", {
            let l = bench.lines.clone();
            Arc::new(move |n| Scope::LineId(l[(n as usize * 19) % l.len()].clone()))
        }),
        ("plant", {
            let p = bench.plants.clone();
            Arc::new(move |n| Scope::Plant(p[n as usize % p.len()].clone()))
        }),
        (
            "material",
            Arc::new(|n| Scope::Material(["DY", "TB", "SM", "HO"][n as usize % 4].into())),
        ),
    ]
}

/// Warm exposures of every kind of scope. The broad scopes answer with
/// every line of a plant or material (100 to 200 KiB): also measured one
/// request at a time, where the latency is the service time rather than the
/// queue behind 32 connections, and in the basic view (totals and pools, no
/// lines), as a dashboard asks: read whole, and read as a dashboard's tile
/// reads it, decoding the totals and stepping over the pools' bytes, so
/// that the client's decoding on the same two cores does not stand in the
/// server's queue.
fn exposures(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let full = pb::ExposureView::Full;
        let basic = pb::ExposureView::Basic;
        let connections = bench.args.connections;
        let scopes = scopes(bench);
        let runs = scopes.iter().flat_map(|(kind, scope)| {
            let broad = matches!(*kind, "plant" | "material");
            [
                Some((connections, full, Reading::Whole)),
                broad.then_some((1, full, Reading::Whole)),
                broad.then_some((connections, basic, Reading::Whole)),
                broad.then_some((connections, basic, Reading::Totals)),
            ]
            .into_iter()
            .flatten()
            .map(move |(connections, view, reading)| {
                (*kind, scope.clone(), connections, view, reading)
            })
        });
        for (kind, scope, connections, view, reading) in runs.collect::<Vec<_>>() {
            let name = format!(
                "GetExposure warm, random {kind}{}",
                match (connections, view, reading) {
                    (1, _, _) => ", one connection",
                    (_, pb::ExposureView::Basic, Reading::Whole) => ", basic view",
                    (_, pb::ExposureView::Basic, Reading::Totals) =>
                        ", basic view, the client decoding the totals only",
                    _ => "",
                }
            );
            if bench.args.wants(&name) {
                eprintln!("{name}");
                let row = exposure_run(bench, &name, scope, connections, view, reading).await;
                bench.rows.push(row);
            }
        }
        Ok(())
    })
}

/// One run of warm exposures, with the mean size of the answers.
async fn exposure_run(
    bench: &Bench,
    name: &str,
    scope: ScopeOf,
    connections: usize,
    view: pb::ExposureView,
    reading: Reading,
) -> Row {
    let as_of = bench.as_of.clone();
    let sizes: Arc<std::sync::Mutex<Vec<usize>>> = Arc::default();
    let sizes_ = sizes.clone();
    let channels = &bench.channels[..connections];
    let (lat, took, failures) = throughput(channels, bench.args.seconds, move |ch, n| {
        let request = pb::GetExposureRequest {
            scope: Some(scope(n)),
            as_of: as_of.clone(),
            horizon_days: 180,
            view: view as i32,
            ..Default::default()
        };
        let sizes = sizes_.clone();
        async move {
            let size = match reading {
                Reading::Whole => RiskServiceClient::new(ch)
                    .get_exposure(request)
                    .await
                    .map(|r| prost::Message::encoded_len(r.get_ref())),
                Reading::Totals => exposure_totals(ch, request).await,
            };
            match size {
                Ok(size) => {
                    sizes.lock().expect("not poisoned").push(size);
                    true
                }
                Err(_) => false,
            }
        }
    })
    .await;
    let sizes = sizes.lock().expect("not poisoned");
    let mean = sizes.iter().sum::<usize>() / sizes.len().max(1);
    row(
        name,
        lat,
        Some(took),
        format!(
            "mean response {:.1} KiB; {failures} failed",
            mean as f64 / 1024.0
        ),
    )
}

fn at_risk_lines_warm(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        eprintln!("ListAtRiskLines warm");
        let as_of = bench.as_of.clone();
        let (lat, took, _) = throughput(&bench.channels, bench.args.seconds, move |ch, _| {
            let request = at_risk_request(as_of.clone());
            async move {
                RiskServiceClient::new(ch)
                    .list_at_risk_lines(request)
                    .await
                    .is_ok()
            }
        })
        .await;
        bench.rows.push(row(
            "ListAtRiskLines first page, warm",
            lat,
            Some(took),
            String::new(),
        ));
        Ok(())
    })
}

fn at_risk_lines_cold(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        eprintln!("ListAtRiskLines cold");
        let mut risk = RiskServiceClient::new(bench.channel.clone());
        let mut cold = Vec::new();
        for i in 0..20 {
            bench.decide(i * 101).await?;
            let t = Instant::now();
            risk.list_at_risk_lines(bench.at_risk()).await?;
            cold.push(t.elapsed());
        }
        bench.rows.push(row(
            "ListAtRiskLines first page, cold (after a licence update)",
            cold,
            None,
            "180-day horizon".into(),
        ));
        Ok(())
    })
}

/// Cold listings after a shipment is written: one arrival of a component
/// that a line at risk lacks, a different one each round.
fn at_risk_lines_after_shipment(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        eprintln!("ListAtRiskLines cold after a shipment");
        let mut risk = RiskServiceClient::new(bench.channel.clone());
        let mut records = RecordServiceClient::new(bench.channel.clone());
        let at_risk = risk
            .list_at_risk_lines(pb::ListAtRiskLinesRequest {
                page_size: 1000,
                ..bench.at_risk()
            })
            .await?
            .into_inner()
            .lines;
        let causes: Vec<String> = at_risk
            .iter()
            .filter_map(|l| l.root_cause_path.last().cloned())
            .collect();
        anyhow::ensure!(!causes.is_empty(), "no line is at risk");
        let mut cold = Vec::new();
        for i in 0..20 {
            let shipment = pb::Shipment {
                id: format!("SH-BENCH-{i:03}"),
                component_id: causes[i * 7 % causes.len()].clone(),
                units: 1000.0,
                arrives_on: "2025-06-20".into(),
                reference: "lodestone-bench".into(),
                revision: 0,
            };
            records
                .upsert_records(pb::UpsertRecordsRequest {
                    records: vec![pb::Record {
                        record: Some(pb::record::Record::Shipment(shipment)),
                    }],
                    validate_only: false,
                })
                .await?;
            let t = Instant::now();
            risk.list_at_risk_lines(bench.at_risk()).await?;
            cold.push(t.elapsed());
        }
        bench.rows.push(row(
            "ListAtRiskLines first page, cold (after a shipment is written)",
            cold,
            None,
            "the component's cone simulated again".into(),
        ));
        Ok(())
    })
}

/// The decision listings, cold after a licence update (each candidate's
/// cone simulated; each sample's changed pools), then warm: later pages
/// and repeated questions come from the kept listing.
fn decision_listings(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let samples = bench.args.samples.unwrap_or(match bench.args.scale {
            Scale::Medium => 1000,
            _ => 200,
        });
        let listings = [
            Listing::SupplierImpacts,
            Listing::LicenseStakes,
            Listing::LineForecasts { samples },
        ];
        for (l, listing) in listings.into_iter().enumerate() {
            if bench.args.wants(listing.name()) {
                decision_listing(bench, l, listing).await?;
            }
        }
        Ok(())
    })
}

/// One decision listing, cold and then warm; `l` picks the licences it
/// decides, which no other run of the benchmark decides.
async fn decision_listing(bench: &mut Bench, l: usize, listing: Listing) -> anyhow::Result<()> {
    let name = listing.name();
    eprintln!("{name} cold");
    let mut risk = RiskServiceClient::new(bench.channel.clone());
    let runs = if matches!(listing, Listing::LineForecasts { .. }) {
        2
    } else {
        3
    };
    let (mut cold, mut total, mut second_page) = (Vec::new(), 0, String::new());
    for i in 0..runs {
        bench.decide(i * 211 + l * 1009 + 7).await?;
        let t = Instant::now();
        (total, second_page) = listing.page(&mut risk, &bench.as_of, String::new()).await?;
        cold.push(t.elapsed());
    }
    bench.rows.push(row(
        &format!("{name} first page, cold{}", listing.cold_note()),
        cold,
        None,
        format!("{total} {}", listing.counted()),
    ));
    eprintln!("{name} warm");
    for connections in [bench.args.connections, 1] {
        let (as_of, second_page) = (bench.as_of.clone(), second_page.clone());
        let channels = &bench.channels[..connections];
        let (lat, took, failures) = throughput(channels, bench.args.seconds, move |ch, n| {
            // The first page and the second, in turn.
            let token = if n % 2 == 0 {
                String::new()
            } else {
                second_page.clone()
            };
            let as_of = as_of.clone();
            async move {
                let mut client = RiskServiceClient::new(ch);
                listing.page(&mut client, &as_of, token).await.is_ok()
            }
        })
        .await;
        let alone = if connections == 1 {
            ", one connection"
        } else {
            ""
        };
        bench.rows.push(row(
            &format!("{name} first and later pages, warm{alone}"),
            lat,
            Some(took),
            format!("{failures} failed"),
        ));
    }
    Ok(())
}

fn update_license_status(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        eprintln!("UpdateLicenseStatus");
        let ids = bench.licences.clone();
        let (lat, took, _) = throughput(&bench.channels, bench.args.seconds, move |ch, n| {
            let id = ids[(n as usize * 7919) % ids.len()].clone();
            async move {
                RecordServiceClient::new(ch)
                    .update_license_status(pb::UpdateLicenseStatusRequest {
                        id,
                        decided_on: format!("2025-06-{:02}", 1 + n % 28),
                        ..Default::default()
                    })
                    .await
                    .is_ok()
            }
        })
        .await;
        bench.rows.push(row(
            "UpdateLicenseStatus (durable)",
            lat,
            Some(took),
            String::new(),
        ));
        Ok(())
    })
}

fn stream_fan_out(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let subscribers = bench.args.subscribers;
        eprintln!("stream fan-out to {subscribers} subscribers");
        let row = fan_out(
            &bench.server().address,
            subscribers,
            bench.args.seconds,
            &bench.licences,
        )
        .await?;
        bench.rows.push(row);
        Ok(())
    })
}

fn watchers(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        for questions in [1, 50] {
            let subscribers = bench.args.subscribers;
            eprintln!("{subscribers} watchers of {questions} question(s)");
            let row = watch_fan_out(
                &bench.server().address,
                subscribers,
                questions,
                &bench.plants,
                bench.args.seconds,
                &bench.licences,
            )
            .await?;
            bench.rows.push(row);
        }
        Ok(())
    })
}

fn idle_watcher_rows(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let subscribers = bench.args.subscribers;
        eprintln!("{subscribers} watchers that do not read");
        let row = idle_watchers(
            bench.server(),
            subscribers,
            bench.args.seconds,
            &bench.licences,
        )
        .await?;
        bench.rows.push(row);
        Ok(())
    })
}

/// With `--replicas` of two or more: from a write on the first server until
/// the second serves it.
fn replication(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let Some(other) = bench.servers.get(1) else {
            return Ok(());
        };
        eprintln!("replication lag");
        let rows = replication_lag(
            &bench.server().address,
            &other.address,
            bench.args.seconds,
            &bench.licences,
        )
        .await?;
        bench.rows.extend(rows);
        Ok(())
    })
}

/// Prints the table and writes the JSON.
fn report(
    bench: &Bench,
    total: usize,
    ceiling: f64,
    database: bool,
    disk: f64,
) -> anyhow::Result<()> {
    let args = &bench.args;
    let rss = bench.server().peak_rss_mib();
    let place = if database {
        "database"
    } else {
        "data directory"
    };
    println!(
        "\nLodestone benchmark: {:?} network ({total} records), {:?} store, {} replica(s), {} connections, {} s per run\n",
        args.scale, args.store, args.replicas, args.connections, args.seconds
    );
    println!("| job | rate (/s) | p50 (ms) | p99 (ms) | ratio to ceiling | note |");
    println!("|---|---:|---:|---:|---:|---|");
    let fmt = |v: Option<f64>, digits: usize| v.map_or("".to_string(), |v| format!("{v:.digits$}"));
    for r in &bench.rows {
        let ratio = r.ratio(ceiling);
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.job,
            fmt(r.rate, 0),
            fmt(r.p50_ms, 2),
            fmt(r.p99_ms, 2),
            fmt(ratio, 2),
            r.note
        );
    }
    let before = bench.peak_before_watchers.map_or(String::new(), |mib| {
        format!(" ({mib:.0} MiB before the watcher rows)")
    });
    println!("\nserver peak RSS: {rss:.0} MiB{before}; {place}: {disk:.0} MiB");

    let json = serde_json::json!({
        "scale": format!("{:?}", args.scale).to_lowercase(),
        "records": total,
        "store": format!("{:?}", args.store).to_lowercase(),
        "replicas": args.replicas,
        "connections": args.connections,
        "seconds_per_run": args.seconds,
        "server_peak_rss_mib": rss,
        "server_peak_rss_before_watchers_mib": bench.peak_before_watchers,
        "store_mib": disk,
        "jobs": bench.rows.iter().map(|r| serde_json::json!({
            "job": r.job, "rate_per_s": r.rate, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
            "ratio_to_ceiling": r.ratio(ceiling), "note": r.note,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)?;
    eprintln!("results written to {}", args.json.display());
    Ok(())
}

/// A paged decision listing the benchmark asks.
#[derive(Clone, Copy)]
enum Listing {
    SupplierImpacts,
    LicenseStakes,
    LineForecasts { samples: i32 },
}

impl Listing {
    fn name(self) -> &'static str {
        match self {
            Listing::SupplierImpacts => "ListSupplierImpacts",
            Listing::LicenseStakes => "ListLicenseStakes",
            Listing::LineForecasts { .. } => "ListLineForecasts",
        }
    }

    fn cold_note(self) -> String {
        match self {
            Listing::LineForecasts { samples } => format!(" ({samples} samples)"),
            _ => " (after a licence update)".into(),
        }
    }

    /// What `total_size` counts, and at which horizon.
    fn counted(self) -> &'static str {
        match self {
            Listing::SupplierImpacts => "candidates, 180-day horizon",
            Listing::LicenseStakes => "candidates, 180-day horizon",
            Listing::LineForecasts { .. } => "lines may stop; 90-day horizon",
        }
    }

    /// A page of 50 (the first, or the one `token` names): the listing's
    /// total size and the next page's token.
    async fn page(
        self,
        client: &mut RiskServiceClient<Channel>,
        as_of: &str,
        page_token: String,
    ) -> Result<(i32, String), tonic::Status> {
        let as_of = as_of.to_string();
        Ok(match self {
            Listing::SupplierImpacts => {
                let request = pb::ListSupplierImpactsRequest {
                    as_of,
                    horizon_days: 180,
                    page_size: 50,
                    page_token,
                    ..Default::default()
                };
                let page = client.list_supplier_impacts(request).await?.into_inner();
                (page.total_size, page.next_page_token)
            }
            Listing::LicenseStakes => {
                let request = pb::ListLicenseStakesRequest {
                    as_of,
                    horizon_days: 180,
                    page_size: 50,
                    page_token,
                    ..Default::default()
                };
                let page = client.list_license_stakes(request).await?.into_inner();
                (page.total_size, page.next_page_token)
            }
            Listing::LineForecasts { samples } => {
                let request = pb::ListLineForecastsRequest {
                    as_of,
                    samples,
                    seed: 2025,
                    page_size: 50,
                    page_token,
                    ..Default::default()
                };
                let page = client.list_line_forecasts(request).await?.into_inner();
                (page.total_size, page.next_page_token)
            }
        })
    }
}

/// `subscribers` streams; a writer updates a licence every few milliseconds;
/// the latency is from the writer's acknowledgement to each receipt.
async fn fan_out(
    address: &str,
    subscribers: usize,
    seconds: u64,
    licences: &[String],
) -> anyhow::Result<Row> {
    // By revision: each write changes one licence, so its revision names it.
    let acked: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let received: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let mut channels = Vec::new();
    for _ in 0..subscribers.div_ceil(50) {
        channels.push(connect(address).await?);
    }
    let mut readers = Vec::new();
    // Readers stop a little after the writer, so late deliveries still count.
    let stop_reading = tokio::time::Instant::now() + Duration::from_secs(seconds + 3);
    for i in 0..subscribers {
        let mut client = RiskServiceClient::new(channels[i / 50].clone());
        let stream = client
            .stream_license_updates(pb::StreamLicenseUpdatesRequest {
                from_now: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        readers.push(read_until(
            stream,
            stop_reading,
            received.clone(),
            |m| match m.event {
                Some(pb::stream_license_updates_response::Event::Update(u)) => Some(u.revision),
                _ => None,
            },
        ));
    }
    let mut writer = RecordServiceClient::new(connect(address).await?);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0;
    while Instant::now() < until {
        let id = licences[(n * 7) % licences.len()].clone();
        n += 1;
        let licence = writer
            .update_license_status(pb::UpdateLicenseStatusRequest {
                id,
                decided_on: format!("2025-07-{:02}", 1 + n % 28),
                ..Default::default()
            })
            .await?
            .into_inner();
        // Each write changes one licence: its revision names its log entry.
        acked.lock().await.insert(licence.revision, Instant::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for reader in readers {
        reader.await?;
    }
    drop(channels);
    let acked = acked.lock().await;
    let received = received.lock().await;
    let latencies: Vec<Duration> = received
        .iter()
        .filter_map(|(seq, at)| acked.get(seq).map(|ack| at.saturating_duration_since(*ack)))
        .collect();
    let expected = acked.len() * subscribers;
    Ok(row(
        &format!("licence update to {subscribers} subscribers"),
        latencies.clone(),
        None,
        format!(
            "{} of {expected} deliveries measured; {n} updates",
            latencies.len()
        ),
    ))
}

/// `watchers` watches over `questions` distinct questions (the network,
/// then each plant, at longer horizons); a writer decides licences one way
/// and back; the latency is from a decision's acknowledgement to each
/// change that reports its revision.
async fn watch_fan_out(
    address: &str,
    watchers: usize,
    questions: usize,
    plants: &[String],
    seconds: u64,
    licences: &[String],
) -> anyhow::Result<Row> {
    let acked: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let received: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let mut channels = Vec::new();
    for _ in 0..watchers.div_ceil(50) {
        channels.push(connect(address).await?);
    }
    let question = |q: usize| pb::WatchAtRiskLinesRequest {
        as_of: "2025-06-02".into(),
        horizon_days: 90 + 30 * (q / (plants.len() + 1)) as i32,
        plant: match q % (plants.len() + 1) {
            0 => String::new(),
            p => plants[p - 1].clone(),
        },
        heartbeat_seconds: 60,
        ..Default::default()
    };
    let stop_reading = tokio::time::Instant::now() + Duration::from_secs(seconds + 5);
    let mut readers = Vec::new();
    for i in 0..watchers {
        let mut client = RiskServiceClient::new(channels[i / 50].clone());
        let mut stream = client
            .watch_at_risk_lines(question(i % questions))
            .await?
            .into_inner();
        // The snapshot first: the watch is open.
        stream.message().await?;
        readers.push(read_until(
            stream,
            stop_reading,
            received.clone(),
            |m| match m.event {
                Some(pb::watch_at_risk_lines_response::Event::Change(c)) => Some(c.revision),
                _ => None,
            },
        ));
    }
    let mut writer = RecordServiceClient::new(connect(address).await?);
    let until = Instant::now() + Duration::from_secs(seconds);
    // Room for every question's evaluation between two decisions.
    let pause = Duration::from_millis(if questions > 1 { 1000 } else { 200 });
    let mut n = 0;
    while Instant::now() < until {
        let licence = approve_or_reject(&mut writer, licences, n, 13).await?;
        n += 1;
        acked.lock().await.insert(licence.revision, Instant::now());
        tokio::time::sleep(pause).await;
    }
    for reader in readers {
        reader.await?;
    }
    drop(channels);
    let acked = acked.lock().await;
    let received = received.lock().await;
    let latencies: Vec<Duration> = received
        .iter()
        .filter_map(|(revision, at)| {
            acked
                .get(revision)
                .map(|ack| at.saturating_duration_since(*ack))
        })
        .collect();
    Ok(row(
        &format!("licence update → change at {watchers} watchers of {questions} question(s)"),
        latencies.clone(),
        None,
        format!("{} changes measured; {n} decisions", latencies.len()),
    ))
}

/// `watchers` watches of one question that take their snapshot and then
/// read nothing while a writer decides licences for `seconds`: the
/// server's resident memory when they are open and when the decisions are
/// done, which stays flat when a watch keeps no backlog.
async fn idle_watchers(
    server: &Server,
    watchers: usize,
    seconds: u64,
    licences: &[String],
) -> anyhow::Result<Row> {
    let mut channels = Vec::new();
    for _ in 0..watchers.div_ceil(50) {
        channels.push(connect(&server.address).await?);
    }
    let mut streams = Vec::new();
    for i in 0..watchers {
        let mut stream = RiskServiceClient::new(channels[i / 50].clone())
            .watch_at_risk_lines(pb::WatchAtRiskLinesRequest {
                as_of: "2025-06-02".into(),
                horizon_days: 150,
                heartbeat_seconds: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        stream.message().await?;
        streams.push(stream);
    }
    // A few decisions first, so that memory the question needs anyway
    // (its answers, the caches) is in use before the first figure.
    let mut writer = RecordServiceClient::new(connect(&server.address).await?);
    let mut n = 0usize;
    let mut decide = async |n: &mut usize| -> anyhow::Result<()> {
        approve_or_reject(&mut writer, licences, *n, 17).await?;
        *n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    };
    for _ in 0..20 {
        decide(&mut n).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Resident memory after each quarter of the run, beside what the risk
    // answers kept hold (bounded by --risk-cache-mb, filling as revisions
    // pass): a watch that keeps no backlog adds nothing once each has its
    // bounded messages in flight.
    let sample = async || -> anyhow::Result<String> {
        Ok(format!(
            "{:.0} ({:.0})",
            server.rss_mib(),
            server.gauge("lodestone_risk_cache_bytes").await? / (1 << 20) as f64
        ))
    };
    let mut samples = vec![sample().await?];
    let before = n;
    for _ in 0..4 {
        let until = Instant::now() + Duration::from_secs(seconds.max(1));
        while Instant::now() < until {
            decide(&mut n).await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(sample().await?);
    }
    drop(streams);
    drop(channels);
    Ok(Row {
        job: format!("server memory while {watchers} watchers do not read"),
        rate: None,
        p50_ms: None,
        p99_ms: None,
        note: format!(
            "RSS (risk answers kept) in MiB with the watches open, then after each quarter of {} decisions: {}",
            n - before,
            samples.join(" → ")
        ),
    })
}

/// Reads `stream` until `stop_reading`, noting when each message that
/// names a revision (`revision_of`) arrived; the notes go to `received`.
fn read_until<T: Send + 'static>(
    mut stream: tonic::Streaming<T>,
    stop_reading: tokio::time::Instant,
    received: Arc<Mutex<Vec<(u64, Instant)>>>,
    revision_of: fn(T) -> Option<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut mine = Vec::new();
        while let Ok(Ok(Some(message))) =
            tokio::time::timeout_at(stop_reading, stream.message()).await
        {
            if let Some(revision) = revision_of(message) {
                mine.push((revision, Instant::now()));
            }
        }
        received.lock().await.extend(mine);
    })
}

/// The `n`-th decision of a run: approves, then rejects, each licence in
/// turn, stepping `stride` licences between pairs, so that every decision
/// changes something.
async fn approve_or_reject(
    writer: &mut RecordServiceClient<Channel>,
    licences: &[String],
    n: usize,
    stride: usize,
) -> anyhow::Result<pb::License> {
    let status = if n.is_multiple_of(2) {
        pb::LicenseStatus::Approved
    } else {
        pb::LicenseStatus::Rejected
    };
    Ok(writer
        .update_license_status(pb::UpdateLicenseStatusRequest {
            id: licences[(n / 2 * stride) % licences.len()].clone(),
            status: status as i32,
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// Bytes of the database at `url`.
async fn database_size(url: &str) -> anyhow::Result<i64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?;
    Ok(row.get(0))
}

/// One write at a time acknowledged by replica `a`: how long until replica
/// `b` serves it (a read that waits for the write's revision; its own round
/// trip is in the figure), and until a subscriber of `b` receives it.
async fn replication_lag(
    a: &str,
    b: &str,
    seconds: u64,
    licences: &[String],
) -> anyhow::Result<Vec<Row>> {
    let mut writer = RecordServiceClient::new(connect(a).await?);
    let mut reader = RecordServiceClient::new(connect(b).await?);
    let mut stream = RiskServiceClient::new(connect(b).await?)
        .stream_license_updates(pb::StreamLicenseUpdatesRequest {
            from_now: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    // Each write changes one licence: its revision names its log entry.
    let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let listening = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let stop = tokio::time::Instant::now() + Duration::from_secs(seconds + 3);
            while let Ok(Ok(Some(message))) = tokio::time::timeout_at(stop, stream.message()).await
            {
                if let Some(pb::stream_license_updates_response::Event::Update(u)) = message.event {
                    arrivals.lock().await.insert(u.revision, Instant::now());
                }
            }
        })
    };
    let mut visible = Vec::new();
    let mut acked = HashMap::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0;
    while Instant::now() < until {
        let id = licences[(n * 13) % licences.len()].clone();
        n += 1;
        let licence = writer
            .update_license_status(pb::UpdateLicenseStatusRequest {
                id: id.clone(),
                // A quantity of its own: every write changes something.
                quantity_kg: 10_000_000.0 + n as f64,
                ..Default::default()
            })
            .await?
            .into_inner();
        let at = Instant::now();
        acked.insert(licence.revision, at);
        let mut read = tonic::Request::new(pb::GetLicenseRequest { id });
        read.metadata_mut().insert(
            "x-lodestone-min-revision",
            licence.revision.to_string().parse()?,
        );
        reader.get_license(read).await?;
        visible.push(at.elapsed());
    }
    listening.await?;
    let arrivals = arrivals.lock().await;
    let received: Vec<Duration> = acked
        .iter()
        .filter_map(|(revision, at)| {
            arrivals
                .get(revision)
                .map(|r| r.saturating_duration_since(*at))
        })
        .collect();
    let delivered = received.len();
    Ok(vec![
        row(
            "replication lag: acknowledged by A, served by B",
            visible,
            None,
            format!("{n} writes, one at a time"),
        ),
        row(
            "replication lag: acknowledged by A, received by a subscriber of B",
            received,
            None,
            format!("{delivered} of {n} received"),
        ),
    ])
}

/// How the benchmark's client reads an exposure.
#[derive(Clone, Copy, Debug)]
enum Reading {
    /// Decodes the whole message, every line and pool.
    Whole,
    /// Decodes the totals and steps over the lines' and pools' bytes, as a
    /// client whose schema has only the totals would.
    Totals,
}

/// `lodestone.v1.Exposure` with its totals only: protobuf skips the fields a
/// message does not declare.
#[derive(Clone, PartialEq, prost::Message)]
struct ExposureTotals {
    #[prost(string, tag = "1")]
    as_of: String,
    #[prost(uint64, tag = "3")]
    revision: u64,
    #[prost(int32, tag = "4")]
    lines_in_scope: i32,
    #[prost(int32, tag = "5")]
    lines_at_risk: i32,
    #[prost(double, tag = "7")]
    units_at_risk: f64,
}

/// Reads an answer as [`ExposureTotals`], with its size on the wire.
#[derive(Default)]
struct TotalsCodec;

impl tonic::codec::Codec for TotalsCodec {
    type Encode = pb::GetExposureRequest;
    type Decode = (usize, ExposureTotals);
    type Encoder = tonic_prost::ProstEncoder<pb::GetExposureRequest>;
    type Decoder = TotalsCodec;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        TotalsCodec
    }
}

impl tonic::codec::Decoder for TotalsCodec {
    type Item = (usize, ExposureTotals);
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, tonic::Status> {
        let size = bytes::Buf::remaining(buf);
        let totals = <ExposureTotals as prost::Message>::decode(buf)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(Some((size, totals)))
    }
}

/// GetExposure read as [`Reading::Totals`]: the answer's size on the wire.
async fn exposure_totals(
    channel: Channel,
    request: pb::GetExposureRequest,
) -> Result<usize, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/lodestone.v1.RiskService/GetExposure");
    let (size, totals) = grpc
        .unary(tonic::Request::new(request), path, TotalsCodec)
        .await?
        .into_inner();
    if totals.revision == 0 || totals.lines_in_scope == 0 {
        return Err(tonic::Status::internal("an exposure without its totals"));
    }
    Ok(size)
}
