//! Properties of the write path over random networks: valid batches are
//! stored exactly, invalid ones are refused whole.

use std::sync::Arc;

use lodestone::domain::record::{
    BomItem, Component, ComponentInput, License, LicenseStatus, Material, MaterialContent,
    ProductionLine, Record, Source, Supplier,
};
use lodestone::domain::write::{Incoming, Origin};
use lodestone::network::Network;
use lodestone::store::{SledConfig, SledStore};
use proptest::prelude::*;

const COUNTRIES: [&str; 3] = ["CN", "DE", "JP"];

/// A random valid network: inputs only point to earlier components, so the
/// input graph is acyclic; every reference names a record of the batch.
fn network() -> impl Strategy<Value = Vec<Record>> {
    (
        1usize..5,
        1usize..6,
        1usize..14,
        0usize..4,
        0usize..7,
        any::<u64>(),
    )
        .prop_map(
            |(materials, suppliers, components, lines, licenses, seed)| {
                let mut rng = seed;
                let mut next = move |n: usize| {
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((rng >> 33) as usize) % n.max(1)
                };
                let mut records = Vec::new();
                for m in 0..materials {
                    records.push(Record::Material(Material {
                        code: format!("M{m}"),
                        name: format!("Material {m}"),
                        controlled_by: if next(2) == 0 {
                            "CN".into()
                        } else {
                            String::new()
                        },
                        controlled_from: None,
                        revision: 0,
                    }));
                }
                for s in 0..suppliers {
                    records.push(Record::Supplier(Supplier {
                        id: format!("S{s}"),
                        name: format!("Supplier {s}"),
                        country: COUNTRIES[next(3)].into(),
                        tier: next(4) as i32,
                        revision: 0,
                    }));
                }
                for c in 0..components {
                    let k = next(3).min(suppliers);
                    let start = next(suppliers);
                    let sources = (0..k)
                        .map(|i| Source {
                            supplier_id: format!("S{}", (start + i) % suppliers),
                            share: 1.0 / k as f64,
                        })
                        .collect();
                    let inputs = if c > 0 && next(2) == 0 {
                        vec![ComponentInput {
                            component_id: format!("C{}", next(c)),
                            quantity: 1.0 + next(3) as f64,
                        }]
                    } else {
                        vec![]
                    };
                    records.push(Record::Component(Component {
                        id: format!("C{c}"),
                        name: String::new(),
                        sources,
                        materials: vec![MaterialContent {
                            material: format!("M{}", next(materials)),
                            grams_per_unit: next(100) as f64 / 10.0,
                        }],
                        inputs,
                        on_hand_units: next(1000) as f64,
                        revision: 0,
                    }));
                }
                for l in 0..lines {
                    records.push(Record::Line(ProductionLine {
                        id: format!("L{l}"),
                        name: String::new(),
                        plant: format!("P{}", next(2)),
                        units_per_day: 1.0 + next(500) as f64,
                        bom: vec![BomItem {
                            component_id: format!("C{}", next(components)),
                            quantity: 1.0,
                        }],
                        revision: 0,
                    }));
                }
                for i in 0..licenses {
                    records.push(Record::License(License {
                        id: format!("LIC{i}"),
                        supplier_id: format!("S{}", next(suppliers)),
                        material: format!("M{}", next(materials)),
                        status: LicenseStatus::from_number(1 + next(4) as i32),
                        quantity_kg: 1.0 + next(100) as f64,
                        used_kg: 0.0,
                        ..Default::default()
                    }));
                }
                // Deliver in a scrambled order: references may point forward.
                let n = records.len();
                for i in (1..n).rev() {
                    records.swap(i, next(i + 1));
                }
                records
            },
        )
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
    f(Arc::new(Network::new(Arc::new(store)).unwrap()))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn valid_batches_round_trip_exactly(records in network()) {
        with_network(|network| block_on(async {
            let outcome = network.upsert(incoming(records.clone()), vec![], true, false, "").await.unwrap();
            prop_assert_eq!(outcome.revision, 1);
            let view = network.view();
            let stored: Vec<Record> = view.records().collect();
            prop_assert!(stored.iter().all(|r| r.revision() == 1));
            prop_assert_eq!(sorted(stored), sorted(records.clone()));
            // The view and the store agree.
            let on_disk = network.store().snapshot().unwrap();
            prop_assert_eq!(on_disk.records, view.records().collect::<Vec<_>>());
            // The same batch again changes nothing.
            let again = network.upsert(incoming(records), vec![], true, false, "").await.unwrap();
            prop_assert_eq!(again.revision, 1);
            prop_assert!(again.committed.is_none());
            Ok(())
        }))?;
    }

    #[test]
    fn invalid_batches_are_refused_whole(base in network(), change in network(), how in breakage()) {
        with_network(|network| block_on(async {
            network.upsert(incoming(base.clone()), vec![], true, false, "").await.unwrap();
            let before = network.view();
            let mut broken = change;
            break_batch(&mut broken, &how);
            let refused = network.upsert(incoming(broken), vec![], true, false, "").await;
            prop_assert!(refused.is_err(), "{:?} was accepted", how);
            let after = network.view();
            prop_assert_eq!(after.revision, before.revision);
            prop_assert_eq!(after.records().collect::<Vec<_>>(), before.records().collect::<Vec<_>>());
            prop_assert_eq!(network.store().snapshot().unwrap().records, before.records().collect::<Vec<_>>());
            prop_assert_eq!(network.store().log_bounds().head, before_log_head(&base));
            Ok(())
        }))?;
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
                .upsert(incoming(records), vec![], true, false, "")
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
