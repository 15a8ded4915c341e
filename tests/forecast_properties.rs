//! Forecasts over random networks, against the model's own definition:
//! each sample's scenario simulated in full, and the limits the odds imply.

mod random_network;

use std::sync::atomic::AtomicBool;

use lodestone::domain::record::LicenseStatus;
use lodestone::domain::risk::cone::Base;
use lodestone::domain::risk::forecast::{
    approvals, base_scenario, draw, fnv1a, forecast, sampled_licences, Forecast, Question,
};
use lodestone::domain::risk::simulate::{evaluate, Evaluation, Licensing, Outages};
use lodestone::domain::risk::structure::Structure;
use lodestone::domain::risk::{date_of, day_number, LicenseOverride, PendingAssumption, Scenario};
use proptest::prelude::*;
use random_network::{as_of, for_network, network, scenarios, Net};

const HORIZON: u32 = 60;

/// Random networks with every other licence pending: what a forecast
/// samples.
fn pending_network() -> impl Strategy<Value = Net> {
    network().prop_map(|mut net| {
        for license in net.licenses.iter_mut().step_by(2) {
            license.status = LicenseStatus::Pending;
        }
        net
    })
}

fn structure(net: &Net) -> Structure {
    Structure::build(&net.materials, &net.suppliers, &net.components, &net.lines)
}

/// The forecast as the engine computes it, on `threads` threads.
fn forecast_of(net: &Net, scenario: &Scenario, question: &Question, threads: usize) -> Forecast {
    let structure = structure(net);
    let sampled = sampled_licences(&net.licenses, scenario);
    let base_scenario = base_scenario(scenario, &sampled);
    let evaluation = evaluate(
        &structure,
        &net.licenses,
        [],
        &base_scenario,
        as_of(),
        HORIZON,
    );
    let licensing = Licensing::new(&structure, &net.licenses, &base_scenario, as_of(), HORIZON);
    let outages = Outages::new(&structure, [], &base_scenario, as_of());
    let base = Base {
        structure: &structure,
        evaluation: &evaluation,
        licensing: &licensing,
        outages: &outages,
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| {
            let licenses: Vec<_> = net.licenses.iter().collect();
            forecast(base, &licenses, scenario, question, &AtomicBool::new(false)).unwrap()
        })
}

/// Per line: (stopped samples, sorted days to stop with H for none, the
/// sum of losses in sample order), from a full simulation of each sample's
/// scenario as the model defines it.
fn by_definition(net: &Net, scenario: &Scenario, question: &Question) -> Vec<(u32, Vec<u32>, f64)> {
    let structure = structure(net);
    let sampled = sampled_licences(&net.licenses, scenario);
    let odds = approvals(&net.licenses, &sampled, question.approval_probability);
    let mut tallies = vec![(0, Vec::new(), 0.0); structure.lines.len()];
    for k in 0..u64::from(question.samples) {
        let mut sample = scenario.clone();
        for (license, expected) in &sampled {
            let p = odds
                .iter()
                .find(|a| a.material == license.material)
                .unwrap()
                .probability;
            let h = fnv1a(&license.id);
            let granted = draw(question.seed, k, h, 1) < p;
            let offset =
                (draw(question.seed, k, h, 2) * f64::from(question.spread_days + 1)).floor();
            let day = day_number(*expected) + scenario.decision_delay_days as i32 + offset as i32;
            sample.overrides.retain(|o| o.license_id != license.id);
            sample.overrides.push(LicenseOverride {
                license_id: license.id.clone(),
                status: if granted {
                    LicenseStatus::Approved
                } else {
                    LicenseStatus::Rejected
                },
                effective_on: granted.then(|| date_of(day)),
            });
        }
        let evaluation: Evaluation =
            evaluate(&structure, &net.licenses, [], &sample, as_of(), HORIZON);
        for (l, line) in evaluation.lines.iter().enumerate() {
            let tally = &mut tallies[l];
            tally.0 += u32::from(line.days_to_stop.is_some());
            tally.1.push(line.days_to_stop.unwrap_or(HORIZON));
            tally.2 += line.units_lost;
        }
    }
    for tally in &mut tallies {
        tally.1.sort_unstable();
    }
    tallies
}

