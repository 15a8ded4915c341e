//! Properties of the write path over random networks: valid batches are
//! stored exactly, invalid ones are refused whole.

use std::sync::Arc;

use lodestone::domain::record::{
    BomItem, Component, ComponentInput, License, LicenseStatus, Material, MaterialContent,
    ProductionLine, Record, Source, Supplier,
};
use lodestone::domain::write::{Incoming, Origin};
use lodestone::network::{Network, Upsert};
use lodestone::store::{SledConfig, SledStore};
use proptest::prelude::*;

fn anonymous() -> lodestone::domain::audit::Attribution {
    lodestone::domain::audit::Attribution::anonymous(
        lodestone::domain::audit::Request::UpsertRecords,
    )
}

const COUNTRIES: [&str; 3] = ["CN", "DE", "JP"];

/// A component's choices: how many sources and from which supplier on, an
/// input (an earlier component) or none, its material, grams and stock.
type ComponentChoice = (usize, usize, Option<(usize, u32)>, usize, u32, u32);

/// A random valid network of up to `max_components` components, built from
/// proptest's own strategies so that a failure shrinks to a small network:
/// inputs only point to earlier components, so the input graph is acyclic;
/// every reference names a record of the batch; the batch arrives shuffled,
/// so references may point forward.
fn network_of(min_components: usize, max_components: usize) -> impl Strategy<Value = Vec<Record>> {
    (
        1usize..5,
        1usize..6,
        min_components..max_components,
        0usize..4,
        0usize..7,
    )
        .prop_flat_map(|(materials, suppliers, components, lines, licenses)| {
            let component = |c: usize| {
                (
                    0usize..3,
                    0..suppliers,
                    proptest::option::of((0..c.max(1), 1u32..4))
                        .prop_map(move |input| input.filter(|_| c > 0)),
                    0..materials,
                    0u32..100,
                    0u32..1000,
                )
            };
            (
                proptest::collection::vec(any::<bool>(), materials),
                proptest::collection::vec((0..COUNTRIES.len(), 0i32..4), suppliers),
                (0..components).map(component).collect::<Vec<_>>(),
                proptest::collection::vec((0u32..2, 1u32..501, 0..components), lines),
                proptest::collection::vec(
                    (0..suppliers, 0..materials, 1i32..5, 1u32..101),
                    licenses,
                ),
            )
        })
        .prop_map(|(materials, suppliers, components, lines, licenses)| {
            build(&materials, &suppliers, &components, &lines, &licenses)
        })
        .prop_shuffle()
}

fn network() -> impl Strategy<Value = Vec<Record>> {
    network_of(1, 14)
}

