//! Random supply networks for property tests of the risk model, built from
//! proptest's own strategies so that a failure shrinks.

#![allow(dead_code)]

use lodestone::domain::date::{parse_date, Date};
use lodestone::domain::record::{
    BomItem, Component, ComponentInput, License, LicenseStatus, Material, MaterialContent,
    ProductionLine, Source, Supplier,
};
use lodestone::domain::risk::{PendingAssumption, Scenario, ScenarioShipment, SupplierOutage};
use proptest::prelude::*;

#[derive(Clone, Debug)]
pub struct Net {
    pub materials: Vec<Material>,
    pub suppliers: Vec<Supplier>,
    pub components: Vec<Component>,
    pub lines: Vec<ProductionLine>,
    pub licenses: Vec<License>,
}

pub fn as_of() -> Date {
    parse_date("2025-06-02").unwrap()
}

pub fn day(offset: i64) -> Date {
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
pub fn network() -> impl Strategy<Value = Net> {
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

/// Scenarios: either pending assumption, a delay, up to two suppliers out
/// (of `S0`..`S5`), and up to three arrivals (of `C00`..`C15`, some past
/// due, some beyond the horizon); what names a record a network lacks is
/// left out by [`for_network`].
pub fn scenarios() -> impl Strategy<Value = Scenario> {
    (
        any::<bool>(),
        0u32..30,
        proptest::collection::vec((0usize..6, proptest::option::of(0i64..40), 0u32..30), 0..3),
        proptest::collection::vec((0usize..16, 1u32..400, -5i64..70), 0..4),
    )
        .prop_map(|(approved, delay, outages, arrivals)| {
            let mut seen = std::collections::HashSet::new();
            Scenario {
                pending: if approved {
                    PendingAssumption::ApprovedAsExpected
                } else {
                    PendingAssumption::Denied
                },
                decision_delay_days: delay,
                overrides: vec![],
                outages: outages
                    .into_iter()
                    .filter(|(s, ..)| seen.insert(*s))
                    .map(|(s, starts, days)| SupplierOutage {
                        supplier_id: format!("S{s}"),
                        starts_on: starts.map(day),
                        days,
                    })
                    .collect(),
                shipments: arrivals
                    .into_iter()
                    .map(|(c, units, arrives)| ScenarioShipment {
                        component_id: format!("C{c:02}"),
                        units: f64::from(units * 10),
                        arrives_on: day(arrives),
                    })
                    .collect(),
                idled_lines: vec![],
            }
        })
}

/// `scenario` without the outages of suppliers `net` lacks.
pub fn for_network(mut scenario: Scenario, net: &Net) -> Scenario {
    scenario
        .outages
        .retain(|o| net.suppliers.iter().any(|s| s.id == o.supplier_id));
    scenario
        .shipments
        .retain(|a| net.components.iter().any(|c| c.id == a.component_id));
    scenario
}
