//! Every shell command the README shows, run as a newcomer runs it, against
//! the real binary serving the demonstration network, so that the README
//! cannot go stale.
//!
//! Commands run in README order, in one scratch directory, through bash, with
//! `127.0.0.1:50051` pointed at the test's server. `cargo run --release -- …`
//! runs through the real cargo, as a newcomer types it: the scratch directory
//! lies inside the project (under the target directory), so cargo finds the
//! project from there, and a Cargo.toml that no longer picks the `lodestone`
//! binary by itself fails this test. A command under a comment that says
//! "refused" must fail with `InvalidArgument`; a `StreamLicenseUpdates` call
//! runs in the background until its block ends and must have delivered an
//! update. Four commands are not run here, each for its reason (see
//! `NOT_RUN_HERE`).

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{free_port, outside_tool, ServerProcess};

/// Commands the test does not run itself, and why.
const NOT_RUN_HERE: &[(&str, &str)] = &[
    (
        "cargo run --release -- serve --demo",
        "the test starts this very server itself, on a free port; .ci/run runs it as written",
    ),
    ("cargo test", "the command that runs this test"),
    (
        "cargo build --release && cargo run --release --bin lodestone-bench -- --scale large",
        "minutes of load on a release build; tests/bench.rs runs the benchmark small",
    ),
    (
        "LODESTONE_LONG=1 cargo test --release --test crash --test hostile --test overload --test disk -- --nocapture",
        "the long versions of tests that `cargo test` runs short",
    ),
];

/// One command of a `sh` block, with the comment lines just above it.
#[derive(Debug)]
struct Shown {
    block: usize,
    comment: String,
    command: String,
}

/// The commands of the README's `sh` blocks. A command continues over lines
/// that end in a backslash or that leave a single quote open.
fn shown_commands(readme: &str) -> Vec<Shown> {
    let mut commands = Vec::new();
    let (mut in_block, mut block) = (false, 0);
    let (mut comment, mut command) = (String::new(), String::new());
    for line in readme.lines() {
        if !in_block {
            if line.trim() == "```sh" {
                in_block = true;
                block += 1;
                comment.clear();
            }
            continue;
        }
        if line.trim() == "```" {
            assert!(command.is_empty(), "unfinished command: {command}");
            in_block = false;
            continue;
        }
        if command.is_empty() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                comment.clear();
                continue;
            }
            if let Some(text) = trimmed.strip_prefix('#') {
                comment.push_str(text);
                comment.push(' ');
                continue;
            }
        } else {
            command.push('\n');
        }
        command.push_str(line);
        let quotes_open = command.matches('\'').count() % 2 == 1;
        if !quotes_open && !line.ends_with('\\') {
            commands.push(Shown {
                block,
                comment: std::mem::take(&mut comment),
                command: std::mem::take(&mut command),
            });
        }
    }
    commands
}

/// Shell functions that point the README's commands at the test's server.
/// `cargo run --release -- …` runs through the real cargo when `real_cargo`,
/// else through the binary this test was built with.
fn prelude(port: u16, real_cargo: bool) -> String {
    let run = if real_cargo {
        "command cargo run --release --".to_string()
    } else {
        format!("\"{}\"", env!("CARGO_BIN_EXE_lodestone"))
    };
    format!(
        r#"
set -o pipefail
here() {{ local out=(); for a in "$@"; do out+=("${{a//127.0.0.1:50051/127.0.0.1:{port}}}"); done; printf '%s\0' "${{out[@]}}"; }}
grpcurl() {{ local args; mapfile -d '' args < <(here "$@"); command grpcurl "${{args[@]}}"; }}
curl() {{ local args; mapfile -d '' args < <(here "$@"); command curl "${{args[@]}}"; }}
cargo() {{
  if [ "$1 $2 $3" != "run --release --" ]; then echo "not a README command: cargo $*" >&2; return 99; fi
  shift 3; local args; mapfile -d '' args < <(here "$@"); {run} "${{args[@]}}"
}}
"#
    )
}