/// The records the choices describe.
fn build(
    materials: &[bool],
    suppliers: &[(usize, i32)],
    components: &[ComponentChoice],
    lines: &[(u32, u32, usize)],
    licenses: &[(usize, usize, i32, u32)],
) -> Vec<Record> {
    let mut records = Vec::new();
    for (m, controlled) in materials.iter().enumerate() {
        records.push(Record::Material(Material {
            code: format!("M{m}"),
            name: format!("Material {m}"),
            controlled_by: if *controlled {
                "CN".into()
            } else {
                String::new()
            },
            controlled_from: None,
            revision: 0,
        }));
    }
    for (s, (country, tier)) in suppliers.iter().enumerate() {
        records.push(Record::Supplier(Supplier {
            id: format!("S{s}"),
            name: format!("Supplier {s}"),
            country: COUNTRIES[*country].into(),
            tier: *tier,
            revision: 0,
        }));
    }
    let n = suppliers.len();
    for (c, (k, start, input, material, grams, stock)) in components.iter().enumerate() {
        let k = (*k).min(n);
        records.push(Record::Component(Component {
            id: format!("C{c}"),
            name: String::new(),
            sources: (0..k)
                .map(|i| Source {
                    supplier_id: format!("S{}", (start + i) % n),
                    share: 1.0 / k as f64,
                })
                .collect(),
            materials: vec![MaterialContent {
                material: format!("M{material}"),
                grams_per_unit: f64::from(*grams) / 10.0,
            }],
            inputs: input
                .iter()
                .map(|(of, quantity)| ComponentInput {
                    component_id: format!("C{of}"),
                    quantity: f64::from(*quantity),
                })
                .collect(),
            on_hand_units: f64::from(*stock),
            revision: 0,
        }));
    }
    for (l, (plant, rate, part)) in lines.iter().enumerate() {
        records.push(Record::Line(ProductionLine {
            id: format!("L{l}"),
            name: String::new(),
            plant: format!("P{plant}"),
            units_per_day: f64::from(*rate),
            bom: vec![BomItem {
                component_id: format!("C{part}"),
                quantity: 1.0,
            }],
            revision: 0,
        }));
    }
    for (i, (supplier, material, status, quantity)) in licenses.iter().enumerate() {
        records.push(Record::License(License {
            id: format!("LIC{i}"),
            supplier_id: format!("S{supplier}"),
            material: format!("M{material}"),
            status: LicenseStatus::from_number(*status),
            quantity_kg: f64::from(*quantity),
            used_kg: 0.0,
            ..Default::default()
        }));
    }
    records
}

/// One way to break a valid batch.
#[derive(Clone, Debug)]
enum Breakage {
    NegativeStock,
    ZeroShare,
    DanglingReference,
    SelfInput,
    BadId,
    Cycle,
}

fn breakage() -> impl Strategy<Value = Breakage> {
    prop_oneof![
        Just(Breakage::NegativeStock),
        Just(Breakage::ZeroShare),
        Just(Breakage::DanglingReference),
        Just(Breakage::SelfInput),
        Just(Breakage::BadId),
        Just(Breakage::Cycle),
    ]
}

fn break_batch(records: &mut Vec<Record>, how: &Breakage) {
    let first_component = records
        .iter()
        .position(|r| matches!(r, Record::Component(_)))
        .expect("every network has a component");
    let Record::Component(c) = &mut records[first_component] else {
        unreachable!()
    };
    match how {
        Breakage::NegativeStock => c.on_hand_units = -1.0,
        Breakage::ZeroShare => {
            c.sources = vec![Source {
                supplier_id: "S0".into(),
                share: 0.0,
            }]
        }
        Breakage::DanglingReference => c.materials[0].material = "NO-SUCH-MATERIAL".into(),
        Breakage::SelfInput => {
            c.inputs = vec![ComponentInput {
                component_id: c.id.clone(),
                quantity: 1.0,
            }]
        }
        Breakage::BadId => c.id = "not an id".into(),
        Breakage::Cycle => {
            let id = c.id.clone();
            c.inputs = vec![ComponentInput {
                component_id: "LOOP".into(),
                quantity: 1.0,
            }];
            records.push(Record::Component(Component {
                id: "LOOP".into(),
                inputs: vec![ComponentInput {
                    component_id: id,
                    quantity: 1.0,
                }],
                ..Default::default()
            }));
        }
    }
}

fn incoming(records: Vec<Record>) -> Vec<Incoming> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, record)| Incoming {
            origin: Origin::Records(i),
            record,
        })
        .collect()
}

fn sorted(mut records: Vec<Record>) -> Vec<Record> {
    for r in &mut records {
        r.set_revision(0);
    }
    records.sort_by_key(|r| r.key());
    records
}

fn with_network<T>(f: impl FnOnce(Arc<Network>) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&SledConfig {
        path: dir.path().join("data"),
        cache_capacity_bytes: 8 << 20,
    })
    .unwrap();
    f(Arc::new(block_on(Network::open(Arc::new(store))).unwrap()))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A valid batch is stored exactly, at revision 1, in the view and on disk
