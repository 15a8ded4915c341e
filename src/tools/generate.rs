//! Synthetic supply networks of any size, for load tests, benchmarks and
//! demonstrations: valid, multi-tier, with shared parts, dual sourcing, stock
//! measured in days of demand, and licences sized to their pools' needs.
//! The same parameters and seed always give the same network.

use crate::domain::date::{parse_date, Date};
use crate::domain::record::{
    BomItem, Component, ComponentInput, License, LicenseStatus, Material, MaterialContent,
    ProductionLine, Record, Shipment, Source, Supplier,
};
use crate::domain::risk::structure::{PoolNode, Structure};

/// How big a network to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub suppliers: usize,
    pub components: usize,
    pub lines: usize,
    pub licenses: usize,
}

impl Size {
    pub const MEDIUM: Size = Size {
        suppliers: 2_000,
        components: 10_000,
        lines: 200,
        licenses: 4_000,
    };
    pub const LARGE: Size = Size {
        suppliers: 10_000,
        components: 50_000,
        lines: 1_000,
        licenses: 20_000,
    };
    pub const XLARGE: Size = Size {
        suppliers: 40_000,
        components: 200_000,
        lines: 4_000,
        licenses: 80_000,
    };
    /// Ten times the large network, to see how cost grows with size.
    pub const HUGE: Size = Size {
        suppliers: 100_000,
        components: 500_000,
        lines: 10_000,
        licenses: 200_000,
    };
}

/// SplitMix64: tiny, fast, and the same sequence on every platform and
/// release, which is what "the same seed gives the same file" needs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in [lo, hi).
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.between(0.0, 1.0) < p
    }
}

/// The control lists of 2025: code, name, controlling country, first day.
const MATERIALS: &[(&str, &str, &str, &str)] = &[
    ("DY", "Dysprosium", "CN", "2025-04-04"),
    ("TB", "Terbium", "CN", "2025-04-04"),
    ("SM", "Samarium", "CN", "2025-04-04"),
    ("GD", "Gadolinium", "CN", "2025-04-04"),
    ("LU", "Lutetium", "CN", "2025-04-04"),
    ("SC", "Scandium", "CN", "2025-04-04"),
    ("Y", "Yttrium", "CN", "2025-04-04"),
    ("HO", "Holmium", "CN", "2025-11-08"),
    ("ER", "Erbium", "CN", "2025-11-08"),
    ("EU", "Europium", "CN", "2025-11-08"),
    ("ND", "Neodymium", "", ""),
    ("PR", "Praseodymium", "", ""),
    ("CE", "Cerium", "", ""),
    ("LA", "Lanthanum", "", ""),
];

const MAGNET_COUNTRIES: &[&str] = &["CN", "CN", "CN", "CN", "CN", "CN", "CN", "JP", "JP", "DE"];
const PART_COUNTRIES: &[&str] = &[
    "CN", "CN", "CN", "DE", "PL", "CZ", "FR", "IT", "JP", "KR", "MX", "US",
];
const TIER1_COUNTRIES: &[&str] = &[
    "DE", "DE", "FR", "ES", "IT", "PL", "CZ", "SK", "HU", "AT", "US", "CN",
];
const PLANTS: &[&str] = &[
    "WOLFSBURG",
    "ZWICKAU",
    "INGOLSTADT",
    "EMDEN",
    "MLADA-BOLESLAV",
    "MARTORELL",
    "BRATISLAVA",
    "PALMELA",
    "CHATTANOOGA",
    "PUEBLA",
    "POZNAN",
    "KASSEL",
    "SALZGITTER",
    "DRESDEN",
];

/// The first day licences are dated around.
const SEASON_START: &str = "2025-04-15";

