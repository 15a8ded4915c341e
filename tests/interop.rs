//! The contract from a second language: Python stubs generated with
//! grpcio-tools from the project's protos drive every RPC against the real
//! binary (`tests/interop/client.py`); Python's `requests` drives the JSON
//! API against the published OpenAPI description (`tests/interop/http_client.py`).

mod common;

use common::{free_port, outside_tool, ServerProcess};

/// Runs `tests/interop/<script>` against a new server (started with
/// `server_args`), passing it the server's address as `address` makes it,
/// and requires it to succeed and print `passed`; skips, saying so, where
/// python3 cannot `import` the `modules` (installed by `pip <install>`).
async fn run_python(
    script: &'static str,
    modules: &str,
    install: &str,
    server_args: &[&str],
    address: fn(u16) -> String,
    passed: &str,
) {
    let probe = format!("import {modules}");
    let what = format!("python3 with the modules {modules} (pip install {install})");
    if outside_tool("python3", &["-c", &probe], &what).is_none() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = ServerProcess::start(data.path(), port, server_args);
    server.connect().await;
    let script = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    common::python_passes(vec![script, address(port)], passed).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_the_protos_drives_every_rpc() {
    run_python(
        "client.py",
        "grpc, grpc_tools",
        "grpcio grpcio-tools",
        &[],
        |port| format!("127.0.0.1:{port}"),
        "checks passed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_of_the_json_api_follows_the_openapi_description() {
    run_python(
        "http_client.py",
        "requests, openapi_spec_validator",
        "requests openapi-spec-validator",
        &["--demo"],
        |port| format!("http://127.0.0.1:{port}"),
        "all HTTP checks passed",
    )
    .await;
}
