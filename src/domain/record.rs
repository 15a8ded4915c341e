//! The records of a supply network, in plain Rust.
//!
//! These are the shapes every other layer translates to and from: the api layer
//! from protobuf, the store to bytes. Nothing here knows about either.

use std::fmt;

use super::date::Date;

/// The six kinds of record. The discriminant is persisted in store keys, so
/// existing values must never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Material = 1,
    Supplier = 2,
    Component = 3,
    Line = 4,
    License = 5,
    Shipment = 6,
}

impl Kind {
    /// Every kind, in the order an export lists them: what others refer to
    /// comes before what refers to it.
    pub const ALL: [Kind; 6] = [
        Kind::Material,
        Kind::Supplier,
        Kind::Component,
        Kind::Line,
        Kind::License,
        Kind::Shipment,
    ];

    /// The name of the kind in the contract (the `Record` oneof field).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Material => "material",
            Kind::Supplier => "supplier",
            Kind::Component => "component",
            Kind::Line => "line",
            Kind::License => "license",
            Kind::Shipment => "shipment",
        }
    }

    /// The name of the identifier field of this kind.
    pub fn id_field(self) -> &'static str {
        match self {
            Kind::Material => "code",
            _ => "id",
        }
    }

    pub fn from_byte(byte: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == byte)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names one record: its kind and identifier.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    pub kind: Kind,
    pub id: String,
}

