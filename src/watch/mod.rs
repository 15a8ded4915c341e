//! Watches of risk questions: one `ListAtRiskLines` question held open, its
//! answer's changes worked out as the store changes.
//!
//! Watches of the same question share one *evaluator* (`evaluator`): a
//! task that wakes when the readers' revision moves (or, for a question
//! without `as_of`, at the [`Clock`]'s midnight), evaluates the question once
//! at the newest revision (a burst of writes costs one evaluation; a licence
//! update costs the rerun of its pool's cone) and publishes the answer in a
//! `watch` channel, which keeps only the newest. Whoever follows a question
//! ([`Watches::follow`]) compares the newest answer with the last one it
//! reported and reports the difference ([`Evaluated::change_from`], worked
//! out once per pair of answers for every follower, in `diff`). The stream
//! a client reads is the api layer's (`api::watch`).

mod clock;
mod diff;
mod evaluator;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::date::Date;
use crate::domain::risk::report::LineRisk;
use crate::domain::risk::Scenario;
use crate::engine::{Answer, Query, RiskEngine};
use crate::network::Network;

pub(crate) use clock::{Clock, SystemClock};
#[cfg(test)]
pub(crate) use diff::same;
pub(crate) use diff::AtRiskChange;

/// A watched question: `as_of` `None` means today, whatever day that is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Question {
    pub as_of: Option<Date>,
    pub horizon_days: u32,
    pub scenario: Scenario,
    pub plant: Option<String>,
}

impl Question {
    /// A question as a request asks it: `as_of` as given (`None` when the
    /// request left it empty).
    pub(crate) fn asked(query: &Query, as_of_given: bool, plant: String) -> Question {
        Question {
            as_of: as_of_given.then_some(query.as_of),
            horizon_days: query.horizon_days,
            scenario: query.scenario.clone(),
            plant: (!plant.is_empty()).then_some(plant),
        }
    }
}

/// Changes to an answer, by the (revision, day) they start from; `None`
/// when nothing differs.
type Changes = Mutex<HashMap<(u64, Date), Option<Arc<AtRiskChange>>>>;

/// The question's answer at one revision.
pub(crate) struct Evaluated {
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
}

impl Evaluated {
    /// The change from `from` to this answer, worked out once.
    pub(crate) fn change_from(&self, from: &Evaluated) -> Option<Arc<AtRiskChange>> {
        self.changes
            .lock()
            .entry((from.revision, from.as_of))
            .or_insert_with(|| diff::change(from, self).map(Arc::new))
            .clone()
    }
}

/// The newest answer of a question, as its evaluator publishes it (`None`
/// until the first).
pub(crate) type Answers = watch::Receiver<Option<Arc<Evaluated>>>;
type Latest = watch::Sender<Option<Arc<Evaluated>>>;

/// Every watched question, with its evaluator's channel.
pub(crate) struct Watches {
    network: Arc<Network>,
    engine: Arc<RiskEngine>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    questions: Mutex<HashMap<Question, Arc<Latest>>>,
}

impl Watches {
    pub(crate) fn new(
        network: Arc<Network>,
        engine: Arc<RiskEngine>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Arc<Watches> {
        Arc::new(Watches {
            network,
            engine,
            clock,
            shutdown,
            questions: Mutex::new(HashMap::new()),
        })
    }

    /// How many distinct questions are watched now.
    #[cfg(test)]
    pub(crate) fn questions(&self) -> usize {
        self.questions.lock().len()
    }

    /// Follows `question` (already valid): the channel of its answers, its
    /// evaluator started if none runs. The evaluator goes once nobody
    /// follows the question any more; the channel closes at shutdown.
    pub(crate) fn follow(self: &Arc<Self>, question: Question) -> Answers {
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

    /// The revision of the newest answer of `question`, if it is watched.
    #[cfg(test)]
    pub(crate) fn evaluated_revision(&self, question: &Question) -> Option<u64> {
        self.questions
            .lock()
            .get(question)
            .and_then(|l| l.borrow().as_ref().map(|e| e.revision))
    }
}
