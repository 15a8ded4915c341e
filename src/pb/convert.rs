//! Protobuf messages to domain records and back.
//!
//! Decoding never fails outright: what cannot be represented in the domain (an
//! unparsable date, a missing oneof) is reported as a violation at the field's
//! request path, and the rest of the record is still decoded so that its other
//! problems are found too.

use std::time::SystemTime;

use crate::domain::audit::{AuditEntry, Author};
use crate::domain::changelog::{ChangeKind, LicenseChange};
use crate::domain::date::{format_optional_date, parse_date, Date};
use crate::domain::record::{self as d, Kind, LicenseStatus, Record, RecordKey};
use crate::domain::validate::field_path;
use crate::domain::Violation;

use super::generated as pb;

/// Decodes one `Record` found at `path` (e.g. `records[3]`). Returns `None`,
/// with a violation, when the oneof is empty.
pub fn record_from_pb(
    record: pb::Record,
    path: &str,
    violations: &mut Vec<Violation>,
) -> Option<Record> {
    use pb::record::Record as R;
    let Some(inner) = record.record else {
        violations.push(Violation::new(
            path,
            "must hold one of material, supplier, component, line, license or shipment",
        ));
        return None;
    };
    let mut dates = DateReader {
        path: field_path(path, kind_of(&inner).name()),
        violations,
    };
    Some(match inner {
        R::Material(m) => Record::Material(d::Material {
            controlled_from: dates.read("controlled_from", &m.controlled_from),
            code: m.code,
            name: m.name,
            controlled_by: m.controlled_by,
            revision: m.revision,
        }),
        R::Supplier(s) => Record::Supplier(supplier_from_pb(s)),
        R::Component(c) => Record::Component(component_from_pb(c)),
        R::Line(l) => Record::Line(line_from_pb(l)),
        R::License(l) => Record::License(license_from_pb_at(l, &mut dates)),
        R::Shipment(s) => Record::Shipment(d::Shipment {
            arrives_on: dates.read("arrives_on", &s.arrives_on),
            id: s.id,
            component_id: s.component_id,
            units: s.units,
            reference: s.reference,
            revision: s.revision,
        }),
    })
}

fn kind_of(record: &pb::record::Record) -> Kind {
    use pb::record::Record as R;
    match record {
        R::Material(_) => Kind::Material,
        R::Supplier(_) => Kind::Supplier,
        R::Component(_) => Kind::Component,
        R::Line(_) => Kind::Line,
        R::License(_) => Kind::License,
        R::Shipment(_) => Kind::Shipment,
    }
}

/// Decodes a licence whose fields sit at the top of a request (no path).
pub fn license_from_pb(license: pb::License, violations: &mut Vec<Violation>) -> d::License {
    license_from_pb_at(
        license,
        &mut DateReader {
            path: String::new(),
            violations,
        },
    )
}

/// Parses dates, reporting the unparsable ones at their field paths.
pub struct DateReader<'a> {
    pub path: String,
    pub violations: &'a mut Vec<Violation>,
}

impl DateReader<'_> {
    pub fn read(&mut self, field: &str, text: &str) -> Option<Date> {
        if text.is_empty() {
            return None;
        }
        let date = parse_date(text);
        if date.is_none() {
            self.violations.push(Violation::new(
                field_path(&self.path, field),
                format!("{text:?} is not a calendar date written YYYY-MM-DD"),
            ));
        }
        date
    }
}

fn supplier_from_pb(s: pb::Supplier) -> d::Supplier {
    d::Supplier {
        id: s.id,
        name: s.name,
        country: s.country,
        tier: s.tier,
        revision: s.revision,
    }
}

fn component_from_pb(c: pb::Component) -> d::Component {
    d::Component {
        id: c.id,
        name: c.name,
        sources: c
            .sources
            .into_iter()
            .map(|s| d::Source {
                supplier_id: s.supplier_id,
                share: s.share,
            })
            .collect(),
        materials: c
            .materials
            .into_iter()
            .map(|m| d::MaterialContent {
                material: m.material,
                grams_per_unit: m.grams_per_unit,
            })
            .collect(),
        inputs: c
            .inputs
            .into_iter()
            .map(|i| d::ComponentInput {
                component_id: i.component_id,
                quantity: i.quantity,
            })
            .collect(),
        on_hand_units: c.on_hand_units,
        revision: c.revision,
    }
}

fn line_from_pb(l: pb::ProductionLine) -> d::ProductionLine {
    d::ProductionLine {
        id: l.id,
        name: l.name,
        plant: l.plant,
        units_per_day: l.units_per_day,
        bom: l
            .bom
            .into_iter()
            .map(|b| d::BomItem {
                component_id: b.component_id,
                quantity: b.quantity,
            })
            .collect(),
        revision: l.revision,
    }
}

