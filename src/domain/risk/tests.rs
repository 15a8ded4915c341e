//! One test per rule of the risk model, on networks small enough to work out
//! by hand.

use super::report::{at_risk_order_of, exposure, line_report, Scope};
use super::simulate::{evaluate, Evaluation};
use super::structure::Structure;
use super::{LicenseOverride, PendingAssumption, Scenario};
use crate::domain::date::{parse_date, Date};
use crate::domain::record::{
    BomItem, Component, ComponentInput, License, LicenseStatus, Material, MaterialContent,
    ProductionLine, Source, Supplier,
};

const AS_OF: &str = "2025-06-02";

fn date(s: &str) -> Date {
    parse_date(s).unwrap()
}

fn day(offset: i64) -> Date {
    date(AS_OF) + chrono::TimeDelta::days(offset)
}

#[derive(Default, Clone)]
struct Net {
    materials: Vec<Material>,
    suppliers: Vec<Supplier>,
    components: Vec<Component>,
    lines: Vec<ProductionLine>,
    licenses: Vec<License>,
}

impl Net {
    /// DY, controlled by CN from `controlled_from` (every day when `None`).
    fn dy(mut self, controlled_from: Option<Date>) -> Self {
        self.materials.push(Material {
            code: "DY".into(),
            controlled_by: "CN".into(),
            controlled_from,
            ..Default::default()
        });
        self
    }

    fn supplier(mut self, id: &str, country: &str) -> Self {
        self.suppliers.push(Supplier {
            id: id.into(),
            country: country.into(),
            ..Default::default()
        });
        self
    }

    /// A component with `sources` (supplier, share), `grams` of DY, `inputs`, and `stock`.
    fn component(
        mut self,
        id: &str,
        sources: &[(&str, f64)],
        grams: f64,
        inputs: &[&str],
        stock: f64,
    ) -> Self {
        self.components.push(Component {
            id: id.into(),
            sources: sources
                .iter()
                .map(|(s, share)| Source {
                    supplier_id: (*s).into(),
                    share: *share,
                })
                .collect(),
            materials: if grams > 0.0 {
                vec![MaterialContent {
                    material: "DY".into(),
                    grams_per_unit: grams,
                }]
            } else {
                vec![]
            },
            inputs: inputs
                .iter()
                .map(|i| ComponentInput {
                    component_id: (*i).into(),
                    quantity: 1.0,
                })
                .collect(),
            on_hand_units: stock,
            ..Default::default()
        });
        self
    }

    fn line(mut self, id: &str, rate: f64, bom: &[&str]) -> Self {
        self.lines.push(ProductionLine {
            id: id.into(),
            plant: "P".into(),
            units_per_day: rate,
            bom: bom
                .iter()
                .map(|c| BomItem {
                    component_id: (*c).into(),
                    quantity: 1.0,
                })
                .collect(),
            ..Default::default()
        });
        self
    }

    fn license(mut self, license: License) -> Self {
        self.licenses.push(license);
        self
    }

    fn structure(&self) -> Structure {
        Structure::build(
            &self.materials,
            &self.suppliers,
            &self.components,
            &self.lines,
        )
    }

    fn run(&self, horizon: u32, scenario: &Scenario) -> (Structure, Evaluation) {
        let structure = self.structure();
        let evaluation = evaluate(&structure, &self.licenses, scenario, date(AS_OF), horizon);
        (structure, evaluation)
    }
}

fn approved(id: &str, supplier: &str, kg: f64, from: Option<Date>, until: Option<Date>) -> License {
    License {
        id: id.into(),
        supplier_id: supplier.into(),
        material: "DY".into(),
        status: LicenseStatus::Approved,
        quantity_kg: kg,
        valid_from: from,
        valid_until: until,
        ..Default::default()
    }
}

/// One CN supplier of a magnet with 10 g of DY, a line of `rate` a day:
/// the pool needs rate / 100 kg a day.
fn magnet_line(rate: f64, stock: f64) -> Net {
    Net::default()
        .dy(None)
        .supplier("S", "CN")
        .component("MAG", &[("S", 1.0)], 10.0, &[], stock)
        .line("L", rate, &["MAG"])
}

#[test]
fn only_suppliers_in_the_controlling_country_have_pools() {
    let net = Net::default()
        .dy(None)
        .supplier("A", "CN")
        .supplier("B", "DE")
        .component("MAG", &[("A", 0.5), ("B", 0.5)], 10.0, &[], 0.0)
        .line("L", 100.0, &["MAG"]);
    let (structure, evaluation) = net.run(10, &Scenario::default());
    assert_eq!(structure.pools.len(), 1);
    assert_eq!(structure.pools[0].supplier_id, "A");
    assert!((structure.pools[0].required_kg_per_day - 0.5).abs() < 1e-12);
    let line = &evaluation.lines[0];
    assert_eq!(line.days_to_stop, Some(0));
    assert!(
        (line.output_fraction - 0.5).abs() < 1e-12,
        "B's half still arrives"
    );
    assert!((line.units_lost - 10.0 * 50.0).abs() < 1e-9);
}

