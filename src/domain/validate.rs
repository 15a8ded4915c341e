//! The rules a single record must keep on its own: identifier shapes, lengths,
//! ranges, duplicates within a list. Rules that need other records
//! (references, cycles) live in [`super::write`].
//!
//! Every check appends to a list instead of returning early, so that a client
//! learns everything that is wrong with its request at once.

use std::collections::HashSet;

use super::error::Violation;
use super::record::{
    Component, License, LicenseStatus, Material, ProductionLine, Record, Shipment, Supplier,
};

/// Longest identifier, in characters.
pub const MAX_ID_LEN: usize = 128;
/// Longest name, in characters.
pub const MAX_NAME_LEN: usize = 256;
/// Longest plant name, in characters.
pub const MAX_PLANT_LEN: usize = 128;
/// Most records one `UpsertRecords` request may carry.
pub const MAX_RECORDS_PER_REQUEST: usize = 10_000;
/// How far the shares of one component's sources may sum from 1.
pub const SHARE_SUM_TOLERANCE: f64 = 1e-6;

/// Why `text` is not an identifier, or `None` when it is one: 1 to 128
/// characters matching `^[A-Za-z0-9][A-Za-z0-9._:-]*$`.
pub fn identifier_problem(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("is required".into());
    }
    let len = text.chars().count();
    if len > MAX_ID_LEN {
        return Some(format!(
            "is {len} characters long; at most {MAX_ID_LEN} are allowed"
        ));
    }
    let mut chars = text.chars();
    let first = chars.next().unwrap_or_default();
    if !first.is_ascii_alphanumeric() {
        return Some(format!(
            "{text:?} must start with a letter or digit (pattern ^[A-Za-z0-9][A-Za-z0-9._:-]*$)"
        ));
    }
    if let Some(bad) =
        chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Some(format!(
            "{text:?} contains {bad:?}; only letters, digits and . _ : - are allowed (pattern ^[A-Za-z0-9][A-Za-z0-9._:-]*$)"
        ));
    }
    None
}

/// Whether `text` is an ISO 3166-1 alpha-2 shaped code: two upper-case letters.
pub fn is_country_code(text: &str) -> bool {
    text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase())
}

/// Appends to `out` every violation of the rules that `record` must keep on
/// its own. `path` locates the record in the request (`records[2].license`);
/// field paths are built under it.
pub fn check_record(record: &Record, path: &str, out: &mut Vec<Violation>) {
    let mut c = Checker { path, out };
    match record {
        Record::Material(m) => c.material(m),
        Record::Supplier(s) => c.supplier(s),
        Record::Component(comp) => c.component(comp),
        Record::Line(l) => c.line(l),
        Record::License(l) => c.license(l),
        Record::Shipment(sh) => c.shipment(sh),
    }
}

/// A sum of decimal fractions as a person writes it: floating-point noise
/// below the ninth decimal dropped (0.5 + 0.4 reads 0.9, not
/// 0.8999999999999999).
fn as_written(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// Joins a record path and a field name: `records[0].license` + `status`.
pub fn field_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

struct Checker<'a> {
    path: &'a str,
    out: &'a mut Vec<Violation>,
}

