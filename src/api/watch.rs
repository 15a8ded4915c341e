//! `WatchAtRiskLines`: one `ListAtRiskLines` question held open, its
//! answer's changes pushed as the store changes.
//!
//! Watches of the same question share one *evaluator*: a task that wakes
//! when the readers' revision moves (or, for a question without `as_of`, at
//! UTC midnight), evaluates the question once at the newest revision (a
//! burst of writes costs one evaluation; a licence update costs the rerun
//! of its pool's cone) and publishes the answer in a `watch` channel, which
//! keeps only the newest. Each watch is a task that compares the newest
//! answer with the last one it sent and sends the difference. While its
//! client does not read, the task waits on its one-message queue and the
//! channel keeps only the newest answer, so what the client then gets is one
//! change merging everything it missed, and a watch holds at most two
//! answers whatever it misses.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::stream::StreamGauges;
use crate::domain::date::{format_date, Date};
use crate::domain::risk::report::{line_report, LineRisk};
use crate::domain::risk::Scenario;
use crate::domain::Error;
use crate::engine::{Abandon, Answer, Query, RiskEngine};
use crate::network::Network;
use crate::pb;

/// Seconds of silence before a heartbeat when the client asks for none.
pub const DEFAULT_HEARTBEAT_SECONDS: u32 = 15;
pub const MAX_HEARTBEAT_SECONDS: u32 = 3600;

/// What day it is, and when the next one starts: the real UTC calendar, or
/// a test's.
pub trait Clock: Send + Sync {
    fn today(&self) -> Date;
    /// Resolves when the day changes.
    fn next_day(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The UTC calendar.
pub struct SystemClock;

impl Clock for SystemClock {
    fn today(&self) -> Date {
        chrono::Utc::now().date_naive()
    }

    fn next_day(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {
            let now = chrono::Utc::now();
            let midnight = (now.date_naive() + chrono::TimeDelta::days(1))
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc();
            let wait = (midnight - now).to_std().unwrap_or_default();
            // A moment past midnight, so that `today` has moved.
            tokio::time::sleep(wait + Duration::from_millis(5)).await;
        })
    }
}

/// A watched question: `as_of` `None` means today, whatever day that is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    pub as_of: Option<Date>,
    pub horizon_days: u32,
    pub scenario: Scenario,
    pub plant: Option<String>,
}

type Response = pb::WatchAtRiskLinesResponse;

/// Changes to an answer, by the (revision, day) they start from; `None`
/// when nothing differs.
type Changes = Mutex<HashMap<(u64, Date), Option<Arc<Response>>>>;

/// The question's answer at one revision.
pub struct Evaluated {
    pub revision: u64,
    /// The licence log's head at that revision.
    pub log_head: u64,
    pub as_of: Date,
    answer: Answer,
    /// The lines at risk in scope, in the at-risk order.
    pub at_risk: Vec<LineRisk>,
    /// The changes to this answer from earlier ones, by (revision, day)
    /// of the earlier: the watchers of a question mostly stand at the same
    /// one, and the first to ask works it out for all.
    changes: Changes,
    /// The snapshot of this answer, built once for every watch it starts.
    snapshot: std::sync::OnceLock<pb::WatchAtRiskLinesResponse>,
}

impl Evaluated {
    /// The change from `from` to this answer, worked out once.
    fn change_from(&self, from: &Evaluated) -> Option<pb::WatchAtRiskLinesResponse> {
        self.changes
            .lock()
            .entry((from.revision, from.as_of))
            .or_insert_with(|| change(from, self).map(Arc::new))
            .as_deref()
            .cloned()
    }
}

type Latest = watch::Sender<Option<Arc<Evaluated>>>;

/// Every watched question, with its evaluator's channel.
pub struct Watches {
    network: Arc<Network>,
    engine: Arc<RiskEngine>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    gauges: Arc<StreamGauges>,
    questions: Mutex<HashMap<Question, Arc<Latest>>>,
}

impl Watches {
    pub fn new(
        network: Arc<Network>,
        engine: Arc<RiskEngine>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
        gauges: Arc<StreamGauges>,
    ) -> Arc<Watches> {
        Arc::new(Watches {
            network,
            engine,
            clock,
            shutdown,
            gauges,
            questions: Mutex::new(HashMap::new()),
        })
    }

    /// How many distinct questions are watched now.
    pub fn questions(&self) -> usize {
        self.questions.lock().len()
    }

