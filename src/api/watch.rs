//! `WatchAtRiskLines` as a stream: the adapter between a client and the
//! watches of `crate::watch`.
//!
//! Each watch is a task that compares the newest answer of its question
//! with the last one it sent and sends the difference. While its client
//! does not read, the task waits on its one-message queue and the answers'
//! channel keeps only the newest, so what the client then gets is one
//! change merging everything it missed, and a watch holds at most two
//! answers whatever it misses.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::stream::StreamGauges;
use crate::domain::date::format_date;
use crate::domain::Error;
use crate::pb;
use crate::watch::{Answers, AtRiskChange, Evaluated, Question, Watches};

/// Watches served as streams, within the server's stream limit.
pub(super) struct WatchStreams {
    watches: Arc<Watches>,
    shutdown: CancellationToken,
    gauges: Arc<StreamGauges>,
}

impl WatchStreams {
    pub(super) fn new(
        watches: Arc<Watches>,
        shutdown: CancellationToken,
        gauges: Arc<StreamGauges>,
    ) -> WatchStreams {
        WatchStreams {
            watches,
            shutdown,
            gauges,
        }
    }

    /// Starts a watch of `question` (already valid), sending a heartbeat
    /// after `heartbeat` of silence. Refused when the server's streams are
    /// all taken.
    pub(super) fn watch(
        &self,
        question: Question,
        heartbeat: Duration,
    ) -> Result<WatchStream, Status> {
        let slot = self.gauges.acquire()?;
        let answers = self.watches.follow(question);
        // One message for the client, and room for the status that ends the
        // watch, even when the client does not read.
        let (tx, rx) = mpsc::channel(2);
        let watcher = Watcher {
            answers,
            tx,
            heartbeat,
            shutdown: self.shutdown.clone(),
            gauges: self.gauges.clone(),
            _slot: slot,
        };
        self.gauges.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(watcher.run());
        Ok(WatchStream { rx })
    }
}

/// What a watch sends its client.
type Message = Result<pb::WatchAtRiskLinesResponse, Status>;

/// The client's end of a watch.
pub(crate) struct WatchStream {
    rx: mpsc::Receiver<Message>,
}

impl Stream for WatchStream {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The task behind one watch.
struct Watcher {
    answers: Answers,
    tx: mpsc::Sender<Message>,
    heartbeat: Duration,
    shutdown: CancellationToken,
    gauges: Arc<StreamGauges>,
    /// Held for as long as the watch runs.
    _slot: OwnedSemaphorePermit,
}

/// Why a watch ends.
enum End {
    /// The client went away.
    Gone,
    /// The watch ends with this status.
    Failed(Status),
}

impl Watcher {
    async fn run(mut self) {
        if let Err(End::Failed(status)) = self.follow().await {
            // A client that does not read would hold the task for ever.
            let _ = self.tx.try_send(Err(status));
        }
        self.gauges.open.fetch_sub(1, Ordering::Relaxed);
    }

    async fn follow(&mut self) -> Result<(), End> {
        let mut sent = self.next_answer().await?;
        let tx = self.tx.clone();
        self.room(&tx).await?.send(Ok(snapshot(&sent)));
        let mut last_sent = Instant::now();
        // The newest revision looked at: every difference up to it is sent.
        let mut seen = sent.revision;
        loop {
            // Something to say: a newer answer, or a heartbeat.
            let beat = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Err(shutting_down()),
                () = self.tx.closed() => return Err(End::Gone),
                changed = self.answers.changed() => {
                    changed.map_err(|_| shutting_down())?;
                    false
                }
                () = tokio::time::sleep_until(last_sent + self.heartbeat) => true,
            };
            // Said once the client has taken what it was sent last, against
            // the newest answer then: what came meanwhile merges into one.
            let permit = self.room(&tx).await?;
            let newest = self.answers.borrow_and_update().clone();
            // Never a revision older than one reported.
            if let Some(newest) = newest.filter(|n| {
                n.revision >= sent.revision && (n.revision, n.as_of) != (sent.revision, sent.as_of)
            }) {
                seen = seen.max(newest.revision);
                if let Some(change) = newest.change_from(&sent) {
                    permit.send(Ok(change_message(&change)));
                    last_sent = Instant::now();
                    sent = newest;
                    continue;
                }
            }
            if beat {
                permit.send(Ok(heartbeat(seen)));
                last_sent = Instant::now();
            }
        }
    }

