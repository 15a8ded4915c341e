//! Wiring: configuration, the listener, the store, and serving in named
//! parts: the services (health, reflection, the contract), the server and
//! its layers (CORS, JSON and metrics, gRPC-Web, tracing, the gate,
//! read-your-writes), the background tasks, and draining at shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tonic_web::GrpcWebLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::api::{RecordApi, RiskApi, StreamGauges};
use crate::engine::{RiskEngine, DEFAULT_CACHED_ANSWERS};
use crate::network::{Network, Reopen, Retention};
use crate::pb::record_service_server::RecordServiceServer;
use crate::pb::risk_service_server::RiskServiceServer;
use crate::pb::FILE_DESCRIPTOR_SET;
use crate::store::{
    is_postgres_url, DataDirLock, PostgresConfig, PostgresStore, SledConfig, SledStore, Store,
};
use crate::telemetry::prometheus::{self, Metrics};
use crate::transport::auth::Tokens;
use crate::transport::consistency::Consistency;
use crate::transport::gate::Gate;
use crate::transport::oidc::Verifier;
use crate::transport::web::{Front, WebView};
use crate::watch::SystemClock;

/// The serving defaults, each written once: for the flags and for
/// [`ServeConfig::new`].
pub mod defaults {
    /// Where gRPC is served.
    pub const LISTEN: &str = "127.0.0.1:50051";
    /// The database's directory.
    pub const DATA_DIR: &str = "./lodestone-data";
    /// The store's page cache, in MiB.
    pub const CACHE_MB: u64 = 256;
    /// Kept risk answers and exposures, in MiB.
    pub const RISK_CACHE_MB: usize = 256;
    /// Seconds in-flight calls get after SIGTERM or SIGINT.
    pub const SHUTDOWN_GRACE_SECONDS: u64 = 10;
    /// The largest message, in MiB.
    pub const MAX_MESSAGE_MB: usize = 16;
    /// Requests served at once, streams aside.
    pub const MAX_CONCURRENT_REQUESTS: usize = 256;
    /// Licence streams open at once.
    pub const MAX_STREAMS: usize = 4096;
    /// Seconds between keepalive pings.
    pub const KEEPALIVE_SECONDS: u64 = 30;
    /// Seconds a keepalive ping may go unanswered.
    pub const KEEPALIVE_TIMEOUT_SECONDS: u64 = 10;
    /// The service name traces carry.
    pub const OTLP_SERVICE_NAME: &str = "lodestone";
}

