//! A history of what the clients of a fault run did and were told, and a
//! checker for it.
//!
//! Every operation is recorded with when it started and ended (nanoseconds
//! on one clock) and what came back: a write's revision, or a refusal that
//! says nothing was stored, or no answer at all (the server died, the
//! deadline passed); a read's record revision and value; each event a
//! subscriber was sent. After the run the store's whole licence log is read
//! and [`check`] looks for the anomalies these stores must never show:
//!
//! - an acknowledged write missing from the log (a lost write), or a write
//!   refused as "nothing stored" found in it;
//! - two acknowledged writes with one revision, or a write acknowledged
//!   before another began holding the larger revision (real-time order);
//! - a read asked for at least revision `m` (`x-lodestone-min-revision`)
//!   that saw an older state of a key than a write at or below `m` the
//!   client had seen acknowledged before the read began (a stale read), or a
//!   value the log never held at that revision;
//! - two writes preconditioned on the same revision of one key that both
//!   succeeded;
//! - a subscriber's events out of order, repeated, skipping a sequence, or
//!   not what the log holds at that sequence.
//!
//! Why not Elle, Knossos or Porcupine: the first two need a JVM and the
//! third is a Go library, and none is installable here from a package
//! registry the tests already use. They also solve a harder problem than
//! this one: they must search for an order of operations that explains the
//! history, because their stores do not say where in the order a write
//! landed. Here every acknowledged write returns its revision and every
//! event its sequence, so the order is given and each property above is a
//! direct check (sorting at most), with the anomaly named and located.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

/// What a write was told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Acknowledged at this revision.
    Ok(u64),
    /// Refused with a code that says nothing was stored (an invalid record,
    /// a failed precondition).
    Refused,
    /// No answer that says either way (unavailable, deadline, connection
    /// lost): the write may or may not be there.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// Set `key` to `value`, if `precondition` (a revision) still held.
    Write {
        key: String,
        value: f64,
        precondition: Option<u64>,
        outcome: Outcome,
    },
    /// Read `key` at revision `min_revision` at least; `seen` is the
    /// record's revision and value (`None`: no answer).
    Read {
        key: String,
        min_revision: u64,
        seen: Option<(u64, f64)>,
    },
    /// A subscriber was sent the log's event at `sequence`.
    Event {
        sequence: u64,
        revision: u64,
        key: String,
        value: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// Who did it: a writer, a reader, a subscriber.
    pub client: String,
    pub start: u64,
    pub end: u64,
    pub what: What,
}

/// Records the operations of a run, from any task.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            origin: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }
}

impl Recorder {
    /// Now, on the history's clock: take it before sending a request.
    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Records an operation that began at `start` and has just ended.
    pub fn record(&self, client: &str, start: u64, what: What) {
        let end = self.now();
        self.ops.lock().unwrap().push(Op {
            client: client.to_string(),
            start,
            end,
            what,
        });
    }

    /// Records that subscriber `who` has just been sent `update`.
    pub fn event(&self, who: &str, update: &lodestone::pb::LicenseUpdate) {
        let licence = update.license.clone().unwrap_or_default();
        self.record(
            who,
            self.now(),
            What::Event {
                sequence: update.sequence,
                revision: update.revision,
                key: licence.id,
                value: licence.quantity_kg,
            },
        );
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }

    /// Checks the recorded operations against the store's whole `log`,
    /// fails on any anomaly, and prints what was checked (`reads` says what
    /// the reads were).
    pub fn verify(&self, log: &[Logged], reads: &str) -> Summary {
        let ops = self.ops();
        let anomalies = check(&ops, log);
        assert!(
            anomalies.is_empty(),
            "the history checker found {anomalies:#?}"
        );
        let s = summary(&ops);
        println!(
            "history checked: {} writes acknowledged, {} refused (nothing stored), {} unanswered, {} {reads}, {} events; no anomaly",
            s.writes_acknowledged, s.writes_refused, s.writes_unknown, s.reads, s.events
        );
        s
    }
}

