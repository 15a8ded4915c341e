//! The fault runs' history checker, tried on histories with known
//! anomalies: each must be found, named and located, and a clean history
//! must pass.

mod history;

use history::{check, Anomaly, Logged, Op, Outcome, What};

fn write(client: &str, start: u64, end: u64, key: &str, value: f64, outcome: Outcome) -> Op {
    Op {
        client: client.into(),
        start,
        end,
        what: What::Write {
            key: key.into(),
            value,
            precondition: None,
            outcome,
        },
    }
}

fn preconditioned(start: u64, key: &str, value: f64, on: u64, outcome: Outcome) -> Op {
    Op {
        what: What::Write {
            key: key.into(),
            value,
            precondition: Some(on),
            outcome,
        },
        ..write("w", start, start + 1, key, value, outcome)
    }
}

fn read(client: &str, start: u64, key: &str, min_revision: u64, seen: (u64, f64)) -> Op {
    Op {
        client: client.into(),
        start,
        end: start + 1,
        what: What::Read {
            key: key.into(),
            min_revision,
            seen: Some(seen),
        },
    }
}

fn event(client: &str, at: u64, logged: &Logged) -> Op {
    Op {
        client: client.into(),
        start: at,
        end: at,
        what: What::Event {
            sequence: logged.sequence,
            revision: logged.revision,
            key: logged.key.clone(),
            value: logged.value,
        },
    }
}

fn logged(sequence: u64, revision: u64, key: &str, value: f64) -> Logged {
    Logged {
        sequence,
        revision,
        key: key.into(),
        value,
    }
}

/// Three writes by two clients, a read after each, a subscriber that saw
/// all three: every promise kept.
fn clean() -> (Vec<Op>, Vec<Logged>) {
    let log = vec![
        logged(1, 10, "A", 1.0),
        logged(2, 11, "B", 2.0),
        logged(3, 12, "A", 3.0),
    ];
    let ops = vec![
        write("w1", 0, 10, "A", 1.0, Outcome::Ok(10)),
        write("w2", 5, 20, "B", 2.0, Outcome::Ok(11)),
        write("w1", 30, 40, "A", 3.0, Outcome::Ok(12)),
        write("w2", 30, 45, "B", 9.0, Outcome::Refused),
        write("w2", 50, 60, "B", 8.0, Outcome::Unknown),
        read("r", 41, "A", 12, (12, 3.0)),
        read("r", 21, "B", 11, (11, 2.0)),
        event("s", 15, &log[0]),
        event("s", 25, &log[1]),
        event("s", 45, &log[2]),
    ];
    (ops, log)
}

#[test]
fn a_history_that_keeps_every_promise_passes() {
    let (ops, log) = clean();
    assert_eq!(check(&ops, &log), vec![]);
    let summary = history::summary(&ops);
    assert_eq!(
        (
            summary.writes_acknowledged,
            summary.writes_refused,
            summary.writes_unknown
        ),
        (3, 1, 1)
    );
    assert_eq!((summary.reads, summary.events), (2, 3));
}

#[test]
fn a_lost_write_is_found() {
    let (ops, mut log) = clean();
    log.pop();
    let found = check(&ops, &log);
    assert!(
        found.contains(&Anomaly::LostWrite {
            client: "w1".into(),
            key: "A".into(),
            revision: 12
        }),
        "{found:?}"
    );
    // The subscriber was sent an event the store no longer has.
    assert!(
        found.contains(&Anomaly::StreamPhantom {
            client: "s".into(),
            sequence: 3
        }),
        "{found:?}"
    );
}

#[test]
fn a_refused_write_that_was_stored_is_found() {
    let (ops, mut log) = clean();
    log.push(logged(4, 13, "B", 9.0));
    assert_eq!(
        check(&ops, &log),
        vec![Anomaly::RefusedWriteStored {
            client: "w2".into(),
            key: "B".into(),
            value: 9.0
        }]
    );
}