/// Everything `lodestone serve` needs to know.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeConfig {
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, env = "LODESTONE_LISTEN", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,

    /// Directory of the database; created when missing.
    #[arg(long, env = "LODESTONE_DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,

    /// A PostgreSQL database to keep the records in instead of the data
    /// directory (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, or
    /// `postgresql://`; `?sslmode=require` or `verify-full` for TLS,
    /// `&sslrootcert=FILE` for a private CA). Any number of servers may
    /// share one database: each serves every call.
    #[arg(long, env = "LODESTONE_STORE")]
    pub store: Option<String>,

    /// Memory for the store's page cache, in MiB.
    #[arg(long, env = "LODESTONE_CACHE_MB", default_value_t = defaults::CACHE_MB)]
    pub cache_mb: u64,

    /// No longer used: every write is synced to disk (fsync) before it is
    /// acknowledged, so there is no background sync to time. Accepted so
    /// that existing deployments start; a warning says it is ignored.
    #[arg(long, env = "LODESTONE_SYNC_EVERY_MS", hide = true)]
    pub sync_every_ms: Option<u64>,

    /// Memory for kept risk answers and the exposures built from them, in
    /// MiB; the least recently used go first.
    #[arg(long, env = "LODESTONE_RISK_CACHE_MB", default_value_t = defaults::RISK_CACHE_MB)]
    pub risk_cache_mb: usize,

    /// Keep only the newest N licence log events (0 keeps them all).
    #[arg(long, env = "LODESTONE_LOG_RETAIN_EVENTS", default_value_t = 0)]
    pub log_retain_events: u64,

    /// Keep only licence log events younger than D days (0 keeps them all).
    #[arg(long, env = "LODESTONE_LOG_RETAIN_DAYS", default_value_t = 0)]
    pub log_retain_days: u64,

    /// Load the built-in demonstration network when the store is empty.
    #[arg(long, env = "LODESTONE_DEMO")]
    pub demo: bool,

    /// Seconds that in-flight calls get to finish after SIGTERM or SIGINT.
    #[arg(long, env = "LODESTONE_SHUTDOWN_GRACE_SECONDS", default_value_t = defaults::SHUTDOWN_GRACE_SECONDS)]
    pub shutdown_grace_seconds: u64,

    /// File of the clients allowed to call: one `name role sha256-hex` per
    /// line (see `lodestone token`). Without it, the server listens on
    /// loopback only, unless --allow-unauthenticated.
    #[arg(long, env = "LODESTONE_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,

    #[command(flatten)]
    pub oidc: crate::transport::oidc::OidcArgs,

    /// Serve without authentication on an address other than loopback.
    #[arg(long, env = "LODESTONE_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// Certificate chain (PEM) to serve TLS with; needs --tls-key.
    #[arg(long, env = "LODESTONE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "LODESTONE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificate(s) (PEM): when given, every client must present a
    /// certificate signed by one of them (mutual TLS).
    #[arg(long, env = "LODESTONE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Largest request or response message, in MiB.
    #[arg(long, env = "LODESTONE_MAX_MESSAGE_MB", default_value_t = defaults::MAX_MESSAGE_MB)]
    pub max_message_mb: usize,

    /// Requests served at once (streams aside); beyond it, requests are
    /// refused with RESOURCE_EXHAUSTED / OVERLOADED instead of queued.
    #[arg(long, env = "LODESTONE_MAX_CONCURRENT_REQUESTS", default_value_t = defaults::MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,

    /// Licence streams open at once; beyond it, RESOURCE_EXHAUSTED /
    /// TOO_MANY_STREAMS.
    #[arg(long, env = "LODESTONE_MAX_STREAMS", default_value_t = defaults::MAX_STREAMS)]
    pub max_streams: usize,

    /// Seconds between HTTP/2 keepalive pings to each client (0: none).
    #[arg(long, env = "LODESTONE_KEEPALIVE_SECONDS", default_value_t = defaults::KEEPALIVE_SECONDS)]
    pub keepalive_seconds: u64,

    /// Seconds a keepalive ping may go unanswered before the connection is
    /// closed as dead.
    #[arg(
        long,
        env = "LODESTONE_KEEPALIVE_TIMEOUT_SECONDS",
        default_value_t = defaults::KEEPALIVE_TIMEOUT_SECONDS
    )]
    pub keepalive_timeout_seconds: u64,

    /// Another address to serve Prometheus metrics on, over HTTP at
    /// /metrics, for scrapers kept off the serving port (which serves
    /// /metrics too).
    #[arg(long, env = "LODESTONE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// An origin (`https://planning.example.com`) whose web pages may call
    /// the server from a browser (gRPC-Web, JSON); repeat it, or separate
    /// origins with commas; `*` allows any. None by default.
    #[arg(
        long = "cors-origin",
        env = "LODESTONE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Do not serve the web view at `/`.
    #[arg(long, env = "LODESTONE_NO_WEB_VIEW")]
    pub no_web_view: bool,

    /// An OpenTelemetry collector to send traces to over OTLP/gRPC
    /// (`http://collector:4317`): every call a span, continuing the
    /// caller's W3C `traceparent`. Off unless set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// The service name the traces carry.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = defaults::OTLP_SERVICE_NAME)]
    pub otlp_service_name: String,
}

impl ServeConfig {
    /// The configuration with every default, serving `data_dir` on `listen`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServeConfig {
            listen,
            data_dir,
            store: None,
            cache_mb: defaults::CACHE_MB,
            risk_cache_mb: defaults::RISK_CACHE_MB,
            sync_every_ms: None,
            shutdown_grace_seconds: defaults::SHUTDOWN_GRACE_SECONDS,
            log_retain_events: 0,
            log_retain_days: 0,
            demo: false,
            auth_tokens: None,
            oidc: crate::transport::oidc::OidcArgs::default(),
            allow_unauthenticated: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            max_message_mb: defaults::MAX_MESSAGE_MB,
            max_concurrent_requests: defaults::MAX_CONCURRENT_REQUESTS,
            max_streams: defaults::MAX_STREAMS,
            keepalive_seconds: defaults::KEEPALIVE_SECONDS,
            keepalive_timeout_seconds: defaults::KEEPALIVE_TIMEOUT_SECONDS,
            metrics_listen: None,
            cors_origins: Vec::new(),
            no_web_view: false,
            otlp_endpoint: None,
            otlp_service_name: defaults::OTLP_SERVICE_NAME.into(),
        }
    }

    /// Where to send traces, if anywhere.
    pub fn otlp(&self) -> Option<crate::telemetry::Otlp> {
        self.otlp_endpoint
            .as_ref()
            .filter(|e| !e.is_empty())
            .map(|endpoint| crate::telemetry::Otlp {
                endpoint: endpoint.clone(),
                service_name: self.otlp_service_name.clone(),
            })
    }
}