/// One event of the store's log, as read after the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub sequence: u64,
    pub revision: u64,
    pub key: String,
    pub value: f64,
}

/// What the checker found wrong, each located.
#[derive(Debug, Clone, PartialEq)]
pub enum Anomaly {
    LostWrite {
        client: String,
        key: String,
        revision: u64,
    },
    RefusedWriteStored {
        client: String,
        key: String,
        value: f64,
    },
    DuplicateRevision {
        revision: u64,
    },
    RealTimeOrder {
        earlier: u64,
        later: u64,
    },
    StaleRead {
        client: String,
        key: String,
        saw: u64,
        acknowledged: u64,
    },
    ReadNeverWritten {
        client: String,
        key: String,
        revision: u64,
        value: f64,
    },
    PreconditionTwice {
        key: String,
        revision: u64,
    },
    LogGap {
        after: u64,
        next: u64,
    },
    StreamGap {
        client: String,
        after: u64,
        next: u64,
    },
    StreamRepeat {
        client: String,
        sequence: u64,
    },
    StreamPhantom {
        client: String,
        sequence: u64,
    },
}

/// A history's figures, for the tables.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub writes_acknowledged: usize,
    pub writes_refused: usize,
    pub writes_unknown: usize,
    pub reads: usize,
    pub events: usize,
}

pub fn summary(ops: &[Op]) -> Summary {
    let mut s = Summary::default();
    for op in ops {
        match &op.what {
            What::Write { outcome, .. } => match outcome {
                Outcome::Ok(_) => s.writes_acknowledged += 1,
                Outcome::Refused => s.writes_refused += 1,
                Outcome::Unknown => s.writes_unknown += 1,
            },
            What::Read { seen: Some(_), .. } => s.reads += 1,
            What::Read { .. } => {}
            What::Event { .. } => s.events += 1,
        }
    }
    s
}