    /// Starts a watch of `question` (already valid), sending a heartbeat
    /// after `heartbeat` of silence. Refused when the server's streams are
    /// all taken.
    pub fn watch(
        self: &Arc<Self>,
        question: Question,
        heartbeat: Duration,
    ) -> Result<WatchStream, Status> {
        let slot = self.gauges.acquire()?;
        let answers = self.subscribe(question);
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

    /// The channel of `question`'s answers, its evaluator started if none
    /// runs.
    fn subscribe(self: &Arc<Self>, question: Question) -> watch::Receiver<Option<Arc<Evaluated>>> {
        let mut questions = self.questions.lock();
        if let Some(latest) = questions.get(&question) {
            return latest.subscribe();
        }
        let latest = Arc::new(watch::Sender::new(None));
        let answers = latest.subscribe();
        questions.insert(question.clone(), latest.clone());
        tokio::spawn(self.clone().evaluate(question, latest));
        answers
    }

    /// The evaluator of one question: evaluates it at each newer revision
    /// (and each new day, without `as_of`) while anyone watches it.
    async fn evaluate(self: Arc<Self>, question: Question, latest: Arc<Latest>) {
        let mut applied = self.network.applied_revision();
        let mut last: Option<(u64, Date)> = None;
        loop {
            applied.borrow_and_update();
            let view = self.network.view();
            let as_of = question.as_of.unwrap_or_else(|| self.clock.today());
            if last != Some((view.revision, as_of)) {
                let query = Query {
                    as_of,
                    horizon_days: question.horizon_days,
                    scenario: question.scenario.clone(),
                };
                let engine = self.engine.clone();
                let evaluated = tokio::task::spawn_blocking({
                    let view = view.clone();
                    let plant = question.plant.clone();
                    move || {
                        let answer = engine.answer_unless(&view, &query, &Abandon::new())?;
                        let at_risk = answer
                            .at_risk_order(plant.as_deref())
                            .iter()
                            .map(|&l| line_report(&answer.structure, &answer.evaluation, l))
                            .collect();
                        Some(Evaluated {
                            revision: view.revision,
                            log_head: view.log_head,
                            as_of,
                            answer,
                            at_risk,
                            changes: Mutex::new(HashMap::new()),
                            snapshot: std::sync::OnceLock::new(),
                        })
                    }
                })
                .await;
                match evaluated {
                    Ok(Some(evaluated)) => {
                        last = Some((evaluated.revision, evaluated.as_of));
                        latest.send_replace(Some(Arc::new(evaluated)));
                    }
                    _ => {
                        tracing::error!("a watched question could not be evaluated");
                        break;
                    }
                }
            }
            let dated = question.as_of.is_none();
            tokio::select! {
                changed = applied.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = async { self.clock.next_day().await }, if dated => {}
                () = latest.closed() => {
                    // Nobody watches any more, unless someone subscribed
                    // just now: that is decided under the lock.
                    let mut questions = self.questions.lock();
                    if latest.receiver_count() == 0 {
                        questions.remove(&question);
                        return;
                    }
                }
                () = self.shutdown.cancelled() => break,
            }
        }
        self.questions.lock().remove(&question);
    }
}

/// What a watch sends its client.
type Message = Result<pb::WatchAtRiskLinesResponse, Status>;

/// The client's end of a watch.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<pb::WatchAtRiskLinesResponse, Status>>,
}