/// The health service name that stays SERVING while the process runs.
pub const LIVENESS: &str = "liveness";

/// How often a replica reads the change feed without being woken: a
/// notification is lost while its connection is down.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// How long shutdown waits for the background tasks, which stop at once
/// when asked.
const TASKS_STOP: Duration = Duration::from_secs(5);

/// HTTP/2 flow-control windows the server offers, per connection and per stream.
const CONNECTION_WINDOW: u32 = 8 << 20;
const STREAM_WINDOW: u32 = 1 << 20;

/// Reads a PEM file named by a flag.
fn pem(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// The TLS configuration the flags ask for, if any.
fn tls(config: &ServeConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        pem(cert, "TLS certificate")?,
        pem(key, "TLS key")?,
    ));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(pem(ca, "client CA")?));
    }
    Ok(Some(tls))
}

/// Opens the sled store in the data directory, which this server then
/// holds, with recovery from a disk that failed to write.
async fn open_sled(config: &ServeConfig) -> anyhow::Result<(Network, DataDirLock)> {
    let store_config = SledConfig {
        path: config.data_dir.clone(),
        cache_capacity_bytes: config.cache_mb * 1024 * 1024,
    };
    let data_lock = DataDirLock::acquire(&config.data_dir).map_err(|e| match e {
        crate::domain::Error::Storage(message) => anyhow::anyhow!(message),
        other => other.into(),
    })?;
    let probe_dir = store_config.path.clone();
    let opening = store_config.clone();
    let network = async {
        let store = tokio::task::spawn_blocking(move || SledStore::open(&opening))
            .await
            .map_err(|e| {
                crate::domain::Error::Internal(format!("opening the store failed: {e}"))
            })??;
        let reopen: Reopen =
            Arc::new(move || Ok(Arc::new(SledStore::open(&store_config)?) as Arc<dyn Store>));
        Ok::<_, crate::domain::Error>(
            Network::open(Arc::new(store))
                .await?
                .with_recovery(reopen, probe_dir),
        )
    }
    .await
    .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    Ok((network, data_lock))
}

/// Connects to the PostgreSQL database `url`, creating or migrating its
/// schema.
async fn open_postgres(url: &str) -> anyhow::Result<Network> {
    anyhow::ensure!(
        is_postgres_url(url),
        "--store takes a postgres:// or postgresql:// URL, not {:?}",
        url.split('@').next_back().unwrap_or_default()
    );
    let store = PostgresStore::connect(&PostgresConfig::new(url))
        .await
        .context("cannot open the store in PostgreSQL")?;
    Network::open(Arc::new(store))
        .await
        .context("cannot read the records from PostgreSQL")
}

/// A built service: bound to its port, store open, not serving yet.
pub struct Application {
    config: ServeConfig,
    gate: Gate,
    tls: Option<ServerTlsConfig>,
    cors: CorsLayer,
    /// Taken when the service starts.
    listener: Option<TcpListener>,
    network: Arc<Network>,
    engine: Arc<RiskEngine>,
    streams: Arc<StreamGauges>,
    retention: Retention,
    shutdown: CancellationToken,
    grace: Duration,
    /// This server's claim on the data directory (sled), held until it
    /// stops.
    _data_lock: Option<DataDirLock>,
}

