//! An in-memory, copy-on-write view of every record at one revision.
//!
//! The writer path builds the next view under the writer lock right after
//! each commit, so a `View` is always exactly the store at `revision`, and
//! publishes it once the commit is durable. Cloning one is cheap (persistent
//! maps share their nodes), which gives consistent snapshots for free: a
//! `Get`, a page of a list, an export or a risk evaluation works on the view
//! it took however many writes follow, so no reader ever sees part of a
//! write, and none waits for one.

use std::ops::Bound;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use crate::domain::record::{
    Component, License, LicenseStatus, Material, ProductionLine, Record, RecordKey, Supplier,
};
use crate::domain::write::Change;
use crate::domain::Kind;

/// What a list request selects. Empty strings and `Unspecified` mean "any".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListQuery {
    Materials,
    Suppliers {
        country: String,
    },
    Components {
        supplier_id: String,
        material: String,
    },
    Lines {
        plant: String,
    },
    Licenses {
        supplier_id: String,
        material: String,
        status: LicenseStatus,
    },
}

impl ListQuery {
    pub fn kind(&self) -> Kind {
        match self {
            ListQuery::Materials => Kind::Material,
            ListQuery::Suppliers { .. } => Kind::Supplier,
            ListQuery::Components { .. } => Kind::Component,
            ListQuery::Lines { .. } => Kind::Line,
            ListQuery::Licenses { .. } => Kind::License,
        }
    }
}

/// One page of a list, read at one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct ListPage {
    pub records: Vec<Record>,
    /// Matches over all pages.
    pub total: u64,
    /// Whether records follow the last one of this page.
    pub more: bool,
    pub revision: u64,
}

/// `(value, record id)` pairs, in order: the ids of the records with one
/// value of a field (a supplier's components), in id order.
type Index = OrdSet<(String, String)>;

/// The secondary indexes lists filter by.
#[derive(Clone, Debug, Default)]
struct Indexes {
    suppliers_by_country: Index,
    components_by_supplier: Index,
    components_by_material: Index,
    lines_by_plant: Index,
    licenses_by_supplier: Index,
    licenses_by_material: Index,
    licenses_by_status: Index,
}

fn status_key(status: LicenseStatus) -> String {
    (status as i32).to_string()
}

impl Indexes {
    /// Adds (`add`) or removes the entries of `record`.
    fn update(&mut self, record: &Record, add: bool) {
        let entry = |index: &mut Index, value: &str, id: &str| {
            let pair = (value.to_string(), id.to_string());
            if add {
                index.insert(pair);
            } else {
                index.remove(&pair);
            }
        };
        match record {
            Record::Material(_) => {}
            Record::Supplier(s) => entry(&mut self.suppliers_by_country, &s.country, &s.id),
            Record::Component(c) => {
                for source in &c.sources {
                    entry(&mut self.components_by_supplier, &source.supplier_id, &c.id);
                }
                for content in &c.materials {
                    entry(&mut self.components_by_material, &content.material, &c.id);
                }
            }
            Record::Line(l) => entry(&mut self.lines_by_plant, &l.plant, &l.id),
            Record::License(l) => {
                entry(&mut self.licenses_by_supplier, &l.supplier_id, &l.id);
                entry(&mut self.licenses_by_material, &l.material, &l.id);
                entry(&mut self.licenses_by_status, &status_key(l.status), &l.id);
            }
        }
    }
}

/// The ids under `value` in `index`, after `after`, in id order.
fn indexed<'a>(
    index: &'a Index,
    value: &'a str,
    after: Option<&str>,
) -> impl Iterator<Item = &'a String> + 'a {
    let from = match after {
        Some(id) => Bound::Excluded((value.to_string(), id.to_string())),
        None => Bound::Included((value.to_string(), String::new())),
    };
    index
        .range((from, Bound::Unbounded))
        .take_while(move |(v, _)| v == value)
        .map(|(_, id)| id)
}

/// The ids of `map` after `after`, in order.
fn all_after<'a, T>(
    map: &'a OrdMap<String, Arc<T>>,
    after: Option<&'a str>,
) -> Box<dyn Iterator<Item = &'a String> + 'a> {
    match after {
        Some(id) => Box::new(
            map.range::<_, str>((Bound::Excluded(id), Bound::Unbounded))
                .map(|(k, _)| k),
        ),
        None => Box::new(map.keys()),
    }
}

