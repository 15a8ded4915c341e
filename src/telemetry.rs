//! Structured logs through `tracing`: human-readable by default, JSON lines
//! for log collectors. The filter comes from `LODESTONE_LOG` (same syntax as
//! `RUST_LOG`), `info` when unset. With an OTLP endpoint, the server's spans
//! (every call, and inside it validation, the store's commit and sync, and
//! risk evaluations) are exported as OpenTelemetry traces, continuing the
//! caller's trace from its W3C `traceparent`.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Where to send traces.
#[derive(Clone, Debug)]
pub struct Otlp {
    /// An OTLP/gRPC receiver, `http://collector:4317`.
    pub endpoint: String,
    /// The `service.name` of the spans.
    pub service_name: String,
}

/// How long an export may take before it is given up: spans wait in a
/// bounded queue meanwhile (dropped when it is full), never a request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps the trace exporter until shutdown, which sends what it holds.
#[must_use = "traces are sent until this is shut down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued (for at most a few seconds).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushing = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(EXPORT_TIMEOUT * 2, flushing).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "the last spans were not sent"),
            _ => tracing::warn!("the last spans were not sent in time"),
        }
    }
}

/// Installs the global subscriber, and the trace exporter when `otlp`
/// names a receiver. Call once, at start-up, on the runtime.
pub fn init(format: LogFormat, otlp: Option<&Otlp>) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_env("LODESTONE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never in a file or pipe.
    // A log line that cannot be written is dropped: by default the
    // subscriber reports the failure with `eprintln!`, which panics when
    // standard error fails too (a full disk under a log file), and a panic
    // in a storage thread would strand the writes waiting for it.
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Human => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let provider = otlp.map(tracer_provider).transpose()?;
    // The server's own spans only, whatever the log filter: not those of
    // the HTTP/2 stack, which would trace the exporter's own calls.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("lodestone"))
            .with_filter(Targets::new().with_target("lodestone", tracing::Level::INFO))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .context("cannot install the log subscriber")?;
    if let Some(otlp) = otlp {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing::info!(endpoint = %otlp.endpoint, service = %otlp.service_name, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

fn tracer_provider(otlp: &Otlp) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(otlp.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("cannot export traces to {}", otlp.endpoint))?;
    // Exports run as a task of the server's runtime (the tonic client
    // needs one), in batches, off every request's path.
    let batches =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_resource(
            Resource::builder()
                .with_service_name(otlp.service_name.clone())
                .build(),
        )
        .build())
}

/// The caller's trace context from a request's W3C `traceparent` and
/// `tracestate` headers (empty when it sent none, or traces are off).
pub fn remote_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    struct Headers<'a>(&'a http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)))
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
    use crate::engine::RiskEngine;
    use crate::network::Network;

    /// Seconds of the latency histogram's buckets.
    const BUCKETS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    /// The process-wide recorder, installed on first use (once, however
    /// many servers of one process start together).
    fn handle() -> anyhow::Result<PrometheusHandle> {
        static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
        HANDLE
            .get_or_init(|| {
                PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Full("lodestone_request_duration_seconds".into()),
                        BUCKETS,
                    )
                    .map_err(|e| format!("invalid histogram buckets: {e}"))?
                    .install_recorder()
                    .map_err(|e| format!("cannot install the metrics recorder: {e}"))
            })
            .clone()
            .map_err(anyhow::Error::msg)
    }

    /// What the gauges are read from.
    pub struct Sources {
        pub network: Arc<Network>,
        pub engine: Arc<RiskEngine>,
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
        let (answers, bytes) = sources.engine.kept_answers();
        metrics::gauge!("lodestone_risk_answers_kept").set(answers as f64);
        metrics::gauge!("lodestone_risk_cache_bytes").set(bytes as f64);
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