impl Application {
    /// Opens the store and binds the listener, so that `port()` is known
    /// before the service runs.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Application> {
        // Everything the flags name is checked before the store opens.
        let tokens = match &config.auth_tokens {
            Some(path) => Some(Tokens::load(path)?),
            None => None,
        };
        let oidc = if config.oidc.is_set() {
            let verifier = Verifier::new(&config.oidc)?;
            verifier.prefetch().await;
            Some(verifier)
        } else {
            None
        };
        if tokens.is_none()
            && oidc.is_none()
            && !config.allow_unauthenticated
            && !config.listen.ip().is_loopback()
        {
            anyhow::bail!(
                "refusing to serve {} without authentication: give --auth-tokens \
                 (see `lodestone token`) or --oidc-issuer, listen on loopback, or pass \
                 --allow-unauthenticated",
                config.listen
            );
        }
        if let Some(tokens) = &tokens {
            tracing::info!(clients = tokens.len(), "authentication on");
        }
        let tls = tls(&config)?;
        let cors = cors(&config.cors_origins)?;
        let gate = Gate::new(tokens, oidc, config.max_concurrent_requests);
        if config.sync_every_ms.is_some() {
            tracing::warn!(
                "--sync-every-ms (LODESTONE_SYNC_EVERY_MS) is ignored: every write is synced \
                 to disk before it is acknowledged"
            );
        }
        let (network, data_lock) = match &config.store {
            Some(url) => (open_postgres(url).await?, None),
            None => {
                let (network, lock) = open_sled(&config).await?;
                (network, Some(lock))
            }
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let network = Arc::new(network);
        if config.demo && crate::tools::demo::load_if_empty(&network).await? {
            tracing::info!("loaded the demonstration network");
        }
        Ok(Application {
            gate,
            tls,
            cors,
            listener: Some(listener),
            network,
            engine: Arc::new(RiskEngine::new(
                DEFAULT_CACHED_ANSWERS,
                config.risk_cache_mb.saturating_mul(1 << 20),
            )),
            streams: Arc::new(StreamGauges::new(config.max_streams)),
            retention: Retention {
                max_events: (config.log_retain_events > 0).then_some(config.log_retain_events),
                max_age: (config.log_retain_days > 0)
                    .then(|| Duration::from_secs(config.log_retain_days * 24 * 3600)),
            },
            shutdown: CancellationToken::new(),
            grace: Duration::from_secs(config.shutdown_grace_seconds),
            _data_lock: data_lock,
            config,
        })
    }

    /// The port the service listens on.
    pub fn port(&self) -> u16 {
        self.listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Gauges over the open licence update streams.
    pub fn stream_gauges(&self) -> Arc<StreamGauges> {
        self.streams.clone()
    }

    /// The network the service serves (for in-process tools and tests).
    pub fn network(&self) -> Arc<Network> {
        self.network.clone()
    }

    /// The risk engine the service answers with (for in-process tests).
    pub fn engine(&self) -> Arc<RiskEngine> {
        self.engine.clone()
    }

    /// Cancelling this token shuts the service down, as a signal would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until `stop` completes (or the shutdown token is cancelled),
    /// then shuts down gracefully: health turns NOT_SERVING, streams end with
    /// UNAVAILABLE, in-flight calls finish within the grace period, the
    /// background tasks stop, and the store is flushed.
    pub async fn run_until_stopped(
        mut self,
        stop: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let tasks = TaskTracker::new();
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;
        // SERVING while the process runs, whatever its store does: for a
        // liveness probe, which must not restart replicas that only wait
        // for their database.
        health
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        let metrics = Metrics::new(prometheus::Sources {
            network: self.network.clone(),
            engine: self.engine.clone(),
            streams: self.streams.clone(),
            data_dir: self.config.data_dir.clone(),
        })?;
        if let Some(listen) = self.config.metrics_listen {
            prometheus::serve(listen, metrics.clone(), self.shutdown.clone(), &tasks).await?;
        }
        let routes = self.routes(health_service)?;
        let listener = self.listener.take().expect("the listener is taken once");
        let address = listener.local_addr()?;
        let server = self.server(listener, routes, metrics)?;
        let (web_view, json_api) = self.addresses(address);
        tracing::info!(
            %address,
            tls = self.tls.is_some(),
            web_view = web_view.as_deref().unwrap_or("off"),
            %json_api,
            "serving lodestone.v1"
        );
        self.spawn_background(&tasks, &health);
        let served = self.drain(server, stop, &health).await;
        // Also when the server failed: the background tasks stop on it.
        self.shutdown.cancel();
        tasks.close();
        if tokio::time::timeout(TASKS_STOP, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = tasks.len(),
                "background tasks still running after shutdown"
            );
        }
        served?;
        self.network
            .flush()
            .await
            .context("the final flush failed")?;
        tracing::info!("stopped; the store is flushed");
        Ok(())
    }