fn license_from_pb_at(l: pb::License, dates: &mut DateReader<'_>) -> d::License {
    d::License {
        status: LicenseStatus::from_number(l.status),
        submitted_on: dates.read("submitted_on", &l.submitted_on),
        expected_decision_on: dates.read("expected_decision_on", &l.expected_decision_on),
        decided_on: dates.read("decided_on", &l.decided_on),
        valid_from: dates.read("valid_from", &l.valid_from),
        valid_until: dates.read("valid_until", &l.valid_until),
        id: l.id,
        supplier_id: l.supplier_id,
        material: l.material,
        quantity_kg: l.quantity_kg,
        used_kg: l.used_kg,
        revision: l.revision,
    }
}

pub fn license_status_to_pb(status: LicenseStatus) -> pb::LicenseStatus {
    match status {
        LicenseStatus::Unspecified => pb::LicenseStatus::Unspecified,
        LicenseStatus::Pending => pb::LicenseStatus::Pending,
        LicenseStatus::Approved => pb::LicenseStatus::Approved,
        LicenseStatus::Rejected => pb::LicenseStatus::Rejected,
        LicenseStatus::Revoked => pb::LicenseStatus::Revoked,
    }
}

pub fn material_to_pb(m: &d::Material) -> pb::Material {
    pb::Material {
        code: m.code.clone(),
        name: m.name.clone(),
        controlled_by: m.controlled_by.clone(),
        controlled_from: format_optional_date(m.controlled_from),
        revision: m.revision,
    }
}

pub fn supplier_to_pb(s: &d::Supplier) -> pb::Supplier {
    pb::Supplier {
        id: s.id.clone(),
        name: s.name.clone(),
        country: s.country.clone(),
        tier: s.tier,
        revision: s.revision,
    }
}

pub fn component_to_pb(c: &d::Component) -> pb::Component {
    pb::Component {
        id: c.id.clone(),
        name: c.name.clone(),
        sources: c
            .sources
            .iter()
            .map(|s| pb::Source {
                supplier_id: s.supplier_id.clone(),
                share: s.share,
            })
            .collect(),
        materials: c
            .materials
            .iter()
            .map(|m| pb::MaterialContent {
                material: m.material.clone(),
                grams_per_unit: m.grams_per_unit,
            })
            .collect(),
        inputs: c
            .inputs
            .iter()
            .map(|i| pb::ComponentInput {
                component_id: i.component_id.clone(),
                quantity: i.quantity,
            })
            .collect(),
        on_hand_units: c.on_hand_units,
        revision: c.revision,
    }
}

pub fn production_line_to_pb(l: &d::ProductionLine) -> pb::ProductionLine {
    pb::ProductionLine {
        id: l.id.clone(),
        name: l.name.clone(),
        plant: l.plant.clone(),
        units_per_day: l.units_per_day,
        bom: l
            .bom
            .iter()
            .map(|b| pb::BomItem {
                component_id: b.component_id.clone(),
                quantity: b.quantity,
            })
            .collect(),
        revision: l.revision,
    }
}

pub fn license_to_pb(l: &d::License) -> pb::License {
    pb::License {
        id: l.id.clone(),
        supplier_id: l.supplier_id.clone(),
        material: l.material.clone(),
        status: license_status_to_pb(l.status) as i32,
        quantity_kg: l.quantity_kg,
        used_kg: l.used_kg,
        submitted_on: format_optional_date(l.submitted_on),
        expected_decision_on: format_optional_date(l.expected_decision_on),
        decided_on: format_optional_date(l.decided_on),
        valid_from: format_optional_date(l.valid_from),
        valid_until: format_optional_date(l.valid_until),
        revision: l.revision,
    }
}

pub fn shipment_to_pb(s: &d::Shipment) -> pb::Shipment {
    pb::Shipment {
        id: s.id.clone(),
        component_id: s.component_id.clone(),
        units: s.units,
        arrives_on: format_optional_date(s.arrives_on),
        reference: s.reference.clone(),
        revision: s.revision,
    }
}

pub fn record_to_pb(record: &Record) -> pb::Record {
    use pb::record::Record as R;
    pb::Record {
        record: Some(match record {
            Record::Material(m) => R::Material(material_to_pb(m)),
            Record::Supplier(s) => R::Supplier(supplier_to_pb(s)),
            Record::Component(c) => R::Component(component_to_pb(c)),
            Record::Line(l) => R::Line(production_line_to_pb(l)),
            Record::License(l) => R::License(license_to_pb(l)),
            Record::Shipment(s) => R::Shipment(shipment_to_pb(s)),
        }),
    }
}

pub fn license_change_to_pb(change: &LicenseChange) -> pb::LicenseUpdate {
    pb::LicenseUpdate {
        sequence: change.sequence,
        revision: change.revision,
        kind: match change.kind {
            ChangeKind::Created => pb::ChangeKind::Created,
            ChangeKind::Updated => pb::ChangeKind::Updated,
            ChangeKind::Deleted => pb::ChangeKind::Deleted,
        } as i32,
        license: Some(license_to_pb(&change.license)),
        previous_status: license_status_to_pb(change.previous_status) as i32,
        recorded_at: Some(prost_types::Timestamp::from(change.recorded_at)),
        client: change.client.clone(),
    }
}