/// `command` through bash in `dir`; the client commands' default server is
/// the test's (the README's `127.0.0.1:50051`).
fn shell(prelude: &str, command: &str, dir: &std::path::Path, port: u16) -> Command {
    let mut shell = Command::new("bash");
    shell
        .arg("-c")
        .arg(format!("{prelude}\n{command}"))
        .current_dir(dir)
        .env("LODESTONE_SERVER", format!("127.0.0.1:{port}"));
    // As a newcomer's terminal has it: without what cargo sets for a test
    // (OUT_DIR, CARGO_PKG_*, …), which build scripts track, so that the
    // release build this test makes is the one the README's next
    // `cargo run --release` finds, not one it must build again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo = name == "OUT_DIR"
            || (name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR");
        if set_by_cargo {
            shell.env_remove(name.as_ref());
        }
    }
    shell
}

/// A stream left running in the background until its block ends, printing
/// into files so that it can be read while it runs.
struct Following {
    block: usize,
    command: String,
    child: Child,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

impl Following {
    fn start(block: usize, command: String, mut shell: Command) -> Following {
        let (out, err) = (
            tempfile::NamedTempFile::new().unwrap(),
            tempfile::NamedTempFile::new().unwrap(),
        );
        let child = shell
            .process_group(0)
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap())
            .spawn()
            .expect("bash runs");
        Following {
            block,
            command,
            child,
            out,
            err,
        }
    }

    /// What the stream must deliver: a licence update, or a watch's change.
    fn awaited(&self) -> &'static str {
        if self.command.starts_with("curl ") {
            // A server-sent event of a licence update.
            "event: update"
        } else if self.command.contains("WatchAtRiskLines") {
            "\"change\""
        } else {
            "\"update\""
        }
    }

    /// Waits (at most a minute, on a slow machine) until the stream has
    /// delivered what it awaits or ended, stops it, and returns what it
    /// printed.
    fn finish(mut self) -> (String, String) {
        let awaited = self.awaited();
        let read = |file: &tempfile::NamedTempFile| {
            std::fs::read_to_string(file.path()).unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !read(&self.out).contains(awaited)
            && self.child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        // The stream runs in a child of bash: stop the whole process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
        (read(&self.out), read(&self.err))
    }
}