    /// Room for one message, once the client has taken the one before:
    /// the queue is empty (both its places free), so that one place stays
    /// for the status that ends the watch.
    async fn room<'a>(
        &self,
        tx: &'a mpsc::Sender<Message>,
    ) -> Result<mpsc::Permit<'a, Message>, End> {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Err(shutting_down()),
            permits = tx.reserve_many(2) => permits
                .map_err(|_| End::Gone)?
                .next()
                .ok_or(End::Gone),
        }
    }

    /// The first answer of the question, once its evaluator has one.
    async fn next_answer(&mut self) -> Result<Arc<Evaluated>, End> {
        loop {
            if let Some(answer) = self.answers.borrow_and_update().clone() {
                return Ok(answer);
            }
            tokio::select! {
                changed = self.answers.changed() => {
                    changed.map_err(|_| shutting_down())?;
                }
                () = self.tx.closed() => return Err(End::Gone),
                () = self.shutdown.cancelled() => return Err(shutting_down()),
            }
        }
    }
}

fn shutting_down() -> End {
    End::Failed(Error::ShuttingDown.into())
}

fn snapshot(answer: &Evaluated) -> pb::WatchAtRiskLinesResponse {
    pb::WatchAtRiskLinesResponse {
        event: Some(pb::watch_at_risk_lines_response::Event::Snapshot(
            pb::AtRiskSnapshot {
                revision: answer.revision,
                as_of: format_date(answer.as_of),
                lines: answer
                    .at_risk
                    .iter()
                    .cloned()
                    .map(pb::line_risk_to_pb)
                    .collect(),
            },
        )),
    }
}

fn change_message(change: &AtRiskChange) -> pb::WatchAtRiskLinesResponse {
    pb::WatchAtRiskLinesResponse {
        event: Some(pb::watch_at_risk_lines_response::Event::Change(
            pb::AtRiskChange {
                from_revision: change.from_revision,
                revision: change.revision,
                as_of: format_date(change.as_of),
                changed: change
                    .changed
                    .iter()
                    .cloned()
                    .map(pb::line_risk_to_pb)
                    .collect(),
                license_sequences: change.license_sequences.clone(),
                total_size: change.total_size as i32,
            },
        )),
    }
}