/// Where a listing's candidates come from: every record of the kind, or one
/// value of an index. `exact` when every candidate matches the query (so
/// that counting them reads no record).
struct Candidates<'a> {
    index: Option<(&'a Index, &'a str)>,
    exact: bool,
}

impl<'a> Candidates<'a> {
    fn all() -> Self {
        Candidates {
            index: None,
            exact: true,
        }
    }

    fn by(index: &'a Index, value: &'a str, exact: bool) -> Self {
        Candidates {
            index: Some((index, value)),
            exact,
        }
    }

    fn ids<T>(
        &self,
        map: &'a OrdMap<String, Arc<T>>,
        after: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        match self.index {
            Some((index, value)) => Box::new(indexed(index, value, after)),
            None => all_after(map, after),
        }
    }
}

/// One page of the records of `map` that `candidates` names and `matches`
/// accepts, after `after`, with the count over all pages.
fn page<'a, T: Clone>(
    map: &'a OrdMap<String, Arc<T>>,
    candidates: Candidates<'a>,
    matches: impl Fn(&T) -> bool,
    wrap: impl Fn(T) -> Record,
    after: Option<&'a str>,
    limit: usize,
) -> (Vec<Record>, u64, bool) {
    let lookup = |id: &String| map.get(id.as_str());
    let mut records = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    for record in candidates.ids(map, after).filter_map(lookup) {
        if !matches(record) {
            continue;
        }
        if records.len() == limit {
            more = true;
            break;
        }
        records.push(wrap(T::clone(record)));
    }
    let total = match (candidates.index, candidates.exact) {
        (None, true) => map.len(),
        (Some((index, value)), true) => indexed(index, value, None).count(),
        _ => candidates
            .ids(map, None)
            .filter_map(lookup)
            .filter(|r| matches(r))
            .count(),
    };
    (records, total as u64, more)
}

#[derive(Clone, Debug, Default)]
pub struct View {
    /// The store revision this view is.
    pub revision: u64,
    /// How many times the store was opened again after failing to write.
    /// A write that failed may have used a revision that the reopened store
    /// gives to another write, so whatever is cached by revision is cached
    /// by (epoch, revision).
    pub epoch: u64,
    /// The revision of the last change to anything but a licence: the risk
    /// model's structure stays valid while this stays the same.
    pub structure_revision: u64,
    pub materials: OrdMap<String, Arc<Material>>,
    pub suppliers: OrdMap<String, Arc<Supplier>>,
    pub components: OrdMap<String, Arc<Component>>,
    pub lines: OrdMap<String, Arc<ProductionLine>>,
    pub licenses: OrdMap<String, Arc<License>>,
    indexes: Indexes,
}

impl View {
    /// A view of `records`, all at `revision`.
    pub fn new(revision: u64, records: impl IntoIterator<Item = Record>) -> View {
        let mut view = View {
            revision,
            structure_revision: revision,
            ..View::default()
        };
        for record in records {
            view.put(record);
        }
        view
    }

    fn put(&mut self, record: Record) {
        let key = record.key();
        if let Some(old) = self.get(&key) {
            self.indexes.update(&old, false);
        }
        self.indexes.update(&record, true);
        match record {
            Record::Material(r) => {
                self.materials.insert(r.code.clone(), Arc::new(r));
            }
            Record::Supplier(r) => {
                self.suppliers.insert(r.id.clone(), Arc::new(r));
            }
            Record::Component(r) => {
                self.components.insert(r.id.clone(), Arc::new(r));
            }
            Record::Line(r) => {
                self.lines.insert(r.id.clone(), Arc::new(r));
            }
            Record::License(r) => {
                self.licenses.insert(r.id.clone(), Arc::new(r));
            }
        }
    }

    fn remove(&mut self, kind: Kind, id: &str) {
        if let Some(old) = self.get(&RecordKey::new(kind, id.to_string())) {
            self.indexes.update(&old, false);
        }
        match kind {
            Kind::Material => drop(self.materials.remove(id)),
            Kind::Supplier => drop(self.suppliers.remove(id)),
            Kind::Component => drop(self.components.remove(id)),
            Kind::Line => drop(self.lines.remove(id)),
            Kind::License => drop(self.licenses.remove(id)),
        }
    }