/// A network of `size`, the same for the same `seed`, in an order that
/// `ImportRecords` accepts as one stream (every reference resolves).
pub fn network(size: Size, seed: u64) -> Vec<Record> {
    let mut rng = Rng(seed);
    let materials = materials();
    let tiers = Tiers::of(size.suppliers.max(3));
    let suppliers = suppliers(&mut rng, &tiers);
    let mut components = components(&mut rng, size.components.max(3), &tiers, &suppliers);
    let lines = lines(&mut rng, size.lines, components.len());
    // Stock in days of demand (3 to 6 weeks), and licences sized to what
    // their pools need.
    let structure = Structure::build(&materials, &suppliers, &components, &lines);
    for component in &mut components {
        let demand = structure.demand[structure.component_index[&component.id] as usize];
        component.on_hand_units = (demand * rng.between(0.0, 42.0)).round();
    }
    let licenses = licenses(&mut rng, size.licenses, &structure);
    let shipments = shipments(&mut rng, &components, &structure);
    materials
        .into_iter()
        .map(Record::Material)
        .chain(suppliers.into_iter().map(Record::Supplier))
        .chain(components.into_iter().map(Record::Component))
        .chain(lines.into_iter().map(Record::Line))
        .chain(licenses.into_iter().map(Record::License))
        .chain(shipments.into_iter().map(Record::Shipment))
        .collect()
}

/// The day shipments are dated around: the benchmark's and the demo's
/// `as_of`.
const PLANNING_DAY: &str = "2025-06-02";

/// One open schedule line for every fifth component, of a component some
/// line needs: 2 to 12 days of its demand, 15% past due, 65% within 90 days
/// of the planning day, the rest later.
fn shipments(rng: &mut Rng, components: &[Component], structure: &Structure) -> Vec<Shipment> {
    let planning = parse_date(PLANNING_DAY).expect("a valid date");
    (0..components.len() / 5)
        .filter_map(|i| {
            let component = &components[rng.below(components.len())];
            let demand = structure.demand[structure.component_index[&component.id] as usize];
            let days = rng.between(2.0, 12.0);
            let roll = rng.between(0.0, 1.0);
            let offset = if roll < 0.15 {
                -(1 + rng.below(14) as i64)
            } else if roll < 0.80 {
                rng.below(90) as i64
            } else {
                90 + rng.below(120) as i64
            };
            (demand > 0.0).then(|| Shipment {
                id: format!("SH-{:010}-{:02}", 4_500_000_000u64 + i as u64, 10),
                component_id: component.id.clone(),
                units: (demand * days).round().max(1.0),
                arrives_on: Some(planning + chrono::TimeDelta::days(offset)),
                reference: format!("PO {}/10", 4_500_000_000u64 + i as u64),
                revision: 0,
            })
        })
        .collect()
}

fn materials() -> Vec<Material> {
    MATERIALS
        .iter()
        .map(|&(code, name, by, from)| Material {
            code: code.into(),
            name: name.into(),
            controlled_by: by.into(),
            controlled_from: parse_date(from),
            revision: 0,
        })
        .collect()
}

/// Suppliers: 15% magnet and alloy makers (tier 3), 35% part makers
/// (tier 2), 50% system suppliers (tier 1), in that order.
struct Tiers {
    suppliers: usize,
    tier3: usize,
    tier2: usize,
}

impl Tiers {
    fn of(suppliers: usize) -> Tiers {
        Tiers {
            suppliers,
            tier3: (suppliers * 15 / 100).max(1),
            tier2: (suppliers * 35 / 100).max(1),
        }
    }

    /// A random supplier of `tier`.
    fn pick(&self, rng: &mut Rng, tier: usize) -> usize {
        match tier {
            3 => rng.below(self.tier3),
            2 => self.tier3 + rng.below(self.tier2),
            _ => self.tier3 + self.tier2 + rng.below(self.suppliers - self.tier3 - self.tier2),
        }
    }
}

fn suppliers(rng: &mut Rng, tiers: &Tiers) -> Vec<Supplier> {
    (0..tiers.suppliers)
        .map(|i| {
            let (tier, countries) = if i < tiers.tier3 {
                (3, MAGNET_COUNTRIES)
            } else if i < tiers.tier3 + tiers.tier2 {
                (2, PART_COUNTRIES)
            } else {
                (1, TIER1_COUNTRIES)
            };
            Supplier {
                id: format!("SUP-{i:06}"),
                name: format!("Supplier {i} (tier {tier})"),
                country: countries[rng.below(countries.len())].into(),
                tier,
                revision: 0,
            }
        })
        .collect()
}

/// The components' three levels: magnets and alloys (the first 20%),
/// sub-assemblies (the next 40%) built from magnets, assemblies (the last
/// 40%) built from both.
fn levels(components: usize) -> (usize, usize) {
    ((components / 5).max(1), (components * 2 / 5).max(1))
}