    /// Where a person finds the web view (off with `--no-web-view`; on the
    /// demonstration network's date with `--demo`) and the JSON API, on the
    /// serving address (this machine's loopback when it listens on every
    /// interface).
    fn addresses(&self, address: std::net::SocketAddr) -> (Option<String>, String) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut shown = address;
        if shown.ip().is_unspecified() {
            shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let base = format!("{scheme}://{shown}");
        let web_view = (!self.config.no_web_view).then(|| match self.config.demo {
            true => format!("{base}/?as_of={}", crate::tools::demo::AS_OF),
            false => format!("{base}/"),
        });
        (
            web_view,
            format!("{base}/lodestone.v1.RiskService/ListAtRiskLines"),
        )
    }

    /// The services: health, reflection, and the contract's two.
    fn routes(&self, health: HealthServer<impl Health>) -> anyhow::Result<Routes> {
        // Reflection serves the contract, health, and the google.rpc error
        // details, so that grpcurl decodes ErrorInfo and BadRequest; and both
        // reflection services, so that a client listing through either
        // version sees both.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .context("cannot build the reflection service (v1)")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("cannot build the reflection service (v1alpha)")?;
        let max_message = self.max_message();
        let mut routes = Routes::builder();
        routes
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                RecordServiceServer::new(RecordApi::new(
                    self.network.clone(),
                    self.shutdown.clone(),
                ))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            )
            .add_service(
                RiskServiceServer::new(RiskApi::new(
                    self.network.clone(),
                    self.engine.clone(),
                    self.shutdown.clone(),
                    self.streams.clone(),
                    Arc::new(SystemClock),
                ))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            );
        Ok(routes.routes())
    }

    fn max_message(&self) -> usize {
        self.config.max_message_mb.max(1) << 20
    }

    /// The HTTP server on `listener`: gRPC, gRPC-Web and JSON on one port,
    /// every call through the same layers, until shutdown.
    fn server(
        &self,
        listener: TcpListener,
        routes: Routes,
        metrics: Metrics,
    ) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>> + Send> {
        let config = &self.config;
        let keepalive =
            (config.keepalive_seconds > 0).then(|| Duration::from_secs(config.keepalive_seconds));
        let mut builder = Server::builder()
            // HTTP/1.1 beside HTTP/2: JSON and gRPC-Web clients.
            .accept_http1(true)
            // Larger flow-control windows than HTTP/2's 64 KiB: an import
            // streams megabytes, and h2 sizes its budget for small buffered
            // DATA frames from the connection window. With the default, a
            // connection carrying dozens of concurrent small requests to a
            // busy server was closed (GOAWAY too_many_data_frames).
            .initial_connection_window_size(CONNECTION_WINDOW)
            .initial_stream_window_size(STREAM_WINDOW)
            .http2_keepalive_interval(keepalive)
            .http2_keepalive_timeout(Some(Duration::from_secs(
                config.keepalive_timeout_seconds.max(1),
            )))
            .tcp_keepalive(keepalive);
        if let Some(tls) = self.tls.clone() {
            builder = builder
                .tls_config(tls)
                .context("the TLS certificate or key is not usable")?;
        }
        Ok(builder
            // Outermost: browsers' preflight requests and the CORS headers
            // of every answer, for the origins the flags allow.
            .layer(self.cors.clone())
            .layer(Front::new(
                self.max_message(),
                Some(metrics),
                (!config.no_web_view).then(|| WebView {
                    opens_on: config.demo.then(|| crate::tools::demo::AS_OF.to_string()),
                    sign_in: config.oidc.web_sign_in(),
                }),
            ))
            .layer(GrpcWebLayer::new())
            .layer(
                TraceLayer::new_for_grpc()
                    .make_span_with(|request: &tonic::codegen::http::Request<_>| {
                        let path = request.uri().path();
                        let (service, method) = path
                            .trim_start_matches('/')
                            .split_once('/')
                            .unwrap_or((path, ""));
                        // Named and described as OpenTelemetry's RPC
                        // conventions say, under the caller's trace.
                        let span = tracing::info_span!(
                            "rpc",
                            otel.name = %path.trim_start_matches('/'),
                            otel.kind = "server",
                            rpc.system = "grpc",
                            rpc.service = %service,
                            rpc.method = %method,
                            method = %path,
                            client = tracing::field::Empty,
                        );
                        let _ =
                            span.set_parent(crate::telemetry::remote_context(request.headers()));
                        span
                    })
                    .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                    .on_failure(DefaultOnFailure::new().level(Level::INFO)),
            )
            .layer(self.gate.clone())
            .layer(Consistency::new(self.network.applied_revision()))
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                // Small messages (a heartbeat, a licence) must not wait for
                // Nagle's algorithm and the peer's delayed ACK: 40 ms each.
                TcpListenerStream::new(listener).map(|stream| {
                    if let Ok(stream) = &stream {
                        let _ = stream.set_nodelay(true);
                    }
                    stream
                }),
                self.shutdown.clone().cancelled_owned(),
            ))
    }

    /// The tasks beside the server, each until shutdown: following the
    /// database's reachability and the other replicas' commits, and the
    /// licence log's retention.
    fn spawn_background(&self, tasks: &TaskTracker, health: &HealthReporter) {
        let shutdown = &self.shutdown;
        if let Some(reachable) = self.network.store().reachable() {
            // A replica whose database does not answer is not ready: load
            // balancers route around it until it answers again.
            tasks.spawn(follow_reachability(
                reachable,
                health.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(changed) = self.network.store().changed() {
            // Other replicas commit too: follow what they do.
            tasks.spawn(self.network.clone().follow_changes(
                changed,
                FOLLOW_POLL,
                shutdown.clone(),
            ));
        }
        if self.retention.is_set() {
            tasks.spawn(keep_retention(
                self.network.clone(),
                self.retention,
                shutdown.clone(),
            ));
        }
    }

    /// Runs `server` until `stop` or the shutdown token; then health turns
    /// NOT_SERVING and open calls get the grace period to finish.
    async fn drain(
        &self,
        server: impl Future<Output = Result<(), tonic::transport::Error>>,
        stop: impl Future<Output = ()>,
        health: &HealthReporter,
    ) -> anyhow::Result<()> {
        let shutdown = &self.shutdown;
        let watcher = async {
            tokio::select! {
                () = stop => {},
                () = shutdown.cancelled() => {},
            }
            tracing::info!("shutting down");
            set_health(health, ServingStatus::NotServing).await;
            shutdown.cancel();
        };
        let grace = self.grace;
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result.context("the server failed")?,
            ((), ()) = async { tokio::join!(watcher, deadline) } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "calls still open after the grace period were cut off");
            }
        }
        Ok(())
    }
}