fn check_stream(following: Following) {
    let command = following.command.clone();
    let awaited = following.awaited();
    let (out, err) = following.finish();
    assert!(
        out.contains(awaited),
        "the stream delivered no {awaited}\n{command}\nstdout: {out}\nstderr: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_in_the_readme_works() {
    if outside_tool("grpcurl", &["-version"], "grpcurl").is_none() {
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("the README is readable");
    let shown = shown_commands(&readme);
    assert!(shown.len() > 15, "the README shows commands: {shown:?}");

    // Every command the test skips is still shown, exactly as listed.
    for (skipped, why) in NOT_RUN_HERE {
        assert!(
            shown.iter().any(|s| s.command == *skipped),
            "NOT_RUN_HERE lists a command the README no longer shows ({why}): {skipped}"
        );
    }

    let data = tempfile::tempdir().unwrap();
    // Inside the project, so that cargo finds it from there.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let real_cargo = scratch
        .path()
        .ancestors()
        .any(|dir| dir == std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    if !real_cargo {
        common::skips::skipped(
            "the target directory lies outside the project, so `cargo run --release -- …` \
             commands ran through the test's binary instead of cargo",
        );
    }
    // Commands name the repository's example files by relative path.
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples"),
        scratch.path().join("examples"),
    )
    .unwrap();
    // `target/release/lodestone`, as the README calls the built binary from
    // the project directory: the release build cargo makes (or, without real
    // cargo, this test's binary).
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory");
    if real_cargo {
        std::os::unix::fs::symlink(target, scratch.path().join("target")).unwrap();
    } else {
        std::fs::create_dir_all(scratch.path().join("target/release")).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_lodestone"),
            scratch.path().join("target/release/lodestone"),
        )
        .unwrap();
    }
    let port = free_port();
    let server = ServerProcess::start(data.path(), port, &["--demo"]);
    server.connect().await;
    let prelude = prelude(port, real_cargo);

    let mut following: Vec<Following> = Vec::new();
    let mut ran = 0;
    let mut cargo_commands = 0;
    for s in &shown {
        // A block's streams end when the block does.
        let (done, open): (Vec<_>, Vec<_>) =
            following.into_iter().partition(|f| f.block != s.block);
        following = open;
        done.into_iter().for_each(check_stream);

        if NOT_RUN_HERE.iter().any(|(c, _)| *c == s.command) {
            continue;
        }
        ran += 1;
        if s.command.starts_with("cargo run --release -- ") {
            cargo_commands += 1;
        }
        let mut command = shell(&prelude, &s.command, scratch.path(), port);
        if s.command.contains("StreamLicenseUpdates") || s.command.contains("WatchAtRiskLines") {
            following.push(Following::start(s.block, s.command.clone(), command));
            // Let the stream subscribe before the next command writes.
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let started = Instant::now();
        let output = command.output().expect("bash runs");
        let (out, err) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        let shown_as = format!(
            "{}\nexit: {:?} after {:?}\nstdout: {out}\nstderr: {err}",
            s.command,
            output.status,
            started.elapsed()
        );
        if s.comment.contains("refused") {
            assert!(!output.status.success(), "should be refused: {shown_as}");
            assert!(err.contains("InvalidArgument"), "{shown_as}");
            continue;
        } else {
            assert!(output.status.success(), "failed: {shown_as}");
            assert!(
                !out.trim().is_empty() || !err.trim().is_empty(),
                "printed nothing: {shown_as}"
            );
        }
        if s.command.starts_with("curl ") {
            check_curl(&s.command, &out, &shown_as);
        }
        if s.command.ends_with(" list") {
            assert!(out.contains("lodestone.v1.RiskService"), "{shown_as}");
        }
        if s.command.contains("ListAtRiskLines") {
            assert!(out.contains("\"rootCausePath\""), "{shown_as}");
            if !s.command.contains("scenario") {
                check_table(&readme_table(&readme), &out);
                check_what_if(&readme, "as stored", &out);
            } else if s.command.contains("idled_lines") {
                check_what_if(&readme, "idled", &out);
            } else if s.command.contains("\"shipments\"") {
                check_what_if(&readme, "airfreight", &out);
            }
        }
        if s.command.contains("ListShipments") {
            assert!(out.contains("\"arrivesOn\""), "{shown_as}");
        }
        if s.command.contains("ListSupplierImpacts") {
            check_decisions(&readme, SUPPLIER_TABLE, &out, "impacts", &IMPACT_COLUMNS);
        }
        if s.command.contains("ListLicenseStakes") {
            check_decisions(&readme, LICENCE_TABLE, &out, "stakes", &STAKE_COLUMNS);
        }
        if s.command.contains("ListLineForecasts") {
            let pessimistic = s.command.contains("\"approval_probability\": 0.13");
            check_forecasts(&readme, &out, pessimistic);
        }
    }
    following.into_iter().for_each(check_stream);
    assert!(ran > 12);
    assert!(
        cargo_commands >= 3,
        "the README shows its data commands as `cargo run --release -- …` ({cargo_commands})"
    );
    // The files the data commands wrote are there.
    for file in ["network.jsonl", "backup.jsonl"] {
        let path = scratch.path().join(file);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{file} was written ({size} bytes)");
    }
    drop(server);
}

/// The JSON API's answers as the README tells them.
fn check_curl(command: &str, out: &str, shown_as: &str) {
    if command.contains("GetExposure") {
        let answer: serde_json::Value = serde_json::from_str(out).expect("curl prints JSON");
        assert!(
            answer["pools"].as_array().is_some_and(|p| !p.is_empty()),
            "{shown_as}"
        );
        assert!(
            answer.get("lines").is_none(),
            "the basic view has no lines: {shown_as}"
        );
    } else if command.contains("GetLicense") {
        assert!(out.starts_with("HTTP/1.1 404 Not Found"), "{shown_as}");
        assert!(
            out.contains(r#"{"code":5,"message":"license LIC-NOPE not found","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"NOT_FOUND","#),
            "{shown_as}"
        );
    } else {
        panic!("a curl command the README test does not check: {shown_as}");
    }
}

/// A row of the README's table of the demo's answer: the lines it names,
/// the day they stop, and the share of their rate built that day.
#[derive(Debug, PartialEq)]
struct Told {
    lines: Vec<String>,
    stop_date: String,
    percent: u32,
}

/// The rows of the table headed `| line | stops on | builds that day |`.
fn readme_table(readme: &str) -> Vec<Told> {
    let rows: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| line | stops on | builds that day |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(!rows.is_empty(), "the README has the demo's table");
    rows.iter()
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            Told {
                lines: cells[1]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(String::from)
                    .collect(),
                stop_date: cells[2].to_string(),
                percent: cells[3]
                    .trim_end_matches('%')
                    .parse()
                    .unwrap_or_else(|_| panic!("a percentage in {row}")),
            }
        })
        .collect()
}

/// The answer (grpcurl's JSON) is the table: the same lines at risk, no
/// other, each stopping on the day told with the share told.
fn check_table(table: &[Told], answer: &str) {
    let answer: serde_json::Value = serde_json::from_str(answer).expect("grpcurl prints JSON");
    let lines = answer["lines"].as_array().expect("lines");
    let mut told_ids: Vec<&str> = table
        .iter()
        .flat_map(|t| t.lines.iter().map(String::as_str))
        .collect();
    let mut answered: Vec<&str> = lines
        .iter()
        .filter(|l| l["atRisk"].as_bool() == Some(true))
        .map(|l| l["lineId"].as_str().unwrap())
        .collect();
    told_ids.sort();
    answered.sort();
    assert_eq!(answered, told_ids, "the lines at risk are the table's");
    for told in table {
        for id in &told.lines {
            let line = lines.iter().find(|l| l["lineId"] == id.as_str()).unwrap();
            assert_eq!(line["stopDate"], told.stop_date.as_str(), "{id}");
            let fraction = line["outputFraction"].as_f64().unwrap_or(0.0);
            assert_eq!(
                (fraction * 100.0).round() as u32,
                told.percent,
                "{id} builds {fraction} of its rate on its stop day"
            );
        }
    }
}

/// The README's table of what the planner could do, headed
/// `| what if | line | … | units to expedite |`: its rows for `what_if` (the
/// first column) hold the answer's lines, each stopping on the day told (or
/// `idled`), building the share told, and short of the units told of the
/// component told (the last of its root-cause path).
fn check_what_if(readme: &str, what_if: &str, answer: &str) {
    let answer: serde_json::Value = serde_json::from_str(answer).expect("grpcurl prints JSON");
    let lines = answer["lines"].as_array().expect("lines");
    let rows: Vec<Vec<&str>> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| what if | line | stops on |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| row.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cells| cells[1] == what_if)
        .collect();
    assert!(
        !rows.is_empty(),
        "the README's what-if table has rows for {what_if}"
    );
    for cells in rows {
        for id in cells[2].split('`').skip(1).step_by(2) {
            let line = lines
                .iter()
                .find(|l| l["lineId"] == id)
                .unwrap_or_else(|| panic!("{what_if}: {id} is in the answer"));
            let idled = line["idled"].as_bool() == Some(true);
            if cells[3] == "idled" {
                assert!(idled, "{what_if}: {id} is idled");
                assert_eq!(line["stopDate"], AS_OF, "{what_if}: {id}");
            } else {
                assert!(!idled, "{what_if}: {id} is not idled");
                assert_eq!(line["stopDate"], cells[3], "{what_if}: {id}");
            }
            let fraction = line["outputFraction"].as_f64().unwrap_or(0.0);
            assert_eq!(
                format!("{}%", (fraction * 100.0).round()),
                cells[4],
                "{what_if}: {id} builds {fraction} of its rate"
            );
            let mut told = cells[5].split('`');
            let units: f64 = told
                .next()
                .unwrap()
                .trim()
                .parse()
                .expect("units to expedite");
            let shortfall = line["shortfallUnits"].as_f64().unwrap_or(0.0);
            assert_eq!(shortfall.round(), units, "{what_if}: {id}'s shortfall");
            if let Some(component) = told.next() {
                let path = line["rootCausePath"].as_array().expect("a root cause");
                assert_eq!(
                    path.last().unwrap(),
                    component,
                    "{what_if}: {id}'s root cause"
                );
            }
        }
    }
}