fn components(
    rng: &mut Rng,
    components: usize,
    tiers: &Tiers,
    suppliers: &[Supplier],
) -> Vec<Component> {
    let (magnets, subs) = levels(components);
    (0..components)
        .map(|c| {
            let (level, tier) = if c < magnets {
                (0, 3)
            } else if c < magnets + subs {
                (1, 2)
            } else {
                (2, 1)
            };
            let sources = sources(rng, level, tier, tiers, suppliers);
            let materials = contents(rng, level);
            let inputs = match level {
                0 => Vec::new(),
                1 => distinct(rng, 1 + rng_count(c, 3), magnets, 0),
                _ => distinct(rng, 1 + rng_count(c, 4), magnets + subs, 0),
            }
            .into_iter()
            .map(|i| ComponentInput {
                component_id: component_id(i),
                quantity: [1.0, 1.0, 2.0, 4.0][(i + c) % 4],
            })
            .collect();
            Component {
                id: component_id(c),
                name: format!("{} {c}", ["Magnet set", "Motor", "Module"][level]),
                sources,
                materials,
                inputs,
                on_hand_units: 0.0,
                revision: 0,
            }
        })
        .collect()
}

/// A component's sources: some assemblies made in-house, 30% dual-sourced.
fn sources(
    rng: &mut Rng,
    level: usize,
    tier: usize,
    tiers: &Tiers,
    suppliers: &[Supplier],
) -> Vec<Source> {
    if level == 2 && rng.chance(0.1) {
        Vec::new() // made in-house
    } else if rng.chance(0.3) {
        let a = tiers.pick(rng, tier);
        let mut b = tiers.pick(rng, tier);
        if b == a {
            b = (a + 1) % tiers.suppliers;
        }
        let share = [0.5, 0.6, 0.7, 0.8][rng.below(4)];
        vec![
            Source {
                supplier_id: suppliers[a].id.clone(),
                share,
            },
            Source {
                supplier_id: suppliers[b].id.clone(),
                share: 1.0 - share,
            },
        ]
    } else {
        vec![Source {
            supplier_id: suppliers[tiers.pick(rng, tier)].id.clone(),
            share: 1.0,
        }]
    }
}

/// What a component of `level` contains directly.
fn contents(rng: &mut Rng, level: usize) -> Vec<MaterialContent> {
    match level {
        // NdFeB: about 1.2 kg of Nd per traction-motor set, 3% Dy+Tb
        // conventionally, far less in small motors.
        0 => {
            let mass = [1200.0, 300.0, 90.0, 20.0][rng.below(4)] * rng.between(0.7, 1.3);
            let mut m = vec![
                MaterialContent {
                    material: "ND".into(),
                    grams_per_unit: mass,
                },
                MaterialContent {
                    material: "DY".into(),
                    grams_per_unit: mass * rng.between(0.005, 0.035),
                },
            ];
            if rng.chance(0.4) {
                m.push(MaterialContent {
                    material: "TB".into(),
                    grams_per_unit: mass * rng.between(0.002, 0.01),
                });
            }
            if rng.chance(0.1) {
                let (code, ..) = MATERIALS[2 + rng.below(8)];
                if code != "TB" {
                    m.push(MaterialContent {
                        material: code.into(),
                        grams_per_unit: rng.between(0.1, 5.0),
                    });
                }
            }
            m
        }
        1 if rng.chance(0.15) => vec![MaterialContent {
            material: ["HO", "Y", "GD", "CE"][rng.below(4)].into(),
            grams_per_unit: rng.between(0.1, 3.0),
        }],
        _ => Vec::new(),
    }
}

/// Lines: 5 to 20 parts, mostly assemblies, some sub-assemblies.
fn lines(rng: &mut Rng, lines: usize, components: usize) -> Vec<ProductionLine> {
    let (magnets, subs) = levels(components);
    (0..lines)
        .map(|l| {
            let from_subs = distinct(rng, 1 + rng_count(l, 4), subs, magnets);
            let from_assemblies = distinct(
                rng,
                4 + rng_count(l, 12),
                components - magnets - subs,
                magnets + subs,
            );
            let plant = PLANTS[l % PLANTS.len()];
            ProductionLine {
                id: format!("LINE-{l:05}"),
                name: format!("{} line {}", plant, l / PLANTS.len() + 1),
                plant: plant.into(),
                units_per_day: (200 + rng.below(1300)) as f64,
                bom: from_subs
                    .into_iter()
                    .chain(from_assemblies)
                    .map(|c| BomItem {
                        component_id: component_id(c),
                        quantity: 1.0,
                    })
                    .collect(),
                revision: 0,
            }
        })
        .collect()
}

