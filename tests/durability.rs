//! Acknowledged means on disk: the real binary runs under `strace -f`, a
//! client records licence decisions one after another, and the trace of the
//! server's system calls must show, before every byte the server sends on a
//! TCP socket, a completed `fsync`/`fdatasync` of every file in the data
//! directory written since its last sync (in the spirit of ALICE, "All File
//! Systems Are Not Created Equal", OSDI 2014). `sync_file_range`, which is
//! what sled's own flush uses, does not count: it reaches neither the disk's
//! cache nor the file's metadata.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, outside_tool};
use lodestone::pb;
use lodestone::pb::record_service_client::RecordServiceClient;
use tonic::transport::Endpoint;

/// Licence decisions the client records, each waiting for its answer.
const WRITES: usize = 40;

const WRITE_CALLS: &[&str] = &["write", "pwrite64", "writev", "pwritev", "pwritev2"];
const SYNC_CALLS: &[&str] = &["fsync", "fdatasync"];
const SEND_CALLS: &[&str] = &["sendto", "sendmsg"];

/// One system call in the trace: its name, the path of its first argument
/// (strace -yy writes `5</path/to/file>` and `9<TCP:[a->b]>`), and the lines where it started and
/// ended.
#[derive(Debug, Clone)]
struct Call {
    name: String,
    path: String,
    start: usize,
    end: usize,
}

