//! OpenTelemetry traces at a real OTLP receiver: `rotel-agent` (PyPI's
//! `rotel`), started here and told to log every span it receives. A call
//! sent with a W3C `traceparent` arrives as the server's spans in that
//! trace, with the children the README names; a server whose collector is
//! down answers as fast and as well as one without.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{free_port, outside_tool, ServerProcess};
use lodestone::pb::risk_service_client::RiskServiceClient;
use lodestone::pb::{self, record_service_client::RecordServiceClient};
use tonic::metadata::MetadataValue;

/// The agent's binary, inside the `rotel` Python package.
fn rotel_agent() -> Option<PathBuf> {
    let python = outside_tool(
        "python3",
        &["-c", "import rotel"],
        "python3 with the module rotel, whose rotel-agent receives OTLP (pip install rotel==0.0.1a15)",
    )?;
    let output = Command::new(python)
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    path.exists().then_some(path)
}

/// A running receiver, logging what it gets to a file.
struct Receiver {
    child: Child,
    log: tempfile::NamedTempFile,
    port: u16,
}

impl Receiver {
    fn start(agent: &PathBuf) -> Receiver {
        let log = tempfile::NamedTempFile::new().unwrap();
        let (port, http) = (free_port(), free_port());
        let child = Command::new(agent)
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{port}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("rotel-agent starts");
        Receiver { child, log, port }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits (at most a minute) until the log holds every one of `texts`.
    async fn wait_for(&self, texts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.received();
            if texts.iter().all(|t| received.contains(t)) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver did not get {texts:?} within a minute; it logged:\n{received}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One span as the receiver logs it.
#[derive(Debug)]
struct Span {
    trace: String,
    parent: String,
    id: String,
    name: String,
    kind: String,
    attributes: String,
}

/// The spans of the receiver's log (`Span #n`, then `Key : value` lines,
/// then the attributes).
fn spans(log: &str) -> Vec<Span> {
    log.split("Span #")
        .skip(1)
        .map(|block| {
            let field = |key: &str| {
                block
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(" : ")?;
                        (k.trim() == key).then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            Span {
                trace: field("Trace ID"),
                parent: field("Parent ID"),
                id: field("ID"),
                name: field("Name"),
                kind: field("Kind"),
                attributes: block
                    .split_once("Attributes:")
                    .map(|(_, a)| a.to_string())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn traced<T>(message: T, trace_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let parent: MetadataValue<_> = format!("00-{trace_id}-00f067aa0ba902b7-01")
        .parse()
        .unwrap();
    request.metadata_mut().insert("traceparent", parent);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_spans_in_the_callers_trace_at_a_real_collector() {
    let Some(agent) = rotel_agent() else {
        return;
    };
    let receiver = Receiver::start(&agent);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let server = ServerProcess::start(
        dir.path(),
        port,
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-service-name",
            "lodestone-under-test",
        ],
    );
    let channel = server.connect().await;
    let mut records = RecordServiceClient::new(channel.clone());
    let mut risk = RiskServiceClient::new(channel);

    let write = "4bf92f3577b34da6a3ce929d0e0e4736";
    records
        .upsert_records(traced(common::seed_network(), write))
        .await
        .unwrap();
    let read = "5cf92f3577b34da6a3ce929d0e0e4737";
    risk.list_at_risk_lines(traced(
        pb::ListAtRiskLinesRequest {
            as_of: "2025-06-02".into(),
            ..Default::default()
        },
        read,
    ))
    .await
    .unwrap();

    let received = receiver
        .wait_for(&[
            write,
            read,
            "lodestone.v1.RecordService/UpsertRecords",
            "lodestone.v1.RiskService/ListAtRiskLines",
            "risk evaluation",
            "Name           : sync",
        ])
        .await;
    assert!(
        received.contains("service.name: Str(lodestone-under-test)"),
        "{received}"
    );
    let spans = spans(&received);
    let find = |trace: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.trace == trace && s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in trace {trace}: {spans:#?}"))
    };
    // The server's span continues the caller's trace, under its span.
    let call = find(write, "lodestone.v1.RecordService/UpsertRecords");
    assert_eq!(call.parent, "00f067aa0ba902b7");
    assert_eq!(call.kind, "SPAN_KIND_SERVER");
    assert!(
        call.attributes.contains("rpc.system: Str(grpc)"),
        "{call:?}"
    );
    // Inside it: validation, the commit, and the commit's sync.
    assert_eq!(find(write, "validate and plan").parent, call.id);
    let commit = find(write, "store commit");
    assert_eq!(commit.parent, call.id);
    assert_eq!(find(write, "sync").parent, commit.id);
    // A risk question: its evaluation, with the network's size and horizon.
    let call = find(read, "lodestone.v1.RiskService/ListAtRiskLines");
    let evaluation = find(read, "risk evaluation");
    assert_eq!(evaluation.parent, call.id);
    for attribute in ["lines:", "components:", "licences:", "horizon_days:"] {
        assert!(evaluation.attributes.contains(attribute), "{evaluation:?}");
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_neither_fails_nor_slows_a_call() {
    // Nobody listens on this port: every export fails.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let server = ServerProcess::start(dir.path(), port, &["--otlp-endpoint", &endpoint]);
    let channel = server.connect().await;
    let mut records = RecordServiceClient::new(channel.clone());
    records
        .upsert_records(common::seed_network())
        .await
        .unwrap();
    let mut risk = RiskServiceClient::new(channel);
    for n in 0..50 {
        let started = Instant::now();
        risk.list_at_risk_lines(traced(
            pb::ListAtRiskLinesRequest {
                as_of: "2025-06-02".into(),
                horizon_days: 30 + n,
                ..Default::default()
            },
            "6cf92f3577b34da6a3ce929d0e0e4738",
        ))
        .await
        .unwrap();
        // Far under the export timeout (5 s), which a call waiting for
        // the collector would show; generous for a slow machine.
        assert!(started.elapsed() < Duration::from_secs(3), "call {n}");
    }
    drop(server);
}