/// `count` licences, each for a random pool and sized to 20 to 120 days of
/// its need.
fn licenses(rng: &mut Rng, count: usize, structure: &Structure) -> Vec<License> {
    if structure.pools.is_empty() {
        return Vec::new();
    }
    (0..count)
        .map(|i| {
            let pool = &structure.pools[rng.below(structure.pools.len())];
            let days = rng.between(20.0, 120.0);
            let quantity = (pool.required_kg_per_day * days).max(0.1);
            license(rng, i, pool, quantity)
        })
        .collect()
}

fn license(rng: &mut Rng, i: usize, pool: &PoolNode, quantity: f64) -> License {
    let season = parse_date(SEASON_START).expect("a valid date");
    let day = |offset: i64| -> Date { season + chrono::TimeDelta::days(offset) };
    let submitted = rng.below(150) as i64;
    let roll = rng.between(0.0, 1.0);
    // Roughly the 2025 picture: a quarter to a half approved, many pending,
    // the rest refused or withdrawn.
    let status = if roll < 0.40 {
        LicenseStatus::Approved
    } else if roll < 0.75 {
        LicenseStatus::Pending
    } else if roll < 0.95 {
        LicenseStatus::Rejected
    } else {
        LicenseStatus::Revoked
    };
    let decided = submitted + 20 + rng.below(45) as i64;
    let decided_on = matches!(
        status,
        LicenseStatus::Approved | LicenseStatus::Rejected | LicenseStatus::Revoked
    )
    .then(|| day(decided));
    let (valid_from, valid_until) = match status {
        LicenseStatus::Approved | LicenseStatus::Revoked => {
            (Some(day(decided)), Some(day(decided + 180)))
        }
        _ => (None, Some(day(submitted + 365))),
    };
    let used_kg = if status == LicenseStatus::Approved {
        (quantity * rng.between(0.0, 0.6) * 1000.0).round() / 1000.0
    } else {
        0.0
    };
    License {
        id: format!("LIC-{i:06}"),
        supplier_id: pool.supplier_id.clone(),
        material: pool.material.clone(),
        status,
        quantity_kg: (quantity * 1000.0).round() / 1000.0,
        used_kg,
        submitted_on: Some(day(submitted)),
        expected_decision_on: (status == LicenseStatus::Pending && rng.chance(0.6))
            .then(|| day(submitted + 45 + rng.below(30) as i64)),
        decided_on,
        valid_from,
        valid_until,
        revision: 0,
    }
}

fn component_id(c: usize) -> String {
    format!("CMP-{c:07}")
}

/// A small count that varies with `i`: 0 to `n - 1`.
fn rng_count(i: usize, n: usize) -> usize {
    (i.wrapping_mul(2_654_435_761) >> 7) % n
}

/// `k` distinct indices in `offset .. offset + n`, in ascending order.
fn distinct(rng: &mut Rng, k: usize, n: usize, offset: usize) -> Vec<usize> {
    let mut picked: Vec<usize> = (0..k.min(n)).map(|_| offset + rng.below(n)).collect();
    picked.sort_unstable();
    picked.dedup();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::check_record;

    #[test]
    fn the_same_seed_gives_the_same_network_and_every_record_is_valid() {
        let size = Size {
            suppliers: 60,
            components: 300,
            lines: 12,
            licenses: 80,
        };
        let a = network(size, 7);
        assert_eq!(a, network(size, 7));
        assert_ne!(a, network(size, 8));
        let mut violations = Vec::new();
        for record in &a {
            check_record(record, "r", &mut violations);
        }
        assert_eq!(violations, vec![]);
        let licenses = a.iter().filter(|r| matches!(r, Record::License(_))).count();
        assert_eq!(licenses, 80);
    }
}