/// The day the README's listings are asked as of: an idled line's stop date.
const AS_OF: &str = "2025-06-02";

/// The README's table of the demo's supplier impacts, and of its licence
/// stakes, by their headers.
const SUPPLIER_TABLE: &str = "| supplier | 30-day outage costs (units) |";
const LICENCE_TABLE: &str = "| licence | granted on | units at stake |";

/// How a table's columns (from the second) read from an answer's entries:
/// the JSON field, and how its value is written in the table.
#[derive(Clone, Copy)]
enum Cell {
    Rounded(&'static str),
    Text(&'static str),
    YesNo(&'static str),
    TwoDecimals(&'static str),
}

const IMPACT_COLUMNS: [Cell; 4] = [
    Cell::Rounded("unitsLost"),
    Cell::Rounded("timeToSurviveDays"),
    Cell::YesNo("critical"),
    Cell::TwoDecimals("riskExposureIndex"),
];
const STAKE_COLUMNS: [Cell; 3] = [
    Cell::Text("grantedOn"),
    Cell::Rounded("unitsAtStake"),
    Cell::Rounded("linesAtStake"),
];

/// The answer's first entries (grpcurl's JSON, under `list`) are the table
/// headed `header`, row by row: the id in backquotes, then each column.
fn check_decisions(readme: &str, header: &str, answer: &str, list: &str, columns: &[Cell]) {
    let answer: serde_json::Value = serde_json::from_str(answer).expect("grpcurl prints JSON");
    let entries = answer[list].as_array().expect("a listing");
    let rows: Vec<Vec<&str>> = readme
        .lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| row.split('|').map(str::trim).collect())
        .collect();
    assert!(!rows.is_empty(), "the README has the table {header}");
    assert!(entries.len() >= rows.len(), "{answer}");
    for (row, entry) in rows.iter().zip(entries) {
        let id = row[1].split('`').nth(1).expect("an id in backquotes");
        let id_field = if list == "impacts" {
            "supplierId"
        } else {
            "licenseId"
        };
        assert_eq!(entry[id_field], id, "{header}: row {row:?}");
        for (cell, column) in row[2..].iter().zip(columns) {
            // proto3 JSON leaves out zeros and false.
            let number = |field: &str| entry[field].as_f64().unwrap_or(0.0);
            let shown = match *column {
                Cell::Rounded(field) => format!("{}", number(field).round()),
                Cell::Text(field) => entry[field].as_str().unwrap_or("").to_string(),
                Cell::YesNo(field) => if entry[field].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                Cell::TwoDecimals(field) => format!("{:.2}", number(field)),
            };
            assert_eq!(*cell, shown, "{header}: {id}");
        }
    }
}

/// The README's table of the demo's forecasts, by its header.
const FORECAST_TABLE: &str = "| line | chance it stops (store's odds) |";

/// The forecast (grpcurl's JSON) is the table: the same lines, each with
/// the chance told (the store's odds, or 13% when `pessimistic`) and, with
/// the store's odds, the median stop date told.
fn check_forecasts(readme: &str, answer: &str, pessimistic: bool) {
    let answer: serde_json::Value = serde_json::from_str(answer).expect("grpcurl prints JSON");
    let forecasts = answer["forecasts"].as_array().expect("forecasts");
    let rows: Vec<Vec<&str>> = readme
        .lines()
        .skip_while(|l| !l.starts_with(FORECAST_TABLE))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| row.split('|').map(str::trim).collect())
        .collect();
    assert!(!rows.is_empty(), "the README has the forecast table");
    let as_of = lodestone::domain::date::parse_date("2025-06-02").unwrap();
    let mut told = 0;
    for row in &rows {
        for id in row[1].split('`').skip(1).step_by(2) {
            told += 1;
            let f = forecasts
                .iter()
                .find(|f| f["lineId"] == id)
                .unwrap_or_else(|| panic!("{id} is forecast: {answer}"));
            let chance = f["stopProbability"].as_f64().unwrap_or(0.0);
            let cell = if pessimistic { row[4] } else { row[2] };
            assert_eq!(format!("{:.0}%", chance * 100.0), cell, "{id}");
            if !pessimistic {
                let p50 = f["daysToStopP50"].as_i64().expect("a median stop day");
                let date = as_of + chrono::TimeDelta::days(p50);
                assert_eq!(date.to_string(), row[3], "{id}");
            }
        }
    }
    assert_eq!(
        told,
        forecasts.len(),
        "the lines that may stop are the table's"
    );
}

#[test]
fn the_readme_table_is_read_row_by_row() {
    let readme = "x\n| line | stops on | builds that day | why |\n|---|---|---:|---|\n\
                  | `A`, `B` (x) | 2025-06-26 | 0% | y |\n| `C` | 2025-07-06 | 48% | z |\n\nafter\n";
    assert_eq!(
        readme_table(readme),
        [
            Told {
                lines: vec!["A".into(), "B".into()],
                stop_date: "2025-06-26".into(),
                percent: 0
            },
            Told {
                lines: vec!["C".into()],
                stop_date: "2025-07-06".into(),
                percent: 48
            },
        ]
    );
    let answer = r#"{"lines": [
        {"lineId": "A", "atRisk": true, "stopDate": "2025-06-26"},
        {"lineId": "B", "atRisk": true, "stopDate": "2025-06-26", "outputFraction": 0.001},
        {"lineId": "C", "atRisk": true, "stopDate": "2025-07-06", "outputFraction": 0.48}]}"#;
    check_table(&readme_table(readme), answer);
    let wrong = answer.replace("0.48", "0.5");
    assert!(std::panic::catch_unwind(|| check_table(&readme_table(readme), &wrong)).is_err());
}

