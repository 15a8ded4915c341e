//! The contract over plain HTTP/1.1 on the serving port: JSON calls answer
//! as the gRPC calls they stand for (errors, authentication and all), the
//! licence stream as server-sent events that resume, gRPC-Web, CORS, the
//! OpenAPI description, metrics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use lodestone::pb;
use lodestone::transport::auth::{new_token, Role};
use lodestone_test_macros::both_stores;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{spawn_app, spawn_app_with};

/// An HTTP/1.1 answer: status, headers (names lower-case), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The message of a JSON google.rpc.Status.
    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The ErrorInfo reason of a JSON google.rpc.Status.
    fn reason(&self) -> String {
        let json = self.json();
        let details = json["details"].as_array().cloned().unwrap_or_default();
        details
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
            .and_then(|d| d["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` on a new connection and reads the whole answer.
async fn exchange(address: std::net::SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut socket = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{head}\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut raw))
        .await
        .expect("the server answers within a minute")
        .unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}

async fn post(address: std::net::SocketAddr, path: &str, body: Value, extra: &str) -> Answer {
    exchange(
        address,
        &format!("POST {path} HTTP/1.1\r\nContent-Type: application/json{extra}"),
        body.to_string().as_bytes(),
    )
    .await
}

const AT_RISK: &str = "/lodestone.v1.RiskService/ListAtRiskLines";
const GET_LICENSE: &str = "/lodestone.v1.RecordService/GetLicense";
const UPDATE_STATUS: &str = "/lodestone.v1.RecordService/UpdateLicenseStatus";

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_calls_answer_exactly_as_their_grpc_calls() {
    let app = spawn_app().await;
    app.load_seed().await;
    let question = pb::ListAtRiskLinesRequest {
        as_of: "2025-06-02".into(),
        horizon_days: 120,
        ..Default::default()
    };
    let grpc = app
        .risk
        .clone()
        .list_at_risk_lines(question)
        .await
        .unwrap()
        .into_inner();
    assert!(!grpc.lines.is_empty());
    let answer = post(
        app.address,
        AT_RISK,
        json!({"asOf": "2025-06-02", "horizon_days": 120}),
        "",
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    // Canonical JSON: lowerCamelCase names, 64-bit integers as strings.
    let json = answer.json();
    assert_eq!(json["revision"], Value::String(grpc.revision.to_string()));
    assert!(json["lines"][0].get("lineId").is_some());
    let back: pb::ListAtRiskLinesResponse = lodestone::pb::json::from_json(
        "lodestone.v1.ListAtRiskLinesResponse",
        &String::from_utf8(answer.body).unwrap(),
    )
    .unwrap();
    assert_eq!(back, grpc);

    // A write over JSON is the write over gRPC.
    let answer = post(
        app.address,
        UPDATE_STATUS,
        json!({"id": "LIC-BTM-DY-1", "status": "LICENSE_STATUS_APPROVED", "decidedOn": "2025-06-03"}),
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    let licence = app
        .records
        .clone()
        .get_license(pb::GetLicenseRequest {
            id: "LIC-BTM-DY-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(licence.status, pb::LicenseStatus::Approved as i32);
    assert_eq!(answer.json()["revision"], licence.revision.to_string());
    app.stop().await;
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_json_statuses_under_their_http_status_and_change_nothing() {
    let app = spawn_app().await;
    app.load_seed().await;
    let before = app.export().await;

    let answer = post(app.address, GET_LICENSE, json!({"id": "NOPE"}), "").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["code"], 5);
    assert_eq!(answer.reason(), "NOT_FOUND");

    let answer = post(app.address, AT_RISK, json!({"horizonDays": 9999}), "").await;
    assert_eq!(answer.status, 400);
    let json = answer.json();
    let violation = json["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .expect("a BadRequest detail");
    assert_eq!(violation["fieldViolations"][0]["field"], "horizon_days");

    // Not the message's JSON, or not JSON: refused before the call.
    for body in [
        json!({"id": "LIC-BTM-DY-1", "status": "LICENSE_STATUS_MAYBE"}),
        json!({"id": "LIC-BTM-DY-1", "colour": "red"}),
        json!(["LIC-BTM-DY-1"]),
    ] {
        let answer = post(app.address, UPDATE_STATUS, body.clone(), "").await;
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(answer.json()["code"], 3);
        assert!(answer
            .message()
            .contains("lodestone.v1.UpdateLicenseStatusRequest"));
    }
    let answer = exchange(
        app.address,
        &format!(
            "POST {UPDATE_STATUS} HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded"
        ),
        b"id=LIC-BTM-DY-1&status=2",
    )
    .await;
    assert_eq!(answer.status, 415);
    assert!(answer.message().contains("application/json"));
    let answer = exchange(
        app.address,
        &format!("GET {GET_LICENSE}?id=L1 HTTP/1.1"),
        b"",
    )
    .await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("allow"), Some("POST"));
    let answer = post(app.address, "/lodestone.v1.RiskService/Nope", json!({}), "").await;
    assert_eq!(answer.status, 404);
    let answer = post(app.address, "/grpc.health.v1.Health/Check", json!({}), "").await;
    assert_eq!(answer.status, 404);
    let answer = post(
        app.address,
        "/lodestone.v1.RecordService/ImportRecords",
        json!({}),
        "",
    )
    .await;
    assert_eq!(answer.status, 501);
    assert!(answer.message().contains("UpsertRecords"));

    assert_eq!(
        app.export().await,
        before,
        "a refused request changed nothing"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_calls_need_the_same_tokens_and_roles() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (writer, writer_line) = new_token("erp-sap", Role::Writer).unwrap();
    let (reader, reader_line) = new_token("planning-ui", Role::Reader).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{writer_line}\n{reader_line}\n")).unwrap();
    let app = spawn_app_with(dir, |c| c.auth_tokens = Some(tokens)).await;
    let bearer = |token: &str| format!("\r\nAuthorization: Bearer {token}");
    let update = json!({"id": "NOPE", "status": "LICENSE_STATUS_APPROVED"});

    let answer = post(app.address, GET_LICENSE, json!({"id": "NOPE"}), "").await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.reason(), "UNAUTHENTICATED");
    let answer = post(app.address, UPDATE_STATUS, update.clone(), &bearer(&reader)).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.reason(), "PERMISSION_DENIED");
    let answer = post(
        app.address,
        GET_LICENSE,
        json!({"id": "NOPE"}),
        &bearer(&reader),
    )
    .await;
    assert_eq!(answer.status, 404, "the reader may read");
    let answer = post(app.address, UPDATE_STATUS, update, &bearer(&writer)).await;
    assert_eq!(
        answer.status, 404,
        "the writer may write (to a licence that is not there)"
    );
    // The stream too: refused before it starts.
    let answer = exchange(
        app.address,
        "GET /lodestone.v1.RiskService/StreamLicenseUpdates HTTP/1.1\r\nAccept: text/event-stream",
        b"",
    )
    .await;
    assert_eq!(answer.status, 401);
    app.stop().await;
}

/// Reads from `socket` until `text` has arrived; everything read.
async fn read_until(socket: &mut TcpStream, seen: &mut String, text: &str) {
    let mut buffer = [0u8; 8192];
    tokio::time::timeout(Duration::from_secs(60), async {
        while !seen.contains(text) {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the stream ended before {text:?}: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{text:?} within a minute; got {seen}"));
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_licence_stream_is_server_sent_events_that_resume_after_the_last_id() {
    let app = spawn_app().await;
    app.load_seed().await;
    let head = app.network.store().log_bounds().head;
    let mut socket = TcpStream::connect(app.address).await.unwrap();
    socket
        .write_all(
            format!(
                "GET /lodestone.v1.RiskService/StreamLicenseUpdates?after_sequence={head}&heartbeat_seconds=1 HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, "event: heartbeat").await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    app.set_quantity("LIC-BTM-DY-1", 77.0).await.unwrap();
    let id = format!("id: {}\n", head + 1);
    read_until(&mut socket, &mut seen, &id).await;
    let event = &seen[seen.find("event: update").expect("an update event")..];
    let data = event
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["update"]["sequence"], (head + 1).to_string());
    assert_eq!(data["update"]["license"]["quantityKg"], 77.0);
    drop(socket);

    // An EventSource reconnecting sends the last id it saw: the next event
    // is the one after it, not a repeat.
    app.set_quantity("LIC-BTM-DY-1", 78.0).await.unwrap();
    let mut socket = TcpStream::connect(app.address).await.unwrap();
    socket
        .write_all(
            format!(
                "GET /lodestone.v1.RiskService/StreamLicenseUpdates HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\nLast-Event-ID: {}\r\n\r\n",
                head + 1
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, &format!("id: {}\n", head + 2)).await;
    assert!(!seen.contains(&id), "{seen}");

    // Newline-delimited JSON for POST without an Accept, ended by an error
    // object when the stream fails.
    let mut socket = TcpStream::connect(app.address).await.unwrap();
    let body = json!({"afterSequence": head.to_string(), "heartbeatSeconds": 1}).to_string();
    socket
        .write_all(
            format!(
                "POST /lodestone.v1.RiskService/StreamLicenseUpdates HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, "\"quantityKg\":78").await;
    assert!(seen.to_ascii_lowercase().contains("application/x-ndjson"));
    app.stop().await;
    read_until(&mut socket, &mut seen, "{\"error\":{\"code\":14").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_calls_are_answered_over_http1() {
    use prost::Message;
    let app = spawn_app().await;
    app.load_seed().await;
    let request = pb::GetLicenseRequest {
        id: "LIC-BTM-DY-1".into(),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(request.len() as u32).to_be_bytes());
    frame.extend_from_slice(&request);
    let answer = exchange(
        app.address,
        "POST /lodestone.v1.RecordService/GetLicense HTTP/1.1\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1",
        &frame,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/grpc-web+proto")
    );
    // A message frame, then a trailers frame (flag 0x80) with the status.
    let body = &answer.body;
    assert_eq!(body[0], 0);
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let licence = pb::License::decode(&body[5..5 + length]).unwrap();
    assert_eq!(licence.id, "LIC-BTM-DY-1");
    let trailers = &body[5 + length..];
    assert_eq!(trailers[0], 0x80);
    assert!(String::from_utf8_lossy(&trailers[5..]).contains("grpc-status:0"));
    app.stop().await;
}

/// A browser's preflight request from `origin`.
async fn preflight(address: std::net::SocketAddr, origin: &str) -> Answer {
    exchange(
        address,
        &format!(
            "OPTIONS {GET_LICENSE} HTTP/1.1\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web"
        ),
        b"",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_origins_may_call_from_a_browser() {
    let app = spawn_app().await;
    let answer = preflight(app.address, "https://planning.example.com").await;
    assert_eq!(answer.header("access-control-allow-origin"), None);
    app.stop().await;

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_with(dir, |c| {
        c.cors_origins = vec!["https://planning.example.com".into()]
    })
    .await;
    let answer = preflight(app.address, "https://planning.example.com").await;
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://planning.example.com")
    );
    assert!(answer
        .header("access-control-allow-headers")
        .unwrap()
        .contains("x-grpc-web"));
    let answer = preflight(app.address, "https://elsewhere.example.com").await;
    assert_eq!(answer.header("access-control-allow-origin"), None);
    let answer = post(
        app.address,
        GET_LICENSE,
        json!({"id": "NOPE"}),
        "\r\nOrigin: https://planning.example.com",
    )
    .await;
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://planning.example.com")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_origin_is_refused_at_start() {
    let mut config = lodestone::startup::ServeConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        tempfile::tempdir().unwrap().path().join("data"),
    );
    config.cors_origins = vec!["planning.example.com/".into()];
    let Err(error) = lodestone::startup::Application::build(config).await else {
        panic!("a malformed origin was accepted");
    };
    assert!(format!("{error:#}").contains("--cors-origin"), "{error:#}");
}

#[test]
fn the_published_openapi_description_is_the_one_the_contract_gives() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/lodestone.v1.json");
    let published = std::fs::read_to_string(path).unwrap();
    assert!(
        published == lodestone::transport::web::openapi_text(),
        "openapi/lodestone.v1.json is not what the protos give: \
         run `cargo run -- openapi > openapi/lodestone.v1.json`"
    );
}

#[test]
fn a_reader_that_stops_early_is_no_failure() {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; \"{}\" openapi | head -c 100 > /dev/null",
            env!("CARGO_BIN_EXE_lodestone")
        ))
        .output()
        .expect("bash runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`lodestone openapi | head` fails: {said}"
    );
    assert!(
        said.is_empty(),
        "`lodestone openapi | head` complains: {said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_port_serves_the_openapi_description_and_every_path_in_it() {
    let app = spawn_app().await;
    let answer = exchange(app.address, "GET /openapi.json HTTP/1.1", b"").await;
    assert_eq!(answer.status, 200);
    let description = answer.json();
    assert_eq!(description, lodestone::transport::web::openapi());
    let paths = description["paths"].as_object().unwrap();
    // Every unary and server-streaming method of both services.
    assert_eq!(paths.len(), 24);
    for (path, operations) in paths {
        if operations.get("get").is_some() {
            continue; // streams, exercised above
        }
        let answer = post(app.address, path, json!({}), "").await;
        assert!(
            ![404, 405, 415, 501].contains(&answer.status),
            "{path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_message_limit_is_refused_unread() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_with(dir, |c| c.max_message_mb = 1).await;
    let id = "L".repeat(2 << 20);
    let answer = post(app.address, GET_LICENSE, json!({ "id": id }), "").await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["code"], 8);
    assert!(answer.message().contains("--max-message-mb"));
    app.stop().await;
}