#[test]
fn a_stale_read_is_found() {
    let (mut ops, log) = clean();
    // After the write at 12 was acknowledged, asked for 12, saw 10.
    ops.push(read("r", 50, "A", 12, (10, 1.0)));
    assert_eq!(
        check(&ops, &log),
        vec![Anomaly::StaleRead {
            client: "r".into(),
            key: "A".into(),
            saw: 10,
            acknowledged: 12
        }]
    );
    // Concurrent with the write, or asking for less, it may be older.
    let (mut ops, log) = clean();
    ops.push(read("r", 35, "A", 12, (10, 1.0)));
    ops.push(read("r", 50, "A", 11, (10, 1.0)));
    assert_eq!(check(&ops, &log), vec![]);
}

#[test]
fn a_read_of_a_value_never_written_is_found() {
    let (mut ops, log) = clean();
    ops.push(read("r", 50, "A", 12, (12, 4.0)));
    assert_eq!(
        check(&ops, &log),
        vec![Anomaly::ReadNeverWritten {
            client: "r".into(),
            key: "A".into(),
            revision: 12,
            value: 4.0
        }]
    );
}

#[test]
fn a_repeated_or_skipped_sequence_is_found() {
    let (mut ops, log) = clean();
    ops.push(event("s", 50, &log[2]));
    assert_eq!(
        check(&ops, &log),
        vec![Anomaly::StreamRepeat {
            client: "s".into(),
            sequence: 3
        }]
    );
    let (mut ops, log) = clean();
    ops.retain(|op| !matches!(&op.what, What::Event { sequence: 2, .. }));
    assert_eq!(
        check(&ops, &log),
        vec![Anomaly::StreamGap {
            client: "s".into(),
            after: 1,
            next: 3
        }]
    );
}

#[test]
fn a_gap_in_the_log_itself_is_found() {
    let (ops, mut log) = clean();
    log[2].sequence = 4;
    let found = check(&ops, &log);
    assert!(
        found.contains(&Anomaly::LogGap { after: 2, next: 4 }),
        "{found:?}"
    );
}

#[test]
fn one_revision_acknowledged_twice_is_found() {
    let (mut ops, mut log) = clean();
    // Concurrent with the first write at 12, so only the repeat is wrong.
    ops.push(write("w3", 35, 60, "C", 5.0, Outcome::Ok(12)));
    log.push(logged(4, 12, "C", 5.0));
    assert_eq!(
        check(&ops, &log),
        vec![Anomaly::DuplicateRevision { revision: 12 }]
    );
}

#[test]
fn a_write_ordered_before_one_acknowledged_earlier_is_found() {
    let (mut ops, mut log) = clean();
    // Began after the write at 12 was acknowledged, yet ordered before it.
    ops.push(write("w3", 50, 60, "C", 5.0, Outcome::Ok(9)));
    log.insert(0, logged(0, 9, "C", 5.0));
    assert_eq!(
        check(&ops, &log),
        vec![Anomaly::RealTimeOrder {
            earlier: 12,
            later: 9
        }]
    );
}

#[test]
fn two_writes_that_both_succeeded_on_one_revision_are_found() {
    let (mut ops, mut log) = clean();
    ops.push(preconditioned(50, "A", 6.0, 12, Outcome::Ok(13)));
    ops.push(preconditioned(50, "A", 7.0, 12, Outcome::Refused));
    log.push(logged(4, 13, "A", 6.0));
    assert_eq!(check(&ops, &log), vec![]);
    ops.push(preconditioned(52, "A", 7.0, 12, Outcome::Ok(14)));
    log.push(logged(5, 14, "A", 7.0));
    assert_eq!(
        check(&ops, &log),
        vec![
            Anomaly::RefusedWriteStored {
                client: "w".into(),
                key: "A".into(),
                value: 7.0
            },
            Anomaly::PreconditionTwice {
                key: "A".into(),
                revision: 12
            }
        ]
    );
}