/// Checks `ops` against the store's whole log after the run (`log`, in
/// sequence order); empty when every promise held.
pub fn check(ops: &[Op], log: &[Logged]) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for pair in log.windows(2) {
        if pair[1].sequence != pair[0].sequence + 1 {
            found.push(Anomaly::LogGap {
                after: pair[0].sequence,
                next: pair[1].sequence,
            });
        }
    }
    let by_revision: HashMap<(u64, &str), f64> = log
        .iter()
        .map(|l| ((l.revision, l.key.as_str()), l.value))
        .collect();
    let by_sequence: HashMap<u64, &Logged> = log.iter().map(|l| (l.sequence, l)).collect();
    let stored_values: std::collections::HashSet<(&str, u64)> = log
        .iter()
        .map(|l| (l.key.as_str(), l.value.to_bits()))
        .collect();

    // Writes: lost, refused yet stored, revisions, preconditions.
    let mut acknowledged = Vec::new();
    let mut revisions: HashMap<u64, usize> = HashMap::new();
    let mut preconditioned: HashMap<(&str, u64), usize> = HashMap::new();
    for op in ops {
        let What::Write {
            key,
            value,
            precondition,
            outcome,
        } = &op.what
        else {
            continue;
        };
        match outcome {
            Outcome::Ok(revision) => {
                if by_revision.get(&(*revision, key.as_str())) != Some(value) {
                    found.push(Anomaly::LostWrite {
                        client: op.client.clone(),
                        key: key.clone(),
                        revision: *revision,
                    });
                }
                *revisions.entry(*revision).or_default() += 1;
                if let Some(p) = precondition {
                    *preconditioned.entry((key.as_str(), *p)).or_default() += 1;
                }
                acknowledged.push((op.start, op.end, *revision, key.as_str()));
            }
            Outcome::Refused => {
                if stored_values.contains(&(key.as_str(), value.to_bits())) {
                    found.push(Anomaly::RefusedWriteStored {
                        client: op.client.clone(),
                        key: key.clone(),
                        value: *value,
                    });
                }
            }
            Outcome::Unknown => {}
        }
    }
    let mut duplicated: Vec<u64> = revisions
        .into_iter()
        .filter_map(|(r, n)| (n > 1).then_some(r))
        .collect();
    duplicated.sort();
    found.extend(
        duplicated
            .into_iter()
            .map(|revision| Anomaly::DuplicateRevision { revision }),
    );
    let mut twice: Vec<_> = preconditioned
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((key, revision), _)| (key.to_string(), revision))
        .collect();
    twice.sort();
    found.extend(
        twice
            .into_iter()
            .map(|(key, revision)| Anomaly::PreconditionTwice { key, revision }),
    );

    // Real time: a write that ended before another began has the smaller
    // revision. Sweep the writes by start, with the largest revision of
    // those that ended before it.
    let mut by_end = acknowledged.clone();
    by_end.sort_by_key(|w| w.1);
    let mut by_start = acknowledged.clone();
    by_start.sort_by_key(|w| w.0);
    let (mut ended, mut largest) = (0, None::<u64>);
    for &(start, _, revision, _) in &by_start {
        while ended < by_end.len() && by_end[ended].1 < start {
            largest = largest.max(Some(by_end[ended].2));
            ended += 1;
        }
        if let Some(earlier) = largest.filter(|&l| l >= revision) {
            found.push(Anomaly::RealTimeOrder {
                earlier,
                later: revision,
            });
        }
    }

    // Reads: never older than an acknowledged write at or below the asked
    // revision that ended before the read began; never a value unwritten.
    let mut writes_by_key: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for &(_, end, revision, key) in &acknowledged {
        writes_by_key.entry(key).or_default().push((end, revision));
    }
    for op in ops {
        let What::Read {
            key,
            min_revision,
            seen: Some((saw, value)),
        } = &op.what
        else {
            continue;
        };
        let newest_due = writes_by_key
            .get(key.as_str())
            .into_iter()
            .flatten()
            .filter(|(end, revision)| *end < op.start && revision <= min_revision)
            .map(|(_, revision)| *revision)
            .max();
        if let Some(acknowledged) = newest_due.filter(|a| saw < a) {
            found.push(Anomaly::StaleRead {
                client: op.client.clone(),
                key: key.clone(),
                saw: *saw,
                acknowledged,
            });
        }
        // A record's revision is that of its last change, which the log
        // holds unless the record came from elsewhere (a seed, an import).
        if let Some(logged) = by_revision.get(&(*saw, key.as_str())) {
            if logged != value {
                found.push(Anomaly::ReadNeverWritten {
                    client: op.client.clone(),
                    key: key.clone(),
                    revision: *saw,
                    value: *value,
                });
            }
        }
    }

    // Streams: per subscriber, in the order it was sent them.
    let mut streams: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if matches!(op.what, What::Event { .. }) {
            streams.entry(op.client.as_str()).or_default().push(op);
        }
    }
    for (client, events) in streams {
        let mut last = None::<u64>;
        for op in events {
            let What::Event {
                sequence,
                revision,
                key,
                value,
            } = &op.what
            else {
                unreachable!()
            };
            match last {
                Some(l) if *sequence <= l => found.push(Anomaly::StreamRepeat {
                    client: client.to_string(),
                    sequence: *sequence,
                }),
                Some(l) if *sequence > l + 1 => found.push(Anomaly::StreamGap {
                    client: client.to_string(),
                    after: l,
                    next: *sequence,
                }),
                _ => {}
            }
            let matches = by_sequence
                .get(sequence)
                .is_some_and(|l| l.revision == *revision && l.key == *key && l.value == *value);
            if !matches {
                found.push(Anomaly::StreamPhantom {
                    client: client.to_string(),
                    sequence: *sequence,
                });
            }
            last = Some(last.map_or(*sequence, |l| l.max(*sequence)));
        }
    }
    found
}
