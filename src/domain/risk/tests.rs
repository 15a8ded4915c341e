//! One test per rule of the risk model, on networks small enough to work out
//! by hand.

use std::sync::atomic::AtomicBool;

use super::cone::Base;
use super::decide::{grant_date, license_stakes, supplier_impacts, LicenseStake, SupplierImpact};
use super::report::{at_risk_order_of, exposure, line_report, Scope};
use super::simulate::{evaluate, Evaluation, Licensing, Outages};
use super::structure::Structure;
use super::{
    day_number, LicenseOverride, PendingAssumption, Scenario, ScenarioShipment, SupplierOutage,
};
use crate::domain::date::{parse_date, Date};
use crate::domain::record::{
    BomItem, Component, ComponentInput, License, LicenseStatus, Material, MaterialContent,
    ProductionLine, Shipment, Source, Supplier,
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
    shipments: Vec<Shipment>,
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

    fn shipment(mut self, id: &str, component: &str, units: f64, arrives: Date) -> Self {
        self.shipments.push(Shipment {
            id: id.into(),
            component_id: component.into(),
            units,
            arrives_on: Some(arrives),
            ..Default::default()
        });
        self
    }

    fn structure_idling(&self, idled: &[String]) -> Structure {
        Structure::build_with(
            &self.materials,
            &self.suppliers,
            &self.components,
            &self.lines,
            idled,
        )
    }

    fn run(&self, horizon: u32, scenario: &Scenario) -> (Structure, Evaluation) {
        let structure = self.structure_idling(&scenario.idled_lines);
        let evaluation = evaluate(
            &structure,
            &self.licenses,
            &self.shipments,
            scenario,
            date(AS_OF),
            horizon,
        );
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

fn out(supplier: &str, starts: Option<i64>, days: u32) -> SupplierOutage {
    SupplierOutage {
        supplier_id: supplier.into(),
        starts_on: starts.map(day),
        days,
    }
}

fn with_outages(outages: Vec<SupplierOutage>) -> Scenario {
    Scenario {
        outages,
        ..Scenario::default()
    }
}

#[test]
fn an_outage_starts_on_as_of_unless_told_and_lasts_to_the_horizon_unless_told() {
    let start = day_number(date(AS_OF));
    assert_eq!(out("S", None, 0).days_out(date(AS_OF)), (start, i32::MAX));
    assert_eq!(
        out("S", Some(3), 4).days_out(date(AS_OF)),
        (start + 3, start + 7)
    );
    // Begun before the first simulated day: only what is left of it counts.
    let net = magnet_line(100.0, 0.0).license(approved("A", "S", 1000.0, None, None));
    let (_, evaluation) = net.run(10, &with_outages(vec![out("S", Some(-5), 7)]));
    let line = &evaluation.lines[0];
    assert_eq!(line.days_to_stop, Some(0));
    assert!(
        (line.units_lost - 2.0 * 100.0).abs() < 1e-9,
        "out on days 0 and 1"
    );
}

#[test]
fn an_idle_pool_consumes_nothing_and_is_neither_covered_nor_uncovered() {
    // 1 kg a day from a 10 kg licence; the supplier is out on days 2 to 4.
    let net = magnet_line(100.0, 0.0).license(approved("A", "S", 10.0, None, None));
    let (structure, evaluation) = net.run(20, &with_outages(vec![out("S", Some(2), 3)]));
    // Days 0-1 and 5-12 draw the 10 kg; the idle days neither draw nor
    // count as uncovered, so the first uncovered day is 13, not 2 or 10.
    assert_eq!(evaluation.pools[0].covered_days, 13);
    let line = &evaluation.lines[0];
    assert_eq!(line.days_to_stop, Some(2));
    assert_eq!(line.output_fraction, 0.0);
    assert!(
        (line.units_lost - (3.0 + 7.0) * 100.0).abs() < 1e-9,
        "{}",
        line.units_lost
    );
    // On the stop day the pool is idle, not uncovered: the supplier blocks.
    assert!(line.blocking_pools.is_empty());
    assert!(line.blocking_licenses.is_empty());
    let report = line_report(&structure, &evaluation, 0);
    assert_eq!(report.blocking_supplier_ids, ["S"]);
}

#[test]
fn the_outage_term_takes_the_suppliers_share_and_names_it() {
    // MAG from A (CN, 60%, licensed) and B (DE, 40%, no licence needed);
    // MOTOR is made in-house from MAG.
    let net = Net::default()
        .dy(None)
        .supplier("A", "CN")
        .supplier("B", "DE")
        .component("MAG", &[("A", 0.6), ("B", 0.4)], 10.0, &[], 0.0)
        .component("MOTOR", &[], 0.0, &["MAG"], 0.0)
        .line("L", 100.0, &["MOTOR"])
        .license(approved("LA", "A", 1000.0, None, None));
    let (structure, evaluation) = net.run(10, &with_outages(vec![out("B", None, 0)]));
    let report = line_report(&structure, &evaluation, 0);
    assert_eq!(report.days_to_stop, Some(0));
    assert!((report.output_fraction - 0.6).abs() < 1e-12);
    assert_eq!(report.root_cause_path, ["MOTOR", "MAG"]);
    assert_eq!(report.blocking_supplier_ids, ["B"]);
    assert!(report.blocking_pools.is_empty());

    // With A's licence gone too, both are named: A's pool and B's outage.
    let mut unlicensed = net.clone();
    unlicensed.licenses.clear();
    let (structure, evaluation) = unlicensed.run(10, &with_outages(vec![out("B", None, 0)]));
    let report = line_report(&structure, &evaluation, 0);
    assert_eq!(report.output_fraction, 0.0);
    assert_eq!(report.blocking_pools, [("A".to_string(), "DY".to_string())]);
    assert_eq!(report.blocking_supplier_ids, ["B"]);
}

/// The two decision listings of `net` under `scenario`.
fn decide(
    net: &Net,
    scenario: &Scenario,
    horizon: u32,
    plant: Option<&str>,
    recovery_days: u32,
    statuses: &[LicenseStatus],
) -> (Vec<SupplierImpact>, Vec<LicenseStake>) {
    let (structure, evaluation) = net.run(horizon, scenario);
    let licensing = Licensing::new(&structure, &net.licenses, scenario, date(AS_OF), horizon);
    let outages = Outages::new(&structure, [], scenario, date(AS_OF));
    let base = || Base {
        structure: &structure,
        evaluation: &evaluation,
        licensing: &licensing,
        outages: &outages,
    };
    let never = AtomicBool::new(false);
    (
        supplier_impacts(base(), plant, recovery_days, &never).unwrap(),
        license_stakes(base(), &net.licenses, scenario, plant, statuses, &never).unwrap(),
    )
}

#[test]
fn supplier_impacts_weigh_an_outage_against_the_stock_that_bridges_it() {
    // No controlled material: only outages matter. A's part has no stock;
    // B's has 4 days of it; C's part is in no line.
    let mut net = Net::default()
        .dy(None)
        .supplier("A", "DE")
        .supplier("B", "DE")
        .supplier("C", "DE")
        .component("PART-A", &[("A", 1.0)], 0.0, &[], 0.0)
        .component("PART-B", &[("B", 1.0)], 0.0, &[], 200.0)
        .component("SPARE", &[("C", 1.0)], 0.0, &[], 0.0)
        .line("L1", 100.0, &["PART-A"])
        .line("L2", 50.0, &["PART-B"]);
    net.lines[1].plant = "Q".into();
    let (impacts, _) = decide(&net, &Scenario::default(), 30, None, 10, &[]);
    let ids: Vec<&str> = impacts.iter().map(|i| i.supplier_id.as_str()).collect();
    assert_eq!(ids, ["A", "B"], "C feeds no line: not a candidate");
    let (a, b) = (&impacts[0], &impacts[1]);
    assert!((a.units_lost - 10.0 * 100.0).abs() < 1e-9);
    assert_eq!(
        (a.lines_hit, a.time_to_survive_days, a.critical),
        (1, Some(0), true)
    );
    assert_eq!(a.first_hit_line_id, "L1");
    assert_eq!(a.risk_exposure_index, 1.0);
    // B: stock for days 0-3, then 6 short days of the 10.
    assert!((b.units_lost - 6.0 * 50.0).abs() < 1e-9);
    assert_eq!((b.time_to_survive_days, b.critical), (Some(4), true));
    assert!((b.risk_exposure_index - 0.3).abs() < 1e-12);
    assert_eq!(b.country, "DE");

    // Recovering within its stock's reach, B is not critical and costs
    // nothing, though it would not survive for ever.
    let (impacts, _) = decide(&net, &Scenario::default(), 30, Some("Q"), 4, &[]);
    assert_eq!(impacts.len(), 1, "only plant Q's supplier");
    let b = &impacts[0];
    assert_eq!(b.units_lost, 0.0);
    assert_eq!(
        (b.lines_hit, b.time_to_survive_days, b.critical),
        (0, Some(4), false)
    );
    assert_eq!(b.risk_exposure_index, 0.0, "nothing to scale by");
}

#[test]
fn an_outage_can_save_licence_stock_for_later() {
    // 1 kg a day from 10 kg over a 20-day horizon: an outage on days 0-4
    // loses 5 days but saves 5 kg that covers days 10-14: no net loss.
    let net = magnet_line(100.0, 0.0).license(approved("A", "S", 10.0, None, None));
    let (impacts, _) = decide(&net, &Scenario::default(), 20, None, 5, &[]);
    assert_eq!(impacts.len(), 1);
    assert!(impacts[0].units_lost.abs() < 1e-9, "{:?}", impacts[0]);
    assert_eq!(impacts[0].lines_hit, 0);
    assert_eq!(impacts[0].time_to_survive_days, Some(0));
    assert!(impacts[0].critical);
}

#[test]
fn grant_dates_follow_the_expected_decision_the_delay_and_as_of() {
    let as_of = date(AS_OF);
    let pending = License {
        status: LicenseStatus::Pending,
        ..approved("P", "S", 1.0, None, None)
    };
    let delay = |days| Scenario {
        decision_delay_days: days,
        ..Scenario::default()
    };
    let expected = License {
        expected_decision_on: Some(day(5)),
        submitted_on: Some(day(-100)),
        ..pending.clone()
    };
    assert_eq!(grant_date(&expected, &delay(0), as_of), day(5));
    assert_eq!(grant_date(&expected, &delay(3), as_of), day(8));
    let submitted = License {
        submitted_on: Some(day(-40)),
        ..pending.clone()
    };
    assert_eq!(
        grant_date(&submitted, &delay(0), as_of),
        day(5),
        "45 days after"
    );
    assert_eq!(grant_date(&pending, &delay(2), as_of), day(2), "from as_of");
    let long_ago = License {
        status: LicenseStatus::Rejected,
        expected_decision_on: Some(day(-30)),
        ..pending
    };
    assert_eq!(
        grant_date(&long_ago, &delay(10), as_of),
        as_of,
        "granted on appeal from as_of, never before"
    );
}

#[test]
fn licence_stakes_weigh_denial_against_a_grant_on_the_expected_day() {
    // 1 kg a day, no stock, 20 days. BIG (100 kg) is expected on day 5;
    // SMALL (10 kg) was expected 3 days ago, so it is granted from as_of.
    let pending = |id: &str, kg: f64, expected: i64| License {
        status: LicenseStatus::Pending,
        expected_decision_on: Some(day(expected)),
        ..approved(id, "S", kg, None, None)
    };
    let net = magnet_line(100.0, 0.0)
        .license(pending("BIG", 100.0, 5))
        .license(pending("SMALL", 10.0, -3))
        .license(License {
            status: LicenseStatus::Rejected,
            ..approved("NO", "S", 5.0, None, None)
        });
    let (_, stakes) = decide(
        &net,
        &Scenario::default(),
        20,
        None,
        30,
        &[LicenseStatus::Pending],
    );
    let ids: Vec<&str> = stakes.iter().map(|s| s.license_id.as_str()).collect();
    assert_eq!(ids, ["BIG", "SMALL"], "largest stake first; pending only");
    let (big, small) = (&stakes[0], &stakes[1]);
    // Denied: short all 20 days. Granted on day 5: short on days 0-4.
    assert!((big.units_at_stake - 1500.0).abs() < 1e-9);
    assert_eq!(big.granted_on, day(5));
    assert_eq!(big.lines_at_stake, 1);
    assert_eq!(big.stop_date_if_denied, Some(day(0)));
    assert_eq!(big.stop_date_if_granted, Some(day(0)));
    // Granted from as_of, 10 kg covers days 0-9.
    assert!((small.units_at_stake - 1000.0).abs() < 1e-9);
    assert_eq!(small.granted_on, day(0));
    assert_eq!(small.stop_date_if_granted, Some(day(10)));
    assert_eq!(small.status, LicenseStatus::Pending);

    // Asked for, a rejected licence is weighed as if granted on appeal.
    let statuses = [LicenseStatus::Pending, LicenseStatus::Rejected];
    let (_, stakes) = decide(&net, &Scenario::default(), 20, None, 30, &statuses);
    let no = stakes.iter().find(|s| s.license_id == "NO").unwrap();
    assert_eq!(no.granted_on, day(0));
    assert!((no.units_at_stake - 500.0).abs() < 1e-9);
    // Ties in the stake fall to the licence id.
    let twin = magnet_line(100.0, 0.0)
        .license(pending("B", 10.0, 0))
        .license(pending("A", 10.0, 0));
    let (_, stakes) = decide(
        &twin,
        &Scenario::default(),
        20,
        None,
        30,
        &[LicenseStatus::Pending],
    );
    let ids: Vec<&str> = stakes.iter().map(|s| s.license_id.as_str()).collect();
    assert_eq!(ids, ["A", "B"]);
}

/// A magnet with no licence and `stock` units, one line drawing 10 a day:
/// it runs while the stock lasts.
fn unlicensed(stock: f64) -> Net {
    Net::default()
        .dy(None)
        .supplier("S", "CN")
        .component("MAG", &[("S", 1.0)], 10.0, &[], stock)
        .line("L", 10.0, &["MAG"])
}

#[test]
fn a_shipment_joins_the_stock_on_its_day_before_the_draw() {
    // 50 units last days 0-4; 30 arriving on day 5 last days 5-7.
    let net = unlicensed(50.0).shipment("SH", "MAG", 30.0, day(5));
    let (_, evaluation) = net.run(20, &Scenario::default());
    assert_eq!(evaluation.lines[0].days_to_stop, Some(8));
    // A day earlier: the stock carries over, the stop is the same.
    let late = unlicensed(50.0).shipment("SH", "MAG", 30.0, day(4));
    assert_eq!(
        late.run(20, &Scenario::default()).1.lines[0].days_to_stop,
        Some(8)
    );
    let early = unlicensed(50.0).shipment("SH", "MAG", 30.0, day(6));
    assert_eq!(
        early.run(20, &Scenario::default()).1.lines[0].days_to_stop,
        Some(5)
    );
}

#[test]
fn a_past_due_shipment_arrives_on_day_0_and_one_past_the_horizon_never() {
    let past_due = unlicensed(0.0).shipment("SH", "MAG", 25.0, day(-10));
    let (_, evaluation) = past_due.run(10, &Scenario::default());
    assert_eq!(evaluation.lines[0].days_to_stop, Some(2));
    // 5 of the 10 on day 2.
    assert!((evaluation.lines[0].output_fraction - 0.5).abs() < 1e-12);
    let beyond = unlicensed(0.0).shipment("SH", "MAG", 1000.0, day(10));
    let (_, evaluation) = beyond.run(10, &Scenario::default());
    assert_eq!(evaluation.lines[0].days_to_stop, Some(0));
    assert!((evaluation.lines[0].units_lost - 100.0).abs() < 1e-9);
}

#[test]
fn a_scenario_shipment_arrives_after_the_stored_ones_of_its_day() {
    let net = unlicensed(10.0).shipment("SH", "MAG", 10.0, day(1));
    let airfreight = Scenario {
        shipments: vec![ScenarioShipment {
            component_id: "MAG".into(),
            units: 20.0,
            arrives_on: day(1),
        }],
        ..Scenario::default()
    };
    // 10 on hand, 10 + 20 on day 1: four days.
    let (_, evaluation) = net.run(10, &airfreight);
    assert_eq!(evaluation.lines[0].days_to_stop, Some(4));
    let (_, stored_only) = net.run(10, &Scenario::default());
    assert_eq!(stored_only.lines[0].days_to_stop, Some(2));
}

#[test]
fn shortfall_units_are_the_root_causes_missing_units_over_the_horizon() {
    // 10 a day for 10 days; 35 on hand: 3.5 days, then nothing.
    let net = unlicensed(35.0);
    let (structure, evaluation) = net.run(10, &Scenario::default());
    let line = line_report(&structure, &evaluation, 0);
    assert_eq!(line.root_cause_path, vec!["MAG".to_string()]);
    assert!(
        (line.shortfall_units - 65.0).abs() < 1e-9,
        "{}",
        line.shortfall_units
    );
    // With the shortfall on hand, the component never falls short.
    let (_, enough) = unlicensed(35.0 + line.shortfall_units).run(10, &Scenario::default());
    assert_eq!(enough.lines[0].days_to_stop, None);
    // A line not at risk lacks nothing.
    let (structure, evaluation) = unlicensed(100.0).run(10, &Scenario::default());
    assert_eq!(line_report(&structure, &evaluation, 0).shortfall_units, 0.0);
}

#[test]
fn an_idled_line_leaves_its_material_to_the_others_and_is_reported_idled() {
    // Two lines share 100 magnets: 20 a day between them lasts 5 days;
    // idling one leaves 10 a day, 10 days.
    let net = unlicensed(100.0).line("M", 10.0, &["MAG"]);
    let (_, both) = net.run(20, &Scenario::default());
    assert_eq!(both.lines[0].days_to_stop, Some(5));
    let idle = Scenario {
        idled_lines: vec!["M".into()],
        ..Scenario::default()
    };
    let (structure, evaluation) = net.run(20, &idle);
    assert_eq!(evaluation.lines[0].days_to_stop, Some(10));
    let idled = line_report(&structure, &evaluation, 1);
    assert!(idled.idled);
    assert_eq!(idled.days_to_stop, Some(0));
    assert_eq!(idled.stop_date, Some(date(AS_OF)));
    assert_eq!(idled.output_fraction, 0.0);
    assert_eq!(idled.units_lost, 10.0 * 20.0);
    assert_eq!(idled.shortfall_units, 0.0);
    assert!(idled.bottleneck_component_id.is_empty() && idled.root_cause_path.is_empty());
    // Counted at risk, but not in the earliest stop date.
    let whole = exposure(&structure, &evaluation, &Scope::Network).unwrap();
    assert_eq!(whole.lines_at_risk, 2);
    assert_eq!(whole.earliest_stop_date, Some(day(10)));
    assert_eq!(structure.pools[0].required_kg_per_day, 0.1);
}