#[test]
fn a_material_is_free_before_it_is_controlled() {
    let mut net = magnet_line(100.0, 0.0);
    net.materials[0].controlled_from = Some(day(5));
    let (_, evaluation) = net.run(10, &Scenario::default());
    assert_eq!(evaluation.lines[0].days_to_stop, Some(5));
    assert_eq!(evaluation.pools[0].covered_days, 5);
}

#[test]
fn a_pending_licence_without_an_expected_date_is_decided_45_days_after_submission() {
    // 1 kg a day; stock for 5 days; a pending licence submitted 40 days ago.
    let pending = License {
        id: "P".into(),
        supplier_id: "S".into(),
        material: "DY".into(),
        status: LicenseStatus::Pending,
        quantity_kg: 1000.0,
        submitted_on: Some(day(-40)),
        ..Default::default()
    };
    let net = magnet_line(100.0, 500.0).license(pending);
    let as_expected = Scenario {
        pending: PendingAssumption::ApprovedAsExpected,
        ..Scenario::default()
    };
    let (_, evaluation) = net.run(30, &as_expected);
    assert_eq!(
        evaluation.lines[0].days_to_stop, None,
        "decided on day 5, when the stock runs out"
    );
    assert_eq!(evaluation.pools[0].covered_days, 0);
    assert_eq!(evaluation.pools[0].approved_remaining_kg, 1000.0);
    assert_eq!(evaluation.pools[0].pending_kg, 1000.0);

    let late = Scenario {
        decision_delay_days: 1,
        ..as_expected
    };
    let (_, evaluation) = net.run(30, &late);
    assert_eq!(
        evaluation.lines[0].days_to_stop,
        Some(5),
        "a day late, the line waits a day"
    );
    assert!((evaluation.lines[0].units_lost - 100.0).abs() < 1e-9);

    let (_, denied) = net.run(30, &Scenario::default());
    assert_eq!(denied.lines[0].days_to_stop, Some(5));
    assert_eq!(denied.pools[0].approved_remaining_kg, 0.0);
}

#[test]
fn licences_are_consumed_soonest_expiring_first() {
    // 10 kg a day; 100 kg until day 10 and 100 kg open-ended: covered for
    // 20 days only if the expiring one is used first.
    let net = magnet_line(1000.0, 0.0)
        .license(approved("OPEN", "S", 100.0, None, None))
        .license(approved("SOON", "S", 100.0, None, Some(day(10))));
    let (_, evaluation) = net.run(30, &Scenario::default());
    assert_eq!(evaluation.pools[0].covered_days, 20);
    assert_eq!(evaluation.lines[0].days_to_stop, Some(20));
}

#[test]
fn a_pool_is_covered_whole_or_not_at_all() {
    // 10 kg a day; 15 kg from day 0 and 5 kg from day 2. Day 0 takes 10;
    // day 1 is short (5 < 10) and takes nothing, so day 2 has 5 + 5.
    let net = magnet_line(1000.0, 0.0)
        .license(approved("A", "S", 15.0, None, None))
        .license(approved("B", "S", 5.0, Some(day(2)), None));
    let (_, evaluation) = net.run(5, &Scenario::default());
    assert_eq!(evaluation.pools[0].covered_days, 1);
    let line = &evaluation.lines[0];
    assert_eq!(line.days_to_stop, Some(1));
    // Short on days 1, 3 and 4: not on day 2.
    assert!(
        (line.units_lost - 3.0 * 1000.0).abs() < 1e-9,
        "{}",
        line.units_lost
    );
}

#[test]
fn shortages_travel_up_through_inputs_after_the_stock_between() {
    // MOTOR (in-house, 20 in stock) is built from MAG (no stock, no licence).
    let net = Net::default()
        .dy(None)
        .supplier("S", "CN")
        .component("MAG", &[("S", 1.0)], 10.0, &[], 0.0)
        .component("MOTOR", &[], 0.0, &["MAG"], 20.0)
        .line("L", 10.0, &["MOTOR"])
        .license(License {
            status: LicenseStatus::Rejected,
            ..approved("REJ", "S", 1.0, None, None)
        })
        .license(License {
            status: LicenseStatus::Revoked,
            ..approved("A-REV", "S", 1.0, None, None)
        });
    let (structure, evaluation) = net.run(10, &Scenario::default());
    let line = &evaluation.lines[0];
    assert_eq!(line.days_to_stop, Some(2), "MOTOR's stock lasts two days");
    let id = |c: u32| structure.components[c as usize].id.as_str();
    assert_eq!(line.bottleneck.map(id), Some("MOTOR"));
    assert_eq!(
        line.root_cause_path
            .iter()
            .map(|&c| id(c))
            .collect::<Vec<_>>(),
        ["MOTOR", "MAG"]
    );
    assert_eq!(line.blocking_pools.len(), 1);
    assert_eq!(
        line.blocking_licenses,
        ["A-REV", "REJ"],
        "every licence of the pool, in id order"
    );
}

