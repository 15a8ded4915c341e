//! The difference between two answers of a watched question, as the
//! contract defines it: which lines in scope report otherwise.

use std::collections::HashMap;

use super::Evaluated;
use crate::domain::date::Date;
use crate::domain::risk::report::{line_report, LineRisk};

/// What changed from one answer of a question to a later one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AtRiskChange {
    pub from_revision: u64,
    pub revision: u64,
    pub as_of: Date,
    /// The lines at risk now that report otherwise, in the at-risk order,
    /// then the lines no longer at risk, by id, as the model reports a line
    /// that is not at risk.
    pub changed: Vec<LineRisk>,
    /// The licence log's sequences of the revisions in between.
    pub license_sequences: Vec<u64>,
    /// Lines at risk now.
    pub total_size: usize,
}

/// Whether two reports of a line say the same: `output_fraction` to 9
/// decimal places, `units_lost` and `shortfall_units` to 3, everything
/// else exactly.
pub(crate) fn same(a: &LineRisk, b: &LineRisk) -> bool {
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round();
    let rest = |l: &LineRisk| LineRisk {
        output_fraction: 0.0,
        units_lost: 0.0,
        shortfall_units: 0.0,
        ..l.clone()
    };
    round(a.output_fraction, 9) == round(b.output_fraction, 9)
        && round(a.units_lost, 3) == round(b.units_lost, 3)
        && round(a.shortfall_units, 3) == round(b.shortfall_units, 3)
        && rest(a) == rest(b)
}

/// The change from `from` to `to`, or `None` when no line in scope differs.
pub(super) fn change(from: &Evaluated, to: &Evaluated) -> Option<AtRiskChange> {
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
            None => changed.push(LineRisk::running(&line.line_id, &line.plant)),
        }
    }
    if changed.is_empty() {
        return None;
    }
    Some(AtRiskChange {
        from_revision: from.revision,
        revision: to.revision,
        as_of: to.as_of,
        changed,
        license_sequences: (from.log_head + 1..=to.log_head).collect(),
        total_size: to.at_risk.len(),
    })
}