impl Checker<'_> {
    fn violation(&mut self, field: &str, description: impl Into<String>) {
        self.out
            .push(Violation::new(field_path(self.path, field), description));
    }

    fn identifier(&mut self, field: &str, value: &str) {
        if let Some(problem) = identifier_problem(value) {
            self.violation(field, problem);
        }
    }

    fn name(&mut self, value: &str) {
        let len = value.chars().count();
        if len > MAX_NAME_LEN {
            self.violation(
                "name",
                format!("is {len} characters long; at most {MAX_NAME_LEN} are allowed"),
            );
        }
    }

    fn finite(&mut self, field: &str, value: f64) -> bool {
        if value.is_finite() {
            true
        } else {
            self.violation(field, format!("must be a finite number, not {value}"));
            false
        }
    }

    fn non_negative(&mut self, field: &str, value: f64) {
        if self.finite(field, value) && value < 0.0 {
            self.violation(field, format!("must be >= 0, not {value}"));
        }
    }

    fn positive(&mut self, field: &str, value: f64) {
        if self.finite(field, value) && value <= 0.0 {
            self.violation(field, format!("must be > 0, not {value}"));
        }
    }

    /// Reports every id that appears more than once in one list.
    fn unique<'i>(
        &mut self,
        list: &str,
        field: &str,
        what: &str,
        ids: impl Iterator<Item = &'i str>,
    ) {
        let mut seen = HashSet::new();
        for (i, id) in ids.enumerate() {
            if !id.is_empty() && !seen.insert(id) {
                self.violation(
                    &format!("{list}[{i}].{field}"),
                    format!("{what} {id:?} appears more than once in {list}"),
                );
            }
        }
    }

    fn material(&mut self, m: &Material) {
        self.identifier("code", &m.code);
        self.name(&m.name);
        if !m.controlled_by.is_empty() && !is_country_code(&m.controlled_by) {
            self.violation(
                "controlled_by",
                format!(
                    "{:?} is not an ISO 3166-1 alpha-2 country code (two upper-case letters); leave it empty when the material is not controlled",
                    m.controlled_by
                ),
            );
        }
    }

    fn supplier(&mut self, s: &Supplier) {
        self.identifier("id", &s.id);
        self.name(&s.name);
        if !s.country.is_empty() && !is_country_code(&s.country) {
            self.violation(
                "country",
                format!(
                    "{:?} is not an ISO 3166-1 alpha-2 country code (two upper-case letters)",
                    s.country
                ),
            );
        }
        if s.tier < 0 {
            self.violation(
                "tier",
                format!("must be >= 0 (0 = unknown), not {}", s.tier),
            );
        }
    }

    fn component(&mut self, c: &Component) {
        self.identifier("id", &c.id);
        self.name(&c.name);
        let mut share_sum = 0.0;
        let mut shares_finite = true;
        for (i, s) in c.sources.iter().enumerate() {
            self.identifier(&format!("sources[{i}].supplier_id"), &s.supplier_id);
            let field = format!("sources[{i}].share");
            if self.finite(&field, s.share) {
                if s.share <= 0.0 || s.share > 1.0 {
                    self.violation(&field, format!("must be in (0, 1], not {}", s.share));
                }
                share_sum += s.share;
            } else {
                shares_finite = false;
            }
        }
        if !c.sources.is_empty() && shares_finite && (share_sum - 1.0).abs() > SHARE_SUM_TOLERANCE {
            self.violation(
                "sources",
                format!(
                    "shares must sum to 1 (within {SHARE_SUM_TOLERANCE}), not {}",
                    as_written(share_sum)
                ),
            );
        }
        self.unique(
            "sources",
            "supplier_id",
            "supplier",
            c.sources.iter().map(|s| s.supplier_id.as_str()),
        );
        for (i, m) in c.materials.iter().enumerate() {
            self.identifier(&format!("materials[{i}].material"), &m.material);
            self.non_negative(&format!("materials[{i}].grams_per_unit"), m.grams_per_unit);
        }
        self.unique(
            "materials",
            "material",
            "material",
            c.materials.iter().map(|m| m.material.as_str()),
        );
        for (i, input) in c.inputs.iter().enumerate() {
            self.identifier(&format!("inputs[{i}].component_id"), &input.component_id);
            self.positive(&format!("inputs[{i}].quantity"), input.quantity);
            // A component that is its own input is a cycle of length 1: the
            // cycle check reports it (CYCLE_DETECTED), as api.md asks.
        }
        self.unique(
            "inputs",
            "component_id",
            "component",
            c.inputs.iter().map(|i| i.component_id.as_str()),
        );
        self.non_negative("on_hand_units", c.on_hand_units);
    }

    fn line(&mut self, l: &ProductionLine) {
        self.identifier("id", &l.id);
        self.name(&l.name);
        let plant_len = l.plant.chars().count();
        if plant_len == 0 {
            self.violation("plant", "is required");
        } else if plant_len > MAX_PLANT_LEN {
            self.violation(
                "plant",
                format!("is {plant_len} characters long; at most {MAX_PLANT_LEN} are allowed"),
            );
        } else if l.plant.chars().any(char::is_control) {
            self.violation("plant", "must not contain control characters");
        }
        self.positive("units_per_day", l.units_per_day);
        for (i, item) in l.bom.iter().enumerate() {
            self.identifier(&format!("bom[{i}].component_id"), &item.component_id);
            self.positive(&format!("bom[{i}].quantity"), item.quantity);
        }
        self.unique(
            "bom",
            "component_id",
            "component",
            l.bom.iter().map(|b| b.component_id.as_str()),
        );
    }

    fn license(&mut self, l: &License) {
        self.identifier("id", &l.id);
        self.identifier("supplier_id", &l.supplier_id);
        self.identifier("material", &l.material);
        if l.status == LicenseStatus::Unspecified {
            self.violation(
                "status",
                "must be LICENSE_STATUS_PENDING, LICENSE_STATUS_APPROVED, LICENSE_STATUS_REJECTED or LICENSE_STATUS_REVOKED",
            );
        }
        self.positive("quantity_kg", l.quantity_kg);
        self.non_negative("used_kg", l.used_kg);
        if l.used_kg.is_finite() && l.quantity_kg.is_finite() && l.used_kg > l.quantity_kg {
            self.violation(
                "used_kg",
                format!(
                    "must not exceed quantity_kg ({}), is {}",
                    l.quantity_kg, l.used_kg
                ),
            );
        }
        if let (Some(from), Some(until)) = (l.valid_from, l.valid_until) {
            if from > until {
                self.violation(
                    "valid_until",
                    format!("{until} is before valid_from {from}"),
                );
            }
        }
    }

    fn shipment(&mut self, s: &Shipment) {
        self.identifier("id", &s.id);
        self.identifier("component_id", &s.component_id);
        self.positive("units", s.units);
        if s.arrives_on.is_none() {
            self.violation("arrives_on", "must be a date (YYYY-MM-DD)");
        }
        let len = s.reference.chars().count();
        if len > MAX_NAME_LEN {
            self.violation(
                "reference",
                format!("is {len} characters long; at most {MAX_NAME_LEN} are allowed"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::{BomItem, ComponentInput, MaterialContent, Source};

    fn violations(record: &Record) -> Vec<Violation> {
        let mut out = Vec::new();
        check_record(record, "records[0].x", &mut out);
        out
    }

    fn fields(record: &Record) -> Vec<String> {
        violations(record).into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn identifiers_follow_the_pattern_and_length() {
        for ok in [
            "A",
            "dy",
            "LIC-NBM-DY-1",
            "a.b_c:d-e",
            "0",
            &"x".repeat(128),
        ] {
            assert_eq!(identifier_problem(ok), None, "{ok:?}");
        }
        for bad in ["", "-A", ".a", "a b", "a/b", "ä", "a\0", &"x".repeat(129)] {
            assert!(identifier_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn country_codes_are_two_upper_case_letters() {
        assert!(is_country_code("CN"));
        for bad in ["cn", "C", "CHN", "C1", ""] {
            assert!(!is_country_code(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_valid_component_has_no_violations() {
        let c = Record::Component(Component {
            id: "MAG".into(),
            sources: vec![
                Source {
                    supplier_id: "A".into(),
                    share: 0.6,
                },
                Source {
                    supplier_id: "B".into(),
                    share: 0.4,
                },
            ],
            materials: vec![MaterialContent {
                material: "DY".into(),
                grams_per_unit: 0.0,
            }],
            inputs: vec![ComponentInput {
                component_id: "X".into(),
                quantity: 2.0,
            }],
            ..Default::default()
        });
        assert_eq!(violations(&c), vec![]);
    }

    #[test]
    fn component_rules_are_all_reported_at_once() {
        let c = Record::Component(Component {
            id: "C".into(),
            name: "n".repeat(257),
            sources: vec![
                Source {
                    supplier_id: "A".into(),
                    share: 0.0,
                },
                Source {
                    supplier_id: "A".into(),
                    share: 1.5,
                },
            ],
            materials: vec![
                MaterialContent {
                    material: "DY".into(),
                    grams_per_unit: -1.0,
                },
                MaterialContent {
                    material: "DY".into(),
                    grams_per_unit: f64::NAN,
                },
            ],
            inputs: vec![ComponentInput {
                component_id: "C".into(),
                quantity: 0.0,
            }],
            on_hand_units: f64::INFINITY,
            ..Default::default()
        });
        let f = fields(&c);
        for expected in [
            "records[0].x.name",
            "records[0].x.sources[0].share",
            "records[0].x.sources[1].share",
            "records[0].x.sources",
            "records[0].x.sources[1].supplier_id",
            "records[0].x.materials[0].grams_per_unit",
            "records[0].x.materials[1].grams_per_unit",
            "records[0].x.materials[1].material",
            "records[0].x.inputs[0].quantity",
            "records[0].x.on_hand_units",
        ] {
            assert!(
                f.iter().any(|x| x == expected),
                "missing {expected} in {f:?}"
            );
        }
    }

    #[test]
    fn shares_must_sum_to_one_within_tolerance() {
        let with = |a: f64, b: f64| {
            Record::Component(Component {
                id: "C".into(),
                sources: vec![
                    Source {
                        supplier_id: "A".into(),
                        share: a,
                    },
                    Source {
                        supplier_id: "B".into(),
                        share: b,
                    },
                ],
                ..Default::default()
            })
        };
        assert!(violations(&with(0.5, 0.5)).is_empty());
        assert!(violations(&with(0.5, 0.5000009)).is_empty());
        assert_eq!(fields(&with(0.5, 0.49)), vec!["records[0].x.sources"]);
    }

    #[test]
    fn line_rules() {
        let l = Record::Line(ProductionLine {
            id: "L".into(),
            plant: String::new(),
            units_per_day: 0.0,
            bom: vec![
                BomItem {
                    component_id: "C".into(),
                    quantity: -1.0,
                },
                BomItem {
                    component_id: "C".into(),
                    quantity: 1.0,
                },
            ],
            ..Default::default()
        });
        assert_eq!(
            fields(&l),
            vec![
                "records[0].x.plant",
                "records[0].x.units_per_day",
                "records[0].x.bom[0].quantity",
                "records[0].x.bom[1].component_id",
            ]
        );
    }

    #[test]
    fn license_rules() {
        let d = |s| crate::domain::date::parse_date(s);
        let l = Record::License(License {
            id: "L".into(),
            supplier_id: "S".into(),
            material: "".into(),
            status: LicenseStatus::Unspecified,
            quantity_kg: 10.0,
            used_kg: 11.0,
            valid_from: d("2025-06-02"),
            valid_until: d("2025-06-01"),
            ..Default::default()
        });
        assert_eq!(
            fields(&l),
            vec![
                "records[0].x.material",
                "records[0].x.status",
                "records[0].x.used_kg",
                "records[0].x.valid_until",
            ]
        );
    }

    #[test]
    fn material_and_supplier_rules() {
        let m = Record::Material(Material {
            code: "DY".into(),
            controlled_by: "cn".into(),
            ..Default::default()
        });
        assert_eq!(fields(&m), vec!["records[0].x.controlled_by"]);
        let s = Record::Supplier(Supplier {
            id: "S".into(),
            country: "DEU".into(),
            tier: -1,
            ..Default::default()
        });
        assert_eq!(
            fields(&s),
            vec!["records[0].x.country", "records[0].x.tier"]
        );
    }
}