fn question(samples: u32, seed: u64, approval_probability: f64, spread_days: u32) -> Question {
    Question {
        samples,
        seed,
        approval_probability,
        spread_days,
        plant: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    /// Sample by sample, the forecast is what full simulations of each
    /// sample's scenario give, though it simulates only changed cones.
    #[test]
    fn a_forecast_is_what_full_simulations_of_its_samples_give(
        net in pending_network(),
        scenario in scenarios(),
        samples in 1u32..12,
        seed in any::<u64>(),
        odds in prop_oneof![Just(0.0), 0.05f64..1.0],
        spread in 0u32..40,
    ) {
        let scenario = for_network(scenario, &net);
        let question = question(samples, seed, odds, spread);
        let forecast = forecast_of(&net, &scenario, &question, 2);
        let expected = by_definition(&net, &scenario, &question);
        let structure = structure(&net);
        let n = samples as usize;
        let mut listed = 0;
        for (l, (stopped, days, lost)) in expected.iter().enumerate() {
            let id = &structure.lines[l].id;
            let found = forecast.lines.iter().find(|f| &f.line_id == id);
            if *stopped == 0 {
                prop_assert!(found.is_none(), "{} never stops", id);
                continue;
            }
            listed += 1;
            let f = found.unwrap();
            prop_assert_eq!(f.stop_probability, f64::from(*stopped) / f64::from(samples));
            let at = |t: usize| Some(days[(n * t).div_ceil(10) - 1]).filter(|&d| d < HORIZON);
            prop_assert_eq!((f.days_to_stop_p10, f.days_to_stop_p50, f.days_to_stop_p90), (at(1), at(5), at(9)));
            prop_assert!((f.expected_units_lost - lost / f64::from(samples)).abs() <= 1e-9 * lost.abs().max(1.0));
        }
        prop_assert_eq!(listed, forecast.lines.len());
        // The model's order.
        for pair in forecast.lines.windows(2) {
            prop_assert!(pair[0].stop_probability >= pair[1].stop_probability);
        }
    }

    /// Granted for sure, on the expected day: the all-granted-as-expected
    /// answer. Almost never granted: the all-denied answer. The same seed
    /// gives the same forecast on one thread or several.
    #[test]
    fn the_odds_at_their_limits_give_the_certain_answers(
        net in pending_network(),
        scenario in scenarios(),
        seed in any::<u64>(),
    ) {
        let scenario = for_network(scenario, &net);
        let structure = structure(&net);
        for (odds, pending) in [
            (1.0, PendingAssumption::ApprovedAsExpected),
            (1e-12, PendingAssumption::Denied),
        ] {
            let certain = Scenario { pending, ..scenario.clone() };
            let answer = evaluate(&structure, &net.licenses, [], &certain, as_of(), HORIZON);
            let forecast = forecast_of(&net, &scenario, &question(5, seed, odds, 0), 2);
            for (l, line) in answer.lines.iter().enumerate() {
                let found = forecast.lines.iter().find(|f| f.line_id == structure.lines[l].id);
                match line.days_to_stop {
                    None => prop_assert!(found.is_none()),
                    Some(d) => {
                        let f = found.unwrap();
                        prop_assert_eq!(f.stop_probability, 1.0);
                        prop_assert_eq!((f.days_to_stop_p10, f.days_to_stop_p50, f.days_to_stop_p90), (Some(d), Some(d), Some(d)));
                        prop_assert!((f.expected_units_lost - line.units_lost).abs() <= 1e-9 * line.units_lost.max(1.0));
                    }
                }
            }
        }
        let q = question(7, seed, 0.0, 15);
        let one = forecast_of(&net, &scenario, &q, 1);
        prop_assert_eq!(&one, &forecast_of(&net, &scenario, &q, 3));
        for f in &one.lines {
            prop_assert!(f.stop_probability > 0.0 && f.stop_probability <= 1.0);
            let h = |d: Option<i32>| d.unwrap_or(i32::MAX);
            let (p10, p50, p90) = (f.days_to_stop_p10.map(|d| d as i32), f.days_to_stop_p50.map(|d| d as i32), f.days_to_stop_p90.map(|d| d as i32));
            prop_assert!(h(p10) <= h(p50) && h(p50) <= h(p90));
        }
    }
}

/// The properties above would hold vacuously if no sample ever changed a
/// line's fate.
#[test]
fn random_forecasts_put_some_lines_in_the_balance() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut uncertain, mut spread) = (0, 0);
    for _ in 0..200 {
        let net = pending_network().new_tree(&mut runner).unwrap().current();
        let forecast = forecast_of(&net, &Scenario::default(), &question(20, 3, 0.5, 10), 2);
        for f in &forecast.lines {
            uncertain += usize::from(f.stop_probability < 1.0);
            spread += usize::from(f.days_to_stop_p10 != f.days_to_stop_p90);
        }
    }
    assert!(
        uncertain > 10 && spread > 10,
        "{uncertain} lines in the balance, {spread} with a spread of stop days"
    );
}