#[test]
fn in_house_parts_never_stop_a_line_and_parts_nobody_uses_need_nothing() {
    let net = Net::default()
        .dy(None)
        .supplier("S", "CN")
        .component("HARNESS", &[], 0.0, &[], 0.0)
        .component("SPARE", &[("S", 1.0)], 10.0, &[], 0.0)
        .line("L", 100.0, &["HARNESS"]);
    let (structure, evaluation) = net.run(10, &Scenario::default());
    assert_eq!(evaluation.lines[0].days_to_stop, None);
    assert_eq!(evaluation.lines[0].output_fraction, 1.0);
    assert_eq!(structure.pools.len(), 1);
    assert_eq!(structure.pools[0].required_kg_per_day, 0.0);
    assert_eq!(
        evaluation.pools[0].covered_days, 10,
        "a pool nobody draws on is covered"
    );
}

#[test]
fn ties_go_to_the_smallest_id() {
    // Two magnets failing alike: the bottleneck is the smaller id.
    let net = Net::default()
        .dy(None)
        .supplier("S", "CN")
        .component("B-MAG", &[("S", 1.0)], 10.0, &[], 0.0)
        .component("A-MAG", &[("S", 1.0)], 10.0, &[], 0.0)
        .component("MOTOR", &[], 0.0, &["B-MAG", "A-MAG"], 0.0)
        .line("L", 10.0, &["MOTOR"])
        .line("K", 10.0, &["B-MAG", "A-MAG"]);
    let (structure, evaluation) = net.run(5, &Scenario::default());
    let id = |c: u32| structure.components[c as usize].id.as_str();
    let k = &evaluation.lines[structure.line_index["K"] as usize];
    assert_eq!(k.bottleneck.map(id), Some("A-MAG"));
    let l = &evaluation.lines[structure.line_index["L"] as usize];
    assert_eq!(
        l.root_cause_path.iter().map(|&c| id(c)).collect::<Vec<_>>(),
        ["MOTOR", "A-MAG"]
    );
}

#[test]
fn an_override_replaces_the_status_and_can_start_later() {
    let rejected = License {
        status: LicenseStatus::Rejected,
        ..approved("X", "S", 1000.0, None, None)
    };
    let net = magnet_line(100.0, 300.0).license(rejected);
    let scenario = |effective_on| Scenario {
        overrides: vec![LicenseOverride {
            license_id: "X".into(),
            status: LicenseStatus::Approved,
            effective_on,
        }],
        ..Scenario::default()
    };
    let (_, evaluation) = net.run(30, &scenario(None));
    assert_eq!(evaluation.lines[0].days_to_stop, None);
    let (_, evaluation) = net.run(30, &scenario(Some(day(3))));
    assert_eq!(
        evaluation.lines[0].days_to_stop, None,
        "stock bridges three days"
    );
    let (_, evaluation) = net.run(30, &scenario(Some(day(4))));
    assert_eq!(evaluation.lines[0].days_to_stop, Some(3));
}

#[test]
fn lines_are_ordered_by_stop_day_then_loss_then_id() {
    let net = Net::default()
        .dy(None)
        .supplier("S", "CN")
        .component("MAG", &[("S", 1.0)], 10.0, &[], 0.0)
        .component("LATE", &[("S", 1.0)], 10.0, &[], 1000.0)
        .line("Z-BIG", 200.0, &["MAG"])
        .line("A-SMALL", 100.0, &["MAG"])
        .line("B-SMALL", 100.0, &["MAG"])
        .line("LATER", 500.0, &["LATE"])
        .line("SAFE", 1.0, &[]);
    let (structure, evaluation) = net.run(10, &Scenario::default());
    let order: Vec<String> = at_risk_order_of(&structure, &evaluation, None)
        .into_iter()
        .map(|l| line_report(&structure, &evaluation, l).line_id)
        .collect();
    assert_eq!(order, ["Z-BIG", "A-SMALL", "B-SMALL", "LATER"]);
    let all = exposure(&structure, &evaluation, &Scope::Network).unwrap();
    assert_eq!(
        all.lines.last().unwrap().line_id,
        "SAFE",
        "lines not at risk come last"
    );
    assert_eq!(all.lines_at_risk, 4);
    assert_eq!(all.earliest_stop_date, Some(date(AS_OF)));
}
