//! The data tools of the `lodestone` command: `generate` writes a synthetic
//! network, `import` and `export` move records between JSON Lines files and a
//! running server. One record per line, in protobuf's canonical JSON
//! (`{"supplier": {"id": "S1", ...}}`), the same format both ways. `import`
//! also reads the CSV files ERP systems export (see `csv_import`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tokio_stream::StreamExt;

use crate::tools::credentials::{ClientCredentials, SharedHeader};
use anyhow::{bail, Context};
use tonic::service::interceptor::{InterceptedService, Interceptor};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Status;
use tonic_types::StatusExt;

use crate::pb::{self, json, record_service_client::RecordServiceClient};
use crate::tools::csv_import::{self, Located};
use crate::tools::generate::{network, Size};
use crate::transport::auth::{new_token, Role};

/// Records per ImportRecords message.
const IMPORT_CHUNK: usize = 1000;

#[derive(Clone, Debug, clap::Args)]
pub struct GenerateArgs {
    #[arg(long, default_value_t = 200)]
    pub suppliers: usize,
    #[arg(long, default_value_t = 1000)]
    pub components: usize,
    #[arg(long, default_value_t = 20)]
    pub lines: usize,
    #[arg(long, default_value_t = 400)]
    pub licenses: usize,
    /// The same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the JSON Lines (standard output when not given).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ServerArgs {
    /// The server's address: `host:port` or `http://host:port`, and
    /// `https://host:port` for TLS.
    #[arg(
        long,
        env = "LODESTONE_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,

    /// Bearer token, for a server with authentication.
    #[arg(
        long,
        env = "LODESTONE_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        conflicts_with = "client_id"
    )]
    pub token: Option<String>,

    /// Sign in at --oidc-issuer as this client (the client-credentials
    /// grant) and send its access tokens, renewed before they expire.
    #[arg(long, env = "LODESTONE_CLIENT_ID", requires_all = ["client_secret", "oidc_issuer"])]
    pub client_id: Option<String>,

    /// The secret of --client-id.
    #[arg(
        long,
        env = "LODESTONE_CLIENT_SECRET",
        hide_env_values = true,
        requires = "client_id"
    )]
    pub client_secret: Option<String>,

    /// The identity provider's issuer URL, for --client-id.
    #[arg(long, env = "LODESTONE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// The scope to ask the provider for (Entra ID: `api://<app>/.default`).
    #[arg(long, env = "LODESTONE_OIDC_SCOPE")]
    pub oidc_scope: Option<String>,

    /// The resource indicator (RFC 8707) to ask the provider for.
    #[arg(long, env = "LODESTONE_OIDC_RESOURCE")]
    pub oidc_resource: Option<String>,

    /// CA certificate (PEM) that signed an https server's certificate, when
    /// not one the system trusts.
    #[arg(long, env = "LODESTONE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for a server that requires mutual TLS.
    #[arg(long, env = "LODESTONE_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// Private key (PEM) of --client-cert.
    #[arg(long, env = "LODESTONE_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct TokenArgs {
    /// The client's name, as logs and licence updates will show it.
    pub name: String,
    /// What the client may do.
    #[arg(long, value_enum, default_value = "reader")]
    pub role: Role,
}

#[derive(Clone, Debug, clap::Args)]
pub struct HealthArgs {
    /// The service to ask about; empty means the server as a whole.
    #[arg(long, default_value = "")]
    pub service: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `lodestone health`: succeeds when the server answers SERVING to
/// `grpc.health.v1.Health/Check` (for container health checks and scripts).
pub async fn health(args: &HealthArgs) -> anyhow::Result<()> {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};
    let channel = channel(&args.server).await?;
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        HealthClient::new(channel).check(tonic_health::pb::HealthCheckRequest {
            service: args.service.clone(),
        }),
    )
    .await
    .context("no answer within 10 s")??
    .into_inner();
    let status = ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown);
    if status != ServingStatus::Serving {
        bail!(
            "{} is {}",
            server_uri(&args.server.server),
            status.as_str_name()
        );
    }
    println!("SERVING");
    Ok(())
}

