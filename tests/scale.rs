//! Imports at scale. Ignored by default (minutes in a debug build); run with
//! `cargo test --release --test scale -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::spawn_app;
use lodestone::pb;

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// A synthetic network of `n` records: materials, suppliers, a chain of
/// components, lines over them, and licences.
fn synthetic(n: usize) -> Vec<pb::Record> {
    use pb::record::Record as R;
    let suppliers = n / 100;
    let lines = n / 100;
    let licenses = n / 20;
    let components = n - 10 - suppliers - lines - licenses;
    let mut out = Vec::with_capacity(n);
    for m in 0..10 {
        out.push(pb::Record {
            record: Some(R::Material(pb::Material {
                code: format!("M{m}"),
                controlled_by: "CN".into(),
                ..Default::default()
            })),
        });
    }
    for s in 0..suppliers {
        out.push(pb::Record {
            record: Some(R::Supplier(pb::Supplier {
                id: format!("S{s:07}"),
                name: format!("Supplier {s}"),
                country: "CN".into(),
                tier: 2,
                ..Default::default()
            })),
        });
    }
    for c in 0..components {
        let inputs = if c % 10 == 0 {
            vec![]
        } else {
            vec![pb::ComponentInput {
                component_id: format!("C{:07}", c - 1),
                quantity: 1.0,
            }]
        };
        out.push(pb::Record {
            record: Some(R::Component(pb::Component {
                id: format!("C{c:07}"),
                name: format!("Component {c}"),
                sources: vec![pb::Source {
                    supplier_id: format!("S{:07}", c % suppliers),
                    share: 1.0,
                }],
                materials: vec![pb::MaterialContent {
                    material: format!("M{}", c % 10),
                    grams_per_unit: 1.5,
                }],
                inputs,
                on_hand_units: 100.0,
                ..Default::default()
            })),
        });
    }
    for l in 0..lines {
        out.push(pb::Record {
            record: Some(R::Line(pb::ProductionLine {
                id: format!("L{l:07}"),
                plant: format!("P{}", l % 7),
                units_per_day: 100.0,
                bom: vec![pb::BomItem {
                    component_id: format!("C{:07}", l * 10 + 9),
                    quantity: 1.0,
                }],
                ..Default::default()
            })),
        });
    }
    for i in 0..licenses {
        out.push(pb::Record {
            record: Some(R::License(pb::License {
                id: format!("LIC{i:07}"),
                supplier_id: format!("S{:07}", i % suppliers),
                material: format!("M{}", i % 10),
                status: 1 + (i % 4) as i32,
                quantity_kg: 100.0,
                ..Default::default()
            })),
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long; run in release mode"]
async fn a_million_records_import_atomically() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("lodestone=debug")
        .try_init();
    let n = std::env::var("SCALE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let app = spawn_app().await;
    let records = synthetic(n);
    let count = records.len();
    let size: usize = records.iter().map(prost::Message::encoded_len).sum();
    let before = peak_rss_mib();
    let messages: Vec<pb::ImportRecordsRequest> = records
        .chunks(1000)
        .map(|c| pb::ImportRecordsRequest {
            records: c.to_vec(),
        })
        .collect();
    drop(records);
    let started = Instant::now();
    let response = app
        .records
        .clone()
        .import_records(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let elapsed = started.elapsed();
    assert_eq!(response.upserted_count as usize, count);
    let page = app
        .records
        .clone()
        .list_components(pb::ListComponentsRequest {
            material: "M3".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    println!(
        "imported {count} records ({} MiB encoded) in {:.1} s: {:.0} records/s; peak RSS {} MiB (before {} MiB); M3 components: {}",
        size >> 20,
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        peak_rss_mib(),
        before,
        page.total_size
    );
    assert!(page.total_size > 0);
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
