//! The contract from a second language: Python stubs generated with
//! grpcio-tools from the project's protos drive every RPC against the real
//! binary (`tests/interop/client.py`).

mod common;

use std::process::Command;

use common::{free_port, outside_tool, ServerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_the_protos_drives_every_rpc() {
    if outside_tool(
        "python3",
        &["-c", "import grpc, grpc_tools"],
        "python3 with the modules grpc and grpc_tools (pip install grpcio grpcio-tools)",
    )
    .is_none()
    {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = ServerProcess::start(data.path(), port, &[]);
    server.connect().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/client.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(format!("127.0.0.1:{port}"))
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("checks passed"), "{out}");
    drop(server);
}
