//! The data tools of the `lodestone` command: `generate` writes a synthetic
//! network, `import` and `export` move records between JSON Lines files and a
//! running server. One record per line, in protobuf's canonical JSON
//! (`{"supplier": {"id": "S1", ...}}`), the same format both ways.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use tonic::transport::Endpoint;
use tonic_types::StatusExt;

use crate::generate::{network, Size};
use crate::pb::{self, json, record_service_client::RecordServiceClient};

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
    /// The server's address.
    #[arg(
        long,
        env = "LODESTONE_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ImportArgs {
    /// A JSON Lines file of records.
    pub file: PathBuf,
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

async fn client(
    server: &ServerArgs,
) -> anyhow::Result<RecordServiceClient<tonic::transport::Channel>> {
    let channel = Endpoint::from_shared(server.server.clone())
        .with_context(|| format!("{:?} is not a server address", server.server))?
        .connect()
        .await
        .with_context(|| format!("cannot reach {}", server.server))?;
    Ok(RecordServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// `lodestone import FILE`: every record of the file in one ImportRecords
/// stream, applied all or nothing.
pub async fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    // Read and check the whole file first: nothing is sent unless every line parses.
    let mut records = Vec::new();
    let mut line_numbers = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", args.file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match json::from_json::<pb::Record>("lodestone.v1.Record", &line) {
            Ok(record) => {
                records.push(record);
                line_numbers.push(i + 1);
            }
            Err(e) => problems.push(format!("line {}: {e}", i + 1)),
        }
    }
    if !problems.is_empty() {
        for problem in problems.iter().take(20) {
            eprintln!("{problem}");
        }
        bail!(
            "{} line(s) of {} are not records; nothing was imported",
            problems.len(),
            args.file.display()
        );
    }
    let count = records.len();
    let started = Instant::now();
    let messages: Vec<pb::ImportRecordsRequest> = records
        .chunks(IMPORT_CHUNK)
        .map(|chunk| pb::ImportRecordsRequest {
            records: chunk.to_vec(),
        })
        .collect();
    drop(records);
    let mut client = client(&args.server).await?;
    match client.import_records(tokio_stream::iter(messages)).await {
        Ok(response) => {
            let response = response.into_inner();
            eprintln!(
                "imported {} records from {} in {:.1} s; the store is at revision {}",
                response.upserted_count,
                args.file.display(),
                started.elapsed().as_secs_f64(),
                response.revision
            );
            Ok(())
        }
        Err(status) => {
            // Field paths count records across the stream: records[i] is the
            // i-th record of the file.
            let details = status.get_error_details();
            for violation in details
                .bad_request()
                .map(|b| b.field_violations.as_slice())
                .unwrap_or_default()
                .iter()
                .take(50)
            {
                let line = violation
                    .field
                    .strip_prefix("records[")
                    .and_then(|rest| rest.split(']').next())
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| line_numbers.get(i));
                match line {
                    Some(line) => eprintln!(
                        "line {line}: {}: {}",
                        violation.field, violation.description
                    ),
                    None => eprintln!("{}: {}", violation.field, violation.description),
                }
            }
            bail!(
                "the server refused the import ({count} records), nothing was imported: {}",
                status.message()
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
    while let Some(message) = stream.message().await? {
        revision = message.revision;
        for record in &message.records {
            write_record(&mut out, record)?;
            count += 1;
        }
    }
    out.flush()?;
    eprintln!("exported {count} records at revision {revision}");
    Ok(())
}