impl Stream for WatchStream {
    type Item = Result<pb::WatchAtRiskLinesResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The task behind one watch.
struct Watcher {
    answers: watch::Receiver<Option<Arc<Evaluated>>>,
    tx: mpsc::Sender<Result<pb::WatchAtRiskLinesResponse, Status>>,
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
        let opening = sent.snapshot.get_or_init(|| snapshot(&sent)).clone();
        self.room(&tx).await?.send(Ok(opening));
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
                if let Some(message) = newest.change_from(&sent) {
                    permit.send(Ok(message));
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
                    .map(super::risk::line_to_pb)
                    .collect(),
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

/// Whether two reports of a line say the same: `output_fraction` to 9
/// decimal places, `units_lost` to 3, everything else exactly.
fn same(a: &LineRisk, b: &LineRisk) -> bool {
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round();
    round(a.output_fraction, 9) == round(b.output_fraction, 9)
        && round(a.units_lost, 3) == round(b.units_lost, 3)
        && LineRisk {
            output_fraction: 0.0,
            units_lost: 0.0,
            ..a.clone()
        } == LineRisk {
            output_fraction: 0.0,
            units_lost: 0.0,
            ..b.clone()
        }
}

/// The change from `from` to `to`, or `None` when no line in scope differs.
fn change(from: &Evaluated, to: &Evaluated) -> Option<pb::WatchAtRiskLinesResponse> {
    let before: HashMap<&str, &LineRisk> = from
        .at_risk
        .iter()
        .map(|l| (l.line_id.as_str(), l))
        .collect();
    let now: HashMap<&str, &LineRisk> =
        to.at_risk.iter().map(|l| (l.line_id.as_str(), l)).collect();
    let mut changed: Vec<LineRisk> = to
        .at_risk
        .iter()
        .filter(|l| before.get(l.line_id.as_str()).is_none_or(|b| !same(b, l)))
        .cloned()
        .collect();
    let mut recovered: Vec<&LineRisk> = from
        .at_risk
        .iter()
        .filter(|l| !now.contains_key(l.line_id.as_str()))
        .collect();
    recovered.sort_by(|a, b| a.line_id.cmp(&b.line_id));
    let structure = &to.answer.structure;
    for line in recovered {
        // As the model reports a line that is not at risk.
        match structure.line_index.get(&line.line_id) {
            Some(&l) => changed.push(line_report(structure, &to.answer.evaluation, l)),
            // The line itself is gone from the network: it runs no more.
            None => changed.push(LineRisk {
                line_id: line.line_id.clone(),
                plant: line.plant.clone(),
                days_to_stop: None,
                stop_date: None,
                output_fraction: 1.0,
                units_lost: 0.0,
                bottleneck_component_id: String::new(),
                root_cause_path: Vec::new(),
                blocking_pools: Vec::new(),
                blocking_license_ids: Vec::new(),
                blocking_supplier_ids: Vec::new(),
            }),
        }
    }
    if changed.is_empty() {
        return None;
    }
    Some(pb::WatchAtRiskLinesResponse {
        event: Some(pb::watch_at_risk_lines_response::Event::Change(
            pb::AtRiskChange {
                from_revision: from.revision,
                revision: to.revision,
                as_of: format_date(to.as_of),
                changed: changed.into_iter().map(super::risk::line_to_pb).collect(),
                license_sequences: (from.log_head + 1..=to.log_head).collect(),
                total_size: to.at_risk.len() as i32,
            },
        )),
    })
}

/// A question as a request asks it: `as_of` as given (`None` when empty).
pub fn question(query: &Query, as_of_given: bool, plant: String) -> Question {
    Question {
        as_of: as_of_given.then_some(query.as_of),
        horizon_days: query.horizon_days,
        scenario: query.scenario.clone(),
        plant: (!plant.is_empty()).then_some(plant),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::date::parse_date;
    use crate::domain::record::LicenseStatus;
    use crate::domain::risk::report::at_risk_order_of;
    use crate::domain::write::{LicenseDecision, Revisions};
    use crate::engine::DEFAULT_CACHE_BYTES;
    use crate::network::{Apply, Upsert};
    use crate::store::{SledConfig, SledStore};
    use crate::view::View;
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

        fn next_day(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(self.turned.notified())
        }
    }

    struct Setup {
        network: Arc<Network>,
        engine: Arc<RiskEngine>,
        watches: Arc<Watches>,
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
        assert!(crate::demo::load_if_empty(&network).await.unwrap());
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
            Arc::new(StreamGauges::new(64)),
        );
        Setup {
            network,
            engine,
            watches,
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
                "",
            )
            .await
            .unwrap();
        network.view().revision
    }

    /// Waits until the evaluator of `question` has published `revision`.
    async fn evaluated(watches: &Watches, question: &Question, revision: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let latest = watches
                .questions
                .lock()
                .get(question)
                .and_then(|l| l.borrow().as_ref().map(|e| e.revision));
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
            let mut stream = s.watches.watch(q.clone(), Duration::from_secs(1)).unwrap();
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
                "",
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
                                    assert_eq!(*line, super::super::risk::line_to_pb(now.clone()))
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
            .watches
            .watch(q.clone(), Duration::from_secs(3600))
            .unwrap();
        let mut revisions = vec![s.network.view().revision];
        let mut heads = BTreeMap::new();
        heads.insert(s.network.view().revision, s.network.view().log_head);
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
        let Event::Change(change) = next(&mut stream).await else {
            panic!("then a change")
        };
        assert_eq!(change.from_revision, snapshot.revision);
        assert_eq!(change.revision, *revisions.last().unwrap(), "{revisions:?}");
        assert_eq!(
            change.license_sequences,
            (heads[&snapshot.revision] + 1..=heads[&change.revision]).collect::<Vec<_>>()
        );
        assert_eq!(change.license_sequences.len(), 3, "{revisions:?}");
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
        let mut moving = s.watches.watch(today, Duration::from_secs(3600)).unwrap();
        let mut staying = s.watches.watch(fixed, Duration::from_secs(3600)).unwrap();
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
            .watches
            .watch(q.clone(), Duration::from_secs(3600))
            .unwrap();
        let mut idle = s.watches.watch(q, Duration::from_secs(3600)).unwrap();
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
                s.watches
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
