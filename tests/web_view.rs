//! The web view in a real browser (`tests/web/view.py`: headless chromium
//! through chromedriver and Selenium) against demonstration servers, one
//! open and one that asks for tokens. With `LODESTONE_SCREENSHOT=<file>`
//! it also saves what the page shows (the README's picture).

mod common;

use common::{free_port, outside_tool, ServerProcess};
use lodestone::transport::auth::{new_token, Role};

/// The README's table of the demo's lines that stop, as [line, date] in
/// its order.
fn readme_lines() -> serde_json::Value {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("the README is readable");
    let table = readme
        .split("| line | stops on | builds that day | why |")
        .nth(1)
        .expect("the README's table of the lines that stop");
    let mut lines = Vec::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let date = cells[2];
        for id in cells[1].split('`').skip(1).step_by(2) {
            lines.push(serde_json::json!([id, date]));
        }
    }
    assert!(lines.len() >= 5, "the table names the lines: {lines:?}");
    serde_json::Value::Array(lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_the_lines_stop_the_scenarios_differ_and_decisions_arrive() {
    if outside_tool(
        "python3",
        &["-c", "import selenium, requests"],
        "python3 with the modules selenium and requests (pip install selenium requests)",
    )
    .is_none()
        || outside_tool(
            "/usr/bin/chromium",
            &["--version"],
            "Debian's chromium (apt-get install chromium)",
        )
        .is_none()
        || outside_tool(
            "/usr/bin/chromedriver",
            &["--version"],
            "Debian's chromium-driver (apt-get install chromium-driver)",
        )
        .is_none()
    {
        return;
    }
    let open_dir = tempfile::tempdir().unwrap();
    let open_port = free_port();
    let open = ServerProcess::start(open_dir.path(), open_port, &["--demo"]);
    let token_dir = tempfile::tempdir().unwrap();
    let (reader, line) = new_token("planning.ui", Role::Reader).unwrap();
    let tokens = token_dir.path().join("tokens");
    std::fs::write(&tokens, format!("{line}\n")).unwrap();
    let token_port = free_port();
    let guarded = ServerProcess::start(
        token_dir.path(),
        token_port,
        &["--demo", "--auth-tokens", tokens.to_str().unwrap()],
    );
    open.connect().await;
    guarded.connect().await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web/view.py");
    let expected = readme_lines().to_string();
    let mut args = vec![
        script.to_string(),
        expected,
        format!("http://127.0.0.1:{open_port}"),
        format!("http://127.0.0.1:{token_port}"),
        reader,
    ];
    if let Ok(screenshot) = std::env::var("LODESTONE_SCREENSHOT") {
        args.push(screenshot);
    }
    common::python_passes(args, "all browser checks passed").await;
    drop(open);
    drop(guarded);
}
