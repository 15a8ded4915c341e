//! The data tools of the `lodestone` command, run as a user runs them.

mod common;

use std::process::Command;

use common::spawn_app;

fn lodestone(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lodestone"))
        .args(args)
        .output()
        .expect("the binary runs")
}

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
        stderr.contains("line 3: records[1].component.sources[0].supplier_id"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert_eq!(app.export().await, (0, vec![]));

    std::fs::write(&file, "{\"supplier\": {\"id\": \"S1\"}}\nnot json\n").unwrap();
    let path = file.to_str().unwrap().to_string();
    let out = lodestone(&["import", &path, "--server", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2:"),
        "parse errors come before any connection"
    );
}