impl RecordKey {
    pub fn new(kind: Kind, id: impl Into<String>) -> Self {
        RecordKey {
            kind,
            id: id.into(),
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

/// Where an export licence application stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LicenseStatus {
    /// Not a valid status; present so that a missing value can be reported.
    #[default]
    Unspecified = 0,
    Pending = 1,
    Approved = 2,
    Rejected = 3,
    Revoked = 4,
}

impl LicenseStatus {
    /// The status with this wire number, `Unspecified` for unknown numbers.
    pub fn from_number(n: i32) -> LicenseStatus {
        match n {
            1 => LicenseStatus::Pending,
            2 => LicenseStatus::Approved,
            3 => LicenseStatus::Rejected,
            4 => LicenseStatus::Revoked,
            _ => LicenseStatus::Unspecified,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Material {
    pub code: String,
    pub name: String,
    /// Country that licenses exports; empty when not export-controlled.
    pub controlled_by: String,
    /// First controlled day; `None` means every day.
    pub controlled_from: Option<Date>,
    pub revision: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Supplier {
    pub id: String,
    pub name: String,
    /// Country the supplier ships from; empty when unknown.
    pub country: String,
    /// Tier in the supply chain, 0 when unknown. Informational.
    pub tier: i32,
    pub revision: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Source {
    pub supplier_id: String,
    /// Fraction of the component's supply, in (0, 1].
    pub share: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MaterialContent {
    pub material: String,
    pub grams_per_unit: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ComponentInput {
    pub component_id: String,
    /// Units of the input per unit of the component.
    pub quantity: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Component {
    pub id: String,
    pub name: String,
    /// Empty: made in-house.
    pub sources: Vec<Source>,
    pub materials: Vec<MaterialContent>,
    pub inputs: Vec<ComponentInput>,
    pub on_hand_units: f64,
    pub revision: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BomItem {
    pub component_id: String,
    /// Units of the component per unit built on the line.
    pub quantity: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProductionLine {
    pub id: String,
    pub name: String,
    pub plant: String,
    pub units_per_day: f64,
    pub bom: Vec<BomItem>,
    pub revision: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct License {
    pub id: String,
    pub supplier_id: String,
    pub material: String,
    pub status: LicenseStatus,
    pub quantity_kg: f64,
    pub used_kg: f64,
    pub submitted_on: Option<Date>,
    pub expected_decision_on: Option<Date>,
    pub decided_on: Option<Date>,
    pub valid_from: Option<Date>,
    pub valid_until: Option<Date>,
    pub revision: u64,
}

/// Units of a component on their way into its stock: an open purchase
/// order's schedule line or an advance shipping notice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shipment {
    pub id: String,
    pub component_id: String,
    pub units: f64,
    pub arrives_on: Option<Date>,
    /// Free text, such as the ERP's purchase order and item.
    pub reference: String,
    pub revision: u64,
}

/// Any one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Material(Material),
    Supplier(Supplier),
    Component(Component),
    Line(ProductionLine),
    License(License),
    Shipment(Shipment),
}

/// One reference from a record to another, borrowed from the record: what
/// it points at, and the field that holds it. Nothing is allocated until an
/// error names the field (an import checks hundreds of thousands of these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reference<'a> {
    pub kind: Kind,
    pub id: &'a str,
    pub field: Field,
}

impl Reference<'_> {
    pub fn is_to(&self, key: &RecordKey) -> bool {
        self.kind == key.kind && self.id == key.id
    }
}

/// The path of a field relative to its record: `supplier_id`, or
/// `sources[0].supplier_id` for a field of a list's item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Named(&'static str),
    Item {
        list: &'static str,
        index: usize,
        field: &'static str,
    },
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Named(name) => f.write_str(name),
            Field::Item { list, index, field } => write!(f, "{list}[{index}].{field}"),
        }
    }
}

impl Record {
    pub fn kind(&self) -> Kind {
        match self {
            Record::Material(_) => Kind::Material,
            Record::Supplier(_) => Kind::Supplier,
            Record::Component(_) => Kind::Component,
            Record::Line(_) => Kind::Line,
            Record::License(_) => Kind::License,
            Record::Shipment(_) => Kind::Shipment,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Record::Material(r) => &r.code,
            Record::Supplier(r) => &r.id,
            Record::Component(r) => &r.id,
            Record::Line(r) => &r.id,
            Record::License(r) => &r.id,
            Record::Shipment(r) => &r.id,
        }
    }

    pub fn key(&self) -> RecordKey {
        RecordKey::new(self.kind(), self.id())
    }

    pub fn revision(&self) -> u64 {
        match self {
            Record::Material(r) => r.revision,
            Record::Supplier(r) => r.revision,
            Record::Component(r) => r.revision,
            Record::Line(r) => r.revision,
            Record::License(r) => r.revision,
            Record::Shipment(r) => r.revision,
        }
    }

    pub fn set_revision(&mut self, revision: u64) {
        match self {
            Record::Material(r) => r.revision = revision,
            Record::Supplier(r) => r.revision = revision,
            Record::Component(r) => r.revision = revision,
            Record::Line(r) => r.revision = revision,
            Record::License(r) => r.revision = revision,
            Record::Shipment(r) => r.revision = revision,
        }
    }

    /// Whether two records hold the same data, whatever their revisions.
    pub fn same_content(&self, other: &Record) -> bool {
        let mut a = self.clone();
        a.set_revision(other.revision());
        a == *other
    }

    /// Every record this one refers to, in field order.
    pub fn references(&self) -> Vec<Reference<'_>> {
        fn items<'a, T: 'a>(
            list: &'static str,
            field: &'static str,
            kind: Kind,
            items: &'a [T],
            id: impl Fn(&'a T) -> &'a str + 'a,
        ) -> impl Iterator<Item = Reference<'a>> + 'a {
            items
                .iter()
                .enumerate()
                .map(move |(index, item)| Reference {
                    kind,
                    id: id(item),
                    field: Field::Item { list, index, field },
                })
        }
        match self {
            Record::Material(_) | Record::Supplier(_) => Vec::new(),
            Record::Component(c) => {
                items("sources", "supplier_id", Kind::Supplier, &c.sources, |s| {
                    &s.supplier_id
                })
                .chain(items(
                    "materials",
                    "material",
                    Kind::Material,
                    &c.materials,
                    |m| &m.material,
                ))
                .chain(items(
                    "inputs",
                    "component_id",
                    Kind::Component,
                    &c.inputs,
                    |i| &i.component_id,
                ))
                .collect()
            }
            Record::Line(l) => items("bom", "component_id", Kind::Component, &l.bom, |b| {
                &b.component_id
            })
            .collect(),
            Record::License(l) => vec![
                Reference {
                    kind: Kind::Supplier,
                    id: &l.supplier_id,
                    field: Field::Named("supplier_id"),
                },
                Reference {
                    kind: Kind::Material,
                    id: &l.material,
                    field: Field::Named("material"),
                },
            ],
            Record::Shipment(s) => vec![Reference {
                kind: Kind::Component,
                id: &s.component_id,
                field: Field::Named("component_id"),
            }],
        }
    }
}
