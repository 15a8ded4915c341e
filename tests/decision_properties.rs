//! The decision listings over random networks, against the model's own
//! definition: every supplier impact and licence stake is what two full
//! simulations of the changed scenario give, although the listings only
//! simulate each candidate's cone.

mod random_network;

use std::sync::atomic::AtomicBool;

use lodestone::domain::date::Date;
use lodestone::domain::record::{License, LicenseStatus, Shipment};
use lodestone::domain::risk::cone::{self, Base, Change, Cone, Scratch};
use lodestone::domain::risk::decide::{
    grant_date, license_stakes, supplier_impacts, LicenseStake, SupplierImpact,
};
use lodestone::domain::risk::simulate::{
    evaluate, pool_usable_with, Evaluation, Licensing, Outages,
};
use lodestone::domain::risk::structure::Structure;
use lodestone::domain::risk::{day_number, LicenseOverride, Scenario, SupplierOutage, EPS};
use proptest::prelude::*;
use random_network::{as_of, day, for_network, network, scenarios, Net};

const HORIZON: u32 = 60;

struct Model {
    structure: Structure,
    net: Net,
}

impl Model {
    fn new(net: Net) -> Model {
        Model {
            structure: Structure::build(
                &net.materials,
                &net.suppliers,
                &net.components,
                &net.lines,
            ),
            net,
        }
    }

    fn run(&self, scenario: &Scenario) -> Evaluation {
        evaluate(
            &self.structure,
            &self.net.licenses,
            [],
            scenario,
            as_of(),
            HORIZON,
        )
    }

    /// Line indices in scope, in id order.
    fn scope(&self, plant: Option<&str>) -> Vec<usize> {
        (0..self.structure.lines.len())
            .filter(|&l| plant.is_none_or(|p| self.structure.lines[l].plant == p))
            .collect()
    }

    fn total(&self, evaluation: &Evaluation, scope: &[usize]) -> f64 {
        scope.iter().map(|&l| evaluation.lines[l].units_lost).sum()
    }

    /// Every component of a line in scope.
    fn components_in_scope(&self, scope: &[usize]) -> Vec<u32> {
        let mut comps: Vec<u32> = scope
            .iter()
            .flat_map(|&l| self.structure.line_components[l].iter().copied())
            .collect();
        comps.sort_unstable();
        comps.dedup();
        comps
    }

    /// The listings as the engine computes them (cone runs on `threads`
    /// threads).
    fn listings(
        &self,
        scenario: &Scenario,
        plant: Option<&str>,
        recovery_days: u32,
        statuses: &[LicenseStatus],
        threads: usize,
    ) -> (Vec<SupplierImpact>, Vec<LicenseStake>) {
        let evaluation = self.run(scenario);
        let licensing = Licensing::new(
            &self.structure,
            &self.net.licenses,
            scenario,
            as_of(),
            HORIZON,
        );
        let outages = Outages::new(&self.structure, [], scenario, as_of());
        let base = || Base {
            structure: &self.structure,
            evaluation: &evaluation,
            licensing: &licensing,
            outages: &outages,
        };
        let never = AtomicBool::new(false);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                supplier_impacts(base(), plant, recovery_days, &never).unwrap(),
                license_stakes(
                    base(),
                    &self.net.licenses,
                    scenario,
                    plant,
                    statuses,
                    &never,
                )
                .unwrap(),
            )
        })
    }
}

fn with_outage(scenario: &Scenario, supplier: &str, days: u32) -> Scenario {
    let mut changed = scenario.clone();
    changed.outages.retain(|o| o.supplier_id != supplier);
    changed.outages.push(SupplierOutage {
        supplier_id: supplier.into(),
        starts_on: Some(as_of()),
        days,
    });
    changed
}

