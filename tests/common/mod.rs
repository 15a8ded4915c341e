//! Shared by the integration tests: a real server on port 0 over a fresh
//! store (sled in a temporary directory, or a database of its own in a
//! throwaway PostgreSQL cluster), and connected clients.
#![allow(dead_code)]

pub mod postgres;
pub mod proxy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lodestone::pb::record_service_client::RecordServiceClient;
use lodestone::pb::risk_service_client::RiskServiceClient;
use lodestone::pb::{self, json};
use lodestone::startup::{Application, ServeConfig};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A running server and clients connected to it.
pub struct TestApp {
    pub address: SocketAddr,
    pub channel: Channel,
    pub records: RecordServiceClient<Channel>,
    pub risk: RiskServiceClient<Channel>,
    /// The data directory; kept alive as long as any app that uses it.
    pub dir: Arc<TempDir>,
    pub network: Arc<lodestone::network::Network>,
    pub streams: Arc<lodestone::api::StreamGauges>,
    pub engine: Arc<lodestone::engine::RiskEngine>,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

/// Which store a test's servers keep their records in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Sled,
    Postgres,
}

tokio::task_local! {
    static STORE: StoreKind;
}

/// The store of the test running (sled unless `on_store` says otherwise).
pub fn store_kind() -> StoreKind {
    STORE.try_with(|kind| *kind).unwrap_or(StoreKind::Sled)
}

/// Runs `test` with `spawn_app` on `kind` (see `#[both_stores]`). Where
/// PostgreSQL is missing, the PostgreSQL variant skips, saying so.
pub async fn on_store(kind: StoreKind, test: impl std::future::Future<Output = ()>) {
    if kind == StoreKind::Postgres && postgres::cluster().is_none() {
        return;
    }
    STORE.scope(kind, test).await
}

/// Starts a server over a fresh temporary directory.
pub async fn spawn_app() -> TestApp {
    spawn_app_in(Arc::new(
        tempfile::tempdir().expect("a temporary directory"),
    ))
    .await
}

/// Starts a server over `dir` (e.g. again after `stop`, to test restarts).
pub async fn spawn_app_in(dir: Arc<TempDir>) -> TestApp {
    spawn_app_with(dir, |_| {}).await
}

/// Starts a server over `dir` with a configuration `configure` adjusts. The
/// app's own clients speak plain HTTP/2 (they fail against a TLS server).
pub async fn spawn_app_with(
    dir: Arc<TempDir>,
    configure: impl FnOnce(&mut ServeConfig),
) -> TestApp {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), data_path(dir.path()));
    if store_kind() == StoreKind::Postgres {
        let cluster = postgres::cluster().expect("on_store checked for PostgreSQL");
        config.store =
            Some(postgres::database(cluster, &postgres::database_name(dir.path())).await);
    }
    configure(&mut config);
    let tls = config.tls_cert.is_some();
    let app = Application::build(config)
        .await
        .expect("the service builds");
    let address: SocketAddr = format!("127.0.0.1:{}", app.port()).parse().unwrap();
    let shutdown = app.shutdown_token();
    let network = app.network();
    let streams = app.stream_gauges();
    let engine = app.engine();
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(30));
    let channel = if tls {
        endpoint.connect_lazy()
    } else {
        endpoint.connect().await.expect("the client connects")
    };
    TestApp {
        address,
        records: RecordServiceClient::new(channel.clone()),
        risk: RiskServiceClient::new(channel.clone()),
        channel,
        dir,
        network,
        engine,
        streams,
        shutdown,
        server,
    }
}

pub fn data_path(dir: &Path) -> PathBuf {
    dir.join("data")
}

