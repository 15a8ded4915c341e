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

/// A component's choices: sources (none, or one or two suppliers from a
/// first one on), an input (an earlier component) or none, its material,
/// grams and stock.
type ComponentChoice = (
    Option<(usize, usize)>,
    Option<(usize, u32)>,
    usize,
    u32,
    u32,
);
/// A licence's choices: supplier, material, status, quantity, days since
/// submission, expected decision day, first valid day, days valid after 20.
type LicenseChoice = (
    usize,
    usize,
    i32,
    u32,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A random network: CN and DE suppliers, components whose inputs point to
/// earlier ones (so the graph is acyclic), licences of every status. Built
/// from proptest's own strategies, so that a failure shrinks.
fn network() -> impl Strategy<Value = Net> {
    (2usize..6, 2usize..16, 1usize..5, 0usize..12)
        .prop_flat_map(|(suppliers, components, lines, licenses)| {
            let component = |c: usize| -> BoxedStrategy<ComponentChoice> {
                (
                    prop_oneof![
                        1 => Just(None),
                        5 => (1usize..3, 0..suppliers).prop_map(Some),
                    ],
                    proptest::option::of((0..c.max(1), 1u32..3))
                        .prop_map(move |input| input.filter(|_| c > 0)),
                    0usize..3,
                    0u32..50,
                    0u32..20,
                )
                    .boxed()
            };
            let license: BoxedStrategy<LicenseChoice> = (
                0..suppliers,
                0usize..2,
                1i32..5,
                1u32..301,
                0i64..60,
                proptest::option::of(0i64..30),
                proptest::option::of(0i64..20),
                proptest::option::of(0i64..60),
            )
                .boxed();
            (
                Just(suppliers),
                (0..components).map(component).collect::<Vec<_>>(),
                proptest::collection::vec((50u32..250, 1u32..4, 0..components), lines),
                proptest::collection::vec(license, licenses),
            )
        })
        .prop_map(|(suppliers, components, lines, licenses)| {
            build(suppliers, &components, &lines, &licenses)
        })
}

fn build(
    suppliers: usize,
    components: &[ComponentChoice],
    lines: &[(u32, u32, usize)],
    licenses: &[LicenseChoice],
) -> Net {
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
    let suppliers_list: Vec<Supplier> = (0..suppliers)
        .map(|s| Supplier {
            id: format!("S{s}"),
            country: if s % 3 == 2 { "DE" } else { "CN" }.into(),
            ..Default::default()
        })
        .collect();
    let components_list = components
        .iter()
        .enumerate()
        .map(|(c, (sources, input, material, grams, stock))| Component {
            id: format!("C{c:02}"),
            sources: sources
                .map(|(k, first)| {
                    (0..k)
                        .map(|i| Source {
                            supplier_id: format!("S{}", (first + i) % suppliers),
                            share: 1.0 / k as f64,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            materials: vec![MaterialContent {
                material: ["DY", "HO", "ND"][*material].into(),
                grams_per_unit: f64::from(*grams),
            }],
            inputs: input
                .iter()
                .map(|(of, quantity)| ComponentInput {
                    component_id: format!("C{of:02}"),
                    quantity: f64::from(*quantity),
                })
                .collect(),
            on_hand_units: f64::from(stock * 100),
            ..Default::default()
        })
        .collect();
    let lines_list = lines
        .iter()
        .enumerate()
        .map(|(l, (rate, quantity, part))| ProductionLine {
            id: format!("L{l}"),
            plant: format!("P{}", l % 2),
            units_per_day: f64::from(*rate),
            bom: vec![BomItem {
                component_id: format!("C{part:02}"),
                quantity: f64::from(*quantity),
            }],
            ..Default::default()
        })
        .collect();
    let licenses_list = licenses
        .iter()
        .enumerate()
        .map(
            |(i, (supplier, material, status, quantity, submitted, expected, from, until))| {
                License {
                    id: format!("LIC{i:02}"),
                    supplier_id: format!("S{supplier}"),
                    material: ["DY", "HO"][*material].into(),
                    status: LicenseStatus::from_number(*status),
                    quantity_kg: f64::from(*quantity),
                    used_kg: 0.0,
                    submitted_on: Some(day(-submitted)),
                    expected_decision_on: expected.map(day),
                    valid_from: from.map(day),
                    valid_until: until.map(|d| day(20 + d)),
                    ..Default::default()
                }
            },
        )
        .collect();
    Net {
        materials,
        suppliers: suppliers_list,
        components: components_list,
        lines: lines_list,
        licenses: licenses_list,
    }
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