fn with_override(scenario: &Scenario, o: LicenseOverride) -> Scenario {
    let mut changed = scenario.clone();
    changed.overrides.retain(|x| x.license_id != o.license_id);
    changed.overrides.push(o);
    changed
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn rounded(x: f64) -> f64 {
    (x * 1000.0).round()
}

/// Supplier impacts as the model defines them, from full simulations.
fn impacts_by_definition(
    model: &Model,
    scenario: &Scenario,
    plant: Option<&str>,
    recovery_days: u32,
) -> Vec<SupplierImpact> {
    let structure = &model.structure;
    let scope = model.scope(plant);
    let base = model.run(scenario);
    let base_total = model.total(&base, &scope);
    let comps = model.components_in_scope(&scope);
    let mut impacts = Vec::new();
    for supplier in &model.net.suppliers {
        let feeds_scope = comps.iter().any(|&c| {
            structure.components[c as usize]
                .suppliers
                .contains(&supplier.id)
        });
        if !feeds_scope {
            continue;
        }
        let hit = model.run(&with_outage(scenario, &supplier.id, recovery_days));
        // An outage of 0 days lasts to the end of the horizon.
        let for_good = model.run(&with_outage(scenario, &supplier.id, 0));
        let survive = (0..HORIZON).find_map(|t| {
            scope
                .iter()
                .find(|&&l| {
                    for_good.history.line_out.at(l, t) < base.history.line_out.at(l, t) - EPS
                })
                .map(|&l| (t, structure.lines[l].id.clone()))
        });
        impacts.push(SupplierImpact {
            supplier_id: supplier.id.clone(),
            country: supplier.country.clone(),
            units_lost: model.total(&hit, &scope) - base_total,
            lines_hit: scope
                .iter()
                .filter(|&&l| hit.lines[l].units_lost > base.lines[l].units_lost + 1e-6)
                .count() as u32,
            time_to_survive_days: survive.as_ref().map(|(t, _)| *t),
            first_hit_line_id: survive.as_ref().map(|(_, l)| l.clone()).unwrap_or_default(),
            critical: survive.as_ref().is_some_and(|(t, _)| *t < recovery_days),
            risk_exposure_index: 0.0,
        });
    }
    let largest = impacts
        .iter()
        .map(|i| i.units_lost)
        .fold(f64::MIN, f64::max);
    if largest > 1e-6 {
        for i in &mut impacts {
            i.risk_exposure_index = i.units_lost / largest;
        }
    }
    impacts
}

/// Licence stakes as the model defines them, from full simulations.
fn stakes_by_definition(
    model: &Model,
    scenario: &Scenario,
    plant: Option<&str>,
    statuses: &[LicenseStatus],
) -> Vec<LicenseStake> {
    let structure = &model.structure;
    let scope = model.scope(plant);
    let comps = model.components_in_scope(&scope);
    // The earliest stop among the lines at stake (never idled here).
    let earliest = |e: &Evaluation, at_stake: &[usize]| -> Option<Date> {
        at_stake
            .iter()
            .filter_map(|&l| e.lines[l].days_to_stop)
            .min()
            .map(|d| as_of() + chrono::TimeDelta::days(d.into()))
    };
    let mut stakes = Vec::new();
    for license in &model.net.licenses {
        let status = scenario
            .overrides
            .iter()
            .find(|o| o.license_id == license.id)
            .map_or(license.status, |o| o.status);
        let Some(p) = structure.pool_of(license) else {
            continue;
        };
        let needed = comps
            .iter()
            .any(|&c| structure.components[c as usize].pools.contains(&(p as u32)));
        if !statuses.contains(&status) || !needed {
            continue;
        }
        let granted_on = grant_date(license, scenario, as_of());
        let decided = |status, effective_on| {
            model.run(&with_override(
                scenario,
                LicenseOverride {
                    license_id: license.id.clone(),
                    status,
                    effective_on,
                },
            ))
        };
        let denied = decided(LicenseStatus::Rejected, None);
        let granted = decided(LicenseStatus::Approved, Some(granted_on));
        let at_stake: Vec<usize> = scope
            .iter()
            .copied()
            .filter(|&l| denied.lines[l].units_lost > granted.lines[l].units_lost + 1e-6)
            .collect();
        stakes.push(LicenseStake {
            license_id: license.id.clone(),
            supplier_id: license.supplier_id.clone(),
            material: license.material.clone(),
            status,
            granted_on,
            units_at_stake: model.total(&denied, &scope) - model.total(&granted, &scope),
            lines_at_stake: at_stake.len() as u32,
            stop_date_if_denied: earliest(&denied, &at_stake),
            stop_date_if_granted: earliest(&granted, &at_stake),
        });
    }
    stakes
}

/// A scenario for `net`, with one licence's outcome overridden when asked.
fn scenario_for(
    net: &Net,
    scenario: Scenario,
    overridden: Option<(prop::sample::Index, i32)>,
) -> Scenario {
    let mut scenario = for_network(scenario, net);
    if let Some((which, status)) = overridden {
        if !net.licenses.is_empty() {
            let license = &net.licenses[which.index(net.licenses.len())];
            scenario.overrides.push(LicenseOverride {
                license_id: license.id.clone(),
                status: LicenseStatus::from_number(status),
                effective_on: Some(day(5)),
            });
        }
    }
    scenario
}

fn same_impacts(
    actual: &[SupplierImpact],
    expected: &[SupplierImpact],
) -> Result<(), TestCaseError> {
    let mut expected = expected.to_vec();
    expected.sort_by(|a, b| a.supplier_id.cmp(&b.supplier_id));
    let mut sorted = actual.to_vec();
    sorted.sort_by(|a, b| a.supplier_id.cmp(&b.supplier_id));
    let ids = |v: &[SupplierImpact]| v.iter().map(|i| i.supplier_id.clone()).collect::<Vec<_>>();
    prop_assert_eq!(ids(&sorted), ids(&expected), "the candidates");
    for (a, e) in sorted.iter().zip(&expected) {
        prop_assert!(close(a.units_lost, e.units_lost), "{:?} vs {:?}", a, e);
        prop_assert!(
            close(a.risk_exposure_index, e.risk_exposure_index),
            "{:?} vs {:?}",
            a,
            e
        );
        prop_assert_eq!(
            (
                a.lines_hit,
                a.time_to_survive_days,
                &a.first_hit_line_id,
                a.critical,
                &a.country
            ),
            (
                e.lines_hit,
                e.time_to_survive_days,
                &e.first_hit_line_id,
                e.critical,
                &e.country
            )
        );
    }
    Ok(())
}

fn same_stakes(actual: &[LicenseStake], expected: &[LicenseStake]) -> Result<(), TestCaseError> {
    let mut sorted = actual.to_vec();
    sorted.sort_by(|a, b| a.license_id.cmp(&b.license_id));
    let ids = |v: &[LicenseStake]| v.iter().map(|s| s.license_id.clone()).collect::<Vec<_>>();
    prop_assert_eq!(ids(&sorted), ids(expected), "the candidates");
    for (a, e) in sorted.iter().zip(expected) {
        prop_assert!(
            close(a.units_at_stake, e.units_at_stake),
            "{:?} vs {:?}",
            a,
            e
        );
        let mut a = a.clone();
        a.units_at_stake = e.units_at_stake;
        prop_assert_eq!(&a, e);
    }
    Ok(())
}

fn overrides() -> impl Strategy<Value = Option<(prop::sample::Index, i32)>> {
    proptest::option::of((any::<prop::sample::Index>(), 1i32..5))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Every supplier impact is what two full simulations with the
    /// supplier out give, and exactly the suppliers the lines in scope
    /// depend on are candidates.
    #[test]
    fn supplier_impacts_are_what_full_simulations_give(
        net in network(),
        scenario in scenarios(),
        overridden in overrides(),
        recovery_days in 1u32..40,
        by_plant in any::<bool>(),
    ) {
        let scenario = scenario_for(&net, scenario, overridden);
        let plant = by_plant.then_some("P0");
        let model = Model::new(net);
        let (impacts, _) = model.listings(&scenario, plant, recovery_days, &[LicenseStatus::Pending], 2);
        same_impacts(&impacts, &impacts_by_definition(&model, &scenario, plant, recovery_days))?;
        // In the model's order, and the first one sets the scale.
        for pair in impacts.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            prop_assert!(rounded(a.units_lost) >= rounded(b.units_lost), "{:?} before {:?}", a, b);
        }
        // (To rounding: the order compares losses to 3 decimals, so a loss
        // a few ulps below the largest can come first on a tie.)
        if let Some(first) = impacts.first() {
            if first.units_lost > 1e-6 {
                prop_assert!((first.risk_exposure_index - 1.0).abs() < 1e-9, "{:?}", first);
            }
        }
    }

    /// Every licence stake is what two full simulations (denied, granted)
    /// give, for exactly the licences of the asked statuses the lines in
    /// scope depend on.
    #[test]
    fn license_stakes_are_what_full_simulations_give(
        net in network(),
        scenario in scenarios(),
        overridden in overrides(),
        with_rejected in any::<bool>(),
        by_plant in any::<bool>(),
    ) {
        let scenario = scenario_for(&net, scenario, overridden);
        let plant = by_plant.then_some("P1");
        let statuses: &[LicenseStatus] = if with_rejected {
            &[LicenseStatus::Pending, LicenseStatus::Rejected, LicenseStatus::Revoked]
        } else {
            &[LicenseStatus::Pending]
        };
        let model = Model::new(net);
        let (_, stakes) = model.listings(&scenario, plant, 30, statuses, 2);
        same_stakes(&stakes, &stakes_by_definition(&model, &scenario, plant, statuses))?;
        for pair in stakes.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            prop_assert!(
                rounded(a.units_at_stake) > rounded(b.units_at_stake)
                    || rounded(a.units_at_stake) == rounded(b.units_at_stake) && a.license_id < b.license_id,
                "{:?} before {:?}", a, b
            );
        }
    }

    /// One cone run gives, line by line, exactly what the full simulation
    /// of the changed scenario gives, and every line outside the cone does
    /// exactly what it did in the base run.
    #[test]
    fn a_cone_run_is_the_full_run_restricted_to_the_cone(
        net in network(),
        scenario in scenarios(),
        which in any::<prop::sample::Index>(),
        window in (0i64..30, 0u32..30),
        license_change in proptest::option::of((any::<prop::sample::Index>(), 1i32..5, proptest::option::of(0i64..40))),
    ) {
        let scenario = for_network(scenario, &net);
        let model = Model::new(net);
        let structure = &model.structure;
        let base = model.run(&scenario);
        let licensing = Licensing::new(structure, &model.net.licenses, &scenario, as_of(), HORIZON);
        let outages = Outages::new(structure, [], &scenario, as_of());
        let mut scratch = Scratch::new(structure);
        let (cone, change, changed) = match license_change {
            Some((l, status, effective)) if !model.net.licenses.is_empty() => {
                let license = &model.net.licenses[l.index(model.net.licenses.len())];
                let Some(p) = structure.pool_of(license) else { return Ok(()) };
                let o = LicenseOverride {
                    license_id: license.id.clone(),
                    status: LicenseStatus::from_number(status),
                    effective_on: effective.map(day),
                };
                let members: Vec<&License> = model.net.licenses.iter()
                    .filter(|m| structure.pool_of(m) == Some(p)).collect();
                let usable = pool_usable_with(&members, &scenario, &o);
                (Cone::of_pool(structure, p as u32, &mut scratch),
                 Change::Licences(vec![(p as u32, usable)]),
                 with_override(&scenario, o))
            }
            _ => {
                let s = which.index(structure.supplier_ids.len()) as u32;
                let id = structure.supplier_ids[s as usize].clone();
                let (offset, days) = window;
                let first = day_number(day(offset));
                let end = if days == 0 { i32::MAX } else { first + days as i32 };
                let mut changed = scenario.clone();
                changed.outages.retain(|o| o.supplier_id != id);
                changed.outages.push(SupplierOutage { supplier_id: id, starts_on: Some(day(offset)), days });
                (Cone::of_supplier(structure, s, &mut scratch),
                 Change::Outage { supplier: s, first, end },
                 changed)
            }
        };
        let full = model.run(&changed);
        let base_ref = Base { structure, evaluation: &base, licensing: &licensing, outages: &outages };
        let lines = cone::run(&base_ref, &cone, &change, &mut scratch, &AtomicBool::new(false)).unwrap();
        let mut in_cone = vec![false; structure.lines.len()];
        for c in &lines {
            let l = c.line as usize;
            in_cone[l] = true;
            prop_assert_eq!(c.units_lost, full.lines[l].units_lost, "line {}", l);
            prop_assert_eq!(c.days_to_stop, full.lines[l].days_to_stop, "line {}", l);
            let worse = (0..HORIZON).find(|&t| {
                full.history.line_out.at(l, t) < base.history.line_out.at(l, t) - EPS
            });
            prop_assert_eq!(c.first_worse, worse, "line {}", l);
        }
        for l in (0..structure.lines.len()).filter(|&l| !in_cone[l]) {
            prop_assert_eq!(full.lines[l].units_lost, base.lines[l].units_lost, "line {} is outside the cone", l);
            prop_assert_eq!(full.lines[l].days_to_stop, base.lines[l].days_to_stop);
        }
    }

    /// After some licences change, re-running the cone of their pools gives
    /// exactly the evaluation a full run gives, history included.
    #[test]
    fn a_rerun_of_changed_pools_is_the_full_run(
        net in network(),
        scenario in scenarios(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..5, 0u32..300), 1..4),
    ) {
        let scenario = for_network(scenario, &net);
        prop_assume!(!net.licenses.is_empty());
        let model = Model::new(net);
        let structure = &model.structure;
        let mut licenses = model.net.licenses.clone();
        let mut touched: Vec<u32> = Vec::new();
        for (which, edit, amount) in edits {
            let i = which.index(licenses.len());
            touched.extend(structure.pool_of(&licenses[i]).map(|p| p as u32));
            let license = &mut licenses[i];
            match edit {
                0 => license.status = LicenseStatus::Approved,
                1 => license.status = LicenseStatus::Rejected,
                2 => license.quantity_kg = f64::from(amount),
                3 => license.valid_from = Some(day(i64::from(amount % 40))),
                _ => license.supplier_id = format!("S{}", amount % 3),
            }
            touched.extend(structure.pool_of(license).map(|p| p as u32));
        }
        touched.sort_unstable();
        touched.dedup();
        let base = model.run(&scenario);
        let before = Licensing::new(structure, &model.net.licenses, &scenario, as_of(), HORIZON);
        let after = Licensing::new(structure, &licenses, &scenario, as_of(), HORIZON);
        let outages = Outages::new(structure, [], &scenario, as_of());
        let base_ref = Base { structure, evaluation: &base, licensing: &before, outages: &outages };
        let mut scratch = Scratch::new(structure);
        let cone = Cone::of_pools(structure, &touched, &mut scratch);
        let again = cone::rerun(&base_ref, &cone, &after, &mut scratch, &AtomicBool::new(false)).unwrap();
        let full = evaluate(structure, &licenses, [], &scenario, as_of(), HORIZON);
        prop_assert_eq!(again, full);
    }

    /// After random shipments are written, changed and deleted, re-running
    /// the cone of their components (and of some changed licences' pools,
    /// the two together as the engine does) from the answer before gives
    /// exactly what a full run on the shipments after gives.
    #[test]
    fn a_rerun_after_shipment_edits_is_the_full_run(
        net in network(),
        scenario in scenarios(),
        before in proptest::collection::vec((any::<prop::sample::Index>(), 1u32..400, -5i64..70), 0..5),
        edits in proptest::collection::vec((0usize..8, any::<prop::sample::Index>(), 0u8..4, 1u32..400, -5i64..70), 1..5),
        licence_edit in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let scenario = for_network(scenario, &net);
        prop_assume!(!net.components.is_empty());
        let model = Model::new(net);
        let structure = &model.structure;
        let components = &model.net.components;
        let shipment = |id: usize, c: &prop::sample::Index, units: u32, offset: i64| Shipment {
            id: format!("SH{id}"),
            component_id: components[c.index(components.len())].id.clone(),
            units: f64::from(units),
            arrives_on: Some(day(offset)),
            reference: String::new(),
            revision: 1,
        };
        let old: Vec<Shipment> = before
            .iter()
            .enumerate()
            .map(|(i, (c, units, offset))| shipment(i, c, *units, *offset))
            .collect();
        let mut new = old.clone();
        let mut touched: Vec<String> = Vec::new();
        for (id, c, edit, units, offset) in &edits {
            let written = shipment(*id, c, *units, *offset);
            let kept = new.iter().position(|s| s.id == written.id);
            if let Some(k) = kept {
                touched.push(new[k].component_id.clone());
            }
            match (edit, kept) {
                (0, Some(k)) => {
                    new.remove(k);
                }
                (1, Some(k)) => new[k].units = written.units,
                (2, Some(k)) => new[k].arrives_on = written.arrives_on,
                (_, Some(k)) => {
                    touched.push(written.component_id.clone());
                    new[k] = written;
                }
                (_, None) => {
                    touched.push(written.component_id.clone());
                    new.push(written);
                }
            }
        }
        let mut positions: Vec<u32> = touched
            .iter()
            .map(|c| structure.flat.position[structure.component_index[c.as_str()] as usize])
            .collect();
        positions.sort_unstable();
        positions.dedup();
        let mut licenses = model.net.licenses.clone();
        let mut pools: Vec<u32> = Vec::new();
        if let (Some(which), false) = (licence_edit, licenses.is_empty()) {
            let license = &mut licenses[which.index(model.net.licenses.len())];
            license.status = LicenseStatus::Rejected;
            pools.extend(structure.pool_of(license).map(|p| p as u32));
        }
        let base = evaluate(structure, &model.net.licenses, &old, &scenario, as_of(), HORIZON);
        let before_licensing = Licensing::new(structure, &model.net.licenses, &scenario, as_of(), HORIZON);
        let after_licensing = Licensing::new(structure, &licenses, &scenario, as_of(), HORIZON);
        let outages = Outages::new(structure, &new, &scenario, as_of());
        let base_ref = Base {
            structure,
            evaluation: &base,
            licensing: &before_licensing,
            outages: &outages,
        };
        let mut scratch = Scratch::new(structure);
        let cone = Cone::of_changes(structure, &pools, &positions, &mut scratch);
        let again = cone::rerun(&base_ref, &cone, &after_licensing, &mut scratch, &AtomicBool::new(false)).unwrap();
        let full = evaluate(structure, &licenses, &new, &scenario, as_of(), HORIZON);
        prop_assert_eq!(again, full);
    }

    /// The listings are the same whether one thread or several ran them.
    #[test]
    fn the_listings_do_not_depend_on_how_many_threads_ran_them(
        net in network(),
        scenario in scenarios(),
    ) {
        let scenario = for_network(scenario, &net);
        let model = Model::new(net);
        let statuses = [LicenseStatus::Pending, LicenseStatus::Rejected];
        prop_assert_eq!(
            model.listings(&scenario, None, 20, &statuses, 1),
            model.listings(&scenario, None, 20, &statuses, 3)
        );
    }
}

/// The properties above would hold vacuously if no outage ever cost a thing
/// or no licence were ever at stake.
#[test]
fn random_networks_have_costly_suppliers_and_licences_at_stake() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut costly, mut harmless, mut at_stake, mut critical) = (0, 0, 0, 0);
    for _ in 0..150 {
        let model = Model::new(network().new_tree(&mut runner).unwrap().current());
        let scenario = Scenario {
            pending: lodestone::domain::risk::PendingAssumption::ApprovedAsExpected,
            ..Scenario::default()
        };
        let (impacts, stakes) = model.listings(&scenario, None, 10, &[LicenseStatus::Pending], 2);
        for i in &impacts {
            if i.units_lost > 1e-6 {
                costly += 1;
            } else {
                harmless += 1;
            }
            critical += usize::from(i.critical);
        }
        at_stake += stakes
            .iter()
            .filter(|s| s.units_at_stake.abs() > 1e-6)
            .count();
    }
    assert!(
        costly > 30 && harmless > 30 && at_stake > 30 && critical > 10,
        "{costly} costly, {harmless} harmless, {at_stake} at stake, {critical} critical"
    );
}