fn heartbeat(revision: u64) -> pb::WatchAtRiskLinesResponse {
    pb::WatchAtRiskLinesResponse {
        event: Some(pb::watch_at_risk_lines_response::Event::Heartbeat(
            pb::WatchHeartbeat {
                revision,
                sent_at: Some(prost_types::Timestamp::from(SystemTime::now())),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use parking_lot::Mutex;

    use super::*;
    use crate::domain::audit::{Attribution, Request};
    use crate::domain::date::{parse_date, Date};
    use crate::domain::record::LicenseStatus;
    use crate::domain::risk::report::at_risk_order_of;
    use crate::domain::risk::report::{line_report, LineRisk};
    use crate::domain::risk::Scenario;
    use crate::domain::write::{LicenseDecision, Revisions};
    use crate::engine::DEFAULT_CACHE_BYTES;
    use crate::engine::{Query, RiskEngine};
    use crate::network::Network;
    use crate::network::{Apply, Upsert};
    use crate::store::{SledConfig, SledStore};
    use crate::view::View;
    use crate::watch::{same, Clock};
    use pb::watch_at_risk_lines_response::Event;

    /// A calendar the test turns.
    struct TestClock {
        today: Mutex<Date>,
        turned: tokio::sync::Notify,
    }

    impl TestClock {
        fn turn(&self, day: &str) {
            *self.today.lock() = parse_date(day).unwrap();
            self.turned.notify_one();
        }
    }

    impl Clock for TestClock {
        fn today(&self) -> Date {
            *self.today.lock()
        }

        fn next_day(&self) -> futures_util::future::BoxFuture<'_, ()> {
            Box::pin(self.turned.notified())
        }
    }

    struct Setup {
        network: Arc<Network>,
        engine: Arc<RiskEngine>,
        watches: Arc<Watches>,
        streams: WatchStreams,
        clock: Arc<TestClock>,
        shutdown: CancellationToken,
        _dir: tempfile::TempDir,
    }

    /// The demonstration network on a fresh store, and watches of it.
    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&SledConfig {
            path: dir.path().join("data"),
            cache_capacity_bytes: 8 << 20,
        })
        .unwrap();
        let network = Arc::new(Network::open(Arc::new(store)).await.unwrap());
        assert!(crate::tools::demo::load_if_empty(&network).await.unwrap());
        let engine = Arc::new(RiskEngine::new(32, DEFAULT_CACHE_BYTES));
        let clock = Arc::new(TestClock {
            today: Mutex::new(parse_date("2025-06-02").unwrap()),
            turned: tokio::sync::Notify::new(),
        });
        let shutdown = CancellationToken::new();
        let watches = Watches::new(
            network.clone(),
            engine.clone(),
            clock.clone(),
            shutdown.clone(),
        );
        let streams = WatchStreams::new(
            watches.clone(),
            shutdown.clone(),
            Arc::new(StreamGauges::new(64)),
        );
        Setup {
            network,
            engine,
            watches,
            streams,
            clock,
            shutdown,
            _dir: dir,
        }
    }

    fn question(as_of: Option<&str>, plant: Option<&str>, scenario: Scenario) -> Question {
        Question {
            as_of: as_of.map(|d| parse_date(d).unwrap()),
            horizon_days: 90,
            scenario,
            plant: plant.map(String::from),
        }
    }

    async fn next(stream: &mut WatchStream) -> Event {
        use tokio_stream::StreamExt;
        tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("a message within a minute")
            .expect("the watch goes on")
            .expect("no error")
            .event
            .expect("an event")
    }

    /// Nothing arrives for a while.
    async fn silent(stream: &mut WatchStream) {
        use tokio_stream::StreamExt;
        let waited = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
        assert!(waited.is_err(), "nothing is sent: {waited:?}");
    }

    async fn decide(network: &Arc<Network>, id: &str, status: LicenseStatus) -> u64 {
        network
            .decide_license(
                LicenseDecision {
                    id: id.into(),
                    status: Some(status),
                    decided_on: None,
                    quantity_kg: None,
                    valid_from: None,
                    valid_until: None,
                    revision: 0,
                },
                Vec::new(),
                &Attribution::anonymous(Request::UpdateLicenseStatus),
            )
            .await
            .unwrap();
        network.view().revision
    }

    /// Waits until the evaluator of `question` has published `revision`.
    async fn evaluated(watches: &Watches, question: &Question, revision: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let latest = watches.evaluated_revision(question);
            if latest >= Some(revision) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "evaluated {revision} within a minute"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The lines at risk of `question` on `view`, as the model reports them.
    fn at_risk(
        engine: &RiskEngine,
        view: &View,
        question: &Question,
    ) -> BTreeMap<String, LineRisk> {
        let answer = engine.answer(
            view,
            &Query {
                as_of: question.as_of.unwrap(),
                horizon_days: question.horizon_days,
                scenario: question.scenario.clone(),
            },
        );
        at_risk_order_of(
            &answer.structure,
            &answer.evaluation,
            question.plant.as_deref(),
        )
        .into_iter()
        .map(|l| {
            let line = line_report(&answer.structure, &answer.evaluation, l);
            (line.line_id.clone(), line)
        })
        .collect()
    }

    /// Every change is the difference of two evaluations of its question at
    /// its `from_revision` and `revision`: decisions and a stock change, by
    /// several questions; a write that changes nothing for a question sends
    /// it nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_change_is_the_difference_of_two_evaluations() {
        let s = setup().await;
        let hopeful = Scenario {
            pending: crate::domain::risk::PendingAssumption::ApprovedAsExpected,
            ..Scenario::default()
        };
        let questions = [
            question(Some("2025-06-02"), None, Scenario::default()),
            question(Some("2025-06-02"), Some("GYOR"), Scenario::default()),
            question(Some("2025-06-02"), Some("VIGO"), hopeful),
        ];
        let mut views = BTreeMap::new();
        views.insert(s.network.view().revision, s.network.view());
        let mut streams = Vec::new();
        for q in &questions {
            let mut stream = s.streams.watch(q.clone(), Duration::from_secs(1)).unwrap();
            let Event::Snapshot(snapshot) = next(&mut stream).await else {
                panic!("a snapshot first")
            };
            let expected = at_risk(&s.engine, &views[&snapshot.revision], q);
            let ids: Vec<&str> = snapshot.lines.iter().map(|l| l.line_id.as_str()).collect();
            let mut wanted: Vec<&str> = expected.keys().map(String::as_str).collect();
            let mut got = ids.clone();
            got.sort();
            wanted.sort();
            assert_eq!(got, wanted);
            streams.push((stream, snapshot.revision));
        }
        // Decisions, a stock change, and a write nothing depends on.
        let mut writes = Vec::new();
        for (id, status) in [
            ("LIC-BTM-DY-0505", LicenseStatus::Approved),
            ("LIC-JXM-DY-0521", LicenseStatus::Rejected),
            ("LIC-SSM-DY-0530", LicenseStatus::Approved),
        ] {
            writes.push(decide(&s.network, id, status).await);
            views.insert(s.network.view().revision, s.network.view());
        }
        let mut part = match s.network.get(&crate::domain::record::RecordKey::new(
            crate::domain::Kind::Component,
            "HYBRID-MOTOR",
        )) {
            Ok(crate::domain::record::Record::Component(c)) => c,
            other => panic!("{other:?}"),
        };
        part.on_hand_units += 20_000.0;
        let upsert = |record| crate::domain::write::Incoming {
            origin: crate::domain::write::Origin::Records(0),
            record,
        };
        s.network
            .upsert(
                Upsert {
                    records: vec![upsert(crate::domain::record::Record::Component(part))],
                    malformed: Vec::new(),
                    revisions: Revisions::Ignored,
                    apply: Apply::Commit,
                },
                &Attribution::anonymous(Request::UpsertRecords),
            )
            .await
            .unwrap();
        views.insert(s.network.view().revision, s.network.view());
        let last = s.network.view().revision;
        for (q, (stream, start)) in questions.iter().zip(&mut streams) {
            let mut reported = *start;
            loop {
                match next(stream).await {
                    Event::Change(change) => {
                        assert_eq!(change.from_revision, reported, "changes follow on");
                        assert!(change.revision > reported);
                        let before = at_risk(&s.engine, &views[&change.from_revision], q);
                        let after = at_risk(&s.engine, &views[&change.revision], q);
                        let mut differ: Vec<&str> = after
                            .values()
                            .filter(|l| before.get(&l.line_id).is_none_or(|b| !same(b, l)))
                            .map(|l| l.line_id.as_str())
                            .collect();
                        differ.extend(
                            before
                                .keys()
                                .filter(|id| !after.contains_key(*id))
                                .map(String::as_str),
                        );
                        let mut got: Vec<&str> =
                            change.changed.iter().map(|l| l.line_id.as_str()).collect();
                        got.sort();
                        differ.sort();
                        assert_eq!(got, differ, "revision {}", change.revision);
                        assert!(!got.is_empty(), "a change changes something");
                        for line in &change.changed {
                            match after.get(&line.line_id) {
                                Some(now) => {
                                    assert_eq!(*line, pb::line_risk_to_pb(now.clone()))
                                }
                                None => assert!(!line.at_risk && line.stop_date.is_empty()),
                            }
                        }
                        assert_eq!(change.total_size as usize, after.len());
                        let heads = (
                            views[&change.from_revision].log_head,
                            views[&change.revision].log_head,
                        );
                        assert_eq!(
                            change.license_sequences,
                            (heads.0 + 1..=heads.1).collect::<Vec<_>>()
                        );
                        reported = change.revision;
                    }
                    Event::Heartbeat(beat) if beat.revision >= last => break,
                    Event::Heartbeat(_) => {}
                    Event::Snapshot(_) => panic!("one snapshot only"),
                }
            }
        }
        let (stream, _) = &mut streams[1];
        // Gyor's answer does not depend on the van line's licence.
        let nothing_for_gyor = decide(&s.network, "LIC-JXM-DY-0521", LicenseStatus::Approved).await;
        loop {
            match next(stream).await {
                Event::Heartbeat(beat) if beat.revision >= nothing_for_gyor => break,
                Event::Heartbeat(_) => {}
                other => panic!("nothing changed for Gyor: {other:?}"),
            }
        }
        s.shutdown.cancel();
    }

    /// A client that does not read gets one change merging all it missed,
    /// from the revision it was last sent to the newest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_does_not_read_gets_one_merged_change() {
        let s = setup().await;
        let q = question(Some("2025-06-02"), None, Scenario::default());
        let mut stream = s
            .streams
            .watch(q.clone(), Duration::from_secs(3600))
            .unwrap();
        let mut revisions = vec![s.network.view().revision];
        let mut heads = BTreeMap::new();
        heads.insert(s.network.view().revision, s.network.view().log_head);
        // The snapshot is queued (unread) before the decisions, unless the
        // machine is so loaded that the watch's task has not run yet.
        evaluated(&s.watches, &q, revisions[0]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (id, status) in [
            ("LIC-BTM-DY-0505", LicenseStatus::Approved),
            ("LIC-SSM-DY-0530", LicenseStatus::Approved),
            ("LIC-JXM-DY-0521", LicenseStatus::Approved),
        ] {
            revisions.push(decide(&s.network, id, status).await);
            heads.insert(s.network.view().revision, s.network.view().log_head);
        }
        evaluated(&s.watches, &q, *revisions.last().unwrap()).await;
        let Event::Snapshot(snapshot) = next(&mut stream).await else {
            panic!("a snapshot first")
        };
        let last = *revisions.last().unwrap();
        if snapshot.revision < last {
            // One change, from the snapshot to the newest revision.
            let Event::Change(change) = next(&mut stream).await else {
                panic!("then a change")
            };
            assert_eq!(change.from_revision, snapshot.revision);
            assert_eq!(change.revision, last, "{revisions:?}");
            assert_eq!(
                change.license_sequences,
                (heads[&snapshot.revision] + 1..=heads[&change.revision]).collect::<Vec<_>>()
            );
            if snapshot.revision == revisions[0] {
                assert_eq!(change.license_sequences.len(), 3, "{revisions:?}");
            }
        }
        silent(&mut stream).await;
        s.shutdown.cancel();
    }

    /// A question without `as_of` moves to the new day when the clock
    /// turns, at the same revision; one with `as_of` stays where it is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_question_without_as_of_moves_at_midnight() {
        let s = setup().await;
        let today = question(None, None, Scenario::default());
        let fixed = question(Some("2025-06-02"), None, Scenario::default());
        let mut moving = s.streams.watch(today, Duration::from_secs(3600)).unwrap();
        let mut staying = s.streams.watch(fixed, Duration::from_secs(3600)).unwrap();
        let Event::Snapshot(first) = next(&mut moving).await else {
            panic!("a snapshot first")
        };
        assert_eq!(first.as_of, "2025-06-02");
        let Event::Snapshot(_) = next(&mut staying).await else {
            panic!("a snapshot first")
        };
        s.clock.turn("2025-06-20");
        let Event::Change(change) = next(&mut moving).await else {
            panic!("the new day's answer differs")
        };
        assert_eq!(change.as_of, "2025-06-20");
        assert_eq!(
            (change.from_revision, change.revision),
            (first.revision, first.revision)
        );
        assert!(change.license_sequences.is_empty());
        let stopping_by_then = change.changed.iter().filter(|l| l.at_risk).count();
        assert!(stopping_by_then > 0);
        silent(&mut staying).await;
        s.shutdown.cancel();
    }

    /// At shutdown a watch ends with UNAVAILABLE, even one whose client
    /// does not read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_ends_a_watch_with_unavailable() {
        use tokio_stream::StreamExt;
        let s = setup().await;
        let q = question(Some("2025-06-02"), None, Scenario::default());
        let mut reading = s
            .streams
            .watch(q.clone(), Duration::from_secs(3600))
            .unwrap();
        let mut idle = s.streams.watch(q, Duration::from_secs(3600)).unwrap();
        assert!(matches!(next(&mut reading).await, Event::Snapshot(_)));
        s.shutdown.cancel();
        for stream in [&mut reading, &mut idle] {
            let mut ended = None;
            while let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_secs(60), stream.next()).await
            {
                if let Err(status) = message {
                    ended = Some(status.code());
                }
            }
            assert_eq!(ended, Some(tonic::Code::Unavailable));
        }
    }

    /// Watches of one question share one evaluation per revision, and the
    /// evaluator goes once nobody watches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watches_of_one_question_share_one_evaluation() {
        let s = setup().await;
        let q = question(Some("2025-06-02"), None, Scenario::default());
        let mut streams: Vec<WatchStream> = (0..20)
            .map(|_| {
                s.streams
                    .watch(q.clone(), Duration::from_secs(3600))
                    .unwrap()
            })
            .collect();
        for stream in &mut streams {
            assert!(matches!(next(stream).await, Event::Snapshot(_)));
        }
        assert_eq!(s.watches.questions(), 1);
        let before = s.engine.evaluations();
        let revision = decide(&s.network, "LIC-BTM-DY-0505", LicenseStatus::Approved).await;
        for stream in &mut streams {
            let Event::Change(change) = next(stream).await else {
                panic!("a change")
            };
            assert_eq!(change.revision, revision);
        }
        assert_eq!(
            s.engine.evaluations() - before,
            1,
            "one evaluation for twenty"
        );
        drop(streams);
        let deadline = Instant::now() + Duration::from_secs(60);
        while s.watches.questions() > 0 {
            assert!(Instant::now() < deadline, "the evaluator goes");
            // The evaluator notices when it next wakes: a write wakes it.
            decide(&s.network, "LIC-SSM-DY-0530", LicenseStatus::Approved).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.shutdown.cancel();
    }
}