/// alike, and the same batch again changes nothing.
fn round_trips(records: Vec<Record>) -> Result<(), TestCaseError> {
    with_network(|network| {
        block_on(async {
            let outcome = network
                .upsert(Upsert::new(incoming(records.clone())), &anonymous())
                .await
                .unwrap();
            prop_assert_eq!(outcome.revision, 1);
            let view = network.view();
            let stored: Vec<Record> = view.records().collect();
            prop_assert!(stored.iter().all(|r| r.revision() == 1));
            prop_assert_eq!(sorted(stored), sorted(records.clone()));
            // The view and the store agree.
            let on_disk = network.store().snapshot().await.unwrap();
            prop_assert_eq!(on_disk.records, view.records().collect::<Vec<_>>());
            // The same batch again changes nothing.
            let again = network
                .upsert(Upsert::new(incoming(records)), &anonymous())
                .await
                .unwrap();
            prop_assert_eq!(again.revision, 1);
            prop_assert!(again.committed.is_none());
            Ok(())
        })
    })
}

/// A broken batch is refused whole: nothing of it in the view, on disk or
/// in the licence log.
fn refused_whole(
    base: Vec<Record>,
    change: Vec<Record>,
    how: Breakage,
) -> Result<(), TestCaseError> {
    with_network(|network| {
        block_on(async {
            network
                .upsert(Upsert::new(incoming(base.clone())), &anonymous())
                .await
                .unwrap();
            let before = network.view();
            let mut broken = change;
            break_batch(&mut broken, &how);
            let refused = network
                .upsert(Upsert::new(incoming(broken)), &anonymous())
                .await;
            prop_assert!(refused.is_err(), "{:?} was accepted", how);
            let after = network.view();
            prop_assert_eq!(after.revision, before.revision);
            prop_assert_eq!(
                after.records().collect::<Vec<_>>(),
                before.records().collect::<Vec<_>>()
            );
            prop_assert_eq!(
                network.store().snapshot().await.unwrap().records,
                before.records().collect::<Vec<_>>()
            );
            prop_assert_eq!(network.store().log_bounds().head, before_log_head(&base));
            Ok(())
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn valid_batches_round_trip_exactly(records in network()) {
        round_trips(records)?;
    }

    #[test]
    fn invalid_batches_are_refused_whole(base in network(), change in network(), how in breakage()) {
        refused_whole(base, change, how)?;
    }
}

proptest! {
    // Batches of more than 2,000 changes commit through the undo journal
    // rather than one sled transaction: the same properties must hold.
    #![proptest_config(ProptestConfig::with_cases(3))]

    #[test]
    fn large_batches_round_trip_exactly(records in network_of(2_001, 2_100)) {
        prop_assert!(records.len() > 2_000);
        round_trips(records)?;
    }

    #[test]
    fn large_batches_are_refused_whole(base in network_of(2_001, 2_100), change in network_of(2_001, 2_100), how in breakage()) {
        refused_whole(base, change, how)?;
    }
}

/// Licences in the base batch: each was logged once when it was created.
fn before_log_head(base: &[Record]) -> u64 {
    base.iter()
        .filter(|r| matches!(r, Record::License(_)))
        .count() as u64
}

#[test]
fn stored_counts_match_the_records() {
    with_network(|network| {
        block_on(async {
            let records: Vec<Record> = (0..5)
                .map(|i| {
                    Record::Supplier(Supplier {
                        id: format!("S{i}"),
                        ..Default::default()
                    })
                })
                .collect();
            network
                .upsert(Upsert::new(incoming(records)), &anonymous())
                .await
                .unwrap();
            let page = network.list(
                &lodestone::view::ListQuery::Suppliers {
                    country: String::new(),
                },
                None,
                2,
            );
            assert_eq!((page.total, page.records.len(), page.more), (5, 2, true));
            assert_eq!(network.store().revision(), 1);
        })
    });
}