/// The calls of an `strace -f -yy` trace, in order of their start.
fn calls(trace: &str) -> Vec<Call> {
    let fd_path = |args: &str| -> String {
        let Some(open) = args.find('<') else {
            return String::new();
        };
        let rest = &args[open + 1..];
        // A file's path ends at '>'; a socket's (`TCP:[a->b]`) is cut at its
        // arrow, which keeps the `TCP` that tells it apart.
        rest.find('>')
            .map(|end| rest[..end].to_string())
            .unwrap_or_default()
    };
    let mut done = Vec::new();
    let mut pending: HashMap<String, Call> = HashMap::new();
    for (index, line) in trace.lines().enumerate() {
        let Some((pid, rest)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let name = resumed.split_whitespace().next().unwrap_or_default();
            if let Some(mut call) = pending.remove(pid) {
                assert_eq!(call.name, name, "a resumed call matches its start: {line}");
                call.end = index;
                done.push(call);
            }
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        let call = Call {
            name: name.to_string(),
            path: fd_path(args),
            start: index,
            end: index,
        };
        if rest.contains("<unfinished ...>") {
            pending.insert(pid.to_string(), call);
        } else {
            done.push(call);
        }
    }
    done.sort_by_key(|c| c.start);
    done
}

/// What the trace shows: every send on a TCP socket made while a file in
/// `data` was written but not yet synced, and how many sends followed a
/// write to the data directory that was synced in time.
#[derive(Debug, Default)]
struct Verdict {
    unsynced_sends: Vec<String>,
    synced_acknowledgements: usize,
}

fn judge(calls: &[Call], data: &str) -> Verdict {
    // Events by line: a write counts when it has completed, a sync when it
    // has completed (and only for writes that completed before it began),
    // a send when it begins.
    enum Event<'a> {
        Written(&'a str),
        Synced(&'a str, usize),
        Sent(usize),
    }
    let mut events: Vec<(usize, Event)> = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let name = call.name.as_str();
        let in_data = call.path.starts_with(data);
        let socket = call.path.starts_with("TCP");
        if WRITE_CALLS.contains(&name) && in_data {
            events.push((call.end, Event::Written(&call.path)));
        } else if SYNC_CALLS.contains(&name) && in_data {
            events.push((call.end, Event::Synced(&call.path, call.start)));
        } else if (WRITE_CALLS.contains(&name) || SEND_CALLS.contains(&name)) && socket {
            events.push((call.start, Event::Sent(i)));
        }
    }
    events.sort_by_key(|(line, _)| *line);
    let mut written_at: HashMap<&str, usize> = HashMap::new();
    let mut dirty: BTreeSet<&str> = BTreeSet::new();
    let mut synced_since_send = false;
    let mut verdict = Verdict::default();
    for (line, event) in events {
        match event {
            Event::Written(path) => {
                written_at.insert(path, line);
                dirty.insert(path);
            }
            Event::Synced(path, began) => {
                if written_at.get(path).is_none_or(|&w| w < began) && dirty.remove(path) {
                    synced_since_send = true;
                }
            }
            Event::Sent(i) => {
                if !dirty.is_empty() {
                    verdict.unsynced_sends.push(format!(
                        "line {}: {} on {} while {dirty:?} held unsynced writes",
                        calls[i].start + 1,
                        calls[i].name,
                        calls[i].path
                    ));
                }
                if synced_since_send {
                    verdict.synced_acknowledgements += 1;
                    synced_since_send = false;
                }
            }
        }
    }
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_is_synced_to_disk_before_its_answer() {
    let Some(strace) = outside_tool("strace", &["-V"], "strace (apt-get install strace)") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trace_file = dir.path().join("trace.txt");
    let port = free_port();
    let mut server = Command::new(strace)
        .args(["-f", "-yy", "-qq", "-s", "0", "-o"])
        .arg(&trace_file)
        .arg(format!(
            "-etrace={}",
            [WRITE_CALLS, SYNC_CALLS, SEND_CALLS].concat().join(",")
        ))
        .arg(env!("CARGO_BIN_EXE_lodestone"))
        .args(["serve", "--demo", "--keepalive-seconds", "0", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .env("LODESTONE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("strace starts");

    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
    let channel = common::eventually(Duration::from_secs(120), || {
        let endpoint = endpoint.clone();
        async move { endpoint.connect().await.ok() }
    })
    .await;
    let mut records = RecordServiceClient::new(channel);
    for i in 0..WRITES {
        records
            .update_license_status(pb::UpdateLicenseStatusRequest {
                id: "LIC-BTM-DY-0505".into(),
                quantity_kg: 100.0 + i as f64,
                ..Default::default()
            })
            .await
            .expect("the decision is recorded");
    }
    drop(records);
    // SIGTERM to the server (strace's child), then strace ends with it.
    let traced = Command::new("pkill")
        .args(["-TERM", "-P", &server.id().to_string()])
        .status()
        .expect("pkill runs");
    assert!(traced.success(), "the traced server was found");
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the server stopped cleanly: {status:?}");

    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let calls = calls(&trace);
    let data = data.to_str().unwrap();
    assert!(
        calls
            .iter()
            .any(|c| c.name == "fdatasync" && c.path == format!("{data}/db")),
        "the trace shows the data file synced:\n{}",
        trace.lines().take(50).collect::<Vec<_>>().join("\n")
    );
    let verdict = judge(&calls, data);
    assert!(
        verdict.unsynced_sends.is_empty(),
        "sends before a sync:\n{}",
        verdict.unsynced_sends.join("\n")
    );
    assert!(
        verdict.synced_acknowledgements >= WRITES,
        "{} of {WRITES} acknowledgements followed a synced write",
        verdict.synced_acknowledgements
    );
}

#[test]
fn the_judge_sees_a_send_before_the_sync() {
    let trace = "\
10 pwrite64(5</d/db>, \"\"..., 100, 0) = 100
10 sync_file_range(5</d/db>, 0, 100, 7) = 0
11 writev(9<TCP:[1->2]>, [], 2) = 50
10 fdatasync(5</d/db> <unfinished ...>
12 pwrite64(5</d/db>, \"\"..., 100, 100) = 100
10 <... fdatasync resumed>) = 0
11 writev(9<TCP:[1->2]>, [], 2) = 50
10 fdatasync(5</d/db>) = 0
11 writev(9<TCP:[1->2]>, [], 2) = 50
";
    let calls = calls(trace);
    assert_eq!(calls.len(), 8);
    let verdict = judge(&calls, "/d");
    // The first send follows sync_file_range only; the second follows a sync
    // that began before the second write completed; the third is covered.
    assert_eq!(verdict.unsynced_sends.len(), 2, "{verdict:?}");
    assert!(verdict.unsynced_sends[0].starts_with("line 3: writev"));
    assert!(verdict.unsynced_sends[1].starts_with("line 7: writev"));
    assert_eq!(verdict.synced_acknowledgements, 1);
}
