//! Structured logs through `tracing`: human-readable by default, JSON lines
//! for log collectors. The filter comes from `LODESTONE_LOG` (same syntax as
//! `RUST_LOG`), `info` when unset.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. Call once, at start-up.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("LODESTONE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never in a file or pipe.
    // A log line that cannot be written is dropped: by default the
    // subscriber reports the failure with `eprintln!`, which panics when
    // standard error fails too (a full disk under a log file), and a panic
    // in a storage thread would strand the writes waiting for it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Prometheus metrics. Request counts and latencies are recorded by the
/// gate as requests pass; the gauges of the store and the streams are read
/// when Prometheus scrapes, so they are never stale.
pub mod prometheus {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, OnceLock};

    use anyhow::Context;
    use bytes::Bytes;
    use http::{header, Method, Request, Response, StatusCode};
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use crate::api::StreamGauges;
    use crate::network::Network;

    /// Seconds of the latency histogram's buckets.
    const BUCKETS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    /// The process-wide recorder, installed on first use.
    fn handle() -> anyhow::Result<PrometheusHandle> {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        if let Some(handle) = HANDLE.get() {
            return Ok(handle.clone());
        }
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("lodestone_request_duration_seconds".into()),
                BUCKETS,
            )
            .context("invalid histogram buckets")?
            .install_recorder()
            .context("cannot install the metrics recorder")?;
        Ok(HANDLE.get_or_init(|| handle).clone())
    }

    /// What the gauges are read from.
    pub struct Sources {
        pub network: Arc<Network>,
        pub streams: Arc<StreamGauges>,
        pub data_dir: PathBuf,
    }

    fn sample(sources: &Sources) {
        let view = sources.network.view();
        let bounds = sources.network.store().log_bounds();
        metrics::gauge!("lodestone_store_revision").set(view.revision as f64);
        for (kind, count) in [
            ("material", view.materials.len()),
            ("supplier", view.suppliers.len()),
            ("component", view.components.len()),
            ("line", view.lines.len()),
            ("license", view.licenses.len()),
        ] {
            metrics::gauge!("lodestone_records", "kind" => kind).set(count as f64);
        }
        metrics::gauge!("lodestone_license_log_head_sequence").set(bounds.head as f64);
        metrics::gauge!("lodestone_license_log_oldest_sequence").set(bounds.oldest as f64);
        metrics::gauge!("lodestone_streams_open")
            .set(sources.streams.open.load(Ordering::Relaxed) as f64);
        metrics::gauge!("lodestone_stream_messages_queued")
            .set(sources.streams.queued.load(Ordering::Relaxed) as f64);
        metrics::gauge!("lodestone_store_size_bytes")
            .set(crate::store::size_on_disk(&sources.data_dir) as f64);
    }

    /// What Prometheus scrapes: the recorded counters and histograms, and
    /// the gauges read at the moment of the scrape.
    #[derive(Clone)]
    pub struct Metrics {
        handle: PrometheusHandle,
        sources: Arc<Sources>,
    }

    impl Metrics {
        pub fn new(sources: Sources) -> anyhow::Result<Metrics> {
            Ok(Metrics {
                handle: handle()?,
                sources: Arc::new(sources),
            })
        }

        /// The metrics in Prometheus' text format.
        pub fn render(&self) -> String {
            sample(&self.sources);
            self.handle.render()
        }
    }

    /// Binds `address` and serves `GET /metrics` there over HTTP/1.1 until
    /// shutdown, for scrapers kept off the serving port.
    pub async fn serve(
        address: SocketAddr,
        metrics: Metrics,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot serve metrics on {address}"))?;
        let bound = listener.local_addr()?;
        let connections = tasks.clone();
        tasks.spawn(async move {
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(error) => {
                            tracing::warn!(%error, "metrics listener");
                            continue;
                        }
                    },
                    () = shutdown.cancelled() => return,
                };
                let metrics = metrics.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    let answer = service_fn(move |request: Request<Incoming>| {
                        let metrics = metrics.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&request, &metrics)) }
                    });
                    let connection =
                        http1::Builder::new().serve_connection(TokioIo::new(socket), answer);
                    tokio::pin!(connection);
                    tokio::select! {
                        result = connection.as_mut() => if let Err(error) = result {
                            tracing::debug!(%error, "metrics request");
                        },
                        () = shutdown.cancelled() => {}
                    }
                });
            }
        });
        tracing::info!(address = %bound, "serving Prometheus metrics at /metrics");
        Ok(bound)
    }

    fn answer(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
        let (status, body) = match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => (StatusCode::OK, metrics.render()),
            (&Method::GET, _) => (StatusCode::NOT_FOUND, "try /metrics\n".to_string()),
            _ => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }
}