#[test]
fn commands_are_read_whole() {
    let readme = "text\n```sh\n# one\ngrpcurl -d '{\"a\":\n  1}' \\\n  x y\n\n# two\nls\n```\n```rust\nnot a command\n```\n";
    let shown = shown_commands(readme);
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0].command, "grpcurl -d '{\"a\":\n  1}' \\\n  x y");
    assert_eq!(shown[0].comment.trim(), "one");
    assert_eq!(shown[1].command, "ls");
}

#[test]
fn a_decision_table_is_held_to_the_answer() {
    let readme = "| supplier | 30-day outage costs (units) | time to survive (days) | critical | exposure index |\n\
                  |---|---:|---:|---|---:|\n\
                  | `A` Alpha (DE) | 100 | 4 | yes | 1.00 |\n\
                  | `B` Beta (FR) | 0 | 7 | no | 0.00 |\n";
    let answer = r#"{"impacts": [
        {"supplierId": "A", "unitsLost": 99.6, "timeToSurviveDays": 4, "critical": true, "riskExposureIndex": 1},
        {"supplierId": "B", "timeToSurviveDays": 7}]}"#;
    check_decisions(readme, SUPPLIER_TABLE, answer, "impacts", &IMPACT_COLUMNS);
    for wrong in [
        answer.replace("99.6", "98.4"),
        answer.replace("\"critical\": true", "\"critical\": false"),
        answer.replace("\"B\"", "\"C\""),
    ] {
        let held = std::panic::catch_unwind(|| {
            check_decisions(readme, SUPPLIER_TABLE, &wrong, "impacts", &IMPACT_COLUMNS)
        });
        assert!(held.is_err(), "{wrong}");
    }
}

