//! Invariants of the risk model over random networks.

mod random_network;

use lodestone::domain::record::LicenseStatus;
use lodestone::domain::risk::report::line_report;
use lodestone::domain::risk::simulate::{evaluate, Evaluation};
use lodestone::domain::risk::structure::Structure;
use lodestone::domain::risk::Scenario;
use proptest::prelude::*;
use random_network::{as_of, network, scenarios, Net};

fn run(net: &Net, scenario: &Scenario) -> Evaluation {
    let structure = Structure::build(&net.materials, &net.suppliers, &net.components, &net.lines);
    evaluate(&structure, &net.licenses, [], scenario, as_of(), 60)
}

/// Whether `later` stops no earlier than `earlier` (never stopping is latest).
fn no_earlier(later: Option<u32>, earlier: Option<u32>) -> bool {
    match (later, earlier) {
        (_, None) => later.is_none(),
        (None, Some(_)) => true,
        (Some(l), Some(e)) => l >= e,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn output_fractions_stay_between_zero_and_one(net in network(), scenario in scenarios()) {
        for line in run(&net, &scenario).lines {
            prop_assert!((-1e-12..=1.0 + 1e-12).contains(&line.output_fraction), "{}", line.output_fraction);
            prop_assert!(line.units_lost >= -1e-9);
            prop_assert_eq!(line.days_to_stop.is_some(), line.bottleneck.is_some());
        }
    }

    #[test]
    fn more_approved_quantity_never_stops_a_line_earlier(net in network(), scenario in scenarios(), which in any::<prop::sample::Index>(), extra in 1.0f64..500.0) {
        let approved: Vec<usize> = net.licenses.iter().enumerate()
            .filter(|(_, l)| l.status == LicenseStatus::Approved).map(|(i, _)| i).collect();
        prop_assume!(!approved.is_empty());
        let mut more = net.clone();
        more.licenses[approved[which.index(approved.len())]].quantity_kg += extra;
        let before = run(&net, &scenario);
        let after = run(&more, &scenario);
        for (b, a) in before.lines.iter().zip(&after.lines) {
            prop_assert!(no_earlier(a.days_to_stop, b.days_to_stop), "{:?} -> {:?}", b.days_to_stop, a.days_to_stop);
        }
    }

    #[test]
    fn more_stock_never_stops_a_line_earlier(net in network(), scenario in scenarios(), which in any::<prop::sample::Index>(), extra in 1.0f64..5000.0) {
        let mut more = net.clone();
        let c = which.index(more.components.len());
        more.components[c].on_hand_units += extra;
        let before = run(&net, &scenario);
        let after = run(&more, &scenario);
        for (b, a) in before.lines.iter().zip(&after.lines) {
            prop_assert!(no_earlier(a.days_to_stop, b.days_to_stop), "{:?} -> {:?}", b.days_to_stop, a.days_to_stop);
        }
    }

    /// `shortfall_units` is what to expedite: on hand on day 0 besides the
    /// stock there, it keeps the root cause fully available every day.
    #[test]
    fn a_lines_shortfall_on_hand_keeps_its_root_cause_available_throughout(net in network(), scenario in scenarios()) {
        let structure = Structure::build(&net.materials, &net.suppliers, &net.components, &net.lines);
        let evaluation = evaluate(&structure, &net.licenses, [], &scenario, as_of(), 60);
        for l in 0..structure.lines.len() {
            let report = line_report(&structure, &evaluation, l as u32);
            let Some(cause) = report.root_cause_path.last() else {
                prop_assert_eq!(report.shortfall_units, 0.0);
                continue;
            };
            prop_assert!(report.shortfall_units > 0.0, "{report:?}");
            let mut expedited = net.clone();
            let component = expedited.components.iter_mut().find(|c| &c.id == cause).unwrap();
            component.on_hand_units += report.shortfall_units;
            let after = run(&expedited, &scenario);
            let k = structure.flat.position[structure.component_index[cause] as usize] as usize;
            let mut avail = vec![1.0; 60];
            after.history.avail.expand(k, &mut avail);
            prop_assert!(avail.iter().all(|&a| a >= 1.0 - 1e-9), "{cause}: {avail:?}");
        }
    }

    #[test]
    fn results_do_not_depend_on_the_order_records_arrive_in(net in network(), scenario in scenarios()) {
        let mut shuffled = net.clone();
        shuffled.materials.reverse();
        shuffled.suppliers.reverse();
        shuffled.components.reverse();
        shuffled.lines.reverse();
        shuffled.licenses.reverse();
        for c in &mut shuffled.components {
            c.sources.reverse();
            c.inputs.reverse();
            c.materials.reverse();
        }
        prop_assert_eq!(run(&net, &scenario), run(&shuffled, &scenario));
    }
}

/// The properties above would hold vacuously if no random line ever stopped.
#[test]
fn random_networks_stop_some_lines_and_spare_others() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut stopped, mut spared) = (0, 0);
    for _ in 0..200 {
        let net = network().new_tree(&mut runner).unwrap().current();
        for line in run(&net, &Scenario::default()).lines {
            if line.days_to_stop.is_some() {
                stopped += 1
            } else {
                spared += 1
            }
        }
    }
    assert!(
        stopped > 50 && spared > 50,
        "{stopped} stopped, {spared} spared"
    );
}
