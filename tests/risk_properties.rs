//! Invariants of the risk model over random networks.

use lodestone::domain::date::{parse_date, Date};
use lodestone::domain::record::{
    BomItem, Component, ComponentInput, License, LicenseStatus, Material, MaterialContent,
    ProductionLine, Source, Supplier,
};
use lodestone::domain::risk::simulate::{evaluate, Evaluation};
use lodestone::domain::risk::structure::Structure;
use lodestone::domain::risk::{PendingAssumption, Scenario};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Net {
    materials: Vec<Material>,
    suppliers: Vec<Supplier>,
    components: Vec<Component>,
    lines: Vec<ProductionLine>,
    licenses: Vec<License>,
}

fn as_of() -> Date {
    parse_date("2025-06-02").unwrap()
}

fn day(offset: i64) -> Date {
    as_of() + chrono::TimeDelta::days(offset)
}

/// A random network: CN and DE suppliers, components whose inputs point to
/// earlier ones (so the graph is acyclic), licences of every status.
fn network() -> impl Strategy<Value = Net> {
    (2usize..6, 2usize..16, 1usize..5, 0usize..12, any::<u64>()).prop_map(
        |(suppliers, components, lines, licenses, seed)| {
            let mut state = seed | 1;
            let mut next = move |n: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % n.max(1)
            };
            let materials = vec![
                Material {
                    code: "DY".into(),
                    controlled_by: "CN".into(),
                    ..Default::default()
                },
                Material {
                    code: "HO".into(),
                    controlled_by: "CN".into(),
                    controlled_from: Some(day(20)),
                    ..Default::default()
                },
                Material {
                    code: "ND".into(),
                    ..Default::default()
                },
            ];
            let suppliers: Vec<Supplier> = (0..suppliers)
                .map(|s| Supplier {
                    id: format!("S{s}"),
                    country: if s % 3 == 2 { "DE" } else { "CN" }.into(),
                    ..Default::default()
                })
                .collect();
            let mut comps = Vec::new();
            for c in 0..components {
                let k = 1 + next(2) as usize;
                let first = next(suppliers.len() as u64) as usize;
                let sources = if next(6) == 0 {
                    vec![]
                } else {
                    (0..k)
                        .map(|i| Source {
                            supplier_id: format!("S{}", (first + i) % suppliers.len()),
                            share: 1.0 / k as f64,
                        })
                        .collect()
                };
                let inputs = if c > 0 && next(2) == 0 {
                    vec![ComponentInput {
                        component_id: format!("C{:02}", next(c as u64)),
                        quantity: 1.0 + next(2) as f64,
                    }]
                } else {
                    vec![]
                };
                comps.push(Component {
                    id: format!("C{c:02}"),
                    sources,
                    materials: vec![MaterialContent {
                        material: ["DY", "HO", "ND"][next(3) as usize].into(),
                        grams_per_unit: next(50) as f64,
                    }],
                    inputs,
                    on_hand_units: (next(20) * 100) as f64,
                    ..Default::default()
                });
            }
            let lines: Vec<ProductionLine> = (0..lines)
                .map(|l| ProductionLine {
                    id: format!("L{l}"),
                    plant: format!("P{}", l % 2),
                    units_per_day: 50.0 + next(200) as f64,
                    bom: vec![BomItem {
                        component_id: format!("C{:02}", next(components as u64)),
                        quantity: 1.0 + next(3) as f64,
                    }],
                    ..Default::default()
                })
                .collect();
            let licenses: Vec<License> = (0..licenses)
                .map(|i| License {
                    id: format!("LIC{i:02}"),
                    supplier_id: format!("S{}", next(suppliers.len() as u64)),
                    material: ["DY", "HO"][next(2) as usize].into(),
                    status: LicenseStatus::from_number(1 + next(4) as i32),
                    quantity_kg: 1.0 + next(300) as f64,
                    used_kg: 0.0,
                    submitted_on: Some(day(-(next(60) as i64))),
                    expected_decision_on: if next(2) == 0 {
                        Some(day(next(30) as i64))
                    } else {
                        None
                    },
                    valid_from: if next(2) == 0 {
                        Some(day(next(20) as i64))
                    } else {
                        None
                    },
                    valid_until: if next(2) == 0 {
                        Some(day(20 + next(60) as i64))
                    } else {
                        None
                    },
                    ..Default::default()
                })
                .collect();
            Net {
                materials,
                suppliers,
                components: comps,
                lines,
                licenses,
            }
        },
    )
}

fn run(net: &Net, scenario: &Scenario) -> Evaluation {
    let structure = Structure::build(&net.materials, &net.suppliers, &net.components, &net.lines);
    evaluate(&structure, &net.licenses, scenario, as_of(), 60)
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    (any::<bool>(), 0u32..30).prop_map(|(approved, delay)| Scenario {
        pending: if approved {
            PendingAssumption::ApprovedAsExpected
        } else {
            PendingAssumption::Denied
        },
        decision_delay_days: delay,
        overrides: vec![],
    })
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
