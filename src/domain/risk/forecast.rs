//! Forecasts: how likely each line is to stop within the horizon, and when,
//! over sampled futures of the pending licences.
//!
//! In each sample every pending licence is granted or not at random, on a
//! random day, by a counter-based generator keyed by the request's seed, the
//! sample and the licence, so that two implementations agree sample by
//! sample. A sample differs from the *base* (every sampled licence denied)
//! only in the pools of the licences it grants, and of those only in the
//! pools whose covered days change; only those pools' cones are simulated
//! again. Samples run on every core, a chunk at a time, and their results
//! are folded into per-line tallies in sample order: memory stays bounded
//! whatever the number of samples.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use rayon::prelude::*;

use super::cone::{self, Base, Change, Cone, Scratch};
use super::simulate::{covers_otherwise, with_grants, Evaluation, Usable};
use super::structure::Structure;
use super::{day_number, LicenseOverride, Scenario, REVIEW_DAYS};
use crate::domain::date::Date;
use crate::domain::record::{License, LicenseStatus};

/// Samples when a request gives none, and the most it may ask.
pub const DEFAULT_SAMPLES: u32 = 1000;
pub const MAX_SAMPLES: u32 = 10_000;
/// Days over which a grant is spread when a request gives none, and the most.
pub const DEFAULT_SPREAD_DAYS: u32 = 30;
pub const MAX_SPREAD_DAYS: u32 = 365;

/// Samples simulated between two folds into the tallies.
const CHUNK: usize = 64;

/// FNV-1a of a licence id's UTF-8 bytes.
pub fn fnv1a(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The SplitMix64 finaliser.
pub fn mix(x: u64) -> u64 {
    let x1 = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x2 = (x1 ^ (x1 >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x2 ^ (x2 >> 31)
}

/// Draw `j` of sample `k` for the licence whose id hashes (FNV-1a) to
/// `id_hash`: a double in [0, 1).
pub fn draw(seed: u64, k: u64, id_hash: u64, j: u64) -> f64 {
    let x = seed
        ^ id_hash
        ^ (k.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ j.wrapping_mul(0xd1b5_4a32_d192_ed03);
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// What a forecast is asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Question {
    pub samples: u32,
    pub seed: u64,
    /// Used for every licence when above 0; else each material's own.
    pub approval_probability: f64,
    pub spread_days: u32,
    pub plant: Option<String>,
}

/// The approval probability used for one material, and the store's decided
/// licences behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct MaterialApproval {
    pub material: String,
    pub probability: f64,
    pub approved: u32,
    pub rejected: u32,
}

/// How likely one line is to stop, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct LineForecast {
    pub line_id: String,
    pub plant: String,
    pub stop_probability: f64,
    pub days_to_stop_p10: Option<u32>,
    pub days_to_stop_p50: Option<u32>,
    pub days_to_stop_p90: Option<u32>,
    pub expected_units_lost: f64,
}

/// A forecast: the lines in scope that may stop, in the model's order, and
/// the approval probabilities used.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    pub lines: Vec<LineForecast>,
    pub approvals: Vec<MaterialApproval>,
}

/// A pending licence a forecast samples.
struct Sampled<'a> {
    license: &'a License,
    /// Its pool, if it has one.
    pool: Option<u32>,
    id_hash: u64,
    /// Its expected decision day number, with the scenario's delay.
    decided: i32,
    probability: f64,
}

/// The licences a forecast samples under `scenario`: PENDING after its
/// overrides, with an expected decision or a submission date.
pub fn sampled_licences<'a>(
    licenses: impl IntoIterator<Item = &'a License>,
    scenario: &Scenario,
) -> Vec<(&'a License, Date)> {
    licenses
        .into_iter()
        .filter_map(|license| {
            let status = scenario
                .overrides
                .iter()
                .find(|o| o.license_id == license.id)
                .map_or(license.status, |o| o.status);
            if status != LicenseStatus::Pending {
                return None;
            }
            let expected = license.expected_decision_on.or_else(|| {
                license
                    .submitted_on
                    .map(|d| d + chrono::TimeDelta::days(REVIEW_DAYS))
            })?;
            Some((license, expected))
        })
        .collect()
}

/// The approval probability of each material with a sampled licence, in
/// material order: `fixed` when above 0, else (A + 1) / (A + R + 4) from the
/// stored statuses of every licence of the material.
pub fn approvals<'a>(
    licenses: impl IntoIterator<Item = &'a License>,
    sampled: &[(&License, Date)],
    fixed: f64,
) -> Vec<MaterialApproval> {
    let mut counts: BTreeMap<&str, (u32, u32)> = sampled
        .iter()
        .map(|(l, _)| (l.material.as_str(), (0, 0)))
        .collect();
    for license in licenses {
        if let Some((a, r)) = counts.get_mut(license.material.as_str()) {
            match license.status {
                LicenseStatus::Approved => *a += 1,
                LicenseStatus::Rejected => *r += 1,
                _ => {}
            }
        }
    }
    counts
        .into_iter()
        .map(|(material, (approved, rejected))| MaterialApproval {
            material: material.to_string(),
            probability: if fixed > 0.0 {
                fixed
            } else {
                f64::from(approved + 1) / f64::from(approved + rejected + 4)
            },
            approved,
            rejected,
        })
        .collect()
}

