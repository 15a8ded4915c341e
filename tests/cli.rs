//! The data tools of the `lodestone` command, run as a user runs them.

mod common;

use lodestone_test_macros::both_stores;

use std::process::Command;

use common::spawn_app;

/// `lodestone ARGS` on a blocking thread, for tests with a server in process.
async fn lodestone_async(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        lodestone(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap()
}

fn lodestone(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lodestone"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_network_imports_and_exports_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("network.jsonl");
    let again = dir.path().join("again.jsonl");
    let small = [
        "--suppliers",
        "40",
        "--components",
        "200",
        "--lines",
        "6",
        "--licenses",
        "60",
        "--seed",
        "3",
    ];
    let mut args = vec!["generate", "-o", file.to_str().unwrap()];
    args.extend(small);
    assert!(lodestone(&args).status.success());
    args[2] = again.to_str().unwrap();
    assert!(lodestone(&args).status.success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(&again).unwrap(),
        "the same seed gives the same file"
    );
    let lines = text.lines().count();

    let app = spawn_app().await;
    let server = format!("http://{}", app.address);
    let file_arg = file.to_str().unwrap().to_string();
    let server_arg = server.clone();
    let imported = tokio::task::spawn_blocking(move || {
        lodestone(&["import", &file_arg, "--server", &server_arg])
    })
    .await
    .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(
        String::from_utf8_lossy(&imported.stderr).contains(&format!("imported {lines} records"))
    );

    let exported = tokio::task::spawn_blocking(move || lodestone(&["export", "--server", &server]))
        .await
        .unwrap();
    assert!(exported.status.success());
    let out = std::str::from_utf8(&exported.stdout).unwrap();
    assert_eq!(out.lines().count(), lines);
    // The export carries revisions; otherwise it is the generated file, record for record.
    assert!(out.lines().all(|l| l.contains(",\"revision\":\"1\"}")));
    // Compare records, not text: parse, forget the revision, write again.
    let normal = |line: &str| {
        let record: lodestone::pb::Record =
            lodestone::pb::json::from_json("lodestone.v1.Record", line).unwrap();
        let mut violations = Vec::new();
        let mut record = lodestone::pb::record_from_pb(record, "", &mut violations).unwrap();
        record.set_revision(0);
        lodestone::pb::json::to_json("lodestone.v1.Record", &lodestone::pb::record_to_pb(&record))
            .unwrap()
    };
    let mut exported: Vec<String> = out.lines().map(normal).collect();
    let mut generated: Vec<String> = text.lines().map(normal).collect();
    exported.sort();
    generated.sort();
    let first_difference = exported.iter().zip(&generated).find(|(a, b)| a != b);
    assert_eq!(first_difference, None);
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_is_reported_by_number_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.jsonl");
    std::fs::write(
        &file,
        concat!(
            "{\"supplier\": {\"id\": \"S1\", \"country\": \"CN\"}}\n",
            "\n",
            "{\"component\": {\"id\": \"C1\", \"sources\": [{\"supplier_id\": \"S-NOPE\", \"share\": 1}]}}\n",
        ),
    )
    .unwrap();
    let app = spawn_app().await;
    let server = format!("http://{}", app.address);
    let path = file.to_str().unwrap().to_string();
    let out =
        tokio::task::spawn_blocking(move || lodestone(&["import", &path, "--server", &server]))
            .await
            .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.jsonl:3: records[1].component.sources[0].supplier_id"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert_eq!(app.export().await, (0, vec![]));

    std::fs::write(&file, "{\"supplier\": {\"id\": \"S1\"}}\nnot json\n").unwrap();
    let path = file.to_str().unwrap().to_string();
    let out = lodestone(&["import", &path, "--server", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.jsonl:2:"),
        "parse errors come before any connection"
    );
}

/// The CSV files of `examples/csv`, as an ERP exports them.
fn example_csv() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/csv");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .collect();
    files.sort();
    files
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_csv_files_import_as_one_network() {
    let app = spawn_app().await;
    let mut args = vec!["import".to_string()];
    args.extend(example_csv());
    args.extend(["--server".to_string(), format!("http://{}", app.address)]);
    let out = lodestone_async(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("imported 15 records from 9 files"),
        "{stderr}"
    );

    let mut records = app.records.clone();
    let magnet = records
        .get_component(lodestone::pb::GetComponentRequest {
            id: "KOS-ROTOR-MAG".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let sources: Vec<(String, f64)> = magnet
        .sources
        .iter()
        .map(|s| (s.supplier_id.clone(), s.share))
        .collect();
    assert_eq!(sources, [("XMC".into(), 0.75), ("SKM".into(), 0.25)]);
    assert_eq!(magnet.materials.len(), 3);
    assert_eq!(magnet.name, "Rotor magnet set, sintered NdFeB");
    let line = records
        .get_production_line(lodestone::pb::GetProductionLineRequest {
            id: "KOS-TM1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(line.bom.len(), 2);
    assert_eq!(line.bom[1].quantity, 2.0);
    let licence = records
        .get_license(lodestone::pb::GetLicenseRequest {
            id: "LIC-XMC-TB-0415".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(licence.status, lodestone::pb::LicenseStatus::Pending as i32);
    assert_eq!(licence.expected_decision_on, "2025-07-10");
    // Schedule lines of purchase orders: the id from order, item and
    // schedule line; the reference as the ERP wrote it, or the order.
    let shipments = records
        .list_shipments(lodestone::pb::ListShipmentsRequest {
            component_id: "KOS-ROTOR-MAG".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .shipments;
    let ids: Vec<&str> = shipments.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["4500123456-10-1", "4500123456-10-2"]);
    assert_eq!(
        (shipments[1].units, shipments[1].arrives_on.as_str()),
        (3000.0, "2025-07-18")
    );
    let past_due = records
        .get_shipment(lodestone::pb::GetShipmentRequest {
            id: "4500123790-20".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(past_due.reference, "past due");
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_row_the_server_refuses_is_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for path in example_csv() {
        let name = std::path::Path::new(&path).file_name().unwrap().to_owned();
        let copy = dir.path().join(name);
        let mut text = std::fs::read_to_string(&path).unwrap();
        if copy.ends_with("sources.csv") {
            // The second source of the magnet names a supplier nobody has.
            text = text.replace("KOS-ROTOR-MAG,SKM,0.25", "KOS-ROTOR-MAG,NOBODY,0.25");
        }
        std::fs::write(&copy, text).unwrap();
        files.push(copy.to_str().unwrap().to_string());
    }
    let app = spawn_app().await;
    let mut args = vec!["import".to_string()];
    args.extend(files);
    args.extend(["--server".to_string(), format!("http://{}", app.address)]);
    let out = lodestone_async(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("sources.csv:3: records[")
            && stderr.contains(".component.sources[1].supplier_id"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert_eq!(app.export().await, (0, vec![]));
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_token_and_an_authenticated_export_from_the_command_line() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let token = lodestone(&["token", "backup-job", "--role", "reader"]);
    assert!(token.status.success());
    let secret = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let line = String::from_utf8(token.stderr).unwrap();
    let line = line.lines().last().unwrap().to_string();
    assert!(line.starts_with("backup-job reader "), "{line}");
    assert!(!line.contains(&secret), "the file line holds only the hash");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{line}\n")).unwrap();
    let app = common::spawn_app_with(dir.clone(), |c| c.auth_tokens = Some(tokens)).await;
    let server = format!("http://{}", app.address);

    let (s, t) = (server.clone(), secret.clone());
    let run = lodestone_async;
    let health = run(vec!["health".into(), "--server".into(), s.clone()]).await;
    assert!(health.status.success(), "{health:?}");
    assert_eq!(String::from_utf8_lossy(&health.stdout).trim(), "SERVING");

    let refused = run(vec!["export".into(), "--server".into(), s.clone()]).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("bearer token"),
        "{refused:?}"
    );
    // A token that looks like a flag is still taken as the token.
    let flag_like = run(vec![
        "export".into(),
        "--server".into(),
        s.clone(),
        "--token".into(),
        "-not-a-flag".into(),
    ])
    .await;
    assert!(!flag_like.status.success());
    assert!(
        String::from_utf8_lossy(&flag_like.stderr).contains("not one this server knows"),
        "{flag_like:?}"
    );
    let exported = run(vec![
        "export".into(),
        "--server".into(),
        s,
        "--token".into(),
        t,
    ])
    .await;
    assert!(exported.status.success(), "{exported:?}");
    assert!(String::from_utf8_lossy(&exported.stderr).contains("exported 0 records"));

    let port = common::free_port();
    let dead = run(vec![
        "health".into(),
        "--server".into(),
        format!("http://127.0.0.1:{port}"),
    ])
    .await;
    assert!(!dead.status.success());
    app.stop().await;
}

/// Whether `text` holds an ANSI escape sequence (colour codes).
fn has_ansi(text: &str) -> bool {
    text.contains('\u{1b}')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_directory_says_another_server_uses_it() {
    let data = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let first = common::ServerProcess::start(data.path(), port, &[]);
    first.connect().await;
    let dir = data.path().to_str().unwrap().to_string();
    let second = lodestone_async(
        ["serve", "--listen", "127.0.0.1:0", "--data-dir", &dir]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!(
            "another server (pid {}) is using the data directory {dir}",
            first.child.id()
        )),
        "{err}"
    );
    assert!(!err.contains("WouldBlock"), "{err}");
    assert_eq!(err.matches("another server").count(), 1, "said once: {err}");
    assert!(!has_ansi(&err), "no colour codes off a terminal: {err:?}");

    // Once the first has gone, the directory is free again, with no stale lock.
    first.kill_9();
    let port = common::free_port();
    let again = common::ServerProcess::start(data.path(), port, &[]);
    again.connect().await;
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_may_be_named_without_a_scheme_and_a_missing_one_is_said_plainly() {
    let app = spawn_app().await;
    // host:port, as grpcurl takes it.
    let health = lodestone_async(vec![
        "health".into(),
        "--server".into(),
        app.address.to_string(),
    ])
    .await;
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&health.stdout).trim(), "SERVING");

    // https:// to a server that serves plaintext says so.
    let tls = lodestone_async(vec![
        "health".into(),
        "--server".into(),
        format!("https://{}", app.address),
    ])
    .await;
    assert!(!tls.status.success());
    let err = String::from_utf8_lossy(&tls.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "lodestone: the server at https://{0} does not speak TLS (it serves plaintext): \
             use http://{0}",
            app.address
        )
    );

    // Nobody listens on a port just freed.
    let nobody = format!("127.0.0.1:{}", common::free_port());
    for command in ["health", "export"] {
        let output = lodestone_async(vec![command.into(), "--server".into(), nobody.clone()]).await;
        assert!(!output.status.success());
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{command}: one line, printed once: {err}"
        );
        assert!(
            err.starts_with(&format!("lodestone: no server answers at http://{nobody}")),
            "{command}: {err}"
        );
        assert!(!err.contains("transport error"), "{command}: {err}");
        assert!(!has_ansi(&err), "{command}: {err:?}");
    }
}

/// Shares that do not sum to 1 are the sources' fault: the refusal names
/// the rows of sources.csv, with the sum as a person writes it, and the
/// verdict counts the problems rather than repeating them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_csv_import_names_the_rows_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components.csv");
    let sources = dir.path().join("sources.csv");
    let suppliers = dir.path().join("suppliers.csv");
    std::fs::write(&suppliers, "id,country\nS1,CN\nS2,JP\n").unwrap();
    std::fs::write(&components, "id,name\nMAG,magnet\n").unwrap();
    std::fs::write(
        &sources,
        "component_id,supplier_id,share\nMAG,S1,0.5\nMAG,S2,0.4\n",
    )
    .unwrap();
    let app = spawn_app().await;
    let mut args = vec!["import".to_string()];
    for file in [&suppliers, &components, &sources] {
        args.push(file.to_str().unwrap().to_string());
    }
    args.extend(["--server".to_string(), format!("http://{}", app.address)]);
    let out = lodestone_async(args).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let sources = sources.display();
    assert!(
        err.contains(&format!(
            "{sources}:2, {sources}:3: records[2].component.sources: shares must sum to 1 \
             (within 0.000001), not 0.9"
        )),
        "{err}"
    );
    assert_eq!(
        err.trim().lines().last(),
        Some(
            "lodestone: 1 problem(s) in 3 files; the server refused the import (3 records) \
             and nothing was imported"
        ),
        "{err}"
    );
    assert_eq!(app.export().await, (0, vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_of_a_csv_file_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let licences = dir.path().join("licences.csv");
    std::fs::write(
        &licences,
        "id,supplier_id,material,status,decided_on,valid_until\n\
         L1,S,DY,maybe,2025-13-01,\n\
         L2,S,DY,APPROVED,2025-06-02,next week\n",
    )
    .unwrap();
    let output = lodestone_async(vec![
        "import".into(),
        licences.to_str().unwrap().into(),
        "--server".into(),
        format!("127.0.0.1:{}", common::free_port()),
    ])
    .await;
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    // Read before any server is asked: all three problems, then the verdict.
    for problem in [
        "licences.csv:2: status: \"maybe\"",
        "licences.csv:2: decided_on: \"2025-13-01\" is not a date",
        "licences.csv:3: valid_until: \"next week\" is not a date",
        "3 problem(s) in",
    ] {
        assert!(err.contains(problem), "{problem} is not in {err}");
    }
}

/// Every flag of `serve` can come from its environment variable (here the
/// address, the directory, the demo, the log format and level), and JSON
/// logs are one JSON object per line, from start to a clean SIGTERM.
#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_flags_from_the_environment_and_logs_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let port = common::free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_lodestone"));
    let postgres = common::store_kind() == common::StoreKind::Postgres;
    if postgres {
        let cluster = common::postgres::cluster().expect("on_store checked for PostgreSQL");
        command.env(
            "LODESTONE_STORE",
            common::postgres::database(cluster, "from_env").await,
        );
    }
    let child = command
        .arg("serve")
        .env("LODESTONE_LISTEN", format!("127.0.0.1:{port}"))
        .env("LODESTONE_DATA_DIR", &data)
        .env("LODESTONE_DEMO", "true")
        .env("LODESTONE_LOG_FORMAT", "json")
        .env("LODESTONE_LOG", "info")
        .env("LODESTONE_SHUTDOWN_GRACE_SECONDS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let server = format!("127.0.0.1:{port}");
    common::eventually(std::time::Duration::from_secs(60), || {
        let server = server.clone();
        async move {
            let out = lodestone_async(vec!["health".into(), "--server".into(), server]).await;
            out.status.success().then_some(())
        }
    })
    .await;
    // The demo is there, in the directory the environment named.
    let exported = lodestone_async(vec!["export".into(), "--server".into(), server]).await;
    assert!(exported.status.success());
    assert!(String::from_utf8_lossy(&exported.stdout).contains("VIG-ICE1"));
    // sled keeps it in the directory; PostgreSQL in the database.
    assert_eq!(data.join("lodestone.lock").exists(), !postgres);

    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "a clean exit on SIGTERM");
    let logs = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let said = |message: &str| {
        lines
            .iter()
            .any(|l| l["message"].as_str() == Some(message) && l["level"] == "INFO")
    };
    assert!(said("loaded the demonstration network"), "{logs}");
    assert!(said("serving lodestone.v1"), "{logs}");
    let serving = lines
        .iter()
        .find(|l| l["message"] == "serving lodestone.v1")
        .unwrap();
    assert_eq!(
        serving["web_view"],
        format!("http://127.0.0.1:{port}/?as_of=2025-06-02"),
        "the log says where the web view is, on the demo's date: {serving}"
    );
    assert_eq!(
        serving["json_api"],
        format!("http://127.0.0.1:{port}/lodestone.v1.RiskService/ListAtRiskLines"),
        "{serving}"
    );
    assert!(said("stopped; the store is flushed"), "{logs}");
    assert!(!has_ansi(&logs));
}