/// `lodestone token`: a new token on standard output, its line for the
/// token file on standard error.
pub fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let (token, line) = new_token(&args.name, args.role)?;
    println!("{token}");
    eprintln!("add this line to the server's --auth-tokens file:\n{line}");
    Ok(())
}

/// Sends the bearer token, if any, with every call: the current one, for
/// a token the provider renews.
#[derive(Clone)]
pub struct Bearer(SharedHeader);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = self.0.read().clone() {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// The `authorization` header `server` asks for: its token, or one from
/// its identity provider, kept fresh.
async fn authorization(server: &ServerArgs) -> anyhow::Result<SharedHeader> {
    if let (Some(client_id), Some(client_secret), Some(issuer)) = (
        &server.client_id,
        &server.client_secret,
        &server.oidc_issuer,
    ) {
        return ClientCredentials {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            scope: server.oidc_scope.clone(),
            resource: server.oidc_resource.clone(),
        }
        .sign_in()
        .await
        .context("cannot sign in at the identity provider");
    }
    let header = match &server.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .context("the token is not valid header text")?,
        ),
        None => None,
    };
    Ok(Arc::new(parking_lot::RwLock::new(header)))
}

#[derive(Clone, Debug, clap::Args)]
pub struct ImportArgs {
    /// JSON Lines files of records (`.jsonl`), and CSV files (`.csv`) named
    /// after the kind of their rows: materials, suppliers, components,
    /// sources, contents, lines, bom, licences. All go in one import.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ExportArgs {
    /// Where to write the JSON Lines (standard output when not given).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Clone, Debug, clap::Args)]
pub struct AuditArgs {
    /// Only writes of a greater revision.
    #[arg(long, default_value_t = 0)]
    pub after_revision: u64,
    /// Only writes recorded at or after this time (RFC 3339, e.g.
    /// 2026-01-31T00:00:00Z).
    #[arg(long, value_parser = rfc3339)]
    pub from: Option<prost_types::Timestamp>,
    /// Only writes recorded before this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub before: Option<prost_types::Timestamp>,
    /// Where to write the JSON Lines (standard output when not given).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn rfc3339(text: &str) -> Result<prost_types::Timestamp, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an RFC 3339 time such as 2026-01-31T00:00:00Z"))
}

/// `lodestone audit`: the audit trail's entries, oldest first, as JSON
/// Lines (an admin's token or client).
pub async fn audit(args: &AuditArgs) -> anyhow::Result<()> {
    let mut client = client(&args.server).await?;
    let mut out = output(&args.output)?;
    let mut request = pb::ListAuditEntriesRequest {
        page_size: 1000,
        page_token: String::new(),
        after_revision: args.after_revision,
        recorded_from: args.from,
        recorded_before: args.before,
    };
    let mut count = 0u64;
    loop {
        let page = client
            .list_audit_entries(request.clone())
            .await?
            .into_inner();
        for entry in &page.entries {
            let line =
                json::to_json("lodestone.v1.AuditEntry", entry).map_err(anyhow::Error::msg)?;
            writeln!(out, "{line}")?;
            count += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    out.flush()?;
    eprintln!("{count} audit entries");
    Ok(())
}

fn output(path: &Option<PathBuf>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

fn write_record(out: &mut dyn Write, record: &pb::Record) -> anyhow::Result<()> {
    let line = json::to_json("lodestone.v1.Record", record).map_err(anyhow::Error::msg)?;
    writeln!(out, "{line}")?;
    Ok(())
}

/// `lodestone generate`: a synthetic network as JSON Lines.
pub fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let size = Size {
        suppliers: args.suppliers,
        components: args.components,
        lines: args.lines,
        licenses: args.licenses,
    };
    let records = network(size, args.seed);
    let mut out = output(&args.output)?;
    for record in &records {
        write_record(&mut out, &pb::record_to_pb(record))?;
    }
    out.flush()?;
    eprintln!("wrote {} records (seed {})", records.len(), args.seed);
    Ok(())
}

/// The server's address as a URI: `host:port`, as grpcurl takes it, means
/// plain `http://host:port`.
pub fn server_uri(server: &str) -> String {
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

/// A connection to the server the flags name, over TLS for https://.
async fn channel(server: &ServerArgs) -> anyhow::Result<Channel> {
    let uri = server_uri(&server.server);
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("{:?} is not a server address", server.server))?;
    if uri.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &server.tls_ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&server.client_cert, &server.client_key) {
            let read = |p: &PathBuf| {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
            };
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(tls).context("unusable TLS settings")?;
    }
    endpoint
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .map_err(|error| {
            // The transport's chain repeats itself ("transport error: tcp
            // connect error: tcp connect error: ..."): say it once, with the
            // innermost cause.
            let mut cause: &dyn std::error::Error = &error;
            let mut plaintext = false;
            loop {
                // A TLS hello answered in plain HTTP/2 (rustls's error, as
                // itself or inside an io::Error, whose source skips it).
                let tls = cause.downcast_ref::<rustls::Error>().or_else(|| {
                    cause
                        .downcast_ref::<std::io::Error>()
                        .and_then(|e| e.get_ref())
                        .and_then(|e| e.downcast_ref::<rustls::Error>())
                });
                plaintext |= matches!(
                    tls,
                    Some(rustls::Error::InvalidMessage(
                        rustls::InvalidMessage::InvalidContentType
                    ))
                );
                match cause.source() {
                    Some(source) => cause = source,
                    None => break,
                }
            }
            if plaintext {
                let plain = uri.replacen("https://", "http://", 1);
                return anyhow::anyhow!(
                    "the server at {uri} does not speak TLS (it serves plaintext): use {plain}"
                );
            }
            anyhow::anyhow!(
                "no server answers at {uri} ({cause}); is `lodestone serve` running there?"
            )
        })
}

async fn client(
    server: &ServerArgs,
) -> anyhow::Result<RecordServiceClient<InterceptedService<Channel, Bearer>>> {
    let channel = channel(server).await?;
    let header = authorization(server).await?;
    Ok(
        RecordServiceClient::with_interceptor(channel, Bearer(header))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20),
    )
}

/// Reads a JSON Lines file of records, one record per non-empty line.
fn read_json_lines(path: &Path, problems: &mut Vec<String>) -> anyhow::Result<Vec<Located>> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
    let mut located = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {name}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let place = format!("{name}:{}", i + 1);
        match json::from_json::<pb::Record>("lodestone.v1.Record", &line) {
            Ok(record) => located.push(Located {
                record,
                place,
                parts: HashMap::new(),
            }),
            Err(e) => problems.push(format!("{place}: {e}")),
        }
    }
    Ok(located)
}