    /// The view after `changes` were committed at `revision`.
    pub fn apply(&mut self, revision: u64, changes: Vec<Change>) {
        self.revision = revision;
        for change in changes {
            let key = change.key();
            if key.kind != Kind::License {
                self.structure_revision = revision;
            }
            match change.new {
                Some(record) => self.put(record),
                None => self.remove(key.kind, &key.id),
            }
        }
    }

    /// The record at `key`, if the view holds it.
    pub fn get(&self, key: &RecordKey) -> Option<Record> {
        let id = key.id.as_str();
        Some(match key.kind {
            Kind::Material => Record::Material(Material::clone(self.materials.get(id)?)),
            Kind::Supplier => Record::Supplier(Supplier::clone(self.suppliers.get(id)?)),
            Kind::Component => Record::Component(Component::clone(self.components.get(id)?)),
            Kind::Line => Record::Line(ProductionLine::clone(self.lines.get(id)?)),
            Kind::License => Record::License(License::clone(self.licenses.get(id)?)),
        })
    }

    /// One page of `query`: up to `limit` records after the id `after`, in
    /// id order, with the number of matches over all pages.
    pub fn list(&self, query: &ListQuery, after: Option<&str>, limit: usize) -> ListPage {
        let idx = &self.indexes;
        let (records, total, more) = match query {
            ListQuery::Materials => page(
                &self.materials,
                Candidates::all(),
                |_| true,
                Record::Material,
                after,
                limit,
            ),
            ListQuery::Suppliers { country } => page(
                &self.suppliers,
                match country.as_str() {
                    "" => Candidates::all(),
                    c => Candidates::by(&idx.suppliers_by_country, c, true),
                },
                |_| true,
                Record::Supplier,
                after,
                limit,
            ),
            ListQuery::Components {
                supplier_id,
                material,
            } => page(
                &self.components,
                match (supplier_id.as_str(), material.as_str()) {
                    ("", "") => Candidates::all(),
                    ("", m) => Candidates::by(&idx.components_by_material, m, true),
                    (s, m) => Candidates::by(&idx.components_by_supplier, s, m.is_empty()),
                },
                |c: &Component| {
                    material.is_empty() || c.materials.iter().any(|m| m.material == *material)
                },
                Record::Component,
                after,
                limit,
            ),
            ListQuery::Lines { plant } => page(
                &self.lines,
                match plant.as_str() {
                    "" => Candidates::all(),
                    p => Candidates::by(&idx.lines_by_plant, p, true),
                },
                |_| true,
                Record::Line,
                after,
                limit,
            ),
            ListQuery::Licenses {
                supplier_id,
                material,
                status,
            } => {
                let status_text = status_key(*status);
                let any_status = *status == LicenseStatus::Unspecified;
                page(
                    &self.licenses,
                    match (supplier_id.as_str(), material.as_str()) {
                        ("", "") if any_status => Candidates::all(),
                        ("", "") => Candidates::by(&idx.licenses_by_status, &status_text, true),
                        ("", m) => Candidates::by(&idx.licenses_by_material, m, any_status),
                        (s, m) => {
                            Candidates::by(&idx.licenses_by_supplier, s, m.is_empty() && any_status)
                        }
                    },
                    |l: &License| {
                        (material.is_empty() || l.material == *material)
                            && (any_status || l.status == *status)
                    },
                    Record::License,
                    after,
                    limit,
                )
            }
        };
        ListPage {
            records,
            total,
            more,
            revision: self.revision,
        }
    }

    /// Every record, in export order: materials, suppliers, components,
    /// lines, licences, each by id.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let materials = self
            .materials
            .values()
            .map(|r| Record::Material((**r).clone()));
        let suppliers = self
            .suppliers
            .values()
            .map(|r| Record::Supplier((**r).clone()));
        let components = self
            .components
            .values()
            .map(|r| Record::Component((**r).clone()));
        let lines = self.lines.values().map(|r| Record::Line((**r).clone()));
        let licenses = self
            .licenses
            .values()
            .map(|r| Record::License((**r).clone()));
        materials
            .chain(suppliers)
            .chain(components)
            .chain(lines)
            .chain(licenses)
    }

    /// How many records the view holds.
    pub fn record_count(&self) -> usize {
        self.materials.len()
            + self.suppliers.len()
            + self.components.len()
            + self.lines.len()
            + self.licenses.len()
    }
}
