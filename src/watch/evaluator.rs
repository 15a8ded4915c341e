//! The evaluator of one watched question: evaluates it at each newer
//! revision (and each new day, without `as_of`) while anyone watches it,
//! and publishes the newest answer.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Evaluated, Latest, Question, Watches};
use crate::domain::date::Date;
use crate::domain::risk::report::line_report;
use crate::engine::{Abandon, Query};
use crate::view::View;

impl Watches {
    pub(super) async fn evaluate(self: Arc<Self>, question: Question, latest: Arc<Latest>) {
        let mut applied = self.network.applied_revision();
        let mut last: Option<(u64, Date)> = None;
        loop {
            applied.borrow_and_update();
            let view = self.network.view();
            let as_of = question.as_of.unwrap_or_else(|| self.clock.today());
            if last != Some((view.revision, as_of)) {
                match self.evaluate_at(view, as_of, &question).await {
                    Some(evaluated) => {
                        last = Some((evaluated.revision, evaluated.as_of));
                        latest.send_replace(Some(Arc::new(evaluated)));
                    }
                    None => {
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

    /// The question's answer on `view` for the day `as_of`, evaluated on a
    /// blocking thread.
    async fn evaluate_at(
        &self,
        view: Arc<View>,
        as_of: Date,
        question: &Question,
    ) -> Option<Evaluated> {
        let query = Query {
            as_of,
            horizon_days: question.horizon_days,
            scenario: question.scenario.clone(),
        };
        let engine = self.engine.clone();
        let plant = question.plant.clone();
        tokio::task::spawn_blocking(move || {
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
            })
        })
        .await
        .ok()
        .flatten()
    }
}