/// `scenario` with every sampled licence denied: the base of a forecast.
pub fn base_scenario(scenario: &Scenario, sampled: &[(&License, Date)]) -> Scenario {
    let mut base = scenario.clone();
    base.overrides
        .retain(|o| !sampled.iter().any(|(l, _)| l.id == o.license_id));
    base.overrides
        .extend(sampled.iter().map(|(l, _)| LicenseOverride {
            license_id: l.id.clone(),
            status: LicenseStatus::Rejected,
            effective_on: None,
        }));
    base
}

/// The per-line tallies of the samples folded so far.
struct Tally {
    stopped: Vec<u32>,
    /// By line: how many samples stopped it on each day.
    days: Vec<Vec<u32>>,
    lost: Vec<f64>,
}

/// One sample's outcome for the lines its change touched (the others did
/// what the base run did).
type SampleLines = Vec<(u32, Option<u32>, f64)>;

/// The forecast of `question` over `base` (a run of [`base_scenario`]),
/// `licenses` all the store's licences, `scenario` the request's. `None`
/// once `abandoned` is set.
pub fn forecast(
    base: Base<'_>,
    licenses: &[&License],
    scenario: &Scenario,
    question: &Question,
    abandoned: &AtomicBool,
) -> Option<Forecast> {
    let structure = base.structure;
    let evaluation: &Evaluation = base.evaluation;
    let horizon = evaluation.horizon_days;
    let sampled_dates = sampled_licences(licenses.iter().copied(), scenario);
    let approvals = approvals(
        licenses.iter().copied(),
        &sampled_dates,
        question.approval_probability,
    );
    let probability_of = |material: &str| {
        approvals
            .iter()
            .find(|a| a.material == material)
            .map_or(0.0, |a| a.probability)
    };
    let sampled: Vec<Sampled> = sampled_dates
        .iter()
        .map(|&(license, expected)| Sampled {
            license,
            pool: structure.pool_of(license).map(|p| p as u32),
            id_hash: fnv1a(&license.id),
            decided: day_number(expected) + scenario.decision_delay_days as i32,
            probability: probability_of(&license.material),
        })
        .collect();

    let lines = structure.lines.len();
    let mut tally = Tally {
        stopped: vec![0; lines],
        days: vec![vec![0; horizon as usize]; lines],
        lost: vec![0.0; lines],
    };
    let samples = question.samples as u64;
    let mut first = 0;
    while first < samples {
        if abandoned.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let chunk: Vec<u64> = (first..(first + CHUNK as u64).min(samples)).collect();
        first += chunk.len() as u64;
        let outcomes: Option<Vec<SampleLines>> = chunk
            .par_iter()
            .map_init(
                || Scratch::new(structure),
                |scratch, &k| sample(&base, scratch, abandoned, &sampled, scenario, question, k),
            )
            .collect();
        // Fold in sample order, each line's loss summed in that order.
        for touched in outcomes? {
            let mut j = 0;
            for l in 0..lines {
                let (days_to_stop, lost) = match touched.get(j) {
                    Some(&(line, d, lost)) if line as usize == l => {
                        j += 1;
                        (d, lost)
                    }
                    _ => {
                        let b = &evaluation.lines[l];
                        (b.days_to_stop, b.units_lost)
                    }
                };
                if let Some(d) = days_to_stop {
                    tally.stopped[l] += 1;
                    tally.days[l][d as usize] += 1;
                }
                tally.lost[l] += lost;
            }
        }
    }
    Some(Forecast {
        lines: report(structure, &tally, question),
        approvals,
    })
}