#[test]
fn a_what_if_table_is_held_to_the_answer() {
    let readme = "| what if | line | stops on | builds that day | units to expedite |\n\
                  |---|---|---|---:|---:|\n\
                  | airfreight | `A`, `B` | 2025-06-20 | 40% | 1200 `MAG` |\n\
                  | idled | `C` | idled | 0% | 0 |\n";
    let answer = r#"{"lines": [
        {"lineId": "A", "stopDate": "2025-06-20", "outputFraction": 0.4, "shortfallUnits": 1200.2, "rootCausePath": ["M", "MAG"]},
        {"lineId": "B", "stopDate": "2025-06-20", "outputFraction": 0.4, "shortfallUnits": 1200.2, "rootCausePath": ["MAG"]},
        {"lineId": "C", "stopDate": "2025-06-02", "idled": true}]}"#;
    check_what_if(readme, "airfreight", answer);
    check_what_if(readme, "idled", answer);
    for (what_if, wrong) in [
        ("airfreight", answer.replace("1200.2", "1201.2")),
        ("airfreight", answer.replace("[\"MAG\"]", "[\"M\"]")),
        ("airfreight", answer.replace("0.4,", "0.5,")),
        ("airfreight", answer.replace("\"B\"", "\"D\"")),
        (
            "idled",
            answer.replace("\"idled\": true", "\"idled\": false"),
        ),
        ("idled", answer.replace("2025-06-02", "2025-06-03")),
    ] {
        let held = std::panic::catch_unwind(|| check_what_if(readme, what_if, &wrong));
        assert!(held.is_err(), "{what_if}: {wrong}");
    }
}
