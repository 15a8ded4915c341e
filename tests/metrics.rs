//! The Prometheus endpoint. Alone in its test binary, since the metrics
//! recorder is global to a process and exact counts are asserted.

mod common;

use std::sync::Arc;

use common::spawn_app_with;
use lodestone::pb::{self, risk_service_client::RiskServiceClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn get_licence(id: &str) -> pb::GetLicenseRequest {
    pb::GetLicenseRequest { id: id.into() }
}

/// One plain HTTP GET; the whole answer.
async fn http_get(port: u16, path: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    socket
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_requests_streams_log_and_store() {
    let port = common::free_port();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_with(dir, |c| {
        c.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap())
    })
    .await;
    app.load_seed().await;
    let mut records = app.records.clone();
    records
        .get_license(get_licence("LIC-BTM-DY-1"))
        .await
        .unwrap();
    let _ = records.get_license(get_licence("NOPE")).await;
    let _stream = app
        .subscribe(pb::StreamLicenseUpdatesRequest::default())
        .await
        .unwrap();
    RiskServiceClient::new(app.channel.clone())
        .get_exposure(pb::GetExposureRequest {
            scope: Some(pb::get_exposure_request::Scope::Material("DY".into())),
            as_of: "2025-06-02".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let text = http_get(port, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for expected in [
        r#"lodestone_requests_total{service="lodestone.v1.RecordService",method="GetLicense",code="Ok"} 1"#,
        r#"lodestone_requests_total{service="lodestone.v1.RecordService",method="GetLicense",code="NotFound"} 1"#,
        r#"lodestone_request_duration_seconds_bucket{service="lodestone.v1.RiskService",method="GetExposure",le="0.005"}"#,
        "lodestone_streams_open 1",
        "lodestone_license_log_head_sequence 7",
        "lodestone_license_log_oldest_sequence 1",
        r#"lodestone_records{kind="license"} 7"#,
        "lodestone_store_revision 1",
        "lodestone_store_size_bytes ",
    ] {
        assert!(text.contains(expected), "{expected} is not in\n{text}");
    }
    assert!(http_get(port, "/other").await.starts_with("HTTP/1.1 404"));
    // The serving port answers /metrics too.
    let text = http_get(app.address.port(), "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("lodestone_store_revision 1"), "{text}");
    app.stop().await;
}