impl TestApp {
    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn stop(self) -> Arc<TempDir> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.server)
            .await
            .expect("the server stops within a minute")
            .expect("the server task does not panic")
            .expect("the server stops cleanly");
        self.dir
    }

    pub async fn upsert(
        &self,
        records: Vec<pb::Record>,
    ) -> Result<pb::UpsertRecordsResponse, Status> {
        self.records
            .clone()
            .upsert_records(pb::UpsertRecordsRequest {
                records,
                validate_only: false,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Opens a licence update stream.
    pub async fn subscribe(
        &self,
        request: pb::StreamLicenseUpdatesRequest,
    ) -> Result<tonic::Streaming<pb::StreamLicenseUpdatesResponse>, Status> {
        self.risk
            .clone()
            .stream_license_updates(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Records a decision on a licence: a new status, unconditionally.
    pub async fn decide(&self, id: &str, status: pb::LicenseStatus) -> Result<pb::License, Status> {
        self.records
            .clone()
            .update_license_status(pb::UpdateLicenseStatusRequest {
                id: id.into(),
                status: status as i32,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Records a decision on a licence: a new quantity, unconditionally.
    pub async fn set_quantity(&self, id: &str, quantity_kg: f64) -> Result<pb::License, Status> {
        self.records
            .clone()
            .update_license_status(pb::UpdateLicenseStatusRequest {
                id: id.into(),
                quantity_kg,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Loads the worked example network.
    pub async fn load_seed(&self) -> pb::UpsertRecordsResponse {
        self.upsert(seed_network().records)
            .await
            .expect("the seed network loads")
    }

    pub async fn all_licenses(&self) -> Vec<pb::License> {
        self.records
            .clone()
            .list_licenses(pb::ListLicensesRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .licenses
    }

    /// Every record, through ExportRecords.
    pub async fn export(&self) -> (u64, Vec<pb::Record>) {
        let mut stream = self
            .records
            .clone()
            .export_records(pb::ExportRecordsRequest {})
            .await
            .unwrap()
            .into_inner();
        let mut records = Vec::new();
        let mut revision = None;
        while let Some(message) = stream.message().await.unwrap() {
            assert!(
                revision.is_none_or(|r| r == message.revision),
                "one revision per export"
            );
            revision = Some(message.revision);
            records.extend(message.records);
        }
        (revision.unwrap_or(0), records)
    }
}

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The worked example's network (`tests/fixtures/seed-network.json`).
pub fn seed_network() -> pb::UpsertRecordsRequest {
    json::from_json(
        "lodestone.v1.UpsertRecordsRequest",
        &fixture("seed-network.json"),
    )
    .expect("the seed network parses")
}

/// Parses one record written in protobuf JSON.
pub fn record(json: &str) -> pb::Record {
    json::from_json("lodestone.v1.Record", json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// Asserts a status's code and `ErrorInfo` reason, and returns its field
/// violations as (field, description) pairs.
pub fn expect_error(status: &Status, code: Code, reason: &str) -> Vec<(String, String)> {
    assert_eq!(status.code(), code, "{status:?}");
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "lodestone");
    details
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `ErrorInfo` metadata of a status.
pub fn metadata(status: &Status) -> std::collections::HashMap<String, String> {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.metadata.clone())
        .unwrap_or_default()
}

/// The next message of a stream, within a generous minute.
pub async fn next_event(
    stream: &mut tonic::Streaming<pb::StreamLicenseUpdatesResponse>,
) -> pb::stream_license_updates_response::Event {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("a message within a minute")
        .expect("the stream stays healthy")
        .expect("the stream stays open")
        .event
        .expect("every message holds an event")
}

/// The next licence update of a stream, skipping heartbeats, within a
/// generous minute.
pub async fn next_update(
    stream: &mut tonic::Streaming<pb::StreamLicenseUpdatesResponse>,
) -> pb::LicenseUpdate {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let pb::stream_license_updates_response::Event::Update(update) = next_event(stream).await
        {
            return update;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no update within a minute, only heartbeats"
        );
    }
}

/// An outside tool the test needs (grpcurl, python3 with grpcio, buf), or
/// `None` when it is missing and may be: a developer's machine need not have
/// it, but `.ci/run` installs it and sets `LODESTONE_REQUIRE_TOOLS=1`, which
/// turns a missing tool into a failure. `what` names what is missing in
/// words a person can act on ("the Python modules grpc and grpc_tools").
pub fn outside_tool(name: &str, probe: &[&str], what: &str) -> Option<PathBuf> {
    let found = std::process::Command::new(name)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        skips::ran();
        return Some(PathBuf::from(name));
    }
    if std::env::var("LODESTONE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("{what} is required (LODESTONE_REQUIRE_TOOLS=1) but `{name} {probe:?}` failed");
    }
    skips::skipped(&format!("{what} is missing (.ci/run installs it)"));
    None
}

/// Which tests skipped, and why, for `tests/zz_skipped.rs` to tell at the end
/// of `cargo test`: a skip printed inside a passing test is captured and never
/// shown. One file per test under the target's temporary directory, written
/// when the test skips and removed when it runs.
pub mod skips {
    use std::io::Write;
    use std::path::PathBuf;

    /// The folder of the records; `tests/zz_skipped.rs` reads it.
    pub fn folder() -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests")
    }

    fn record() -> PathBuf {
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .map(|stem| match stem.rsplit_once('-') {
                // Cargo names test binaries `name-hash`.
                Some((name, _)) => name.to_string(),
                None => stem,
            })
            .unwrap_or_default();
        let test = std::thread::current()
            .name()
            .unwrap_or("main")
            .replace("::", ".");
        folder().join(format!("{binary}.{test}"))
    }

    /// Notes that the current test skipped, and says so at once on the
    /// process's real standard error (past the test harness's capture).
    pub fn skipped(why: &str) {
        let path = record();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let _ = std::fs::create_dir_all(folder());
        let _ = std::fs::write(&path, why);
        let _ = writeln!(std::io::stderr(), "skipped: {name}: {why}");
    }

    /// Notes that the current test ran (clearing an earlier skip of it).
    pub fn ran() {
        let _ = std::fs::remove_file(record());
    }
}

/// Sets the soft file size limit (RLIMIT_FSIZE) of process `pid`, as a full
/// disk would stop its files growing (`None`: unlimited again).
pub fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a plain system call on a child process of this test, with a
    // valid pointer to a local value and a null old-limit pointer.
    let result = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(result, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Imports the seed network and `licences` more pending licences of NBM's
/// dysprosium (`BULK-00000`...) in one ImportRecords: as many licence log
/// events in one commit.
pub async fn import_seed_with_bulk_licences(app: &TestApp, licences: usize) {
    let mut records = seed_network().records;
    records.extend((0..licences).map(|i| {
        record(&format!(
            r#"{{"license": {{"id": "BULK-{i:05}", "supplier_id": "NBM", "material": "DY",
                "status": "LICENSE_STATUS_PENDING", "quantity_kg": 10}}}}"#
        ))
    }));
    app.records
        .clone()
        .import_records(tokio_stream::iter([pb::ImportRecordsRequest { records }]))
        .await
        .expect("the seed and the bulk licences import");
}

/// A channel to `address` with small HTTP/2 windows (16 KiB), so that the
/// transport buffers little of what a stream sends.
pub async fn small_window_channel(address: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .initial_stream_window_size(16 << 10)
        .initial_connection_window_size(16 << 10)
        .connect()
        .await
        .expect("the client connects")
}

/// A free port on loopback, for a child process to bind right after.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `lodestone` binary serving `args` on `port`, stopped on drop.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub port: u16,
}

impl ServerProcess {
    pub fn start(dir: &Path, port: u16, extra: &[&str]) -> ServerProcess {
        Self::start_logging_to(dir, port, extra, std::process::Stdio::inherit())
    }

    /// `start`, with the server's log (standard error) sent to `log`.
    pub fn start_logging_to(
        dir: &Path,
        port: u16,
        extra: &[&str],
        log: std::process::Stdio,
    ) -> ServerProcess {
        Self::spawn(dir, port, extra, log, &[])
    }

    /// `start`, with these variables in the server's environment.
    pub fn start_with_env(
        dir: &Path,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        Self::spawn(dir, port, extra, std::process::Stdio::inherit(), env)
    }

    fn spawn(
        dir: &Path,
        port: u16,
        extra: &[&str],
        log: std::process::Stdio,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lodestone"));
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir);
        if store_kind() == StoreKind::Postgres {
            let cluster = postgres::cluster().expect("on_store checked for PostgreSQL");
            command.arg("--store").arg(postgres::database_blocking(
                cluster,
                &postgres::database_name(dir),
            ));
        }
        let child = command
            .args(extra)
            .env("LODESTONE_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        ServerProcess { child, port }
    }

    /// Waits (up to a minute) until the server accepts connections.
    pub async fn connect(&self) -> Channel {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let endpoint =
                Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port)).unwrap();
            match endpoint.connect().await {
                Ok(channel) => return channel,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("the server did not come up: {e}"),
            }
        }
    }

    /// `connect`, with a deadline on every call made through the channel:
    /// for tests where a hung call must fail the test, not stall it.
    pub async fn connect_with_deadline(&self, deadline: Duration) -> Channel {
        self.connect().await;
        Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .timeout(deadline)
            .connect()
            .await
            .expect("the server accepts connections")
    }

    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// Polls `probe` until it answers `Some`, every 100 ms, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the condition did not come true within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next stream event, or `None` when the stream ended; panics after a
/// minute of silence.
pub async fn next_event_opt(
    stream: &mut tonic::Streaming<pb::StreamLicenseUpdatesResponse>,
) -> Option<pb::stream_license_updates_response::Event> {
    match tokio::time::timeout(Duration::from_secs(60), stream.message()).await {
        Ok(Ok(Some(message))) => message.event,
        Ok(_) => None,
        Err(_) => panic!("no stream message within a minute"),
    }
}

/// The `ErrorInfo` reason of a status (empty without one).
pub fn error_reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// Imports a generated network of a few thousand records (300 suppliers,
/// 1,500 components, 30 lines, 600 licences) through `channel`; returns it.
pub async fn import_generated(
    channel: &Channel,
    seed: u64,
) -> Vec<lodestone::domain::record::Record> {
    let network = lodestone::tools::generate::network(
        lodestone::tools::generate::Size {
            suppliers: 300,
            components: 1_500,
            lines: 30,
            licenses: 600,
        },
        seed,
    );
    RecordServiceClient::new(channel.clone())
        .import_records(tokio_stream::iter([pb::ImportRecordsRequest {
            records: network.iter().map(pb::record_to_pb).collect(),
        }]))
        .await
        .expect("the generated network imports");
    network
}

/// Runs `python3 <args>` on a blocking thread and requires it to succeed
/// and to print `passed`, showing everything it printed when it does not.
pub async fn python_passes(args: Vec<String>, passed: &str) {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(args)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "stdout: {out}\nstderr: {err}");
    assert!(out.contains(passed), "{out}");
}

/// A write of the network's API nobody authenticated (the audit trail's
/// author is empty).
pub fn anonymous() -> lodestone::domain::audit::Attribution {
    lodestone::domain::audit::Attribution::anonymous(
        lodestone::domain::audit::Request::UpsertRecords,
    )
}
