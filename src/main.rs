use std::io::Write;

use clap::{Parser, Subcommand};

// sled allocates on every write; glibc malloc serialises its threads on arena
// locks under that load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use lodestone::startup::{shutdown_signal, Application, ServeConfig};
use lodestone::telemetry::{self, LogFormat};
use lodestone::tools::cli;

/// Which production lines stop, when and why, as rare-earth export licences
/// are granted, delayed or refused.
#[derive(Parser)]
#[command(name = "lodestone", version)]
struct Cli {
    /// Log format: human-readable lines or JSON lines. The level comes from
    /// LODESTONE_LOG (e.g. "info", "lodestone=debug").
    #[arg(
        long,
        env = "LODESTONE_LOG_FORMAT",
        value_enum,
        default_value = "human",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (RecordService, RiskService, health, reflection) as
    /// gRPC, gRPC-Web and JSON over HTTP, on one port.
    Serve(Box<ServeConfig>),
    /// Write a synthetic network as JSON Lines of records.
    Generate(cli::GenerateArgs),
    /// Load JSON Lines or CSV files of records into a running server, all or nothing.
    Import(cli::ImportArgs),
    /// Write every record of a running server as JSON Lines.
    Export(cli::ExportArgs),
    /// Make a bearer token for a client: prints the token, and the line to
    /// add to the server's --auth-tokens file (which holds only its hash).
    Token(cli::TokenArgs),
    /// Write a running server's audit trail (who wrote what, when) as JSON
    /// Lines; for admins.
    Audit(cli::AuditArgs),
    /// Ask a server whether it is serving (exit status 0 when it is).
    Health(cli::HealthArgs),
    /// Print the OpenAPI description of the JSON API (also served at
    /// /openapi.json).
    Openapi,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let otlp = match &cli.command {
        Command::Serve(config) => config.otlp(),
        _ => None,
    };
    let telemetry = match telemetry::init(cli.log_format, otlp.as_ref()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "lodestone: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let log_format = cli.log_format;
    let serving = matches!(cli.command, Command::Serve(_));
    let result = match cli.command {
        Command::Serve(config) => serve(*config).await,
        Command::Generate(args) => cli::generate(&args),
        Command::Import(args) => cli::import(&args).await,
        Command::Export(args) => cli::export(&args).await,
        Command::Token(args) => cli::token(&args),
        Command::Health(args) => cli::health(&args).await,
        Command::Audit(args) => cli::audit(&args).await,
        Command::Openapi => print(&lodestone::transport::web::openapi_text()),
    };
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Once: a server logging JSON reports its failure to its log
            // collector as a log line; everything else prints it for a
            // person. `{:#}` prints the whole chain of causes.
            if serving && log_format == LogFormat::Json {
                tracing::error!("{error:#}");
            } else {
                // Not eprintln!, which panics if standard error fails.
                let _ = writeln!(std::io::stderr(), "lodestone: {error:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes `text` to standard output. A reader that stops reading early
/// (`lodestone openapi | head`) is no failure.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.map_err(Into::into),
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    // A file that reaches the process's size limit (RLIMIT_FSIZE) must fail
    // its write with EFBIG, which the store reports, rather than kill the
    // process with SIGXFSZ and every in-flight call with it.
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread
    // relies on it has no memory-safety preconditions.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    lodestone::startup::without_transparent_huge_pages();
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await
}