/// The key a `RecordRef` names, or `None` when its oneof is empty.
pub fn record_ref_to_key(reference: pb::RecordRef) -> Option<RecordKey> {
    use pb::record_ref::Ref;
    Some(match reference.r#ref? {
        Ref::Material(id) => RecordKey::new(Kind::Material, id),
        Ref::Supplier(id) => RecordKey::new(Kind::Supplier, id),
        Ref::Component(id) => RecordKey::new(Kind::Component, id),
        Ref::Line(id) => RecordKey::new(Kind::Line, id),
        Ref::License(id) => RecordKey::new(Kind::License, id),
        Ref::Shipment(id) => RecordKey::new(Kind::Shipment, id),
    })
}

/// The `RecordRef` that names `key`.
pub fn key_to_record_ref(key: &RecordKey) -> pb::RecordRef {
    use pb::record_ref::Ref;
    let id = key.id.clone();
    pb::RecordRef {
        r#ref: Some(match key.kind {
            Kind::Material => Ref::Material(id),
            Kind::Supplier => Ref::Supplier(id),
            Kind::Component => Ref::Component(id),
            Kind::Line => Ref::Line(id),
            Kind::License => Ref::License(id),
            Kind::Shipment => Ref::Shipment(id),
        }),
    }
}

pub fn audit_entry_to_pb(entry: &AuditEntry) -> pb::AuditEntry {
    let refs = |keys: &[RecordKey]| keys.iter().map(key_to_record_ref).collect();
    pb::AuditEntry {
        revision: entry.revision,
        recorded_at: Some(prost_types::Timestamp::from(entry.recorded_at)),
        author: Some(pb::Author {
            name: entry.author.name.clone(),
            subject: entry.author.subject.clone(),
            client_id: entry.author.client_id.clone(),
        }),
        request: entry.request.clone(),
        created_count: entry.created_count,
        updated_count: entry.updated_count,
        deleted_count: entry.deleted_count,
        created: refs(&entry.created),
        updated: refs(&entry.updated),
        deleted: refs(&entry.deleted),
    }
}

/// The entry `message` holds, or `None` when it names no time or a record
/// of no kind (it was not written by this service).
pub fn audit_entry_from_pb(message: pb::AuditEntry) -> Option<AuditEntry> {
    let keys = |refs: Vec<pb::RecordRef>| -> Option<Vec<RecordKey>> {
        refs.into_iter().map(record_ref_to_key).collect()
    };
    let author = message.author.unwrap_or_default();
    Some(AuditEntry {
        revision: message.revision,
        recorded_at: SystemTime::try_from(message.recorded_at?).ok()?,
        author: Author {
            name: author.name,
            subject: author.subject,
            client_id: author.client_id,
        },
        request: message.request,
        created_count: message.created_count,
        updated_count: message.updated_count,
        deleted_count: message.deleted_count,
        created: keys(message.created)?,
        updated: keys(message.updated)?,
        deleted: keys(message.deleted)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsable_dates_are_reported_at_their_paths_and_the_rest_decodes() {
        let mut violations = Vec::new();
        let record = pb::Record {
            record: Some(pb::record::Record::License(pb::License {
                id: "L".into(),
                valid_from: "2025-02-30".into(),
                valid_until: "2025-12-31".into(),
                status: 99,
                ..Default::default()
            })),
        };
        let decoded = record_from_pb(record, "records[4]", &mut violations).unwrap();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "records[4].license.valid_from");
        let Record::License(l) = decoded else {
            panic!()
        };
        assert_eq!(
            l.status,
            LicenseStatus::Unspecified,
            "unknown numbers are not a status"
        );
        assert_eq!(format_optional_date(l.valid_until), "2025-12-31");
    }

    #[test]
    fn an_empty_record_is_a_violation() {
        let mut violations = Vec::new();
        assert!(record_from_pb(pb::Record::default(), "records[0]", &mut violations).is_none());
        assert_eq!(violations[0].field, "records[0]");
    }

    #[test]
    fn records_round_trip_through_protobuf() {
        let mut violations = Vec::new();
        let original = pb::Record {
            record: Some(pb::record::Record::Component(pb::Component {
                id: "C".into(),
                name: "n".into(),
                sources: vec![pb::Source {
                    supplier_id: "S".into(),
                    share: 1.0,
                }],
                materials: vec![pb::MaterialContent {
                    material: "DY".into(),
                    grams_per_unit: 2.5,
                }],
                inputs: vec![pb::ComponentInput {
                    component_id: "X".into(),
                    quantity: 3.0,
                }],
                on_hand_units: 7.0,
                revision: 9,
            })),
        };
        let decoded = record_from_pb(original.clone(), "r", &mut violations).unwrap();
        assert!(violations.is_empty());
        assert_eq!(record_to_pb(&decoded), original);
    }
}