/// Sample `k`: which sampled licences are granted, on which day; the pools
/// whose covered days that changes; their cones simulated. The lines
/// simulated, by index.
fn sample(
    base: &Base<'_>,
    scratch: &mut Scratch,
    abandoned: &AtomicBool,
    sampled: &[Sampled],
    scenario: &Scenario,
    question: &Question,
    k: u64,
) -> Option<SampleLines> {
    let structure = base.structure;
    let evaluation = base.evaluation;
    let spread = f64::from(question.spread_days + 1);
    // The grants of this sample, by pool.
    let mut grants: BTreeMap<u32, Vec<(&License, LicenseOverride)>> = BTreeMap::new();
    for s in sampled {
        let Some(pool) = s.pool else {
            continue;
        };
        if draw(question.seed, k, s.id_hash, 1) >= s.probability {
            continue;
        }
        let day = s.decided + (draw(question.seed, k, s.id_hash, 2) * spread).floor() as i32;
        grants.entry(pool).or_default().push((
            s.license,
            LicenseOverride {
                license_id: s.license.id.clone(),
                status: LicenseStatus::Approved,
                effective_on: Some(super::date_of(day)),
            },
        ));
    }
    let mut changed: Vec<(u32, Vec<Usable>)> = Vec::new();
    for (pool, granted) in grants {
        // Denied in the base, the granted licences are not among its
        // usable ones: add them.
        let usable = with_grants(
            &base.licensing.usable[pool as usize],
            granted.iter().map(|(l, o)| (*l, o)),
            scenario,
        );
        let differs = covers_otherwise(
            structure,
            pool as usize,
            usable.clone(),
            base.outages,
            evaluation.as_of,
            evaluation.horizon_days,
            evaluation.history.uncovered_row(pool as usize),
        );
        if differs {
            changed.push((pool, usable));
        }
    }
    if changed.is_empty() {
        return Some(Vec::new());
    }
    let pools: Vec<u32> = changed.iter().map(|(p, _)| *p).collect();
    let cone = Cone::of_pools(structure, &pools, scratch);
    let outcome = cone::run(base, &cone, &Change::Licences(changed), scratch, abandoned)?;
    Some(
        outcome
            .into_iter()
            .map(|c| (c.line, c.days_to_stop, c.units_lost))
            .collect(),
    )
}