/// A progress bar on a terminal; nothing when standard error is not one.
fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {human_pos}/{human_len} records, {rate}, {eta} left",
            )
            .expect("a valid template")
            .with_key("rate", rate)
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {human_pos} records, {rate}")
                .expect("a valid template")
                .with_key("rate", rate),
        ),
    };
    bar.set_message(what.to_string());
    bar
}

/// Whole records per second, with thousands separated (`45,806/s`), where
/// indicatif's own `{per_sec}` prints `45,806.2314/s`.
fn rate(state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = std::fmt::Write::write_str(out, &records_per_second(state.per_sec()));
}

fn records_per_second(per_sec: f64) -> String {
    let whole = if per_sec.is_finite() && per_sec > 0.0 {
        per_sec.round() as u64
    } else {
        0
    };
    format!("{}/s", indicatif::HumanCount(whole))
}

/// `lodestone import FILE...`: every record of every file in one
/// ImportRecords stream, applied all or nothing.
pub async fn import(args: &ImportArgs) -> anyhow::Result<()> {
    // Read and check every file first: nothing is sent unless all of it parses.
    let mut located = Vec::new();
    let mut problems = Vec::new();
    let (csv, json_lines): (Vec<&Path>, Vec<&Path>) = args
        .files
        .iter()
        .map(PathBuf::as_path)
        .partition(|p| csv_import::is_csv(p));
    for path in json_lines {
        located.extend(read_json_lines(path, &mut problems)?);
    }
    if !csv.is_empty() {
        located.extend(csv_import::read(&csv, &mut problems)?);
    }
    let files = match args.files.as_slice() {
        [one] => one.display().to_string(),
        many => format!("{} files", many.len()),
    };
    if !problems.is_empty() {
        for problem in problems.iter().take(50) {
            eprintln!("{problem}");
        }
        bail!(
            "{} problem(s) in {files}; nothing was imported",
            problems.len()
        );
    }
    let count = located.len();
    let started = Instant::now();
    let messages: Vec<pb::ImportRecordsRequest> = located
        .chunks(IMPORT_CHUNK)
        .map(|chunk| pb::ImportRecordsRequest {
            records: chunk.iter().map(|l| l.record.clone()).collect(),
        })
        .collect();
    let mut client = client(&args.server).await?;
    let bar = progress(Some(count as u64), "importing");
    let sent = bar.clone();
    let stream = tokio_stream::iter(messages).map(move |message| {
        sent.inc(message.records.len() as u64);
        message
    });
    let result = client.import_records(stream).await;
    bar.finish_and_clear();
    match result {
        Ok(response) => {
            let response = response.into_inner();
            eprintln!(
                "imported {} records from {files} in {:.1} s; the store is at revision {}",
                response.upserted_count,
                started.elapsed().as_secs_f64(),
                response.revision
            );
            Ok(())
        }
        Err(status) => {
            // Field paths count records across the stream: records[i] is the
            // i-th record read, and the rest of the path says which part.
            let details = status.get_error_details();
            let violations = details
                .bad_request()
                .map(|b| b.field_violations.as_slice())
                .unwrap_or_default();
            for violation in violations.iter().take(50) {
                let place = violation
                    .field
                    .strip_prefix("records[")
                    .and_then(|rest| rest.split_once(']'))
                    .and_then(|(i, rest)| {
                        let l = located.get(i.parse::<usize>().ok()?)?;
                        Some(l.place_of(rest.trim_start_matches('.')))
                    });
                match place {
                    Some(place) => {
                        eprintln!("{place}: {}: {}", violation.field, violation.description)
                    }
                    None => eprintln!("{}: {}", violation.field, violation.description),
                }
            }
            if violations.len() > 50 {
                eprintln!("... and {} more", violations.len() - 50);
            }
            if violations.is_empty() {
                bail!(
                    "the server refused the import ({count} records), nothing was imported: {}",
                    status.message()
                )
            }
            // Each problem is on its line above; the verdict counts them.
            bail!(
                "{} problem(s) in {files}; the server refused the import ({count} records) \
                 and nothing was imported",
                violations.len()
            )
        }
    }
}

/// `lodestone export`: every record of one consistent snapshot as JSON Lines.
pub async fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let mut client = client(&args.server).await?;
    let mut stream = client
        .export_records(pb::ExportRecordsRequest {})
        .await?
        .into_inner();
    let mut out = output(&args.output)?;
    let mut count = 0;
    let mut revision = 0;
    let bar = progress(None, "exporting");
    while let Some(message) = stream.message().await? {
        revision = message.revision;
        for record in &message.records {
            write_record(&mut out, record)?;
            count += 1;
        }
        bar.set_position(count);
    }
    bar.finish_and_clear();
    out.flush()?;
    eprintln!("exported {count} records at revision {revision}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_whole_records_per_second() {
        assert_eq!(records_per_second(45_806.231_4), "45,806/s");
        assert_eq!(records_per_second(0.4), "0/s");
        assert_eq!(records_per_second(f64::NAN), "0/s");
        assert_eq!(records_per_second(f64::INFINITY), "0/s");
    }

    #[test]
    fn a_server_given_as_host_and_port_is_plain_http() {
        assert_eq!(server_uri("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(server_uri("http://h:1"), "http://h:1");
        assert_eq!(server_uri("https://h:443"), "https://h:443");
    }
}