/// The CORS policy for `origins` (none: browsers of other origins may not
/// call; `*`: any may).
fn cors(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let mut values = Vec::with_capacity(origins.len());
        for origin in origins {
            let valid = origin.starts_with("http://") || origin.starts_with("https://");
            anyhow::ensure!(
                valid && !origin.ends_with('/'),
                "--cors-origin takes an origin such as https://planning.example.com (scheme and host, no path), not {origin:?}"
            );
            values.push(
                origin
                    .parse::<http::HeaderValue>()
                    .with_context(|| format!("--cors-origin {origin:?} is not a valid origin"))?,
            );
        }
        AllowOrigin::list(values)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([http::Method::GET, http::Method::POST])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            http::HeaderName::from_static("grpc-status"),
            http::HeaderName::from_static("grpc-message"),
            http::HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(24 * 3600)))
}

/// Reports SERVING while the store answers and NOT_SERVING while it does
/// not, until shutdown.
async fn follow_reachability(
    mut reachable: tokio::sync::watch::Receiver<bool>,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = reachable.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
        let up = *reachable.borrow_and_update();
        if shutdown.is_cancelled() {
            return;
        }
        let status = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        set_health(&health, status).await;
    }
}

/// Applies the licence log retention now and every minute until shutdown.
async fn keep_retention(network: Arc<Network>, retention: Retention, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match network.apply_retention(retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "licence log compacted"),
            Err(error) => tracing::warn!(%error, "licence log compaction failed"),
        }
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health
        .set_service_status(
            <RecordServiceServer<RecordApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    health
        .set_service_status(
            <RiskServiceServer<RiskApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Turns transparent huge pages off for this process, unless the operator
/// chose otherwise with the allocator's own `MIMALLOC_ALLOW_THP`.
///
/// The allocator asks for huge pages for its arenas. A huge page is 2 MiB
/// zeroed on its first touch, found by compacting memory when none is free,
/// on the thread that touched it: on the benchmark's 2-core machine those
/// stalls made the import of the large network a third slower, the first
/// evaluation half again as long, and a licence update's cold answer three
/// times slower at p99 (the figures are in the README). PostgreSQL, Redis
/// and MongoDB advise the same for the same reason.
pub fn without_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and
        // changes how the kernel backs this process's future page faults.
        let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if result != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "transparent huge pages stay on for this process"
            );
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
