//! Structured logs through `tracing`: human-readable by default, JSON lines
//! for log collectors. The filter comes from `LODESTONE_LOG` (same syntax as
//! `RUST_LOG`), `info` when unset.

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
