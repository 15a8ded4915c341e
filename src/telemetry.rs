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
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

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

    /// Binds `address` and serves `GET /metrics` there until shutdown.
    pub async fn serve(
        address: SocketAddr,
        sources: Sources,
        shutdown: CancellationToken,
    ) -> anyhow::Result<SocketAddr> {
        let handle = handle()?;
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot serve metrics on {address}"))?;
        let bound = listener.local_addr()?;
        let sources = Arc::new(sources);
        tokio::spawn(async move {
            loop {
                let (socket, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "metrics listener");
                            continue;
                        }
                    },
                    () = shutdown.cancelled() => return,
                };
                let (handle, sources) = (handle.clone(), sources.clone());
                tokio::spawn(async move {
                    if let Err(error) = answer(socket, &handle, &sources).await {
                        tracing::debug!(%error, "metrics request");
                    }
                });
            }
        });
        tracing::info!(address = %bound, "serving Prometheus metrics at /metrics");
        Ok(bound)
    }

    /// One HTTP/1.1 exchange: the request head, then the answer, then close.
    async fn answer(
        mut socket: TcpStream,
        handle: &PrometheusHandle,
        sources: &Sources,
    ) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(1024);
        let mut buffer = [0u8; 1024];
        let read = async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                let n = socket.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buffer[..n]);
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .map_err(|_| std::io::Error::other("the request head took too long"))??;
        let request_line = String::from_utf8_lossy(&head);
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next(), parts.next());
        let (status, body) = match (method, path) {
            (Some("GET"), Some("/metrics")) => {
                sample(sources);
                ("200 OK", handle.render())
            }
            (Some("GET"), _) => ("404 Not Found", "try /metrics\n".to_string()),
            _ => ("405 Method Not Allowed", String::new()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await?;
        socket.shutdown().await
    }
}