/// The lines in scope that stopped in some sample, in the model's order.
fn report(structure: &Structure, tally: &Tally, question: &Question) -> Vec<LineForecast> {
    let n = question.samples;
    let quantile = |l: usize, tenths: u32| -> Option<u32> {
        let rank = (u64::from(n) * u64::from(tenths)).div_ceil(10);
        let mut seen = 0u64;
        for (d, &count) in tally.days[l].iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                return Some(d as u32);
            }
        }
        // The rank falls among the samples in which the line ran on: H.
        None
    };
    let mut lines: Vec<LineForecast> = (0..structure.lines.len())
        .filter(|&l| tally.stopped[l] > 0)
        .filter(|&l| {
            question
                .plant
                .as_deref()
                .is_none_or(|p| structure.lines[l].plant == p)
        })
        .map(|l| LineForecast {
            line_id: structure.lines[l].id.clone(),
            plant: structure.lines[l].plant.clone(),
            stop_probability: f64::from(tally.stopped[l]) / f64::from(n),
            days_to_stop_p10: quantile(l, 1),
            days_to_stop_p50: quantile(l, 5),
            days_to_stop_p90: quantile(l, 9),
            expected_units_lost: tally.lost[l] / f64::from(n),
        })
        .collect();
    let rounded = |x: f64| (x * 1000.0).round();
    lines.sort_by(|a, b| {
        b.stop_probability
            .total_cmp(&a.stop_probability)
            .then_with(|| match (a.days_to_stop_p50, b.days_to_stop_p50) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| rounded(b.expected_units_lost).total_cmp(&rounded(a.expected_units_lost)))
            .then_with(|| a.line_id.cmp(&b.line_id))
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::risk::structure::LineNode;

    /// Published and hand-checked values of the generator's parts.
    #[test]
    fn the_generator_gives_the_values_of_its_definition() {
        // FNV-1a 64: the offset basis for "", and the published vector of "a".
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        // SplitMix64's finaliser: 0 stays 0; the golden gamma gives
        // SplitMix64's first output from seed 0.
        assert_eq!(mix(0), 0);
        assert_eq!(mix(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        // Draws worked from the definition, step by step, outside this code.
        let cases: [(u64, u64, &str, u64, f64); 4] = [
            (42, 0, "LIC-BTM-DY-1", 1, 0.60342042883384),
            (42, 0, "LIC-BTM-DY-1", 2, 0.4827488620669783),
            (7, 36, "LIC-SSM-DY-1", 1, 0.8315550559958322),
            (u64::MAX, 0, "LIC-NBM-TB-1", 1, 0.8245227732049722),
        ];
        for (seed, k, id, j, expected) in cases {
            assert_eq!(draw(seed, k, fnv1a(id), j), expected, "{seed} {k} {id} {j}");
        }
        for k in 0..1000 {
            let u = draw(1, k, fnv1a("X"), 1);
            assert!((0.0..1.0).contains(&u));
        }
    }

    /// The percentiles of `days` (one per sample; `None`: the line ran on)
    /// over a horizon of 100 days.
    fn percentiles(days: &[Option<u32>]) -> (Option<u32>, Option<u32>, Option<u32>, f64) {
        let structure = Structure {
            lines: vec![LineNode {
                id: "L".into(),
                plant: "P".into(),
                units_per_day: 1.0,
                idled: false,
                bom: vec![],
            }],
            ..Structure::default()
        };
        let mut tally = Tally {
            stopped: vec![0],
            days: vec![vec![0; 100]],
            lost: vec![0.0],
        };
        for d in days.iter().flatten() {
            tally.stopped[0] += 1;
            tally.days[0][*d as usize] += 1;
        }
        let question = Question {
            samples: days.len() as u32,
            seed: 0,
            approval_probability: 0.0,
            spread_days: 0,
            plant: None,
        };
        let lines = report(&structure, &tally, &question);
        let l = &lines[0];
        (
            l.days_to_stop_p10,
            l.days_to_stop_p50,
            l.days_to_stop_p90,
            l.stop_probability,
        )
    }

    /// The value at rank ceil(N × q) of the sorted days, the horizon (unset)
    /// for the samples that ran on, at the sizes where rounding matters.
    #[test]
    fn percentiles_take_the_rank_rounded_up() {
        assert_eq!(percentiles(&[Some(7)]), (Some(7), Some(7), Some(7), 1.0));
        // N = 2: ranks 1, 1, 2.
        assert_eq!(percentiles(&[Some(9), None]), (Some(9), Some(9), None, 0.5));
        assert_eq!(
            percentiles(&[Some(9), Some(3)]),
            (Some(3), Some(3), Some(9), 1.0)
        );
        // N = 9: ranks 1, 5, 9.
        let nine: Vec<Option<u32>> = (1..=9).map(Some).collect();
        assert_eq!(percentiles(&nine), (Some(1), Some(5), Some(9), 1.0));
        // N = 10: ranks 1, 5, 9; the tenth runs on.
        let mut ten = nine.clone();
        ten.push(None);
        assert_eq!(percentiles(&ten), (Some(1), Some(5), Some(9), 0.9));
        // N = 11: ranks 2, 6, 10.
        let mut eleven = ten.clone();
        eleven.push(Some(0));
        assert_eq!(
            percentiles(&eleven),
            (Some(1), Some(5), Some(9), 10.0 / 11.0)
        );
        // 40, 50, then nine that run on: rank 2 is 50, ranks 6 and 10 run on.
        let mut late: Vec<Option<u32>> = vec![None; 9];
        late.extend([Some(40), Some(50)]);
        assert_eq!(percentiles(&late), (Some(50), None, None, 2.0 / 11.0));
        // One run on fewer: 40, 50, 60 and eight that run on.
        late[0] = Some(60);
        assert_eq!(percentiles(&late), (Some(50), None, None, 3.0 / 11.0));
        // Ten of eleven stop by day 30: rank 10 is the last of them.
        let mostly: Vec<Option<u32>> = (0..11).map(|i| (i < 10).then_some(30)).collect();
        assert_eq!(
            percentiles(&mostly),
            (Some(30), Some(30), Some(30), 10.0 / 11.0)
        );
    }

    #[test]
    fn a_materials_odds_are_its_decided_licences_over_a_quarter_prior() {
        let license = |id: &str, material: &str, status| License {
            id: id.into(),
            material: material.into(),
            status,
            submitted_on: crate::domain::date::parse_date("2025-05-01"),
            ..License::default()
        };
        let all = vec![
            license("A1", "DY", LicenseStatus::Approved),
            license("A2", "DY", LicenseStatus::Approved),
            license("R1", "DY", LicenseStatus::Rejected),
            license("V1", "DY", LicenseStatus::Revoked),
            license("P1", "DY", LicenseStatus::Pending),
            license("P2", "TB", LicenseStatus::Pending),
            license("A3", "HO", LicenseStatus::Approved),
        ];
        let sampled = sampled_licences(&all, &Scenario::default());
        let ids: Vec<&str> = sampled.iter().map(|(l, _)| l.id.as_str()).collect();
        assert_eq!(ids, ["P1", "P2"]);
        let odds = approvals(&all, &sampled, 0.0);
        assert_eq!(odds.len(), 2, "only materials with a sampled licence");
        assert_eq!(
            (
                odds[0].material.as_str(),
                odds[0].approved,
                odds[0].rejected
            ),
            ("DY", 2, 1)
        );
        assert_eq!(odds[0].probability, 3.0 / 7.0);
        assert_eq!(
            (odds[1].material.as_str(), odds[1].probability),
            ("TB", 0.25)
        );
        let fixed = approvals(&all, &sampled, 0.13);
        assert!(fixed.iter().all(|a| a.probability == 0.13));
        assert_eq!(fixed[0].approved, 2, "the counts are still reported");
    }
}
